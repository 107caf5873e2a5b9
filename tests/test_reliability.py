"""Regressions of issue 15: hangs at large or extreme times, redispatch counting, merged outages,
zero-byte messages and the episode's bounded memory.

Every test that could hang runs under a wall-clock guard: :func:`conftest.guarded` runs it in a forked child
process and kills it after its limit (a loop inside the compiled core never returns to the interpreter, so a
signal such as :func:`conftest.time_limit`'s cannot interrupt it).
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import time
from typing import Any

import numpy as np
import pytest
from conftest import ChildTraceback, Hang, guarded

from offload_gym import OffloadEnv
from offload_gym.config import ConfigError, ScenarioConfig, make_config
from offload_gym.core.batch import project_batch_finish_arrays
from offload_gym.envs.scene import scene
from offload_gym.policies import make_policy
from offload_gym.sim.episode import WORKLOAD_BLOCK
from offload_gym.sim.setup import merged_outages
from offload_gym.sim.wifi import dcf_saturation

GUARD_S = 10.0


def own_edge_action(env: OffloadEnv, obs: np.ndarray, info: dict[str, Any]) -> int:
    """Nearest-edge-like: the phone's own AP (its ``is_own_ap`` feature) when allowed, else the phone."""
    mask = info["action_mask"]
    names = env.observation_names
    for ap in range(env.n_aps):
        if obs[names.index(f"ap{ap}_is_own_ap")] > 0.5:
            return ap + 1 if mask[ap + 1] else 0
    return 0


def run_episode(config: dict[str, Any] | ScenarioConfig, policy: str = "own-edge", seed: int = 0,
                max_steps: int = 100_000) -> tuple[OffloadEnv, list[dict[str, Any]], int]:
    """One episode (or ``max_steps`` steps); returns the env, the completed records and the steps taken."""
    env = OffloadEnv(config=config)
    obs, info = env.reset(seed=seed)
    pol = None if policy == "own-edge" else make_policy(policy, env.config, seed=seed)
    completed: list[dict[str, Any]] = []
    steps = 0
    while steps < max_steps:
        action = own_edge_action(env, obs, info) if pol is None else pol.decide(obs, info["action_mask"])
        obs, _, _, truncated, info = env.step(action)
        completed += info["completed"]
        steps += 1
        if truncated:
            break
    return env, completed, steps


def guarded_episode(config: dict[str, Any] | ScenarioConfig, policy: str = "own-edge", seed: int = 0,
                    seconds: float = GUARD_S) -> tuple[OffloadEnv, list[dict[str, Any]], int]:
    """:func:`run_episode` under :func:`guarded` (the env comes back pickled)."""
    return guarded(seconds, run_episode, config, policy, seed)


# ---------------------------------------------------------------------------------------------- 1. hangs
def test_batch_projection_terminates_when_the_clock_cannot_resolve_a_stream() -> None:
    # at t = 1e17 s one clock step is 16 s: what is left of a decoding stream (5 tokens at 78 tok/s) rounds
    # to no time at all; the projection must still end that stream and go on
    none = np.empty(0)
    for max_batch in (8, 1):  # the roomy path and the general (full-batch) path
        t = guarded(GUARD_S, project_batch_finish_arrays, 1e17, 78.0, 0.05, max_batch, none, none, np.array([5.0]),
                    np.array([1e17]), np.array([0.01]), np.array([40.0]), 0)
        # the streams need about 0.6 s: the clock's few steps at most
        assert math.isfinite(t) and 1e17 <= t <= 1e17 + 4 * math.ulp(1e17)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_low_arrival_rate_steps_do_not_hang(seed: int) -> None:
    # issue 15: seeds 0-3 hung at steps 51, 41, 25, 46 (simulated time about 1.3e5 s)
    env, completed, steps = guarded_episode({"workload.arrival_rate": 1e-5, "episode.queries": 60}, seed=seed)
    assert steps >= 60 and env.episode_metrics()["sim_time_s"] > 1e5
    assert sorted(c["query_id"] for c in completed) == list(range(60))


