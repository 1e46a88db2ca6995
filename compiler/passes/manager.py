"""The pass manager: runs a pipeline, verifies after every pass, reports what changed."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from gemmstone.compiler.errors import VerifyError
from gemmstone.compiler.ir import Graph
from gemmstone.compiler.passes.batchnorm import fold_batch_norms
from gemmstone.compiler.passes.cleanup import remove_dead_nodes, remove_identities
from gemmstone.compiler.passes.constants import fold_constants
from gemmstone.compiler.passes.cse import eliminate_common_subexpressions
from gemmstone.compiler.passes.fusion import fuse_accelerator_ops
from gemmstone.compiler.passes.layout import assign_layouts
from gemmstone.compiler.passes.matmul import fold_transposes_into_matmul
from gemmstone.compiler.passes.patterns import recognize_gelu
from gemmstone.compiler.passes.qdq import fold_qdq_into_integer_ops
from gemmstone.compiler.passes.simplify import simplify_arithmetic
from gemmstone.compiler.verify import verify

__all__ = ["Pass", "PassReport", "PassManager", "DEFAULT_PIPELINE", "optimize",
           "format_reports"]

Pass = Callable[[Graph], None]

DEFAULT_PIPELINE: tuple[Pass, ...] = (
    remove_dead_nodes,
    remove_identities,
    fold_qdq_into_integer_ops,
    fold_constants,
    eliminate_common_subexpressions,
    recognize_gelu,
    fold_transposes_into_matmul,
    simplify_arithmetic,
    fold_batch_norms,
    fuse_accelerator_ops,
    assign_layouts,
    simplify_arithmetic,
    eliminate_common_subexpressions,
)


@dataclass(frozen=True)
class PassReport:
    """What one pass did.

    Members
    -------
    name : str
        The pass function's name.
    removed, added, rewritten : int
        Nodes gone, nodes new, nodes kept whose operator, operands or attributes changed.
    nodes : int
        Nodes in the graph after the pass.
    seconds : float
    """

    name: str
    removed: int
    added: int
    rewritten: int
    nodes: int
    seconds: float

    @property
    def changed(self) -> bool:
        return bool(self.removed or self.added or self.rewritten)


class PassManager:
    """Runs passes in order on a graph (in place).

    Parameters
    ----------
    passes : sequence of callables
        Each takes a `Graph` and rewrites it in place.
    verify_each : bool
        Run `verify` before the first pass and after every pass (on by default; a failure
        names the pass).
    """

    def __init__(self, passes: Sequence[Pass] = DEFAULT_PIPELINE, *,
                 verify_each: bool = True) -> None:
        self.passes = tuple(passes)
        self.verify_each = verify_each

    def run(self, graph: Graph) -> list[PassReport]:
        """Run the pipeline; returns one report per pass.

        Raises
        ------
        VerifyError
            If a pass leaves a graph `verify` rejects; the message names the pass.
        """
        if self.verify_each:
            verify(graph)
        reports = []
        for run_pass in self.passes:
            before = _snapshot(graph)
            start = time.perf_counter()
            run_pass(graph)
            seconds = time.perf_counter() - start
            if self.verify_each:
                try:
                    verify(graph)
                except VerifyError as error:
                    raise VerifyError(f"after pass {run_pass.__name__}: {error}") from None
            reports.append(_diff(run_pass.__name__, before, graph, seconds))
        return reports


def optimize(graph: Graph) -> list[PassReport]:
    """Run `DEFAULT_PIPELINE` on ``graph`` in place; returns the reports."""
    return PassManager().run(graph)


def format_reports(reports: Sequence[PassReport]) -> str:
    """A small table: one line per pass."""
    lines = [f"{'pass':<34}{'removed':>8}{'added':>7}{'rewritten':>10}{'nodes':>7}{'ms':>9}"]
    for r in reports:
        lines.append(f"{r.name:<34}{r.removed:>8}{r.added:>7}{r.rewritten:>10}{r.nodes:>7}"
                     f"{r.seconds * 1e3:>9.1f}")
    return "\n".join(lines)


def _signature(node) -> tuple:
    # Arrays by identity: folding makes new arrays, and hashing every weight would be slow.
    attrs = tuple(sorted((k, id(v) if isinstance(v, np.ndarray) else v)
                         for k, v in node.attrs.items()))
    return node.op, tuple(id(v) for v in node.inputs), attrs


def _snapshot(graph: Graph) -> dict[int, tuple]:
    # The node object is kept in the value so its id cannot be reused by a new node.
    return {id(n): (n, _signature(n)) for n in graph.nodes}


def _diff(name: str, before: dict[int, tuple], graph: Graph, seconds: float) -> PassReport:
    after = {id(n): n for n in graph.nodes}
    removed = sum(1 for key in before if key not in after)
    added = sum(1 for key in after if key not in before)
    rewritten = sum(1 for key, node in after.items()
                    if key in before and before[key][1] != _signature(node))
    return PassReport(name, removed, added, rewritten, len(graph.nodes), seconds)
