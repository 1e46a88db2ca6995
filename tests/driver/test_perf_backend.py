"""The ``perf`` backend: outputs of the functional model, counters of the performance
model, faults as on the ``func`` backend."""

from __future__ import annotations

import re

import numpy as np
import pytest

from gemmstone.compiler.kernels.cases import conv_case, gemm_case
from gemmstone.config import preset
from gemmstone.driver import Device
from gemmstone.driver.backends.perf import PerfBackend
from gemmstone.isa import (
    AddressError,
    DmaWindowError,
    IllegalInstructionError,
    Program,
    ProgramEndError,
    TokenError,
    assemble,
)
from gemmstone.sim.performance import COUNTERS, PerformanceModel, estimate
from gemmstone.sim.performance_memory import AXI_RAM, sim_dram

TINY = preset("tiny")


def asm_program(text: str, config=TINY) -> Program:
    return Program(config.content_hash, assemble(text), window_size=0x1000)


@pytest.mark.parametrize("name", ["tiny", "rect", "small"])
def test_outputs_equal_func_and_counters_equal_the_estimate(name):
    config = preset(name)
    rng = np.random.default_rng(7)
    cases = [gemm_case(config, rng, 13, 9, 21), conv_case(config, rng, 7, 6, 5, 6, 3, 1, 1)]
    with Device(config, backend="perf") as perf, Device(config) as func:
        for program, inputs, expected in cases:
            outputs = perf.execute(program, inputs)
            for key, value in func.execute(program, inputs).items():
                np.testing.assert_array_equal(outputs[key], value)
            np.testing.assert_array_equal(outputs["out"], expected["out"])
            # The default memory is the rtl backend's: the in-simulation DRAM (named here:
            # the test is that the backend's default is this timing).
            wanted = estimate(program, config, memory=sim_dram(config.dram_latency)).counters
            assert perf.counters() == {k.lower(): v for k, v in wanted.items()}
            assert wanted["CYCLES"] > wanted["RETIRED_COMPUTE"] > 0


def test_counters_are_timed_at_the_run_addresses_and_repeat():
    program, inputs, _ = gemm_case(TINY, np.random.default_rng(8), 9, 6, 11)
    with Device(TINY, backend="perf") as device:
        device.alloc(0x80)  # the code and the window move by 128 bytes
        loaded = device.load(program)
        loaded.write("a", inputs["a"])
        first = device.run(loaded)
        second = device.run(loaded)
        timed = device.backend.last_estimate.counters
        at = PerformanceModel(TINY).run(
            program.words, instr_base=loaded.code.address,
            window_base=loaded.window.address).counters
    assert first == second == {k.lower(): v for k, v in at.items()} == {
        k.lower(): v for k, v in timed.items()}
    assert set(first) == {name.lower() for name in COUNTERS}


@pytest.mark.parametrize(("memory", "timing"), [
    ("axi-ram", AXI_RAM), (sim_dram(40), sim_dram(40)),
    ("dram", sim_dram(TINY.dram_latency))])
def test_memory_timing_is_an_option(memory, timing):
    program, inputs, _ = gemm_case(TINY, np.random.default_rng(9), 16, 8, 16)
    with Device(TINY, backend="perf", memory=memory) as device:
        device.execute(program, inputs)
        counters = device.counters()
    assert counters["cycles"] == estimate(program, TINY, memory=timing).cycles
    # AxiRam answers in 2 cycles, the DRAM model here in 20 or 40: slower.
    assert (counters["cycles"] > estimate(program, TINY, memory=AXI_RAM).cycles) == (
        memory != "axi-ram")


def test_engine_is_an_option():
    """The engine reaches the performance model: the Python reference's counters are the
    compiled engine's, the analytic engine's cycles are within 5% of them; the outputs are
    the functional model's on every engine."""
    program, inputs, expected = gemm_case(TINY, np.random.default_rng(10), 48, 40, 64)
    counters = {}
    for engine in ("compiled", "python", "analytic"):
        with Device(TINY, backend="perf", engine=engine) as device:
            np.testing.assert_array_equal(device.execute(program, inputs)["out"],
                                          expected["out"])
            counters[engine] = device.counters()
            assert device.backend.timing.engine == engine
        wanted = estimate(program, TINY, memory=sim_dram(TINY.dram_latency), engine=engine)
        assert counters[engine]["cycles"] == wanted.cycles
    assert counters["python"] == counters["compiled"]
    assert counters["analytic"]["cycles"] == pytest.approx(counters["compiled"]["cycles"],
                                                           rel=0.05)
    assert counters["analytic"]["retired_compute"] == counters["compiled"]["retired_compute"]


