"""Vector envs across processes: same seeds and actions give the same trajectories as in-process envs.

SB3's ``SubprocVecEnv`` (``forkserver`` and ``spawn``: a fresh interpreter that must find the ids by
itself) against ``DummyVecEnv``, and Gymnasium's ``AsyncVectorEnv`` against ``SyncVectorEnv``, on the
tiny scenario, across at least one automatic reset.
"""

from __future__ import annotations

import functools
import multiprocessing
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

import offload_gym  # noqa: F401  (registers the ids)

ENV_ID = "offload_gym:offload_gym/WifiOffload-tiny-v0"  # module-prefixed: a spawned child imports offload_gym
N_ENVS = 2
N_STEPS = 90  # the tiny episode is 20 queries (~40-60 decisions): this crosses an automatic reset
SEED = 7


def _env_fns() -> list[Callable[[], gym.Env]]:
    return [functools.partial(gym.make, ENV_ID) for _ in range(N_ENVS)]


def _actions() -> np.ndarray:
    """A fixed sequence of unmasked random actions (masked ones exercise the fallback rule)."""
    return np.random.default_rng(SEED).integers(0, 4, size=(N_STEPS, N_ENVS))


def _sb3_trajectory(venv: VecEnv) -> dict[str, list[Any]]:
    try:
        venv.seed(SEED)
        out: dict[str, list[Any]] = {"obs": [venv.reset()], "rewards": [], "dones": [], "infos": []}
        for actions in _actions():
            obs, rewards, dones, infos = venv.step(actions)
            out["obs"].append(obs)
            out["rewards"].append(rewards)
            out["dones"].append(dones)
            out["infos"].append(repr([_plain_info(i) for i in infos]))
        return out
    finally:
        venv.close()


def _plain_info(info: dict[str, Any]) -> dict[str, Any]:
    """The info fields that must match exactly (arrays turned into lists for comparison)."""
    out = {k: info[k] for k in ("decision", "time_s", "invalid_actions", "completed") if k in info}
    out["action_mask"] = info["action_mask"].tolist()
    if "terminal_observation" in info:
        out["terminal_observation"] = info["terminal_observation"].tolist()
    if "episode_metrics" in info:
        out["episode_metrics"] = info["episode_metrics"]
    return out


def _assert_same(a: dict[str, list[Any]], b: dict[str, list[Any]]) -> None:
    assert len(a["obs"]) == len(b["obs"])
    for step, (x, y) in enumerate(zip(a["obs"], b["obs"], strict=True)):
        assert x.dtype == y.dtype == np.float32
        assert np.array_equal(x, y), f"observations differ after step {step}: features {np.flatnonzero(x != y)}"
    # DummyVecEnv buffers rewards as float32, SubprocVecEnv stacks the Python floats: compare as float32
    assert np.array_equal(np.array(a["rewards"], dtype=np.float32), np.array(b["rewards"], dtype=np.float32))
    assert np.array_equal(np.array(a["dones"]), np.array(b["dones"]))
    assert a["infos"] == b["infos"]


@pytest.fixture(scope="module")
def in_process() -> dict[str, list[Any]]:
    out = _sb3_trajectory(DummyVecEnv(_env_fns()))
    assert np.array(out["dones"]).any(), "the run should cross an episode end"
    assert any("terminal_observation" in s for s in out["infos"])
    return out


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_sb3_subproc_matches_dummy(start_method: str, in_process: dict[str, list[Any]]) -> None:
    if start_method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"{start_method} is not available on this platform")
    _assert_same(in_process, _sb3_trajectory(SubprocVecEnv(_env_fns(), start_method=start_method)))


def _gym_trajectory(venv: gym.vector.VectorEnv) -> dict[str, list[Any]]:
    try:
        obs, info = venv.reset(seed=SEED)
        out: dict[str, list[Any]] = {"obs": [obs], "rewards": [], "dones": [], "infos": [repr(info["time_s"].tolist())]}
        for actions in _actions():
            obs, rewards, terminated, truncated, info = venv.step(actions)
            out["obs"].append(obs)
            out["rewards"].append(rewards)
            out["dones"].append(np.stack([terminated, truncated]))
            out["infos"].append(repr([info["time_s"].tolist(), info["action_mask"].tolist(),
                                      info["invalid_actions"].tolist()]))
        return out
    finally:
        venv.close()


def test_gymnasium_async_vector_env_matches_sync() -> None:
    sync = _gym_trajectory(gym.make_vec(ENV_ID, num_envs=N_ENVS, vectorization_mode="sync"))
    assert np.array(sync["dones"]).any()
    spawned = _gym_trajectory(gym.make_vec(ENV_ID, num_envs=N_ENVS, vectorization_mode="async",
                                           vector_kwargs={"context": "spawn"}))
    _assert_same(sync, spawned)
    # and from plain env fns
    _assert_same(sync, _gym_trajectory(gym.vector.AsyncVectorEnv(_env_fns(), context="forkserver")))
