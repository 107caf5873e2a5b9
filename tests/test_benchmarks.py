"""Smoke test of benchmarks/bench_env.py (no timing asserts), and the estimator's speed paths against reference ones."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import offload_gym  # noqa: F401  (registers the ids)
from offload_gym.sim.estimates import Estimator, Overlay, _project_general, project_batch_finish, subtask_order
from offload_gym.sim.quality import decomposed_quality

ROOT = Path(__file__).resolve().parents[1]

RATES = ("offload_random_dps", "offload_greedy_dps", "cartpole_random_dps", "ratio_offload_cartpole",
         "users80_vs_20_rate_ratio", "users80_vs_20_cost_ratio", "greedy_predict_us", "observation_share",
         "estimates_share", "engine_share", "env_us_per_decision_instrumented", "env_mem_kib", "env_peak_kib",
         "rss_mib", "ppo_offload_sps", "ppo_cartpole_sps", "ppo_ratio")


def test_bench_env_quick_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_env.py"), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| measurement | value | unit | target |" in proc.stdout
    results: dict[str, Any] = json.loads(out.read_text())
    assert results["quick"] is True
    for key in RATES:
        assert math.isfinite(results[key]) and results[key] > 0, key
    assert math.isfinite(results["mem_growth_kib"])
    assert set(results["users_dps"]) == {"5", "10", "20", "40", "80"}
    assert set(results["aps_dps"]) == {"1", "2", "4", "8"}
    for value in [*results["users_dps"].values(), *results["aps_dps"].values()]:
        assert math.isfinite(value) and value > 0
    assert 0 < results["observation_share"] < 1 and 0 < results["estimates_share"] < 1


@pytest.mark.parametrize("seed", range(4))
def test_roomy_batch_projection_equals_the_general_one(seed: int) -> None:
    """The heap-light path (every stream fits in the batch) returns the very same float as the FIFO simulation."""
    rng = random.Random(seed)
    for _ in range(400):
        now = rng.choice([0.0, 3.25, rng.uniform(0, 100)])
        grid = rng.random() < 0.5  # coarse values make simultaneous events (ties) likely

        def time_after(scale: float) -> float:
            return now + (rng.randint(0, 4) * 0.125 if grid else rng.uniform(0, scale))  # noqa: B023

        prefilling = [(time_after(0.2), float(rng.randint(1, 60))) for _ in range(rng.randint(0, 3))]
        decoding = [float(rng.randint(1, 80)) if grid else rng.uniform(1, 80) for _ in range(rng.randint(0, 5))]
        pending = [(rng.choice([now - 1.0, now, time_after(0.5)]), rng.choice([0.0, 0.125, rng.uniform(0, 0.3)]),
                    float(rng.randint(1, 60))) for _ in range(rng.randint(1, 5))]
        target = rng.randrange(len(pending))
        kappa = rng.choice([0.0, 0.3, rng.uniform(0, 2)])
        roomy = len(prefilling) + len(decoding) + len(pending)
        expected = _project_general(now, 78.0, kappa, roomy, prefilling, decoding, pending, target)
        assert project_batch_finish(now, 78.0, kappa, roomy, prefilling, decoding, pending, target) == expected


def test_access_delay_key_matches_the_dcf_model() -> None:
    """The estimator keys access delays by OFDM symbols; that must equal the DCF model's own delay."""
    env = gym.make("offload_gym/WifiOffload-v0", core="python")  # the Python estimator's fast paths
    env.reset(seed=0)
    est: Estimator = env.unwrapped.estimator  # type: ignore[attr-defined]
    sim = env.unwrapped.sim  # type: ignore[attr-defined]
    rng = random.Random(0)
    for _ in range(300):
        n = rng.randint(1, 40)
        rate = rng.choice(sim.up_rate_bps + sim.down_rate_bps + [8.6e6])
        nbytes = rng.choice([rng.uniform(1.0, 3000.0), float(rng.randint(1, 3000)), 1500.0])
        expected = sim.access_delay_s(n, rate, min(nbytes, sim.cfg.wifi.frame_bytes))
        assert est._access_s(n, rate, nbytes) == expected


def _reference_plan(est: Estimator, query: Any, order: list[int]) -> tuple[float, float, tuple[int, ...]]:
    """The list scheduler from the public per-location estimates, every location projected."""
    overlay = Overlay()
    k = len(query.subtasks)
    view = est.view
    prefill_tps, decode_tps = view.phone_prefill_tps[query.user], view.phone_decode_tps[query.user]
    edge_prefill_tps = est._edge_prefill_tps
    locations, qualities = [0] * (k + 1), []
    for i in order:
        item = query.subtasks[i]
        ests = est.subtask(query, item, overlay)
        loc = max(ests, key=lambda L: (est.subtask_score(ests[L], k), -L))
        locations[i] = loc
        qualities.append(ests[loc].quality)
        overlay.placed[i] = (loc, ests[loc].finish_s)
        if loc == 0:
            overlay.phone_extra_s += item.pred_input_tokens / prefill_tps + item.pred_output_tokens / decode_tps
        else:
            overlay.edge_extra.setdefault(loc - 1, []).append(
                (ests[loc].ready_s, item.pred_input_tokens / edge_prefill_tps, item.pred_output_tokens))
            if not item.preds and query.spec.attachment_bytes > 0 and loc not in overlay.attachment_eta:
                overlay.attachment_eta[loc] = ests[loc].ready_s
    ests = est.aggregation(query, query.aggregation, overlay)
    loc = min(ests, key=lambda L: (ests[L].finish_s, L))
    locations[k] = loc
    return (ests[loc].finish_s - query.arrival_time, decomposed_quality(ests[loc].quality, qualities), tuple(locations))


@pytest.mark.parametrize("config", [None, {"topology": {"n_users": 60}}, {"reward": {"latency_weight": 0.0}},
                                    {"edge": {"max_batch": 2}}])
def test_plan_with_pruning_equals_the_full_list_scheduler(config: dict[str, Any] | None) -> None:
    env = gym.make("offload_gym/WifiOffload-v0", config=config, core="python")
    base = env.unwrapped
    rng = random.Random(1)
    _, info = env.reset(seed=3)
    plans = 0
    done = False
    while not done:
        query = base._query  # type: ignore[attr-defined]
        if base._kind == "query" and query.spec.n_subtasks > 1:  # type: ignore[attr-defined]
            plan = base.estimator.plan(query, subtask_order(query))  # type: ignore[attr-defined]
            assert (plan.latency_s, plan.quality, plan.locations) == _reference_plan(
                base.estimator, query, subtask_order(query))  # type: ignore[attr-defined]
            plans += 1
        _, _, terminated, truncated, info = env.step(rng.choice(np.flatnonzero(info["action_mask"]).tolist()))
        done = terminated or truncated
    assert plans > 50
