"""Dead-node and identity removal."""

from __future__ import annotations

from gemmstone.compiler.ir import Graph
from gemmstone.compiler.ops import Op

__all__ = ["remove_dead_nodes", "remove_identities"]


def remove_dead_nodes(graph: Graph) -> None:
    """Remove every node the outputs do not depend on (graph inputs stay)."""
    graph.sweep()


def remove_identities(graph: Graph) -> None:
    """Bypass nodes that return their operand unchanged: ``identity``, a ``transpose``
    with the identity permutation, a ``reshape`` to the same shape, a one-operand
    ``concat``."""
    for node in list(graph.nodes):
        if _is_identity(node):
            graph.replace_uses(node, node.inputs[0])
    graph.sweep()


def _is_identity(node) -> bool:
    if node.op is Op.IDENTITY:
        return True
    if node.op is Op.TRANSPOSE:
        return tuple(node.attrs["perm"]) == tuple(range(len(node.shape)))
    if node.op is Op.RESHAPE:
        return node.shape == node.inputs[0].shape
    return node.op is Op.CONCAT and len(node.inputs) == 1
