"""evaluate.py and the evaluation harness: outputs, sweeps, bad input, statistics, common random numbers."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import gymnasium as gym
import numpy as np
import pytest
from conftest import load_module

import offload_gym
from agents import evaluation as ev
from offload_gym.policies import make_policy

ROOT = Path(__file__).resolve().parents[1]
TINY = "offload_gym/WifiOffload-tiny-v0"
REQUIRED = ("mean_latency_s", "p95_latency_s", "mean_quality", "mean_reward", "deadline_miss_rate")


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "evaluate.py"), "--no-progress", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def cli() -> ModuleType:
    return load_module(ROOT / "evaluate.py", "evaluate_cli")


def test_cli_json_and_csv(tmp_path: Path) -> None:
    out_json, out_csv = tmp_path / "r.json", tmp_path / "r.csv"
    proc = run_cli("--env", TINY, "--episodes", "2", "--json", str(out_json), "--csv", str(out_csv), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out_json.read_text())
    assert list(data) == ["local-only", "nearest-edge", "random-split", "greedy", "greedy-no-split"]
    for policy, metrics in data.items():
        for key in REQUIRED:
            assert math.isfinite(metrics[key]), (policy, key, metrics[key])
        assert metrics["episodes"] == 2
        assert math.isfinite(metrics["mean_latency_s_ci95"]) and metrics["mean_latency_s_ci95"] >= 0
        assert 0.0 <= metrics["deadline_miss_rate"] <= 1.0
        assert metrics["mean_latency_s"] <= metrics["p95_latency_s"] * 1.5
    assert data["local-only"]["edge_share"] == 0.0 and data["nearest-edge"]["edge_share"] == 1.0
    assert "| `greedy` |" in proc.stdout and "mean latency" in proc.stdout
    with out_csv.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["policy"] for r in rows] == list(data)
    for r in rows:
        assert float(r["mean_latency_s"]) == pytest.approx(data[r["policy"]]["mean_latency_s"], rel=1e-5)


def test_cli_sweep_with_plot(tmp_path: Path) -> None:
    png, out_json = tmp_path / "sweep.png", tmp_path / "sweep.json"
    proc = run_cli("--env", TINY, "--episodes", "2", "--policies", "greedy,local-only", "--sweep",
                   "wifi.background_stations=0,30", "--plot", str(png), "--json", str(out_json), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    data = json.loads(out_json.read_text())
    assert data["sweep"] == "wifi.background_stations"
    assert list(data["results"]) == ["0", "30"]
    assert set(data["results"]["30"]) == {"greedy", "local-only"}
    # local-only never touches Wi-Fi: contention cannot change its latency; greedy offloads and pays for it
    lo = [data["results"][v]["local-only"]["mean_latency_s"] for v in ("0", "30")]
    assert lo[0] == pytest.approx(lo[1])
    g = [data["results"][v]["greedy"]["mean_latency_s"] for v in ("0", "30")]
    assert g[1] > g[0]


def test_cli_bad_policy_exits_2(tmp_path: Path) -> None:
    proc = run_cli("--env", TINY, "--episodes", "1", "--policies", "greedy,gredy", cwd=tmp_path)
    assert proc.returncode == 2
    assert "gredy" in proc.stderr and "greedy-no-split" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stdout == ""


@pytest.mark.parametrize(("args", "needle"), [
    (["--config", "{not json"], "neither valid JSON"),
    (["--config", '{"edge": {"kapa": 0.1}}'], "edge.kapa"),
    (["--config", "missing.yaml"], "does not exist"),
    (["--sweep", "topology.n_userz=2,4"], "topology.n_userz"),
    (["--sweep", "edge.model=3B,13B"], "13B"),
    (["--plot", "x.png"], "needs --sweep"),
    (["--policies", "no_such_model.zip"], "does not exist"),
    (["--env", "offload_gym/Nope-v0"], "Nope-v0"),
    (["--episodes", "0"], "--episodes"),
])
def test_cli_bad_input_is_one_line_and_exit_2(cli: ModuleType, capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path, args: list[str], needle: str) -> None:
    code = cli.main(["--env", TINY, "--episodes", "1", "--no-progress", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err and err.startswith("evaluate.py: error:") and err.count("\n") == 1


def test_cli_config_file_yaml(cli: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("edge:\n  kappa: 0.1\nworkload.arrival_rate: 0.1\n")
    assert cli.load_config_arg(str(path)) == {"edge": {"kappa": 0.1}, "workload.arrival_rate": 0.1}
    assert cli.load_config_arg('{"edge.kappa": 0.2}') == {"edge.kappa": 0.2}


def test_t_quantile_matches_tables() -> None:
    assert ev.t_quantile(0.975, 1) == pytest.approx(12.7062, abs=1e-4)
    assert ev.t_quantile(0.975, 4) == pytest.approx(2.7764, abs=1e-4)
    assert ev.t_quantile(0.975, 9) == pytest.approx(2.2622, abs=1e-4)
    assert ev.t_quantile(0.975, 30) == pytest.approx(2.0423, abs=1e-4)
    assert ev.t_quantile(0.975, 1e7) == pytest.approx(1.95996, abs=1e-4)
    assert ev.t_quantile(0.025, 9) == pytest.approx(-2.2622, abs=1e-4)


def test_summarize_ci_on_known_numbers() -> None:
    episodes = [{"mean_latency_s": x, "mean_reward": 2 * x, "mean_quality": 0.5} for x in (1.0, 2.0, 3.0, 4.0, 5.0)]
    s = ev.summarize(episodes)
    # mean 3, sample sd sqrt(2.5), t(0.975, 4) = 2.776445 -> half-width 2.776445 * sqrt(2.5) / sqrt(5) = 1.963243
    assert s["mean_latency_s"] == pytest.approx(3.0)
    assert s["mean_latency_s_ci95"] == pytest.approx(1.963243, rel=1e-5)
    assert s["mean_reward"] == pytest.approx(6.0)
    assert s["mean_reward_ci95"] == pytest.approx(2 * 1.963243, rel=1e-5)
    assert s["mean_quality"] == pytest.approx(0.5) and "mean_quality_ci95" not in s
    assert s["episodes"] == 5
    single = ev.summarize(episodes[:1])
    assert single["mean_latency_s"] == 1.0 and math.isnan(single["mean_latency_s_ci95"])
    with pytest.raises(ValueError, match="no episodes"):
        ev.summarize([])


def test_parse_sweep_values_and_edge_alias() -> None:
    assert ev.parse_sweep("topology.n_users=4,10, 40") == ("topology.n_users", [4, 10, 40])
    key, values = ev.parse_sweep("workload.structure_probs=[0.7,0.2,0.1],[0.5,0.3,0.2]")
    assert key == "workload.structure_probs" and values == [[0.7, 0.2, 0.1], [0.5, 0.3, 0.2]]
    assert ev.parse_sweep("reward.kind=linear,product")[1] == ["linear", "product"]
    assert ev.parse_sweep("edge.model=3b,8B,70B")[1] == ["3B", "8B", "70B"]
    over = ev.sweep_overrides({"edge": {"kappa": 0.1, "ability": 0.0}, "wifi.background_stations": 4}, "edge.model", "70B")
    assert over == {"edge": {"kappa": 0.1, "model": "70B"}, "wifi": {"background_stations": 4}}
    edge = offload_gym.make_config(over).edge  # the preset replaces the base's ability, kappa stays
    assert (edge.ability, edge.decode_tps, edge.prefill_tps, edge.kappa) == (2.3, 9.0, 340.0, 0.1)
    assert ev.sweep_overrides(None, "edge.kappa", 0.5) == {"edge": {"kappa": 0.5}}
    with pytest.raises(ValueError, match="KEY=V1"):
        ev.parse_sweep("topology.n_users")


def test_edge_presets_order_speed_and_ability() -> None:
    m = ev.EDGE_MODELS
    assert m["8B"]["decode_tps"] == offload_gym.make_config().edge.decode_tps
    assert m["3B"]["decode_tps"] > m["8B"]["decode_tps"] > 5 * m["70B"]["decode_tps"]
    assert (m["3B"]["ability"], m["8B"]["ability"], m["70B"]["ability"]) == (1.1, 1.4, 2.3)


def test_common_random_numbers_same_queries_for_every_policy() -> None:
    env = gym.make(TINY)
    arrivals = {}
    for name in ("local-only", "greedy", "random-split"):
        policy = make_policy(name, env.unwrapped.config, seed=0)
        obs, info = env.reset(seed=21)
        seen = []
        while True:
            action, _ = policy.predict(obs, action_masks=np.asarray(info["action_mask"], dtype=bool))
            obs, _, term, trunc, info = env.step(action)
            seen += [(c["query_id"], c["user"], round(c["arrival_s"], 9), c["n_subtasks"]) for c in info["completed"]]
            if term or trunc:
                break
        arrivals[name] = sorted(seen)
    assert len(arrivals["local-only"]) == env.unwrapped.config.episode.queries
    assert arrivals["local-only"] == arrivals["greedy"] == arrivals["random-split"]


def test_parallel_equals_serial_and_is_reproducible() -> None:
    seeds = (3, 4)
    serial = ev.evaluate_many(["random-split", "greedy"], env_id=TINY, seeds=seeds, workers=1)
    parallel = ev.evaluate_many(["random-split", "greedy"], env_id=TINY, seeds=seeds, workers=2)
    assert list(parallel) == ["random-split", "greedy"]
    assert serial == parallel
    table = ev.markdown_table(serial)
    assert table.count("\n") == 3 and "| `random-split` |" in table and "±" in table


def test_evaluate_policy_takes_a_predictor_object_and_config() -> None:
    cfg = {"episode": {"queries": 7}}
    by_name = ev.evaluate_policy("nearest-edge", env_id=TINY, config=cfg, seeds=(1, 2))
    policy = make_policy("nearest-edge", offload_gym.make_config(cfg, scenario="tiny"))
    by_object = ev.evaluate_policy(policy, env_id=TINY, config=cfg, seeds=(1, 2))
    assert by_name == by_object
    assert [e["queries"] for e in by_name] == [7.0, 7.0]


def test_no_progress_bar_into_a_log(tmp_path: Path) -> None:
    """Without --no-progress, output that is not a terminal still gets no bar (only the results)."""
    proc = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), "--env", TINY, "--episodes", "1",
                           "--policies", "greedy"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "ep/s" not in proc.stderr and "%|" not in proc.stderr
    assert "| `greedy` |" in proc.stdout
