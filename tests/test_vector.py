"""The registered vector entry point (OffloadVectorEnv) and its SB3 VecEnv form."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import offload_gym  # noqa: F401
from offload_gym.envs.vector import OffloadVectorEnv, SB3VecEnv
from offload_gym.registration import ENV_IDS

TINY = "offload_gym/WifiOffload-tiny-v0"


@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
def test_make_vec_gives_the_batched_env_for_every_id(env_id: str) -> None:
    venv = gym.make_vec(env_id, num_envs=2, config={"episode": {"queries": 5}, "edge": {"kappa": 0.2}})
    assert isinstance(venv, OffloadVectorEnv)
    assert venv.config.edge.kappa == 0.2 and venv.config.episode.queries == 5
    obs, info = venv.reset(seed=0)
    assert venv.observation_space.contains(obs)
    assert info["action_mask"].shape == venv.action_masks().shape == (2, venv.single_action_space.n)
    venv.close()


def _run(venv: gym.vector.VectorEnv, steps: int, seed: int) -> list[tuple]:
    rng = np.random.default_rng(seed)
    obs, info = venv.reset(seed=seed)
    out = [(obs.copy(), info["action_mask"].copy())]
    for _ in range(steps):
        actions = np.array([rng.choice(np.flatnonzero(m)) for m in info["action_mask"]])
        obs, rewards, terminated, truncated, info = venv.step(actions)
        out.append((obs.copy(), info["action_mask"].copy(), rewards.copy(), terminated.copy(), truncated.copy(),
                    info.get("_episode_metrics", np.zeros(len(rewards), bool)).copy()))
    return out


def test_same_seeds_same_trajectories_as_gymnasiums_sync_vector_env() -> None:
    """Across several episodes (next-step autoreset included) the batch equals N single envs under SyncVectorEnv."""
    ours = _run(gym.make_vec(TINY, num_envs=3), 150, 11)
    sync = _run(gym.make_vec(TINY, num_envs=3, vectorization_mode="sync"), 150, 11)
    assert len(ours) == len(sync)
    for a, b in zip(ours, sync, strict=True):
        for x, y in zip(a, b, strict=True):
            assert np.array_equal(x, y)
    assert sum(int(step[-1].sum()) for step in ours[1:]) >= 3  # episodes did end (and restart) on the way


def test_final_steps_carry_episode_metrics_and_the_reset_step_pays_nothing() -> None:
    venv = gym.make_vec(TINY, num_envs=2)
    venv.reset(seed=1)
    ended = None
    for _ in range(400):
        actions = np.array([np.flatnonzero(m)[0] for m in venv.action_masks()])
        _, rewards, _, truncated, info = venv.step(actions)
        if ended is not None:
            assert rewards[ended] == 0.0 and not truncated[ended]  # the reset step of the finished env
            break
        if truncated.any():
            ended = int(np.flatnonzero(truncated)[0])
            assert info["_episode_metrics"][ended] and info["episode_metrics"]["queries"][ended] == 20
    assert ended is not None
    with pytest.raises(ValueError, match="num_envs"):
        OffloadVectorEnv(0)


def test_dict_observations_batch() -> None:
    venv = gym.make_vec(TINY, num_envs=2, config={"observation_format": "dict"})
    obs, _ = venv.reset(seed=0)
    assert set(obs) == {"observations", "action_mask"} and obs["action_mask"].shape == (2, 4)
    assert np.array_equal(obs["action_mask"].astype(bool), venv.action_masks())


def test_sb3_vec_env_form_trains_maskable_ppo_and_matches_dummy_vec_env() -> None:
    from sb3_contrib import MaskablePPO
    from sb3_contrib.common.maskable.utils import get_action_masks
    from stable_baselines3.common.vec_env import DummyVecEnv

    ours = SB3VecEnv(2, scenario="tiny", seed=3)
    dummy = DummyVecEnv([lambda: gym.make(TINY) for _ in range(2)])
    dummy.seed(3)
    obs_a, obs_b = ours.reset(), dummy.reset()
    rng = np.random.default_rng(0)
    for _ in range(80):
        assert np.array_equal(obs_a, obs_b)
        masks = get_action_masks(ours)
        assert np.array_equal(masks, get_action_masks(dummy))
        actions = np.array([rng.choice(np.flatnonzero(m)) for m in masks])
        obs_a, r_a, d_a, _ = ours.step(actions)
        obs_b, r_b, d_b, _ = dummy.step(actions)
        assert np.array_equal(r_a, r_b) and np.array_equal(d_a, d_b)
    model = MaskablePPO("MlpPolicy", SB3VecEnv(2, scenario="tiny", seed=0), n_steps=32, batch_size=32, n_epochs=1,
                        seed=0, verbose=0)
    model.learn(64)
    assert model.num_timesteps >= 64
