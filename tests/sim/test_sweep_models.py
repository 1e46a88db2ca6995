"""Whole models in a sweep: a repo model and a .pt2 file through the compiler."""

from __future__ import annotations

from pathlib import Path

import pytest

from gemmstone.sim.sweep.grid import parse_grid
from gemmstone.sim.sweep.run import run_sweep
from gemmstone.sim.sweep.workloads import ModelPart, WorkloadError, parse_workload

# DigitsCNN on one 8x8 image: conv 1->16 and 16->32 (3x3, 8x8 outputs), linear 512->64 and
# 64->10.
DIGITS_MACS = 8 * 8 * 16 * 1 * 9 + 8 * 8 * 32 * 16 * 9 + 512 * 64 + 64 * 10


@pytest.fixture(autouse=True)
def _private_compile_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GEMMSTONE_CACHE", str(tmp_path / "cache"))


def test_repo_model_at_two_batches() -> None:
    grid = parse_grid({"preset": "small", "workloads": ["model:digits"], "batches": [1, 2]})
    rows = run_sweep(grid, jobs=1)
    assert [(r["workload"], r["batch"], r["error"]) for r in rows] == [
        ("model digits", 1, None), ("model digits", 2, None)]
    assert [r["macs"] for r in rows] == [DIGITS_MACS, 2 * DIGITS_MACS]
    assert all(r["host_ops"] > 0 and r["cycles"] > 0 for r in rows)
    assert rows[0]["cycles"] < rows[1]["cycles"] < 2 * rows[0]["cycles"]


def test_pt2_file(tmp_path: Path) -> None:
    import torch

    module, x = ModelPart("digits", 8, 1).module_and_input()
    path = tmp_path / "digits.pt2"
    torch.export.save(torch.export.export(module, (x,)), path)
    grid = parse_grid({"preset": "small", "workloads": [str(path), "model:digits"]})
    file_row, model_row = run_sweep(grid, jobs=1)
    assert file_row["workload"] == "digits.pt2" and file_row["error"] is None
    assert file_row["macs"] == DIGITS_MACS
    # The same network with calibration on other random data: the same programs' shapes.
    assert file_row["instructions"] == model_row["instructions"]


def test_a_size_the_model_cannot_take_fails_when_parsed() -> None:
    with pytest.raises(WorkloadError) as caught:
        parse_workload("model:digits:16")
    assert str(caught.value) == ("workload 'model:digits:16': digits: the image size is fixed "
                                 "at 8, not 16")
    [resnet] = parse_workload("model:resnet18:32")
    module, x = ModelPart(*resnet.spec, 2).module_and_input()
    assert x.shape == (2, 3, 32, 32) and module(x).shape == (2, 1000)
