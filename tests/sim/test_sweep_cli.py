"""`gemmstone sweep` (sweep_command) and `python -m gemmstone.sim.sweep`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from gemmstone.sim.sweep.cli import sweep_command
from gemmstone.sim.sweep.run import COLUMNS
from gemmstone.sim.sweep.table import read_table

GRID = """
preset = "tiny"
workloads = ["gemm:16x8x32"]
[grid]
dram_bytes_per_cycle = [2, 4]
"""


def test_grid_file_options_table_and_plots(tmp_path: Path) -> None:
    (tmp_path / "grid.toml").write_text(GRID)
    output = tmp_path / "out" / "sweep.parquet"
    result = CliRunner().invoke(sweep_command, [
        str(tmp_path / "grid.toml"), "--param", "array=4x4,8x4", "-w", "gemm:8x8x8",
        "--jobs", "1", "--no-progress", "-o", str(output), "--plots", str(tmp_path / "png"),
        "--batches", "1,2", "--slo-ms", "0.002", "--serving-output",
        str(tmp_path / "serving.csv")])
    assert result.exit_code == 0, result.output
    rows = read_table(output)
    assert len(rows) == 2 * 2 * 2 * 2  # bandwidths x arrays x workloads x batches
    assert list(rows[0]) == list(COLUMNS)
    assert {(r["rows"], r["cols"]) for r in rows} == {(4, 4), (8, 4)}
    assert all(r["error"] is None for r in rows)
    assert "4 config point(s) x 2 workload(s) x 2 batch size(s)" in result.output
    assert "; memory dram, engine compiled\n" in result.output
    assert {r["engine"] for r in rows} == {"compiled"}
    assert "16 rows (0 failed)" in result.output
    assert "serving: latency(batch) = k * batch + c at 1000 MHz" in result.output
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == [
        "heatmap_dram_bytes_per_cycle_array.png", "roofline.png",
        "utilization_vs_dram_bytes_per_cycle.png"]
    serving = (tmp_path / "serving.csv").read_text().splitlines()
    assert serving[0].startswith("point,dram_bytes_per_cycle,array,workload,k_cycles,c_cycles")
    assert len(serving) == 1 + 4 * 2


def test_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(sweep_command, ["--preset", "tiny", "--no-progress"])
    assert result.exit_code == 1
    assert result.output == ("Error: no workloads: give --workload SPEC or 'workloads' in the "
                             "grid file\n")
    result = runner.invoke(sweep_command, ["-w", "gemm:4x4x4", "--param", "rows=4,four"])
    assert result.exit_code == 1
    assert result.output == "Error: --param rows=4,four: 'rows' takes integers, not 'four'\n"
    result = runner.invoke(sweep_command, ["-w", "gemm:4x4x4", "--heatmap", "rows,bw"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: --heatmap: unknown parameter 'bw'; choose from "
                                    "rows, cols, dataflow, ")
    result = runner.invoke(sweep_command, ["-w", "gemm:4x4x4", "-o", str(tmp_path / "t.txt")])
    assert result.exit_code == 1
    assert result.output == (f"Error: --output must end in .csv or .parquet, not "
                             f"{str(tmp_path / 't.txt')!r}\n")


def test_engine_option_and_grid_setting(tmp_path: Path) -> None:
    """--engine overrides the grid file's engine, reaches the table and refuses bad names;
    the Python reference's cycles are the compiled engine's, the analytic engine's are
    within 5% of them."""
    (tmp_path / "grid.toml").write_text('engine = "analytic"\n' + GRID.replace(
        "gemm:16x8x32", "gemm:64x32x48"))
    runner = CliRunner()
    tables = {}
    for engine in ("analytic", "python", "compiled"):
        output = tmp_path / f"{engine}.csv"
        given = [] if engine == "analytic" else ["--engine", engine]  # the file's
        result = runner.invoke(sweep_command, [str(tmp_path / "grid.toml"), *given, "-j", "1",
                                               "--no-progress", "-o", str(output)])
        assert result.exit_code == 0, result.output
        assert f"; memory dram, engine {engine}\n" in result.output
        tables[engine] = read_table(output)
        assert [r["engine"] for r in tables[engine]] == [engine, engine]
    exact = [r["cycles"] for r in tables["compiled"]]
    assert [r["cycles"] for r in tables["python"]] == exact
    for cycles, wanted in zip([r["cycles"] for r in tables["analytic"]], exact, strict=True):
        assert abs(cycles - wanted) <= 0.05 * wanted
    result = runner.invoke(sweep_command, ["-w", "gemm:4x4x4", "--engine", "numba"])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == ("Error: Invalid value for '--engine': 'numba' is "
                                              "not one of 'compiled', 'python', 'analytic'.")
    (tmp_path / "bad.toml").write_text('engine = "numba"\n' + GRID)
    result = runner.invoke(sweep_command, [str(tmp_path / "bad.toml"), "--no-progress"])
    assert result.exit_code == 1
    assert result.output == (f"Error: {tmp_path / 'bad.toml'}: engine must be one of "
                             f"'compiled', 'python', 'analytic', not 'numba'\n")


def test_module_entry_point(tmp_path: Path) -> None:
    """``python -m gemmstone.sim.sweep`` runs, with worker processes, and a failed point
    does not fail the command."""
    output = tmp_path / "sweep.csv"
    result = subprocess.run(
        [sys.executable, "-m", "gemmstone.sim.sweep", "--preset", "tiny", "--param",
         "dram_bytes_per_cycle=4,3", "-w", "gemm:8x8x8", "-w", "gemm:8x8x16", "--jobs", "2",
         "--no-progress", "-o", str(output)],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "4 rows (2 failed)" in result.stdout
    rows = read_table(output)
    assert [r["error"] is None for r in rows] == [True, True, False, False]


def test_what_is_not_implemented_is_said(tmp_path: Path) -> None:
    """A point with several cores fails with the config's message (no silent single-core
    result), and sweeping the interconnect of one core prints that it cannot matter."""
    output = tmp_path / "cores.csv"
    result = CliRunner().invoke(sweep_command, [
        "--preset", "tiny", "-w", "gemm:16x8x32", "--param", "cores=1,2",
        "--param", "topology=ring,mesh", "-j", "1", "--no-progress", "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert ("note: topology cannot change a result: one core has no interconnect (the "
            "multi-core interconnect is not implemented yet)") in result.output
    rows = read_table(output)
    assert [(r["cores"], r["topology"]) for r in rows] == [
        (1, "ring"), (1, "mesh"), (2, "ring"), (2, "mesh")]
    assert [r["error"] for r in rows[2:]] == [
        "ConfigError: 'cores' must be 1 (the multi-core interconnect is not implemented "
        "yet), not 2"] * 2
    assert not rows[0]["error"] and rows[0]["cycles"] == rows[1]["cycles"] > 0
