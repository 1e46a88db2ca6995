"""Integer ops as ONNX defines them (uint8 or int8 operands, zero points, a float output
scale) rewritten into what the array runs exactly: int8 x int8 products with int32
accumulators, an int32 bias, and the STORE output stage or a raw int32 STORE.

For ``acc = sum((x - xz) * (w - wz)) + bias`` (``qconv2d``/``qmatmul`` with constant
weights):

- uint8 activations become int8 by subtracting 128 (``x' = x - 128``), which moves the
  zero point too (``xz' = xz - 128``): ``x - xz = x' - xz'``. A uint8 value an earlier
  integer op produces is produced in that int8 form directly (the requantize's zero point
  and clamp move by -128); other uint8 values (graph inputs) are converted on the host.
- weights: ``wc = w - wz`` per output channel, computed at compile time. If every ``wc``
  fits int8 it is the weight. Otherwise ``wc = w' - wz'`` (``w' = w - 128`` for uint8
  weights) and the array runs two raw products, with ``w'`` and with the constant ``wz'``,
  whose difference the host takes.
- the activation zero point: ``sum((x' - xz') * wc) = x' @ wc - xz' * colsum(wc)``: the
  second term is a per-channel constant folded into the bias. A padded convolution pads
  with ``xz`` in ONNX but the array pads with 0, so when ``xz' != 0`` the host pads the
  input with ``xz'`` first (two concats) and the array convolves without padding.
- the output: ONNX's QLinear* compute ``round_half_even(acc * s + y_zp)`` in float64 with
  ``s = float32(x_scale * w_scale / y_scale)`` (see `exact_multiplier`). When a
  multiplier and shift provably give the same integers for every accumulator the
  operands can produce, the requantize becomes the fixed-point STORE output stage and the
  whole op runs on the array. Otherwise the array stores raw int32 accumulators and the
  host adds the bias and requantizes: when ties ``acc * s = k + 1/2`` are in reach (scales
  with few mantissa bits, like 1/2), by an integer rescale that makes the IR's float mode
  round exactly as ONNX does (`_Rewriter._requantize_ties`, if ``s = m / 2**e`` with
  ``e <= 13``); else with the IR's float mode as it is (ONNX Runtime's order: float32,
  round, then add the zero point), which can differ from ONNX's reference on exact ties
  with an odd zero point or by float32 rounding.
- ``MatMulInteger``/``ConvInteger`` (int32 results): raw int32 from the array plus the
  constant correction added on the host (int32, wrapping like ONNX's int32 arithmetic).

Every rewrite is exact given that no int32 sum can overflow, which `prepare_integer_ops`
checks with a bound on |acc| per channel; an op whose bound reaches 2**31, whose weights
are not constant, or whose shape the kernels do not take stays as it is (a host op, with
the reason the partitioner gives).
"""

from __future__ import annotations

import math

import numpy as np

from gemmstone.compiler.ir import Graph, Node
from gemmstone.compiler.ops import DType, Op

__all__ = ["prepare_integer_ops", "prepare_integer_graph", "needs_integer_preparation",
           "exact_multiplier"]

_INT8 = (DType.INT8, DType.UINT8)
_PASSTHROUGH = frozenset({Op.MAX_POOL2D, Op.RESHAPE, Op.TRANSPOSE, Op.IDENTITY})
_LIMIT = 1 << 31


