"""One accelerator group to one `gemmstone.isa.Program`.

Activations live in one arena buffer (planned by `memory.plan_arena`), each visible as a
named view (the value's name), so the host plan passes inputs and reads outputs by name.
Weights, output stage parameters and residual multipliers are constant segments.

- ``qconv2d``: implicit GEMM (`kernels.emit_conv2d`). A grouped convolution runs as
  chunks of groups: each chunk's weight matrix is block diagonal over its groups, with as
  many groups as fit ``rows`` input and ``cols`` output channels (a depthwise 3x3 on an
  8x8 array: 8 channels per chunk, 9 k steps of 8 rows). The products outside the
  diagonal blocks are zeros the array multiplies for nothing.
- ``qmatmul``: the leading dimensions of A are rows of one GEMM; a transposed constant B
  is transposed at compile time.
- bias, requantization and clamp: LOADQ/CONFIG/STORE; a residual: LOADACC + ALU MULSHR
  (`kernels.Residual`), bit-exact with the IR's definition.
- a raw op (`AcceleratorOp.requant` None): STORE int32 writes the accumulators as they
  are into an int32 view of the arena (the host adds what follows).

The tiling of each matmul comes from `kernels.cost.choose_plan`.
"""

from __future__ import annotations

import math

import numpy as np

from gemmstone.compiler.builder import ProgramBuilder
from gemmstone.compiler.kernels.conv import conv_gather, emit_conv2d
from gemmstone.compiler.kernels.cost import choose_plan
from gemmstone.compiler.kernels.gemm import Residual, emit_tiled_matmul, pack_qparams, row_major_a
from gemmstone.compiler.lowering.memory import Lifetime, plan_arena
from gemmstone.compiler.lowering.partition import AcceleratorGroup, AcceleratorOp
from gemmstone.compiler.ops import Op
from gemmstone.config import AcceleratorConfig
from gemmstone.isa.program import Buffer, Program

__all__ = ["lower_group"]


def _channels(values, count: int, dtype=np.int64) -> np.ndarray:
    array = np.asarray(values, dtype=dtype).reshape(-1)
    return np.broadcast_to(array, (count,)).copy() if array.size == 1 else array


def lower_group(group: AcceleratorGroup, config: AcceleratorConfig, inputs: list[str],
                outputs: list[str], name: str) -> tuple[Program, list[dict]]:
    """The program of ``group``, reading the values named ``inputs`` and writing those
    named ``outputs``; and one report dict per op (MACs, tiles, estimated cycles...)."""
    ops = group.ops
    nodes = {op.output.name: op.output for op in ops}
    for op in ops:
        for value in op.operands:
            nodes.setdefault(value.name, value)
    index = {op.output.name: i for i, op in enumerate(ops)}
    last = {name: (len(ops) if name in outputs else -1) for name in nodes}
    for i, op in enumerate(ops):
        for value in op.operands:
            last[value.name] = max(last[value.name], i)
    lifetimes = [Lifetime(v, int(np.prod(nodes[v].shape)) * nodes[v].dtype.numpy.itemsize,
                          index.get(v, -1), max(last[v], index.get(v, -1))) for v in nodes]
    offsets, size = plan_arena(lifetimes)

    builder = ProgramBuilder(config)
    arena = builder.buffer("#arena", size)
    views = {v: builder.view(v, arena, nodes[v].shape, nodes[v].dtype.numpy.name,
                             offset=offsets[v]) for v in nodes}
    reports = [_emit(builder, op, views) for op in ops]
    program = builder.finish(notes={"group": name, "inputs": inputs, "outputs": outputs,
                                    "ops": [op.output.name for op in ops]})
    return program, reports


