"""`gemmstone sweep`: the command line of design-space sweeps and the serving latency model.

A thin layer over `gemmstone.sim.sweep`: it builds the `Grid` from a TOML file and
options, runs it, writes the table and the plots and prints a summary (and, with several
batch sizes, the serving latency fit). Runnable alone as ``python -m gemmstone.sim.sweep``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from gemmstone.config import PRESETS
from gemmstone.sim.performance import ENGINES
from gemmstone.sim.performance_memory import MEMORIES
from gemmstone.sim.sweep.grid import (
    ARRAY,
    FIELDS,
    Grid,
    GridError,
    load_grid,
    parse_batches,
    parse_grid,
    parse_param,
)
from gemmstone.sim.sweep.plots import axis_value, write_plots
from gemmstone.sim.sweep.run import run_sweep
from gemmstone.sim.sweep.serving import serving_report
from gemmstone.sim.sweep.table import write_table
from gemmstone.sim.sweep.workloads import parse_workload

__all__ = ["sweep_command"]

_SHOWN_ROWS = 40


def _grid(grid_file: str | None, preset: str | None, config_path: str | None,
          params: tuple[str, ...], workloads: tuple[str, ...], batches: str | None,
          memory: str | None, engine: str | None) -> Grid:
    """The grid file's grid with the options applied on top."""
    grid = load_grid(grid_file) if grid_file else parse_grid({}, where="options")
    if preset or config_path:
        given = {key: value for key, value in (("preset", preset), ("config", config_path))
                 if value}
        base = parse_grid(given, where="options").base
    else:
        base = grid.base
    axes = dict(grid.axes)
    for option in params:
        name, values = parse_param(option)
        if name == ARRAY:
            axes.pop("rows", None)
            axes.pop("cols", None)
        elif name in ("rows", "cols"):
            axes.pop(ARRAY, None)
        axes[name] = values
    found = list(grid.workloads)
    for spec in workloads:
        found += parse_workload(spec)
    if not found:
        raise GridError("no workloads: give --workload SPEC or 'workloads' in the grid file")
    return Grid(base, axes, tuple(found),
                parse_batches(batches) if batches else grid.batches,
                memory or grid.memory, engine or grid.engine)


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _percent(value: float | None) -> str | None:
    return None if value is None else f"{100 * value:.1f}%"


def _show(console: Console, title: str, rows: list[dict], columns: list[str]) -> None:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, no_wrap=column == "workload")
    for row in rows[:_SHOWN_ROWS]:
        table.add_row(*(_fmt(row.get(column)) for column in columns))
    console.print(table)
    if len(rows) > _SHOWN_ROWS:
        console.print(f"({len(rows) - _SHOWN_ROWS} more rows in the table file)")


@click.command("sweep", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("grid_file", metavar="[GRID.toml]", required=False,
                type=click.Path(exists=True, dir_okay=False))
@click.option("--preset", type=click.Choice(sorted(PRESETS)),
              help="Base config preset (default: the grid file's, else small).")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              help="Base config TOML file (an [accelerator] table).")
@click.option("--param", "params", multiple=True, metavar="NAME=V1,V2,...",
              help="Sweep a config field over values (repeatable; 'array=8x8,16x16' sets "
                   "rows and cols together). Replaces the grid file's axis of that name.")
@click.option("-w", "--workload", "workloads", multiple=True, metavar="SPEC",
              help="Add a workload: gemm:MxNxK, resnet18-conv[:NAME|sum], "
                   "bert-gemm[:NAME|sum], model:NAME[:SIZE], FILE.onnx, FILE.pt2 (repeatable).")
@click.option("--batches", metavar="N|A-B|B1,B2,...",
              help="Batch sizes (N means 1..N); two or more print the serving latency fit.")
@click.option("--memory", type=click.Choice(MEMORIES),
              help="DRAM timing: in-simulation DRAM at the config's dram_latency (dram, the "
                   "default) or the AxiRam the RTL was calibrated with (axi-ram).")
@click.option("--engine", type=click.Choice(ENGINES),
              help="Performance-model engine: compiled (cycle-exact, the default), python "
                   "(the same results, ~100x slower) or analytic (approximate, aiming at 2% "
                   "of compiled, several times faster). Overrides the grid file's 'engine'.")
@click.option("-o", "--output", default="sweep.csv", show_default=True,
              type=click.Path(dir_okay=False), help="Table file: .csv or .parquet.")
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False),
              help="Write roofline, utilization and heat-map PNGs into this directory.")
@click.option("--curve", metavar="NAME", help="Parameter of the utilization curves "
              "(default: dram_bytes_per_cycle if swept, else the first swept one).")
@click.option("--heatmap", metavar="X,Y", help="Parameters of the heat map (default: the "
              "first two swept ones).")
@click.option("-j", "--jobs", type=click.IntRange(min=1),
              help="Local worker processes (default: CPU count; 1: this process).")
@click.option("--scheduler", metavar="tcp://HOST:PORT",
              help="Run on this Dask distributed scheduler instead of local processes.")
