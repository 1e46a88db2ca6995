"""Performance model speed: all 20 ResNet-18 conv layers on a 32x32 array, and the
speed-up over the RTL measured on the same programs, for each engine of the model.

    .venv/bin/python benchmarks/perf_speed.py [--no-rtl] [--rtl-layers NAMES] [--repeat N]
                                              [--rerun-rtl]

The model's engines are `gemmstone.sim.performance.ENGINES`: ``compiled`` (the default;
`gemmstone.sim.performance_core`, numba) and ``python`` (the readable reference,
`gemmstone.sim.performance._Run`) give identical results (tests/sim/test_performance_core.py,
and checked here); any other engine (an approximate one) is reported with its cycle error
against the compiled engine and against the RTL.

1. Every ResNet-18 conv layer (benchmarks/workloads/resnet18_conv.csv, int8 out with
   requantization, as `gemmstone.compiler.kernels.conv.emit_conv2d` emits it) on `CONFIG`
   (32x32): instructions, estimated cycles, array utilization and each engine's CPU time
   per layer, the total, and the time per instruction. Every engine but ``python`` reads
   the code as it lies in memory (`words_to_bytes`, done before timing, as the RTL's
   image load is not timed either; its cost is printed), ``python`` the word list. Each
   engine runs ``--repeat`` passes over the 20 programs back to back, as a sweep runs
   them (one pass for ``python``); a program's time is the median of its passes and the
   total the median of the passes' totals, so a pass slowed by another job on this
   shared machine does not count and the fastest is not picked either. Each engine's first
   call in the process (the compiled core loads from numba's cache,
   ~/.cache/gemmstone/numba, or compiles when the cache is cold) is printed apart.
2. The same 20 programs on the RTL: the Verilated accelerator for `CONFIG` with the
   in-simulation DRAM (`gemmstone.hw.sim_top`, `gemmstone.hw.sim_dram`), built as the
   ``rtl`` backend's native simulator (`gemmstone.driver.backends.rtl_native`: C++ only,
   no VPI or Python per cycle, -O3, reset branches merged; the fastest RTL simulation the
   project has) and driven through `gemmstone.driver.Device`. Its DRAM runs at
   ``CONFIG.dram_latency`` with no bandwidth throttle (one bus beat of
   ``dram_bytes_per_cycle`` bytes per cycle each way); the model gets that memory's
   timing, `performance_memory.sim_dram(CONFIG.dram_latency)`, and the run's bus
   addresses. Per layer: RTL CYCLES, the simulator's CPU seconds from START until the
   accelerator is idle (its process's CPU time from /proc; no build, start-up or image
   load counted), the model's cycles and error, each engine's CPU time and speed-up
   (RTL CPU s / model CPU s), and the totals. CPU time, not wall time, so other jobs on
   the machine skew it less. Every RTL output is checked against the numpy reference
   (`gemmstone.compiler.reference.conv2d_int8`).

RTL runs are kept in ``~/.cache/gemmstone/perf_speed/rtl-<build>.json`` (one file per RTL
build, i.e. per Verilog, harness and compiler, keyed within by the layer's name and a
digest of its program, inputs and DRAM latency): a re-run after a change to the model
does not simulate the RTL again (``--rerun-rtl`` does); a change to the compiler that
changes a program simulates that program anew. A cold RTL build for 32x32 takes minutes
(cached by content hash under ~/.cache/gemmstone/verilator); the output says what was
built, found cached and simulated.

Measured 2026-11-26 (2 cores shared with other jobs; the CPU times of either side vary by
10-30% between runs here): the 20 layers, 55,729 instructions and 3,333,065 RTL cycles,
took 75.9 CPU s on the RTL (44k cycles per CPU s; 80 and 87 CPU s in two runs at load
3-4; the cold 32x32 build took 5 min: Verilog 96 CPU s, Verilator and C++ 204 CPU s).
The model, median pass at 04:17 UTC (load 0.9): compiled engine 36.8 CPU ms (2,061x),
Python reference 3.66 s (21x), analytic engine 10.1 ms (7,493x). Passes vary: in 15
passes each, run back to back in one process, the analytic engine took 6.1-9.6 ms
(7,900x-12,400x) and the compiled one 26-40 ms (1,900x-2,900x). So the analytic engine
is at the 10^4x target, not clearly above it; the exact engines are about 2,000-3,500x.
After the analytic engine's 12% speed-up (0ad8f02) the median pass gave 12,960x at
04:58 and 8,506x at 05:09 (8.9 ms; compiled 37.7 ms, 2,013x), at load 1.
Compiled and Python cycles are within 0.02% (1-5 cycles) of the RTL on every layer,
analytic within 0.52% (0.10% on the total).

Later the same day (d016815, the analytic engine about 14% slower per instruction for its
fetch/load corrections, its cycles within 0.41% of the RTL, -0.20% on the total), with
``--rerun-rtl`` at 07:17 (load 0.9), both sides timed in the same minutes: RTL 78.1 CPU s,
compiled 34.6 ms (2,259x), analytic 9.35 ms (8,353x); at 07:50 (2b25a60, load 1.0): RTL
73.1 CPU s, compiled 23.6 ms (3,101x), analytic 6.69 ms (10,931x; within 0.41% of the
RTL on every layer, -0.15% on the total). Back-to-back passes of the analytic
engine in one process went from 4.8 to 9.0 ms within seconds at that time; against the
RTL run cached earlier, runs gave 5.4-9.7 ms (7,700x-13,900x). Session 6 (cb44713,
the analytic engine 4% faster; 50f93f8, the same within noise), with ``--rerun-rtl`` at
load 1.5-1.7: RTL 84.6 CPU s, analytic 8.59 ms (9,846x), compiled 37.3 ms (2,269x); RTL
90.6 CPU s, analytic 9.42 ms (9,624x), compiled 34.7 ms (2,612x); at 11:10 (26eefd1, the
analytic engine about 10% faster than at the session's start; load 0.9): RTL 80.8 CPU s,
analytic 7.98 ms (10,123x), compiled 33.5 ms (2,414x). So the analytic engine was at 10^4x
within this machine's noise (five runs: 8,353x-10,931x), not clearly above.

Session 7 (2026-11-26), the analytic engine about 13% faster (8d4df90: queue entries
carry what a candidate reads, one candidate block per unit, no division for uniform
commands; 225b63e: the compute unit's instructions that read no DRAM and wait for no
token still to come are taken in the step of the one before), results identical; with
``--rerun-rtl`` at 12:10 (8d4df90, load 1.0): RTL 87.7 CPU s, analytic 7.46 ms (11,759x),
compiled 36.3 ms (2,417x); at 12:42 (225b63e, load 0.9): RTL 80.4 CPU s, analytic 5.68 ms
(14,159x), compiled 30.4 ms (2,641x); at 13:15 (70cbc77, a fresh clone, load 1.0): RTL 78.9
CPU s, analytic 5.91 ms (13,347x), compiled 33.4 ms (2,361x). The analytic engine is above
10^4x in all three runs.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import hashlib
import json
import os
import resource
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from gemmstone.compiler import reference
from gemmstone.compiler.builder import ProgramBuilder
from gemmstone.compiler.kernels.conv import emit_conv2d
from gemmstone.compiler.kernels.gemm import pack_qparams
from gemmstone.config import AcceleratorConfig
from gemmstone.isa.encoding import words_to_bytes
from gemmstone.sim.performance import ENGINES, PerformanceModel
from gemmstone.sim.performance_memory import sim_dram

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = ROOT / "benchmarks" / "workloads" / "resnet18_conv.csv"
CONFIG = AcceleratorConfig(rows=32, cols=32, spad_kib=512, acc_kib=256,
                           dram_bytes_per_cycle=32, dram_mib=256)
#: Requantization of every layer: bias 0, multiplier 2^20, shift 28 (an output step of
#: 256 accumulator units).
MULT, SHIFT = 1 << 20, 28
#: The engines that must agree exactly (the reference and its compiled twin); any other
#: engine is compared with ``compiled`` and the RTL.
EXACT = ("compiled", "python")


def rtl_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/gemmstone/perf_speed`` (``~/.cache/gemmstone/perf_speed``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gemmstone" / "perf_speed"


def conv_program(config: AcceleratorConfig, layer: dict, rng=None):
    """(program, inputs, weights) of one conv layer (int8 out, requantized); the weights
    and inputs are random from ``rng``."""
    h, w, cin, cout, k, s, p = (int(layer[key]) for key in
                                ("h_in", "w_in", "c_in", "c_out", "kernel", "stride", "pad"))
    builder = ProgramBuilder(config)
    x = builder.buffer("x", (h, w, cin))
    rng = rng or np.random.default_rng(0)
    weights = rng.integers(-128, 128, (k * k * cin, cout), dtype=np.int8)
    w_buf = builder.buffer("w", (k * k * cin, cout), data=weights)
    qparams = pack_qparams(np.zeros(cout, np.int32), np.full(cout, MULT, np.int32),
                           np.full(cout, SHIFT, np.int32), config.cols)
    q = builder.buffer("q", 3 * cout, "int32", data=qparams)
    out = builder.buffer("out", (int(layer["h_out"]), int(layer["w_out"]), cout))
    emit_conv2d(builder, x, w_buf, out, q, kernel_size=k, stride=s, padding=p)
    inputs = {"x": rng.integers(-128, 128, (h, w, cin), dtype=np.int8)}
    return builder.finish(), inputs, weights


def expected_output(layer: dict, inputs: dict, weights: np.ndarray) -> np.ndarray:
    """The numpy reference of a `conv_program` layer's output."""
    k, cin, cout = (int(layer[key]) for key in ("kernel", "c_in", "c_out"))
    return reference.conv2d_int8(inputs["x"], weights.reshape(k, k, cin, cout),
                                 stride=int(layer["stride"]), padding=int(layer["pad"]),
                                 bias=np.zeros(cout, np.int32),
                                 mult=np.full(cout, MULT, np.int32),
                                 shift=np.full(cout, SHIFT, np.int32))


