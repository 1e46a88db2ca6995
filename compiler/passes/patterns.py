"""Recognition of operators that exporters spell out in elementary ops."""

from __future__ import annotations

import math

from gemmstone.compiler.ir import Graph, Node
from gemmstone.compiler.ops import Op

__all__ = ["recognize_gelu"]


def recognize_gelu(graph: Graph) -> None:
    """Replace ``x * 0.5 * (1 + erf(x / sqrt(2)))`` (any association of the three factors;
    ``x * (1 / sqrt(2))`` for the division) by ``gelu(x)``, as ONNX exporters before opset
    20 write it. Intermediate values must have no other users."""
    users = graph.users()
    for erf in [n for n in graph.nodes if n.op is Op.ERF]:
        x = _erf_argument(erf.inputs[0])
        if x is None or len(users[erf.inputs[0]]) != 1 or len(users[erf]) != 1:
            continue
        plus_one = users[erf][0]
        if plus_one.op is not Op.ADD or not _other_is(plus_one, erf, 1.0) or \
                len(users[plus_one]) != 1:
            continue
        result = _product_with(plus_one, x, users)
        if result is not None and result.shape == x.shape:
            gelu = graph.add(Op.GELU, [x], name=result.name, before=result)
            graph.replace_uses(result, gelu)
    graph.sweep()


def _scalar(node: Node, value: float) -> bool:
    return node.is_constant and node.value.size == 1 and \
        math.isclose(float(node.value.reshape(())), value, rel_tol=1e-6)


def _other_is(node: Node, operand: Node, value: float) -> bool:
    a, b = node.inputs
    other = b if a is operand else a
    return (a is operand or b is operand) and _scalar(other, value)


def _erf_argument(node: Node) -> Node | None:
    """``x`` if ``node`` is ``x / sqrt(2)`` or ``x * (1 / sqrt(2))``."""
    if node.op is Op.DIV and _scalar(node.inputs[1], math.sqrt(2.0)):
        return node.inputs[0]
    if node.op is Op.MUL:
        for x, k in (node.inputs, node.inputs[::-1]):
            if _scalar(k, 1.0 / math.sqrt(2.0)):
                return x
    return None


def _product_with(factor: Node, x: Node, users: dict) -> Node | None:
    """The node computing ``x * 0.5 * factor`` from single-use ``factor``, or None."""
    outer = users[factor][0]
    if outer.op is not Op.MUL:
        return None
    other = outer.inputs[1] if outer.inputs[0] is factor else outer.inputs[0]
    if other is x or _scalar(other, 0.5):
        # (x * factor) * 0.5   or   (0.5 * factor) * x
        if len(users[outer]) != 1:
            return None
        last = users[outer][0]
        want = (lambda n: _scalar(n, 0.5)) if other is x else (lambda n: n is x)
        if last.op is Op.MUL and any(want(v) for v in last.inputs if v is not outer):
            return last
        return None
    if other.op is Op.MUL and len(users[other]) == 1 and any(v is x for v in other.inputs) \
            and any(_scalar(v, 0.5) for v in other.inputs):
        return outer  # (x * 0.5) * factor
    return None
