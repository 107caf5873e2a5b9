"""The compiled core against closed forms, through the env alone (single-job latencies, M/D/1, the batch model).

``tests/test_engine.py`` checks the Python engine against the same closed forms; these need no Python engine,
so they hold for whatever core the env runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import deterministic_overrides, hand_wifi_latency

from offload_gym.envs.offload_env import OffloadEnv

pytest.importorskip("numba")

PROMPT, ANSWER = 150, 45  # the deterministic workload's tokens (deterministic_overrides)


def one_phone(**sections: dict[str, Any]) -> dict[str, Any]:
    """One phone, one AP 7 m away, deterministic tokens, an exact planner."""
    cfg = deterministic_overrides(topology={"n_users": 1, "n_aps": 1, "user_positions": [[10.0, 10.0]],
                                            "ap_positions": [[15.0, 15.0]]}, episode={"queries": 1})
    for section, values in sections.items():
        cfg.setdefault(section, {}).update(values)
    return cfg


def first_latency(config: dict[str, Any], location: int) -> tuple[float, OffloadEnv]:
    """The latency of a one-query episode placed whole at ``location``, on the compiled core."""
    env = OffloadEnv(config=config, core="compiled")
    env.reset(seed=0)
    _, _, _, truncated, info = env.step(location)
    assert truncated and len(info["completed"]) == 1
    return info["completed"][0]["latency_s"], env


def env_wifi_latency(env: OffloadEnv, up_bytes: float, down_bytes: float) -> float:
    """:func:`conftest.hand_wifi_latency` for the env's phone 0 (its PHY rates from the episode's setup)."""
    assert env.episode is not None
    setup = env.episode.setup
    return hand_wifi_latency(env.config.wifi, setup.up_rate_bps[0], setup.down_rate_bps[0], up_bytes, down_bytes)


@pytest.mark.parametrize("background", [0, 16, 30])
def test_one_query_at_the_edge_takes_the_hand_computed_time(background: int) -> None:
    latency, env = first_latency(one_phone(wifi={"background_stations": background}), 1)
    w, e = env.config.wifi, env.config.edge
    up, down = PROMPT * w.bytes_per_token + w.message_overhead_bytes, ANSWER * w.bytes_per_token + w.message_overhead_bytes
    expected = env_wifi_latency(env, up, down) + PROMPT / e.prefill_tps + ANSWER / e.decode_tps
    assert latency == pytest.approx(expected, rel=1e-9)


def test_an_attachment_adds_its_bytes_to_the_upload() -> None:
    latency, env = first_latency(one_phone(workload={"attachment_prob": 1.0, "attachment_bytes_sigma": 0.0}), 1)
    w, e = env.config.wifi, env.config.edge
    up = PROMPT * w.bytes_per_token + w.message_overhead_bytes + env.config.workload.attachment_bytes_median
    down = ANSWER * w.bytes_per_token + w.message_overhead_bytes
    expected = env_wifi_latency(env, up, down) + PROMPT / e.prefill_tps + ANSWER / e.decode_tps
    assert latency == pytest.approx(expected, rel=1e-9)


def test_one_query_on_the_phone_is_its_prefill_plus_its_decode() -> None:
    latency, env = first_latency(one_phone(), 0)
    p = env.config.phone
    assert latency == pytest.approx(PROMPT / p.prefill_tps + ANSWER / p.decode_tps, rel=1e-12)


def test_local_only_queueing_is_md1() -> None:
    """Poisson arrivals at one phone that runs everything, deterministic service: the M/D/1 mean sojourn
    ``S + rho S / (2 (1 - rho))`` over 40,000 queries (the episode compacts its rows on the way)."""
    rate = 0.5
    env = OffloadEnv(config=one_phone(workload={"arrival_rate": rate}, episode={"queries": 40_000}), core="compiled")
    env.reset(seed=7)
    latencies: list[float] = []
    truncated = False
    while not truncated:
        _, _, _, truncated, info = env.step(0)
        latencies.extend(c["latency_s"] for c in info["completed"])
    p = env.config.phone
    service = PROMPT / p.prefill_tps + ANSWER / p.decode_tps
    assert len(latencies) == 40_000 and info["episode_metrics"]["queries"] == 40_000
    expected = service + rate * service**2 / (2 * (1 - rate * service))
    assert float(np.mean(latencies)) == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize("streams", [1, 2, 5])
def test_the_batch_model_decodes_concurrent_streams_at_r_of_b(streams: int) -> None:
    """The compiled batch projection: ``b`` streams admitted at once prefill together, then decode at
    ``r(b) = r1 / (1 + kappa (b - 1))`` each."""
    from offload_gym.core.batch import project_batch_finish_arrays

    empty = np.zeros(0)
    ready, prefill, decode = np.zeros(streams), np.full(streams, 300 / 3000), np.full(streams, 78.0)
    rate = 78 / (1 + 0.3 * (streams - 1))
    for target in range(streams):
        finish = project_batch_finish_arrays(0.0, 78.0, 0.3, 16, empty, empty, empty, ready, prefill, decode, target)
        assert finish == pytest.approx(300 / 3000 + 78 / rate, rel=1e-12)


def test_the_batch_model_admits_beyond_its_size_in_fifo_order() -> None:
    """Three equal streams, room for two, no slowdown: two finish together, the third starts when they leave."""
    from offload_gym.core.batch import project_batch_finish_arrays

    empty = np.zeros(0)
    ready, prefill, decode = np.zeros(3), np.full(3, 0.1), np.full(3, 78.0)
    finish = [project_batch_finish_arrays(0.0, 78.0, 0.0, 2, empty, empty, empty, ready, prefill, decode, i)
              for i in range(3)]
    assert finish[0] == pytest.approx(1.1) and finish[1] == pytest.approx(1.1)
    assert finish[2] == pytest.approx(2.2)
