"""DRAM-side timing for the performance model: bus beats of DMA lines, the memory's latency
and acceptance limits, and the shared AXI read channel.

The RTL's DMA readers (``hw/dma.py``) turn each DRAM line into its own INCR burst of the
bus beats that cover it (a line narrower than the bus still takes a whole beat, an
unaligned one may take one more, bursts split at 4 KiB and 256 beats); one burst address
is offered per cycle. The read arbiter (``hw/axi_arbiter.py``) grants address requests
round robin and holds a grant until its handshake; a grant that has to move costs a
cycle. The memory answers bursts in the order it accepted them, one beat per cycle.

`MemoryTiming` holds what depends on the memory model rather than on the RTL: the
latency from an address handshake to the first data beat, how many bursts it accepts
ahead of their data, and the write-response latency. `AXI_RAM` is cocotbext-axi's
`AxiRam` as the RTL tests use it (measured on traces of the tiny preset); `sim_dram`
describes ``hw/sim_dram.py``'s in-simulation model for a given latency (calibrated on
sim_top runs at several latencies). `memory_timing` names them (`MEMORIES`): the one
spelling every caller (driver, sweeps, command line) uses.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections import deque
from dataclasses import dataclass

from gemmstone.config import AcceleratorConfig

__all__ = ["MemoryTiming", "AXI_RAM", "sim_dram", "MEMORIES", "memory_timing", "LinePattern",
           "line_pattern", "ReadChannel", "ReadCommand", "CLIENTS", "READER_LINES_IN_FLIGHT"]

_INF = float("inf")
BOUNDARY_BYTES = 4096
MAX_BURST_BEATS = 256
#: Lines one DMA reader keeps outstanding (``DmaReader(max_in_flight=32)``).
READER_LINES_IN_FLIGHT = 32
#: Read clients in arbiter order (``hw/core.py``: fetch, load, compute, store).
CLIENTS = ("fetch", "load", "compute", "store")
# The other clients in round-robin order after each one.
_AFTER = tuple(tuple((grant + offset) % len(CLIENTS) for offset in range(1, len(CLIENTS)))
               for grant in range(len(CLIENTS)))


@dataclass(frozen=True)
class MemoryTiming:
    """Timing of the memory behind the accelerator's AXI4 port.

    Parameters
    ----------
    read_latency : int
        Cycles from a read address handshake to its first data beat, when the data
        channel is free.
    read_ahead : int
        The memory accepts read burst ``k`` only in the cycle after ``read_slack`` cycles
        before the last beat of burst ``k - read_ahead`` (its queue of accepted bursts is
        full until then); 0 means no limit.
    read_slack : int
        See ``read_ahead``.
    write_ahead, write_slack : int
        The same for write bursts, counted from the last write beat of burst
        ``k - write_ahead``.
    write_response : int
        Cycles from a burst's last write beat to its write response.
    write_latency : int
        Cycles from a write burst's address handshake to its response at the earliest
        (0: no such bound). Responses come in order, one per cycle at most.
    """

    read_latency: int = 2
    read_ahead: int = 3
    read_slack: int = 1
    write_ahead: int = 3
    write_slack: int = -2
    write_response: int = 2
    write_latency: int = 0

    def __post_init__(self) -> None:
        for name in ("read_latency", "read_ahead", "write_ahead", "write_response",
                     "write_latency"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ValueError(f"'{name}' must be a non-negative integer, not {value!r}")
        if self.read_latency < 1 or self.write_response < 1:
            raise ValueError("'read_latency' and 'write_response' must be at least 1")


#: cocotbext-axi's AxiRam (queues of two transactions per channel, one coroutine per
#: direction), as measured on AXI traces of the RTL.
AXI_RAM = MemoryTiming()


def sim_dram(latency: int) -> MemoryTiming:
    """Timing of ``hw/sim_dram.py``'s model with its ``latency`` input set to ``latency``
    (64 bursts accepted ahead of their data; a registered read stage: read latencies
    below 2 act as 2; a write response ``latency`` cycles after the burst's address, and
    not before the cycle after its last beat). Calibrated against the Verilated sim_top
    at latencies 2, 20 and 60 (benchmarks/perf_calibration.py --dram sim)."""
    if type(latency) is not int or latency < 0:
        raise ValueError(f"'latency' must be a non-negative integer, not {latency!r}")
    return MemoryTiming(read_latency=max(2, latency), read_ahead=64, read_slack=0,
                        write_ahead=64, write_slack=0, write_response=1,
                        write_latency=latency)


#: Names of the memories `memory_timing` knows: ``dram`` is the in-simulation DRAM
#: (hw/sim_dram.py, what the rtl backend runs on) at the config's ``dram_latency``, the
#: default; ``axi-ram`` is cocotbext-axi's AxiRam the RTL tests and calibration run
#: against (its latency is fixed: ``dram_latency`` has no effect).
MEMORIES = ("dram", "axi-ram")


def memory_timing(name: str, config: AcceleratorConfig) -> MemoryTiming:
    """The `MemoryTiming` of the memory called ``name`` (one of `MEMORIES`) for
    ``config``."""
    if name == "dram":
        return sim_dram(config.dram_latency)
    if name == "axi-ram":
        return AXI_RAM
    raise ValueError(f"'memory' must be one of {', '.join(map(repr, MEMORIES))}, "
                     f"not {name!r}")


@dataclass(frozen=True)
class LinePattern:
    """Bus beats of the lines of one strided DMA command, as a repeating pattern.

    Line ``i`` starts at ``addr + i * stride``; its beat count depends only on that
    address modulo the bus width, so it repeats with a period of at most the bus width.

    Members
    -------
    prefix : tuple of int
        ``prefix[j]`` is the beats of lines ``0 .. j - 1`` of one period (``prefix[0] = 0``).
    bursts_per_period : int
        Bursts of one period (a line crossing a 4 KiB boundary or longer than 256 beats
        is more than one burst).
    """

    prefix: tuple[int, ...]
    bursts_per_period: int

    @functools.cached_property
    def steps(self) -> tuple[int, ...]:
        """Beats of each line of one period."""
        return tuple(b - a for a, b in zip(self.prefix, self.prefix[1:], strict=False))

    @property
    def period(self) -> int:
        return len(self.prefix) - 1

    def beats(self, lines: int) -> int:
        """Beats of lines ``0 .. lines - 1``."""
        whole, rest = divmod(lines, self.period)
        return whole * self.prefix[-1] + self.prefix[rest]

    def line_beats(self, index: int) -> int:
        """Beats of line ``index``."""
        j = index % self.period
        return self.prefix[j + 1] - self.prefix[j]

    def lines_within(self, beats: int) -> int:
        """How many whole lines from line 0 fit in ``beats`` beats."""
        if beats <= 0:
            return 0
        whole, rest = divmod(beats, self.prefix[-1])
        return whole * self.period + bisect.bisect_right(self.prefix, rest) - 1


@functools.lru_cache(maxsize=4096)
def _pattern(offset: int, stride: int, length: int, bus: int,
             boundary_phase: int) -> LinePattern:
    del boundary_phase  # part of the cache key only
    period = bus // math.gcd(stride % bus, bus) if stride % bus else 1
    prefix = [0]
    bursts = 0
    for i in range(period):
        start = (offset + i * stride) % bus
        beats = (start + length - 1) // bus + 1
        prefix.append(prefix[-1] + beats)
        bursts += -(-beats // MAX_BURST_BEATS)
    return LinePattern(tuple(prefix), bursts)


def line_pattern(addr: int, stride: int, length: int, bus: int) -> LinePattern:
    """The `LinePattern` of lines of ``length`` bytes at ``addr + i * stride`` on a bus of
    ``bus`` bytes. (4 KiB crossings add a burst, not a beat; they are not counted in the
    pattern's bursts: they change when an address is offered, by a cycle.)"""
    length = max(1, length)
    return _pattern(addr % bus, stride % (bus * BOUNDARY_BYTES), length, bus, 0)


class ReadCommand:
    """One command of a DMA reader on the read channel: ``lines`` lines of a pattern.

    Members
    -------
    client : int
        Index in `CLIENTS`.
    ready : int
        Cycle from which its next burst address is offered.
    done : int
        Lines whose bursts were accepted.
    last_ar : int or None
        Cycle of the last address handshake once every burst was accepted.
    ends : list of int or None
        Cycle of each line's last beat, when ``keep_ends``.
    last_end : int or None
        Cycle of the last line's last beat, once known.
    prev_end : int
        Cycle of the last beat of the last line accepted so far (-1 before the first).
    on_line : callable or None
        ``on_line(command, line, end) -> end``: a consumer that may hold a line's last
        beat back. Called for every line when ``hook_all``, otherwise only for the last.
    first_take : int or None
        For a reader that holds one line (the load unit's): the cycle from which its
        consumer takes line 0. Line ``i``'s last beat then waits until line ``i - 1`` was
        taken (the reader's register is free, `ReadChannel.held`), and line ``i`` is taken
        the cycle after its last beat (line 0: not before ``first_take``).
    """

    __slots__ = ("client", "lines", "pattern", "ready", "done", "last_ar", "ends",
                 "last_end", "prev_end", "on_line", "hook_all", "first_take", "owner")

    def __init__(self, client: int, accepted: int, lines: int, pattern: LinePattern, *,
                 keep_ends: bool = False, on_line=None, hook_all: bool = True,
                 first_take: int | None = None, owner=None) -> None:
        self.client = client
        self.lines = lines
        self.pattern = pattern
        self.ready = accepted + 1
        self.done = 0
        self.last_ar: int | None = None
        self.ends: list[int] | None = [] if keep_ends else None
        self.last_end: int | None = None
        self.prev_end = -1
        self.on_line = on_line  # (command, line, natural end) -> end, for consumers
        self.hook_all = hook_all
        self.first_take = first_take
        self.owner = owner      # what the issuing unit needs to find its instruction


def _steady(ends: list[int], handshakes: list[int], window: int, period: int, lines: int,
            horizon: float) -> tuple[int, int] | None:
    """(periods, shift) to take at once if the last ``window`` ends and the last handshake
    repeat those one ``period`` earlier shifted by the same number of cycles, and at
    least one whole period fits in ``lines`` lines and before ``horizon``; else None."""
    shift = handshakes[-1] - handshakes[-1 - period]
    if shift <= 0:
        return None
    for j in range(len(ends) - window, len(ends)):
        if ends[j] - ends[j - period] != shift:
            return None
    periods = lines // period
    if horizon != _INF:
        periods = min(periods, int((horizon - handshakes[-1]) // shift))
    return (periods, shift) if periods > 0 else None


class ReadChannel:
    """The AXI read address and data channels shared by the four DMA readers.

    Bursts are accepted one at a time in the order the arbiter grants their addresses and
    the memory takes them; the data of each burst follows the memory's latency and the
    beats before it. A consumer that cannot take a line yet (``on_line``) delays that
    line's last beat, and so every beat behind it.

    Parameters
    ----------
    bus : int
        Bytes per beat.
    timing : MemoryTiming
    grant : int
        Arbiter grant at the start (the client of the previous run's last request).
    """

    def __init__(self, bus: int, timing: MemoryTiming, grant: int = 0) -> None:
        self.bus = bus
        self.timing = timing
        self.grant = grant
        self.active: list[ReadCommand | None] = [None] * len(CLIENTS)
        self.next_ar = 0          # earliest cycle of the next address handshake
        self.data_end = -1        # last beat of the last accepted burst
        self.recent: deque[int] = deque(maxlen=max(1, timing.read_ahead))
        self.in_flight = [deque(maxlen=READER_LINES_IN_FLIGHT) for _ in CLIENTS]
        self.beats = 0            # beats transferred (BYTES_READ = beats * bus)
        # Per client holding lines: the cycle its consumer took the last line it read.
        self.held = [-1] * len(CLIENTS)

    def submit(self, command: ReadCommand) -> None:
        if self.active[command.client] is not None:
            raise RuntimeError(f"the {CLIENTS[command.client]} reader has a command "
                               "in progress")
        self.active[command.client] = command

    def next_handshake(self) -> tuple[int, int] | None:
        """(client, cycle) of the next address handshake as things stand, or None."""
        active = self.active
        only = None
        pending = _INF
        several = False
        for command in active:
            if command is not None:
                if only is not None:
                    several = True
                only = command
                if command.ready < pending:
                    pending = command.ready
        if only is None:
            return None
        t = self.next_ar if self.next_ar > pending else pending
        grant = self.grant
        if several or active[grant] is None:
            clients = len(CLIENTS)
            # A grant whose holder offers nothing moves to the next client offering,
            # taking effect a cycle later.
            while True:
                holder = active[grant]
                if holder is not None and holder.ready <= t:
                    break
                for offset in range(1, clients + 1):
                    candidate = (grant + offset) % clients
                    other = active[candidate]
                    if other is not None and other.ready <= t:
                        grant = candidate
                        break
                t += 1
        timing = self.timing
        recent = self.recent
        if timing.read_ahead and len(recent) == timing.read_ahead:
            gate = recent[0] - timing.read_slack
            if gate > t:
                t = gate
        lines = self.in_flight[grant]
        if len(lines) == READER_LINES_IN_FLIGHT and lines[0] + 1 > t:
            t = lines[0] + 1
        return grant, t

    def accept(self, grant: int, handshake: int) -> ReadCommand | None:
        """Accept the next burst of ``grant`` at cycle ``handshake`` (from
        `next_handshake`); returns its command if that was its last burst."""
        command = self.active[grant]
        line = command.done
        steps = command.pattern.steps
        beats = steps[line % len(steps)]
        start = handshake + self.timing.read_latency
        if start <= self.data_end:
            start = self.data_end + 1
        end = start + beats - 1
        if command.first_take is not None:
            held = self.held[grant]
            if end < held:
                end = held
            self.held[grant] = end + 1 if line or end >= command.first_take else \
                command.first_take
        if command.on_line is not None and (command.hook_all or line == command.lines - 1):
            end = command.on_line(command, line, end)
        command.prev_end = end
        self.data_end = end
        self.beats += beats
        self.recent.append(end)
        self.in_flight[grant].append(end)
        if command.ends is not None:
            command.ends.append(end)
        command.done = line + 1
        command.ready = handshake + 1
        self.next_ar = handshake + 1
        # Round robin from the holder: another client offering in this cycle goes next.
        active = self.active
        self.grant = grant
        for candidate in _AFTER[grant]:
            other = active[candidate]
            if other is not None and other.ready <= handshake:
                self.grant = candidate
                break
        if command.done < command.lines:
            return None
        command.last_ar = handshake
        command.last_end = end
        active[grant] = None
        return command

    def stream(self, client: int, horizon: float, stop: int) -> None:
        """Accept the next bursts of ``client``'s command, the only one in progress, up
        to line ``stop`` (exclusive), while their handshakes fall at or before ``horizon``
        (no other request can be offered by then). The same as `next_handshake` and
        `accept` burst by burst, without their calls: the arithmetic of one burst inline,
        and a steady state taken in closed form.

        Closed form: a burst's handshake and last beat are maxima of sums of the last
        handshake, the last ``max(read_ahead, READER_LINES_IN_FLIGHT)`` ends and the
        line's beats (a max-plus linear recurrence). Once that whole window, one pattern
        period of ``P`` lines apart, differs by the same ``D`` cycles everywhere, every
        later period does too: ``k`` periods are taken at once by adding ``k * D``."""
        command = self.active[client]
        if command is None:
            return
        for other in self.active:
            if other is not None and other is not command:
                return
        if command.ends is not None or (command.on_line is not None and command.hook_all):
            self._stream_slowly(command, horizon, stop)
            return
        line = command.done
        if line >= stop:
            return
        timing = self.timing
        ahead, slack, latency = timing.read_ahead, timing.read_slack, timing.read_latency
        recent, lines = self.recent, self.in_flight[client]
        steps = command.pattern.steps
        period = len(steps)
        next_ar, data_end, beats = max(self.next_ar, command.ready), self.data_end, 0
        first_take = command.first_take
        held = self.held[client]
        full_recent = ahead and len(recent) == ahead
        full_lines = len(lines) == READER_LINES_IN_FLIGHT
        handshake = None
        window = max(ahead, READER_LINES_IN_FLIGHT)
        period_beats = command.pattern.prefix[-1]
        ends: list[int] = []       # last beats and handshakes of this call's bursts
        handshakes: list[int] = []
        # A stream shorter than a check's window plus a period never jumps: no history.
        check_at = window + period + 1 if stop - line > window + 2 * period else _INF
        while line < stop:
            if len(ends) >= check_at:
                jump = _steady(ends, handshakes, window, period, stop - line, horizon)
                if jump:
                    periods, step = jump
                    shift = periods * step
                    tail = [end + shift for end in ends[-window - period:]]
                    handshakes = [h + shift for h in handshakes[-period - 1:]]
                    ends = tail
                    recent.extend(tail[-max(1, ahead):])
                    lines.extend(tail[-READER_LINES_IN_FLIGHT:])
                    data_end = tail[-1]
                    if first_take is not None:
                        held = data_end + 1
                    handshake = handshakes[-1]
                    next_ar = handshake + 1
                    line += periods * period
                    beats += periods * period_beats
                    check_at = len(ends) + window
                    continue
                check_at = len(ends) + window
                if len(ends) > 4 * window + period:   # keep what a check needs
                    del ends[:-window - period], handshakes[:-period - 1]
                    check_at = len(ends) + window
            t = next_ar
            if full_recent:
                gate = recent[0] - slack
                if gate > t:
                    t = gate
            elif ahead and len(recent) == ahead:
                full_recent = True
                gate = recent[0] - slack
                if gate > t:
                    t = gate
            if full_lines:
                gate = lines[0] + 1
                if gate > t:
                    t = gate
            elif len(lines) == READER_LINES_IN_FLIGHT:
                full_lines = True
                gate = lines[0] + 1
                if gate > t:
                    t = gate
            if t > horizon:
                break
            b = steps[line % period]
            first = t + latency
            if first <= data_end:
                first = data_end + 1
            data_end = first + b - 1
            if first_take is not None:
                if data_end < held:
                    data_end = held
                held = data_end + 1 if line or data_end >= first_take else first_take
            beats += b
            recent.append(data_end)
            lines.append(data_end)
            if check_at != _INF:
                ends.append(data_end)
                handshakes.append(t)
            handshake = t
            next_ar = t + 1
            line += 1
        if handshake is None:
            return
        self.data_end = data_end
        self.held[client] = held
        self.beats += beats
        self.next_ar = next_ar
        self.grant = client
        command.prev_end = data_end
        command.done = line
        command.ready = next_ar

    def _stream_handshake(self, command: ReadCommand) -> int:
        timing = self.timing
        t = max(self.next_ar, command.ready)
        if timing.read_ahead and len(self.recent) == timing.read_ahead:
            t = max(t, self.recent[0] - timing.read_slack)
        lines = self.in_flight[command.client]
        if len(lines) == READER_LINES_IN_FLIGHT:
            t = max(t, lines[0] + 1)
        return t

    def _stream_slowly(self, command: ReadCommand, horizon: float, stop: int) -> None:
        while command.done < stop:
            t = self._stream_handshake(command)
            if t > horizon:
                return
            self.accept(command.client, t)