def exact_multiplier(scale: float, bound: int) -> tuple[int, int] | None:
    """``(mult, shift)`` whose STORE output stage
    ``clip(rshr(acc * mult, shift) + zero_point, lo, hi)`` equals ONNX's
    ``clip(round_half_even(float64(acc) * scale + zero_point), lo, hi)`` for every
    integer ``|acc| <= bound`` (``bound < 2**31``, ``scale`` a float32) and every
    ``zero_point``, ``lo``, ``hi`` in [-128, 255], or None if this cannot be proven.

    With ``scale = m / 2**e`` exactly (``m`` odd, < 2**24):

    - ``bound * scale < 1/4``: the output is always ``clip(zero_point)``; mult = 0.
    - ``e <= 0``: ``acc * scale`` is an integer; mult = ``m * 2**-e`` (if < 2**31), shift 0.
    - ``1 <= e <= 43``: only where ``|acc * scale| < 512`` can the output be unclipped
      (beyond, both sides clip, float rounding being monotone), and there the float64
      product and sum are exact (numerators below ``2**(10+e) <= 2**53``). A tie
      ``acc * scale = k + 1/2`` needs ``acc = 2**(e-1) * j`` with ``j`` odd, i.e.
      ``acc * scale = j * m / 2``: none lies in that region if ``2**(e-1) > bound`` or
      ``m >= 1024``. Without ties both roundings are round-to-nearest, which commutes
      with adding the integer zero point. mult = m, shift = e.

    Other scales (a tie in reach, or ``e > 43``) give None. A float32 scale with a full
    24-bit mantissa always passes (``m >= 2**23``) if ``e <= 43``.
    """
    scale = float(np.float32(scale))
    if not math.isfinite(scale) or scale < 0 or not 0 <= bound < _LIMIT:
        return None
    if scale == 0:
        return 0, 0
    mantissa, exponent = math.frexp(scale)
    m, e = int(mantissa * (1 << 24)), 24 - exponent  # float32: 24 significant bits
    while m % 2 == 0:
        m, e = m // 2, e - 1
    if e > 0 and 4 * bound * m < (1 << e):  # bound * scale < 1/4
        return 0, 0
    if e <= 0:
        mult = m << -e
        return (mult, 0) if mult < _LIMIT else None
    if e <= 43 and ((1 << (e - 1)) > bound or m >= 1024):
        return m, e
    return None


def needs_integer_preparation(graph: Graph) -> bool:
    """Whether ``graph`` has ONNX-style integer ops or QDQ patterns that
    `prepare_integer_graph` rewrites (a graph from `quantize` has neither)."""
    users = graph.users()
    for node in graph.nodes:
        if node.op is Op.DEQUANTIZE and node.inputs[0].is_constant:
            return True  # a QDQ weight
        if node.op in (Op.QCONV2D, Op.QMATMUL) and _needs_rewrite(node, users[node]):
            return True
    return False


def prepare_integer_graph(graph: Graph) -> None:
    """The graph passes (`gemmstone.compiler.passes.DEFAULT_PIPELINE`: QDQ folding, layout
    assignment, ...; without float fusion: float layers of a quantized graph stay host
    ops) and then `prepare_integer_ops`, in place."""
    from gemmstone.compiler.passes import DEFAULT_PIPELINE, PassManager, fuse_accelerator_ops
    from gemmstone.compiler.passes.cleanup import remove_dead_nodes
    from gemmstone.compiler.passes.cse import eliminate_common_subexpressions
    PassManager([p for p in DEFAULT_PIPELINE if p is not fuse_accelerator_ops]).run(graph)
    PassManager((prepare_integer_ops, eliminate_common_subexpressions,
                 remove_dead_nodes)).run(graph)


def _zero_points(acc: Node) -> tuple[str, str]:
    return (("x_zero_point", "w_zero_point") if acc.op is Op.QCONV2D
            else ("a_zero_point", "b_zero_point"))


def _needs_rewrite(acc: Node, users: list[Node]) -> bool:
    x, w = acc.inputs[0], acc.inputs[1]
    if x.dtype is not DType.INT8 or w.dtype is not DType.INT8:
        return True
    if any(np.any(np.asarray(acc.attrs[k]) != 0) for k in _zero_points(acc)):
        return True
    if acc.op is Op.QCONV2D and acc.attrs["layout"] != "NHWC":
        return True
    return any(u.op is Op.REQUANTIZE and u.attrs["mode"] == "float" for u in users)


def prepare_integer_ops(graph: Graph) -> None:
    """Rewrite every ``qconv2d``/``qmatmul`` with constant weights into the array's exact
    forms (see the module docstring), in place."""
    _Rewriter(graph).run()


