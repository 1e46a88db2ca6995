"""Performance model speed: all 20 ResNet-18 conv layers on a 32x32 array, and the
speed-up over the RTL on a program both can run.

    .venv/bin/python benchmarks/perf_speed.py

Prints per layer the instructions, estimated cycles, array utilization and the model's
wall time; then one small conv layer on the 8x8 preset on the Verilated RTL (AxiRam) and
on the model, with both wall times.
"""

from __future__ import annotations

import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gemmstone.compiler.builder import ProgramBuilder
from gemmstone.compiler.kernels.conv import emit_conv2d
from gemmstone.config import AcceleratorConfig
from gemmstone.sim.performance import PerformanceModel

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = ROOT.parent / "shared" / "workloads" / "resnet18_conv.csv"
CONFIG = AcceleratorConfig(rows=32, cols=32, spad_kib=512, acc_kib=256,
                           dram_bytes_per_cycle=32, dram_mib=256)


def conv_program(config: AcceleratorConfig, layer: dict):
    h, w, cin, cout, k, s, p = (int(layer[key]) for key in
                                ("h_in", "w_in", "c_in", "c_out", "kernel", "stride", "pad"))
    builder = ProgramBuilder(config)
    x = builder.buffer("x", (h, w, cin))
    weights = builder.buffer("w", (k * k * cin, cout))
    qparams = builder.buffer("q", 3 * cout, "int32")
    out = builder.buffer("out", (int(layer["h_out"]), int(layer["w_out"]), cout))
    emit_conv2d(builder, x, weights, out, qparams, kernel_size=k, stride=s, padding=p)
    return builder.finish()


def resnet18() -> None:
    layers = list(csv.DictReader(WORKLOADS.open()))
    print(f"ResNet-18 conv layers on {CONFIG.describe()}")
    print(f"{'layer':22s} {'instrs':>7s} {'cycles':>10s} {'util':>6s} {'model s':>8s}")
    model = PerformanceModel(CONFIG)
    total_time = total_instrs = total_cycles = 0
    for layer in layers:
        program = conv_program(CONFIG, layer)
        started = time.perf_counter()
        result = model.run(program.words)
        elapsed = time.perf_counter() - started
        util = int(layer["macs"]) / (result.cycles * CONFIG.macs_per_cycle)
        print(f"{layer['name']:22s} {len(program.words):7d} {result.cycles:10d} "
              f"{util:6.1%} {elapsed:8.2f}")
        total_time += elapsed
        total_instrs += len(program.words)
        total_cycles += result.cycles
    print(f"{'total':22s} {total_instrs:7d} {total_cycles:10d} {'':6s} {total_time:8.2f}")


def speedup() -> None:
    sys.path.insert(0, str(ROOT / "tests" / "hw"))
    import accelerator_runs

    config, verilated = accelerator_runs.verilated("small")
    layer = {"h_in": 12, "w_in": 12, "c_in": 16, "c_out": 16, "kernel": 3, "stride": 1,
             "pad": 1, "h_out": 12, "w_out": 12}
    program = conv_program(config, layer)
    inputs = {"x": np.zeros((12, 12, 16), np.int8)}
    run = accelerator_runs.make_run("conv 12x12x16 k3", config, program, inputs)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        [result] = accelerator_runs.play(verilated, [run.run], Path(tmp))
        rtl_time = time.perf_counter() - started
    started = time.perf_counter()
    estimate = PerformanceModel(config).run(program.words,
                                            instr_base=accelerator_runs.INSTR_BASE,
                                            window_base=accelerator_runs.WINDOW_BASE)
    model_time = time.perf_counter() - started
    print(f"\nconv 12x12x16->16 k3 on {config.describe()}: {len(program.words)} instructions")
    print(f"  RTL (Verilator + cocotb, incl. start-up): {result['CYCLES']} cycles, "
          f"{rtl_time:.2f} s")
    print(f"  model: {estimate.cycles} cycles, {model_time * 1e3:.1f} ms; "
          f"speed-up {rtl_time / model_time:,.0f}x")


if __name__ == "__main__":
    resnet18()
    speedup()
