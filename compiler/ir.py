"""The graph IR: nodes in topological order, each producing one typed value (FX style).

A `Graph` is a list of `Node` s. Every node is defined once (SSA), before its uses, and
has a static shape and an element type; ``INPUT`` nodes are the graph's inputs, ``CONSTANT``
nodes hold arrays, and one final ``OUTPUT`` node lists the graph's results. Passes edit a
graph in place through the methods here; `gemmstone.compiler.verify.verify` checks the
result. ``str(graph)`` is a readable listing::

    graph tiny(%x: f32[1,3,8,8]) {
      %w = constant : f32[8,3,3,3]
      %conv2d = conv2d(%x, %w) {padding=(1,1,1,1)} : f32[1,8,8,8]
      %relu = relu(%conv2d) : f32[1,8,8,8]
      output(%relu)
    }
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from gemmstone.compiler.errors import IRError
from gemmstone.compiler.ops import REQUIRED, SPECS, DType, Op
from gemmstone.compiler.shapes import infer

__all__ = ["Node", "Graph", "attr_key", "format_type"]


class Node:
    """One operation and the value it produces.

    Members
    -------
    name : str
        Unique within its graph; printed as ``%name``.
    op : Op
    inputs : list[Node]
        Operands, in the order the operator defines.
    attrs : dict
        Every attribute of the operator's signature (defaults filled in).
    shape : tuple[int, ...]
        Static shape of the result (``()`` for scalars and for ``OUTPUT``).
    dtype : DType or None
        Element type of the result (None for ``OUTPUT``).
    """

    __slots__ = ("name", "op", "inputs", "attrs", "shape", "dtype")

    def __init__(self, name: str, op: Op, inputs: list[Node], attrs: dict,
                 shape: tuple[int, ...], dtype: DType | None) -> None:
        self.name, self.op, self.inputs, self.attrs = name, op, inputs, attrs
        self.shape, self.dtype = shape, dtype

    @property
    def value(self) -> np.ndarray:
        """The array of a ``CONSTANT`` node."""
        if self.op is not Op.CONSTANT:
            raise IRError(f"%{self.name} is a {self.op.value}, not a constant")
        return self.attrs["value"]

    @property
    def is_constant(self) -> bool:
        return self.op is Op.CONSTANT

    def __repr__(self) -> str:
        return f"%{self.name}"


def format_type(shape: tuple[int, ...], dtype: DType | None) -> str:
    """``f32[1,3,8,8]`` style type string."""
    return f"{dtype.value if dtype else '?'}[{','.join(map(str, shape))}]"


def normalize_attr(value):
    """Attributes are stored immutable and plain: lists become tuples, numpy scalars become
    Python numbers, arrays are copied read-only."""
    if isinstance(value, np.ndarray):
        value = np.array(value)
        value.flags.writeable = False
        return value
    if isinstance(value, list | tuple):
        return tuple(normalize_attr(v) for v in value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def attr_key(attrs: dict) -> tuple:
    """A hashable key of an attribute dict (arrays by dtype, shape and bytes), for CSE."""
    def freeze(value):
        if isinstance(value, np.ndarray):
            return ("array", value.dtype.str, value.shape, value.tobytes())
        if isinstance(value, tuple):
            return tuple(freeze(v) for v in value)
        if isinstance(value, float) and math.isnan(value):
            return ("nan",)
        return value
    return tuple(sorted((k, freeze(v)) for k, v in attrs.items()))


class Graph:
    """A graph of `Node` s in topological order (see the module docstring).

    Parameters
    ----------
    name : str
        Printed in the listing header; frontends use the model's name.
    """

    def __init__(self, name: str = "graph") -> None:
        self.name = name
        self.nodes: list[Node] = []
        self._taken: set[str] = set()
        self._next: dict[str, int] = {}

    # -- construction -------------------------------------------------------------------

    def input(self, name: str, shape: Sequence[int], dtype: DType = DType.FLOAT32) -> Node:
        """Add a graph input (placed after the existing inputs)."""
        if not isinstance(dtype, DType):
            raise IRError(f"input {name!r}: dtype must be a DType, not {dtype!r}")
        shape = tuple(int(d) for d in shape)
        if any(d < 0 for d in shape):
            raise IRError(f"input {name!r}: shape {list(shape)} has a negative dimension")
        node = Node(self._fresh(name), Op.INPUT, [], {}, shape, dtype)
        position = sum(1 for n in self.nodes if n.op is Op.INPUT)
        self.nodes.insert(position, node)
        return node

    def constant(self, value, name: str = "const", *, before: Node | None = None) -> Node:
        """Add a ``CONSTANT`` holding a copy of ``value`` (an array or a number)."""
        array = np.asarray(value)
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        elif array.dtype == np.bool_:
            raise IRError(f"constant {name!r}: boolean arrays are not supported")
        return self.add(Op.CONSTANT, [], {"value": array}, name=name, before=before)

    def add(self, op: Op, inputs: Iterable[Node], attrs: dict | None = None, *,
            name: str | None = None, before: Node | None = None) -> Node:
        """Add a node; its type is inferred from its inputs.

        It goes before ``before`` if given, else before the ``OUTPUT`` node if there is one,
        else at the end.

        Raises
        ------
        IRError
            If an input is not in this graph, an attribute is unknown or missing, or the
            types do not fit the operator (the message names the new node).
        """
        inputs = list(inputs)
        base = name or op.value
        attrs = self._complete_attrs(op, dict(attrs or {}), base)
        for value in inputs:
            if not isinstance(value, Node):
                raise IRError(f"{base}: input {value!r} is not a Node")
        node = Node(self._fresh(base), op, inputs, attrs, (), None)
        if op is Op.CONSTANT:
            node.shape, node.dtype = self._constant_type(node)
        elif op is not Op.OUTPUT:
            self._check_arity(node)
            self.retype(node)
        if before is not None:
            self.nodes.insert(self.index(before), node)
        elif op is not Op.OUTPUT and self.nodes and self.nodes[-1].op is Op.OUTPUT:
            self.nodes.insert(len(self.nodes) - 1, node)
        else:
            self.nodes.append(node)
        return node

    def output(self, *values: Node) -> Node:
        """Set the graph's outputs (replacing a previous ``OUTPUT`` node)."""
        if not values:
            raise IRError("a graph needs at least one output")
        if self.nodes and self.nodes[-1].op is Op.OUTPUT:
            self.nodes.pop()
        return self.add(Op.OUTPUT, values, name="output")

    # -- queries ------------------------------------------------------------------------

    @property
    def inputs(self) -> list[Node]:
        return [n for n in self.nodes if n.op is Op.INPUT]

    @property
    def output_node(self) -> Node:
        if not self.nodes or self.nodes[-1].op is not Op.OUTPUT:
            raise IRError(f"graph {self.name!r} has no output node")
        return self.nodes[-1]

    @property
    def outputs(self) -> list[Node]:
        return list(self.output_node.inputs)

    def users(self) -> dict[Node, list[Node]]:
        """Each node's users (a user appears once per operand it takes from the node)."""
        table: dict[Node, list[Node]] = {n: [] for n in self.nodes}
        for node in self.nodes:
            for value in node.inputs:
                table.setdefault(value, []).append(node)
        return table

    def index(self, node: Node) -> int:
        for i, other in enumerate(self.nodes):
            if other is node:
                return i
        raise IRError(f"{node!r} is not in graph {self.name!r}")

    def count(self, op: Op) -> int:
        return sum(1 for n in self.nodes if n.op is op)

    def find(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise IRError(f"graph {self.name!r} has no node %{name}")

    # -- mutation -----------------------------------------------------------------------

    def retype(self, node: Node) -> None:
        """Recompute ``node``'s shape and dtype from its inputs and attributes."""
        try:
            node.shape, node.dtype = infer(node.op, [(v.shape, v.dtype) for v in node.inputs],
                                           node.attrs)
        except IRError as error:
            raise IRError(f"%{node.name} = {node.op.value}: {error}", error.reason) from None

    def replace_uses(self, old: Node, new: Node, *, users: Iterable[Node] | None = None) -> int:
        """Make every user of ``old`` (or only those in ``users``) take ``new`` instead;
        returns the number of operands changed. Types must agree."""
        if (old.shape, old.dtype) != (new.shape, new.dtype):
            raise IRError(f"cannot replace %{old.name} ({format_type(old.shape, old.dtype)}) "
                          f"by %{new.name} ({format_type(new.shape, new.dtype)})")
        targets = self.nodes if users is None else list(users)
        changed = 0
        for node in targets:
            for i, value in enumerate(node.inputs):
                if value is old and node is not new:
                    node.inputs[i] = new
                    changed += 1
        return changed

    def remove(self, node: Node) -> None:
        """Remove a node nothing uses."""
        users = [n.name for n in self.nodes if any(v is node for v in n.inputs)]
        if users:
            raise IRError(f"cannot remove %{node.name}: used by %{', %'.join(users)}")
        del self.nodes[self.index(node)]
        self._taken.discard(node.name)

    def sweep(self) -> int:
        """Remove every node the outputs do not depend on (inputs stay: they are the
        graph's signature); returns how many were removed."""
        live = {id(n) for n in self.nodes if n.op in (Op.INPUT, Op.OUTPUT)}
        for node in reversed(self.nodes):
            if id(node) in live:
                live.update(id(v) for v in node.inputs)
        dead = [n for n in self.nodes if id(n) not in live]
        self.nodes = [n for n in self.nodes if id(n) in live]
        for node in dead:
            self._taken.discard(node.name)
        return len(dead)

    def copy(self) -> Graph:
        """A copy with new nodes (constant arrays are shared: they are read-only)."""
        other = Graph(self.name)
        mapping: dict[int, Node] = {}
        for node in self.nodes:
            clone = Node(node.name, node.op, [mapping[id(v)] for v in node.inputs],
                         dict(node.attrs), node.shape, node.dtype)
            mapping[id(node)] = clone
            other.nodes.append(clone)
        other._taken = set(self._taken)
        other._next = dict(self._next)
        return other

    # -- printing -----------------------------------------------------------------------

    def __str__(self) -> str:
        params = ", ".join(f"%{n.name}: {format_type(n.shape, n.dtype)}" for n in self.inputs)
        lines = [f"graph {self.name}({params}) {{"]
        lines += [f"  {format_node(n)}" for n in self.nodes if n.op is not Op.INPUT]
        lines.append("}")
        return "\n".join(lines)

    # -- helpers ------------------------------------------------------------------------

    def _fresh(self, base: str) -> str:
        # Identifier characters and dots (ONNX's "input.1"), so listings stay readable.
        base = "".join(c if c.isalnum() or c in "_." else "_" for c in base) or "v"
        name = base
        while name in self._taken:
            self._next[base] = self._next.get(base, 0) + 1
            name = f"{base}_{self._next[base]}"
        self._taken.add(name)
        return name

    @staticmethod
    def _complete_attrs(op: Op, attrs: dict, where: str) -> dict:
        spec = SPECS[op]
        unknown = sorted(set(attrs) - set(spec.attrs))
        if unknown:
            raise IRError(f"{where}: {op.value} has no attribute {', '.join(unknown)}")
        full = {}
        for key, default in spec.attrs.items():
            if key in attrs:
                full[key] = normalize_attr(attrs[key])
            elif default is REQUIRED:
                raise IRError(f"{where}: {op.value} needs attribute '{key}'")
            else:
                full[key] = default
        return full

    @staticmethod
    def _check_arity(node: Node) -> None:
        spec = SPECS[node.op]
        count = len(node.inputs)
        if count < spec.min_inputs or (spec.max_inputs is not None and count > spec.max_inputs):
            most = "any number" if spec.max_inputs is None else spec.max_inputs
            raise IRError(f"%{node.name} = {node.op.value}: takes {spec.min_inputs} to {most} "
                          f"inputs, got {count}")

    @staticmethod
    def _constant_type(node: Node) -> tuple[tuple[int, ...], DType]:
        value = node.attrs["value"]
        try:
            return tuple(value.shape), DType.from_numpy(value.dtype)
        except ValueError as error:
            raise IRError(f"constant %{node.name}: {error}") from None


def format_node(node: Node) -> str:
    """One listing line: ``%name = op(%a, %b) {attr=value} : type``."""
    args = ", ".join(f"%{v.name}" for v in node.inputs)
    if node.op is Op.OUTPUT:
        return f"output({args})"
    spec = SPECS[node.op].attrs
    shown = {k: v for k, v in node.attrs.items()
             if k == "value" or spec[k] is REQUIRED or not _same_attr(v, spec[k])}
    if node.op is Op.CONSTANT and node.attrs["value"].size > 8:
        shown.pop("value")
    text = f"%{node.name} = {node.op.value}"
    if node.inputs:
        text += f"({args})"
    if shown:
        text += " {" + ", ".join(f"{k}={_format_attr(v)}" for k, v in shown.items()) + "}"
    return f"{text} : {format_type(node.shape, node.dtype)}"


def _same_attr(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return False
    return a == b


def _format_attr(value) -> str:
    if isinstance(value, np.ndarray):
        if value.size <= 8:
            text = np.array2string(value.reshape(-1) if value.ndim else value, separator=",",
                                   precision=6)
            return text.replace("\n", "").replace(" ", "")
        return f"<{format_type(value.shape, DType.from_numpy(value.dtype))}>"
    if isinstance(value, DType):
        return value.value
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "(" + ",".join(_format_attr(v) for v in value) + ")"
    return repr(value) if isinstance(value, str) else str(value)
