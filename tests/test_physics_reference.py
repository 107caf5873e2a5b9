"""``offload_gym.sim.physics`` is the model's formulas written once in Python (docs/model.md points at them); the
compiled core evaluates the same expressions on its arrays. These tests hold the two together, float for float,
on fuzzed inputs: a change to either side that is not made on the other fails here."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

pytest.importorskip("numba")

from offload_gym.core import batch as cb
from offload_gym.core import engine as ce
from offload_gym.core import estimates as cest
from offload_gym.core import wifi as cw
from offload_gym.core.state import FIELDS
from offload_gym.envs.offload_env import OffloadEnv
from offload_gym.sim import physics

RNG = np.random.default_rng(11)


def _state(config: dict[str, Any] | None = None) -> tuple[OffloadEnv, Any, tuple[Any, ...]]:
    """A fresh episode's state (``S`` for the kernels) and its arrays."""
    env = OffloadEnv(config=config or {})
    env.reset(seed=0)
    assert env.episode is not None
    return env, env.episode.state.struct, env.episode.state.arrays


@pytest.mark.parametrize("wifi", [{}, {"bytes_per_token": 2.5, "message_overhead_bytes": 0.0},
                                  {"bytes_per_token": 7.0, "message_overhead_bytes": 311.0}])
def test_message_bytes_are_token_bytes(wifi: dict[str, Any]) -> None:
    env, S, _ = _state({"wifi": wifi})
    w = env.config.wifi
    for tokens in [0.0, 1.0, 37.5, *RNG.lognormal(5, 1.5, 40)]:
        assert ce._token_bytes(S, float(tokens)) == physics.token_bytes(float(tokens), w.bytes_per_token,
                                                                        w.message_overhead_bytes)


@pytest.mark.parametrize("kappa", [0.0, 0.3, 1.0, 2.5])
def test_the_batch_decode_rate_is_decode_rate_tps(kappa: float) -> None:
    env, S, _ = _state({"edge": {"kappa": kappa, "max_batch": 24}})
    e = env.config.edge
    table = physics.decode_rate_table(e.decode_tps, kappa, e.max_batch)
    for b in range(e.max_batch + 1):
        assert ce._edge_rate(S, b) == physics.decode_rate_tps(e.decode_tps, kappa, b)
        assert cb._decode_rate(e.decode_tps, kappa, b) == table[b]
        if b > 0:
            assert table[b] == physics.decode_rate_tps(e.decode_tps, kappa, b)
    assert ce._edge_rate(S, 0) == 0.0 and table[0] == e.decode_tps  # the empty batch: no stream, and no division


def test_frame_symbols_are_ofdm_symbols() -> None:
    _, _, arrays = _state()
    params = arrays[23]
    header = float(params[cw.P_MAC_HEADER_BYTES] + params[cw.P_MPDU_DELIMITER_BYTES])
    for rate, payload in zip(RNG.uniform(8e6, 1.2e9, 60), RNG.uniform(0, 12000, 60), strict=True):
        want = physics.ofdm_symbols(float(payload), header, float(rate), float(params[cw.P_SYMBOL_S]))
        assert cest._symbols(params, float(rate), float(payload)) == want
    assert physics.ofdm_symbols(0.0, 0.0, 1.0, 1.0) == math.ceil(physics.PHY_SERVICE_TAIL_BITS)


def test_message_routes_are_route() -> None:
    """Every (source, destination) pair of locations, for phones on each AP: the hops the core's message carries
    are :func:`physics.route`'s."""
    _, S, arrays = _state({"topology": {"n_users": 6, "n_aps": 3}})
    own_ap, mi, gi = (arrays[FIELDS.index(name)] for name in ("own_ap", "mi", "gi"))
    kinds = {ce.H_UP: physics.HopKind.UP, ce.H_BACKHAUL: physics.HopKind.BACKHAUL, ce.H_DOWN: physics.HopKind.DOWN}
    checked = 0
    for user in range(6):
        oa = int(own_ap[user])
        if oa < 0:
            continue
        for src in range(4):
            for dst in range(4):
                if src == dst:
                    continue
                m = ce._new_message(S, user, src, dst, 100.0, -1, -1, 0)
                assert m == gi[ce.GI_N_MSGS] - 1
                hops = []
                for h in range(int(mi[m, ce.MI_N_HOPS])):
                    kind, ap = kinds[int(mi[m, ce.MI_HOPS + 2 * h])], int(mi[m, ce.MI_HOPS + 2 * h + 1])
                    hops.append((kind,) if kind == physics.HopKind.BACKHAUL else (kind, ap, user))
                assert ap_ok(hops, oa)
                assert hops == physics.route(oa, user, src, dst), (user, src, dst)
                checked += 1
    assert checked >= 24


def ap_ok(hops: list[tuple[int, ...]], own_ap: int) -> bool:
    """Wi-Fi legs are always in the phone's own cell."""
    return all(h[1] == own_ap for h in hops if h[0] != physics.HopKind.BACKHAUL)


def test_success_probability_is_the_quality_models() -> None:
    from offload_gym.sim.quality import decomposed_quality, success_prob

    for ability, difficulty in zip(RNG.normal(0, 2, 80), RNG.normal(0, 3, 80), strict=True):
        assert ce._success_prob(float(ability), float(difficulty)) == success_prob(float(ability), float(difficulty))
    assert success_prob(1.0, 1.0) == 0.5 and success_prob(9.0, -9.0) == 1.0
    # the core's decomposed quality (core.engine._finish_query): aggregation success times the mean, a running sum
    # in subtask order; values whose compensated sum (Python 3.12's sum) would differ in the last bit
    subtasks = [0.1, 1e-17, 1e-17, 0.7]
    total = 0.0
    for q in subtasks:
        total += q
    assert decomposed_quality(0.9, subtasks) == 0.9 * (total / 4)
