"""`ProgramBuilder`: lays out a DMA window and collects instructions into a `Program`.

The builder owns three address spaces of one program: the DMA window (named buffers, some
of them constant segments), the scratchpad and the accumulator (round-robin `Slots` for
double buffering). It also keeps the dependency tokens balanced: kernels set push flags
freely, and at every fence and at halt the pushes no pop will ever consume are cleared,
so no token is left in a queue.

Token pairing: per token queue, the k-th push (in program order, within the producing
unit) is consumed by the k-th pop (within the consuming unit), because both units run in
order. The builder requires the k-th push to come before the k-th pop in program order:
and, executed one instruction at a time in program order, no queue may ever hold more than
``config.token_depth`` tokens. Then the earliest instruction not yet executed can always
run, so the program cannot deadlock whatever the units' relative speed and the instruction
queue depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gemmstone.config import AcceleratorConfig
from gemmstone.isa.encoding import Instruction, decode, encode, make
from gemmstone.isa.limits import check_config_fits
from gemmstone.isa.program import Buffer, Program, Segment
from gemmstone.isa.table import BY_MNEMONIC, TOKEN_FIELDS, Unit

__all__ = ["ProgramBuilder", "Slots", "BuildError", "ALIGNMENT", "TOKEN_QUEUES"]

ALIGNMENT = 16  # bytes; buffers start on a DRAM bus beat (and instruction word) boundary

_DTYPES = {"int8": np.dtype("i1"), "uint8": np.dtype("u1"), "int32": np.dtype("<i4")}

# name -> (producer unit, its push flag, consumer unit, its pop flag)
TOKEN_QUEUES = {
    "load->compute": (Unit.LOAD, "push_next", Unit.COMPUTE, "pop_prev"),
    "compute->load": (Unit.COMPUTE, "push_prev", Unit.LOAD, "pop_next"),
    "compute->store": (Unit.COMPUTE, "push_next", Unit.STORE, "pop_prev"),
    "store->compute": (Unit.STORE, "push_prev", Unit.COMPUTE, "pop_next"),
}


# Every word keeps its opcode in bits [0, 4) and its token flags at fixed bits of the low half.
_TOKEN_BIT = {f.name: np.uint64(1 << f.lsb) for f in TOKEN_FIELDS}
_UNIT_OF_OPCODE = np.full(16, -1, np.int8)
for _spec in BY_MNEMONIC.values():
    _UNIT_OF_OPCODE[_spec.opcode] = int(_spec.unit)
_LOW = (1 << 64) - 1


class BuildError(ValueError):
    """A program cannot be built: out of on-chip space, unbalanced tokens, bad buffer."""


@dataclass(frozen=True)
class Slots:
    """``count`` equal on-chip regions of ``size`` lines (or rows) used round-robin.

    Use number ``i`` goes to region ``i % count``; from use ``count`` on, a region is
    reused, so its producer must first wait for the consumer of use ``i - count`` to
    release it (`must_wait`).

    Parameters
    ----------
    base : int
        First line (scratchpad) or row (accumulator) of region 0.
    size : int
        Lines or rows per region.
    count : int
        Number of regions (2 for double buffering).
    """

    base: int
    size: int
    count: int

    def __getitem__(self, use: int) -> int:
        return self.base + (use % self.count) * self.size

    def must_wait(self, use: int) -> bool:
        """Whether use ``use`` reuses a region an earlier use may still hold."""
        return use >= self.count


class ProgramBuilder:
    """Builds one `gemmstone.isa.Program` for ``config``.

    Parameters
    ----------
    config : AcceleratorConfig

    Members
    -------
    config : AcceleratorConfig
    buffers : dict[str, gemmstone.isa.Buffer]
        Every buffer allocated so far, by name.
    """

    def __init__(self, config: AcceleratorConfig) -> None:
        check_config_fits(config)
        self.config = config
        self.buffers: dict[str, Buffer] = {}
        self._segments: list[Segment] = []
        self._window = 0
        # Words as two uint64 halves (bits [0, 64) and [64, 128)), grown by doubling.
        self._lo = np.zeros(1024, np.uint64)
        self._hi = np.zeros(1024, np.uint64)
        self._count = 0
        self._settled = 0  # instructions before this index have balanced tokens
        self._spad_used = 0
        self._acc_used = 0
        self._finished = False

    def __len__(self) -> int:
        return self._count

    # -- DMA window ---------------------------------------------------------------------

    def buffer(self, name: str, shape: tuple[int, ...] | int, dtype: str = "int8",
               data: np.ndarray | None = None) -> Buffer:
        """Allocate a named row-major tensor in the DMA window, aligned to `ALIGNMENT`.

        With ``data`` the buffer is also a constant segment holding ``data``.

        Raises
        ------
        BuildError
            Duplicate name, unknown dtype, a non-positive dimension, or ``data`` whose
            shape or values do not fit.
        """
        if name in self.buffers:
            raise BuildError(f"buffer {name!r} is already allocated")
        if dtype not in _DTYPES:
            raise BuildError(f"buffer {name!r}: dtype must be one of "
                             f"{', '.join(map(repr, _DTYPES))}, not {dtype!r}")
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        if not shape or any(not isinstance(d, int) or d < 1 for d in shape):
            raise BuildError(f"buffer {name!r}: shape must be positive integers, not {shape}")
        offset = -(-self._window // ALIGNMENT) * ALIGNMENT
        buf = Buffer(name, offset, shape, dtype)
        if data is not None:
            self._segments.append(Segment(name, offset, self._segment_bytes(buf, data)))
        self.buffers[name] = buf
        self._window = offset + buf.nbytes
        return buf

    def view(self, name: str, base: Buffer, shape: tuple[int, ...] | int,
             dtype: str | None = None, offset: int = 0) -> Buffer:
        """A second name for ``base``'s bytes from byte ``offset`` on, with another shape
        (a reshape, or a tensor placed in an arena buffer; no copy).

        Raises
        ------
        BuildError
            Duplicate name, or the view does not lie inside ``base``.
        """
        if name in self.buffers:
            raise BuildError(f"buffer {name!r} is already allocated")
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        view = Buffer(name, base.offset + offset, shape, dtype or base.dtype)
        if offset < 0 or offset + view.nbytes > base.nbytes:
            raise BuildError(f"view {name!r} ({view.nbytes} bytes at offset {offset}) does "
                             f"not fit buffer {base.name!r} ({base.nbytes} bytes)")
        self.buffers[name] = view
        return view

    @staticmethod
    def _segment_bytes(buf: Buffer, data: np.ndarray) -> bytes:
        values = np.asarray(data)
        if values.shape != buf.shape:
            raise BuildError(f"buffer {buf.name!r}: data has shape {values.shape}, "
                             f"the buffer {buf.shape}")
        if values.dtype.kind not in "iub":
            raise BuildError(f"buffer {buf.name!r}: data must be integers, "
                             f"not {values.dtype}")
        dtype = _DTYPES[buf.dtype]
        info = np.iinfo(dtype)
        if values.size and (values.min() < info.min or values.max() > info.max):
            raise BuildError(f"buffer {buf.name!r}: data does not fit {buf.dtype} "
                             f"({values.min()}..{values.max()})")
        return values.astype(dtype).tobytes()

    @property
    def window_size(self) -> int:
        """Bytes of DMA window the buffers allocated so far use."""
        return self._window

    # -- on-chip space ------------------------------------------------------------------

    @property
    def spad_free(self) -> int:
        """Scratchpad lines not yet allocated since the last fence."""
        return self.config.spad_lines - self._spad_used

    @property
    def acc_free(self) -> int:
        """Accumulator rows not yet allocated since the last fence."""
        return self.config.acc_rows - self._acc_used

    def spad_slots(self, count: int, lines: int) -> Slots:
        """Allocate ``count`` scratchpad regions of ``lines`` lines (freed at the next fence).

        Raises
        ------
        BuildError
            Not enough free scratchpad.
        """
        slots = self._allocate("scratchpad", "lines", self._spad_used, self.config.spad_lines,
                               count, lines)
        self._spad_used += count * lines
        return slots

    def acc_slots(self, count: int, rows: int) -> Slots:
        """Allocate ``count`` accumulator regions of ``rows`` rows (freed at the next fence).

        Raises
        ------
        BuildError
            Not enough free accumulator.
        """
        slots = self._allocate("accumulator", "rows", self._acc_used, self.config.acc_rows,
                               count, rows)
        self._acc_used += count * rows
        return slots

    @staticmethod
    def _allocate(what: str, unit: str, used: int, total: int, count: int,
                  size: int) -> Slots:
        if count < 1 or size < 1:
            raise BuildError(f"{what}: slot count and size must be positive, not "
                             f"{count} x {size}")
        if used + count * size > total:
            raise BuildError(f"{what}: {count} slots of {size} {unit} need {count * size} "
                             f"{unit}, only {total - used} of {total} are free")
        return Slots(used, size, count)

    # -- instructions -------------------------------------------------------------------

    def emit(self, mnemonic: str, **fields: int | str) -> int:
        """Append an instruction (`gemmstone.isa.make` checks the fields); its index.

        Raises
        ------
        gemmstone.isa.EncodingError
            Unknown mnemonic or field, or a value that does not fit.
        """
        self._check_open()
        word = encode(make(mnemonic, **fields))
        index = self._count
        self._reserve(1)
        self._lo[index] = word & _LOW
        self._hi[index] = word >> 64
        self._count += 1
        return index

    def emit_words(self, lo: np.ndarray, hi: np.ndarray) -> int:
        """Append encoded words (the fast path of kernels that build whole columns of
        instructions, `kernels.encode.encode_columns`); the index of the first.

        ``lo`` and ``hi`` are uint64 arrays of bits [0, 64) and [64, 128). The words are
        trusted to be valid instructions; their tokens are balanced and checked with all
        others at the next fence or at `finish`.
        """
        self._check_open()
        lo, hi = np.asarray(lo, np.uint64), np.asarray(hi, np.uint64)
        if lo.shape != hi.shape or lo.ndim != 1:
            raise BuildError(f"emit_words: 'lo' and 'hi' must be vectors of one length, not "
                             f"shapes {lo.shape} and {hi.shape}")
        first = self._count
        self._reserve(len(lo))
        self._lo[first:first + len(lo)] = lo
        self._hi[first:first + len(lo)] = hi
        self._count += len(lo)
        return first

    def _reserve(self, extra: int) -> None:
        if self._count + extra > len(self._lo):
            size = max(2 * len(self._lo), self._count + extra)
            for name in ("_lo", "_hi"):
                grown = np.zeros(size, np.uint64)
                grown[:self._count] = getattr(self, name)[:self._count]
                setattr(self, name, grown)

    def instruction(self, index: int) -> Instruction:
        """The decoded instruction at ``index``."""
        if not 0 <= index < self._count:
            raise IndexError(f"instruction {index} does not exist ({self._count} emitted)")
        return decode((int(self._hi[index]) << 64) | int(self._lo[index]))

    def set_flags(self, index: int, **flags: int) -> None:
        """Set (or clear) token flags of the instruction at ``index`` after emitting it."""
        self._check_open()
        if not self._settled <= index < self._count:
            raise BuildError(f"instruction {index} cannot change: only instructions "
                             f"{self._settled}..{self._count - 1} are after the last "
                             f"fence")
        instr = self.instruction(index)
        word = encode(make(instr.mnemonic, **{**instr.values, **flags}))
        self._lo[index] = word & _LOW
        self._hi[index] = word >> 64

    def _units(self, start: int, end: int) -> np.ndarray:
        return _UNIT_OF_OPCODE[(self._lo[start:end] & np.uint64(15)).astype(np.intp)]

    def last(self, unit: Unit) -> int | None:
        """Index of the last instruction emitted to ``unit`` since the last fence."""
        found = np.flatnonzero(self._units(self._settled, self._count) == int(unit))
        return self._settled + int(found[-1]) if found.size else None

    def fence(self) -> None:
        """Balance the tokens, emit FENCE and free all scratchpad and accumulator space.

        Nothing happens when no instruction was emitted since the last fence.
        """
        self._check_open()
        self._spad_used = self._acc_used = 0
        if self._count == self._settled:
            return
        self._settle_tokens()
        self.emit("fence")
        self._settled = self._count

    def finish(self, notes: dict | None = None) -> Program:
        """Balance the tokens, append HALT and return the program.

        Raises
        ------
        BuildError
            A pop that no earlier push feeds (the program would wait forever).
        """
        self._check_open()
        self._settle_tokens()
        self.emit("halt")
        self._finished = True
        return Program(
            config_hash=self.config.content_hash,
            words=[(high << 64) | low for high, low in
                   zip(self._hi[:self._count].tolist(), self._lo[:self._count].tolist(),
                       strict=True)],
            window_size=self._window,
            segments=list(self._segments),
            buffers=dict(self.buffers),
            notes=dict(notes or {}),
        )

    def _check_open(self) -> None:
        if self._finished:
            raise BuildError("the program is finished; create a new ProgramBuilder")

    def _settle_tokens(self) -> None:
        """Pair pushes with pops per queue and clear the pushes nobody pops."""
        start = self._settled
        lo = self._lo[start:self._count]
        units = self._units(start, self._count)
        for queue, (producer, push, consumer, pop) in TOKEN_QUEUES.items():
            push_bit, pop_bit = _TOKEN_BIT[push], _TOKEN_BIT[pop]
            pushes = np.flatnonzero((units == int(producer)) & ((lo & push_bit) != 0))
            pops = np.flatnonzero((units == int(consumer)) & ((lo & pop_bit) != 0))
            paired = pushes[:len(pops)]
            unfed = np.flatnonzero(paired > pops[:len(paired)])
            if len(pops) > len(pushes) or unfed.size:
                k = int(unfed[0]) if unfed.size else len(pushes)
                index = start + int(pops[k])
                raise BuildError(
                    f"token queue {queue}: instruction {index} ({self.instruction(index)}) "
                    f"pops token {k} since the last fence, but no earlier instruction "
                    f"pushes it")
            lo[pushes[len(pops):]] &= ~push_bit
            self._check_depth(queue, start, paired, pops)

    def _check_depth(self, queue: str, start: int, pushes: np.ndarray,
                     pops: np.ndarray) -> None:
        """Fail if, executed one instruction at a time in program order, the queue would
        ever hold more than ``token_depth`` tokens (a push could then wait for a pop that
        is itself waiting behind it)."""
        depth = self.config.token_depth
        in_flight = np.arange(1, len(pushes) + 1) - np.searchsorted(pops, pushes, "right")
        over = np.flatnonzero(in_flight > depth)
        if over.size:
            k = int(over[0])
            index = start + int(pushes[k])
            raise BuildError(
                f"token queue {queue}: instruction {index} ({self.instruction(index)}) "
                f"would be push number {int(in_flight[k])} in flight, more than the "
                f"config's token_depth of {depth}")
