"""Random valid programs: stimulus for differential tests of the RTL against this model.

`random_program` builds a program that uses every instruction kind with operands in range
for the config (DRAM accesses inside the window, odd strides, zero padding, ``n = 0``,
every ALU function, both store modes, ...), a window filled with random bytes, and random
dependency tokens. Every program it returns is

- valid: no instruction faults, and the tokens follow the protocol that
  `gemmstone.compiler.builder.ProgramBuilder` enforces: per token queue the k-th pop comes
  after the k-th push in program order, executed in program order no queue ever holds
  more than ``config.token_depth`` tokens, no token crosses a FENCE and none is left at
  HALT (so it cannot deadlock, whatever the queue depths and timing);
- self-contained: it reads only scratchpad lines, accumulator rows and weights it wrote
  itself, so leftovers of an earlier run on the same hardware cannot change its result
  (the output-stage parameters it may use at their ISA reset values);
- race-free by construction: whenever two instructions of different units touch the same
  scratchpad line, accumulator row or DRAM byte and one of them writes it, the later one
  (in program order) starts only after the earlier one has completed, through a chain of
  tokens or a FENCE. Its final memory is then that of plain sequential execution, whatever
  the units' relative timing.

Tokens are placed as pairs: when an instruction needs to wait for work of another unit
(or, at random, when it need not), it pops a token and the push is set on a suitable
earlier instruction of the neighbouring unit. Happens-before is tracked with vector
clocks; when no token can order a conflicting pair (LOAD and STORE share no queue and no
relay fits), a FENCE is inserted instead.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass

import numpy as np

from gemmstone.config import AcceleratorConfig
from gemmstone.isa.encoding import encode, make
from gemmstone.isa.program import Program, Segment
from gemmstone.isa.table import BY_MNEMONIC, AccLoadType, AluFunc, StoreMode, Unit

__all__ = ["random_program", "TOKEN_QUEUES"]

_UNITS = (Unit.LOAD, Unit.COMPUTE, Unit.STORE)
_KINDS = {  # relative frequency of each instruction kind
    "load": 18, "loadacc": 9, "loadq": 4, "config": 4, "preload": 9, "matmul": 18,
    "alu": 14, "store": 16, "fence": 2,
}
_MAX_LINES = 8  # rows or lines per instruction: keeps the Verilator runs short
_EMPTY_PROBABILITY = 0.07  # n = 0: the instruction moves no data, only its tokens


@dataclass(frozen=True)
class _Queue:
    producer: Unit
    push: str
    consumer: Unit
    pop: str


#: The four token queues: producer unit, its push flag, consumer unit, its pop flag.
TOKEN_QUEUES = {
    "load->compute": _Queue(Unit.LOAD, "push_next", Unit.COMPUTE, "pop_prev"),
    "compute->load": _Queue(Unit.COMPUTE, "push_prev", Unit.LOAD, "pop_next"),
    "compute->store": _Queue(Unit.COMPUTE, "push_next", Unit.STORE, "pop_prev"),
    "store->compute": _Queue(Unit.STORE, "push_prev", Unit.COMPUTE, "pop_next"),
}


def random_program(config: AcceleratorConfig, seed: int, *, length: int = 60,
                   window_size: int = 4096, extra_tokens: float = 0.3) -> Program:
    """A random valid, self-contained, race-free program for ``config`` (module docstring).

    Parameters
    ----------
    config : AcceleratorConfig
    seed : int
        Equal seeds (and other arguments) give equal programs.
    length : int
        Instructions to generate (a FENCE drawn at random counts; the FENCEs ordering
        needs and HALT do not). A shorter program of the same seed is a prefix of a longer
        one but for push flags, so lengths can be bisected.
    window_size : int
        Bytes of DMA window; the program's "data" segment fills all of it with random
        bytes. Small windows make instructions share DRAM more often.
    extra_tokens : float
        Probability that an instruction pops a token it does not need (for each queue it
        can pop from), so tokens also stall work that is independent.

    Returns
    -------
    gemmstone.isa.Program
        Its notes hold the generator's arguments.

    Raises
    ------
    ValueError
        ``length`` below 1, or a window below ``64 * cols`` bytes (room for the widest
        accesses: LOADQ's ``12 * cols`` bytes, eight int32 rows of ``4 * cols``).
    """
    if not isinstance(length, int) or length < 1:
        raise ValueError(f"'length' must be a positive integer, not {length!r}")
    if not isinstance(window_size, int) or window_size < 64 * config.cols:
        raise ValueError(f"'window_size' must be an integer of at least 64 x cols = "
                         f"{64 * config.cols} bytes, not {window_size!r}")
    generator = _Generator(config, seed, window_size, extra_tokens)
    for _ in range(length):
        generator.add_random()
    return generator.finish(notes={"generator": "gemmstone.sim.random_programs", "seed": seed,
                                   "length": length, "window_size": window_size,
                                   "extra_tokens": extra_tokens})


@dataclass
class _Entry:
    """One generated instruction (fields stay editable: pushes are set retroactively)."""

    mnemonic: str
    values: dict
    unit: Unit
    seq: int                       # position in its unit's order
    start: tuple[int, int, int]    # per unit: how many of its instructions complete first

    @property
    def complete(self) -> tuple[int, int, int]:
        """The vector clock after this instruction completes."""
        clock = list(self.start)
        clock[self.unit] = self.seq + 1
        return tuple(clock)


class _Footprint:
    """What an instruction reads and writes of the three shared resources."""

    def __init__(self) -> None:
        self.reads: list[tuple[str, np.ndarray]] = []
        self.writes: list[tuple[str, np.ndarray]] = []

    def read(self, resource: str, index: np.ndarray) -> None:
        if index.size:
            self.reads.append((resource, index))

    def write(self, resource: str, index: np.ndarray) -> None:
        if index.size:
            self.writes.append((resource, index))


def _strided(offset: int, lines: int, stride: int, length: int) -> np.ndarray:
    if lines == 0:
        return np.zeros(0, np.int64)
    index = offset + np.arange(lines, dtype=np.int64)[:, None] * stride + np.arange(length)
    return np.unique(index)


class _Generator:
    def __init__(self, config: AcceleratorConfig, seed: int, window: int,
                 extra_tokens: float) -> None:
        self.c = config
        self.rng = random.Random(seed)
        self.window = window
        self.extra_tokens = extra_tokens
        self.image = np.random.default_rng(seed).integers(0, 256, window, dtype=np.uint8)
        # Small on-chip regions, so instructions often share lines and rows.
        self.spad_lines = min(config.spad_lines, 48)
        self.acc_rows = min(config.acc_rows, 48)
        self.entries: list[_Entry | None] = []   # None: a FENCE
        self.by_unit: dict[Unit, list[int]] = {u: [] for u in _UNITS}
        self.fence_floor = (0, 0, 0)
        self.last_fence = -1
        self.last_pushed = dict.fromkeys(TOKEN_QUEUES, -1)
        self.in_flight: dict[str, list[int]] = {q: [] for q in TOKEN_QUEUES}
        sizes = {"spad": config.spad_lines, "acc": config.acc_rows, "dram": window}
        # Per resource and unit: the unit position of the last reader / writer of each item.
        self.last_reader = {r: np.full((3, n), -1, np.int64) for r, n in sizes.items()}
        self.last_writer = {r: np.full((3, n), -1, np.int64) for r, n in sizes.items()}
        self.spad_defined = np.zeros(config.spad_lines, bool)
        self.acc_defined = np.zeros(config.acc_rows, bool)
        self.weights_defined = False
        self.recent_stores: list[tuple[int, int]] = []  # (offset, bytes) of stored lines

    # -- the program ----------------------------------------------------------------------

    def finish(self, notes: dict) -> Program:
        words = []
        for entry in self.entries:
            instr = make("fence") if entry is None else make(entry.mnemonic, **entry.values)
            words.append(encode(instr))
        words.append(encode(make("halt")))
        return Program(config_hash=self.c.content_hash, words=words, window_size=self.window,
                       segments=[Segment("data", 0, self.image.tobytes())], notes=notes)

    def add_random(self) -> None:
        kinds, weights = zip(*_KINDS.items(), strict=True)
        while True:
            kind = self.rng.choices(kinds, weights)[0]
            if kind == "fence":
                self.fence()
                return
            made = getattr(self, f"_make_{kind}")()
            if made is not None:
                self.add(kind, *made)
                return

    def fence(self) -> None:
        if not self.entries or self.entries[-1] is None:
            return  # a FENCE first or right after another orders nothing
        self.entries.append(None)
        self.fence_floor = tuple(len(self.by_unit[u]) for u in _UNITS)
        self.last_fence = len(self.entries) - 1
        for counts in self.in_flight.values():
            counts.append(0)

    def add(self, mnemonic: str, values: dict, footprint: _Footprint) -> None:
        """Append an instruction, with the pops (or the FENCE) that order it after every
        conflicting instruction of another unit."""
        unit = BY_MNEMONIC[mnemonic].unit
        need = self._conflicts(unit, footprint)
        pops = self._choose_pops(unit, need)
        if pops is None:
            self.fence()
            pops = {}
        start = self._start_clock(unit, pops)
        index = len(self.entries)
        values = {**values}
        for name, producer in pops.items():
            queue = TOKEN_QUEUES[name]
            self.entries[producer].values[queue.push] = 1
            values[queue.pop] = 1
            self.last_pushed[name] = producer
            counts = self.in_flight[name]
            for i in range(producer, index):
                counts[i] += 1
        for counts in self.in_flight.values():
            counts.append(0)
        seq = len(self.by_unit[unit])
        self.entries.append(_Entry(mnemonic, values, unit, seq, start))
        self.by_unit[unit].append(index)
        for resource, items in footprint.reads:
            self.last_reader[resource][unit, items] = seq
        for resource, items in footprint.writes:
            self.last_writer[resource][unit, items] = seq

    # -- ordering -----------------------------------------------------------------------

    def _conflicts(self, unit: Unit, footprint: _Footprint) -> dict[Unit, int]:
        """Per other unit: the position of its last instruction that conflicts."""
        need = {}
        for other in _UNITS:
            if other is unit:
                continue
            last = -1
            for resource, items in footprint.reads:
                last = max(last, int(self.last_writer[resource][other, items].max()))
            for resource, items in footprint.writes:
                last = max(last, int(self.last_writer[resource][other, items].max()),
                           int(self.last_reader[resource][other, items].max()))
            if last >= 0:
                need[other] = last
        return need

    def _base_clock(self, unit: Unit) -> tuple[int, int, int]:
        clock = self.fence_floor
        if self.by_unit[unit]:
            clock = _join(clock, self.entries[self.by_unit[unit][-1]].complete)
        return clock

    def _start_clock(self, unit: Unit, pops: dict[str, int]) -> tuple[int, int, int]:
        clock = self._base_clock(unit)
        for producer in pops.values():
            clock = _join(clock, self.entries[producer].complete)
        return clock

    def _candidates(self, name: str) -> list[int]:
        """Instructions that may take the next push of queue ``name`` for a pop now."""
        queue = TOKEN_QUEUES[name]
        producers = self.by_unit[queue.producer]
        first = max(self.last_pushed[name], self.last_fence) + 1
        counts = self.in_flight[name]
        candidates = []
        # The depth check: executed in program order, the queue must have room from the
        # push to this pop. Later producers have shorter spans, so scan from the end.
        worst = 0
        end = len(self.entries)
        for producer in reversed(producers[bisect.bisect_left(producers, first):]):
            worst = max([worst, *counts[producer:end]])
            end = producer
            if worst + 1 > self.c.token_depth:
                break
            candidates.append(producer)
        candidates.reverse()
        return candidates

    def _choose_pops(self, unit: Unit, need: dict[Unit, int]) -> dict[str, int] | None:
        """Pops (queue name -> producing instruction) that order ``unit``'s next
        instruction after ``need``; None when only a FENCE can."""
        clock = self._base_clock(unit)
        missing = {u: last for u, last in need.items() if clock[u] <= last}
        pops = {}
        names = [name for name, q in TOKEN_QUEUES.items() if q.consumer is unit]
        self.rng.shuffle(names)
        for name in names:
            candidates = self._candidates(name)
            if not candidates:
                continue
            latest = self.entries[candidates[-1]].complete
            helps = [u for u, last in missing.items() if latest[u] > last]
            if helps:
                good = [p for p in candidates
                        if all(self.entries[p].complete[u] > missing[u] for u in helps)]
                pops[name] = self.rng.choice(good)
                for u in helps:
                    del missing[u]
            elif self.rng.random() < self.extra_tokens:
                pops[name] = self.rng.choice(candidates)
                complete = self.entries[pops[name]].complete
                missing = {u: last for u, last in missing.items() if complete[u] <= last}
        return None if missing else pops

    # -- operands -------------------------------------------------------------------------

    def _lines(self) -> int:
        if self.rng.random() < _EMPTY_PROBABILITY:
            return 0
        return self.rng.randint(1, _MAX_LINES)

    def _defined_start(self, defined: np.ndarray, limit: int, count: int) -> int | None:
        """A random start of ``count`` consecutive defined items below ``limit``."""
        if count == 0:
            return self.rng.randrange(limit)
        window = np.convolve(defined[:limit].astype(np.int64), np.ones(count, np.int64),
                             "valid")
        starts = np.flatnonzero(window == count)
        return int(self.rng.choice(starts)) if starts.size else None

    def _dram(self, lines: int, stride: int, length: int, *, reuse: bool = False) -> int:
        """A window offset where ``lines`` lines of ``length`` bytes at ``stride`` fit."""
        if lines == 0:
            return self.rng.randrange(self.window)
        span = (lines - 1) * stride + length
        if reuse and self.recent_stores and self.rng.random() < 0.4:
            offset = self.rng.choice(self.recent_stores)[0] + self.rng.randint(-4, 4)
            if 0 <= offset <= self.window - span:
                return offset
        return self.rng.randint(0, self.window - span)

    def _stride(self, lines: int, length: int, *, overlap: bool) -> int:
        """A line stride: tight, wider or odd, or (when ``overlap``) shorter than a line."""
        limit = max(1, (self.window - length) // max(1, lines - 1))
        choices = [length, length + self.rng.randint(1, 37), self.c.line_bytes,
                   2 * self.rng.randint(0, 40) + 1]
        if overlap:
            choices.append(self.rng.randint(0, length))
        stride = self.rng.choice(choices)
        if not overlap:
            stride = max(stride, length)
        return min(stride, limit) if lines > 1 else stride

    # -- one maker per instruction kind: (fields, footprint) or None when it cannot run ----

    def _make_load(self):
        rng, c = self.rng, self.c
        n = self._lines()
        length = rng.randint(1, c.line_bytes)
        pads = [0 if rng.random() < 0.7 else rng.randint(1, 3) for _ in range(2)]
        total = pads[0] + n + pads[1]
        stride = self._stride(n, length, overlap=True)
        dram = self._dram(n, stride, length, reuse=True)
        spad = rng.randint(0, self.spad_lines - total)
        footprint = _Footprint()
        footprint.read("dram", _strided(dram, n, stride, length))
        footprint.write("spad", np.arange(spad, spad + total))
        self.spad_defined[spad:spad + total] = True
        return ({"dram": dram, "stride": stride, "spad": spad, "n": n, "len": length,
                 "pad_lo": pads[0], "pad_hi": pads[1]}, footprint)

    def _make_loadacc(self):
        rng, c = self.rng, self.c
        n = self._lines()
        length = rng.randint(1, c.cols)
        kind = rng.choice(list(AccLoadType))
        size = 1 if kind is AccLoadType.INT8 else 4
        accumulate = rng.random() < 0.4
        acc = self._defined_start(self.acc_defined, self.acc_rows, n) if accumulate else None
        if acc is None:
            accumulate = False
            acc = rng.randint(0, self.acc_rows - n)
        stride = self._stride(n, length * size, overlap=True)
        dram = self._dram(n, stride, length * size, reuse=True)
        footprint = _Footprint()
        footprint.read("dram", _strided(dram, n, stride, length * size))
        rows = np.arange(acc, acc + n)
        footprint.write("acc", rows)
        if accumulate:
            footprint.read("acc", rows)
        self.acc_defined[acc:acc + n] = True
        return ({"dram": dram, "stride": stride, "acc": acc, "n": n, "len": length,
                 "type": kind, "accumulate": int(accumulate)}, footprint)

    def _make_loadq(self):
        rng, c = self.rng, self.c
        length = rng.randint(1, c.cols)
        dram = self._dram(1, 0, 12 * length, reuse=True)
        if rng.random() < 0.7:
            # Parameters that requantize to a spread of int8 values rather than saturating;
            # the shift word's bits above [5:0] must be ignored.
            bias = [rng.randint(-3000, 3000) for _ in range(length)]
            mult = [rng.randint(-(1 << 16), 1 << 16) for _ in range(length)]
            shift = [rng.randint(0, 30) | (rng.getrandbits(26) << 6 if rng.random() < 0.2
                                           else 0) for _ in range(length)]
            words = np.array(bias + mult + shift, np.int64).astype("<u4").view(np.uint8)
            self.image[dram:dram + words.size] = words
        footprint = _Footprint()
        footprint.read("dram", np.arange(dram, dram + 12 * length))
        return {"dram": dram, "len": length}, footprint

    def _make_config(self):
        rng = self.rng
        lo, hi = sorted(rng.randint(-128, 127) for _ in range(2))
        return {"zp": rng.randint(-128, 127), "lo": lo, "hi": hi}, _Footprint()

    def _make_preload(self):
        k = self.rng.randint(1, self.c.rows)
        spad = self._defined_start(self.spad_defined, self.spad_lines, k)
        if spad is None:
            return None
        footprint = _Footprint()
        footprint.read("spad", np.arange(spad, spad + k))
        self.weights_defined = True
        return {"spad": spad, "k": k}, footprint

    def _make_matmul(self):
        rng = self.rng
        n = self._lines()
        if n and not self.weights_defined:
            return None
        spad = self._defined_start(self.spad_defined, self.spad_lines, n)
        if spad is None:
            return None
        accumulate = rng.random() < 0.4
        acc = self._defined_start(self.acc_defined, self.acc_rows, n) if accumulate else None
        if acc is None:
            accumulate = False
            acc = rng.randint(0, self.acc_rows - n)
        footprint = _Footprint()
        footprint.read("spad", np.arange(spad, spad + n))
        rows = np.arange(acc, acc + n)
        footprint.write("acc", rows)
        if accumulate:
            footprint.read("acc", rows)
        self.acc_defined[acc:acc + n] = True
        return {"spad": spad, "acc": acc, "n": n, "accumulate": int(accumulate)}, footprint

    def _make_alu(self):
        rng = self.rng
        n = self._lines()
        func = rng.choice(list(AluFunc))
        # MOV ignores the old rows, so it may write rows nothing defined yet.
        if func is AluFunc.MOV and rng.random() < 0.5:
            dst = rng.randint(0, self.acc_rows - n)
        else:
            dst = self._defined_start(self.acc_defined, self.acc_rows, n)
            if dst is None:
                return None
        use_imm = rng.random() < 0.4
        src = 0
        if not use_imm:
            if rng.random() < 0.3 and self.acc_defined[dst:dst + n].all():
                src = dst
            else:
                src = self._defined_start(self._disjoint(dst, n), self.acc_rows, n)
                if src is None:
                    return None
        imm = (rng.randint(-(1 << 31), (1 << 31) - 1) if rng.random() < 0.3
               else rng.randint(-70, 70))
        footprint = _Footprint()
        rows = np.arange(dst, dst + n)
        footprint.read("acc", rows)
        footprint.write("acc", rows)
        if not use_imm:
            footprint.read("acc", np.arange(src, src + n))
        self.acc_defined[dst:dst + n] = True
        return ({"func": func, "dst": dst, "src": src, "n": n, "use_imm": int(use_imm),
                 "shift": rng.randint(0, 63), "imm": imm}, footprint)

    def _disjoint(self, dst: int, n: int) -> np.ndarray:
        """Defined rows outside [dst, dst + n): a source run of them is disjoint from dst."""
        allowed = self.acc_defined.copy()
        allowed[dst:dst + n] = False
        return allowed

    def _make_store(self):
        rng, c = self.rng, self.c
        n = self._lines()
        acc = self._defined_start(self.acc_defined, self.acc_rows, n)
        if acc is None:
            return None
        mode = rng.choice(list(StoreMode))
        length = rng.randint(1, c.cols)
        line = length * (4 if mode is StoreMode.INT32 else 1)
        stride = self._stride(n, line, overlap=False)
        dram = self._dram(n, stride, line)
        footprint = _Footprint()
        footprint.read("acc", np.arange(acc, acc + n))
        footprint.write("dram", _strided(dram, n, stride, line))
        if n:
            self.recent_stores = ([(dram + i * stride, line) for i in range(n)]
                                  + self.recent_stores)[:16]
        fields = {"dram": dram, "stride": stride, "acc": acc, "n": n, "len": length, "mode": mode}
        return fields, footprint


def _join(a: tuple[int, int, int], b: tuple[int, int, int]) -> tuple[int, int, int]:
    return tuple(max(x, y) for x, y in zip(a, b, strict=True))
