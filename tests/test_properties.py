"""Property-based tests: random valid scenarios, random and built-in drivers, invariants at every step.

Hypothesis draws whole scenarios (topology, Wi-Fi contention, workload incl. fixed token counts,
planner, edge batching, reward, planner latency and faults) and drives one short episode with one of
seven drivers: random masked actions, unmasked random actions (the fallback rule), or a built-in
policy. At every step and at episode end it checks the Gymnasium contract (the env docstring and README):

* observations inside the declared space, float32, finite; rewards finite Python floats;
* masks allow at least one action, always the phone; ``action_masks()`` equals ``info["action_mask"]``;
* ``info["time_s"]`` never goes backwards;
* every query that arrived finishes exactly once, failed ones flagged with a reason;
* every latency is at least the simulator's no-contention lower bound; quality in [0, 1].

The default profile runs a few dozen scenarios per driver (the file in well under a minute); the
``slow`` profile runs hundreds per driver: ``pytest -m slow tests/test_properties.py``.
``--hypothesis-show-statistics`` prints how many cases each test ran.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import gymnasium as gym
import numpy as np
import pytest
from conftest import time_limit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import offload_gym  # noqa: F401  (registers the ids)
from offload_gym.config import make_config
from offload_gym.policies import POLICIES, make_policy
from offload_gym.sim.engine import FINISHED_LOG_LIMIT, Simulator

DRIVERS: tuple[str, ...] = ("random-masked", "unmasked-random", *sorted(POLICIES))
DEFAULT_EXAMPLES = 80
SLOW_EXAMPLES = 300
LIVELOCK_EVENTS = 10_000
WATCHDOG_S = 20.0  # a case takes ~10-200 ms; far longer means the simulator livelocked
_SETTINGS: dict[str, Any] = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}


def _probs(draw: st.DrawFn, n: int, *, first_positive: bool = False) -> list[float]:
    """``n`` non-negative probabilities summing to 1 (exact zeros included)."""
    weights = draw(st.lists(st.integers(0, 10), min_size=n, max_size=n))
    if first_positive and weights[0] == 0:
        weights[0] = 1
    if sum(weights) == 0:
        weights[draw(st.integers(0, n - 1))] = 1
    total = sum(weights)
    return [w / total for w in weights]


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    """A random valid scenario as nested overrides (JSON-able), episodes of 5-40 queries."""
    n_users = draw(st.integers(1, 50))
    n_aps = draw(st.integers(1, 8))
    queries = draw(st.integers(5, 40))
    arrival_rate = draw(st.sampled_from([0.02, 0.1, 0.2, 0.5, 1.0, 3.0]))
    span_s = queries / (arrival_rate * n_users)  # expected arrival span: faults land inside it
    n_classes = draw(st.integers(0, 2))
    classes = []
    if n_classes:
        shares = _probs(draw, n_classes, first_positive=True)
        for share in shares:
            classes.append({"share": share, "prefill_tps": draw(st.sampled_from([500.0, 3000.0])),
                            "decode_tps": draw(st.sampled_from([10.0, 48.0, 200.0])),
                            "ability": draw(st.floats(-2.0, 2.0))})
    k_max = draw(st.integers(1, 5))
    planner_kind = draw(st.sampled_from(["oracle", "noisy-oracle"]))
    reward_kind = draw(st.sampled_from(["linear", "product"]))
    cfg: dict[str, Any] = {
        "topology": {"n_users": n_users, "n_aps": n_aps,
                     "area_m": draw(st.sampled_from([10.0, 30.0, 60.0, 150.0]))},
        "wifi": {"background_stations": draw(st.integers(0, 60)),
                 "bandwidth_mhz": draw(st.sampled_from([20, 40, 80, 160]))},
        "phone": {"device_classes": classes},
        "edge": {"max_batch": draw(st.integers(1, 32)), "kappa": draw(st.floats(0.0, 1.0)),
                 "decode_tps": draw(st.sampled_from([20.0, 78.0, 300.0]))},
        "workload": {
            "arrival_rate": arrival_rate,
            "prompt_tokens_median": draw(st.sampled_from([1.0, 20.0, 150.0, 1000.0])),
            "prompt_tokens_sigma": draw(st.sampled_from([0.0, 0.5, 1.5])),
            "answer_tokens_median": draw(st.sampled_from([1.0, 45.0, 300.0])),
            "answer_tokens_sigma": draw(st.sampled_from([0.0, 0.6, 1.5])),
            "attachment_prob": draw(st.sampled_from([0.0, 0.3, 1.0])),
            "attachment_bytes_sigma": draw(st.sampled_from([0.0, 1.0])),
            "subtask_count_probs": _probs(draw, k_max),
            "structure_probs": _probs(draw, 3),
            "subtask_output_inflation": draw(st.sampled_from([0.5, 1.0, 1.2, 3.0])),
        },
        "planner": {"kind": planner_kind,
                    "length_noise_sigma": draw(st.sampled_from([0.0, 0.35, 1.0])),
                    "difficulty_noise_sigma": draw(st.sampled_from([0.0, 0.4, 2.0])),
                    "latency_s": draw(st.sampled_from([0.0, 0.0, 0.05, 0.5]))},
        "reward": {"kind": reward_kind, "latency_weight": draw(st.floats(0.0, 2.0)),
                   "deadline_s": draw(st.sampled_from([0.1, 2.0, 10.0])),
                   "deadline_penalty": draw(st.floats(0.0, 1.0))},
        "episode": {"queries": queries},
    }
    outages = [{"ap": draw(st.integers(0, n_aps - 1)),
                "start_s": draw(st.floats(0.0, 1.2)) * span_s,
                "duration_s": max(draw(st.floats(0.01, 0.6)) * span_s, 1e-3)}
               for _ in range(draw(st.integers(0, 3)))]
    bursts = [{"start_s": draw(st.floats(0.0, 1.2)) * span_s, "stations": draw(st.integers(0, 60)),
               "ap": draw(st.integers(-1, n_aps - 1))} for _ in range(draw(st.integers(0, 3)))]
    backhaul = [{"start_s": draw(st.floats(0.0, 1.2)) * span_s, "delay_s": draw(st.sampled_from([0.0, 1e-3, 0.3])),
                 "rate_bps": draw(st.sampled_from([1e6, 1e8, 1e10]))} for _ in range(draw(st.integers(0, 2)))]
    cfg["faults"] = {"ap_outages": outages, "on_outage": draw(st.sampled_from(["redispatch", "fail"])),
                     "background_changes": bursts, "backhaul_changes": backhaul}
    return cfg


def _chooser(driver: str, env: gym.Env, seed: int) -> Callable[[np.ndarray, np.ndarray], Any]:
    rng = np.random.default_rng(seed)
    n = int(env.action_space.n)
    if driver == "random-masked":
        return lambda obs, mask: int(rng.choice(np.flatnonzero(mask)))
    if driver == "unmasked-random":
        return lambda obs, mask: int(rng.integers(n))
    policy = make_policy(driver, env.unwrapped.config, seed=seed)
    return lambda obs, mask: policy.predict(obs, action_masks=mask)[0]


def _check_obs(env: gym.Env, obs: np.ndarray) -> None:
    assert obs.dtype == np.float32
    assert np.all(np.isfinite(obs)), obs
    assert env.observation_space.contains(obs), [
        (name, float(v)) for name, v, lo, hi in zip(env.unwrapped.observation_names, obs, env.observation_space.low,
                                                     env.observation_space.high, strict=True) if not lo <= v <= hi]


def _check_mask(env: gym.Env, info: dict[str, Any]) -> np.ndarray:
    mask = info["action_mask"]
    assert mask.dtype == np.int8 and mask.shape == (env.action_space.n,)
    assert mask.any() and mask[0] == 1
    assert np.array_equal(env.unwrapped.action_masks(), mask.astype(bool))
    return mask.astype(bool)


def _check_record(c: dict[str, Any], on_outage: str) -> None:
    assert 0.0 <= c["quality"] <= 1.0 and math.isfinite(c["latency_s"]) and c["latency_s"] >= 0.0
    assert math.isfinite(c["reward"])
    if c["failed"]:
        assert on_outage == "fail" and c["fail_reason"].startswith("ap_outage:") and c["quality"] == 0.0
    else:
        assert c["fail_reason"] == ""


class Livelock(Exception):
    """The simulator kept handling events without its clock moving (regression tests below)."""


@contextlib.contextmanager
def livelock_detector(limit: int = LIVELOCK_EVENTS) -> Iterator[None]:
    """Raise :class:`Livelock` when ``limit`` Wi-Fi or decode events in a row happen at the same sim time."""
    state: dict[str, Any] = {"now": None, "count": 0}

    def guard(original: Callable[..., None]) -> Callable[..., None]:
        def wrapper(self: Simulator, index: int) -> None:
            if self.now == state["now"]:
                state["count"] += 1
                if state["count"] >= limit:
                    raise Livelock(f"{original.__name__}: {limit} events at t = {self.now!r} s without progress")
            else:
                state["now"], state["count"] = self.now, 0
            original(self, index)

        return wrapper

    with (mock.patch.object(Simulator, "_cell_event", guard(Simulator._cell_event)),
          mock.patch.object(Simulator, "_decode_done", guard(Simulator._decode_done))):
        yield


def run_episode(cfg: dict[str, Any], driver: str, seed: int, timeout_s: float = WATCHDOG_S,
                step_limit_s: float | None = None) -> None:
    """One episode under ``driver``, asserting every invariant; raises AssertionError on a violation
    (and on any ``reset`` or ``step`` that takes longer than ``step_limit_s``)."""
    with time_limit(timeout_s), livelock_detector():
        env = gym.make("offload_gym/WifiOffload-v0", config=cfg, core="python")  # checks read the Python engine
        try:
            _run_checked(env, cfg, driver, seed, step_limit_s)
        finally:
            env.close()


def _timed(limit_s: float | None, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, failing when it used more than ``limit_s`` of this process's CPU time (CPU, not
    wall, so a loaded machine does not fail it; a true hang is caught by the wall-clock ``time_limit``)."""
    start = time.process_time()
    out = fn(*args, **kwargs)
    took = time.process_time() - start
    assert limit_s is None or took <= limit_s, f"{what} took {took:.2f} s of CPU (limit {limit_s} s)"
    return out


