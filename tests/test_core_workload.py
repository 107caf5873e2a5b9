"""offload_gym.core.rng and offload_gym.core.workload: the compiled synthetic workload against the Python draw.

Every array of :func:`offload_gym.core.workload.draw_block` must equal, bit for bit, what the compiled engine's
``CoreState`` builds from :func:`offload_gym.sim.workload.draw_query` and :func:`offload_gym.sim.planner.predict`
(on fresh ``np.random.default_rng([seed, k])`` streams, and through :class:`EpisodeWorkload`); each draw of
:mod:`offload_gym.core.rng` must equal numpy's ``Generator``'s.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

pytest.importorskip("numba")

from numba.np.random._constants import ziggurat_nor_r

from offload_gym.config import PlannerConfig, ScenarioConfig, make_config
from offload_gym.core import rng as R
from offload_gym.core.workload import (
    WF_ATTACHMENT,
    WF_PROMPT,
    WS_OUTPUT,
    WorkloadBlock,
    draw_block,
    synthetic_params,
)
from offload_gym.sim.episode import EpisodeWorkload
from offload_gym.sim.planner import Prediction, predict
from offload_gym.sim.workload import CHAIN, DAG, QuerySpec, draw_query

# ---------------------------------------------------------------------------------------------------------------
# the reference: CoreState's layout of the Python draw


def _layout(cfg: ScenarioConfig, queries: list[tuple[QuerySpec, Prediction]]) -> WorkloadBlock:
    """The arrays ``CoreState.__init__`` fills from ``wl.query(q)`` (offload_gym/core/engine.py)."""
    n, max_k = len(queries), cfg.max_subtasks
    block = WorkloadBlock(np.zeros((n, 8)), np.zeros((n, max_k, 4)), np.zeros((n, max_k, max_k + 1), dtype=np.int64),
                          np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64))
    for q, (spec, pred) in enumerate(queries):
        block.wl_f[q] = (spec.prompt_tokens, spec.answer_tokens, spec.difficulty, spec.attachment_bytes,
                         pred.answer_tokens, pred.difficulty, pred.aggregation_output_tokens, pred.aggregation_difficulty)
        block.wl_k[q], block.wl_structure[q] = len(spec.deps), spec.structure
        for i, deps in enumerate(spec.deps):
            block.wl_sub[q, i] = (spec.subtask_output_tokens[i], spec.subtask_difficulty[i],
                                  pred.subtask_output_tokens[i], pred.subtask_difficulty[i])
            block.wl_deps[q, i, 0] = len(deps)
            block.wl_deps[q, i, 1:1 + len(deps)] = deps
    return block


def _python_block(cfg: ScenarioConfig, seeds: np.ndarray, prompt_tokens: np.ndarray | None = None,
                  answer_tokens: np.ndarray | None = None) -> WorkloadBlock:
    """Query ``i`` drawn by the Python code on fresh ``default_rng([seeds[i], 0])`` / ``([seeds[i], 1])``."""
    queries = []
    for q, seed in enumerate(seeds.tolist()):
        lengths: dict[str, Any] = {}
        if prompt_tokens is not None and answer_tokens is not None:
            lengths = {"prompt_tokens": int(prompt_tokens[q]), "answer_tokens": int(answer_tokens[q])}
        spec = draw_query(cfg.workload, np.random.default_rng([seed, 0]), **lengths)
        queries.append((spec, predict(spec, cfg.planner, cfg.workload, np.random.default_rng([seed, 1]))))
    return _layout(cfg, queries)


def _assert_same(got: WorkloadBlock, want: WorkloadBlock) -> None:
    for name, a, b in zip(WorkloadBlock._fields, got, want, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype, (name, a.shape, b.shape, a.dtype, b.dtype)
        if a.dtype.kind == "f":  # bitwise: -0.0 and 0.0 differ, as would two NaNs' payloads
            diff = np.flatnonzero(a.view(np.uint64) != b.view(np.uint64))
        else:
            diff = np.flatnonzero(a != b)
        assert diff.size == 0, (name, diff.size, np.unravel_index(diff[0], a.shape),
                                a.ravel()[diff[0]], b.ravel()[diff[0]])


def _seeds(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(2**63, size=n)


# ---------------------------------------------------------------------------------------------------------------
# the workload

_NO_SIGMA = {"workload.prompt_tokens_sigma": 0.0, "workload.answer_tokens_sigma": 0.0,
             "workload.attachment_bytes_sigma": 0.0, "workload.difficulty_std": 0.0,
             "workload.subtask_difficulty_std": 0.0, "planner.length_noise_sigma": 0.0,
             "planner.difficulty_noise_sigma": 0.0}
CONFIGS: dict[str, dict[str, Any]] = {
    "default": {},
    "oracle": {"planner.kind": "oracle"},
    "no-attachments": {"workload.attachment_prob": 0.0},
    "all-attachments": {"workload.attachment_prob": 1.0, "workload.attachment_bytes_sigma": 5.0},
    "sigma-0": _NO_SIGMA,
    "sigma-0-oracle": {**_NO_SIGMA, "planner.kind": "oracle"},
    "k-1": {"workload.subtask_count_probs": (1.0,)},
    "k-max-dag": {"workload.subtask_count_probs": (0.125,) * 8, "workload.structure_probs": (0.0, 0.1, 0.9)},
    "k-max-dag-oracle": {"workload.subtask_count_probs": (0.0,) * 7 + (1.0,), "workload.structure_probs": (0.0, 0.0, 1.0),
                         "planner.kind": "oracle"},
    "chain-wide": {"workload.structure_probs": (0.0, 1.0, 0.0), "workload.prompt_tokens_sigma": 5.0,
                   "workload.answer_tokens_sigma": 5.0, "planner.length_noise_sigma": 5.0,
                   "planner.difficulty_noise_sigma": 10.0, "workload.difficulty_mean": -3.0},
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_block_equals_python_draw(name: str) -> None:
    cfg = make_config(CONFIGS[name])
    seeds = _seeds(2000, 1 + list(CONFIGS).index(name))
    got = draw_block(seeds, synthetic_params(cfg))
    _assert_same(got, _python_block(cfg, seeds))
    # the configuration's branches ran (so that an equality here says something about them)
    attached = got.wl_f[:, WF_ATTACHMENT] > 0
    expected = {0.0: 0, 1.0: 2000}.get(cfg.workload.attachment_prob)
    assert attached.sum() == expected if expected is not None else 0 < attached.sum() < 2000
    k, structure = got.wl_k, got.wl_structure
    if name.startswith("k-max-dag"):
        dag = (structure == DAG) & (k > 2)
        assert dag.sum() > 1000 and (got.wl_deps[dag, 2:, 0] == 2).any() and (k == 8).sum() > 200
    if name == "chain-wide":
        assert (got.wl_deps[(structure == CHAIN) & (k > 1), 1, :2] == (1, 0)).all()
        assert (got.wl_f[:, WF_PROMPT] == 1.0).any() and got.wl_f[:, WF_PROMPT].max() > 1e5


def test_trace_lengths_replace_the_drawn_ones() -> None:
    cfg = make_config({"workload.subtask_count_probs": (0.2, 0.2, 0.2, 0.2, 0.1, 0.1)})
    seeds = _seeds(2000, 99)
    rng = np.random.default_rng(5)
    prompt = rng.integers(1, 20_000, size=2000)
    answer = rng.integers(1, 5_000, size=2000)
    answer[:10] = (1, 2, 3, 5, 7, 9, 2**40, 2**52, 25, 41)  # odd lengths: ties in answer * inflation / K
    got = draw_block(seeds, synthetic_params(cfg), prompt, answer)
    _assert_same(got, _python_block(cfg, seeds, prompt, answer))
    assert np.array_equal(got.wl_f[:, WF_PROMPT], prompt.astype(np.float64))
    # the rest is the synthetic draw of the same seeds
    plain = draw_block(seeds, synthetic_params(cfg))
    assert np.array_equal(got.wl_k, plain.wl_k) and np.array_equal(got.wl_deps, plain.wl_deps)


def test_rounding_is_half_to_even() -> None:
    # round(2.5) = 2, round(3.5) = 4, and K = 2 makes the subtask output round(5 / 2) = 2: half up would give 3, 4, 3
    cfg = make_config({"workload.prompt_tokens_median": 2.5, "workload.prompt_tokens_sigma": 0.0,
                       "workload.answer_tokens_median": 5.0, "workload.answer_tokens_sigma": 0.0,
                       "workload.subtask_output_inflation": 1.0, "workload.subtask_count_probs": (0.0, 1.0)})
    seeds = _seeds(2000, 3)
    got = draw_block(seeds, synthetic_params(cfg))
    _assert_same(got, _python_block(cfg, seeds))
    assert (got.wl_f[:, WF_PROMPT] == 2.0).all() and (got.wl_sub[:, :, WS_OUTPUT] == 2.0).all()
    odd = make_config({"workload.prompt_tokens_median": 3.5, "workload.prompt_tokens_sigma": 0.0})
    assert (draw_block(seeds[:10], synthetic_params(odd)).wl_f[:, WF_PROMPT] == 4.0).all()


def test_categorical_ties_go_right() -> None:
    """K is ``bisect_right`` of the CDF: a uniform equal to a CDF entry picks the next category."""
    base = {"workload.attachment_prob": 0.0, "workload.prompt_tokens_sigma": 0.0, "workload.answer_tokens_sigma": 0.0}
    for seed in range(100):
        g = np.random.default_rng([seed, 0])
        g.standard_normal()  # difficulty, then the attachment's uniform, then K's
        g.random()
        u = g.random()
        if u >= 0.5:  # then u + (1 - u) == 1 exactly, and the CDF is (u, 1)
            break
    cfg = make_config({**base, "workload.subtask_count_probs": (u, 1.0 - u)})
    assert synthetic_params(cfg).count_cdf.tolist() == [u, 1.0]
    seeds = np.array([seed])
    got = draw_block(seeds, synthetic_params(cfg))
    _assert_same(got, _python_block(cfg, seeds))
    assert got.wl_k.tolist() == [2]


@pytest.mark.parametrize("source", ["synthetic", "trace"])
def test_episode_workload_block(source: str) -> None:
    """The seeds ``EpisodeWorkload`` draws, and the queries it hands out."""
    cfg = make_config({"workload.source": source, "episode.queries": 500})
    rng_workload = np.random.default_rng(2024)
    seeds = copy.deepcopy(rng_workload).integers(2**63, size=500)
    wl = EpisodeWorkload(cfg, np.random.default_rng(2023), rng_workload)
    trace = wl._trace
    lengths = (trace.prompt_tokens[:500], trace.answer_tokens[:500]) if trace is not None else (None, None)
    assert (trace is not None) == (source == "trace")
    got = draw_block(seeds, synthetic_params(cfg), *lengths)
    _assert_same(got, _layout(cfg, [wl.query(q) for q in range(500)]))


def test_unsupported_configurations_are_refused() -> None:
    with pytest.raises(ValueError, match="corpus"):
        synthetic_params(make_config({"planner.kind": "learned"}))
    with pytest.raises(ValueError, match="corpus"):
        synthetic_params(make_config({"workload.source": "corpus"}))
    cfg = make_config({})
    with pytest.raises(ValueError, match="learned"):
        synthetic_params(cfg.workload, PlannerConfig(kind="learned"))
    with pytest.raises(ValueError, match="seeds"):
        draw_block(np.array([1, -2]), synthetic_params(cfg))
    with pytest.raises(ValueError, match="both"):
        draw_block(np.array([1, 2]), synthetic_params(cfg), prompt_tokens=np.array([3, 4]))
    assert draw_block(np.zeros(0, dtype=np.int64), synthetic_params(cfg)).wl_f.shape == (0, 8)


# ---------------------------------------------------------------------------------------------------------------
# the generator

_EDGE_SEEDS = [0, 1, 2, 2**31, 2**32 - 1, 2**32, 2**32 + 1, 2**33 + 5, 2**62, 2**63 - 1, 2**63, 2**64 - 1]


def _stream(seed: int, k: int = 0) -> np.ndarray:
    st = R.new_state()
    R.seed_state(st, np.uint64(seed), np.uint64(k))
    return st


@pytest.mark.parametrize("k", [0, 1, 7, 2**32 - 1])
def test_seed_state_equals_default_rng(k: int) -> None:
    for seed in _EDGE_SEEDS + _seeds(500, k % 1000).tolist():
        st = _stream(seed, k)
        want = np.random.default_rng([seed, k]).bit_generator.state["state"]
        assert ((int(st[0]) << 64) | int(st[1]), (int(st[2]) << 64) | int(st[3])) == (want["state"], want["inc"]), seed
        assert st[4] == st[5] == 0


@pytest.mark.parametrize("seed", [0, 2**32 + 7, 2**63 + 11])
def test_draws_equal_numpy(seed: int) -> None:
    st, g = _stream(seed), np.random.default_rng([seed, 0])
    assert [R.next_uint64(st) for _ in range(20_000)] == g.bit_generator.random_raw(20_000).tolist()
    assert [R.random(st) for _ in range(20_000)] == g.random(20_000).tolist()
    assert [R.next_uint32(st) for _ in range(20_001)] == g.integers(0, 2**32, size=20_001, dtype=np.uint64).tolist()
    # a million normals reach the ziggurat's wedges and its tail
    got, want = np.empty(1_000_000), g.standard_normal(1_000_000)
    R.standard_normal_fill(st, got)
    assert np.array_equal(got.view(np.uint64), want.view(np.uint64))
    assert (np.abs(want) > ziggurat_nor_r).sum() > 100
    assert R.next_uint64(st) == g.bit_generator.random_raw()  # and both consumed the same words


@pytest.mark.parametrize(("low", "high"), [(1, 3), (0, 7), (3, 4), (-5, 2**33 + 1), (0, 10**9 + 7), (0, 2**63 - 1)])
def test_integers_equal_numpy(low: int, high: int) -> None:
    for seed in (5, 2**40):
        st, g = _stream(seed), np.random.default_rng([seed, 0])
        assert [R.integers(st, low, high) for _ in range(5000)] == [int(g.integers(low, high)) for _ in range(5000)]
        assert R.next_uint32(st) == g.integers(0, 2**32, dtype=np.uint64)  # the cached 32-bit half too


@pytest.mark.parametrize(("pop", "size"), [(1, 1), (2, 1), (2, 2), (3, 2), (7, 2), (7, 7), (100, 13), (20_000, 10),
                                           (20_000, 500), (20_000, 20_000)])
def test_choice_equals_numpy(pop: int, size: int) -> None:
    st, g = _stream(77 + pop), np.random.default_rng([77 + pop, 0])
    out = np.zeros(size, dtype=np.int64)
    for _ in range(300 if pop < 1000 else 3):
        R.choice_without_replacement(st, pop, out)
        assert out.tolist() == g.choice(pop, size=size, replace=False).tolist()
    assert R.next_uint32(st) == g.integers(0, 2**32, dtype=np.uint64)
    assert R.next_uint64(st) == g.bit_generator.random_raw()


def test_interleaved_draws_equal_numpy() -> None:
    """Mixed 32- and 64-bit draws, as ``make_deps`` interleaves them with normals, on many streams."""
    out = np.zeros(2, dtype=np.int64)
    for seed in _seeds(1000, 8).tolist():
        st, g = _stream(seed), np.random.default_rng([seed, 0])
        for step in range(15):
            kind = step % 5
            if kind == 0:
                assert R.integers(st, 1, 3) == g.integers(1, 3)
            elif kind == 1:
                assert R.standard_normal(st) == g.standard_normal()
            elif kind == 2:
                assert R.random(st) == g.random()
            elif kind == 3:
                R.choice_without_replacement(st, 2 + step, out)
                assert out.tolist() == g.choice(2 + step, size=2, replace=False).tolist()
            else:
                assert R.integers(st, 0, 3) == g.integers(0, 3)


@pytest.mark.parametrize("n_users", [1, 7, 80])
def test_compiled_arrivals_are_the_python_loops_draws_across_blocks(n_users: int) -> None:
    """``draw_arrivals`` (numba's Generator methods) gives the Python loop's gaps and phones bit for bit, and
    leaves the stream where the loop leaves it: the next block continues it."""
    cfg = make_config({"topology.n_users": n_users, "episode.queries": 5000})
    python = EpisodeWorkload(cfg, np.random.default_rng(11), np.random.default_rng(12))
    compiled = EpisodeWorkload(cfg, np.random.default_rng(11), np.random.default_rng(12), compiled=True)
    for k in (0, 4095, 4096, 4999):  # the second block is drawn on demand, after the first
        assert python.arrival(k) == compiled.arrival(k)
        assert type(compiled.arrival(k)[0]) is float and type(compiled.arrival(k)[1]) is int
    assert np.array_equal(python.arrival_s, compiled.arrival_s) and np.array_equal(python.user, compiled.user)
