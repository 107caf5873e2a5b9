"""Regressions of issue 15: hangs at large or extreme times, redispatch counting, merged outages,
zero-byte messages and the simulator's bounded memory.

Every test runs under a wall-clock guard (:func:`time_limit`), so that a hang fails instead of stalling.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import warnings
from typing import Any

import numpy as np
import pytest
from conftest import random_streams, time_limit

from offload_gym import OffloadEnv
from offload_gym.config import ConfigError, ScenarioConfig, make_config
from offload_gym.policies import make_policy
from offload_gym.sim.engine import Simulator, merged_outages
from offload_gym.sim.estimates import project_batch_finish
from offload_gym.sim.wifi import dcf_saturation

GUARD_S = 10.0


#: the simulation cores every hang and extreme-input test runs on (the compiled one where numba is installed)
CORES = ["python", *(["compiled"] if importlib.util.find_spec("numba") else [])]


def own_edge_action(env: OffloadEnv, obs: np.ndarray, info: dict[str, Any]) -> int:
    """Nearest-edge-like: the phone's own AP (its ``is_own_ap`` feature) when allowed, else the phone."""
    mask = info["action_mask"]
    names = env.observation_names
    for ap in range(env.n_aps):
        if obs[names.index(f"ap{ap}_is_own_ap")] > 0.5:
            return ap + 1 if mask[ap + 1] else 0
    return 0


def run_episode(config: dict[str, Any] | ScenarioConfig, policy: str = "own-edge", seed: int = 0,
                max_steps: int = 100_000, core: str = "auto") -> tuple[OffloadEnv, list[dict[str, Any]], int]:
    """One episode (or ``max_steps`` steps); returns the env, the completed records and the steps taken."""
    env = OffloadEnv(config=config, core=core)
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


# ---------------------------------------------------------------------------------------------- 1. hangs
def test_batch_projection_terminates_when_the_clock_cannot_resolve_a_stream() -> None:
    # at t = 1e17 s one clock step is 16 s: what is left of a decoding stream (5 tokens at 78 tok/s) rounds
    # to no time at all; the projection must still end that stream and go on
    for max_batch in (8, 1):  # the roomy path and the general (full-batch) path
        with time_limit(GUARD_S):
            t = project_batch_finish(1e17, 78.0, 0.05, max_batch, [], [5.0], [(1e17, 0.01, 40.0)], 0)
        assert t >= 1e17 and math.isfinite(t)


@pytest.mark.parametrize("core", CORES)
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_low_arrival_rate_steps_do_not_hang(seed: int, core: str) -> None:
    # issue 15: seeds 0-3 hung at steps 51, 41, 25, 46 (simulated time about 1.3e5 s)
    with time_limit(GUARD_S):
        env, completed, steps = run_episode({"workload.arrival_rate": 1e-5, "episode.queries": 60}, seed=seed,
                                            core=core)
    assert steps >= 60 and env.episode_metrics()["sim_time_s"] > 1e5
    assert sorted(c["query_id"] for c in completed) == list(range(60))


@pytest.mark.parametrize("core", CORES)
@pytest.mark.parametrize("policy", ["greedy", "local-only"])
def test_one_phone_at_a_low_rate_does_not_hang(policy: str, core: str) -> None:
    cfg = {"workload.arrival_rate": 0.001, "topology.n_users": 1, "episode.queries": 400}
    with time_limit(GUARD_S):
        _, completed, _ = run_episode(cfg, policy, core=core)
    assert len(completed) == 400


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
@pytest.mark.parametrize("core", CORES)
def test_extreme_parameters_finish_the_episode(overrides: dict[str, Any], policy: str, core: str) -> None:
    cfg = {**overrides, "episode.queries": 30}
    with time_limit(GUARD_S):
        env, completed, _ = run_episode(cfg, policy, core=core)
    assert (env.episode is not None) == (core == "compiled")
    assert sorted(c["query_id"] for c in completed) == list(range(30))


