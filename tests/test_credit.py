"""Per-query credit and simulated-time discounting of SB3 rollouts, on cases with returns known by hand."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3 import PPO

from agents.credit import CreditCallback, gae

EPISODE = 6  # decisions per episode of the constructed env


class DelayedQueries(gym.Env[np.ndarray, np.int64]):
    """Decision ``t`` places query ``t``, whose reward ``t + 1`` is paid two steps later (the last step drains
    what is left); every step takes 0.5 simulated seconds. The env's own step reward is the sum of what
    finished, as offload_gym's is."""

    def __init__(self) -> None:
        self.observation_space = spaces.Box(0.0, 1.0, (1,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self.t = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.t / EPISODE], dtype=np.float32)

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {"decision_query_id": 0}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        last = self.t == EPISODE - 1
        finished = list(range(max(self.t - 2, 0), self.t + 1)) if last else ([self.t - 2] if self.t >= 2 else [])
        completed = [{"query_id": q, "reward": float(q + 1)} for q in finished]
        self.t += 1
        info = {"completed": completed, "elapsed_s": 0.5, "decision_query_id": -1 if last else self.t}
        return self._obs(), float(sum(c["reward"] for c in completed)), False, last, info


def _returns(n_steps: int, callback: CreditCallback, gamma: float = 0.0,
             gae_lambda: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    model = PPO("MlpPolicy", DelayedQueries(), n_steps=n_steps, batch_size=n_steps, n_epochs=1, gamma=gamma,
                gae_lambda=gae_lambda, seed=0, device="cpu")
    model.learn(total_timesteps=n_steps, callback=callback)
    buf = model.rollout_buffer
    return buf.returns[:, 0].copy(), buf.values[:, 0].copy()


def test_gae_by_hand() -> None:
    rewards = np.array([[1.0], [0.0], [2.0]])
    values = np.array([[0.5], [0.2], [0.1]])
    starts = np.zeros((3, 1))
    discounts = np.array([[0.5], [1.0], [0.25]])
    adv, ret = gae(rewards, values, starts, discounts, np.array([4.0]), np.array([False]), 1.0)
    # G2 = 2 + 0.25 * 4 = 3; G1 = 0 + 1.0 * 3 = 3; G0 = 1 + 0.5 * 3 = 2.5
    assert ret[:, 0] == pytest.approx([2.5, 3.0, 3.0])
    assert adv[:, 0] == pytest.approx([2.0, 2.8, 2.9])
    # an episode start cuts the bootstrap; an unknown reward has a zero TD error
    starts[2] = 1.0
    _, ret = gae(rewards, values, starts, discounts, np.array([4.0]), np.array([True]), 0.0,
                 known=np.array([[True], [False], [True]]))
    assert ret[:, 0] == pytest.approx([1.0 + 0.5 * 0.2, 0.2, 2.0])


def test_query_credit_with_gamma_zero_scores_each_decision_by_its_own_query() -> None:
    returns, _ = _returns(EPISODE, CreditCallback("query"))
    assert returns == pytest.approx([1, 2, 3, 4, 5, 6])


def test_step_credit_is_the_env_reward_and_differs() -> None:
    returns, _ = _returns(EPISODE, CreditCallback("step", gamma_per_s=0.0))
    assert returns == pytest.approx([0, 0, 1, 2, 3, 4 + 5 + 6])  # what finished during each step


def test_time_discount_with_query_credit() -> None:
    d = 0.81 ** 0.5  # gamma_per_s ** elapsed_s
    expected = [0.0] * EPISODE
    for t in reversed(range(EPISODE)):
        expected[t] = (t + 1) + (d * expected[t + 1] if t + 1 < EPISODE else 0.0)  # the episode ends: no bootstrap
    returns, _ = _returns(EPISODE, CreditCallback("query", gamma_per_s=0.81), gae_lambda=1.0)
    assert returns == pytest.approx(expected)


def test_unfinished_queries_at_rollout_end_fall_back_to_their_value() -> None:
    returns, values = _returns(4, CreditCallback("query"))  # queries 2 and 3 finish after the rollout
    assert returns[:2] == pytest.approx([1, 2])
    assert returns[2:] == pytest.approx(values[2:])


def test_inactive_callback_leaves_sb3_returns() -> None:
    plain, _ = _returns(EPISODE, CreditCallback("step"), gamma=0.0)
    assert plain == pytest.approx([0, 0, 1, 2, 3, 15], abs=1e-6)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="credit: 'episode'"):
        CreditCallback("episode")
    with pytest.raises(ValueError, match="gamma_per_s"):
        CreditCallback("query", gamma_per_s=1.5)