def _run_checked(env: gym.Env, cfg: dict[str, Any], driver: str, seed: int, step_limit_s: float | None = None) -> None:
    queries = cfg["episode"]["queries"]
    on_outage = cfg["faults"]["on_outage"]
    choose = _chooser(driver, env, seed)
    obs, info = _timed(step_limit_s, "reset()", env.reset, seed=seed)
    _check_obs(env, obs)
    assert info["decision"] == "query" and info["completed"] == []
    last_time = info["time_s"]
    ids: list[int] = []
    records: dict[int, dict[str, Any]] = {}
    invalid = 0
    rewards: list[float] = []
    max_steps = queries * (len(cfg["workload"]["subtask_count_probs"]) + 2) + 1
    truncated = False
    for _ in range(max_steps):
        mask = _check_mask(env, info)
        action = choose(obs, mask)
        invalid += int(not mask[int(action)])
        obs, reward, terminated, truncated, info = _timed(step_limit_s, "step()", env.step, action)
        _check_obs(env, obs)
        assert type(reward) is float and math.isfinite(reward)
        rewards.append(reward)
        assert terminated is False
        assert info["time_s"] >= last_time
        last_time = info["time_s"]
        assert info["invalid_actions"] == invalid
        for c in info["completed"]:
            _check_record(c, on_outage)
            ids.append(c["query_id"])
            records[c["query_id"]] = c
        assert reward == pytest.approx(sum(c["reward"] for c in info["completed"]), rel=1e-12, abs=1e-12)
        if truncated:
            break
    assert truncated, "episode did not end within the decision budget"
    assert info["decision"] == "end"
    if driver != "unmasked-random":
        assert invalid == 0
    assert sorted(ids) == list(range(queries)), "every arrived query finishes exactly once"
    sim = env.unwrapped.sim
    assert sim.queries_arrived == sim.queries_finished == queries
    metrics = info["episode_metrics"]
    assert metrics["queries"] == queries
    assert metrics["failed_queries"] == sum(c["failed"] for c in records.values())
    assert metrics["total_reward"] == pytest.approx(sum(rewards), rel=1e-9, abs=1e-9)
    for key in ("mean_latency_s", "p95_latency_s", "mean_quality", "mean_reward", "deadline_miss_rate"):
        assert math.isfinite(metrics[key])
    assert sim.summary.count == queries
    assert len(sim.finished_log) == min(queries, FINISHED_LOG_LIMIT)  # the env keeps the latest records only
    for rec in sim.finished_log:
        q = rec.query
        bound = sim.latency_lower_bound_s(q)
        assert not redispatched_before_planner_done(q, cfg)
        # the clock's resolution at the episode's end (arrival rates down to 1e-6 /s reach t ~ 1e9 s) on top
        slack = 8.0 * math.ulp(sim.now)
        assert rec.latency_s >= bound * (1.0 - 1e-9) - slack, (
            f"query {q.qid}: latency {rec.latency_s!r} < lower bound {bound!r} "
            f"(decomposed={q.decomposed}, redispatched={q.redispatched}, failed={q.failed})")
        assert 0.0 <= rec.quality <= 1.0
        assert records[q.qid]["latency_s"] == rec.latency_s and records[q.qid]["quality"] == rec.quality
        assert rec.latency_s <= sim.now - q.arrival_time + 1e-9


