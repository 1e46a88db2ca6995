"""The demo's programs (`gemmstone demo`): correct on every preset, and a mismatch fails."""

from __future__ import annotations

import re

import numpy as np
import pytest
from click.testing import CliRunner

from gemmstone import demo
from gemmstone.cli import main
from gemmstone.config import PRESETS, preset
from gemmstone.isa.program import Program


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_demo_programs_equal_numpy(name: str) -> None:
    config = preset(name)
    gemm, conv = demo.run_demo(config, seed=1)
    assert gemm.passed and conv.passed
    g, c = demo.GEMM_SHAPE, demo.CONV_SHAPE
    assert gemm.expected.shape == (g["m"], g["n"])
    assert gemm.useful_macs == g["m"] * g["k"] * g["n"]
    assert gemm.counters.dram_bytes_written == gemm.expected.size
    # 15x15 input, 3x3 kernel, stride 2, padding 1: 8x8 output pixels.
    assert conv.expected.shape == (c["batch"], 8, 8, c["out_channels"])
    assert conv.useful_macs == conv.expected.size * c["kernel"] ** 2 * c["channels"]
    assert conv.counters.dram_bytes_written == conv.expected.size
    # The array does at least the useful work, and the outputs use the int8 range.
    for case in (gemm, conv):
        assert case.counters.macs >= case.useful_macs
        assert case.expected.min() < -64 and case.expected.max() > 64
        Program.from_bytes(case.program.to_bytes(), config=config)


def test_demo_command_reports_pass() -> None:
    result = _invoke("demo", "--preset", "tiny")
    assert result.exit_code == 0, result.output
    assert result.output.count("PASS") == 2
    assert result.output.endswith("all outputs equal numpy exactly\n")


def test_demo_command_fails_on_a_mismatch(monkeypatch) -> None:
    real = demo.run_program

    def off_by_one(*args, **kwargs):
        result = real(*args, **kwargs)
        result.outputs["out"].flat[7] ^= 1
        return result

    monkeypatch.setattr(demo, "run_program", off_by_one)
    result = _invoke("demo", "--preset", "tiny")
    assert result.exit_code == 1
    assert result.output.count("FAIL: 1 differ") == 2
    assert result.output.endswith("Error: outputs differ from numpy: gemm, conv2d\n")


def test_saved_demo_programs_run_from_the_command_line(tmp_path) -> None:
    assert _invoke("demo", "--preset", "rect", "--save", str(tmp_path)).exit_code == 0
    cases = demo.run_demo(preset("rect"))
    for case in cases:
        inputs = [f"--input={name}={tmp_path / f'{case.name}.{name}.npy'}"
                  for name in case.inputs]
        out = tmp_path / case.name
        result = _invoke("run", str(tmp_path / f"{case.name}.gem"), *inputs,
                         "--output-dir", str(out))
        assert result.exit_code == 0, result.output
        assert re.search(r"\bqparams\s+\S\s+constant\b", result.output)
        assert sorted(path.name for path in out.iterdir()) == ["out.npy"]
        np.testing.assert_array_equal(np.load(out / "out.npy"), case.expected)
