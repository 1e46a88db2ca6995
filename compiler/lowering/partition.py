"""Which nodes of a quantized graph run on the accelerator, and in which order.

An *accelerator op* is a ``qconv2d``/``qmatmul`` whose operands the kernels can read
(int8 activations with zero point 0, constant int8 weights, a constant int32 bias, an int8
residual) and either

- whose only user is a fixed-point int8 ``requantize`` (the STORE output stage), or
- that has no bias (a *raw* op): STORE int32 writes its accumulators and its users run
  on the host (ONNX's MatMulInteger/ConvInteger, or a float requantize that no
  fixed-point multiplier reproduces exactly; see
  `gemmstone.compiler.quantization.integer`).

Every other computing node is a *host op*, run by the interpreter's numpy kernels, with
the reason it is not on the array (`HostOp.reason`, `host_reason`); the reasons go into
the compile report.

`schedule` orders the work as alternating steps: a maximal group of accelerator ops whose
operands are ready (one program), then every host op that has become ready, and so on.
The groups are as large as the dependencies allow, so ResNet-18's convolutions form one
program, and an encoder's query, key and value projections another.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gemmstone.compiler.interpreter import _KERNELS
from gemmstone.compiler.ir import Graph, Node
from gemmstone.compiler.ops import DType, Op
from gemmstone.compiler.verify import verify

__all__ = ["LoweringError", "AcceleratorOp", "HostOp", "AcceleratorGroup", "schedule"]


class LoweringError(ValueError):
    """The graph cannot be lowered; the message names the node and the reason."""

    def __init__(self, node: Node, reason: str) -> None:
        super().__init__(f"node %{node.name} ({node.op.value}): {reason}")
        self.node, self.reason = node.name, reason


@dataclass
class AcceleratorOp:
    """``acc`` (qconv2d/qmatmul) and its fixed-point ``requantize``, or None for a raw op
    (int32 output); produces ``output.name``."""

    acc: Node
    requant: Node | None

    @property
    def output(self) -> Node:
        return self.acc if self.requant is None else self.requant

    @property
    def operands(self) -> list[Node]:
        """The activations it reads: the input and, if any, the residual."""
        values = [self.acc.inputs[0]]
        if self.acc.attrs["residual"]:
            values.append(self.acc.inputs[-1])
        return values


@dataclass
class HostOp:
    """One node run on the host; ``reason`` says why an integer op is not on the array."""

    node: Node
    reason: str = ""


@dataclass
class AcceleratorGroup:
    """Accelerator ops that become one program, in execution order."""

    ops: list[AcceleratorOp] = field(default_factory=list)


def _int8_range(values, name: str) -> str:
    array = np.asarray(values)
    if array.size and (array.min() < -128 or array.max() > 127):
        return f"{name} is outside the int8 range"
    return ""


def _requantize_problem(users: list[Node]) -> str:
    """Why the STORE output stage cannot run the requantize of an op with these users
    ("" if it can: the only user, in fixed point, to int8, int8 parameters, shifts 0..63)."""
    if len(users) != 1 or users[0].op is not Op.REQUANTIZE:
        return "its int32 result is not consumed by exactly one requantize"
    req = users[0].attrs
    if req["mode"] != "fixed":
        return "its requantize uses float scales (mode='float'), not the ISA's fixed point"
    if req["dtype"] is not DType.INT8:
        return "its requantize does not produce int8"
    for key in ("zero_point", "lo", "hi"):
        reason = _int8_range(req[key], f"requantize {key}")
        if reason:
            return reason
    shifts = np.asarray(req["shift"])
    if shifts.size and (shifts.min() < 0 or shifts.max() > 63):
        return "a requantize shift is outside 0..63"
    return ""


def fused_requantize(users: list[Node]) -> Node | None:
    """The requantize the STORE output stage runs for an op with these users, if any."""
    return None if _requantize_problem(users) else users[0]


def accelerator_reason(acc: Node, users: list[Node]) -> str:
    """Empty if ``acc`` (with its requantize if `fused_requantize` finds one, else as a
    raw int32 op) can run on the array, else why not."""
    attrs = acc.attrs
    problem = _requantize_problem(users)
    if problem and (attrs["bias"] or attrs["residual"]):
        return f"{problem}, and a raw int32 STORE adds no bias or residual"
    x, w = acc.inputs[0], acc.inputs[1]
    if x.dtype is not DType.INT8:
        return f"the input %{x.name} is {x.dtype.value}, the array reads int8"
    if not w.is_constant or w.dtype is not DType.INT8:
        return (f"the second operand %{w.name} is not a constant int8 weight (activation x "
                f"activation products run on the host)")
    zero_points = ("x_zero_point", "w_zero_point") if acc.op is Op.QCONV2D else \
        ("a_zero_point", "b_zero_point")
    if any(np.any(np.asarray(attrs[k]) != 0) for k in zero_points):
        return "non-zero input or weight zero points"
    if attrs["bias"] and not acc.inputs[2].is_constant:
        return "the bias is not a constant"
    if attrs["residual"]:
        r = acc.inputs[-1]
        if r.dtype is not DType.INT8 or r.shape != acc.shape:
            return f"the residual %{r.name} is not int8 of the output's shape"
        if not 0 <= attrs["residual_shift"] <= 63:
            return "the residual shift is outside 0..63"
    if acc.op is Op.QCONV2D:
        if attrs["layout"] != "NHWC":
            return "NCHW layout (the kernels read NHWC)"
        if tuple(attrs["dilation"]) != (1, 1):
            return "dilated convolution"
        if max(attrs["padding"]) > 255:
            return "padding above 255"
    else:
        if attrs["transpose_a"] or len(w.shape) != 2 or len(x.shape) < 2:
            return "only a [..., M, K] x constant [K, N] product runs on the array"
    return ""


def _raw_user_reason(user: Node, acc: str) -> str:
    what = {Op.REQUANTIZE: "requantizes", Op.ADD: "adds an int32 correction to",
            Op.SUB: "subtracts from", Op.CLAMP: "clamps", Op.MUL: "rescales"}.get(user.op,
                                                                                 "uses")
    tail = ""
    if user.op is Op.REQUANTIZE and user.attrs["mode"] == "fixed":
        tail = " in fixed point (exact; the result is formed on the host)"
    if user.op is Op.REQUANTIZE and user.attrs["mode"] == "float":
        tail = (" in float: no fixed-point multiplier and shift reproduce its scales exactly "
                "for every reachable accumulator")
    return f"{what} the raw int32 result of %{acc} (on the array){tail}"


def host_reason(node: Node) -> str:
    """Why a host op the integer preparation inserts runs on the host ("" for others)."""
    def offset(value: Node) -> bool:  # (de)quantize with scale 1 and zero point +-128
        zero = np.asarray(value.attrs["zero_point"]).reshape(-1)
        return (np.array_equal(np.asarray(value.attrs["scale"], np.float32).reshape(-1), [1])
                and zero.size == 1 and abs(int(zero[0])) == 128)

    if node.op is Op.DEQUANTIZE and offset(node) or node.op is Op.QUANTIZE and \
            node.inputs[0].op is Op.DEQUANTIZE and offset(node.inputs[0]):
        return "uint8 <-> int8 offset by 128 (the array reads int8)"
    if node.op is Op.TRANSPOSE and len(node.shape) == 4:
        return "layout change between the graph's NCHW and the array's NHWC"
    if node.op is Op.IM2COL:
        return ("the patches of a shallow convolution as channels, so that it runs in fewer "
                "k steps (compiler.passes.im2col)")
    if node.op is Op.CONCAT and any(v.is_constant for v in node.inputs):
        return "pads a convolution input with its zero point (the array pads with 0)"
    return ""


def schedule(graph: Graph) -> list[AcceleratorGroup | HostOp]:
    """The steps of ``graph`` (verified first), accelerator groups and host ops.

    Raises
    ------
    gemmstone.compiler.errors.VerifyError
        The graph is malformed.
    LoweringError
        A float accelerator op (the graph is not quantized) or an operator the host
        executor has no kernel for.
    """
    verify(graph)
    users = graph.users()
    units: list[AcceleratorOp | HostOp] = []
    fused = set()
    reasons: dict[str, str] = {}
    raw_origin: dict[str, str] = {}  # int32 values computed from a raw op's result
    for node in graph.nodes:
        origins = [raw_origin[v.name] for v in node.inputs if v.name in raw_origin]
        origin = origins[0] if origins else None
        if len(origins) == 2 and node.op is Op.SUB:
            reasons[node.name] = (f"subtracts the raw int32 products %{origins[0]} - "
                                  f"%{origins[1]} of the array (weights minus zero point "
                                  f"do not fit int8)")
        if origin is not None and node.op not in (Op.QCONV2D, Op.QMATMUL, Op.OUTPUT):
            reasons.setdefault(node.name, _raw_user_reason(node, origin))
            if node.dtype is DType.INT32:
                raw_origin[node.name] = origin
        if node.op in (Op.FUSED_CONV2D, Op.FUSED_MATMUL):
            raise LoweringError(node, "float accelerator op: quantize the graph first "
                                      "(compile_model does it given calibration samples)")
        if node.op in (Op.QCONV2D, Op.QMATMUL):
            reason = accelerator_reason(node, users[node])
            if not reason:
                requant = fused_requantize(users[node])
                if requant is not None:
                    fused.add(id(requant))
                else:
                    raw_origin[node.name] = node.name
                units.append(AcceleratorOp(node, requant))
                continue
            reasons[node.name] = reason
            for user in users[node]:
                if user.op is Op.REQUANTIZE:
                    reasons[user.name] = f"requantizes %{node.name}, which runs on the host"
        if node.op in (Op.INPUT, Op.CONSTANT, Op.OUTPUT) or id(node) in fused:
            continue
        if node.op not in _KERNELS:
            raise LoweringError(node, "no accelerator lowering and no host kernel")
        units.append(HostOp(node, reasons.get(node.name) or host_reason(node)))

    def produced(unit) -> Node:
        return unit.output if isinstance(unit, AcceleratorOp) else unit.node

    def deps(unit) -> list[Node]:
        nodes = unit.operands if isinstance(unit, AcceleratorOp) else unit.node.inputs
        return [v for v in nodes if v.op is not Op.CONSTANT]

    ready = {id(n) for n in graph.inputs}
    pending = list(units)
    steps: list[AcceleratorGroup | HostOp] = []
    while pending:
        group = AcceleratorGroup()
        changed = True
        while changed:
            changed = False
            for unit in list(pending):
                if isinstance(unit, AcceleratorOp) and all(id(v) in ready for v in deps(unit)):
                    group.ops.append(unit)
                    ready.add(id(produced(unit)))
                    pending.remove(unit)
                    changed = True
        if group.ops:
            steps.append(group)
        for unit in list(pending):
            if isinstance(unit, HostOp) and all(id(v) in ready for v in deps(unit)):
                steps.append(unit)
                ready.add(id(unit.node))
                pending.remove(unit)
    return steps
