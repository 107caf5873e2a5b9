"""Policies for evaluation: the built-in heuristics and trained Stable-Baselines3 models behind one interface.

Everything the evaluation harness runs is a :class:`Predictor`: an object with SB3's
``predict(observation, state=None, episode_start=None, deterministic=True, action_masks=None)``.

* The built-in heuristics (``local-only``, ``nearest-edge``, ``random-split``, ``greedy``,
  ``greedy-no-split``) live in :mod:`offload_gym.policies` and are re-exported here.
* A trained model saved by SB3 (``model.save("x.zip")``) is wrapped in :class:`SB3Predictor`. The
  algorithm (MaskablePPO, PPO, A2C or DQN) is read from the zip's ``data`` JSON; when that is
  inconclusive each class is tried in turn. Action masks are passed to MaskablePPO only (the other
  algorithms have no notion of them; the env replaces a masked action by the phone and counts it).

**Model files are untrusted input.** SB3 stores some entries of a zip's ``data`` as pickles
(``":serialized:"``: the policy class, the spaces, schedules, buffers), and unpickling runs whatever
code the file's author put there. :func:`load_sb3_model` therefore never unpickles by default: every
serialized entry is replaced through SB3's ``custom_objects`` by a value built here (the policy class
the ``__module__`` string names among SB3's own, the env's spaces, constant schedules, empty
buffers), and the network weights load with ``torch.load(weights_only=True)`` (SB3's own choice). A
file with a serialized entry that cannot be stood in for (custom ``policy_kwargs`` objects, a policy
class outside SB3) is refused with an error naming the entry; ``trust=True`` (``--trust-model`` in the
command lines) loads it the unsafe way, for files you made yourself.
"""

from __future__ import annotations

import difflib
import json
import zipfile
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from offload_gym.config import ScenarioConfig
from offload_gym.policies import POLICIES, Policy, make_policy

__all__ = [
    "BUILTIN_POLICIES",
    "POLICIES",
    "SB3_ALGORITHMS",
    "Policy",
    "PolicyLoadError",
    "Predictor",
    "SB3Predictor",
    "detect_sb3_algorithm",
    "is_model_path",
    "load_sb3_model",
    "load_sb3_predictor",
    "make_policy",
    "model_env",
    "sidecar_path",
    "unknown_policy_message",
]

_TABLE_ORDER = ("local-only", "nearest-edge", "random-split", "greedy", "greedy-no-split")
#: Built-in policy names, in the order the results tables list them.
BUILTIN_POLICIES: tuple[str, ...] = (tuple(n for n in _TABLE_ORDER if n in POLICIES)
                                     + tuple(n for n in POLICIES if n not in _TABLE_ORDER))

#: SB3 algorithms a saved model may come from: name -> (module, class name).
SB3_ALGORITHMS: dict[str, tuple[str, str]] = {
    "MaskablePPO": ("sb3_contrib", "MaskablePPO"),
    "PPO": ("stable_baselines3", "PPO"),
    "A2C": ("stable_baselines3", "A2C"),
    "DQN": ("stable_baselines3", "DQN"),
}


class PolicyLoadError(ValueError):
    """A policy spec that is neither a built-in name nor a loadable SB3 model. The message says which."""


@runtime_checkable
class Predictor(Protocol):
    """Anything with SB3's ``predict`` signature (plus ``action_masks``, used by MaskablePPO)."""

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True, action_masks: np.ndarray | None = None) -> tuple[np.ndarray, Any]:
        ...  # pragma: no cover - protocol


def _allowed_text() -> str:
    return f"a built-in policy ({', '.join(BUILTIN_POLICIES)}) or a path to a trained Stable-Baselines3 .zip"


def is_model_path(spec: str) -> bool:
    """Whether ``spec`` names a model file rather than a built-in policy (a path, or anything ending in .zip)."""
    if spec in POLICIES:
        return False
    p = Path(spec)
    return spec.lower().endswith(".zip") or "/" in spec or "\\" in spec or p.exists() or Path(spec + ".zip").exists()


def _resolve_model_path(spec: str) -> Path:
    p = Path(spec)
    if not p.exists() and not spec.lower().endswith(".zip") and Path(spec + ".zip").exists():
        p = Path(spec + ".zip")  # SB3 appends .zip on save; accept the name without it
    if not p.exists():
        raise PolicyLoadError(f"policy: model file {spec!r} does not exist; expected {_allowed_text()}")
    if not p.is_file():
        raise PolicyLoadError(f"policy: {spec!r} is not a file; expected {_allowed_text()}")
    return p


