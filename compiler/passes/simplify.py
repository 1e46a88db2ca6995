"""Arithmetic simplification: neutral and absorbing elements, transpose and reshape chains,
activation chains."""

from __future__ import annotations

import math

import numpy as np

from gemmstone.compiler.ir import Graph, Node
from gemmstone.compiler.ops import DType, Op

__all__ = ["simplify_arithmetic", "compose_perms", "is_size_one_shuffle"]


def simplify_arithmetic(graph: Graph) -> None:
    """Rewrite until nothing changes:

    - ``x + 0``, ``0 + x``, ``x - 0``, ``x * 1``, ``1 * x``, ``x / 1`` -> ``x`` (when the
      constant does not broadcast ``x`` to a larger shape);
    - ``x * 0`` -> zeros, for integer ``x`` only (for floats, inf * 0 and nan * 0 are nan);
    - ``transpose(transpose(x))`` -> one transpose (or ``x``); a transpose that only moves
      size-1 dims -> a reshape; ``reshape(reshape(x))`` -> one reshape (or ``x``);
    - ``relu(relu(x))`` -> ``relu(x)``, ``relu6(relu(x))`` -> ``relu6(x)``,
      ``clamp(0, inf)`` -> ``relu``, ``clamp(0, 6)`` -> ``relu6``.
    """
    changed = True
    while changed:
        changed = False
        for node in list(graph.nodes):
            rule = _RULES.get(node.op)
            if rule is not None and rule(graph, node):
                changed = True
        graph.sweep()


def compose_perms(first: tuple[int, ...], second: tuple[int, ...]) -> tuple[int, ...]:
    """The permutation of ``x.transpose(first).transpose(second)``."""
    return tuple(first[i] for i in second)


def is_size_one_shuffle(shape: tuple[int, ...], perm: tuple[int, ...]) -> bool:
    """True if transposing ``shape`` by ``perm`` keeps the order of the dims larger than 1
    (so the data in memory does not move and a reshape does the same)."""
    moved = [p for p in perm if shape[p] != 1]
    return moved == sorted(moved)


def _replace(graph: Graph, node: Node, new: Node) -> bool:
    graph.replace_uses(node, new)
    return True


def _constant_equal(node: Node, number: float) -> bool:
    return node.op is Op.CONSTANT and node.value.size > 0 and bool(np.all(node.value == number))


def _neutral(graph: Graph, node: Node) -> bool:
    a, b = node.inputs
    unit = 0 if node.op in (Op.ADD, Op.SUB) else 1
    if _constant_equal(b, unit) and node.shape == a.shape:
        return _replace(graph, node, a)
    if node.op in (Op.ADD, Op.MUL) and _constant_equal(a, unit) and node.shape == b.shape:
        return _replace(graph, node, b)
    if node.op is Op.MUL and node.dtype is not DType.FLOAT32 and (
            _constant_equal(a, 0) or _constant_equal(b, 0)):
        zeros = graph.constant(np.zeros(node.shape, node.dtype.numpy), f"{node.name}_zero",
                               before=node)
        return _replace(graph, node, zeros)
    return False


def _transpose(graph: Graph, node: Node) -> bool:
    (source,), perm = node.inputs, tuple(node.attrs["perm"])
    if source.op is Op.TRANSPOSE:
        combined = compose_perms(tuple(source.attrs["perm"]), perm)
        inner = source.inputs[0]
        if combined == tuple(range(len(combined))):
            return _replace(graph, node, inner)
        merged = graph.add(Op.TRANSPOSE, [inner], {"perm": combined}, name=node.name,
                           before=node)
        return _replace(graph, node, merged)
    if is_size_one_shuffle(source.shape, perm):
        reshape = graph.add(Op.RESHAPE, [source], {"shape": node.shape}, name=node.name,
                            before=node)
        return _replace(graph, node, reshape)
    return False


def _reshape(graph: Graph, node: Node) -> bool:
    (source,) = node.inputs
    if source.op is Op.RESHAPE:
        inner = source.inputs[0]
        if inner.shape == node.shape:
            return _replace(graph, node, inner)
        merged = graph.add(Op.RESHAPE, [inner], {"shape": node.shape}, name=node.name,
                           before=node)
        return _replace(graph, node, merged)
    return False


def _activation(graph: Graph, node: Node) -> bool:
    (source,) = node.inputs
    if node.op in (Op.RELU, Op.RELU6) and source.op is Op.RELU:
        return _replace(graph, node, graph.add(node.op, [source.inputs[0]], name=node.name,
                                               before=node))
    if node.op is Op.CLAMP and node.dtype is DType.FLOAT32:
        bounds = (node.attrs["min"], node.attrs["max"])
        op = {(0.0, math.inf): Op.RELU, (0.0, 6.0): Op.RELU6}.get(bounds)
        if op is not None:
            return _replace(graph, node, graph.add(op, [source], name=node.name, before=node))
    return False


_RULES = {
    Op.ADD: _neutral, Op.SUB: _neutral, Op.MUL: _neutral, Op.DIV: _neutral,
    Op.TRANSPOSE: _transpose, Op.RESHAPE: _reshape,
    Op.RELU: _activation, Op.RELU6: _activation, Op.CLAMP: _activation,
}
