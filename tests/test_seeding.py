"""offload_gym.sim.seeding: the PCG64 states of ``default_rng([seed, k])`` and a re-seeded shared generator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from offload_gym.sim.seeding import Reseeder, seed_states, seed_states_many

EDGE_SEEDS = [0, 1, 2, 2**31, 2**32 - 1, 2**32, 2**32 + 1, 2**33 + 5, 2**62, 2**63 - 1]


def _seeds() -> list[int]:
    rng = np.random.default_rng(20260101)
    return EDGE_SEEDS + [int(s) for s in rng.integers(2**63, size=300)]


def _expected(seed: int, k: int) -> tuple[int, int]:
    st = np.random.default_rng([seed, k]).bit_generator.state
    assert st["has_uint32"] == 0 and st["uinteger"] == 0
    return st["state"]["state"], st["state"]["inc"]


@pytest.mark.parametrize("k", [0, 1, 7, 2**32 - 1])
@pytest.mark.parametrize("as_array", [True, False])
def test_seed_states_equal_default_rng(k: int, as_array: bool) -> None:
    seeds = _seeds()
    states, incs = seed_states(np.array(seeds, dtype=np.int64) if as_array else seeds, k)
    assert len(states) == len(incs) == len(seeds)
    for seed, state, inc in zip(seeds, states, incs, strict=True):
        assert (state, inc) == _expected(seed, k), seed


def test_seed_states_up_to_2_64_and_uint64_input() -> None:
    seeds = [2**63, 2**64 - 1, 2**64 - 2**32, 12345]
    states, incs = seed_states(np.array(seeds, dtype=np.uint64), 1)
    assert [(s, i) for s, i in zip(states, incs, strict=True)] == [_expected(seed, 1) for seed in seeds]


def test_seed_states_many_matches_single() -> None:
    seeds = np.array(_seeds()[:50], dtype=np.int64)
    assert seed_states_many(seeds, (0, 1, 3)) == [seed_states(seeds, 0), seed_states(seeds, 1), seed_states(seeds, 3)]
    assert seed_states(np.empty(0, dtype=np.int64), 0) == ([], [])


def test_seed_states_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        seed_states(np.array([-1, 3]), 0)
    with pytest.raises(ValueError):
        seed_states(np.array([1.0]), 0)
    with pytest.raises(ValueError):
        seed_states(np.array([[1]]), 0)
    with pytest.raises(ValueError):
        seed_states(np.array([1]), 2**32)


Draw = Callable[[np.random.Generator], Any]

#: a mix of Generator methods, including ones with 32-bit draws (which cache half a 64-bit word in the bit
#: generator) and the normal/gamma family (which must keep no state in the Generator itself)
DRAWS: list[Draw] = [
    lambda g: g.random(),
    lambda g: g.random(3),
    lambda g: g.integers(10),
    lambda g: g.integers(1, 3),
    lambda g: g.integers(2**63, size=4),
    lambda g: g.integers(0, 1000, dtype=np.int32, size=3),
    lambda g: g.random(dtype=np.float32),
    lambda g: g.normal(),
    lambda g: g.normal(2.0, 0.5, size=3),
    lambda g: g.standard_normal(),
    lambda g: g.standard_normal(size=5),
    lambda g: g.lognormal(0.3, 1.1),
    lambda g: g.exponential(2.5),
    lambda g: g.choice(5, p=[0.1, 0.2, 0.3, 0.25, 0.15]),
    lambda g: g.choice(7, size=2, replace=False),
    lambda g: g.gamma(0.7, 2.0),
    lambda g: g.gamma(3.5, size=2),
    lambda g: g.standard_gamma(0.4),
    lambda g: g.uniform(-1.0, 1.0),
]


def _run(g: np.random.Generator, order: list[int]) -> list[Any]:
    return [np.asarray(DRAWS[i](g)).tolist() for i in order]


def test_reseeded_generator_gives_default_rng_streams() -> None:
    rng = np.random.default_rng(7)
    seeds = _seeds()
    reseeder = Reseeder()
    per_k = {k: seed_states(seeds, k) for k in (0, 1)}
    for n, seed in enumerate(seeds):
        for k in (0, 1):
            order = [int(i) for i in rng.integers(len(DRAWS), size=int(rng.integers(1, 12)))]
            states, incs = per_k[k]
            g = reseeder.reseed(states[n], incs[n])
            assert g is reseeder.generator  # one shared generator, re-seeded many times in a row
            assert _run(g, order) == _run(np.random.default_rng([seed, k]), order), (seed, k, order)


def test_reseed_after_pending_32_bit_half_and_normals() -> None:
    # leave the shared generator with a cached 32-bit half and mid-way through normal/gamma draws, then re-seed
    seed = 2**32 + 17
    states, incs = seed_states([seed], 0)
    state, inc = states[0], incs[0]
    reseeder = Reseeder()
    for leftover in (lambda g: g.random(dtype=np.float32), lambda g: g.integers(5, dtype=np.int32),
                     lambda g: g.standard_normal(3), lambda g: g.gamma(0.3, size=3), lambda g: g.lognormal()):
        leftover(reseeder.generator)
        g = reseeder.reseed(state, inc)
        assert g.bit_generator.state == np.random.default_rng([seed, 0]).bit_generator.state
        order = list(range(len(DRAWS)))
        assert _run(g, order) == _run(np.random.default_rng([seed, 0]), order)


def test_the_setups_generators_are_default_rngs() -> None:
    """``EpisodeSetup`` builds its generators as ``np.random.default_rng`` does, without its checks: the same
    state and draws for one- and two-word seeds and for ``[seed, k]`` lists."""
    from offload_gym.sim.setup import _default_rng

    for seed in (0, 1, 2**32 - 1, 2**32, 2**63 - 1, [5, 7], [2**40, 7]):
        ours, numpys = _default_rng(seed), np.random.default_rng(seed)
        assert ours.bit_generator.state == numpys.bit_generator.state
        assert ours.standard_normal(8).tobytes() == numpys.standard_normal(8).tobytes()
