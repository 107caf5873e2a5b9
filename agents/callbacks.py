"""Training callbacks: held-out evaluation against greedy, episode KPIs in TensorBoard, time limit.

* :class:`HarnessEvalCallback` evaluates the current model every ``eval_freq`` calls on fixed held-out
  seeds with the evaluation harness (:func:`agents.evaluation.evaluate_policy`, the same code and seeds
  that score the built-in policies), logs the agent's and greedy's numbers side by side
  (``eval/<metric>`` and ``eval/greedy_<metric>``, plus a TensorBoard custom-scalars layout with both
  on one chart), keeps ``best_model.zip`` by mean per-query reward and writes ``evaluations.json``.
* :class:`EpisodeMetricsCallback` logs the training episodes' KPIs (from the Monitor records in
  ``model.ep_info_buffer``) under ``rollout/``.
* :class:`TimeLimitCallback` stops training gracefully after a wall-clock budget.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import TensorBoardOutputFormat

from agents.evaluation import DEFAULT_ENV_ID, DEFAULT_SEEDS, evaluate_policy, summarize

__all__ = [
    "EVAL_METRICS",
    "EpisodeMetricsCallback",
    "HarnessEvalCallback",
    "ModelPredictor",
    "TimeLimitCallback",
    "heldout_seeds",
    "validation_seeds",
]

#: Metrics logged for the agent and for greedy at each evaluation.
EVAL_METRICS: tuple[str, ...] = (
    "mean_reward",
    "mean_latency_s",
    "p95_latency_s",
    "mean_quality",
    "deadline_miss_rate",
    "decomposed_share",
    "edge_share",
)

#: Training-episode KPIs (Monitor ``info_keywords``) logged under ``rollout/``.
ROLLOUT_METRICS: tuple[str, ...] = (
    "mean_reward",
    "mean_latency_s",
    "mean_quality",
    "deadline_miss_rate",
    "decomposed_share",
    "edge_share",
    "invalid_actions",
)


def heldout_seeds(n: int | None = None) -> tuple[int, ...]:
    """The first ``n`` held-out evaluation seeds (all of ``DEFAULT_SEEDS`` when ``n`` is None).

    More than ``len(DEFAULT_SEEDS)`` continues the same consecutive range.
    """
    seeds = tuple(int(s) for s in DEFAULT_SEEDS)
    if n is None:
        return seeds
    if n < 1:
        raise ValueError(f"--eval-episodes: must be at least 1, got {n}")
    if n <= len(seeds):
        return seeds[:n]
    return seeds + tuple(range(seeds[-1] + 1, seeds[-1] + 1 + n - len(seeds)))


#: First seed of the validation episodes that pick ``best_model`` (kept apart from the held-out 1000.. that
#: results are reported on, so the selection does not bias the report).
VALIDATION_SEED = 2000


def validation_seeds(n: int) -> tuple[int, ...]:
    """``n`` validation seeds ``2000, 2001, ...`` (disjoint from :func:`heldout_seeds` for ``n <= 1000``)."""
    if n < 1:
        raise ValueError(f"--eval-episodes: must be at least 1, got {n}")
    return tuple(range(VALIDATION_SEED, VALIDATION_SEED + n))


class ModelPredictor:
    """The model being trained behind the harness's ``predict`` interface.

    Masks reach ``MaskablePPO`` only. Unlike :class:`agents.policies.SB3Predictor` it has no ``reset``,
    so the harness does not re-seed the global RNGs (and with them training's sampling) at every
    evaluation episode; deterministic evaluation needs no seeding.
    """

    def __init__(self, model: BaseAlgorithm) -> None:
        self.model = model
        self.uses_masks = type(model).__name__ == "MaskablePPO"

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True, action_masks: np.ndarray | None = None) -> tuple[np.ndarray, Any]:
        if self.uses_masks:
            masks = None if action_masks is None else np.asarray(action_masks, dtype=bool)
            action, state = self.model.predict(observation, state=state, episode_start=episode_start,
                                               deterministic=deterministic, action_masks=masks)  # type: ignore[call-arg]
        else:
            action, state = self.model.predict(observation, state=state, episode_start=episode_start,
                                               deterministic=deterministic)
        return np.asarray(action), state


def _finite(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


class HarnessEvalCallback(BaseCallback):
    """Evaluate on held-out seeds with the harness; log agent vs greedy; keep the best model.

    :param env_id: env id the harness builds its evaluation env from
    :param config: scenario overrides (same as training)
    :param seeds: evaluation seeds (one episode each; train.py passes the validation seeds 2000..)
    :param eval_freq: evaluate every ``eval_freq`` callback calls (one call = one ``VecEnv.step``, so
        pass ``eval_every_env_steps // n_envs``); ``<= 0`` evaluates only at the end of training
    :param run_dir: folder for ``best_model.zip`` and ``evaluations.json`` (``None``: nothing saved)
    :param baseline: built-in policy logged alongside (``greedy``); ``None`` to skip
    :param deterministic: evaluate the greedy (argmax) action
    :param verbose: 1 prints one line per evaluation
    """

    def __init__(self, env_id: str = DEFAULT_ENV_ID, config: dict[str, Any] | None = None,
                 seeds: Sequence[int] = DEFAULT_SEEDS, eval_freq: int = 10_000, run_dir: str | Path | None = None,
                 baseline: str | None = "greedy", deterministic: bool = True, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.env_id = env_id
        self.config = dict(config) if config else None
        self.seeds = tuple(int(s) for s in seeds)
        self.eval_freq = int(eval_freq)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.baseline = baseline
        self.deterministic = deterministic
        self.baseline_summary: dict[str, float] = {}
        self.evaluations: list[dict[str, Any]] = []
        self.best_mean_reward = -math.inf
        self.best_timesteps = -1
        self._last_eval_timesteps = -1
        self._start_time = time.time()

    # ------------------------------------------------------------------ helpers
    def _evaluate(self, policy: Any) -> dict[str, float]:
        episodes = evaluate_policy(policy, env_id=self.env_id, config=self.config, seeds=self.seeds,
                                   deterministic=self.deterministic)
        return summarize(episodes)

    def _tensorboard_layout(self) -> None:
        """One chart per metric with the agent's and the baseline's curves."""
        if self.baseline is None:
            return
        charts = {m: ["Multiline", [f"eval/{m}", f"eval/{self.baseline.replace('-', '_')}_{m}"]] for m in EVAL_METRICS}
        layout = {"agent vs " + self.baseline: charts}
        for fmt in self.logger.output_formats:
            if isinstance(fmt, TensorBoardOutputFormat):
                fmt.writer.add_custom_scalars(layout)

    def _write_json(self) -> None:
        if self.run_dir is None:
            return
        payload = {
            "env_id": self.env_id,
            "config": self.config,
            "seeds": list(self.seeds),
            "baseline": self.baseline,
            "baseline_summary": self.baseline_summary,
            "best": {"mean_reward": _finite(self.best_mean_reward), "timesteps": self.best_timesteps},
            "evaluations": self.evaluations,
        }
        path = self.run_dir / "evaluations.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(payload, indent=2, default=_json_default), encoding="utf-8")
        tmp.replace(path)

    # ------------------------------------------------------------------ callback hooks
    def _on_training_start(self) -> None:
        self._start_time = time.time()
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.baseline is not None and not self.baseline_summary:
            self.baseline_summary = self._evaluate(self.baseline)
            if self.verbose:
                print(f"[eval] {self.baseline} on {len(self.seeds)} evaluation seeds: "
                      f"mean reward {self.baseline_summary['mean_reward']:.4f}, "
                      f"mean latency {self.baseline_summary['mean_latency_s']:.3f} s")
        self._tensorboard_layout()

    def _on_step(self) -> bool:
        if self.eval_freq > 0 and self.n_calls % self.eval_freq == 0:
            self.evaluate_now()
        return True

    def _on_training_end(self) -> None:
        if self.num_timesteps != self._last_eval_timesteps:  # the model after the last update
            self.evaluate_now(final=True)

    def evaluate_now(self, final: bool = False) -> dict[str, float]:
        """Evaluate the current model, log, save ``best_model.zip`` when it improves, write the JSON."""
        summary = self._evaluate(ModelPredictor(self.model))
        self._last_eval_timesteps = self.num_timesteps
        prefix = self.baseline.replace("-", "_") if self.baseline else ""
        for metric in EVAL_METRICS:
            if metric in summary:
                self.logger.record(f"eval/{metric}", float(summary[metric]))
            if metric in self.baseline_summary:
                self.logger.record(f"eval/{prefix}_{metric}", float(self.baseline_summary[metric]))
        if "mean_reward" in self.baseline_summary:
            reward_gap = float(summary["mean_reward"] - self.baseline_summary["mean_reward"])
            self.logger.record(f"eval/reward_gap_to_{prefix}", reward_gap)
        record = {"timesteps": int(self.num_timesteps), "time_s": round(time.time() - self._start_time, 3), **summary}
        self.evaluations.append(record)
        mean_reward = float(summary["mean_reward"])
        improved = mean_reward > self.best_mean_reward
        if improved:
            self.best_mean_reward = mean_reward
            self.best_timesteps = int(self.num_timesteps)
            if self.run_dir is not None:
                self.model.save(self.run_dir / "best_model")
        self.logger.record("eval/best_mean_reward", float(self.best_mean_reward))
        self.logger.dump(self.num_timesteps)
        self._write_json()
        if self.verbose:
            gap = ""
            if "mean_reward" in self.baseline_summary:
                gap = f" ({self.baseline}: {self.baseline_summary['mean_reward']:.4f})"
            print(f"[eval] {self.num_timesteps} steps{' (final model)' if final else ''}: mean reward {mean_reward:.4f}{gap}, "
                  f"mean latency {summary['mean_latency_s']:.3f} s{' *best*' if improved else ''}")
        return summary


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


class EpisodeMetricsCallback(BaseCallback):
    """Log the mean over recent training episodes of the env's KPIs (Monitor ``info_keywords``)."""

    def __init__(self, keys: Sequence[str] = ROLLOUT_METRICS, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.keys = tuple(keys)

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        buffer = self.model.ep_info_buffer
        if not buffer:
            return
        for key in self.keys:
            values = [float(ep[key]) for ep in buffer if key in ep and ep[key] is not None]
            values = [v for v in values if math.isfinite(v)]
            if values:
                self.logger.record(f"rollout/{key}", float(np.mean(values)))


class TimeLimitCallback(BaseCallback):
    """Stop training (``learn`` returns normally) once ``max_seconds`` of wall clock have passed.

    :param max_seconds: budget counted from the start of training (``<= 0`` or None: no limit)
    """

    def __init__(self, max_seconds: float | None, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.max_seconds = max_seconds
        self.stopped = False
        self._start = time.time()

    def _on_training_start(self) -> None:
        self._start = time.time()

    def _on_step(self) -> bool:
        if self.max_seconds is None or self.max_seconds <= 0:
            return True
        if time.time() - self._start >= self.max_seconds:
            self.stopped = True
            if self.verbose:
                print(f"[time limit] {self.max_seconds:.0f} s reached at {self.num_timesteps} steps; stopping")
            return False
        return True


def _clock(seconds: float) -> str:
    """``h:mm:ss`` of a duration (``-:--:--`` when unknown)."""
    if not math.isfinite(seconds):
        return "-:--:--"
    whole = max(round(seconds), 0)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


class ProgressLogCallback(BaseCallback):
    """Progress lines for logs (stdout not a terminal, where a bar would be noise): steps done, elapsed, ETA.

    :param total_timesteps: the steps ``learn`` will run (whole rollouts: what SB3 actually does)
    :param every: print every this many steps (rounded to the calls SB3 makes, ``n_envs`` steps each)
    """

    def __init__(self, total_timesteps: int, every: int, verbose: int = 1) -> None:
        super().__init__(verbose)
        self.total_timesteps = total_timesteps
        self.every = max(int(every), 1)
        self._start = time.time()
        self._next = self.every
        self._printed = -1

    def _on_training_start(self) -> None:
        self._start = time.time()
        self._next = self.num_timesteps + self.every

    def _print(self) -> None:
        elapsed = time.time() - self._start
        done = self.num_timesteps / max(self.total_timesteps, 1)
        eta = elapsed * (1.0 - done) / done if done > 0 else float("nan")
        print(f"[progress] {self.num_timesteps:,}/{self.total_timesteps:,} steps ({100 * done:.0f} %), "
              f"{_clock(elapsed)} elapsed, ETA {_clock(eta)}", flush=True)
        self._printed = self.num_timesteps

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next and self.verbose:
            self._print()
            while self._next <= self.num_timesteps:
                self._next += self.every
        return True

    def _on_training_end(self) -> None:
        if self.verbose and self._printed != self.num_timesteps:  # the last line says where training ended
            self._print()


class ProgressBarCallback(BaseCallback):
    """A tqdm bar over the steps ``learn`` really runs (whole rollouts), so that it ends at 100 %, not past it."""

    def __init__(self, total_timesteps: int) -> None:
        super().__init__(0)
        self.total_timesteps = total_timesteps
        self._bar: Any = None

    def _on_training_start(self) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(total=self.total_timesteps, initial=self.num_timesteps, unit="step", dynamic_ncols=True)

    def _on_step(self) -> bool:
        if self._bar is not None:
            self._bar.update(self.num_timesteps - self._bar.n)
        return True

    def _on_training_end(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