def _read_sb3_data(path: Path) -> dict[str, Any]:
    """The ``data`` JSON of an SB3 zip, or a :class:`PolicyLoadError` saying why it cannot be read."""
    try:
        with zipfile.ZipFile(path) as zf:
            if "data" not in zf.namelist():
                raise PolicyLoadError(f"policy: {str(path)!r} is a zip but not a Stable-Baselines3 model "
                                      "(no 'data' entry); expected a file written by model.save()")
            raw = zf.read("data")
    except (zipfile.BadZipFile, OSError) as exc:
        raise PolicyLoadError(f"policy: cannot read model file {str(path)!r} ({exc}); expected {_allowed_text()}") from None
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PolicyLoadError(f"policy: model file {str(path)!r} has a corrupt 'data' entry ({exc})") from None
    if not isinstance(data, dict):
        raise PolicyLoadError(f"policy: model file {str(path)!r} has a corrupt 'data' entry (not a JSON object)")
    return data


def detect_sb3_algorithm(path: str | Path) -> str | None:
    """The SB3 algorithm that saved ``path`` (a key of :data:`SB3_ALGORITHMS`), or None when unsure.

    Reads ``data["policy_class"]["__module__"]``: ``sb3_contrib.common.maskable`` means MaskablePPO,
    ``stable_baselines3.dqn`` DQN; an actor-critic policy is PPO when PPO-only hyperparameters
    (``clip_range``, ``n_epochs``) were saved with it, else A2C.
    """
    data = _read_sb3_data(Path(path))
    policy_class = data.get("policy_class")
    module = policy_class.get("__module__", "") if isinstance(policy_class, dict) else ""
    if not isinstance(module, str) or not module:
        return None
    if module.startswith("sb3_contrib.common.maskable"):
        return "MaskablePPO"
    if module.startswith("stable_baselines3.dqn"):
        return "DQN"
    if module.startswith("stable_baselines3.common.policies"):
        return "PPO" if ("clip_range" in data or "n_epochs" in data) else "A2C"
    return None


def _algorithm_class(name: str) -> Any:
    import importlib

    module, cls = SB3_ALGORITHMS[name]
    return getattr(importlib.import_module(module), cls)


class SB3Predictor:
    """A trained SB3 model behind the :class:`Predictor` interface.

    ``action_masks`` reach the model only for MaskablePPO; other algorithms ignore them.
    """

    def __init__(self, model: Any, name: str = "sb3-model") -> None:
        self.model = model
        self.name = name
        self.algorithm = type(model).__name__
        self.uses_masks = self.algorithm == "MaskablePPO"

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True, action_masks: np.ndarray | None = None) -> tuple[np.ndarray, Any]:
        if self.uses_masks:
            masks = None if action_masks is None else np.asarray(action_masks, dtype=bool)
            action, state = self.model.predict(observation, state=state, episode_start=episode_start,
                                               deterministic=deterministic, action_masks=masks)
        else:
            action, state = self.model.predict(observation, state=state, episode_start=episode_start,
                                               deterministic=deterministic)
        return np.asarray(action), state

    def reset(self, seed: int | None = None) -> None:
        """Seed the model's sampling (only matters with ``deterministic=False``; SB3 seeds the global RNGs)."""
        if seed is not None:
            self.model.set_random_seed(seed)


def _env_spaces(config: ScenarioConfig) -> tuple[Any, Any]:
    """``(observation_space, action_space)`` of ``config``'s env: the env defines them, in one place."""
    from offload_gym.envs.offload_env import OffloadEnv

    probe = OffloadEnv(config)
    return probe.observation_space, probe.action_space


def sidecar_path(model_path: str | Path) -> Path:
    """``NAME.json`` beside ``NAME.zip``: the env a model was trained on (``env_id``, ``config``)."""
    p = Path(model_path)
    return p.with_suffix(".json") if p.suffix.lower() == ".zip" else p.with_name(p.name + ".json")


