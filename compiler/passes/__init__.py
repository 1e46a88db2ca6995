"""Graph passes (Grappler style): small functions with verb names that rewrite an IR graph
in place, and a `PassManager` that runs them, verifies and reports."""

from gemmstone.compiler.passes.batchnorm import fold_batch_norms
from gemmstone.compiler.passes.cleanup import remove_dead_nodes, remove_identities
from gemmstone.compiler.passes.constants import fold_constants
from gemmstone.compiler.passes.cse import eliminate_common_subexpressions
from gemmstone.compiler.passes.fusion import fuse_accelerator_ops
from gemmstone.compiler.passes.layout import assign_layouts
from gemmstone.compiler.passes.manager import (
    DEFAULT_PIPELINE,
    PassManager,
    PassReport,
    format_reports,
    optimize,
)
from gemmstone.compiler.passes.matmul import fold_transposes_into_matmul
from gemmstone.compiler.passes.patterns import recognize_gelu
from gemmstone.compiler.passes.qdq import fold_qdq_into_integer_ops
from gemmstone.compiler.passes.simplify import simplify_arithmetic

__all__ = ["fold_batch_norms", "remove_dead_nodes", "remove_identities", "fold_constants",
           "eliminate_common_subexpressions", "fuse_accelerator_ops", "assign_layouts",
           "fold_transposes_into_matmul", "simplify_arithmetic", "recognize_gelu",
           "fold_qdq_into_integer_ops", "PassManager", "PassReport", "DEFAULT_PIPELINE",
           "optimize", "format_reports"]
