"""Layout assignment: NHWC for the device's spatial ops, with as few layout changes as the
graph allows."""

from __future__ import annotations

import numpy as np

from gemmstone.compiler.ir import Graph, Node
from gemmstone.compiler.ops import ELEMENTWISE_BINARY, ELEMENTWISE_UNARY, LAYOUT_OPS, Op
from gemmstone.compiler.passes.mincut import INFINITE, min_cut
from gemmstone.compiler.passes.simplify import compose_perms, is_size_one_shuffle

__all__ = ["assign_layouts", "TO_NHWC", "TO_NCHW"]

TO_NHWC = (0, 2, 3, 1)
TO_NCHW = (0, 3, 1, 2)


def assign_layouts(graph: Graph) -> None:
    """Make every NCHW spatial op (convs, pools, 4-D batch norm) NHWC with the fewest
    layout changes (transposes), then clean up.

    Each 4-D value is labelled "as is" or "NHWC": spatial ops must be NHWC; graph inputs,
    outputs and ops that depend on the dims' order (reshape, softmax, ...) stay as they
    are; elementwise ops, concat and per-tensor (de)quantization may be either. A value
    costs one transpose if any consumer wants the other label, and a minimum s-t cut
    finds the labelling of least total cost (exact for this cost model). The transposes
    are then inserted (one per value and direction, shared by its consumers).

    Clean-up, until nothing changes (also before the cut, where the graph's own
    transposes would otherwise be fixed points): two transposes in a row compose (or
    vanish); a transpose that moves only size-1 dims becomes a reshape; a flatten of an
    NHWC map into a linear layer with constant weights permutes the weights instead; a
    transpose moves below an elementwise op when that saves or keeps the count.
    """
    _clean_up(graph)  # transposes already in the graph are fixed points for the cut
    nhwc = _nhwc_values(graph)
    if nhwc:
        _materialize(graph, nhwc)
        _clean_up(graph)


def _clean_up(graph: Graph) -> None:
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


def _is_activation(node: Node) -> bool:
    """A 4-D value that layout assignment may transpose."""
    return len(node.shape) == 4 and node.op not in (Op.CONSTANT, Op.OUTPUT)


def _flexible(node: Node) -> bool:
    """Ops that compute the same in either layout (after remapping their attributes)."""
    if not _is_activation(node):
        return False
    if node.op in (Op.QUANTIZE, Op.DEQUANTIZE, Op.REQUANTIZE):
        return True  # per-channel parameters follow the channel axis (see `_relabel`)
    if node.op not in ELEMENTWISE_UNARY | ELEMENTWISE_BINARY | {Op.CONCAT}:
        return False
    return all(_is_activation(v) or (v.is_constant and v.value.ndim <= 4 and node.op is not
                                     Op.CONCAT) for v in node.inputs)


def _activation_operands(node: Node) -> list[int]:
    """Operand positions whose layout follows the node's label."""
    if _wants_nhwc(node):
        if node.op in (Op.FUSED_CONV2D, Op.QCONV2D) and node.attrs["residual"]:
            return [0, len(node.inputs) - 1]
        return [0]
    if _flexible(node):
        return [i for i, v in enumerate(node.inputs) if _is_activation(v)]
    return []


def _nhwc_values(graph: Graph) -> set[int]:
    """ids of the nodes the minimum cut labels NHWC (the sink side)."""
    nodes = [n for n in graph.nodes if _is_activation(n) or n.op is Op.OUTPUT or
             any(_is_activation(v) for v in n.inputs)]
    if not any(_wants_nhwc(n) for n in nodes):
        return set()
    index = {id(n): i for i, n in enumerate(nodes)}
    source, sink = len(nodes), len(nodes) + 1
    edges: list[tuple[int, int, int]] = []
    consumers: dict[int, set[int]] = {}
    for node in nodes:
        i = index[id(node)]
        if _wants_nhwc(node):
            edges.append((i, sink, INFINITE))
        elif not _flexible(node):
            edges.append((source, i, INFINITE))
        follows = set(_activation_operands(node))
        for position, value in enumerate(node.inputs):
            if _is_activation(value):
                # An operand a node takes as is (not following its label) is wanted as is.
                target = i if position in follows else source
                consumers.setdefault(index[id(value)], set()).add(target)
    count = sink + 1
    for value, targets in consumers.items():
        # "value as is, some consumer NHWC" costs 1: value -> a (1), a -> consumers (inf);
        # "value NHWC, some consumer as is" costs 1: consumers -> b (inf), b -> value (1).
        a, b = count, count + 1
        count += 2
        edges.append((value, a, 1))
        edges.append((b, value, 1))
        for target in targets:
            edges.append((a, target, INFINITE))
            edges.append((target, b, INFINITE))
    _, as_is = min_cut(count, edges, source, sink)
    return {id(n) for n in nodes if index[id(n)] not in as_is}


