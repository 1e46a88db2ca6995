"""Layout assignment: NHWC for the device's spatial ops, with as few layout changes as the
graph allows."""

from __future__ import annotations

import numpy as np

from gemmstone.compiler.ir import Graph, Node
from gemmstone.compiler.ops import ELEMENTWISE_BINARY, ELEMENTWISE_UNARY, LAYOUT_OPS, Op
from gemmstone.compiler.passes.simplify import compose_perms, is_size_one_shuffle

__all__ = ["assign_layouts", "TO_NHWC", "TO_NCHW"]

TO_NHWC = (0, 2, 3, 1)
TO_NCHW = (0, 3, 1, 2)


def assign_layouts(graph: Graph) -> None:
    """Make every NCHW spatial op (convs, pools, 4-D batch norm) NHWC, then remove the
    layout changes that brings.

    Each converted op first gets a transpose to NHWC on its activation operands and one
    back to NCHW on its result. Then, until nothing changes: two transposes in a row
    compose (and vanish when they cancel); a transpose moves below an elementwise op
    (unary; binary with a transposed or constant other operand; concat) when that does
    not add a transpose; a transpose that moves only size-1 dims becomes a reshape. What
    remains are the layout changes at the graph's boundary and around ops that need NCHW
    (reshapes of feature maps, for instance).
    """
    for node in list(graph.nodes):
        if _wants_nhwc(node):
            _convert(graph, node)
    changed = True
    while changed:
        changed = False
        users = graph.users()
        for node in list(graph.nodes):
            if node.op is Op.TRANSPOSE and users[node] and _rewrite_transpose(graph, node, users):
                changed = True
                break
        graph.sweep()


def _wants_nhwc(node: Node) -> bool:
    if node.op in LAYOUT_OPS:
        return node.attrs["layout"] == "NCHW"
    return node.op is Op.BATCH_NORM and len(node.shape) == 4 and node.attrs["axis"] % 4 == 1


def _convert(graph: Graph, node: Node) -> None:
    activations = [0]
    if node.op is Op.FUSED_CONV2D and node.attrs["residual"]:
        activations.append(len(node.inputs) - 1)
    users = [n for n in graph.nodes if any(v is node for v in n.inputs)]
    for index in activations:
        node.inputs[index] = graph.add(Op.TRANSPOSE, [node.inputs[index]],
                                       {"perm": TO_NHWC}, before=node)
    if node.op is Op.BATCH_NORM:
        node.attrs["axis"] = 3
    else:
        node.attrs["layout"] = "NHWC"
    graph.retype(node)
    following = graph.nodes[graph.index(node) + 1]
    back = graph.add(Op.TRANSPOSE, [node], {"perm": TO_NCHW}, before=following)
    # The users keep their NCHW view: `back` has the type `node` had.
    for user in users:
        user.inputs = [back if v is node else v for v in user.inputs]


def _rewrite_transpose(graph: Graph, node: Node, users: dict) -> bool:
    """Try the rewrites on transpose ``node``; True if the graph changed."""
    perm = tuple(node.attrs["perm"])
    source = node.inputs[0]
    if source.op is Op.TRANSPOSE:
        combined = compose_perms(tuple(source.attrs["perm"]), perm)
        replacement = source.inputs[0]
        if combined != tuple(range(len(combined))):
            replacement = graph.add(Op.TRANSPOSE, [replacement], {"perm": combined},
                                    before=node)
        graph.replace_uses(node, replacement)
        return True
    if is_size_one_shuffle(source.shape, perm):
        reshape = graph.add(Op.RESHAPE, [source], {"shape": node.shape}, before=node)
        graph.replace_uses(node, reshape)
        return True
    if perm == TO_NCHW and _fold_into_weights(graph, node, users):
        return True
    for user in users[node]:
        if user.op in ELEMENTWISE_UNARY or (user.op is Op.QUANTIZE and _per_tensor(user)):
            if len(users[node]) == 1:
                return _sink_unary(graph, node, user)
            continue
        sink = {Op.CONCAT: _sink_concat}.get(user.op, _sink_binary
                                              if user.op in ELEMENTWISE_BINARY else None)
        if sink is not None and sink(graph, node, user, users):
            return True
    return False


