"""Training side: hyperparameter files, vectorised envs, callbacks, train.py and train_many.py.

The fast tests train for a few hundred steps on the tiny scenario; ``@pytest.mark.slow`` ones run longer.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml

from agents.algorithms import (
    ALGOS,
    HyperparamError,
    algo_kwargs,
    check_algo,
    load_hyperparams,
    parse_policy_kwargs,
    parse_schedule,
)
from agents.callbacks import HarnessEvalCallback, TimeLimitCallback, heldout_seeds
from agents.sb3_setup import INFO_KEYWORDS, VecMaskCache, env_name, make_vec_env

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
train = importlib.import_module("train")
TINY = "offload_gym/WifiOffload-tiny-v0"
PAPER = "offload_gym/WifiOffload-v0"

#: Small rollouts so that a few hundred steps include several updates.
FAST: dict[str, dict[str, Any]] = {
    "ppo": {"n_steps": 64, "batch_size": 64, "n_epochs": 2},
    "maskable_ppo": {"n_steps": 64, "batch_size": 64, "n_epochs": 2},
    "a2c": {"n_steps": 8},
    "dqn": {"learning_starts": 64, "buffer_size": 2000, "batch_size": 32, "target_update_interval": 100},
}


def _model(algo: str, n_envs: int = 2, seed: int = 0, vec_env: str = "dummy") -> Any:
    entry = load_hyperparams(algo, TINY, FAST[algo])
    kwargs = algo_kwargs(algo, entry)
    env = make_vec_env(TINY, n_envs, seed=seed, vec_env=vec_env)
    return ALGOS[algo](env=env, seed=seed, device="cpu", **kwargs)


def _train_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["--env", TINY, "--timesteps", "256", "--n-envs", "2", "--log-folder", str(tmp_path / "logs"),
            "--eval-freq", "128", "--eval-episodes", "2", "--save-freq", "128", "--no-compare", "--verbose", "0",
            "--num-threads", "1", "--hyperparams", json.dumps(FAST["maskable_ppo"]), *extra]


# ---------------------------------------------------------------------------------------------- hyperparameters
@pytest.mark.parametrize("algo", sorted(ALGOS))
@pytest.mark.parametrize("env_id", [PAPER, TINY, "offload_gym/WifiOffload-query-v0", "offload_gym/WifiOffload-residual-v0"])
def test_every_yaml_entry_parses(algo: str, env_id: str) -> None:
    entry = load_hyperparams(algo, env_id)
    for key in ("n_envs", "n_timesteps", "policy", "policy_kwargs", "env_kwargs"):
        assert key in entry, f"{algo}.yml[{env_id}] lacks {key}"
    kwargs = algo_kwargs(algo, entry)
    assert isinstance(kwargs["policy_kwargs"], dict)
    assert callable(kwargs["learning_rate"]) or isinstance(kwargs["learning_rate"], float)


def test_schedules_and_policy_kwargs() -> None:
    sched = parse_schedule("lin_3e-4")
    assert sched(1.0) == pytest.approx(3e-4) and sched(0.5) == pytest.approx(1.5e-4) and sched(0.0) == 0.0
    assert parse_schedule(0.1) == 0.1 and parse_schedule("2e-3") == 0.002
    with pytest.raises(HyperparamError, match="lin_"):
        parse_schedule("exp_3e-4")
    pk = parse_policy_kwargs("dict(net_arch=dict(pi=[32], vf=[32]), activation_fn=nn.ReLU)")
    assert pk["net_arch"] == {"pi": [32], "vf": [32]} and pk["activation_fn"] is torch.nn.ReLU
    with pytest.raises(HyperparamError, match="policy_kwargs"):
        parse_policy_kwargs("__import__('os')")


def test_unknown_algo_env_and_key_are_named() -> None:
    with pytest.raises(HyperparamError, match=r"unknown algorithm 'ppo2'.*allowed: ppo, maskable_ppo, a2c, dqn"):
        check_algo("ppo2")
    with pytest.raises(HyperparamError, match="no hyperparameters for 'CartPole-v1'"):
        load_hyperparams("ppo", "CartPole-v1")
    with pytest.raises(HyperparamError, match=r"unknown key 'n_step' for ppo.*did you mean 'n_steps'"):
        load_hyperparams("ppo", TINY, {"n_step": 32})


# ---------------------------------------------------------------------------------------------- envs
@pytest.mark.parametrize("vec_env", ["dummy", "batched"])
def test_monitor_records_episode_kpis_and_mask_cache_matches_env(vec_env: str) -> None:
    venv = make_vec_env(TINY, 2, seed=3, vec_env=vec_env)
    assert isinstance(venv, VecMaskCache)
    rng = np.random.default_rng(0)
    venv.reset()
    episodes = []
    for _ in range(200):
        cached = np.stack(venv.env_method("action_masks"))
        direct = np.stack(venv.venv.env_method("action_masks"))
        np.testing.assert_array_equal(cached, direct)
        actions = np.array([rng.choice(np.flatnonzero(m)) for m in cached])
        _, _, dones, infos = venv.step(actions)
        episodes += [info["episode"] for info, done in zip(infos, dones, strict=True) if done]
    venv.close()
    assert episodes, "no episode finished in 200 steps on the tiny env"
    for ep in episodes:
        for key in INFO_KEYWORDS:
            assert key in ep and np.isfinite(ep[key])
        assert ep["invalid_actions"] == 0


def test_batched_vec_env_trains_on_the_same_episodes_as_dummy() -> None:
    """Same seed, same actions: the batched form's observations, rewards, dones and Monitor records equal
    DummyVecEnv's (episode returns and lengths, the KPIs)."""
    dummy = make_vec_env(TINY, 3, seed=7)
    batched = make_vec_env(TINY, 3, seed=7, vec_env="batched", env_kwargs={"config": {"episode": {"queries": 20}}})
    obs_d, obs_b = dummy.reset(), batched.reset()
    rng = np.random.default_rng(2)
    records: dict[str, list[dict[str, float]]] = {"dummy": [], "batched": []}
    for _ in range(150):
        assert np.array_equal(obs_d, obs_b)
        masks = np.stack(batched.env_method("action_masks"))
        assert np.array_equal(masks, np.stack(dummy.env_method("action_masks")))
        actions = np.array([rng.choice(np.flatnonzero(m)) for m in masks])
        obs_d, r_d, d_d, i_d = dummy.step(actions)
        obs_b, r_b, d_b, i_b = batched.step(actions)
        assert np.array_equal(r_d, r_b) and np.array_equal(d_d, d_b)
        records["dummy"] += [i["episode"] for i, d in zip(i_d, d_d, strict=True) if d]
        records["batched"] += [i["episode"] for i, d in zip(i_b, d_b, strict=True) if d]
    assert len(records["batched"]) >= 3
    for a, b in zip(records["dummy"], records["batched"], strict=True):
        assert a["r"] == pytest.approx(b["r"], rel=1e-6) and a["l"] == b["l"]
        assert all(a[key] == b[key] for key in INFO_KEYWORDS)
    with pytest.raises(ValueError, match="env_kwargs"):
        make_vec_env(TINY, 1, vec_env="batched", env_kwargs={"render_mode": "ansi"})


