"""Evaluation harness: run policies over held-out seeds and summarise the paper's metrics.

Common random numbers: an episode's workload (positions, arrivals, query sizes, difficulties,
planner noise) depends only on the seed passed to ``env.reset``, so every policy evaluated on the same
seeds meets exactly the same queries and the differences between policies are not sampling noise
between workloads. Random-split's own generator is re-seeded from the episode seed, so its runs are
reproducible too.

>>> from agents.evaluation import evaluate_many, markdown_table
>>> results = evaluate_many(["nearest-edge", "greedy"], seeds=range(1000, 1003))  # doctest: +SKIP
>>> print(markdown_table(results))  # doctest: +SKIP

``evaluate.py`` is the command line over this module (tables, JSON / CSV, sweeps and plots).
"""

from __future__ import annotations

import csv
import json
import math
import multiprocessing
import os
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import offload_gym  # noqa: F401 - registers the env ids
from agents.policies import (
    BUILTIN_POLICIES,
    POLICIES,
    Policy,
    PolicyLoadError,
    Predictor,
    SB3Predictor,
    is_model_path,
    load_sb3_predictor,
    make_policy,
    model_env,
    unknown_policy_message,
)
from offload_gym.config import EDGE_MODELS, ScenarioConfig, merge_overrides

__all__ = [
    "CI_METRICS",
    "DEFAULT_ENV_ID",
    "DEFAULT_SEEDS",
    "EDGE_MODELS",
    "METRICS",
    "Predictor",
    "evaluate_many",
    "evaluate_policy",
    "evaluate_sweep",
    "load_predictor",
    "markdown_table",
    "paired_difference",
    "parse_sweep",
    "plot_sweep",
    "policy_env",
    "policy_label",
    "policy_labels",
    "run_episode",
    "summarize",
    "sweep_markdown",
    "sweep_overrides",
    "t_quantile",
    "write_csv",
    "write_json",
]

DEFAULT_ENV_ID = "offload_gym/WifiOffload-v0"
#: Held-out evaluation seeds (training should use other seeds).
DEFAULT_SEEDS: tuple[int, ...] = tuple(range(1000, 1010))
#: Per-episode metrics that every summary carries (means over episodes).
METRICS = ("mean_latency_s", "p95_latency_s", "mean_quality", "mean_reward", "deadline_miss_rate",
           "decomposed_share", "edge_share")
#: Metrics that also get a 95 % confidence half-width ``<metric>_ci95`` (t-distribution over episodes).
CI_METRICS = ("mean_latency_s", "mean_reward")

#: ``--sweep edge.model=...`` presets (the config's one table: :data:`offload_gym.config.EDGE_MODELS`).
EDGE_MODEL_KEY = "edge.model"


# ---------------------------------------------------------------------------------------------- policies
def load_predictor(spec: str, config: ScenarioConfig, seed: int = 0, trust: bool = False) -> Predictor:
    """A built-in policy by name, or a trained SB3 model from a ``.zip`` path (algorithm auto-detected;
    nothing in the file is unpickled unless ``trust``: :func:`agents.policies.load_sb3_model`).

    Raises :class:`~agents.policies.PolicyLoadError` (a ``ValueError``) naming the spec and what is
    allowed when it is neither.
    """
    if spec in POLICIES:
        return make_policy(spec, config, seed=seed)
    if is_model_path(spec):
        return load_sb3_predictor(spec, config, trust=trust)
    raise PolicyLoadError(unknown_policy_message(spec))


def policy_label(spec: str) -> str:
    """How a policy spec is shown in tables: the built-in name, or a model file's stem."""
    return spec if spec in POLICIES else Path(spec).stem


def policy_labels(specs: Sequence[str]) -> dict[str, str]:
    """Unique table labels for ``specs``: :func:`policy_label`, or the spec itself where two labels collide."""
    short = [policy_label(s) for s in specs]
    return {s: (lab if short.count(lab) == 1 else s) for s, lab in zip(specs, short, strict=True)}


