"""GEMM kernel: ``C[M, N] = requant(A[M, K] @ B[K, N])`` as a double-buffered pipeline.

`emit_tiled_matmul` is the engine shared with the convolution kernel. The output is cut
into tiles of ``block_m`` rows x ``cols`` columns (column blocks outermost, so the output
stage parameters are loaded once per column block). Each tile accumulates over "k steps";
a step loads an A tile (``block_m`` lines of <= ``rows`` inputs; the caller says how) and
a weight tile (<= ``rows`` rows of the [K, N] weight matrix) into one of ``nbuf``
scratchpad slots, preloads the weights and streams the A tile through the array into one
of ``nbuf`` accumulator slots. Tokens let the units overlap:

- load -> compute: the step's loads are done (the last load pushes, PRELOAD pops);
- compute -> load: the step's MATMUL releases its scratchpad slot (the load reusing the
  slot ``nbuf`` steps later pops);
- compute -> store: the tile's last MATMUL hands the accumulator slot to STORE;
- store -> compute: STORE releases the accumulator slot (the first MATMUL of the tile
  reusing it ``nbuf`` tiles later pops).

A tiles are reloaded for every column block; that keeps the engine simple (the real
compiler may keep them resident).

Output stage parameters (int8 output): `pack_qparams` lays bias, mult and shift out per
column block, as LOADQ reads them: for the block starting at column ``n0`` with ``nc``
columns, ``bias[n0:n0+nc], mult[n0:n0+nc], shift[n0:n0+nc]`` follow each other at int32
index ``3 * n0``. The whole array is int32 [3 * N].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from gemmstone.compiler.builder import BuildError, ProgramBuilder
from gemmstone.isa.program import Buffer
from gemmstone.isa.table import AccLoadType, AluFunc, StoreMode, Unit

__all__ = ["emit_gemm", "emit_tiled_matmul", "pack_qparams", "LoadA", "MAX_BLOCK_M",
           "Residual"]

MAX_BLOCK_M = (1 << 12) - 1  # n of LOAD, MATMUL and STORE is 12 bits wide

LoadA = Callable[[int, int, int, int], None]
"""``load_a(step, m0, mb, line)``: emit the LOADs that put A rows ``m0 .. m0 + mb`` of k
step ``step`` into scratchpad lines ``line .. line + mb`` (inputs in the first ``rows``
bytes, zeros where the step has fewer inputs)."""


@dataclass(frozen=True)
class Residual:
    """An int8 residual added in the accumulator before the products, rescaled per column
    like ``qconv2d``/``qmatmul`` define it: ``sat32(rshr(r * mult[j], shift))``.

    Each tile's accumulator rows are loaded from the residual with LOADACC (int8), then
    the ALU's MULSHR multiplies them by a block of rows holding ``mult`` (LOADACC int32
    with DRAM stride 0, once per column block); the MATMULs then accumulate on top, so
    the sum wraps exactly as the IR's residual add does.

    Parameters
    ----------
    buffer : gemmstone.isa.Buffer
        int8, read as rows of ``stride`` elements; output row i, column j of this matmul
        reads element ``i * stride + col + j``.
    stride, col : int
        Elements per residual row and the element offset of column 0.
    mult : gemmstone.isa.Buffer
        int32 [N]: the per-column multipliers.
    shift : int
        The shared right shift, 0..63.
    """

    buffer: Buffer
    stride: int
    col: int
    mult: Buffer
    shift: int


def pack_qparams(bias: np.ndarray, mult: np.ndarray, shift: np.ndarray,
                 cols: int) -> np.ndarray:
    """The int32 [3 * N] qparams array for N output columns, blocked by ``cols`` columns
    as LOADQ reads it (see the module docstring)."""
    arrays = [np.asarray(v, dtype=np.int64) for v in (bias, mult, shift)]
    n = arrays[0].shape[0] if arrays[0].ndim == 1 else -1
    for name, values in zip(("bias", "mult", "shift"), arrays, strict=True):
        if values.shape != (n,):
            raise ValueError(f"'{name}' must be a vector as long as bias, not shape "
                             f"{values.shape}")
        if values.size and (values.min() < -(1 << 31) or values.max() >= 1 << 31):
            raise ValueError(f"'{name}' does not fit int32")
    packed = np.empty(3 * n, dtype=np.int32)
    for n0 in range(0, n, cols):
        nc = min(cols, n - n0)
        for part, values in enumerate(arrays):
            packed[3 * n0 + part * nc:3 * n0 + (part + 1) * nc] = values[n0:n0 + nc]
    return packed


def emit_gemm(builder: ProgramBuilder, a: Buffer, b: Buffer, out: Buffer,
              qparams: Buffer | None = None, *, zp: int = 0, lo: int = -128, hi: int = 127,
              block_m: int | None = None, nbuf: int | None = None) -> dict:
    """Emit ``out = requant(a @ b)``: int8 row-major ``a`` [M, K] and ``b`` [K, N].

    Parameters
    ----------
    builder : ProgramBuilder
    a, b : gemmstone.isa.Buffer
        int8 [M, K] and [K, N].
    out : gemmstone.isa.Buffer
        [M, N]; int8 goes through the output stage (``qparams``, ``zp``, ``lo``, ``hi``),
        int32 receives the raw accumulators.
    qparams : gemmstone.isa.Buffer, optional
        int32 [3 * N] from `pack_qparams`; required for an int8 output.
    zp, lo, hi : int
        Output zero point and clamp (int8 output), set with CONFIG.
    block_m : int, optional
        Output rows per tile; the default is the largest that fits the free scratchpad
        and accumulator, balanced over the tiles.
    nbuf : int, optional
        Scratchpad and accumulator slots of the pipeline, 1 to ``config.token_depth``;
        the default is 2 (double buffering), or 1 when the token depth is 1.

    Raises
    ------
    ValueError
        Shapes or dtypes that do not match, or bad output stage parameters.
    BuildError
        ``block_m`` does not fit the on-chip buffers.
    """
    _check_dtype("a", a, "int8")
    _check_dtype("b", b, "int8")
    if len(a.shape) != 2 or len(b.shape) != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"emit_gemm: 'a' {list(a.shape)} and 'b' {list(b.shape)} are not "
                         f"[M, K] and [K, N]")
    (m, k), n = a.shape, b.shape[1]
    if out.shape != (m, n):
        raise ValueError(f"emit_gemm: 'out' must have shape {[m, n]}, not {list(out.shape)}")
    rows = builder.config.rows

    def load_a(step: int, m0: int, mb: int, line: int) -> None:
        k0 = step * rows
        builder.emit("load", dram=a.offset + m0 * k + k0, stride=k, spad=line, n=mb,
                     len=min(rows, k - k0))

    k_steps = [(k0, min(rows, k - k0)) for k0 in range(0, k, rows)]
    return emit_tiled_matmul(builder, m=m, k_steps=k_steps, load_a=load_a, w=b, out=out,
                             qparams=qparams, zp=zp, lo=lo, hi=hi, block_m=block_m,
                             nbuf=nbuf)


def emit_tiled_matmul(builder: ProgramBuilder, *, m: int, k_steps: Sequence[tuple[int, int]],
                      load_a: LoadA, w: Buffer, out: Buffer, qparams: Buffer | None = None,
                      zp: int = 0, lo: int = -128, hi: int = 127, block_m: int | None = None,
                      nbuf: int | None = None, out_stride: int | None = None,
                      out_col: int = 0, residual: Residual | None = None) -> dict:
    """Emit the pipelined ``out[M, N] = requant(sum over steps of A_step @ W[k0:k0+kk])``.

    Parameters
    ----------
    builder : ProgramBuilder
    m : int
        Output rows M.
    k_steps : sequence of (k0, kk)
        Per k step, the first weight row and the number of weight rows (1..rows).
    load_a : LoadA
        Emits the A tile of a k step.
    w : gemmstone.isa.Buffer
        int8 weight matrix [K, N], row-major.
    out : gemmstone.isa.Buffer
        int8 or int32, ``M * N`` elements read as row-major [M, N].
    qparams, zp, lo, hi, block_m, nbuf
        As in `emit_gemm`.
    out_stride, out_col : int
        Output rows are ``out_stride`` elements apart (default N) and column 0 is element
        ``out_col`` of a row: a matmul can write a column slice of a wider tensor (one
        group of a grouped convolution).
    residual : Residual, optional
        An int8 residual added to the accumulators before the products.

    Returns
    -------
    dict
        The tiling: ``block_m``, ``nbuf``, ``tiles`` (output tiles), ``steps`` (k steps
        run) and ``instructions`` emitted.
    """
    config = builder.config
    rows, cols = config.rows, config.cols
    _check_dtype("w", w, "int8")
    if len(w.shape) != 2:
        raise ValueError(f"'w' must be a [K, N] matrix, not shape {list(w.shape)}")
    n = w.shape[1]
    esize = {"int8": 1, "int32": 4}.get(out.dtype, 0)
    out_stride = n if out_stride is None else out_stride
    if out_stride < out_col + n or out_col < 0:
        raise ValueError(f"'out_stride' ({out_stride}) must hold 'out_col' ({out_col}) + "
                         f"N ({n}) columns")
    if out.nbytes != m * out_stride * esize:
        raise ValueError(f"'out' must be int8 or int32 with {m} x {out_stride} elements, not "
                         f"{out.dtype}{list(out.shape)}")
    if m < 1 or not k_steps:
        raise ValueError(f"a matmul needs M >= 1 and at least one k step, not M={m} and "
                         f"{len(k_steps)} k steps")
    for k0, kk in k_steps:
        if not 1 <= kk <= rows or k0 < 0 or k0 + kk > w.shape[0]:
            raise ValueError(f"k step ({k0}, {kk}) is not 1..{rows} rows of the "
                             f"{w.shape[0]}-row weight matrix")
    int8_out = out.dtype == "int8"
    _check_output_stage(int8_out, qparams, n, zp, lo, hi)

    depth = config.token_depth
    nbuf = min(2, depth) if nbuf is None else nbuf
    if not 1 <= nbuf <= depth:
        # Slot releases run nbuf ahead of their pops: the token queues must hold them.
        raise ValueError(f"'nbuf' must be from 1 to the config's token_depth ({depth}), "
                         f"not {nbuf}")
    if residual is not None and (residual.mult.dtype != "int32"
                                 or residual.mult.shape != (n,)):
        raise ValueError(f"residual 'mult' must be int32 [{n}], not "
                         f"{residual.mult.dtype}{list(residual.mult.shape)}")
    builder.fence()  # the on-chip buffers of any earlier kernel are ours from here on
    first = len(builder)
    extra = 0 if residual is None else 1  # a block of multiplier rows
    block_m = _choose_block_m(builder, m, block_m, nbuf, extra)
    spad = builder.spad_slots(nbuf, block_m + rows)  # A tile, then the weight tile
    acc = builder.acc_slots(nbuf, block_m)
    mult_row = builder.acc_slots(1, block_m)[0] if residual is not None else 0
    mode = StoreMode.INT8 if int8_out else StoreMode.INT32
    if int8_out:
        builder.emit("config", zp=zp, lo=lo, hi=hi)

    step = tile = 0
    for n0 in range(0, n, cols):
        nc = min(cols, n - n0)
        if int8_out:
            builder.emit("loadq", dram=qparams.offset + 12 * n0, len=nc)
        if residual is not None:
            # Compute runs in order, so this waits for the last MULSHR of the previous block.
            builder.emit("loadacc", dram=residual.mult.offset + 4 * n0, stride=0,
                         acc=mult_row, n=block_m, len=nc, type=AccLoadType.INT32)
        for m0 in range(0, m, block_m):
            mb = min(block_m, m - m0)
            acc_row = acc[tile]
            if residual is not None:
                builder.emit("loadacc", dram=residual.buffer.offset + m0 * residual.stride
                             + residual.col + n0, stride=residual.stride, acc=acc_row, n=mb,
                             len=nc, type=AccLoadType.INT8, pop_next=acc.must_wait(tile))
                builder.emit("alu", func=AluFunc.MULSHR, dst=acc_row, src=mult_row, n=mb,
                             shift=residual.shift)
            for index, (k0, kk) in enumerate(k_steps):
                line = spad[step]
                w_line = line + block_m
                builder.emit("load", dram=w.offset + k0 * n + n0, stride=n, spad=w_line,
                             n=kk, len=nc, pop_next=spad.must_wait(step))
                load_a(index, m0, mb, line)
                builder.set_flags(builder.last(Unit.LOAD), push_next=1)
                builder.emit("preload", spad=w_line, k=kk, pop_prev=1)
                builder.emit("matmul", spad=line, acc=acc_row, n=mb,
                             accumulate=index > 0 or residual is not None,
                             pop_next=index == 0 and residual is None and acc.must_wait(tile),
                             push_prev=1,
                             push_next=index == len(k_steps) - 1)
                step += 1
            builder.emit("store", dram=out.offset + (m0 * out_stride + out_col + n0) * esize,
                         stride=out_stride * esize, acc=acc_row, n=mb, len=nc, mode=mode,
                         pop_prev=1, push_prev=1)
            tile += 1
    return {"block_m": block_m, "nbuf": nbuf, "tiles": tile, "steps": step,
            "instructions": len(builder) - first}


def _check_dtype(name: str, buf: Buffer, dtype: str) -> None:
    if buf.dtype != dtype:
        raise ValueError(f"'{name}' must be an {dtype} buffer, not {buf.dtype} "
                         f"(buffer {buf.name!r})")


def _check_output_stage(int8_out: bool, qparams: Buffer | None, n: int, zp: int, lo: int,
                        hi: int) -> None:
    if not int8_out:
        if qparams is not None:
            raise ValueError("'qparams' is only used with an int8 output; an int32 output "
                             "receives the raw accumulators")
        return
    if qparams is None:
        raise ValueError("an int8 output needs 'qparams' (int32 [3 * N] from pack_qparams)")
    if qparams.dtype != "int32" or qparams.shape != (3 * n,):
        raise ValueError(f"'qparams' must be int32 [{3 * n}], not "
                         f"{qparams.dtype}{list(qparams.shape)}")
    for name, value in (("zp", zp), ("lo", lo), ("hi", hi)):
        if not -128 <= value <= 127:
            raise ValueError(f"'{name}' must be from -128 to 127, not {value}")
    if lo > hi:
        raise ValueError(f"'lo' ({lo}) must not be greater than 'hi' ({hi})")


def _choose_block_m(builder: ProgramBuilder, m: int, block_m: int | None, nbuf: int,
                    extra_acc: int = 0) -> int:
    """Largest tile height the free scratchpad and accumulator hold ``nbuf`` times (plus
    ``extra_acc`` more accumulator blocks)."""
    rows = builder.config.rows
    limit = min(builder.acc_free // (nbuf + extra_acc), builder.spad_free // nbuf - rows,
                MAX_BLOCK_M)
    if limit < 1:
        raise BuildError(f"{nbuf} pipeline slots do not fit: {builder.spad_free} scratchpad "
                         f"lines and {builder.acc_free} accumulator rows are free")
    if block_m is None:
        tiles = -(-m // limit)
        return -(-m // tiles)
    if not 1 <= block_m <= limit:
        raise BuildError(f"'block_m' must be from 1 to {limit} for {nbuf} slots on this "
                         f"config, not {block_m}")
    return block_m
