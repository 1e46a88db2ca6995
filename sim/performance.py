"""The performance model: cycles and performance counters of a program on the RTL core.

A transaction-level model of the microarchitecture in docs/microarchitecture.md. It runs
the same program words as the functional model but moves no data: each instruction is a
handful of timestamps computed from the state machines of ``hw/`` (fetch, dispatch, the
load unit's front and back stages, the compute unit's weight loader, streaming and drain
pipeline, the store unit's output stage and writer), the token counters between units and
the shared AXI read channel (`gemmstone.sim.performance_memory`). Time advances from
event to event (an instruction taken, a DMA command accepted, a burst address accepted),
never cycle by cycle.

Cycle 0 is the first cycle the register block counts (the core's start pulse); the
counters are those of ``hw/register_map.py`` and mean what they mean there: ``CYCLES``
until the core reports done, busy cycles per unit, cycles some unit waits for a token,
for DRAM or (dispatch) for queue room, bytes moved on the bus, instructions retired.

The model assumes the program runs without a fault (run it on the functional model for
that); a token deadlock is reported as `gemmstone.isa.TokenError`.

Two engines run this model. ``engine="python"`` is `_Run` below, the readable reference:
a few events per instruction, about 70 us of CPU per instruction on ResNet-18's
convolutions (benchmarks/perf_speed.py). ``engine="compiled"``, the default, is the same
model as one numba-compiled state machine (`gemmstone.sim.performance_core`) that gives
identical cycles, counters and grant and raises the same errors
(tests/sim/test_performance_core.py), some 100-150 times faster. In both, the lines of a
DMA command between two events of other parts are taken inline, and a steady stream of them
in closed form (`ReadChannel.stream`); results of whole runs are cached
(`PerformanceModel`'s ``cache``).

A third engine approximates the model: ``engine="analytic"``
(`gemmstone.sim.performance_analytic`, numba) takes one O(1) step per instruction, prices
each DMA command in closed form and the shared read channel as a reservation, and gives the
same retired counts and bytes moved, CYCLES within about 2% of the exact engines on whole
layers (benchmarks/perf_analytic.py; more on short microbenchmarks, see
tests/sim/test_performance_analytic.py), busy and stall counters as estimates, and the same
errors; several times faster than ``"compiled"``.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import heapq
import importlib
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from gemmstone.config import AcceleratorConfig
from gemmstone.isa.encoding import bytes_to_words, decode
from gemmstone.isa.errors import ProgramEndError, TokenError
from gemmstone.isa.program import Program
from gemmstone.isa.table import WORD_BYTES, AccLoadType, StoreMode, Unit
from gemmstone.sim.performance_memory import (
    MemoryTiming,
    ReadChannel,
    ReadCommand,
    line_pattern,
    memory_timing,
)

__all__ = ["PerformanceModel", "PerfResult", "COUNTERS", "ENGINES", "estimate"]

#: The RTL's performance counters (hw/register_map.py), in register order.
COUNTERS = ("CYCLES", "BUSY_LOAD", "BUSY_COMPUTE", "BUSY_STORE", "STALL_TOKEN", "STALL_DMA",
            "STALL_QUEUE", "BYTES_READ", "BYTES_WRITTEN", "RETIRED_LOAD", "RETIRED_COMPUTE",
            "RETIRED_STORE")

# Structure of the RTL the timing follows (checked against hw/ by the calibration tests).
FETCH_FIFO_DEPTH = 32      # hw/fetch.py FIFO_DEPTH: words fetched ahead of dispatch
OUTPUT_STAGE_LATENCY = 4   # hw/output_stage.py LATENCY
ALU_LATENCY = 2            # hw/acc_alu.py LATENCY
FIFO_LATENCY = 2           # SyncFIFOBuffered: a word written in cycle t is readable at t + 2
WRITE_RESPONSES = 16       # write responses the store unit's writer tracks (its last bursts)

_FETCH, _LOAD, _COMPUTE, _STORE, _MEMORY = range(5)
_INF = float("inf")
# Token queues: (producer, its push flag, consumer, its pop flag).
_QUEUES = {
    "load->compute": (_LOAD, "push_next", _COMPUTE, "pop_prev"),
    "compute->load": (_COMPUTE, "push_prev", _LOAD, "pop_next"),
    "compute->store": (_COMPUTE, "push_next", _STORE, "pop_prev"),
    "store->compute": (_STORE, "push_prev", _COMPUTE, "pop_next"),
}
_UNIT_OF = {Unit.LOAD: _LOAD, Unit.COMPUTE: _COMPUTE, Unit.STORE: _STORE}
#: Runs whose results `PerformanceModel` remembers (most recently used first to stay).
RUN_CACHE_SIZE = 256
#: Line ends `_Run` keeps as counted for STALL_DMA before it drops those no reader's
#: in-flight record holds any more (so memory does not grow with the program).
DMA_COUNTED_KEEP = 512
#: The engines that run the model: the compiled core (default), the Python reference (both
#: exact, identical results) and the analytic approximation.
ENGINES = ("compiled", "python", "analytic")
_RUNS: OrderedDict[tuple, PerfResult] = OrderedDict()


@dataclass
class PerfResult:
    """What the performance model says a run takes.

    Members
    -------
    counters : dict of str to int
        Every name of `COUNTERS` with its value at the end of the run.
    grant : int
        The read arbiter's grant at the end (pass it as the next run's ``grant`` when runs
        follow each other without a reset, as the RTL tests do).
    """

    counters: dict[str, int]
    grant: int = 0

    @property
    def cycles(self) -> int:
        return self.counters["CYCLES"]


def _union(intervals: list[tuple[int, int]]) -> int:
    """Cycles covered by half-open intervals [start, end)."""
    total, reach = 0, -_INF
    for start, end in sorted(intervals):
        if end <= reach:
            continue
        total += end - max(start, reach)
        reach = end
    return int(total)


class _Busy:
    """Busy cycles of one unit: the union of inclusive [first, last] spans that arrive
    roughly in order."""

    __slots__ = ("spans",)

    def __init__(self) -> None:
        self.spans: list[tuple[int, int]] = []

    def add(self, first: int, last: int) -> None:
        if last >= first:
            self.spans.append((first, last + 1))

    def total(self) -> int:
        return _union(self.spans)


@dataclass
class _Tokens:
    """One token queue: the producer's push times (sorted; unknown ones still pending)
    and the consumer's pop times."""

    pushes: list[int] = field(default_factory=list)
    pending: int = 0          # pushes promised by instructions whose time is not known yet
    promised: int = 0         # pushes of instructions taken so far (known or pending)
    pops: list[int] = field(default_factory=list)

    def push_known(self, time: int) -> None:
        self.pending -= 1
        bisect.insort(self.pushes, time)