def _as_predictor(policy: object, config: ScenarioConfig, seed: int) -> Predictor:
    if isinstance(policy, str):
        return load_predictor(policy, config, seed=seed)
    if "stable_baselines3" in sys.modules:  # a bare SB3 model: wrap it so masks reach MaskablePPO only
        from stable_baselines3.common.base_class import BaseAlgorithm

        if isinstance(policy, BaseAlgorithm):
            return SB3Predictor(policy)
    if not isinstance(policy, Predictor):
        raise TypeError(f"policy: {type(policy).__name__} has no predict(); pass a built-in name, a model path, "
                        "or an object with SB3's predict(obs, state, episode_start, deterministic, action_masks)")
    return policy


# ---------------------------------------------------------------------------------------------- episodes
def run_episode(env: gym.Env, predictor: Predictor, seed: int, deterministic: bool = True) -> dict[str, float]:
    """Play one episode from ``env.reset(seed=seed)`` and return ``info["episode_metrics"]`` (as floats).

    A built-in policy's own randomness (random-split's generator) is re-seeded from ``seed`` first, so
    the episode is reproducible; an :class:`~agents.policies.SB3Predictor` is re-seeded only when
    ``deterministic`` is False (SB3 seeds the global RNGs, which an argmax policy does not need).
    Action masks go to the predictor on every step.
    """
    if isinstance(predictor, Policy) or (isinstance(predictor, SB3Predictor) and not deterministic):
        predictor.reset(seed)
    obs, info = env.reset(seed=seed)
    state: Any = None
    episode_start = np.ones((1,), dtype=bool)
    while True:
        mask = np.asarray(info["action_mask"], dtype=bool)
        action, state = predictor.predict(obs, state=state, episode_start=episode_start,
                                          deterministic=deterministic, action_masks=mask)
        episode_start = np.zeros((1,), dtype=bool)
        obs, _, terminated, truncated, info = env.step(np.asarray(action).reshape(()).item())
        if terminated or truncated:
            break
    metrics = info.get("episode_metrics")
    if metrics is None:  # an env that ends without reporting: ask it directly
        metrics = env.unwrapped.episode_metrics()  # type: ignore[attr-defined]
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float, np.integer, np.floating))}


def _make_env(env_id: str, config: Mapping[str, Any] | None) -> gym.Env:
    if config is None:
        return gym.make(env_id)
    return gym.make(env_id, config=dict(config))


def policy_env(policy: object, env_id: str, config: Mapping[str, Any] | None) -> tuple[str, dict[str, Any] | None]:
    """The env ``(id, overrides)`` that ``policy`` is evaluated on, for the scenario ``env_id`` + ``config``.

    * A model with a ``NAME.json`` sidecar runs on the env it was trained on: the sidecar's ``env_id`` and
      ``config``, with ``config`` merged on top (so sweeps and ``--config`` still apply).
    * A built-in policy runs on the item interface (``action_mode`` "item") of the scenario: its rules are
      written for it, and in query mode it gives the same trajectory (the built-in sub-scheduler is greedy).
    * Anything else runs on the env as given.

    The workload of a seed depends on the scenario only, not on the decision interface, so every policy
    still meets the same queries.
    """
    if isinstance(policy, str) and policy in POLICIES:
        env = _make_env(env_id, config)
        mode = getattr(getattr(env.unwrapped, "config", None), "action_mode", "item")
        env.close()
        if mode != "item":
            return env_id, merge_overrides(dict(config or {}), {"action_mode": "item"})
        return env_id, (dict(config) if config is not None else None)
    if isinstance(policy, str) and is_model_path(policy):
        trained = model_env(policy)
        if trained is not None:
            return trained[0], merge_overrides(trained[1], dict(config or {}))
    return env_id, (dict(config) if config is not None else None)


