"""Host fallback for ``torch.compile``: a Dynamo graph the gemmstone frontend cannot take
whole still runs, the parts it can take on the device and the rest on the host.

`SplitGraph` exports the Dynamo graph to ATen (the frontend's decomposition table) and lets
PyTorch's `CapabilityBasedPartitioner` group the nodes the frontend converts
(`GemmstoneSupport`) into partitions, each a sub-`GraphModule`. Partitions without a matmul
or convolution are not worth a device round trip and stay on the host. Each remaining
partition is converted with `gemmstone.compiler.frontends.torch_fx.from_fx`; a node it
refuses (the `FrontendError` names it) joins the host side and the graph is partitioned
again; should a refusal not change the partitions, the whole graph runs on the host, with a
warning. The fused `GraphModule` is then PyTorch's own code: host nodes run as eager ATen
ops, each partition calls its compiled program.

Calibration: the first call runs the fused graph in float on the host with the calibration
samples (or the call's own inputs) and records every partition's inputs; each partition
is quantized on what it saw. Parameters and buffers are baked in at that point, as on the
whole-graph path.

Every call adds its host ops to the report (`fallback_report`).
"""

from __future__ import annotations

import collections
import copy
import operator
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch.fx.passes.infra.partitioner import CapabilityBasedPartitioner
from torch.fx.passes.operator_support import OperatorSupportBase

from gemmstone.compiler.errors import FrontendError
from gemmstone.compiler.frontends.torch_fx import (
    convertible,
    decomposition_table,
    from_fx,
    runtime_input_positions,
)
from gemmstone.compiler.ir import Graph

__all__ = ["FallbackReport", "GemmstoneSupport", "SplitGraph", "fallback_report",
           "reset_fallback_report"]

aten = torch.ops.aten

# A partition runs on the device only if it has one of these (the array's work).
_ARRAY_OPS = frozenset({aten.linear.default, aten.conv2d.default, aten.conv2d.padding,
                        aten.convolution.default, aten.matmul.default, aten.mm.default,
                        aten.bmm.default, aten.addmm.default})

Load = Callable[[Graph, list[int], list[tuple]], Callable]
"""``load(graph, positions, samples)``: compile a converted partition, calibrated on
``samples`` (its runtime inputs), and return what runs it: called with the partition's
arguments, it returns a tuple of output tensors."""


@dataclass
class FallbackReport:
    """What ``torch.compile(..., backend="gemmstone")`` left to PyTorch on the host since
    the last `reset_fallback_report`.

    Members
    -------
    host : collections.Counter
        ATen op name -> calls run by PyTorch on the host.
    reasons : dict of str to str
        ATen op name -> why it ran on the host.
    graphs : collections.Counter
        Dynamo graphs compiled, by how: ``"whole"`` (all on the gemmstone compiler),
        ``"split"`` (device partitions and host ops) or ``"host"`` (all on the host).
    """

    host: collections.Counter = field(default_factory=collections.Counter)
    reasons: dict[str, str] = field(default_factory=dict)
    graphs: collections.Counter = field(default_factory=collections.Counter)

    def text(self) -> str:
        """One line per host op: calls and reason."""
        width = max([len(n) for n in self.host] + [2])
        lines = [f"{'op':<{width}}  host calls  reason"]
        lines += [f"{n:<{width}}  {c:>10}  {self.reasons.get(n, '')}"
                  for n, c in sorted(self.host.items())]
        return "\n".join(lines)


class _State:
    report = FallbackReport()


def fallback_report() -> FallbackReport:
    """The ops ``torch.compile`` ran on the host since the last `reset_fallback_report`."""
    return _State.report


def reset_fallback_report() -> None:
    _State.report = FallbackReport()


def op_name(target) -> str:
    """``aten.cumsum.default`` -> ``cumsum`` (the eager device's report names ops alike)."""
    packet = getattr(target, "overloadpacket", None)
    return packet.__name__ if packet is not None else getattr(target, "__name__", str(target))


class GemmstoneSupport(OperatorSupportBase):
    """The ATen nodes the gemmstone frontend converts, less those in ``refused`` (node
    names `from_fx` rejected).

    Members
    -------
    reasons : dict of str to str
        Op name -> why a node of it is not supported.
    """

    def __init__(self, refused: dict[str, str]) -> None:
        self.refused = refused
        self.reasons: dict[str, str] = {}

    def is_node_supported(self, submodules, node: torch.fx.Node) -> bool:
        if node.op != "call_function":
            return False
        why = self.refused.get(node.name) or convertible(node)
        if why:
            self.reasons.setdefault(op_name(node.target), why)
        return not why


