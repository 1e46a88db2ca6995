"""RTL simulation speed: simulated cycles per second of the Verilated accelerator while it
runs a GEMM, with the DRAM model inside the simulation (`gemmstone.hw.sim_top`).

Speed is clock cycles from the START write until STATUS shows the accelerator idle, over
the wall time of that span (cocotb polls STATUS at growing intervals, so almost no Python
runs), and over the simulator's CPU time of that span: on a machine busy with other jobs
the wall-time figure drops while the CPU-time one mostly holds (it is close to what an idle
machine's wall time would be), so the target is judged on it; each model runs the GEMM
``--repeat`` times and the fastest run counts. The image load and dump and the build are
reported apart. Variants under cocotb: the default ports-only model, ``public`` (cocotb's
``--public-flat-rw``: every signal visible) and ``O3`` (C++ compiled with -O3); and
``native``, the rtl backend's C++ server (`gemmstone.driver.backends.rtl_native`: -O3, no
cocotb or VPI), run through the driver, where "sim cycles" is the CYCLES counter and "io s"
the operand copies. Each new variant is a Verilator build of a few minutes on 2 cores,
cached after. Commands::

    .venv/bin/python benchmarks/rtl_speed.py          # 8x8, 16x16, 16x16 -O3, 8x8 public,
                                                      # 8x8 and 16x16 native
    .venv/bin/python benchmarks/rtl_speed.py --full   # also 8x8 -O3 and 16x16 public
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gemmstone.compiler.builder import ProgramBuilder
from gemmstone.compiler.kernels import emit_gemm, pack_qparams
from gemmstone.compiler.reference import gemm_int8
from gemmstone.config import preset
from gemmstone.driver import Device
from gemmstone.driver.backends.rtl_native import build_server
from gemmstone.hw.sim_top import build_sim_top, program_run, run_programs, window_buffer

DRAM_BYTES = 8 << 20
#: GEMM shape (M, N, K) per preset: a run of a few seconds.
SHAPES = {"small": (256, 256, 256), "base": (512, 512, 512)}
TARGET = {"base": 150_000}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def gemm(config, m, n, k):
    rng = np.random.default_rng(1)
    builder = ProgramBuilder(config)
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    b = rng.integers(-128, 128, (k, n), dtype=np.int8)
    bias = rng.integers(-5000, 5000, n).astype(np.int32)
    mult = rng.integers(1 << 20, 1 << 22, n).astype(np.int32)
    shift = np.full(n, 24, np.int32)
    a_buf = builder.buffer("a", (m, k))
    b_buf = builder.buffer("b", (k, n), data=b)
    q_buf = builder.buffer("q", 3 * n, "int32", data=pack_qparams(bias, mult, shift, config.cols))
    out = builder.buffer("out", (m, n))
    emit_gemm(builder, a_buf, b_buf, out, q_buf)
    return builder.finish(), {"a": a}, gemm_int8(a, b, bias, mult, shift)


def measure_native(name: str, repeat: int) -> None:
    """The GEMM through the driver on the rtl backend's native server."""
    config = preset(name)
    started = time.perf_counter()
    server = build_server(config)
    build = time.perf_counter() - started
    m, n, k = SHAPES.get(name, (256, 256, 256))
    program, inputs, expected = gemm(config, m, n, k)
    runs = []
    with Device(config, "rtl", harness="native") as device:
        loaded = device.load(program)
        for _ in range(repeat):
            io_started = time.perf_counter()
            loaded.write("a", inputs["a"])
            cpu_started = cpu_seconds(device.backend.simulator_pid) + time.process_time()
            run_started = time.perf_counter()
            cycles = device.run(loaded, timeout=3600)["cycles"]
            seconds = time.perf_counter() - run_started
            cpu = cpu_seconds(device.backend.simulator_pid) + time.process_time() - cpu_started
            if not np.array_equal(loaded.read("out"), expected):
                raise SystemExit(f"{name} native: the GEMM result differs from numpy")
            runs.append((cycles / cpu, cycles, seconds, cpu,
                         time.perf_counter() - io_started - seconds))
    cpu_speed, cycles, seconds, cpu, io = max(runs)
    report(config, name, "native", (m, n, k), cycles, cycles, seconds, cpu, io, build,
           server.built)


def report(config, name, variant, shape, counter, cycles, seconds, cpu, io, build,
           built) -> None:
    target = TARGET.get(name)
    cpu_speed = cycles / cpu
    verdict = ""
    if target is not None:
        verdict = f"  (target {target:,}: {'met' if cpu_speed >= target else 'missed'})"
    array = f"{config.rows}x{config.cols}"
    print(f"{array:<9}{variant:<8}{'x'.join(map(str, shape)):<14}{counter:>8,}"
          f"{cycles:>11,}{seconds:>8.2f}{cycles / seconds:>12,.0f}{cpu:>8.2f}{cpu_speed:>12,.0f}"
          f"{io:>9.2f}{build:>9.0f} {'built' if built else 'cached'}{verdict}", flush=True)


def measure(name: str, variant: str, repeat: int = 3) -> None:
    if variant == "native":
        measure_native(name, repeat)
        return
    config = preset(name)
    public, optimize = variant == "public", variant == "O3"
    started = time.perf_counter()
    model = build_sim_top(config, dram_bytes=DRAM_BYTES, public=public, optimize=optimize)
    build = time.perf_counter() - started
    m, n, k = SHAPES.get(name, (256, 256, 256))
    program, inputs, expected = gemm(config, m, n, k)
    run = program_run(f"gemm {m}x{n}x{k}", program, inputs, latency=config.dram_latency)
    with tempfile.TemporaryDirectory(prefix="gemmstone-speed-") as workdir:
        results = run_programs(model, config, [run] * repeat, workdir)
    for result in results:
        if not np.array_equal(window_buffer(result.memory, program.buffers["out"]), expected):
            raise SystemExit(f"{name} {variant}: the GEMM result differs from numpy")
    # The fastest of the repeats: other processes only ever slow a run down.
    result = max(results, key=lambda r: r.run_cycles / r.run_cpu_seconds)
    report(config, name, variant, (m, n, k), result.registers["CYCLES"], result.run_cycles,
           result.run_seconds, result.run_cpu_seconds, result.wall_seconds - result.run_seconds,
           build, model.built)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true",
                        help="also 8x8 -O3 and the 16x16 public model (long builds)")
    parser.add_argument("--presets", default="small,base", help="presets (default small,base)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of the GEMM per model; the fastest counts (default 3)")
    args = parser.parse_args()
    command = " ".join(shlex.quote(arg) for arg in [".venv/bin/python", *sys.argv])
    presets = args.presets.split(",")
    plan = [(name, "ports") for name in presets]
    plan += [(name, "O3") for name in presets if args.full or name == "base"]
    plan += [(name, "public") for name in presets if args.full or name == "small"]
    plan += [(name, "native") for name in presets]
    print(f"{'array':<9}{'variant':<8}{'GEMM':<14}{'CYCLES':>8}{'sim cycles':>11}{'run s':>8}"
          f"{'cycles/s':>12}{'cpu s':>8}{'cycles/cpu-s':>13}{'io s':>9}{'build s':>9}")
    for name, variant in plan:
        measure(name, variant, args.repeat)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"load average at the end (1, 5, 15 min): {load} on {os.cpu_count()} CPUs")
    print(f"command: {command}")


if __name__ == "__main__":
    main()
