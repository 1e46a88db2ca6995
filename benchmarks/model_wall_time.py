"""Wall time of one ResNet-18 inference (batch 1) through the driver, per backend.

ResNet-18 (the model registry's, `gemmstone.compiler.models.registry`: 1000 classes,
random weights and batch-norm statistics, seed 0) on a 224x224 input
is compiled for the base 16x16 preset (cached on disk: the first run compiles) and run
through the Device API (`gemmstone.driver.loaded_model.LoadedModel`) on each backend: the
functional model first, the Verilated RTL last. Printed per backend: time to open the
device, to load the programs (weights included), and to run the inference (the figure;
target on rtl: <= 60 s, VTA's RTL simulation took 228 s for ResNet-18), the CYCLES
counter, the CPU time of the rtl simulator process (open + load + run; the wall time
depends on what else the machine runs), and the cosine similarity of the output to PyTorch
float (and whether it equals func's).

    .venv/bin/python benchmarks/model_wall_time.py [--backends func,rtl] [--size 224]
        [--harness native|cocotb]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

from gemmstone.compiler.compile import compile_model, default_cache_dir
from gemmstone.compiler.frontends.torch_fx import from_torch
from gemmstone.compiler.models.registry import build
from gemmstone.config import preset
from gemmstone.driver import Device
from gemmstone.driver.loaded_model import LoadedModel


def cosine(a, b) -> float:
    a, b = np.asarray(a, np.float64).reshape(-1), np.asarray(b, np.float64).reshape(-1)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="func,rtl",
                        help="comma-separated backends, run in this order (default func,rtl)")
    parser.add_argument("--size", type=int, default=224, help="input image size")
    parser.add_argument("--preset", default="base", help="accelerator preset (default base)")
    parser.add_argument("--harness", default="",
                        help="rtl simulator: native (the default) or cocotb")
    parser.add_argument("--timeout", type=float, default=4 * 3600.0,
                        help="seconds one program may run on a device")
    args = parser.parse_args()
    config = preset(args.preset)
    print(f"command: .venv/bin/python {' '.join(sys.argv)}")
    print(f"ResNet-18, batch 1, {args.size}x{args.size}, {config.describe()}")

    model, shape = build("resnet18", size=args.size, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    calibration = [(rng.standard_normal(x.shape).astype(np.float32),) for _ in range(2)]
    calibration.append((x,))
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    started = time.perf_counter()
    graph = from_torch(model, (torch.from_numpy(x),), name="resnet18")
    compiled = compile_model(graph, config, samples=calibration, cache_dir=default_cache_dir())
    totals = compiled.report["totals"]
    print(f"compile (or cache read): {time.perf_counter() - started:.1f} s; "
          f"{totals['accelerator_ops']} accelerator ops in {totals['programs']} programs, "
          f"{totals['instructions']:,} instructions, {totals['macs']:,} MACs, "
          f"~{totals['cycles']:,} estimated cycles", flush=True)

    outputs = {}
    for backend in args.backends.split(","):
        options = {}
        if backend == "rtl":
            # Build (or find in the cache) the Verilated model first: not part of the figure.
            from gemmstone.driver.backends.rtl import build_model
            from gemmstone.driver.backends.rtl_native import build_server

            started = time.perf_counter()
            if args.harness == "cocotb":
                build_model(config)
            else:
                build_server(config)
            print(f"rtl: Verilator build (or cache hit): {time.perf_counter() - started:.1f} s",
                  flush=True)
            if args.harness:
                options["harness"] = args.harness
        started, children = time.perf_counter(), _children_cpu()
        with Device(config, backend, timeout=args.timeout, **options) as device:
            opened = time.perf_counter()
            loaded = LoadedModel(compiled, device)
            ready = time.perf_counter()
            (out,) = loaded(x)
            done = time.perf_counter()
            cycles = loaded.counters["cycles"]
        # The rtl simulator is a child process: its CPU time counts once it has exited.
        simulator = _children_cpu() - children
        outputs[backend] = out
        versus = "" if backend == "func" or "func" not in outputs else \
            f", identical to func: {np.array_equal(out, outputs['func'])}"
        peak = config.rows * config.cols * max(cycles, 1)
        clock = f", {cycles:,} cycles ({totals['macs'] / peak:.1%} utilization)" if cycles else ""
        cpu = f", simulator CPU {simulator:.1f} s" if simulator > 0.5 else ""
        name = f"{backend} ({device.backend.harness})" if backend == "rtl" else backend
        print(f"{name}: inference {done - ready:.1f} s wall (open {opened - started:.1f} s, "
              f"load {ready - opened:.1f} s{cpu}){clock}; cosine to float "
              f"{cosine(out, want):.4f}{versus}", flush=True)


def _children_cpu() -> float:
    times = os.times()
    return times.children_user + times.children_system


if __name__ == "__main__":
    main()
