"""Speed of the driver's ``rtl`` backend: simulated cycles per wall second of a GEMM run
through `gemmstone.driver.Device` (register writes, START, polling STATUS, reading the
counters: everything a user's run costs, over the socket to the simulator process).

The figure is the run's CYCLES counter over the wall time of ``Device.run`` (start to the
counters read back), and over the CPU time the simulator process and this one spent in that
span (on a machine busy with other jobs the wall-time figure drops while the CPU-time one
mostly holds); the copy in and out of the operands is timed apart. Each preset runs
the GEMM ``--repeat`` times on one device and the fastest run counts (other jobs on the
machine only ever slow a run down). ``--harness cocotb`` runs the design under cocotb
(cocotb's clock through VPI, memory through files) instead of the default native C++
server; ``--memory axi-ram`` runs the oldest memory model (cocotbext-axi's AxiRam, Python
per beat). The first run of a config builds its Verilator model (minutes, cached by content
hash after); build and simulator start ("open") are reported apart. Commands::

    .venv/bin/python benchmarks/rtl_backend_speed.py                    # small and base
    .venv/bin/python benchmarks/rtl_backend_speed.py --harness cocotb   # the cocotb server
    .venv/bin/python benchmarks/rtl_backend_speed.py --memory axi-ram    # the first backend
"""

from __future__ import annotations

import argparse
import inspect
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from gemmstone.compiler.kernels.cases import gemm_case
from gemmstone.config import preset
from gemmstone.driver import Device

#: GEMM shape (M, N, K) per preset: a few hundred thousand accelerator cycles, so the run,
#: not the handful of register accesses around it, sets the figure.
SHAPES = {"tiny": (128, 128, 128), "small": (256, 256, 256), "rect": (256, 256, 256),
          "base": (512, 512, 512)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def build(config, memory: str, harness: str) -> None:
    """Build (or find cached) the simulator a device will run, outside the timed part."""
    from gemmstone.driver.backends.rtl import build_model
    from gemmstone.driver.backends.rtl_native import build_server

    if (harness or ("native" if memory == "dram" else "cocotb")) == "native":
        build_server(config)
    else:
        build_model(config, "sim_top" if memory == "dram" else "accelerator")


def measure(name: str, memory: str, harness: str, repeat: int,
            shape: tuple[int, int, int] | None) -> None:
    config = preset(name)
    m, n, k = shape or SHAPES[name]
    program, inputs, expected = gemm_case(config, np.random.default_rng(1), m, n, k)
    options = {"memory": memory} if memory else {}
    if harness:
        options["harness"] = harness
    started = time.perf_counter()
    with Device(config, "rtl", **options) as device:
        opened = time.perf_counter() - started
        harness = device.backend.harness
        loaded = device.load(program)
        runs = []
        for _ in range(repeat):
            copy_started = time.perf_counter()
            loaded.write("a", inputs["a"])
            pid = device.backend.simulator_pid
            cpu_started = cpu_seconds(pid) + time.process_time()
            run_started = time.perf_counter()
            counters = device.run(loaded, timeout=3600)
            run_seconds = time.perf_counter() - run_started
            run_cpu = cpu_seconds(pid) + time.process_time() - cpu_started
            out = loaded.read("out")
            copy_seconds = time.perf_counter() - copy_started - run_seconds
            if not np.array_equal(out, expected["out"]):
                raise SystemExit(f"{name}: the GEMM result differs from numpy")
            runs.append((counters["cycles"] / run_cpu, counters["cycles"] / run_seconds,
                         counters["cycles"], run_seconds, run_cpu, copy_seconds))
    cpu_speed, speed, cycles, seconds, cpu, copy_seconds = max(runs)
    array = f"{config.rows}x{config.cols}"
    print(f"{array:<7}{memory or 'dram':<8}{harness:<8}{f'{m}x{n}x{k}':<14}{cycles:>9,}"
          f"{seconds:>8.2f}"
          f"{speed:>12,.0f}{cpu:>8.2f}{cpu_speed:>14,.0f}{copy_seconds:>8.3f}{opened:>9.1f}",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="small,base", help="presets (default small,base)")
    parser.add_argument("--memory", default="",
                        help="the rtl backend's memory model (default: the backend's default)")
    parser.add_argument("--harness", default="",
                        help="native or cocotb (default: the backend's default for the memory)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of the GEMM per preset; the fastest counts (default 3)")
    parser.add_argument("--shape", default="",
                        help="GEMM M,N,K for every preset (default: per preset, "
                             + ", ".join(f"{p} {'x'.join(map(str, s))}" for p, s in SHAPES.items())
                             + ")")
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(",")) if args.shape else None
    command = " ".join(shlex.quote(arg) for arg in [".venv/bin/python", *sys.argv])
    from gemmstone.driver.backends.rtl import RtlBackend

    default_memory = inspect.signature(RtlBackend).parameters["memory"].default
    print(f"rtl backend, memory model {args.memory or default_memory!r}")
    print(f"{'array':<7}{'memory':<8}{'harness':<8}{'GEMM':<14}{'CYCLES':>9}{'run s':>8}"
          f"{'cycles/s':>12}{'cpu s':>8}{'cycles/cpu-s':>14}{'copy s':>8}{'open s':>9}")
    for name in args.presets.split(","):
        build(preset(name), args.memory or default_memory, args.harness)
        measure(name, args.memory, args.harness, args.repeat, shape)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"load average at the end (1, 5, 15 min): {load} on {os.cpu_count()} CPUs")
    print(f"command: {command}")


if __name__ == "__main__":
    main()
