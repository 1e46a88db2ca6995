"""The `gemmstone` command line, through click's test runner."""

from __future__ import annotations

import re

import numpy as np
import pytest
from click.testing import CliRunner

from gemmstone.cli import main
from gemmstone.config import AcceleratorConfig, preset
from gemmstone.isa.assembly import assemble
from gemmstone.isa.program import Program
from gemmstone.isa.reference import EXAMPLE, render
from gemmstone.isa.table import isa_hash

# The reference example's buffers: w, x, the output stage parameters and y (on "small").
_EXAMPLE_BUFFERS = ["--buffer", "w=0:8x8", "--buffer", "x=0x40:16x8",
                    "--buffer", "q=0xc0:24:int32", "--buffer", "y=0x120:16x8"]


def _invoke(*args: str, ok: bool = True):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def example(tmp_path):
    """The ISA reference's example assembled for the small preset, window 0x1a0."""
    source = tmp_path / "gemm.s"
    source.write_text(EXAMPLE)
    _invoke("asm", str(source), "--preset", "small", "--window", "0x1a0", *_EXAMPLE_BUFFERS)
    return tmp_path / "gemm.gem"


@pytest.mark.parametrize("command", [[], ["info"], ["asm"], ["disasm"], ["run"], ["isa-doc"],
                                     ["demo"]])
def test_help(command: list[str]) -> None:
    output = _invoke(*command, "--help").output
    assert output.startswith("Usage: gemmstone")
    assert "--help" in output


def test_info() -> None:
    config = preset("tiny")
    output = _invoke("info", "--preset", "tiny").output
    assert config.describe() in output
    assert f"config hash  {config.content_hash}" in output
    assert f"ISA hash     {isa_hash()}" in output
    assert re.search(r"spad_lines\s+\S\s+4096", output)


def test_info_from_a_config_file(tmp_path) -> None:
    config = AcceleratorConfig(rows=4, cols=16, spad_kib=32, acc_kib=16)
    path = tmp_path / "accel.toml"
    config.save(path)
    assert config.content_hash in _invoke("info", "--config", str(path)).output


def test_preset_and_config_together_is_a_usage_error(tmp_path) -> None:
    path = tmp_path / "accel.toml"
    preset("tiny").save(path)
    result = _invoke("info", "--preset", "tiny", "--config", str(path), ok=False)
    assert result.exit_code == 2
    assert "Error: give --preset or --config, not both" in result.output


def test_bad_config_file_prints_the_message(tmp_path) -> None:
    path = tmp_path / "accel.toml"
    path.write_text("[accelerator]\nrows = 6\n")
    result = _invoke("info", "--config", str(path), ok=False)
    assert (result.exit_code, result.output) == (
        1, "Error: 'rows' must be a power of two from 2 to 128, not 6\n")


def test_asm_writes_a_program_for_the_config(example) -> None:
    program = Program.load(example, config=preset("small"))
    assert program.words == assemble(EXAMPLE)
    assert program.window_size == 0x1A0
    assert [(b.name, b.offset, b.shape, b.dtype) for b in program.buffers.values()] == [
        ("w", 0, (8, 8), "int8"), ("x", 0x40, (16, 8), "int8"), ("q", 0xC0, (24,), "int32"),
        ("y", 0x120, (16, 8), "int8")]


def test_asm_default_window_is_the_whole_dram(tmp_path) -> None:
    source = tmp_path / "p.s"
    source.write_text("halt\n")
    _invoke("asm", str(source), "-o", str(tmp_path / "out.gem"), "--preset", "tiny")
    program = Program.load(tmp_path / "out.gem", config=preset("tiny"))
    assert program.window_size == preset("tiny").dram_bytes


def test_disasm_prints_the_listing_and_asm_reads_it_back(example, tmp_path) -> None:
    program = Program.load(example)
    output = _invoke("disasm", str(example)).output
    assert output == program.text()
    listing = tmp_path / "listing.s"
    listing.write_text(output)
    _invoke("asm", str(listing), "--preset", "small", "--window", "0x1a0")
    assert Program.load(tmp_path / "listing.gem").words == program.words


@pytest.mark.parametrize(("source", "message"), [
    ("halt\nnop\n", "Error: line 2: unknown instruction 'nop'\n"),
    ("load n=5000\n", "Error: line 1: load.n = 5000 does not fit its 12-bit field (0..4095)\n"),
])
def test_asm_errors(tmp_path, source: str, message: str) -> None:
    path = tmp_path / "bad.s"
    path.write_text(source)
    result = _invoke("asm", str(path), ok=False)
    assert (result.exit_code, result.output) == (1, message)
    assert not (tmp_path / "bad.gem").exists()


def test_asm_buffer_outside_the_window(tmp_path) -> None:
    path = tmp_path / "p.s"
    path.write_text("halt\n")
    result = _invoke("asm", str(path), "--window", "64", "--buffer", "y=48:4x8", ok=False)
    assert (result.exit_code, result.output) == (
        1, "Error: buffer 'y' [0x30, 0x50) lies outside the program's window of 0x40 bytes\n")


