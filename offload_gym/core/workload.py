"""An episode block's synthetic workload in compiled code, equal to :mod:`offload_gym.sim.workload`'s bit for bit.

:class:`offload_gym.sim.episode.EpisodeWorkload` draws query ``i``'s truth (:func:`~offload_gym.sim.workload.draw_query`)
from the stream of ``np.random.default_rng([seeds[i], 0])`` and its planner prediction
(:func:`~offload_gym.sim.planner.predict`) from that of ``default_rng([seeds[i], 1])``; :func:`draw_block` draws
the same queries from the same seeds with :mod:`offload_gym.core.rng` and lays them out as the compiled engine
reads them (:class:`offload_gym.core.arrays.CoreState`):

* ``wl_f (n, 8)``: prompt, answer, difficulty, attachment bytes, predicted answer, predicted difficulty,
  predicted aggregation output, predicted aggregation difficulty (columns ``WF_*``);
* ``wl_sub (n, max_k, 4)``: per subtask output, difficulty, predicted output, predicted difficulty (``WS_*``),
  zero past the query's K;
* ``wl_deps (n, max_k, max_k + 1)``: per subtask the number of predecessors, then their sorted indices;
* ``wl_k (n,)``: K; ``wl_structure (n,)``: FAN_OUT, CHAIN or DAG (drawn also when K = 1).

Only ``workload.source`` synthetic (or trace, whose replayed lengths replace the drawn ones) and the
``oracle``/``noisy-oracle`` planners: corpus queries and the learned planner stay in Python.

Every ``exp`` of the Python draw is numpy's ``np.exp``, which need not equal libm's (numpy may use its own SIMD
code; numba calls libm). So the draw runs in three steps: a compiled pass draws every random number and
computes the arguments of those ``exp`` calls, ``np.exp`` maps them all at once (numpy's result for an element
does not depend on the array around it), and a second compiled pass finishes the lengths. The other
operations are IEEE double operations in the Python code's order (``(b + offset) + std * z``), and Python's
``round`` (half to even) is ``np.rint``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from offload_gym.config import PlannerConfig, ScenarioConfig, WorkloadConfig
from offload_gym.core._jit import njit
from offload_gym.core.rng import (
    STATE_WORDS,
    choice_without_replacement,
    integers,
    random,
    seed_state,
    standard_normal,
)

__all__ = ["WF_ANSWER", "WF_ATTACHMENT", "WF_DIFFICULTY", "WF_PRED_AGG_DIFFICULTY", "WF_PRED_AGG_OUTPUT",
           "WF_PRED_ANSWER", "WF_PRED_DIFFICULTY", "WF_PROMPT", "WS_DIFFICULTY", "WS_OUTPUT", "WS_PRED_DIFFICULTY",
           "WS_PRED_OUTPUT", "SyntheticParams", "WorkloadBlock", "draw_block", "synthetic_params"]

#: columns of ``wl_f``
WF_PROMPT, WF_ANSWER, WF_DIFFICULTY, WF_ATTACHMENT, WF_PRED_ANSWER, WF_PRED_DIFFICULTY, WF_PRED_AGG_OUTPUT, \
    WF_PRED_AGG_DIFFICULTY = range(8)
#: last axis of ``wl_sub``
WS_OUTPUT, WS_DIFFICULTY, WS_PRED_OUTPUT, WS_PRED_DIFFICULTY = range(4)

# SyntheticParams.values
_P_PROMPT_MEDIAN, _P_PROMPT_SIGMA, _P_ANSWER_MEDIAN, _P_ANSWER_SIGMA, _P_DIFFICULTY_MEAN, _P_DIFFICULTY_STD, \
    _P_ATTACHMENT_PROB, _P_ATTACHMENT_MEDIAN, _P_ATTACHMENT_SIGMA, _P_INFLATION, _P_SUB_OFFSET, _P_SUB_STD, \
    _P_AGG_OUTPUT, _P_AGG_DIFFICULTY, _P_LENGTH_NOISE, _P_DIFFICULTY_NOISE = range(16)
_N_P = 16
# columns of the exp arguments: the prompt's, the answer's, the attachment's, then the K + 2 length multipliers
_E_PROMPT, _E_ANSWER, _E_ATTACHMENT, _E_MULT = range(4)
_FAN_OUT, _CHAIN, _DAG = 0, 1, 2  # offload_gym.sim.workload's structures


class SyntheticParams(NamedTuple):
    """The numbers of a workload and planner configuration that the compiled draw reads."""

    values: np.ndarray  #: float64, the ``_P_*`` entries
    count_cdf: np.ndarray  #: the CDF of K - 1 (``subtask_count_probs``), as ``draw_query`` bisects it
    structure_cdf: np.ndarray  #: the CDF of the structure (``structure_probs``)

    @property
    def max_k(self) -> int:
        """The largest K (the length of ``subtask_count_probs``)."""
        return int(self.count_cdf.shape[0])


class WorkloadBlock(NamedTuple):
    """A block's queries in the compiled engine's layout (see the module docstring)."""

    wl_f: np.ndarray
    wl_sub: np.ndarray
    wl_deps: np.ndarray
    wl_k: np.ndarray
    wl_structure: np.ndarray


def _cdf(probs: tuple[float, ...]) -> np.ndarray:
    # offload_gym.sim.workload._cdf's floats: the cumulative sum scaled by its last entry
    cdf = np.cumsum(probs)
    cdf /= cdf[-1]
    return np.ascontiguousarray(cdf, dtype=np.float64)


def synthetic_params(workload: WorkloadConfig | ScenarioConfig, planner: PlannerConfig | None = None) -> SyntheticParams:
    """The parameters of :func:`draw_block` for a workload and a planner (or a whole scenario's).

    :raises ValueError: for the learned planner or corpus queries, which the compiled draw does not cover.
    """
    if isinstance(workload, ScenarioConfig):
        if workload.uses_corpus:
            raise ValueError("workload: corpus queries are drawn in Python (offload_gym.sim.workload.draw_corpus_query)")
        workload, planner = workload.workload, workload.planner
    if planner is None:
        raise ValueError("planner: needed with a WorkloadConfig")
    if planner.kind not in ("oracle", "noisy-oracle"):
        raise ValueError(f"planner.kind: {planner.kind!r} is not drawn in compiled code (oracle or noisy-oracle only)")
    if workload.source == "corpus":
        raise ValueError("workload.source: corpus queries are drawn in Python")
    noisy = planner.kind == "noisy-oracle"
    values = np.zeros(_N_P)
    values[_P_PROMPT_MEDIAN], values[_P_PROMPT_SIGMA] = workload.prompt_tokens_median, workload.prompt_tokens_sigma
    values[_P_ANSWER_MEDIAN], values[_P_ANSWER_SIGMA] = workload.answer_tokens_median, workload.answer_tokens_sigma
    values[_P_DIFFICULTY_MEAN], values[_P_DIFFICULTY_STD] = workload.difficulty_mean, workload.difficulty_std
    values[_P_ATTACHMENT_PROB] = workload.attachment_prob
    values[_P_ATTACHMENT_MEDIAN] = workload.attachment_bytes_median
    values[_P_ATTACHMENT_SIGMA] = workload.attachment_bytes_sigma
    values[_P_INFLATION] = workload.subtask_output_inflation
    values[_P_SUB_OFFSET], values[_P_SUB_STD] = workload.subtask_difficulty_offset, workload.subtask_difficulty_std
    values[_P_AGG_OUTPUT] = workload.aggregation_output_tokens
    values[_P_AGG_DIFFICULTY] = workload.aggregation_difficulty
    values[_P_LENGTH_NOISE] = planner.length_noise_sigma if noisy else 0.0
    values[_P_DIFFICULTY_NOISE] = planner.difficulty_noise_sigma if noisy else 0.0
    return SyntheticParams(values, _cdf(workload.subtask_count_probs), _cdf(workload.structure_probs))


@njit
def _categorical(cdf: np.ndarray, u: float) -> int:
    """``bisect.bisect_right(cdf, u)``: how many CDF entries are ``<= u`` (the CDF is non-decreasing)."""
    j = 0
    while j < cdf.shape[0] and cdf[j] <= u:
        j += 1
    return j


@njit
def _draw_deps(st: np.ndarray, structure: int, k: int, deps: np.ndarray, chosen: np.ndarray) -> None:
    """``make_deps`` into ``deps (max_k, max_k + 1)`` (zero on entry): per subtask the count, then the indices."""
    if k == 1 or structure == _FAN_OUT:
        return
    if structure == _CHAIN:
        for i in range(1, k):
            deps[i, 0] = 1
            deps[i, 1] = i - 1
        return
    if k == 2:  # DAG: 0 and 1 roots, but 1 <- 0 when K = 2
        deps[1, 0] = 1
        return
    for i in range(2, k):
        count = integers(st, 1, 3)
        out = chosen[:count]
        choice_without_replacement(st, i, out)
        out.sort()
        deps[i, 0] = count
        for j in range(count):
            deps[i, 1 + j] = out[j]


@njit
def _draw_pass(seeds: np.ndarray, p: np.ndarray, count_cdf: np.ndarray, structure_cdf: np.ndarray, wl_f: np.ndarray,
               wl_sub: np.ndarray, wl_deps: np.ndarray, wl_k: np.ndarray, wl_structure: np.ndarray,
               exp_args: np.ndarray, attached: np.ndarray) -> None:
    """Every random draw of the block, in ``draw_query``'s then ``predict``'s order; what needs no ``exp`` is
    written whole, the rest leaves its ``exp`` arguments in ``exp_args`` (and ``attached``: whether a query has
    an attachment)."""
    st = np.zeros(STATE_WORDS, dtype=np.uint64)
    chosen = np.zeros(2, dtype=np.int64)
    prompt_sigma, answer_sigma = p[_P_PROMPT_SIGMA], p[_P_ANSWER_SIGMA]
    sub_base, sub_std = p[_P_SUB_OFFSET], p[_P_SUB_STD]
    s_len, s_b = p[_P_LENGTH_NOISE], p[_P_DIFFICULTY_NOISE]
    for q in range(seeds.shape[0]):
        seed = np.uint64(seeds[q])
        # the truth: default_rng([seed, 0])
        seed_state(st, seed, np.uint64(0))
        if prompt_sigma != 0.0:  # _lognormal_tokens draws only when the length varies
            exp_args[q, _E_PROMPT] = prompt_sigma * standard_normal(st)
        if answer_sigma != 0.0:
            exp_args[q, _E_ANSWER] = answer_sigma * standard_normal(st)
        difficulty = p[_P_DIFFICULTY_MEAN] + p[_P_DIFFICULTY_STD] * standard_normal(st)
        wl_f[q, WF_DIFFICULTY] = difficulty
        if random(st) < p[_P_ATTACHMENT_PROB]:
            attached[q] = 1
            exp_args[q, _E_ATTACHMENT] = p[_P_ATTACHMENT_SIGMA] * standard_normal(st)
        k = 1 + _categorical(count_cdf, random(st))
        structure = _categorical(structure_cdf, random(st))
        wl_k[q], wl_structure[q] = k, structure
        _draw_deps(st, structure, k, wl_deps[q], chosen)
        sub_offset = difficulty + sub_base
        for j in range(k):
            wl_sub[q, j, WS_DIFFICULTY] = sub_offset + sub_std * standard_normal(st)
        # the planner's noise: default_rng([seed, 1]), K + 2 length normals then K + 2 difficulty normals
        seed_state(st, seed, np.uint64(1))
        for j in range(k + 2):
            exp_args[q, _E_MULT + j] = s_len * standard_normal(st)
        wl_f[q, WF_PRED_DIFFICULTY] = difficulty + s_b * standard_normal(st)
        wl_f[q, WF_PRED_AGG_DIFFICULTY] = p[_P_AGG_DIFFICULTY] + s_b * standard_normal(st)
        for j in range(k):
            wl_sub[q, j, WS_PRED_DIFFICULTY] = wl_sub[q, j, WS_DIFFICULTY] + s_b * standard_normal(st)


@njit
def _finish_pass(p: np.ndarray, exp_args: np.ndarray, attached: np.ndarray, trace_prompt: np.ndarray,
                 trace_answer: np.ndarray, wl_f: np.ndarray, wl_sub: np.ndarray, wl_k: np.ndarray) -> None:
    """The lengths from the ``exp`` arguments: ``max(1, round(median * exp(.)))`` and the predictions' multipliers.

    ``math.exp`` is the C library's, the same on every x86-64 CPU; numpy's array ``exp`` has an AVX-512 loop whose
    last bits differ from it, so a seed's episode would depend on the CPU it ran on.

    ``trace_prompt``/``trace_answer``: empty, or the replayed lengths that replace the drawn ones."""
    prompt_median, answer_median = p[_P_PROMPT_MEDIAN], p[_P_ANSWER_MEDIAN]
    prompt_fixed = max(1.0, np.rint(prompt_median))  # sigma 0: round(median), nothing drawn
    answer_fixed = max(1.0, np.rint(answer_median))
    has_trace = trace_prompt.shape[0] > 0
    for q in range(wl_f.shape[0]):
        if has_trace:
            prompt, answer = float(trace_prompt[q]), float(trace_answer[q])
        else:
            prompt = (prompt_fixed if p[_P_PROMPT_SIGMA] == 0.0
                      else max(1.0, np.rint(prompt_median * math.exp(exp_args[q, _E_PROMPT]))))
            answer = (answer_fixed if p[_P_ANSWER_SIGMA] == 0.0
                      else max(1.0, np.rint(answer_median * math.exp(exp_args[q, _E_ANSWER]))))
        wl_f[q, WF_PROMPT], wl_f[q, WF_ANSWER] = prompt, answer
        if attached[q]:
            wl_f[q, WF_ATTACHMENT] = max(np.rint(p[_P_ATTACHMENT_MEDIAN] * math.exp(exp_args[q, _E_ATTACHMENT])), 1.0)
        k = wl_k[q]
        out = max(1.0, np.rint(p[_P_INFLATION] * answer / k))
        wl_f[q, WF_PRED_ANSWER] = answer * math.exp(exp_args[q, _E_MULT])
        wl_f[q, WF_PRED_AGG_OUTPUT] = p[_P_AGG_OUTPUT] * math.exp(exp_args[q, _E_MULT + 1])
        for j in range(k):
            wl_sub[q, j, WS_OUTPUT] = out
            wl_sub[q, j, WS_PRED_OUTPUT] = out * math.exp(exp_args[q, _E_MULT + 2 + j])


def draw_block(seeds: np.ndarray, params: SyntheticParams, prompt_tokens: np.ndarray | None = None,
               answer_tokens: np.ndarray | None = None) -> WorkloadBlock:
    """The truths and predictions of one query per seed, as ``EpisodeWorkload`` draws them from ``seeds``.

    :param seeds: the per-query seeds (non-negative integers below ``2**64``), as ``EpisodeWorkload._draw_block``
        draws them.
    :param params: :func:`synthetic_params`.
    :param prompt_tokens: a replayed trace's prompt lengths, one per seed (``answer_tokens`` with it), which
        replace the drawn ones; everything else is drawn as without them.
    """
    seeds = np.asarray(seeds)
    if seeds.ndim != 1 or (seeds.size and (seeds.dtype.kind not in "iu" or int(seeds.min()) < 0)):
        raise ValueError("seeds: a one-dimensional array of non-negative integers")
    if (prompt_tokens is None) != (answer_tokens is None):
        raise ValueError("prompt_tokens and answer_tokens: both or neither")
    n, max_k = seeds.shape[0], params.max_k
    if prompt_tokens is not None and answer_tokens is not None:
        trace_prompt = np.ascontiguousarray(prompt_tokens, dtype=np.int64)
        trace_answer = np.ascontiguousarray(answer_tokens, dtype=np.int64)
        if trace_prompt.shape != (n,) or trace_answer.shape != (n,):
            raise ValueError(f"prompt_tokens, answer_tokens: one per seed ({n})")
    else:
        trace_prompt = trace_answer = np.zeros(0, dtype=np.int64)
    block = WorkloadBlock(np.zeros((n, 8)), np.zeros((n, max_k, 4)), np.zeros((n, max_k, max_k + 1), dtype=np.int64),
                          np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64))
    exp_args = np.zeros((n, _E_MULT + max_k + 2))
    attached = np.zeros(n, dtype=np.int64)
    # PCG64's arithmetic is modulo 2**64: run as plain Python (no numba), numpy's scalars would warn of overflows
    with np.errstate(over="ignore"):
        _draw_pass(seeds.astype(np.uint64), params.values, params.count_cdf, params.structure_cdf, block.wl_f,
                   block.wl_sub, block.wl_deps, block.wl_k, block.wl_structure, exp_args, attached)
    _finish_pass(params.values, exp_args, attached, trace_prompt, trace_answer, block.wl_f, block.wl_sub,
                 block.wl_k)
    return block


@njit
def draw_arrivals(rng: np.random.Generator, n: int, scale_s: float, n_users: int, last_s: float) -> tuple[np.ndarray,
                                                                                                         np.ndarray]:
    """``n`` arrivals of a Poisson process after ``last_s``: per query its exponential gap (mean ``scale_s``), then its
    phone, uniform over ``n_users``, drawn in that order from ``rng`` (``EpisodeWorkload``'s arrivals stream).
    numba's ``Generator`` methods draw numpy's own numbers from numpy's state (the tests check it bitwise), in
    a compiled loop instead of two Python calls a query."""
    times = np.empty(n)
    users = np.empty(n, dtype=np.int64)
    t = last_s
    for i in range(n):
        t = t + rng.exponential(scale_s)
        times[i] = t
        users[i] = rng.integers(0, n_users)
    return times, users