def evaluate_policy(policy: str | Predictor, *, env_id: str = DEFAULT_ENV_ID, config: dict[str, Any] | None = None,
                    seeds: Sequence[int] = DEFAULT_SEEDS, deterministic: bool = True) -> list[dict[str, float]]:
    """Per-episode metrics of one policy (name, model path or predictor object) over ``seeds``, each on its
    own env (:func:`policy_env`)."""
    env = _make_env(*policy_env(policy, env_id, config))
    try:
        scenario = getattr(env.unwrapped, "config", None)
        scenario = scenario if isinstance(scenario, ScenarioConfig) else None
        predictor = _as_predictor(policy, scenario if scenario is not None else _default_config(), seed=0)
        return [run_episode(env, predictor, int(s), deterministic=deterministic) for s in seeds]
    finally:
        env.close()


def _default_config() -> ScenarioConfig:
    from offload_gym.config import make_config

    return make_config()


# ---------------------------------------------------------------------------------------------- statistics
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(ln_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(ln_front) * _betacf(b, a, 1.0 - x) / b


def _t_cdf(t: float, df: float) -> float:
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """Quantile of Student's t distribution (no SciPy): ``t_quantile(0.975, 9) = 2.2622``."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"t_quantile: need 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def summarize(episodes: list[dict[str, float]]) -> dict[str, float]:
    """Mean of every metric over episodes, ``<metric>_ci95`` for :data:`CI_METRICS`, and ``episodes``.

    The half-width is ``t_{0.975, n-1} * s / sqrt(n)`` with ``s`` the sample standard deviation over
    episodes (NaN with a single episode).
    """
    if not episodes:
        raise ValueError("summarize: no episodes to summarise")
    common = [k for k in episodes[0] if all(k in e for e in episodes)]
    keys = [k for k in METRICS if k in common] + [k for k in common if k not in METRICS]
    n = len(episodes)
    t = t_quantile(0.975, n - 1) if n >= 2 else float("nan")
    out: dict[str, float] = {}
    for key in keys:
        values = np.array([e[key] for e in episodes], dtype=float)
        out[key] = float(values.mean())
        if key in CI_METRICS:
            out[f"{key}_ci95"] = t * float(values.std(ddof=1)) / math.sqrt(n) if n >= 2 else float("nan")
    out["episodes"] = float(n)
    return out


# ---------------------------------------------------------------------------------------------- many policies
_WORKER_CACHE: dict[tuple[str, str, str], tuple[gym.Env, Any]] = {}


def _init_worker() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")


def _episode_task(policy: str, env_id: str, config: dict[str, Any] | None, seed: int,
                  deterministic: bool, trust: bool = False) -> dict[str, float]:
    """One (policy, seed) episode in a worker process; the env and predictor are cached per worker."""
    key = (policy, env_id, json.dumps(config, sort_keys=True))
    if key not in _WORKER_CACHE:
        if len(_WORKER_CACHE) >= 4:
            for env, _ in _WORKER_CACHE.values():
                env.close()
            _WORKER_CACHE.clear()
        env = _make_env(*policy_env(policy, env_id, config))
        scenario = getattr(env.unwrapped, "config", None)
        scenario = scenario if isinstance(scenario, ScenarioConfig) else _default_config()
        _WORKER_CACHE[key] = (env, load_predictor(policy, scenario, seed=0, trust=trust))
    env, predictor = _WORKER_CACHE[key]
    return run_episode(env, predictor, seed, deterministic=deterministic)


def evaluate_many(policies: Sequence[str], *, env_id: str = DEFAULT_ENV_ID, config: dict[str, Any] | None = None,
                  seeds: Sequence[int] = DEFAULT_SEEDS, workers: int = 1, progress: bool = False,
                  deterministic: bool = True, desc: str | None = None,
                  episodes_out: dict[tuple[str, int], dict[str, float]] | None = None,
                  trust_models: bool = False) -> dict[str, dict[str, float]]:
    """Summaries (:func:`summarize`) of several policies on the same seeds, keyed by the spec as given.

    ``episodes_out``, when given, receives every episode's metrics keyed by ``(spec, seed)`` (for paired
    comparisons: :func:`paired_difference`). ``trust_models`` lets model files be unpickled (only for files
    you made: see :mod:`agents.policies`).

    With ``workers > 1`` the (policy, seed) episodes run in a spawn-context process pool (only names,
    paths and config dicts cross the process boundary); results do not depend on ``workers``.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("evaluate_many: no seeds given")
    policies = list(dict.fromkeys(policies))
    tasks = [(p, s) for p in policies for s in seeds]
    episodes: dict[tuple[str, int], dict[str, float]] = {}
    from tqdm.auto import tqdm

    with tqdm(total=len(tasks), desc=desc or "episodes", disable=not progress, unit="ep", file=sys.stderr,
              leave=False, dynamic_ncols=True) as bar:
        if workers <= 1:
            for policy in policies:
                env = _make_env(*policy_env(policy, env_id, config))
                try:
                    scenario = getattr(env.unwrapped, "config", None)
                    scenario = scenario if isinstance(scenario, ScenarioConfig) else _default_config()
                    predictor = load_predictor(policy, scenario, seed=0, trust=trust_models)
                    for seed in seeds:
                        episodes[(policy, seed)] = run_episode(env, predictor, seed, deterministic=deterministic)
                        bar.update(1)
                finally:
                    env.close()
        else:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx,
                                     initializer=_init_worker) as pool:
                futures = {pool.submit(_episode_task, p, env_id, config, s, deterministic, trust_models): (p, s)
                           for p, s in tasks}
                for fut in as_completed(futures):
                    episodes[futures[fut]] = fut.result()
                    bar.update(1)
    if episodes_out is not None:
        episodes_out.update(episodes)
    return {p: summarize([episodes[(p, s)] for s in seeds]) for p in policies}


