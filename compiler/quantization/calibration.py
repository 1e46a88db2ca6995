"""Calibration: the range of every value of a float graph over sample inputs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from gemmstone.compiler.interpreter import trace
from gemmstone.compiler.ir import Graph

__all__ = ["calibrate"]


def calibrate(graph: Graph, samples: Iterable[Sequence[np.ndarray]]) -> dict[str, float]:
    """Largest absolute value of each float node over the samples (each a sequence of
    input arrays, in the graph's input order), by node name.

    Raises
    ------
    ValueError
        If ``samples`` is empty.
    """
    ranges: dict[str, float] = {}
    count = 0
    for sample in samples:
        count += 1
        for name, value in trace(graph, *sample).items():
            if value.dtype.kind == "f" and value.size:
                ranges[name] = max(ranges.get(name, 0.0), float(np.abs(value).max()))
    if not count:
        raise ValueError("calibration needs at least one sample")
    return ranges
