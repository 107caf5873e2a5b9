"""The engine's physics and queueing through the env: contention, planner time, estimates on an idle network,
decomposition, the workload drawn in blocks, random access delays.

The closed forms of a single job on the phone and at the edge, M/D/1 queueing on the phone and the batch model
(``r(b)`` and FIFO admission) are in ``tests/test_core_closed_forms.py``.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from conftest import deterministic_overrides, single_query_latency

from offload_gym.config import make_config
from offload_gym.envs.offload_env import OffloadEnv
from offload_gym.envs.scene import scene
from offload_gym.sim.physics import PHONE


def one_phone_config(**extra: object) -> dict:
    cfg = deterministic_overrides(
        topology={"n_users": 1, "n_aps": 1, "user_positions": [[10.0, 10.0]], "ap_positions": [[15.0, 15.0]]},
        episode={"queries": 1},
    )
    for key, value in extra.items():
        section, field = key.split("__")
        cfg.setdefault(section, {})[field] = value
    return cfg


def test_more_background_stations_never_make_a_query_faster() -> None:
    latencies = []
    for background in range(0, 41, 4):
        cfg = make_config(one_phone_config(wifi__background_stations=background, workload__attachment_prob=1.0))
        latencies.append(single_query_latency(cfg, 1, seed=1))
    assert all(b >= a for a, b in itertools.pairwise(latencies))
    assert latencies[-1] > latencies[0]


def test_whole_estimate_equals_realised_latency_on_idle_network() -> None:
    cfg = make_config(one_phone_config(workload__attachment_prob=1.0))
    for location in (PHONE, 1):
        env = OffloadEnv(config=cfg)
        env.reset(seed=5)
        sc = scene(env)
        assert sc is not None and sc.decision is not None
        arrival_s = sc.now_s  # the first decision comes at the query's arrival
        finish_s = sc.decision.estimates[location].finish_s
        _, _, _, truncated, info = env.step(location)
        assert truncated
        realised = info["completed"][0]["latency_s"]
        assert finish_s - arrival_s == pytest.approx(realised, rel=1e-9)


def test_decomposed_queries_run_every_subtask_and_the_aggregation() -> None:
    """Always decomposing into 5-subtask DAGs, random usable locations: every query finishes once, with one
    placement per subtask and one for the aggregation, a quality in [0, 1] and no earlier than its arrival."""
    cfg = {"workload": {"subtask_count_probs": [0, 0, 0, 0, 1.0], "structure_probs": [0, 0, 1.0]},
           "topology": {"n_users": 2, "n_aps": 2}, "episode": {"queries": 30}}
    env = OffloadEnv(config=cfg)
    _, info = env.reset(seed=2)
    rng = np.random.default_rng(0)
    records, kinds = [], []
    truncated = False
    while not truncated:
        kinds.append(info["decision"])
        allowed = np.flatnonzero(info["action_mask"])
        a = env.n_aps + 1 if info["decision"] == "query" else int(rng.choice(allowed))
        _, _, _, truncated, info = env.step(a)
        records += info["completed"]
    assert sorted(r["query_id"] for r in records) == list(range(30))
    assert kinds.count("query") == 30 and kinds.count("subtask") == 150 and kinds.count("aggregation") == 30
    for r in records:
        assert r["decomposed"] and r["n_subtasks"] == 5 and len(r["placements"]) == 6
        assert 0.0 <= r["quality"] <= 1.0 and r["latency_s"] > 0.0
    assert info["episode_metrics"]["decomposed_share"] == 1.0


def test_planner_latency_delays_every_query() -> None:
    base = make_config(one_phone_config())
    slow = make_config(one_phone_config(planner__latency_s=0.25))
    lat = []
    for cfg in (base, slow):
        lat.append(single_query_latency(cfg, 1, seed=0))
    assert lat[1] - lat[0] == pytest.approx(0.25, rel=1e-9)


def test_workload_drawn_in_blocks_is_the_same_workload(monkeypatch: pytest.MonkeyPatch) -> None:
    """The episode's workload is drawn ahead in blocks; the block size must not change a single draw."""
    from offload_gym.sim import episode

    def workload(block: int) -> list[tuple[float, int, Any, Any]]:
        monkeypatch.setattr(episode, "WORKLOAD_BLOCK", block)
        cfg = make_config({"episode": {"queries": 150}})
        wl = episode.EpisodeWorkload(cfg, np.random.default_rng(1), np.random.default_rng(2))
        return [(*wl.arrival(k), *wl.query(k)) for k in range(150)]

    whole = workload(4096)
    assert workload(7) == whole
    assert workload(64) == whole
    times = [t for t, *_ in whole]
    assert times == sorted(times) and times[0] > 0.0
    assert len({spec.prompt_tokens for _, _, spec, _ in whole}) > 10  # a real draw, not one query repeated


def test_random_access_delay_keeps_the_mean_and_adds_spread() -> None:
    """wifi.access_delay_cv: per-message gamma access delays with the model's mean (off: every message the mean)."""
    def latencies(cv: float) -> np.ndarray:
        cfg = deterministic_overrides(topology={"n_users": 1, "n_aps": 1, "user_positions": [[3.0, 0.0]],
                                                "ap_positions": [[0.0, 0.0]]},
                                      wifi={"background_stations": 30, "access_delay_cv": cv},
                                      workload={"arrival_rate": 0.02}, episode={"queries": 300})
        env = OffloadEnv(config=cfg)
        env.reset(seed=0)
        out = []
        while True:
            _, _, _, truncated, info = env.step(1)  # every query whole on the AP: one upload, one download
            out += [c["latency_s"] for c in info["completed"]]
            if truncated:
                return np.array(out)

    fixed, spread = latencies(0.0), latencies(1.5)
    alone = np.median(fixed)
    assert np.mean(np.abs(fixed - alone) < 1e-9) > 0.9  # all alike, one at a time (but the few that overlap)
    assert np.mean(np.abs(spread - alone) < 1e-9) < 0.05 and spread.std() > 0.02 * spread.mean()
    # two access delays per query (upload, answer): the mean moves by sampling noise only
    assert spread.mean() == pytest.approx(fixed.mean(), rel=0.05)