def paired_difference(differences: Sequence[float]) -> dict[str, float]:
    """Mean of paired per-seed differences with a 95 % t-interval ``(lo, hi)`` over the seeds."""
    d = np.asarray(differences, dtype=float)
    n = d.size
    mean = float(d.mean()) if n else math.nan
    half = t_quantile(0.975, n - 1) * float(d.std(ddof=1)) / math.sqrt(n) if n > 1 else math.nan
    return {"mean": mean, "ci95": half, "lo": mean - half, "hi": mean + half, "n": float(n)}


# ---------------------------------------------------------------------------------------------- tables
def _fmt_ci(summary: Mapping[str, float], key: str, digits: int) -> str:
    value = summary.get(key, float("nan"))
    ci = summary.get(f"{key}_ci95", float("nan"))
    if math.isfinite(ci):
        return f"{value:.{digits}f} ± {ci:.{digits}f}"
    return f"{value:.{digits}f}"


def _table_rows(results: Mapping[str, Mapping[str, float]], prefix: Sequence[str] = ()) -> list[str]:
    rows = []
    for name, s in results.items():
        cells = [*prefix, f"`{name}`", _fmt_ci(s, "mean_latency_s", 3), f"{s.get('p95_latency_s', math.nan):.3f}",
                 f"{s.get('mean_quality', math.nan):.3f}", _fmt_ci(s, "mean_reward", 3),
                 f"{100 * s.get('deadline_miss_rate', math.nan):.1f} %", f"{100 * s.get('decomposed_share', math.nan):.1f} %",
                 f"{100 * s.get('edge_share', math.nan):.1f} %"]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


_HEADER = ["policy", "mean latency (s, ±95 % CI)", "p95 latency (s)", "mean quality", "mean reward (±95 % CI)",
           "deadline miss", "decomposed", "edge share"]


def markdown_table(results: dict[str, dict[str, float]]) -> str:
    """A Markdown table of :func:`evaluate_many` results, one row per policy.

    Columns: mean latency with its 95 % CI, p95 latency, mean quality, mean reward (CI), the share of
    queries that missed the deadline, the share decomposed, and the share of output tokens produced
    on an edge server.
    """
    head = "| " + " | ".join(_HEADER) + " |"
    sep = "|" + "|".join(["---"] + ["---:"] * (len(_HEADER) - 1)) + "|"
    return "\n".join([head, sep, *_table_rows(results)])