@pytest.mark.parametrize("spec", ["y", "y=0x10", "y=1:2x", "y=1:2:float"])
def test_asm_bad_buffer_option(tmp_path, spec: str) -> None:
    path = tmp_path / "p.s"
    path.write_text("halt\n")
    result = _invoke("asm", str(path), "--buffer", spec, ok=False)
    assert result.exit_code == 2
    assert "Invalid value for --buffer" in result.output


def test_disasm_of_a_corrupt_file(tmp_path) -> None:
    path = tmp_path / "bad.gem"
    path.write_bytes(b"GEMSPROG" + bytes(200))
    result = _invoke("disasm", str(path), ok=False)
    assert (result.exit_code, result.output) == (
        1, "Error: program is corrupt: checksum mismatch\n")


def _example_inputs(tmp_path, rng):
    w = rng.integers(-128, 128, (8, 8), dtype=np.int8)
    x = rng.integers(-128, 128, (16, 8), dtype=np.int8)
    # bias 0, mult 1, shift 0: y = clamp(x @ w, -128, 127).
    q = np.concatenate([np.zeros(8), np.ones(8), np.zeros(8)]).astype(np.int32)
    for name, array in (("w", w), ("x", x), ("q", q)):
        np.save(tmp_path / f"{name}.npy", array)
    return w, x


def test_run_on_the_functional_model(example, tmp_path) -> None:
    w, x = _example_inputs(tmp_path, np.random.default_rng(3))
    out = tmp_path / "out"
    output = _invoke("run", str(example), *(f"--input={n}={tmp_path / n}.npy" for n in "wxq"),
                     "--output-dir", str(out)).output
    assert re.search(r"DRAM bytes written\s+\S\s+128\b", output)
    assert re.search(r"MACs\s+\S\s+1024\b", output)
    assert re.search(r"\by\s+\S\s+output\s+\S\s+int8\s+\S\s+16x8\b", output)
    assert sorted(p.name for p in out.iterdir()) == ["y.npy"]
    expected = np.clip(x.astype(np.int32) @ w.astype(np.int32), -128, 127)
    np.testing.assert_array_equal(np.load(out / "y.npy"), expected)


def test_run_finds_the_preset_a_program_was_built_for(example) -> None:
    assert preset("small").describe() in _invoke("run", str(example)).output


def test_run_of_a_program_for_another_config(tmp_path) -> None:
    config = AcceleratorConfig(rows=4, cols=16, spad_kib=32, acc_kib=16)
    config_path = tmp_path / "accel.toml"
    config.save(config_path)
    source = tmp_path / "p.s"
    source.write_text("halt\n")
    _invoke("asm", str(source), "--config", str(config_path), "--window", "16")
    program = tmp_path / "p.gem"
    result = _invoke("run", str(program), ok=False)
    assert (result.exit_code, result.output) == (
        1, f"Error: the program was built for config {config.content_hash[:12]}, which is no "
           f"preset; pass its config with --config FILE.toml\n")
    assert _invoke("run", str(program), "--config", str(config_path)).exit_code == 0
    result = _invoke("run", str(program), "--preset", "tiny", ok=False)
    assert result.output.startswith(
        f"Error: program was built for config {config.content_hash[:12]}, not for this "
        f"accelerator's config {preset('tiny').content_hash[:12]}")


def test_a_faulting_program_prints_the_fault_without_traceback(tmp_path) -> None:
    from gemmstone.isa.errors import DmaWindowError
    from gemmstone.sim.functional import FunctionalModel

    source = tmp_path / "p.s"
    source.write_text("load dram=0x100 n=1 len=4\nhalt\n")
    _invoke("asm", str(source), "--preset", "tiny", "--window", "0x100")
    with pytest.raises(DmaWindowError) as fault:
        FunctionalModel(preset("tiny")).run(assemble(source.read_text()), window_size=0x100)
    assert str(fault.value).startswith("instruction 0 (load ")
    result = _invoke("run", str(tmp_path / "p.gem"), ok=False)
    assert (result.exit_code, result.output) == (1, f"Error: {fault.value}\n")


def test_run_with_an_input_the_program_does_not_have(example, tmp_path) -> None:
    np.save(tmp_path / "z.npy", np.zeros(4, np.int8))
    result = _invoke("run", str(example), "--input", f"z={tmp_path / 'z.npy'}", ok=False)
    assert (result.exit_code, result.output) == (
        1, "Error: input 'z' is not a buffer of the program; buffers are w, x, q, y\n")


def test_isa_doc(tmp_path) -> None:
    assert _invoke("isa-doc").output == render()
    _invoke("isa-doc", "-o", str(tmp_path / "isa.md"))
    assert (tmp_path / "isa.md").read_text() == render()


def test_hw_verilog_writes_the_accelerator_for_the_config(tmp_path):
    out = tmp_path / "tiny.v"
    _invoke("hw", "verilog", "--preset", "tiny", "-o", str(out))
    text = out.read_text()
    assert f"// config {preset('tiny').content_hash}" in text
    assert "module gemmstone_accelerator(" in text
    for port in ("s_axil_awaddr", "m_axi_araddr", "m_axi_wstrb"):
        assert re.search(rf"\b(input|output) .*\b{port};", text), port
