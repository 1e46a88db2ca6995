"""PyTorch frontends: `torch.export` programs and the FX graphs `torch.compile` hands a
backend. Both end in the same ATen-level FX graph and the same converter.

The export path runs `run_decompositions` with the default table minus `KEPT_WHOLE`, so
the operators the accelerator (or a fused host kernel) implements arrive as single nodes.
The `torch.compile` path re-exports the Dynamo graph (non-strict) and then takes the same
road; the Dynamo graph's parameter and buffer inputs become constants (their values are
baked in, as in inference-mode freezing).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.export.graph_signature import InputKind, OutputKind

from gemmstone.compiler.errors import FrontendError, IRError
from gemmstone.compiler.ir import Graph, Node, format_type
from gemmstone.compiler.ops import DType, Op
from gemmstone.compiler.verify import verify

__all__ = ["KEPT_WHOLE", "decomposition_table", "from_torch", "from_exported_program",
           "from_fx", "from_pt2", "runtime_input_positions", "convertible"]

aten = torch.ops.aten

# Kept as single nodes by `run_decompositions` (the rest of the default table applies).
KEPT_WHOLE = (aten.linear.default, aten.conv2d.default, aten.conv2d.padding,
              aten.matmul.default, aten.layer_norm.default, aten.softmax.int,
              aten.gelu.default, aten.batch_norm.default, aten.adaptive_avg_pool2d.default,
              aten.max_pool2d.default, aten.flatten.using_ints)

_DTYPES = {torch.float32: DType.FLOAT32, torch.int8: DType.INT8, torch.uint8: DType.UINT8,
           torch.int32: DType.INT32, torch.int64: DType.INT64}


def decomposition_table() -> dict:
    """The default export decompositions, minus those of `KEPT_WHOLE`."""
    table = torch.export.default_decompositions()
    for op in KEPT_WHOLE:
        table.pop(op, None)
    return table


def from_torch(model: torch.nn.Module, args: Sequence[torch.Tensor], *,
               name: str | None = None) -> Graph:
    """Export ``model`` (put in eval mode) on example ``args`` and convert it."""
    model = model.eval()
    exported = torch.export.export(model, tuple(args))
    return from_exported_program(exported, name=name or type(model).__name__)


def from_exported_program(exported: torch.export.ExportedProgram, *,
                          name: str = "model") -> Graph:
    """Convert an `ExportedProgram` (decomposed here with `decomposition_table`).

    Raises
    ------
    FrontendError
        For an operator, input kind or output kind the IR has no equivalent for; the
        message names the FX node.
    """
    exported = exported.run_decompositions(decomposition_table())
    signature = exported.graph_signature
    placeholders = [n for n in exported.graph.nodes if n.op == "placeholder"]
    constants: dict[str, torch.Tensor] = {}
    for node, spec in zip(placeholders, signature.input_specs, strict=True):
        if spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
            constants[node.name] = exported.state_dict[spec.target] \
                if spec.target in exported.state_dict else exported.constants[spec.target]
        elif spec.kind is InputKind.CONSTANT_TENSOR:
            constants[node.name] = exported.constants[spec.target]
        elif spec.kind is not InputKind.USER_INPUT:
            raise FrontendError("torch", node.name, "placeholder",
                                f"input kind {spec.kind.name} is not supported")
    for spec in signature.output_specs:
        if spec.kind is OutputKind.BUFFER_MUTATION:
            raise FrontendError("torch", spec.arg.name, "output",
                                f"the program mutates buffer {spec.target!r} (training "
                                "mode? call model.eval() before exporting)")
        if spec.kind is not OutputKind.USER_OUTPUT:
            raise FrontendError("torch", spec.arg.name, "output",
                                f"output kind {spec.kind.name} is not supported")
    labels = {n.name: spec.target if spec.kind is not InputKind.USER_INPUT else n.name
              for n, spec in zip(placeholders, signature.input_specs, strict=True)}
    return _Converter(exported.graph_module, constants, labels, name).convert()


def from_pt2(path, *, name: str | None = None) -> Graph:
    """Convert an `ExportedProgram` saved with `torch.export.save` (a ``.pt2`` file)."""
    return from_exported_program(torch.export.load(path), name=name or Path(path).stem)


def from_fx(graph_module: torch.fx.GraphModule, example_inputs: Sequence, *,
            name: str = "compiled") -> Graph:
    """Convert the FX graph a `torch.compile` backend receives.

    Inputs Dynamo marks as parameters or buffers (``_dynamo_static_input_type``, or
    `torch.nn.Parameter` instances) become constants holding their example values; the
    others become graph inputs, in order.
    """
    placeholders = [n for n in graph_module.graph.nodes if n.op == "placeholder"]
    for node, value in zip(placeholders, example_inputs, strict=True):
        if not isinstance(value, torch.Tensor):
            raise FrontendError("torch", node.name, "placeholder",
                                f"input of type {type(value).__name__} is not a tensor "
                                "(dynamic shapes? compile with dynamic=False)")
    exported = torch.export.export(graph_module, tuple(example_inputs), strict=False)
    exported = exported.run_decompositions(decomposition_table())
    outer = [n for n in exported.graph.nodes if n.op == "placeholder"]
    specs = exported.graph_signature.input_specs
    user = [n for n, s in zip(outer, specs, strict=True) if s.kind is InputKind.USER_INPUT]
    for spec in exported.graph_signature.output_specs:
        # The converted graph would return the new values instead of writing them back.
        if spec.kind is not OutputKind.USER_OUTPUT:
            names = [n.name for n in user]
            target = _dynamo_label(placeholders[names.index(spec.target)].name) \
                if spec.target in names else spec.target
            raise FrontendError("torch", spec.arg.name, "output",
                                f"the graph writes to its input {target!r} in place "
                                f"({spec.kind.name})")
    constants: dict[str, torch.Tensor] = {}
    labels: dict[str, str] = {}
    for node, spec in zip(outer, specs, strict=True):
        if spec.kind is not InputKind.USER_INPUT:
            constants[node.name] = exported.constants.get(spec.target,
                                                          exported.state_dict.get(spec.target))
            labels[node.name] = spec.target
    for node, source, value in zip(user, placeholders, example_inputs, strict=True):
        labels[node.name] = _dynamo_label(source.name)
        if _is_static(source, value):
            constants[node.name] = value.detach()
    return _Converter(exported.graph_module, constants, labels, name).convert()


def runtime_input_positions(graph_module: torch.fx.GraphModule,
                            example_inputs: Sequence) -> list[int]:
    """Positions of the arguments of a Dynamo graph that `from_fx` makes graph inputs (the
    others, parameters and buffers, it bakes in as constants)."""
    placeholders = [n for n in graph_module.graph.nodes if n.op == "placeholder"]
    return [i for i, (node, value) in enumerate(zip(placeholders, example_inputs, strict=True))
            if not _is_static(node, value)]


def convertible(node: torch.fx.Node) -> str | None:
    """None if the converter has a rule for ``node`` (an ATen-level FX node) and takes the
    dtypes and static shapes of its values, else why not, worded as the converter's error.

    For splitting a graph between the compiler and the host before converting it; a node
    that passes can still be refused on conversion (for its arguments).
    """
    if node.op != "call_function":
        return "unsupported FX node kind"
    if node.target is not operator.getitem and node.target not in _HANDLERS:
        return "unsupported operator"
    for source in (node, *node.all_input_nodes):
        value = source.meta.get("val")
        for tensor in value if isinstance(value, tuple | list) else (value,):
            if not isinstance(tensor, torch.Tensor):
                continue
            if tensor.dtype not in _DTYPES:
                return f"dtype {tensor.dtype} is not supported"
            if not all(isinstance(d, int) for d in tensor.shape):
                return f"dynamic shape {list(tensor.shape)} is not supported"
    return None


def _is_static(placeholder: torch.fx.Node, value: torch.Tensor) -> bool:
    marked = placeholder.meta.get("tensor_dict", {}).get("_dynamo_static_input_type")
    return (marked is not None or getattr(value, "_dynamo_static_input_type", None) is not None
            or isinstance(value, torch.nn.Parameter))


def _dynamo_label(name: str) -> str:
    """``l_self_modules_conv_parameters_weight_`` -> ``conv_weight``, ``l_x_`` -> ``x``."""
    name = re.sub(r"^[lL]_(self_)?", "", name).rstrip("_")
    return re.sub(r"_?(modules|parameters|buffers)_", "_", name).strip("_") or "arg"


class _Skip:
    """Marker for FX nodes that produce nothing the IR needs (runtime assertions)."""


class _Converter:
    """Walks an ATen-level FX graph and builds the IR graph."""

    def __init__(self, graph_module: torch.fx.GraphModule, constants: dict[str, torch.Tensor],
                 labels: dict[str, str], name: str) -> None:
        self.module = graph_module
        self.constants = constants
        self.labels = labels
        self.graph = Graph(name)
        self.values: dict[str, object] = {}

    def convert(self) -> Graph:
        for node in self.module.graph.nodes:
            if node.op == "placeholder":
                self.values[node.name] = self._placeholder(node)
            elif node.op == "get_attr":
                tensor = getattr(self.module, node.target)
                self.values[node.name] = self._constant(tensor, node.target, node)
            elif node.op == "call_function":
                self.values[node.name] = self._call(node)
            elif node.op == "output":
                self._output(node)
            else:
                raise FrontendError("torch", node.name, node.op, "unsupported FX node kind")
        verify(self.graph)
        return self.graph

    # -- graph boundary ---------------------------------------------------------------------

    def _placeholder(self, node: torch.fx.Node) -> Node:
        label = self.labels.get(node.name, node.name)
        if node.name in self.constants:
            return self._constant(self.constants[node.name], label, node)
        value = node.meta.get("val")
        if not isinstance(value, torch.Tensor):
            raise FrontendError("torch", node.name, "placeholder",
                                f"input is a {type(value).__name__}, not a tensor")
        shape = self._static_shape(node, value)
        return self.graph.input(label, shape, self._dtype(node, value.dtype))

    def _constant(self, tensor: torch.Tensor, label: str, node: torch.fx.Node) -> Node:
        self._dtype(node, tensor.dtype)
        array = tensor.detach().cpu().contiguous().numpy().copy()
        return self.graph.constant(array, name=label.replace(".", "_"))

    def _output(self, node: torch.fx.Node) -> None:
        results = []
        for arg in torch.fx.node.map_arg(node.args[0], lambda n: n) or ():
            if not isinstance(arg, torch.fx.Node):
                raise FrontendError("torch", node.name, "output",
                                    f"output {arg!r} is not a tensor")
            results.append(self._value(node, arg))
        self.graph.output(*results)

    # -- operators --------------------------------------------------------------------------

    def _call(self, node: torch.fx.Node):
        target = node.target
        if target is operator.getitem:
            return self._getitem(node)
        handler = _HANDLERS.get(target)
        if handler is None:
            raise FrontendError("torch", node.name, str(target), "unsupported operator")
        try:
            result = handler(self, node, *self._arguments(node))
        except IRError as error:
            raise FrontendError("torch", node.name, str(target), error.reason) from None
        if isinstance(result, Node):
            self._check_meta(node, result)
        return result

    def _getitem(self, node: torch.fx.Node):
        source, index = node.args
        produced = self.values[source.name]
        if not isinstance(produced, tuple) or produced[index] is None:
            raise FrontendError("torch", node.name, "getitem",
                                f"output {index} of '{source.name}' ({source.target}) is "
                                "not supported (only its first output is)")
        return produced[index]

    def _arguments(self, node: torch.fx.Node) -> list:
        """Positional arguments completed from the schema's keywords and defaults."""
        schema = getattr(node.target, "_schema", None)
        args = list(node.args)
        if schema is None:
            return args
        for i, spec in enumerate(schema.arguments):
            if i < len(args):
                continue
            if spec.name in node.kwargs:
                args.append(node.kwargs[spec.name])
            elif spec.has_default_value():
                args.append(spec.default_value)
            elif spec.kwarg_only:
                continue
            else:
                raise FrontendError("torch", node.name, str(node.target),
                                    f"missing argument '{spec.name}'")
        return args

    def _value(self, node: torch.fx.Node, arg) -> Node:
        value = self.values.get(arg.name) if isinstance(arg, torch.fx.Node) else None
        if not isinstance(value, Node):
            raise FrontendError("torch", node.name, str(node.target),
                                f"operand {arg!r} is not a tensor the IR holds")
        return value

    def _operand(self, node: torch.fx.Node, arg, like: Node | None = None) -> Node:
        """A tensor operand, or a Python number as a scalar constant of ``like``'s dtype."""
        if isinstance(arg, torch.fx.Node):
            return self._value(node, arg)
        if isinstance(arg, int | float) and like is not None:
            return self.graph.constant(np.asarray(arg, dtype=like.dtype.numpy), "scalar")
        raise FrontendError("torch", node.name, str(node.target),
                            f"operand {arg!r} is neither a tensor nor a number")

    def _check_meta(self, node: torch.fx.Node, result: Node) -> None:
        value = node.meta.get("val")
        if isinstance(value, torch.Tensor):
            shape = self._static_shape(node, value)
            dtype = _DTYPES.get(value.dtype)
            if (shape, dtype) != (result.shape, result.dtype):
                raise FrontendError("torch", node.name, str(node.target),
                                    f"converted to {format_type(result.shape, result.dtype)}, "
                                    f"torch says {format_type(shape, dtype)}")

    @staticmethod
    def _static_shape(node: torch.fx.Node, value: torch.Tensor) -> tuple[int, ...]:
        if not all(isinstance(d, int) for d in value.shape):
            what = "placeholder" if node.op == "placeholder" else str(node.target)
            raise FrontendError("torch", node.name, what,
                                f"dynamic shape {list(value.shape)} is not supported "
                                "(export with static shapes)")
        return tuple(value.shape)

    @staticmethod
    def _dtype(node: torch.fx.Node, dtype: torch.dtype) -> DType:
        if dtype not in _DTYPES:
            raise FrontendError("torch", node.name, str(node.target),
                                f"dtype {dtype} is not supported")
        return _DTYPES[dtype]

    def add(self, op: Op, inputs: list[Node], attrs: dict | None = None,
            node: torch.fx.Node | None = None) -> Node:
        # FX names follow the ATen op; private ones (_native_batch_norm_legit...) read badly.
        name = node.name if node is not None and not node.name.startswith("_") else None
        return self.graph.add(op, inputs, attrs, name=name)