def redispatched_before_planner_done(query: Any, cfg: dict[str, Any]) -> bool:
    """A query re-run on its phone by an outage that hit it before its planner time was over."""
    planner_s = cfg["planner"]["latency_s"]
    whole = query.whole
    return bool(query.redispatched and planner_s > 0 and whole is not None
                and whole.start_time < query.arrival_time + planner_s - 1e-12)


@pytest.mark.parametrize("driver", DRIVERS)
@settings(max_examples=DEFAULT_EXAMPLES, **_SETTINGS)
@given(cfg=scenarios(), seed=st.integers(0, 2**31 - 1))
def test_invariants_default_profile(driver: str, cfg: dict[str, Any], seed: int) -> None:
    run_episode(cfg, driver, seed)


@pytest.mark.slow
@pytest.mark.parametrize("driver", DRIVERS)
@settings(max_examples=SLOW_EXAMPLES, **_SETTINGS)
@given(cfg=scenarios(), seed=st.integers(0, 2**31 - 1))
def test_invariants_large_profile(driver: str, cfg: dict[str, Any], seed: int) -> None:
    run_episode(cfg, driver, seed)


# ---------------------------------------------------------------------------------------------------------
# Wide-range profile: every numeric knob drawn across its whole allowed range (log-uniform where it spans
# decades), very low and very high load, and (slow profile) long episodes. Each reset and step must finish
# within STEP_LIMIT_S, so slowness that grows without bound fails instead of stalling CI.

