"""Query workload: Poisson arrivals, sizes, difficulty, attachments and the true decomposition.

Everything here is drawn from generators passed in, so that the workload of an episode depends on
the seed only, never on the actions taken: every policy meets the same queries for the same seed.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from offload_gym.config import WorkloadConfig

__all__ = ["CHAIN", "DAG", "FAN_OUT", "STRUCTURE_NAMES", "QuerySpec", "draw_corpus_query", "draw_query", "make_deps"]

FAN_OUT, CHAIN, DAG = 0, 1, 2
STRUCTURE_NAMES = ("fan-out", "chain", "dag")


@dataclass(frozen=True, slots=True)
class QuerySpec:
    """Ground truth of one query. Subtask ``i`` reads ``context + sum(outputs of deps[i])`` tokens."""

    prompt_tokens: int
    answer_tokens: int
    difficulty: float
    attachment_bytes: float
    structure: int  #: FAN_OUT, CHAIN or DAG (meaningless when K == 1)
    deps: tuple[tuple[int, ...], ...]  #: deps[i]: predecessors of subtask i, all < i
    subtask_output_tokens: tuple[int, ...]
    subtask_difficulty: tuple[float, ...]
    text: str = ""

    @property
    def n_subtasks(self) -> int:
        return len(self.subtask_output_tokens)


def _lognormal_tokens(rng: np.random.Generator, median: float, sigma: float) -> int:
    if sigma == 0.0:
        return max(1, round(median))
    return max(1, round(median * math.exp(sigma * float(rng.standard_normal()))))


def make_deps(structure: int, n_subtasks: int, rng: np.random.Generator) -> tuple[tuple[int, ...], ...]:
    """Dependencies for a structure: fan-out none; chain i <- i-1; DAG: 0 and 1 roots (K = 2: 1 <- 0),
    each later subtask depends on 1 or 2 distinct earlier ones chosen uniformly."""
    if n_subtasks == 1 or structure == FAN_OUT:
        return tuple(() for _ in range(n_subtasks))
    if structure == CHAIN:
        return tuple(() if i == 0 else (i - 1,) for i in range(n_subtasks))
    if n_subtasks == 2:
        return ((), (0,))
    deps: list[tuple[int, ...]] = [(), ()]
    for i in range(2, n_subtasks):
        count = int(rng.integers(1, 3))
        chosen = rng.choice(i, size=count, replace=False)
        deps.append(tuple(sorted(int(c) for c in chosen)))
    return tuple(deps)


@lru_cache(maxsize=64)
def _cdf(probs: tuple[float, ...]) -> list[float]:
    cdf = np.cumsum(probs)
    cdf /= cdf[-1]
    return [float(c) for c in cdf]


def _categorical(probs: tuple[float, ...], rng: np.random.Generator) -> int:
    """``rng.choice(len(probs), p=probs)`` without its overhead: the same uniform draw and the same index."""
    return bisect.bisect_right(_cdf(probs), rng.random())


def draw_query(cfg: WorkloadConfig, rng: np.random.Generator, prompt_tokens: int | None = None,
               answer_tokens: int | None = None) -> QuerySpec:
    """Draw one query from the synthetic workload of docs/model.md#synthetic-default.

    ``prompt_tokens`` / ``answer_tokens`` (a replayed trace's) replace the drawn lengths; the lengths are drawn
    anyway, so the rest of the query (difficulty, attachment, decomposition) is the synthetic one of the same seed.
    """
    prompt = _lognormal_tokens(rng, cfg.prompt_tokens_median, cfg.prompt_tokens_sigma)
    answer = _lognormal_tokens(rng, cfg.answer_tokens_median, cfg.answer_tokens_sigma)
    if prompt_tokens is not None:
        prompt = prompt_tokens
    if answer_tokens is not None:
        answer = answer_tokens
    difficulty = cfg.difficulty_mean + cfg.difficulty_std * float(rng.standard_normal())
    attachment = 0.0
    if rng.random() < cfg.attachment_prob:
        size = cfg.attachment_bytes_median * math.exp(cfg.attachment_bytes_sigma * float(rng.standard_normal()))
        attachment = max(float(round(size)), 1.0)
    n_subtasks = 1 + _categorical(cfg.subtask_count_probs, rng)
    structure = _categorical(cfg.structure_probs, rng)
    deps = make_deps(structure, n_subtasks, rng)
    out = max(1, round(cfg.subtask_output_inflation * answer / n_subtasks))
    offsets = rng.standard_normal(n_subtasks)
    sub_difficulty = tuple(float(difficulty + cfg.subtask_difficulty_offset + cfg.subtask_difficulty_std * z)
                           for z in offsets)
    return QuerySpec(
        prompt_tokens=prompt, answer_tokens=answer, difficulty=difficulty, attachment_bytes=attachment,
        structure=structure, deps=deps, subtask_output_tokens=(out,) * n_subtasks,
        subtask_difficulty=sub_difficulty,
    )


def _draw_attachment(cfg: WorkloadConfig, rng: np.random.Generator) -> float:
    if rng.random() >= cfg.attachment_prob:
        return 0.0
    size = cfg.attachment_bytes_median * math.exp(cfg.attachment_bytes_sigma * float(rng.standard_normal()))
    return max(float(round(size)), 1.0)


def draw_corpus_query(cfg: WorkloadConfig, rng: np.random.Generator) -> QuerySpec:
    """Draw one query from the templated text corpus (:mod:`offload_gym.planner.corpus`).

    Sizes, difficulty, K, structure and subtask truths come from the corpus; attachments from ``cfg``.
    """
    from offload_gym.planner.corpus import generate_query

    q = generate_query(rng)
    attachment = _draw_attachment(cfg, rng)
    structure = STRUCTURE_NAMES.index(q.structure) if q.subtask_count > 1 else FAN_OUT
    return QuerySpec(
        prompt_tokens=q.prompt_tokens, answer_tokens=q.answer_tokens, difficulty=q.difficulty,
        attachment_bytes=attachment, structure=structure, deps=q.deps,
        subtask_output_tokens=q.subtask_output_tokens, subtask_difficulty=q.subtask_difficulty, text=q.text,
    )
