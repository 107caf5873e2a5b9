"""Vectorised offload_gym environments for Stable-Baselines3 training.

* Envs are built from ``gym.spec(env_id)`` captured in closures, so subprocess workers (forkserver or
  spawn) do not depend on the Gymnasium registry.
* Each env is wrapped ``OffloadEnv -> EpisodeMetricsInfo -> Monitor(info_keywords=INFO_KEYWORDS)``:
  the env reports its episode KPIs in ``info["episode_metrics"]`` on the final (truncated) step, while
  ``Monitor`` reads extra keys from the top-level info; the small wrapper copies them up, so they land
  in ``info["episode"]`` and the model's ``ep_info_buffer``.
* Masks: sb3-contrib's ``MaskablePPO`` calls ``vec_env.env_method("action_masks")`` every step, which
  reaches ``OffloadEnv.action_masks`` through the wrappers of each *inner* env. :class:`VecMaskCache`
  answers that call from the ``info["action_mask"]`` the envs already return, saving one
  inter-process round trip per step with ``SubprocVecEnv``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn

import offload_gym  # noqa: F401  (registers the env ids)
from offload_gym.registration import ENV_IDS

__all__ = [
    "INFO_KEYWORDS",
    "VEC_ENV_KINDS",
    "EpisodeMetricsInfo",
    "VecMaskCache",
    "check_env_id",
    "env_name",
    "make_env_fn",
    "make_vec_env",
]

#: Episode KPIs copied from ``info["episode_metrics"]`` into the Monitor's episode record.
INFO_KEYWORDS: tuple[str, ...] = (
    "mean_latency_s",
    "p95_latency_s",
    "mean_quality",
    "mean_reward",
    "deadline_miss_rate",
    "decomposed_share",
    "edge_share",
    "invalid_actions",
)

VEC_ENV_KINDS = ("dummy", "subproc", "batched")


def check_env_id(env_id: str) -> EnvSpec:
    """The registered spec of ``env_id``; raises ``ValueError`` naming the allowed ids otherwise."""
    try:
        return gym.spec(env_id)
    except gym.error.Error:
        import difflib

        close = difflib.get_close_matches(env_id, list(ENV_IDS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"--env: unknown env id {env_id!r}{hint}; allowed: {', '.join(ENV_IDS)}") from None


def env_name(env_id: str) -> str:
    """Folder-friendly env name: ``offload_gym/WifiOffload-v0`` -> ``WifiOffload-v0``."""
    return env_id.split(":")[-1].split("/")[-1]


class EpisodeMetricsInfo(gym.Wrapper[Any, Any, Any, Any]):
    """Copy ``info["episode_metrics"]`` entries into the top-level info on the episode's final step.

    ``Monitor(info_keywords=...)`` reads its extra keys from the top-level info dict. Keys in
    ``keywords`` that the metrics lack are filled with NaN so that Monitor never fails.
    """

    def __init__(self, env: gym.Env[Any, Any], keywords: Sequence[str] = INFO_KEYWORDS) -> None:
        super().__init__(env)
        self.keywords = tuple(keywords)

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            metrics = info.get("episode_metrics") or {}
            info = dict(info)
            for key, value in metrics.items():
                info.setdefault(key, value)
            for key in self.keywords:
                info[key] = metrics.get(key, info.get(key, math.nan))
        return obs, reward, terminated, truncated, info


def make_env_fn(spec: EnvSpec, *, rank: int = 0, seed: int | None = None, env_kwargs: dict[str, Any] | None = None,
                monitor_dir: str | Path | None = None,
                info_keywords: Sequence[str] = INFO_KEYWORDS) -> Callable[[], gym.Env[Any, Any]]:
    """A picklable thunk building one monitored env from a captured spec (no registry needed).

    :param spec: ``gym.spec(env_id)``, captured so that subprocess workers need not re-register
    :param rank: index of the env in the vector (its action space is seeded ``seed + rank``)
    :param seed: base seed (the observation RNG is seeded through ``VecEnv.seed`` at the first reset)
    :param env_kwargs: ``gym.make`` kwargs, e.g. ``{"config": {...}}``
    :param monitor_dir: folder for the Monitor CSV files (``None``: no file)
    """
    kwargs = dict(env_kwargs or {})
    keywords = tuple(info_keywords)

    def _init() -> gym.Env[Any, Any]:
        env = gym.make(spec, **kwargs)
        if seed is not None:
            env.action_space.seed(seed + rank)
        env = EpisodeMetricsInfo(env, keywords)
        filename = os.path.join(str(monitor_dir), str(rank)) if monitor_dir is not None else None
        return Monitor(env, filename=filename, info_keywords=keywords)

    return _init


def make_vec_env(env_id: str | EnvSpec, n_envs: int = 1, *, seed: int | None = 0, env_kwargs: dict[str, Any] | None = None,
                 vec_env: str = "dummy", start_method: str | None = None, monitor_dir: str | Path | None = None,
                 mask_cache: bool = True) -> VecEnv:
    """``n_envs`` monitored offload_gym envs in a ``DummyVecEnv`` or ``SubprocVecEnv``.

    :param env_id: registered id (or a spec)
    :param n_envs: number of parallel envs
    :param seed: env ``i`` is reset with ``seed + i`` at the first reset (``VecEnv.seed``)
    :param env_kwargs: ``gym.make`` kwargs, e.g. ``{"config": {"edge": {"kappa": 0.1}}}``
    :param vec_env: ``"dummy"`` (one process), ``"subproc"`` (a process per env) or ``"batched"`` (one process,
        all envs in one compiled call: :class:`offload_gym.envs.vector.SB3VecEnv` under a ``VecMonitor``; the
        fastest where the scenario runs on the compiled core)
    :param start_method: multiprocessing start method for ``subproc`` (default ``"forkserver"`` where
        available, else ``"spawn"``)
    :param monitor_dir: folder for Monitor CSVs (created); ``None`` keeps them in memory only
    :param mask_cache: wrap in :class:`VecMaskCache` (answers ``env_method("action_masks")`` from infos)
    """
    if vec_env not in VEC_ENV_KINDS:
        raise ValueError(f"--vec-env: {vec_env!r} is not allowed; choose one of {', '.join(VEC_ENV_KINDS)}")
    if n_envs < 1:
        raise ValueError(f"--n-envs: must be at least 1, got {n_envs}")
    spec = env_id if isinstance(env_id, EnvSpec) else check_env_id(env_id)
    if monitor_dir is not None:
        os.makedirs(monitor_dir, exist_ok=True)
    venv: VecEnv
    if vec_env == "batched":
        venv = _batched_vec_env(spec, n_envs, seed, env_kwargs, monitor_dir)
        return VecMaskCache(venv) if mask_cache else venv
    fns = [make_env_fn(spec, rank=i, seed=seed, env_kwargs=env_kwargs, monitor_dir=monitor_dir) for i in range(n_envs)]
    if vec_env == "subproc":
        from offload_gym.core._jit import JIT_ENABLED, cache_is_warm

        if JIT_ENABLED and not cache_is_warm():  # compile the core once here, not once in every worker at the same time
            from offload_gym.core.warm import warm

            warm()
        if start_method is None:
            import multiprocessing as mp

            start_method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        venv = SubprocVecEnv(fns, start_method=start_method)
    else:
        venv = DummyVecEnv(fns)
    if seed is not None:
        venv.seed(seed)
    return VecMaskCache(venv) if mask_cache else venv


def _batched_vec_env(spec: EnvSpec, n_envs: int, seed: int | None, env_kwargs: dict[str, Any] | None,
                     monitor_dir: str | Path | None) -> VecEnv:
    """``make_vec_env(vec_env="batched")``: the SB3 form of the batched vector env, monitored as one."""
    from stable_baselines3.common.vec_env import VecMonitor

    from offload_gym.envs.vector import SB3VecEnv

    kwargs = {**(spec.kwargs or {}), **(env_kwargs or {})}  # as gym.make merges them
    unknown = sorted(set(kwargs) - {"config", "scenario", "core"})
    if unknown:
        raise ValueError(f"env_kwargs: {unknown} are not taken by the batched vector env (config, scenario, core); "
                         "use vec_env='dummy'")
    venv = SB3VecEnv(n_envs, config=kwargs.get("config"), scenario=kwargs.get("scenario", "paper"), seed=seed,
                     core=kwargs.get("core", "auto"))
    filename = os.path.join(str(monitor_dir), "batched") if monitor_dir is not None else None
    return VecMonitor(venv, filename=filename, info_keywords=INFO_KEYWORDS)


class VecMaskCache(VecEnvWrapper):
    """Serve ``env_method("action_masks")`` from the ``info["action_mask"]`` the envs return.

    After a step, env ``i``'s mask for its next decision is in ``infos[i]["action_mask"]``, or, when
    the episode ended and the env auto-reset, in ``reset_infos[i]["action_mask"]``. Any other method,
    or a mask missing from the infos, is forwarded to the inner envs.
    """

    def __init__(self, venv: VecEnv) -> None:
        super().__init__(venv)
        self._masks: list[np.ndarray | None] = [None] * self.num_envs

    def reset(self) -> Any:
        obs = self.venv.reset()
        self._masks = [_mask_of(info) for info in self.venv.reset_infos]
        self.reset_infos = self.venv.reset_infos
        return obs

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        reset_infos = self.venv.reset_infos
        self.reset_infos = reset_infos
        self._masks = [_mask_of(reset_infos[i] if done else info)
                       for i, (done, info) in enumerate(zip(dones, infos, strict=True))]
        return obs, rewards, dones, infos

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        if method_name == "action_masks" and not method_args and not method_kwargs:
            idx = self._get_indices(indices)
            cached = [self._masks[i] for i in idx]
            if all(m is not None for m in cached):
                return [np.array(m, dtype=bool) for m in cached]
        return self.venv.env_method(method_name, *method_args, indices=indices, **method_kwargs)


def _mask_of(info: dict[str, Any] | None) -> np.ndarray | None:
    if not info or "action_mask" not in info:
        return None
    return np.asarray(info["action_mask"], dtype=bool)
