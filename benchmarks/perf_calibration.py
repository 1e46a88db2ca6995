"""Performance model vs RTL: the error table of the calibration cases on several configs.

Runs tests/sim/test_performance_calibration.py's cases (kernels of varied shapes, larger
ones included, microbenchmarks, token programs) on the Verilated accelerator (AxiRam
behind the AXI port) and on `gemmstone.sim.performance`, and prints per case the RTL's
and the model's CYCLES, the error and the other counters that differ.

    .venv/bin/python benchmarks/perf_calibration.py [preset ...]   # default: tiny rect small base

A preset whose Verilator build is not cached is built first (minutes on 2 cores).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "sim"))

from test_performance_calibration import (  # noqa: E402
    _harness,
    calibration_cases,
    compare,
    problems,
    table,
)


def main(presets: list[str]) -> int:
    worst = []
    for name in presets:
        started = time.time()
        config, model = _harness().verilated(name)
        with tempfile.TemporaryDirectory() as tmp:
            comparisons = compare(config, model, calibration_cases(config, large=True),
                                  Path(tmp))
        print(f"\n== {name}: {config.describe()} ({time.time() - started:.0f} s)")
        print(table(comparisons))
        for problem in problems(comparisons):
            print(f"  outside target: {problem}")
        worst.append(max(comparisons, key=lambda c: abs(c.error)))
    print("\nworst case per config:")
    for name, comparison in zip(presets, worst, strict=True):
        print(f"  {name:6s} {comparison.name}: {comparison.error:+.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["tiny", "rect", "small", "base"]))
