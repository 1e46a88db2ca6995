"""The functional model: executes gemmstone programs bit-exactly. It defines the ISA.

Each instruction is executed as a few vectorized numpy operations. The three units (load,
compute, store) each run their queue in order; the dependency tokens between them are
modelled exactly, including the depth of the instruction and token queues, so a program
that deadlocks on the hardware deadlocks here too, and is reported instead of hanging.

What the model does not model is time: units are stepped in a fixed order, and a correctly
synchronized program gives the same memory whatever the interleaving.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from gemmstone.config import AcceleratorConfig
from gemmstone.isa.encoding import Instruction, decode
from gemmstone.isa.errors import (
    AddressError,
    DmaWindowError,
    ErrorCode,
    ExecutionError,
    OperandError,
    ProgramEndError,
    TokenError,
)
from gemmstone.isa.limits import check_config_fits
from gemmstone.isa.program import Program
from gemmstone.isa.table import AccLoadType, AluFunc, StoreMode, Unit

__all__ = ["FunctionalModel", "Counters", "RunResult", "run_program", "requantize"]

_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1
_EXECUTING_UNITS = (Unit.LOAD, Unit.COMPUTE, Unit.STORE)


@dataclass
class Counters:
    """What a run did, in the same terms as the hardware's performance counters."""

    instructions: dict[str, int] = field(
        default_factory=lambda: {u.name.lower(): 0 for u in Unit})
    dram_bytes_read: int = 0
    dram_bytes_written: int = 0
    macs: int = 0  # rows x cols per input row streamed: the array's work, useful or not

    @property
    def total_instructions(self) -> int:
        return sum(self.instructions.values())


def _sat32(values: np.ndarray) -> np.ndarray:
    return np.clip(values, _INT32_MIN, _INT32_MAX)


def _round_shift(values: np.ndarray, shift: np.ndarray | int) -> np.ndarray:
    """Arithmetic shift right by ``shift`` (0..63), rounding half up; int64 in and out.

    ``(p >> s) + bit s-1 of p`` equals floor(p / 2^s + 1/2) and never overflows.
    """
    shift = np.asarray(shift, dtype=np.int64)
    rounded = (values >> shift) + ((values >> np.maximum(shift - 1, 0)) & 1)
    return np.where(shift == 0, values, rounded)


def requantize(acc: np.ndarray, bias: np.ndarray, mult: np.ndarray, shift: np.ndarray,
               zp: int, lo: int, hi: int) -> np.ndarray:
    """The STORE int8 output stage on rows of accumulators (int32 [..., cols] -> int8)."""
    x = _sat32(acc.astype(np.int64) + bias.astype(np.int64))
    y = _round_shift(x * mult.astype(np.int64), shift.astype(np.int64) & 63)
    return np.clip(y + zp, lo, hi).astype(np.int8)


