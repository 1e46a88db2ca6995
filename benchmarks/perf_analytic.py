"""The analytic engine of the performance model against the exact one: CYCLES error on
ResNet-18's conv layers and BERT-base's GEMMs over arrays, DRAM bandwidths and memory
timings, and the CPU time per instruction of both engines.

    .venv/bin/python benchmarks/perf_analytic.py [--quick] [--speed-only]

``engine="analytic"`` (`gemmstone.sim.performance_analytic`) prices each instruction in
closed form; ``engine="compiled"`` (`gemmstone.sim.performance_core`) is exact against the
Python reference and within 23 cycles of the RTL on ResNet-18 at 16x16. Cases:

- the 20 ResNet-18 conv layers (benchmarks/perf_speed.py's ``conv_program``, int8 out) on
  its 32x32 config and on the 16x16 preset ``base``;
- the GEMMs of one BERT-base layer at sequence length 128
  (benchmarks/workloads/bert_base_s128_gemm.csv) on ``base``;
- each at DRAM bandwidths of 4, 8, 16 and 32 bytes per cycle (``--quick``: 8 and 32) and
  with the memories of `performance_memory.MEMORIES` (the in-simulation DRAM at latency
  20, and at latency 60, and cocotbext-axi's AxiRam).

Per group the worst CYCLES error and the mean absolute error are printed, then the worst
case of all. Then the speed: the 20 conv layers on 32x32 (55.7k instructions), CPU time
(time.process_time) per instruction of each engine, the best of several passes, run
cache off. Retired counts and bytes must agree exactly; the script stops if not.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from perf_speed import CONFIG, conv_program  # noqa: E402

from gemmstone.compiler.builder import ProgramBuilder  # noqa: E402
from gemmstone.compiler.kernels.gemm import emit_gemm, pack_qparams  # noqa: E402
from gemmstone.config import preset  # noqa: E402
from gemmstone.isa.encoding import words_to_bytes  # noqa: E402
from gemmstone.sim.performance import PerformanceModel  # noqa: E402
from gemmstone.sim.performance_memory import AXI_RAM, sim_dram  # noqa: E402

CONVS = ROOT / "workloads" / "resnet18_conv.csv"
GEMMS = ROOT / "workloads" / "bert_base_s128_gemm.csv"
EXACT = ("BYTES_READ", "BYTES_WRITTEN", "RETIRED_LOAD", "RETIRED_COMPUTE", "RETIRED_STORE")
MEMORIES = {"dram@20": sim_dram(20), "dram@60": sim_dram(60), "axi-ram": AXI_RAM}


def gemm_program(config, m: int, n: int, k: int):
    builder = ProgramBuilder(config)
    a = builder.buffer("a", (m, k))
    b = builder.buffer("b", (k, n), data=np.zeros((k, n), np.int8))
    qparams = pack_qparams(np.zeros(n, np.int32), np.full(n, 1 << 20, np.int32),
                           np.full(n, 24, np.int32), config.cols)
    q = builder.buffer("q", 3 * n, "int32", data=qparams)
    out = builder.buffer("out", (m, n))
    emit_gemm(builder, a, b, out, q)
    return builder.finish()


def groups(quick: bool):
    """(name, config, [(case, code)]) per array, bandwidth and workload set."""
    convs = list(csv.DictReader(CONVS.open()))
    gemms = list(csv.DictReader(GEMMS.open()))
    for bandwidth in (8, 32) if quick else (4, 8, 16, 32):
        for label, base in (("32x32", CONFIG), ("16x16", preset("base"))):
            config = dataclasses.replace(base, dram_bytes_per_cycle=bandwidth)
            cases = [(layer["name"], words_to_bytes(conv_program(config, layer)[0].words))
                     for layer in convs]
            yield f"convs {label} {bandwidth} B/c", config, cases
        config = dataclasses.replace(preset("base"), dram_bytes_per_cycle=bandwidth)
        cases = [(row["name"], words_to_bytes(gemm_program(
            config, int(row["m"]), int(row["n"]), int(row["k"])).words)) for row in gemms]
        yield f"bert 16x16 {bandwidth} B/c", config, cases


def accuracy(quick: bool) -> None:
    print(f"{'group':24s} {'memory':8s} {'cases':>5s} {'instrs':>8s} {'worst':>8s} "
          f"{'mean |e|':>8s}  worst case")
    overall = (0.0, "")
    for name, config, cases in groups(quick):
        for memory_name, memory in MEMORIES.items():
            exact = PerformanceModel(config, memory, cache=False)
            analytic = PerformanceModel(config, memory, cache=False, engine="analytic")
            errors = []
            instrs = 0
            for case, code in cases:
                e = exact.run(code).counters
                a = analytic.run(code).counters
                for counter in EXACT:
                    if e[counter] != a[counter]:
                        raise SystemExit(f"{name} {memory_name} {case}: {counter} exact "
                                         f"{e[counter]}, analytic {a[counter]}")
                errors.append(((a["CYCLES"] - e["CYCLES"]) / e["CYCLES"], case))
                instrs += len(code) // 16
            worst = max(errors, key=lambda x: abs(x[0]))
            mean = sum(abs(x[0]) for x in errors) / len(errors)
            print(f"{name:24s} {memory_name:8s} {len(cases):5d} {instrs:8d} {worst[0]:+8.2%} "
                  f"{mean:8.2%}  {worst[1]}", flush=True)
            if abs(worst[0]) > abs(overall[0]):
                overall = (worst[0], f"{name} {memory_name} {worst[1]}")
    print(f"worst of all: {overall[1]}: {overall[0]:+.2%}")


def speed(passes: int = 7) -> None:
    layers = list(csv.DictReader(CONVS.open()))
    codes = [words_to_bytes(conv_program(CONFIG, layer)[0].words) for layer in layers]
    instrs = sum(len(code) // 16 for code in codes)
    print(f"\nspeed: the 20 ResNet-18 convs on {CONFIG.describe()}, {instrs} instructions; "
          f"CPU time, best of {passes} passes, run cache off")
    for engine in ("analytic", "compiled"):
        model = PerformanceModel(CONFIG, cache=False, engine=engine)
        model.run(codes[0])   # numba's cache loaded (or compiled) before timing
        best = float("inf")
        for _ in range(passes):
            started = time.process_time()
            for code in codes:
                model.run(code)
            best = min(best, time.process_time() - started)
        print(f"  {engine:9s} {best * 1e3:7.2f} ms, {best / instrs * 1e9:6.1f} ns per "
              "instruction")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="bandwidths 8 and 32 only")
    parser.add_argument("--speed-only", action="store_true")
    args = parser.parse_args()
    if not args.speed_only:
        accuracy(args.quick)
    speed()


if __name__ == "__main__":
    main()
