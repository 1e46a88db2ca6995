"""Small GEMM and conv programs with their numpy reference outputs: the cases the driver
and RTL tests (and benchmarks) run on every backend."""

from __future__ import annotations

import numpy as np

from gemmstone.compiler import reference
from gemmstone.compiler.builder import ProgramBuilder
from gemmstone.compiler.kernels.conv import emit_conv2d
from gemmstone.compiler.kernels.gemm import emit_gemm, pack_qparams

__all__ = ["gemm_case", "conv_case"]


def gemm_case(config, rng, m, n, k):
    """(program, inputs, expected outputs) of an int8-out GEMM with requantization."""
    builder = ProgramBuilder(config)
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    b = rng.integers(-128, 128, (k, n), dtype=np.int8)
    bias = rng.integers(-5000, 5000, n).astype(np.int32)
    mult = rng.integers(1 << 20, 1 << 22, n).astype(np.int32)
    shift = np.full(n, 24, np.int32)
    a_buf = builder.buffer("a", (m, k))
    b_buf = builder.buffer("b", (k, n), data=b)
    q_buf = builder.buffer("q", 3 * n, "int32", data=pack_qparams(bias, mult, shift, config.cols))
    out = builder.buffer("out", (m, n))
    emit_gemm(builder, a_buf, b_buf, out, q_buf, zp=-3, lo=-3, hi=127)
    expected = reference.gemm_int8(a, b, bias, mult, shift, zp=-3, lo=-3, hi=127)
    return builder.finish(), {"a": a}, {"out": expected}


def conv_case(config, rng, h, w, cin, cout, kernel, stride, pad):
    """(program, inputs, expected outputs) of an int32-out NHWC convolution."""
    builder = ProgramBuilder(config)
    x = rng.integers(-128, 128, (h, w, cin), dtype=np.int8)
    weights = rng.integers(-128, 128, (kernel, kernel, cin, cout), dtype=np.int8)
    ho = reference.conv2d_output_size(h, kernel, stride, pad)
    wo = reference.conv2d_output_size(w, kernel, stride, pad)
    x_buf = builder.buffer("x", (h, w, cin))
    w_buf = builder.buffer("w", (kernel * kernel * cin, cout),
                           data=weights.reshape(-1, cout))
    out = builder.buffer("out", (ho, wo, cout), "int32")
    emit_conv2d(builder, x_buf, w_buf, out, None, kernel_size=kernel, stride=stride,
                padding=pad)
    expected = reference.conv2d_int8(x, weights, stride=stride, padding=pad)
    return builder.finish(), {"x": x}, {"out": expected}
