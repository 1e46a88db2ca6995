"""A numpy interpreter of the IR: the executable statement of each operator's semantics.

Float operators compute in float32 (normalizations accumulate in float64) and return
float32; integer operators are exact: products are summed in float64, which is exact for
the int8/uint8 ranges (|sum| < 2**53), then wrapped to int32 as the array's adders do.
Tests run a graph here before and after each pass, and against PyTorch and ONNX Runtime.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from gemmstone.compiler.errors import IRError
from gemmstone.compiler.ir import Graph, Node, format_type
from gemmstone.compiler.ops import Op
from gemmstone.compiler.shapes import pool_output_size

__all__ = ["run", "trace", "evaluate", "erf"]

_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1


def run(graph: Graph, *args: np.ndarray, **kwargs: np.ndarray) -> list[np.ndarray]:
    """Execute ``graph`` on inputs given in order (``args``) or by name (``kwargs``);
    returns the outputs in order.

    Raises
    ------
    IRError
        If an input is missing or has the wrong shape or dtype.
    """
    values = trace(graph, *args, **kwargs)
    return [values[v.name] for v in graph.output_node.inputs]


def trace(graph: Graph, *args: np.ndarray, **kwargs: np.ndarray) -> dict[str, np.ndarray]:
    """Like `run`, but returns the value of every node, by node name (for calibration
    and debugging)."""
    inputs = graph.inputs
    if len(args) > len(inputs):
        raise IRError(f"graph {graph.name!r} takes {len(inputs)} inputs, got {len(args)}")
    given = dict(zip((n.name for n in inputs), args, strict=False))
    given.update(kwargs)
    values: dict[str, np.ndarray] = {}
    for node in graph.nodes:
        if node.op is Op.OUTPUT:
            return values
        if node.op is Op.INPUT:
            values[node.name] = _take_input(node, given)
        else:
            values[node.name] = evaluate(node, [values[v.name] for v in node.inputs])
    raise IRError(f"graph {graph.name!r} has no output node")


def _take_input(node: Node, given: dict) -> np.ndarray:
    if node.name not in given:
        raise IRError(f"input %{node.name} is not given")
    array = np.asarray(given[node.name])
    want = format_type(node.shape, node.dtype)
    if array.shape != node.shape or array.dtype != node.dtype.numpy:
        got = f"{array.dtype}{list(array.shape)}"
        raise IRError(f"input %{node.name} must be {want}, got {got}")
    return array


def evaluate(node: Node, operands: Sequence[np.ndarray]) -> np.ndarray:
    """The value of ``node`` for the given operand values."""
    if node.op is Op.CONSTANT:
        return node.attrs["value"]
    kernel = _KERNELS.get(node.op)
    if kernel is None:
        raise IRError(f"%{node.name}: the interpreter cannot evaluate {node.op.value}")
    result = np.asarray(kernel(list(operands), node.attrs))
    return result.astype(node.dtype.numpy, copy=False)


# -- math helpers ---------------------------------------------------------------------------

def erf(x: np.ndarray) -> np.ndarray:
    """The error function (numpy has none), in float64: its Maclaurin series for |x| < 2
    (40 terms, error ~1e-15), Abramowitz & Stegun 7.1.26 beyond (abs error < 1.5e-7, where
    erf is within 5e-3 of +-1)."""
    x = np.asarray(x, dtype=np.float64)
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741
                                                       + t * (-1.453152027 + t * 1.061405429))))
    out = np.sign(x) * (1.0 - poly * np.exp(-x * x))
    small = np.abs(x) < 2.0
    xs = x[small]
    term, total, x2 = xs.copy(), xs.copy(), xs * xs
    for n in range(1, 40):
        term = term * -x2 / n
        total = total + term / (2 * n + 1)
    out[small] = total * (2.0 / math.sqrt(math.pi))
    return out


def _per_axis(values, axis: int, rank: int) -> np.ndarray:
    """Broadcastable view of per-channel values along ``axis`` (1 value: a scalar)."""
    array = np.asarray(values)
    if array.size == 1 or rank == 0:
        return array.reshape(())
    shape = [1] * rank
    shape[axis % rank] = array.size
    return array.reshape(shape)


def _to_nchw(x: np.ndarray, layout: str) -> np.ndarray:
    return x if layout == "NCHW" else x.transpose(0, 3, 1, 2)


def _from_nchw(x: np.ndarray, layout: str) -> np.ndarray:
    return x if layout == "NCHW" else x.transpose(0, 2, 3, 1)


def _windows(x: np.ndarray, kernel, stride, dilation, out_hw) -> list[np.ndarray]:
    """Strided views [N, C, Ho, Wo] of padded NCHW ``x``, one per kernel offset (i, j)."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out_hw
    return [x[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw]
            for i in range(kh) for j in range(kw)]


