"""The Verilator build helper: environment, cache keys, cache hits and build errors.

Only tiny designs are built here (a few seconds each); the systolic array's build and run
are in test_systolic_array_verilator.py.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from gemmstone.hw.sim_build import (
    DEFAULT_BUILD_ARGS,
    VerilatorError,
    build_environment,
    build_key,
    build_verilated,
    default_cache_dir,
    verilator_root,
    verilator_version,
)

COUNTER = """
module counter(input clk, input rst, output reg [7:0] count);
  always @(posedge clk) count <= rst ? 8'd0 : count + 8'd1;
endmodule
"""


def test_environment_points_at_the_packaged_verilator():
    env = build_environment()
    root = Path(env["VERILATOR_ROOT"])
    assert root == verilator_root()
    assert (root / "bin" / "verilator").is_file()
    assert (root / "include" / "verilated.mk").is_file()
    assert env["PATH"].split(os.pathsep)[0] == str(root / "bin")
    assert "CFG_CXXFLAGS_PCH_I=-include" in env["MAKEFLAGS"].split()
    assert re.match(r"5\.\d+\.\d+ \(.+\)$", verilator_version())


def test_build_key_changes_with_every_input():
    key = build_key(COUNTER, toplevel="counter", build_args=DEFAULT_BUILD_ARGS)
    assert key == build_key(COUNTER, toplevel="counter", build_args=DEFAULT_BUILD_ARGS)
    assert len({
        key,
        build_key(COUNTER + "\n", toplevel="counter", build_args=DEFAULT_BUILD_ARGS),
        build_key(COUNTER, toplevel="other", build_args=DEFAULT_BUILD_ARGS),
        build_key(COUNTER, toplevel="counter", build_args=("-O3",)),
    }) == 4


def test_default_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "gemmstone" / "verilator"


def test_second_build_comes_from_the_cache():
    # The default cache: a cold run builds (about 20 s of CPU, mostly Verilator's runtime),
    # later runs find it. Either way the second call must not build.
    first = build_verilated(COUNTER, toplevel="counter")
    assert (first.directory / "counter").is_file()  # the simulator executable
    assert first.directory.parent == default_cache_dir()
    second = build_verilated(COUNTER, toplevel="counter")
    assert not second.built
    assert second.directory == first.directory


def test_a_failed_build_raises_with_the_log(tmp_path):
    broken = "module broken(input clk);\n  this is not verilog;\nendmodule\n"
    with pytest.raises(VerilatorError, match=r"building broken in .* failed(.|\n)*broken\.v"):
        build_verilated(broken, toplevel="broken", cache_dir=tmp_path)
    # Nothing was stamped as built: the next call tries again instead of reusing a wreck.
    with pytest.raises(VerilatorError):
        build_verilated(broken, toplevel="broken", cache_dir=tmp_path)


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"verilog": "", "toplevel": "top"}, TypeError,
     "'verilog' must be non-empty Verilog text, not ''"),
    ({"verilog": COUNTER, "toplevel": "no such"}, ValueError,
     "'toplevel' must be a Verilog module name, not 'no such'"),
])
def test_bad_arguments_are_named(kwargs, error, message, tmp_path):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        build_verilated(**kwargs, cache_dir=tmp_path)