@pytest.mark.parametrize("policy", ["greedy", "local-only"])
def test_one_phone_at_a_low_rate_does_not_hang(policy: str) -> None:
    cfg = {"workload.arrival_rate": 0.001, "topology.n_users": 1, "episode.queries": 400}
    _, completed, _ = guarded_episode(cfg, policy)
    assert sorted(c["query_id"] for c in completed) == list(range(400))


@pytest.mark.parametrize("overrides", [
    {"wifi.backhaul_rate_bps": 1.0},
    {"edge.decode_tps": 1e300}, {"edge.decode_tps": 1e-300},
    {"edge.prefill_tps": 1e300}, {"edge.prefill_tps": 1e-300},
    {"phone.decode_tps": 1e300}, {"phone.decode_tps": 1e-300},
    {"phone.prefill_tps": 1e300}, {"phone.prefill_tps": 1e-300},
    {"workload.prompt_tokens_median": 1e300}, {"workload.answer_tokens_median": 1e300},
    {"workload.attachment_bytes_median": 1e300},
    {"wifi.cw_min": 1, "wifi.cw_max": 1},
], ids=lambda o: ",".join(f"{k}={v:g}" for k, v in o.items()))
@pytest.mark.parametrize("policy", ["greedy", "own-edge", "random-split"])
def test_extreme_parameters_finish_the_episode(overrides: dict[str, Any], policy: str) -> None:
    cfg = {**overrides, "episode.queries": 30}
    env, completed, _ = guarded_episode(cfg, policy)
    assert sorted(c["query_id"] for c in completed) == list(range(30))
    _check_counts(env, completed)
    assert all(c["latency_s"] >= 0.0 and 0.0 <= c["quality"] <= 1.0 for c in completed)  # no NaN either


@pytest.mark.parametrize("policy", ["greedy", "local-only"])
def test_astronomically_low_arrival_rate_terminates(policy: str) -> None:
    # inter-arrival times of about 1e300 s: reset() hung. The config now refuses rates below 1e-6 /s (the clock
    # cannot resolve latencies there), but the simulator itself must still terminate on such a scenario
    # (a ScenarioConfig built with dataclasses.replace skips the range check)
    with pytest.raises(ConfigError, match="arrival_rate"):
        make_config({"workload.arrival_rate": 1e-300})
    base = make_config({"episode.queries": 20})
    cfg = dataclasses.replace(base, workload=dataclasses.replace(base.workload, arrival_rate=1e-300))
    env, completed, _ = guarded_episode(cfg, policy)
    assert sorted(c["query_id"] for c in completed) == list(range(20))
    assert env.episode_metrics()["sim_time_s"] > 1e290  # the arrivals really are that far apart


# ---------------------------------------------------------------------------------------------- 2. redispatch
def _check_counts(env: OffloadEnv, completed: list[dict[str, Any]]) -> None:
    episode = env.episode
    assert episode is not None
    ids = [c["query_id"] for c in completed]
    # every arrived query finishes exactly once
    assert len(ids) == len(set(ids)) == episode.queries_arrived == episode.queries_finished
    metrics = env.episode_metrics()
    assert metrics["queries"] == len(ids)
    assert metrics["redispatched_queries"] == sum(c["redispatched"] for c in completed)
    assert metrics["failed_queries"] == sum(c["failed"] for c in completed)


def test_a_redispatched_query_is_not_restarted_by_a_later_outage() -> None:
    two = {"topology.n_aps": 1, "faults": {"ap_outages": [{"ap": 0, "start_s": 5.0, "duration_s": 0.2},
                                                           {"ap": 0, "start_s": 5.4, "duration_s": 0.2}]}}
    one = {"topology.n_aps": 1, "faults": {"ap_outages": [{"ap": 0, "start_s": 5.0, "duration_s": 0.2}]}}
    env, completed, _ = guarded_episode(two)
    _, first_only, _ = guarded_episode(one)
    _check_counts(env, completed)
    # queries hit by the first outage run on their phones from 5.0 s: the second outage does not touch them
    hit = {c["query_id"]: c["latency_s"] for c in first_only if c["redispatched"]}
    again = {c["query_id"]: c["latency_s"] for c in completed if c["query_id"] in hit}
    assert hit and again == hit