# ---------------------------------------------------------------------------------------------- sweeps
def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets and quotes: ``"1,[0.7,0.2,0.1],x"`` gives three parts."""
    parts, depth, quote, cur = [], 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur).strip())
    return parts


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_sweep(spec: str) -> tuple[str, list[Any]]:
    """``"KEY=V1,V2,..."`` -> ``(key, [values])``; values are JSON when they parse (numbers, lists), else strings.

    ``edge.model=3B,8B,70B`` names the :data:`EDGE_MODELS` presets (case-insensitive).
    """
    key, sep, rest = spec.partition("=")
    key = key.strip()
    if not sep or not key or not rest.strip():
        raise ValueError(f"--sweep: {spec!r} is not KEY=V1,V2,... (e.g. topology.n_users=4,10,20,40 or "
                         f"{EDGE_MODEL_KEY}={','.join(EDGE_MODELS)})")
    texts = _split_top_level(rest)
    if any(not t for t in texts):
        raise ValueError(f"--sweep: {spec!r} has an empty value; separate values with single commas")
    if key == EDGE_MODEL_KEY:
        names = {m.lower(): m for m in EDGE_MODELS}
        values: list[Any] = []
        for t in texts:
            if t.lower() not in names:
                raise ValueError(f"--sweep: {EDGE_MODEL_KEY} value {t!r} is unknown; choose from {list(EDGE_MODELS)}")
            values.append(names[t.lower()])
        return key, values
    return key, [_parse_value(t) for t in texts]


def sweep_overrides(base: Mapping[str, Any] | None, key: str, value: Any) -> dict[str, Any]:
    """``base`` overrides with the swept ``key`` set to ``value`` (the swept value wins)."""
    nested_base = merge_overrides({}, base or {})  # dotted keys in the base too
    return merge_overrides(nested_base, {key: value})


def _value_label(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def evaluate_sweep(policies: Sequence[str], key: str, values: Sequence[Any], *, env_id: str = DEFAULT_ENV_ID,
                   config: dict[str, Any] | None = None, seeds: Sequence[int] = DEFAULT_SEEDS, workers: int = 1,
                   progress: bool = False) -> dict[str, dict[str, dict[str, float]]]:
    """``{value_label: {policy: summary}}`` for each value of the dotted config ``key``."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for value in values:
        label = _value_label(value)
        out[label] = evaluate_many(policies, env_id=env_id, config=sweep_overrides(config, key, value), seeds=seeds,
                                   workers=workers, progress=progress, desc=f"{key}={label}")
    return out


def sweep_markdown(key: str, results: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """One Markdown table for a sweep: a row group per swept value."""
    header = [f"`{key}`", *_HEADER]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---", "---"] + ["---:"] * (len(_HEADER) - 1)) + "|"]
    for label, by_policy in results.items():
        lines += _table_rows(by_policy, prefix=(label,))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- outputs
def _plain(value: float) -> float | None:
    return value if math.isfinite(value) else None


def write_json(path: str | Path, results: Mapping[str, Any]) -> None:
    """Write results as JSON (NaN becomes null). Non-sweep: ``{policy: {metric: value}}``."""
    def clean(obj: Any) -> Any:
        if isinstance(obj, Mapping):
            return {str(k): clean(v) for k, v in obj.items()}
        if isinstance(obj, float):
            return _plain(obj)
        return obj

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(clean(results), indent=2, allow_nan=False) + "\n")


def _metric_columns(summaries: Sequence[Mapping[str, float]]) -> list[str]:
    seen: dict[str, None] = {}
    for m in METRICS:
        seen[m] = None
        if m in CI_METRICS:
            seen[f"{m}_ci95"] = None
    for s in summaries:
        for k in s:
            seen.setdefault(k, None)
    return list(seen)