STEP_LIMIT_S = 5.0
WIDE_DEFAULT_EXAMPLES = 6
WIDE_SLOW_EXAMPLES = 25


def _log_uniform(draw: st.DrawFn, lo: float, hi: float) -> float:
    return float(10.0 ** draw(st.floats(math.log10(lo), math.log10(hi))))


@st.composite
def wide_scenarios(draw: st.DrawFn, max_queries: int = 60) -> dict[str, Any]:
    """A valid scenario with values anywhere in the allowed ranges (the config's own bounds)."""
    n_aps = draw(st.integers(1, 64))
    cw_min = draw(st.sampled_from([1, 3, 7, 15, 31, 63]))
    k_max = draw(st.integers(1, 8))
    return {
        "topology": {"n_users": int(_log_uniform(draw, 1, 1000)), "n_aps": n_aps,
                     "area_m": _log_uniform(draw, 1.0, 10_000.0)},
        "wifi": {"background_stations": draw(st.integers(0, 500)), "bandwidth_mhz": draw(st.sampled_from([20, 40, 80, 160])),
                 "spatial_streams": draw(st.integers(1, 8)), "cw_min": cw_min,
                 "cw_max": (cw_min + 1) * 2 ** draw(st.integers(0, 6)) - 1,
                 "bytes_per_token": draw(st.sampled_from([0.0, 4.0, 1000.0])),
                 "message_overhead_bytes": draw(st.sampled_from([0, 400, 100_000])),
                 "backhaul_delay_s": draw(st.sampled_from([0.0, 5e-4, 10.0])),
                 "backhaul_rate_bps": _log_uniform(draw, 1.0, 1e12)},
        "phone": {"prefill_tps": _log_uniform(draw, 1e-2, 1e7), "decode_tps": _log_uniform(draw, 1e-2, 1e6),
                  "ability": draw(st.floats(-10.0, 10.0))},
        "edge": {"model": draw(st.sampled_from(["3B", "8B", "70B", "custom"])), "kappa": draw(st.floats(0.0, 10.0)),
                 "max_batch": int(_log_uniform(draw, 1, 4096)), "decode_tps": _log_uniform(draw, 1e-2, 1e6)},
        "workload": {
            "arrival_rate": _log_uniform(draw, 1e-6, 1000.0),
            "prompt_tokens_median": _log_uniform(draw, 1.0, 1e5), "prompt_tokens_sigma": draw(st.floats(0.0, 3.0)),
            "answer_tokens_median": _log_uniform(draw, 1.0, 1e4), "answer_tokens_sigma": draw(st.floats(0.0, 3.0)),
            "attachment_prob": draw(st.floats(0.0, 1.0)), "attachment_bytes_median": _log_uniform(draw, 1.0, 1e9),
            "subtask_count_probs": _probs(draw, k_max), "structure_probs": _probs(draw, 3),
            "subtask_output_inflation": _log_uniform(draw, 0.1, 10.0),
        },
        "planner": {"kind": draw(st.sampled_from(["oracle", "noisy-oracle"])),
                    "length_noise_sigma": draw(st.floats(0.0, 5.0)), "difficulty_noise_sigma": draw(st.floats(0.0, 10.0)),
                    "latency_s": draw(st.sampled_from([0.0, 0.5, 60.0]))},
        "reward": {"kind": draw(st.sampled_from(["linear", "product"])), "latency_weight": draw(st.floats(0.0, 100.0)),
                   "deadline_s": _log_uniform(draw, 1e-3, 1e6)},
        "episode": {"queries": draw(st.integers(1, max_queries))},
        "faults": {"ap_outages": [], "on_outage": "redispatch"},
    }


