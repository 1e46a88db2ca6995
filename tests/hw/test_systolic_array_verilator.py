"""The systolic array Verilated and driven by cocotb (cocotb_systolic_array.py), checked
against numpy: proves the Verilog export, the cached Verilator build and the cocotb runner
work together. A cold cache costs one Verilator build per configuration (10-20 s each on 2
cores once Verilator's runtime objects are cached, about 25 s of CPU more for the very first
build); a warm one a few seconds per configuration."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gemmstone.config import preset
from gemmstone.hw.sim_build import CocotbTestError, VerilatedModel, build_verilated
from gemmstone.hw.verilog import generate_verilog

HERE = Path(__file__).parent


@pytest.fixture(scope="module", params=["small", "rect"])  # 8x8 and 4x8
def array_model(request) -> VerilatedModel:
    verilog = generate_verilog(preset(request.param), top="array")
    return build_verilated(verilog, toplevel="gemmstone_array")


def test_array_on_verilator_matches_numpy(array_model, tmp_path):
    tests = array_model.run_cocotb("cocotb_systolic_array", module_dir=HERE,
                                   test_dir=tmp_path, seed=1234)
    assert len(tests) == 4  # the 2 x 2 parametrization of random_streams_match_numpy
    assert all(test.passed and test.sim_time_ns > 1000 for test in tests)


def test_cocotb_failures_fail_pytest(array_model, tmp_path):
    message = ("1 of 2 cocotb tests failed: fails_on_purpose "
               "(outputs__valid is 0 (as it should be)")
    with pytest.raises(CocotbTestError, match=re.escape(message)):
        array_model.run_cocotb("cocotb_failing", module_dir=HERE, test_dir=tmp_path)
