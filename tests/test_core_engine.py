"""The compiled engine and its estimates under replayed random placements (offload_gym.core.arrays.CoreEngine).

At every decision the test takes the estimates (whole, subtask, aggregation, the list scheduler's plan and its
subtask order), places the query's items at random usable locations and runs to the next decision; at the end it
reads every finished query's time, quality and energy. The Python engine this core replaced gave the same values
bit for bit on these cases (its test replayed both engines side by side); their sha256 per case is recorded in
``tests/data/python_engine_replays.json`` (recorded at commit 26b61a0, where that comparison also held). Besides
the recording (skipped where numpy's version or the machine type differ from it), invariants that need no recording: every
query finishes once, time never goes back, the estimates are finite exactly where a phone can place work, a
finish is never before its ready time, and the same seed replays the same values.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import skip_unless_recorded_platform

pytest.importorskip("numba")

from offload_gym.config import make_config
from offload_gym.core import estimates as ce
from offload_gym.core.arrays import CoreEngine
from offload_gym.core.state import FIELDS
from offload_gym.sim.setup import EpisodeSetup

RECORDING = Path(__file__).parent / "data" / "python_engine_replays.json"
WL_K = FIELDS.index("wl_k")


def replay(overrides: dict[str, Any], seed: int) -> tuple[list[Any], int]:
    """Random placements on the compiled engine; returns every value it produced, in order, and the decisions."""
    cfg = make_config(overrides)
    n_aps, weight = cfg.topology.n_aps, cfg.reward.latency_weight
    core = CoreEngine(EpisodeSetup(cfg, np.random.default_rng(seed)))
    S = core.S
    out = np.zeros((n_aps + 1, 3))
    values: list[Any] = []
    finished: list[int] = []
    decisions = 0
    last_now = 0.0

    def estimates(what: str) -> tuple[np.ndarray, list[int]]:
        rows = out.copy()
        usable = [int(loc) for loc in np.flatnonzero(~np.isnan(rows[:, 1]))]
        assert usable and usable[0] == 0, (what, rows)  # the phone is always usable
        assert np.isfinite(rows[usable]).all() and np.isnan(np.delete(rows, usable, axis=0)).all(), (what, rows)
        assert (rows[usable, 1] >= rows[usable, 0]).all() and (rows[usable, 0] >= core.now).all(), (what, rows)
        assert ((rows[usable, 2] >= 0.0) & (rows[usable, 2] <= 1.0)).all(), (what, rows)
        values.append((what, rows.tobytes()))
        return rows, usable

    while True:
        q = core.run_until_decision()
        done = core.pop_completed()
        assert core.now >= last_now
        last_now = core.now
        finished += done
        values.append((q, core.now, done))
        if q == -1:
            break
        rng = np.random.default_rng([seed, q])
        ce.snapshots(S)
        ce.whole_estimates(S, q, out)
        rows, locations = estimates("whole")
        k = int(core.A[WL_K][q])
        if k > 1:
            plan_locations = np.zeros(k + 1, dtype=np.int64)
            ce.snapshots(S)
            latency, quality = ce.plan(S, q, weight, plan_locations)
            assert latency >= 0.0 and 0.0 <= quality <= 1.0 and set(plan_locations.tolist()) <= set(locations)
            order = ce.subtask_order(S, q).tolist()
            assert sorted(order) == list(range(k))
            values.append((latency, quality, plan_locations.tolist(), order))
        decisions += 1
        if k > 1 and rng.random() < 0.6:
            for i in order:
                ce.snapshots(S)
                ce.subtask_estimates(S, q, i, out)
                rows, locations = estimates("subtask")
                loc = int(rng.choice(locations))
                core.set_estimate(core.place_subtask(q, i, loc), rows[loc, 0], rows[loc, 1])
                decisions += 1
            ce.snapshots(S)
            ce.aggregation_estimates(S, q, out)
            rows, locations = estimates("aggregation")
            loc = int(rng.choice(locations))
            core.set_estimate(core.place_aggregation(q, loc), rows[loc, 0], rows[loc, 1])
        else:
            loc = int(rng.choice(locations))
            core.set_estimate(core.place_whole(q, loc), rows[loc, 0], rows[loc, 1])
    assert sorted(finished) == list(range(cfg.episode.queries))  # each query finished once
    for q in finished:
        finish_s, quality, energy_j = core.query_record(q)
        assert 0.0 <= quality <= 1.0 and energy_j > 0.0 and finish_s <= core.now
        values.append((q, finish_s, quality, energy_j))
    return values, decisions


def digest(values: list[Any]) -> str:
    return hashlib.sha256(repr(values).encode()).hexdigest()


CASES = [
    ({}, 1),
    ({"planner": {"latency_s": 0.3}}, 2),
    ({"workload": {"attachment_prob": 0.8}}, 3),
    ({"edge": {"max_batch": 2}, "workload": {"arrival_rate": 0.5}}, 4),  # queues: the general batch projection
    ({"topology": {"n_users": 60, "n_aps": 2}}, 5),
    ({"topology": {"n_aps": 1}, "wifi": {"access": "dcf"}}, 6),
    ({"wifi": {"immediate_access": False, "background_stations": 5}}, 7),
    ({"topology": {"n_users": 6, "area_m": 200.0}}, 8),  # a sparse area: long links, low rates
    ({"edge": {"model": "70B", "kappa": 1.0}, "workload": {"arrival_rate": 1.0}}, 9),
    ({"topology": {"n_users": 3, "n_aps": 2, "area_m": 400.0, "ap_positions": [[0.0, 0.0], [40.0, 0.0]],  # out of range
                   "user_positions": [[1.0, 1.0], [400.0, 400.0], [60.0, 0.0]]}, "episode": {"queries": 60}}, 10),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_the_compiled_engine_and_estimates_replay_the_python_engines_values(case: int) -> None:
    overrides, seed = CASES[case]
    values, decisions = replay(overrides, seed)
    assert decisions >= 60
    assert digest(replay(overrides, seed)[0]) == digest(values)  # the same seed, the same values
    recording = json.loads(RECORDING.read_text())
    skip_unless_recorded_platform(recording)
    assert digest(values) == recording["digests"][case]


def test_phones_out_of_coverage_can_only_use_the_phone() -> None:
    """The last case leaves a phone out of every AP's range: its estimates are the phone's alone (the invariant
    above checks the NaN rows; this checks the case exercises it)."""
    overrides, seed = CASES[-1]
    values, _ = replay(overrides, seed)
    whole = [np.frombuffer(rows).reshape(-1, 3) for what, rows in (v for v in values if len(v) == 2 and v[0] == "whole")]
    assert any(np.isnan(rows[1:, 1]).all() for rows in whole) and any(np.isfinite(rows[1:, 1]).any() for rows in whole)
