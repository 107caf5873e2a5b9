"""The compiled core (offload_gym.core) against the Python engine it replaces, bit for bit.

The same placements are replayed on both engines; at every decision the compiled estimates (whole, subtask,
aggregation, the list scheduler's plan) must equal the Python estimator's, and every finished query's time,
quality and energy must be equal. ``tests/test_core_env.py`` compares whole env trajectories.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("numba")

from offload_gym.config import make_config
from offload_gym.core import estimates as ce
from offload_gym.core.arrays import CoreEngine
from offload_gym.sim.engine import Simulator
from offload_gym.sim.estimates import Estimator, subtask_order


def _rows(estimates: dict[int, Any], n_aps: int) -> np.ndarray:
    out = np.full((n_aps + 1, 3), np.nan)
    for loc, e in estimates.items():
        out[loc] = (e.ready_s, e.finish_s, e.quality)
    return out


def replay(overrides: dict[str, Any], seed: int) -> int:
    """Random placements on both engines; returns the decisions compared."""
    cfg = make_config(overrides)
    n_aps, weight = cfg.topology.n_aps, cfg.reward.latency_weight
    sim = Simulator(cfg, np.random.default_rng(seed))
    est = Estimator(sim, weight)
    core = CoreEngine(Simulator(cfg, np.random.default_rng(seed)))
    S = core.S
    out = np.zeros((n_aps + 1, 3))
    decisions = 0

    def compare(py: dict[int, Any], what: str) -> np.ndarray:
        rows = _rows(py, n_aps)
        assert np.array_equal(rows, out, equal_nan=True), (what, decisions, rows, out)
        return rows

    def commit(item: Any, it: int, rows: np.ndarray, loc: int) -> None:
        item.est_ready, item.est_finish = rows[loc, 0], rows[loc, 1]
        core.set_estimate(it, out[loc, 0], out[loc, 1])

    while True:
        query = sim.run_until_decision()
        q = core.run_until_decision()
        assert [c.query.qid for c in sim.pop_completed()] == core.pop_completed()
        assert sim.now == core.now
        if query is None:
            assert q == -1
            break
        assert q == query.qid
        est.refresh()
        rng = np.random.default_rng([seed, query.qid])
        locations = sim.usable_locations(query.user)
        whole_item = sim.make_whole_item(query)
        ce.snapshots(S)
        ce.whole_estimates(S, q, out)
        rows = compare(est.whole(query, whole_item), "whole")
        k = query.spec.n_subtasks
        if k > 1:
            sim.prepare_decomposition(query)
            plan = est.plan(query, subtask_order(query))
            plan_locations = np.zeros(k + 1, dtype=np.int64)
            ce.snapshots(S)
            latency, quality = ce.plan(S, q, weight, plan_locations)
            assert (latency, quality, tuple(plan_locations.tolist())) == (plan.latency_s, plan.quality, plan.locations)
            assert ce.subtask_order(S, q).tolist() == subtask_order(query)
        decisions += 1
        if k > 1 and rng.random() < 0.6:
            sim.begin_decomposition(query)
            for i in subtask_order(query):
                est.refresh()
                ce.snapshots(S)
                ce.subtask_estimates(S, q, i, out)
                rows = compare(est.subtask(query, query.subtasks[i]), "subtask")
                loc = int(rng.choice(locations))
                commit(sim.place_subtask(query, i, loc), core.place_subtask(q, i, loc), rows, loc)
                decisions += 1
            est.refresh()
            ce.snapshots(S)
            ce.aggregation_estimates(S, q, out)
            rows = compare(est.aggregation(query, query.aggregation), "aggregation")
            loc = int(rng.choice(locations))
            commit(sim.place_aggregation(query, loc), core.place_aggregation(q, loc), rows, loc)
        else:
            loc = int(rng.choice(locations))
            commit(sim.place_whole(query, loc, whole_item), core.place_whole(q, loc), rows, loc)
    for record in sim.finished_log:
        done = record.query
        assert core.query_record(done.qid) == (done.finish_time, done.quality, done.energy_j)
    return decisions


CASES = [
    ({}, 1),
    ({"planner": {"latency_s": 0.3}}, 2),
    ({"workload": {"attachment_prob": 0.8}}, 3),
    ({"edge": {"max_batch": 2}, "workload": {"arrival_rate": 0.5}}, 4),  # queues: the general batch projection
    ({"topology": {"n_users": 60, "n_aps": 2}}, 5),
    ({"topology": {"n_aps": 1}, "wifi": {"access": "dcf"}}, 6),
    ({"wifi": {"immediate_access": False, "background_stations": 5}}, 7),
    ({"topology": {"n_users": 6, "area_m": 200.0}}, 8),  # phones out of coverage
    ({"edge": {"model": "70B", "kappa": 1.0}, "workload": {"arrival_rate": 1.0}}, 9),
]


@pytest.mark.parametrize(("overrides", "seed"), CASES)
def test_compiled_engine_and_estimates_equal_the_python_ones(overrides: dict[str, Any], seed: int) -> None:
    assert replay(overrides, seed) > 20