def engine_input(engine: str, program, code: bytes):
    """What ``engine`` is timed on: the Python reference takes the word list (its own
    format), every other engine the code as it lies in memory."""
    return program.words if engine == "python" else code


def time_engines(models: dict, programs: list, codes: list[bytes], repeat: int,
                 names: list[str], bases: list[dict] | None = None):
    """Each engine's results and CPU seconds on a list of programs, as a sweep runs them:
    ``repeat`` passes over the whole list (one for ``python``), one engine at a time, each
    run timed on its own. Per program the median of its passes, and the median of the
    passes' totals (a median: one pass slowed by another job on the machine does not
    count, and the fastest pass is not picked either). Returns ``(results, seconds,
    total)``: per engine, the last pass's results, the per-program seconds and the total.
    Raises SystemExit if the exact engines disagree."""
    bases = bases or [{}] * len(programs)
    results, seconds, total = {}, {}, {}
    for engine, model in models.items():
        passes = 1 if engine == "python" else repeat
        times = np.zeros((passes, len(programs)))
        for index in range(passes):
            found = []
            for column, (program, code, base) in enumerate(
                    zip(programs, codes, bases, strict=True)):
                code = engine_input(engine, program, code)
                started = time.process_time()
                found.append(model.run(code, **base))
                times[index, column] = time.process_time() - started
        results[engine] = found
        seconds[engine] = np.median(times, axis=0).tolist()
        total[engine] = float(np.median(times.sum(axis=1)))
    exact = [engine for engine in EXACT if engine in results]
    for other in exact[1:]:
        for name, first, second in zip(names, results[exact[0]], results[other], strict=True):
            if first.counters != second.counters:
                raise SystemExit(f"{name}: the engines {' and '.join(EXACT)} disagree: "
                                 f"{first.counters} != {second.counters}")
    return results, seconds, total