WIDE_DRIVERS = ("random-masked", "greedy", "local-only", "nearest-edge")


@pytest.mark.parametrize("driver", WIDE_DRIVERS)
@settings(max_examples=WIDE_DEFAULT_EXAMPLES, **_SETTINGS)
@given(cfg=wide_scenarios(), seed=st.integers(0, 2**31 - 1))
def test_invariants_wide_range_profile(driver: str, cfg: dict[str, Any], seed: int) -> None:
    run_episode(cfg, driver, seed, timeout_s=120.0, step_limit_s=STEP_LIMIT_S)


@pytest.mark.slow
@pytest.mark.parametrize("driver", WIDE_DRIVERS)
@settings(max_examples=WIDE_SLOW_EXAMPLES, **_SETTINGS)
@given(cfg=wide_scenarios(max_queries=1500), seed=st.integers(0, 2**31 - 1))
def test_invariants_wide_range_large_profile(driver: str, cfg: dict[str, Any], seed: int) -> None:
    run_episode(cfg, driver, seed, timeout_s=600.0, step_limit_s=STEP_LIMIT_S)


# ---------------------------------------------------------------------------------------------------------
# Regression tests: minimal reproducers of the bugs the properties above found (all fixed in the engine):
# Wi-Fi and decode livelocks at the clock's resolution, redispatch skipping the planner time, and the answer
# of a phone left out of coverage by an outage.


