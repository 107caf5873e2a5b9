"""Behaviour cloning of the built-in scheduler, the warm start in train.py, and model sidecars in evaluation."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sb3_contrib import MaskablePPO

from agents.credit import CreditCallback
from agents.evaluation import evaluate_many, policy_env
from agents.imitation import collect, load_dataset, main, pretrain, save_dataset, value_targets
from agents.sb3_setup import make_vec_env

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
train = importlib.import_module("train")
TINY = "offload_gym/WifiOffload-tiny-v0"


def _model(mode: str) -> MaskablePPO:
    env = make_vec_env(TINY, 1, seed=0, env_kwargs={"config": {"action_mode": mode}})
    return MaskablePPO("MlpPolicy", env, n_steps=64, batch_size=64, seed=0, device="cpu",
                       policy_kwargs={"net_arch": [64, 64]})


@pytest.fixture(scope="module")
def query_data() -> dict[str, np.ndarray]:
    return collect(TINY, 400, config={"action_mode": "query"}, seed=5)


def test_collect_records_the_expert_and_each_decisions_query_reward(query_data: dict[str, np.ndarray]) -> None:
    n = len(query_data["actions"])
    assert n >= 400 and n % 20 == 0  # whole episodes of 20 queries, one decision each
    assert query_data["episode_starts"].sum() == n // 20
    assert all(query_data["masks"][i, a] for i, a in enumerate(query_data["actions"]))  # the expert obeys masks
    # query credit with gamma 0: the critic's target is the query's own reward; the step rewards add up to it
    targets = value_targets(query_data, credit="query", gamma=0.0, gamma_per_s=None)
    assert np.array_equal(targets, query_data["query_rewards"])
    assert query_data["rewards"].sum() == pytest.approx(query_data["query_rewards"].sum())
    undiscounted = value_targets(query_data, credit="step", gamma=1.0, gamma_per_s=None)
    assert undiscounted[0] == pytest.approx(query_data["rewards"][:20].sum())  # the first episode's return


def test_dataset_round_trip_without_pickles(tmp_path: Path, query_data: dict[str, np.ndarray]) -> None:
    path = tmp_path / "bc.npz"
    save_dataset(path, query_data, {"env_id": TINY, "config": {"action_mode": "query"}})
    data, meta = load_dataset(path)
    assert meta["env_id"] == TINY
    assert all(np.array_equal(data[k], query_data[k]) for k in query_data)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="behaviour-cloning dataset"):
        load_dataset(tmp_path / "junk.npz")


def test_pretraining_clones_the_expert(query_data: dict[str, np.ndarray]) -> None:
    model = _model("query")
    before = pretrain(model, query_data, epochs=1, learning_rate=0.0)["accuracy"]
    targets = value_targets(query_data, credit="query", gamma=0.0, gamma_per_s=None)
    stats = pretrain(model, query_data, epochs=60, batch_size=32, value_targets=targets)
    assert stats["accuracy"] > max(before + 0.3, 0.75)
    assert stats["value_loss"] < float(np.var(targets))  # the critic learned more than the mean


def test_smoothing_keeps_exploration_but_not_the_argmax() -> None:
    data = collect(TINY, 200, config={"action_mode": "residual"}, seed=1)
    model = _model("residual")
    stats = pretrain(model, data, epochs=40, smoothing=0.3)
    assert stats["accuracy"] == 1.0  # argmax is "follow"
    obs = torch.as_tensor(data["obs"])
    probs = model.policy.get_distribution(obs, action_masks=data["masks"]).distribution.probs
    follow = probs[np.arange(len(data["actions"])), data["actions"]].mean().item()
    assert 0.5 < follow < 0.9


def test_imitation_command_line(tmp_path: Path) -> None:
    out = tmp_path / "d.npz"
    assert main(["--env", TINY, "--config", '{"action_mode": "residual"}', "--decisions", "20", "--out", str(out)]) == 0
    data, meta = load_dataset(out)
    assert meta["config"] == {"action_mode": "residual"} and len(data["actions"]) == 20
    assert main(["--env", "Nope-v0", "--out", str(out)]) == 2
    assert main(["--env", TINY, "--decisions", "0", "--out", str(out)]) == 2


def test_train_warm_start_credit_and_sidecar(tmp_path: Path) -> None:
    args = ["--env", TINY, "--config", '{"action_mode": "residual"}', "--timesteps", "128", "--n-envs", "2",
            "--log-folder", str(tmp_path / "logs"), "--eval-freq", "0", "--eval-episodes", "1", "--no-compare",
            "--verbose", "0", "--hyperparams", json.dumps({"n_steps": 64, "batch_size": 64, "n_epochs": 1}),
            "--credit", "query", "--gamma-per-s", "0.5", "--bc-decisions", "40", "--bc-epochs", "2"]
    assert train.main(args) == 0
    run = next((tmp_path / "logs" / "maskable_ppo").iterdir())
    bc = json.loads((run / "bc.json").read_text())
    assert bc["decisions"] >= 40 and bc["accuracy"] == 1.0
    sidecar = json.loads((run / "final_model.json").read_text())
    assert sidecar["env_id"] == TINY and sidecar["config"] == {"action_mode": "residual"}
    # the harness runs the model on its own env from the sidecar, built-ins on the item interface
    env_id, cfg = policy_env(str(run / "final_model.zip"), TINY, {"episode.queries": 10})
    assert (env_id, cfg) == (TINY, {"action_mode": "residual", "episode": {"queries": 10}})
    assert policy_env("greedy", "offload_gym/WifiOffload-residual-v0", None)[1] == {"action_mode": "item"}
    res = evaluate_many(["greedy", str(run / "final_model.zip")], env_id=TINY, seeds=[1000])
    assert set(res) == {"greedy", str(run / "final_model.zip")}


@pytest.mark.parametrize(("flags", "message"), [
    (["--credit", "query", "--algo", "dqn"], "on-policy"),
    (["--gamma-per-s", "2"], "--gamma-per-s"),
    (["--bc-dataset", "/nonexistent.npz"], "--bc-dataset"),
    (["--bc-decisions", "-1"], "--bc-decisions"),
])
def test_train_rejects_bad_credit_and_warm_start_flags(tmp_path: Path, flags: list[str], message: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert train.main(["--env", TINY, "--log-folder", str(tmp_path), *flags]) == 2
    assert message in capsys.readouterr().err


def test_credit_callback_runs_inside_maskable_ppo() -> None:
    model = _model("query")
    callback = CreditCallback("query")
    model.learn(total_timesteps=64, callback=callback)
    buf = model.rollout_buffer
    assert np.isfinite(buf.returns).all() and np.isfinite(buf.advantages).all()


def test_shipped_paper_agent_loads_from_its_sidecar_and_matches_greedy() -> None:
    model = ROOT / "docs" / "models" / "residual_maskable_ppo_paper.zip"
    sidecar = json.loads(model.with_suffix(".json").read_text())
    assert sidecar["env_id"] == "offload_gym/WifiOffload-residual-v0" and sidecar["config"] == {}
    assert "train.py" in sidecar["command"]
    episodes: dict[tuple[str, int], dict[str, float]] = {}
    evaluate_many(["greedy", str(model)], seeds=[1000, 1001], episodes_out=episodes)  # on the paper scenario
    for seed in (1000, 1001):  # the agent starts from greedy and only deviates where it learned to
        assert episodes[(str(model), seed)]["mean_reward"] >= episodes[("greedy", seed)]["mean_reward"] - 0.005
