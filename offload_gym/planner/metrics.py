"""Planner accuracy metrics against corpus ground truth, and CPU latency."""

from __future__ import annotations

import time

import numpy as np

from offload_gym.planner.corpus import MAX_SUBTASKS, STRUCTURES, CorpusQuery
from offload_gym.planner.learned import LearnedPlanner


def truth_arrays(queries: list[CorpusQuery]) -> dict[str, np.ndarray]:
    """Ground truth as arrays; per-slot arrays are (n, 5) with NaN beyond the true K."""
    n = len(queries)
    sub_b = np.full((n, MAX_SUBTASKS), np.nan)
    sub_out = np.full((n, MAX_SUBTASKS), np.nan)
    for i, q in enumerate(queries):
        sub_b[i, : q.subtask_count] = q.subtask_difficulty
        sub_out[i, : q.subtask_count] = q.subtask_output_tokens
    return {
        "subtask_count": np.array([q.subtask_count for q in queries]),
        "structure": np.array([STRUCTURES.index(q.structure) for q in queries]),
        "difficulty": np.array([q.difficulty for q in queries]),
        "answer_tokens": np.array([q.answer_tokens for q in queries], dtype=float),
        "subtask_difficulty": sub_b,
        "subtask_output_tokens": sub_out,
    }


def planner_metrics(pred: dict[str, np.ndarray], queries: list[CorpusQuery]) -> dict[str, float]:
    """Accuracy of ``LearnedPlanner.predict_arrays`` output; per-subtask terms use the true-K slots.

    ``length_noise_sigma`` / ``difficulty_noise_sigma`` pool monolithic and per-subtask errors: they are the
    noisy-oracle settings (std of log(pred/true), std of pred - true) that match this planner's errors.
    """
    truth = truth_arrays(queries)
    valid = ~np.isnan(truth["subtask_difficulty"])
    ans_log_ratio = np.log(pred["answer_tokens"] / truth["answer_tokens"])
    sub_log_ratio = np.log(pred["subtask_output_tokens"][valid] / truth["subtask_output_tokens"][valid])
    diff_err = pred["difficulty"] - truth["difficulty"]
    sub_diff_err = pred["subtask_difficulty"][valid] - truth["subtask_difficulty"][valid]
    ans_abs = np.abs(pred["answer_tokens"] - truth["answer_tokens"])
    sub_abs = np.abs(pred["subtask_output_tokens"][valid] - truth["subtask_output_tokens"][valid])
    multi = truth["subtask_count"] > 1
    return {
        "n_queries": float(len(queries)),
        "count_accuracy": float(np.mean(pred["subtask_count"] == truth["subtask_count"])),
        "count_within_1": float(np.mean(np.abs(pred["subtask_count"] - truth["subtask_count"]) <= 1)),
        "structure_accuracy_k_ge_2": float(np.mean(pred["structure"][multi] == truth["structure"][multi])),
        "difficulty_rmse": float(np.sqrt(np.mean(diff_err**2))),
        "subtask_difficulty_rmse": float(np.sqrt(np.mean(sub_diff_err**2))),
        "answer_tokens_mae": float(np.mean(ans_abs)),
        "answer_within_25pct": float(np.mean(ans_abs <= 0.25 * truth["answer_tokens"])),
        "subtask_tokens_mae": float(np.mean(sub_abs)),
        "subtask_within_25pct": float(np.mean(sub_abs <= 0.25 * truth["subtask_output_tokens"][valid])),
        "answer_log_ratio_std": float(np.std(ans_log_ratio)),
        "subtask_log_ratio_std": float(np.std(sub_log_ratio)),
        "difficulty_error_std": float(np.std(diff_err)),
        "subtask_difficulty_error_std": float(np.std(sub_diff_err)),
        "length_noise_sigma": float(np.std(np.concatenate([ans_log_ratio, sub_log_ratio]))),
        "difficulty_noise_sigma": float(np.std(np.concatenate([diff_err, sub_diff_err]))),
    }


def latency_ms(planner: LearnedPlanner, texts: list[str], n_calls: int = 200, warmup: int = 20) -> dict[str, float]:
    """Batch-1 CPU latency of ``planner.predict([text])`` over ``n_calls`` calls cycling through ``texts``."""
    for i in range(warmup):
        planner.predict([texts[i % len(texts)]])
    times = np.empty(n_calls)
    for i in range(n_calls):
        t0 = time.perf_counter()
        planner.predict([texts[i % len(texts)]])
        times[i] = time.perf_counter() - t0
    times_ms = times * 1e3
    return {
        "median_ms": float(np.median(times_ms)),
        "p90_ms": float(np.percentile(times_ms, 90)),
        "mean_ms": float(np.mean(times_ms)),
    }