@pytest.mark.parametrize("core", CORES)
@pytest.mark.parametrize("policy", ["greedy", "local-only"])
def test_astronomically_low_arrival_rate_terminates(policy: str, core: str) -> None:
    # inter-arrival times of about 1e300 s: reset() hung. The config now refuses rates below 1e-6 /s (the clock
    # cannot resolve latencies there), but the simulator itself must still terminate on such a scenario
    # (a ScenarioConfig built with dataclasses.replace skips the range check)
    with pytest.raises(ConfigError, match="arrival_rate"):
        make_config({"workload.arrival_rate": 1e-300})
    base = make_config({"episode.queries": 20})
    cfg = dataclasses.replace(base, workload=dataclasses.replace(base.workload, arrival_rate=1e-300))
    with time_limit(GUARD_S):
        env, completed, _ = run_episode(cfg, policy, core=core)
    assert (env.episode is not None) == (core == "compiled")
    assert sorted(c["query_id"] for c in completed) == list(range(20))


# ---------------------------------------------------------------------------------------------- 2. redispatch
def _check_counts(env: OffloadEnv, completed: list[dict[str, Any]]) -> None:
    core = env.sim if env.sim is not None else env.episode  # either core counts its arrivals
    assert core is not None
    ids = [c["query_id"] for c in completed]
    assert len(ids) == len(set(ids)) == core.queries_arrived  # every arrived query finishes exactly once
    metrics = env.episode_metrics()
    assert metrics["redispatched_queries"] == sum(c["redispatched"] for c in completed)


def test_a_redispatched_query_is_not_restarted_by_a_later_outage() -> None:
    two = {"topology.n_aps": 1, "faults": {"ap_outages": [{"ap": 0, "start_s": 5.0, "duration_s": 0.2},
                                                           {"ap": 0, "start_s": 5.4, "duration_s": 0.2}]}}
    one = {"topology.n_aps": 1, "faults": {"ap_outages": [{"ap": 0, "start_s": 5.0, "duration_s": 0.2}]}}
    with time_limit(GUARD_S):
        env, completed, _ = run_episode(two)
        _, first_only, _ = run_episode(one)
    _check_counts(env, completed)
    # queries hit by the first outage run on their phones from 5.0 s: the second outage does not touch them
    hit = {c["query_id"]: c["latency_s"] for c in first_only if c["redispatched"]}
    again = {c["query_id"]: c["latency_s"] for c in completed if c["query_id"] in hit}
    assert hit and again == hit


def test_a_flapping_ap_redispatches_each_query_at_most_once() -> None:
    flap = {"topology.n_aps": 1, "episode.queries": 100,
            "faults": {"ap_outages": [{"ap": 0, "start_s": 1.0 + i, "duration_s": 0.3} for i in range(200)]}}
    with time_limit(GUARD_S):
        env, completed, _ = run_episode(flap)
    _check_counts(env, completed)
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
    with time_limit(GUARD_S):
        env, completed, _ = run_episode(cfg, policy, seed=case)
    _check_counts(env, completed)
    assert all(c["placements"] == [0] for c in completed if c["redispatched"])


def test_all_aps_down_at_once_counts_each_query_once() -> None:
    cfg = {"faults": {"ap_outages": [{"ap": a, "start_s": 5.0, "duration_s": 1.0} for a in range(4)]}}
    with time_limit(GUARD_S):
        env, completed, _ = run_episode(cfg, "greedy")
    _check_counts(env, completed)


# ---------------------------------------------------------------------------------------------- 3. outages merge
def test_overlapping_outages_merge_into_their_union() -> None:
    assert merged_outages([(0, 5.0, 15.0), (0, 7.0, 9.0)]) == [(0, 5.0, 15.0)]
    assert merged_outages([(0, 1.0, 3.0), (1, 2.0, 4.0), (0, 2.0, 5.0), (0, 6.0, 7.0)]) == [
        (0, 1.0, 5.0), (1, 2.0, 4.0), (0, 6.0, 7.0)]
    assert merged_outages([(0, 1.0, 2.0), (0, 2.0, 3.0)]) == [(0, 1.0, 3.0)]  # touching: no up instant