def test_a_flapping_ap_redispatches_each_query_at_most_once() -> None:
    flap = {"topology.n_aps": 1, "episode.queries": 100,
            "faults": {"ap_outages": [{"ap": 0, "start_s": 1.0 + i, "duration_s": 0.3} for i in range(200)]}}
    env, completed, _ = guarded_episode(flap)
    _check_counts(env, completed)
    assert env.episode_metrics()["redispatched_queries"] > 0
    assert env.episode_metrics()["mean_latency_s"] < 5.0  # it was 14-21 s when queries restarted again and again


@pytest.mark.parametrize("case", range(8))
def test_redispatch_count_matches_the_records_under_random_faults(case: int) -> None:
    rng = np.random.default_rng(1000 + case)
    n_aps = int(rng.integers(1, 5))
    outages = [{"ap": int(rng.integers(n_aps)), "start_s": float(rng.uniform(0.0, 30.0)),
                "duration_s": float(rng.uniform(0.05, 4.0))} for _ in range(int(rng.integers(1, 12)))]
    cfg = {"topology.n_aps": n_aps, "episode.queries": 80,
           "faults": {"ap_outages": outages, "on_outage": "fail" if case % 4 == 3 else "redispatch"}}
    policy = ("own-edge", "greedy", "random-split", "own-edge")[case % 4]
    env, completed, _ = guarded_episode(cfg, policy, seed=case)
    _check_counts(env, completed)
    assert all(c["placements"] == [0] for c in completed if c["redispatched"])
    assert env.episode is not None
    assert env.episode.fault_counts() == (sum(c["failed"] for c in completed), sum(c["redispatched"] for c in completed))


def test_all_aps_down_at_once_counts_each_query_once() -> None:
    cfg = {"faults": {"ap_outages": [{"ap": a, "start_s": 5.0, "duration_s": 1.0} for a in range(4)]}}
    env, completed, _ = guarded_episode(cfg, "greedy")
    _check_counts(env, completed)
    assert env.episode_metrics()["redispatched_queries"] > 0


# ---------------------------------------------------------------------------------------------- 3. outages merge
def test_overlapping_outages_merge_into_their_union() -> None:
    assert merged_outages([(0, 5.0, 15.0), (0, 7.0, 9.0)]) == [(0, 5.0, 15.0)]
    assert merged_outages([(0, 1.0, 3.0), (1, 2.0, 4.0), (0, 2.0, 5.0), (0, 6.0, 7.0)]) == [
        (0, 1.0, 5.0), (1, 2.0, 4.0), (0, 6.0, 7.0)]
    assert merged_outages([(0, 1.0, 2.0), (0, 2.0, 3.0)]) == [(0, 1.0, 3.0)]  # touching: no up instant


def _down_and_up_decisions() -> tuple[list[float], list[float], list[float]]:
    """An episode with AP 0 down over 5-15 s (an outage of 7-9 s inside it), every query on its phone: the
    decision times with AP 0 masked and nobody on it, with it in use again, and any other (a violation)."""
    env = OffloadEnv(config={"faults": {"ap_outages": [{"ap": 0, "start_s": 5.0, "duration_s": 10.0},
                                                       {"ap": 0, "start_s": 7.0, "duration_s": 2.0}]}})
    _, info = env.reset(seed=0)
    down: list[float] = []
    up: list[float] = []
    wrong: list[float] = []
    truncated = False
    while not truncated:
        now, view = info["time_s"], scene(env)
        assert view is not None
        off = not info["action_mask"][1] and not (view.own_ap == 0).any()
        if 5.0 <= now < 15.0:
            (down if off else wrong).append(now)
        elif now >= 15.0 and info["action_mask"][1] and (view.own_ap == 0).any():
            up.append(now)
        _, _, _, truncated, info = env.step(0)
    return down, up, wrong


def test_an_ap_stays_down_over_overlapping_outages() -> None:
    down, up, wrong = guarded(GUARD_S, _down_and_up_decisions)
    assert not wrong, f"AP 0 usable or serving a phone at {wrong[:5]} s, inside its outage"
    assert any(t < 9.0 for t in down) and any(9.0 <= t < 15.0 for t in down)  # not up when the inner one ends
    assert up  # back in use after the union


