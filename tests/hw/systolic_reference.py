"""Reference behaviour of `SystolicArray`, shared by the Amaranth and the cocotb tests.

The tests drive the array, record at which clock edge each input row and each weight beat
was transferred, and ask this model which output rows must appear at which edges.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ArrayReference", "wrap", "random_stimulus"]


def wrap(values: np.ndarray, width: int) -> np.ndarray:
    """``values`` reduced to signed ``width``-bit two's complement."""
    half = 1 << (width - 1)
    return ((values.astype(np.int64) + half) % (1 << width)) - half


class ArrayReference:
    """What a ``rows`` x ``cols`` array must output, from the transfers it accepted.

    Call `edge` once per clock edge, in order, with what was transferred at that edge.
    `expected` maps an edge to the output row due then: ``latency`` edges after its input,
    computed with the weights of the last preload whose ``last`` beat came at an earlier
    edge (rows of a preload beyond ``rows`` are ignored; rows not written are zero).
    """

    def __init__(self, *, rows: int, cols: int, latency: int, out_width: int = 32):
        self.rows, self.cols, self.latency, self.out_width = rows, cols, latency, out_width
        self.front = np.zeros((rows, cols), dtype=np.int64)
        self.pending: list[np.ndarray] = []
        self.expected: dict[int, np.ndarray] = {}
        self.commits: list[int] = []  # edges at which a preload's last beat was taken

    def edge(self, index: int, *, inputs: np.ndarray | None = None,
             weights: np.ndarray | None = None, last: bool = False) -> None:
        if inputs is not None:
            product = inputs.astype(np.int64) @ self.front
            self.expected[index + self.latency] = wrap(product, self.out_width)
        if weights is not None:
            if len(self.pending) < self.rows:
                self.pending.append(np.asarray(weights, dtype=np.int64))
            if last:
                self.front = np.zeros((self.rows, self.cols), dtype=np.int64)
                if self.pending:
                    self.front[:len(self.pending)] = np.stack(self.pending)
                self.pending = []
                self.commits.append(index)


def random_stimulus(rng: np.random.Generator, *, rows: int, cols: int, preloads: int,
                    max_burst: int) -> tuple[list[np.ndarray], list[tuple[np.ndarray, bool]]]:
    """Input rows and weight beats for a test: ``preloads`` preloads of 1..rows + 1 rows
    (one more than ``rows`` checks extra beats are ignored) and bursts of input rows."""
    inputs = [rng.integers(-128, 128, rows) for _ in range(preloads * max_burst)]
    beats = []
    for _ in range(preloads):
        k = int(rng.integers(1, rows + 2))
        for i in range(k):
            beats.append((rng.integers(-128, 128, cols), i == k - 1))
    return inputs, beats
