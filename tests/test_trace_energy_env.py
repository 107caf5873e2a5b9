"""Trace-driven workloads and phone energy in the simulator and the env (the modules have their own tests)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import deterministic_overrides, random_masked, rollout

import offload_gym  # noqa: F401
from offload_gym.config import ConfigError, make_config
from offload_gym.envs.offload_env import OffloadEnv
from offload_gym.sim.episode import EpisodeWorkload
from offload_gym.sim.traces import load_trace

TRACE_IDS = ("offload_gym/WifiOffload-azure-code-v0", "offload_gym/WifiOffload-azure-conv-v0")


def _gaps(times: np.ndarray) -> np.ndarray:
    return np.diff(np.asarray(times, dtype=np.float64))


def test_replayed_arrivals_keep_the_trace_statistics_after_scaling() -> None:
    """One full pass over the bursty code trace: the mean gap is the target rate's, the CV the trace's (2 %)."""
    trace = load_trace("azure-code")
    n = len(trace) + 1  # N gaps: every gap of the trace once, plus the wrap gap
    cfg = make_config({"workload": {"source": "trace", "trace": "azure-code", "arrival_rate": 0.2},
                       "topology": {"n_users": 20}, "episode": {"queries": n}})
    wl = EpisodeWorkload(cfg, np.random.default_rng(3), np.random.default_rng(4))
    arrivals = [wl.arrival(k) for k in range(n)]  # block after block (the workload keeps one block at a time)
    gaps = _gaps(np.array([t for t, _ in arrivals]))
    target_mean = 1.0 / (0.2 * 20)
    assert gaps.mean() == pytest.approx(target_mean, rel=0.02)
    assert gaps.std() / gaps.mean() == pytest.approx(trace.interarrival_cv, rel=0.02)
    assert trace.interarrival_cv > 10  # the bursty one: a Poisson replay would have CV 1
    assert {u for _, u in arrivals} == set(range(20))


@pytest.mark.parametrize("env_id", TRACE_IDS)
def test_trace_episodes_conserve_queries_and_are_deterministic(env_id: str) -> None:
    env = gym.make(env_id, config={"episode": {"queries": 60}})
    first = rollout(env, 5, random_masked)
    again = rollout(env, 5, random_masked)
    other = rollout(env, 6, random_masked)
    metrics = first["infos"][-1]["episode_metrics"]
    finished = [c["query_id"] for info in first["infos"] for c in info["completed"]]
    assert metrics["queries"] == 60 and sorted(finished) == list(range(60))
    assert first["rewards"] == again["rewards"]
    assert all(np.array_equal(a, b) for a, b in zip(first["obs"], again["obs"], strict=True))
    arrivals = [c["arrival_s"] for info in first["infos"] for c in info["completed"]]
    other_arrivals = [c["arrival_s"] for info in other["infos"] for c in info["completed"]]
    assert sorted(arrivals) != sorted(other_arrivals)  # another seed, another start row and phones
    assert min(arrivals) == 0.0  # a replay starts at its first row


def test_trace_lengths_follow_the_scaling_option() -> None:
    base = {"workload": {"source": "trace", "trace": "azure-conv"}, "episode": {"queries": 400}}
    scaled = make_config(base)
    own = make_config({**base, "workload": {**base["workload"], "trace_token_scaling": "none"}})
    rng = np.random.default_rng
    wl_scaled, wl_own = EpisodeWorkload(scaled, rng(0), rng(1)), EpisodeWorkload(own, rng(0), rng(1))
    prompts_scaled = [wl_scaled.query(k)[0].prompt_tokens for k in range(400)]
    prompts_own = [wl_own.query(k)[0].prompt_tokens for k in range(400)]
    assert np.median(prompts_scaled) == pytest.approx(scaled.workload.prompt_tokens_median, rel=0.15)
    assert np.median(prompts_own) > 500  # the conversation trace's own prompts (median about 1,000 tokens)


def test_a_bad_trace_file_gives_one_clear_error(tmp_path: Any) -> None:
    bad = tmp_path / "mine.csv"
    bad.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n0.0,10,5\n1.5,ten,5\n")
    with pytest.raises(ConfigError, match=r"workload\.trace: .*mine\.csv.*line 3, column 2"):
        gym.make("offload_gym/WifiOffload-v0", config={"workload": {"source": "trace", "trace": str(bad)}})
    with pytest.raises(ConfigError, match=r"workload\.source"):
        make_config({"workload": {"source": "trace"}, "planner": {"kind": "learned"}})


def test_a_users_own_trace_replays(tmp_path: Any) -> None:
    own = tmp_path / "own.csv"
    own.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(f"{0.5 * i},{100 + i},{20 + i}\n" for i in range(50)))
    env = gym.make("offload_gym/WifiOffload-tiny-v0",
                   config={"workload": {"source": "trace", "trace": str(own), "trace_token_scaling": "none"}})
    out = rollout(env, 0, random_masked)
    assert out["infos"][-1]["episode_metrics"]["queries"] == 20


# ------------------------------------------------------------------------------------------------ energy

def _one_query(location: int, **extra: Any) -> tuple[dict[str, Any], OffloadEnv]:
    cfg = deterministic_overrides(topology={"n_users": 1, "n_aps": 1, "user_positions": [[3.0, 0.0]],
                                            "ap_positions": [[0.0, 0.0]]},
                                  wifi={"background_stations": 0}, episode={"queries": 1}, **extra)
    env = OffloadEnv(config=cfg)
    env.reset(seed=0)
    _, _, _, _, info = env.step(location)
    assert info["decision"] == "end"
    return info["completed"][0], env


def test_energy_of_a_local_query_is_its_compute() -> None:
    record, env = _one_query(0)
    cfg = env.config
    prompt, answer = cfg.workload.prompt_tokens_median, cfg.workload.answer_tokens_median
    expected = (cfg.energy.prefill_power_w * prompt / cfg.phone.prefill_tps
                + cfg.energy.decode_power_w * answer / cfg.phone.decode_tps)
    assert record["energy_j"] == pytest.approx(expected, rel=1e-12)
    assert record["energy_j"] == pytest.approx(5.0 * 150 / 3000 + 3.5 * 45 / 48, rel=1e-12)  # the defaults, by hand


def test_energy_of_an_offloaded_query_is_airtime_plus_the_wait() -> None:
    record, env = _one_query(1)
    cfg = env.config
    assert env.episode is not None
    setup = env.episode.setup  # the episode's phones and links (nothing changes them without faults)
    w, e = cfg.wifi, cfg.energy
    up_bytes = cfg.workload.prompt_tokens_median * w.bytes_per_token + w.message_overhead_bytes
    down_bytes = cfg.workload.answer_tokens_median * w.bytes_per_token + w.message_overhead_bytes
    tx_s = 8 * up_bytes / setup.up_rate_bps[0]
    rx_s = 8 * down_bytes / setup.down_rate_bps[0]
    idle_s = record["latency_s"] - tx_s - rx_s  # no planner time: the radio is awake from upload to answer
    expected = e.tx_power_w * tx_s + e.rx_power_w * rx_s + e.idle_power_w * idle_s
    assert record["energy_j"] == pytest.approx(expected, rel=1e-9)
    assert 0 < record["energy_j"] < 0.5  # far below running it locally (about 3.5 J)


def test_energy_metric_and_reward_term() -> None:
    plain = rollout(gym.make("offload_gym/WifiOffload-tiny-v0"), 1, random_masked)
    weighted = rollout(gym.make("offload_gym/WifiOffload-tiny-v0", config={"reward": {"energy_weight": 0.5}}), 1,
                       random_masked)
    records = [c for info in plain["infos"] for c in info["completed"]]
    metrics = plain["infos"][-1]["episode_metrics"]
    assert metrics["mean_energy_j"] == pytest.approx(np.mean([c["energy_j"] for c in records]))
    assert all(c["energy_j"] > 0 for c in records)
    # the same seed and actions drawn from the same masks: rewards differ by the energy term exactly
    w_records = {c["query_id"]: c for info in weighted["infos"] for c in info["completed"]}
    for c in records:
        other = w_records[c["query_id"]]
        if other["placements"] == c["placements"]:
            assert other["reward"] == pytest.approx(c["reward"] - 0.5 * c["energy_j"], abs=1e-12)


def test_energy_observation_only_when_the_energy_term_is_on() -> None:
    plain = gym.make("offload_gym/WifiOffload-v0")
    energy = gym.make("offload_gym/WifiOffload-energy-v0")
    names = energy.unwrapped.observation_names  # type: ignore[attr-defined]
    assert plain.unwrapped.observation_names == names[: len(plain.unwrapped.observation_names)]  # type: ignore[attr-defined]
    assert names[len(plain.unwrapped.observation_names):] == ("phone_est_energy", *(f"ap{j}_est_energy" for j in range(4)))  # type: ignore[attr-defined]
    obs_plain, _ = plain.reset(seed=0)
    obs_energy, _ = energy.reset(seed=0)
    n = obs_plain.size
    assert np.array_equal(obs_plain, obs_energy[:n])
    feats = dict(zip(names, obs_energy, strict=True))
    assert 0 < feats["phone_est_energy"] < 1
    own = int(energy.unwrapped.episode.setup.own_ap[energy.unwrapped.deciding_user()])  # type: ignore[attr-defined]
    assert feats[f"ap{own}_est_energy"] < feats["phone_est_energy"]  # offloading saves the phone energy
    with pytest.raises(ValueError, match="energy_weight"):
        energy.reset(options={"config": {"reward": {"energy_weight": 0.0}}})
