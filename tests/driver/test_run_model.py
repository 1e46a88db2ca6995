"""`run_model` (what ``gemmstone run MODEL`` does): repo models and model files compiled,
run through a device backend and compared with PyTorch / ONNX Runtime float."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gemmstone.compiler.models import DigitsCNN
from gemmstone.driver.run_model import MODELS, run_model

pytestmark = pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)`")


def test_digits_on_func_within_one_point_of_float():
    seen = []
    result = run_model("digits", config="base", samples=100, batch=50,
                       progress=lambda done, total: seen.append((done, total)))
    assert (result.samples, result.batch, result.calls) == (100, 50, 2)
    assert result.outputs.shape == result.reference.shape == (100, 10)
    assert result.labels.shape == (100,)
    float_accuracy = result.accuracy(result.reference)
    assert float_accuracy > 0.95
    assert result.accuracy(result.outputs) >= float_accuracy - 0.01
    assert result.top1_agreement >= 0.98 and result.cosine >= 0.999
    # Two programs (conv stack, linear stack) per batch; progress counts every run.
    assert seen == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]
    # conv1 (one input channel) is unfolded on the host (im2col) into a 1x1 conv.
    assert result.host_ops == {"reshape": 2, "quantize": 1, "im2col": 1, "max_pool2d": 1,
                               "dequantize": 1}
    assert result.counters["retired_compute"] > 0 and result.counters["cycles"] == 0
    assert result.utilization is None and 0 < result.estimated_utilization <= 1


def test_perf_backend_gives_cycles_and_utilization():
    on_func = run_model("digits", config="small", samples=10, batch=10)
    on_perf = run_model("digits", backend="perf", config="small", samples=10, batch=10)
    np.testing.assert_array_equal(on_perf.outputs, on_func.outputs)
    assert on_perf.counters["cycles"] > 0
    assert on_perf.utilization == pytest.approx(
        on_perf.report["totals"]["macs"] / (8 * 8 * on_perf.counters["cycles"]))
    assert 0 < on_perf.utilization <= 1


@pytest.mark.slow  # ~40 s on a busy machine
def test_resnet18_at_32x32_agrees_with_float():
    result = run_model("resnet18", config="base", size=32, samples=2, batch=1)
    assert result.outputs.shape == (2, 10) and result.calls == 2
    assert result.cosine >= 0.99 and result.top1_agreement == 1.0


def test_pt2_file_with_its_own_batch(tmp_path):
    torch.manual_seed(0)
    model = DigitsCNN().eval()
    path = tmp_path / "cnn.pt2"
    torch.export.save(torch.export.export(model, (torch.rand(3, 1, 8, 8),)), path)
    result = run_model(str(path), config="small", samples=5)
    assert result.name == "cnn" and result.batch == 3 and result.calls == 2
    assert result.outputs.shape == (5, 10) and result.cosine >= 0.99
    with pytest.raises(ValueError, match=r"^cnn.pt2: its inputs have batch 3; --batch 4 does "
                                         r"not fit \(export the model with the batch you "
                                         r"want\)$"):
        run_model(str(path), batch=4)


def test_onnx_file_against_onnx_runtime(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "mlp.onnx"
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 4)).eval()
    torch.onnx.export(model, (torch.randn(2, 16),), str(path), dynamo=False)
    result = run_model(str(path), config="tiny", samples=2)
    assert result.outputs.shape == (2, 4) and result.cosine >= 0.99


def test_bad_models_and_options_are_named():
    assert set(MODELS) == {"digits", "resnet18", "mobilenetv2", "encoder"}
    with pytest.raises(ValueError, match=r"^unknown model 'vgg': give one of digits, resnet18, "
                                         r"mobilenetv2, encoder or an .onnx or .pt2 file$"):
        run_model("vgg")
    with pytest.raises(ValueError, match=r"^digits: --size does not apply \(the images are "
                                         r"8x8\)$"):
        run_model("digits", size=32)
    with pytest.raises(ValueError, match=r"^unknown backend 'fpga'; choose one of 'func', "
                                         r"'rtl', 'perf'$"):
        run_model("digits", backend="fpga", samples=1, batch=1)
