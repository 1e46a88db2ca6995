"""Integer ops from quantize/dequantize ("QDQ") patterns, as ONNX Runtime's quantizer
writes them: ``quantize(conv(dequantize(xq), dequantize(wq), dequantize(bq)))``."""

from __future__ import annotations

import numpy as np

from gemmstone.compiler.ir import Graph, Node
from gemmstone.compiler.ops import DType, Op

__all__ = ["fold_qdq_into_integer_ops"]

_INT8 = (DType.INT8, DType.UINT8)
_PASSTHROUGH = frozenset({Op.MAX_POOL2D, Op.RESHAPE, Op.TRANSPOSE, Op.IDENTITY})


def fold_qdq_into_integer_ops(graph: Graph) -> None:
    """Rewrite, for per-tensor activation quantization:

    - ``quantize(conv2d|matmul(dequantize(xq), dequantize(W), [dequantize(B) or b]))``
      with constant int8 weights (per-tensor or per output channel) ->
      ``requantize(qconv2d|qmatmul(xq, W, B), mode="float")``, the integer kernel ONNX
      Runtime runs for the same pattern (QLinearConv semantics);
    - ``quantize(op(dequantize(q)))`` with equal parameters, for max pool, reshape,
      transpose and identity -> ``op(q)``;
    - ``quantize(dequantize(q))`` with equal parameters -> ``q``.
    """
    users = graph.users()
    for node in list(graph.nodes):
        if node.op is not Op.QUANTIZE or not _per_tensor(node):
            continue
        source = node.inputs[0]
        if len(users[source]) != 1:
            continue
        if source.op in (Op.CONV2D, Op.MATMUL):
            _integer_op(graph, node, source)
        elif source.op in _PASSTHROUGH and _same_params(source.inputs[0], node):
            moved = graph.add(source.op, [source.inputs[0].inputs[0]], source.attrs,
                              name=source.name, before=node)
            graph.replace_uses(node, moved)
        elif _same_params(source, node):
            graph.replace_uses(node, source.inputs[0])
    graph.sweep()


def _per_tensor(node: Node) -> bool:
    return np.asarray(node.attrs["scale"]).size == 1


def _params(node: Node) -> tuple[float, int]:
    return (float(np.asarray(node.attrs["scale"]).reshape(-1)[0]),
            int(np.asarray(node.attrs["zero_point"]).reshape(-1)[0]))


def _same_params(dequantize: Node, quantize: Node) -> bool:
    """``dequantize`` undoes exactly what ``quantize`` does."""
    return (dequantize.op is Op.DEQUANTIZE and _per_tensor(dequantize)
            and dequantize.inputs[0].dtype is quantize.dtype
            and _params(dequantize) == _params(quantize))


def _dequantized_constant(node: Node, axis: int) -> tuple[np.ndarray, np.ndarray, tuple]:
    """(int8 values, float32 scales, zero points) of ``dequantize(constant)`` quantized per
    tensor or per channel along ``axis``; None if ``node`` is not that."""
    if node.op is not Op.DEQUANTIZE or not node.inputs[0].is_constant or \
            node.inputs[0].dtype not in _INT8:
        return None
    scale = np.asarray(node.attrs["scale"], np.float32).reshape(-1)
    zero = tuple(int(z) for z in np.asarray(node.attrs["zero_point"]).reshape(-1))
    if scale.size != 1 and node.attrs["axis"] % len(node.shape) != axis % len(node.shape):
        return None
    return node.inputs[0].value, scale, zero


def _integer_op(graph: Graph, quantize: Node, source: Node) -> None:
    conv = source.op is Op.CONV2D
    x = source.inputs[0]
    if x.op is not Op.DEQUANTIZE or not _per_tensor(x) or x.inputs[0].dtype not in _INT8:
        return
    if not conv and (source.attrs["transpose_a"] or len(source.inputs[1].shape) != 2):
        return
    axis = 0 if conv or source.attrs["transpose_b"] else 1
    weight = _dequantized_constant(source.inputs[1], axis)
    if weight is None:
        return
    wq, w_scale, w_zero = weight
    x_scale, x_zero = _params(x)
    # ONNX Runtime's output scale: x_scale * w_scale / y_scale, in float32.
    in_scale = np.float32(x_scale) * w_scale
    bias = _integer_bias(source, in_scale)
    if bias is False:
        return
    attrs = dict(source.attrs)
    zero_point = w_zero[0] if len(set(w_zero)) == 1 else w_zero
    if conv:
        attrs.update(x_zero_point=x_zero, w_zero_point=zero_point)
    else:
        attrs.update(a_zero_point=x_zero, b_zero_point=zero_point)
    inputs = [x.inputs[0], graph.constant(wq, source.inputs[1].inputs[0].name, before=quantize)]
    if bias is not None:
        inputs.append(graph.constant(bias, f"{source.name}_bias_q", before=quantize))
        attrs["bias"] = True
    acc = graph.add(Op.QCONV2D if conv else Op.QMATMUL, inputs, attrs, name=source.name,
                    before=quantize)
    y_scale, y_zero = _params(quantize)
    info = np.iinfo(quantize.dtype.numpy)
    channel_axis = (1 if source.attrs["layout"] == "NCHW" else 3) if conv else -1
    out = graph.add(Op.REQUANTIZE, [acc], {
        "mode": "float", "scale": (in_scale / np.float32(y_scale)).astype(np.float32),
        "zero_point": y_zero, "lo": int(info.min), "hi": int(info.max), "axis": channel_axis,
        "dtype": quantize.dtype}, name=quantize.name, before=quantize)
    graph.replace_uses(quantize, out)


def _integer_bias(source: Node, in_scale: np.ndarray):
    """The int32 bias: a dequantized int32 constant in the accumulator's scale, or a float
    constant (or a constant dequantized with another scale: exporters share one bias
    tensor between layers) rounded to it; None without bias, False if neither."""
    if len(source.inputs) < 3:
        return None
    bias = source.inputs[2]
    if bias.op is Op.DEQUANTIZE and bias.inputs[0].is_constant:
        scale = np.asarray(bias.attrs["scale"], np.float32).reshape(-1)
        zero = np.asarray(bias.attrs["zero_point"], np.int64).reshape(-1)
        quantized = bias.inputs[0].value
        if bias.inputs[0].dtype is DType.INT32 and not np.any(zero) and \
                np.allclose(scale, in_scale, rtol=1e-6):
            return quantized
        if bias.attrs["axis"] % max(quantized.ndim, 1) != 0 and scale.size > 1:
            return False
        value = (quantized.astype(np.int64) - zero).astype(np.float32) * scale
    elif bias.is_constant:
        value = bias.value
    else:
        return False
    scaled = np.rint(value.astype(np.float64) / in_scale)
    return np.clip(scaled, -(1 << 31), (1 << 31) - 1).astype(np.int32)
