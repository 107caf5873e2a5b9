"""Probit item-response quality: a model of ability theta solves an item of difficulty b with P = Phi(theta - b)."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["decomposed_quality", "success_prob"]

_SQRT2 = math.sqrt(2.0)


def success_prob(ability: float, difficulty: float) -> float:
    """``Phi(ability - difficulty)``, the standard normal CDF."""
    return 0.5 * math.erfc(-(ability - difficulty) / _SQRT2)


def decomposed_quality(aggregation_success: float, subtask_successes: Sequence[float]) -> float:
    """Aggregation success times the mean subtask success (partial credit).

    The mean is a plain running sum in subtask order, as the compiled core adds them: Python 3.12's ``sum`` of
    floats compensates its rounding, so it can differ in the last bit."""
    total = 0.0
    for success in subtask_successes:
        total += success
    return aggregation_success * (total / len(subtask_successes))
