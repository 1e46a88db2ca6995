"""GEMM kernel: ``C[M, N] = requant(A[M, K] @ B[K, N])`` as a pipelined program.

`emit_tiled_matmul` is the engine shared with the convolution kernel. The output is cut
into tiles of ``block_m`` rows x ``cols`` columns, m tiles outermost. Each tile accumulates
over "k steps": a step preloads a weight tile (<= ``rows`` rows of the [K, N] weight
matrix, loaded into one of ``nbuf`` scratchpad slots) and streams an A tile (``block_m``
lines of <= ``rows`` inputs; the caller says how to gather them) through the array into
one of ``nbuf`` accumulator slots.

The A tiles of an m tile are loaded once, with its first column block, and stay on chip
for the others (``a_panels`` = 1 or 2 panels of every k step's A tile; with 2 the next m
tile's panel loads while this one is used). When no panel fits the scratchpad
(``a_panels`` = 0) they are reloaded for every column block into ``nbuf`` slots.
`cost.choose_plan` picks the tiling.

Program order is what dispatch sees (it runs only a few steps ahead of compute), so
LOADs go where they can start in time: the next m tile's A panel spread over this one's
column blocks 1.. (two panels); an m tile that loads its panel as it computes runs its
first column blocks interleaved in parts of k, the next part's A tiles loading during
this one (`_step_order`); a weight LOAD longer than dispatch's reach goes that many steps
earlier (`cost.weight_lead`). Each only while the load -> compute tokens in flight fit the
token depth.

Tokens let the units overlap. Each is set from what the waiting instruction needs:

- load -> compute: a step's weight LOAD (its last load) pushes, its PRELOAD pops;
- compute -> load: a LOAD that overwrites a scratchpad slot needs the last MATMUL that read
  the slot's earlier content. Needs are made monotone in load order; a LOAD pops when its
  need is beyond what earlier LOADs waited for, and exactly the MATMULs needed push;
- compute -> store: the tile's last MATMUL hands the accumulator slot to STORE;
- store -> compute: STORE releases the accumulator slot (the first MATMUL of the tile
  reusing it ``nbuf`` tiles later pops).

Instructions are built as numpy columns (`encode.encode_columns`): a model's programs
hold hundreds of thousands of them.

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
from gemmstone.compiler.kernels.cost import (
    block_limit,
    choose_plan,
    interleaved_blocks,
    residual_rows,
    weight_lead,
)
from gemmstone.compiler.kernels.encode import encode_columns, token_bit
from gemmstone.isa.program import Buffer
from gemmstone.isa.table import AccLoadType, AluFunc, StoreMode

__all__ = ["emit_gemm", "emit_tiled_matmul", "pack_qparams", "row_major_a", "LoadA", "MAX_BLOCK_M",
           "Residual"]

MAX_BLOCK_M = (1 << 12) - 1  # n of LOAD, MATMUL and STORE is 12 bits wide
_MAX_GROUP = 16  # k steps per weight LOAD at most

_A_COLUMNS = ("step", "line", "dram", "stride", "n", "len", "pad_lo", "pad_hi")

LoadA = Callable[[int, int], dict[str, np.ndarray]]
"""``load_a(m0, mb)``: the LOADs that gather A rows ``m0 .. m0 + mb`` of every k step, as
integer columns: ``step`` (the k step, ascending), ``line`` (the first line written,
counted from the step's A tile, whose ``mb`` lines they cover exactly once) and the LOAD
fields ``dram``, ``stride``, ``n``, ``len``, ``pad_lo`` and ``pad_hi``."""


@dataclass(frozen=True)
class Residual:
    """An int8 residual added in the accumulator before the products, rescaled per column
    like ``qconv2d``/``qmatmul`` define it: ``sat32(rshr(r * mult[j], shift))``.

    Each tile's accumulator rows are loaded from the residual with LOADACC (int8), then
    the ALU's MULSHR multiplies them by a block of rows holding the column block's
    ``mult`` (loaded with LOADACC int32, DRAM stride 0; a block of a few rows per column
    block, all kept on chip and reused by several MULSHRs per tile, see
    `cost.residual_rows`); the MATMULs then accumulate on top, so the sum wraps exactly
    as the IR's residual add does.

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
              block_m: int | None = None, nbuf: int | None = None,
              a_panels: int | None = None) -> dict:
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
    a_panels : int, optional
        Resident A panels, as in `emit_tiled_matmul`.

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
    k_steps = [(k0, min(rows, k - k0)) for k0 in range(0, k, rows)]
    return emit_tiled_matmul(builder, m=m, k_steps=k_steps, load_a=row_major_a(a, rows),
                             w=b, out=out, qparams=qparams, zp=zp, lo=lo, hi=hi,
                             block_m=block_m, nbuf=nbuf, a_panels=a_panels)


