"""The tiling cost model against the performance model: the plan `choose_plan` picks must
run within a few percent of the best plan of its candidate set, as
`gemmstone.sim.performance.estimate` times them (its default memory: the in-simulation
DRAM at the config's latency, as the sweeps use), and a wider DRAM bus must never yield a
slower program."""

from __future__ import annotations

import pytest

from gemmstone.compiler.builder import ProgramBuilder
from gemmstone.compiler.kernels import emit_conv2d, emit_gemm
from gemmstone.compiler.kernels.conv import conv_gather
from gemmstone.compiler.kernels.cost import (
    TIE_TOLERANCE,
    candidate_plans,
    choose_plan,
    estimate_cycles,
    traffic_bytes,
)
from gemmstone.config import preset
from gemmstone.sim.performance import estimate
from gemmstone.sim.sweep.workloads import BERT_BASE_GEMM, RESNET18_CONV

NEAR_BEST = 1.05  # the pick may be this much slower than the best candidate


def gemm_program(config, m, n, k, **plan):
    builder = ProgramBuilder(config)
    a = builder.buffer("a", (m, k))
    b = builder.buffer("b", (k, n))
    q = builder.buffer("q", 3 * n, "int32")
    out = builder.buffer("out", (m, n))
    tiling = emit_gemm(builder, a, b, out, q, **plan)
    return builder.finish(), tiling


def conv_program(config, h, w, cin, cout, kernel, stride, pad, **plan):
    builder = ProgramBuilder(config)
    x = builder.buffer("x", (h, w, cin))
    wt = builder.buffer("w", (kernel * kernel * cin, cout))
    q = builder.buffer("q", 3 * cout, "int32")
    ho, wo = (h + 2 * pad - kernel) // stride + 1, (w + 2 * pad - kernel) // stride + 1
    out = builder.buffer("out", (ho, wo, cout))
    tiling = emit_conv2d(builder, x, wt, out, q, kernel_size=kernel, stride=stride,
                         padding=pad, **plan)
    return builder.finish(), tiling


def cycles(config, program) -> int:
    return estimate(program, config).cycles


def matmul_of(config, kind, shape):
    """(m, k_sizes, n, a_gather, program builder) of a GEMM [m, n, k] or a conv layer."""
    rows = config.rows
    if kind == "gemm":
        m, n, k = shape
        return (m, [min(rows, k - k0) for k0 in range(0, k, rows)], n, None,
                lambda **plan: gemm_program(config, m, n, k, **plan))
    h, w, cin, cout, kernel, stride, pad = shape
    ho, wo = (h + 2 * pad - kernel) // stride + 1, (w + 2 * pad - kernel) // stride + 1
    k_sizes = [min(rows, cin - c0) for _ in range(kernel * kernel)
               for c0 in range(0, cin, rows)]
    gather = conv_gather(h, w, (kernel, kernel), (stride, stride), (pad,) * 4)
    return (ho * wo, k_sizes, cout, gather,
            lambda **plan: conv_program(config, h, w, cin, cout, kernel, stride, pad, **plan))


def check_pick(config, kind, shape, *, max_candidates=None):
    """The measured cycles of the pick (the kernels' default tiling, two slots) and of
    every two-slot candidate; returns the pick's cycles."""
    m, k_sizes, n, a_gather, build = matmul_of(config, kind, shape)
    program, tiling = build()
    picked = cycles(config, program)
    plans = candidate_plans(config, m=m, k_sizes=k_sizes, n=n, spad_free=config.spad_lines,
                            acc_free=config.acc_rows, nbuf=2, a_gather=a_gather)
    chosen = choose_plan(config, m=m, k_sizes=k_sizes, n=n, spad_free=config.spad_lines,
                         acc_free=config.acc_rows, nbuf=2, a_gather=a_gather)
    assert (tiling["block_m"], tiling["a_panels"]) == (chosen.block_m, chosen.a_panels)
    plans.sort(key=lambda plan: plan.cycles)
    measured = {}
    for plan in plans[:max_candidates]:
        program, _ = build(block_m=plan.block_m, nbuf=2, a_panels=plan.a_panels)
        measured[plan] = cycles(config, program)
    best = min(measured.values())
    assert picked <= NEAR_BEST * best, (kind, shape, chosen, picked, best, measured)
    # The estimates roughly follow the performance model: within 15 % on programs of
    # 100 k cycles and more (a few % for the plans that matter), 30 % on tiny ones whose
    # start and end, or tiles of a few rows, are modelled coarsely.
    for plan, real in measured.items():
        low, high = (0.85, 1.15) if real > 100_000 else (0.7, 1.3)
        assert low * real <= plan.cycles <= high * real, (kind, shape, plan, real)
    return picked


# Scaled-down BERT and ResNet shapes (fast on the performance model) and BERT's own
# attention GEMMs; (kind, preset, shape).
FAST_CASES = [
    ("gemm", "small", (128, 128, 64)),       # BERT attn_qk
    ("gemm", "small", (128, 64, 128)),       # BERT attn_av
    ("gemm", "small", (96, 192, 192)),       # a projection, scaled
    ("gemm", "small", (64, 384, 96)),        # FFN up, scaled
    ("gemm", "base", (128, 128, 64)),
    ("gemm", "base", (256, 256, 256)),
    ("conv", "small", (14, 14, 32, 32, 3, 1, 1)),
    ("conv", "small", (14, 14, 16, 32, 3, 2, 1)),
    ("conv", "small", (7, 7, 64, 64, 1, 1, 0)),
    ("conv", "small", (32, 32, 3, 16, 7, 2, 3)),    # a stem
    ("conv", "base", (14, 14, 64, 64, 3, 1, 1)),
]


