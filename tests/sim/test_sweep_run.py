"""Sweeps run locally and on a Dask cluster: rows, tables on disk, plots, failed points."""

from __future__ import annotations

from pathlib import Path

import pytest

from gemmstone.compiler.builder import ProgramBuilder
from gemmstone.compiler.kernels import emit_gemm
from gemmstone.config import PRESETS
from gemmstone.sim.performance import estimate
from gemmstone.sim.sweep.grid import FIELDS, Grid, parse_grid
from gemmstone.sim.sweep.plots import write_plots
from gemmstone.sim.sweep.run import COLUMNS, TIMING_COLUMNS, distinct_tasks, run_sweep
from gemmstone.sim.sweep.table import read_table, write_table
from gemmstone.sim.sweep.workloads import Workload, parse_workload

TINY = PRESETS["tiny"]


def _grid(engine: str = "compiled", **axes) -> Grid:
    return parse_grid({"preset": "tiny", "workloads": ["gemm:16x8x32", "gemm:8x16x16"],
                       "grid": axes or {"dram_bytes_per_cycle": [2, 4, 3]},
                       "engine": engine})


def _gemm_cycles(config, m: int, n: int, k: int, engine: str = "compiled") -> dict:
    """The performance model's counters of the kernel library's GEMM, built here (its
    default memory, the in-simulation DRAM at the config's latency, is the sweep's
    ``"dram"``)."""
    builder = ProgramBuilder(config)
    a = builder.buffer("a", (m, k))
    b = builder.buffer("b", (k, n))
    q = builder.buffer("q", 3 * n, "int32")
    out = builder.buffer("out", (m, n))
    emit_gemm(builder, a, b, out, q)
    return estimate(builder.finish(), config, engine=engine).counters


def _without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]


@pytest.fixture(scope="module")
def local_rows() -> list[dict]:
    return run_sweep(_grid(), jobs=1)


@pytest.fixture(scope="module")
def analytic_rows() -> list[dict]:
    return run_sweep(_grid("analytic"), jobs=1)


def test_rows(local_rows: list[dict]) -> None:
    assert [(r["point"], r["dram_bytes_per_cycle"], r["workload"]) for r in local_rows] == [
        (0, 2, "gemm 16x8x32"), (0, 2, "gemm 8x16x16"), (1, 4, "gemm 16x8x32"),
        (1, 4, "gemm 8x16x16"), (2, 3, "gemm 16x8x32"), (2, 3, "gemm 8x16x16")]
    for row in local_rows:
        assert list(row) == list(COLUMNS)
    for row in local_rows[:4]:
        config = TINY.replace(dram_bytes_per_cycle=row["dram_bytes_per_cycle"])
        assert {name: row[name] for name in FIELDS} == config.to_dict()
        m, n, k = (int(v) for v in row["workload"].split()[1].split("x"))
        counters = _gemm_cycles(config, m, n, k)
        assert row["error"] is None
        assert row["cycles"] == counters["CYCLES"]
        assert row["macs"] == m * n * k
        assert row["utilization"] == pytest.approx(m * n * k / (counters["CYCLES"] * 16))
        assert row["bytes_read"] == counters["BYTES_READ"]
        assert row["bytes_moved"] == counters["BYTES_READ"] + counters["BYTES_WRITTEN"]
        assert row["intensity"] == pytest.approx(m * n * k / row["bytes_moved"])
        busier = max(counters["BYTES_READ"], counters["BYTES_WRITTEN"])
        assert row["roof_utilization"] == pytest.approx(
            min(1, m * n * k * row["dram_bytes_per_cycle"] / (busier * 16)))
        assert row["utilization"] <= row["roof_utilization"]
        assert (row["busy_load"], row["busy_compute"], row["busy_store"]) == (
            counters["BUSY_LOAD"], counters["BUSY_COMPUTE"], counters["BUSY_STORE"])
        assert row["stall_dma"] == counters["STALL_DMA"]
        assert row["memory"] == "dram" and row["batch"] == 1 and row["host_ops"] == 0
        assert row["engine"] == "compiled"
        assert row["wall_s"] == pytest.approx(row["compile_s"] + row["estimate_s"], abs=1e-3)
    # Bandwidth is the bottleneck here: doubling it speeds every GEMM up.
    assert local_rows[2]["cycles"] < local_rows[0]["cycles"]


