"""A small cost model of the tiled matmul pipeline, used to choose its tiling.

`gemm.emit_tiled_matmul` cuts the output into tiles of ``block_m`` rows x ``cols``
columns, m tiles outermost; each tile accumulates over k steps (a weight tile of <=
``rows`` rows and an A tile of ``block_m`` lines each). With ``nbuf >= 2`` slots the load,
compute and store units overlap, so a tile costs about the slowest of its loads, its
compute and its store; with one slot they take turns. The A tiles of an m tile are either
kept on chip for all its column blocks (``a_panels`` = 1 or 2 resident panels of every k
step's A tile; 2 lets the next m tile's panel load while this one is used) or, when no
panel fits the scratchpad, reloaded for every column block (``a_panels`` = 0).

Cycle counts per tile:

- loads: per LOAD ``dram_latency`` + 1, plus bytes / ``dram_bytes_per_cycle``: every k
  step's weight tile (``kk * nc`` bytes), and the A tiles (``mb * kk`` bytes, ``a_loads``
  LOADs per step) in the first column block only when the panel is resident;
- compute: PRELOAD ``kk`` rows + MATMUL ``mb`` rows + the array's fill and drain
  (``rows + cols``) per k step;
- store: ``dram_latency`` + ``mb * nc * out_bytes`` / ``dram_bytes_per_cycle``.

`choose_plan` evaluates every (``nbuf``, ``a_panels``, ``block_m``) candidate the on-chip
buffers hold and keeps the cheapest: more slots overlap more but leave shorter tiles (the
weight tiles are fetched once per m tile), a resident panel saves the A reloads but takes
scratchpad that could hold taller tiles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gemmstone.config import AcceleratorConfig

__all__ = ["estimate_cycles", "choose_tiling", "choose_plan", "Plan", "block_limit"]

_MAX_BLOCK_M = (1 << 12) - 1


@dataclass(frozen=True)
class Plan:
    """A tiling of `gemm.emit_tiled_matmul`: tile height, pipeline slots, resident A
    panels (0: A reloaded per column block) and the estimated cycles."""

    block_m: int
    nbuf: int
    a_panels: int
    cycles: int


def block_limit(config: AcceleratorConfig, *, steps: int, nbuf: int, a_panels: int,
                spad_free: int, acc_free: int, extra_acc: int = 0) -> int:
    """The tallest tile (< 1 if none) that ``nbuf`` accumulator slots (plus ``extra_acc``
    blocks), ``nbuf`` weight slots of ``rows`` lines and the A tiles hold: ``a_panels``
    panels of ``steps`` tiles, or ``nbuf`` tiles when ``a_panels`` is 0."""
    a_tiles = a_panels * steps if a_panels else nbuf
    return min(acc_free // (nbuf + extra_acc), (spad_free - nbuf * config.rows) // a_tiles,
               _MAX_BLOCK_M)


def estimate_cycles(config: AcceleratorConfig, *, m: int, k_sizes: Sequence[int], n: int,
                    block_m: int, nbuf: int, a_loads: int = 1, out_bytes: int = 1,
                    a_panels: int = 0) -> int:
    """Estimated cycles of ``emit_tiled_matmul`` with this tiling (see the module
    docstring); ``a_loads`` is the number of LOADs per A tile (a conv gathers one per
    output row run)."""
    bw, lat = config.dram_bytes_per_cycle, config.dram_latency
    fill = config.rows + config.cols
    ksum, steps = sum(k_sizes), len(k_sizes)
    full_m, rest_m = divmod(m, block_m)
    full_n, rest_n = divmod(n, config.cols)
    m_tiles = [(mb, count) for mb, count in ((block_m, full_m), (rest_m, 1)) if mb and count]
    n_blocks = [(config.cols, full_n)] + ([(rest_n, 1)] if rest_n else [])
    overlap = nbuf >= 2

    def tile(mb: int, nc: int, with_a: bool) -> float:
        load = steps * (lat + 1) + ksum * nc / bw
        if with_a:
            load += steps * (lat + a_loads) + mb * ksum / bw
        compute = ksum + steps * (mb + fill)
        store = lat + mb * nc * out_bytes / bw
        return max(load, compute, store) if overlap else load + compute + store

    total = 0.0
    blocks = [(nc, count) for nc, count in n_blocks if count]
    for mb, m_count in m_tiles:
        # A resident panel is loaded with the first column block only.
        per_m = sum(tile(mb, nc, not a_panels) * count for nc, count in blocks)
        per_m += tile(mb, blocks[0][0], True) - tile(mb, blocks[0][0], not a_panels)
        total += per_m * m_count
    if overlap:
        total += (lat + 1 + (m_tiles[0][0] + n_blocks[0][0]) * k_sizes[0] / bw
                  + lat + m_tiles[-1][0] * n_blocks[-1][0] * out_bytes / bw)
    return int(round(total))


def choose_plan(config: AcceleratorConfig, *, m: int, k_sizes: Sequence[int], n: int,
                spad_free: int, acc_free: int, extra_acc: int = 0, a_loads: int = 1,
                out_bytes: int = 1, nbuf: int | None = None) -> Plan:
    """The cheapest `Plan` for an ``m`` x ``n`` output with k steps of ``k_sizes`` rows,
    given the free scratchpad lines and accumulator rows (``extra_acc`` more blocks of
    ``block_m`` rows are needed, e.g. a residual's multipliers); ``nbuf`` fixes the slot
    count.

    Raises
    ------
    ValueError
        If no tiling fits the free on-chip buffers.
    """
    best = None
    steps = len(k_sizes)
    slot_counts = [nbuf] if nbuf else range(1, min(config.token_depth, 3) + 1)
    for slots in slot_counts:
        for a_panels in (2, 1, 0):
            limit = block_limit(config, steps=steps, nbuf=slots, a_panels=a_panels,
                                spad_free=spad_free, acc_free=acc_free, extra_acc=extra_acc)
            if limit < 1:
                continue
            least = -(-m // limit)
            heights = {-(-m // tiles) for tiles in (least, 2 * least, 4 * least, 8 * least)
                       if tiles <= m}
            for block_m in sorted(heights, reverse=True):
                cycles = estimate_cycles(config, m=m, k_sizes=k_sizes, n=n, block_m=block_m,
                                         nbuf=slots, a_loads=a_loads, out_bytes=out_bytes,
                                         a_panels=a_panels)
                key = (cycles, -block_m, -a_panels, -slots)
                if best is None or key < best[0]:
                    best = (key, Plan(block_m, slots, a_panels, cycles))
    if best is None:
        raise ValueError(f"no tiling fits {spad_free} free scratchpad lines and {acc_free} "
                         f"free accumulator rows")
    return best[1]


def choose_tiling(config: AcceleratorConfig, *, m: int, k_sizes: Sequence[int], n: int,
                  spad_free: int, acc_free: int, extra_acc: int = 0, a_loads: int = 1,
                  out_bytes: int = 1) -> tuple[int, int, int]:
    """``(block_m, nbuf, estimated cycles)`` of `choose_plan`."""
    plan = choose_plan(config, m=m, k_sizes=k_sizes, n=n, spad_free=spad_free,
                       acc_free=acc_free, extra_acc=extra_acc, a_loads=a_loads,
                       out_bytes=out_bytes)
    return plan.block_m, plan.nbuf, plan.cycles