def error(estimate: int, truth: int) -> float:
    """Relative error of ``estimate`` against ``truth``."""
    return (estimate - truth) / truth


def first_calls() -> dict[str, float]:
    """CPU seconds of each engine's first call in this process (for the compiled core:
    loading it from numba's cache, or compiling it when the cache is cold)."""
    seconds = {}
    for engine in ENGINES:
        started = time.process_time()
        PerformanceModel(CONFIG, cache=False, engine=engine).run(words_to_bytes([0xA]))  # halt
        seconds[engine] = time.process_time() - started
    return seconds


def resnet18(layers: list[dict], repeat: int) -> None:
    approximate = [engine for engine in ENGINES if engine not in EXACT]
    print(f"ResNet-18 conv layers on {CONFIG.describe()}; model CPU time per engine "
          f"(code and window at address 0)")
    header = f"{'layer':22s} {'instrs':>7s} {'cycles':>10s} {'util':>6s}"
    header += "".join(f" {engine + ' ms':>12s}" for engine in ENGINES)
    header += "".join(f" {engine + ' err':>13s}" for engine in approximate)
    print(header)
    models = {engine: PerformanceModel(CONFIG, cache=False, engine=engine)
              for engine in ENGINES}
    programs = [conv_program(CONFIG, layer)[0] for layer in layers]
    converted = time.process_time()
    codes = [words_to_bytes(program.words) for program in programs]
    converted = time.process_time() - converted
    results, seconds, cpu = time_engines(models, programs, codes, repeat,
                                         [layer["name"] for layer in layers])
    totals = {engine: sum(result.cycles for result in results[engine]) for engine in ENGINES}
    for index, (layer, program) in enumerate(zip(layers, programs, strict=True)):
        cycles = results["compiled"][index].cycles
        util = int(layer["macs"]) / (cycles * CONFIG.macs_per_cycle)
        line = f"{layer['name']:22s} {len(program.words):7d} {cycles:10d} {util:6.1%}"
        line += "".join(f" {seconds[engine][index] * 1e3:12.3f}" for engine in ENGINES)
        line += "".join(f" {error(results[engine][index].cycles, cycles):+13.2%}"
                        for engine in approximate)
        print(line)
    instrs = sum(len(program.words) for program in programs)
    cycles = totals["compiled"]
    line = f"{'total':22s} {instrs:7d} {cycles:10d} {'':6s}"
    line += "".join(f" {cpu[engine] * 1e3:12.3f}" for engine in ENGINES)
    line += "".join(f" {error(totals[engine], cycles):+13.2%}" for engine in approximate)
    print(line)
    for engine in ENGINES:
        print(f"{engine}: {cpu[engine] / instrs * 1e9:,.0f} ns (CPU) per instruction, "
              f"{cycles / cpu[engine]:,.0f} simulated cycles per CPU second")
    print(f"every engine but python: median of {repeat} passes over the 20 programs; "
          f"the code as bytes "
          f"(words_to_bytes of the 20 programs' word lists, not timed above): "
          f"{converted * 1e3:.1f} ms")
    cached = PerformanceModel(CONFIG)
    started = time.process_time()
    for code in codes:
        cached.run(code)
    print(f"with the run cache (a layer equal to an earlier one is not simulated again): "
          f"{(time.process_time() - started) * 1e3:.2f} CPU ms for the 20 layers")