class _HandlerFaultError(Exception):
    """Raised inside an instruction handler; turned into the public exception with the
    instruction's index and text attached."""

    def __init__(self, kind: type, message: str, address: int | None = None,
                 code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.kind, self.message, self.address, self.code = kind, message, address, code


class FunctionalModel:
    """Bit-exact executor of gemmstone programs for one `AcceleratorConfig`.

    Parameters
    ----------
    config : AcceleratorConfig

    Members
    -------
    dram : numpy.ndarray
        uint8, ``config.dram_bytes`` long: the whole DRAM address space.
    spad : numpy.ndarray
        int8 [spad_lines, line_bytes].
    acc : numpy.ndarray
        int32 [acc_rows, cols].
    weights : numpy.ndarray
        int8 [rows, cols], the stationary weights.
    """

    def __init__(self, config: AcceleratorConfig) -> None:
        check_config_fits(config)
        self.config = config
        self.dram = np.zeros(config.dram_bytes, dtype=np.uint8)
        self.reset()

    def reset(self) -> None:
        """Clear on-chip state (not DRAM), as the hardware's reset does."""
        c = self.config
        self.spad = np.zeros((c.spad_lines, c.line_bytes), dtype=np.int8)
        self.acc = np.zeros((c.acc_rows, c.cols), dtype=np.int32)
        self.weights = np.zeros((c.rows, c.cols), dtype=np.int8)
        self.bias = np.zeros(c.cols, dtype=np.int32)
        self.mult = np.zeros(c.cols, dtype=np.int32)
        self.shift = np.zeros(c.cols, dtype=np.int32)
        self.out_zp, self.clamp_lo, self.clamp_hi = 0, -128, 127

    # -- running ------------------------------------------------------------------------

    def run(self, words: Sequence[int], *, window_base: int = 0,
            window_size: int | None = None, schedule_seed: int | None = None) -> Counters:
        """Execute ``words`` with the DMA window [window_base, window_base + window_size).

        By default the units are stepped in a fixed order, each as far as it can go. With
        ``schedule_seed``, dispatch and the units advance by random amounts in random order
        instead, as different hardware timings would: a program whose tokens do not order
        every dependency then gives different results for different seeds.

        Raises
        ------
        gemmstone.isa.ExecutionError
            The subclass says what went wrong; it names the instruction index and text.
        """
        c = self.config
        if window_size is None:
            window_size = c.dram_bytes - window_base
        if window_base < 0 or window_size < 0 or window_base + window_size > c.dram_bytes:
            raise ValueError(f"DMA window [{window_base:#x}, {window_base + window_size:#x}) "
                             f"does not fit the {c.dram_bytes:#x}-byte DRAM")
        self._base, self._window = window_base, window_size
        counters = Counters()
        self._counters = counters
        # Queues hold (index, instruction); tokens[(src, dst)] counts tokens in flight.
        queues: dict[Unit, deque[tuple[int, Instruction]]] = {u: deque() for u in
                                                               _EXECUTING_UNITS}
        tokens = {(Unit.LOAD, Unit.COMPUTE): 0, (Unit.COMPUTE, Unit.LOAD): 0,
                  (Unit.COMPUTE, Unit.STORE): 0, (Unit.STORE, Unit.COMPUTE): 0}
        pc = 0
        pending: Instruction | None = None  # fetched, waiting for room in its queue
        rng = random.Random(schedule_seed) if schedule_seed is not None else None
        stalled = False  # a random step moved nothing: the next step goes as far as it can
        unlimited = len(words) + 1
        while True:
            progressed = False
            full = rng is None or stalled
            budget = unlimited if full else rng.randint(0, 3)
            # Dispatch: in order, until a queue is full or a fence/halt must wait.
            while budget > 0:
                budget -= 1
                if pending is None:
                    if pc >= len(words):
                        if any(queues.values()):
                            break
                        raise ProgramEndError(
                            f"the program ended after {len(words)} instructions without halt",
                            index=pc, text="<end of program>")
                    pending = decode(int(words[pc]), index=pc)
                unit = pending.spec.unit
                if unit is Unit.DISPATCH:
                    if any(queues.values()):
                        break
                    counters.instructions["dispatch"] += 1
                    if pending.mnemonic == "halt":
                        left = {f"{s.name.lower()}->{d.name.lower()}": n
                                for (s, d), n in tokens.items() if n}
                        if left:
                            raise TokenError(
                                "tokens left in queues at halt: "
                                + ", ".join(f"{n} in {q}" for q, n in left.items()),
                                index=pc, text=str(pending))
                        return counters
                elif len(queues[unit]) >= c.queue_depth:
                    break
                else:
                    queues[unit].append((pc, pending))
                pending = None
                pc += 1
                progressed = True
            # Each unit runs as far as its tokens allow (or its random budget).
            order = _EXECUTING_UNITS if full else rng.sample(_EXECUTING_UNITS, 3)
            for unit in order:
                queue = queues[unit]
                budget = unlimited if full else rng.randint(0, 2)
                while budget > 0 and queue and self._tokens_ready(unit, queue[0][1], tokens):
                    budget -= 1
                    index, instr = queue.popleft()
                    self._execute(index, instr, unit, tokens)
                    progressed = True
            if not progressed and full:
                self._report_deadlock(queues, tokens, words, pc, pending)
            stalled = not progressed

    def _tokens_ready(self, unit: Unit, instr: Instruction, tokens: dict) -> bool:
        depth = self.config.token_depth
        for flag, other in self._neighbours(unit, instr, "pop"):
            if flag and tokens[(other, unit)] == 0:
                return False
        for flag, other in self._neighbours(unit, instr, "push"):
            if flag and tokens[(unit, other)] >= depth:
                return False
        return True

    @staticmethod
    def _neighbours(unit: Unit, instr: Instruction, action: str):
        values = instr.values
        yield values[f"{action}_prev"], Unit(unit - 1) if unit.has_prev else None
        yield values[f"{action}_next"], Unit(unit + 1) if unit.has_next else None

    def _execute(self, index: int, instr: Instruction, unit: Unit, tokens: dict) -> None:
        for flag, other in self._neighbours(unit, instr, "pop"):
            if flag:
                tokens[(other, unit)] -= 1
        try:
            self._HANDLERS[instr.mnemonic](self, instr.values)
        except _HandlerFaultError as fault:
            kwargs = {"index": index, "text": str(instr), "address": fault.address}
            if fault.code is not None:
                raise fault.kind(fault.message, code=fault.code, **kwargs) from None
            raise fault.kind(fault.message, **kwargs) from None
        self._counters.instructions[unit.name.lower()] += 1
        for flag, other in self._neighbours(unit, instr, "push"):
            if flag:
                tokens[(unit, other)] += 1

    def _report_deadlock(self, queues, tokens, words, pc, pending) -> None:
        """Nothing can move: name the blocked instruction, and whether it waits for a token
        no remaining instruction will ever push (underflow), for one whose producer cannot
        be dispatched because a queue is full, or for one whose producer is blocked too."""
        heads = [(queue[0][0], unit, queue[0][1]) for unit, queue in queues.items() if queue]
        index, unit, instr = min(heads, key=lambda head: head[0])
        queued = [(i, ins) for u in _EXECUTING_UNITS for i, ins in queues[u]]
        future = queued + self._decodable(words, pc)
        for flag, other in self._neighbours(unit, instr, "pop"):
            if not flag or tokens[(other, unit)]:
                continue
            push = "push_next" if other < unit else "push_prev"
            queue_name = f"{other.name.lower()}->{unit.name.lower()}"
            producers = sorted(i for i, ins in future if ins.spec.unit is other
                               and ins.values[push])
            if not producers:
                raise TokenError(
                    f"token underflow: pops a token from {queue_name} that no remaining "
                    f"instruction pushes", index=index, text=str(instr))
            if producers[0] >= pc:
                full = pending.spec.unit.name.lower()
                raise TokenError(
                    f"deadlock: waits for a token from {queue_name} that instruction "
                    f"{producers[0]} would push, but it cannot be dispatched while the {full} "
                    f"queue is full (depth {self.config.queue_depth})",
                    index=index, text=str(instr))
            raise TokenError(
                f"deadlock: waits for a token from {queue_name}, but every instruction "
                f"that could push it is blocked", index=index, text=str(instr))
        raise TokenError(
            "deadlock: its token queue is full and the consumer is blocked",
            index=index, text=str(instr))

    @staticmethod
    def _decodable(words: Sequence[int], start: int) -> list[tuple[int, Instruction]]:
        decoded = []
        for index in range(start, len(words)):
            try:
                decoded.append((index, decode(int(words[index]))))
            except ExecutionError:
                break  # execution would stop at this word anyway
        return decoded

    # -- checks shared by the handlers --------------------------------------------------

    def _dram_span(self, offset: int, lines: int, stride: int, length: int) -> None:
        """Fault unless every byte of ``lines`` lines of ``length`` bytes lies in the window.

        The faulting address is the highest byte offset the instruction would touch.
        """
        if lines == 0:
            return
        last = offset + (lines - 1) * stride + length - 1
        if last >= self._window:
            raise _HandlerFaultError(DmaWindowError,
                         f"DRAM access up to offset {last:#x} leaves the DMA window of "
                         f"{self._window:#x} bytes", address=last)

    def _spad_span(self, first: int, count: int) -> None:
        if count and first + count > self.config.spad_lines:
            raise _HandlerFaultError(AddressError,
                         f"scratchpad lines {first}..{first + count - 1} exceed the "
                         f"{self.config.spad_lines} lines", address=first + count - 1,
                         code=ErrorCode.SPAD_RANGE)

    def _acc_span(self, first: int, count: int) -> None:
        if count and first + count > self.config.acc_rows:
            raise _HandlerFaultError(AddressError,
                         f"accumulator rows {first}..{first + count - 1} exceed the "
                         f"{self.config.acc_rows} rows", address=first + count - 1,
                         code=ErrorCode.ACC_RANGE)

    @staticmethod
    def _operand(name: str, value: int, low: int, high: int) -> None:
        if not low <= value <= high:
            raise _HandlerFaultError(OperandError, f"{name} = {value} is outside {low}..{high}")

    def _dram_lines(self, offset: int, lines: int, stride: int, length: int) -> np.ndarray:
        """[lines, length] uint8 view-or-copy of strided DRAM lines (offsets in the window)."""
        start = self._base + offset
        index = start + np.arange(lines, dtype=np.int64)[:, None] * stride + np.arange(length)
        self._counters.dram_bytes_read += lines * length
        return self.dram[index]

    def _write_dram_lines(self, offset: int, stride: int, data: np.ndarray) -> None:
        lines, length = data.shape
        start = self._base + offset
        index = start + np.arange(lines, dtype=np.int64)[:, None] * stride + np.arange(length)
        self.dram[index] = data
        self._counters.dram_bytes_written += data.size

    # -- instruction handlers (one per table entry) -------------------------------------

    def _load(self, v) -> None:
        c = self.config
        self._operand("len", v["len"], 1, c.line_bytes)
        total = v["pad_lo"] + v["n"] + v["pad_hi"]
        self._spad_span(v["spad"], total)
        self._dram_span(v["dram"], v["n"], v["stride"], v["len"])
        block = np.zeros((total, c.line_bytes), dtype=np.int8)
        block[v["pad_lo"]:v["pad_lo"] + v["n"], :v["len"]] = self._dram_lines(
            v["dram"], v["n"], v["stride"], v["len"]).view(np.int8)
        self.spad[v["spad"]:v["spad"] + total] = block

    def _loadacc(self, v) -> None:
        c = self.config
        self._operand("len", v["len"], 1, c.cols)
        n, length = v["n"], v["len"]
        self._acc_span(v["acc"], n)
        size = 1 if v["type"] is AccLoadType.INT8 else 4
        self._dram_span(v["dram"], n, v["stride"], length * size)
        raw = self._dram_lines(v["dram"], n, v["stride"], length * size)
        values = raw.view(np.int8) if size == 1 else raw.view("<i4")
        rows = slice(v["acc"], v["acc"] + n)
        if v["accumulate"]:
            # Accumulating adds wrap around like MATMUL's adders.
            self.acc[rows, :length] = (self.acc[rows, :length].astype(np.int64)
                                       + values).astype(np.int32)
        else:
            self.acc[rows] = 0
            self.acc[rows, :length] = values

    def _loadq(self, v) -> None:
        c = self.config
        length = v["len"]
        self._operand("len", length, 1, c.cols)
        self._dram_span(v["dram"], 1, 0, 12 * length)
        words = self._dram_lines(v["dram"], 1, 0, 12 * length)[0].view("<i4")
        for target, part in zip((self.bias, self.mult, self.shift), range(3), strict=True):
            target[:] = 0
            target[:length] = words[part * length:(part + 1) * length]

    def _store(self, v) -> None:
        c = self.config
        n, length = v["n"], v["len"]
        self._operand("len", length, 1, c.cols)
        self._acc_span(v["acc"], n)
        raw = v["mode"] is StoreMode.INT32
        self._dram_span(v["dram"], n, v["stride"], length * (4 if raw else 1))
        rows = self.acc[v["acc"]:v["acc"] + n, :length]
        if raw:
            data = rows.astype("<i4").view(np.uint8).reshape(n, 4 * length)
        else:
            data = requantize(rows, self.bias[:length], self.mult[:length],
                              self.shift[:length], self.out_zp, self.clamp_lo,
                              self.clamp_hi).view(np.uint8)
        self._write_dram_lines(v["dram"], v["stride"], data)

    def _config(self, v) -> None:
        if v["lo"] > v["hi"]:
            raise _HandlerFaultError(OperandError, f"clamp lo = {v['lo']} is above hi = {v['hi']}")
        self.out_zp, self.clamp_lo, self.clamp_hi = v["zp"], v["lo"], v["hi"]

    def _preload(self, v) -> None:
        c = self.config
        self._operand("k", v["k"], 1, c.rows)
        self._spad_span(v["spad"], v["k"])
        self.weights[:] = 0
        self.weights[:v["k"]] = self.spad[v["spad"]:v["spad"] + v["k"], :c.cols]

    def _matmul(self, v) -> None:
        c = self.config
        n = v["n"]
        self._spad_span(v["spad"], n)
        self._acc_span(v["acc"], n)
        inputs = self.spad[v["spad"]:v["spad"] + n, :c.rows].astype(np.int64)
        product = inputs @ self.weights.astype(np.int64)
        rows = slice(v["acc"], v["acc"] + n)
        if v["accumulate"]:
            product += self.acc[rows]
        self.acc[rows] = product.astype(np.int32)  # wraps modulo 2^32, as the adders do
        self._counters.macs += n * c.rows * c.cols

    def _alu(self, v) -> None:
        n, func = v["n"], v["func"]
        self._acc_span(v["dst"], n)
        rows = slice(v["dst"], v["dst"] + n)
        d = self.acc[rows].astype(np.int64)
        if v["use_imm"]:
            b = np.int64(v["imm"])
        else:
            self._acc_span(v["src"], n)
            if v["src"] != v["dst"] and abs(v["src"] - v["dst"]) < n:
                # Rows stream through a pipeline: a partly overlapping source would be read
                # after some of its rows were overwritten, so the ISA forbids it.
                raise _HandlerFaultError(
                    OperandError, f"src rows {v['src']}..{v['src'] + n - 1} partly overlap "
                    f"dst rows {v['dst']}..{v['dst'] + n - 1}")
            b = self.acc[v["src"]:v["src"] + n].astype(np.int64)
        if func is AluFunc.ADD:
            out = _sat32(d + b)
        elif func is AluFunc.SUB:
            out = _sat32(d - b)
        elif func is AluFunc.MAX:
            out = np.maximum(d, b)
        elif func is AluFunc.MIN:
            out = np.minimum(d, b)
        elif func is AluFunc.SHR:
            out = _round_shift(d, b & 31)
        elif func is AluFunc.SHL:
            out = _sat32(d << (b & 31))
        elif func is AluFunc.MOV:
            out = np.broadcast_to(b, d.shape)
        else:  # MULSHR: the 64-bit product of two int32 values cannot overflow
            out = _sat32(_round_shift(d * b, v["shift"]))
        self.acc[rows] = out

    _HANDLERS = {
        "load": _load, "loadacc": _loadacc, "loadq": _loadq, "store": _store,
        "config": _config, "preload": _preload, "matmul": _matmul, "alu": _alu,
    }


@dataclass
class RunResult:
    """Outputs of `run_program`: every named buffer read back, and the counters."""

    outputs: dict[str, np.ndarray]
    counters: Counters


def run_program(program: Program, config: AcceleratorConfig,
                inputs: dict[str, np.ndarray] | None = None, *, window_base: int = 0,
                model: FunctionalModel | None = None,
                schedule_seed: int | None = None) -> RunResult:
    """Place a program's constants and inputs in a DMA window, run it, read every buffer.

    ``schedule_seed`` randomizes the units' interleaving (see `FunctionalModel.run`).

    Raises
    ------
    gemmstone.isa.ProgramFormatError
        The program was built for another config or ISA.
    ValueError
        An input names no buffer of the program, or its shape or dtype differs.
    """
    program.check_config(config)
    model = model or FunctionalModel(config)
    end = window_base + program.window_size
    if end > config.dram_bytes:
        raise ValueError(f"the program's window [{window_base:#x}, {end:#x}) does not fit "
                         f"the {config.dram_bytes:#x}-byte DRAM")
    for segment in program.segments:
        start = window_base + segment.offset
        model.dram[start:start + len(segment.data)] = np.frombuffer(segment.data, np.uint8)
    for name, value in (inputs or {}).items():
        buffer = program.buffers.get(name)
        if buffer is None:
            raise ValueError(f"input {name!r} is not a buffer of the program; buffers are "
                             f"{', '.join(program.buffers)}")
        array = np.asarray(value)
        if array.shape != buffer.shape or array.dtype != np.dtype(buffer.dtype):
            raise ValueError(f"input {name!r} is {array.dtype}{list(array.shape)}, the program "
                             f"expects {buffer.dtype}{list(buffer.shape)}")
        start = window_base + buffer.offset
        model.dram[start:start + buffer.nbytes] = np.ascontiguousarray(array).view(
            np.uint8).reshape(-1)
    counters = model.run(program.words, window_base=window_base,
                         window_size=program.window_size, schedule_seed=schedule_seed)
    outputs = {}
    for name, buffer in program.buffers.items():
        start = window_base + buffer.offset
        raw = model.dram[start:start + buffer.nbytes]
        outputs[name] = raw.view(np.dtype(buffer.dtype).newbyteorder("<")).reshape(
            buffer.shape).astype(buffer.dtype)
    return RunResult(outputs, counters)