class _LoadRecord:
    __slots__ = ("index", "take", "accepted", "handoff", "n", "pad_lo", "pad_hi",
                 "data_start", "consumed", "retire", "push")

    def __init__(self, index: int, values) -> None:
        self.index = index
        self.n = values["n"]
        self.pad_lo = values["pad_lo"]
        self.pad_hi = values["pad_hi"]
        self.push = bool(values["push_next"])
        self.take = self.accepted = self.handoff = self.data_start = -1
        self.consumed = -1    # cycle the back took the last line read so far
        self.retire: int | None = None


class PerformanceModel:
    """Cycle estimates of gemmstone programs on the RTL core of one `AcceleratorConfig`.

    Parameters
    ----------
    config : AcceleratorConfig
    memory : MemoryTiming, optional
        The DRAM model's timing; by default the in-simulation DRAM at the config's
        ``dram_latency`` (`gemmstone.sim.performance_memory.memory_timing`, ``"dram"``).
        The RTL tests' AxiRam is `gemmstone.sim.performance_memory.AXI_RAM`.
    cache : bool
        Remember the results of recent runs (`RUN_CACHE_SIZE`, shared by every model in
        the process): the same program on the same config, memory, addresses and grant
        is not simulated again. A model's layers repeat, and a device runs the same
        programs over and over.
    engine : {"compiled", "python", "analytic"}
        ``"compiled"``: the numba core (`gemmstone.sim.performance_core`); ``"python"``:
        the reference `_Run`. Both give identical results. ``"analytic"``: the closed-form
        engine (`gemmstone.sim.performance_analytic`), several times faster, exact retired
        counts and bytes, CYCLES within about 2% on whole layers, busy and stall counters
        estimated.
    """

    def __init__(self, config: AcceleratorConfig, memory: MemoryTiming | None = None, *,
                 cache: bool = True, engine: str = "compiled") -> None:
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"'config' must be an AcceleratorConfig, not {config!r}")
        if memory is None:
            memory = memory_timing("dram", config)
        if not isinstance(memory, MemoryTiming):
            raise TypeError(f"'memory' must be a MemoryTiming, not {memory!r}")
        if engine not in ENGINES:
            raise ValueError(f"'engine' must be one of {', '.join(ENGINES)}, not {engine!r}")
        self.config = config
        self.memory = memory
        self.cache = cache
        self.engine = engine

    def run(self, words: Sequence[int] | bytes, *, instr_base: int = 0,
            window_base: int = 0, grant: int = 0) -> PerfResult:
        """Estimate the run of ``words`` fetched from bus address ``instr_base`` with the
        DMA window at ``window_base`` (addresses matter: they decide bus beats).

        ``words`` are the instruction words as ints, or the code as it lies in memory
        (bytes, 16 little-endian bytes a word: `gemmstone.isa.encoding.words_to_bytes`),
        which the compiled engine reads without a Python step per word.

        ``grant`` is the read arbiter's grant when the run starts: 0 after a reset, the
        previous run's `PerfResult.grant` when runs follow each other.

        Raises
        ------
        gemmstone.isa.IllegalInstructionError
            A word does not decode.
        gemmstone.isa.TokenError
            The program deadlocks on tokens or leaves tokens at halt.
        gemmstone.isa.ProgramEndError
            The program has no halt.
        """
        code = _engine_module("performance_core").words_to_code(words)
        if not self.cache:
            return self._simulate(words, code, instr_base, window_base, grant)
        digest = hashlib.blake2b(code, digest_size=16).digest()
        # The engine is part of the key: the engines are checked against each other, so
        # one must never be handed the other's result.
        key = (self.engine, self.config, self.memory, digest, len(code), instr_base,
               window_base, grant)
        found = _RUNS.get(key)
        if found is None:
            found = self._simulate(words, code, instr_base, window_base, grant)
            _RUNS[key] = found
            if len(_RUNS) > RUN_CACHE_SIZE:
                _RUNS.popitem(last=False)
        else:
            _RUNS.move_to_end(key)
        return PerfResult(dict(found.counters), found.grant)

    def _simulate(self, words, code, instr_base: int, window_base: int,
                  grant: int) -> PerfResult:
        if self.engine != "python":
            if self.engine == "compiled":
                run = _engine_module("performance_core").run_compiled
            else:
                run = _engine_module("performance_analytic").run_analytic
            counters, grant = run(self.config, self.memory, code, instr_base, window_base,
                                  grant)
            return PerfResult(dict(zip(COUNTERS, counters.tolist(), strict=True)), grant)
        if isinstance(words, (bytes, bytearray, memoryview)):
            words = bytes_to_words(bytes(words))
        return _Run(self.config, self.memory, words, instr_base, window_base,
                    grant).result()


