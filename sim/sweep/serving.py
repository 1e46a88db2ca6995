"""Serving latency model: latency(batch) = k * batch + c, fitted to the performance model.

Batching under a latency SLO needs to know what one more request in a batch costs (``k``,
cycles per request) and what every batch pays whatever its size (``c``: weight traffic,
pipeline fill, per-program overheads). A sweep with several batch sizes gives the cycles
of each (point, workload) at each batch; `fit_latency` fits the line by least squares and
`serving_report` turns a sweep table into one row per (point, workload) with k, c, the
throughput at each batch and the largest batch whose latency meets the SLO.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["ServingFit", "fit_latency", "serving_report"]


@dataclass(frozen=True)
class ServingFit:
    """A least-squares fit ``cycles(batch) = k * batch + c``.

    Members
    -------
    k : float
        Cycles each request of a batch adds.
    c : float
        Cycles a batch costs whatever its size.
    r2 : float
        Coefficient of determination of the fit (1 for an exact line).
    batches, cycles : tuple of int
        The measurements it was fitted to.
    """

    k: float
    c: float
    r2: float
    batches: tuple[int, ...]
    cycles: tuple[int, ...]

    def latency(self, batch: float) -> float:
        """Fitted cycles of one batch of ``batch`` requests."""
        return self.k * batch + self.c

    def throughput(self, batch: float, clock_hz: float) -> float:
        """Requests per second at ``batch`` with a ``clock_hz`` accelerator clock."""
        return batch * clock_hz / self.latency(batch)

    def max_batch(self, slo_cycles: float) -> int | None:
        """Largest batch whose fitted latency is within ``slo_cycles`` (0 if even batch 1
        misses it; None if the latency does not grow with the batch)."""
        if self.k <= 1e-9 * max(1.0, abs(self.c)):  # flat, up to rounding of the fit
            return None if self.c <= slo_cycles else 0
        return max(0, math.floor((slo_cycles - self.c) / self.k + 1e-9))


def fit_latency(batches: Sequence[int], cycles: Sequence[float]) -> ServingFit:
    """Fit ``cycles = k * batch + c`` by least squares.

    Raises
    ------
    ValueError
        Fewer than two distinct batch sizes, or lengths that differ.
    """
    if len(batches) != len(cycles):
        raise ValueError(f"{len(batches)} batch sizes but {len(cycles)} cycle counts")
    if len(set(batches)) < 2:
        raise ValueError(f"fitting latency(batch) needs at least two batch sizes, not "
                         f"{sorted(set(batches))}")
    x = np.asarray(batches, dtype=float)
    y = np.asarray(cycles, dtype=float)
    (k, c), *_ = np.linalg.lstsq(np.stack([x, np.ones_like(x)], axis=1), y, rcond=None)
    residual = float(np.sum((y - (k * x + c)) ** 2))
    total = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - residual / total if total else 1.0
    return ServingFit(float(k), float(c), r2, tuple(int(b) for b in batches),
                      tuple(int(v) for v in cycles))


def serving_report(rows: Sequence[dict], *, clock_mhz: float, slo_ms: float | None = None,
                   params: Sequence[str] = ()) -> list[dict]:
    """One serving row per (point, workload) of a sweep table with two or more batches.

    Parameters
    ----------
    rows : sequence of dict
        Sweep rows (`gemmstone.sim.sweep.run.run_sweep`); rows with an error are skipped,
        and a (point, workload) with fewer than two good batches gets its error instead.
    clock_mhz : float
        Accelerator clock, to turn cycles into time.
    slo_ms : float, optional
        Latency SLO; gives ``max_batch`` (None: not computed).
    params : sequence of str
        Row keys copied into the report (the swept parameters).

    Returns
    -------
    list of dict
        ``point``, the ``params``, ``workload``, ``k_cycles``, ``c_cycles``, ``r2``,
        ``k_us``, ``c_us``, ``throughput_b<B>`` (requests/s at each batch B, fitted),
        ``peak_throughput`` (1 / k), ``slo_ms``, ``max_batch`` and ``error``.
    """
    if clock_mhz <= 0:
        raise ValueError(f"'clock_mhz' must be positive, not {clock_mhz}")
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["point"], row["workload"]), []).append(row)
    clock_hz = clock_mhz * 1e6
    report = []
    for (point, workload), group in groups.items():
        out = {"point": point, **{name: group[0].get(name) for name in params},
               "workload": workload}
        good = [row for row in group if not row.get("error") and row.get("cycles")]
        try:
            fit = fit_latency([row["batch"] for row in good], [row["cycles"] for row in good])
        except ValueError as error:
            failed = next((row["error"] for row in group if row.get("error")), None)
            report.append({**out, "error": failed or str(error)})
            continue
        out.update(k_cycles=round(fit.k, 2), c_cycles=round(fit.c, 2), r2=round(fit.r2, 6),
                   k_us=fit.k / clock_mhz, c_us=fit.c / clock_mhz)
        for batch in sorted({row["batch"] for row in group}):
            out[f"throughput_b{batch}"] = round(fit.throughput(batch, clock_hz), 2)
        out["peak_throughput"] = round(clock_hz / fit.k, 2) if fit.k > 0 else None
        out["slo_ms"] = slo_ms
        out["max_batch"] = None if slo_ms is None else fit.max_batch(slo_ms * 1e-3 * clock_hz)
        out["error"] = None
        report.append(out)
    return report