def row_major_a(a: Buffer, rows: int) -> LoadA:
    """`LoadA` of a row-major int8 [M, K] matrix (K from the buffer's last dimension, or
    its size over M): one LOAD per k step of ``rows`` columns."""
    k = a.shape[-1]
    k0 = np.arange(0, k, rows)

    def load_a(m0: int, mb: int) -> dict[str, np.ndarray]:
        return {"step": np.arange(len(k0)), "line": np.zeros(len(k0), np.int64),
                "dram": a.offset + m0 * k + k0, "stride": np.full(len(k0), k),
                "n": np.full(len(k0), mb), "len": np.minimum(rows, k - k0),
                "pad_lo": np.zeros(len(k0), np.int64), "pad_hi": np.zeros(len(k0), np.int64)}

    return load_a


def emit_tiled_matmul(builder: ProgramBuilder, *, m: int, k_steps: Sequence[tuple[int, int]],
                      load_a: LoadA, w: Buffer, out: Buffer, qparams: Buffer | None = None,
                      zp: int = 0, lo: int = -128, hi: int = 127, block_m: int | None = None,
                      nbuf: int | None = None, a_panels: int | None = None,
                      out_stride: int | None = None, out_col: int = 0,
                      residual: Residual | None = None,
                      a_gather: tuple[float, float] | None = None,
                      n: int | None = None) -> dict:
    """Emit the pipelined ``out[M, N] = requant(sum over steps of A_step @ W[k0:k0+kk])``.

    Parameters
    ----------
    builder : ProgramBuilder
    m : int
        Output rows M.
    k_steps : sequence of (k0, kk)
        Per k step, the first weight row and the number of weight rows (1..rows).
    load_a : LoadA
        The LOADs of the A tiles of an m tile.
    w : gemmstone.isa.Buffer
        int8 weight matrix [K, N], row-major; or [K, N'] with N' > N columns of which the
        first N are used (a row stride that keeps DRAM lines on bus beats).
    out : gemmstone.isa.Buffer
        int8 or int32, ``M * N`` elements read as row-major [M, N].
    qparams, zp, lo, hi, block_m, nbuf
        As in `emit_gemm`; without ``block_m`` the cost model chooses it.
    a_panels : int, optional
        Resident A panels (2, 1, or 0 to reload A per column block); by default the most
        that fit with ``block_m``.
    out_stride, out_col : int
        Output rows are ``out_stride`` elements apart (default N) and column 0 is element
        ``out_col`` of a row: a matmul can write a column slice of a wider tensor (one
        group of a grouped convolution).
    residual : Residual, optional
        An int8 residual added to the accumulators before the products.
    a_gather : (float, float), optional
        For the cost model: how ``load_a`` gathers A (`cost.estimate_cycles`); by default
        one LOAD per k step, every line read.
    n : int, optional
        Output columns N (default: all of ``w``'s columns).

    Returns
    -------
    dict
        The tiling: ``block_m``, ``nbuf``, ``a_panels``, ``tiles`` (output tiles),
        ``steps`` (k steps run) and ``instructions`` emitted.
    """
    config = builder.config
    rows, cols = config.rows, config.cols
    _check_dtype("w", w, "int8")
    if len(w.shape) != 2:
        raise ValueError(f"'w' must be a [K, N] matrix, not shape {list(w.shape)}")
    w_stride = w.shape[1]
    n = w_stride if n is None else n
    if not 1 <= n <= w_stride:
        raise ValueError(f"'n' must be from 1 to the {w_stride} columns of 'w', not {n}")
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
    ks = len(k_steps)
    block_m, a_panels = _choose_tiling(builder, m, [kk for _, kk in k_steps], n, block_m,
                                       nbuf, a_panels, residual is not None, esize, a_gather)
    a_slots = builder.spad_slots(a_panels * ks if a_panels else nbuf, block_m)
    # Consecutive k steps whose weight rows follow each other share one weight LOAD: as
    # many (up to _MAX_GROUP) as the scratchpad left over holds.
    k0s = np.array([k0 for k0, _ in k_steps], np.int64)
    kks = np.array([kk for _, kk in k_steps], np.int64)
    group = 1
    if (k0s[1:] == k0s[:-1] + kks[:-1]).all():
        group = max(1, min(ks, _MAX_GROUP, builder.spad_free // (nbuf * rows)))
    w_slots = builder.spad_slots(nbuf, group * rows)
    if residual is not None:
        mult_rows, mult_blocks = residual_rows(block_m, n, cols, builder.acc_free)
        mult = builder.acc_slots(mult_blocks, mult_rows)
    acc = builder.acc_slots(nbuf, block_m)
    if int8_out:
        builder.emit("config", zp=zp, lo=lo, hi=hi)

    # Index spaces: m tiles t, column blocks nb, tiles tau = t * NB + nb, k steps s, and
    # steps j in program order (`_step_order`: tile after tile, s ascending, except that
    # an m tile whose A panel loads with it interleaves its first column blocks in parts
    # of k). Instructions are sorted by (j, part) into program order.
    m0s = np.arange(0, m, block_m, dtype=np.int64)
    mbs = np.minimum(block_m, m - m0s)
    n0s = np.arange(0, n, cols, dtype=np.int64)
    ncs = np.minimum(cols, n - n0s)
    n_blocks = len(n0s)
    tiles = len(m0s) * n_blocks
    tile_t, tile_nb = np.divmod(np.arange(tiles), n_blocks)
    steps = tiles * ks
    step_tau, step_s, a_early = _step_order(len(m0s), n_blocks, ks, a_panels, nbuf)
    position = np.empty(steps, np.int64)  # program step of (tau, s) at index tau * ks + s
    position[step_tau * ks + step_s] = np.arange(steps)
    step_t = tile_t[step_tau]
    tile_first = position[np.arange(tiles) * ks]
    tile_last = position[np.arange(tiles) * ks + ks - 1]
    acc_rows = acc.base + (np.arange(tiles) % nbuf) * block_m
    # Weight groups: runs of up to `group` steps of one tile in program order, global
    # index step_g; group G's LOAD reuses the slot of group G - nbuf.
    starts = np.ones(steps, bool)
    starts[1:] = (step_tau[1:] != step_tau[:-1]) | (step_s[1:] != step_s[:-1] + 1)
    run = np.cumsum(starts) - 1
    in_run = np.arange(steps) - np.flatnonzero(starts)[run]
    starts |= in_run % group == 0
    step_g = np.cumsum(starts) - 1
    g_step = np.flatnonzero(starts)  # the group's first step: where its LOAD goes
    g_end = np.append(g_step[1:], steps) - 1  # its last step
    groups = len(g_step)
    g_tau = step_tau[g_step]
    g_first, g_last = step_s[g_step], step_s[g_end]
    w_lines = w_slots[step_g] + k0s[step_s] - k0s[g_first][step_g]
    g_need = np.where(np.arange(groups) >= nbuf, np.roll(g_end, nbuf), -1)
    if a_panels:
        panel_tiles = a_panels * ks
        a_lines = a_slots.base + ((step_t * ks + step_s) % panel_tiles) * block_m
    else:
        a_lines = a_slots.base + (np.arange(steps) % nbuf) * block_m

    parts = []  # (key, kind, lo, hi); key = j * 16 + part

    def add(kind: str, j: np.ndarray, part: int, mnemonic: str, **fields) -> None:
        lo_, hi_ = encode_columns(mnemonic, len(j), **fields)
        parts.append((j * 16 + part, kind, lo_, hi_))

    # A loads, in load_a's order within each step.
    a_cols = [load_a(int(m0), int(mb)) for m0, mb in zip(m0s, mbs, strict=True)]
    a_rows = {key: np.concatenate([c[key] for c in a_cols]).astype(np.int64)
              for key in _A_COLUMNS}
    a_rows["t"] = np.repeat(np.arange(len(a_cols)), [len(c["step"]) for c in a_cols])
    count = len(a_rows["step"])
    if a_panels:
        repeat_nb = np.zeros(count, np.int64)
        rows_idx = np.arange(count)
    else:
        repeat_nb = np.tile(np.arange(n_blocks), count)
        rows_idx = np.repeat(np.arange(count), n_blocks)
    a_t, a_s = a_rows["t"][rows_idx], a_rows["step"][rows_idx]
    a_j = position[(a_t * n_blocks + repeat_nb) * ks + a_s]  # the step that reads it
    if a_panels:
        # The slot's previous panel was last read in column block NB - 1 of m tile
        # t - a_panels; waiting for that tile's end costs one token per m tile, not one
        # per step (the token queues hold only token_depth).
        a_need = np.where(a_t >= a_panels, ((a_t - a_panels) * n_blocks + n_blocks) * ks - 1,
                          -1)
    else:
        a_need = a_j - nbuf
    order = np.argsort(a_j, kind="stable")  # natural order: by the step that reads it
    a_j, a_t, a_s = a_j[order], a_t[order], a_s[order]
    a_need, rows_idx = a_need[order], rows_idx[order]
    a_lo, a_hi = encode_columns(
        "load", len(a_j), dram=np.where(a_rows["n"][rows_idx] > 0, a_rows["dram"][rows_idx], 0),
        stride=a_rows["stride"][rows_idx], spad=a_lines[a_j] + a_rows["line"][rows_idx],
        n=a_rows["n"][rows_idx], len=a_rows["len"][rows_idx],
        pad_lo=a_rows["pad_lo"][rows_idx], pad_hi=a_rows["pad_hi"][rows_idx])
    j = np.arange(steps)
    g_nb = tile_nb[g_tau]
    w_lo, w_hi = encode_columns(
        "load", groups, dram=w.offset + k0s[g_first] * w_stride + n0s[g_nb], stride=w_stride,
        spad=w_slots[np.arange(groups)], n=k0s[g_last] + kks[g_last] - k0s[g_first],
        len=ncs[g_nb])
    # Program order of the LOADs: next to the steps that read them, or (``ahead``) the
    # next m tile's A panel spread over this one (two panels, `_prefetch_keys`) and each
    # weight LOAD up to `cost.weight_lead` steps earlier (dispatch runs only a few steps ahead
    # of compute), never before the MATMUL that frees its slot.
    lead = weight_lead(config, block_m, group * int(kks.max()))
    plain = (a_j * 16 + 3, g_step * 16 + 4)
    a_ahead = _prefetch_keys(plain[0], a_j, a_t, n_blocks, ks) if a_panels == 2 else plain[0]
    a_early = a_early[a_t, a_s]  # the next part's A tiles load during this part
    a_ahead = np.where(a_early >= 0, a_early * 16 + 9, a_ahead)
    ahead = (a_ahead,
             np.where(lead > 0, np.maximum(g_step - lead, g_need) * 16 + 10, plain[1]))
    add("preload", j, 5, "preload", spad=w_lines, k=kks[step_s])
    add("matmul", j, 6, "matmul", spad=a_lines, acc=acc_rows[step_tau], n=mbs[step_t],
        accumulate=(step_s > 0) | (residual is not None),
        pop_next=(step_s == 0) & (residual is None) & (step_tau >= nbuf),
        push_next=step_s == ks - 1)
    tau = np.arange(tiles)
    new_block = (tau == 0) | (n_blocks > 1)  # output stage / multipliers change
    if residual is not None:
        # The multipliers of a column block: loaded with its first tile (resident), or
        # whenever the column block changes (one block for all).
        loads = tile_t == 0 if mult_blocks > 1 else new_block
        mult_base = mult.base + (tile_nb % mult_blocks) * mult_rows
        add("x", tile_first[loads], 0, "loadacc",
            dram=residual.mult.offset + 4 * n0s[tile_nb[loads]], stride=0,
            acc=mult_base[loads], n=np.minimum(mult_rows, mbs[tile_t[loads]]),
            len=ncs[tile_nb[loads]], type=AccLoadType.INT32)
        add("x", tile_first, 1, "loadacc",
            dram=(residual.buffer.offset + m0s[tile_t] * residual.stride + residual.col
                  + n0s[tile_nb]),
            stride=residual.stride, acc=acc_rows, n=mbs[tile_t], len=ncs[tile_nb],
            type=AccLoadType.INT8, pop_next=tau >= nbuf)
        # MULSHR in chunks of the block's rows, each chunk reusing them.
        chunks = -(-mbs[tile_t] // mult_rows)
        chunk_tau = np.repeat(tau, chunks)
        chunk_row = (np.arange(len(chunk_tau)) - np.repeat(np.cumsum(chunks) - chunks, chunks)
                     ) * mult_rows
        add("x", tile_first[chunk_tau], 2, "alu", func=AluFunc.MULSHR,
            dst=acc_rows[chunk_tau] + chunk_row, src=mult_base[chunk_tau],
            n=np.minimum(mult_rows, mbs[tile_t[chunk_tau]] - chunk_row), shift=residual.shift)
    if int8_out:
        add("x", tile_last[new_block], 7, "loadq", dram=qparams.offset + 12 * n0s[
            tile_nb[new_block]], len=ncs[tile_nb[new_block]])
    add("x", tile_last, 8, "store",
        dram=out.offset + (m0s[tile_t] * out_stride + out_col + n0s[tile_nb]) * esize,
        stride=out_stride * esize, acc=acc_rows, n=mbs[tile_t], len=ncs[tile_nb],
        mode=StoreMode.INT8 if int8_out else StoreMode.INT32, pop_prev=1,
        push_prev=tau + nbuf < tiles)

    for a_key, w_key in (ahead, (ahead[0], plain[1]), plain):
        # Moving LOADs ahead holds more load -> compute tokens in flight: if more than the
        # token queues hold, the weight LOADs, then all, stay next to their steps.
        order = np.argsort(a_key, kind="stable")
        lo_words, hi_words, in_flight = _assemble(
            [*parts, (a_key[order], "a", a_lo[order], a_hi[order]), (w_key, "w", w_lo, w_hi)],
            a_j[order], a_need[order], g_need, step_g, steps)
        if in_flight <= config.token_depth:
            break
    builder.emit_words(lo_words, hi_words)
    return {"block_m": block_m, "nbuf": nbuf, "a_panels": a_panels, "tiles": tiles,
            "steps": steps, "instructions": len(builder) - first}


def _assemble(parts: list, a_j: np.ndarray, a_need: np.ndarray, g_need: np.ndarray,
              step_g: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The words of ``parts`` ((key, kind, lo, hi) columns) in program order (by key) with
    their token flags, and the most load -> compute tokens in flight. ``a_j`` and
    ``a_need`` are the step reading each A LOAD and the step it waits for, in the A part's
    order; ``g_need`` the step each weight LOAD waits for, ``step_g`` each step's group."""
    keys = np.concatenate([p[0] for p in parts])
    order = np.argsort(keys, kind="stable")
    lo_words = np.concatenate([p[2] for p in parts])[order]
    hi_words = np.concatenate([p[3] for p in parts])[order]
    kinds = np.concatenate([np.full(len(p[0]), i, np.int8) for i, p in enumerate(parts)])
    kinds = kinds[order]
    names = [p[1] for p in parts]
    # compute -> load: what each LOAD needs (the step whose MATMUL last read its slot),
    # made monotone in load order; a LOAD pops when its need grows, the needed MATMULs push.
    needs = np.concatenate([a_need if kind == "a" else
                            (g_need if kind == "w" else np.full(len(p[0]), -2))
                            for kind, p in zip(names, parts, strict=True)])[order]
    is_load = np.isin(kinds, [i for i, kind in enumerate(names) if kind in ("a", "w")])
    load_needs = np.maximum.accumulate(np.maximum(needs[is_load], -1))
    grows = load_needs > np.concatenate(([-1], load_needs[:-1]))
    lo_words[np.flatnonzero(is_load)[grows]] |= token_bit("pop_next")
    released = np.zeros(steps, bool)
    released[load_needs[grows]] = True
    matmuls = np.flatnonzero(kinds == names.index("matmul"))  # in step order
    lo_words[matmuls[released]] |= token_bit("push_prev")
    # load -> compute: a step needs its weight group's LOAD and its own A LOADs (by their
    # number in load order); the PRELOAD pops when that grows, the needed LOADs push.
    load_number = np.cumsum(is_load) - 1
    step_need = load_number[kinds == names.index("w")][step_g]
    np.maximum.at(step_need, a_j, load_number[kinds == names.index("a")])
    step_need = np.maximum.accumulate(step_need)
    first_need = np.concatenate(([True], step_need[1:] > step_need[:-1]))
    preloads = np.flatnonzero(kinds == names.index("preload"))
    pops = preloads[first_need]
    pushes = np.flatnonzero(is_load)[step_need[first_need]]
    lo_words[pops] |= token_bit("pop_prev")
    lo_words[pushes] |= token_bit("push_next")
    in_flight = np.arange(1, len(pushes) + 1) - np.searchsorted(pops, pushes, "right")
    return lo_words, hi_words, int(in_flight.max(initial=0))


def _step_order(m_tiles: int, n_blocks: int, ks: int, a_panels: int,
                nbuf: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(tau, s)`` of each step in program order, and where the A LOADs of m tile t,
    k step s go instead (``early[t, s]``, a program step; -1: next to their step).

    Tile after tile, k steps ascending; but an m tile that loads its resident A panel
    while it computes (every m tile with one panel, the first with two) runs its first
    ``c = min(nbuf, NB)`` column blocks interleaved in ``c`` parts of k: (block 0, part
    0), (block 1, part 0), ..., (block c - 1, part 0), (block 0, part 1), ... Each A tile
    then serves ``c`` column blocks before the next part is needed, and the next part's A
    tiles load, spread evenly, during this one (gathering a convolution's A tiles can take
    twice as long as streaming them once). The ``c`` tiles use ``c`` accumulator slots;
    `cost.interleaved_blocks` says when (three or more)."""
    tau, s = np.divmod(np.arange(m_tiles * n_blocks * ks), ks)
    early = np.full((m_tiles, ks), -1, np.int64)
    c = interleaved_blocks(n_blocks, ks, a_panels, nbuf)
    if c < 2:
        return tau, s, early
    bounds = [ks * i // c for i in range(c + 1)]
    order_b, order_s = [], []
    for part in range(c):
        k = np.arange(bounds[part], bounds[part + 1])
        order_b += [np.full(len(k), b) for b in range(c)]
        order_s += [k] * c
    order_b, order_s = np.concatenate(order_b), np.concatenate(order_s)
    spread = np.full(ks, -1, np.int64)
    for part in range(1, c):
        length, before = bounds[part + 1] - bounds[part], bounds[part] - bounds[part - 1]
        k = np.arange(length)
        spread[bounds[part]:bounds[part + 1]] = c * bounds[part - 1] + k * c * before // length
    for t in range(m_tiles if a_panels == 1 else 1):
        first = t * n_blocks * ks
        tau[first:first + c * ks] = t * n_blocks + order_b
        s[first:first + c * ks] = order_s
        early[t] = np.where(spread >= 0, first + spread, -1)
    return tau, s, early


def _prefetch_keys(keys: np.ndarray, a_j: np.ndarray, a_t: np.ndarray, n_blocks: int,
                   ks: int) -> np.ndarray:
    """Program-order keys of the A LOADs with two resident panels: the panel of m tile
    t >= 1 loads while m tile t - 1 computes (its slot's earlier panel, m tile t - 2, is
    done by then), its LOADs spread evenly over the steps of that tile's column blocks
    1.. (all its steps if it has one), after each step's own instructions. In program
    order next to their consumers they would wait for dispatch, which runs only a few
    steps ahead, and the tile's first column block would wait for its A tiles."""
    order = np.argsort(a_j, kind="stable")
    t = a_t[order]
    counts = np.bincount(t)
    rank = np.arange(len(t)) - (np.cumsum(counts) - counts)[t]
    skip = ks if n_blocks > 1 else 0
    span = n_blocks * ks - skip
    step = (t - 1) * n_blocks * ks + skip + (rank * span) // counts[t]
    moved = keys.copy()
    later = t >= 1
    moved[order[later]] = step[later] * 16 + 9
    return moved


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


def _choose_tiling(builder: ProgramBuilder, m: int, k_sizes: list[int], n: int,
                   block_m: int | None, nbuf: int, a_panels: int | None, residual: bool,
                   esize: int,
                   a_gather: tuple[float, float] | None) -> tuple[int, int]:
    """``(block_m, a_panels)``: the cost model's choice for the free on-chip buffers, or
    the given ``block_m`` with the most resident A panels that fit it."""
    config = builder.config
    limits = {panels: block_limit(config, steps=len(k_sizes), nbuf=nbuf, a_panels=panels,
                                  spad_free=builder.spad_free, acc_free=builder.acc_free,
                                  residual=residual)
              for panels in (2, 1, 0)}
    if limits[0] < 1:
        raise BuildError(f"{nbuf} pipeline slots do not fit: {builder.spad_free} scratchpad "
                         f"lines and {builder.acc_free} accumulator rows are free")
    if block_m is None:
        if a_panels is not None:
            block_m = -(-m // -(-m // limits[a_panels])) if limits[a_panels] >= 1 else 0
        else:
            plan = choose_plan(config, m=m, k_sizes=k_sizes, n=n, spad_free=builder.spad_free,
                               acc_free=builder.acc_free, residual=residual,
                               out_bytes=esize, nbuf=nbuf, a_gather=a_gather)
            return plan.block_m, plan.a_panels
    if not 1 <= block_m <= limits[0]:
        raise BuildError(f"'block_m' must be from 1 to {limits[0]} for {nbuf} slots on this "
                         f"config, not {block_m}")
    if a_panels is None:
        a_panels = next(panels for panels in (2, 1, 0) if block_m <= limits[panels])
    elif block_m > limits[a_panels]:
        raise BuildError(f"{a_panels} resident A panels of {block_m} lines do not fit: "
                         f"{builder.spad_free} scratchpad lines are free")
    return block_m, a_panels
