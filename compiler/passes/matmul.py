"""Transpose folding into matmul."""

from __future__ import annotations

from gemmstone.compiler.ir import Graph
from gemmstone.compiler.ops import Op

__all__ = ["fold_transposes_into_matmul"]

_MATMULS = frozenset({Op.MATMUL, Op.FUSED_MATMUL, Op.QMATMUL})


def fold_transposes_into_matmul(graph: Graph) -> None:
    """``matmul(transpose(a), b)`` with a transpose that swaps the last two dims becomes
    ``matmul(a, b, transpose_a=not transpose_a)``; likewise for ``b``. The array reads either
    orientation, so the transpose never materializes."""
    for node in graph.nodes:
        if node.op not in _MATMULS:
            continue
        for index, flag in ((0, "transpose_a"), (1, "transpose_b")):
            operand = node.inputs[index]
            if operand.op is Op.TRANSPOSE and _swaps_last_two(operand.attrs["perm"]):
                node.inputs[index] = operand.inputs[0]
                node.attrs[flag] = not node.attrs[flag]
    graph.sweep()


def _swaps_last_two(perm: tuple[int, ...]) -> bool:
    rank = len(perm)
    return rank >= 2 and tuple(perm) == (*range(rank - 2), rank - 1, rank - 2)