# ---------------------------------------------------------------------------------------------- 4. zero bytes
def test_a_header_only_frame_has_an_access_delay_and_no_throughput() -> None:
    empty = dcf_saturation(3, phy_rate_bps=86e6, payload_bytes=0.0)
    small = dcf_saturation(3, phy_rate_bps=86e6, payload_bytes=100.0)
    assert empty.throughput_bps == 0.0 and 0.0 < empty.access_delay_s <= small.access_delay_s
    with pytest.raises(ValueError, match="payload_bytes"):
        dcf_saturation(3, phy_rate_bps=86e6, payload_bytes=-1.0)


@pytest.mark.parametrize("policy", ["greedy", "own-edge", "random-split"])
def test_zero_byte_messages_take_their_access_delay(policy: str) -> None:
    cfg = {"wifi.bytes_per_token": 0, "wifi.message_overhead_bytes": 0, "episode.queries": 40}
    env, completed, _ = guarded_episode(cfg, policy)
    assert sorted(c["query_id"] for c in completed) == list(range(40))
    assert env.episode_metrics()["edge_share"] > 0  # the edges were used
    # an edge query waits at least an access delay each way, so it takes time even with nothing to send
    assert all(c["latency_s"] > 0.0 for c in completed if any(loc > 0 for loc in c["placements"]))


# ---------------------------------------------------------------------------------------------- 5. memory
def _long_faulted_episode() -> tuple[OffloadEnv, list[dict[str, Any]], int]:
    """A random-placement episode over two workload blocks with outages all along (the second block's queries
    arrive from about 7,000 s); returns the env, the completed records in finishing order, and the most query rows
    the core held."""
    n = WORKLOAD_BLOCK + 300
    cfg = {"topology": {"n_users": 3, "n_aps": 2}, "episode": {"queries": n},
           "faults": {"ap_outages": [{"ap": k % 2, "start_s": 40.0 * k, "duration_s": 15.0} for k in range(1, 250)]}}
    env = OffloadEnv(config=cfg)
    _, info = env.reset(seed=3)
    rng = np.random.default_rng(3)
    completed: list[dict[str, Any]] = []
    most_rows = 0
    truncated = False
    while not truncated:
        _, _, _, truncated, info = env.step(int(rng.choice(np.flatnonzero(info["action_mask"]))))
        completed += info["completed"]
        episode = env.episode
        assert episode is not None
        most_rows = max(most_rows, len(episode.state.arrays[5]))  # the per-query rows (qi)
    return env, completed, most_rows


def test_the_rows_are_bounded_and_the_summary_counts_everything() -> None:
    # the compiled counterpart of the Python engine's bounded finished log: the core drops the rows of the
    # queries nothing needs any more when it loads the next block, and its summary still counts every query
    env, completed, most_rows = guarded(60.0, _long_faulted_episode)
    n = WORKLOAD_BLOCK + 300
    episode = env.episode
    assert episode is not None and episode.base > 0 and most_rows < n  # rows were dropped: fewer than the queries
    assert sorted(c["query_id"] for c in completed) == list(range(n))
    s = episode.summary()
    lat = np.array([c["latency_s"] for c in completed])
    qual = np.array([c["quality"] for c in completed])
    assert s.count == n and np.array_equal(s.latencies, lat)  # in finishing order, the dropped rows' too
    assert s.mean_latency_s() == float(lat.mean()) and s.p95_latency_s() == float(np.percentile(lat, 95))
    assert s.mean_quality() == pytest.approx(float(qual.mean()), rel=1e-12, abs=1e-15)
    assert s.decomposed_share() == float(np.mean([c["decomposed"] for c in completed]))
    assert s.deadline_miss_rate(1.0) == float((lat > 1.0).mean())
    redispatched, failed = sum(c["redispatched"] for c in completed), sum(c["failed"] for c in completed)
    assert redispatched > 0 and s.redispatched == redispatched and s.failed == failed
    assert episode.fault_counts() == (failed, redispatched)
    assert s.mean_energy_j() == pytest.approx(float(np.mean([c["energy_j"] for c in completed])), rel=1e-12)


