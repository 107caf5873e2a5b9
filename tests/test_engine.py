"""Simulator physics and queueing against closed forms (single job, M/D/1, batching), and estimates."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from conftest import deterministic_overrides, hand_wifi_latency, single_query_latency

from offload_gym.config import make_config
from offload_gym.sim.engine import PHONE, Query, Simulator
from offload_gym.sim.estimates import Estimator, project_batch_finish
from offload_gym.sim.planner import Prediction
from offload_gym.sim.workload import FAN_OUT, QuerySpec


def one_phone_config(**extra: object) -> dict:
    cfg = deterministic_overrides(
        topology={"n_users": 1, "n_aps": 1, "user_positions": [[10.0, 10.0]], "ap_positions": [[15.0, 15.0]]},
        episode={"queries": 1},
    )
    for key, value in extra.items():
        section, field = key.split("__")
        cfg.setdefault(section, {})[field] = value
    return cfg


def sim_wifi_latency(sim: Simulator, up_bytes: float, down_bytes: float) -> float:
    """:func:`conftest.hand_wifi_latency` for the simulator's phone 0."""
    return hand_wifi_latency(sim.cfg.wifi, sim.up_rate_bps[0], sim.down_rate_bps[0], up_bytes, down_bytes)


@pytest.mark.parametrize("background", [0, 16, 30])
def test_single_query_on_idle_ap_matches_hand_calculation(background: int) -> None:
    cfg = make_config(one_phone_config(wifi__background_stations=background))
    sim = Simulator(cfg, np.random.default_rng(0))
    query = sim.run_until_decision()
    assert query is not None
    sim.place_whole(query, 1)
    assert sim.run_until_decision() is None
    (done,) = sim.finished_log
    prompt, answer = 150, 45
    up_bytes, down_bytes = prompt * 4 + 400, answer * 4 + 400
    expected = sim_wifi_latency(sim, up_bytes, down_bytes) + prompt / 3000 + answer / 78
    assert done.latency_s == pytest.approx(expected, rel=1e-9)


def test_single_query_on_phone_is_prefill_plus_decode() -> None:
    sim = Simulator(make_config(one_phone_config()), np.random.default_rng(0))
    query = sim.run_until_decision()
    assert query is not None
    sim.place_whole(query, PHONE)
    sim.run_until_decision()
    assert sim.finished_log[0].latency_s == pytest.approx(150 / 3000 + 45 / 48, rel=1e-12)


def test_attachment_adds_bytes_to_the_upload() -> None:
    cfg = make_config(one_phone_config(workload__attachment_prob=1.0, workload__attachment_bytes_sigma=0.0))
    sim = Simulator(cfg, np.random.default_rng(0))
    query = sim.run_until_decision()
    assert query is not None and query.spec.attachment_bytes == 200e3
    sim.place_whole(query, 1)
    sim.run_until_decision()
    expected = sim_wifi_latency(sim, 1000 + 200e3, 580) + 150 / 3000 + 45 / 78
    assert sim.finished_log[0].latency_s == pytest.approx(expected, rel=1e-9)


def test_more_background_stations_never_make_a_query_faster() -> None:
    latencies = []
    for background in range(0, 41, 4):
        cfg = make_config(one_phone_config(wifi__background_stations=background, workload__attachment_prob=1.0))
        latencies.append(single_query_latency(cfg, 1, seed=1))
    assert all(b >= a for a, b in itertools.pairwise(latencies))
    assert latencies[-1] > latencies[0]


def _manual_stream(sim: Simulator, qid: int, prompt: int, answer: int) -> Query:
    """Put a whole query straight into AP 0's edge at the current time (bypassing Wi-Fi)."""
    spec = QuerySpec(prompt, answer, 0.0, 0.0, FAN_OUT, ((),), (answer,), (0.0,))
    query = Query(qid, 0, sim.now, spec, Prediction(0.0, answer, (0.0,), (answer,), -1.0, 10.0))
    sim.in_flight[qid] = query
    item = sim.make_whole_item(query)
    query.whole = item
    sim._assign(item, 1)
    item.pending = 1
    sim._input_arrived(item)
    return query


@pytest.mark.parametrize("streams", [1, 2, 5])
def test_concurrent_streams_decode_at_batched_rate(streams: int) -> None:
    cfg = make_config(one_phone_config(workload__arrival_rate=1e-6, episode__queries=100, edge__kappa=0.3))
    sim = Simulator(cfg, np.random.default_rng(0))
    queries = [_manual_stream(sim, i, 300, 78) for i in range(streams)]
    sim.run_until_decision()  # runs the edge until the far-away first arrival
    rate = 78 / (1 + 0.3 * (streams - 1))
    for q in queries:
        assert q.whole is not None
        assert q.whole.finish_time == pytest.approx(300 / 3000 + 78 / rate, rel=1e-9)


