"""Calibration of the performance model against the RTL on Verilator.

The same programs (GEMMs and convolutions from the compiler's kernels, microbenchmarks of
every instruction, assembled programs that wait on tokens) run on the Verilated
accelerator (tests/hw/accelerator_runs.py: cocotbext-axi's AxiRam behind the AXI port,
every counter register read back) and on `gemmstone.sim.performance`. CYCLES must agree
within 2% on every case; the retired counts and bytes moved exactly; the busy and stall
counters closely. The analytic engine (``engine="analytic"``) runs the same cases: its
CYCLES within the same 2% but on the few cases of `ANALYTIC_EXCEPTIONS` (named, with the
reason and their own bound), its retired counts and bytes exactly (its busy and stall
counters are estimates, not checked here). The default suite runs the tiny preset (its
build is shared with tests/hw/test_accelerator.py); the slow tier adds the 4x8 preset.
benchmarks/perf_calibration.py prints the whole error table, larger shapes included.

The case builders and `compare` are imported by the benchmark too.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from gemmstone.compiler.builder import ProgramBuilder
from gemmstone.compiler.kernels.conv import emit_conv2d
from gemmstone.compiler.kernels.gemm import emit_gemm, pack_qparams
from gemmstone.config import AcceleratorConfig
from gemmstone.isa import Program, assemble
from gemmstone.sim.performance import COUNTERS, PerformanceModel
from gemmstone.sim.performance_memory import AXI_RAM

HW_TESTS = Path(__file__).resolve().parents[1] / "hw"
CYCLE_TOLERANCE = 0.02
#: Cases where the analytic engine misses the 2%, and the bound it keeps there on every
#: preset (measured: +4.0% on tiny, +1.2% on 4x8). On tiny's 4-byte bus every fetched
#: instruction word is four beats, about a quarter of this program's read traffic; while
#: dispatch waits on the load queue the RTL fetches a word per freed FIFO slot, between the
#: loads' lines, and the analytic engine fetches eight at a time (one step instead of
#: eight), so the short load that meets them waits for more of them than on the RTL.
ANALYTIC_EXCEPTIONS = {"conv 7x6x5->6 k3 s1 p1": 0.05}
EXACT = ("BYTES_READ", "BYTES_WRITTEN", "RETIRED_LOAD", "RETIRED_COMPUTE", "RETIRED_STORE")


def _harness():
    """tests/hw/accelerator_runs.py (the whole-accelerator harness), imported by path."""
    if str(HW_TESTS) not in sys.path:
        sys.path.insert(0, str(HW_TESTS))
    import accelerator_runs

    return accelerator_runs


# -- cases ---------------------------------------------------------------------------------

def gemm_case(config: AcceleratorConfig, rng: np.random.Generator, m: int, n: int, k: int,
              *, int8: bool = True) -> tuple[str, Program, dict]:
    builder = ProgramBuilder(config)
    a = builder.buffer("a", (m, k))
    b = builder.buffer("b", (k, n), data=rng.integers(-128, 128, (k, n), dtype=np.int8))
    if int8:
        qparams = pack_qparams(rng.integers(-999, 999, n).astype(np.int32),
                               np.full(n, 1 << 20, np.int32), np.full(n, 22, np.int32),
                               config.cols)
        q = builder.buffer("q", 3 * n, "int32", data=qparams)
        out = builder.buffer("out", (m, n))
        emit_gemm(builder, a, b, out, q, zp=-2, lo=-2, hi=127)
    else:
        out = builder.buffer("out", (m, n), "int32")
        emit_gemm(builder, a, b, out)
    name = f"gemm {m}x{n}x{k}{'' if int8 else ' int32'}"
    return name, builder.finish(), {"a": rng.integers(-128, 128, (m, k), dtype=np.int8)}


def conv_case(config: AcceleratorConfig, rng: np.random.Generator, h: int, w: int, cin: int,
              cout: int, kernel: int, stride: int, pad: int) -> tuple[str, Program, dict]:
    builder = ProgramBuilder(config)
    x = builder.buffer("x", (h, w, cin))
    weights = rng.integers(-128, 128, (kernel * kernel * cin, cout), dtype=np.int8)
    wbuf = builder.buffer("w", weights.shape, data=weights)
    ho, wo = (h + 2 * pad - kernel) // stride + 1, (w + 2 * pad - kernel) // stride + 1
    out = builder.buffer("out", (ho, wo, cout), "int32")
    emit_conv2d(builder, x, wbuf, out, None, kernel_size=kernel, stride=stride, padding=pad)
    name = f"conv {h}x{w}x{cin}->{cout} k{kernel} s{stride} p{pad}"
    return name, builder.finish(), {"x": rng.integers(-128, 128, (h, w, cin), dtype=np.int8)}


def _repeat(lines: list[str], times: int) -> str:
    return "\n".join(lines * times + ["halt"])


def overlapping_waits(rows: int, cols: int) -> str:
    """Strided LOADs (as a 1x1 stride-2 convolution reads its input) and LOADQs that start
    while they stream, after a STORE: the load and store units wait for their lines in turn,
    line by line on the shared read channel."""
    lines = []
    for step in range(4):
        lines += [f"load n=40 len={rows} stride={2 * rows} dram={step * 0x100} "
                  f"spad={(step % 2) * 64}",
                  f"store n=12 len={cols} stride={cols} dram=0xc00 mode=int8",
                  f"loadq len={cols} dram=0x800"]
    return "\n".join(lines + ["halt"])


def microbenchmarks(config: AcceleratorConfig) -> list[tuple[str, str]]:
    """(name, assembly) of programs that exercise one instruction kind each."""
    rows, cols, bus = config.rows, config.cols, config.dram_bytes_per_cycle
    line = config.line_bytes
    return [
        ("load aligned lines", _repeat([f"load n=48 len={line} stride={line}"], 6)),
        ("load unaligned lines", _repeat([f"load n=40 len={rows} stride={rows + 3}"], 6)),
        ("load narrow lines", _repeat(["load n=40 len=1 stride=7 dram=3"], 6)),
        ("load with padding", _repeat([f"load n=12 len={rows} stride={2 * rows} pad_lo=3 "
                                       "pad_hi=2"], 8)),
        ("load nothing but padding", _repeat(["load n=0 len=1 pad_lo=9"], 8)),
        ("preload and matmul", _repeat([f"preload k={rows}", "matmul n=24"], 10)),
        ("short matmuls", _repeat([f"preload k={rows}", "matmul n=3"], 12)),
        ("matmul only", _repeat(["matmul n=64 acc=0", "matmul n=64 acc=64 accumulate"], 4)),
        ("alu", _repeat(["alu n=40 func=add dst=0 src=100", "alu n=40 func=max dst=100 "
                         "use_imm imm=5"], 5)),
        ("loadacc int32", _repeat([f"loadacc n=24 len={cols} stride={4 * cols}"], 6)),
        ("loadacc int8 unaligned", _repeat([f"loadacc n=24 len={cols} type=int8 "
                                            f"stride={cols + 1} accumulate"], 6)),
        ("store int8", _repeat([f"store n=40 len={cols} stride={cols} mode=int8"], 6)),
        ("store int8 unaligned", _repeat([f"store n=40 len={cols} stride={cols + 3} "
                                          "mode=int8"], 6)),
        ("store int32", _repeat([f"store n=24 len={cols} stride={4 * cols} mode=int32"], 6)),
        ("loadq and config", _repeat([f"loadq len={cols}", "config zp=1 lo=-3 hi=90"], 8)),
        ("store then loadq", _repeat([f"store n=16 len={cols} stride={bus + 1} mode=int8",
                                      f"loadq len={cols} dram=0x400"], 5)),
        ("fences", _repeat([f"load n=8 len={rows}", "fence", "matmul n=8", "fence"], 6)),
        ("loads and loadqs waiting together", overlapping_waits(rows, cols)),
    ]


def token_programs(config: AcceleratorConfig) -> list[tuple[str, str]]:
    """(name, assembly) of programs whose units wait on each other's tokens."""
    rows, cols = config.rows, config.cols
    chain = []
    for step in range(6):
        pop = " pop_next" if step >= 2 else ""
        chain += [f"load n=20 len={rows} stride={rows} spad={(step % 2) * 64} "
                  f"push_next{pop}",
                  f"preload k={rows} spad={(step % 2) * 64} pop_prev",
                  f"matmul n=20 spad={(step % 2) * 64} acc={(step % 2) * 32} push_next"
                  + (" push_prev" if step < 4 else ""),
                  f"store n=20 len={cols} stride={cols} acc={(step % 2) * 32} dram=0x800 "
                  "mode=int8 pop_prev"]
    pingpong = []
    for step in range(8):
        pingpong += [f"load n=6 len={rows} push_next",
                     "matmul n=6 pop_prev push_next",
                     f"store n=6 len={cols} stride={4 * cols} mode=int32 pop_prev"
                     + (" push_prev" if step < 7 else ""),
                     *(["alu n=6 func=add src=40 pop_next"] if step < 7 else [])]
    return [("load -> compute -> store, double buffered", "\n".join(chain + ["halt"])),
            ("store -> compute ping-pong", "\n".join(pingpong + ["halt"]))]


