"""`gemmstone run MODEL` (a model compiled and run on a backend) and `gemmstone run
PROGRAM.gem --backend` through click's runner (the .gem program on the functional model
is tested in test_cli.py)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from click.testing import CliRunner

from gemmstone.cli import main
from gemmstone.isa.reference import EXAMPLE

pytestmark = pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)`")


def _invoke(*args: str):
    return CliRunner().invoke(main, ["run", *args], catch_exceptions=False)


def test_digits_on_the_perf_backend_prints_accuracy_cycles_and_host_steps():
    result = _invoke("digits", "--backend", "perf", "--preset", "base", "--samples", "40",
                     "--batch", "20")
    assert result.exit_code == 0, result.output
    output = result.output
    assert output.startswith("digits on backend perf, 16x16 WS")
    assert "digits: 40 inputs in 2 runs of batch 20" in output
    accuracy = re.search(r"accuracy int8 \(held-out\)\s+\S\s+(\d+\.\d\d)%", output)
    float_accuracy = re.search(r"accuracy float \(PyTorch\)\s+\S\s+(\d+\.\d\d)%", output)
    assert float(accuracy.group(1)) >= float(float_accuracy.group(1)) - 1
    assert re.search(r"cycles \(counter\)\s+\S\s+[1-9][\d,]+", output)
    assert re.search(r"array utilization\s+\S\s+\d+\.\d%", output)
    assert ("host steps per run: dequantize x1, im2col x1, max_pool2d x1, quantize x1, "
            "reshape x2") in output


def test_model_and_program_options_do_not_mix():
    result = _invoke("digits", "--input", "x=x.npy")
    assert (result.exit_code, result.output.splitlines()[-1]) == (
        2, "Error: --input and --output-dir are for .gem programs, not models")
    result = _invoke("p.gem", "--batch", "2")
    assert (result.exit_code, result.output.splitlines()[-1]) == (
        2, "Error: --batch, --samples and --size are for models, not .gem programs")
    result = _invoke("missing.gem")
    assert result.exit_code == 2
    assert "Invalid value for PROGRAM: file 'missing.gem' does not exist" in result.output


def test_unknown_model_is_a_clean_error():
    result = _invoke("vgg")
    assert (result.exit_code, result.output) == (
        1, "Error: unknown model 'vgg': give one of digits, resnet18, mobilenetv2, encoder "
           "or an .onnx or .pt2 file\n")


def test_missing_model_file_is_a_clean_error():
    result = _invoke("nothing/here.onnx")
    assert (result.exit_code, result.output) == (
        1, "Error: model file 'nothing/here.onnx' does not exist\n")


@pytest.fixture
def gemm_program(tmp_path):
    """The ISA reference's example GEMM for the small preset, window 0x1a0, and its input
    files: y = clamp(x @ w, -128, 127)."""
    source = tmp_path / "gemm.s"
    source.write_text(EXAMPLE)
    result = CliRunner().invoke(main, [
        "asm", str(source), "--preset", "small", "--window", "0x1a0", "--buffer", "w=0:8x8",
        "--buffer", "x=0x40:16x8", "--buffer", "q=0xc0:24:int32", "--buffer", "y=0x120:16x8"])
    assert result.exit_code == 0, result.output
    rng = np.random.default_rng(5)
    w = rng.integers(-128, 128, (8, 8), dtype=np.int8)
    x = rng.integers(-128, 128, (16, 8), dtype=np.int8)
    q = np.concatenate([np.zeros(8), np.ones(8), np.zeros(8)]).astype(np.int32)
    for name, array in (("w", w), ("x", x), ("q", q)):
        np.save(tmp_path / f"{name}.npy", array)
    inputs = [f"--input={n}={tmp_path / n}.npy" for n in "wxq"]
    return tmp_path / "gemm.gem", inputs, np.clip(x.astype(np.int32) @ w, -128, 127)


@pytest.mark.parametrize("backend", ["func", "perf", pytest.param("rtl", marks=pytest.mark.slow)])
def test_a_program_runs_on_the_backend_given(gemm_program, tmp_path, backend):
    program, inputs, expected = gemm_program
    out = tmp_path / backend
    output = _invoke(str(program), "--backend", backend, *inputs, "--output-dir",
                     str(out)).output
    np.testing.assert_array_equal(np.load(out / "y.npy"), expected)
    assert re.search(r"\by\s+\S\s+output\s+\S\s+int8\s+\S\s+16x8\b", output)
    if backend == "func":
        assert output.startswith(f"{program}: ran on the functional model, 8x8 WS")
        assert re.search(r"MACs\s+\S\s+1024\b", output)
        return
    assert output.startswith(f"{program}: ran on backend {backend}, 8x8 WS")
    # Two LOADs, two compute and three store-unit instructions, as on func; 128 bytes of y.
    for counter, value in (("retired load", 2), ("retired compute", 2), ("retired store", 3),
                           ("bytes written", 128)):
        assert re.search(rf"{counter}\s+\S\s+{value}\b", output), counter
    cycles = int(re.search(r"cycles\s+\S\s+([\d,]+)", output).group(1).replace(",", ""))
    busy = int(re.search(r"busy compute\s+\S\s+([\d,]+)", output).group(1).replace(",", ""))
    assert 0 < busy < cycles


def test_inputs_left_out_are_zeros_on_the_device(gemm_program, tmp_path):
    program, inputs, _ = gemm_program
    output = _invoke(str(program), "--backend", "perf", inputs[1], "--output-dir",
                     str(tmp_path / "out")).output
    assert re.search(r"\bw\s+\S\s+output\s+\S\s+int8\s+\S\s+8x8\s+\S\s+0\s+\S\s+0\b",
                     output)
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "y.npy"), np.zeros((16, 8)))


def test_a_window_of_the_whole_dram_does_not_fit_beside_the_code(tmp_path):
    source = tmp_path / "p.s"
    source.write_text("halt\n")
    assert CliRunner().invoke(main, ["asm", str(source), "--preset", "tiny"]).exit_code == 0
    result = _invoke(str(tmp_path / "p.gem"), "--backend", "perf")
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot allocate ")
    assert result.output.endswith("; the program's window is 0x4000000 bytes: assemble it "
                                  "with a smaller --window to run it on backend perf\n")