def _materialize(graph: Graph, nhwc: set[int]) -> None:
    """Relabel the NHWC nodes and insert the transposes their operands need."""
    cache: dict[tuple[int, bool], Node] = {}

    def view(value: Node, want_nhwc: bool) -> Node:
        if (id(value) in nhwc) == want_nhwc:
            return value
        key = (id(value), want_nhwc)
        if key not in cache:
            # Right after the value (after the graph inputs, which stay first).
            following = graph.nodes[max(graph.index(value) + 1, len(graph.inputs))]
            cache[key] = graph.add(Op.TRANSPOSE, [value],
                                   {"perm": TO_NHWC if want_nhwc else TO_NCHW},
                                   before=following)
        return cache[key]

    for node in list(graph.nodes):
        if node.op is Op.TRANSPOSE and any(t is node for t in cache.values()):
            continue
        labelled = id(node) in nhwc
        follows = set(_activation_operands(node)) if labelled else set()
        for position, value in enumerate(node.inputs):
            if _is_activation(value):
                node.inputs[position] = view(value, position in follows)
        if labelled:
            _relabel(graph, node)
            graph.retype(node)


def _relabel(graph: Graph, node: Node) -> None:
    """Turn an NCHW node into its NHWC twin (attributes and constant operands)."""
    if node.op in LAYOUT_OPS:
        node.attrs["layout"] = "NHWC"
    elif node.op is Op.BATCH_NORM:
        node.attrs["axis"] = 3
    elif node.op in (Op.CONCAT, Op.QUANTIZE, Op.DEQUANTIZE, Op.REQUANTIZE):
        node.attrs["axis"] = TO_NCHW[node.attrs["axis"] % 4]
    elif node.op in ELEMENTWISE_BINARY:
        for position, value in enumerate(node.inputs):
            if value.is_constant:
                array = value.value.reshape((1,) * (4 - value.value.ndim) + value.value.shape)
                node.inputs[position] = graph.constant(array.transpose(TO_NHWC),
                                                       f"{value.name}_nhwc", before=node)


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
    if flat.shape != (n, c * h * w) or \
            matmul.op not in (Op.MATMUL, Op.FUSED_MATMUL, Op.QMATMUL) or \
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
    """``f(transpose(a), b)`` -> ``transpose(f(a, b'))`` (see `_operands_below`)."""
    perm = tuple(node.attrs["perm"])
    operands = _operands_below(graph, perm, user, users, broadcast=True)
    if operands is None:
        return False
    moved = graph.add(user.op, operands, user.attrs, name=user.name, before=user)
    _transpose_after(graph, user, moved, perm)
    return True


def _sink_concat(graph: Graph, node: Node, user: Node, users: dict) -> bool:
    """``concat(transpose(a), b, axis)`` -> ``transpose(concat(a, b', perm[axis]))``."""
    perm = tuple(node.attrs["perm"])
    operands = _operands_below(graph, perm, user, users, broadcast=False)
    if operands is None:
        return False
    axis = perm[user.attrs["axis"] % len(perm)]
    moved = graph.add(Op.CONCAT, operands, {"axis": axis}, name=user.name, before=user)
    _transpose_after(graph, user, moved, perm)
    return True


def _operands_below(graph: Graph, perm: tuple, user: Node, users: dict,
                    broadcast: bool) -> list[Node] | None:
    """For each operand ``o`` of ``user``, a node ``o'`` with ``transpose(o', perm) == o``
    that costs no new transpose: the input of a transpose by ``perm``, an existing
    transpose of ``o`` by the inverse permutation, or a constant (transposed here; with
    ``broadcast``, lower-rank constants are first padded with leading 1s). None if an
    operand has no such node, or if no operand transpose dies (nothing would be saved)."""
    if not any(_dies_with(v, user, users, perm) for v in user.inputs):
        return None
    inverse = tuple(int(i) for i in np.argsort(perm))
    plan: list[tuple[str, Node]] = []
    for operand in user.inputs:
        existing = next((u for u in users[operand] if u.op is Op.TRANSPOSE
                         and tuple(u.attrs["perm"]) == inverse), None)
        if operand.op is Op.TRANSPOSE and tuple(operand.attrs["perm"]) == perm:
            plan.append(("input", operand))
        elif existing is not None:
            plan.append(("existing", existing))
        elif operand.is_constant and (operand.value.ndim == len(perm) or
                                      (broadcast and operand.value.ndim < len(perm))):
            plan.append(("constant", operand))
        else:
            return None
    operands = []
    for kind, value in plan:
        if kind == "input":
            operands.append(value.inputs[0])
        elif kind == "existing":
            if graph.index(value) > graph.index(user):  # it only needs its input, earlier
                graph.nodes.remove(value)
                graph.nodes.insert(graph.index(user), value)
            operands.append(value)
        else:
            array = value.value.reshape((1,) * (len(perm) - value.value.ndim)
                                        + value.value.shape)
            operands.append(graph.constant(array.transpose(inverse), f"{value.name}_t",
                                           before=user))
    return operands


def _transpose_after(graph: Graph, old: Node, moved: Node, perm) -> None:
    back = graph.add(Op.TRANSPOSE, [moved], {"perm": perm}, before=old)
    graph.replace_uses(old, back)
