"""Whole models through the compiler and the functional model.

Against PyTorch float (cosine similarity) and, exactly, against the interpreter's int8
evaluation of the same quantized graph. Inputs are 32x32 (ResNet-18, MobileNetV2 at
width 0.35) to keep the suite fast; ResNet-18 runs on the base 16x16 preset (a quarter
of the instructions of the 8x8 one), as does the digits CNN on its whole test set; the
others on small 8x8.
"""

import model_cache
import numpy as np
import pytest
import torch

from gemmstone.compiler.compile import compile_model
from gemmstone.compiler.frontends.torch_fx import from_torch
from gemmstone.compiler.interpreter import run
from gemmstone.compiler.lowering import lower, run_compiled
from gemmstone.compiler.models import EncoderBlock
from gemmstone.compiler.passes import PassManager
from gemmstone.compiler.quantization import quantize
from gemmstone.config import preset

RNG = np.random.default_rng(0)


def cosine(a, b):
    a, b = a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_digits_int8_accuracy_on_the_functional_model_within_one_point_of_float():
    model, (x_train, _, x_test, y_test), float_accuracy = model_cache.digits()
    graph = from_torch(model, (torch.from_numpy(x_test),))
    compiled = compile_model(graph, preset("base"), samples=[(x_train[:len(x_test)],)])
    assert compiled.report["totals"]["accelerator_ops"] == 4
    (logits,) = run_compiled(compiled, x_test)
    accuracy = float((logits.argmax(1) == y_test).mean())
    assert accuracy >= float_accuracy - 0.01


def _model(name):
    if name == "encoder":
        torch.manual_seed(0)
        x = torch.randn(2, 8, 64)
        model = EncoderBlock(64, 4).eval()
        return model, x, from_torch(model, (x,))
    model, x, graph = model_cache.exported(name)
    return model, x, graph.copy()


@pytest.mark.parametrize(("name", "config"), [("resnet18", "base"),
                                              ("mobilenet_v2", "small"),
                                              ("encoder", "small")])
def test_model_on_the_functional_model(name, config):
    model, x, graph = _model(name)
    PassManager().run(graph)
    samples = [(RNG.standard_normal(tuple(x.shape)).astype(np.float32),) for _ in range(3)]
    samples.append((x.numpy(),))
    q = quantize(graph, samples)
    compiled = lower(q, preset(config))
    totals = compiled.report["totals"]
    assert totals["accelerator_ops"] == sum(1 for layer in compiled.report["layers"])
    assert totals["accelerator_ops"] >= {"resnet18": 21, "mobilenet_v2": 53, "encoder": 6}[name]
    (got,) = run_compiled(compiled, x.numpy())
    np.testing.assert_array_equal(got, run(q, x.numpy())[0])
    with torch.no_grad():
        expected = model(x).numpy()
    assert cosine(got, expected) >= 0.99
