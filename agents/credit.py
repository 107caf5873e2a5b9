"""Credit assignment for SB3 on-policy rollouts: per-query credit and discounting by simulated time.

offload_gym steps are decisions, not time. A step's native reward is the sum of whatever queries finished
while the simulator advanced, and a decomposed query adds decision steps at which no time passes. Two
relabellings fix what that does to PPO's returns (both are options of ``train.py``, ``--credit`` and
``--gamma-per-s``, or the ``credit`` / ``gamma_per_s`` keys of a hyperparameter entry):

* **Per-query credit** (``credit="query"``). Each decision is scored by the reward of the query it placed,
  paid when that query finishes (``info["completed"]``), instead of by the rewards of the queries that
  happened to finish during its step. The query a decision belongs to is ``info["decision_query_id"]`` of
  the step that showed it (or of ``reset``). In the ``item`` interface every decision of a query (the query
  decision, its subtasks and its aggregation) gets the query's reward: with ``gamma = 0`` that is the
  contextual-bandit view; with ``gamma > 0`` a decomposed query is counted once per decision, so prefer the
  ``query`` or ``residual`` interfaces there. A decision whose query has not finished when the rollout ends
  has no known reward yet: its TD error is set to 0 (its return is its own value estimate), which leaves
  it out of the policy gradient for this rollout.
* **Time discounting** (``gamma_per_s``). The discount between a decision and the next is
  ``gamma_per_s ** info["elapsed_s"]``: decisions at the same instant are not discounted against each
  other, and a second of simulated time costs the same however many decisions it holds.

Both replace the buffer's rewards, so SB3's bootstrap on truncation (``gamma * V(final observation)``)
is dropped: offload_gym's episodes end by draining every query, after which no reward can come.

:func:`gae` is the pure computation (tested against hand-computed returns); :class:`CreditCallback`
collects the infos during a rollout and rewrites ``rollout_buffer.advantages`` and ``.returns`` at its
end, for SB3's PPO / A2C and sb3-contrib's MaskablePPO alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

__all__ = ["CREDIT_MODES", "CreditCallback", "discounts", "gae"]

CREDIT_MODES = ("step", "query")


def discounts(elapsed_s: np.ndarray, gamma: float, gamma_per_s: float | None) -> np.ndarray:
    """Per-step discounts: ``gamma_per_s ** elapsed_s`` (discounting by simulated time), else ``gamma`` per step."""
    elapsed_s = np.asarray(elapsed_s, dtype=np.float64)
    return np.power(gamma_per_s, elapsed_s) if gamma_per_s is not None else np.full_like(elapsed_s, gamma)


def gae(rewards: np.ndarray, values: np.ndarray, episode_starts: np.ndarray, discounts: np.ndarray,
        last_values: np.ndarray, last_dones: np.ndarray, gae_lambda: float,
        known: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """GAE(lambda) advantages and returns with a per-step discount.

    All arrays are ``(n_steps, n_envs)`` except ``last_values`` and ``last_dones`` (``(n_envs,)``), as in
    SB3's ``RolloutBuffer``. ``discounts[t]`` multiplies the value of step ``t + 1`` in step ``t``'s TD
    error; ``episode_starts[t + 1]`` (or ``last_dones`` after the last step) cuts it. Where ``known`` is
    False the step's reward is unknown and its TD error is 0.

    :return: ``(advantages, returns)``, ``returns = advantages + values``
    """
    n_steps = rewards.shape[0]
    advantages = np.zeros_like(values, dtype=np.float64)
    last = np.zeros(values.shape[1:], dtype=np.float64)
    for t in reversed(range(n_steps)):
        if t == n_steps - 1:
            non_terminal = 1.0 - np.asarray(last_dones, dtype=np.float64)
            next_values = np.asarray(last_values, dtype=np.float64)
        else:
            non_terminal = 1.0 - episode_starts[t + 1].astype(np.float64)
            next_values = values[t + 1].astype(np.float64)
        delta = rewards[t] + discounts[t] * next_values * non_terminal - values[t]
        if known is not None:
            delta = np.where(known[t], delta, 0.0)
        last = delta + discounts[t] * gae_lambda * non_terminal * last
        advantages[t] = last
    return advantages, advantages + values


class CreditCallback(BaseCallback):
    """Relabel each rollout with per-query credit and/or time discounting (see the module docstring).

    :param credit: ``"step"`` (the env's reward) or ``"query"`` (each decision scored by its query's reward)
    :param gamma_per_s: discount per simulated second; ``None`` keeps the algorithm's per-step ``gamma``
    """

    def __init__(self, credit: str = "step", gamma_per_s: float | None = None, verbose: int = 0) -> None:
        super().__init__(verbose)
        if credit not in CREDIT_MODES:
            raise ValueError(f"credit: {credit!r} is not allowed; choose one of {list(CREDIT_MODES)}")
        if gamma_per_s is not None and not 0.0 <= gamma_per_s <= 1.0:
            raise ValueError(f"gamma_per_s: {gamma_per_s!r} is out of range; must be in [0, 1]")
        self.credit = credit
        self.gamma_per_s = gamma_per_s
        self._pending: list[int] = []  # per env: the query the next decision belongs to
        self._episode: list[int] = []  # per env: episodes started, to key query ids
        self._rewards_by_query: dict[tuple[int, int, int], float] = {}

    @property
    def active(self) -> bool:
        return self.credit != "step" or self.gamma_per_s is not None

    def _on_training_start(self) -> None:
        n = self.training_env.num_envs
        self._episode = [0] * n
        reset_infos = getattr(self.training_env, "reset_infos", None) or [{}] * n
        self._pending = [int(info.get("decision_query_id", -1)) for info in reset_infos]

    def _on_rollout_start(self) -> None:
        self._step = 0
        if not self.active:
            return
        n_steps, n_envs = self.model.rollout_buffer.buffer_size, self.training_env.num_envs
        self._query_key = np.full((n_steps, n_envs, 2), -1, dtype=np.int64)  # (episode, query id) per decision
        self._elapsed_s = np.zeros((n_steps, n_envs), dtype=np.float64)
        self._step_rewards = np.zeros((n_steps, n_envs), dtype=np.float64)
        # rewards of queries decided in earlier rollouts are no longer needed
        self._rewards_by_query.clear()

    def _on_step(self) -> bool:
        if not self.active:
            return True
        t = self._step
        infos: list[dict[str, Any]] = self.locals["infos"]
        dones = self.locals["dones"]
        rewards = self.locals["rewards"]
        reset_infos = getattr(self.training_env, "reset_infos", None)
        for e, info in enumerate(infos):
            self._query_key[t, e] = (self._episode[e], self._pending[e])
            self._elapsed_s[t, e] = float(info.get("elapsed_s", 0.0))
            self._step_rewards[t, e] = float(rewards[e])
            for record in info.get("completed", ()):
                self._rewards_by_query[(e, self._episode[e], int(record["query_id"]))] = float(record["reward"])
            if dones[e]:
                self._episode[e] += 1
                nxt = reset_infos[e] if reset_infos is not None else {}
                self._pending[e] = int(nxt.get("decision_query_id", -1))
            else:
                self._pending[e] = int(info.get("decision_query_id", -1))
        self._step += 1
        return True

    def _on_rollout_end(self) -> None:
        if not self.active:
            return
        buf = self.model.rollout_buffer
        n = self._step
        if n != buf.buffer_size:  # pragma: no cover - a rollout stopped early by another callback
            return
        if self.credit == "query":
            rewards = np.zeros_like(self._step_rewards)
            known = np.zeros(rewards.shape, dtype=bool)
            for t in range(n):
                for e in range(rewards.shape[1]):
                    episode, qid = self._query_key[t, e]
                    r = self._rewards_by_query.get((e, int(episode), int(qid)))
                    if r is not None:
                        rewards[t, e], known[t, e] = r, True
        else:
            rewards, known = self._step_rewards, None
        last_values = self.locals["values"].detach().cpu().numpy().flatten()
        advantages, returns = gae(rewards, buf.values, buf.episode_starts,
                                  discounts(self._elapsed_s, float(self.model.gamma), self.gamma_per_s), last_values,
                                  np.asarray(self.locals["dones"]), float(buf.gae_lambda), known)
        buf.advantages[:] = advantages
        buf.returns[:] = returns
        if known is not None:
            self.logger.record("credit/known_share", float(known.mean()))
