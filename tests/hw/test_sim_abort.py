# amaranth: UnusedElaboratable=no
"""Regression: a run started right after a watchdog-aborted run (cocotb_sim_abort.py, on
the simulation top with the in-simulation DRAM, preset tiny).

The bug: the register block drops ``abort`` when the aborted run ends, and the core let its
units take up instructions of that run still in their queues; their DMA reads were then in
flight when the next START reset the units, so the read beats stayed on the shared R
channel with no reader and the next run hung (seen by the driver when a START came within
a few hundred cycles of an abort). Now nothing is issued outside a run, and the AXI read
arbiter restarts at every run, so a run takes as many cycles whatever ran before it.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from accelerator_runs import RAM_BYTES

from gemmstone.compiler.kernels.cases import gemm_case
from gemmstone.config import preset
from gemmstone.hw import sim_dram
from gemmstone.hw.sim_top import build_sim_top, program_run
from gemmstone.isa import ErrorCode

HERE = Path(__file__).parent
# Aborted at these cycles: during the first fetch and loads, in the middle and late in a
# run of about 9k cycles (before the fix, the run after the first abort, at 150, hung).
WATCHDOGS = (150, 300, 500, 700, 1000, 1500, 2000, 3100, 5200, 8000)


def test_run_started_right_after_an_abort_completes(tmp_path):
    config = preset("tiny")
    model = build_sim_top(config, dram_bytes=RAM_BYTES)  # the model test_sim_dram uses
    program, inputs, expected = gemm_case(config, np.random.default_rng(9), 64, 32, 64)
    run = program_run("gemm", program, inputs)
    image_file = tmp_path / "image.bin"
    words = sim_dram.write_image(image_file, run.image, data_bytes=config.dram_bytes_per_cycle)
    out = program.buffers["out"]
    plan = {"data_bytes": config.dram_bytes_per_cycle, "image_file": str(image_file),
            "words": words, "scratch": str(tmp_path / "scratch.bin"),
            "instr_base": run.instr_base, "instr_count": run.instr_count,
            "window_base": run.window_base, "window_limit": run.window_limit,
            "out_addr": run.window_base + out.offset,
            "expected": np.ascontiguousarray(expected["out"]).tobytes(),
            "watchdogs": WATCHDOGS, "max_cycles": 200_000}
    plan_file, results_file = tmp_path / "plan.pkl", tmp_path / "results.pkl"
    plan_file.write_bytes(pickle.dumps(plan))
    model.run_cocotb("cocotb_sim_abort", module_dir=HERE, test_dir=tmp_path, extra_env={
        "GEMMSTONE_ABORT_PLAN": str(plan_file), "GEMMSTONE_ABORT_RESULTS": str(results_file)})
    results = pickle.loads(results_file.read_bytes())
    first = results["first"]
    assert not first["hung"] and first["error"] == ErrorCode.NONE and first["correct"]
    assert first["busy"] == (1, 0)  # the sim top's busy output follows the run
    assert first["cycles"] > max(WATCHDOGS)  # every watchdog fires inside the run
    assert results["again"] == first
    assert [r["watchdog"] for r in results["after_abort"]] == list(WATCHDOGS), \
        f"a run after an abort hung: {results['after_abort'][-1]}"
    for result in results["after_abort"]:
        assert result["aborted"] == ErrorCode.WATCHDOG, result
        # Complete, right, and exactly as long as a run after a reset.
        assert {k: v for k, v in result.items() if k not in ("watchdog", "aborted")} \
            == first, result