def test_invalid_point_is_reported(local_rows: list[dict]) -> None:
    for row in local_rows[4:]:
        assert row["error"] == ("ConfigError: 'dram_bytes_per_cycle' must be a positive power "
                                "of two, not 3")
        assert row["cycles"] is None and row["macs"] is None


def test_local_processes_and_dask_give_the_same_table(local_rows: list[dict],
                                                      analytic_rows: list[dict]) -> None:
    from distributed import Client, LocalCluster

    processes = run_sweep(_grid(), jobs=2)
    # The engine travels with each task: worker processes and Dask run the grid's engine
    # (analytic differs from compiled on these GEMMs; test_engines checks how much).
    analytic_processes = run_sweep(_grid("analytic"), jobs=2)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        on_dask = run_sweep(_grid(), scheduler=client)
        by_address = run_sweep(_grid(), scheduler=cluster.scheduler_address)
        analytic_dask = run_sweep(_grid("analytic"), scheduler=client)
    assert _without_timing(processes) == _without_timing(local_rows)
    assert _without_timing(on_dask) == _without_timing(local_rows)
    assert _without_timing(by_address) == _without_timing(local_rows)
    assert _without_timing(analytic_processes) == _without_timing(analytic_rows)
    assert _without_timing(analytic_dask) == _without_timing(analytic_rows)


def _results(rows: list[dict]) -> list[dict]:
    """The rows without the timing columns and the engine's name."""
    return [{k: v for k, v in row.items() if k != "engine"} for row in _without_timing(rows)]


def test_engines(local_rows: list[dict], analytic_rows: list[dict]) -> None:
    """The grid's engine reaches the performance model: the Python reference gives the
    compiled engine's table exactly, the analytic rows are the analytic engine's
    estimates, within 5% of the exact ones on GEMMs of a few thousand cycles."""
    python_rows = run_sweep(_grid("python"), jobs=1)
    assert [r["engine"] for r in python_rows] == ["python"] * 6
    assert _results(python_rows) == _results(local_rows)
    assert [r["engine"] for r in analytic_rows] == ["analytic"] * 6
    for exact, approximate in zip(local_rows, analytic_rows, strict=True):
        assert approximate["error"] == exact["error"]
        if exact["error"] is None:
            config = TINY.replace(dram_bytes_per_cycle=exact["dram_bytes_per_cycle"])
            m, n, k = (int(v) for v in exact["workload"].split()[1].split("x"))
            counters = _gemm_cycles(config, m, n, k, engine="analytic")
            assert approximate["cycles"] == counters["CYCLES"]
            assert approximate["bytes_read"] == counters["BYTES_READ"]
            assert approximate["macs"] == exact["macs"]
    # Programs of a few hundred cycles are the analytic engine's worst case (fixed
    # latencies it approximates weigh most): its accuracy is checked on larger GEMMs.
    larger = {"preset": "tiny", "workloads": ["gemm:64x32x48", "gemm:48x64x64"],
              "grid": {"dram_bytes_per_cycle": [2, 4]}}
    exact_rows = run_sweep(parse_grid(larger), jobs=1)
    approximate_rows = run_sweep(parse_grid({**larger, "engine": "analytic"}), jobs=1)
    for exact, approximate in zip(exact_rows, approximate_rows, strict=True):
        assert exact["error"] is None and approximate["error"] is None
        assert approximate["cycles"] == pytest.approx(exact["cycles"], rel=0.05)


