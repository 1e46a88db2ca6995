"""ONNX frontend: `onnx.ModelProto` (float and integer models) to the IR.

Float operators map to their IR twins; ``MatMulInteger``/``ConvInteger`` become
``qmatmul``/``qconv2d`` (int32 results) and ``QLinearMatMul``/``QLinearConv`` add a
``requantize`` in the IR's float mode (ONNX Runtime's order: round, then add the zero
point). Compiling such a graph (`gemmstone.compiler.compile.compile_model`) rewrites these
ops into what the array runs, exactly as ONNX's reference defines them
(`gemmstone.compiler.quantization.integer`). Shapes must be static; tensors that configure
an operator (Reshape's shape, Clip's bounds, quantization scales and zero points) must be
constants; scales are float32, positive, per tensor (weights: or per output channel).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from gemmstone.compiler.errors import FrontendError, IRError
from gemmstone.compiler.ir import Graph, Node
from gemmstone.compiler.ops import DType, Op
from gemmstone.compiler.verify import verify

__all__ = ["from_onnx", "SUPPORTED_OPS"]

_ELEMENT_TYPES = {onnx.TensorProto.FLOAT: DType.FLOAT32, onnx.TensorProto.INT8: DType.INT8,
                  onnx.TensorProto.UINT8: DType.UINT8, onnx.TensorProto.INT32: DType.INT32,
                  onnx.TensorProto.INT64: DType.INT64}


def from_onnx(model: onnx.ModelProto | str | Path, *, name: str | None = None) -> Graph:
    """Convert an ONNX model (a `ModelProto` or a path to one).

    Raises
    ------
    FrontendError
        For an unsupported operator, attribute or input, a dynamic shape, or a malformed
        graph (undefined inputs, unsorted nodes); the message names the ONNX node.
    """
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return _Converter(model.graph, opset, name or model.graph.name or "onnx").convert()


class _Converter:
    def __init__(self, graph: onnx.GraphProto, opset: int, name: str) -> None:
        self.source = graph
        self.opset = opset
        self.graph = Graph(name)
        self.values: dict[str, Node | None] = {}
        self.node: onnx.NodeProto | None = None

    def convert(self) -> Graph:
        for tensor in self.source.initializer:
            self.values[tensor.name] = self.graph.constant(numpy_helper.to_array(tensor),
                                                          name=tensor.name)
        for value in self.source.input:
            if value.name not in self.values:
                self.values[value.name] = self._input(value)
        for node in self.source.node:
            self.node = node
            self._convert_node(node)
        outputs = []
        for value in self.source.output:
            if self.values.get(value.name) is None:
                raise FrontendError("onnx", value.name, "output",
                                    "graph output is not produced by any node")
            outputs.append(self.values[value.name])
        self.graph.output(*outputs)
        verify(self.graph)
        return self.graph

    def _input(self, value: onnx.ValueInfoProto) -> Node:
        tensor = value.type.tensor_type
        if tensor.elem_type not in _ELEMENT_TYPES:
            raise FrontendError("onnx", value.name, "input",
                                f"element type {helper.tensor_dtype_to_np_dtype(tensor.elem_type)}"
                                " is not supported")
        dims = []
        for dim in tensor.shape.dim:
            if not dim.HasField("dim_value"):
                raise FrontendError("onnx", value.name, "input",
                                    f"dimension {dim.dim_param or '?'!r} is not static")
            dims.append(dim.dim_value)
        return self.graph.input(value.name, dims, _ELEMENT_TYPES[tensor.elem_type])

    def _convert_node(self, node: onnx.NodeProto) -> None:
        label = node.name or (node.output[0] if node.output else node.op_type)
        if node.domain not in ("", "ai.onnx"):
            self.fail(f"domain {node.domain!r} is not supported")
        handler = _HANDLERS.get(node.op_type)
        if handler is None:
            self.fail("unsupported operator")
        inputs = []
        for name in node.input:
            if name == "":
                inputs.append(None)
            elif name not in self.values:
                self.fail(f"input '{name}' is not defined before this node (unknown name, or "
                          "nodes not in topological order)")
            elif self.values[name] is None:
                self.fail(f"input '{name}' comes from an operator output that is not "
                          "supported")
            else:
                inputs.append(self.values[name])
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
        try:
            results = handler(self, inputs, attrs)
        except IRError as error:
            raise FrontendError("onnx", label, node.op_type, error.reason) from None
        results = results if isinstance(results, tuple) else (results,)
        for index, output in enumerate(node.output):
            if output:
                self.values[output] = results[index] if index < len(results) else None

    # -- helpers used by the handlers ---------------------------------------------------

    def fail(self, reason: str):
        node = self.node
        label = node.name or (node.output[0] if node.output else node.op_type)
        raise FrontendError("onnx", label, node.op_type, reason)

    def add(self, op: Op, inputs: list[Node], attrs: dict | None = None) -> Node:
        return self.graph.add(op, inputs, attrs, name=self.node.output[0] or None)

    def constant_input(self, inputs: list, index: int, what: str,
                       default=None) -> np.ndarray | None:
        if index >= len(inputs) or inputs[index] is None:
            return default
        if not inputs[index].is_constant:
            self.fail(f"{what} (input {index}) must be a constant")
        return inputs[index].value

    def require(self, inputs: list, count: int) -> None:
        present = sum(1 for v in inputs[:count] if v is not None)
        if present < count:
            self.fail(f"needs {count} inputs, got {present}")


# -- handlers: (converter, inputs, attributes) -> Node or tuple of Node | None ---------------

def _spatial_attrs(c: _Converter, x: Node, attrs: dict, kernel: tuple[int, int]) -> dict:
    """strides, dilations and pads (auto_pad resolved) of Conv and pools."""
    if len(x.shape) != 4:
        c.fail(f"only 2-D spatial ops on 4-D input are supported, got shape {list(x.shape)}")
    strides = tuple(attrs.get("strides", (1, 1)))
    dilations = tuple(attrs.get("dilations", (1, 1)))
    auto_pad = attrs.get("auto_pad", "NOTSET")
    if auto_pad in ("NOTSET", ""):
        pads = tuple(attrs.get("pads", (0, 0, 0, 0)))
    elif auto_pad == "VALID":
        pads = (0, 0, 0, 0)
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for size, k, s, d in zip(x.shape[2:], kernel, strides, dilations, strict=True):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small = total // 2
            begin.append(small if auto_pad == "SAME_UPPER" else total - small)
            end.append(total - begin[-1])
        pads = (begin[0], begin[1], end[0], end[1])
    else:
        c.fail(f"auto_pad {auto_pad!r} is not supported")
    if len(pads) != 4 or len(strides) != 2 or len(dilations) != 2:
        c.fail("pads, strides and dilations must describe 2 spatial dims")
    return {"stride": strides, "padding": pads, "dilation": dilations}


def _conv_like(c: _Converter, x: Node, w: Node, attrs: dict) -> dict:
    if len(w.shape) != 4:
        c.fail(f"only 2-D convolution is supported, weight shape {list(w.shape)}")
    kernel = tuple(attrs.get("kernel_shape", w.shape[2:]))
    return {**_spatial_attrs(c, x, attrs, kernel), "groups": attrs.get("group", 1)}


def _conv(c: _Converter, inputs: list, attrs: dict) -> Node:
    c.require(inputs, 2)
    x, w, bias = inputs[0], inputs[1], inputs[2] if len(inputs) > 2 else None
    conv_attrs = _conv_like(c, x, w, attrs)
    return c.add(Op.CONV2D, [x, w] + ([bias] if bias is not None else []), conv_attrs)


def _gemm(c: _Converter, inputs: list, attrs: dict) -> Node:
    c.require(inputs, 2)
    a, b = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
    if len(a.shape) != 2 or len(b.shape) != 2:
        c.fail("Gemm operands must be 2-D")
    mm_attrs = {"transpose_a": bool(attrs.get("transA", 0)),
                "transpose_b": bool(attrs.get("transB", 0))}
    n = b.shape[0] if mm_attrs["transpose_b"] else b.shape[1]
    operands = [a, b]
    if bias is not None and beta != 1.0:
        value = c.constant_input(inputs, 2, "C with beta != 1")
        bias = c.graph.constant(value * np.float32(beta), f"{bias.name}_beta")
    add_after = None
    if bias is not None:
        if bias.shape in ((n,), (1, n)) and alpha == 1.0:
            if bias.shape != (n,):
                bias = c.graph.add(Op.RESHAPE, [bias], {"shape": (n,)})
            operands.append(bias)
        else:
            add_after = bias
    out = c.add(Op.MATMUL, operands, mm_attrs)
    if alpha != 1.0:
        out = c.graph.add(Op.MUL, [out, c.graph.constant(np.float32(alpha), "alpha")])
    if add_after is not None:
        out = c.graph.add(Op.ADD, [out, add_after])
    return out


def _matmul(c: _Converter, inputs: list, attrs: dict) -> Node:
    c.require(inputs, 2)
    if len(inputs[0].shape) < 2 or len(inputs[1].shape) < 2:
        c.fail("1-D MatMul operands are not supported")
    return c.add(Op.MATMUL, inputs[:2])


def _binary(op: Op) -> Callable:
    def handler(c: _Converter, inputs: list, attrs: dict) -> Node:
        c.require(inputs, 2)
        return c.add(op, inputs[:2])
    return handler


def _unary(op: Op) -> Callable:
    def handler(c: _Converter, inputs: list, attrs: dict) -> Node:
        c.require(inputs, 1)
        return c.add(op, inputs[:1])
    return handler


def _clip(c: _Converter, inputs: list, attrs: dict) -> Node:
    c.require(inputs, 1)
    if c.opset < 11:
        lo, hi = attrs.get("min", -math.inf), attrs.get("max", math.inf)
    else:
        lo = c.constant_input(inputs, 1, "min", -math.inf)
        hi = c.constant_input(inputs, 2, "max", math.inf)
    lo, hi = float(np.asarray(lo)), float(np.asarray(hi))
    if (lo, hi) == (0.0, 6.0) and inputs[0].dtype is DType.FLOAT32:
        return c.add(Op.RELU6, inputs[:1])
    return c.add(Op.CLAMP, inputs[:1], {"min": lo, "max": hi})


def _gelu(c: _Converter, inputs: list, attrs: dict) -> Node:
    c.require(inputs, 1)
    return c.add(Op.GELU, inputs[:1], {"approximate": attrs.get("approximate", "none")})


def _pool_attrs(c: _Converter, x: Node, attrs: dict) -> tuple[dict, tuple[int, int]]:
    kernel = tuple(attrs.get("kernel_shape", ()))
    if len(kernel) != 2:
        c.fail(f"kernel_shape {list(kernel)} must have 2 dims")
    spatial = _spatial_attrs(c, x, attrs, kernel)
    return {"kernel": kernel, "stride": spatial["stride"], "padding": spatial["padding"],
            "ceil_mode": bool(attrs.get("ceil_mode", 0))}, spatial["dilation"]


def _max_pool(c: _Converter, inputs: list, attrs: dict) -> tuple:
    c.require(inputs, 1)
    pool, dilation = _pool_attrs(c, inputs[0], attrs)
    return c.add(Op.MAX_POOL2D, inputs[:1], {**pool, "dilation": dilation}), None


def _avg_pool(c: _Converter, inputs: list, attrs: dict) -> Node:
    c.require(inputs, 1)
    pool, dilation = _pool_attrs(c, inputs[0], attrs)
    if dilation != (1, 1):
        c.fail("dilated AveragePool is not supported")
    return c.add(Op.AVG_POOL2D, inputs[:1],
                 {**pool, "count_include_pad": bool(attrs.get("count_include_pad", 0))})


def _global_avg_pool(c: _Converter, inputs: list, attrs: dict) -> Node:
    c.require(inputs, 1)
    if len(inputs[0].shape) != 4:
        c.fail(f"only 4-D input is supported, got shape {list(inputs[0].shape)}")
    return c.add(Op.ADAPTIVE_AVG_POOL2D, inputs[:1], {"output_size": (1, 1)})


def _reduce_mean(c: _Converter, inputs: list, attrs: dict) -> Node:
    c.require(inputs, 1)
    x = inputs[0]
    rank = len(x.shape)
    if c.opset >= 18:
        axes = c.constant_input(inputs, 1, "axes")
        axes = None if axes is None else [int(a) for a in axes.reshape(-1)]
    else:
        axes = attrs.get("axes")
    if not axes:
        if attrs.get("noop_with_empty_axes", 0):
            return c.add(Op.IDENTITY, [x])
        axes = list(range(rank))
    axes = tuple(sorted(a % rank for a in axes))
    keepdims = bool(attrs.get("keepdims", 1))
    if rank == 4 and axes == (2, 3) and keepdims:
        return c.add(Op.ADAPTIVE_AVG_POOL2D, [x], {"output_size": (1, 1)})
    return c.add(Op.MEAN, [x], {"axes": axes, "keepdims": keepdims})


def _flatten(c: _Converter, inputs: list, attrs: dict) -> Node:
    c.require(inputs, 1)
    shape = inputs[0].shape
    axis = attrs.get("axis", 1) % (len(shape) + 1) if shape else 0
    return c.add(Op.RESHAPE, inputs[:1],
                 {"shape": (math.prod(shape[:axis]), math.prod(shape[axis:]))})


def _reshape(c: _Converter, inputs: list, attrs: dict) -> Node:
    c.require(inputs, 2)
    x = inputs[0]
    target = [int(d) for d in c.constant_input(inputs, 1, "shape").reshape(-1)]
    if not attrs.get("allowzero", 0):
        target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
    if target.count(-1) > 1:
        c.fail(f"shape {target} has more than one -1")
    if -1 in target:
        known = math.prod(d for d in target if d != -1)
        target[target.index(-1)] = math.prod(x.shape) // known if known else 0
    return c.add(Op.RESHAPE, [x], {"shape": tuple(target)})


def _axes(c: _Converter, inputs: list, attrs: dict) -> list[int] | None:
    if c.opset >= 13:
        value = c.constant_input(inputs, 1, "axes")
        return None if value is None else [int(a) for a in value.reshape(-1)]
    return attrs.get("axes")


def _squeeze(c: _Converter, inputs: list, attrs: dict) -> Node:
    c.require(inputs, 1)
    shape = inputs[0].shape
    axes = _axes(c, inputs, attrs)
    drop = {a % len(shape) for a in axes} if axes is not None else \
        {i for i, d in enumerate(shape) if d == 1}
    if any(shape[a] != 1 for a in drop):
        c.fail(f"cannot squeeze axes {sorted(drop)} of shape {list(shape)}")
    return c.add(Op.RESHAPE, inputs[:1],
                 {"shape": tuple(d for i, d in enumerate(shape) if i not in drop)})


def _unsqueeze(c: _Converter, inputs: list, attrs: dict) -> Node:
    c.require(inputs, 1)
    axes = _axes(c, inputs, attrs)
    if axes is None:
        c.fail("Unsqueeze needs axes")
    rank = len(inputs[0].shape) + len(axes)
    positions = {a % rank for a in axes}
    dims = iter(inputs[0].shape)
    return c.add(Op.RESHAPE, inputs[:1],
                 {"shape": tuple(1 if i in positions else next(dims) for i in range(rank))})


def _transpose(c: _Converter, inputs: list, attrs: dict) -> Node:
    c.require(inputs, 1)
    rank = len(inputs[0].shape)
    perm = tuple(attrs.get("perm", range(rank - 1, -1, -1)))
    return c.add(Op.TRANSPOSE, inputs[:1], {"perm": perm})


def _concat(c: _Converter, inputs: list, attrs: dict) -> Node:
    if "axis" not in attrs:
        c.fail("Concat needs an axis")
    return c.add(Op.CONCAT, [v for v in inputs if v is not None], {"axis": attrs["axis"]})


def _batch_norm(c: _Converter, inputs: list, attrs: dict) -> tuple:
    c.require(inputs, 5)
    if attrs.get("training_mode", 0):
        c.fail("training_mode=1 is not supported")
    return c.add(Op.BATCH_NORM, inputs[:5], {"eps": attrs.get("epsilon", 1e-5)}), None, None


def _layer_norm(c: _Converter, inputs: list, attrs: dict) -> tuple:
    c.require(inputs, 1)
    operands = [v for v in inputs[:3] if v is not None]
    if len(inputs) > 2 and inputs[2] is not None and (len(inputs) < 2 or inputs[1] is None):
        c.fail("a bias without a scale is not supported")
    node = c.add(Op.LAYER_NORM, operands, {"axis": attrs.get("axis", -1),
                                           "eps": attrs.get("epsilon", 1e-5)})
    return node, None, None


def _softmax(c: _Converter, inputs: list, attrs: dict) -> Node:
    c.require(inputs, 1)
    x = inputs[0]
    rank = len(x.shape)
    if c.opset >= 13:
        return c.add(Op.SOFTMAX, [x], {"axis": attrs.get("axis", -1)})
    # Before opset 13, Softmax normalizes over all dims from `axis` on (a 2-D view).
    axis = attrs.get("axis", 1) % rank
    if axis == rank - 1:
        return c.add(Op.SOFTMAX, [x], {"axis": -1})
    flat = c.graph.add(Op.RESHAPE, [x], {"shape": (math.prod(x.shape[:axis]),
                                                   math.prod(x.shape[axis:]))})
    soft = c.graph.add(Op.SOFTMAX, [flat], {"axis": 1})
    return c.add(Op.RESHAPE, [soft], {"shape": x.shape})


def _identity(c: _Converter, inputs: list, attrs: dict) -> Node:
    c.require(inputs, 1)
    return c.add(Op.IDENTITY, inputs[:1])


def _dropout(c: _Converter, inputs: list, attrs: dict) -> tuple:
    c.require(inputs, 1)
    training = c.constant_input(inputs, 2, "training_mode", np.asarray(False))
    if bool(training):
        c.fail("training_mode=True is not supported")
    return c.add(Op.IDENTITY, inputs[:1]), None


def _constant(c: _Converter, inputs: list, attrs: dict) -> Node:
    if "value" in attrs:
        value = numpy_helper.to_array(attrs["value"])
    elif "value_float" in attrs or "value_floats" in attrs:
        value = np.asarray(attrs.get("value_float", attrs.get("value_floats")), np.float32)
    elif "value_int" in attrs or "value_ints" in attrs:
        value = np.asarray(attrs.get("value_int", attrs.get("value_ints")), np.int64)
    else:
        c.fail(f"Constant with attributes {sorted(attrs)} is not supported")
    return c.graph.constant(value, name=c.node.output[0])


def _shape(c: _Converter, inputs: list, attrs: dict) -> Node:
    c.require(inputs, 1)
    shape = inputs[0].shape
    start, end = attrs.get("start", 0), attrs.get("end", len(shape))
    return c.graph.constant(np.asarray(shape[start:end], np.int64), name=c.node.output[0])


def _cast(c: _Converter, inputs: list, attrs: dict) -> Node:
    c.require(inputs, 1)
    target = _ELEMENT_TYPES.get(attrs.get("to"))
    if target is not inputs[0].dtype:
        if inputs[0].is_constant and target is not None:
            return c.graph.constant(inputs[0].value.astype(target.numpy), c.node.output[0])
        c.fail(f"cast from {inputs[0].dtype.value} to type {attrs.get('to')} is not supported")
    return c.add(Op.IDENTITY, inputs[:1])


# -- integer operators ------------------------------------------------------------------------

def _zero_point(c: _Converter, inputs: list, index: int, like: Node, what: str,
                per_channel: int | None = None):
    """A zero point: an int, or a tuple of ``per_channel`` ints where that is allowed."""
    value = c.constant_input(inputs, index, what)
    if value is None:
        return 0
    if value.dtype != like.dtype.numpy:
        c.fail(f"{what} dtype {value.dtype} differs from its tensor's {like.dtype.numpy}")
    flat = [int(v) for v in value.reshape(-1)]
    if len(flat) == 1:
        return flat[0]
    if per_channel is None or len(flat) != per_channel:
        c.fail(f"{what} has {len(flat)} values; only per-tensor"
               + (f" or {per_channel} per-channel values are" if per_channel else " is")
               + " supported")
    return tuple(flat)


def _check_int8(c: _Converter, *values: Node) -> None:
    for value in values:
        if value.dtype not in (DType.INT8, DType.UINT8):
            c.fail(f"operand %{value.name} must be int8 or uint8, not {value.dtype.value}")


def _matmul_integer(c: _Converter, inputs: list, attrs: dict) -> Node:
    c.require(inputs, 2)
    a, b = inputs[0], inputs[1]
    _check_int8(c, a, b)
    if len(a.shape) < 2 or len(b.shape) < 2:
        c.fail("1-D MatMulInteger operands are not supported")
    return c.add(Op.QMATMUL, [a, b], {
        "a_zero_point": _zero_point(c, inputs, 2, a, "a_zero_point"),
        "b_zero_point": _zero_point(c, inputs, 3, b, "b_zero_point", b.shape[-1])})


def _conv_integer(c: _Converter, inputs: list, attrs: dict) -> Node:
    c.require(inputs, 2)
    x, w = inputs[0], inputs[1]
    _check_int8(c, x, w)
    return c.add(Op.QCONV2D, [x, w], {
        **_conv_like(c, x, w, attrs),
        "x_zero_point": _zero_point(c, inputs, 2, x, "x_zero_point"),
        "w_zero_point": _zero_point(c, inputs, 3, w, "w_zero_point", w.shape[0])})


def _scale(c: _Converter, inputs: list, index: int, what: str,
           per_channel: int | None = None) -> np.ndarray:
    """A float32 scale: per tensor, or (where allowed) ``per_channel`` values."""
    value = c.constant_input(inputs, index, what)
    if value is None:
        c.fail(f"{what} (input {index}) is required")
    if value.dtype != np.float32:
        c.fail(f"{what} must be float32, not {value.dtype}")
    flat = value.reshape(-1)
    if flat.size != 1 and (per_channel is None or flat.size != per_channel):
        c.fail(f"{what} has {flat.size} values; only per-tensor"
               + (f" or {per_channel} per-channel values are" if per_channel else " is")
               + " supported")
    if not np.all(np.isfinite(flat)) or np.any(flat <= 0):
        c.fail(f"{what} must be positive and finite")
    return flat


def _requantize(c: _Converter, acc: Node, in_scale: np.ndarray, y_scale: np.ndarray,
                y_zero: np.ndarray | None, axis: int) -> Node:
    """ONNX Runtime's output stage: scale = in_scale / y_scale in float32, round half to
    even, add the zero point, saturate."""
    if y_scale.size != 1:
        c.fail("y_scale must be per-tensor")
    dtype = DType.UINT8 if y_zero is None else DType.from_numpy(y_zero.dtype)
    if dtype not in (DType.INT8, DType.UINT8):
        c.fail(f"y_zero_point must be int8 or uint8, not {dtype.value}")
    info = np.iinfo(dtype.numpy)
    zero = 0 if y_zero is None else int(y_zero.reshape(-1)[0])
    scale = (in_scale / y_scale).astype(np.float32)
    return c.add(Op.REQUANTIZE, [acc], {"mode": "float", "scale": scale, "zero_point": zero,
                                        "lo": int(info.min), "hi": int(info.max), "axis": axis,
                                        "dtype": dtype})


def _qlinear_matmul(c: _Converter, inputs: list, attrs: dict) -> Node:
    c.require(inputs, 8)
    a, b = inputs[0], inputs[3]
    _check_int8(c, a, b)
    if len(a.shape) < 2 or len(b.shape) < 2:
        c.fail("1-D QLinearMatMul operands are not supported")
    acc = c.graph.add(Op.QMATMUL, [a, b], {
        "a_zero_point": _zero_point(c, inputs, 2, a, "a_zero_point"),
        "b_zero_point": _zero_point(c, inputs, 5, b, "b_zero_point", b.shape[-1])})
    in_scale = _scale(c, inputs, 1, "a_scale") * _scale(c, inputs, 4, "b_scale", b.shape[-1])
    return _requantize(c, acc, in_scale, _scale(c, inputs, 6, "y_scale"),
                       c.constant_input(inputs, 7, "y_zero_point"), -1)


def _qlinear_conv(c: _Converter, inputs: list, attrs: dict) -> Node:
    c.require(inputs, 8)
    x, w = inputs[0], inputs[3]
    _check_int8(c, x, w)
    bias = inputs[8] if len(inputs) > 8 else None
    if bias is not None and bias.dtype is not DType.INT32:
        c.fail(f"bias must be int32, not {bias.dtype.value}")
    acc = c.graph.add(Op.QCONV2D, [x, w] + ([bias] if bias is not None else []), {
        **_conv_like(c, x, w, attrs), "bias": bias is not None,
        "x_zero_point": _zero_point(c, inputs, 2, x, "x_zero_point"),
        "w_zero_point": _zero_point(c, inputs, 5, w, "w_zero_point", w.shape[0])})
    in_scale = _scale(c, inputs, 1, "x_scale") * _scale(c, inputs, 4, "w_scale", w.shape[0])
    return _requantize(c, acc, in_scale, _scale(c, inputs, 6, "y_scale"),
                       c.constant_input(inputs, 7, "y_zero_point"), 1)


def _quant_axis(c: _Converter, x: Node, scale: np.ndarray, attrs: dict) -> int:
    if attrs.get("block_size", 0):
        c.fail("blocked quantization is not supported")
    return attrs.get("axis", 1) if scale.size > 1 else 1 % max(len(x.shape), 1)


def _axis_size(x: Node, attrs: dict) -> int | None:
    """Channels along QuantizeLinear/DequantizeLinear's ``axis`` (per-axis parameters)."""
    return x.shape[attrs.get("axis", 1) % len(x.shape)] if x.shape else None