def test_summary_matches_the_episode_metrics() -> None:
    env, completed, _ = guarded_episode({"episode.queries": 80}, "greedy", seed=4)
    assert env.episode is not None
    m, s = env.episode_metrics(), env.episode.summary()
    assert m["queries"] == s.count == 80
    assert m["mean_latency_s"] == s.mean_latency_s() and m["p95_latency_s"] == s.p95_latency_s()
    assert m["mean_quality"] == pytest.approx(s.mean_quality(), rel=1e-12)
    assert m["decomposed_share"] == s.decomposed_share() > 0  # greedy decomposes some
    assert m["deadline_miss_rate"] == s.deadline_miss_rate(env.config.reward.deadline_s)
    assert m["total_reward"] == pytest.approx(sum(c["reward"] for c in completed), rel=1e-12)


# ------------------------------------------------------------------ 6. long queues on overloaded edges
def _pickled_mid_episode() -> tuple[int, int, list[bool]]:
    """A 70B edge under load: 60 decisions (long queues by then), pickled; the twin and the original go on with
    the same policy. Returns the longest edge queue at the pickle, the steps compared and whether each matched."""
    env = OffloadEnv(config={"edge.model": "70B", "episode.queries": 120})
    pol = make_policy("nearest-edge", env.config)
    obs, _ = env.reset(seed=1)
    for _ in range(60):
        obs, *_ = env.step(pol.decide(obs, env.action_masks()))
    view = scene(env)
    assert view is not None
    queued = int((view.edge_queued + view.edge_in_transit).max())
    twin = pickle.loads(pickle.dumps(env))
    obs_twin = obs.copy()
    same: list[bool] = []
    for _ in range(200):
        obs, r, _, truncated, info = env.step(pol.decide(obs, env.action_masks()))
        obs_twin, r_twin, _, truncated_twin, info_twin = twin.step(pol.decide(obs_twin, twin.action_masks()))
        same.append(np.array_equal(obs, obs_twin) and r == r_twin and truncated == truncated_twin
                    and repr(info) == repr(info_twin))
        if truncated:
            break
    return queued, len(same), same


def test_an_env_with_long_edge_queues_pickles_and_continues_identically() -> None:
    queued, steps, same = guarded(GUARD_S, _pickled_mid_episode)
    assert queued > 0  # the edges had queues to project when it was pickled
    assert steps > 50 and all(same)


def test_kappa_one_batch_rates_do_not_divide_by_zero() -> None:
    # found by the slow property profile: the decode-rate table's empty-batch entry divided by 1 + kappa * (0 - 1)
    _, completed, _ = guarded_episode({"topology.n_users": 1, "topology.n_aps": 1, "topology.area_m": 10.0,
                                       "edge.kappa": 1.0, "edge.max_batch": 1, "episode.queries": 10,
                                       "workload.subtask_count_probs": [0.0, 1.0],
                                       "workload.structure_probs": [0.0, 0.0, 1.0]}, "greedy")
    assert sorted(c["query_id"] for c in completed) == list(range(10))
    assert all(math.isfinite(c["latency_s"]) for c in completed)


def _spin(n: int) -> int:
    """Never returns: ``x`` cycles through 1..n without reaching 0 (compiled: no signal handler ever runs)."""
    x = 1
    while x != 0:
        x = (x * 3 + 1) % n + 1
    return x


def test_guarded_fails_a_hang_in_compiled_code_instead_of_stalling() -> None:
    # the guard itself, on a loop that never returns to the interpreter (conftest.time_limit cannot stop it)
    from numba import njit

    spin = njit(cache=False)(_spin)
    spin.compile("(int64,)")  # in this process: the child only runs it
    started = time.monotonic()
    with pytest.raises(Hang, match="killed"):
        guarded(0.5, spin, 7)
    assert time.monotonic() - started < 5.0
    with pytest.raises(ValueError, match="boom") as raised:
        guarded(GUARD_S, _raise, "boom")
    assert isinstance(raised.value.__cause__, ChildTraceback) and "_raise" in str(raised.value.__cause__)
    assert guarded(GUARD_S, sum, [1, 2, 3]) == 6


def _raise(message: str) -> None:
    raise ValueError(message)
