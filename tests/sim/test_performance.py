"""The performance model on its own (no RTL): what it must agree on with the functional
model, and the errors it reports. Its cycle counts are checked against the RTL in
test_performance_calibration.py."""

from __future__ import annotations

import numpy as np
import pytest

from gemmstone.compiler.builder import ProgramBuilder
from gemmstone.compiler.kernels.conv import emit_conv2d
from gemmstone.config import preset
from gemmstone.isa import ProgramEndError, TokenError, assemble
from gemmstone.sim.functional import run_program
from gemmstone.sim.performance import PerformanceModel, estimate
from gemmstone.sim.performance_memory import AXI_RAM, memory_timing, sim_dram


@pytest.mark.parametrize("name", ["tiny", "rect", "small"])
def test_retired_instructions_and_bytes_written_match_the_functional_model(name):
    config = preset(name)
    builder = ProgramBuilder(config)
    x = builder.buffer("x", (9, 7, 6))
    w = builder.buffer("w", (54, 10), data=np.ones((54, 10), np.int8))
    out = builder.buffer("out", (5, 4, 10), "int32")
    emit_conv2d(builder, x, w, out, None, kernel_size=3, stride=2, padding=1)
    program = builder.finish()
    counters = run_program(program, config).counters
    result = estimate(program, config)
    for unit in ("load", "compute", "store"):
        assert result.counters[f"RETIRED_{unit.upper()}"] == counters.instructions[unit]
    assert result.counters["BYTES_WRITTEN"] == counters.dram_bytes_written
    # Every read moves whole bus beats: at least the bytes the instructions name.
    assert result.counters["BYTES_READ"] >= counters.dram_bytes_read + 16 * len(program.words)
    assert result.cycles > counters.macs // config.macs_per_cycle


@pytest.mark.parametrize(("text", "error", "message"), [
    ("load len=1\nmatmul n=1 pop_prev\nhalt", TokenError, "deadlock"),
    ("load len=1 push_next\nhalt", TokenError, "tokens left in queues at halt: load->compute"),
    ("load len=1", ProgramEndError, "the program ended after 1 instructions without halt"),
])
def test_bad_programs_raise(text, error, message):
    with pytest.raises(error, match=message):
        PerformanceModel(preset("tiny")).run(assemble(text))


def test_run_cache_gives_the_simulated_result_and_a_copy():
    config = preset("tiny")
    program = assemble("load n=5 len=4 stride=4 push_next\nmatmul n=5 pop_prev\nhalt")
    fresh = PerformanceModel(config, cache=False).run(program, instr_base=0x40)
    cached = PerformanceModel(config)
    first = cached.run(program, instr_base=0x40)
    first.counters["CYCLES"] = -1  # a caller's change must not reach the cache
    second = cached.run(program, instr_base=0x40)
    assert second.counters == fresh.counters and second.grant == fresh.grant
    assert second.cycles > 0
    # Another address is another run (the bus beats differ).
    other = PerformanceModel(config, cache=False).run(program, instr_base=0x48)
    assert cached.run(program, instr_base=0x48).counters == other.counters


def test_memory_timing_by_name_and_the_default_from_the_config():
    config = preset("small").replace(dram_latency=37)
    assert memory_timing("dram", config) == sim_dram(37)
    assert memory_timing("axi-ram", config) is AXI_RAM
    with pytest.raises(ValueError, match="'memory' must be one of 'dram', 'axi-ram', "
                                         "not 'axiram'"):
        memory_timing("axiram", config)
    assert PerformanceModel(config).memory == sim_dram(37)
    program = assemble("load n=40 len=8 stride=8 push_next\nmatmul n=40 pop_prev\nhalt")
    slow = PerformanceModel(config, cache=False).run(program).cycles
    fast = PerformanceModel(config.replace(dram_latency=2), cache=False).run(program).cycles
    assert slow > fast
