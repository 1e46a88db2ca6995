"""Performance model speed: all 20 ResNet-18 conv layers on a 32x32 array, and the
speed-up over the RTL on the same programs, for each engine of the model.

    .venv/bin/python benchmarks/perf_speed.py [--no-rtl] [--repeat N]

The model has two engines that give identical results (tests/sim/test_performance_core.py):
``compiled`` (the default; `gemmstone.sim.performance_core`, numba) and ``python`` (the
readable reference, `gemmstone.sim.performance._Run`).

1. Every ResNet-18 conv layer (benchmarks/workloads/resnet18_conv.csv, int8 out with
   requantization, as `gemmstone.compiler.kernels.conv.emit_conv2d` emits it) on a 32x32
   array: instructions, estimated cycles, array utilization and each engine's CPU time per
   layer, the total, and the time per instruction. The compiled engine reads the code as
   it lies in memory (`words_to_bytes`, done before timing, as the RTL's image load is
   not timed either; its cost is printed); its time is the mean of ``--repeat`` passes.
   The first call in a process loads the compiled core from numba's cache
   (~/.cache/gemmstone/numba), or compiles it when the cache is cold: printed apart.
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
from gemmstone.isa.encoding import words_to_bytes
from gemmstone.sim.performance import ENGINES, PerformanceModel
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


def timed(model: PerformanceModel, code, repeat: int = 1, **kwargs):
    """(result, CPU seconds per run) of ``repeat`` runs of ``code``."""
    cpu = time.process_time()
    for _ in range(repeat):
        result = model.run(code, **kwargs)
    return result, (time.process_time() - cpu) / repeat


def first_call() -> float:
    """CPU seconds of the compiled engine's first call in this process (loading the core
    from numba's cache, or compiling it when the cache is cold)."""
    started = time.process_time()
    PerformanceModel(CONFIG, cache=False).run(words_to_bytes([0xA]))  # a lone halt
    return time.process_time() - started


