"""Built-in scheduling policies with Stable-Baselines3's ``predict`` signature.

Every policy decides from ``(observation, action mask)`` alone, so the same evaluation harness serves
heuristics and trained agents. Policies need the reward parameters they optimise (greedy) and the
largest subtask count (to read ``K`` back from the observation); :func:`make_policy` takes them from a
:class:`~offload_gym.config.ScenarioConfig`.

| name | rule |
|---|---|
| ``local-only`` | always whole on the phone |
| ``nearest-edge`` | whole on the phone's own AP (the phone if out of coverage) |
| ``random-split`` | decompose when possible; place every piece uniformly over valid locations (K = 1: whole) |
| ``greedy`` | the paper's decomposition-aware scheduler (see :class:`GreedyPolicy`) |
| ``greedy-no-split`` | greedy, never decomposing |
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from offload_gym.config import ScenarioConfig, make_config
from offload_gym.envs.observation import GLOBAL_FEATURES, LOCATION_FEATURES, TIME_SCALE_S

__all__ = [
    "POLICIES",
    "GreedyPolicy",
    "LocalOnlyPolicy",
    "NearestEdgePolicy",
    "Policy",
    "RandomSplitPolicy",
    "make_policy",
]

_G = {name: i for i, name in enumerate(GLOBAL_FEATURES)}
_L = {name: i for i, name in enumerate(LOCATION_FEATURES)}
_NG, _NL = len(GLOBAL_FEATURES), len(LOCATION_FEATURES)
_L_EST_TIME, _L_EST_QUALITY = _L["est_time"], _L["est_quality"]
_TIME_CAP = 1.0 - 1e-7


def _unsquash_time(x: float) -> float:
    """:func:`~offload_gym.envs.observation.unsquash_time` of one float, in the same IEEE operations (numpy's
    float64 scalar arithmetic is Python's), without numpy's per-call overhead."""
    x = _TIME_CAP if x > _TIME_CAP else x  # np.minimum: a NaN stays NaN
    return TIME_SCALE_S * x / (1.0 - x)


class Policy:
    """Base class: SB3-style ``predict`` over single or batched observations."""

    name = "policy"

    def __init__(self, config: ScenarioConfig | None = None, seed: int | None = None) -> None:
        self.config = config if config is not None else make_config()
        self.rng = np.random.default_rng(seed)

    def decide(self, obs: np.ndarray, mask: np.ndarray) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, observation: np.ndarray | dict[str, np.ndarray], state: Any = None,
                episode_start: np.ndarray | None = None,
                deterministic: bool = True, action_masks: np.ndarray | None = None) -> tuple[np.ndarray, Any]:
        """Actions for one observation (shape ``(D,)``, returns shape ``()``) or a batch ``(n, D)``.

        A Dict observation (``observation_format`` dict) is read by the config's keys; its mask is used when
        ``action_masks`` is not given.
        """
        if isinstance(observation, dict):
            if action_masks is None:
                action_masks = observation[self.config.action_mask_key]
            observation = observation[self.config.observation_key]
        obs = np.asarray(observation, dtype=np.float64)
        single = obs.ndim == 1
        batch = obs[None] if single else obs
        n_actions = _n_aps(batch.shape[1]) + 2
        if action_masks is None:
            masks = np.ones((batch.shape[0], n_actions), dtype=bool)
        else:
            masks = np.asarray(action_masks, dtype=bool).reshape(batch.shape[0], n_actions)
        if single:  # one env's step: its action without a batch array around it
            return np.int64(self.decide(obs, masks[0])), state
        actions = np.array([self.decide(o, m) for o, m in zip(batch, masks, strict=True)], dtype=np.int64)
        return actions, state

    def reset(self, seed: int | None = None) -> None:
        """Re-seed the policy's own randomness (only random-split uses it)."""
        self.rng = np.random.default_rng(seed)


def _n_aps(obs_size: int) -> int:
    """APs of an item observation of ``obs_size`` features, without (else with) the energy block; the first
    reading wins where both fit (pass action masks, whose size says it, to be sure)."""
    for per_location in (_NL, _NL + 1):
        n = (obs_size - _NG) // per_location - 1
        if n >= 1 and _NG + (n + 1) * per_location == obs_size:
            return n
    raise ValueError(f"observation: size {obs_size} is not an offload_gym observation")


def _loc(obs: np.ndarray, loc: int, feature: str) -> float:
    return float(obs[_NG + loc * _NL + _L[feature]])


def _kind(obs: np.ndarray | list[float]) -> str:
    if obs[_G["decision_query"]] > 0.5:
        return "query"
    if obs[_G["decision_subtask"]] > 0.5:
        return "subtask"
    if obs[_G["decision_aggregation"]] > 0.5:
        return "aggregation"
    return "end"


class LocalOnlyPolicy(Policy):
    """Always run the whole query on the phone."""

    name = "local-only"

    def decide(self, obs: np.ndarray, mask: np.ndarray) -> int:
        return 0


class NearestEdgePolicy(Policy):
    """Run the whole query on the phone's own AP (the phone when it is out of coverage)."""

    name = "nearest-edge"

    def decide(self, obs: np.ndarray, mask: np.ndarray) -> int:
        for loc in range(1, mask.size - 1):
            if _loc(obs, loc, "is_own_ap") > 0.5 and mask[loc]:
                return loc
        return 0


class RandomSplitPolicy(Policy):
    """Decompose whenever possible; place every piece uniformly at random over valid locations."""

    name = "random-split"

    def decide(self, obs: np.ndarray, mask: np.ndarray) -> int:
        n_aps = mask.size - 2
        if _kind(obs) == "query" and mask[n_aps + 1]:
            return n_aps + 1
        valid = np.flatnonzero(mask[: n_aps + 1])
        return int(self.rng.choice(valid)) if valid.size else 0


class GreedyPolicy(Policy):
    """The paper's decomposition-aware greedy scheduler, as a rule on observation fields.

    It reads the environment's model-based estimates (from the planner's predicted difficulty and
    tokens, the current contention, queues and projected edge batches):

    * **Query step.** For every valid location ``L`` it predicts the whole query's reward
      ``Phi(theta_L - b^) - w * T_L - penalty * [T_L > deadline]`` from ``est_quality`` and ``est_time``
      (answer back on the phone). If the planner splits the query (``K > 1``), it compares the best
      whole placement with the decomposed plan the list scheduler would make (``plan_pred_quality``:
      aggregation quality x mean subtask quality; ``plan_pred_latency``: predicted answer time) and
      decomposes only if the plan's predicted reward is higher.
    * **Subtask steps.** Subtasks come in topological order, larger predicted work first within a
      depth (list scheduling). Each goes to the location maximising
      ``Phi(theta_L - b^_i) / K - w * (predicted finish - now)``, where the finish accounts for when
      already-placed predecessors' outputs arrive and the load this query's earlier subtasks added.
    * **Aggregation step.** The location where the answer reaches the phone soonest.

    ``w``, the deadline and the penalty are the scenario's reward parameters.
    """

    name = "greedy"
    allow_split = True

    def decide(self, obs: np.ndarray, mask: np.ndarray) -> int:
        n_aps = mask.size - 2
        o = obs[: _NG + (n_aps + 1) * _NL].tolist()  # Python floats: the same values, read without numpy's overhead
        kind = _kind(o)
        allowed = mask.tolist()
        locs = [loc for loc in range(n_aps + 1) if allowed[loc]]
        if not locs:
            return 0
        times = {L: _unsquash_time(o[_NG + L * _NL + _L_EST_TIME]) for L in locs}
        quality = {L: o[_NG + L * _NL + _L_EST_QUALITY] for L in locs}
        if kind == "query":
            best = max(locs, key=lambda L: (self._reward(quality[L], times[L]), -L))
            if self.allow_split and allowed[n_aps + 1] and o[_G["can_decompose"]] > 0.5:
                plan_t = _unsquash_time(o[_G["plan_pred_latency"]])
                plan_reward = self._reward(o[_G["plan_pred_quality"]], plan_t)
                if plan_reward > self._reward(quality[best], times[best]):
                    return n_aps + 1
            return best
        if kind == "subtask":
            k = self._n_subtasks(o)
            w = self.config.reward.latency_weight
            return max(locs, key=lambda L: (quality[L] / k - w * times[L], -L))
        if kind == "aggregation":
            return min(locs, key=lambda L: (times[L], L))
        return 0

    def _n_subtasks(self, obs: np.ndarray | list[float]) -> int:
        k_max = self.config.max_subtasks
        return 1 + round(float(obs[_G["query_n_subtasks"]]) * (k_max - 1))

    def _reward(self, quality: float, latency_s: float) -> float:
        r = self.config.reward
        if r.kind == "product":
            return quality * float(np.exp(-latency_s / r.latency_scale_s))
        return quality - r.latency_weight * latency_s - r.deadline_penalty * float(latency_s > r.deadline_s)


class GreedyNoSplitPolicy(GreedyPolicy):
    """Greedy that never decomposes: shows what decomposition itself buys."""

    name = "greedy-no-split"
    allow_split = False


POLICIES: dict[str, Callable[..., Policy]] = {
    cls.name: cls
    for cls in (LocalOnlyPolicy, NearestEdgePolicy, RandomSplitPolicy, GreedyPolicy, GreedyNoSplitPolicy)
}


def make_policy(name: str, config: ScenarioConfig | dict[str, Any] | None = None, seed: int | None = None) -> Policy:
    """A built-in policy by name, parameterised by the scenario it will act in."""
    if not isinstance(name, str):
        raise ValueError(f"policy: expected a built-in policy name, got {type(name).__name__} {name!r}; "
                         f"choose one of {sorted(POLICIES)}")
    if name not in POLICIES:
        import difflib

        close = difflib.get_close_matches(name, list(POLICIES), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"policy: {name!r} is not a built-in policy{hint}; choose one of {sorted(POLICIES)}")
    cfg = config if isinstance(config, ScenarioConfig) else make_config(config)
    return POLICIES[name](cfg, seed=seed)
