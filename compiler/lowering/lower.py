"""`lower`: a quantized graph to a `CompiledModel` (programs + host plan + report)."""

from __future__ import annotations

import hashlib

import numpy as np

from gemmstone.compiler.ir import Graph
from gemmstone.compiler.lowering.compiled import CompiledModel
from gemmstone.compiler.lowering.emit import lower_group
from gemmstone.compiler.lowering.partition import AcceleratorGroup, HostOp, schedule
from gemmstone.compiler.ops import Op
from gemmstone.compiler.passes.im2col import unfold_shallow_convs
from gemmstone.compiler.verify import verify
from gemmstone.config import AcceleratorConfig

__all__ = ["lower", "graph_hash", "prepare_for_lowering", "COMPILER_VERSION"]

COMPILER_VERSION = "gemmstone-lowering-8"  # part of the cache key: bump when output changes


def graph_hash(graph: Graph) -> str:
    """SHA-256 of a graph's structure, attributes and constants."""
    digest = hashlib.sha256()

    def feed(value) -> None:
        if isinstance(value, np.ndarray):
            digest.update(f"{value.dtype.str}{value.shape}".encode())
            digest.update(np.ascontiguousarray(value).tobytes())
        elif isinstance(value, tuple | list):
            digest.update(b"(")
            for item in value:
                feed(item)
            digest.update(b")")
        else:
            digest.update(repr(value).encode() + b";")

    for node in graph.nodes:
        feed((node.name, node.op.value, [v.name for v in node.inputs], node.shape,
              node.dtype.value if node.dtype else None))
        for key in sorted(node.attrs):
            feed(key)
            feed(node.attrs[key])
    return digest.hexdigest()


def prepare_for_lowering(graph: Graph, config: AcceleratorConfig) -> Graph:
    """The graph `lower` partitions: a copy of ``graph`` with the rewrites that depend on
    the array's shape (`unfold_shallow_convs`: shallow convolutions as im2col on the host
    and a 1x1 convolution)."""
    graph = graph.copy()
    unfold_shallow_convs(graph, config.rows)
    return graph


def lower(graph: Graph, config: AcceleratorConfig, key: str = "") -> CompiledModel:
    """Lower a quantized graph (after `quantize`) for ``config``.

    Raises
    ------
    gemmstone.compiler.errors.VerifyError
        The graph is malformed.
    gemmstone.compiler.lowering.LoweringError
        A node cannot be lowered (the message names it and says why).
    """
    verify(graph)
    graph = prepare_for_lowering(graph, config)
    steps = schedule(graph)  # verifies the rewritten graph
    users: dict[str, set[int]] = {}
    for index, step in enumerate(steps):
        nodes = ([v for op in step.ops for v in op.operands] if isinstance(step, AcceleratorGroup)
                 else step.node.inputs)
        for value in nodes:
            users.setdefault(value.name, set()).add(index)
    graph_outputs = {v.name for v in graph.outputs}

    programs, plan, layers, hosts, constants = [], [], [], [], {}
    arena = arena_no_reuse = 0
    for index, step in enumerate(steps):
        if isinstance(step, HostOp):
            node = step.node
            for value in node.inputs:
                if value.op is Op.CONSTANT:
                    constants[value.name] = value.value
            plan.append({"kind": "host", "node": node.name, "op": node.op.value,
                         "inputs": [v.name for v in node.inputs], "attrs": dict(node.attrs),
                         "shape": node.shape, "dtype": node.dtype.value})
            hosts.append({"name": node.name, "op": node.op.value, "reason": step.reason})
            continue
        produced = {op.output.name for op in step.ops}
        inputs = sorted({v.name for op in step.ops for v in op.operands} - produced)
        outputs = [op.output.name for op in step.ops
                   if op.output.name in graph_outputs
                   or any(i > index for i in users.get(op.output.name, ()))]
        name = f"{graph.name}.p{len(programs)}"
        program, reports = lower_group(step, config, inputs, outputs, name)
        arena += program.buffers["#arena"].nbytes
        arena_no_reuse += sum(program.buffers[v].nbytes for v in
                              produced | set(inputs))
        for report in reports:
            report["program"] = len(programs)
        layers += reports
        plan.append({"kind": "accelerator", "program": len(programs), "inputs": inputs,
                     "outputs": outputs})
        programs.append(program)
    totals = {
        "accelerator_ops": len(layers), "host_ops": len(hosts), "programs": len(programs),
        "macs": sum(v["macs"] for v in layers), "cycles": sum(v["cycles"] for v in layers),
        "instructions": sum(len(p.words) for p in programs), "arena_bytes": arena,
        "arena_bytes_no_reuse": arena_no_reuse,
    }
    return CompiledModel(
        name=graph.name, config=config, key=key,
        inputs=[(n.name, n.shape, n.dtype.value) for n in graph.inputs],
        outputs=[v.name for v in graph.outputs], programs=programs, steps=plan,
        constants=constants, report={"layers": layers, "host": hosts, "totals": totals})
