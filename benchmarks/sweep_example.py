"""The README's sweep example (docs/sweep_example.toml): how long it takes, and its figures.

    .venv/bin/python benchmarks/sweep_example.py [--jobs N] [--scheduler tcp://...]
                                                 [--out DIR]

Runs the grid (DRAM bandwidth x array shape on the ResNet-18 conv layers, one BERT-base
encoder layer and a 512^3 GEMM) as `gemmstone sweep` does, writes the table and the PNGs
into DIR (default: a temporary directory, removed after), and prints the wall time of the
whole sweep, its distinct tasks, and per workload the cycles and utilization at each point
next to the published MAC counts of the standard workloads.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from gemmstone.sim.sweep import load_grid, run_sweep, write_table
from gemmstone.sim.sweep.plots import axis_value, write_plots
from gemmstone.sim.sweep.run import distinct_tasks

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "sweep_example.toml"
# Published MAC counts of the standard workloads (shared/workloads/README.md).
PUBLISHED = {"resnet18.sum": 1_813_561_344, "bert.sum": 931_135_488}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=None, help="local worker processes")
    parser.add_argument("--scheduler", default=None, help="Dask scheduler address")
    parser.add_argument("--out", type=Path, default=None, help="keep table and PNGs here")
    args = parser.parse_args()
    print(f"command: {' '.join([sys.executable, *sys.argv])}")
    grid = load_grid(EXAMPLE)
    points = grid.points()
    print(f"grid: {EXAMPLE.relative_to(ROOT)}: {len(points)} points x {len(grid.workloads)} "
          f"workloads = {len(points) * len(grid.workloads)} rows, {distinct_tasks(grid)} distinct "
          f"(program, config) tasks; {args.jobs or os.cpu_count()} local processes"
          + (f" on {args.scheduler}" if args.scheduler else ""))
    with tempfile.TemporaryDirectory(prefix="gemmstone-sweep-") as tmp:
        out = args.out or Path(tmp)
        started = time.perf_counter()
        rows = run_sweep(grid, jobs=args.jobs, scheduler=args.scheduler, progress=True)
        table = write_table(rows, out / "sweep.csv")
        plots = write_plots(rows, out / "plots", grid.swept)
        elapsed = time.perf_counter() - started
        print(f"wrote {table} and {len(plots)} PNGs ({', '.join(p.name for p in plots)})")
    busy = sum(row["wall_s"] or 0 for row in rows)
    print(f"{'workload':24s} {'array':>6s} {'B/cyc':>5s} {'MACs':>14s} {'cycles':>12s} "
          f"{'util':>6s} {'roof':>6s} {'model s':>8s}")
    for row in rows:
        if row["error"]:
            print(f"{row['workload']:24s} {axis_value(row, 'array'):>6s} "
                  f"{row['dram_bytes_per_cycle']:5d} error: {row['error']}")
            continue
        print(f"{row['workload']:24s} {axis_value(row, 'array'):>6s} "
              f"{row['dram_bytes_per_cycle']:5d} {row['macs']:14,d} {row['cycles']:12,d} "
              f"{row['utilization']:6.1%} {row['roof_utilization']:6.1%} {row['wall_s']:8.2f}")
    for name, macs in PUBLISHED.items():
        seen = {row["macs"] for row in rows if row["workload"] == name and not row["error"]}
        print(f"{name}: {sorted(seen)} MACs in the table, published {macs:,} "
              f"[{'ok' if seen == {macs} else 'DIFFERENT'}]")
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                  resource.RUSAGE_CHILDREN)]
    cpu = sum(u.ru_utime + u.ru_stime for u in usage)
    print(f"sweep example: {elapsed:.1f} s wall, {cpu:.1f} s CPU (this process and its "
          f"workers) for {len(rows)} rows; the rows' compile + model seconds add up to "
          f"{busy:.1f} s (a task shared by rows counts in each)")


if __name__ == "__main__":
    main()