def model_env(spec: str) -> tuple[str, dict[str, Any]] | None:
    """``(env_id, config overrides)`` from a model's ``NAME.json`` sidecar, or None when it has none.

    A sidecar that exists but is not a JSON object with a string ``env_id`` (and a mapping ``config``,
    if present) raises :class:`PolicyLoadError` naming the file.
    """
    path = sidecar_path(_resolve_model_path(spec))
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PolicyLoadError(f"policy: cannot read the model's env file {str(path)!r} ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("env_id"), str) or not isinstance(data.get("config", {}), dict):
        raise PolicyLoadError(f"policy: the model's env file {str(path)!r} needs a JSON object with a string "
                              "'env_id' and a mapping 'config'")
    return data["env_id"], dict(data.get("config") or {})


#: Policy classes a model's ``policy_class`` may name (by its ``__module__``), per algorithm.
_SAFE_POLICY_MODULES: dict[str, tuple[str, str]] = {
    "sb3_contrib.common.maskable.policies": ("sb3_contrib.common.maskable.policies", "MaskableActorCriticPolicy"),
    "stable_baselines3.common.policies": ("stable_baselines3.common.policies", "ActorCriticPolicy"),
    "stable_baselines3.dqn.policies": ("stable_baselines3.dqn.policies", "DQNPolicy"),
}
#: Serialized entries that training state only needs (SB3 rebuilds or resets them when they are None).
_STATE_ENTRIES = ("_last_obs", "_last_episode_starts", "_last_original_obs", "ep_info_buffer", "ep_success_buffer",
                  "rollout_buffer_class", "replay_buffer_class")
#: Packages whose classes a serialized ``policy_kwargs`` may name (imported by name, never unpickled).
_SAFE_CLASS_PREFIXES = ("torch.optim.", "torch.nn.", "stable_baselines3.", "sb3_contrib.")


def _class_by_name(text: str) -> Any:
    """``"<class 'torch.optim.rmsprop.RMSprop'>"`` -> the class, for the packages in :data:`_SAFE_CLASS_PREFIXES`."""
    import importlib
    import re

    m = re.fullmatch(r"<class '([\w.]+)\.(\w+)'>", text.strip())
    if m is None or not m.group(1).startswith(_SAFE_CLASS_PREFIXES):
        raise ValueError(text)
    return getattr(importlib.import_module(m.group(1)), m.group(2))


def _policy_kwargs(entry: dict[str, Any]) -> dict[str, Any]:
    """``policy_kwargs`` rebuilt from the readable copy SB3 writes beside the pickle (classes by name)."""
    out: dict[str, Any] = {}
    for key, value in entry.items():
        if key in (":serialized:", ":type:"):
            continue
        out[key] = _class_by_name(value) if isinstance(value, str) and value.startswith("<class ") else value
    return out


#: Serialized schedules, replaced by constants (the value at the start when the JSON shows it).
_SCHEDULE_ENTRIES = ("learning_rate", "lr_schedule", "clip_range", "clip_range_vf", "exploration_schedule")


def _serialized_spaces(entry: dict[str, Any]) -> Any:
    """A space rebuilt from the readable attributes SB3 writes beside a serialized space (shape, n)."""
    import gymnasium as gym

    kind = str(entry.get(":type:", ""))
    if "Discrete" in kind:
        return gym.spaces.Discrete(int(entry["n"]))
    if "Box" in kind:
        shape = tuple(json.loads(str(entry.get("_shape", "[]"))))
        return gym.spaces.Box(-np.inf, np.inf, shape=shape, dtype=np.dtype(str(entry.get("dtype", "float32"))))
    raise ValueError(f"space of type {kind}")


def _constant_schedule(entry: dict[str, Any]) -> float:
    """A schedule's value at the start, read from the attributes SB3 writes beside it (0 when unreadable)."""
    import re

    if "start" in entry:
        try:
            return float(entry["start"])
        except (TypeError, ValueError):
            return 0.0
    m = re.search(r"(?:val|start)=([0-9.eE+-]+)", str(entry.get("value_schedule", "")))
    return float(m.group(1)) if m else 0.0


def safe_custom_objects(path: str | Path, spaces: tuple[Any, Any] | None = None,
                        overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """``custom_objects`` that stand in for every pickled entry of a model's ``data``, so nothing is unpickled.

    :param spaces: ``(observation_space, action_space)`` to use (checked against the shapes the file states);
        ``None`` rebuilds them from those shapes
    :param overrides: values that win (e.g. the learning rate to resume with)
    :raises PolicyLoadError: an entry that cannot be stood in for, or spaces that do not fit
    """
    import importlib

    data = _read_sb3_data(Path(path))
    objects: dict[str, Any] = dict(overrides or {})
    for key, entry in data.items():
        if not (isinstance(entry, dict) and ":serialized:" in entry) or key in objects:
            continue
        if key == "policy_class":
            module = str(entry.get("__module__", ""))
            if module not in _SAFE_POLICY_MODULES:
                raise PolicyLoadError(f"policy: {str(path)!r} names a policy class from {module or 'an unknown module'!r}, "
                                      "which cannot be loaded without unpickling it; pass --trust-model if you trust "
                                      "the file")
            mod, cls = _SAFE_POLICY_MODULES[module]
            objects[key] = getattr(importlib.import_module(mod), cls)
        elif key in ("observation_space", "action_space"):
            try:
                stated = _serialized_spaces(entry)
            except (KeyError, ValueError, TypeError) as exc:
                raise PolicyLoadError(f"policy: {str(path)!r} has an unreadable {key} ({exc}); pass --trust-model "
                                      "if you trust the file") from None
            given = spaces[0 if key == "observation_space" else 1] if spaces is not None else None
            objects[key] = given if given is not None and given.shape == stated.shape and \
                getattr(given, "n", None) == getattr(stated, "n", None) else stated
        elif key in _SCHEDULE_ENTRIES:
            objects[key] = _constant_schedule(entry)
        elif key == "train_freq":  # DQN: SB3 rebuilds TrainFreq from an int; 4 is its default
            objects[key] = 4
        elif key == "policy_kwargs" and "dict" in str(entry.get(":type:", "")):
            try:
                objects[key] = _policy_kwargs(entry)
            except (ValueError, ImportError, AttributeError) as exc:
                raise PolicyLoadError(f"policy: {str(path)!r} stores a policy_kwargs class outside SB3 and torch "
                                      f"({exc}); pass --trust-model if you made the file yourself") from None
        elif key in _STATE_ENTRIES:
            objects[key] = None
        else:
            raise PolicyLoadError(f"policy: {str(path)!r} stores {key!r} as a pickle, which this loader does not "
                                  "unpickle (it could run code); pass --trust-model if you made the file yourself")
    return objects


def load_sb3_model(path: str | Path, algorithm: str, *, trust: bool = False, spaces: tuple[Any, Any] | None = None,
                   overrides: dict[str, Any] | None = None, **load_kwargs: Any) -> Any:
    """``<Algorithm>.load(path, ...)`` without unpickling anything unless ``trust`` (see the module docstring).

    :param algorithm: a key of :data:`SB3_ALGORITHMS`
    :param spaces: the env's ``(observation_space, action_space)``, when known
    :param overrides: ``custom_objects`` that win over the stand-ins (e.g. ``learning_rate`` for a resume)
    """
    custom = dict(overrides or {}) if trust else safe_custom_objects(path, spaces, overrides)
    return _algorithm_class(algorithm).load(str(path), custom_objects=custom or None, **load_kwargs)


def load_sb3_predictor(spec: str, config: ScenarioConfig | None = None, trust: bool = False) -> SB3Predictor:
    """Load a saved SB3 model (detecting its algorithm) and check it fits ``config``'s spaces.

    Nothing in the file is unpickled unless ``trust`` (:func:`load_sb3_model`).
    """
    path = _resolve_model_path(spec)
    algorithm = detect_sb3_algorithm(path)
    candidates = [algorithm] if algorithm is not None else list(SB3_ALGORITHMS)
    spaces = None
    if config is not None:  # fail before loading when the file states other spaces
        spaces = _env_spaces(config)
        data = _read_sb3_data(path)
        try:
            stated = (_serialized_spaces(data["observation_space"]), _serialized_spaces(data["action_space"]))
        except (KeyError, TypeError, AttributeError, ValueError):
            stated = None  # unreadable here: the loaded model is checked below
        if stated is not None:
            _check_fits(path, config, spaces, tuple(stated[0].shape), int(getattr(stated[1], "n", -1)))
    model: Any = None
    errors: list[str] = []
    for name in candidates:
        try:
            model = load_sb3_model(path, name, trust=trust, spaces=spaces, device="cpu")
            break
        except PolicyLoadError:
            raise
        except Exception as exc:  # any load failure means "not this algorithm"
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
    if model is None:
        raise PolicyLoadError(f"policy: cannot load {str(path)!r} as any of {candidates} "
                              f"({'; '.join(errors)[:400]})")
    if config is not None and spaces is not None:
        _check_fits(path, config, spaces, tuple(getattr(model.observation_space, "shape", ()) or ()),
                    int(getattr(model.action_space, "n", -1)))
    return SB3Predictor(model, name=path.stem)


def _check_fits(path: Path, config: ScenarioConfig, spaces: tuple[Any, Any], got_obs: tuple[int, ...],
                got_n: int) -> None:
    obs_shape, n_actions = tuple(spaces[0].shape), int(spaces[1].n)
    if got_obs != obs_shape or got_n != n_actions:
        raise PolicyLoadError(
            f"policy: model {str(path)!r} was trained for observations {got_obs} and {got_n} actions, but this "
            f"scenario ({config.topology.n_aps} APs, action_mode {config.action_mode}) has observations "
            f"{obs_shape} and {n_actions} actions; evaluate it on the scenario it was trained on "
            f"(a {sidecar_path(path).name} beside the model names it)")


def unknown_policy_message(spec: str) -> str:
    close = difflib.get_close_matches(spec, list(BUILTIN_POLICIES), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"policy: {spec!r} is not a built-in policy{hint} nor an existing model file; expected {_allowed_text()}"