def test_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="^perf backend: 'engine' must be one of 'compiled', "
                                         "'python', 'analytic', not 'numba'$"):
        Device(TINY, backend="perf", engine="numba")


def test_run_command_takes_the_engine(tmp_path):
    """``gemmstone run PROGRAM.gem --backend perf --engine NAME`` times the program on that
    engine; --engine on another backend is a usage error."""
    from click.testing import CliRunner

    from gemmstone.cli import main

    program, inputs, _ = gemm_case(TINY, np.random.default_rng(11), 16, 8, 16)
    program.save(tmp_path / "gemm.gem")
    given = []
    for name, value in inputs.items():
        np.save(tmp_path / f"{name}.npy", value)
        given.append(f"--input={name}={tmp_path / name}.npy")
    for engine in ("analytic", "python"):
        result = CliRunner().invoke(main, ["run", str(tmp_path / "gemm.gem"), "--backend",
                                           "perf", "--engine", engine, *given])
        assert result.exit_code == 0, result.output
        assert f"ran on backend perf (engine {engine})," in result.output
        cycles = estimate(program, TINY, engine=engine).cycles
        assert re.search(rf"\bcycles\s+\S\s+{cycles:,}\s", result.output), result.output
    result = CliRunner().invoke(main, ["run", str(tmp_path / "gemm.gem"), "--engine",
                                       "analytic"])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == "Error: --engine is for the perf backend, not func"
    result = CliRunner().invoke(main, ["run", "digits", "--backend", "perf", "--engine", "x"])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == ("Error: Invalid value for '--engine': 'x' is not "
                                              "one of 'compiled', 'python', 'analytic'.")


def test_unknown_memory_is_refused():
    with pytest.raises(ValueError, match="perf backend: 'memory' must be one of 'dram', "
                                         "'axi-ram' or a MemoryTiming, not 'ddr'"):
        Device(TINY, backend="perf", memory="ddr")


def test_backend_is_registered():
    with Device(TINY, backend="perf") as device:
        assert isinstance(device.backend, PerfBackend)
        assert repr(device) == f"<Device perf {TINY.describe()} (open)>"


@pytest.mark.parametrize(("text", "kind", "index", "message"), [
    ("load n=1 len=1\nfence\n.word 0xc\nhalt", IllegalInstructionError, 2,
     r"^instruction 2 \(\.word 0x0+c\): illegal opcode 12 .*\(backend perf\)$"),
    ("load spad=4095 n=2 len=1\nhalt", AddressError, 0,
     r"^instruction 0 \(load +dram=0x0 stride=0 spad=4095 n=2 len=1 pad_lo=0 pad_hi=0\): "
     r"scratchpad line 4096 is out of range: "
     r"the scratchpad has 4096 lines \(backend perf\)$"),
    ("fence\nload dram=0x1000 stride=16 n=4 len=4\nhalt", DmaWindowError, 1,
     r"^instruction 1 \(load .*\): DRAM access up to offset 0x1033 leaves the program's "
     r"DMA window of 0x1000 bytes \(backend perf\)$"),
    ("load len=1 push_next\nhalt", TokenError, 1, r"^instruction 1 \(halt\): token error"),
    ("load len=1\nmatmul n=1 pop_prev\nhalt", TokenError, None, "token"),
    ("load len=1", ProgramEndError, 1,
     r"^instruction 1 \(<end of program>\): the program ended after 1 instructions without "
     r"halt \(backend perf\)$"),
])
def test_faults_are_those_of_func(text, kind, index, message):
    raised = {}
    for backend in ("func", "perf"):
        with Device(TINY, backend=backend) as device:
            with pytest.raises(kind, match=message.replace("backend perf", f"backend {backend}")
                               ) as error:
                device.execute(asm_program(text))
            raised[backend] = error.value
            if index is not None:
                assert error.value.index == index
            # The device is usable after a fault, and a fault leaves no clock behind.
            assert device.counters()["cycles"] == 0
            program, inputs, expected = gemm_case(TINY, np.random.default_rng(5), 3, 3, 3)
            np.testing.assert_array_equal(device.execute(program, inputs)["out"],
                                          expected["out"])
    assert str(raised["perf"]).replace("backend perf", "backend func") == str(raised["func"])
    assert (raised["perf"].code, raised["perf"].index) == (raised["func"].code,
                                                          raised["func"].index)
