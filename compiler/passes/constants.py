"""Constant folding."""

from __future__ import annotations

from gemmstone.compiler.interpreter import evaluate
from gemmstone.compiler.ir import Graph
from gemmstone.compiler.ops import Op

__all__ = ["fold_constants"]

# A folded result may be larger than its operands (a broadcast); past this it stays an op.
_GROWTH_LIMIT_BYTES = 1 << 16


def fold_constants(graph: Graph) -> None:
    """Evaluate every node whose operands are all constants and make it a constant (in
    place: it keeps its name and type). Results that would be much larger than their
    operands (broadcasts) are left alone, and so are dequantized constants (integer
    weights that `fold_qdq_into_integer_ops` turns back into integer ops)."""
    for node in graph.nodes:
        # dequantize(constant) stays: it marks integer weights for the integer-op passes.
        if node.op in (Op.INPUT, Op.CONSTANT, Op.OUTPUT, Op.DEQUANTIZE) or not node.inputs:
            continue
        if not all(v.op is Op.CONSTANT for v in node.inputs):
            continue
        operands = [v.value for v in node.inputs]
        result = evaluate(node, operands)
        if result.nbytes > max(sum(a.nbytes for a in operands), _GROWTH_LIMIT_BYTES):
            continue
        result = result.copy()
        result.flags.writeable = False
        node.op, node.inputs, node.attrs = Op.CONSTANT, [], {"value": result}
    graph.sweep()