# -- the RTL ------------------------------------------------------------------------------

def process_cpu_seconds(pid: int) -> float:
    """CPU time of process ``pid`` so far, from the kernel's nanosecond run time of each
    of its threads (/proc/PID/task/*/schedstat); /proc/PID/stat's clock ticks if absent."""
    try:
        return sum(int((task / "schedstat").read_text().split()[0])
                   for task in Path(f"/proc/{pid}/task").iterdir()) / 1e9
    except (OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_key(name: str, program, inputs: dict, latency: int) -> str:
    """What a cached RTL run is keyed by (with the build): the layer's name and a digest of
    its program container, its inputs and the DRAM latency. The name keeps equal layers
    (layer1's four convs are one program) apart: each is simulated and timed, as each is
    on the model."""
    digest = hashlib.sha256(program.to_bytes())
    for buffer in sorted(inputs):
        digest.update(f"\0{buffer}\0".encode())
        digest.update(np.ascontiguousarray(inputs[buffer]).tobytes())
    digest.update(f"\0latency={latency}".encode())
    return f"{name}:{digest.hexdigest()[:32]}"


def build_rtl():
    """The native simulator for `CONFIG` (`rtl_native.build_server`), built if not cached;
    prints what it took."""
    from gemmstone.driver.backends.rtl_native import build_server

    wall, cpu = time.perf_counter(), time.process_time()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    server = build_server(CONFIG)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    build_cpu = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    what = "built" if server.built else "found in the cache"
    print(f"RTL: native sim_top for {CONFIG.rows}x{CONFIG.cols} {what} ({server.directory}): "
          f"{wall:.1f} s wall, {cpu:.1f} CPU s here + {build_cpu:.1f} CPU s in Verilator "
          f"and the C++ compiler (Verilog generation included)")
    return server


def load_cache(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())["runs"]
    except (ValueError, KeyError):
        print(f"(ignoring the unreadable RTL cache {path})")
        return {}


def save_cache(path: Path, build: str, runs: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps({"build": build, "config": CONFIG.describe(),
                                   "runs": runs}, indent=1, sort_keys=True))
    os.replace(partial, path)


def simulate(chosen: list[dict], cases: list[tuple], keys: list[str], runs: dict,
             cache: Path, build: str, between=None) -> None:
    """Run the ``chosen`` layers' programs on the RTL, one device for all, each program
    loaded and freed in turn (so each starts at the same addresses); record each run in
    ``runs`` by `run_key`, saved to ``cache`` after every layer, and call ``between`` with
    the run after every layer."""
    from gemmstone.driver import Device

    started = time.perf_counter()
    with Device(CONFIG, "rtl", timeout=24 * 3600) as device:
        pid = device.backend.simulator_pid
        print(f"RTL simulator started in {time.perf_counter() - started:.1f} s (pid {pid})",
              flush=True)
        for layer, (program, inputs, weights), key in zip(chosen, cases, keys,
                                                             strict=True):
            loaded = device.load(program)
            for name, value in inputs.items():
                loaded.write(name, value)
            cpu, wall = process_cpu_seconds(pid), time.perf_counter()
            counters = device.run(loaded)
            cpu, wall = process_cpu_seconds(pid) - cpu, time.perf_counter() - wall
            out = loaded.read("out")
            bases = loaded.code.address, loaded.window.address
            loaded.free()
            if not np.array_equal(out, expected_output(layer, inputs, weights)):
                raise SystemExit(f"{layer['name']}: the RTL's output differs from the numpy "
                                 f"reference")
            runs[key] = {
                "layer": layer["name"], "instrs": len(program.words), "counters": counters,
                "cpu_seconds": cpu, "wall_seconds": wall, "instr_base": bases[0],
                "window_base": bases[1], "latency": CONFIG.dram_latency,
                "output_checked": True, "load_average": os.getloadavg()[0],
                "measured": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            }
            save_cache(cache, build, runs)
            print(f"  {layer['name']:22s} {counters['cycles']:10,d} cycles  {cpu:8.2f} CPU s  "
                  f"{wall:8.2f} s wall  {counters['cycles'] / cpu:9,.0f} cycles/CPU s",
                  flush=True)
            if between is not None:
                between(runs[key])


def rtl_compare(layers: list[dict], names: list[str], repeat: int, rerun: bool) -> None:
    chosen = [layer for layer in layers if layer["name"] in names]
    server = build_rtl()
    build = server.directory.name
    cache = rtl_cache_dir() / f"rtl-{build}.json"
    runs = {} if rerun else load_cache(cache)
    cases = [conv_program(CONFIG, layer, np.random.default_rng(1)) for layer in chosen]
    keys = [run_key(layer["name"], program, inputs, CONFIG.dram_latency)
               for layer, (program, inputs, _) in zip(chosen, cases, strict=True)]
    missing = [index for index, key in enumerate(keys) if key not in runs]
    print(f"RTL results: {len(chosen) - len(missing)} of {len(chosen)} layers from {cache}"
          + (" (measured earlier on this build: the RTL is not simulated again; "
             "--rerun-rtl does)" if len(missing) < len(chosen) else "")
          + (f", {len(missing)} simulated now:" if missing else ""), flush=True)
    latency = CONFIG.dram_latency
    models = {engine: PerformanceModel(CONFIG, sim_dram(latency), cache=False, engine=engine)
              for engine in ENGINES}
    programs = [program for program, _, _ in cases]
    codes = [words_to_bytes(program.words) for program in programs]
    names = [layer["name"] for layer in chosen]
    # This machine's speed drifts by up to 2x within seconds (other jobs): when the RTL is
    # simulated now, passes of each fast engine follow every RTL layer, so both sides are
    # timed over the same minutes; the median of those is the model's time.
    interleaved: dict[str, list[float]] = {engine: [] for engine in ENGINES
                                           if engine != "python"}

    def between(run: dict) -> None:
        base = {"instr_base": run["instr_base"], "window_base": run["window_base"]}
        # Five passes, their median: the first after the RTL's run finds the caches cold.
        _, _, total = time_engines({engine: models[engine] for engine in interleaved},
                                   programs, codes, 5, names, [base] * len(programs))
        for engine, seconds in total.items():
            interleaved[engine].append(seconds)

    if missing:
        simulate([chosen[i] for i in missing], [cases[i] for i in missing],
                 [keys[i] for i in missing], runs, cache, build,
                 between if len(missing) == len(chosen) else None)
    print(f"\nThe same programs on the RTL and on the model: {CONFIG.describe()}; RTL = "
          f"Verilated sim_top, native C++ harness, -O3, in-simulation DRAM at latency "
          f"{latency}, unthrottled; model memory sim_dram({latency}); CPU time")
    header = (f"{'layer':22s} {'instrs':>6s} {'RTL cycles':>10s} {'RTL cpu s':>9s} "
              f"{'model cyc':>10s} {'error':>7s}")
    for engine in ENGINES:
        header += f" {engine[:8] + ' ms':>11s} {'speed-up':>9s}"
        if engine not in EXACT:
            header += f" {'err':>7s} {'vs comp':>7s}"
    print(header)
    for layer, key in zip(chosen, keys, strict=True):
        if runs[key]["latency"] != latency:
            raise SystemExit(f"{layer['name']}: the cached RTL run has latency "
                             f"{runs[key]['latency']}, not {latency}")
    bases = [{"instr_base": runs[key]["instr_base"], "window_base": runs[key]["window_base"]}
             for key in keys]
    results, cpu, model_cpu = time_engines(models, programs, codes, repeat, names, bases)
    for engine, totals in interleaved.items():
        if totals:
            model_cpu[engine] = float(np.median(totals))
    rtl_cpu = rtl_cycles = model_cycles = 0
    cycles_total = dict.fromkeys(ENGINES, 0)
    worst = dict.fromkeys(ENGINES, (0.0, ""))
    for index, (layer, program, key) in enumerate(zip(chosen, programs, keys, strict=True)):
        truth, seconds = runs[key]["counters"]["cycles"], runs[key]["cpu_seconds"]
        cycles = results["compiled"][index].cycles
        line = (f"{layer['name']:22s} {len(program.words):6d} {truth:10d} {seconds:9.2f} "
                f"{cycles:10d} {error(cycles, truth):+7.2%}")
        for engine in ENGINES:
            estimate = results[engine][index].cycles
            line += f" {cpu[engine][index] * 1e3:11.3f} {seconds / cpu[engine][index]:8,.0f}x"
            if engine not in EXACT:
                line += f" {error(estimate, truth):+7.2%} {error(estimate, cycles):+7.2%}"
            cycles_total[engine] += estimate
            if abs(error(estimate, truth)) >= abs(worst[engine][0]):
                worst[engine] = (error(estimate, truth), layer["name"])
        print(line)
        rtl_cpu += seconds
        rtl_cycles += truth
        model_cycles += cycles
    line = (f"{'total':22s} {sum(len(case[0].words) for case in cases):6d} {rtl_cycles:10d} "
            f"{rtl_cpu:9.2f} {model_cycles:10d} {error(model_cycles, rtl_cycles):+7.2%}")
    for engine in ENGINES:
        line += f" {model_cpu[engine] * 1e3:11.3f} {rtl_cpu / model_cpu[engine]:8,.0f}x"
        if engine not in EXACT:
            line += (f" {error(cycles_total[engine], rtl_cycles):+7.2%}"
                     f" {error(cycles_total[engine], model_cycles):+7.2%}")
    print(line)
    scope = ("all 20 ResNet-18 conv layers" if len(chosen) == len(layers)
             else f"{len(chosen)} of the 20 ResNet-18 conv layers ({', '.join(names)})")
    print(f"\nMeasured on the same programs, {scope} on {CONFIG.rows}x{CONFIG.cols}: "
          f"RTL {rtl_cycles:,} cycles in {rtl_cpu:,.2f} CPU s "
          f"({rtl_cycles / rtl_cpu:,.0f} cycles per CPU s)")
    if any(interleaved.values()):
        print(f"  (model totals: the median over {len(chosen)} RTL layers of the median of 5 "
              "passes run after each, so both sides ran in the same minutes; per layer: "
              "back-to-back passes)")
    else:
        measured = sorted(runs[key]["measured"] for key in keys)
        print(f"  (the RTL was measured {measured[0]} .. {measured[-1]}, the model now: "
              "this machine's speed drifts, --rerun-rtl times both side by side)")
    for engine in ENGINES:
        print(f"  {engine:9s} model {model_cpu[engine] * 1e3:10.2f} CPU ms: speed-up "
              f"{rtl_cpu / model_cpu[engine]:10,.0f}x (target 10,000x); worst cycle error "
              f"vs RTL {worst[engine][0]:+.2%} ({worst[engine][1]})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-rtl", action="store_true", help="only the model's timings")
    parser.add_argument("--rtl-layers", default="",
                        help="comma-separated layer names to compare with the RTL "
                             "(default: all 20)")
    parser.add_argument("--repeat", type=int, default=5,
                        help="passes over the programs of every engine but python (the median "
                             "pass counts; default 5)")
    parser.add_argument("--rerun-rtl", action="store_true",
                        help="simulate the RTL again instead of using its cached results")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, not {args.repeat}")
    command = " ".join(shlex.quote(arg) for arg in [".venv/bin/python", *sys.argv])
    layers = list(csv.DictReader(WORKLOADS.open()))
    names = ([name.strip() for name in args.rtl_layers.split(",") if name.strip()]
             or [layer["name"] for layer in layers])
    unknown = sorted(set(names) - {layer["name"] for layer in layers})
    if unknown:
        parser.error(f"--rtl-layers: no ResNet-18 conv layer is called {', '.join(unknown)} "
                     f"(the names are those of {WORKLOADS.relative_to(ROOT)})")
    calls = first_calls()
    print("first call in this process (for the compiled engine: numba cache load or "
          "compile): " + ", ".join(f"{engine} {seconds:.2f} CPU s"
                                   for engine, seconds in calls.items()) + "\n")
    resnet18(layers, args.repeat)
    if not args.no_rtl:
        print()
        rtl_compare(layers, names, args.repeat, args.rerun_rtl)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"\nload average at the end (1, 5, 15 min): {load} on {os.cpu_count()} CPUs")
    print(f"command: {command}")


if __name__ == "__main__":
    main()
