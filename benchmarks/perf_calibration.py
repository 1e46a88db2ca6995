"""Performance model vs RTL: the error table of GEMMs and ResNet-18 conv layers per config.

Runs the same programs on the Verilated accelerator with cocotbext-axi's AxiRam behind its
AXI port (tests/hw/accelerator_runs.py: the memory the model's default timing `AXI_RAM`
is calibrated on; every output is checked byte-exact against the functional model) and on
`gemmstone.sim.performance`, and prints per case the RTL's and the model's CYCLES, the
error, the analytic engine's error (``engine="analytic"``), and the other counters that
differ; then the worst case per config of both engines.

Cases: GEMMs of varied shapes (int8 out with requantization, and int32 out) and the
ResNet-18 conv layers (benchmarks/workloads/resnet18_conv.csv) with their channels,
kernel, stride and padding but a smaller feature map, so that a run takes seconds on the
cocotb-driven AxiRam (a few thousand cycles per second). ``--full`` adds every distinct
ResNet-18 conv shape whose weights fit the 1 MiB AxiRam (layer4's 3x3 convs, 1.2-2.4 MB of
weights, do not), larger feature maps, larger GEMMs, and the microbenchmark and token
programs of tests/sim/test_performance_calibration.py. Commands::

    .venv/bin/python benchmarks/perf_calibration.py                 # small (8x8), base (16x16)
    .venv/bin/python benchmarks/perf_calibration.py --full tiny rect small base
    .venv/bin/python benchmarks/perf_calibration.py --dram sim --latencies 2,20,60 --full

``--dram sim`` runs the same cases on the in-simulation DRAM instead (`gemmstone.hw.sim_top`
with `gemmstone.hw.sim_dram`; no Python per cycle, so ``--full`` takes minutes, not hours)
at each DRAM latency of ``--latencies``, against the model with
`gemmstone.sim.performance_memory.sim_dram` timing; each run starts from a reset read
arbiter. Outputs are not checked there (the RTL tests do that); the error table is.

A preset whose Verilator build is not cached is built first (minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "sim"))

from test_performance_calibration import (  # noqa: E402
    Comparison,
    _harness,
    calibration_cases,
    compare,
    gemm_case,
    problems,
    table,
)

from gemmstone.compiler.builder import ProgramBuilder  # noqa: E402
from gemmstone.compiler.kernels.conv import emit_conv2d  # noqa: E402
from gemmstone.compiler.kernels.gemm import pack_qparams  # noqa: E402
from gemmstone.config import AcceleratorConfig, preset  # noqa: E402
from gemmstone.sim.performance import COUNTERS, PerformanceModel  # noqa: E402
from gemmstone.sim.performance_memory import sim_dram  # noqa: E402

WORKLOADS = ROOT / "benchmarks" / "workloads" / "resnet18_conv.csv"
#: The AxiRam's size (the harness's default of 256 KiB holds no 128-channel 3x3 weights).
RAM_BYTES = 1 << 20
#: Feature-map height/width of the scaled layers: default and --full, by kernel size.
SIZES = {False: {7: 16, 3: 8, 1: 8}, True: {7: 32, 3: 14, 1: 14}}
DEFAULT_LAYERS = ("conv1", "layer1.0.conv1", "layer2.0.conv1", "layer2.0.downsample",
                  "layer3.0.downsample")
DEFAULT_GEMMS = [(13, 9, 21, True), (33, 17, 40, True), (64, 16, 16, True),
                 (96, 40, 72, True), (20, 8, 12, False)]
FULL_GEMMS = [(128, 64, 64, False), (100, 100, 100, True), (256, 64, 128, True)]


def resnet_layers(full: bool) -> list[dict]:
    """The ResNet-18 conv layers to run: one per distinct shape (first name kept)."""
    seen, layers = set(), []
    for layer in csv.DictReader(WORKLOADS.open()):
        shape = tuple(int(layer[k]) for k in ("c_in", "c_out", "kernel", "stride", "pad"))
        if shape in seen or (not full and layer["name"] not in DEFAULT_LAYERS):
            continue
        seen.add(shape)
        cin, cout, kernel = shape[:3]
        if kernel * kernel * cin * cout > RAM_BYTES // 2:
            continue  # the weights do not fit the AxiRam next to the activations
        layers.append(layer)
    return layers


def conv_layer_case(config: AcceleratorConfig, rng: np.random.Generator, layer: dict,
                    size: int):
    """(name, program, inputs) of ``layer`` on a ``size`` x ``size`` feature map, int8
    out with requantization as a quantized network runs it."""
    cin, cout, kernel, stride, pad = (int(layer[k]) for k in
                                      ("c_in", "c_out", "kernel", "stride", "pad"))
    out_size = (size + 2 * pad - kernel) // stride + 1
    builder = ProgramBuilder(config)
    x = builder.buffer("x", (size, size, cin))
    weights = rng.integers(-128, 128, (kernel * kernel * cin, cout), dtype=np.int8)
    w = builder.buffer("w", weights.shape, data=weights)
    qparams = pack_qparams(rng.integers(-999, 999, cout).astype(np.int32),
                           np.full(cout, 1 << 20, np.int32), np.full(cout, 26, np.int32),
                           config.cols)
    q = builder.buffer("q", 3 * cout, "int32", data=qparams)
    out = builder.buffer("out", (out_size, out_size, cout))
    emit_conv2d(builder, x, w, out, q, kernel_size=kernel, stride=stride, padding=pad)
    name = (f"{layer['name']} {size}x{size}x{cin}->{cout} k{kernel} s{stride}")
    inputs = {"x": rng.integers(-128, 128, (size, size, cin), dtype=np.int8)}
    return name, builder.finish(), inputs


def cases(config: AcceleratorConfig, full: bool) -> list:
    rng = np.random.default_rng(2026)
    found = [gemm_case(config, rng, m, n, k, int8=int8)
             for m, n, k, int8 in DEFAULT_GEMMS + (FULL_GEMMS if full else [])]
    for layer in resnet_layers(full):
        found.append(conv_layer_case(config, rng, layer, SIZES[full][int(layer["kernel"])]))
    if full:
        found += calibration_cases(config, large=True)
    return found


def compare_sim_dram(config: AcceleratorConfig, cases_: list, latency: int,
                     workdir: Path) -> list[Comparison]:
    """``cases_`` on the Verilated sim_top at DRAM ``latency`` and on the model."""
    from gemmstone.hw.sim_top import build_sim_top, program_run, run_programs

    model = build_sim_top(config, dram_bytes=RAM_BYTES * 8, optimize=True)
    runs = [program_run(name, program, inputs, latency=latency)
            for name, program, inputs in cases_]
    results = run_programs(model, config, runs, workdir)
    perf = PerformanceModel(config, sim_dram(latency), cache=False)
    analytic = PerformanceModel(config, sim_dram(latency), cache=False, engine="analytic")
    comparisons = []
    for (name, program, _), run, result in zip(cases_, runs, results, strict=True):
        if result.registers["ERROR_CODE"] or result.dram_error:
            raise SystemExit(f"{name}: the sim_top run faulted: {result.registers}")
        addresses = {"instr_base": run.instr_base, "window_base": run.window_base}
        estimate = perf.run(program.words, **addresses)
        quick = analytic.run(program.words, **addresses)
        comparisons.append(Comparison(f"{name} @{latency}",
                                      {k: result.registers[k] for k in COUNTERS},
                                      estimate.counters, len(program.words), quick.counters))
    return comparisons


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("presets", nargs="*", default=["small", "base"])
    parser.add_argument("--full", action="store_true", help="every case (slow on 16x16)")
    parser.add_argument("--dram", choices=("axiram", "sim"), default="axiram",
                        help="the RTL's memory: cocotbext-axi's AxiRam (default) or sim_top's "
                             "in-simulation DRAM")
    parser.add_argument("--latencies", default="20",
                        help="DRAM latencies for --dram sim, comma separated (default 20)")
    args = parser.parse_args(argv)
    harness = _harness()
    harness.RAM_BYTES = RAM_BYTES
    worst, worst_analytic = [], []
    for name in args.presets:
        started = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            if args.dram == "sim":
                config = preset(name)
                found = cases(config, args.full)
                comparisons = []
                for latency in (int(x) for x in args.latencies.split(",")):
                    comparisons += compare_sim_dram(config, found, latency,
                                                    Path(tmp) / str(latency))
                memory = f"sim_top's DRAM at latencies {args.latencies}"
            else:
                config, model = harness.verilated(name)
                comparisons = compare(config, model, cases(config, args.full), Path(tmp))
                memory = "AxiRam behind the AXI port; outputs checked byte-exact"
        cycles = sum(c.rtl["CYCLES"] for c in comparisons)
        print(f"\n== {name}: {config.describe()}\n   {len(comparisons)} cases, {cycles:,} RTL "
              f"cycles, {time.time() - started:.0f} s ({memory})")
        print(table(comparisons))
        for problem in problems(comparisons):
            print(f"  outside target: {problem}")
        worst.append(max(comparisons, key=lambda c: abs(c.error)))
        worst_analytic.append(max(comparisons, key=lambda c: abs(c.analytic_error)))
    print("\nworst case per config (CYCLES, model vs RTL; the analytic engine's worst):")
    for name, comparison, quick in zip(args.presets, worst, worst_analytic, strict=True):
        print(f"  {name:6s} {comparison.name}: RTL {comparison.rtl['CYCLES']}, model "
              f"{comparison.model['CYCLES']} ({comparison.error:+.2%}); analytic "
              f"{quick.name}: {quick.analytic['CYCLES']} ({quick.analytic_error:+.2%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