def test_an_ap_stays_down_over_overlapping_outages() -> None:
    cfg = make_config({"faults": {"ap_outages": [{"ap": 0, "start_s": 5.0, "duration_s": 10.0},
                                                 {"ap": 0, "start_s": 7.0, "duration_s": 2.0}]}})
    sim = Simulator(cfg, np.random.default_rng(0))
    seen_down = seen_up_after = False
    with time_limit(GUARD_S):
        while (query := sim.run_until_decision()) is not None:
            if 5.0 <= sim.now < 15.0:
                assert not sim.ap_up[0] and 1 not in sim.usable_locations(query.user)
                seen_down = True
            elif sim.now >= 15.0:
                seen_up_after = seen_up_after or sim.ap_up[0]
            sim.place_whole(query, 0)
    assert seen_down and seen_up_after


# ---------------------------------------------------------------------------------------------- 4. zero bytes
def test_a_header_only_frame_has_an_access_delay_and_no_throughput() -> None:
    empty = dcf_saturation(3, phy_rate_bps=86e6, payload_bytes=0.0)
    small = dcf_saturation(3, phy_rate_bps=86e6, payload_bytes=100.0)
    assert empty.throughput_bps == 0.0 and 0.0 < empty.access_delay_s <= small.access_delay_s
    with pytest.raises(ValueError, match="payload_bytes"):
        dcf_saturation(3, phy_rate_bps=86e6, payload_bytes=-1.0)


@pytest.mark.parametrize("core", CORES)
@pytest.mark.parametrize("policy", ["greedy", "own-edge", "random-split"])
def test_zero_byte_messages_take_their_access_delay(policy: str, core: str) -> None:
    cfg = {"wifi.bytes_per_token": 0, "wifi.message_overhead_bytes": 0, "episode.queries": 40}
    with time_limit(GUARD_S):
        env, completed, _ = run_episode(cfg, policy, core=core)
    assert sorted(c["query_id"] for c in completed) == list(range(40))
    assert env.episode_metrics()["edge_share"] > 0  # the edges were used


# ---------------------------------------------------------------------------------------------- 5. memory
def test_finished_log_is_bounded_and_the_summary_counts_everything() -> None:
    cfg = make_config({"episode.queries": 60, "faults": {"ap_outages": [{"ap": 0, "start_s": 3.0, "duration_s": 2.0}]}})
    full, short = Simulator(cfg, np.random.default_rng(3)), Simulator(cfg, np.random.default_rng(3), finished_log_limit=5)
    with time_limit(GUARD_S):
        for sim in (full, short):
            while (query := sim.run_until_decision()) is not None:
                sim.place_whole(query, sim.own_ap[query.user] + 1 if sim.reachable(query.user) else 0)
    assert len(full.finished_log) == 60 and len(short.finished_log) == 5
    assert [c.query.qid for c in short.finished_log] == [c.query.qid for c in list(full.finished_log)[-5:]]
    s = short.summary
    lat = np.array([c.latency_s for c in full.finished_log])
    qual = np.array([c.quality for c in full.finished_log])
    assert s.count == 60 and np.array_equal(s.latencies, lat)
    assert s.mean_latency_s() == float(lat.mean()) and s.p95_latency_s() == float(np.percentile(lat, 95))
    assert s.mean_quality() == pytest.approx(float(qual.mean()), rel=1e-12, abs=1e-15)
    assert s.decomposed_share() == float(np.mean([c.query.decomposed for c in full.finished_log]))
    assert s.deadline_miss_rate(1.0) == float((lat > 1.0).mean())
    assert s.redispatched == short.redispatched_queries == sum(c.query.redispatched for c in full.finished_log)
    assert s.failed == short.failed_queries


@pytest.mark.parametrize("core", CORES)
def test_summary_matches_the_episode_metrics(core: str) -> None:
    with time_limit(GUARD_S):
        env, _, _ = run_episode({"episode.queries": 80}, "greedy", seed=4, core=core)
    summary = env.sim.summary if env.sim is not None else env.episode.summary()  # type: ignore[union-attr]
    m, s = env.episode_metrics(), summary
    assert m["queries"] == s.count
    assert m["mean_latency_s"] == s.mean_latency_s() and m["p95_latency_s"] == s.p95_latency_s()
    assert m["mean_quality"] == pytest.approx(s.mean_quality(), rel=1e-12)
    assert m["decomposed_share"] == s.decomposed_share()
    assert m["deadline_miss_rate"] == s.deadline_miss_rate(env.config.reward.deadline_s)


