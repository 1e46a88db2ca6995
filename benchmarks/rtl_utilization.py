"""Array utilization on the RTL: useful MACs / (rows x cols x CYCLES) for GEMM 512x512x512
and the ResNet-18 conv layers (224x224 input, batch 1), against the roofline bound.

Every workload is a program from the reference generator (`emit_gemm`, `emit_conv2d`,
int8 output through the requantizing output stage), run on the Verilated accelerator with
the in-simulation DRAM model (`gemmstone.hw.sim_top`); CYCLES and the byte counters come
from the hardware registers, and every output is checked against numpy. Each workload runs
at DRAM rates that are not the bottleneck (0: one bus beat per cycle each way) and that
are (a shared budget of RATE bytes per cycle for reads and writes).

Roofline: peak = rows x cols MACs per cycle; the memory bound takes the bytes the program
actually moved (the BYTES_READ / BYTES_WRITTEN counters) over the bandwidth (the bus width
each way when not throttled, RATE shared when throttled); ``roof`` is the utilization the
slower of the two allows. ``roof-min`` does the same with the compulsory traffic (inputs,
weights and output once), the bound of a perfect tiling.

Timing does not depend on data, so equal layers take equal cycles (to within a cycle: a
run starts from the arbiter state the previous one left): by default each distinct
ResNet-18 layer shape runs once and counts as often as it occurs (not a sample);
``--full`` runs all 20 layers as they are. The throttled rate runs GEMM and the
``--sample`` layers unless ``--full`` is given. Commands::

    .venv/bin/python benchmarks/rtl_utilization.py            # a few minutes
    .venv/bin/python benchmarks/rtl_utilization.py --full     # every layer at every rate
"""

from __future__ import annotations

import argparse
import csv
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gemmstone.compiler.builder import ProgramBuilder
from gemmstone.compiler.kernels import emit_conv2d, emit_gemm, pack_qparams
from gemmstone.compiler.reference import conv2d_int8, gemm_int8
from gemmstone.config import AcceleratorConfig, preset
from gemmstone.hw.sim_top import build_sim_top, program_run, run_programs, window_buffer
from gemmstone.isa import Program

WORKLOADS = Path(__file__).resolve().parent / "workloads" / "resnet18_conv.csv"
DRAM_BYTES = 8 << 20
#: Layers the throttled rates run by default: a stride-1 and a stride-2 3x3 layer and a
#: 1x1 downsample (the 7x7 stem alone takes minutes when throttled).
DEFAULT_SAMPLE = ("layer1.0.conv1", "layer3.0.conv1", "layer4.0.downsample")
TOTAL_LAYERS = 20


@dataclass
class Workload:
    name: str
    program: Program
    inputs: dict[str, np.ndarray]
    macs: int
    compulsory_bytes: int
    expected: np.ndarray
    count: int = 1  # how many layers of the network this run stands for


