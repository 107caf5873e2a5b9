"""Algorithm registry and zoo-style hyperparameter files for training agents on offload_gym.

Hyperparameters live in ``agents/hyperparams/<algo>.yml``, one top-level key per env id (RL-Zoo
style). Each entry holds ``n_envs``, ``n_timesteps``, ``policy``, ``policy_kwargs`` (a Python
expression string such as ``"dict(net_arch=[128, 128])"``), ``env_kwargs`` (passed to ``gym.make``)
and the algorithm's constructor kwargs. Schedules are written ``lin_3e-4`` (linear decay from
``3e-4`` to 0 over training).
"""

from __future__ import annotations

import copy
import difflib
import inspect
from pathlib import Path
from typing import Any

import torch
import yaml
from sb3_contrib import MaskablePPO
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.utils import LinearSchedule

__all__ = [
    "ALGOS",
    "HYPERPARAMS_DIR",
    "META_KEYS",
    "HyperparamError",
    "algo_kwargs",
    "check_algo",
    "load_hyperparams",
    "parse_policy_kwargs",
    "parse_schedule",
    "supports_masking",
]

ALGOS: dict[str, type[BaseAlgorithm]] = {
    "ppo": PPO,
    "maskable_ppo": MaskablePPO,
    "a2c": A2C,
    "dqn": DQN,
}

HYPERPARAMS_DIR = Path(__file__).resolve().parent / "hyperparams"

#: Keys of a hyperparameter entry that are not constructor kwargs of the algorithm.
META_KEYS = ("n_envs", "n_timesteps", "policy", "env_kwargs", "credit", "gamma_per_s", "bc_decisions", "bc_epochs",
             "bc_smoothing")

#: Constructor kwargs that accept a schedule (``lin_<value>``).
SCHEDULE_KEYS = ("learning_rate", "clip_range", "clip_range_vf")

#: Keys the training script sets itself; they may not appear in a hyperparameter entry.
_RESERVED = ("env", "seed", "device", "tensorboard_log", "verbose", "_init_setup_model")


class HyperparamError(ValueError):
    """An unknown algorithm, env id or hyperparameter, or a value that cannot be parsed."""


