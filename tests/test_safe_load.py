"""Model files are untrusted: loading one never unpickles its entries unless the user says it is trusted."""

from __future__ import annotations

import base64
import importlib
import json
import os
import sys
import zipfile
from pathlib import Path

import cloudpickle
import gymnasium as gym
import numpy as np
import pytest
import torch
from sb3_contrib import MaskablePPO

import offload_gym  # noqa: F401
from agents.policies import PolicyLoadError, load_sb3_predictor
from offload_gym.config import make_config

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
TINY = "offload_gym/WifiOffload-tiny-v0"


class _Payload:
    """Unpickling this runs a shell command that creates a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def _model_zip(tmp_path: Path) -> Path:
    env = gym.make(TINY)
    model = MaskablePPO("MlpPolicy", env, n_steps=32, batch_size=32, seed=0, device="cpu",
                        policy_kwargs={"net_arch": [16]})
    path = tmp_path / "model.zip"
    model.save(path)
    return path


def _poison(src: Path, dst: Path, key: str, marker: Path) -> Path:
    """A copy of ``src`` whose ``data[key]`` is a pickle that runs a command."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            raw = zin.read(item.filename)
            if item.filename == "data":
                data = json.loads(raw)
                entry = data.get(key) if isinstance(data.get(key), dict) else {":type:": "<class 'object'>"}
                entry[":serialized:"] = base64.b64encode(cloudpickle.dumps(_Payload(marker))).decode()
                data[key] = entry
                raw = json.dumps(data).encode()
            zout.writestr(item, raw)
    return dst


def test_a_clean_model_loads_without_unpickling_and_predicts_as_the_trusting_load(tmp_path: Path) -> None:
    path = _model_zip(tmp_path)
    config = make_config(scenario="tiny")
    safe = load_sb3_predictor(str(path), config)
    trusted = load_sb3_predictor(str(path), config, trust=True)
    env = gym.make(TINY)
    obs, info = env.reset(seed=3)
    for _ in range(15):
        mask = np.asarray(info["action_mask"], dtype=bool)
        a_safe = safe.predict(obs, action_masks=mask)[0]
        assert a_safe == trusted.predict(obs, action_masks=mask)[0]
        obs, _, _, truncated, info = env.step(int(a_safe))
        if truncated:
            break


def test_a_pickle_in_a_model_zip_does_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = _poison(_model_zip(tmp_path), tmp_path / "evil.zip", "observation_space", marker)
    load_sb3_predictor(str(evil), make_config(scenario="tiny"))  # the space is rebuilt, not unpickled
    evaluate = importlib.import_module("evaluate")
    assert evaluate.main(["--policies", str(evil), "--env", TINY, "--episodes", "1", "--no-progress"]) == 0
    assert not marker.exists()
    with pytest.raises(PolicyLoadError):  # the opt-in really unpickles: the command runs, the "space" is its exit code
        load_sb3_predictor(str(evil), make_config(scenario="tiny"), trust=True)
    assert marker.exists()


def test_an_entry_that_cannot_be_stood_in_for_is_refused_by_name(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"
    evil = _poison(_model_zip(tmp_path), tmp_path / "evil.zip", "custom_entry", marker)
    with pytest.raises(PolicyLoadError, match=r"stores .custom_entry. as a pickle.*--trust-model"):
        load_sb3_predictor(str(evil), make_config(scenario="tiny"))
    evaluate = importlib.import_module("evaluate")
    assert evaluate.main(["--policies", str(evil), "--env", TINY, "--episodes", "1", "--no-progress"]) == 2
    assert "--trust-model" in capsys.readouterr().err
    train = importlib.import_module("train")
    assert train.main(["--env", TINY, "--resume", str(evil), "--timesteps", "32", "--log-folder",
                       str(tmp_path / "logs"), "--no-compare", "--verbose", "0"]) == 2
    assert not marker.exists()


def test_pickled_policy_kwargs_are_rebuilt_from_their_readable_copy(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    src = _model_zip(tmp_path)
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(evil, "w") as zout:
        for item in zin.infolist():
            raw = zin.read(item.filename)
            if item.filename == "data":
                data = json.loads(raw)
                data["policy_kwargs"] = {":type:": "<class 'dict'>", "net_arch": [16],
                                         "activation_fn": "<class 'torch.nn.modules.activation.Tanh'>",
                                         ":serialized:": base64.b64encode(cloudpickle.dumps(_Payload(marker))).decode()}
                raw = json.dumps(data).encode()
            zout.writestr(item, raw)
    predictor = load_sb3_predictor(str(evil), make_config(scenario="tiny"))
    assert predictor.model.policy_kwargs["activation_fn"] is torch.nn.Tanh
    assert not marker.exists()


def test_resume_loads_without_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = _poison(_model_zip(tmp_path), tmp_path / "evil.zip", "lr_schedule", marker)
    train = importlib.import_module("train")
    args = ["--env", TINY, "--resume", str(evil), "--timesteps", "64", "--n-envs", "1", "--log-folder",
            str(tmp_path / "logs"), "--no-compare", "--verbose", "0", "--eval-freq", "0", "--eval-episodes", "1",
            "--hyperparams", json.dumps({"n_steps": 32, "batch_size": 32, "n_epochs": 1,
                                         "policy_kwargs": "dict(net_arch=[16])"})]
    assert train.main(args) == 0
    assert not marker.exists()
