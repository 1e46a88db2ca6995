"""`gemmstone run MODEL`: a model compiled and run on a backend, through click's runner
(the .gem program form is tested in test_cli.py)."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from gemmstone.cli import main

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
    assert "host steps per run: dequantize x1, max_pool2d x1, quantize x1, reshape x2" in output


def test_model_and_program_options_do_not_mix():
    result = _invoke("digits", "--input", "x=x.npy")
    assert (result.exit_code, result.output.splitlines()[-1]) == (
        2, "Error: --input and --output-dir are for .gem programs, not models")
    result = _invoke("p.gem", "--backend", "rtl")
    assert (result.exit_code, result.output.splitlines()[-1]) == (
        2, "Error: a .gem program runs on the functional model; --backend, --batch, "
           "--samples and --size are for models")
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
