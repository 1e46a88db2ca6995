"""Post-training quantization: fixed-point multipliers against exact rational arithmetic,
calibration, the quantized ops against the independent numpy int8 reference
(`gemmstone.compiler.reference`), and accuracy on the in-repo models."""

import math
from fractions import Fraction

import model_cache
import numpy as np
import pytest
import torch

from gemmstone.compiler import reference
from gemmstone.compiler.frontends.torch_fx import from_torch
from gemmstone.compiler.interpreter import run, trace
from gemmstone.compiler.ir import Graph
from gemmstone.compiler.models import EncoderBlock
from gemmstone.compiler.ops import DType, Op
from gemmstone.compiler.passes import optimize
from gemmstone.compiler.quantization import (
    calibrate,
    quantize,
    quantize_multiplier,
    shared_shift_multipliers,
)

pytestmark = pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)`")
RNG = np.random.default_rng(3)


def rshr(value: int, shift: int) -> int:
    """The ISA's rounding shift, from its one-line semantics, on Python integers."""
    return value if shift == 0 else (value >> shift) + ((value >> (shift - 1)) & 1)


@pytest.mark.parametrize("scale, expected", [
    (0.5, (1 << 30, 31)), (1.0, (1 << 30, 30)), (0.75, (3 << 29, 31)),
    (1.5, (3 << 29, 30)), (2.0 ** -20, (1 << 30, 50)), (2.0 ** -40, (1 << 23, 63))])
def test_quantize_multiplier_known_values(scale, expected):
    assert quantize_multiplier(scale) == expected


def test_quantize_multiplier_is_accurate_and_in_range():
    for scale in np.exp(RNG.uniform(math.log(1e-7), math.log(1e4), 300)):
        mult, shift = quantize_multiplier(float(scale))
        assert (1 << 30) <= mult < (1 << 31) and 0 <= shift <= 63
        assert abs(Fraction(mult, 1 << shift) / Fraction(float(scale)) - 1) <= Fraction(1, 1 << 30)
        # the ISA's output stage on a few accumulators: within 1 of the exact rounding
        for acc in RNG.integers(-(1 << 31), 1 << 31, 5).tolist():
            exact = Fraction(acc) * Fraction(float(scale))
            assert abs(rshr(acc * mult, shift) - exact) <= 1 + abs(exact) * Fraction(1, 1 << 29)


@pytest.mark.parametrize("scale", [0.0, -1.0, math.inf, math.nan, 2.0 ** 30, "1"])
def test_quantize_multiplier_rejects_bad_scales(scale):
    with pytest.raises(ValueError, match=r"^'real_scale' must be a finite number in "
                                         r"\(0, 2\*\*30\), not "):
        quantize_multiplier(scale)


def test_shared_shift_multipliers():
    scales = np.array([0.9, 0.02, 3.0, 1e-4])
    mult, shift = shared_shift_multipliers(scales)
    assert mult.dtype == np.int32 and mult.max() < (1 << 31) and isinstance(shift, int)
    np.testing.assert_allclose(mult / 2.0 ** shift, scales, rtol=1e-5, atol=2.0 ** -shift)


def test_calibrate_records_the_largest_magnitude():
    g = Graph("g")
    x = g.input("x", (3,))
    g.output(g.add(Op.RELU, [x], name="r"))
    ranges = calibrate(g, [(np.array([1, -4, 2], np.float32),),
                           (np.array([3, -1, 0], np.float32),)])
    assert ranges == {"x": 4.0, "r": 3.0}
    with pytest.raises(ValueError, match="^calibration needs at least one sample$"):
        calibrate(g, [])


def small_conv_net():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 5))
    x = torch.randn(2, 3, 6, 6)
    graph = from_torch(net, (x,))
    optimize(graph)
    return graph, x.numpy()


def test_quantized_ops_equal_the_numpy_int8_reference():
    graph, x = small_conv_net()
    q = quantize(graph, [(x,)])
    values = trace(q, x)
    conv = next(n for n in q.nodes if n.op is Op.QCONV2D)
    conv_out = next(n for n in q.nodes if n.op is Op.REQUANTIZE and n.inputs[0] is conv)
    xq, wq, bias = (values[v.name] for v in conv.inputs)
    expected = reference.conv2d_int8(
        xq, wq.transpose(2, 3, 1, 0), padding=1, bias=bias,
        mult=conv_out.attrs["multiplier"], shift=conv_out.attrs["shift"],
        lo=conv_out.attrs["lo"], hi=conv_out.attrs["hi"])
    np.testing.assert_array_equal(values[conv_out.name], expected)
    assert conv_out.attrs["lo"] == 0  # the fused ReLU is the clamp
    mm = next(n for n in q.nodes if n.op is Op.QMATMUL)
    mm_out = next(n for n in q.nodes if n.op is Op.REQUANTIZE and n.inputs[0] is mm)
    a, w, bias = (values[v.name] for v in mm.inputs)
    expected = reference.gemm_int8(a, w.T, bias, mm_out.attrs["multiplier"],
                                   mm_out.attrs["shift"])
    np.testing.assert_array_equal(values[mm_out.name], expected)


def test_residual_rescale_follows_the_alu():
    g = Graph("g")
    x = g.input("x", (4, 6), DType.INT8)
    r = g.input("r", (4, 3), DType.INT8)
    w = g.constant(RNG.integers(-127, 128, (6, 3)).astype(np.int8), "w")
    mult = np.array([1 << 30, 3 << 28, 12345], np.int32)
    g.output(g.add(Op.QMATMUL, [x, w, r], {"residual": True, "residual_multiplier": mult,
                                           "residual_shift": 29}))
    xs = RNG.integers(-128, 128, (4, 6)).astype(np.int8)
    rs = RNG.integers(-128, 128, (4, 3)).astype(np.int8)
    got = run(g, xs, rs)[0]
    sums = xs.astype(np.int64) @ w.value.astype(np.int64)
    expected = [[sums[i, j] + rshr(int(rs[i, j]) * int(mult[j]), 29) for j in range(3)]
                for i in range(4)]
    assert got.tolist() == expected


def cosine(a, b):
    a, b = a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_digits_int8_accuracy_within_one_point_of_float():
    model, (x_train, _, x_test, y_test), accuracy = model_cache.digits()
    graph = from_torch(model, (torch.from_numpy(x_test),))
    optimize(graph)
    q = quantize(graph, [(x_train[:len(x_test)],)])
    assert q.count(Op.QCONV2D) == 2 and q.count(Op.QMATMUL) == 2
    assert q.count(Op.QUANTIZE) == 1 and q.count(Op.DEQUANTIZE) == 1
    int8_accuracy = float((run(q, x_test)[0].argmax(1) == y_test).mean())
    assert int8_accuracy >= accuracy - 0.01


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "encoder"])
def test_models_int8_close_to_float(name):
    if name == "encoder":
        torch.manual_seed(0)
        x = torch.randn(2, 8, 64)
        graph = from_torch(EncoderBlock(64, 4).eval(), (x,))
    else:
        _, x, exported = model_cache.exported(name)
        graph = exported.copy()
    shape = tuple(x.shape)
    optimize(graph)
    samples = [(RNG.standard_normal(shape).astype(np.float32),) for _ in range(3)]
    q = quantize(graph, samples)
    accelerator = q.count(Op.QCONV2D) + q.count(Op.QMATMUL)
    assert accelerator == graph.count(Op.FUSED_CONV2D) + graph.count(Op.FUSED_MATMUL)
    assert cosine(run(q, x.numpy())[0], run(graph, x.numpy())[0]) >= 0.99
    assert q.count(Op.DIV) == 0  # the attention's 1/sqrt(d) only changes a scale