class _Rewriter:
    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.int8: dict[str, Node] = {}  # uint8 value name -> its int8 form (value - 128)
        self.own: set[str] = set()  # the uint8 <-> int8 conversions made here

    def run(self) -> None:
        for acc in list(self.graph.nodes):
            if acc.op in (Op.QCONV2D, Op.QMATMUL):
                users = self.graph.users()[acc]
                if _needs_rewrite(acc, users) and _rewritable(acc):
                    self.rewrite(acc, users)
        self._dequantize_int8_forms()
        self.graph.sweep()

    def _dequantize_int8_forms(self) -> None:
        """``dequantize(u8, zp)`` of a value that has an int8 form ``u8 - 128`` reads the
        int8 form with zero point ``zp - 128`` (no round trip through uint8)."""
        g = self.graph
        for node in list(g.nodes):
            source = node.inputs[0] if node.op is Op.DEQUANTIZE else None
            if source is None or source.dtype is not DType.UINT8 or node.name in self.own or \
                    self._free_int8(source) is None or \
                    g.index(self.int8[source.name]) > g.index(node):
                continue
            zero = np.asarray(node.attrs["zero_point"], np.int64) - 128
            moved = g.add(Op.DEQUANTIZE, [self.int8[source.name]],
                          {**node.attrs, "zero_point": zero}, name=node.name, before=node)
            g.replace_uses(node, moved)

    # -- uint8 <-> int8 -------------------------------------------------------------------

    def _free_int8(self, value: Node) -> Node | None:
        """The int8 form of uint8 ``value`` if it exists or follows from one through max
        pools, reshapes, transposes or identities (which commute with ``- 128``)."""
        if value.name in self.int8:
            return self.int8[value.name]
        if value.op in _PASSTHROUGH and value.inputs[0].dtype is DType.UINT8:
            inner = self._free_int8(value.inputs[0])
            if inner is not None:
                self.int8[value.name] = self.graph.add(
                    value.op, [inner], value.attrs, name=f"{value.name}_i8",
                    before=self._after(value))
                return self.int8[value.name]
        return None

    def to_int8(self, value: Node) -> Node:
        if value.dtype is DType.INT8:
            return value
        if self._free_int8(value) is not None:
            return self.int8[value.name]
        g = self.graph
        if value.op is Op.QUANTIZE:  # quantize straight to the int8 form
            zero = np.asarray(value.attrs["zero_point"], np.int64) - 128
            self.int8[value.name] = g.add(Op.QUANTIZE, value.inputs, {
                **value.attrs, "zero_point": zero, "dtype": DType.INT8},
                name=f"{value.name}_i8", before=self._after(value))
        else:
            real = g.add(Op.DEQUANTIZE, [value], {"scale": np.float32(1), "zero_point": 128,
                                                  "axis": 0},
                         name=f"{value.name}_minus128", before=self._after(value))
            self.own.add(real.name)
            self.int8[value.name] = g.add(Op.QUANTIZE, [real], {
                "scale": np.float32(1), "zero_point": 0, "dtype": DType.INT8, "axis": 0},
                name=f"{value.name}_i8", before=self._after(real))
        return self.int8[value.name]

    def to_uint8(self, value: Node) -> Node:
        g = self.graph
        real = g.add(Op.DEQUANTIZE, [value], {"scale": np.float32(1), "zero_point": -128,
                                              "axis": 0},
                     name=f"{value.name}_plus128", before=self._after(value))
        self.own.add(real.name)
        return g.add(Op.QUANTIZE, [real], {"scale": np.float32(1), "zero_point": 0,
                                           "dtype": DType.UINT8, "axis": 0},
                     name=f"{value.name}_u8", before=self._after(real))

    def _after(self, node: Node) -> Node:
        return self.graph.nodes[self.graph.index(node) + 1]

    # -- one op -------------------------------------------------------------------------

    def rewrite(self, acc: Node, users: list[Node]) -> None:
        g = self.graph
        conv = acc.op is Op.QCONV2D
        x_name, w_name = _zero_points(acc)
        x = acc.inputs[0]
        xz = int(np.asarray(acc.attrs[x_name]).reshape(-1)[0])
        x_min, x_max = (0, 255) if x.dtype is DType.UINT8 else (-128, 127)
        xz8 = xz - 128 if x.dtype is DType.UINT8 else xz
        wc, w8, wz8 = _weights(acc)
        axis = (3 if acc.attrs["layout"] == "NHWC" else 1) if conv else -1
        reduce_axes = (1, 2, 3) if conv else (1,)  # wc is [N, ...] here
        colsum = wc.sum(axis=reduce_axes)
        bias = (acc.inputs[2].value.astype(np.int64) if acc.attrs["bias"]
                else np.zeros(len(colsum), np.int64))
        # |acc| and the array's partial sums, per output channel.
        bound = max(xz - x_min, x_max - xz) * np.abs(wc).sum(axis=reduce_axes) + np.abs(bias)
        split = w8 is None
        # The array's sums: x' @ wc, or x' @ w' and x' @ wz' (|x'| <= 128).
        partial = 128 * int(np.abs(wc).sum(axis=reduce_axes).max())
        if split:
            partial = max(partial, 128 * int(np.abs(w8_split(wc, wz8).astype(np.int64))
                                             .sum(axis=reduce_axes).max()),
                          128 * int(np.abs(wz8).max()) * wc[0].size)
        folded = bias - xz8 * colsum
        if bound.max() >= _LIMIT or partial >= _LIMIT or np.abs(folded).max() >= _LIMIT:
            return  # an int32 sum could overflow: leave it to the host's exact kernel

        x8 = self.to_int8(x)
        attrs = dict(acc.attrs)
        attrs.update({x_name: 0, w_name: 0, "bias": False})
        if conv and xz8 != 0 and any(attrs["padding"]):
            x8 = self._pad(x8, attrs["padding"], attrs["layout"], xz8, acc)
            attrs["padding"] = (0, 0, 0, 0)
        requant = users[0] if len(users) == 1 and users[0].op is Op.REQUANTIZE and \
            users[0].attrs["mode"] == "float" else None
        fixed = None if requant is None or split else _fixed_params(requant, bound, len(colsum))

        if fixed is not None:
            inputs = [x8, g.constant(_layout(w8, acc), f"{acc.name}_w8", before=acc)]
            if np.any(folded):
                inputs.append(g.constant(folded.astype(np.int32), f"{acc.name}_bias",
                                         before=acc))
                attrs["bias"] = True
            core = g.add(acc.op, inputs, attrs, name=f"{acc.name}_i8", before=acc)
            self._requantize_fixed(requant, core, fixed, axis)
            return

        if split:  # x' @ wc = x' @ w' - x' @ wz' (both int8), two raw products
            zeros = np.broadcast_to(wz8.reshape((-1,) + (1,) * (wc.ndim - 1)), wc.shape)
            parts = [g.add(acc.op, [x8, g.constant(_layout(arr, acc), f"{acc.name}_{tag}",
                                                   before=acc)],
                           attrs, name=f"{acc.name}_{tag}_raw", before=acc)
                     for tag, arr in (("w8", w8_split(wc, wz8)), ("wz", zeros))]
            core = g.add(Op.SUB, parts, name=f"{acc.name}_raw", before=acc)
        else:
            core = g.add(acc.op, [x8, g.constant(_layout(w8, acc), f"{acc.name}_w8",
                                                 before=acc)],
                         attrs, name=f"{acc.name}_raw", before=acc)
        if np.any(folded):
            shape = [1] * len(acc.shape)
            shape[axis] = len(folded)
            core = g.add(Op.ADD, [core, g.constant(folded.astype(np.int32).reshape(shape),
                                                   f"{acc.name}_correction", before=acc)],
                         name=f"{acc.name}_corrected", before=acc)
        if requant is not None and split:
            fixed = _fixed_params(requant, bound, len(colsum))
            if fixed is not None:  # exact on the host too (the interpreter's fixed mode)
                self._requantize_fixed(requant, core, fixed, axis, on_array=False)
                return
        if requant is not None and self._requantize_ties(requant, core, axis):
            return
        g.replace_uses(acc, core)

    def _requantize_ties(self, requant: Node, core: Node, axis: int) -> bool:
        """``requant`` (mode float) of ``core`` exactly as ONNX rounds, where ties are in
        reach: ``round_half_even(t + zp)`` with ``t = acc * m / 2**E`` equals
        ``round_half_even((acc * m + p * 2**E) / 2**E) + zp - p`` for ``p = zp & 1`` (an
        even shift commutes with half-to-even), and the interpreter's float mode computes
        that exactly when ``|acc * m + p * 2**E| < 2**24`` (float32). ``acc`` is first
        clamped to where outputs can be unclipped (``|t| <= 1025``), so that holds if
        ``E <= 13``. False (nothing changed) if the scales do not allow it."""
        g = self.graph
        attrs = requant.attrs
        channels = core.shape[axis]
        scales = np.broadcast_to(np.asarray(attrs["scale"], np.float32).reshape(-1),
                                 (channels,))
        fractions = [_mantissa(float(v)) for v in scales]
        if any(f is None for f in fractions):
            return False
        exponent = max(max(e for _, e in fractions), 0)
        mult = np.array([m << (exponent - e) for m, e in fractions], np.int64)
        zero = int(attrs["zero_point"])
        parity = zero & 1
        limit = -(-1025 * (1 << exponent) // max(int(mult.min()), 1))
        if exponent > 13 or limit * int(mult.max()) + (1 << exponent) >= 1 << 24:
            return False
        shape = [1] * len(core.shape)
        shape[axis] = channels
        clamped = g.add(Op.CLAMP, [core], {"min": float(-limit), "max": float(limit)},
                        name=f"{requant.name}_live", before=requant)
        scaled = g.add(Op.MUL, [clamped, g.constant(mult.astype(np.int32).reshape(shape),
                                                    f"{requant.name}_m", before=requant)],
                       name=f"{requant.name}_scaled", before=requant)
        if parity:
            scaled = g.add(Op.ADD, [scaled, g.constant(np.int32(1 << exponent),
                                                       f"{requant.name}_half",
                                                       before=requant)],
                           name=f"{requant.name}_odd", before=requant)
        out = g.add(Op.REQUANTIZE, [scaled], {
            **attrs, "scale": np.float32(2.0 ** -exponent), "zero_point": zero - parity,
            "axis": axis}, name=f"{requant.name}_even", before=requant)
        g.replace_uses(requant, out)
        return True

    def _pad(self, x8: Node, padding, layout: str, value: int, before: Node) -> Node:
        """``x8`` padded with ``value`` on the host: (top, left, bottom, right)."""
        g = self.graph
        h_axis, w_axis = (1, 2) if layout == "NHWC" else (2, 3)
        top, left, bottom, right = padding
        out = x8
        for axis, lo, hi in ((h_axis, top, bottom), (w_axis, left, right)):
            if not lo and not hi:
                continue
            parts = []
            for size in (lo, None, hi):
                if size is None:
                    parts.append(out)
                elif size:
                    shape = list(out.shape)
                    shape[axis] = size
                    parts.append(g.constant(np.full(shape, value, np.int8),
                                            f"{x8.name}_pad", before=before))
            out = g.add(Op.CONCAT, parts, {"axis": axis}, name=f"{x8.name}_padded",
                        before=before)
        return out

    def _requantize_fixed(self, requant: Node, core: Node, fixed, axis: int,
                          on_array: bool = True) -> None:
        """``requant`` (mode float) as a fixed-point requantize of ``core``; a uint8
        output is made int8 (value - 128) and converted back for users that need uint8."""
        g = self.graph
        mult, shift = fixed
        attrs = requant.attrs
        offset = 128 if attrs["dtype"] is DType.UINT8 and on_array else 0
        out = g.add(Op.REQUANTIZE, [core], {
            "mode": "fixed", "multiplier": mult, "shift": shift, "axis": axis,
            "zero_point": int(attrs["zero_point"]) - offset, "lo": int(attrs["lo"]) - offset,
            "hi": int(attrs["hi"]) - offset,
            "dtype": DType.INT8 if offset else attrs["dtype"]},
            name=f"{requant.name}_i8" if offset else f"{requant.name}_fixed", before=requant)
        if not offset:
            g.replace_uses(requant, out)
            return
        self.int8[requant.name] = out
        users = g.users()[requant]
        integer_users = [u for u in users if u.op in (Op.QCONV2D, Op.QMATMUL)
                         and u.inputs[0] is requant and u.inputs.count(requant) == 1
                         and _rewritable(u)]
        if len(integer_users) < len(users):
            back = self.to_uint8(out)
            self.int8[back.name] = out
            g.replace_uses(requant, back, users=[u for u in users if u not in integer_users])


def _rewritable(acc: Node) -> bool:
    """Constant weights and a shape the kernels take (else the host runs the op)."""
    x, w = acc.inputs[0], acc.inputs[1]
    if not w.is_constant or x.dtype not in _INT8 or w.dtype not in _INT8:
        return False
    if acc.attrs["residual"] or (acc.attrs["bias"] and not acc.inputs[2].is_constant):
        return False
    if np.asarray(acc.attrs[_zero_points(acc)[0]]).size != 1:
        return False
    if acc.op is Op.QCONV2D:
        return tuple(acc.attrs["dilation"]) == (1, 1) and max(acc.attrs["padding"]) <= 255
    return not acc.attrs["transpose_a"] and len(w.shape) == 2 and len(x.shape) >= 2


def _weights(acc: Node) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """``wc = w - wz`` with output channels first ([N, ...]); ``wc`` as int8 if it fits
    (else None); and ``wz'`` (the zero point of ``w'``, per channel)."""
    w = acc.inputs[1].value.astype(np.int64)
    zero = np.asarray(acc.attrs[_zero_points(acc)[1]], np.int64).reshape(-1)
    if acc.op is Op.QMATMUL and not acc.attrs["transpose_b"]:
        w = w.T  # [N, K]
    zero = np.broadcast_to(zero, (w.shape[0],))
    wc = w - zero.reshape((-1,) + (1,) * (w.ndim - 1))
    offset = 128 if acc.inputs[1].dtype is DType.UINT8 else 0
    fits = wc.min() >= -128 and wc.max() <= 127
    return wc, wc.astype(np.int8) if fits else None, zero - offset


def w8_split(wc: np.ndarray, wz8: np.ndarray) -> np.ndarray:
    """``w' = wc + wz'`` (int8: ``w`` minus its type offset)."""
    return (wc + wz8.reshape((-1,) + (1,) * (wc.ndim - 1))).astype(np.int8)


def _layout(w: np.ndarray, acc: Node) -> np.ndarray:
    """A [N, ...] weight back in the op's own weight layout."""
    w = np.asarray(w, np.int8)
    if acc.op is Op.QMATMUL and not acc.attrs["transpose_b"]:
        return np.ascontiguousarray(w.T)
    return np.ascontiguousarray(w)


def _mantissa(scale: float) -> tuple[int, int] | None:
    """``(m, e)`` with ``scale == m / 2**e`` and ``m`` odd (or ``(0, 0)`` for 0); None for
    a negative or non-finite scale."""
    if not math.isfinite(scale) or scale < 0:
        return None
    if scale == 0:
        return 0, 0
    mantissa, exponent = math.frexp(scale)
    m, e = int(mantissa * (1 << 53)), 53 - exponent
    while m % 2 == 0:
        m, e = m // 2, e - 1
    return m, e


def _fixed_params(requant: Node, bound: np.ndarray, channels: int):
    """Per-channel (multiplier, shift) int32 arrays that reproduce ``requant`` (mode
    float) exactly, or None."""
    attrs = requant.attrs
    if any(not -128 <= int(attrs[k]) <= 255 for k in ("zero_point", "lo", "hi")):
        return None
    scales = np.broadcast_to(np.asarray(attrs["scale"], np.float32).reshape(-1), (channels,))
    pairs = [exact_multiplier(float(s), int(b)) for s, b in zip(scales, bound, strict=True)]
    if any(p is None for p in pairs):
        return None
    return (np.array([p[0] for p in pairs], np.int32),
            np.array([p[1] for p in pairs], np.int32))
