"""The serving latency model: latency(batch) = k * batch + c by least squares."""

from __future__ import annotations

import numpy as np
import pytest

from gemmstone.config import PRESETS
from gemmstone.sim.sweep.grid import parse_grid
from gemmstone.sim.sweep.run import run_sweep
from gemmstone.sim.sweep.serving import fit_latency, serving_report


def test_exact_line() -> None:
    fit = fit_latency([1, 2, 4, 8], [1234 * b + 567 for b in (1, 2, 4, 8)])
    assert fit.k == pytest.approx(1234, abs=1e-6)
    assert fit.c == pytest.approx(567, abs=1e-6)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.latency(16) == pytest.approx(1234 * 16 + 567)
    # 1 GHz: batch 4 takes 5503 ns, so 4 / 5.503 us.
    assert fit.throughput(4, 1e9) == pytest.approx(4 / 5503e-9)
    assert fit.max_batch(1234 * 10 + 567) == 10
    assert fit.max_batch(1234 * 10 + 566) == 9
    assert fit.max_batch(1000) == 0


def test_noisy_line() -> None:
    rng = np.random.default_rng(3)
    batches = np.arange(1, 33)
    cycles = 500.0 * batches + 20_000 + rng.normal(0, 50, batches.size)
    fit = fit_latency(list(batches), list(cycles))
    expected_k, expected_c = np.polyfit(batches, cycles, 1)
    assert (fit.k, fit.c) == pytest.approx((expected_k, expected_c))
    assert fit.k == pytest.approx(500, rel=0.01)
    assert fit.c == pytest.approx(20_000, rel=0.01)
    assert 0.99 < fit.r2 < 1


def test_flat_latency() -> None:
    fit = fit_latency([1, 2], [100, 100])
    assert fit.k == pytest.approx(0, abs=1e-9)
    assert fit.max_batch(101) is None
    assert fit.max_batch(99) == 0


def test_fit_needs_two_batches() -> None:
    with pytest.raises(ValueError) as error:
        fit_latency([4, 4], [10, 11])
    assert str(error.value) == ("fitting latency(batch) needs at least two batch sizes, not "
                                "[4]")
    with pytest.raises(ValueError) as error:
        fit_latency([1, 2], [10])
    assert str(error.value) == "2 batch sizes but 1 cycle counts"


def test_fit_of_the_performance_model() -> None:
    """On the perf model's GEMM cycles the line fits every batch within 5%, and k and c
    agree with the measured cost of one more request and of an empty batch."""
    grid = parse_grid({"preset": "tiny", "workloads": ["gemm:8x16x32"],
                       "batches": [1, 2, 3, 4, 6, 8]})
    rows = run_sweep(grid, jobs=1)
    cycles = {row["batch"]: row["cycles"] for row in rows}
    fit = fit_latency(list(cycles), list(cycles.values()))
    for batch, measured in cycles.items():
        assert fit.latency(batch) == pytest.approx(measured, rel=0.05)
    assert fit.r2 > 0.99
    assert fit.k == pytest.approx((cycles[8] - cycles[1]) / 7, rel=0.05)
    assert fit.c == pytest.approx(cycles[1] - fit.k, rel=0.05)

    [report] = serving_report(rows, clock_mhz=500, slo_ms=0.005, params=["rows"])
    assert report["point"] == 0 and report["rows"] == PRESETS["tiny"].rows
    assert report["k_cycles"] == pytest.approx(fit.k, abs=0.01)
    assert report["c_cycles"] == pytest.approx(fit.c, abs=0.01)
    assert report["k_us"] == pytest.approx(fit.k / 500)
    assert report["throughput_b8"] == pytest.approx(8 * 500e6 / fit.latency(8), abs=0.01)
    # 5 us at 500 MHz = 2500 cycles.
    assert report["max_batch"] == int((2500 - fit.c) // fit.k)
    assert report["error"] is None


def test_report_of_failed_points() -> None:
    rows = [{"point": 0, "workload": "w", "batch": b, "cycles": None,
             "error": "ConfigError: bad"} for b in (1, 2)]
    rows.append({"point": 1, "workload": "w", "batch": 1, "cycles": 10, "error": None})
    report = serving_report(rows, clock_mhz=1000)
    assert report == [
        {"point": 0, "workload": "w", "error": "ConfigError: bad"},
        {"point": 1, "workload": "w", "error": "fitting latency(batch) needs at least two "
                                               "batch sizes, not [1]"}]
