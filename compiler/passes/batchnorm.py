"""Batch-norm folding into the convolution or matmul before it."""

from __future__ import annotations

import numpy as np

from gemmstone.compiler.ir import Graph, Node
from gemmstone.compiler.ops import Op

__all__ = ["fold_batch_norms"]


def fold_batch_norms(graph: Graph) -> None:
    """``batch_norm(conv2d(x, W, b))`` -> ``conv2d(x, W', b')`` with
    ``s = gamma / sqrt(var + eps)``, ``W' = W * s`` (per output channel) and
    ``b' = (b - mean) * s + beta``; likewise for a matmul whose output channels are its last
    dim. Needs constant weights and statistics, and the conv/matmul used only by the batch
    norm. Other batch norms stay (a host op)."""
    users = graph.users()
    for node in list(graph.nodes):
        if node.op is not Op.BATCH_NORM:
            continue
        producer = node.inputs[0]
        if len(users[producer]) != 1 or not all(v.is_constant for v in node.inputs[1:]):
            continue
        if producer.op is Op.CONV2D and _conv_channel_axis(producer) == node.attrs["axis"] % 4:
            out_axis = 0
        elif producer.op is Op.MATMUL and node.attrs["axis"] % len(node.shape) == \
                len(node.shape) - 1:
            out_axis = 0 if producer.attrs["transpose_b"] else 1
        else:
            continue
        weight = producer.inputs[1]
        if not weight.is_constant or (len(producer.inputs) == 3 and
                                      not producer.inputs[2].is_constant):
            continue
        if producer.op is Op.MATMUL and len(weight.shape) != 2:
            continue
        _fold(graph, node, producer, out_axis)
    graph.sweep()


def _conv_channel_axis(conv: Node) -> int:
    return 1 if conv.attrs["layout"] == "NCHW" else 3


def _fold(graph: Graph, bn: Node, producer: Node, out_axis: int) -> None:
    gamma, beta, mean, var = (v.value.astype(np.float64) for v in bn.inputs[1:])
    scale = gamma / np.sqrt(var + bn.attrs["eps"])
    weight = producer.inputs[1].value.astype(np.float64)
    shape = [1] * weight.ndim
    shape[out_axis] = -1
    bias = producer.inputs[2].value.astype(np.float64) if len(producer.inputs) == 3 else 0.0
    new_weight = graph.constant((weight * scale.reshape(shape)).astype(np.float32),
                                f"{producer.inputs[1].name}_bn", before=producer)
    new_bias = graph.constant(((bias - mean) * scale + beta).astype(np.float32),
                              f"{bn.name}_bias", before=producer)
    producer.inputs = [producer.inputs[0], new_weight, new_bias]
    graph.replace_uses(bn, producer)