@pytest.mark.parametrize("bw", [4, 16])
@pytest.mark.parametrize(("kind", "name", "shape"), FAST_CASES)
def test_pick_is_near_the_best_candidate(kind, name, shape, bw):
    config = preset(name).replace(dram_bytes_per_cycle=bw)
    check_pick(config, kind, shape)


@pytest.mark.parametrize(("kind", "name", "shape"), [
    ("gemm", "small", (96, 192, 192)),
    ("gemm", "base", (256, 256, 256)),
    ("conv", "small", (14, 14, 32, 32, 3, 1, 1)),
])
def test_more_bandwidth_is_never_slower(kind, name, shape):
    measured = []
    for bw in (2, 4, 8, 16, 32, 64):
        config = preset(name).replace(dram_bytes_per_cycle=bw)
        program, _ = matmul_of(config, kind, shape)[4]()
        measured.append(cycles(config, program))
    assert measured == sorted(measured, reverse=True), measured


def test_gemm_512_keeps_a_on_chip_at_any_bandwidth():
    # The RTL benchmark's GEMM: reloading A per column block (512-row tiles, 8.7 MB
    # read) looked compute-bound to the old model; the load unit takes a line per cycle.
    for bw in (4, 8, 16, 32):
        config = preset("base").replace(dram_bytes_per_cycle=bw)
        plan = choose_plan(config, m=512, k_sizes=[16] * 32, n=512,
                           spad_free=config.spad_lines, acc_free=config.acc_rows, nbuf=2)
        assert plan.a_panels > 0
        # A and C once, B at most three times (at 4 B/cycle three m tiles with the next
        # one's A panel prefetched beat two m tiles of one panel: 553k vs 586k cycles).
        assert plan.traffic <= 5 * 512 * 512
        reload = estimate_cycles(config, m=512, k_sizes=[16] * 32, n=512, block_m=512,
                                 nbuf=2, a_panels=0)
        assert plan.cycles < reload


def test_ties_go_to_less_traffic():
    config = preset("base")
    k_sizes = [16] * 48
    plans = candidate_plans(config, m=128, k_sizes=k_sizes, n=768,
                            spad_free=config.spad_lines, acc_free=config.acc_rows)
    chosen = choose_plan(config, m=128, k_sizes=k_sizes, n=768,
                         spad_free=config.spad_lines, acc_free=config.acc_rows)
    cheapest = min(plan.cycles for plan in plans)
    assert chosen.cycles <= cheapest * (1 + TIE_TOLERANCE)
    assert chosen.traffic == min(plan.traffic for plan in plans
                                 if plan.cycles <= cheapest * (1 + TIE_TOLERANCE))
    assert chosen.traffic == traffic_bytes(config, m=128, k_sizes=k_sizes, n=768,
                                           block_m=chosen.block_m,
                                           a_panels=chosen.a_panels)


def test_traffic_counts_a_once_per_column_block_without_panels():
    config = preset("small")
    resident = traffic_bytes(config, m=64, k_sizes=[8] * 4, n=32, block_m=32, a_panels=1)
    reloaded = traffic_bytes(config, m=64, k_sizes=[8] * 4, n=32, block_m=32, a_panels=0)
    # A is 64 x 32 bytes, read once or per each of the 4 column blocks; B twice; C once.
    assert resident == 64 * 32 + 2 * 32 * 32 + 64 * 32
    assert reloaded == resident + 3 * 64 * 32


BERT = [(name, (m, n, k)) for name, m, n, k, _ in BERT_BASE_GEMM]
RESNET = [(name, shape) for name, *shape in RESNET18_CONV
          if name in ("layer1.0.conv1", "layer2.0.downsample", "layer3.0.conv1",
                      "layer4.0.conv2")]


@pytest.mark.slow
@pytest.mark.parametrize("bw", [4, 8, 16, 32])
@pytest.mark.parametrize("name", ["small", "base"])
@pytest.mark.parametrize(("kind", "layer", "shape"),
                         [("gemm", *case) for case in BERT] + [("conv", *case)
                                                                for case in RESNET])
def test_pick_is_near_the_best_candidate_on_bert_and_resnet(kind, layer, shape, name, bw):
    config = preset(name).replace(dram_bytes_per_cycle=bw)
    check_pick(config, kind, tuple(shape), max_candidates=6)


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "layer", "shape"),
                         [("gemm", *case) for case in BERT[:1] + BERT[-2:]]
                         + [("conv", *RESNET[0])])
def test_more_bandwidth_is_never_slower_on_bert_and_resnet(kind, layer, shape):
    measured = []
    for bw in (4, 8, 16, 32):
        config = preset("base").replace(dram_bytes_per_cycle=bw)
        program, _ = matmul_of(config, kind, tuple(shape))[4]()
        measured.append(cycles(config, program))
    assert measured == sorted(measured, reverse=True), (layer, measured)