def test_tasks_carry_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every estimate of a sweep uses the grid's engine (and the same number of tasks as
    with any other engine: one engine per sweep)."""
    import gemmstone.sim.sweep.workloads as workloads

    used = []

    def recording(program, config, *, memory, engine):
        used.append(engine)
        return estimate(program, config, memory=memory, engine=engine)

    monkeypatch.setattr(workloads, "estimate", recording)
    for engine in ("python", "analytic"):
        used.clear()
        grid = _grid(engine)
        assert distinct_tasks(grid) == distinct_tasks(_grid()) == 4
        run_sweep(grid, jobs=1)
        assert used == [engine] * 4


def test_parts_are_counted_and_shared() -> None:
    """A multi-part workload is the sum of its parts times their counts, batch included."""
    table = (("attn_qk", 8, 8, 8, 3), ("q_proj", 8, 8, 16, 1))
    grid = Grid(TINY, {}, (Workload("mix", "bert-gemm", table),
                           *parse_workload("gemm:8x8x8"), *parse_workload("gemm:16x8x16")),
                (1, 2))
    rows = {(r["workload"], r["batch"]): r for r in run_sweep(grid, jobs=1)}
    for batch in (1, 2):
        single, stacked = rows[("gemm 8x8x8", 1)], rows[("gemm 16x8x16", 1)]
        mix = rows[("mix", batch)]
        q_proj = _gemm_cycles(TINY, 8 * batch, 8, 16)
        assert mix["cycles"] == 3 * batch * single["cycles"] + q_proj["CYCLES"]
        assert mix["macs"] == 3 * batch * 8 * 8 * 8 + 8 * batch * 8 * 16
        assert mix["instructions"] == 3 * batch * single["instructions"] + (
            stacked["instructions"] if batch == 2 else rows[("mix", 1)]["instructions"]
            - 3 * single["instructions"])


def test_failing_part_is_reported(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not a protobuf")
    grid = parse_grid({"preset": "tiny", "workloads": [str(broken), "gemm:8x8x8"],
                       "batches": [1, 2]})
    rows = run_sweep(grid, jobs=1)
    assert [(r["workload"], r["batch"]) for r in rows] == [
        ("broken.onnx", 1), ("broken.onnx", 2), ("gemm 8x8x8", 1), ("gemm 8x8x8", 2)]
    assert rows[0]["error"] == ("DecodeError: Error parsing message with type "
                                "'onnx.ModelProto': Wire format was corrupt")
    assert rows[0]["cycles"] is None
    assert rows[1]["error"] == ("WorkloadError: broken.onnx: a model file has fixed input "
                                "shapes; batch must be 1, not 2")
    assert rows[2]["error"] is None and rows[2]["cycles"] > 0
    assert rows[3]["error"] is None and rows[3]["cycles"] > rows[2]["cycles"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_table_round_trip(local_rows: list[dict], tmp_path: Path, suffix: str) -> None:
    path = write_table(local_rows, tmp_path / f"sweep{suffix}")
    assert read_table(path) == local_rows
    if suffix == ".csv":
        assert path.read_text().splitlines()[0] == ",".join(COLUMNS)
    else:
        import pyarrow.parquet as pq
        assert pq.read_schema(path).names == list(COLUMNS)


def test_table_suffix(local_rows: list[dict], tmp_path: Path) -> None:
    with pytest.raises(ValueError) as error:
        write_table(local_rows, tmp_path / "sweep.xlsx")
    assert str(error.value) == (f"{tmp_path / 'sweep.xlsx'}: the table file must end in .csv "
                                f"or .parquet, not '.xlsx'")


def test_plots(tmp_path: Path) -> None:
    grid = _grid(dram_bytes_per_cycle=[2, 4], array=["4x4", "8x8", "8x3"])
    rows = run_sweep(grid, jobs=1)
    assert sum(1 for row in rows if row["error"]) == 4  # the 8x3 points
    paths = write_plots(rows, tmp_path / "plots", grid.swept)
    assert [p.name for p in paths] == ["roofline.png", "utilization_vs_dram_bytes_per_cycle.png",
                                       "heatmap_dram_bytes_per_cycle_array.png"]
    for path in paths:
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    [curves] = write_plots(rows, tmp_path / "one", [])
    assert curves.name == "roofline.png"