# -- handlers: (converter, fx node, *schema arguments) -> Node | tuple | _Skip ---------------

def _pair(value) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    value = list(value)
    return (value[0], value[0]) if len(value) == 1 else (value[0], value[1])


def _pads(value) -> tuple[int, int, int, int]:
    ph, pw = _pair(value)
    return ph, pw, ph, pw


def _conv(c: _Converter, node, x, w, bias, stride, padding, dilation, groups) -> Node:
    xv, wv = c._value(node, x), c._value(node, w)
    if len(xv.shape) != 4 or len(wv.shape) != 4:
        raise FrontendError("torch", node.name, str(node.target),
                            f"only 2-D convolution of batched input is supported, got input "
                            f"{list(xv.shape)} and weight {list(wv.shape)}")
    dilation = _pair(dilation)
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0, 0, 0)
        else:
            totals = [d * (k - 1) for d, k in zip(dilation, wv.shape[2:], strict=True)]
            padding = (totals[0] // 2, totals[1] // 2, totals[0] - totals[0] // 2,
                       totals[1] - totals[1] // 2)
    else:
        padding = _pads(padding)
    inputs = [xv, wv] + ([c._value(node, bias)] if bias is not None else [])
    return c.add(Op.CONV2D, inputs, {"stride": _pair(stride), "padding": padding,
                                     "dilation": dilation, "groups": groups}, node)


def _convolution(c, node, x, w, bias, stride, padding, dilation, transposed, output_padding,
                 groups) -> Node:
    if transposed:
        raise FrontendError("torch", node.name, str(node.target),
                            "transposed convolution is not supported")
    if len(stride) != 2:
        raise FrontendError("torch", node.name, str(node.target),
                            f"only 2-D convolution is supported, got {len(stride)}-D")
    return _conv(c, node, x, w, bias, stride, padding, dilation, groups)


def _linear(c, node, x, w, bias) -> Node:
    inputs = [c._value(node, x), c._value(node, w)]
    if len(inputs[1].shape) != 2:
        raise FrontendError("torch", node.name, str(node.target), "weight must be 2-D")
    if bias is not None:
        inputs.append(c._value(node, bias))
    return c.add(Op.MATMUL, inputs, {"transpose_b": True}, node)


def _matmul(c, node, a, b) -> Node:
    return c.add(Op.MATMUL, [c._value(node, a), c._value(node, b)], None, node)


def _addmm(c, node, bias, a, b, beta=1, alpha=1) -> Node:
    bias_v = c._value(node, bias)
    if beta != 1 or alpha != 1 or len(bias_v.shape) != 1:
        raise FrontendError("torch", node.name, str(node.target),
                            "only addmm with a 1-D bias and alpha = beta = 1 is supported")
    return c.add(Op.MATMUL, [c._value(node, a), c._value(node, b), bias_v], None, node)


def _binary(op: Op, reverse: bool = False) -> Callable:
    def handler(c: _Converter, node, a, b, alpha=1) -> Node:
        if isinstance(a, torch.fx.Node):
            left = c._value(node, a)
            right = c._operand(node, b, left)
        else:
            right = c._value(node, b)
            left = c._operand(node, a, right)
        if alpha != 1:
            scale = c.graph.constant(np.asarray(alpha, dtype=right.dtype.numpy), "alpha")
            right = c.add(Op.MUL, [right, scale])
        if reverse:
            left, right = right, left
        return c.add(op, [left, right], None, node)
    return handler


def _relu(c, node, x) -> Node:
    return c.add(Op.RELU, [c._value(node, x)], None, node)


def _hardtanh(c, node, x, lo=-1.0, hi=1.0) -> Node:
    if (lo, hi) == (0, 6):
        return c.add(Op.RELU6, [c._value(node, x)], None, node)
    return c.add(Op.CLAMP, [c._value(node, x)], {"min": float(lo), "max": float(hi)}, node)


def _clamp(c, node, x, lo=None, hi=None) -> Node:
    if isinstance(lo, torch.fx.Node) or isinstance(hi, torch.fx.Node):
        raise FrontendError("torch", node.name, str(node.target),
                            "tensor clamp bounds are not supported")
    lo = float("-inf") if lo is None else float(lo)
    hi = float("inf") if hi is None else float(hi)
    if (lo, hi) == (0.0, float("inf")):
        return c.add(Op.RELU, [c._value(node, x)], None, node)
    return c.add(Op.CLAMP, [c._value(node, x)], {"min": lo, "max": hi}, node)


def _gelu(c, node, x, approximate="none") -> Node:
    return c.add(Op.GELU, [c._value(node, x)], {"approximate": approximate}, node)


def _erf(c, node, x) -> Node:
    return c.add(Op.ERF, [c._value(node, x)], None, node)


def _max_pool(c, node, x, kernel, stride=(), padding=0, dilation=1, ceil_mode=False) -> Node:
    kernel = _pair(kernel)
    attrs = {"kernel": kernel, "stride": _pair(stride) if len(stride) else kernel,
             "padding": _pads(padding), "dilation": _pair(dilation), "ceil_mode": ceil_mode}
    return c.add(Op.MAX_POOL2D, [c._value(node, x)], attrs, node)


def _max_pool_with_indices(c, node, *args) -> tuple:
    return _max_pool(c, node, *args), None


def _avg_pool(c, node, x, kernel, stride=(), padding=0, ceil_mode=False,
              count_include_pad=True, divisor_override=None) -> Node:
    if divisor_override is not None:
        raise FrontendError("torch", node.name, str(node.target),
                            "divisor_override is not supported")
    kernel = _pair(kernel)
    attrs = {"kernel": kernel, "stride": _pair(stride) if len(stride) else kernel,
             "padding": _pads(padding), "ceil_mode": ceil_mode,
             "count_include_pad": count_include_pad}
    return c.add(Op.AVG_POOL2D, [c._value(node, x)], attrs, node)


def _adaptive_avg_pool(c, node, x, output_size) -> Node:
    return c.add(Op.ADAPTIVE_AVG_POOL2D, [c._value(node, x)],
                 {"output_size": _pair(output_size)}, node)


def _mean(c, node, x, dims, keepdim=False, dtype=None) -> Node:
    xv = c._value(node, x)
    rank = len(xv.shape)
    axes = tuple(sorted(d % rank for d in (dims if dims else range(rank))))
    if rank == 4 and axes == (2, 3) and keepdim:
        return c.add(Op.ADAPTIVE_AVG_POOL2D, [xv], {"output_size": (1, 1)}, node)
    return c.add(Op.MEAN, [xv], {"axes": axes, "keepdims": keepdim}, node)


def _reshape(c, node, x, *rest) -> Node:
    value = node.meta.get("val")
    shape = c._static_shape(node, value)
    return c.add(Op.RESHAPE, [c._value(node, x)], {"shape": shape}, node)


def _permute(c, node, x, dims) -> Node:
    xv = c._value(node, x)
    perm = tuple(d % len(xv.shape) for d in dims)
    return c.add(Op.TRANSPOSE, [xv], {"perm": perm}, node)


def _transpose(c, node, x, d0, d1) -> Node:
    xv = c._value(node, x)
    perm = list(range(len(xv.shape)))
    d0, d1 = d0 % len(perm), d1 % len(perm)
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return c.add(Op.TRANSPOSE, [xv], {"perm": tuple(perm)}, node)


def _t(c, node, x) -> Node:
    return _transpose(c, node, x, 0, -1)


def _cat(c, node, tensors, dim=0) -> Node:
    return c.add(Op.CONCAT, [c._value(node, t) for t in tensors], {"axis": dim}, node)


def _batch_norm_params(c, node, x: Node, weight, bias) -> tuple[Node, Node]:
    channels = x.shape[1]
    scale = c._value(node, weight) if weight is not None else \
        c.graph.constant(np.ones(channels, np.float32), "bn_scale")
    shift = c._value(node, bias) if bias is not None else \
        c.graph.constant(np.zeros(channels, np.float32), "bn_bias")
    return scale, shift


def _batch_norm_inference(c, node, x, weight, bias, mean, var, momentum, eps) -> tuple:
    xv = c._value(node, x)
    scale, shift = _batch_norm_params(c, node, xv, weight, bias)
    inputs = [xv, scale, shift, c._value(node, mean), c._value(node, var)]
    return c.add(Op.BATCH_NORM, inputs, {"eps": eps}, node), None, None


def _batch_norm(c, node, x, weight, bias, mean, var, training, momentum, eps, cudnn) -> Node:
    if training or mean is None:
        raise FrontendError("torch", node.name, str(node.target),
                            "training-mode batch norm (call model.eval() before exporting)")
    return _batch_norm_inference(c, node, x, weight, bias, mean, var, momentum, eps)[0]


def _batch_norm_training(c, node, *args) -> Node:
    raise FrontendError("torch", node.name, str(node.target),
                        "training-mode batch norm (call model.eval() before exporting)")


def _layer_norm(c, node, x, normalized_shape, weight=None, bias=None, eps=1e-5,
                cudnn=None) -> Node:
    xv = c._value(node, x)
    inputs = [xv]
    if weight is not None or bias is not None:
        shape = tuple(normalized_shape)
        inputs.append(c._value(node, weight) if weight is not None else
                      c.graph.constant(np.ones(shape, np.float32), "ln_scale"))
        if bias is not None:
            inputs.append(c._value(node, bias))
    return c.add(Op.LAYER_NORM, inputs, {"axis": -len(normalized_shape), "eps": eps}, node)


def _native_layer_norm(c, node, x, normalized_shape, weight, bias, eps) -> tuple:
    return _layer_norm(c, node, x, normalized_shape, weight, bias, eps), None, None


def _softmax(c, node, x, dim, *rest) -> Node:
    if rest and rest[0] not in (None, False):
        raise FrontendError("torch", node.name, str(node.target),
                            f"softmax with dtype/half_to_float={rest[0]!r} is not supported")
    return c.add(Op.SOFTMAX, [c._value(node, x)], {"axis": dim}, node)


def _identity(c, node, x, *rest) -> Node:
    return c.add(Op.IDENTITY, [c._value(node, x)], None, node)


def _dropout(c, node, x, p, train) -> Node:
    if train:
        raise FrontendError("torch", node.name, str(node.target),
                            "training-mode dropout (call model.eval() before exporting)")
    return _identity(c, node, x)


def _to_copy(c, node, x, *rest) -> Node:
    xv = c._value(node, x)
    value = node.meta.get("val")
    if value is not None and _DTYPES.get(value.dtype) is not xv.dtype:
        raise FrontendError("torch", node.name, str(node.target),
                            f"dtype conversion {xv.dtype.value} -> {value.dtype} is not "
                            "supported")
    return _identity(c, node, x)


def _full(c, node, *args) -> Node:
    """A tensor filled with one value, created inside the model (aten.full/zeros/ones)."""
    value = node.meta.get("val")
    dtype = c._dtype(node, value.dtype)
    fill = {"zeros": 0, "ones": 1}.get(node.target._opname, args[1] if len(args) > 1 else 0)
    array = np.full(c._static_shape(node, value), fill, dtype=dtype.numpy)
    return c.graph.constant(array, name=node.name)


def _skip(c, node, *args) -> type[_Skip]:
    return _Skip


_HANDLERS: dict = {
    aten.conv2d.default: _conv,
    aten.conv2d.padding: _conv,
    aten.convolution.default: _convolution,
    aten.linear.default: _linear,
    aten.matmul.default: _matmul,
    aten.mm.default: _matmul,
    aten.bmm.default: _matmul,
    aten.addmm.default: _addmm,
    aten.add.Tensor: _binary(Op.ADD),
    aten.add.Scalar: _binary(Op.ADD),
    aten.sub.Tensor: _binary(Op.SUB),
    aten.sub.Scalar: _binary(Op.SUB),
    aten.rsub.Scalar: _binary(Op.SUB, reverse=True),
    aten.mul.Tensor: _binary(Op.MUL),
    aten.mul.Scalar: _binary(Op.MUL),
    aten.div.Tensor: _binary(Op.DIV),
    aten.div.Scalar: _binary(Op.DIV),
    aten.relu.default: _relu,
    aten.hardtanh.default: _hardtanh,
    aten.relu6.default: lambda c, node, x: _hardtanh(c, node, x, 0, 6),
    aten.clamp.default: _clamp,
    aten.clamp_min.default: lambda c, node, x, lo: _clamp(c, node, x, lo, None),
    aten.clamp_max.default: lambda c, node, x, hi: _clamp(c, node, x, None, hi),
    aten.gelu.default: _gelu,
    aten.erf.default: _erf,
    aten.max_pool2d.default: _max_pool,
    aten.max_pool2d_with_indices.default: _max_pool_with_indices,
    aten.avg_pool2d.default: _avg_pool,
    aten.adaptive_avg_pool2d.default: _adaptive_avg_pool,
    aten._adaptive_avg_pool2d.default: _adaptive_avg_pool,
    aten.mean.dim: _mean,
    aten.view.default: _reshape,
    aten.reshape.default: _reshape,
    aten._unsafe_view.default: _reshape,
    aten.flatten.using_ints: _reshape,
    aten.unsqueeze.default: _reshape,
    aten.squeeze.dim: _reshape,
    aten.squeeze.dims: _reshape,
    aten.squeeze.default: _reshape,
    aten.permute.default: _permute,
    aten.transpose.int: _transpose,
    aten.t.default: _t,
    aten.cat.default: _cat,
    aten.batch_norm.default: _batch_norm,
    aten._native_batch_norm_legit_no_training.default: _batch_norm_inference,
    aten._native_batch_norm_legit.default: _batch_norm_training,
    aten._native_batch_norm_legit_functional.default: _batch_norm_training,
    aten.native_batch_norm.default: _batch_norm_training,
    aten.layer_norm.default: _layer_norm,
    aten.native_layer_norm.default: _native_layer_norm,
    aten.softmax.int: _softmax,
    aten._softmax.default: _softmax,
    aten.clone.default: _identity,
    aten.alias.default: _identity,
    aten.detach.default: _identity,
    aten.contiguous.default: _identity,
    aten.dropout.default: _dropout,
    aten._to_copy.default: _to_copy,
    aten.full.default: _full,
    aten.zeros.default: _full,
    aten.ones.default: _full,
    aten._assert_tensor_metadata.default: _skip,
    aten._assert_scalar.default: _skip,
}
