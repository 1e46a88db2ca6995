"""Shape and dtype inference: one rule per operator.

`infer` is used twice: `Graph.add` computes a new node's type with it, and `verify`
recomputes every node's type and compares, so a pass that rewires a node without fixing
its type is caught.
"""

from __future__ import annotations

import math

import numpy as np

from gemmstone.compiler.errors import IRError
from gemmstone.compiler.ops import DType, Op

__all__ = ["infer", "pool_output_size", "broadcast_shapes"]

Type = tuple[tuple[int, ...], DType]

_QUANT_DTYPES = (DType.INT8, DType.UINT8)


def infer(op: Op, inputs: list[Type], attrs: dict) -> Type:
    """Shape and dtype of the result of ``op`` on inputs of the given types.

    Raises
    ------
    IRError
        If the inputs or attributes do not fit the operator; the message says which.
    """
    rule = _RULES.get(op)
    if rule is None:
        raise IRError(f"{op.value} has no type rule (its type is given, not inferred)")
    return rule(inputs, attrs)


def broadcast_shapes(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """Numpy broadcasting of two shapes; IRError if they do not broadcast."""
    try:
        return tuple(np.broadcast_shapes(a, b))
    except ValueError:
        raise IRError(f"shapes {list(a)} and {list(b)} do not broadcast") from None


def pool_output_size(size: int, kernel: int, stride: int, pad_begin: int, pad_end: int,
                     dilation: int = 1, ceil_mode: bool = False) -> int:
    """Output length of one spatial dim of a conv/pool, with PyTorch's ceil_mode rule (the
    last window must start inside the input or the leading padding)."""
    span = size + pad_begin + pad_end - dilation * (kernel - 1) - 1
    if span < 0:
        raise IRError(f"window of {kernel} (dilation {dilation}) is larger than the padded "
                      f"input of {size + pad_begin + pad_end}")
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= size + pad_begin:
        out -= 1
    return out


def _need(condition: bool, message: str) -> None:
    if not condition:
        raise IRError(message)


def _dtype_is(what: str, dtype: DType, allowed: tuple[DType, ...]) -> None:
    names = "/".join(d.value for d in allowed)
    _need(dtype in allowed, f"{what} must be {names}, not {dtype.value}")


def _rank_is(what: str, shape: tuple[int, ...], rank: int) -> None:
    _need(len(shape) == rank, f"{what} must have rank {rank}, not shape {list(shape)}")


def _axis(axis: int, rank: int) -> int:
    _need(-rank <= axis < rank, f"axis {axis} is out of range for rank {rank}")
    return axis % rank


def _spatial(shape: tuple[int, ...], layout: str) -> tuple[int, int, int, int]:
    """(N, C, H, W) of a 4-D activation in ``layout``."""
    _need(layout in ("NCHW", "NHWC"), f"layout must be NCHW or NHWC, not {layout!r}")
    _rank_is("input", shape, 4)
    if layout == "NCHW":
        return shape
    n, h, w, c = shape
    return n, c, h, w


def _pack(n: int, c: int, h: int, w: int, layout: str) -> tuple[int, ...]:
    return (n, c, h, w) if layout == "NCHW" else (n, h, w, c)


def _conv(inputs: list[Type], attrs: dict, fused: bool = False, quant: bool = False) -> Type:
    (xs, xt), (ws, wt) = inputs[0], inputs[1]
    if quant:
        _dtype_is("input", xt, _QUANT_DTYPES)
        _dtype_is("weight", wt, _QUANT_DTYPES)
    else:
        _dtype_is("input", xt, (DType.FLOAT32,))
        _need(wt is xt, f"weight dtype {wt.value} differs from input dtype {xt.value}")
    layout, groups = attrs["layout"], attrs["groups"]
    n, c, h, w = _spatial(xs, layout)
    _rank_is("weight", ws, 4)
    out_c, wc, kh, kw = ws
    _need(groups >= 1 and c % groups == 0 and out_c % groups == 0,
          f"groups={groups} must divide input channels {c} and output channels {out_c}")
    _need(wc * groups == c, f"weight shape {list(ws)} expects {wc * groups} input channels "
          f"with groups={groups}, the input has {c}")
    (sh, sw), (dh, dw) = attrs["stride"], attrs["dilation"]
    pt, pl, pb, pr = attrs["padding"]
    _need(min(sh, sw, dh, dw) >= 1 and min(pt, pl, pb, pr) >= 0,
          f"stride {attrs['stride']}, dilation {attrs['dilation']} must be >= 1 and "
          f"padding {attrs['padding']} >= 0")
    out = _pack(n, out_c, pool_output_size(h, kh, sh, pt, pb, dh),
                pool_output_size(w, kw, sw, pl, pr, dw), layout)
    out_t = DType.INT32 if quant else xt
    _extras(inputs, attrs, out, out_t, out_c, fused=fused, quant=quant)
    return out, out_t


def _extras(inputs, attrs, out, out_t, channels, *, fused: bool, quant: bool) -> None:
    """Check the optional bias (and, for fused ops, residual) operands."""
    flagged = fused or quant
    has_bias = attrs["bias"] if flagged else len(inputs) == 3
    has_residual = attrs.get("residual", False)
    expected = 2 + int(has_bias) + int(has_residual)
    _need(len(inputs) == expected, f"expected {expected} inputs (bias={has_bias}, "
          f"residual={has_residual}), got {len(inputs)}")
    if has_bias:
        bs, bt = inputs[2]
        _need(bs == (channels,), f"bias shape {list(bs)} must be [{channels}]")
        want = DType.INT32 if quant else out_t
        _need(bt is want, f"bias dtype must be {want.value}, not {bt.value}")
    if has_residual:
        rs, rt = inputs[-1]
        want = (DType.INT8, DType.UINT8) if quant else (out_t,)
        _need(rs == out and rt in want, f"residual {rt.value}{list(rs)} must match the "
              f"output shape {list(out)} and be {'/'.join(d.value for d in want)}")
        if quant:
            _channel_params("residual", attrs, ("residual_multiplier",), out,
                            1 if attrs.get("layout", "NHWC") == "NCHW" else -1)
            _need(0 <= attrs["residual_shift"] <= 63,
                  f"residual_shift {attrs['residual_shift']} must be in [0, 63]")
    clamp = attrs.get("clamp")
    _need(clamp is None or (len(clamp) == 2 and clamp[0] <= clamp[1]),
          f"clamp must be None or (lo, hi) with lo <= hi, not {clamp!r}")


def _matmul_shape(a: tuple[int, ...], b: tuple[int, ...], ta: bool, tb: bool):
    _need(len(a) >= 2 and len(b) >= 2,
          f"matmul operands need rank >= 2, got shapes {list(a)} and {list(b)}")
    if ta:
        a = (*a[:-2], a[-1], a[-2])
    if tb:
        b = (*b[:-2], b[-1], b[-2])
    _need(a[-1] == b[-2], f"inner dimensions differ: {list(a)} @ {list(b)}")
    return (*broadcast_shapes(a[:-2], b[:-2]), a[-2], b[-1])


def _matmul(inputs: list[Type], attrs: dict, fused: bool = False, quant: bool = False) -> Type:
    (a_s, a_t), (b_s, b_t) = inputs[0], inputs[1]
    if quant:
        _dtype_is("a", a_t, _QUANT_DTYPES)
        _dtype_is("b", b_t, _QUANT_DTYPES)
        out_t = DType.INT32
    else:
        _dtype_is("a", a_t, (DType.FLOAT32,))
        _need(b_t is a_t, f"b dtype {b_t.value} differs from a dtype {a_t.value}")
        out_t = a_t
    out = _matmul_shape(a_s, b_s, attrs["transpose_a"], attrs["transpose_b"])
    _extras(inputs, attrs, out, out_t, out[-1], fused=fused, quant=quant)
    return out, out_t


def _channel_params(what: str, params: dict, names: tuple[str, ...], shape, axis: int) -> None:
    """Per-tensor (1 value) or per-channel (shape[axis] values) quantization arrays."""
    channels = shape[_axis(axis, len(shape))] if shape else 1
    for name in names:
        value = params[name]
        _need(value is not None, f"{what} needs '{name}'")
        size = np.asarray(value).size
        _need(size in (1, channels), f"'{name}' has {size} values; {what} along axis {axis} "
              f"needs 1 or {channels}")


def _requantize(inputs: list[Type], attrs: dict) -> Type:
    shape, dtype = inputs[0]
    _dtype_is("input", dtype, (DType.INT32,))
    _dtype_is("output dtype", attrs["dtype"], _QUANT_DTYPES)
    mode = attrs["mode"]
    _need(mode in ("fixed", "float"), f"mode must be 'fixed' or 'float', not {mode!r}")
    names = ("multiplier", "shift") if mode == "fixed" else ("scale",)
    _channel_params(f"requantize mode={mode}", attrs, names, shape, attrs["axis"])
    info = np.iinfo(attrs["dtype"].numpy)
    _need(info.min <= attrs["lo"] <= attrs["hi"] <= info.max,
          f"lo={attrs['lo']}, hi={attrs['hi']} must be ordered within {attrs['dtype'].value}")
    return shape, attrs["dtype"]


def _quantize(inputs: list[Type], attrs: dict) -> Type:
    shape, dtype = inputs[0]
    _dtype_is("input", dtype, (DType.FLOAT32,))
    _dtype_is("output dtype", attrs["dtype"], _QUANT_DTYPES)
    _channel_params("quantize", attrs, ("scale", "zero_point"), shape, attrs["axis"])
    return shape, attrs["dtype"]


def _dequantize(inputs: list[Type], attrs: dict) -> Type:
    shape, dtype = inputs[0]
    _dtype_is("input", dtype, (*_QUANT_DTYPES, DType.INT32))
    _channel_params("dequantize", attrs, ("scale", "zero_point"), shape, attrs["axis"])
    return shape, DType.FLOAT32


def _binary(inputs: list[Type], attrs: dict) -> Type:
    (a_s, a_t), (b_s, b_t) = inputs
    _need(a_t is b_t, f"operand dtypes differ: {a_t.value} and {b_t.value}")
    return broadcast_shapes(a_s, b_s), a_t


def _same(inputs: list[Type], attrs: dict) -> Type:
    return inputs[0]


def _float_unary(inputs: list[Type], attrs: dict) -> Type:
    _dtype_is("input", inputs[0][1], (DType.FLOAT32,))
    return inputs[0]


def _clamp(inputs: list[Type], attrs: dict) -> Type:
    _need(attrs["min"] <= attrs["max"], f"min {attrs['min']} > max {attrs['max']}")
    return inputs[0]


def _gelu(inputs: list[Type], attrs: dict) -> Type:
    _need(attrs["approximate"] in ("none", "tanh"),
          f"approximate must be 'none' or 'tanh', not {attrs['approximate']!r}")
    return _float_unary(inputs, attrs)


def _pool(inputs: list[Type], attrs: dict) -> Type:
    shape, dtype = inputs[0]
    layout = attrs["layout"]
    n, c, h, w = _spatial(shape, layout)
    (kh, kw), (sh, sw) = attrs["kernel"], attrs["stride"]
    dh, dw = attrs.get("dilation", (1, 1))
    pt, pl, pb, pr = attrs["padding"]
    _need(min(kh, kw, sh, sw, dh, dw) >= 1, f"kernel {attrs['kernel']}, stride "
          f"{attrs['stride']} and dilation must be >= 1")
    ceil = attrs["ceil_mode"]
    out = _pack(n, c, pool_output_size(h, kh, sh, pt, pb, dh, ceil),
                pool_output_size(w, kw, sw, pl, pr, dw, ceil), layout)
    return out, dtype


def _adaptive_pool(inputs: list[Type], attrs: dict) -> Type:
    shape, dtype = inputs[0]
    _dtype_is("input", dtype, (DType.FLOAT32,))
    n, c, _, _ = _spatial(shape, attrs["layout"])
    oh, ow = attrs["output_size"]
    _need(oh >= 1 and ow >= 1, f"output_size {attrs['output_size']} must be positive")
    return _pack(n, c, oh, ow, attrs["layout"]), dtype


def _mean(inputs: list[Type], attrs: dict) -> Type:
    shape, dtype = inputs[0]
    _dtype_is("input", dtype, (DType.FLOAT32,))
    axes = {_axis(a, len(shape)) for a in attrs["axes"]}
    _need(len(axes) == len(attrs["axes"]), f"axes {attrs['axes']} repeat an axis")
    if attrs["keepdims"]:
        return tuple(1 if i in axes else d for i, d in enumerate(shape)), dtype
    return tuple(d for i, d in enumerate(shape) if i not in axes), dtype


def _reshape(inputs: list[Type], attrs: dict) -> Type:
    shape, dtype = inputs[0]
    target = attrs["shape"]
    _need(all(isinstance(d, int) and d >= 0 for d in target),
          f"shape {list(target)} must be static non-negative integers")
    _need(math.prod(target) == math.prod(shape),
          f"cannot reshape {list(shape)} ({math.prod(shape)} elements) to {list(target)}")
    return tuple(target), dtype


def _transpose(inputs: list[Type], attrs: dict) -> Type:
    shape, dtype = inputs[0]
    perm = attrs["perm"]
    _need(sorted(perm) == list(range(len(shape))),
          f"perm {list(perm)} is not a permutation of the {len(shape)} axes")
    return tuple(shape[p] for p in perm), dtype


def _concat(inputs: list[Type], attrs: dict) -> Type:
    first, dtype = inputs[0]
    axis = _axis(attrs["axis"], len(first))
    total = 0
    for shape, other in inputs:
        _need(other is dtype, f"operand dtypes differ: {dtype.value} and {other.value}")
        same = len(shape) == len(first) and all(
            a == b for i, (a, b) in enumerate(zip(shape, first, strict=True)) if i != axis)
        _need(same, f"shapes {list(first)} and {list(shape)} differ outside axis {axis}")
        total += shape[axis]
    return (*first[:axis], total, *first[axis + 1:]), dtype


def _im2col(inputs: list[Type], attrs: dict) -> Type:
    shape, dtype = inputs[0]
    _rank_is("input", shape, 4)
    n, h, w, c = shape
    (kh, kw), (sh, sw) = attrs["kernel"], attrs["stride"]
    pt, pl, pb, pr = attrs["padding"]
    _need(min(kh, kw, sh, sw) >= 1 and min(pt, pl, pb, pr) >= 0,
          f"kernel {attrs['kernel']} and stride {attrs['stride']} must be >= 1 and padding "
          f"{attrs['padding']} >= 0")
    patch = kh * kw * c
    channels = attrs["channels"] or patch
    _need(channels >= patch, f"channels={channels} is fewer than the {patch} of a "
          f"{kh}x{kw} patch of {c} channels")
    return (n, pool_output_size(h, kh, sh, pt, pb), pool_output_size(w, kw, sw, pl, pr),
            channels), dtype


def _batch_norm(inputs: list[Type], attrs: dict) -> Type:
    shape, dtype = inputs[0]
    _dtype_is("input", dtype, (DType.FLOAT32,))
    _need(len(shape) >= 2, f"input needs rank >= 2, not shape {list(shape)}")
    channels = shape[_axis(attrs["axis"], len(shape))]
    for name, (p_shape, p_type) in zip(("scale", "bias", "mean", "var"), inputs[1:],
                                       strict=True):
        _need(p_shape == (channels,) and p_type is dtype,
              f"{name} must be {dtype.value}[{channels}], not {p_type.value}{list(p_shape)}")
    return shape, dtype


def _layer_norm(inputs: list[Type], attrs: dict) -> Type:
    shape, dtype = inputs[0]
    _dtype_is("input", dtype, (DType.FLOAT32,))
    normalized = shape[_axis(attrs["axis"], len(shape)):]
    for name, (p_shape, p_type) in zip(("scale", "bias"), inputs[1:], strict=False):
        _need(p_shape == normalized and p_type is dtype, f"{name} must be "
              f"{dtype.value}{list(normalized)}, not {p_type.value}{list(p_shape)}")
    return shape, dtype


def _softmax(inputs: list[Type], attrs: dict) -> Type:
    shape, _ = inputs[0]
    _axis(attrs["axis"], len(shape))
    return _float_unary(inputs, attrs)


_RULES = {
    Op.IDENTITY: _same,
    Op.CONV2D: _conv,
    Op.FUSED_CONV2D: lambda i, a: _conv(i, a, fused=True),
    Op.QCONV2D: lambda i, a: _conv(i, a, quant=True),
    Op.MATMUL: _matmul,
    Op.FUSED_MATMUL: lambda i, a: _matmul(i, a, fused=True),
    Op.QMATMUL: lambda i, a: _matmul(i, a, quant=True),
    Op.REQUANTIZE: _requantize,
    Op.QUANTIZE: _quantize,
    Op.DEQUANTIZE: _dequantize,
    Op.ADD: _binary,
    Op.SUB: _binary,
    Op.MUL: _binary,
    Op.DIV: _binary,
    Op.RELU: _same,
    Op.RELU6: _float_unary,
    Op.CLAMP: _clamp,
    Op.GELU: _gelu,
    Op.ERF: _float_unary,
    Op.MAX_POOL2D: _pool,
    Op.AVG_POOL2D: _pool,
    Op.ADAPTIVE_AVG_POOL2D: _adaptive_pool,
    Op.MEAN: _mean,
    Op.RESHAPE: _reshape,
    Op.TRANSPOSE: _transpose,
    Op.CONCAT: _concat,
    Op.IM2COL: _im2col,
    Op.BATCH_NORM: _batch_norm,
    Op.LAYER_NORM: _layer_norm,
    Op.SOFTMAX: _softmax,
}
