"""Fusion of conv/matmul + bias + residual add + activation into one accelerator op."""

from __future__ import annotations

import math

import numpy as np

from gemmstone.compiler.ir import Graph, Node
from gemmstone.compiler.ops import DType, Op

__all__ = ["fuse_accelerator_ops"]

_ACTIVATIONS = {Op.RELU: (0.0, math.inf), Op.RELU6: (0.0, 6.0)}


def fuse_accelerator_ops(graph: Graph) -> None:
    """Turn every float ``conv2d``/``matmul`` into ``fused_conv2d``/``fused_matmul`` and
    absorb the chain of single-use ops after it, in the order the array's output path
    applies them: ``add`` of a per-channel constant (bias, merged with an existing one),
    ``add`` of a same-shaped tensor (the residual, at most one), then ``relu``/``relu6``/
    ``clamp`` (which ends the chain).

    When both operands of a residual add come straight from a conv/matmul, the one with
    the longer reduction takes the add: the residual costs the array the same few passes
    over every output tile whichever op carries it, and a tile of the longer reduction
    spends longer on its products (ResNet's 3x3 convolution rather than the 1x1
    downsample beside it)."""
    for node in list(graph.nodes):
        if node.op in (Op.CONV2D, Op.MATMUL) and node.dtype is DType.FLOAT32:
            _fuse(graph, node)
    graph.sweep()


def _fuse(graph: Graph, root: Node) -> None:
    conv = root.op is Op.CONV2D
    channels = root.shape[1 if conv and root.attrs["layout"] == "NCHW" else -1]
    bias = root.inputs[2].value if len(root.inputs) == 3 and root.inputs[2].is_constant \
        else None
    bias_node = root.inputs[2] if len(root.inputs) == 3 and bias is None else None
    residual: Node | None = None
    clamp = None
    users = graph.users()
    tail = root
    while len(users[tail]) == 1 and clamp is None:
        user = users[tail][0]
        if user.op is Op.ADD:
            other = user.inputs[1] if user.inputs[0] is tail else user.inputs[0]
            per_channel = _per_channel(other, root, channels) if bias_node is None else None
            if per_channel is not None:
                bias = per_channel if bias is None else bias + per_channel
            elif residual is None and (other.shape, other.dtype) == (tail.shape, tail.dtype) \
                    and other is not tail:
                if _longer_reduction(other, root, users):
                    break  # ``other`` takes the add when it is fused
                residual = other
            else:
                break
        elif user.op in _ACTIVATIONS:
            clamp = _ACTIVATIONS[user.op]
        elif user.op is Op.CLAMP:
            clamp = (user.attrs["min"], user.attrs["max"])
        else:
            break
        tail = user
    inputs = list(root.inputs[:2])
    if bias is not None:
        bias_node = graph.constant(np.asarray(bias, np.float32), f"{root.name}_bias",
                                   before=root)
    if bias_node is not None:
        inputs.append(bias_node)
    if residual is not None:
        inputs.append(residual)
    # The root becomes the fused op (keeping its name) and moves to the tail's place: its
    # old users are all in the chain, and the residual is defined before the tail.
    root.op = Op.FUSED_CONV2D if conv else Op.FUSED_MATMUL
    root.inputs = inputs
    root.attrs = {**root.attrs, "bias": bias_node is not None,
                  "residual": residual is not None, "clamp": clamp}
    if tail is not root:
        graph.nodes.remove(root)
        graph.nodes.insert(graph.index(tail), root)
        graph.replace_uses(tail, root)


def _reduction(node: Node) -> int:
    """Products summed per output element of a float conv2d/matmul."""
    weight = node.inputs[1]
    if node.op is Op.CONV2D:
        return math.prod(weight.shape[1:])
    return weight.shape[-1 if node.attrs["transpose_b"] else -2]


def _longer_reduction(other: Node, root: Node, users: dict) -> bool:
    """Whether ``other``, the other operand of ``root``'s residual add, is a conv/matmul
    not fused yet, used only by the add, with a longer reduction than ``root``."""
    return (other.op in (Op.CONV2D, Op.MATMUL) and other.dtype is DType.FLOAT32
            and len(users[other]) == 1 and _reduction(other) > _reduction(root))


def _per_channel(node: Node, root: Node, channels: int) -> np.ndarray | None:
    """The values of a constant that adds one number per output channel of ``root``
    without broadcasting its result to a larger shape, else None."""
    if not node.is_constant or node.dtype is not root.dtype:
        return None
    value = node.value
    rank = len(root.shape)
    if value.ndim > rank:
        return None
    shape = (1,) * (rank - value.ndim) + value.shape
    axis = 1 if root.op is Op.CONV2D and root.attrs["layout"] == "NCHW" else rank - 1
    if all(d == 1 for i, d in enumerate(shape) if i != axis) and shape[axis] in (1, channels):
        return np.broadcast_to(value.reshape(-1), (channels,)).astype(np.float32)
    return None