def calibration_cases(config: AcceleratorConfig, *, large: bool = False,
                      seed: int = 2026) -> list[tuple[str, Program, dict | None]]:
    """Every calibration case of ``config``: kernels of varied shapes (more and larger
    with ``large``), microbenchmarks and token programs."""
    rng = np.random.default_rng(seed)
    cases = [
        gemm_case(config, rng, 13, 9, 21),
        gemm_case(config, rng, 33, 17, 40),
        gemm_case(config, rng, 64, 16, 16),
        gemm_case(config, rng, 20, 8, 12, int8=False),
        conv_case(config, rng, 7, 6, 5, 6, 3, 1, 1),
        conv_case(config, rng, 9, 9, 3, 5, 3, 2, 0),
        conv_case(config, rng, 8, 8, 8, 8, 1, 1, 0),
        # A ResNet downsample: strided loads while the store unit reads its LOADQs.
        conv_case(config, rng, 8, 8, 16, 16, 1, 2, 0),
    ]
    if large:
        cases += [
            gemm_case(config, rng, 96, 40, 72),
            gemm_case(config, rng, 128, 64, 64, int8=False),
            conv_case(config, rng, 14, 14, 16, 16, 3, 1, 1),
            conv_case(config, rng, 16, 16, 8, 24, 3, 2, 1),
        ]
    for name, text in microbenchmarks(config) + token_programs(config):
        cases.append((name, Program(config.content_hash, assemble(text),
                                    window_size=0x4000), None))
    return cases


