"""`verify`: the rules every graph (frontend output, every pass output) satisfies."""

from __future__ import annotations

import numpy as np

from gemmstone.compiler.errors import IRError, VerifyError
from gemmstone.compiler.ir import Graph, format_type
from gemmstone.compiler.ops import SPECS, DType, Op
from gemmstone.compiler.shapes import infer

__all__ = ["verify"]


def verify(graph: Graph) -> None:
    """Check ``graph``; raise `VerifyError` naming the first offending node.

    Checks: unique names (SSA); every operand is a node of the graph defined earlier
    (topological order, no dangling uses); operator arity and attribute names; each node's
    recorded shape and dtype equal what its operator infers from its operands; constants
    typed by their arrays; exactly one ``OUTPUT``, last, used by nothing.
    """
    position: dict[int, int] = {}
    names: set[str] = set()
    for index, node in enumerate(graph.nodes):
        where = f"%{node.name} = {node.op.value}"
        if node.name in names:
            raise VerifyError(f"{where}: name %{node.name} is defined twice")
        names.add(node.name)
        for value in node.inputs:
            if id(value) not in position:
                defined = any(v is value for v in graph.nodes)
                reason = "defined after its use" if defined else "not in the graph"
                raise VerifyError(f"{where}: operand %{value.name} is {reason}")
            if value.op is Op.OUTPUT:
                raise VerifyError(f"{where}: uses the output node as an operand")
        _check_signature(node, where)
        if node.op is Op.OUTPUT and index != len(graph.nodes) - 1:
            raise VerifyError(f"{where}: the output node must be the last node")
        _check_type(node, where)
        position[id(node)] = index
    if not graph.nodes or graph.nodes[-1].op is not Op.OUTPUT:
        raise VerifyError(f"graph {graph.name!r} has no output node")


def _check_signature(node, where: str) -> None:
    spec = SPECS.get(node.op)
    if spec is None:
        raise VerifyError(f"{where}: unknown operator {node.op!r}")
    count = len(node.inputs)
    if count < spec.min_inputs or (spec.max_inputs is not None and count > spec.max_inputs):
        raise VerifyError(f"{where}: has {count} inputs, the operator takes "
                          f"{spec.min_inputs} to {spec.max_inputs}")
    if set(node.attrs) != set(spec.attrs):
        missing = sorted(set(spec.attrs) - set(node.attrs))
        extra = sorted(set(node.attrs) - set(spec.attrs))
        raise VerifyError(f"{where}: attributes missing {missing}, unknown {extra}")


def _check_type(node, where: str) -> None:
    recorded = format_type(node.shape, node.dtype)
    if node.op is Op.OUTPUT:
        return
    if node.op is Op.INPUT:
        if not isinstance(node.dtype, DType):
            raise VerifyError(f"{where}: dtype {node.dtype!r} is not a DType")
        return
    if node.op is Op.CONSTANT:
        value = node.attrs["value"]
        if not isinstance(value, np.ndarray):
            raise VerifyError(f"{where}: value is a {type(value).__name__}, not an ndarray")
        try:
            actual = format_type(tuple(value.shape), DType.from_numpy(value.dtype))
        except ValueError as error:
            raise VerifyError(f"{where}: {error}") from None
        if actual != recorded:
            raise VerifyError(f"{where}: recorded type {recorded}, its value is {actual}")
        return
    try:
        shape, dtype = infer(node.op, [(v.shape, v.dtype) for v in node.inputs], node.attrs)
    except IRError as error:
        raise VerifyError(f"{where}: {error}") from None
    if (tuple(node.shape), node.dtype) != (shape, dtype):
        raise VerifyError(f"{where}: recorded type {recorded}, operands give "
                          f"{format_type(shape, dtype)}")
