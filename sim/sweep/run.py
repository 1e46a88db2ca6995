"""Running a sweep: every (point, workload, batch) of a grid to one row of a tidy table.

The sweep first plans: each row needs some parts (`gemmstone.sim.sweep.workloads`), and
each distinct (part, config) is compiled and estimated once however many rows share it
(ResNet-18's repeated layer shapes, BERT's per-head GEMMs, equal points), with the grid's
memory timing and performance-model engine (a task carries both). The distinct
tasks then run in local processes (``jobs``), in this process (``jobs=1``), or on a Dask
cluster (``scheduler``); results are the same in every case since the performance model
is deterministic. A task that fails, or a point whose config is invalid, leaves its
message in the ``error`` column of the rows it belongs to; the sweep goes on.
"""

from __future__ import annotations

import multiprocessing
import os
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from gemmstone.config import AcceleratorConfig
from gemmstone.sim.sweep.grid import FIELDS, Grid
from gemmstone.sim.sweep.workloads import PartResult, WorkloadError

__all__ = ["run_sweep", "distinct_tasks", "COLUMNS", "RESULT_COLUMNS", "TIMING_COLUMNS",
           "evaluate_part"]

#: Columns after the config fields, in table order.
RESULT_COLUMNS = (
    "memory", "engine", "workload", "batch", "macs", "cycles", "utilization", "roof_utilization",
    "intensity", "bytes_read", "bytes_written", "bytes_moved", "busy_load", "busy_compute",
    "busy_store", "stall_token", "stall_dma", "stall_queue", "instructions", "host_ops",
    "compile_s", "estimate_s", "wall_s", "error",
)
#: Columns that depend on the machine and its load, not on the point (tables from two
#: runs agree on every other column).
TIMING_COLUMNS = ("compile_s", "estimate_s", "wall_s")
#: Every column of the sweep table, in order: ``point``, the config fields, the results.
COLUMNS = ("point", *FIELDS, *RESULT_COLUMNS)

_COUNTER_COLUMNS = {"bytes_read": "BYTES_READ", "bytes_written": "BYTES_WRITTEN",
                    "busy_load": "BUSY_LOAD", "busy_compute": "BUSY_COMPUTE",
                    "busy_store": "BUSY_STORE", "stall_token": "STALL_TOKEN",
                    "stall_dma": "STALL_DMA", "stall_queue": "STALL_QUEUE"}

Progress = Callable[[int], None]


def evaluate_part(part: Any, config: AcceleratorConfig, memory: str,
                  engine: str = "compiled") -> PartResult | str:
    """``part.evaluate(config, memory, engine)``, or the error message if it raises (a
    failing point is data, not a reason to stop the sweep)."""
    try:
        return part.evaluate(config, memory, engine)
    except Exception as error:  # any failure of one point is reported
        return f"{type(error).__name__}: {error}"


def _run_here(tasks: list, advance: Progress) -> list:
    results = []
    for task in tasks:
        results.append(evaluate_part(*task))
        advance(1)
    return results


def _run_processes(tasks: list, jobs: int, advance: Progress) -> list:
    results: list = [None] * len(tasks)
    # spawn: the parent may hold threads (the progress bar) that fork would copy mid-state.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=context) as pool:
        futures = {pool.submit(evaluate_part, *task): i for i, task in enumerate(tasks)}
        for future in as_completed(futures):
            try:
                results[futures[future]] = future.result()
            except Exception as error:  # e.g. a worker killed by the OS
                results[futures[future]] = f"{type(error).__name__}: {error}"
            advance(1)
    return results


def _run_dask(tasks: list, scheduler: Any, advance: Progress) -> list:
    try:
        from distributed import Client
        from distributed import as_completed as dask_completed
    except ImportError:
        raise ValueError("a Dask scheduler needs dask.distributed: pip install "
                         "'gemmstone[sweep]'") from None

    client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
    try:
        batch = uuid.uuid4().hex[:12]
        futures = [client.submit(evaluate_part, *task, key=f"gemmstone-sweep-{batch}-{i}",
                                 pure=False) for i, task in enumerate(tasks)]
        index = {future.key: i for i, future in enumerate(futures)}
        results: list = [None] * len(tasks)
        for future in dask_completed(futures):
            try:
                results[index[future.key]] = future.result()
            except Exception as error:  # e.g. a worker lost mid-task
                results[index[future.key]] = f"{type(error).__name__}: {error}"
            advance(1)
        return results
    finally:
        if client is not scheduler:
            client.close()