@click.option("--clock-mhz", type=click.FloatRange(min=0, min_open=True), default=1000.0,
              show_default=True, help="Accelerator clock for times and throughputs.")
@click.option("--slo-ms", type=click.FloatRange(min=0, min_open=True),
              help="Latency SLO: the serving report gives the largest batch within it.")
@click.option("--serving-output", type=click.Path(dir_okay=False),
              help="Write the serving report to this CSV file.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Progress bar on stderr.")
def sweep_command(grid_file, preset, config_path, params, workloads, batches, memory, engine,
                  output, plots_dir, curve, heatmap, jobs, scheduler, clock_mhz, slo_ms,
                  serving_output, progress) -> None:
    """Sweep accelerator parameters over workloads with the performance model.

    The grid is GRID.toml (see docs/sweeps.md) and/or the options. One table row per
    config point, workload and batch: cycles, MACs, utilization, bytes moved, per-unit
    busy and stall cycles, wall time, or the error of a point that failed. The memory
    timing (--memory) and the model's engine (--engine) hold for the whole sweep and are
    columns of the table.

    \b
    Example:
      gemmstone sweep --preset base --param dram_bytes_per_cycle=4,8,16,32 \\
          -w gemm:512x512x512 -w resnet18-conv:sum -o sweep.csv --plots plots
    """
    # Wide enough for the table when stdout is a file or a pipe (rich assumes 80 columns).
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    try:
        grid = _grid(grid_file, preset, config_path, params, workloads, batches, memory,
                     engine)
        heat = tuple(heatmap.split(",")) if heatmap else None
        if heat is not None and len(heat) != 2:
            raise GridError(f"--heatmap takes two parameters X,Y, not {heatmap!r}")
        for option, name in [("--curve", curve), *(("--heatmap", n) for n in heat or ())]:
            if name is not None and name not in FIELDS and name != ARRAY:
                raise GridError(f"{option}: unknown parameter {name!r}; choose from "
                                f"{', '.join([*FIELDS, ARRAY])}")
        if Path(output).suffix not in (".csv", ".parquet"):
            raise GridError(f"--output must end in .csv or .parquet, not {output!r}")
        points = grid.points()
        console.print(f"sweep: {len(points)} config point(s) x {len(grid.workloads)} "
                      f"workload(s) x {len(grid.batches)} batch size(s); base "
                      f"{grid.base.describe()}; memory {grid.memory}, engine {grid.engine}")
        if grid.without_effect:
            console.print(f"note: {', '.join(grid.without_effect)} cannot change a result: "
                          "one core has no interconnect (the multi-core interconnect is not "
                          "implemented yet)")
        started = time.perf_counter()
        rows = run_sweep(grid, jobs=jobs, scheduler=scheduler, progress=progress)
        elapsed = time.perf_counter() - started
        path = write_table(rows, output)
    except (ValueError, OSError) as error:  # bad grids, files, an unreachable scheduler
        raise click.ClickException(str(error)) from None
    failed = sum(1 for row in rows if row["error"])
    console.print(f"{len(rows)} rows ({failed} failed) in {elapsed:.1f} s "
                  f"({'dask ' + str(scheduler) if scheduler else 'local'}); table: {path}")
    swept = grid.swept
    shown = [dict(row, **{name: axis_value(row, name) for name in swept},
                  util=_percent(row["utilization"]), roof=_percent(row["roof_utilization"]))
             for row in rows]
    for row in shown:
        row["MAC/byte"] = row["intensity"]
    _show(console, "sweep (util: achieved / peak MACs; roof: DRAM bandwidth's bound on util)",
          shown,
          ["point", *swept, "workload", *(["batch"] if len(grid.batches) > 1 else []),
           "cycles", "util", "roof", "MAC/byte", "bytes_moved", "error"])
    if plots_dir:
        try:
            paths = write_plots(rows, plots_dir, swept, curve=curve, heatmap=heat)
        except (ValueError, KeyError) as error:
            raise click.ClickException(f"plots: {error}") from None
        console.print("plots: " + ", ".join(str(p) for p in paths))
    if len(grid.batches) > 1:
        report = serving_report(shown, clock_mhz=clock_mhz, slo_ms=slo_ms, params=swept)
        throughput = [f"throughput_b{b}" for b in (grid.batches[0], grid.batches[-1])]
        _show(console, f"serving: latency(batch) = k * batch + c at {clock_mhz:g} MHz "
              f"(throughput in requests/s)", report,
              ["point", *swept, "workload", "k_cycles", "c_cycles", "k_us", "c_us", "r2",
               *throughput, "peak_throughput",
               *(["max_batch"] if slo_ms is not None else []), "error"])
        if serving_output:
            _write_csv(report, serving_output)
            console.print(f"serving report: {serving_output}")


def _write_csv(rows: list[dict], path: str) -> None:
    import csv

    columns = list(dict.fromkeys(key for row in rows for key in row))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, columns)
        writer.writeheader()
        writer.writerows(rows)
