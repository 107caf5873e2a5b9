"""Faults as scenario features: AP outages (redispatch or fail), background bursts, backhaul degradation."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import deterministic_overrides, single_query_latency

from offload_gym import OffloadEnv
from offload_gym.config import make_config
from offload_gym.envs.scene import scene
from offload_gym.policies import make_policy

OUTAGES = [{"ap": 0, "start_s": 5.0, "duration_s": 10.0}, {"ap": 2, "start_s": 20.0, "duration_s": 5.0}]


def run(config: dict[str, Any], policy: str, seed: int = 0) -> tuple[list[dict], list[dict], dict]:
    env = gym.make("offload_gym/WifiOffload-v0", config=config)
    pol = make_policy(policy, env.unwrapped.config, seed=seed)
    obs, info = env.reset(seed=seed)
    infos, completed = [info], []
    done = False
    while not done:
        action, _ = pol.predict(obs, action_masks=info["action_mask"])
        obs, _, terminated, truncated, info = env.step(action)
        infos.append(info)
        completed += info["completed"]
        done = terminated or truncated
    return infos, completed, info["episode_metrics"]


def _down(t: float, ap: int) -> bool:
    return any(o["ap"] == ap and o["start_s"] <= t < o["start_s"] + o["duration_s"] for o in OUTAGES)


@pytest.mark.parametrize("policy", ["nearest-edge", "greedy", "random-split"])
def test_outage_redispatch_loses_nothing_and_masks_the_ap(policy: str) -> None:
    infos, completed, metrics = run({"faults": {"ap_outages": OUTAGES}}, policy)
    assert sorted(c["query_id"] for c in completed) == list(range(200))
    assert metrics["queries"] == 200 and metrics["failed_queries"] == 0
    assert not any(c["failed"] for c in completed)
    for info in infos[:-1]:
        for ap in (0, 2):
            if _down(info["time_s"], ap):
                assert info["action_mask"][ap + 1] == 0
    # work placed on an AP while it was down never happens: no completed query ran there then
    for c in completed:
        if not c["redispatched"]:
            for loc in c["placements"]:
                if loc > 0:
                    assert not _down(c["arrival_s"], loc - 1)
    assert metrics["redispatched_queries"] == sum(c["redispatched"] for c in completed)


def test_outage_hits_queries_in_flight_and_redispatch_reruns_them_on_the_phone() -> None:
    _, completed, metrics = run({"faults": {"ap_outages": OUTAGES}}, "nearest-edge")
    hit = [c for c in completed if c["redispatched"]]
    assert metrics["redispatched_queries"] > 0 and hit
    for c in hit:
        assert c["placements"] == [0]
        assert c["arrival_s"] + c["latency_s"] > min(o["start_s"] for o in OUTAGES)


def test_outage_fail_reports_failed_queries_once() -> None:
    cfg = {"faults": {"ap_outages": OUTAGES, "on_outage": "fail"}, "reward": {"failure_penalty": 0.7}}
    _, completed, metrics = run(cfg, "nearest-edge")
    failed = [c for c in completed if c["failed"]]
    assert failed and metrics["failed_queries"] == len(failed)
    assert sorted(c["query_id"] for c in completed) == list(range(200))
    for c in failed:
        assert c["fail_reason"].startswith("ap_outage:") and c["reward"] == -0.7 and c["quality"] == 0.0


def test_phones_reassociate_during_an_outage() -> None:
    env = OffloadEnv(config={"faults": {"ap_outages": [{"ap": 1, "start_s": 1.0, "duration_s": 5.0}]}})
    _, info = env.reset(seed=0)
    assert env.episode is not None
    setup = env.episode.setup
    start = scene(env)
    assert start is not None
    before = start.own_ap.tolist()
    assert before == setup.own_ap  # every phone on its strongest AP
    served = [u for u, a in enumerate(before) if a == 1]
    assert served
    # during the outage: the next strongest AP that is up (or none, out of its coverage)
    without_1 = [setup.association(u, [ap != 1 for ap in range(env.n_aps)])[0] for u in range(setup.n_users)]
    assert all(without_1[u] != 1 for u in range(setup.n_users)) and without_1 != before
    seen_outage = False
    truncated = False
    while not truncated:
        view = scene(env)
        assert view is not None and view.decision is not None
        if 1.0 <= info["time_s"] < 6.0:
            seen_outage = True
            assert view.own_ap.tolist() == without_1
            assert info["action_mask"][2] == 0
        else:  # before the outage and after it
            assert view.own_ap.tolist() == before
        own = int(view.own_ap[view.decision.user])
        _, _, _, truncated, info = env.step(own + 1 if own >= 0 and info["action_mask"][own + 1] else 0)
    assert seen_outage
    end = scene(env)
    assert end is not None and end.own_ap.tolist() == before  # back to the strongest AP after the outage


def test_background_burst_slows_transfers() -> None:
    base = deterministic_overrides(workload={"attachment_prob": 1.0})
    burst = deterministic_overrides(workload={"attachment_prob": 1.0})
    burst["faults"] = {"background_changes": [{"start_s": 0.0, "stations": 60}]}
    _, calm, _ = run(base, "nearest-edge")
    _, busy, _ = run(burst, "nearest-edge")
    assert np.mean([c["latency_s"] for c in busy]) > np.mean([c["latency_s"] for c in calm]) + 0.1
    # one query alone: strictly slower, and a burst limited to another cell changes nothing
    topo = {"n_users": 1, "n_aps": 2, "user_positions": [[5.0, 5.0]], "ap_positions": [[5.0, 6.0], [25.0, 25.0]]}
    latencies = []
    for changes in ([], [{"start_s": 0.0, "stations": 60, "ap": 0}], [{"start_s": 0.0, "stations": 60, "ap": 1}]):
        cfg = make_config(deterministic_overrides(topology=topo, episode={"queries": 1},
                                                  workload={"attachment_prob": 1.0},
                                                  faults={"background_changes": changes}))
        latencies.append(single_query_latency(cfg, 1, seed=0))
    assert latencies[1] > latencies[0] and latencies[2] == latencies[0]


def test_backhaul_degradation_adds_its_delay_to_foreign_ap_work() -> None:
    topo = {"n_users": 1, "n_aps": 2, "user_positions": [[5.0, 5.0]], "ap_positions": [[5.0, 6.0], [25.0, 25.0]]}
    latencies = []
    for changes in ([], [{"start_s": 0.0, "delay_s": 0.25, "rate_bps": 1e9}]):
        cfg = make_config(deterministic_overrides(topology=topo, episode={"queries": 1},
                                                  faults={"backhaul_changes": changes}))
        env = OffloadEnv(config=cfg)
        env.reset(seed=0)
        view = scene(env)
        assert view is not None and view.own_ap.tolist() == [0]
        latencies.append(single_query_latency(cfg, 2, seed=0))  # the foreign AP: there and back over the backhaul
    default_delay_s = make_config({}).wifi.backhaul_delay_s
    assert latencies[1] - latencies[0] == pytest.approx(2 * (0.25 - default_delay_s), rel=1e-9)


def test_fault_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"faults\.ap_outages\[0\]\.ap: AP 9 does not exist"):
        make_config({"faults": {"ap_outages": [{"ap": 9, "start_s": 1, "duration_s": 1}]}})
    with pytest.raises(ValueError, match=r"faults\.on_outage: 'drop' is not allowed"):
        make_config({"faults": {"on_outage": "drop"}})
    with pytest.raises(ValueError, match=r"duration_s: 0\.0 is out of range"):
        make_config({"faults": {"ap_outages": [{"ap": 0, "start_s": 1, "duration_s": 0}]}})
