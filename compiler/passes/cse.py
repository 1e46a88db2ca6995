"""Common-subexpression elimination."""

from __future__ import annotations

from gemmstone.compiler.ir import Graph, attr_key
from gemmstone.compiler.ops import Op

__all__ = ["eliminate_common_subexpressions"]

_COMMUTATIVE = frozenset({Op.ADD, Op.MUL})


def eliminate_common_subexpressions(graph: Graph) -> None:
    """Merge nodes that compute the same thing: same operator, same operands (in any order
    for add and mul) and equal attributes; equal constants (dtype, shape and bytes) merge
    too. The first node in program order is kept."""
    seen: dict[tuple, object] = {}
    for node in list(graph.nodes):
        if node.op in (Op.INPUT, Op.OUTPUT):
            continue
        operands = [id(v) for v in node.inputs]
        if node.op in _COMMUTATIVE:
            operands.sort()
        key = (node.op, tuple(operands), attr_key(node.attrs))
        first = seen.setdefault(key, node)
        if first is not node:
            graph.replace_uses(node, first)
    graph.sweep()