# -- comparison ----------------------------------------------------------------------------

@dataclass
class Comparison:
    """One case on the RTL and on the model."""

    name: str
    rtl: dict[str, int]
    model: dict[str, int]
    instructions: int
    analytic: dict[str, int] | None = None

    @property
    def error(self) -> float:
        """Relative CYCLES error of the model."""
        return (self.model["CYCLES"] - self.rtl["CYCLES"]) / self.rtl["CYCLES"]

    @property
    def analytic_error(self) -> float | None:
        """Relative CYCLES error of the model's analytic engine (None: not run)."""
        if self.analytic is None:
            return None
        return (self.analytic["CYCLES"] - self.rtl["CYCLES"]) / self.rtl["CYCLES"]


def grant_carries_over() -> bool:
    """Whether the RTL's read arbiter keeps its grant from one run to the next (the runs
    follow each other without a reset), or restarts it at every start
    (``ResetInserter(start)`` around the arbiter in hw/core.py)."""
    import inspect

    from gemmstone.hw import core

    return "ResetInserter(start)(arbiter)" not in inspect.getsource(core)


def compare(config: AcceleratorConfig, model, cases, tmp_path: Path) -> list[Comparison]:
    """Run ``cases`` on the Verilated ``model`` (one simulation, no reset between runs,
    as the harness plays them) and on the performance model."""
    harness = _harness()
    # Long programs move the window up, past their code.
    bases = [max(harness.WINDOW_BASE,
                 -(-(harness.INSTR_BASE + 16 * len(program.words)) // 0x1000) * 0x1000)
             for _, program, _ in cases]
    expectations = [harness.make_run(name, config, program, inputs, window_base=base)
                    for (name, program, inputs), base in zip(cases, bases, strict=True)]
    for expected in expectations:
        if expected.error is not None:
            raise AssertionError(f"{expected.name}: faults on the functional model: "
                                 f"{expected.error}")
    results = harness.play(model, [expected.run for expected in expectations], tmp_path)
    harness.check(results, expectations)
    # The harness's memory is cocotbext-axi's AxiRam.
    perf = PerformanceModel(config, AXI_RAM)
    analytic = PerformanceModel(config, AXI_RAM, engine="analytic")
    carries = grant_carries_over()
    grant = analytic_grant = 0
    comparisons = []
    for (name, program, _), result, base in zip(cases, results, bases, strict=True):
        estimate = perf.run(program.words, instr_base=harness.INSTR_BASE,
                            window_base=base, grant=grant)
        quick = analytic.run(program.words, instr_base=harness.INSTR_BASE,
                             window_base=base, grant=analytic_grant)
        grant = estimate.grant if carries else 0
        analytic_grant = quick.grant if carries else 0
        comparisons.append(Comparison(name, {k: result[k] for k in COUNTERS},
                                      estimate.counters, len(program.words),
                                      quick.counters))
    return comparisons


def problems(comparisons: list[Comparison]) -> list[str]:
    """What falls outside the calibration targets."""
    found = []
    for comparison in comparisons:
        rtl, model = comparison.rtl, comparison.model
        if abs(comparison.error) > CYCLE_TOLERANCE:
            found.append(f"{comparison.name}: CYCLES RTL {rtl['CYCLES']}, model "
                         f"{model['CYCLES']} ({comparison.error:+.2%})")
        for name in EXACT:
            if rtl[name] != model[name]:
                found.append(f"{comparison.name}: {name} RTL {rtl[name]}, model {model[name]}")
        for name in ("BUSY_LOAD", "BUSY_COMPUTE", "BUSY_STORE", "STALL_TOKEN", "STALL_DMA",
                     "STALL_QUEUE"):
            if abs(rtl[name] - model[name]) > max(8, 0.05 * rtl[name]):
                found.append(f"{comparison.name}: {name} RTL {rtl[name]}, model {model[name]}")
        quick = comparison.analytic
        if quick is None:
            continue
        if abs(comparison.analytic_error) > ANALYTIC_EXCEPTIONS.get(comparison.name,
                                                                    CYCLE_TOLERANCE):
            found.append(f"{comparison.name}: CYCLES RTL {rtl['CYCLES']}, analytic "
                         f"{quick['CYCLES']} ({comparison.analytic_error:+.2%})")
        for name in EXACT:
            if rtl[name] != quick[name]:
                found.append(f"{comparison.name}: {name} RTL {rtl[name]}, analytic "
                             f"{quick[name]}")
    return found


def table(comparisons: list[Comparison]) -> str:
    """The error table: one line per case, the worst case last."""
    lines = [f"{'case':48s} {'instrs':>6s} {'RTL cycles':>10s} {'model':>8s} {'error':>7s} "
             f"{'analytic':>8s}  other counters that differ (RTL/model)"]
    for c in comparisons:
        differ = ", ".join(f"{k} {c.rtl[k]}/{c.model[k]}" for k in COUNTERS[1:]
                           if c.rtl[k] != c.model[k])
        quick = "" if c.analytic is None else f"{c.analytic_error:+.2%}"
        lines.append(f"{c.name[:48]:48s} {c.instructions:6d} {c.rtl['CYCLES']:10d} "
                     f"{c.model['CYCLES']:8d} {c.error:+7.2%} {quick:>8s}  {differ}")
    worst = max(comparisons, key=lambda c: abs(c.error))
    lines.append(f"worst: {worst.name} {worst.error:+.2%}")
    analytic = [c for c in comparisons if c.analytic is not None]
    if analytic:
        worst = max(analytic, key=lambda c: abs(c.analytic_error))
        lines.append(f"worst of the analytic engine: {worst.name} "
                     f"{worst.analytic_error:+.2%}")
    return "\n".join(lines)


@pytest.mark.parametrize("preset_name", ["tiny", pytest.param("rect", marks=pytest.mark.slow)])
def test_model_matches_rtl_counters(preset_name, tmp_path):
    config, model = _harness().verilated(preset_name)
    comparisons = compare(config, model, calibration_cases(config), tmp_path)
    print(table(comparisons))
    assert not problems(comparisons), "\n".join(problems(comparisons))


def test_model_constants_match_the_rtl():
    from gemmstone.hw.acc_alu import LATENCY as ALU_LATENCY
    from gemmstone.hw.fetch import FIFO_DEPTH
    from gemmstone.hw.output_stage import LATENCY as OUTPUT_LATENCY
    from gemmstone.hw.register_map import REGISTERS, Kind
    from gemmstone.sim import performance

    assert performance.FETCH_FIFO_DEPTH == FIFO_DEPTH
    assert performance.ALU_LATENCY == ALU_LATENCY
    assert performance.OUTPUT_STAGE_LATENCY == OUTPUT_LATENCY
    assert tuple(r.name for r in REGISTERS if r.kind is Kind.COUNTER) == COUNTERS
