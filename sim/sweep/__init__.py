"""Design-space sweeps with the performance model, and the serving latency model.

A `Grid` (a base `AcceleratorConfig`, axes over its fields, workloads, batch sizes, the
memory timing and the performance model's engine) runs with `run_sweep` into a tidy table
(one row per point, workload and batch), written by `write_table` (CSV or Parquet) and
drawn by `write_plots` (roofline, utilization curves, heat map). `fit_latency` /
`serving_report` fit latency(batch) = k * batch + c.
``gemmstone sweep`` (`gemmstone.sim.sweep.cli.sweep_command`) is the command line;
docs/sweeps.md is the user guide.
"""

from gemmstone.sim.sweep.grid import Grid, GridError, Point, load_grid, parse_grid, parse_param
from gemmstone.sim.sweep.run import COLUMNS, run_sweep
from gemmstone.sim.sweep.serving import ServingFit, fit_latency, serving_report
from gemmstone.sim.sweep.table import read_table, write_table
from gemmstone.sim.sweep.workloads import Workload, WorkloadError, parse_workload

__all__ = ["Grid", "GridError", "Point", "load_grid", "parse_grid", "parse_param", "COLUMNS",
           "run_sweep", "ServingFit", "fit_latency", "serving_report", "read_table",
           "write_table", "Workload", "WorkloadError", "parse_workload"]
