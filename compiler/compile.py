"""The compiler's front door: a graph or a model file to a cached `CompiledModel`.

``compile_model(graph, config, samples=...)``: a frontend graph is optimized
(`PassManager`), quantized with calibration on ``samples`` and lowered; a graph that is
already quantized is lowered as is, except that ONNX-style integer ops and QDQ patterns
are first rewritten into the array's exact forms
(`gemmstone.compiler.quantization.integer`). Results are cached in ``cache_dir`` under the
content hash of (graph, calibration samples, config, compiler version).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gemmstone.compiler.ir import Graph
from gemmstone.compiler.lowering import COMPILER_VERSION, CompiledModel, graph_hash, lower
from gemmstone.compiler.ops import Op
from gemmstone.config import AcceleratorConfig

__all__ = ["compile_model", "compile_file", "default_cache_dir", "load_graph"]

_QUANTIZED = (Op.QCONV2D, Op.QMATMUL, Op.QUANTIZE)


def default_cache_dir() -> Path:
    """``$GEMMSTONE_CACHE/compiled`` or ``~/.cache/gemmstone/compiled``."""
    base = os.environ.get("GEMMSTONE_CACHE") or Path.home() / ".cache" / "gemmstone"
    return Path(base) / "compiled"


def compile_model(graph: Graph, config: AcceleratorConfig, *,
                  samples: Sequence[Sequence[np.ndarray]] | None = None,
                  cache_dir: str | Path | None = None) -> CompiledModel:
    """Optimize, quantize (if ``graph`` is float) and lower ``graph`` for ``config``.

    Parameters
    ----------
    graph : Graph
        A frontend graph (left unchanged) or a quantized one.
    config : AcceleratorConfig
    samples : sequence of input tuples, optional
        Calibration inputs; required for a float graph.
    cache_dir : path, optional
        Where compiled models are cached (None: no cache).

    Raises
    ------
    ValueError
        A float graph without samples.
    gemmstone.compiler.lowering.LoweringError
        A node cannot be lowered.
    """
    quantized = any(n.op in _QUANTIZED for n in graph.nodes)
    digest = hashlib.sha256()
    digest.update(graph_hash(graph).encode())
    digest.update(config.content_hash.encode())
    digest.update(COMPILER_VERSION.encode())
    if not quantized:
        if samples is None:
            raise ValueError(f"graph {graph.name!r} is float: compile_model needs calibration "
                             f"'samples' to quantize it")
        samples = [tuple(np.asarray(a) for a in sample) for sample in samples]
        for sample in samples:
            for array in sample:
                digest.update(f"{array.dtype.str}{array.shape}".encode())
                digest.update(np.ascontiguousarray(array).tobytes())
    key = digest.hexdigest()
    path = Path(cache_dir) / f"{key}.gemsmodel" if cache_dir is not None else None
    if path is not None and path.exists():
        return CompiledModel.load(path)
    if not quantized:
        from gemmstone.compiler.passes import PassManager
        from gemmstone.compiler.quantization import quantize
        graph = graph.copy()
        PassManager().run(graph)
        graph = quantize(graph, samples)
    else:
        from gemmstone.compiler.quantization.integer import (
            needs_integer_preparation,
            prepare_integer_graph,
        )
        if needs_integer_preparation(graph):  # ONNX integer ops or QDQ patterns
            graph = graph.copy()
            prepare_integer_graph(graph)
    compiled = lower(graph, config, key)
    if path is not None:
        compiled.save(path)
    return compiled


def load_graph(path: str | Path) -> Graph:
    """The frontend graph of an ``.onnx`` or ``.pt2`` (torch.export) file.

    Raises
    ------
    ValueError
        Another file type.
    """
    path = Path(path)
    if path.suffix == ".onnx":
        from gemmstone.compiler.frontends.onnx_model import from_onnx
        return from_onnx(str(path))
    if path.suffix == ".pt2":
        from gemmstone.compiler.frontends.torch_fx import from_pt2
        return from_pt2(str(path))
    raise ValueError(f"{path}: expected an .onnx or .pt2 model file, not {path.suffix!r}")


def compile_file(path: str | Path, config: AcceleratorConfig, *, calibration: int = 4,
                 seed: int = 0, cache_dir: str | Path | None = None) -> CompiledModel:
    """`compile_model` of a model file; a float model is calibrated on ``calibration``
    standard-normal random inputs drawn with ``seed`` (real data calibrates better)."""
    graph = load_graph(path)
    rng = np.random.default_rng(seed)
    samples = [tuple(rng.standard_normal(n.shape).astype(n.dtype.numpy) for n in graph.inputs)
               for _ in range(calibration)]
    return compile_model(graph, config, samples=samples, cache_dir=cache_dir)
