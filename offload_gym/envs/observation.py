"""Observation layout: names, bounds and the normalisations (all invertible, so policies can read them back)."""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "ENERGY_SCALE_J",
    "GLOBAL_FEATURES",
    "LOCATION_FEATURES",
    "TIME_SCALE_S",
    "energy_names",
    "observation_bounds",
    "observation_names",
    "squash_time",
    "suggestion_names",
    "unsquash_time",
]

#: Time features are ``t / (t + TIME_SCALE_S)``: 0 at 0 s, 0.5 at 2 s, bounded below 1.
TIME_SCALE_S = 2.0
TOKENS_LOG_MAX = math.log1p(16384.0)
BYTES_LOG_MAX = math.log1p(1e8)
RATE_LOG_MAX = math.log1p(10_000.0)  # Mb/s
DIFFICULTY_SCALE = 4.0
#: Energy features (``reward.energy_weight > 0``) are ``e / (e + ENERGY_SCALE_J)``: 0.5 at 1 J.
ENERGY_SCALE_J = 1.0

GLOBAL_FEATURES: tuple[str, ...] = (
    "decision_query",  # one-hot decision kind
    "decision_subtask",
    "decision_aggregation",
    "item_pred_difficulty",  # predicted difficulty / 4, clipped to [-1, 1]
    "item_pred_input_tokens",  # log1p(tokens) / log1p(16384)
    "item_pred_output_tokens",
    "query_attachment_bytes",  # log1p(bytes) / log1p(1e8)
    "item_reads_attachment",  # 1 if this item needs the attachment (whole query or a root subtask)
    "query_n_subtasks",  # (K - 1) / (K_max - 1)
    "structure_fan_out",
    "structure_chain",
    "structure_dag",
    "item_position",  # subtask: its position in the presentation order / K; aggregation 1
    "item_n_predecessors",  # predecessors / (K - 1)
    "can_decompose",  # query step and K > 1
    "plan_pred_latency",  # squashed predicted latency of the decomposed plan (query step, K > 1)
    "plan_pred_quality",
    "episode_progress",  # queries arrived / queries per episode
    "queries_in_flight",  # tanh(unfinished queries / phones)
    "own_phy_rate",  # log1p(uplink PHY Mb/s) / log1p(10000); 0 out of coverage
)

LOCATION_FEATURES: tuple[str, ...] = (
    "reachable",
    "est_time",  # squashed predicted time from now: answer on the phone (query, aggregation) or item done (subtask)
    "est_quality",  # Phi(theta - predicted difficulty)
    "backlog",  # phone: squashed predicted busy time; AP: (queued + in-transit items) / max_batch, clipped
    "occupancy",  # phone: busy 0/1; AP: batch / max_batch
    "link_rate",  # log-normalised predicted Wi-Fi share (Mb/s) of this phone towards the location
    "contention",  # contenders in the location's cell / (background + phones + 1)
    "is_own_ap",
)


def location_names(n_aps: int) -> list[str]:
    names = []
    for loc in range(n_aps + 1):
        prefix = "phone" if loc == 0 else f"ap{loc - 1}"
        names += [f"{prefix}_{f}" for f in LOCATION_FEATURES]
    return names


def suggestion_names(n_aps: int) -> list[str]:
    """Residual mode's last features: the built-in scheduler's item action, one-hot (phone, each AP, decompose)."""
    return ["suggested_phone", *(f"suggested_ap{j}" for j in range(n_aps)), "suggested_decompose"]


def energy_names(n_aps: int) -> list[str]:
    """With ``reward.energy_weight > 0``, after the location features: each location's estimated phone energy for
    the pending item there, squashed (0 where unreachable)."""
    return ["phone_est_energy", *(f"ap{j}_est_energy" for j in range(n_aps))]


def observation_names(n_aps: int, residual: bool = False, energy: bool = False) -> tuple[str, ...]:
    return (*GLOBAL_FEATURES, *location_names(n_aps), *(energy_names(n_aps) if energy else ()),
            *(suggestion_names(n_aps) if residual else ()))


def observation_bounds(n_aps: int, residual: bool = False, energy: bool = False) -> tuple[np.ndarray, np.ndarray]:
    size = (len(GLOBAL_FEATURES) + (n_aps + 1) * len(LOCATION_FEATURES) + ((n_aps + 1) if energy else 0)
            + ((n_aps + 2) if residual else 0))
    low = np.zeros(size, dtype=np.float32)
    high = np.ones(size, dtype=np.float32)
    low[GLOBAL_FEATURES.index("item_pred_difficulty")] = -1.0
    return low, high


def squash_time(t_s: float) -> float:
    """Map a duration (s, >= 0) to [0, 1)."""
    t_s = max(t_s, 0.0)
    return t_s / (t_s + TIME_SCALE_S)


def unsquash_time(x: float | np.ndarray) -> float | np.ndarray:
    """Inverse of :func:`squash_time` (values at 1 map to a large finite time)."""
    x = np.minimum(np.asarray(x, dtype=np.float64), 1.0 - 1e-7)
    out = TIME_SCALE_S * x / (1.0 - x)
    return float(out) if out.ndim == 0 else out