def _plan(grid: Grid):
    """Rows (with the parts they need, or their error) and the distinct tasks."""
    tasks: dict[tuple, int] = {}
    task_list: list[tuple] = []
    rows = []
    for point in grid.points():
        for workload in grid.workloads:
            for batch in grid.batches:
                row = {"point": point.index, **point.params, "memory": grid.memory,
                       "engine": grid.engine, "workload": workload.name, "batch": batch}
                needs, error = [], point.error and f"ConfigError: {point.error}"
                if point.config is not None:
                    try:
                        parts = workload.parts(batch)
                    except WorkloadError as exc:
                        error = f"WorkloadError: {exc}"
                        parts = []
                    for part, count in parts:
                        task = (part, point.config, grid.memory, grid.engine)
                        key = (part, point.config.content_hash, grid.memory, grid.engine)
                        if key not in tasks:
                            tasks[key] = len(task_list)
                            task_list.append(task)
                        needs.append((tasks[key], count))
                rows.append((row, needs, error))
    return rows, task_list


def _fill(row: dict, needs: list, results: list, error: str | None) -> dict:
    """The result columns of one row from its parts' results."""
    out = dict.fromkeys(COLUMNS)
    out.update(row)
    failed = error or next((results[i] for i, _ in needs if isinstance(results[i], str)),
                           None)
    if failed:
        out["error"] = failed
        return out
    counters: dict[str, int] = {}
    totals = dict.fromkeys(("macs", "instructions", "host_ops"), 0)
    timing = dict.fromkeys(("compile_s", "estimate_s"), 0.0)
    for index, count in needs:
        result: PartResult = results[index]
        for name, value in result.counters.items():
            counters[name] = counters.get(name, 0) + count * value
        totals["macs"] += count * result.macs
        totals["instructions"] += count * result.instructions
        totals["host_ops"] += count * result.host_ops
        timing["compile_s"] += result.compile_s
        timing["estimate_s"] += result.estimate_s
    out.update(totals)
    out.update({name: round(value, 4) for name, value in timing.items()})
    out["wall_s"] = round(timing["compile_s"] + timing["estimate_s"], 4)
    for column, counter in _COUNTER_COLUMNS.items():
        out[column] = counters[counter]
    cycles = out["cycles"] = counters["CYCLES"]
    moved = out["bytes_moved"] = counters["BYTES_READ"] + counters["BYTES_WRITTEN"]
    peak = row["rows"] * row["cols"]
    out["utilization"] = out["macs"] / (cycles * peak) if cycles else 0.0
    out["intensity"] = out["macs"] / moved if moved else None
    # The bandwidth bound as a fraction of the array's peak. AXI reads and writes have
    # channels of their own, so the busier one bounds the time: a point that writes a lot
    # can sit a little above the plotted roof of its total traffic.
    busiest = max(counters["BYTES_READ"], counters["BYTES_WRITTEN"])
    out["roof_utilization"] = (min(1.0, out["macs"] * row["dram_bytes_per_cycle"]
                                   / (busiest * peak)) if busiest else 1.0)
    return out


def distinct_tasks(grid: Grid) -> int:
    """How many distinct (part, config) tasks `run_sweep` runs for ``grid`` (each with
    the grid's memory and engine)."""
    return len(_plan(grid)[1])


def run_sweep(grid: Grid, *, jobs: int | None = None, scheduler: Any = None,
              progress: bool = False) -> list[dict]:
    """Run every point of ``grid`` on every workload and batch.

    Parameters
    ----------
    grid : Grid
    jobs : int, optional
        Local worker processes (default: the CPU count); 1 runs in this process.
    scheduler : str or distributed.Client, optional
        A Dask scheduler address (``tcp://host:8786``) or client; the tasks run on that
        cluster instead of local processes.
    progress : bool
        Show a rich progress bar (on stderr) while tasks run.

    Returns
    -------
    list of dict
        One row per (point, workload, batch) in grid order, keys `COLUMNS`.
    """
    rows, tasks = _plan(grid)
    jobs = jobs or os.cpu_count() or 1
    if jobs < 1:
        raise ValueError(f"'jobs' must be at least 1, not {jobs}")

    def execute(advance: Progress) -> list:
        if not tasks:
            return []
        if scheduler is not None:
            return _run_dask(tasks, scheduler, advance)
        if jobs == 1 or len(tasks) == 1:
            return _run_here(tasks, advance)
        return _run_processes(tasks, jobs, advance)

    if progress:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = (TextColumn("sweep"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
        with Progress(*columns, console=Console(stderr=True)) as bar:
            task = bar.add_task("sweep", total=len(tasks))
            results = execute(lambda n: bar.advance(task, n))
    else:
        results = execute(lambda n: None)
    return [_fill(row, needs, results, error) for row, needs, error in rows]