# ------------------------------------------------------------------ 5. time per decision on overloaded edges
@pytest.mark.parametrize("seed", range(12))
def test_checkpointed_projection_equals_the_full_projection(seed: int) -> None:
    # one base run of an edge's own streams, many estimates resumed from its checkpoints in random order
    # (the base run goes on lazily): every finish is the float the full general projection gives
    from offload_gym.sim.estimates import _BaseRun, _project_general, _resume_general

    rng = np.random.default_rng(seed)
    now = float(rng.choice([0.0, 123.25, 1e7]))
    max_batch = int(rng.choice([1, 2, 3, 5, 16]))
    kappa = float(rng.choice([0.0, 0.05, 0.3]))
    prefilling = [(now + float(rng.uniform(0, 1)), float(rng.uniform(1, 200))) for _ in range(rng.integers(0, 3))]
    decoding = [float(rng.uniform(1, 200)) for _ in range(rng.integers(0, max_batch + 1))]
    pending = random_streams(rng, now, int(rng.integers(0, 40)))
    run = _BaseRun(now, 78.0, kappa, max_batch, prefilling, decoding, pending)
    with time_limit(GUARD_S):
        for _ in range(40):
            appended = random_streams(rng, now, int(rng.integers(1, 4)))
            items = [*pending, *appended]
            expected = _project_general(now, 78.0, kappa, max_batch, prefilling, decoding, items, len(items) - 1)
            cp = run.checkpoint_for(min(a[0] for a in appended))
            got = math.inf if cp is None else _resume_general(cp, max_batch, run, appended)
            assert got == expected


def _compare_general_estimates(monkeypatch: pytest.MonkeyPatch, config: dict[str, Any], policy: str,
                               approx: bool) -> list[float]:
    """Run an episode, checking each general-projection estimate against the full projection of this state;
    returns the relative differences ``|estimate - exact| / (exact - now)``."""
    from offload_gym.sim import estimates

    original = estimates.Estimator._edge_finish_general
    diffs: list[float] = []

    def checked(self: estimates.Estimator, e: int, state: Any, ready_s: float, prefill_s: float,
                decode_tokens: float, extra: list[tuple[float, float, float]] | None) -> float:
        got = original(self, e, state, ready_s, prefill_s, decode_tokens, extra)
        exact_state = self._exact_edge_state(e)
        items = [*exact_state.pending, *(extra or []), (ready_s, prefill_s, decode_tokens)]
        now = self.view.now
        exact = estimates._project_general(now, self._edge_decode_tps, self._kappa, self._max_batch,
                                           exact_state.prefilling, exact_state.decoding, items, len(items) - 1)
        if not approx:
            assert got == exact
        elif math.isfinite(exact) and exact > now:
            diffs.append(abs(got - exact) / (exact - now))
        return got

    monkeypatch.setattr(estimates.Estimator, "_edge_finish_general", checked)
    env = OffloadEnv(config=config, core="python")  # the Python estimator's checkpointed projection
    pol = make_policy(policy, env.config, seed=0)
    obs, _ = env.reset(seed=0)
    env.estimator.approx_queue_reuse = approx
    done = False
    with time_limit(3 * GUARD_S):
        while not done:
            obs, _, terminated, truncated, _ = env.step(pol.decide(obs, env.action_masks()))
            done = terminated or truncated
    return diffs


@pytest.mark.parametrize(("config", "policy"), [
    ({"edge.model": "70B", "episode.queries": 150}, "nearest-edge"),
    ({"topology.n_aps": 1, "edge.max_batch": 1, "workload.arrival_rate": 1000, "episode.queries": 80},
     "nearest-edge"),
    ({"edge.max_batch": 2, "episode.queries": 60}, "greedy"),
    ({"edge.max_batch": 3, "topology.n_aps": 1, "workload.arrival_rate": 40, "episode.queries": 60}, "greedy"),
], ids=["70B", "1ap-mb1", "mb2-greedy", "1ap-mb3-greedy"])
def test_estimates_on_full_batches_equal_the_full_projection(monkeypatch: pytest.MonkeyPatch,
                                                             config: dict[str, Any], policy: str) -> None:
    _compare_general_estimates(monkeypatch, config, policy, approx=False)


