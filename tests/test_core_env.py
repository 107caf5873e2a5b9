"""Whole env trajectories on the compiled core equal the Python engine's (observations, rewards, infos)."""

from __future__ import annotations

import pickle
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("numba")

from offload_gym.envs.offload_env import OffloadEnv
from offload_gym.multi_agent import parallel_env


def trajectory(env: gym.Env, seed: int, steps: int = 10_000) -> list[Any]:
    """Every step's observation, reward, mask and info numbers under a seeded random masked policy."""
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    out: list[Any] = []
    for _ in range(steps):
        features = obs if not isinstance(obs, dict) else obs[next(iter(obs))]
        out.append((np.asarray(features).tobytes(), info["action_mask"].tobytes(), info["decision"],
                    info["decision_query_id"], info["time_s"], info["elapsed_s"], repr(info["completed"])))
        obs, reward, terminated, truncated, info = env.step(int(rng.choice(np.flatnonzero(info["action_mask"]))))
        out.append(repr(float(reward)))
        if terminated or truncated:
            out.append(repr(info["episode_metrics"]))
            break
    return out


IDS = ["offload_gym/WifiOffload-v0", "offload_gym/WifiOffload-tiny-v0", "offload_gym/WifiOffload-query-v0",
       "offload_gym/WifiOffload-residual-v0", "offload_gym/WifiOffload-energy-v0", "offload_gym/WifiOffload-dict-v0",
       "offload_gym/WifiOffload-azure-code-v0"]


@pytest.mark.parametrize("env_id", IDS)
def test_registered_ids_run_compiled_with_the_python_trajectories(env_id: str) -> None:
    compiled = gym.make(env_id, core="compiled")
    python = gym.make(env_id, core="python")
    for seed in (0, 1):
        assert trajectory(compiled, seed) == trajectory(python, seed)
    assert compiled.unwrapped.episode is not None and python.unwrapped.episode is None


def test_auto_uses_the_compiled_core_and_falls_back_for_what_is_not_ported() -> None:
    env = OffloadEnv()
    env.reset(seed=0)
    assert env.episode is not None and env.sim is None
    faults = {"faults": {"ap_outages": [{"ap": 0, "start_s": 1.0, "duration_s": 2.0}]}}
    env = OffloadEnv(config=faults)
    env.reset(seed=0)
    assert env.episode is None and env.sim is not None
    with pytest.raises(ValueError, match="core: 'compiled' does not run faults"):
        OffloadEnv(config=faults, core="compiled").reset(seed=0)
    with pytest.raises(ValueError, match="core: 'fast' is not allowed"):
        OffloadEnv(core="fast")
    env = OffloadEnv(render_mode="ansi")
    env.reset(seed=0)
    assert env.episode is None  # the renderer reads the Python engine


def test_a_compiled_env_pickles_mid_episode_and_continues_identically() -> None:
    env = OffloadEnv(core="compiled")
    rng = np.random.default_rng(0)
    _, info = env.reset(seed=4)
    for _ in range(30):
        _, _, _, _, info = env.step(int(rng.choice(np.flatnonzero(info["action_mask"]))))
    clone = pickle.loads(pickle.dumps(env))
    for _ in range(200):
        a = int(rng.choice(np.flatnonzero(info["action_mask"])))
        obs1, r1, _, t1, info = env.step(a)
        obs2, r2, _, t2, info2 = clone.step(a)
        assert obs1.tobytes() == obs2.tobytes() and r1 == r2 and t1 == t2 and repr(info) == repr(info2)
        if t1:
            break


def test_multi_agent_phone_views_equal_on_both_cores() -> None:
    views = []
    for core in ("compiled", "python"):
        env = parallel_env(config={"topology": {"n_users": 5}}, core=core)
        obs, _ = env.reset(seed=2)
        rng = np.random.default_rng(2)
        seen = []
        for _ in range(40):
            seen.append({a: o["observations"].tobytes() for a, o in obs.items()})
            acting = {a: int(rng.choice(np.flatnonzero(o["action_mask"]))) for a, o in obs.items()}
            obs, _, _, trunc, _ = env.step(acting)
            if any(trunc.values()):
                break
        views.append(seen)
    assert views[0] == views[1]
