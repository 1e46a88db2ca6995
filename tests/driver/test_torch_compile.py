"""``torch.compile(model, backend="gemmstone")``: the compiler's FX frontend, quantization
and lowering, run through the driver's `Device` on the functional model (and the digits
CNN on the Verilated RTL). Accuracy against PyTorch float, outputs against the compiler's
own runner on the functional model (`run_compiled`)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

import gemmstone.driver.torch as gem
from gemmstone.compiler.errors import FrontendError
from gemmstone.compiler.lowering import run_compiled
from gemmstone.compiler.models import (
    EncoderBlock,
    randomize_batch_norm,
    resnet18,
    train_digits_cnn,
)
from gemmstone.driver import Device
from gemmstone.driver.torch import CompileOptions

# torch.export's own pytree code trips this deprecation inside torch 2.13.
pytestmark = pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)`")


@functools.cache
def digits():
    return train_digits_cnn()


def cosine(a, b) -> float:
    a, b = np.asarray(a, np.float64).reshape(-1), np.asarray(b, np.float64).reshape(-1)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def compile_and_run(model, x, **options):
    """The compiled model's output on ``x`` and the `LoadedModel` behind it."""
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="gemmstone", options=options, dynamic=False)
    with torch.no_grad():
        out = compiled(x)
    return out, gem.compiled_models()[-1], compiled


def test_backend_is_registered_on_import():
    assert "gemmstone" in torch._dynamo.list_backends(exclude_tags=())


def test_options_are_checked():
    with pytest.raises(TypeError, match=r"^unknown gemmstone torch.compile option\(s\) "
                                        r"\['preset'\]; the options are \['backend', 'cache', "
                                        r"'calibration', 'config', 'device_options', "
                                        r"'fallback', 'timeout'\]$"):
        CompileOptions.parse({"preset": "tiny"})
    with pytest.raises(TypeError, match=r"^option 'config' must be a preset name or an "
                                        r"AcceleratorConfig, not 8$"):
        CompileOptions.parse({"config": 8})
    with pytest.raises(TypeError, match=r"^option 'fallback' must be True or False, not 'no'$"):
        CompileOptions.parse({"fallback": "no"})
    assert CompileOptions.parse({"config": "tiny"}).accelerator_config.rows == 4
    # Through torch.compile, Dynamo wraps the backend's error and keeps its message.
    compiled = torch.compile(torch.nn.Linear(4, 2), backend="gemmstone",
                             options={"preset": "tiny"})
    with pytest.raises(torch._dynamo.exc.BackendCompilerFailed,
                       match=r"TypeError: unknown gemmstone torch.compile option\(s\) "
                             r"\['preset'\]"):
        compiled(torch.randn(1, 4))


def test_without_fallback_an_operator_the_compiler_lacks_is_named_at_the_first_call():
    class Sorts(torch.nn.Module):
        def forward(self, x):
            return torch.sort(x).values

    torch._dynamo.reset()
    compiled = torch.compile(Sorts(), backend="gemmstone", dynamic=False,
                             options={"fallback": False})
    with pytest.raises(FrontendError, match=r"^torch node 'sort' \(aten.sort.default\): "
                                            r"unsupported operator$"):
        compiled(torch.randn(4))


def test_digits_cnn_within_one_point_of_float_and_weights_loaded_once(monkeypatch):
    model, (x_train, _, x_test, y_test), float_accuracy = digits()
    calibration = [torch.from_numpy(x_train[:len(x_test)])]
    out, loaded, compiled = compile_and_run(model, torch.from_numpy(x_test), config="base",
                                            calibration=calibration)
    accuracy = float((out.argmax(1).numpy() == y_test).mean())
    assert accuracy >= float_accuracy - 0.01
    # The device gives exactly what the compiler's own runner gives on the functional model.
    np.testing.assert_array_equal(out.numpy(), run_compiled(loaded.compiled, x_test)[0])
    assert loaded.device.backend.name == "func" and loaded.calls == 1
    # conv1 (one input channel) is unfolded on the host (im2col) into a 1x1 conv.
    assert loaded.host_ops() == {"reshape": 2, "quantize": 1, "im2col": 1, "max_pool2d": 1,
                                 "dequantize": 1}

    # A second call loads nothing: the programs (and the weights in their windows) stay.
    loads = []
    monkeypatch.setattr(Device, "load", lambda self, program: loads.append(program))
    used = loaded.device.allocator.used_bytes
    with torch.no_grad():
        again = compiled(torch.from_numpy(x_test))
    assert loads == [] and loaded.calls == 2 and gem.compiled_models()[-1] is loaded
    assert loaded.device.allocator.used_bytes == used
    assert torch.equal(again, out)


def test_resnet18_cosine_to_float():
    torch.manual_seed(0)
    model = randomize_batch_norm(resnet18(num_classes=10)).eval()
    x = torch.randn(1, 3, 32, 32)
    out, loaded, _ = compile_and_run(model, x, config="base")
    with torch.no_grad():
        want = model(x)
    assert cosine(out, want) >= 0.99
    assert len(loaded.compiled.report["layers"]) >= 21


def test_encoder_block_cosine_to_float():
    torch.manual_seed(0)
    model = EncoderBlock(64, 4).eval()
    x = torch.randn(2, 8, 64)
    calibration = [torch.randn(2, 8, 64) for _ in range(3)] + [x]
    out, loaded, _ = compile_and_run(model, x, config="small", calibration=calibration)
    with torch.no_grad():
        want = model(x)
    assert cosine(out, want) >= 0.99
    assert {"softmax", "layer_norm", "gelu"} <= set(loaded.host_ops())


def test_digits_cnn_on_rtl_gives_the_func_outputs():
    model, (x_train, _, x_test, _), _ = digits()
    x, calibration = torch.from_numpy(x_test[:2]), [torch.from_numpy(x_train[:2])]
    options = {"config": "tiny", "calibration": calibration}
    want, on_func, _ = compile_and_run(model, x, **options)
    got, on_rtl, _ = compile_and_run(model, x, backend="rtl", timeout=900,
                                     device_options={"memory_bytes": 1 << 20}, **options)
    assert on_rtl.device.backend.name == "rtl"
    assert on_rtl.compiled.key == on_func.compiled.key
    assert torch.equal(got, want)
    assert on_rtl.counters["cycles"] > 0
    for name in ("retired_load", "retired_compute", "retired_store"):
        assert on_rtl.counters[name] == on_func.counters[name]
    gem.close_devices()
