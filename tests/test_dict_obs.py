"""The Dict observation format: the action mask inside the observation (RLlib, TorchRL, SB3 MultiInputPolicy)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import offload_gym  # noqa: F401
from offload_gym.config import ConfigError
from offload_gym.policies import make_policy

DICT_ID = "offload_gym/WifiOffload-dict-v0"


def test_dict_observation_holds_the_box_features_and_the_mask() -> None:
    box, dct = gym.make("offload_gym/WifiOffload-v0"), gym.make(DICT_ID)
    check_env(dct.unwrapped, skip_render_check=True)
    obs_b, info_b = box.reset(seed=3)
    obs_d, info_d = dct.reset(seed=3)
    assert set(obs_d) == {"observations", "action_mask"}
    rng = np.random.default_rng(0)
    for _ in range(60):
        assert np.array_equal(obs_b, obs_d["observations"])
        assert np.array_equal(obs_d["action_mask"], info_d["action_mask"])
        assert obs_d["action_mask"].dtype == np.int8 and dct.observation_space.contains(obs_d)
        action = int(rng.choice(np.flatnonzero(info_b["action_mask"])))
        obs_b, r_b, _, trunc, info_b = box.step(action)
        obs_d, r_d, _, _, info_d = dct.step(action)
        assert r_b == r_d
        if trunc:
            break


def test_dict_keys_are_configurable_and_checked() -> None:
    env = gym.make("offload_gym/WifiOffload-tiny-v0",
                   config={"observation_format": "dict", "observation_key": "obs", "action_mask_key": "mask"})
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"obs", "mask"}
    with pytest.raises(ConfigError, match="observation_key, action_mask_key"):
        gym.make("offload_gym/WifiOffload-tiny-v0",
                 config={"observation_format": "dict", "observation_key": "x", "action_mask_key": "x"})
    with pytest.raises(ValueError, match="observation_format"):
        env.reset(options={"config": {"observation_format": "box"}})


def test_builtin_policies_read_dict_observations() -> None:
    env = gym.make(DICT_ID)
    greedy = make_policy("greedy", env.unwrapped.config)  # type: ignore[attr-defined]
    box = gym.make("offload_gym/WifiOffload-v0")
    box_greedy = make_policy("greedy", box.unwrapped.config)  # type: ignore[attr-defined]
    obs, _ = env.reset(seed=1)
    obs_b, info_b = box.reset(seed=1)
    for _ in range(40):
        action, _ = greedy.predict(obs)
        expected, _ = box_greedy.predict(obs_b, action_masks=info_b["action_mask"])
        assert int(action) == int(expected)
        obs, _, _, trunc, _ = env.step(int(action))
        obs_b, _, _, _, info_b = box.step(int(action))
        if trunc:
            break


def test_maskable_ppo_multi_input_policy_trains_on_the_dict_env() -> None:
    pytest.importorskip("sb3_contrib")
    from sb3_contrib import MaskablePPO

    env = gym.make("offload_gym/WifiOffload-tiny-v0", config={"observation_format": "dict"})
    model = MaskablePPO("MultiInputPolicy", env, n_steps=64, batch_size=32, n_epochs=1, seed=0, verbose=0)
    model.learn(128)
    obs, info = env.reset(seed=0)
    action, _ = model.predict(obs, action_masks=info["action_mask"].astype(bool), deterministic=True)
    assert info["action_mask"][int(action)] == 1


def test_torchrl_action_mask_works_on_the_dict_env_without_glue() -> None:
    pytest.importorskip("torchrl")
    import torch
    from torchrl.envs import GymEnv, TransformedEnv
    from torchrl.envs.transforms import ActionMask
    from torchrl.envs.utils import check_env_specs

    env = TransformedEnv(GymEnv("offload_gym/WifiOffload-tiny-v0", config={"observation_format": "dict"},
                                categorical_action_encoding=True), ActionMask())
    check_env_specs(env)
    torch.manual_seed(0)
    td = env.rollout(60)
    masks, actions = td["action_mask"], td["action"]
    assert bool((masks.sum(-1) < masks.shape[-1]).any())  # some steps do mask actions
    assert bool(masks.gather(-1, actions.long().unsqueeze(-1)).all())  # and none is taken
    assert bool(td["next", "truncated"][-1]) and float(td["next", "reward"].abs().sum()) > 0  # an episode, with rewards