def test_checkpoints_of_large_batches_fall_back_to_the_full_projection(monkeypatch: pytest.MonkeyPatch) -> None:
    from offload_gym.sim import estimates

    monkeypatch.setattr(estimates, "_CHECKPOINT_MAX_STREAMS", 2)
    _compare_general_estimates(monkeypatch, {"edge.max_batch": 4, "topology.n_aps": 1,
                                             "workload.arrival_rate": 30, "episode.queries": 50}, "greedy", approx=False)


def test_approx_queue_reuse_is_off_by_default() -> None:
    env = OffloadEnv(core="python")
    env.reset(seed=0)
    assert env.estimator.approx_queue_reuse is False


def test_approx_queue_reuse_reuses_projections_and_stays_close(monkeypatch: pytest.MonkeyPatch) -> None:
    from offload_gym.sim import estimates

    built = 0
    original_init = estimates._BaseRun.__init__

    def counting_init(self: Any, *args: Any) -> None:
        nonlocal built
        built += 1
        original_init(self, *args)

    monkeypatch.setattr(estimates._BaseRun, "__init__", counting_init)
    config = {"edge.model": "70B", "episode.queries": 400}
    diffs = _compare_general_estimates(monkeypatch, config, "nearest-edge", approx=True)
    with_reuse = built
    built = 0
    _compare_general_estimates(monkeypatch, config, "nearest-edge", approx=False)
    assert with_reuse < 0.5 * built  # far fewer projections of the queue
    assert diffs and max(diffs) < 0.1 and float(np.median(diffs)) < 1e-3


@pytest.mark.parametrize("approx", [False, True])
def test_an_env_with_kept_projections_pickles_and_continues_identically(approx: bool) -> None:
    import pickle

    env = OffloadEnv(config={"edge.model": "70B", "episode.queries": 120}, core="python")
    pol = make_policy("nearest-edge", env.config)
    obs, _ = env.reset(seed=1)
    env.estimator.approx_queue_reuse = approx
    for _ in range(60):  # the queues are long by now: estimates keep projections in the estimator
        obs, *_ = env.step(pol.decide(obs, env.action_masks()))
    assert env.estimator._edge_state and any(s.run is not None for s in env.estimator._edge_state.values())
    twin = pickle.loads(pickle.dumps(env))
    obs_twin = obs.copy()
    with time_limit(GUARD_S):
        for _ in range(120):
            obs, _, _, truncated, _ = env.step(pol.decide(obs, env.action_masks()))
            obs_twin, _, _, truncated_twin, _ = twin.step(pol.decide(obs_twin, twin.action_masks()))
            assert np.array_equal(obs, obs_twin) and truncated == truncated_twin
            if truncated:
                break


def test_approx_estimates_is_a_config_switch_off_by_default() -> None:
    exact = OffloadEnv(config={"edge": {"model": "70B"}, "episode.queries": 120}, core="python")
    exact.reset(seed=0)
    assert exact.estimator.approx_queue_reuse is False
    with pytest.warns(FutureWarning, match="approx_estimates is deprecated"):
        approx = OffloadEnv(config={"edge": {"model": "70B"}, "episode.queries": 120, "approx_estimates": True})
    approx.reset(seed=0)
    assert approx.estimator.approx_queue_reuse is True
    with time_limit(GUARD_S), warnings.catch_warnings():  # both finish every query; the approximation changes
        warnings.simplefilter("ignore", FutureWarning)  # estimates, not the accounting (its deprecation: above)
        for env in (exact, approx):
            _, completed, _ = run_episode(env.config, "own-edge")
            assert sorted(c["query_id"] for c in completed) == list(range(120))


def test_kappa_one_batch_rates_do_not_divide_by_zero() -> None:
    # found by the slow property profile: the decode-rate table's empty-batch entry divided by 1 + kappa * (0 - 1)
    with time_limit(GUARD_S):
        _, completed, _ = run_episode({"topology.n_users": 1, "topology.n_aps": 1, "topology.area_m": 10.0,
                                       "edge.kappa": 1.0, "edge.max_batch": 1, "episode.queries": 10,
                                       "workload.subtask_count_probs": [0.0, 1.0],
                                       "workload.structure_probs": [0.0, 0.0, 1.0]}, "greedy")
    assert sorted(c["query_id"] for c in completed) == list(range(10))
