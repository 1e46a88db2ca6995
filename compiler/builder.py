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
from gemmstone.isa.encoding import Instruction, encode, make
from gemmstone.isa.limits import check_config_fits
from gemmstone.isa.program import Buffer, Program, Segment
from gemmstone.isa.table import Unit

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
        self._instrs: list[Instruction] = []
        self._settled = 0  # instructions before this index have balanced tokens
        self._spad_used = 0
        self._acc_used = 0
        self._finished = False

    def __len__(self) -> int:
        return len(self._instrs)

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
        self._instrs.append(make(mnemonic, **fields))
        return len(self._instrs) - 1

    def set_flags(self, index: int, **flags: int) -> None:
        """Set (or clear) token flags of the instruction at ``index`` after emitting it."""
        self._check_open()
        if not self._settled <= index < len(self._instrs):
            raise BuildError(f"instruction {index} cannot change: only instructions "
                             f"{self._settled}..{len(self._instrs) - 1} are after the last "
                             f"fence")
        instr = self._instrs[index]
        self._instrs[index] = make(instr.mnemonic, **{**instr.values, **flags})

    def last(self, unit: Unit) -> int | None:
        """Index of the last instruction emitted to ``unit`` since the last fence."""
        for index in range(len(self._instrs) - 1, self._settled - 1, -1):
            if self._instrs[index].spec.unit is unit:
                return index
        return None

    def fence(self) -> None:
        """Balance the tokens, emit FENCE and free all scratchpad and accumulator space.

        Nothing happens when no instruction was emitted since the last fence.
        """
        self._check_open()
        self._spad_used = self._acc_used = 0
        if len(self._instrs) == self._settled:
            return
        self._settle_tokens()
        self.emit("fence")
        self._settled = len(self._instrs)

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
            words=[encode(instr) for instr in self._instrs],
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
        for queue, (producer, push, consumer, pop) in TOKEN_QUEUES.items():
            pushes = [i for i in range(start, len(self._instrs))
                      if self._instrs[i].spec.unit is producer and self._instrs[i][push]]
            pops = [i for i in range(start, len(self._instrs))
                    if self._instrs[i].spec.unit is consumer and self._instrs[i][pop]]
            for k, pop_index in enumerate(pops):
                if k >= len(pushes) or pushes[k] > pop_index:
                    raise BuildError(
                        f"token queue {queue}: instruction {pop_index} "
                        f"({self._instrs[pop_index]}) pops token {k} since the last fence, "
                        f"but no earlier instruction pushes it")
            for index in pushes[len(pops):]:
                self.set_flags(index, **{push: 0})
            self._check_depth(queue, pushes[:len(pops)], pops)

    def _check_depth(self, queue: str, pushes: list[int], pops: list[int]) -> None:
        """Fail if, executed one instruction at a time in program order, the queue would
        ever hold more than ``token_depth`` tokens (a push could then wait for a pop that
        is itself waiting behind it)."""
        depth = self.config.token_depth
        popped = 0
        for k, index in enumerate(pushes):
            while popped < len(pops) and pops[popped] <= index:
                popped += 1
            if k + 1 - popped > depth:
                raise BuildError(
                    f"token queue {queue}: instruction {index} ({self._instrs[index]}) "
                    f"would be push number {k + 1 - popped} in flight, more than the "
                    f"config's token_depth of {depth}")
