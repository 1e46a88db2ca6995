"""Post-training quantization of an optimized float graph to int8 accelerator ops.

Scheme: activations per-tensor symmetric (zero point 0, ``scale = max|x| / 127`` from
calibration), weights per-channel symmetric (``scale[c] = max|w[c]| / 127``), biases int32
in the accumulator's scale ``sx * sw[c]``. Each ``fused_conv2d``/``fused_matmul`` becomes
``qconv2d``/``qmatmul`` (int32) + ``requantize`` (mode "fixed": the ISA's multiplier, shift
and round-half-up, with the activation as the clamp bounds); a residual operand is added
in the accumulator after an ALU-style rescale. Ops that commute with symmetric
quantization (max pool, relu, reshape, transpose, identity) stay in int8, and a multiply
or divide by a positive scalar only changes the scale; every other op runs in float on
the host behind ``dequantize``/``quantize`` at the boundary.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from gemmstone.compiler.ir import Graph, Node
from gemmstone.compiler.ops import DType, Op
from gemmstone.compiler.quantization.calibration import calibrate
from gemmstone.compiler.quantization.fixed_point import (
    quantize_multipliers,
    shared_shift_multipliers,
)
from gemmstone.compiler.verify import verify

__all__ = ["quantize", "quantize_graph", "QMAX"]

QMAX = 127  # symmetric int8: -128 is never produced by rounding, only by clamping
_INT32 = np.iinfo(np.int32)
_INT8_PASSTHROUGH = frozenset({Op.MAX_POOL2D, Op.RELU, Op.RESHAPE, Op.TRANSPOSE, Op.IDENTITY})


def quantize(graph: Graph, samples: Iterable[Sequence[np.ndarray]]) -> Graph:
    """Calibrate ``graph`` on ``samples`` (sequences of input arrays) and return its int8
    version (`quantize_graph`)."""
    return quantize_graph(graph, calibrate(graph, samples))


def quantize_graph(graph: Graph, ranges: dict[str, float]) -> Graph:
    """The int8 version of ``graph`` (left unchanged) given each value's calibrated range
    (largest absolute value, by node name; see `calibrate`)."""
    return _Quantizer(graph, ranges).build()


def _scale(value_range: float) -> float:
    return value_range / QMAX if value_range > 0 else 1.0


def _quantize_weight(weight: np.ndarray, axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """int8 weights and their float32 scales (per channel along ``axis``, or one)."""
    w = weight.astype(np.float64)
    if axis is None:
        peak = np.abs(w).max(keepdims=True).reshape(1)
        scales = np.where(peak > 0, peak / QMAX, 1.0)
        q = np.rint(w / scales[0])
    else:
        moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
        peak = np.abs(moved).max(axis=1)
        scales = np.where(peak > 0, peak / QMAX, 1.0)
        shape = [1] * w.ndim
        shape[axis] = -1
        q = np.rint(w / scales.reshape(shape))
    return np.clip(q, -QMAX, QMAX).astype(np.int8), scales.astype(np.float32)


class _Quantizer:
    def __init__(self, source: Graph, ranges: dict[str, float]) -> None:
        self.source = source
        self.ranges = ranges
        self.graph = Graph(f"{source.name}_int8")
        self.floats: dict[str, Node] = {}
        self.quants: dict[str, tuple[Node, float]] = {}
        self.nodes = {n.name: n for n in source.nodes}

    def build(self) -> Graph:
        for node in self.source.nodes:
            if node.op is Op.INPUT:
                self.floats[node.name] = self.graph.input(node.name, node.shape, node.dtype)
            elif node.op is Op.CONSTANT:
                continue  # created on first float use
            elif node.op is Op.OUTPUT:
                self.graph.output(*[self.float_of(v) for v in node.inputs])
            elif node.op in (Op.FUSED_CONV2D, Op.FUSED_MATMUL) and self._quantizable(node):
                self._accelerator_op(node)
            elif node.op in _INT8_PASSTHROUGH and node.inputs[0].name in self.quants:
                q, scale = self.quants[node.inputs[0].name]
                self.quants[node.name] = (self.graph.add(node.op, [q], node.attrs,
                                                         name=node.name), scale)
            elif self._rescales(node):
                # x * c or x / c for a positive scalar c: same integers, another scale.
                q, scale = self.quants[node.inputs[0].name]
                factor = float(node.inputs[1].value.reshape(()))
                self.quants[node.name] = (q, scale * factor if node.op is Op.MUL
                                          else scale / factor)
            else:
                inputs = [self.float_of(v) for v in node.inputs]
                self.floats[node.name] = self.graph.add(node.op, inputs, node.attrs,
                                                        name=node.name)
        verify(self.graph)
        return self.graph

    # -- value conversions --------------------------------------------------------------

    def float_of(self, node: Node) -> Node:
        if node.name not in self.floats:
            if node.op is Op.CONSTANT:
                self.floats[node.name] = self.graph.constant(node.value, node.name)
            else:
                q, scale = self.quants[node.name]
                self.floats[node.name] = self.graph.add(Op.DEQUANTIZE, [q], {
                    "scale": np.float32([scale]), "zero_point": np.zeros(1, np.int64)},
                    name=f"{node.name}_dq")
        return self.floats[node.name]

    def quant_of(self, node: Node) -> tuple[Node, float]:
        if node.name not in self.quants:
            scale = _scale(self.ranges.get(node.name, 0.0) if not node.is_constant
                           else float(np.abs(node.value).max(initial=0.0)))
            q = self.graph.add(Op.QUANTIZE, [self.float_of(node)], {
                "scale": np.float32([scale]), "zero_point": np.zeros(1, np.int64),
                "dtype": DType.INT8}, name=f"{node.name}_q")
            self.quants[node.name] = (q, scale)
        return self.quants[node.name]

    # -- accelerator ops ----------------------------------------------------------------

    def _rescales(self, node: Node) -> bool:
        if node.op not in (Op.MUL, Op.DIV) or node.inputs[0].name not in self.quants:
            return False
        factor = node.inputs[1]
        return factor.is_constant and factor.value.size == 1 and \
            node.shape == node.inputs[0].shape and float(factor.value.reshape(())) > 0

    @staticmethod
    def _quantizable(node: Node) -> bool:
        """Float inputs, and a constant bias (the ISA loads biases as int32 constants)."""
        return all(v.dtype is DType.FLOAT32 for v in node.inputs) and (
            not node.attrs["bias"] or node.inputs[2].is_constant)

    def _accelerator_op(self, node: Node) -> None:
        conv = node.op is Op.FUSED_CONV2D
        x, w = node.inputs[0], node.inputs[1]
        xq, sx = self.quant_of(x)
        if conv:
            wq, sw = _quantize_weight(w.value, 0)
            weight = self.graph.constant(wq, f"{w.name}_q")
            channel_axis = 1 if node.attrs["layout"] == "NCHW" else 3
        elif w.is_constant:
            axis = (0 if node.attrs["transpose_b"] else 1) if len(w.shape) == 2 else None
            wq, sw = _quantize_weight(w.value, axis)
            weight = self.graph.constant(wq, f"{w.name}_q")
            channel_axis = -1
        else:
            weight, b_scale = self.quant_of(w)
            sw = np.float32([b_scale])
            channel_axis = -1
        channels = node.shape[channel_axis]
        acc_scale = np.broadcast_to(np.float64(sx) * sw.astype(np.float64), (channels,))
        inputs = [xq, weight]
        attrs = {k: v for k, v in node.attrs.items() if k not in ("clamp", "residual")}
        if node.attrs["bias"]:
            bias = node.inputs[2].value.astype(np.float64) / acc_scale
            inputs.append(self.graph.constant(
                np.clip(np.rint(bias), _INT32.min, _INT32.max).astype(np.int32),
                f"{node.inputs[2].name}_q"))
        if node.attrs["residual"]:
            rq, sr = self.quant_of(node.inputs[-1])
            mult, shift = shared_shift_multipliers(sr / acc_scale)
            inputs.append(rq)
            attrs.update(residual=True, residual_multiplier=mult, residual_shift=shift)
        acc = self.graph.add(Op.QCONV2D if conv else Op.QMATMUL, inputs, attrs,
                             name=f"{node.name}_acc")
        sy = _scale(self.ranges.get(node.name, 0.0))
        mult, shift = quantize_multipliers(acc_scale / sy)
        lo, hi = node.attrs["clamp"] or (-math.inf, math.inf)
        lo_q = -QMAX - 1 if lo == -math.inf else max(-QMAX - 1, round(lo / sy))
        hi_q = QMAX if hi == math.inf else min(QMAX, round(hi / sy))
        out = self.graph.add(Op.REQUANTIZE, [acc], {
            "mode": "fixed", "multiplier": mult, "shift": shift, "lo": lo_q,
            "hi": max(hi_q, lo_q), "axis": channel_axis if conv else -1, "dtype": DType.INT8},
            name=node.name)
        self.quants[node.name] = (out, sy)