def test_subproc_vec_env_builds_from_spec() -> None:
    venv = make_vec_env(gym.spec(TINY), 2, seed=0, vec_env="subproc", start_method="spawn")
    try:
        obs = venv.reset()
        assert obs.shape[0] == 2
        masks = venv.env_method("action_masks")
        assert len(masks) == 2 and all(m.dtype == bool for m in masks)
        venv.step(np.zeros(2, dtype=np.int64))
    finally:
        venv.close()


def test_env_name_and_heldout_seeds() -> None:
    assert env_name(PAPER) == "WifiOffload-v0"
    assert heldout_seeds(3) == (1000, 1001, 1002)
    assert heldout_seeds(12)[-1] == 1011 and len(set(heldout_seeds(12))) == 12


# ---------------------------------------------------------------------------------------------- algorithms
@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_smoke_train_each_algorithm(algo: str, tmp_path: Path) -> None:
    model = _model(algo)
    cb = HarnessEvalCallback(env_id=TINY, seeds=(1000,), eval_freq=0, run_dir=tmp_path)
    model.learn(total_timesteps=300, callback=cb)
    assert model.num_timesteps >= 300
    assert (tmp_path / "best_model.zip").is_file()
    evals = json.loads((tmp_path / "evaluations.json").read_text())
    assert evals["baseline"] == "greedy" and evals["evaluations"][-1]["timesteps"] == model.num_timesteps
    assert np.isfinite(evals["evaluations"][-1]["mean_reward"])
    assert any("mean_latency_s" in ep for ep in model.ep_info_buffer)
    model.get_env().close()