@functools.cache
def _engine_module(name: str):
    """``gemmstone.sim.<name>``, a compiled engine's module, imported on first use: not at
    the top, as it imports this module's constants; and not by an import statement in
    every run, which costs a few microseconds, a fifth of a short program's run."""
    return importlib.import_module(f"gemmstone.sim.{name}")


def estimate(program: Program, config: AcceleratorConfig, *,
             memory: MemoryTiming | None = None, engine: str = "compiled") -> PerfResult:
    """The performance model's estimate for ``program`` (window and code at address 0;
    ``memory`` as in `PerformanceModel`)."""
    program.check_config(config)
    return PerformanceModel(config, memory, engine=engine).run(program.words)


class _Run:
    """One simulated run: the event loop and the actors (generators) of each part."""

    def __init__(self, config: AcceleratorConfig, memory: MemoryTiming,
                 words: Sequence[int], instr_base: int, window_base: int, grant: int) -> None:
        self.c = config
        self.mem = memory
        self.bus = config.dram_bytes_per_cycle
        self.instr_base = instr_base
        self.window = window_base
        self.instrs = [decode(int(word), index=index) for index, word in enumerate(words)]
        self.units = [[] for _ in range(4)]  # instruction indices per unit, in order
        self.unit_index = []                 # position of each instruction in its unit
        self.unit_of: list[int | None] = []  # its unit (None: fence, halt)
        for index, instr in enumerate(self.instrs):
            unit = _UNIT_OF.get(instr.spec.unit)
            self.unit_of.append(unit)
            if unit is None:
                self.unit_index.append(-1)
                continue
            self.unit_index.append(len(self.units[unit]))
            self.units[unit].append(index)
        self.read = ReadChannel(self.bus, memory, grant)
        self.tokens = {name: _Tokens() for name in _QUEUES}
        self.dispatched = [-1] * len(self.instrs)
        self.queued = [0] * 4                 # entries dispatched into each unit's queue
        self.takes: list[list[int]] = [[] for _ in range(4)]
        self.settled = [0] * 4                # instructions whose timing is fully known
        self.idle_from = [0] * 4              # unit idle (for fence/halt) once settled
        self.word_end: list[int | None] = [None] * len(self.instrs)
        self.busy = [_Busy() for _ in range(4)]
        self.retired = [0] * 4
        self.stall_token: list[tuple[int, int]] = []
        # Waits for DRAM data (see `_dma_line`): the windows in which a unit takes the
        # lines of its command, the lines taken, and the takes in another unit's window.
        self.stall_dma: list[tuple[int, int]] = []
        self.dma_takes = 0
        self.dma_covered = 0
        self._dma_start = [0] * 4           # window start of each unit's current command
        # Last beats of lines counted in dma_covered, and of LOAD first lines taken as the
        # window opens: `_dma_opens` skips them (no two lines end in the same cycle).
        self._dma_counted: set[int] = set()
        self.stall_queue = 0
        self.bytes_written = 0
        self.cycles: int | None = None
        self.now = 0
        self.loads: list[_LoadRecord] = []
        # What the front end waits for when it is blocked (whom to wake for it): the word
        # it would dispatch next, a take of the unit whose queue is full, idle units.
        self._fe_word = self._fe_unit = -1
        self._fe_idle = self._fe_fetch = False

    # -- event loop ----------------------------------------------------------------------

    def result(self) -> PerfResult:
        actors = [self._front_end(), self._load_unit(), self._compute_unit(),
                  self._store_unit(), self._memory()]
        self._heap: list[tuple[int, int, int]] = []
        self._seq = 0
        self._current = [0] * len(actors)
        self._blocked = [False] * len(actors)
        for actor in range(len(actors)):
            self._schedule(actor, 0)
        heap = self._heap
        while heap and self.cycles is None:
            time, seq, actor = heapq.heappop(heap)
            if self._current[actor] != seq:
                continue
            self.now = time
            try:
                wanted = next(actors[actor])
            except StopIteration:
                break
            if wanted is None:
                self._blocked[actor] = True
                self._current[actor] = -1
            else:
                self._schedule(actor, wanted if wanted > time else time)
        if self.cycles is None:
            self._deadlock()
        return PerfResult(self._counters(), self.read.grant)

    def _schedule(self, actor: int, time: int) -> None:
        self._seq += 1
        self._current[actor] = self._seq
        self._blocked[actor] = False
        heapq.heappush(self._heap, (time, self._seq, actor))

    def _horizon(self) -> float:
        """Cycle of the next event of any part (stale entries dropped)."""
        heap, current = self._heap, self._current
        while heap and current[heap[0][2]] != heap[0][1]:
            heapq.heappop(heap)
        return heap[0][0] if heap else _INF

    def _wake(self, actor: int) -> None:
        """Let ``actor`` re-examine what it waits for, now."""
        if self._blocked[actor]:
            self._schedule(actor, self.now)

    def _deadlock(self) -> None:
        heads = []
        for unit in (_LOAD, _COMPUTE, _STORE):
            taken = len(self.takes[unit])
            if taken < self.queued[unit]:
                heads.append(self.units[unit][taken])
        if not heads:
            raise TokenError("deadlock: the performance model's units stopped with nothing "
                             "queued", index=None)
        index = min(heads)
        raise TokenError("deadlock: waits for a token that never arrives", index=index,
                         text=str(self.instrs[index]))

    def _counters(self) -> dict[str, int]:
        return {
            "CYCLES": self.cycles,
            "BUSY_LOAD": self.busy[_LOAD].total(),
            "BUSY_COMPUTE": self.busy[_COMPUTE].total(),
            "BUSY_STORE": self.busy[_STORE].total(),
            "STALL_TOKEN": _union(self.stall_token),
            "STALL_DMA": _union(self.stall_dma) - self.dma_takes + self.dma_covered,
            "STALL_QUEUE": self.stall_queue,
            "BYTES_READ": self.read.beats * self.bus,
            "BYTES_WRITTEN": self.bytes_written,
            "RETIRED_LOAD": self.retired[_LOAD],
            "RETIRED_COMPUTE": self.retired[_COMPUTE],
            "RETIRED_STORE": self.retired[_STORE],
        }

    # -- shared helpers ------------------------------------------------------------------

    def _visible(self, unit: int, position: int) -> int:
        """Cycle the unit's queue presents its ``position``-th entry."""
        index = self.units[unit][position]
        visible = self.dispatched[index] + FIFO_LATENCY
        if position:
            visible = max(visible, self.takes[unit][position - 1] + 1)
        return visible

    def _token_ready(self, unit: int, values) -> int | None:
        """Earliest cycle the head's pops are there and its pushes have room, or None if
        that depends on something not known yet."""
        ready = 0
        depth = self.c.token_depth
        for name, (producer, push_flag, consumer, pop_flag) in _QUEUES.items():
            queue = self.tokens[name]
            if consumer == unit and values[pop_flag]:
                needed = len(queue.pops)
                if needed >= len(queue.pushes):
                    return None
                ready = max(ready, queue.pushes[needed] + 1)
            if producer == unit and values[push_flag]:
                needed = queue.promised - depth
                if needed >= 0:
                    if needed >= len(queue.pops):
                        return None
                    ready = max(ready, queue.pops[needed] + 1)
        return ready

    def _take(self, unit: int, values, time: int) -> list[str]:
        """Record that ``unit`` takes its head at ``time``: pops and promised pushes;
        returns the queues it will push into."""
        self.takes[unit].append(time)
        pushes = []
        for name, (producer, push_flag, consumer, pop_flag) in _QUEUES.items():
            queue = self.tokens[name]
            if consumer == unit and values[pop_flag]:
                queue.pops.append(time)
                self._wake(producer)
            if producer == unit and values[push_flag]:
                queue.promised += 1
                queue.pending += 1
                pushes.append(name)
        if unit == self._fe_unit:
            self._wake(_FETCH)
        return pushes

    def _push(self, names: list[str], time: int) -> None:
        for name in names:
            self.tokens[name].push_known(time)
            self._wake(_QUEUES[name][2])

    def _wait_head(self, unit: int, position: int, structural: int, gate: int):
        """Generator: wait until the unit can take its ``position``-th entry. The entry is
        visible and the unit's state allows it from ``structural``; token waits count from
        ``gate`` (when the RTL starts raising token_wait). Yields the take cycle last."""
        values = self.instrs[self.units[unit][position]].values
        while True:
            tokens = self._token_ready(unit, values)
            if tokens is None:
                yield None
                continue
            take = max(structural, tokens)
            if take > self.now:
                yield take
                continue
            if tokens > gate and take > gate:
                self.stall_token.append((gate, min(tokens, take)))
            return

    def _pattern(self, addr: int, stride: int, length: int):
        return line_pattern(self.window + addr, stride, length, self.bus)

    # -- fetch and dispatch --------------------------------------------------------------

    def _front_end(self):
        """Fetch (commands of words as FIFO credit allows) and dispatch (one word per
        cycle into the unit queues; fence and halt wait for idle units)."""
        count = len(self.instrs)
        asked = 0                  # words requested so far
        fetch_free = 1             # a fetch command may be accepted from this cycle
        last_fetch: ReadCommand | None = None
        index = 0                  # next word to dispatch
        earliest = 0               # dispatch state allows the next word from this cycle
        depth = self.c.queue_depth
        while True:
            # Fetch: the next command once the planner is free and the FIFO has room.
            fetch_at = _INF
            if asked < count:
                if last_fetch is not None and last_fetch.last_ar is not None:
                    fetch_free = max(fetch_free, last_fetch.last_ar)
                    last_fetch = None
                if last_fetch is None:
                    credit = 1 if asked < FETCH_FIFO_DEPTH else (
                        self.dispatched[asked - FETCH_FIFO_DEPTH] + 1
                        if asked - FETCH_FIFO_DEPTH < index else _INF)
                    fetch_at = max(fetch_free, credit)
                    if fetch_at <= self.now:
                        read_before = bisect.bisect_left(self.dispatched, self.now, 0, index)
                        ask = min(count, read_before + FETCH_FIFO_DEPTH) - asked
                        last_fetch = self._fetch(asked, ask, self.now)
                        asked += ask
                        fetch_at = _INF
            # Dispatch the next word.
            dispatch_at = _INF
            if index >= count:
                raise ProgramEndError(f"the program ended after {count} instructions "
                                      "without halt", index=count, text="<end of program>")
            if self.word_end[index] is not None:
                visible = self.word_end[index] + 1 + FIFO_LATENCY
                if index:
                    visible = max(visible, self.dispatched[index - 1] + 1)
                instr = self.instrs[index]
                unit = self.unit_of[index]
                ready: float = max(visible, earliest)
                if unit is not None:
                    position = self.unit_index[index]
                    if position >= depth:
                        if position - depth < len(self.takes[unit]):
                            ready = max(ready, self.takes[unit][position - depth] + 1)
                        else:
                            ready = _INF
                            self._fe_unit = unit
                if ready <= self.now:
                    self.dispatched[index] = self.now
                    self.stall_queue += self.now - visible
                    index += 1
                    if unit is not None:
                        self.queued[unit] += 1
                        self._wake(unit)
                    else:
                        settle = yield from self._wait_idle(self.now + 1)
                        if instr.mnemonic == "halt":
                            self._halt(index - 1, settle)
                            return
                        earliest = settle + 1
                    continue
                dispatch_at = ready
            else:
                self._fe_word = index
            wanted = min(fetch_at, dispatch_at)
            if wanted == _INF:
                # The end of the fetch in progress matters if the FIFO has room after it.
                self._fe_fetch = last_fetch is not None and asked < count and (
                    asked < FETCH_FIFO_DEPTH or asked - FETCH_FIFO_DEPTH < index)
                yield None
            else:
                yield wanted
            self._fe_word = self._fe_unit = -1
            self._fe_fetch = False

    def _fetch(self, first: int, words: int, accepted: int) -> ReadCommand:
        def arrived(command, line, end):
            self.word_end[first + line] = end
            if first + line == self._fe_word:
                self._wake(_FETCH)
            return end

        command = ReadCommand(_FETCH, accepted, words,
                              line_pattern(self.instr_base + first * WORD_BYTES, WORD_BYTES,
                                           WORD_BYTES, self.bus), on_line=arrived)
        self.read.submit(command)
        self._wake(_MEMORY)
        return command

    def _wait_idle(self, start: int):
        """Generator: the first cycle from ``start`` in which every queue is empty and
        every unit idle (once everything dispatched so far is settled)."""
        while True:
            if all(self.settled[u] == self.queued[u] for u in (_LOAD, _COMPUTE, _STORE)):
                return max(start, *(self.idle_from[u] for u in (_LOAD, _COMPUTE, _STORE)))
            self._fe_idle = True
            yield None
            self._fe_idle = False

    def _halt(self, index: int, idle: int) -> None:
        left = [name for name, queue in self.tokens.items()
                if len(queue.pushes) + queue.pending > len(queue.pops)]
        if left:
            raise TokenError(f"tokens left in queues at halt: {', '.join(left)}", index=index,
                             text=str(self.instrs[index]))
        fetch_quiet = max(end for end in self.word_end if end is not None) + 2
        self.cycles = max(idle + 1, fetch_quiet) + 1

    def _settle(self, unit: int, idle: int) -> None:
        self.settled[unit] += 1
        self.idle_from[unit] = max(self.idle_from[unit], idle)
        if self._fe_idle:
            self._wake(_FETCH)

    # -- memory ----------------------------------------------------------------------------

    def _memory(self):
        read = self.read
        while True:
            upcoming = read.next_handshake()
            if upcoming is None:
                yield None
                continue
            client, cycle = upcoming
            if cycle > self.now:
                if cycle >= self._horizon():
                    yield cycle
                    continue
                self.now = cycle  # nothing else happens before it: no need to yield
            line_of = read.active[client]
            command = read.accept(client, cycle)
            if client != _FETCH:
                self._dma_line(client, line_of)
            if command is not None:
                if client != _FETCH or self._fe_fetch:
                    self._wake(client)
            elif client != _FETCH:
                # Lines of a unit's command before its last wake nobody: take them in one
                # go up to the next event of any other part.
                command = read.active[client]
                if command is not None:
                    read.stream(client, self._horizon(), command.lines - 1)

    # -- waits for DRAM data ---------------------------------------------------------------
    #
    # STALL_DMA counts the cycles in which some unit waits for DRAM data (hw/core.py): the
    # load unit's back in DATA, LOADACC and LOADQ, each while lines are left and none is
    # there. Each such command has a window, from the cycle it may take its first line to
    # the cycle it takes its last, and waits in every cycle of it but those it takes a line
    # in. The units' lines interleave on the shared channel and so do their waits: the
    # cycles some unit waits in are the windows' union, less the cycles a line is taken in
    # (`dma_takes`), plus those of them another unit waits in (`dma_covered`). No record
    # per line is needed, so lines streamed in closed form (`ReadChannel.stream`) stay so.
    #
    # A line is taken the cycle after its last beat, and beats come in the order bursts
    # were accepted; a LOAD's first line not before its back starts
    # (`ReadCommand.first_take`): one that arrived earlier is taken as the window opens,
    # and the window then counts from the next cycle. So when a unit takes a line, another
    # waits if its window has started and its command has lines left to accept
    # (`_dma_line`). Lines accepted before a window opens but taken in it are still in
    # flight when it opens (a reader has at most `READER_LINES_IN_FLIGHT`): `_dma_opens`.

    def _dma_opens(self, client: int, start: int) -> None:
        """A command of ``client`` was submitted; its window starts at ``start`` (later
        than now). Lines of other units taken from then on fall into it: this unit waits
        for its own lines, which come after them."""
        self._dma_start[client] = start
        counted = self._dma_counted
        if len(counted) > DMA_COUNTED_KEEP:
            # Only ends in the readers' in-flight records are looked up (below), a line's
            # end is counted right after it enters them, and no two lines end in the same
            # cycle: the ends no record holds are never looked up again.
            held = {end for lines in self.read.in_flight for end in lines}
            self._dma_counted = counted = counted & held
        for other in (_LOAD, _COMPUTE, _STORE):
            if other == client:
                continue
            for end in reversed(self.read.in_flight[other]):
                if end + 1 < start:
                    break
                if end not in counted:
                    counted.add(end)
                    self.dma_covered += 1

    def _dma_line(self, client: int, command: ReadCommand) -> None:
        """``command`` of ``client`` accepted a line (one by one, not in closed form: other
        commands may be in progress)."""
        read = self.read
        end = command.prev_end
        take = end + 1
        first_take = command.first_take
        if command.done == 1 and first_take is not None and take < first_take:
            # A LOAD's first line that waited for the back, taken as the back starts: the
            # window opens a cycle later (in that cycle the load unit does not wait).
            self._dma_start[client] = first_take + 1
            self._dma_counted.add(end)
        else:
            for other in (_LOAD, _COMPUTE, _STORE):
                if (other != client and read.active[other] is not None
                        and take >= self._dma_start[other]):
                    self._dma_counted.add(end)
                    self.dma_covered += 1
                    break
        if command.done == command.lines:
            # Every line was taken (those streamed in closed form too): the window closes.
            start = self._dma_start[client]
            late = first_take is not None and start > first_take
            self.dma_takes += command.lines - late
            last = read.held[client] if first_take is not None else take
            self.stall_dma.append((start, last + 1))

    # -- load unit -------------------------------------------------------------------------

    def _load_unit(self):
        unit = _LOAD
        front_free = 0     # the front is back in IDLE
        previous: _LoadRecord | None = None
        last_command: ReadCommand | None = None
        position = 0
        while True:
            while position >= self.queued[unit]:
                yield None
            index = self.units[unit][position]
            values = self.instrs[index].values
            record = _LoadRecord(index, values)
            gate = max(self._visible(unit, position), front_free)
            yield from self._wait_head(unit, position, gate, gate)
            take = self.now
            pushes = self._take(unit, values, take)
            record.take = take
            accepted = take + 2                       # CHECK, then ISSUE
            if record.n:
                while last_command is not None and last_command.last_ar is None:
                    yield None
                if last_command is not None:
                    accepted = max(accepted, last_command.last_ar)
                while self.now < accepted:
                    yield accepted
            record.accepted = accepted
            while previous is not None and previous.retire is None:
                yield None
            back_free = previous.retire + 1 if previous is not None else 0
            record.handoff = max(accepted + 1, back_free)
            record.data_start = record.handoff + 2 + record.pad_lo
            front_free = record.handoff + 1
            self.loads.append(record)
            if record.n:
                last_command = ReadCommand(
                    unit, accepted, record.n,
                    self._pattern(values["dram"], values["stride"], values["len"]),
                    on_line=self._load_line, hook_all=False, first_take=record.data_start,
                    owner=(record, pushes))
                self.read.submit(last_command)
                self._dma_opens(unit, record.data_start)
                self._wake(_MEMORY)
            else:
                self._load_retire(record, pushes, record.data_start + 1 + record.pad_hi)
            previous = record
            position += 1

    def _load_line(self, command: ReadCommand, line: int, end: int) -> int:
        """The last line of a LOAD arrived (the channel held its last beat until the back
        took the line before it: the reader holds one line); the back takes it at
        ``ReadChannel.held``."""
        record, pushes = command.owner
        consumed = self.read.held[_LOAD]
        record.consumed = consumed
        self._load_retire(record, pushes, consumed + 2 + record.pad_hi)
        self._wake(_LOAD)
        return end

    def _load_retire(self, record: _LoadRecord, pushes: list[str], retire: int) -> None:
        record.retire = retire
        self.busy[_LOAD].add(record.take + 1, retire)
        self.retired[_LOAD] += 1
        self._push(pushes, retire)
        self._settle(_LOAD, max(retire + 1, record.handoff + 1))

    # -- compute unit ----------------------------------------------------------------------

    def _compute_unit(self):
        unit = _COMPUTE
        c = self.c
        # A streamed line's row reaches the accumulator's adder rows + cols + 1 cycles after
        # its issue and is committed (written, tokens pushed) a cycle later.
        pipe = 2 + c.rows + c.cols
        bank_ready = c.rows + c.cols - 2     # last input on a bank to a weight write there
        fsm_free = 0        # FSM back in IDLE
        loader_free = 0     # weight loader free
        drain_end = -1      # last accumulator write of streamed matmuls
        front = 0           # weight bank the array reads
        last_input = [None, None]
        matmul_state = (-1, -1)  # the last matmul's MATMUL state, inclusive cycles
        preload_from = 0    # a preload may be taken (FSM in IDLE or MATMUL) from here
        last_command: ReadCommand | None = None
        position = 0
        while True:
            while position >= self.queued[unit]:
                yield None
            index = self.units[unit][position]
            instr = self.instrs[index]
            values = instr.values
            op = instr.mnemonic
            visible = self._visible(unit, position)
            if op == "preload":
                # Taken in IDLE, or while the previous matmul streams.
                structural = max(visible, loader_free, preload_from)
            elif op == "matmul" and values["n"]:
                structural = max(visible, loader_free, fsm_free)
            else:
                structural = max(visible, loader_free, fsm_free, drain_end + 1)
            gate = max(visible, fsm_free)
            yield from self._wait_head(unit, position, structural, gate)
            take = self.now
            pushes = self._take(unit, values, take)
            if op == "preload":
                k = values["k"]
                back = 1 - front
                first = take + 2
                if last_input[back] is not None:
                    first = max(first, last_input[back] + bank_ready)
                streaming_until = matmul_state[1] + 1 if matmul_state[1] >= take else 0
                final = max(first + k - 1, streaming_until)
                if values["push_next"]:
                    # Its push must not overtake the rows of earlier matmuls.
                    final = max(final, drain_end + 1)
                loader_free = final + 1
                front = back
                self.busy[unit].add(take + 1, final)
                self._push(pushes, final)
            elif op == "matmul":
                n = values["n"]
                if n:
                    matmul_state = (take + 1, take + n)
                    last_input[front] = take + n + 1  # the array takes a line a cycle later
                    fsm_free = take + n + 1
                    drain_end = take + n + pipe
                    self._push(pushes, drain_end)
                else:
                    matmul_state = (take + 1, take + 1)
                    fsm_free = take + 2
                    self._push(pushes, take + 1)
                preload_from = take + 1
                self.busy[unit].add(take + 1, matmul_state[1])
            elif op == "alu":
                n = values["n"]
                finish = take + 2 + ALU_LATENCY + n if n else take + 2
                fsm_free = preload_from = finish + 1
                self.busy[unit].add(take + 1, finish)
                self._push(pushes, finish)
            else:  # loadacc
                n = values["n"]
                accepted = take + 2
                if n:
                    while last_command is not None and last_command.last_ar is None:
                        yield None
                    if last_command is not None:
                        accepted = max(accepted, last_command.last_ar)
                    while self.now < accepted:
                        yield accepted
                    size = 1 if values["type"] is AccLoadType.INT8 else 4
                    last_command = ReadCommand(
                        unit, accepted, n,
                        self._pattern(values["dram"], values["stride"], values["len"] * size))
                    self.read.submit(last_command)
                    self._dma_opens(unit, accepted + 1)
                    self._wake(_MEMORY)
                    while last_command.last_end is None:
                        yield None
                    end = last_command.last_end
                    # Each line goes to the accumulator's adder as it arrives; the adder
                    # writes it a cycle later, which counts as draining.
                    finish = end + 1
                    drain_end = max(drain_end, end + 2)
                else:
                    finish = take + 2
                fsm_free = preload_from = finish + 1
                self.busy[unit].add(take + 1, finish)
                self._push(pushes, finish)
            self.retired[unit] += 1
            self._settle(unit, max(fsm_free, drain_end + 1, loader_free))
            position += 1

    # -- store unit ------------------------------------------------------------------------

    def _store_unit(self):
        unit = _STORE
        timing = self.mem
        fsm_free = 0
        output_empty = 0              # every write response back
        aw_free = 0                   # writer planner: last address of the last command
        aw_next = 0                   # next write address handshake
        w_end = -1                    # last write beat
        line_free = -1                # the writer takes a new line from this cycle
        recent = deque(maxlen=max(1, timing.write_ahead))   # last beats of recent bursts
        responses = deque(maxlen=WRITE_RESPONSES)  # write responses of the last bursts
        stage_out: deque[int] = deque(maxlen=OUTPUT_STAGE_LATENCY)  # rows leaving the stage
        last_command: ReadCommand | None = None
        path_raw = False              # mode of the last STORE started (the output path)
        position = 0
        while True:
            while position >= self.queued[unit]:
                yield None
            index = self.units[unit][position]
            instr = self.instrs[index]
            values = instr.values
            op = instr.mnemonic
            visible = self._visible(unit, position)
            gate = max(visible, fsm_free)
            switches = op == "store" and (values["mode"] is StoreMode.INT32) != path_raw
            structural = (max(gate, output_empty) if op in ("loadq", "config") or switches
                          else gate)
            # Waiting for the output path to drain shows as a token wait in the RTL.
            yield from self._wait_head(unit, position, structural, gate)
            take = self.now
            if structural > gate and take > gate:
                self.stall_token.append((gate, min(structural, take)))
            pushes = self._take(unit, values, take)
            if op == "store":
                path_raw = values["mode"] is StoreMode.INT32
            if op == "config":
                finish = take + 1
            elif op == "loadq":
                accepted = take + 2
                while last_command is not None and last_command.last_ar is None:
                    yield None
                if last_command is not None:
                    accepted = max(accepted, last_command.last_ar)
                while self.now < accepted:
                    yield accepted
                length = 4 * values["len"]
                last_command = ReadCommand(unit, accepted, 3,
                                           self._pattern(values["dram"], length, length))
                self.read.submit(last_command)
                self._dma_opens(unit, accepted + 1)
                self._wake(_MEMORY)
                while last_command.last_end is None:
                    yield None
                finish = last_command.last_end + 1
            elif values["n"] == 0:
                finish = take + 2
                if values["push_prev"]:  # a pushing store waits for earlier writes
                    finish = max(finish + 1, output_empty)
            else:
                n = values["n"]
                raw = values["mode"] is StoreMode.INT32
                size = 4 if raw else 1
                accepted = max(take + 2, aw_free)
                addr, stride = self.window + values["dram"], values["stride"]
                length = values["len"] * size
                self.bytes_written += n * length
                pattern = line_pattern(addr, stride, length, self.bus)
                aw_ready = accepted + 1
                taken = accepted + 1          # the accumulator row of row 0 is read
                line_prev = -1                # the writer took the previous row
                # One row per pass, without calls: a store's rows are most of its cost.
                ahead, slack = timing.write_ahead, timing.write_slack
                response, write_latency = timing.write_response, timing.write_latency
                answered = responses[-1] if responses else -1   # the last response
                depth = responses.maxlen
                steps = pattern.steps
                period = len(steps)
                aw = aw_next if aw_next > aw_ready else aw_ready
                for row in range(n):
                    if ahead and len(recent) == ahead and recent[0] - slack > aw:
                        aw = recent[0] - slack
                    if len(responses) == depth and responses[0] + 1 > aw:
                        aw = responses[0] + 1
                    if raw:
                        taken += 1
                        if line_free > taken:
                            taken = line_free
                        line_at = taken
                    else:
                        taken += 1
                        if len(stage_out) == OUTPUT_STAGE_LATENCY and stage_out[0] > taken:
                            taken = stage_out[0]
                        line_at = taken + OUTPUT_STAGE_LATENCY
                        if line_prev + 1 > line_at:
                            line_at = line_prev + 1
                        if line_free > line_at:
                            line_at = line_free
                        stage_out.append(line_at)
                        line_prev = line_at
                    first_beat = line_at + 1
                    if aw + 1 > first_beat:
                        first_beat = aw + 1
                    if w_end + 1 > first_beat:
                        first_beat = w_end + 1
                    w_end = first_beat + steps[row % period] - 1
                    line_free = w_end
                    recent.append(w_end)
                    answered = max(w_end + response, aw + write_latency, answered + 1)
                    responses.append(answered)
                    aw += 1
                aw -= 1
                aw_next = aw + 1
                aw_free = aw
                finish = taken
                output_empty = answered + 1
                if values["push_prev"]:  # it pushes once its writes are acknowledged
                    finish = max(finish + 1, output_empty)
            fsm_free = finish + 1
            self.busy[unit].add(take + 1, finish)
            self._push(pushes, finish)
            self.retired[unit] += 1
            self._settle(unit, max(fsm_free, output_empty))
            position += 1
