"""Lowering: a quantized graph to gemmstone programs plus a host plan.

`partition.schedule` splits the graph into accelerator groups and host ops, `emit`
turns each group into one program (arena planned by `memory`, tiling by
`gemmstone.compiler.kernels.cost`), `lower` assembles the `CompiledModel`, and
`run.run_compiled` executes it on the functional model and the host.
"""

from gemmstone.compiler.lowering.compiled import CompiledModel, format_report
from gemmstone.compiler.lowering.lower import COMPILER_VERSION, graph_hash, lower
from gemmstone.compiler.lowering.partition import LoweringError, schedule
from gemmstone.compiler.lowering.run import functional_backend, run_compiled

__all__ = ["CompiledModel", "format_report", "lower", "graph_hash", "COMPILER_VERSION",
           "LoweringError", "schedule", "run_compiled", "functional_backend"]
