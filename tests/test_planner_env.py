"""The environment with corpus queries and the learned planner."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from conftest import random_masked, rollout
from gymnasium.utils.env_checker import check_env

from offload_gym.config import make_config


def test_learned_planner_env_passes_check_env() -> None:
    env = gym.make("offload_gym/WifiOffload-tiny-v0", config={"planner": {"kind": "learned"}})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []


def test_learned_planner_predictions_differ_from_truth_and_are_deterministic() -> None:
    env = gym.make("offload_gym/WifiOffload-tiny-v0", config={"planner": {"kind": "learned"}})
    a = rollout(env, 3, random_masked)
    b = rollout(env, 3, random_masked)
    assert [o.tobytes() for o in a["obs"]] == [o.tobytes() for o in b["obs"]]
    workload = env.unwrapped.episode.setup.workload  # the episode's queries: truth and the planner's prediction
    queries = [workload.query(k) for k in range(20)]
    assert all(spec.text for spec, _ in queries)
    errors = [abs(prediction.difficulty - spec.difficulty) for spec, prediction in queries]
    assert 0.0 < float(np.mean(errors)) < 2.0


def test_corpus_source_without_learned_planner() -> None:
    env = gym.make("offload_gym/WifiOffload-tiny-v0", config={"workload": {"source": "corpus"}})
    out = rollout(env, 1, random_masked)
    assert out["infos"][-1]["episode_metrics"]["queries"] == 20
    workload = env.unwrapped.episode.setup.workload
    assert all(workload.query(k)[0].text for k in range(20))


def test_learned_planner_needs_text() -> None:
    with pytest.raises(ValueError, match=r"workload\.source: 'synthetic' queries carry no text"):
        make_config({"planner": {"kind": "learned"}, "workload": {"source": "synthetic"}})