def _conv_core(x: np.ndarray, w: np.ndarray, attrs: dict, out_hw, dtype) -> np.ndarray:
    """NCHW convolution sum (no bias) of already zero-point-corrected operands."""
    pt, pl, pb, pr = attrs["padding"]
    x = np.pad(x.astype(dtype), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    w = w.astype(dtype)
    out_c, cg, kh, kw = w.shape
    groups = attrs["groups"]
    cols = np.stack(_windows(x, (kh, kw), attrs["stride"], attrs["dilation"], out_hw), axis=-1)
    n, c, ho, wo, k = cols.shape
    cols = cols.reshape(n, groups, cg, ho, wo, k)
    wg = w.reshape(groups, out_c // groups, cg, k)
    if groups == 1:
        out = np.tensordot(cols[:, 0], wg[0], axes=([1, 4], [1, 2]))  # [N, Ho, Wo, O]
        return out.transpose(0, 3, 1, 2)
    out = np.einsum("ngchwk,gock->ngohw", cols, wg, optimize=True)
    return out.reshape(n, out_c, ho, wo)


def _out_hw(attrs: dict, x_shape, w_shape, layout) -> tuple[int, int]:
    h, w = (x_shape[2], x_shape[3]) if layout == "NCHW" else (x_shape[1], x_shape[2])
    pt, pl, pb, pr = attrs["padding"]
    (sh, sw), (dh, dw) = attrs["stride"], attrs["dilation"]
    return (pool_output_size(h, w_shape[2], sh, pt, pb, dh),
            pool_output_size(w, w_shape[3], sw, pl, pr, dw))


def _conv2d(ops: list, attrs: dict) -> np.ndarray:
    x, w = ops[0], ops[1]
    layout = attrs["layout"]
    out = _conv_core(_to_nchw(x, layout), w, attrs, _out_hw(attrs, x.shape, w.shape, layout),
                     np.float32)
    if len(ops) == 3:
        out = out + ops[2].reshape(1, -1, 1, 1)
    return _from_nchw(out.astype(np.float32), layout)


def _matmul_operands(a, b, attrs):
    if attrs["transpose_a"]:
        a = np.swapaxes(a, -1, -2)
    if attrs["transpose_b"]:
        b = np.swapaxes(b, -1, -2)
    return a, b


def _matmul(ops: list, attrs: dict) -> np.ndarray:
    a, b = _matmul_operands(ops[0], ops[1], attrs)
    out = np.matmul(a, b)
    return out + ops[2] if len(ops) == 3 else out


def _fused_tail(out: np.ndarray, ops: list, attrs: dict, channel_axis: int) -> np.ndarray:
    """bias, residual and clamp of the fused accelerator ops."""
    rest = ops[2:]
    if attrs["bias"]:
        out = out + _per_axis(rest.pop(0), channel_axis, out.ndim)
    if attrs["residual"]:
        out = out + rest.pop(0)
    if attrs["clamp"] is not None:
        lo, hi = attrs["clamp"]
        out = np.minimum(np.maximum(out, np.float32(lo)), np.float32(hi))
    return out.astype(np.float32)


def _fused_conv2d(ops: list, attrs: dict) -> np.ndarray:
    out = _conv2d(ops[:2], attrs)
    return _fused_tail(out, ops, attrs, 1 if attrs["layout"] == "NCHW" else 3)


def _fused_matmul(ops: list, attrs: dict) -> np.ndarray:
    a, b = _matmul_operands(ops[0], ops[1], attrs)
    return _fused_tail(np.matmul(a, b), ops, attrs, -1)


def _wrap_int32(acc: np.ndarray) -> np.ndarray:
    wide = np.asarray(acc, dtype=np.int64)
    return ((wide - _INT32_MIN) & 0xFFFF_FFFF) + _INT32_MIN


def _round_shift(product: np.ndarray, shift) -> np.ndarray:
    """``product / 2**shift`` rounded half up (the ISA's rshr); shift 0 keeps ``product``."""
    shift = np.asarray(shift, dtype=np.int64)
    rounded = (product >> shift) + ((product >> np.maximum(shift - 1, 0)) & 1)
    return np.where(shift == 0, product, rounded)


def _add_extras(acc: np.ndarray, ops: list, attrs: dict, axis: int) -> np.ndarray:
    """Residual (rescaled, wrapping add) and bias (saturating add) of QCONV2D/QMATMUL."""
    rest = ops[2:]
    bias = rest.pop(0) if attrs["bias"] else None
    if attrs["residual"]:
        mult = _per_axis(np.asarray(attrs["residual_multiplier"], np.int64), axis, acc.ndim)
        scaled = _round_shift(rest.pop(0).astype(np.int64) * mult, attrs["residual_shift"])
        acc = _wrap_int32(acc + np.clip(scaled, _INT32_MIN, _INT32_MAX))
    if bias is not None:
        acc = np.clip(acc + _per_axis(bias.astype(np.int64), axis, acc.ndim),
                      _INT32_MIN, _INT32_MAX)
    return acc


def _qconv2d(ops: list, attrs: dict) -> np.ndarray:
    x, w = ops[0], ops[1]
    layout = attrs["layout"]
    xz = _to_nchw(x, layout).astype(np.float64) - attrs["x_zero_point"]
    wz = w.astype(np.float64) - _per_axis(attrs["w_zero_point"], 0, 4)
    acc = _conv_core(xz, wz, attrs, _out_hw(attrs, x.shape, w.shape, layout), np.float64)
    acc = _from_nchw(_wrap_int32(np.rint(acc)), layout)
    return _add_extras(acc, ops, attrs, 1 if layout == "NCHW" else 3)


def _qmatmul(ops: list, attrs: dict) -> np.ndarray:
    a = ops[0].astype(np.float64) - attrs["a_zero_point"]
    b = ops[1].astype(np.float64)
    # b's zero point is per column of the (un-transposed) result, i.e. per output channel.
    b_zp = np.asarray(attrs["b_zero_point"], dtype=np.float64)
    b = b - (b_zp.reshape(-1, 1) if attrs["transpose_b"] else b_zp.reshape(-1))
    a, b = _matmul_operands(a, b, attrs)
    return _add_extras(_wrap_int32(np.rint(np.matmul(a, b))), ops, attrs, -1)


def _requantize(ops: list, attrs: dict) -> np.ndarray:
    acc = ops[0].astype(np.int64)
    axis, rank = attrs["axis"], acc.ndim
    if attrs["mode"] == "fixed":
        mult = _per_axis(np.asarray(attrs["multiplier"], dtype=np.int64), axis, rank)
        shift = _per_axis(np.asarray(attrs["shift"], dtype=np.int64) & 63, axis, rank)
        y = _round_shift(acc * mult, shift)  # |acc|, |mult| < 2**31: fits int64
    else:
        scale = _per_axis(np.asarray(attrs["scale"], dtype=np.float32), axis, rank)
        y = np.rint(acc.astype(np.float32) * scale).astype(np.int64)
    return np.clip(y + attrs["zero_point"], attrs["lo"], attrs["hi"])


def _quantize(ops: list, attrs: dict) -> np.ndarray:
    x = ops[0]
    axis, rank = attrs["axis"], x.ndim
    scale = _per_axis(np.asarray(attrs["scale"], dtype=np.float32), axis, rank)
    zp = _per_axis(np.asarray(attrs["zero_point"], dtype=np.int64), axis, rank)
    info = np.iinfo(attrs["dtype"].numpy)
    q = np.rint(x.astype(np.float32) / scale)
    return np.clip(q + zp, info.min, info.max)


def _dequantize(ops: list, attrs: dict) -> np.ndarray:
    q = ops[0]
    axis, rank = attrs["axis"], q.ndim
    scale = _per_axis(np.asarray(attrs["scale"], dtype=np.float32), axis, rank)
    zp = _per_axis(np.asarray(attrs["zero_point"], dtype=np.int64), axis, rank)
    return (q.astype(np.int64) - zp).astype(np.float32) * scale


def _div(ops: list, attrs: dict) -> np.ndarray:
    a, b = ops
    if np.issubdtype(a.dtype, np.integer):
        return np.trunc(a.astype(np.float64) / b).astype(a.dtype)
    return a / b


def _clamp(ops: list, attrs: dict) -> np.ndarray:
    x = ops[0]
    lo, hi = attrs["min"], attrs["max"]
    if np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(x.dtype)
        lo = info.min if lo == -math.inf else math.ceil(lo)
        hi = info.max if hi == math.inf else math.floor(hi)
        return np.clip(x, lo, hi).astype(x.dtype)
    return np.minimum(np.maximum(x, np.float32(lo)), np.float32(hi))


def _gelu(ops: list, attrs: dict) -> np.ndarray:
    x = ops[0].astype(np.float64)
    if attrs["approximate"] == "tanh":
        inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)
        return 0.5 * x * (1.0 + np.tanh(inner))
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def _pool_geometry(x, attrs):
    _, _, h, w = x.shape
    (kh, kw), (sh, sw) = attrs["kernel"], attrs["stride"]
    dh, dw = attrs.get("dilation", (1, 1))
    pt, pl, pb, pr = attrs["padding"]
    ho = pool_output_size(h, kh, sh, pt, pb, dh, attrs["ceil_mode"])
    wo = pool_output_size(w, kw, sw, pl, pr, dw, attrs["ceil_mode"])
    # ceil_mode windows may run past the end padding: pad far enough for the views.
    extra_h = max(pb, (ho - 1) * sh + dh * (kh - 1) + 1 - h - pt)
    extra_w = max(pr, (wo - 1) * sw + dw * (kw - 1) + 1 - w - pl)
    return (kh, kw), (sh, sw), (dh, dw), (pt, pl), (extra_h, extra_w), (ho, wo)


def _max_pool2d(ops: list, attrs: dict) -> np.ndarray:
    layout = attrs["layout"]
    x = _to_nchw(ops[0], layout)
    kernel, stride, dilation, (pt, pl), (eh, ew), out_hw = _pool_geometry(x, attrs)
    fill = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    padded = np.pad(x, ((0, 0), (0, 0), (pt, eh), (pl, ew)), constant_values=fill)
    out = np.maximum.reduce(_windows(padded, kernel, stride, dilation, out_hw))
    return _from_nchw(out, layout)


def _pool_divisor(size, kernel, stride, pad_begin, pad_end, out, include_pad) -> np.ndarray:
    """Per output position, the window length counted by PyTorch's avg_pool."""
    start = np.arange(out) * stride - pad_begin
    end = np.minimum(start + kernel, size + pad_end)
    if include_pad:
        return (end - start).astype(np.float64)
    return (np.minimum(end, size) - np.maximum(start, 0)).astype(np.float64)


def _avg_pool2d(ops: list, attrs: dict) -> np.ndarray:
    layout = attrs["layout"]
    x = _to_nchw(ops[0], layout).astype(np.float64)
    kernel, stride, dilation, (pt, pl), (eh, ew), (ho, wo) = _pool_geometry(x, attrs)
    padded = np.pad(x, ((0, 0), (0, 0), (pt, eh), (pl, ew)))
    total = np.add.reduce(_windows(padded, kernel, stride, dilation, (ho, wo)))
    include = attrs["count_include_pad"]
    _, _, pb, pr = attrs["padding"]
    div_h = _pool_divisor(x.shape[2], kernel[0], stride[0], pt, pb, ho, include)
    div_w = _pool_divisor(x.shape[3], kernel[1], stride[1], pl, pr, wo, include)
    return _from_nchw(total / np.outer(div_h, div_w), layout)


def _adaptive_avg_pool2d(ops: list, attrs: dict) -> np.ndarray:
    layout = attrs["layout"]
    x = _to_nchw(ops[0], layout).astype(np.float64)
    n, c, h, w = x.shape
    oh, ow = attrs["output_size"]
    out = np.empty((n, c, oh, ow))
    for i in range(oh):
        h0, h1 = (i * h) // oh, -((-(i + 1) * h) // oh)
        for j in range(ow):
            w0, w1 = (j * w) // ow, -((-(j + 1) * w) // ow)
            out[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return _from_nchw(out, layout)


def _im2col(ops: list, attrs: dict) -> np.ndarray:
    x = ops[0]
    _, h, w, c = x.shape
    (kh, kw), (sh, sw) = attrs["kernel"], attrs["stride"]
    pt, pl, pb, pr = attrs["padding"]
    ho, wo = pool_output_size(h, kh, sh, pt, pb), pool_output_size(w, kw, sw, pl, pr)
    padded = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    taps = [padded[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
            for i in range(kh) for j in range(kw)]
    extra = (attrs["channels"] or kh * kw * c) - kh * kw * c
    if extra:
        taps.append(np.zeros((*taps[0].shape[:3], extra), x.dtype))
    return np.concatenate(taps, axis=-1)


def _batch_norm(ops: list, attrs: dict) -> np.ndarray:
    x, scale, bias, mean, var = ops
    axis, rank = attrs["axis"], x.ndim
    inv = 1.0 / np.sqrt(var.astype(np.float64) + attrs["eps"])
    return ((x - _per_axis(mean, axis, rank)) * _per_axis(inv * scale, axis, rank)
            + _per_axis(bias, axis, rank))


def _layer_norm(ops: list, attrs: dict) -> np.ndarray:
    x = ops[0].astype(np.float64)
    axes = tuple(range(attrs["axis"] % x.ndim, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    out = (x - mean) / np.sqrt(var + attrs["eps"])
    if len(ops) > 1:
        out = out * ops[1]
    if len(ops) > 2:
        out = out + ops[2]
    return out


def _softmax(ops: list, attrs: dict) -> np.ndarray:
    x = ops[0].astype(np.float64)
    e = np.exp(x - x.max(axis=attrs["axis"], keepdims=True))
    return e / e.sum(axis=attrs["axis"], keepdims=True)


_KERNELS: dict[Op, Callable[[list, dict], np.ndarray]] = {
    Op.IDENTITY: lambda ops, a: ops[0],
    Op.CONV2D: _conv2d,
    Op.MATMUL: _matmul,
    Op.FUSED_CONV2D: _fused_conv2d,
    Op.FUSED_MATMUL: _fused_matmul,
    Op.QCONV2D: _qconv2d,
    Op.QMATMUL: _qmatmul,
    Op.REQUANTIZE: _requantize,
    Op.QUANTIZE: _quantize,
    Op.DEQUANTIZE: _dequantize,
    Op.ADD: lambda ops, a: ops[0] + ops[1],
    Op.SUB: lambda ops, a: ops[0] - ops[1],
    Op.MUL: lambda ops, a: ops[0] * ops[1],
    Op.DIV: _div,
    Op.RELU: lambda ops, a: np.maximum(ops[0], ops[0].dtype.type(0)),
    Op.RELU6: lambda ops, a: np.clip(ops[0], np.float32(0), np.float32(6)),
    Op.CLAMP: _clamp,
    Op.GELU: _gelu,
    Op.ERF: lambda ops, a: erf(ops[0]),
    Op.MAX_POOL2D: _max_pool2d,
    Op.AVG_POOL2D: _avg_pool2d,
    Op.ADAPTIVE_AVG_POOL2D: _adaptive_avg_pool2d,
    Op.MEAN: lambda ops, a: ops[0].astype(np.float64).mean(axis=tuple(a["axes"]),
                                                          keepdims=a["keepdims"]),
    Op.RESHAPE: lambda ops, a: ops[0].reshape(a["shape"]),
    Op.TRANSPOSE: lambda ops, a: ops[0].transpose(a["perm"]),
    Op.CONCAT: lambda ops, a: np.concatenate(ops, axis=a["axis"]),
    Op.IM2COL: _im2col,
    Op.BATCH_NORM: _batch_norm,
    Op.LAYER_NORM: _layer_norm,
    Op.SOFTMAX: _softmax,
}
