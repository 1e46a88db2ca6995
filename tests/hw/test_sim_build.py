"""The Verilator build helper: environment, cache keys, cache hits and build errors.

Only tiny designs are built here (a few seconds each); the systolic array's build and run
are in test_systolic_array_verilator.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from gemmstone.hw import objcache
from gemmstone.hw.sim_build import (
    DEFAULT_BUILD_ARGS,
    VerilatorError,
    build_environment,
    build_key,
    build_native,
    build_verilated,
    default_cache_dir,
    prune_cache,
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
    assert "OPT_FAST=-O3" not in env["MAKEFLAGS"].split()
    assert "OPT_FAST=-O3" in build_environment(optimize=True)["MAKEFLAGS"].split()
    objcache = next(flag for flag in env["MAKEFLAGS"].split() if flag.startswith("OBJCACHE="))
    if objcache != "OBJCACHE=ccache":
        assert objcache == f"OBJCACHE={default_cache_dir() / 'objcache.py'}"
        assert os.access(default_cache_dir() / "objcache.py", os.X_OK)
    assert re.match(r"5\.\d+\.\d+ \(.+\)$", verilator_version())


def test_build_key_changes_with_every_input():
    key = build_key(COUNTER, toplevel="counter", build_args=DEFAULT_BUILD_ARGS)
    assert key == build_key(COUNTER, toplevel="counter", build_args=DEFAULT_BUILD_ARGS)
    assert len({
        key,
        build_key(COUNTER + "\n", toplevel="counter", build_args=DEFAULT_BUILD_ARGS),
        build_key(COUNTER, toplevel="other", build_args=DEFAULT_BUILD_ARGS),
        build_key(COUNTER, toplevel="counter", build_args=("-O3",)),
        build_key(COUNTER, toplevel="counter", build_args=DEFAULT_BUILD_ARGS, public=True),
        build_key(COUNTER, toplevel="counter", build_args=DEFAULT_BUILD_ARGS, optimize=True),
    }) == 6


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
    # Not public: only the top module's ports are visible to cocotb.
    assert (first.directory / "ports.vlt").read_text() == (
        '`verilator_config\npublic_flat_rw -module "counter" -var "*"\n')
    assert "--public-flat-rw" not in (first.directory / "build.log").read_text()
    assert not [*first.directory.glob("*.gch"), *first.directory.glob("*.o")]


COUNTER_MAIN = """
#include <cstdio>
#include <cstdlib>
#include "Vtop.h"
#include "verilated.h"
int main(int argc, char** argv) {
    Vtop top;
    top.rst = 1; top.clk = 0; top.eval();
    top.clk = 1; top.eval(); top.clk = 0; top.rst = 0; top.eval();
    for (int i = 0; i < std::atoi(argv[1]); ++i) {
        top.clk = 1; top.eval(); top.clk = 0; top.eval();
    }
    std::printf("count %d step %d\\n", top.count, STEP);
    return 0;
}
"""


def test_native_build_runs_its_own_main_and_is_cached():
    # The default cache, like the cocotb build above: built once per machine.
    first = build_native(COUNTER, toplevel="counter", harness=COUNTER_MAIN,
                         defines={"STEP": "7"})
    assert first.executable == first.directory / "counter_native"
    result = subprocess.run([first.executable, "300"], capture_output=True, text=True,
                            check=True)
    assert result.stdout == f"count {300 % 256} step 7\n"  # an 8-bit counter wraps
    second = build_native(COUNTER, toplevel="counter", harness=COUNTER_MAIN,
                          defines={"STEP": "7"})
    assert not second.built and second.directory == first.directory
    assert not [*first.directory.glob("*.gch"), *first.directory.glob("*.o")]
    # Another main or other defines are another build; a cocotb build's key differs too.
    keys = {build_key(COUNTER, toplevel="counter", harness=COUNTER_MAIN),
            build_key(COUNTER, toplevel="counter", harness=COUNTER_MAIN + "\n"),
            build_key(COUNTER, toplevel="counter")}
    assert len(keys) == 3


def test_native_build_without_main_is_refused(tmp_path):
    with pytest.raises(ValueError, match="^'harness' must be C\\+\\+ source text with a main "
                       "function$"):
        build_native(COUNTER, toplevel="counter", harness="int x;", cache_dir=tmp_path)


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


def test_objcache_compiles_runtime_sources_once(tmp_path):
    # A stand-in compiler that counts its runs and writes the object and its depfile.
    compiler = tmp_path / "fake-c++"
    runs = tmp_path / "runs"
    compiler.write_text(
        "#!/bin/sh\n"
        f"echo run >> {runs}\n"
        'while [ "$1" != "-o" ]; do shift; done\n'
        'echo "object of $3" > "$2"; echo "deps" > "${2%.o}.d"\n')
    compiler.chmod(0o755)
    root = tmp_path / "include"
    root.mkdir()
    store = tmp_path / "store"
    for build in ("first", "second"):
        (tmp_path / build).mkdir()
        out = tmp_path / build / "verilated.o"
        args = [str(compiler), "-Os", "-c", "-o", str(out), str(root / "verilated.cpp")]
        assert objcache.main(args, store=str(store), roots=[str(root)], identity="x") == 0
        assert out.read_text() == f"object of {root / 'verilated.cpp'}\n"
        assert (tmp_path / build / "verilated.d").read_text() == "deps\n"
    assert runs.read_text() == "run\n"  # the second build copied the stored object
    # Sources outside the roots (the model itself) always compile.
    model = [str(compiler), "-c", "-o", str(tmp_path / "model.o"), str(tmp_path / "m.cpp")]
    for _ in range(2):
        assert objcache.main(model, store=str(store), roots=[str(root)], identity="x") == 0
    assert runs.read_text() == "run\n" * 3


def test_prune_cache_deletes_unused_and_unfinished_builds(tmp_path):
    day = 86400
    now = time.time()
    ages = {"recent": (True, 1 * day), "unused": (True, 20 * day),
            "unfinished": (False, 2 * day), "in_progress": (False, 600)}
    for name, (stamped, age) in ages.items():
        (tmp_path / name).mkdir()
        (tmp_path / f"{name}.lock").touch()
        marker = tmp_path / name / ("gemmstone-build.json" if stamped else "build.log")
        marker.touch()
        os.utime(marker if stamped else tmp_path / f"{name}.lock", (now - age, now - age))
    removed = prune_cache(tmp_path, unused_days=14)
    assert sorted(path.name for path in removed) == ["unfinished", "unused"]
    assert sorted(path.name for path in tmp_path.iterdir() if path.is_dir()) == [
        "in_progress", "recent"]
