"""Whole models on the eager ``gem`` device (``model.to("gem")``, base 16x16 preset, the
functional model), against PyTorch float and the ``torch.compile`` path.

Tolerance: the two paths quantize differently. Eager quantizes both operands of every
conv/linear on the fly to int8 with one scale per tensor and keeps float32 between ops
(batch norm, ReLU, pooling on the host); the compiled path folds batch norm, uses
calibrated static activation scales and per-channel weight scales and keeps int8 between
layers. Each stays within about 1% of float, so the two agree to cosine >= 0.995 and give
the same top-1 class (measured: cosine 0.9999 on the digits CNN, 0.9990 on ResNet-18).
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
import torch

import gemmstone.driver.torch as gem
from gemmstone.compiler.models import randomize_batch_norm, resnet18, train_digits_cnn

pytestmark = pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)`")


@functools.cache
def digits():
    return train_digits_cnn()


@pytest.fixture(scope="module", autouse=True)
def gem_device():
    yield gem.register("base")
    gem.device().close()


def cosine(a, b) -> float:
    a, b = np.asarray(a, np.float64).reshape(-1), np.asarray(b, np.float64).reshape(-1)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def eager(model, x):
    """``model``'s output on the gem device (a copy of it is moved there) and the op
    report of the forward pass alone."""
    on_gem = copy.deepcopy(model).to("gem")
    x = x.to("gem")
    gem.reset_report()
    with torch.no_grad():
        out = on_gem(x)
    done = copy.deepcopy(gem.report())
    return out.cpu(), done


def compiled(model, x, **options):
    torch._dynamo.reset()
    function = torch.compile(model, backend="gemmstone", dynamic=False,
                             options={"config": "base", **options})
    with torch.no_grad():
        return function(x)


def test_digits_cnn_eagerly_matches_float_and_the_compiled_path():
    model, (x_train, _, x_test, y_test), _ = digits()
    x = torch.from_numpy(x_test[:64])
    out, done = eager(model, x)
    assert out.device.type == "cpu" and out.shape == (64, 10)
    with torch.no_grad():
        want = model(x)
    got_compiled = compiled(model, x, calibration=[torch.from_numpy(x_train[:64])])
    assert cosine(out, want) >= 0.995 and cosine(out, got_compiled) >= 0.995
    assert torch.equal(out.argmax(1), got_compiled.argmax(1))
    assert float((out.argmax(1).numpy() == y_test[:64]).mean()) >= 0.95
    # conv1, conv2, fc1, fc2 on the accelerator; the rest of the forward pass on the host.
    assert dict(done.accelerator) == {"convolution": 2, "addmm": 2}
    # (batch norm's empty saved-statistics tensors are made on the device: "empty")
    assert dict(done.host) == {"native_batch_norm": 2, "empty": 2, "relu": 3,
                               "max_pool2d_with_indices": 1, "view": 1, "t": 2}
    assert done.reasons == {}
    assert "convolution                        2     0" in done.text()


def test_resnet18_eagerly_matches_float_and_the_compiled_path():
    torch.manual_seed(0)
    model = randomize_batch_norm(resnet18(num_classes=10)).eval()
    x = torch.randn(1, 3, 32, 32)
    out, done = eager(model, x)
    with torch.no_grad():
        want = model(x)
    got_compiled = compiled(model, x)
    assert cosine(out, want) >= 0.995 and cosine(out, got_compiled) >= 0.995
    assert out.argmax() == got_compiled.argmax() == want.argmax()
    # 20 convolutions (17 3x3/7x7 + 3 downsampling 1x1) and the classifier.
    assert dict(done.accelerator) == {"convolution": 20, "addmm": 1}
    assert dict(done.host) == {"native_batch_norm": 20, "empty": 20, "relu_": 17, "add": 8,
                               "max_pool2d_with_indices": 1, "mean": 1, "view": 1, "t": 1}
