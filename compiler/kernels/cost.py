"""A small cost model of the tiled matmul pipeline, used to choose its tiling.

`emit_tiled_matmul` runs, per output tile (``block_m`` rows x ``cols`` columns), one k
step after another: LOADs of the A and weight tiles, then PRELOAD + MATMUL, then one
STORE per tile. With ``nbuf >= 2`` slots the load, compute and store units overlap, so a
step costs about the slower of its load and its compute; with one slot they take turns.
Cycle counts:

- load of a step: ``dram_latency`` + one cycle per LOAD instruction + bytes /
  ``dram_bytes_per_cycle`` (A tile ``mb * kk`` bytes, weight tile ``kk * nc`` bytes);
- compute of a step: PRELOAD ``kk`` rows + MATMUL ``mb`` rows + the array's fill and
  drain (``rows + cols``);
- store of a tile: ``dram_latency`` + ``mb * nc * out_bytes`` / ``dram_bytes_per_cycle``.

`choose_tiling` evaluates every (``nbuf``, ``block_m``) candidate the on-chip buffers
hold and keeps the cheapest: more slots overlap more but leave shorter tiles (the weight
tiles are re-fetched once per tile), fewer and taller tiles re-fetch less.
"""

from __future__ import annotations

from collections.abc import Sequence

from gemmstone.config import AcceleratorConfig

__all__ = ["estimate_cycles", "choose_tiling"]

_MAX_BLOCK_M = (1 << 12) - 1


def estimate_cycles(config: AcceleratorConfig, *, m: int, k_sizes: Sequence[int], n: int,
                    block_m: int, nbuf: int, a_loads: int = 1, out_bytes: int = 1) -> int:
    """Estimated cycles of ``emit_tiled_matmul`` with this tiling (see the module
    docstring); ``a_loads`` is the number of LOADs per A tile (a conv gathers one per
    output row run)."""
    bw, lat = config.dram_bytes_per_cycle, config.dram_latency
    fill = config.rows + config.cols
    total = 0.0
    first_load = None
    m_tiles = [min(block_m, m - m0) for m0 in range(0, m, block_m)]
    n_blocks = [min(config.cols, n - n0) for n0 in range(0, n, config.cols)]
    ksum = sum(k_sizes)
    steps = len(k_sizes)
    for nc in n_blocks:
        for mb in m_tiles:
            load = steps * (lat + 1 + a_loads) + (mb * ksum + ksum * nc) / bw
            compute = ksum + steps * (mb + fill)
            store = lat + mb * nc * out_bytes / bw
            if first_load is None:
                first_load = load / steps
            if nbuf >= 2:
                # Overlapped: the slower unit sets the pace; a store longer than the next
                # tile's compute stalls the accumulator slots.
                total += max(load, compute, store)
            else:
                total += load + compute + store
    if nbuf >= 2:
        total += first_load + lat + m_tiles[-1] * n_blocks[-1] * out_bytes / bw
    return int(round(total))


def choose_tiling(config: AcceleratorConfig, *, m: int, k_sizes: Sequence[int], n: int,
                  spad_free: int, acc_free: int, extra_acc: int = 0, a_loads: int = 1,
                  out_bytes: int = 1) -> tuple[int, int, int]:
    """The cheapest ``(block_m, nbuf, estimated cycles)`` for an ``m`` x ``n`` output
    with k steps of ``k_sizes`` rows, given the free scratchpad lines and accumulator
    rows (``extra_acc`` more blocks of ``block_m`` rows are needed, e.g. a residual's
    multipliers).

    Raises
    ------
    ValueError
        If no tiling fits the free on-chip buffers.
    """
    best = None
    for nbuf in range(1, min(config.token_depth, 3) + 1):
        limit = min(acc_free // (nbuf + extra_acc), spad_free // nbuf - config.rows,
                    _MAX_BLOCK_M)
        if limit < 1:
            continue
        least = -(-m // limit)
        heights = {-(-m // tiles) for tiles in (least, 2 * least, 4 * least, 8 * least)
                   if tiles <= m}
        for block_m in sorted(heights, reverse=True):
            cycles = estimate_cycles(config, m=m, k_sizes=k_sizes, n=n, block_m=block_m,
                                     nbuf=nbuf, a_loads=a_loads, out_bytes=out_bytes)
            key = (cycles, -block_m, -nbuf)
            if best is None or key < best[0]:
                best = (key, block_m, nbuf, cycles)
    if best is None:
        raise ValueError(f"no tiling fits {spad_free} free scratchpad lines and {acc_free} "
                         f"free accumulator rows")
    return best[1], best[2], best[3]