def test_admission_queue_beyond_max_batch_is_fifo() -> None:
    cfg = make_config(one_phone_config(workload__arrival_rate=1e-6, episode__queries=100, edge__max_batch=2, edge__kappa=0.0))
    sim = Simulator(cfg, np.random.default_rng(0))
    queries = [_manual_stream(sim, i, 300, 78) for i in range(3)]
    sim.run_until_decision()
    finish = [q.whole.finish_time for q in queries if q.whole is not None]
    assert finish[0] == pytest.approx(1.1) and finish[1] == pytest.approx(1.1)
    assert finish[2] == pytest.approx(2.2)  # admitted when the first two leave


def test_md1_mean_latency_local_only() -> None:
    """One phone, local-only, deterministic tokens: M/D/1 with S = prompt/prefill + answer/decode."""
    rate = 0.5
    cfg = make_config(one_phone_config(workload__arrival_rate=rate, episode__queries=40_000))
    sim = Simulator(cfg, np.random.default_rng(7))
    while (query := sim.run_until_decision()) is not None:
        sim.place_whole(query, PHONE)
    service = 150 / 3000 + 45 / 48
    expected = service + rate * service**2 / (2 * (1 - rate * service))
    measured = np.mean([c.latency_s for c in sim.finished_log])
    assert len(sim.finished_log) == 40_000
    assert measured == pytest.approx(expected, rel=0.05)


def test_project_batch_finish_matches_engine() -> None:
    """The estimator's batch projection equals the simulated edge when predictions are exact."""
    rng = np.random.default_rng(3)
    for _ in range(20):
        max_batch = int(rng.integers(1, 5))
        kappa = float(rng.uniform(0, 1))
        cfg = make_config(one_phone_config(workload__arrival_rate=1e-6, episode__queries=100, edge__max_batch=max_batch,
                                           edge__kappa=kappa))
        sim = Simulator(cfg, np.random.default_rng(0))
        jobs = [(int(rng.integers(10, 900)), int(rng.integers(1, 200))) for _ in range(int(rng.integers(1, 7)))]
        queries = [_manual_stream(sim, i, p, a) for i, (p, a) in enumerate(jobs)]
        pending = [(0.0, p / 3000, float(a)) for p, a in jobs]
        predicted = [project_batch_finish(0.0, 78, kappa, max_batch, [], [], pending, i) for i in range(len(jobs))]
        sim.run_until_decision()
        for q, pred in zip(queries, predicted, strict=True):
            assert q.whole is not None
            assert q.whole.finish_time == pytest.approx(pred, rel=1e-9)


def test_whole_estimate_equals_realised_latency_on_idle_network() -> None:
    cfg = make_config(one_phone_config(workload__attachment_prob=1.0))
    for location in (PHONE, 1):
        sim = Simulator(cfg, np.random.default_rng(5))
        query = sim.run_until_decision()
        assert query is not None
        est = Estimator(sim, 0.3).whole(query, sim.make_whole_item(query))
        sim.place_whole(query, location)
        sim.run_until_decision()
        realised = sim.finished_log[0].latency_s
        assert est[location].finish_s - query.arrival_time == pytest.approx(realised, rel=1e-9)


def test_decomposed_query_runs_every_subtask_and_aggregation() -> None:
    cfg = make_config({"workload": {"subtask_count_probs": [0, 0, 0, 0, 1.0], "structure_probs": [0, 0, 1.0]},
                       "topology": {"n_users": 2, "n_aps": 2}, "episode": {"queries": 30}})
    sim = Simulator(cfg, np.random.default_rng(2))
    rng = np.random.default_rng(0)
    while (query := sim.run_until_decision()) is not None:
        sim.begin_decomposition(query)
        for i in range(query.spec.n_subtasks):
            sim.place_subtask(query, i, int(rng.integers(0, 3)) if sim.reachable(query.user) else 0)
        sim.place_aggregation(query, int(rng.integers(0, 3)) if sim.reachable(query.user) else 0)
    assert sim.queries_finished == 30
    for record in sim.finished_log:
        q = record.query
        assert all(s.done for s in q.subtasks) and q.aggregation is not None and q.aggregation.done
        for s in q.subtasks:  # precedence holds
            for d in s.preds:
                assert q.subtasks[d].finish_time <= s.start_time + 1e-12
        assert max(s.finish_time for s in q.subtasks) <= q.aggregation.start_time + 1e-12
        assert 0.0 <= record.quality <= 1.0


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
    from offload_gym.envs.offload_env import OffloadEnv

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
