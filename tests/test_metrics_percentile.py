"""The episode metrics' percentile equals numpy's, bit for bit (what the recorded trajectories' metrics were made
with), on every size, tie pattern and quantile that matters."""

from __future__ import annotations

import numpy as np
import pytest

from offload_gym.sim.metrics import FinishedSummary, percentile


@pytest.mark.parametrize("q", [0.0, 5.0, 50.0, 95.0, 99.0, 100.0])
def test_percentile_equals_numpys_bit_for_bit(q: float) -> None:
    rng = np.random.default_rng(int(q))
    for n in [*range(1, 70), 199, 200, 201, 1000, 4097]:
        for values in (rng.lognormal(0.0, 1.0, n), rng.integers(0, 4, n).astype(float), np.full(n, 2.5)):
            before = values.copy()
            assert percentile(values, q) == float(np.percentile(values, q)), (n, q)
            assert np.array_equal(values, before)  # the input is left as it was


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="values is empty"):
        percentile(np.zeros(0), 95.0)


def test_summary_p95_is_numpys() -> None:
    latencies = np.random.default_rng(3).exponential(2.0, 333)
    summary = FinishedSummary.of(latencies, 0.0, 0, 0.0)
    assert summary.p95_latency_s() == float(np.percentile(latencies, 95))
    assert FinishedSummary().p95_latency_s() == 0.0