def check_algo(algo: str) -> type[BaseAlgorithm]:
    """The algorithm class for ``algo``; raises :class:`HyperparamError` naming the allowed ones."""
    if algo not in ALGOS:
        close = difflib.get_close_matches(algo, list(ALGOS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise HyperparamError(f"--algo: unknown algorithm {algo!r}{hint}; allowed: {', '.join(ALGOS)}")
    return ALGOS[algo]


def supports_masking(algo: str) -> bool:
    """Whether the algorithm consumes action masks (sb3-contrib MaskablePPO)."""
    return ALGOS[algo] is MaskablePPO


def load_hyperparams(algo: str, env_id: str, overrides: dict[str, Any] | None = None,
                     directory: Path | None = None) -> dict[str, Any]:
    """The raw (unparsed) hyperparameter entry for ``(algo, env_id)``, with ``overrides`` on top.

    :param algo: key of :data:`ALGOS`
    :param env_id: top-level key of the YAML file (an env id)
    :param overrides: entries replacing the file's (``env_kwargs`` is merged one level deep)
    :param directory: folder of the ``<algo>.yml`` files (default :data:`HYPERPARAMS_DIR`)
    :return: a fresh dict, safe to modify
    """
    check_algo(algo)
    path = (directory or HYPERPARAMS_DIR) / f"{algo}.yml"
    with open(path, encoding="utf-8") as fh:
        table = yaml.safe_load(fh) or {}
    if env_id not in table:
        raise HyperparamError(f"--env: no hyperparameters for {env_id!r} in {path.name}; "
                              f"allowed: {', '.join(sorted(table))}")
    entry: dict[str, Any] = copy.deepcopy(table[env_id])
    for key, value in (overrides or {}).items():
        if key == "env_kwargs" and isinstance(value, dict):
            entry["env_kwargs"] = {**(entry.get("env_kwargs") or {}), **value}
        else:
            entry[key] = value
    _check_keys(algo, entry)
    return entry


def _check_keys(algo: str, entry: dict[str, Any]) -> None:
    allowed = _constructor_keys(algo)
    for key in entry:
        if key in META_KEYS:
            continue
        if key in _RESERVED or key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise HyperparamError(f"hyperparams: unknown key {key!r} for {algo}{hint}; allowed: "
                                  f"{', '.join([*META_KEYS, *sorted(allowed)])}")


def _constructor_keys(algo: str) -> set[str]:
    params = inspect.signature(ALGOS[algo].__init__).parameters
    return {name for name in params if name not in ("self", "policy", *_RESERVED)}


def parse_schedule(value: Any, key: str = "learning_rate") -> Any:
    """``"lin_3e-4"`` → a picklable linear schedule from 3e-4 to 0; numbers pass through as float."""
    if isinstance(value, str):
        if value.startswith("lin_"):
            try:
                start = float(value[4:])
            except ValueError:
                raise HyperparamError(f"hyperparams: {key}: cannot parse schedule {value!r}; "
                                      "expected lin_<number> such as lin_3e-4") from None
            return LinearSchedule(start, 0.0, 1.0)
        try:
            return float(value)
        except ValueError:
            raise HyperparamError(f"hyperparams: {key}: {value!r} is neither a number nor lin_<number>") from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise HyperparamError(f"hyperparams: {key}: {value!r} is neither a number nor lin_<number>")


def parse_policy_kwargs(value: Any) -> dict[str, Any]:
    """A ``policy_kwargs`` entry (dict or Python expression string) as a dict.

    The string is evaluated with only ``dict``, ``list``, ``nn`` (``torch.nn``) and ``th`` in scope,
    e.g. ``"dict(net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=nn.ReLU)"``.
    """
    if value is None:
        return {}
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, str):
        scope = {"dict": dict, "list": list, "nn": torch.nn, "th": torch}
        try:
            result = eval(value, {"__builtins__": {}}, scope)
        except Exception as exc:
            raise HyperparamError(f"hyperparams: policy_kwargs: cannot evaluate {value!r}: {exc}") from None
        if isinstance(result, dict):
            return result
    raise HyperparamError(f"hyperparams: policy_kwargs: expected a dict or a string like "
                          f"'dict(net_arch=[64, 64])', got {value!r}")


#: Ranges of numeric hyperparameters: key -> (low, high, integer); low and high inclusive, None = unbounded.
_RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    "n_steps": (1, None, True), "batch_size": (1, None, True), "n_epochs": (1, None, True),
    "gamma": (0.0, 1.0, False), "gae_lambda": (0.0, 1.0, False), "ent_coef": (0.0, None, False),
    "vf_coef": (0.0, None, False), "max_grad_norm": (0.0, None, False), "buffer_size": (1, None, True),
    "learning_starts": (0, None, True), "target_update_interval": (1, None, True), "gradient_steps": (-1, None, True),
    "exploration_fraction": (0.0, 1.0, False), "exploration_initial_eps": (0.0, 1.0, False),
    "exploration_final_eps": (0.0, 1.0, False), "tau": (0.0, 1.0, False), "target_kl": (0.0, None, False),
}


def check_hyperparam_values(algo: str, kwargs: dict[str, Any]) -> None:
    """Numeric hyperparameters inside their ranges (n_steps >= 1, gamma in [0, 1], a positive learning rate, ...);
    :class:`HyperparamError` naming the key and the range otherwise."""
    import math

    for key, (lo, hi, integer) in _RANGES.items():
        if key not in kwargs or kwargs[key] is None:
            continue
        value = kwargs[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not float(value).is_integer()) \
                or not math.isfinite(float(value)):
            raise HyperparamError(f"hyperparams: {key}: {value!r} is not {'an integer' if integer else 'a number'}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            bound = " and ".join(t for t in (f">= {lo}" if lo is not None else "", f"<= {hi}" if hi is not None else "") if t)
            raise HyperparamError(f"hyperparams: {key}: {value!r} is out of range for {algo}; must be {bound}")
    for key in ("learning_rate", "clip_range"):
        value = kwargs.get(key)
        if isinstance(value, float) and not (value > 0 and math.isfinite(value)):
            raise HyperparamError(f"hyperparams: {key}: {value!r} must be a positive number (or lin_<positive number>)")


def algo_kwargs(algo: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Constructor kwargs (``policy`` included) from a raw entry: schedules and policy_kwargs parsed."""
    kwargs: dict[str, Any] = {k: v for k, v in entry.items() if k not in META_KEYS}
    kwargs["policy"] = entry.get("policy", "MlpPolicy")
    if "policy_kwargs" in kwargs:
        kwargs["policy_kwargs"] = parse_policy_kwargs(kwargs["policy_kwargs"])
    for key in SCHEDULE_KEYS:
        if key in kwargs and kwargs[key] is not None:
            kwargs[key] = parse_schedule(kwargs[key], key)
    return kwargs