def _fold_into_weights(graph: Graph, node: Node, users: dict) -> bool:
    """``matmul(reshape(transpose(x, NHWC->NCHW), [N, C*H*W]), W)`` (a flatten before a
    linear layer) -> ``matmul(reshape(x, [N, H*W*C]), W')`` with W's rows permuted to
    the NHWC order, when W is a constant."""
    (flat,) = users[node] if len(users[node]) == 1 else (None,)
    if flat is None or flat.op is not Op.RESHAPE or len(users[flat]) != 1:
        return False
    n, h, w, c = node.inputs[0].shape
    matmul = users[flat][0]
    if flat.shape != (n, c * h * w) or matmul.op not in (Op.MATMUL, Op.FUSED_MATMUL) or \
            matmul.inputs[0] is not flat or matmul.attrs["transpose_a"] or \
            not matmul.inputs[1].is_constant:
        return False
    weight = matmul.inputs[1]
    if matmul.attrs["transpose_b"]:
        out = weight.shape[0]
        value = weight.value.reshape(out, c, h, w).transpose(0, 2, 3, 1).reshape(out, -1)
    else:
        out = weight.shape[1]
        value = weight.value.reshape(c, h, w, out).transpose(1, 2, 0, 3).reshape(-1, out)
    matmul.inputs[0] = graph.add(Op.RESHAPE, [node.inputs[0]], {"shape": flat.shape},
                                 name=flat.name, before=matmul)
    matmul.inputs[1] = graph.constant(np.ascontiguousarray(value), f"{weight.name}_nhwc",
                                      before=matmul)
    return True


def _dies_with(operand: Node, user: Node, users: dict, perm: tuple) -> bool:
    """``operand`` is a transpose by ``perm`` that only ``user`` uses."""
    return operand.op is Op.TRANSPOSE and tuple(operand.attrs["perm"]) == perm and \
        all(u is user for u in users[operand])


def _per_tensor(node: Node) -> bool:
    return np.asarray(node.attrs["scale"]).size == 1


def _sink_unary(graph: Graph, node: Node, user: Node) -> bool:
    """``u(transpose(x))`` -> ``transpose(u(x))``."""
    moved = graph.add(user.op, [node.inputs[0]], user.attrs, name=user.name, before=user)
    _transpose_after(graph, user, moved, node.attrs["perm"])
    return True


def _sink_binary(graph: Graph, node: Node, user: Node, users: dict) -> bool:
    """``f(transpose(a), transpose(b))`` or ``f(transpose(a), c)`` -> ``transpose(f(a, b'))``
    when at least one operand transpose dies, so the count does not grow."""
    perm = tuple(node.attrs["perm"])
    inverse = tuple(int(i) for i in np.argsort(perm))
    if not any(_dies_with(v, user, users, perm) for v in user.inputs):
        return False
    operands = []
    for operand in user.inputs:
        if operand.op is Op.TRANSPOSE and tuple(operand.attrs["perm"]) == perm:
            operands.append(operand.inputs[0])
        elif operand.is_constant and operand.value.ndim <= len(perm):
            value = operand.value.reshape((1,) * (len(perm) - operand.value.ndim)
                                          + operand.value.shape)
            operands.append(graph.constant(value.transpose(inverse), f"{operand.name}_t",
                                           before=user))
        else:
            return False
    moved = graph.add(user.op, operands, user.attrs, name=user.name, before=user)
    _transpose_after(graph, user, moved, perm)
    return True


def _sink_concat(graph: Graph, node: Node, user: Node, users: dict) -> bool:
    """``concat(transpose(a), transpose(b), axis)`` -> ``transpose(concat(a, b, perm[axis]))``
    when every operand is a transpose by the same permutation and one of them dies."""
    perm = tuple(node.attrs["perm"])
    if not all(v.op is Op.TRANSPOSE and tuple(v.attrs["perm"]) == perm for v in user.inputs):
        return False
    if not any(_dies_with(v, user, users, perm) for v in user.inputs):
        return False
    axis = perm[user.attrs["axis"] % len(perm)]
    moved = graph.add(Op.CONCAT, [v.inputs[0] for v in user.inputs], {"axis": axis},
                      name=user.name, before=user)
    _transpose_after(graph, user, moved, perm)
    return True


def _transpose_after(graph: Graph, old: Node, moved: Node, perm) -> None:
    back = graph.add(Op.TRANSPOSE, [moved], {"perm": perm}, before=old)
    graph.replace_uses(old, back)
