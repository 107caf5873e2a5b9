"""Vector forms of the env: a Gymnasium ``VectorEnv`` (the registered vector entry point) and an SB3 ``VecEnv``.

``gym.make_vec("offload_gym/WifiOffload-v0", num_envs=N, config={...})`` returns :class:`OffloadVectorEnv` for
every registered id (``vectorization_mode="sync"`` / ``"async"`` still give Gymnasium's own). It steps the N
envs of one scenario in one call, in this process, and offers what a masked learner needs:

* ``action_masks()``: the ``(N, n_actions)`` bool masks of the pending decisions, and ``infos["action_mask"]``
  (int8, with the flag array ``infos["_action_mask"]``), as Gymnasium's vector envs stack them;
* on each sub-env's final step, its ``infos["episode_metrics"]`` (with ``infos["_episode_metrics"]``);
* the autoreset mode declared in ``metadata["autoreset_mode"]``: next-step, as Gymnasium's ``SyncVectorEnv``
  (the step after a sub-env's episode ended resets it; that step's action is ignored, its reward is 0);
* seeds as ``SyncVectorEnv``'s: ``reset(seed=s)`` seeds sub-env ``i`` with ``s + i``, so the trajectories equal
  those of N single envs.

:class:`SB3VecEnv` is the same batch as a Stable-Baselines3 ``VecEnv`` (SB3's semantics: a finished sub-env is
reset at once and its last observation is in ``infos[i]["terminal_observation"]``); MaskablePPO finds the masks
through ``env_method("action_masks")``.

Today both loop over the Python envs; the batching is the seam where the compiled core (issue 11) will step all
N envs in one compiled call. Their speed is that of N single envs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array

from offload_gym.envs.offload_env import OffloadEnv

__all__ = ["OffloadVectorEnv", "SB3VecEnv"]


def _seeds(seed: int | Sequence[int | None] | None, n: int) -> list[int | None]:
    if seed is None:
        return [None] * n
    if isinstance(seed, (int, np.integer)):
        return [int(seed) + i for i in range(n)]
    seeds = list(seed)
    if len(seeds) != n:
        raise ValueError(f"seed: {len(seeds)} seeds for {n} envs; give one int or one seed per env")
    return seeds


class OffloadVectorEnv(gym.vector.VectorEnv):
    """N envs of one scenario stepped together (module docstring: masks, statistics, autoreset, seeds).

    :param num_envs: how many envs (>= 1).
    :param config, scenario, render_mode: as :class:`~offload_gym.envs.offload_env.OffloadEnv`'s, for every sub-env.
    """

    metadata: dict[str, Any] = {  # noqa: RUF012 - gymnasium reads it from the class
        "render_modes": ["ansi", "rgb_array"],
        **({"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP} if hasattr(gym.vector, "AutoresetMode") else {}),
    }

    def __init__(self, num_envs: int = 1, config: dict[str, Any] | None = None, scenario: str = "paper",
                 render_mode: str | None = None, **kwargs: Any) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs: {num_envs!r} is not allowed; must be an integer >= 1")
        if kwargs:
            raise TypeError(f"unexpected arguments {sorted(kwargs)}; OffloadVectorEnv takes num_envs, config, scenario "
                            "and render_mode")
        self.envs = [OffloadEnv(config=config, scenario=scenario, render_mode=render_mode) for _ in range(int(num_envs))]
        self.num_envs = int(num_envs)
        self.render_mode = render_mode
        first = self.envs[0]
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._obs = create_empty_array(self.single_observation_space, n=self.num_envs, fn=np.zeros)
        self._autoreset = np.zeros(self.num_envs, dtype=bool)

    @property
    def config(self) -> Any:
        """The sub-envs' scenario (:class:`~offload_gym.config.ScenarioConfig`)."""
        return self.envs[0].config

    def reset(self, *, seed: int | Sequence[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        infos: dict[str, Any] = {}
        observations = []
        for i, (env, s) in enumerate(zip(self.envs, _seeds(seed, self.num_envs), strict=True)):
            obs, info = env.reset(seed=s, options=options)
            observations.append(obs)
            infos = self._add_info(infos, info, i)
        self._autoreset[:] = False
        self._obs = concatenate(self.single_observation_space, observations, self._obs)
        return self._copy_obs(), infos

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        actions = np.asarray(actions)
        if actions.shape[:1] != (self.num_envs,):
            raise ValueError(f"actions: shape {actions.shape}; expected one action per env, ({self.num_envs},)")
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terminations = np.zeros(self.num_envs, dtype=bool)
        truncations = np.zeros(self.num_envs, dtype=bool)
        infos: dict[str, Any] = {}
        observations = []
        for i, env in enumerate(self.envs):
            if self._autoreset[i]:  # next-step autoreset: this step only resets the finished sub-env
                obs, info = env.reset()
            else:
                obs, reward, terminated, truncated, info = env.step(actions[i])
                rewards[i], terminations[i], truncations[i] = float(reward), terminated, truncated
            observations.append(obs)
            infos = self._add_info(infos, info, i)
        self._autoreset = terminations | truncations
        self._obs = concatenate(self.single_observation_space, observations, self._obs)
        return self._copy_obs(), rewards, terminations, truncations, infos

    def _copy_obs(self) -> Any:
        if isinstance(self._obs, dict):
            return {k: v.copy() for k, v in self._obs.items()}
        return self._obs.copy()

    def action_masks(self) -> np.ndarray:
        """``(num_envs, n_actions)`` bool masks of the sub-envs' pending decisions."""
        return np.stack([env.action_masks() for env in self.envs])

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Call a method (or read an attribute) of every sub-env, as ``SyncVectorEnv.call``."""
        out = []
        for env in self.envs:
            attr = getattr(env, name)
            out.append(attr(*args, **kwargs) if callable(attr) else attr)
        return tuple(out)

    def get_attr(self, name: str) -> tuple[Any, ...]:
        return tuple(getattr(env, name) for env in self.envs)

    def render(self) -> tuple[Any, ...] | None:  # type: ignore[override]
        if self.render_mode is None:
            return None
        return tuple(env.render() for env in self.envs)

    def close_extras(self, **kwargs: Any) -> None:
        for env in getattr(self, "envs", ()):  # none if the constructor failed
            env.close()


class SB3VecEnv:
    """:class:`OffloadVectorEnv` as a Stable-Baselines3 ``VecEnv`` (made on first use: SB3 is imported lazily).

    ``SB3VecEnv(num_envs, config=..., scenario=..., seed=...)`` returns an instance of a
    ``stable_baselines3.common.vec_env.VecEnv`` subclass.
    """

    def __new__(cls, num_envs: int = 1, config: dict[str, Any] | None = None, scenario: str = "paper",
                seed: int | None = None) -> Any:
        return _sb3_class()(OffloadVectorEnv(num_envs, config=config, scenario=scenario), seed=seed)


_SB3_CLASS: type | None = None


def _sb3_class() -> type:
    global _SB3_CLASS
    if _SB3_CLASS is not None:
        return _SB3_CLASS
    from stable_baselines3.common.vec_env import VecEnv

    class _OffloadSB3VecEnv(VecEnv):
        """SB3 view of an :class:`OffloadVectorEnv`; finished sub-envs reset at once (SB3's convention)."""

        def __init__(self, venv: OffloadVectorEnv, seed: int | None = None) -> None:
            self.venv = venv
            super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
            self._seed = seed
            self._actions: np.ndarray | None = None
            self._last_obs: list[Any] = [None] * venv.num_envs

        def reset(self) -> Any:
            seeds: list[int | None] = list(self._seeds)
            if self._seed is not None and all(s is None for s in seeds):  # the constructor's seed, first reset only
                seeds = [self._seed + i for i in range(self.num_envs)]
            self._seed = None
            for i, (env, s) in enumerate(zip(self.venv.envs, seeds, strict=True)):
                obs, self.reset_infos[i] = env.reset(seed=s)
                self._last_obs[i] = obs
            self._reset_seeds()
            space = self.venv.single_observation_space
            return concatenate(space, self._last_obs, create_empty_array(space, n=self.num_envs))

        def step_async(self, actions: np.ndarray) -> None:
            self._actions = np.asarray(actions)

        def step_wait(self) -> Any:
            assert self._actions is not None
            envs = self.venv.envs
            observations, rewards = [], np.zeros(self.num_envs, dtype=np.float32)
            dones = np.zeros(self.num_envs, dtype=bool)
            infos: list[dict[str, Any]] = []
            for i, env in enumerate(envs):
                obs, reward, terminated, truncated, info = env.step(self._actions[i])
                rewards[i], dones[i] = float(reward), bool(terminated or truncated)
                info = dict(info)
                info["TimeLimit.truncated"] = bool(truncated and not terminated)
                if dones[i]:
                    info["terminal_observation"] = obs
                    obs, _ = env.reset()
                observations.append(obs)
                infos.append(info)
            space = self.venv.single_observation_space
            return concatenate(space, observations, create_empty_array(space, n=self.num_envs)), rewards, dones, infos

        def close(self) -> None:
            self.venv.close()

        def _targets(self, indices: Any) -> list[OffloadEnv]:
            return [self.venv.envs[i] for i in self._get_indices(indices)]

        def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
            return [getattr(env, attr_name) for env in self._targets(indices)]

        def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
            for env in self._targets(indices):
                setattr(env, attr_name, value)

        def env_method(self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any) -> list[Any]:
            return [getattr(env, method_name)(*method_args, **method_kwargs) for env in self._targets(indices)]

        def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
            return [False for _ in self._targets(indices)]

        def get_images(self) -> Sequence[np.ndarray | None]:
            return [None for _ in self.venv.envs]

    _SB3_CLASS = _OffloadSB3VecEnv
    return _OffloadSB3VecEnv
