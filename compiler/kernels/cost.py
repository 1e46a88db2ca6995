"""A cost model of the tiled matmul pipeline, used to choose its tiling.

`gemm.emit_tiled_matmul` cuts the output into tiles of ``block_m`` rows x ``cols``
columns, m tiles outermost; each tile accumulates over k steps (a weight tile of <=
``rows`` rows and an A tile of ``block_m`` lines each). Weight tiles of consecutive steps
share one LOAD (a *group*). With ``nbuf >= 2`` slots the load, compute and store units
overlap; with one slot they take turns. The A tiles of an m tile are either kept on chip
for all its column blocks (``a_panels`` = 1 or 2 resident panels; with 2 the next m
tile's panel loads while this one is used: its LOADs are spread over this tile's column
blocks 1..) or reloaded for every column block (``a_panels`` = 0).

The costs follow the RTL as the calibrated performance model (`gemmstone.sim.performance`)
times it, not bytes over bandwidth alone:

- DMA: every DRAM line is its own burst and the load unit takes at most one line per
  cycle, so a LOAD of ``n`` lines of ``len`` bytes streams ``n * ceil(len / bw)`` cycles
  (at least one per line however wide the bus); zero padding lines cost a cycle. A
  weight LOAD adds `LOAD_OVERHEAD`. A gathered A tile's LOADs (one per output row a
  tile touches) follow each other: each costs its data plus `HANDOFF`, or half its round
  trip (two LOADs are in flight at most: DRAM latency, its data, `LOAD_ROUND_TRIP` and
  the instruction words fetched between two), whichever is longer.
  Instruction fetch (one line per word), LOADQ and LOADACC share the read channel: they
  fill the load unit's hand-offs and round trips, so the loads take the longer of the
  load unit's time and the channel's (every beat read); a slot's round trip (below)
  waits for both in turn.
  STORE writes one burst per row.
- compute: a k step's MATMUL streams ``block_m`` lines while the next PRELOAD fills the
  shadow weights; a PRELOAD into a weight bank waits for the array to let go of the
  bank's last input (``rows + cols - 2`` cycles), so a step costs
  ``max(mb + 2, kk + 3, (mb + kk + rows + cols - 1) / 2)``. Results reach the
  accumulator ``rows + cols + 2`` cycles after the last input (the drain).
- slots: a LOAD into a slot waits until the MATMUL that last read it has drained, so one
  slot's round trip (load, DRAM latency, PRELOAD, compute, drain) is spread over
  ``nbuf`` slots; an accumulator slot likewise waits for its tile's STORE.
- look-ahead: dispatch fills the unit queues in program order, so a LOAD starts at most
  ``queue_depth / 2`` k steps before its data is computed on (two compute instructions
  per step); a weight LOAD that takes longer stalls the array, unless the kernel moves it
  earlier in program order (`weight_lead`, as far as its slot is free).
- m tiles: with one resident panel, the next m tile's A loads wait until the array is
  done with the panel, so its first column block starts cold; with
  `interleaved_blocks`, the panel loads over that many interleaved column blocks.
- residual: after the drain, LOADACC of the tile's residual rows, then MULSHR passes that
  reuse the column block's resident multiplier rows (`residual_rows`).

A tile then costs the largest of its loads, compute, store and slot round trips.
`choose_plan` evaluates every (``nbuf``, ``a_panels``, ``block_m``) candidate the on-chip
buffers hold and keeps the cheapest; estimates within `TIE_TOLERANCE` of the cheapest
count as a tie, decided by the DRAM traffic (then taller tiles).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from gemmstone.config import AcceleratorConfig

__all__ = ["estimate_cycles", "choose_tiling", "choose_plan", "candidate_plans", "Plan",
           "block_limit", "interleaved_blocks", "residual_rows", "weight_lead", "traffic_bytes",
           "LOAD_OVERHEAD", "HANDOFF", "LOAD_ROUND_TRIP", "TIE_TOLERANCE"]

_MAX_BLOCK_M = (1 << 12) - 1
_MAX_GROUP = 16      # k steps per weight LOAD at most (gemm._MAX_GROUP)
_WORD_BYTES = 16     # an instruction word is one fetched line
#: Cycles a LOAD adds to its lines when LOADs follow each other (the load unit's back
#: hands over and re-arms between two; measured on the performance model: 5-7).
LOAD_OVERHEAD = 6
#: Cycles between two gathered A LOADs that stream back to back (the back retires one,
#: hands over and starts the next one's lines; measured on the performance model: 4).
HANDOFF = 4
#: Cycles a LOAD's round trip takes besides the DRAM latency, its data and the words
#: fetched meanwhile (measured on the performance model at latencies 10-60: 9).
LOAD_ROUND_TRIP = 9
#: Estimates this close (relative) to the cheapest are a tie, decided by DRAM traffic.
TIE_TOLERANCE = 0.01
_RESIDUAL_SHARE = 4  # a residual's multiplier rows take at most 1 / 4 of the accumulator


@dataclass(frozen=True)
class Plan:
    """A tiling of `gemm.emit_tiled_matmul`: tile height, pipeline slots, resident A
    panels (0: A reloaded per column block), the estimated cycles and DRAM bytes."""

    block_m: int
    nbuf: int
    a_panels: int
    cycles: int
    traffic: int = 0


def residual_rows(block_m: int, n: int, cols: int, acc_free: int) -> tuple[int, int]:
    """``(rows, blocks)`` of a residual's multiplier rows in the accumulator: a block of
    ``rows`` rows per column block of the output, all of them resident (``blocks`` is the
    number of column blocks), within a quarter of the free accumulator (`block_limit`
    leaves it out of the tiles); if even one row per column block does not fit, one block
    reloaded when the column block changes (``blocks`` = 1). The ALU's MULSHR of a tile
    then runs in ``ceil(block_m / rows)`` instructions that reuse the block's rows."""
    reserve = max(1, acc_free // _RESIDUAL_SHARE)
    n_blocks = -(-n // cols)
    if n_blocks <= reserve:
        return max(1, min(block_m, reserve // n_blocks)), n_blocks
    return max(1, min(block_m, reserve)), 1


def weight_lead(config: AcceleratorConfig, block_m: int, lines: int) -> int:
    """Steps a weight LOAD of ``lines`` lines goes earlier in program order than its
    group's first step (0: in time there): it takes a DRAM round trip and its bus beats;
    a step streams ``block_m`` lines or waits for the weight bank (`estimate_cycles`);
    dispatch runs ``queue_depth / 2`` steps ahead."""
    step = max(block_m + 2, (block_m + config.rows + config.rows + config.cols - 1) / 2)
    load = (config.dram_latency + lines * _beats(config.cols, config.dram_bytes_per_cycle)
            + 2 * LOAD_OVERHEAD)
    return max(0, -(-int(load) // int(step)) - config.queue_depth // 2 + 2)


def interleaved_blocks(n_blocks: int, ks: int, a_panels: int, nbuf: int) -> int:
    """Column blocks an m tile that loads its A panel as it computes runs interleaved in
    parts of k (`gemm.emit_tiled_matmul`; 0: none): one per accumulator slot, when there
    are three or more (with two, the next part's A tiles do not load in time)."""
    c = min(nbuf, n_blocks, ks)
    return c if a_panels and c >= 3 else 0


def block_limit(config: AcceleratorConfig, *, steps: int, nbuf: int, a_panels: int,
                spad_free: int, acc_free: int, residual: bool = False) -> int:
    """The tallest tile (< 1 if none) that ``nbuf`` accumulator slots (besides a quarter
    of the accumulator for a ``residual``'s multipliers, `residual_rows`), ``nbuf`` weight
    slots of ``rows`` lines and the A tiles hold: ``a_panels`` panels of ``steps`` tiles,
    or ``nbuf`` tiles when ``a_panels`` is 0."""
    a_tiles = a_panels * steps if a_panels else nbuf
    if residual:
        acc_free -= max(1, acc_free // _RESIDUAL_SHARE)
    return min(acc_free // nbuf, (spad_free - nbuf * config.rows) // a_tiles, _MAX_BLOCK_M)


def _beats(length: int, bw: int) -> int:
    """Bus beats (cycles of the read or write channel) of one DRAM line."""
    return max(1, -(-length // bw))


def _group_size(config: AcceleratorConfig, steps: int, nbuf: int, a_panels: int,
                block_m: int, spad_free: int) -> int:
    """k steps per weight LOAD, as `gemm.emit_tiled_matmul` groups them."""
    left = spad_free - (a_panels * steps if a_panels else nbuf) * block_m
    return max(1, min(steps, _MAX_GROUP, left // (nbuf * config.rows)))


def traffic_bytes(config: AcceleratorConfig, *, m: int, k_sizes: Sequence[int], n: int,
                  block_m: int, a_panels: int, out_bytes: int = 1) -> int:
    """DRAM bytes a tiling moves: A once per m tile (resident) or per column block,
    the weights once per m tile, the output once."""
    ksum = sum(k_sizes)
    m_tiles = -(-m // block_m)
    n_blocks = -(-n // config.cols)
    return m * ksum * (1 if a_panels else n_blocks) + m_tiles * ksum * n + m * n * out_bytes


def estimate_cycles(config: AcceleratorConfig, *, m: int, k_sizes: Sequence[int], n: int,
                    block_m: int, nbuf: int, a_loads: int = 1, out_bytes: int = 1,
                    a_panels: int = 0, spad_free: int | None = None,
                    acc_free: int | None = None, residual: bool = False,
                    a_gather: tuple[float, float] | None = None) -> int:
    """Estimated cycles of ``emit_tiled_matmul`` with this tiling (see the module
    docstring); ``a_loads`` is the number of LOADs per A tile, or ``a_gather`` =
    ``(run, fill)`` says how a convolution gathers A: ``run`` rows per LOAD on average
    (about ``block_m / run + 1 - gcd(block_m, run) / run`` LOADs per tile) and the
    fraction ``fill`` of A lines read from DRAM (the others are zero padding, a cycle
    each); ``spad_free`` (default all) decides the weight groups; ``residual`` adds a
    residual's LOADACC and ALU per tile (its multiplier rows as `residual_rows` places
    them in ``acc_free``, default all)."""
    c = config
    bw, lat = c.dram_bytes_per_cycle, c.dram_latency
    word = _beats(_WORD_BYTES, bw)
    pipe = c.rows + c.cols + 2                  # last input to its accumulator write
    look = max(1, c.queue_depth // (2 + 2 * residual))   # steps dispatch runs ahead
    steps = len(k_sizes)
    kinds = Counter(k_sizes)                    # k step sizes: usually one or two
    ksum = sum(k_sizes)
    kmax = max(k_sizes)
    group = _group_size(c, steps, nbuf, a_panels, block_m,
                        c.spad_lines if spad_free is None else spad_free)
    groups = -(-steps // group)
    group_lines = ksum / groups
    lead = min(weight_lead(c, block_m, group * kmax), (nbuf - 1) * group)
    fill = 1.0 if a_gather is None else a_gather[1]
    full_m, rest_m = divmod(m, block_m)
    full_n, rest_n = divmod(n, c.cols)
    m_tiles = [(mb, count) for mb, count in ((block_m, full_m), (rest_m, 1)) if count and mb]
    n_blocks = [(nc, count) for nc, count in ((c.cols, full_n), (rest_n, 1)) if count and nc]
    mult_rows, mult_blocks = residual_rows(block_m, n, c.cols, c.acc_rows if acc_free is None
                                           else acc_free)
    # Multipliers reloaded per tile (one block of rows for several column blocks).
    reload = residual and mult_blocks == 1 and n > c.cols

    def gather_loads(mb: int) -> float:
        """LOADs of a tile's gathered A tile per step: one per run of output pixels it
        touches. Tiles start at multiples of ``block_m``; where runs are output rows
        (a whole number of pixels), those starts fall on run boundaries every
        ``gcd(block_m, run)`` pixels, so a tile cuts ``1 - gcd / run`` runs more on
        average than ``mb / run``."""
        run = a_gather[0]
        cut = 1 - math.gcd(block_m, int(run)) / run if float(run).is_integer() else 1
        return mb / run + cut

    def a_panel(mb: int) -> tuple[float, float]:
        """Cycles the load unit takes for the A tiles of every step of an m tile, and
        the read channel's cycles for them (padding lines take none)."""
        loads = a_loads if a_gather is None else gather_loads(mb)
        # Two LOADs are in flight at most (the front hands a LOAD over once the back
        # retired the one before): a short LOAD costs half its round trip, which takes
        # the fetch of the step's words (its LOADs, PRELOAD and MATMUL) in turn.
        fetch = (loads + 2) / loads * word
        unit = bus = 0.0
        for kk, count in kinds.items():
            lines = mb * (fill * _beats(kk, bw) + 1 - fill) / loads
            unit += count * loads * max(lines + HANDOFF,
                                        (lat + lines + LOAD_ROUND_TRIP + fetch) / 2)
            bus += count * mb * fill * _beats(kk, bw)
        return unit, bus

    def tile(mb: int, nc: int, with_a: bool, cold: bool, prefetch: float = 0.0) -> float:
        """Cycles of one tile of ``mb`` x ``nc`` (``with_a``: it loads the A tiles;
        ``cold``: nothing of it could load ahead; ``prefetch``: the part of the next m
        tile's panel it loads)."""
        loads = a_loads if a_gather is None else gather_loads(mb)
        w_load = ksum * _beats(nc, bw) + groups * LOAD_OVERHEAD
        a_load, a_bus = a_panel(mb) if with_a else (0.0, 0.0)
        next_load, next_bus = (prefetch * part for part in a_panel(mb))
        alus = -(-mb // mult_rows) if residual else 0
        mult = (lat + 4 + mult_rows * _beats(4 * nc, bw)) if reload else 0
        words = (2 * steps + groups + (steps * loads if with_a else 0) + 2
                 + (1 + alus + reload if residual else 0))
        loadq = 3 * _beats(4 * nc, bw) if out_bytes == 1 else 0
        extra_read = loadq + (mb * _beats(nc, bw) + mult if residual else 0)
        other = words * word + extra_read  # reads of the channel's other clients
        unit = w_load + a_load + next_load
        load = max(unit, ksum * _beats(nc, bw) + a_bus + next_bus + other)
        step = {kk: max(mb + 2, kk + 3, (mb + kk + c.rows + c.cols - 1) / 2) for kk in kinds}
        compute = sum(count * step[kk] for kk, count in kinds.items())
        if residual:  # after the drain, LOADACC int8 of the rows, then the ALU passes
            compute += pipe + lat + 4 + mb * _beats(nc, bw) + mb + 5 * alus + mult
        store = (lat + 4 + loadq if out_bytes == 1 else 0) + mb * _beats(nc * out_bytes, bw) \
            + lat + 4
        per_step = compute / steps
        # Dispatch lets a group's weight LOAD start only `look` steps before its first
        # step (with reloaded A tiles, the slots already keep the loads that close), or
        # `weight_lead` more where its slot is free that early.
        w_wait = max(0.0, lat + 2 * LOAD_OVERHEAD + group_lines * _beats(nc, bw)
                     - (look + lead) * per_step)
        chunks = steps if with_a and not a_panels else groups
        # A slot's round trip: its load and the other reads, the DRAM latency, PRELOAD,
        # compute, drain.
        trip = (unit + other + compute + chunks * (lat + kmax + 3 + pipe)) / nbuf
        acc_trip = (compute + pipe + store + lat) / nbuf
        time = max(load, compute + groups * w_wait, store, trip, acc_trip)
        if cold:  # it starts once the array is done: the first step's data, the drain
            first = (a_load / steps if with_a else 0) + group_lines * _beats(nc, bw)
            time = max(time, load + per_step, first + compute) + lat + pipe
        return time

    total = 0.0
    blocks = sum(count for _, count in n_blocks)
    spread = interleaved_blocks(blocks, steps, a_panels, nbuf)
    for index, (mb, m_count) in enumerate(m_tiles):
        for nb_index, (nc, count) in enumerate(n_blocks):
            first_block = nb_index == 0
            rest = count - 1 if first_block else count
            if spread and first_block and (a_panels == 1 or index == 0):
                # The panel loads over the first `spread` column blocks, interleaved.
                share = 1 / spread
                again = m_count - 1 if index == 0 else m_count  # later m tiles (one panel)
                total += tile(mb, nc, False, True, share) + (spread - 1) * tile(
                    mb, nc, False, False, share) + (rest - spread + 1) * tile(mb, nc, False,
                                                                             False)
                if again and a_panels == 1:
                    # A later m tile's first part loads only once the last one is done.
                    total += again * (share * a_panel(mb)[0] + tile(
                        mb, nc, False, True, share) + (spread - 1) * tile(
                            mb, nc, False, False, share) + (rest - spread + 1) * tile(
                                mb, nc, False, False))
                elif again:  # two panels: the later m tiles' panels are prefetched
                    share = 1 / max(1, blocks - 1)
                    total += again * (tile(mb, nc, False, False)
                                      + rest * tile(mb, nc, False, False, share))
                continue
            if a_panels == 2:
                # The next m tile's panel loads during this one's column blocks 1.. (or
                # its only block), so no first column block waits for its A tiles.
                share = 1 / max(1, blocks - 1) if m_count + index > 1 else 0.0
                total += rest * tile(mb, nc, False, False, share) * m_count
                if first_block:
                    total += tile(mb, nc, False, False, share if blocks == 1 else 0.0) * (
                        m_count - (1 if index == 0 else 0))
                    if index == 0:
                        total += tile(mb, nc, True, True)
                continue
            with_a = not a_panels  # the other column blocks reload A only without panels
            total += rest * tile(mb, nc, with_a, False) * m_count
            if first_block:
                # The first column block loads the resident panel (or the A tiles).
                warm = tile(mb, nc, True, False)
                cold = tile(mb, nc, True, True)
                starts = m_count - (1 if index == 0 else 0)  # m tiles after the first
                total += (cold if a_panels == 1 else warm) * starts
                if index == 0:
                    total += cold
    # The last tile's drain and store, and the first instruction fetch.
    mb, nc = m_tiles[-1][0], n_blocks[-1][0]
    total += pipe + mb * _beats(nc * out_bytes, bw) + 2 * lat + 16
    return int(round(total))


def candidate_plans(config: AcceleratorConfig, *, m: int, k_sizes: Sequence[int], n: int,
                    spad_free: int, acc_free: int, residual: bool = False, a_loads: int = 1,
                    out_bytes: int = 1, nbuf: int | None = None,
                    a_gather: tuple[float, float] | None = None) -> list[Plan]:
    """Every tiling `choose_plan` considers, with its estimate: per slot count (1 to 3,
    or ``nbuf``) and resident panel count (2, 1, 0), the tallest tile that fits and 2, 4
    and 8 times as many tiles. Arguments as in `choose_plan`."""
    found = []
    steps = len(k_sizes)
    slot_counts = [nbuf] if nbuf else range(1, min(config.token_depth, 3) + 1)
    for slots in slot_counts:
        for a_panels in (2, 1, 0):
            limit = block_limit(config, steps=steps, nbuf=slots, a_panels=a_panels,
                                spad_free=spad_free, acc_free=acc_free, residual=residual)
            if limit < 1:
                continue
            least = -(-m // limit)
            heights = {-(-m // tiles) for tiles in (least, 2 * least, 4 * least, 8 * least)
                       if tiles <= m}
            for block_m in sorted(heights, reverse=True):
                cycles = estimate_cycles(config, m=m, k_sizes=k_sizes, n=n, block_m=block_m,
                                         nbuf=slots, a_loads=a_loads, out_bytes=out_bytes,
                                         a_panels=a_panels, spad_free=spad_free,
                                         acc_free=acc_free, residual=residual,
                                         a_gather=a_gather)
                traffic = traffic_bytes(config, m=m, k_sizes=k_sizes, n=n, block_m=block_m,
                                        a_panels=a_panels, out_bytes=out_bytes)
                found.append(Plan(block_m, slots, a_panels, cycles, traffic))
    return found


def choose_plan(config: AcceleratorConfig, *, m: int, k_sizes: Sequence[int], n: int,
                spad_free: int, acc_free: int, residual: bool = False, a_loads: int = 1,
                out_bytes: int = 1, nbuf: int | None = None,
                a_gather: tuple[float, float] | None = None) -> Plan:
    """The cheapest `Plan` for an ``m`` x ``n`` output with k steps of ``k_sizes`` rows,
    given the free scratchpad lines and accumulator rows (with a ``residual``, its
    multipliers take some, `residual_rows`); ``nbuf`` fixes the slot
    count; ``a_loads`` / ``a_gather`` as in `estimate_cycles`. Estimates within
    `TIE_TOLERANCE` of the cheapest go to the one moving the fewest DRAM bytes.

    Raises
    ------
    ValueError
        If no tiling fits the free on-chip buffers.
    """
    found = candidate_plans(config, m=m, k_sizes=k_sizes, n=n, spad_free=spad_free,
                            acc_free=acc_free, residual=residual, a_loads=a_loads,
                            out_bytes=out_bytes, nbuf=nbuf, a_gather=a_gather)
    if not found:
        raise ValueError(f"no tiling fits {spad_free} free scratchpad lines and {acc_free} "
                         f"free accumulator rows")
    cheapest = min(plan.cycles for plan in found)
    ties = [plan for plan in found if plan.cycles <= cheapest * (1 + TIE_TOLERANCE)]
    return min(ties, key=lambda plan: (plan.traffic, plan.cycles, -plan.block_m,
                                       -plan.a_panels, -plan.nbuf))


def choose_tiling(config: AcceleratorConfig, *, m: int, k_sizes: Sequence[int], n: int,
                  spad_free: int, acc_free: int, residual: bool = False, a_loads: int = 1,
                  out_bytes: int = 1) -> tuple[int, int, int]:
    """``(block_m, nbuf, estimated cycles)`` of `choose_plan`."""
    plan = choose_plan(config, m=m, k_sizes=k_sizes, n=n, spad_free=spad_free,
                       acc_free=acc_free, residual=residual, a_loads=a_loads,
                       out_bytes=out_bytes)
    return plan.block_m, plan.nbuf, plan.cycles
