"""RLlib and Ray Tune (the optional ``ray`` extra): masked PPO never takes a masked action, a sweep completes.

Marked ``ray`` and left out of the default run (``pytest -m ray`` runs them, in a venv with ``.[dev,ray]``);
skipped when ray is not installed. One local Ray (2 CPUs) serves the whole module.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import load_module

ray = pytest.importorskip("ray")
pytest.importorskip("ray.rllib")

from ray.rllib.core.columns import Columns  # noqa: E402
from ray.tune.registry import register_env  # noqa: E402

from offload_gym.integrations.rllib import (  # noqa: E402
    episode_return_mean,
    init_ray,
    make_rllib_env,
    masked_ppo_config,
)

pytestmark = pytest.mark.ray

TINY = "offload_gym/WifiOffload-tiny-v0"
SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
RECORDED: list[tuple[np.ndarray, int]] = []  # (mask, action) of every step of the recording env


class _Recorder(gym.Wrapper):  # type: ignore[type-arg]
    """Records the mask in force and the action taken at every step (num_env_runners=0: same process)."""

    def reset(self, **kwargs: Any) -> Any:
        obs, info = self.env.reset(**kwargs)
        self._mask = np.asarray(obs["action_mask"]).copy()
        return obs, info

    def step(self, action: Any) -> Any:
        RECORDED.append((self._mask, int(action)))
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._mask = np.asarray(obs["action_mask"]).copy()
        return obs, reward, terminated, truncated, info


def _load_script(name: str) -> Any:
    return load_module(SCRIPTS / f"{name}.py", name)


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    init_ray(num_cpus=2)
    yield
    ray.shutdown()


def test_rllib_env_is_the_dict_env_with_overrides() -> None:
    env = make_rllib_env({"wifi.background_stations": 3, "observation_format": "box"}, env_id=TINY)
    assert isinstance(env.observation_space, gym.spaces.Dict)
    assert set(env.observation_space.spaces) == {"observations", "action_mask"}
    assert env.config.wifi.background_stations == 3
    with pytest.raises(ValueError, match="not an offload_gym id"):
        make_rllib_env({}, env_id="CartPole-v1")


def test_masked_ppo_iteration_never_takes_a_masked_action() -> None:
    RECORDED.clear()
    # invalid_action "raise": a masked action would also fail the env step outright
    register_env("offload_gym-test/recording", lambda cfg: _Recorder(make_rllib_env(cfg, env_id=TINY)))
    cfg = masked_ppo_config(TINY, {"invalid_action": "raise"}, seed=0, train_batch_size_per_learner=200,
                            minibatch_size=50, num_epochs=1, lr=1e-3)
    cfg = cfg.environment("offload_gym-test/recording", env_config={"invalid_action": "raise"})
    algo = cfg.build_algo()
    try:
        result = algo.train()
        ret = episode_return_mean(result)
        assert ret is not None and np.isfinite(ret)
        assert len(RECORDED) >= 200
        assert all(mask[action] == 1 for mask, action in RECORDED)
        assert any(not mask.all() for mask, _ in RECORDED), "no step had a masked action: the check proves nothing"

        # the trained module's action distribution gives the masked actions exactly zero probability
        import torch

        env = make_rllib_env({}, env_id=TINY)
        obs_list, masks = [], []
        obs, _ = env.reset(seed=5)
        rng = np.random.default_rng(0)
        while len(obs_list) < 64:
            obs_list.append(obs["observations"])
            masks.append(obs["action_mask"])
            obs, _, _, truncated, _ = env.step(int(rng.choice(np.flatnonzero(obs["action_mask"]))))
            if truncated:
                obs, _ = env.reset()
        batch = {Columns.OBS: {"observations": torch.as_tensor(np.stack(obs_list)),
                               "action_mask": torch.as_tensor(np.stack(masks))}}
        module = algo.get_module()
        with torch.no_grad():
            logits = module.forward_exploration(batch)[Columns.ACTION_DIST_INPUTS]
        probs = torch.softmax(logits, dim=-1).numpy()
        masked = np.stack(masks) == 0
        assert masked.any()
        assert np.all(probs[masked] == 0.0)
    finally:
        algo.stop()


def test_rllib_train_script_saves_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = _load_script("rllib_train")
    rc = script.main(["--iters", "1", "--train-batch", "200", "--minibatch", "50", "--epochs", "1",
                      "--run-dir", str(tmp_path / "run")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "iter   1/1" in out and "mean episode return" in out
    assert (tmp_path / "run" / "checkpoint" / "rllib_checkpoint.json").is_file()
    assert (tmp_path / "run" / "progress.csv").read_text().count("\n") == 2


def test_tune_sweep_two_trials(tmp_path: Path) -> None:
    script = _load_script("tune_sweep")
    csv_path = tmp_path / "results.csv"
    rows = script.sweep(script.build_parser().parse_args([
        "--lr", "1e-3", "--key", "wifi.background_stations", "--values", "2,24", "--stop-iters", "1",
        "--train-batch", "200", "--minibatch", "100", "--epochs", "1", "--storage", str(tmp_path / "tune"),
        "--name", "t", "--csv", str(csv_path)]))
    assert len(rows) == 2
    assert sorted(r["wifi.background_stations"] for r in rows) == [2, 24]
    assert all(not r["error"] and r["iterations"] == 1 and r["episode_return_mean"] is not None for r in rows)
    assert csv_path.read_text().count("\n") == 3


MA_STEPS: list[tuple[str, np.ndarray, dict[str, Any]]] = []  # (observed agent, its mask, the action dict sent)


def _recording_multi_agent_env(cfg: Any) -> Any:
    """The RLlib multi-agent env, recording who was asked, its mask and the actions sent back (module level:
    Ray pickles the creator by reference, so the records land in this module's MA_STEPS)."""
    from offload_gym.integrations.rllib import OffloadMultiAgentEnv

    class Recording(OffloadMultiAgentEnv):
        def reset(self, **kwargs: Any) -> Any:
            obs, infos = super().reset(**kwargs)
            self._last = obs
            return obs, infos

        def step(self, action_dict: dict[str, Any]) -> Any:
            ((agent, ob),) = self._last.items()  # exactly one phone was asked
            MA_STEPS.append((agent, np.asarray(ob["action_mask"]).copy(), dict(action_dict)))
            out = super().step(action_dict)
            self._last = out[0]
            return out

    overrides = dict(cfg)
    return Recording(overrides, scenario="tiny", reward=overrides.pop("multi_agent_reward"))


@pytest.mark.parametrize("policies", ["shared", "independent"])
def test_multi_agent_ppo_only_the_deciding_phone_acts(policies: str) -> None:
    from offload_gym.integrations.rllib import masked_multi_agent_ppo_config

    MA_STEPS.clear()
    register_env("offload_gym-test/ma-recording", _recording_multi_agent_env)
    cfg = masked_multi_agent_ppo_config(TINY, {"invalid_action": "raise"}, policies=policies, seed=0,
                                        train_batch_size_per_learner=200, minibatch_size=50, num_epochs=1)
    cfg = cfg.environment("offload_gym-test/ma-recording", env_config={"invalid_action": "raise"})
    algo = cfg.build_algo()
    try:
        result = algo.train()
        assert episode_return_mean(result) is not None
        assert len(MA_STEPS) >= 200
        assert all(list(actions) == [agent] and mask[actions[agent]] == 1 for agent, mask, actions in MA_STEPS)
        assert len({agent for agent, _, _ in MA_STEPS}) == 4  # every phone acted
        assert any(not mask.all() for _, mask, _ in MA_STEPS)
        phones = {"phone_0", "phone_1", "phone_2", "phone_3"}
        assert set(algo.env_runner.module.keys()) == (phones if policies == "independent" else {"shared"})
    finally:
        algo.stop()
