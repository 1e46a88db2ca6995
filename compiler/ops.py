"""The IR's vocabulary: one enum of operators, the element types, and each operator's
signature (how many inputs it takes and which attributes, with their defaults).

Semantics (float unless stated; NCHW unless a ``layout``/``axis`` attribute says otherwise;
binary ops broadcast like numpy and need equal dtypes):

- ``INPUT``: a graph input. ``CONSTANT``: ``value`` (an ndarray). ``OUTPUT``: the one
  terminal node; its inputs are the graph's outputs, in order. ``IDENTITY``: copy.
- ``CONV2D(x, w[, bias])``: ``w`` is [O, I/groups, KH, KW]; ``padding`` is
  (top, left, bottom, right). ``MATMUL(a, b[, bias])``: numpy ``matmul`` of ``a`` (last two
  dims swapped first if ``transpose_a``) and ``b`` (likewise), plus ``bias`` over the last
  dim. ``linear(x, W, b)`` is ``MATMUL(x, W, b, transpose_b=True)``.
- ``FUSED_CONV2D`` / ``FUSED_MATMUL``: the accelerator's op,
  ``clamp(conv_or_matmul(x, w) + bias + residual)``. Inputs are ``x, w``, then ``bias``
  if the ``bias`` attribute is true, then ``residual`` if ``residual`` is true; ``clamp`` is
  None or (lo, hi) (ReLU is (0, inf), ReLU6 (0, 6)).
- ``QCONV2D`` / ``QMATMUL``: integer ``(x - x_zero_point) * (w - w_zero_point)`` products
  summed into int32 (two's complement wrap). ``w_zero_point`` is a scalar or one per output
  channel. Inputs ``x, w``, then an int32 ``bias`` if the ``bias`` attribute is true (added
  saturating, as STORE adds it), then an int8 ``residual`` if ``residual`` is true: it is
  rescaled per channel like the ALU's MULSHR,
  ``sat32(round_half_up(r * residual_multiplier[c] / 2**residual_shift))``, and added to
  the sum (wrapping, as MATMUL accumulates onto a loaded accumulator).
- ``REQUANTIZE(acc)``: int32 to int8/uint8, per channel along ``axis`` (arrays of length 1
  apply to every channel). ``mode="fixed"`` is the ISA's STORE int8 path
  (``multiplier``/``shift``, round half up); ``mode="float"`` is ONNX's QLinear* path
  (``round_half_even(float32(acc) * scale)``). Then ``+ zero_point``, clipped to [lo, hi].
- ``QUANTIZE(x)``: ``clip(round_half_even(x / scale) + zero_point)``;
  ``DEQUANTIZE(q)``: ``(q - zero_point) * scale``; per channel along ``axis``.
- ``CLAMP``: ``min``/``max`` (floats, -inf/inf for none). ``RELU6`` is ``CLAMP(0, 6)``.
- Pools: ``kernel``, ``stride``, ``padding`` (top, left, bottom, right), ``ceil_mode``
  as in PyTorch. ``ADAPTIVE_AVG_POOL2D`` as ``torch.nn.AdaptiveAvgPool2d``.
- ``MEAN``: over ``axes``, ``keepdims``. ``RESHAPE``: to ``shape`` (static).
  ``TRANSPOSE``: ``perm``. ``CONCAT``: along ``axis``.
- ``IM2COL(x)``: the patches of a convolution as channels, NHWC: ``x`` [N, H, W, C]
  zero-padded by ``padding`` (top, left, bottom, right) gives [N, Ho, Wo, ``channels``]
  with ``out[n, oy, ox, (i * KW + j) * C + c] = x[n, oy * sh + i - top, ox * sw + j - left,
  c]`` for a ``kernel`` (KH, KW) and ``stride`` (sh, sw); channels past KH * KW * C (when
  ``channels`` asks for more; 0: exactly that many) are zeros. A convolution on it with
  the weights rearranged to [O, KH * KW * C, 1, 1] is the original convolution.
- ``BATCH_NORM(x, scale, bias, mean, var)`` (inference) over channel ``axis``;
  ``LAYER_NORM(x[, scale[, bias]])`` over the dims from ``axis`` to the last;
  ``SOFTMAX`` along ``axis``; ``GELU`` with ``approximate`` "none" or "tanh"; ``ERF``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Op", "DType", "OpSpec", "SPECS", "LAYOUT_OPS", "ELEMENTWISE_UNARY",
           "ELEMENTWISE_BINARY", "ACCELERATOR_OPS"]


class Op(enum.Enum):
    """Every operator of the IR (see the module docstring for the semantics)."""

    INPUT = "input"
    CONSTANT = "constant"
    OUTPUT = "output"
    IDENTITY = "identity"
    CONV2D = "conv2d"
    MATMUL = "matmul"
    FUSED_CONV2D = "fused_conv2d"
    FUSED_MATMUL = "fused_matmul"
    QCONV2D = "qconv2d"
    QMATMUL = "qmatmul"
    REQUANTIZE = "requantize"
    QUANTIZE = "quantize"
    DEQUANTIZE = "dequantize"
    ADD = "add"
    SUB = "sub"
    MUL = "mul"
    DIV = "div"
    RELU = "relu"
    RELU6 = "relu6"
    CLAMP = "clamp"
    GELU = "gelu"
    ERF = "erf"
    MAX_POOL2D = "max_pool2d"
    AVG_POOL2D = "avg_pool2d"
    ADAPTIVE_AVG_POOL2D = "adaptive_avg_pool2d"
    MEAN = "mean"
    RESHAPE = "reshape"
    TRANSPOSE = "transpose"
    CONCAT = "concat"
    IM2COL = "im2col"
    BATCH_NORM = "batch_norm"
    LAYER_NORM = "layer_norm"
    SOFTMAX = "softmax"


class DType(enum.Enum):
    """Element types; the value is the short name used in listings."""

    FLOAT32 = "f32"
    INT8 = "i8"
    UINT8 = "u8"
    INT32 = "i32"
    INT64 = "i64"

    @property
    def numpy(self) -> np.dtype:
        """The numpy dtype of this element type."""
        return np.dtype(_NUMPY[self])

    @property
    def is_float(self) -> bool:
        return self is DType.FLOAT32

    @classmethod
    def from_numpy(cls, dtype) -> DType:
        """The element type of a numpy dtype; ValueError if the IR has none."""
        name = np.dtype(dtype).name
        for member, numpy_name in _NUMPY.items():
            if numpy_name == name:
                return member
        raise ValueError(f"dtype {name} has no IR element type "
                         f"(supported: {', '.join(_NUMPY.values())})")


_NUMPY = {DType.FLOAT32: "float32", DType.INT8: "int8", DType.UINT8: "uint8",
          DType.INT32: "int32", DType.INT64: "int64"}


@dataclass(frozen=True)
class OpSpec:
    """Signature of an operator.

    Members
    -------
    min_inputs, max_inputs : int
        Number of inputs accepted (``max_inputs`` None: unbounded).
    attrs : dict
        Attribute names and their defaults; ``REQUIRED`` marks those without default.
    """

    min_inputs: int
    max_inputs: int | None
    attrs: dict = field(default_factory=dict)


REQUIRED = object()

_CONV = {"stride": (1, 1), "padding": (0, 0, 0, 0), "dilation": (1, 1), "groups": 1,
         "layout": "NCHW"}
_POOL = {"kernel": REQUIRED, "stride": REQUIRED, "padding": (0, 0, 0, 0), "ceil_mode": False,
         "layout": "NCHW"}
_FUSED = {"bias": False, "residual": False, "clamp": None}
_QPARAMS = {"scale": REQUIRED, "zero_point": REQUIRED, "axis": 1}
_QRESIDUAL = {"bias": False, "residual": False, "residual_multiplier": None,
              "residual_shift": 0}

SPECS: dict[Op, OpSpec] = {
    Op.INPUT: OpSpec(0, 0),
    Op.CONSTANT: OpSpec(0, 0, {"value": REQUIRED}),
    Op.OUTPUT: OpSpec(1, None),
    Op.IDENTITY: OpSpec(1, 1),
    Op.CONV2D: OpSpec(2, 3, dict(_CONV)),
    Op.MATMUL: OpSpec(2, 3, {"transpose_a": False, "transpose_b": False}),
    Op.FUSED_CONV2D: OpSpec(2, 4, {**_CONV, **_FUSED}),
    Op.FUSED_MATMUL: OpSpec(2, 4, {"transpose_a": False, "transpose_b": False, **_FUSED}),
    Op.QCONV2D: OpSpec(2, 4, {**_CONV, **_QRESIDUAL, "x_zero_point": 0, "w_zero_point": 0}),
    Op.QMATMUL: OpSpec(2, 4, {"transpose_a": False, "transpose_b": False, **_QRESIDUAL,
                              "a_zero_point": 0, "b_zero_point": 0}),
    Op.REQUANTIZE: OpSpec(1, 1, {"mode": REQUIRED, "scale": None, "multiplier": None,
                                 "shift": None, "zero_point": 0, "lo": -128, "hi": 127,
                                 "axis": -1, "dtype": DType.INT8}),
    Op.QUANTIZE: OpSpec(1, 1, {**_QPARAMS, "dtype": DType.INT8}),
    Op.DEQUANTIZE: OpSpec(1, 1, dict(_QPARAMS)),
    Op.ADD: OpSpec(2, 2),
    Op.SUB: OpSpec(2, 2),
    Op.MUL: OpSpec(2, 2),
    Op.DIV: OpSpec(2, 2),
    Op.RELU: OpSpec(1, 1),
    Op.RELU6: OpSpec(1, 1),
    Op.CLAMP: OpSpec(1, 1, {"min": float("-inf"), "max": float("inf")}),
    Op.GELU: OpSpec(1, 1, {"approximate": "none"}),
    Op.ERF: OpSpec(1, 1),
    Op.MAX_POOL2D: OpSpec(1, 1, {**_POOL, "dilation": (1, 1)}),
    Op.AVG_POOL2D: OpSpec(1, 1, {**_POOL, "count_include_pad": True}),
    Op.ADAPTIVE_AVG_POOL2D: OpSpec(1, 1, {"output_size": REQUIRED, "layout": "NCHW"}),
    Op.MEAN: OpSpec(1, 1, {"axes": REQUIRED, "keepdims": False}),
    Op.RESHAPE: OpSpec(1, 1, {"shape": REQUIRED}),
    Op.TRANSPOSE: OpSpec(1, 1, {"perm": REQUIRED}),
    Op.CONCAT: OpSpec(1, None, {"axis": REQUIRED}),
    Op.IM2COL: OpSpec(1, 1, {"kernel": REQUIRED, "stride": (1, 1), "padding": (0, 0, 0, 0),
                             "channels": 0}),
    Op.BATCH_NORM: OpSpec(5, 5, {"eps": 1e-5, "axis": 1}),
    Op.LAYER_NORM: OpSpec(1, 3, {"axis": -1, "eps": 1e-5}),
    Op.SOFTMAX: OpSpec(1, 1, {"axis": -1}),
}

# Operators whose spatial layout is an attribute ("NCHW" or "NHWC").
LAYOUT_OPS = frozenset({Op.CONV2D, Op.FUSED_CONV2D, Op.QCONV2D, Op.MAX_POOL2D, Op.AVG_POOL2D,
                        Op.ADAPTIVE_AVG_POOL2D})
ELEMENTWISE_UNARY = frozenset({Op.IDENTITY, Op.RELU, Op.RELU6, Op.CLAMP, Op.GELU, Op.ERF})
ELEMENTWISE_BINARY = frozenset({Op.ADD, Op.SUB, Op.MUL, Op.DIV})
# What the array runs; everything else is a host op until lowering says otherwise.
ACCELERATOR_OPS = frozenset({Op.FUSED_CONV2D, Op.FUSED_MATMUL, Op.QCONV2D, Op.QMATMUL})
