"""What an episode's metrics need of its finished queries (:class:`FinishedSummary`), kept by either engine."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["FinishedSummary", "percentile"]


def percentile(values: np.ndarray, q: float) -> float:
    """``np.percentile(values, q)`` of a 1-D float array without NaNs, bit for bit (its default linear method:
    the same virtual index, neighbours and interpolation), at a tenth of its cost: an episode's final step asks
    for it, and numpy's general path took 40 us of the 0.1 ms a batched step of 64 envs has per env."""
    n = values.size
    if n == 0:
        raise ValueError("percentile: values is empty")
    virtual = (n - 1) * (q / 100)
    if virtual >= n - 1:
        return float(values.max())
    lo = math.floor(virtual)
    part = np.partition(values, (lo, lo + 1))
    a, b = float(part[lo]), float(part[lo + 1])
    t = virtual - lo
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t  # numpy's _lerp, exact at both ends


class FinishedSummary:
    """What an episode's metrics need of its finished queries, in memory that does not grow with them
    except for the latencies (8 bytes a query: exact means, percentiles and deadline misses).

    ``mean_latency_s`` and ``p95_latency_s`` are computed from the latencies exactly as numpy computes them
    from a list of the records; the quality mean is a running sum.
    """

    __slots__ = ("_latencies", "count", "decomposed", "energy_sum_j", "failed", "quality_sum", "redispatched")

    def __init__(self) -> None:
        self.count = 0  #: finished queries (failed ones included)
        self.quality_sum = 0.0
        self.decomposed = 0  #: finished queries that ran decomposed
        self.failed = 0
        self.redispatched = 0
        self.energy_sum_j = 0.0
        self._latencies = np.empty(1024, dtype=float)

    def add(self, latency_s: float, quality: float, decomposed: bool, failed: bool, redispatched: bool,
            energy_j: float = 0.0) -> None:
        n = self.count
        if n == self._latencies.size:
            grown = np.empty(2 * n, dtype=float)
            grown[:n] = self._latencies
            self._latencies = grown
        self._latencies[n] = latency_s
        self.count = n + 1
        self.quality_sum += quality
        self.decomposed += decomposed
        self.failed += failed
        self.redispatched += redispatched
        self.energy_sum_j += energy_j

    @classmethod
    def of(cls, latencies_s: np.ndarray, quality_sum: float, decomposed: int, energy_sum_j: float, failed: int = 0,
           redispatched: int = 0) -> FinishedSummary:
        """A summary of queries already summed elsewhere (the compiled core): their latencies in finishing order,
        the running sums of their qualities and energies in that order, and the counts."""
        summary = cls()
        summary.failed, summary.redispatched = failed, redispatched
        summary._latencies = np.array(latencies_s, dtype=float)
        summary.count = len(latencies_s)
        summary.quality_sum = quality_sum
        summary.decomposed = decomposed
        summary.energy_sum_j = energy_sum_j
        return summary

    @property
    def latencies(self) -> np.ndarray:
        """Latencies (s) in finishing order (a read-only view)."""
        view = self._latencies[: self.count]
        view.flags.writeable = False
        return view

    def mean_latency_s(self) -> float:
        return float(self.latencies.mean()) if self.count else 0.0

    def p95_latency_s(self) -> float:
        return percentile(self.latencies, 95) if self.count else 0.0

    def mean_energy_j(self) -> float:
        return self.energy_sum_j / self.count if self.count else 0.0

    def mean_quality(self) -> float:
        return self.quality_sum / self.count if self.count else 0.0

    def decomposed_share(self) -> float:
        return self.decomposed / self.count if self.count else 0.0

    def deadline_miss_rate(self, deadline_s: float) -> float:
        return float((self.latencies > deadline_s).mean()) if self.count else 0.0
