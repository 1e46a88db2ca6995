"""The numpy interpreter against PyTorch (float ops) and against integer formulas written
out here (quantized ops)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)

from gemmstone.compiler.errors import IRError
from gemmstone.compiler.interpreter import erf, run
from gemmstone.compiler.ir import Graph
from gemmstone.compiler.ops import DType, Op
from gemmstone.compiler.reference import requantize as isa_requantize

RNG = np.random.default_rng(0)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def run_op(op, arrays, attrs=None):
    """One-node graph: the first array is an input, the rest constants."""
    g = Graph()
    x = g.input("x", arrays[0].shape, DType.from_numpy(arrays[0].dtype))
    consts = [g.constant(a, f"c{i}") for i, a in enumerate(arrays[1:])]
    g.output(g.add(op, [x, *consts], attrs))
    return run(g, arrays[0])[0]


def close(ours, theirs, tol=1e-5):
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else theirs
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    np.testing.assert_allclose(ours, theirs, rtol=tol, atol=tol)


T = torch.from_numpy


@pytest.mark.parametrize("stride, padding, dilation, groups", [
    (1, (0, 0, 0, 0), 1, 1), (2, (1, 1, 1, 1), 1, 1), (1, (2, 2, 2, 2), 2, 1),
    (2, (1, 1, 1, 1), 1, 4), (1, (1, 1, 1, 1), 1, 8)])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_conv2d(stride, padding, dilation, groups, layout):
    x, w, b = rand(2, 8, 9, 7), rand(16, 8 // groups, 3, 3), rand(16)
    expected = F.conv2d(T(x), T(w), T(b), stride, padding[:2], dilation, groups)
    attrs = {"stride": (stride, stride), "padding": padding, "dilation": (dilation,) * 2,
             "groups": groups, "layout": layout}
    if layout == "NHWC":
        x, expected = x.transpose(0, 2, 3, 1), expected.permute(0, 2, 3, 1)
    close(run_op(Op.CONV2D, [x, w, b], attrs), expected, 1e-4)


def test_conv2d_asymmetric_padding():
    x, w = rand(1, 3, 6, 6), rand(4, 3, 3, 3)
    expected = F.conv2d(F.pad(T(x), (0, 2, 1, 0)), T(w))  # left, right, top, bottom
    close(run_op(Op.CONV2D, [x, w], {"padding": (1, 0, 0, 2)}), expected, 1e-4)


@pytest.mark.parametrize("ta, tb", [(False, False), (True, False), (False, True), (True, True)])
def test_matmul_with_transposes_and_batch_broadcast(ta, tb):
    a, b, bias = rand(2, 3, 5, 4), rand(3, 4, 6), rand(6)
    a_in = np.swapaxes(a, -1, -2).copy() if ta else a
    b_in = np.swapaxes(b, -1, -2).copy() if tb else b
    out = run_op(Op.MATMUL, [a_in, b_in, bias], {"transpose_a": ta, "transpose_b": tb})
    close(out, T(a) @ T(b) + T(bias), 1e-5)


def test_fused_ops_apply_bias_residual_and_clamp():
    x, w, b, r = rand(1, 4, 5, 5), rand(6, 4, 3, 3), rand(6), rand(1, 6, 5, 5)
    out = run_op(Op.FUSED_CONV2D, [x, w, b, r], {"padding": (1, 1, 1, 1), "bias": True,
                                                  "residual": True, "clamp": (0.0, 6.0)})
    close(out, F.relu6(F.conv2d(T(x), T(w), T(b), padding=1) + T(r)), 1e-5)
    a, wm, r2 = rand(3, 8), rand(5, 8), rand(3, 5)
    out = run_op(Op.FUSED_MATMUL, [a, wm, r2], {"transpose_b": True, "residual": True,
                                                "clamp": (0.0, math.inf)})
    close(out, F.relu(T(a) @ T(wm).T + T(r2)))


@pytest.mark.parametrize("kernel, stride, padding, ceil_mode", [
    (2, 2, 0, False), (3, 2, 1, False), (3, 2, 1, True), (2, 3, 0, True)])
def test_pools(kernel, stride, padding, ceil_mode):
    x = rand(2, 3, 9, 8)
    attrs = {"kernel": (kernel,) * 2, "stride": (stride,) * 2, "padding": (padding,) * 4,
             "ceil_mode": ceil_mode}
    close(run_op(Op.MAX_POOL2D, [x], attrs),
          F.max_pool2d(T(x), kernel, stride, padding, ceil_mode=ceil_mode))
    for include in (True, False):
        close(run_op(Op.AVG_POOL2D, [x], {**attrs, "count_include_pad": include}),
              F.avg_pool2d(T(x), kernel, stride, padding, ceil_mode, include))


def test_max_pool_dilation_and_nhwc():
    x = rand(1, 2, 9, 9)
    out = run_op(Op.MAX_POOL2D, [x.transpose(0, 2, 3, 1)],
                 {"kernel": (3, 3), "stride": (2, 2), "dilation": (2, 2), "layout": "NHWC"})
    close(out, F.max_pool2d(T(x), 3, 2, dilation=2).permute(0, 2, 3, 1))


@pytest.mark.parametrize("size", [(1, 1), (3, 2), (7, 5)])
def test_adaptive_avg_pool(size):
    x = rand(2, 3, 10, 7)
    close(run_op(Op.ADAPTIVE_AVG_POOL2D, [x], {"output_size": size}),
          F.adaptive_avg_pool2d(T(x), size))


def test_normalizations_softmax_gelu():
    x, s, b = rand(2, 5, 6), rand(6), rand(6)
    close(run_op(Op.LAYER_NORM, [x, s, b], {"eps": 1e-5}), F.layer_norm(T(x), (6,), T(s), T(b)))
    s2 = rand(5, 6)
    close(run_op(Op.LAYER_NORM, [x, s2], {"axis": -2}), F.layer_norm(T(x), (5, 6), T(s2)))
    close(run_op(Op.SOFTMAX, [x], {"axis": 1}), torch.softmax(T(x), 1))
    y = rand(2, 4, 3, 3)
    mean, var, g, bb = rand(4), np.abs(rand(4)) + 0.5, rand(4), rand(4)
    close(run_op(Op.BATCH_NORM, [y, g, bb, mean, var], {"eps": 1e-3}),
          F.batch_norm(T(y), T(mean), T(var), T(g), T(bb), eps=1e-3))
    z = rand(1000) * 4
    close(run_op(Op.GELU, [z]), F.gelu(T(z)), 1e-6)
    close(run_op(Op.GELU, [z], {"approximate": "tanh"}), F.gelu(T(z), approximate="tanh"), 1e-6)


def test_erf_matches_math_erf():
    xs = np.linspace(-7, 7, 2001)
    assert np.abs(erf(xs) - np.array([math.erf(v) for v in xs])).max() < 2e-7


def test_elementwise_and_shape_ops():
    a, b = rand(2, 3, 4), rand(3, 1)
    close(run_op(Op.SUB, [a, b]), T(a) - T(b))
    close(run_op(Op.DIV, [a, b]), T(a) / T(b))
    close(run_op(Op.CLAMP, [a], {"min": -0.5, "max": 0.25}), T(a).clamp(-0.5, 0.25))
    close(run_op(Op.RELU6, [a * 8]), F.relu6(T(a * 8)))
    close(run_op(Op.TRANSPOSE, [a], {"perm": (2, 0, 1)}), T(a).permute(2, 0, 1))
    close(run_op(Op.RESHAPE, [a], {"shape": (6, 4)}), T(a).reshape(6, 4))
    close(run_op(Op.CONCAT, [a, a[:, :1]], {"axis": 1}), torch.cat([T(a), T(a[:, :1])], 1))
    close(run_op(Op.MEAN, [a], {"axes": (0, 2), "keepdims": True}), T(a).mean((0, 2), True))


def test_quantize_rounds_half_to_even_and_saturates():
    x = np.array([[0.5, 1.5, 2.5, -0.5], [-1.5, 300.0, -300.0, 0.26]], np.float32)
    out = run_op(Op.QUANTIZE, [x], {"scale": np.array([1.0, 0.5], np.float32),
                                    "zero_point": np.array([0, 3], np.int64), "axis": 0})
    assert out.tolist() == [[0, 2, 2, 0], [0, 127, -128, 4]]
    back = run_op(Op.DEQUANTIZE, [out], {"scale": np.array([0.5], np.float32),
                                          "zero_point": np.array([1]), "axis": 0})
    assert back.tolist() == [[-0.5, 0.5, 0.5, -0.5], [-0.5, 63.0, -64.5, 1.5]]


def test_requantize_fixed_is_the_isa_store_path():
    acc = RNG.integers(-(1 << 20), 1 << 20, size=(3, 4, 5)).astype(np.int32)
    mult = RNG.integers(1 << 20, 1 << 30, size=5).astype(np.int32)
    shift = RNG.integers(20, 40, size=5).astype(np.int32)
    shift[0] = 0
    out = run_op(Op.REQUANTIZE, [acc], {"mode": "fixed", "multiplier": mult, "shift": shift,
                                        "zero_point": 3, "lo": -100, "hi": 120})
    zero = np.zeros(5, np.int32)
    expected = isa_requantize(acc.reshape(-1, 5), zero, mult, shift, 3, -100, 120)
    np.testing.assert_array_equal(out.reshape(-1, 5), expected)


def test_qconv_and_qmatmul_subtract_zero_points_and_add_bias():
    x = RNG.integers(0, 256, size=(1, 3, 5, 5)).astype(np.uint8)
    w = RNG.integers(-128, 128, size=(4, 3, 3, 3)).astype(np.int8)
    bias = RNG.integers(-1000, 1000, size=4).astype(np.int32)
    wzp = (1, -2, 0, 3)
    out = run_op(Op.QCONV2D, [x, w, bias], {"bias": True, "x_zero_point": 128,
                                            "w_zero_point": wzp, "stride": (2, 2)})
    xs = x.astype(np.int64) - 128
    ws = w.astype(np.int64) - np.array(wzp).reshape(4, 1, 1, 1)
    expected = np.zeros((1, 4, 2, 2), np.int64)
    for o in range(4):
        for i in range(2):
            for j in range(2):
                expected[0, o, i, j] = (xs[0, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3]
                                        * ws[o]).sum() + bias[o]
    assert out.dtype == np.int32 and out.tolist() == expected.tolist()
    a = RNG.integers(-128, 128, size=(3, 7)).astype(np.int8)
    b = RNG.integers(-128, 128, size=(7, 2)).astype(np.int8)
    out = run_op(Op.QMATMUL, [a, b], {"a_zero_point": 5, "b_zero_point": (1, 2)})
    expected = (a.astype(np.int64) - 5) @ (b.astype(np.int64) - np.array([1, 2]))
    assert out.tolist() == expected.tolist()


def test_run_checks_its_inputs():
    g = Graph("g")
    g.output(g.add(Op.RELU, [g.input("x", (2,))]))
    with pytest.raises(IRError, match=r"^input %x must be f32\[2\], got float64\[2\]$"):
        run(g, np.zeros(2))
    with pytest.raises(IRError, match=r"^input %x is not given$"):
        run(g)