def _qparams(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    bias = rng.integers(-5000, 5000, n).astype(np.int32)
    mult = rng.integers(1 << 20, 1 << 22, n).astype(np.int32)
    shift = np.full(n, 24, np.int32)
    return bias, mult, shift


def gemm_workload(config: AcceleratorConfig, rng: np.random.Generator, m: int, n: int,
                  k: int) -> Workload:
    builder = ProgramBuilder(config)
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    b = rng.integers(-128, 128, (k, n), dtype=np.int8)
    bias, mult, shift = _qparams(rng, n)
    a_buf = builder.buffer("a", (m, k))
    b_buf = builder.buffer("b", (k, n), data=b)
    q_buf = builder.buffer("q", 3 * n, "int32", data=pack_qparams(bias, mult, shift, config.cols))
    out = builder.buffer("out", (m, n))
    emit_gemm(builder, a_buf, b_buf, out, q_buf)
    expected = gemm_int8(a, b, bias, mult, shift)
    return Workload(f"gemm {m}x{n}x{k}", builder.finish(), {"a": a}, m * n * k,
                    m * k + k * n + m * n + 12 * n, expected)


def conv_workload(config: AcceleratorConfig, rng: np.random.Generator, layer: dict) -> Workload:
    h, w, cin, cout = (int(layer[key]) for key in ("h_in", "w_in", "c_in", "c_out"))
    kernel, stride, pad = (int(layer[key]) for key in ("kernel", "stride", "pad"))
    builder = ProgramBuilder(config)
    x = rng.integers(-128, 128, (h, w, cin), dtype=np.int8)
    weights = rng.integers(-128, 128, (kernel, kernel, cin, cout), dtype=np.int8)
    bias, mult, shift = _qparams(rng, cout)
    ho, wo = (h + 2 * pad - kernel) // stride + 1, (w + 2 * pad - kernel) // stride + 1
    x_buf = builder.buffer("x", (h, w, cin))
    w_buf = builder.buffer("w", (kernel * kernel * cin, cout),
                           data=weights.reshape(-1, cout))
    q_buf = builder.buffer("q", 3 * cout, "int32",
                           data=pack_qparams(bias, mult, shift, config.cols))
    out = builder.buffer("out", (ho, wo, cout))
    emit_conv2d(builder, x_buf, w_buf, out, q_buf, kernel_size=kernel, stride=stride,
                padding=pad)
    expected = conv2d_int8(x, weights, stride=stride, padding=pad, bias=bias, mult=mult,
                           shift=shift)
    macs = ho * wo * cout * kernel * kernel * cin
    if macs != int(layer["macs"]):
        raise AssertionError(f"{layer['name']}: {macs} MACs, the table says {layer['macs']}")
    return Workload(layer["name"], builder.finish(), {"x": x}, macs,
                    x.size + weights.size + ho * wo * cout + 12 * cout, expected)


def resnet_layers(full: bool) -> list[tuple[dict, int]]:
    """(layer, count) pairs: every layer once (``full``) or each distinct shape once with
    the number of layers that have it."""
    with open(WORKLOADS) as handle:
        layers = list(csv.DictReader(handle))
    if full:
        return [(layer, 1) for layer in layers]
    shapes: dict[tuple, list] = {}
    for layer in layers:
        key = tuple(layer[k] for k in ("h_in", "w_in", "c_in", "c_out", "kernel", "stride",
                                       "pad"))
        shapes.setdefault(key, [layer, 0])[1] += 1
    return [(layer, count) for layer, count in shapes.values()]


@dataclass
class Row:
    workload: Workload
    rate: int
    registers: dict[str, int]
    run_seconds: float


def roofline(config: AcceleratorConfig, macs: int, read: int, written: int, rate: int) -> float:
    """The utilization the roofline allows for ``macs`` MACs moving these bytes."""
    compute = macs / config.macs_per_cycle
    if rate:
        memory = (read + written) / rate
    else:
        memory = max(read, written) / config.dram_bytes_per_cycle
    return compute / max(compute, memory)


def print_table(config: AcceleratorConfig, rows: list[Row], title: str) -> None:
    peak = config.macs_per_cycle
    print(f"\n{title}")
    print(f"{'workload':<22}{'x':>3}{'MACs':>12}{'cycles':>11}{'util':>8}{'roof':>8}"
          f"{'roof-min':>9}{'MB read':>9}{'MB wr':>7}{'load%':>7}{'comp%':>7}{'store%':>7}"
          f"{'dma-stall%':>11}{'tok-stall%':>11}{'wall s':>8}")
    for row in rows:
        r, w = row.registers, row.workload
        cycles = r["CYCLES"]
        util = w.macs / (peak * cycles)
        roof = roofline(config, w.macs, r["BYTES_READ"], r["BYTES_WRITTEN"], row.rate)
        roof_min = roofline(config, w.macs, w.compulsory_bytes, 0, row.rate)
        print(f"{w.name:<22}{w.count:>3}{w.macs:>12,}{cycles:>11,}{util:>8.1%}{roof:>8.1%}"
              f"{roof_min:>9.1%}{r['BYTES_READ'] / 1e6:>9.2f}{r['BYTES_WRITTEN'] / 1e6:>7.2f}"
              f"{r['BUSY_LOAD'] / cycles:>7.0%}{r['BUSY_COMPUTE'] / cycles:>7.0%}"
              f"{r['BUSY_STORE'] / cycles:>7.0%}{r['STALL_DMA'] / cycles:>11.0%}"
              f"{r['STALL_TOKEN'] / cycles:>11.0%}{row.run_seconds:>8.1f}")
    convs = [row for row in rows if not row.workload.name.startswith("gemm")]
    if convs:
        macs = sum(row.workload.macs * row.workload.count for row in convs)
        cycles = sum(row.registers["CYCLES"] * row.workload.count for row in convs)
        layers = sum(row.workload.count for row in convs)
        what = "ResNet-18 convs" if layers == TOTAL_LAYERS else "sampled convs"
        print(f"{what:<22}{layers:>3} {macs:>14,} {cycles:>11,}{macs / (peak * cycles):>8.1%}"
              f"   (sum over the {layers} layers these rows stand for)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="base", help="accelerator preset (default base)")
    parser.add_argument("--rates", default="0,4",
                        help="DRAM rates in bytes/cycle, 0 = not throttled (default 0,4)")
    parser.add_argument("--latency", type=int, help="DRAM latency (default: the config's)")
    parser.add_argument("--sample", default=",".join(DEFAULT_SAMPLE),
                        help="layers the throttled rates run without --full")
    parser.add_argument("--no-resnet", action="store_true", help="GEMM only")
    parser.add_argument("--full", action="store_true",
                        help="all 20 layers, at every rate (long)")
    args = parser.parse_args()
    command = " ".join(shlex.quote(arg) for arg in [".venv/bin/python", *sys.argv])
    config = preset(args.preset)
    latency = config.dram_latency if args.latency is None else args.latency
    rates = [int(rate) for rate in args.rates.split(",")]
    rng = np.random.default_rng(0)

    started = time.perf_counter()
    model = build_sim_top(config, dram_bytes=DRAM_BYTES)
    print(f"{config.describe()}\nVerilated model ready in {time.perf_counter() - started:.0f} s "
          f"({'built' if model.built else 'cached'}); DRAM latency {latency} cycles")
    gemm = gemm_workload(config, rng, 512, 512, 512)
    convs = []
    if not args.no_resnet:
        for layer, count in resnet_layers(args.full):
            workload = conv_workload(config, rng, layer)
            workload.count = count
            convs.append(workload)
    sample = set(args.sample.split(","))
    for rate in rates:
        chosen = [gemm] + [w for w in convs if args.full or rate == 0 or w.name in sample]
        runs = [program_run(w.name, w.program, w.inputs, latency=latency, rate=rate)
                for w in chosen]
        with tempfile.TemporaryDirectory(prefix="gemmstone-util-") as workdir:
            results = run_programs(model, config, runs, workdir)
        rows = []
        for workload, result in zip(chosen, results, strict=True):
            if result.registers["ERROR_CODE"]:
                raise SystemExit(f"{workload.name}: error {result.registers['ERROR_CODE']}")
            got = window_buffer(result.memory, workload.program.buffers["out"])
            if not np.array_equal(got, workload.expected):
                raise SystemExit(f"{workload.name}: the RTL output differs from numpy")
            rows.append(Row(workload, rate, result.registers, result.run_seconds))
        what = ("not throttled: one beat per cycle each way, "
                f"{config.dram_bytes_per_cycle} B/cycle read + write" if rate == 0 else
                f"throttled to {rate} B/cycle shared by reads and writes")
        print_table(config, rows, f"DRAM {what} (all outputs checked against numpy)")
    print(f"\ntotal wall time {time.perf_counter() - started:.0f} s\ncommand: {command}")

if __name__ == "__main__":
    main()
