"""The Gymnasium contract: checkers, spaces, masks, determinism, pickling, conservation, bad input."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from conftest import random_masked, rollout
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from offload_gym import ENV_IDS, OffloadEnv
from offload_gym.policies import POLICIES, make_policy


@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
def test_checkers_pass_without_warnings(env_id: str) -> None:
    env = gym.make(env_id)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(env.unwrapped)
        sb3_check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []


def test_registration_is_idempotent_and_module_prefixed_id_works() -> None:
    import offload_gym

    offload_gym.register_envs()
    env = gym.make("offload_gym:offload_gym/WifiOffload-v0")
    assert isinstance(env.unwrapped, OffloadEnv)
    assert env.unwrapped.config.topology.n_users == 20
    assert gym.make("offload_gym/WifiOffload-tiny-v0").unwrapped.config.topology.n_aps == 2


def test_make_works_in_a_fresh_process() -> None:
    code = ("import gymnasium as gym; env = gym.make('offload_gym:offload_gym/WifiOffload-v0'); "
            "obs, info = env.reset(seed=1); print(obs.shape[0], info['decision'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["60", "query"]


def test_spaces_and_names(tiny_env: gym.Env) -> None:
    env = tiny_env.unwrapped
    assert env.action_space == gym.spaces.Discrete(4)
    assert len(env.observation_names) == env.observation_space.shape[0]
    assert len(set(env.observation_names)) == len(env.observation_names)
    assert np.all(np.isfinite(env.observation_space.low)) and np.all(np.isfinite(env.observation_space.high))


def test_observations_inside_space_and_masks_consistent() -> None:
    env = gym.make("offload_gym/WifiOffload-v0", config={"episode": {"queries": 80}})
    out = rollout(env, 11, random_masked)
    space = env.observation_space
    for obs in out["obs"]:
        assert obs.dtype == np.float32 and space.contains(obs)
    kinds = [info["decision"] for info in out["infos"]]
    assert kinds[-1] == "end" and {"query", "subtask", "aggregation"} <= set(kinds)
    for info in out["infos"][:-1]:
        mask = info["action_mask"]
        assert mask.dtype == np.int8 and mask[0] == 1
        if info["decision"] != "query":
            assert mask[-1] == 0
    # action_masks() and info agree
    obs, info = env.reset(seed=3)
    assert np.array_equal(env.unwrapped.action_masks(), info["action_mask"].astype(bool))


def _episode_signature(out: dict) -> tuple:
    infos = [{k: v for k, v in i.items() if k != "action_mask"} for i in out["infos"]]
    masks = [i["action_mask"].tolist() for i in out["infos"]]
    return [o.tobytes() for o in out["obs"]], out["rewards"], repr(infos), masks


def test_same_seed_same_trajectory_different_seed_differs(tiny_env: gym.Env) -> None:
    a = _episode_signature(rollout(tiny_env, 5, random_masked))
    b = _episode_signature(rollout(tiny_env, 5, random_masked))
    c = _episode_signature(rollout(tiny_env, 6, random_masked))
    assert a == b
    assert a[0] != c[0]


def test_reset_without_seed_continues_the_stream(tiny_env: gym.Env) -> None:
    first, _ = tiny_env.reset(seed=9)
    second, _ = tiny_env.reset()
    again, _ = tiny_env.reset(seed=9)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, second)


@pytest.mark.parametrize("clone", ["pickle", "deepcopy"])
def test_clone_mid_episode_continues_identically(clone: str) -> None:
    env = gym.make("offload_gym/WifiOffload-v0", config={"episode": {"queries": 60}})
    rng = np.random.default_rng(0)
    obs, info = env.reset(seed=21)
    for _ in range(40):
        obs, _, _, _, info = env.step(random_masked(obs, info["action_mask"].astype(bool), rng))
    twin = pickle.loads(pickle.dumps(env)) if clone == "pickle" else copy.deepcopy(env)
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    info_a = info_b = info
    done = False
    while not done:
        action = random_masked(obs, info_a["action_mask"].astype(bool), rng_a)
        assert action == random_masked(obs, info_b["action_mask"].astype(bool), rng_b)
        obs, r_a, _, trunc, info_a = env.step(action)
        obs_b, r_b, _, _, info_b = twin.step(action)
        assert np.array_equal(obs, obs_b) and r_a == r_b
        assert repr(info_a["completed"]) == repr(info_b["completed"])
        done = trunc
    assert info_a["episode_metrics"] == info_b["episode_metrics"]


@pytest.mark.parametrize("policy", [*sorted(POLICIES), "random-masked", "unmasked-random"])
def test_conservation_every_query_finishes_once(policy: str) -> None:
    env = gym.make("offload_gym/WifiOffload-v0", config={"episode": {"queries": 120}})
    pol = make_policy(policy, env.unwrapped.config, seed=0) if policy in POLICIES else None

    def choose(obs: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> int:
        if pol is not None:
            return int(pol.predict(obs, action_masks=mask)[0])
        if policy == "unmasked-random":
            return int(rng.integers(env.action_space.n))
        return random_masked(obs, mask, rng)

    out = rollout(env, 4, choose)
    ids = [c["query_id"] for info in out["infos"] for c in info["completed"]]
    core = env.unwrapped.episode
    assert sorted(ids) == list(range(120))
    assert core.queries_arrived == core.queries_finished == 120
    metrics = out["infos"][-1]["episode_metrics"]
    assert metrics["queries"] == 120
    assert sum(out["rewards"]) == pytest.approx(metrics["total_reward"], rel=1e-9)
    if policy == "unmasked-random":
        assert metrics["invalid_actions"] > 0
    else:
        assert metrics["invalid_actions"] == 0


def test_completed_records_are_plain_and_complete(tiny_env: gym.Env) -> None:
    out = rollout(tiny_env, 2, random_masked)
    records = [c for info in out["infos"] for c in info["completed"]]
    assert records
    for c in records:
        for key in ("query_id", "user", "latency_s", "quality", "reward", "decomposed", "placements"):
            assert key in c
        assert 0.0 <= c["quality"] <= 1.0 and c["latency_s"] > 0
        assert isinstance(c["placements"], list)
    metrics = out["infos"][-1]["episode_metrics"]
    for key in ("queries", "mean_latency_s", "p95_latency_s", "mean_quality", "mean_reward", "deadline_miss_rate"):
        assert np.isfinite(metrics[key])
    pickle.dumps(out["infos"])


def test_masked_action_falls_back_to_phone_or_raises() -> None:
    env = gym.make("offload_gym/WifiOffload-v0", config={"workload": {"subtask_count_probs": [1, 0, 0, 0, 0]}})
    _obs, info = env.reset(seed=0)
    assert info["action_mask"][-1] == 0
    _, _, _, _, info = env.step(env.action_space.n - 1)  # decompose, masked for K = 1
    assert info["invalid_actions"] == 1
    raising = gym.make("offload_gym/WifiOffload-v0",
                       config={"workload": {"subtask_count_probs": [1, 0, 0, 0, 0]}, "invalid_action": "raise"})
    raising.reset(seed=0)
    with pytest.raises(ValueError, match="action: 5 is masked"):
        raising.step(5)


@pytest.mark.parametrize("action", [-1, 6, 99, 2.5, "a", [1, 2]])
def test_action_outside_space_raises(action: object) -> None:
    env = gym.make("offload_gym/WifiOffload-v0")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(action)


def test_step_after_end_requires_reset(tiny_env: gym.Env) -> None:
    rollout(tiny_env, 0, random_masked)
    with pytest.raises(RuntimeError, match="reset"):
        tiny_env.unwrapped.step(0)


def test_truncation_not_termination(tiny_env: gym.Env) -> None:
    obs, info = tiny_env.reset(seed=1)
    terminated = truncated = False
    rng = np.random.default_rng(0)
    while not (terminated or truncated):
        obs, _, terminated, truncated, info = tiny_env.step(random_masked(obs, info["action_mask"].astype(bool), rng))
    assert truncated and not terminated and "episode_metrics" in info


def test_reset_options_change_the_scenario(tiny_env: gym.Env) -> None:
    tiny_env.reset(seed=0, options={"config": {"episode.queries": 7}})
    assert tiny_env.unwrapped.config.episode.queries == 7
    with pytest.raises(ValueError, match="n_aps"):
        tiny_env.reset(options={"config": {"topology": {"n_aps": 3}}})


def test_ansi_render(tiny_env: gym.Env) -> None:
    env = gym.make("offload_gym/WifiOffload-tiny-v0", render_mode="ansi")
    env.reset(seed=0)
    text = env.render()
    assert isinstance(text, str) and "AP0" in text and "query" in text


def test_common_random_numbers_across_decomposition_settings() -> None:
    """Each query's size, difficulty and attachment depend on the seed only, not on K or structure settings."""
    from offload_gym.policies import make_policy

    latencies = []
    for overrides in ({}, {"workload": {"structure_probs": [0.7, 0.2, 0.1]}},
                      {"workload": {"subtask_count_probs": [0.5, 0.5, 0, 0, 0]}}):
        env = gym.make("offload_gym/WifiOffload-v0", config={**overrides, "episode": {"queries": 60}})
        policy = make_policy("nearest-edge", env.unwrapped.config)
        out = rollout(env, 3, lambda obs, mask, rng, p=policy: int(p.predict(obs, action_masks=mask)[0]))
        latencies.append([c["latency_s"] for info in out["infos"] for c in info["completed"]])
        workload = env.unwrapped.episode.setup.workload
        specs = [(k, workload.query(k)[0].prompt_tokens, workload.query(k)[0].answer_tokens) for k in range(60)]
        latencies[-1].append(specs)
    assert latencies[0] == latencies[1] == latencies[2]