def test_save_load_gives_same_deterministic_actions(tmp_path: Path) -> None:
    model = _model("maskable_ppo")
    model.learn(total_timesteps=256)
    env = gym.make(TINY)
    observations, masks = [], []
    obs, info = env.reset(seed=1000)
    for _ in range(60):
        observations.append(obs)
        masks.append(info["action_mask"].astype(bool))
        action, _ = model.predict(obs, deterministic=True, action_masks=masks[-1])
        obs, _, _, truncated, info = env.step(action)
        if truncated:
            obs, info = env.reset()
    model.save(tmp_path / "m")
    loaded = ALGOS["maskable_ppo"].load(tmp_path / "m.zip", device="cpu")
    batch, mask_batch = np.stack(observations), np.stack(masks)
    a1, _ = model.predict(batch, deterministic=True, action_masks=mask_batch)
    a2, _ = loaded.predict(batch, deterministic=True, action_masks=mask_batch)
    np.testing.assert_array_equal(a1, a2)
    assert mask_batch[np.arange(len(a1)), a1].all(), "a masked action was chosen"
    model.get_env().close()


def test_time_limit_stops_training_gracefully() -> None:
    model = _model("ppo", n_envs=1)
    cb = TimeLimitCallback(max_seconds=1e-9)
    model.learn(total_timesteps=10_000, callback=cb)
    assert cb.stopped and model.num_timesteps < 10_000
    model.get_env().close()


# ---------------------------------------------------------------------------------------------- train.py
def test_train_subprocess_writes_run_folder(tmp_path: Path) -> None:
    args = _train_args(tmp_path, "--compare", "--config", '{"episode": {"queries": 10}}', "--verbose", "1")
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = tmp_path / "logs" / "maskable_ppo" / "WifiOffload-tiny-v0_1"
    for name in ("config.yml", "args.yml", "command.txt", "best_model.zip", "final_model.zip", "evaluations.json",
                 "comparison.md", "comparison.json"):
        assert (run / name).is_file(), f"{name} missing from {sorted(p.name for p in run.iterdir())}"
    assert list((run / "tb").rglob("events.out.tfevents.*")), "no TensorBoard event file"
    assert list((run / "checkpoints").glob("rl_model_*_steps.zip"))
    config = yaml.safe_load((run / "config.yml").read_text())
    assert config["scenario"]["episode"]["queries"] == 10 and config["scenario"]["topology"]["n_aps"] == 2
    assert config["hyperparams"]["n_steps"] == 64
    assert yaml.safe_load((run / "args.yml").read_text())["algo"] == "maskable_ppo"
    comparison = json.loads((run / "comparison.json").read_text())
    assert {"greedy", "local-only", "maskable_ppo (best)", "maskable_ppo (final)"} <= set(comparison)
    assert "| `greedy` |" in proc.stdout
    # a log, not a terminal: progress lines with an ETA ending at the steps really run, no bar on stderr
    progress = [line for line in proc.stdout.splitlines() if line.startswith("[progress]")]
    assert progress and "ETA" in progress[-1]
    total = int(progress[-1].split("/")[1].split()[0].replace(",", ""))
    assert progress[-1].startswith(f"[progress] {total:,}/{total:,} steps (100 %)")
    assert "it/s" not in proc.stderr and "step/s" not in proc.stderr


def test_bad_algo_exits_2_with_one_line() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), "--algo", "ppo2"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "ppo2" in lines[0] and "maskable_ppo" in lines[0]


