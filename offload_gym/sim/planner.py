"""The planner: what the scheduler is told about a query. Execution always uses the truth.

``oracle`` reports the truth; ``noisy-oracle`` multiplies lengths by ``exp(N(0, s_len^2))`` and adds
``N(0, s_b^2)`` to difficulties, independently per subtask and for the aggregation step. The number of
subtasks and their dependencies are exact. The prompt length is known (the prompt is visible).

``learned`` runs the distilled student of :mod:`offload_gym.planner` on the query text. Its subtask
count and structure predictions are reported by the planner's own report; in the environment the
decomposition (K, dependencies) is the corpus's, and the student supplies every difficulty and length
the scheduler sees. The aggregation step's size and difficulty are the configured values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from offload_gym.config import PlannerConfig, WorkloadConfig
from offload_gym.sim.workload import QuerySpec

__all__ = ["Prediction", "predict", "predict_learned"]


@dataclass(frozen=True, slots=True)
class Prediction:
    """Predicted monolithic and per-subtask difficulty and output tokens of one query."""

    difficulty: float
    answer_tokens: float
    subtask_difficulty: tuple[float, ...]
    subtask_output_tokens: tuple[float, ...]
    aggregation_difficulty: float
    aggregation_output_tokens: float


def predict(spec: QuerySpec, planner: PlannerConfig, workload: WorkloadConfig, rng: np.random.Generator) -> Prediction:
    """Noisy-oracle (or exact) prediction for one query.

    The draws happen for every kind so that switching ``oracle``/``noisy-oracle`` leaves the random
    streams aligned.
    """
    k = spec.n_subtasks
    z_len = rng.standard_normal(k + 2)
    z_b = rng.standard_normal(k + 2)
    s_len = planner.length_noise_sigma if planner.kind == "noisy-oracle" else 0.0
    s_b = planner.difficulty_noise_sigma if planner.kind == "noisy-oracle" else 0.0
    # math.exp (the C library's): numpy's array exp has an AVX-512 loop whose last bits differ, by CPU
    mult = [math.exp(s_len * z) for z in z_len.tolist()]
    zb = z_b.tolist()
    return Prediction(
        difficulty=spec.difficulty + s_b * zb[0],
        answer_tokens=spec.answer_tokens * mult[0],
        subtask_difficulty=tuple([b + s_b * z for b, z in zip(spec.subtask_difficulty, zb[2:], strict=True)]),
        subtask_output_tokens=tuple([o * m for o, m in zip(spec.subtask_output_tokens, mult[2:], strict=True)]),
        aggregation_difficulty=workload.aggregation_difficulty + s_b * zb[1],
        aggregation_output_tokens=workload.aggregation_output_tokens * mult[1],
    )


def predict_learned(specs: list[QuerySpec], workload: WorkloadConfig, checkpoint: str = "") -> list[Prediction]:
    """Predictions of the learned planner for a batch of corpus queries (one forward pass)."""
    from offload_gym.planner.learned import LearnedPlanner

    planner = LearnedPlanner.load(checkpoint) if checkpoint else LearnedPlanner.load_default()
    outputs = planner.predict_arrays([spec.text for spec in specs])
    preds = []
    for i, spec in enumerate(specs):
        k = spec.n_subtasks
        preds.append(Prediction(
            difficulty=float(outputs["difficulty"][i]),
            answer_tokens=float(outputs["answer_tokens"][i]),
            subtask_difficulty=tuple(float(x) for x in outputs["subtask_difficulty"][i][:k]),
            subtask_output_tokens=tuple(max(float(x), 1.0) for x in outputs["subtask_output_tokens"][i][:k]),
            aggregation_difficulty=workload.aggregation_difficulty,
            aggregation_output_tokens=float(workload.aggregation_output_tokens),
        ))
    return preds