def _quantize_linear(c: _Converter, inputs: list, attrs: dict) -> Node:
    c.require(inputs, 2)
    x = inputs[0]
    scale = _scale(c, inputs, 1, "y_scale", _axis_size(x, attrs))
    zero = c.constant_input(inputs, 2, "y_zero_point")
    if "output_dtype" in attrs and attrs["output_dtype"]:
        dtype = _ELEMENT_TYPES.get(attrs["output_dtype"])
    else:
        dtype = DType.UINT8 if zero is None else DType.from_numpy(zero.dtype)
    if dtype not in (DType.INT8, DType.UINT8):
        c.fail(f"only int8/uint8 outputs are supported, not {attrs.get('output_dtype', dtype)}")
    zero = np.zeros(1, np.int64) if zero is None else zero.astype(np.int64).reshape(-1)
    return c.add(Op.QUANTIZE, [x], {"scale": scale, "zero_point": zero, "dtype": dtype,
                                     "axis": _quant_axis(c, x, scale, attrs)})


def _dequantize_linear(c: _Converter, inputs: list, attrs: dict) -> Node:
    c.require(inputs, 2)
    x = inputs[0]
    scale = _scale(c, inputs, 1, "x_scale", _axis_size(x, attrs))
    zero = c.constant_input(inputs, 2, "x_zero_point")
    zero = np.zeros(1, np.int64) if zero is None else zero.astype(np.int64).reshape(-1)
    return c.add(Op.DEQUANTIZE, [x], {"scale": scale, "zero_point": zero,
                                       "axis": _quant_axis(c, x, scale, attrs)})