class _Partition(torch.nn.Module):
    """A partition's place in the fused graph: records its inputs in float (calibration),
    then runs its compiled program."""

    def __init__(self, module: torch.fx.GraphModule) -> None:
        super().__init__()
        self.module = module
        self.recorded: list[tuple] = []
        self.run: Callable | None = None
        self.single = not isinstance(module.graph.output_node().args[0], tuple | list)

    def forward(self, *args):
        if self.run is None:
            self.recorded.append(args)
            return self.module(*args)
        outputs = self.run(*args)
        return outputs[0] if self.single else outputs


class SplitGraph:
    """A Dynamo graph run partly on the device and partly on the host (module docstring).

    Parameters
    ----------
    graph_module : torch.fx.GraphModule
        The graph Dynamo gave the backend.
    args : sequence
        The first call's arguments (parameters and buffers among them).
    samples : list of tuple
        Calibration samples: values of the graph's runtime inputs (not its parameters).
    load : callable
        Compiles and loads one partition (`Load`).
    why : str
        Why the graph was not compiled whole (the frontend's message).
    """

    def __init__(self, graph_module: torch.fx.GraphModule, args: Sequence,
                 samples: list[tuple], load: Load, why: str) -> None:
        self.runtime = runtime_input_positions(graph_module, args)
        #: Op name -> nodes PyTorch runs on the host per call, and why.
        self.host_ops: collections.Counter = collections.Counter()
        self.reasons: dict[str, str] = {}
        self.module, self.partitions = graph_module, {}
        if _dynamic(graph_module, args):
            # An export would fix the shapes of this call, and Dynamo reuses the graph for
            # other shapes: PyTorch runs it all. Said aloud, as nothing of it is accelerated.
            why = "dynamic shapes (compile with dynamic=False to run on the device)"
            warnings.warn(f"gemmstone: a graph with {why} runs on the host", stacklevel=2)
            self._count_host(graph_module, why)
            return
        try:
            exported = torch.export.export(graph_module, tuple(args), strict=False)
            aten_module = exported.run_decompositions(decomposition_table()).module()
        except Exception as error:  # any export failure: PyTorch runs the whole graph
            self._count_host(graph_module, f"the graph could not be exported to ATen "
                                           f"({type(error).__name__}); {why}")
            return
        static = self._static_inputs(aten_module, args)
        calls = [self._with(args, index, sample) for index, sample in enumerate(samples)]
        nodes = {n.name for n in aten_module.graph.nodes}
        refused: dict[str, str] = {}
        # Every round that fails takes at least one more node of the graph out of the
        # partitions (or gives up below), and a round with none left succeeds: the graph's
        # node count bounds the rounds even if that reasoning ever breaks.
        for _ in range(len(nodes)):
            self.module = copy.deepcopy(aten_module)
            support = GemmstoneSupport(refused)
            self.partitions = self._partition(self.module, support)
            with torch.no_grad():
                for call in calls:
                    self.module(*call)
            converted, culprits = self._convert(static)
            if converted is not None:
                break
            if not any(name in nodes and name not in refused for name in culprits):
                # A name the partitioner does not know (a partition renamed its node) or
                # one refused before would give the same partitions again, for ever.
                names = ", ".join(repr(name) for name in sorted(culprits))
                self._on_host(graph_module, f"the frontend refused {names}, which "
                              f"re-partitioning cannot take out of the device partitions "
                              f"(not a node of the graph, or refused before)", why)
                return
            refused.update(culprits)
        else:
            self._on_host(graph_module, f"re-partitioning around the nodes the frontend "
                          f"refused did not settle in {len(nodes)} rounds", why)
            return
        for partition, graph, positions in converted:
            samples = [tuple(_detached(call[i]) for i in positions)
                       for call in partition.recorded]
            partition.run = load(graph, positions, samples)
            partition.recorded.clear()  # the inputs are calibrated on: not kept alive
        self._count_host(self.module, "no matmul or convolution beside it (not worth a "
                         "device round trip)", support.reasons)

    @property
    def kind(self) -> str:
        """``"split"`` with device partitions, ``"host"`` without."""
        return "split" if self.partitions else "host"

    def __call__(self, *args):
        report = _State.report
        report.host.update(self.host_ops)
        for op, why in self.reasons.items():
            report.reasons.setdefault(op, why)
        return self.module(*args)

    # -- building ---------------------------------------------------------------------------

    def _with(self, args: Sequence, index: int, sample: tuple) -> list:
        """The first call's arguments with the runtime inputs copied from calibration sample
        ``index`` (copies: a graph that writes to its inputs must not do so twice on the
        first call)."""
        if len(sample) != len(self.runtime):
            raise ValueError(f"calibration sample {index} has {_inputs(len(sample))}, "
                             f"expected {len(self.runtime)}: one per runtime input of the "
                             f"graph (its parameters and buffers are not given)")
        call = list(args)
        for position, value in zip(self.runtime, sample, strict=True):
            call[position] = torch.as_tensor(value).clone()
        return call

    def _static_inputs(self, module: torch.fx.GraphModule, args: Sequence) -> set[str]:
        """Names of the nodes whose values are baked in: get_attr constants and the
        placeholders of parameters and buffers."""
        placeholders = [n for n in module.graph.nodes if n.op == "placeholder"]
        static = {n.name for n in module.graph.nodes if n.op == "get_attr"}
        runtime = set(self.runtime)
        static |= {n.name for i, n in enumerate(placeholders[:len(args)]) if i not in runtime}
        return static

    @staticmethod
    def _partition(module: torch.fx.GraphModule,
                   support: GemmstoneSupport) -> dict[str, _Partition]:
        partitioner = CapabilityBasedPartitioner(module, support,
                                                 allows_single_node_partition=True)
        proposed = [p for p in partitioner.propose_partitions()
                    if any(n.target in _ARRAY_OPS for n in p.nodes)]
        partitioner.fuse_partitions(proposed, prefix="gemmstone_")
        partitions = {}
        for name, child in list(module.named_children()):
            if name.startswith("gemmstone_"):
                partitions[name] = _Partition(child)
                setattr(module, name, partitions[name])
        return partitions

    def _convert(self, static: set[str]) -> tuple[list[tuple] | None, dict[str, str]]:
        """(partition, IR graph, runtime input positions) of each partition and no culprits,
        or None and the names of the nodes the frontend refused, with its reason (the caller
        takes them out and partitions again)."""
        converted = []
        for name, partition in self.partitions.items():
            node = next(n for n in self.module.graph.nodes if n.target == name)
            args = [torch.nn.Parameter(_detached(value), requires_grad=False)
                    if isinstance(a, torch.fx.Node) and a.name in static else value
                    for a, value in zip(node.args, partition.recorded[0], strict=True)]
            try:
                graph = from_fx(partition.module, args, name=f"torch_compile_{name}")
            except FrontendError as error:
                names = {n.name for n in partition.module.graph.nodes
                         if n.op == "call_function"}
                culprits = [error.node] if error.node in names else sorted(names)
                return None, dict.fromkeys(culprits, error.reason)
            converted.append((partition, graph, runtime_input_positions(partition.module, args)))
        return converted, {}

    def _on_host(self, graph_module: torch.fx.GraphModule, trouble: str, why: str) -> None:
        """Give up splitting: PyTorch runs all of ``graph_module``, said aloud as nothing of
        it is accelerated."""
        warnings.warn(f"gemmstone: {trouble}; the whole graph runs on the host", stacklevel=3)
        self.module, self.partitions = graph_module, {}
        self._count_host(graph_module, f"{trouble}; {why}")

    def _count_host(self, module: torch.fx.GraphModule, why: str,
                    reasons: dict[str, str] | None = None) -> None:
        """Count ``module``'s op nodes as host ops; each op's reason from ``reasons``, else
        ``why``."""
        for node in module.graph.nodes:
            if node.op in ("call_function", "call_method") and node.target is not operator.getitem:
                name = op_name(node.target)
                self.host_ops[name] += 1
                self.reasons.setdefault(name, (reasons or {}).get(name) or why)


def _dynamic(graph_module: torch.fx.GraphModule, args: Sequence) -> bool:
    """True if Dynamo made the graph shape-polymorphic: a size among its arguments, or a
    placeholder with a symbolic dimension."""
    if not all(isinstance(a, torch.Tensor) for a in args):
        return True
    for node in graph_module.graph.nodes:
        value = node.meta.get("example_value") if node.op == "placeholder" else None
        if isinstance(value, torch.Tensor) and not all(isinstance(d, int) for d in value.shape):
            return True
    return False


def _inputs(count: int) -> str:
    return f"{count} input" if count == 1 else f"{count} inputs"


def _detached(value):
    return value.detach() if isinstance(value, torch.Tensor) else value