def _pads(padding) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of a qconv2d padding attribute (2 or 4 values)."""
    pads = tuple(int(v) for v in padding)
    return pads if len(pads) == 4 else (*pads, *pads)


def _emit(builder: ProgramBuilder, op: AcceleratorOp, views: dict[str, Buffer]) -> dict:
    acc, req = op.acc, op.requant
    channels = acc.shape[-1]
    raw = req is None  # a raw int32 STORE of the accumulators (no bias, no output stage)
    if not raw:
        bias = (acc.inputs[2].value.astype(np.int64) if acc.attrs["bias"]
                else np.zeros(channels, np.int64))
        mult = _channels(req.attrs["multiplier"], channels)
        shift = _channels(req.attrs["shift"], channels)
    res_mult = (_channels(acc.attrs["residual_multiplier"], channels)
                if acc.attrs["residual"] else None)
    stage = {} if raw else {"zp": int(req.attrs["zero_point"]), "lo": int(req.attrs["lo"]),
                            "hi": int(req.attrs["hi"])}
    x, out = views[acc.inputs[0].name], views[op.output.name]
    residual = views[acc.inputs[-1].name] if acc.attrs["residual"] else None
    name = op.output.name
    config = builder.config

    def constants(tag: str, lo: int, hi: int, weights: np.ndarray):
        # Rows padded to whole bus beats and column blocks: every weight line a LOAD reads
        # starts on a beat (a line across two beats costs two).
        unit = max(config.cols, config.dram_bytes_per_cycle)
        width = -(-weights.shape[1] // unit) * unit
        if width != weights.shape[1]:
            weights = np.pad(weights, ((0, 0), (0, width - weights.shape[1])))
        w = builder.buffer(f"{name}#w{tag}", weights.shape, data=weights)
        q = None if raw else builder.buffer(
            f"{name}#q{tag}", 3 * (hi - lo), "int32",
            data=pack_qparams(bias[lo:hi], mult[lo:hi], shift[lo:hi], config.cols))
        res = None
        if residual is not None:
            m = builder.buffer(f"{name}#r{tag}", hi - lo, "int32", data=res_mult[lo:hi])
            res = Residual(residual, channels, lo, m, int(acc.attrs["residual_shift"]))
        return w, q, res

    tiling = {"tiles": 0, "steps": 0, "instructions": 0, "cycles": 0, "block_m": [],
              "nbuf": [], "a_panels": []}

    def record(plan: dict, cycles: int) -> None:
        for key in ("tiles", "steps", "instructions"):
            tiling[key] += plan[key]
        tiling["cycles"] += cycles
        tiling["block_m"].append(plan["block_m"])
        tiling["nbuf"].append(plan["nbuf"])
        tiling["a_panels"].append(plan["a_panels"])

    if acc.op is Op.QCONV2D:
        weight = acc.inputs[1].value  # [Cout, C/g, KH, KW]
        cout, cin_g, kh, kw = weight.shape
        groups = acc.attrs["groups"]
        cout_g = cout // groups
        per_chunk = 1 if groups == 1 else max(1, min(config.cols // cout_g,
                                                     config.rows // cin_g))
        batch, ho, wo = acc.shape[:3]
        m = batch * ho * wo
        macs = m * cout * kh * kw * cin_g
        patches = acc.inputs[0]
        if patches.op is Op.IM2COL:  # the products of the zero channels are not counted
            macs = m * cout * math.prod(patches.attrs["kernel"]) * patches.inputs[0].shape[-1]
        for g0 in range(0, groups, per_chunk):
            g1 = min(groups, g0 + per_chunk)
            ci0, ci1, co0, co1 = g0 * cin_g, g1 * cin_g, g0 * cout_g, g1 * cout_g
            # Block-diagonal weight matrix, rows in (kh, kw, c) order.
            dense = np.zeros((kh, kw, ci1 - ci0, co1 - co0), np.int8)
            for g in range(g0, g1):
                block = weight[g * cout_g:(g + 1) * cout_g].transpose(2, 3, 1, 0)
                dense[:, :, (g - g0) * cin_g:(g - g0 + 1) * cin_g,
                      (g - g0) * cout_g:(g - g0 + 1) * cout_g] = block
            w, q, res = constants(f"{g0}", co0, co1, dense.reshape(-1, co1 - co0))
            k_sizes = [min(config.rows, ci1 - ci0 - c0) for _ in range(kh * kw)
                       for c0 in range(0, ci1 - ci0, config.rows)]
            tiling_plan = choose_plan(
                config, m=m, k_sizes=k_sizes, n=co1 - co0, spad_free=config.spad_lines,
                acc_free=config.acc_rows, residual=res is not None,
                a_gather=conv_gather(acc.inputs[0].shape[1], acc.inputs[0].shape[2], (kh, kw),
                                     tuple(acc.attrs["stride"]), _pads(acc.attrs["padding"])))
            plan = emit_conv2d(builder, x, w, out, q, kernel_size=(kh, kw),
                               stride=tuple(acc.attrs["stride"]),
                               padding=tuple(acc.attrs["padding"]),
                               block_m=tiling_plan.block_m, nbuf=tiling_plan.nbuf,
                               a_panels=tiling_plan.a_panels, in_channels=(ci0, ci1 - ci0),
                               out_col=co0, residual=res, cout=co1 - co0, **stage)
            record(plan, tiling_plan.cycles)
        kind = f"conv {kh}x{kw}/{acc.attrs['stride'][0]}" + (
            f" groups={groups}" if groups > 1 else "")
    else:
        weight = acc.inputs[1].value
        b = weight.T if acc.attrs["transpose_b"] else weight  # [K, N]
        k, n = b.shape
        m = math.prod(acc.shape[:-1])
        macs = m * k * n
        w, q, res = constants("", 0, n, np.ascontiguousarray(b))
        k_sizes = [min(config.rows, k - k0) for k0 in range(0, k, config.rows)]
        tiling_plan = choose_plan(
            config, m=m, k_sizes=k_sizes, n=n, spad_free=config.spad_lines,
            acc_free=config.acc_rows, residual=res is not None)
        plan = emit_tiled_matmul(builder, m=m, k_steps=[(i * config.rows, s) for i, s in
                                                        enumerate(k_sizes)],
                                 load_a=row_major_a(x, config.rows), w=w, out=out, qparams=q,
                                 block_m=tiling_plan.block_m, nbuf=tiling_plan.nbuf,
                                 a_panels=tiling_plan.a_panels, residual=res, n=n, **stage)
        record(plan, tiling_plan.cycles)
        kind = f"matmul {m}x{k}x{n}"
    return {"name": name, "op": acc.op.value, "kind": kind, "macs": int(macs),
            "residual": bool(acc.attrs["residual"]),
            "clamp": None if raw else [stage["lo"], stage["hi"]], "raw_int32": raw,
            **tiling}