@pytest.mark.parametrize(("extra", "needle"), [
    (["--env", "offload_gym/WifiOffload-v9"], "WifiOffload-v9"),
    (["--config", '{"edge": {"kapa": 0.1}}'], "kapa"),
    (["--config", "{not json"], "--config"),
    (["--hyperparams", '{"n_step": 3}'], "n_step"),
])
def test_bad_arguments_exit_2(extra: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--env", TINY, "--log-folder", str(tmp_path), *extra]
    assert train.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("train.py: error:") and needle in err[0]
    assert not list(tmp_path.rglob("*.zip"))


def test_resume_continues_from_checkpoint(tmp_path: Path) -> None:
    assert train.main(_train_args(tmp_path)) == 0
    run1 = tmp_path / "logs" / "maskable_ppo" / "WifiOffload-tiny-v0_1"
    checkpoint = sorted((run1 / "checkpoints").glob("rl_model_*_steps.zip"))[-1]
    start = ALGOS["maskable_ppo"].load(checkpoint, device="cpu").num_timesteps
    assert start > 0
    assert train.main([*_train_args(tmp_path), "--resume", str(checkpoint)]) == 0
    run2 = tmp_path / "logs" / "maskable_ppo" / "WifiOffload-tiny-v0_2"
    final = ALGOS["maskable_ppo"].load(run2 / "final_model.zip", device="cpu")
    assert final.num_timesteps >= start + 256
    evals = json.loads((run2 / "evaluations.json").read_text())["evaluations"]
    assert evals[0]["timesteps"] > start  # the counter kept going


def test_resume_rejects_corrupt_and_mismatched_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip at all")
    assert train.main([*_train_args(tmp_path), "--resume", str(bad)]) == 2
    assert "--resume" in capsys.readouterr().err
    model = _model("ppo", n_envs=1)
    model.save(tmp_path / "ppo_model")
    model.get_env().close()
    assert train.main([*_train_args(tmp_path), "--resume", str(tmp_path / "ppo_model.zip")]) == 2
    assert "--algo ppo" in capsys.readouterr().err
    paper = ALGOS["maskable_ppo"](env=make_vec_env(PAPER, 1), **algo_kwargs("maskable_ppo", load_hyperparams(
        "maskable_ppo", PAPER)))
    paper.save(tmp_path / "paper_model")
    paper.get_env().close()
    assert train.main([*_train_args(tmp_path), "--resume", str(tmp_path / "paper_model.zip")]) == 2
    assert "spaces" in capsys.readouterr().err.lower()
    with zipfile.ZipFile(tmp_path / "paper_model.zip") as zf:
        assert "data" in zf.namelist()
    assert not (tmp_path / "logs").exists(), "a failed --resume left files"


# ---------------------------------------------------------------------------------------------- train_many
def test_train_many_aggregation_and_plot(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    import train_many

    jobs = []
    for seed, offset in ((0, 0.0), (1, 0.1)):
        run = tmp_path / f"run{seed}"
        run.mkdir()
        evals = [{"timesteps": t, "mean_reward": 0.1 * i + offset} for i, t in enumerate((1000, 2000, 3000))]
        (run / "evaluations.json").write_text(json.dumps({"evaluations": evals}))
        job = train_many.Job("ppo", seed, tmp_path, tmp_path / f"{seed}.log")
        job.run_dir = run
        jobs.append(job)
    curves = train_many.learning_curves(jobs)
    assert curves["ppo"]["timesteps"] == [1000.0, 2000.0, 3000.0]
    assert curves["ppo"]["mean"] == pytest.approx([0.05, 0.15, 0.25])
    assert curves["ppo"]["min"] == pytest.approx([0.0, 0.1, 0.2])
    train_many.plot_learning_curves(tmp_path / "curves.png", curves, 0.2, "test")
    assert (tmp_path / "curves.png").stat().st_size > 1000
    agg = train_many.aggregate([{"mean_reward": 0.4}, {"mean_reward": 0.6}], ["mean_reward"])
    assert agg["mean_reward"] == pytest.approx(0.5) and agg["mean_reward_ci95"] > 0 and agg["runs"] == 2


@pytest.mark.slow
def test_train_many_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_many.py"), "--algos", "maskable_ppo,a2c",
                           "--seeds", "0,1", "--env", TINY, "--timesteps", "512", "--jobs", "2", "--eval-freq", "256",
                           "--eval-episodes", "3", "--time-limit", "120", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert set(results["algos"]) == {"maskable_ppo", "a2c"} and len(results["runs"]) == 4
    assert "greedy" in results["builtins"] and (out / "learning_curves.png").is_file()
    assert "| `maskable_ppo` |" in (out / "results.md").read_text()


@pytest.mark.slow
def test_maskable_ppo_learns_on_tiny(tmp_path: Path) -> None:
    """A short training beats the untrained policy and local-only on held-out seeds."""
    from agents.evaluation import evaluate_policy, summarize

    model = _model("maskable_ppo", n_envs=4)
    seeds = heldout_seeds(10)
    before = summarize(evaluate_policy(model, env_id=TINY, seeds=seeds))["mean_reward"]
    model.learn(total_timesteps=30_000)
    after = summarize(evaluate_policy(model, env_id=TINY, seeds=seeds))["mean_reward"]
    local = summarize(evaluate_policy("local-only", env_id=TINY, seeds=seeds))["mean_reward"]
    assert after > before and after > local
    model.get_env().close()