_HANDLERS: dict[str, Callable] = {
    "Conv": _conv, "Gemm": _gemm, "MatMul": _matmul,
    "Add": _binary(Op.ADD), "Sub": _binary(Op.SUB), "Mul": _binary(Op.MUL),
    "Div": _binary(Op.DIV),
    "Relu": _unary(Op.RELU), "Erf": _unary(Op.ERF), "Clip": _clip, "Gelu": _gelu,
    "MaxPool": _max_pool, "AveragePool": _avg_pool, "GlobalAveragePool": _global_avg_pool,
    "ReduceMean": _reduce_mean,
    "Flatten": _flatten, "Reshape": _reshape, "Squeeze": _squeeze, "Unsqueeze": _unsqueeze,
    "Transpose": _transpose, "Concat": _concat,
    "BatchNormalization": _batch_norm, "LayerNormalization": _layer_norm,
    "Softmax": _softmax, "Identity": _identity, "Dropout": _dropout,
    "Constant": _constant, "Shape": _shape, "Cast": _cast,
    "MatMulInteger": _matmul_integer, "ConvInteger": _conv_integer,
    "QLinearMatMul": _qlinear_matmul, "QLinearConv": _qlinear_conv,
    "QuantizeLinear": _quantize_linear, "DequantizeLinear": _dequantize_linear,
}

SUPPORTED_OPS = frozenset(_HANDLERS)