def _deterministic(**sections: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "workload": {"prompt_tokens_sigma": 0.0, "answer_tokens_sigma": 0.0, "attachment_prob": 0.0,
                     "subtask_count_probs": [1.0]},
        "planner": {"kind": "oracle"},
    }
    for section, values in sections.items():
        cfg.setdefault(section, {}).update(values)
    return cfg


def _drain_whole(cfg: dict[str, Any], location: Callable[[Simulator, Any], int], seed: int = 0) -> Simulator:
    sim = Simulator(make_config(cfg), np.random.default_rng(seed))
    while (query := sim.run_until_decision()) is not None:
        sim.place_whole(query, location(sim, query))
    return sim


def test_wifi_transfer_livelock_late_in_a_long_episode() -> None:
    cfg = {"topology": {"n_users": 1, "n_aps": 1, "area_m": 10.0},
           "workload": {"arrival_rate": 1e-4, "attachment_prob": 0.0}, "episode": {"queries": 5}}
    with livelock_detector():
        sim = _drain_whole(cfg, lambda sim, q: 1)
    assert sim.queries_finished == 5


def test_edge_decode_livelock_with_a_fast_edge() -> None:
    cfg = {"topology": {"n_users": 1, "n_aps": 1, "area_m": 10.0}, "edge": {"decode_tps": 1e6},
           "workload": {"arrival_rate": 0.01, "attachment_prob": 0.0}, "episode": {"queries": 3}}
    with livelock_detector():
        sim = _drain_whole(cfg, lambda sim, q: 1)
    assert sim.queries_finished == 3


def test_redispatch_during_planner_latency_skips_the_planner() -> None:
    topo = {"n_users": 1, "n_aps": 1, "area_m": 10.0}
    cfg = _deterministic(topology=topo, planner={"kind": "oracle", "latency_s": 0.5}, episode={"queries": 1})
    arrival = Simulator(make_config(cfg), np.random.default_rng(0)).run_until_decision()
    assert arrival is not None
    cfg["faults"] = {"ap_outages": [{"ap": 0, "start_s": arrival.arrival_time + 0.1, "duration_s": 1.0}]}
    sim = _drain_whole(cfg, lambda sim, q: 1)  # whole on the AP; the outage hits while the planner runs
    record = sim.finished_log[0]
    assert record.query.redispatched
    assert record.latency_s >= sim.latency_lower_bound_s(record.query) >= 0.5


def test_answer_to_phone_left_out_of_coverage() -> None:
    topo = {"n_users": 1, "n_aps": 2, "area_m": 300.0, "user_positions": [[5.0, 5.0]],
            "ap_positions": [[5.0, 6.0], [295.0, 295.0]]}
    cfg = _deterministic(topology=topo, episode={"queries": 1})
    arrival = Simulator(make_config(cfg), np.random.default_rng(0)).run_until_decision()
    assert arrival is not None
    cfg["faults"] = {"ap_outages": [{"ap": 0, "start_s": arrival.arrival_time + 0.3, "duration_s": 100.0}]}
    sim = _drain_whole(cfg, lambda sim, q: 2)  # the far AP, reached over AP 0 and the backhaul
    record = sim.finished_log[0]
    assert record.query.redispatched and record.latency_s >= sim.latency_lower_bound_s(record.query)