def write_csv(path: str | Path, results: Mapping[str, Mapping[str, float]] | None = None, *,
              sweep: tuple[str, Mapping[str, Mapping[str, Mapping[str, float]]]] | None = None) -> None:
    """Write one row per policy (``policy, metrics...``) or per (swept value, policy) with ``sweep=(key, results)``."""
    rows: list[dict[str, Any]] = []
    if sweep is not None:
        key, by_value = sweep
        for label, by_policy in by_value.items():
            rows += [{"sweep_key": key, "sweep_value": label, "policy": p, **s} for p, s in by_policy.items()]
    else:
        rows = [{"policy": p, **s} for p, s in (results or {}).items()]
    lead = ["sweep_key", "sweep_value", "policy"] if sweep is not None else ["policy"]
    columns = lead + _metric_columns([{k: v for k, v in r.items() if k not in lead} for r in rows])
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


#: Same colour for a built-in policy in every plot.
_POLICY_COLORS = {"local-only": "C0", "nearest-edge": "C1", "greedy": "C2", "greedy-no-split": "C3", "random-split": "C4"}
_PLOT_METRICS = (("mean_latency_s", "mean latency (s)"), ("mean_reward", "mean reward per query"),
                 ("mean_quality", "mean quality"), ("deadline_miss_rate", "deadline-miss rate"))


def _auto_yscale(ax: Any, values: Sequence[float]) -> str:
    """Log (or symlog) y axis when one curve dwarfs the others (e.g. an overloaded 70B edge); returns a label suffix."""
    finite = np.array([v for v in values if math.isfinite(v)], dtype=float)
    if finite.size < 2:
        return ""
    typical = float(np.median(np.abs(finite)))
    if typical <= 0 or float(np.max(np.abs(finite))) < 20 * typical:
        return ""
    if np.all(finite > 0):
        ax.set_yscale("log")
        return ", log scale"
    ax.set_yscale("symlog", linthresh=10.0 ** math.ceil(math.log10(2 * typical)), linscale=2.0)
    return ", symlog scale"


def plot_sweep(path: str | Path, key: str, results: Mapping[str, Mapping[str, Mapping[str, float]]], *,
               title: str | None = None) -> None:
    """One panel per metric against the swept value, one line per policy, 95 % CI error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(results)
    values = [_parse_value(v) for v in labels]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    xs = [float(v) for v in values] if numeric else list(range(len(labels)))
    policies: list[str] = list(dict.fromkeys(p for by_policy in results.values() for p in by_policy))
    spare = iter(c for c in (f"C{i}" for i in range(10)) if c not in _POLICY_COLORS.values())
    colors = {p: _POLICY_COLORS.get(p) or next(spare, None) for p in policies}
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), constrained_layout=True)
    for ax, (metric, ylabel) in zip(axes.flat, _PLOT_METRICS, strict=True):
        for policy in policies:
            ys = [results[lab].get(policy, {}).get(metric, math.nan) for lab in labels]
            err = [results[lab].get(policy, {}).get(f"{metric}_ci95", math.nan) for lab in labels]
            has_err = metric in CI_METRICS and any(math.isfinite(e) for e in err)
            ax.errorbar(xs, ys, yerr=[0.0 if not math.isfinite(e) else e for e in err] if has_err else None,
                        marker="o", capsize=3, label=policy, color=colors[policy])
        ax.set_xlabel(key)
        ax.set_ylabel(ylabel + _auto_yscale(ax, [results[lab].get(p, {}).get(metric, math.nan)
                                                 for lab in labels for p in policies]))
        if not numeric:
            ax.set_xticks(xs, labels)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize="small")
    n_eps = next((int(s.get("episodes", 0)) for by_p in results.values() for s in by_p.values()), 0)
    fig.suptitle(f"{title or f'sweep of {key}'} ({n_eps} episodes per point, 95 % CI)")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=110)
    plt.close(fig)


def default_policies() -> tuple[str, ...]:
    """The built-in policies in table order."""
    return BUILTIN_POLICIES
