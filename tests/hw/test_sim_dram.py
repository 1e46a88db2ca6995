# amaranth: UnusedElaboratable=no
"""The simulation DRAM model: alone against cocotbext-axi, and under the accelerator.

Alone (cocotb_sim_dram.py): bursts with strobes and several outstanding bursts against a
reference bytearray, exact latency, the bandwidth throttle, host load and dump. Under the
accelerator (`gemmstone.hw.sim_top`): a GEMM and a conv program leave DRAM identical, byte
for byte, to the functional model's; latency and bandwidth change the accelerator's CYCLES
counter as specified. One Verilator build per design (about two minutes cold for the
accelerator on 2 cores, cached after).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from accelerator_runs import RAM_BYTES, make_run

from gemmstone.compiler.kernels.cases import conv_case, gemm_case
from gemmstone.config import preset
from gemmstone.hw.register_map import STATUS_BUSY, STATUS_DONE, config_id
from gemmstone.hw.sim_build import build_verilated
from gemmstone.hw.sim_dram import (
    SimDram,
    file_port_value,
    read_image,
    sim_dram_verilog,
    write_image,
)
from gemmstone.hw.sim_top import (
    INSTR_BASE,
    ProgramRun,
    SimTop,
    build_sim_top,
    cached_sim_top_verilog,
    run_programs,
    window_buffer,
)
from gemmstone.hw.sim_top import program_run as program_run_of
from gemmstone.isa import ErrorCode
from gemmstone.isa.encoding import words_to_bytes

HERE = Path(__file__).parent
WORDS = 4096


@pytest.mark.parametrize("data_bytes", [16, 2])
def test_dram_model_against_axi_master(data_bytes, tmp_path):
    dram = SimDram(data_bytes=data_bytes, words=WORDS, id_width=4, outstanding=16)
    model = build_verilated(sim_dram_verilog(dram), toplevel="gemmstone_sim_dram_top")
    tests = model.run_cocotb("cocotb_sim_dram", module_dir=HERE, test_dir=tmp_path, extra_env={
        "GEMMSTONE_DRAM_DIR": str(tmp_path), "GEMMSTONE_DRAM_WORDS": str(WORDS),
        "GEMMSTONE_DRAM_BYTES": str(data_bytes)})
    assert len(tests) == 4


def test_image_files_round_trip_and_reject_bad_sizes(tmp_path):
    data = bytes(range(200)) * 3
    words = write_image(tmp_path / "a.bin", data, data_bytes=16)
    assert words == 38
    raw = (tmp_path / "a.bin").read_bytes()
    assert raw[:16] == data[:16][::-1]  # $fread fills a word from its top byte
    # A dump is little-endian 32-bit units: for 16-byte words, the bytes in DRAM order.
    (tmp_path / "d.bin").write_bytes(data[:32])
    assert read_image(tmp_path / "d.bin", data_bytes=16, words=2) == data[:32]
    # Words narrower than 32 bits take a 32-bit unit each.
    (tmp_path / "n.bin").write_bytes(bytes([1, 2, 0, 0, 3, 4, 0, 0]))
    assert read_image(tmp_path / "n.bin", data_bytes=2, words=2) == bytes([1, 2, 3, 4])
    with pytest.raises(ValueError, match=r"expected 3 words of 16 bytes \(48 bytes\), "
                                         r"found 32 bytes"):
        read_image(tmp_path / "d.bin", data_bytes=16, words=3)
    assert file_port_value("ab") == 0x6162
    with pytest.raises(ValueError, match="the DRAM image path must be at most 512 characters"):
        file_port_value("x" * 513)


def test_sim_top_rejects_bad_parameters():
    with pytest.raises(ValueError, match="'dram_bytes' must be a multiple of the 4-byte bus "
                                         "word up to 4 GiB, not 6"):
        SimTop(config=preset("tiny"), dram_bytes=6)
    with pytest.raises(ValueError, match="'outstanding' must be a power of two of at least 2, "
                                         "not 3"):
        SimTop(config=preset("tiny"), outstanding=3)
    with pytest.raises(ValueError, match="'outstanding' must be at least 2, not 1"):
        SimDram(data_bytes=4, words=16, outstanding=1)


@pytest.fixture(scope="module")
def tiny_top():
    config = preset("tiny")
    return config, build_sim_top(config, dram_bytes=RAM_BYTES)


def program_run(expected, **timing) -> ProgramRun:
    """A `ProgramRun` of the run of an `accelerator_runs.Expectation`."""
    run = expected.run
    return ProgramRun(name=run["name"], image=run["ram"], instr_base=run["instr_base"],
                      instr_count=run["instr_count"], window_base=run["window_base"],
                      window_limit=run["window_limit"], watchdog=run["watchdog"],
                      max_cycles=run["max_cycles"], **timing)


def test_bench_registers_and_unaligned_memory_access(tiny_top, tmp_path):
    config, model = tiny_top
    model.run_cocotb("cocotb_sim_top", module_dir=HERE, test_dir=tmp_path, extra_env={
        "GEMMSTONE_BENCH_DIR": str(tmp_path),
        "GEMMSTONE_BENCH_BYTES": str(config.dram_bytes_per_cycle)})


def test_programs_match_the_functional_model(tiny_top, tmp_path):
    config, model = tiny_top
    rng = np.random.default_rng(11)
    cases = [("gemm 37x21x45", *gemm_case(config, rng, 37, 21, 45)),
             ("conv 8x7x6 k3 s1 p1", *conv_case(config, rng, 8, 7, 6, 5, 3, 1, 1))]
    expectations = [make_run(name, config, program, inputs)
                    for name, program, inputs, _ in cases]
    runs = [program_run(expected, latency=latency, rate=rate)
            for expected in expectations for latency, rate in ((20, 0), (3, 1))]
    results = run_programs(model, config, runs, tmp_path)
    for index, result in enumerate(results):
        expected = expectations[index // 2]
        assert expected.error is None
        registers = result.registers
        assert registers["ERROR_CODE"] == ErrorCode.NONE, result.name
        assert registers["STATUS"] & (1 << STATUS_DONE.lsb), result.name
        assert not registers["STATUS"] & (1 << STATUS_BUSY.lsb), result.name
        assert registers["CONFIG_ID"] == config_id(config)
        assert not result.dram_error
        got = np.frombuffer(result.memory, np.uint8)
        differ = np.flatnonzero(got != expected.memory)
        assert differ.size == 0, f"{result.name}: {differ.size} bytes differ, first at " \
                                 f"{differ[:8]}"


def test_latency_and_bandwidth_set_the_cycle_count(tiny_top, tmp_path):
    config, model = tiny_top
    bus = config.dram_bytes_per_cycle
    program, inputs, _ = gemm_case(config, np.random.default_rng(5), 40, 16, 64)
    run = make_run("gemm", config, program, inputs)
    settings = [(5, 0), (45, 0), (5, bus), (5, bus // 2), (5, 1)]
    results = run_programs(model, config, [program_run(run, latency=latency, rate=rate)
                                           for latency, rate in settings], tmp_path)
    cycles = {setting: result.registers["CYCLES"]
              for setting, result in zip(settings, results, strict=True)}
    moved = results[0].registers["BYTES_READ"] + results[0].registers["BYTES_WRITTEN"]
    assert all(r.registers["BYTES_READ"] == results[0].registers["BYTES_READ"] for r in results)
    # Every run waits for DRAM at least three times in a row (fetch, the first load, the
    # last store's response): 40 more cycles of latency cost at least 120 cycles.
    assert cycles[(45, 0)] - cycles[(5, 0)] >= 3 * 40
    # A shared budget of `rate` bytes per cycle bounds the run from below by bytes / rate
    # (bytes written count whole beats here, so this bound is conservative) ...
    for rate in (bus // 2, 1):
        assert cycles[(5, rate)] >= moved / rate
    # ... and the slower the DRAM, the longer the run.
    assert cycles[(5, 0)] <= cycles[(5, bus)] < cycles[(5, bus // 2)] < cycles[(5, 1)]


def test_program_run_lays_out_code_constants_and_inputs():
    config = preset("tiny")
    rng = np.random.default_rng(3)
    program, inputs, _ = gemm_case(config, rng, 5, 3, 7)
    run = program_run_of("gemm", program, inputs)
    image = np.frombuffer(run.image, np.uint8)
    code = np.frombuffer(words_to_bytes(program.words), np.uint8)
    assert run.instr_base == INSTR_BASE and run.instr_count == len(program.words)
    assert (image[INSTR_BASE:INSTR_BASE + code.size] == code).all()
    assert run.window_base % 0x1000 == 0 and run.window_base >= INSTR_BASE + code.size
    assert run.window_limit == run.window_base + program.window_size
    assert run.readback == (run.window_base, program.window_size)
    window = run.image[run.window_base:]
    for segment in program.segments:
        assert window[segment.offset:segment.offset + len(segment.data)] == segment.data
    assert (window_buffer(window, program.buffers["a"]) == inputs["a"]).all()
    with pytest.raises(KeyError, match="input 'x' is not a buffer of the program"):
        program_run_of("gemm", program, {"x": inputs["a"]})
    with pytest.raises(ValueError, match="input 'a' has 34 bytes, its buffer 35"):
        program_run_of("gemm", program, {"a": inputs["a"].ravel()[:34]})


def test_sim_top_verilog_is_cached_on_disk(tmp_path):
    config = preset("tiny")
    text = cached_sim_top_verilog(config, dram_bytes=RAM_BYTES, cache_dir=tmp_path)
    assert text.startswith("// gemmstone simulation top: ")
    assert f"// config {config.content_hash}" in text
    [path] = (tmp_path / "verilog").glob("*.v")
    assert path.read_text() == text
    path.write_text("// from the cache")  # the next call must read it, not generate
    assert cached_sim_top_verilog(config, dram_bytes=RAM_BYTES, cache_dir=tmp_path) \
        == "// from the cache"
