"""The performance model on its own (no RTL): what it must agree on with the functional
model, and the errors it reports. Its cycle counts are checked against the RTL in
test_performance_calibration.py."""

from __future__ import annotations

import numpy as np
import pytest
from test_performance_calibration import overlapping_waits

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


# -- STALL_DMA: units waiting for DRAM at the same time --------------------------------------

@pytest.mark.parametrize("engine", ["python", "compiled"])
def test_stall_dma_of_units_waiting_together_matches_the_rtl(engine):
    # The RTL's counters for this program on tiny: the Verilated accelerator with
    # cocotbext-axi's AxiRam (tests/hw/accelerator_runs.py), code at 0x100, window at
    # 0x8000, from reset; recorded 2026-11-26 with each unit's dma_wait sampled every cycle:
    # the load unit waits 84 cycles, the store unit 82, both at once in 50. A model that
    # counted each command's waits as one span from its start gave STALL_DMA 133.
    config = preset("tiny")
    model = PerformanceModel(config, AXI_RAM, cache=False, engine=engine)
    result = model.run(assemble(overlapping_waits(config.rows, config.cols)),
                       instr_base=0x100, window_base=0x8000)
    assert result.counters["CYCLES"] == 277
    assert result.counters["STALL_DMA"] == 116


def _strided_conv(config):
    builder = ProgramBuilder(config)
    x = builder.buffer("x", (8, 8, 16))
    w = builder.buffer("w", (16, 16), data=np.ones((16, 16), np.int8))
    out = builder.buffer("out", (4, 4, 16), "int32")
    emit_conv2d(builder, x, w, out, None, kernel_size=1, stride=2, padding=0)
    return builder.finish().words


def _wait_cycles_line_by_line(commands: list, cycles: int) -> int:
    """Cycles in which some unit waits for DRAM data, as hw/core.py counts them, from the
    last beat of every line the model's units read: a unit waits in every cycle from the
    one it may take its command's first line (a LOAD: when its back starts, `first_take`;
    LOADACC and LOADQ: the cycle after the command) to the one it takes its last, but those
    it takes a line in (the cycle after its last beat; a LOAD's first line not before the
    back starts)."""
    waiting = np.zeros((4, cycles + 2), bool)
    for command in commands:
        if command.client == 0:
            continue  # instruction fetch: no unit waits for it
        takes = np.array(command.ends) + 1
        if command.first_take is not None:
            start = command.first_take
            takes[0] = max(takes[0], start)
        else:
            start = command.accepted + 1
        waiting[command.client, start:takes[-1] + 1] = True
        waiting[command.client, takes] = False
    return int(waiting.any(axis=0).sum())


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_stall_dma_is_the_union_of_every_units_waits_line_by_line(name, monkeypatch):
    from gemmstone.sim import performance
    from gemmstone.sim.random_programs import random_program

    made = []

    class Recorded(performance.ReadCommand):
        """A read command that keeps its lines' last beats (taken one by one)."""

        def __init__(self, client, accepted, lines, pattern, **options):
            super().__init__(client, accepted, lines, pattern,
                             **{**options, "keep_ends": True})
            self.accepted = accepted
            made.append(self)

    config = preset(name)
    programs = [assemble(overlapping_waits(config.rows, config.cols)), _strided_conv(config)]
    programs += [random_program(config, seed, length=80, window_size=4096).words
                 for seed in range(8)]
    for index, words in enumerate(programs):
        memory = (AXI_RAM, sim_dram(2), sim_dram(20))[index % 3]
        addresses = {"instr_base": 0x100, "window_base": 0x8000}
        results = [PerformanceModel(config, memory, cache=False, engine=engine).run(
            words, **addresses) for engine in ("python", "compiled")]
        made.clear()
        with monkeypatch.context() as patch:
            patch.setattr(performance, "ReadCommand", Recorded)
            line_by_line = performance._Run(config, memory, words, 0x100, 0x8000, 0).result()
        assert line_by_line.counters == results[0].counters == results[1].counters
        expected = _wait_cycles_line_by_line(made, line_by_line.cycles)
        assert results[0].counters["STALL_DMA"] == expected, f"program {index}"