def resnet18(layers: list[dict], repeat: int) -> tuple[int, dict[str, float]]:
    print(f"ResNet-18 conv layers on {CONFIG.describe()}; CPU time per engine")
    print(f"{'layer':22s} {'instrs':>7s} {'cycles':>10s} {'util':>6s} "
          f"{'compiled ms':>11s} {'python s':>8s}")
    models = {engine: PerformanceModel(CONFIG, cache=False, engine=engine)
              for engine in ENGINES}
    cpu = dict.fromkeys(ENGINES, 0.0)
    instrs = cycles = 0
    programs = [conv_program(CONFIG, layer)[0] for layer in layers]
    converted = time.process_time()
    codes = [words_to_bytes(program.words) for program in programs]
    converted = time.process_time() - converted
    for layer, program, code in zip(layers, programs, codes, strict=True):
        result, compiled = timed(models["compiled"], code, repeat)
        reference, python = timed(models["python"], program.words)
        if reference.counters != result.counters:
            raise SystemExit(f"{layer['name']}: the engines disagree: {reference.counters} "
                             f"!= {result.counters}")
        util = int(layer["macs"]) / (result.cycles * CONFIG.macs_per_cycle)
        print(f"{layer['name']:22s} {len(program.words):7d} {result.cycles:10d} {util:6.1%} "
              f"{compiled * 1e3:11.3f} {python:8.3f}")
        cpu["compiled"] += compiled
        cpu["python"] += python
        instrs, cycles = instrs + len(program.words), cycles + result.cycles
    print(f"{'total':22s} {instrs:7d} {cycles:10d} {'':6s} {cpu['compiled'] * 1e3:11.3f} "
          f"{cpu['python']:8.3f}")
    for engine in ENGINES:
        print(f"{engine}: {cpu[engine] / instrs * 1e9:,.0f} ns (CPU) per instruction, "
              f"{cycles / cpu[engine]:,.0f} simulated cycles per CPU second")
    print(f"compiled engine: mean of {repeat} passes; the code as bytes "
          f"(words_to_bytes of the 20 programs' word lists, not timed above): "
          f"{converted * 1e3:.1f} ms")
    cached = PerformanceModel(CONFIG)
    started = time.process_time()
    for code in codes:
        cached.run(code)
    print(f"with the run cache (a layer equal to an earlier one is not simulated again): "
          f"{(time.process_time() - started) * 1e3:.2f} CPU ms for the 20 layers")
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
    models = {engine: PerformanceModel(config, sim_dram(RTL_LATENCY), cache=False,
                                       engine=engine) for engine in ENGINES}
    print(f"\nThe same programs on the RTL and the model: {config.describe()}; RTL = "
          f"Verilated sim_top -O3 with the in-simulation DRAM (latency {RTL_LATENCY})")
    print(f"{'layer':22s} {'instrs':>7s} {'RTL cycles':>10s} {'model':>8s} {'RTL cpu s':>9s} "
          f"{'compiled s':>10s} {'speed-up':>9s} {'python s':>8s} {'speed-up':>8s}")
    rtl_cpu = rtl_cycles = 0
    model_cpu = dict.fromkeys(ENGINES, 0.0)
    for layer, (program, _), run, result in zip(chosen, programs, runs, results, strict=True):
        if result.registers["ERROR_CODE"]:
            raise SystemExit(f"{layer['name']}: the RTL run faulted: {result.registers}")
        window_buffer(result.memory, program.buffers["out"])  # the run produced its output
        code = words_to_bytes(program.words)
        cpu = {}
        for engine, model in models.items():
            estimate, cpu[engine] = timed(model, code if engine == "compiled" else
                                          program.words, 5 if engine == "compiled" else 1,
                                          instr_base=run.instr_base,
                                          window_base=run.window_base)
            model_cpu[engine] += cpu[engine]
        seconds = result.run_cpu_seconds
        print(f"{layer['name']:22s} {len(program.words):7d} {result.registers['CYCLES']:10d} "
              f"{estimate.cycles:8d} {seconds:9.3f} {cpu['compiled']:10.5f} "
              f"{seconds / cpu['compiled']:8,.0f}x {cpu['python']:8.3f} "
              f"{seconds / cpu['python']:7,.0f}x")
        rtl_cpu += seconds
        rtl_cycles += result.run_cycles
    rate = rtl_cycles / rtl_cpu
    print(f"{'total':22s} {'':7s} {'':10s} {'':8s} {rtl_cpu:9.3f} {model_cpu['compiled']:10.5f} "
          f"{rtl_cpu / model_cpu['compiled']:8,.0f}x {model_cpu['python']:8.3f} "
          f"{rtl_cpu / model_cpu['python']:7,.0f}x")
    print(f"RTL: {rate:,.0f} simulated cycles per CPU second on 16x16")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-rtl", action="store_true", help="only the model's timings")
    parser.add_argument("--repeat", type=int, default=5,
                        help="passes of the compiled engine per layer (mean)")
    args = parser.parse_args()
    jit = first_call()
    print(f"compiled engine, first call in this process (numba cache load or compile): "
          f"{jit:.2f} CPU s\n")
    layers = list(csv.DictReader(WORKLOADS.open()))
    cycles, cpu = resnet18(layers, args.repeat)
    if args.no_rtl:
        return
    rate = rtl_speedup(layers)
    rtl = cycles / rate
    print(f"\n20 ResNet-18 convs on 32x32 ({cycles:,} cycles): the RTL, at most {rate:,.0f} "
          f"cycles per CPU s (its speed on 16x16), needs at least {rtl:,.1f} CPU s")
    for engine in ENGINES:
        print(f"  {engine:8s} model {cpu[engine] * 1e3:9.2f} CPU ms: speed-up at least "
              f"{rtl / cpu[engine]:10,.0f}x (target 10,000x)")


if __name__ == "__main__":
    main()
