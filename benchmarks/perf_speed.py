"""Performance model speed: all 20 ResNet-18 conv layers on a 32x32 array, and the
speed-up over the RTL on the same programs.

    .venv/bin/python benchmarks/perf_speed.py [--no-rtl]

1. Every ResNet-18 conv layer (benchmarks/workloads/resnet18_conv.csv, int8 out with
   requantization, as `gemmstone.compiler.kernels.conv.emit_conv2d` emits it) on a 32x32
   array: instructions, estimated cycles, array utilization and the model's wall and CPU
   time per layer, the total, and microseconds per instruction.
2. Speed-up over the RTL on the same programs: some of those layers, compiled for the
   16x16 preset, run on the Verilated accelerator with the in-simulation DRAM
   (`gemmstone.hw.sim_top`, C++ only, no Python per cycle, -O3; the fastest RTL
   simulation the project has) and on the model with that DRAM's timing
   (`performance_memory.sim_dram`). Speed-up = the simulator's CPU seconds from START
   until the accelerator is idle (`RunResult.run_cpu_seconds`: no build, start-up or
   image load counted) / the model's CPU seconds for the same program. CPU time, not
   wall time, so other jobs on the machine do not skew it.
3. The speed-up on the 32x32 programs of (1), which are too long to simulate here: the
   RTL's time is estimated from its measured cycles per CPU second on 16x16 (an
   upper bound on its speed: a 32x32 array simulates slower per cycle), so the figure
   is a lower bound.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np

from gemmstone.compiler.builder import ProgramBuilder
from gemmstone.compiler.kernels.conv import emit_conv2d
from gemmstone.compiler.kernels.gemm import pack_qparams
from gemmstone.config import AcceleratorConfig, preset
from gemmstone.sim.performance import PerformanceModel
from gemmstone.sim.performance_memory import sim_dram

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = ROOT / "benchmarks" / "workloads" / "resnet18_conv.csv"
CONFIG = AcceleratorConfig(rows=32, cols=32, spad_kib=512, acc_kib=256,
                           dram_bytes_per_cycle=32, dram_mib=256)
#: Layers run on the RTL for the measured speed-up (full size, 16x16).
RTL_LAYERS = ("layer2.0.downsample", "layer3.0.downsample", "layer4.0.downsample",
              "layer4.0.conv1")
RTL_DRAM_BYTES = 8 << 20
RTL_LATENCY = 20


def conv_program(config: AcceleratorConfig, layer: dict, rng=None):
    """The program of one conv layer (int8 out, requantized); with ``rng``, also random
    inputs for it."""
    h, w, cin, cout, k, s, p = (int(layer[key]) for key in
                                ("h_in", "w_in", "c_in", "c_out", "kernel", "stride", "pad"))
    builder = ProgramBuilder(config)
    x = builder.buffer("x", (h, w, cin))
    rng = rng or np.random.default_rng(0)
    weights = builder.buffer("w", (k * k * cin, cout),
                             data=rng.integers(-128, 128, (k * k * cin, cout), dtype=np.int8))
    qparams = pack_qparams(np.zeros(cout, np.int32), np.full(cout, 1 << 20, np.int32),
                           np.full(cout, 28, np.int32), config.cols)
    q = builder.buffer("q", 3 * cout, "int32", data=qparams)
    out = builder.buffer("out", (int(layer["h_out"]), int(layer["w_out"]), cout))
    emit_conv2d(builder, x, weights, out, q, kernel_size=k, stride=s, padding=p)
    inputs = {"x": rng.integers(-128, 128, (h, w, cin), dtype=np.int8)}
    return builder.finish(), inputs


def timed(model: PerformanceModel, words, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    result = model.run(words, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def resnet18(layers: list[dict]) -> tuple[int, float]:
    print(f"ResNet-18 conv layers on {CONFIG.describe()}")
    print(f"{'layer':22s} {'instrs':>7s} {'cycles':>10s} {'util':>6s} {'wall s':>7s} "
          f"{'cpu s':>7s}")
    model = PerformanceModel(CONFIG, cache=False)
    wall = cpu = instrs = cycles = 0
    programs = []
    for layer in layers:
        program, _ = conv_program(CONFIG, layer)
        programs.append(program)
        result, layer_wall, layer_cpu = timed(model, program.words)
        util = int(layer["macs"]) / (result.cycles * CONFIG.macs_per_cycle)
        print(f"{layer['name']:22s} {len(program.words):7d} {result.cycles:10d} {util:6.1%} "
              f"{layer_wall:7.2f} {layer_cpu:7.2f}")
        wall, cpu = wall + layer_wall, cpu + layer_cpu
        instrs, cycles = instrs + len(program.words), cycles + result.cycles
    print(f"{'total':22s} {instrs:7d} {cycles:10d} {'':6s} {wall:7.2f} {cpu:7.2f}")
    print(f"model: {cpu / instrs * 1e6:.1f} us (CPU) per instruction, "
          f"{cycles / cpu:,.0f} simulated cycles per CPU second")
    cached = PerformanceModel(CONFIG)
    started = time.process_time()
    for program in programs:
        cached.run(program.words)
    print(f"with the run cache (a layer equal to an earlier one is not simulated again): "
          f"{time.process_time() - started:.2f} CPU s for the 20 layers")
    return cycles, cpu


def rtl_speedup(layers: list[dict]) -> float:
    from gemmstone.hw.sim_top import build_sim_top, program_run, run_programs, window_buffer

    config = preset("base")
    chosen = [layer for layer in layers if layer["name"] in RTL_LAYERS]
    programs = [conv_program(config, layer, np.random.default_rng(1)) for layer in chosen]
    rtl = build_sim_top(config, dram_bytes=RTL_DRAM_BYTES, optimize=True)
    runs = [program_run(layer["name"], program, inputs, latency=RTL_LATENCY)
            for layer, (program, inputs) in zip(chosen, programs, strict=True)]
    with tempfile.TemporaryDirectory(prefix="gemmstone-perf-speed-") as workdir:
        results = run_programs(rtl, config, runs, workdir)
    model = PerformanceModel(config, sim_dram(RTL_LATENCY), cache=False)
    print(f"\nThe same programs on the RTL and the model: {config.describe()}; RTL = "
          f"Verilated sim_top -O3 with the in-simulation DRAM (latency {RTL_LATENCY})")
    print(f"{'layer':22s} {'instrs':>7s} {'RTL cycles':>10s} {'model':>8s} {'RTL cpu s':>9s} "
          f"{'model cpu s':>11s} {'speed-up':>9s}")
    rtl_cpu = model_cpu = rtl_cycles = 0
    for layer, (program, _), run, result in zip(chosen, programs, runs, results, strict=True):
        if result.registers["ERROR_CODE"]:
            raise SystemExit(f"{layer['name']}: the RTL run faulted: {result.registers}")
        window_buffer(result.memory, program.buffers["out"])  # the run produced its output
        estimate, _, cpu = timed(model, program.words, instr_base=run.instr_base,
                                 window_base=run.window_base)
        print(f"{layer['name']:22s} {len(program.words):7d} {result.registers['CYCLES']:10d} "
              f"{estimate.cycles:8d} {result.run_cpu_seconds:9.3f} {cpu:11.4f} "
              f"{result.run_cpu_seconds / cpu:8,.0f}x")
        rtl_cpu, model_cpu = rtl_cpu + result.run_cpu_seconds, model_cpu + cpu
        rtl_cycles += result.run_cycles
    rate = rtl_cycles / rtl_cpu
    print(f"{'total':22s} {'':7s} {'':10s} {'':8s} {rtl_cpu:9.3f} {model_cpu:11.4f} "
          f"{rtl_cpu / model_cpu:8,.0f}x")
    print(f"RTL: {rate:,.0f} simulated cycles per CPU second on 16x16")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-rtl", action="store_true", help="only the model's timings")
    args = parser.parse_args()
    layers = list(csv.DictReader(WORKLOADS.open()))
    cycles, cpu = resnet18(layers)
    if args.no_rtl:
        return
    rate = rtl_speedup(layers)
    print(f"\n20 ResNet-18 convs on 32x32: model {cpu:.1f} CPU s; the RTL, at most "
          f"{rate:,.0f} cycles per CPU s (its speed on 16x16), needs at least "
          f"{cycles / rate:,.0f} CPU s for their {cycles:,} cycles: speed-up at least "
          f"{cycles / rate / cpu:,.1f}x (target 10,000x)")


if __name__ == "__main__":
    main()
