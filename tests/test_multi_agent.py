"""The PettingZoo multi-agent interface: one agent per phone over the single-agent core."""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("pettingzoo")
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test

import offload_gym  # noqa: F401
from offload_gym.multi_agent import env as aec_env
from offload_gym.multi_agent import parallel_env
from offload_gym.policies import make_policy

TINY = {"topology": {"n_users": 4, "n_aps": 2}, "episode": {"queries": 20}}


def test_pettingzoo_api_parallel_seed_and_aec_tests_pass() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the AEC test's advice that Dict observations are unusual
        parallel_api_test(parallel_env(config=TINY), num_cycles=1000)
        parallel_seed_test(lambda: parallel_env(config=TINY))
        api_test(aec_env(config=TINY), num_cycles=300)


def _greedy_episode(ma: Any, seed: int) -> tuple[list[dict[str, float]], dict[str, Any]]:
    greedy = make_policy("greedy", ma.config)
    obs, infos = ma.reset(seed=seed)
    steps = []
    while ma.agents:
        agent = ma.deciding_agent
        features = obs[agent]["observations"]
        mask = obs[agent]["action_mask"]
        action, _ = greedy.predict(features, action_masks=mask)
        actions = {a: 0 for a in ma.agents}
        actions[agent] = int(action)
        obs, rewards, _, _, infos = ma.step(actions)
        steps.append(rewards)
    return steps, infos


def test_greedy_by_every_phone_reproduces_centralised_greedy() -> None:
    """Each phone deciding its own queries with greedy's rule is the single-agent greedy trajectory."""
    single = gym.make("offload_gym/WifiOffload-v0", config={"episode": {"queries": 60}})
    greedy = make_policy("greedy", single.unwrapped.config)  # type: ignore[attr-defined]
    obs, info = single.reset(seed=4)
    while True:
        action, _ = greedy.predict(obs, action_masks=info["action_mask"])
        obs, _, _, truncated, info = single.step(int(action))
        if truncated:
            break
    ma = parallel_env(config={"episode": {"queries": 60}}, reward="shared")
    steps, infos = _greedy_episode(ma, 4)
    assert infos["phone_0"]["episode_metrics"] == info["episode_metrics"]
    assert sum(s["phone_0"] for s in steps) == pytest.approx(info["episode_metrics"]["total_reward"])


def test_individual_rewards_add_up_to_the_shared_reward() -> None:
    individual, _ = _greedy_episode(parallel_env(config=TINY, reward="individual"), 2)
    shared, _ = _greedy_episode(parallel_env(config=TINY, reward="shared"), 2)
    assert len(individual) == len(shared)
    for ind, sh in zip(individual, shared, strict=True):
        assert sum(ind.values()) == pytest.approx(sh["phone_0"])
        assert len(set(sh.values())) == 1
    assert any(len({v for v in ind.values() if v}) > 1 for ind in individual)  # different phones, different rewards


def test_views_and_who_acts() -> None:
    ma = parallel_env(config=TINY)
    obs, infos = ma.reset(seed=0)
    deciding = ma.deciding_agent
    assert deciding is not None and infos[deciding]["deciding"]
    single = gym.make("offload_gym/WifiOffload-tiny-v0")
    single_obs, _ = single.reset(seed=0)
    assert np.array_equal(obs[deciding]["observations"], single_obs)
    names = ma.core.observation_names
    for agent in ma.agents:
        if agent == deciding:
            continue
        view = dict(zip(names, obs[agent]["observations"], strict=True))
        assert view["decision_query"] == view["decision_subtask"] == view["phone_est_time"] == 0.0
        assert view["phone_reachable"] == 1.0 and 0.0 < view["episode_progress"] <= 1.0
        assert obs[agent]["action_mask"].tolist() == [1, 0, 0, 0]
        assert not infos[agent]["deciding"]
    # the others' actions are ignored: any values give the same next state
    a = parallel_env(config=TINY)
    b = parallel_env(config=TINY)
    a.reset(seed=0)
    b.reset(seed=0)
    acts_a = dict.fromkeys(a.agents, 0)
    acts_b = dict.fromkeys(b.agents, 3)
    acts_a[deciding] = acts_b[deciding] = 1
    out_a, out_b = a.step(acts_a), b.step(acts_b)
    assert all(np.array_equal(out_a[0][k]["observations"], out_b[0][k]["observations"]) for k in a.possible_agents)
    with pytest.raises(ValueError, match="no action for"):
        a.step({})
    with pytest.raises(ValueError, match="reward"):
        parallel_env(reward="team")
