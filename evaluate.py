"""Evaluate scheduling policies on offload_gym over held-out seeds (common random numbers).

    python evaluate.py                                   # the five built-ins, paper scenario, seeds 1000-1009
    python evaluate.py --policies greedy,runs/ppo/best_model.zip --json results.json
    python evaluate.py --policies greedy,greedy-no-split --sweep edge.model=3B,8B,70B --plot edge.png
    python evaluate.py --policies greedy,docs/models/residual_maskable_ppo_paper.zip   # the shipped agent

A model runs on the env its ``NAME.json`` sidecar names (``env_id``, ``config``; ``--config`` and sweeps
apply on top), built-in policies on the item interface of the same scenario: every policy meets the same
queries per seed. Model files are loaded without unpickling anything unless ``--trust-model``.
See ``python evaluate.py --help``; the library behind it is :mod:`agents.evaluation`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

_PROG = "evaluate.py"
#: more episodes than any evaluation needs, and few enough to hold their results in memory
MAX_EPISODES = 1_000_000


class UsageError(Exception):
    """Bad command-line input: reported as one line, exit code 2."""


def _edge_models_help() -> str:
    from offload_gym.config import EDGE_MODELS

    return "; ".join(f"{name}: ability {p['ability']}, decode {p['decode_tps']:g} tok/s, prefill {p['prefill_tps']:g} tok/s"
                     for name, p in EDGE_MODELS.items())


def build_parser() -> argparse.ArgumentParser:
    from agents.evaluation import DEFAULT_ENV_ID, default_policies

    epilog = f"""
Sweeps: --sweep KEY=V1,V2,... evaluates every policy once per value of the dotted config KEY
(e.g. topology.n_users=4,10,20,40, wifi.background_stations=0,8,16,30,
workload.structure_probs=[0.7,0.2,0.1],[0.5,0.3,0.2]); values are parsed as JSON when they parse.
The alias edge.model=3B,8B,70B sets the edge server's model (INT4 on a consumer GPU):
{_edge_models_help()}.
Abilities are GSM8K-calibrated (docs/model.md#quality-and-reward); speeds scale the 8B default by the memory-bound decode
and compute-bound prefill laws (3B: measured 3B/8B INT4 decode ratio 2.26, prefill x 8/3; 70B: 8.75x the
weight bytes on the same memory bandwidth, prefill x 8/70). See docs/results.md.

Outputs: the Markdown table goes to stdout; --json writes {{policy: {{metric: value}}}} (with --sweep:
{{"sweep": KEY, "results": {{value: {{policy: {{metric: value}}}}}}}}); --csv writes one row per policy (per
value and policy with --sweep). Metrics are means over episodes; *_ci95 are 95 % t-intervals (half-widths).
Bad input exits with code 2 and one line on stderr.
"""
    p = argparse.ArgumentParser(
        prog=_PROG,
        description="Evaluate offload_gym scheduling policies (built-in heuristics or trained SB3 models) over "
                    "held-out seeds; every policy meets the same workload per seed.",
        epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policies", default=",".join(default_policies()), metavar="NAME,...",
                   help=f"comma-separated built-in names ({', '.join(default_policies())}) or paths to trained "
                        "SB3 .zip models (MaskablePPO, PPO, A2C, DQN; detected from the file). Default: all built-ins")
    p.add_argument("--env", default=DEFAULT_ENV_ID, metavar="ID",
                   help=f"Gymnasium env id (default {DEFAULT_ENV_ID}; offload_gym/WifiOffload-tiny-v0 for smoke runs)")
    p.add_argument("--config", default=None, metavar="JSON_OR_YAML",
                   help='scenario overrides: inline JSON (\'{"edge": {"kappa": 0.1}}\' or \'{"edge.kappa": 0.1}\') '
                        "or a .json / .yaml file")
    p.add_argument("--episodes", type=int, default=10, metavar="N", help="episodes (seeds) per policy (default 10)")
    p.add_argument("--seed", type=int, default=1000, metavar="S",
                   help="first seed; episodes use seeds S..S+N-1 (default 1000: held out from training)")
    p.add_argument("--stochastic", action="store_true", help="sample trained models' actions instead of argmax")
    p.add_argument("--json", default=None, metavar="PATH", help="write results as JSON")
    p.add_argument("--csv", default=None, metavar="PATH", help="write results as CSV")
    p.add_argument("--sweep", default=None, metavar="KEY=V1,V2,...", help="sweep one config key (see below)")
    p.add_argument("--plot", default=None, metavar="PATH.png",
                   help="with --sweep: plot latency, reward, quality and deadline misses against the swept value")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="parallel worker processes (default 1)")
    p.add_argument("--trust-model", action="store_true",
                   help="let model files be unpickled (runs code stored in them): only for files you made yourself. "
                        "Without it a model is loaded from its JSON entries and weights alone")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _fail(message: str) -> NoReturn:
    raise UsageError(message)


def load_config_arg(text: str | None) -> dict[str, Any] | None:
    """``--config``: inline JSON, or a JSON / YAML file. Must give a mapping."""
    if text is None:
        return None
    stripped = text.strip()
    path = Path(stripped)
    data: Any
    if not stripped.startswith(("{", "[")) and path.exists():
        if path.is_dir():
            _fail(f"--config: {text!r} is a directory; give inline JSON or a .json / .yaml file")
        try:
            raw = path.read_text(encoding="utf-8")
        except OSError as exc:
            _fail(f"--config: cannot read {text!r} ({exc.strerror or exc})")
        except UnicodeDecodeError:
            _fail(f"--config: {text!r} is not a text file; give inline JSON or a .json / .yaml file")
        if path.suffix.lower() in (".yaml", ".yml"):
            data = _load_yaml(raw, text)
        else:
            try:
                data = json.loads(raw)
            except json.JSONDecodeError:
                data = _load_yaml(raw, text)
    else:
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            if path.suffix.lower() in (".json", ".yaml", ".yml"):
                _fail(f"--config: file {text!r} does not exist")
            _fail(f"--config: {text!r} is neither valid JSON ({exc.msg} at column {exc.colno}) nor an existing file; "
                  'give e.g. \'{"edge": {"kappa": 0.1}}\' or a .json / .yaml file')
    if data is None:
        data = {}
    if not isinstance(data, dict):
        _fail(f"--config: expected a mapping of config sections (e.g. {{\"edge\": {{\"kappa\": 0.1}}}}), "
              f"got {type(data).__name__}")
    return data


def _load_yaml(raw: str, name: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        _fail(f"--config: {name!r} is neither valid JSON nor valid YAML ({str(exc).splitlines()[0]})")


def _check_env_and_policies(env_id: str, configs: list[tuple[str, dict[str, Any] | None]], policies: list[str],
                            trust: bool = False) -> None:
    """Build each env and load each policy once, so bad input fails before any episode runs."""
    import gymnasium as gym

    from agents.evaluation import load_predictor, policy_env
    from offload_gym.config import ScenarioConfig, make_config
    from offload_gym.registration import ENV_IDS

    for flag, cfg in configs:
        try:
            env = gym.make(env_id) if cfg is None else gym.make(env_id, config=cfg)
        except gym.error.Error as exc:
            _fail(f"--env: {env_id!r} is not a registered environment ({exc}); offload_gym provides {sorted(ENV_IDS)}")
        except ModuleNotFoundError as exc:
            _fail(f"--env: {env_id!r} names a module that cannot be imported ({exc})")
        except TypeError as exc:
            _fail(f"{flag}: environment {env_id!r} does not accept config overrides ({exc})")
        except ValueError as exc:
            _fail(f"{flag}: {exc}")
        if not isinstance(getattr(env.unwrapped, "config", None), ScenarioConfig):
            env.close()
            _fail(f"--env: {env_id!r} is not an offload_gym environment; offload_gym provides {sorted(ENV_IDS)}")
        env.close()
    for _flag, cfg in configs:  # each policy on the env it runs on (a model's own, from its sidecar)
        for spec in policies:
            try:
                pol_env_id, pol_cfg = policy_env(spec, env_id, cfg)
                env = gym.make(pol_env_id) if pol_cfg is None else gym.make(pol_env_id, config=pol_cfg)
                scenario = env.unwrapped.config if isinstance(getattr(env.unwrapped, "config", None),
                                                              ScenarioConfig) else make_config()
                env.close()
                load_predictor(spec, scenario, trust=trust)
            except gym.error.Error as exc:
                _fail(f"--policies: {spec!r} names an env that is not registered ({exc})")
            except ValueError as exc:
                _fail(f"--policies: {str(exc).removeprefix('policy: ')}")


def _check_outputs(args: argparse.Namespace) -> None:
    """Fail before the run, not after it, when an output cannot be written."""
    for flag in ("json", "csv", "plot"):
        path = getattr(args, flag)
        if path is None:
            continue
        parent = Path(path).parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            _fail(f"--{flag}: cannot create the folder {str(parent)!r} ({exc.strerror or exc})")
        if Path(path).is_dir() or not os.access(parent, os.W_OK):
            _fail(f"--{flag}: cannot write {path!r} (a folder, or the folder is not writable)")
    if args.plot is not None and Path(args.plot).suffix.lower() not in (".png", ".pdf", ".svg"):
        _fail(f"--plot: {args.plot!r} needs a .png, .pdf or .svg name")


def _write(flag: str, path: str, writer: Callable[..., None], *args: object, **kwargs: object) -> None:
    try:
        writer(path, *args, **kwargs)
    except OSError as exc:
        _fail(f"{flag}: cannot write {path!r} ({exc.strerror or exc})")


def _relabel(results: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    return {labels.get(k, k): v for k, v in results.items()}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except UsageError as exc:
        print(f"{_PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{_PROG}: interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    from agents import evaluation as ev

    policies = list(dict.fromkeys(p.strip() for p in args.policies.split(",") if p.strip()))
    if not policies:
        _fail(f"--policies: no policy given; choose from {', '.join(ev.default_policies())} or give SB3 .zip paths")
    if not 1 <= args.episodes <= MAX_EPISODES:
        _fail(f"--episodes: {args.episodes if args.episodes < 10**12 else 'that many'} is not allowed; "
              f"need 1..{MAX_EPISODES}")
    if not 0 <= args.seed <= 2**32 - 1 - args.episodes:
        _fail(f"--seed: {args.seed} is not allowed; seeds are 0..{2**32 - 1} (first seed + episodes included)")
    if args.workers < 1:
        _fail(f"--workers: {args.workers} is not allowed; need at least 1")
    if args.plot is not None and args.sweep is None:
        _fail("--plot: needs --sweep KEY=V1,V2,... (plots are metrics against the swept value)")
    config = load_config_arg(args.config)
    seeds = list(range(args.seed, args.seed + args.episodes))
    sweep: tuple[str, list[Any]] | None = None
    if args.sweep is not None:
        try:
            sweep = ev.parse_sweep(args.sweep)
        except ValueError as exc:
            _fail(str(exc))
    configs = [config] if sweep is None else [ev.sweep_overrides(config, sweep[0], v) for v in sweep[1]]
    checks = [("--config", config)] + ([] if sweep is None else [("--sweep", c) for c in configs])
    _check_env_and_policies(args.env, checks, policies, trust=args.trust_model)
    _check_outputs(args)
    labels = ev.policy_labels(policies)
    progress = not args.no_progress and sys.stderr.isatty()  # a bar only where someone watches it
    deterministic = not args.stochastic
    what = f"{args.env}, seeds {seeds[0]}-{seeds[-1]} ({len(seeds)} episode{'s' if len(seeds) > 1 else ''} per policy)"
    if config:
        what += f", overrides {json.dumps(config, separators=(',', ':'))}"
    if sweep is None:
        results = ev.evaluate_many(policies, env_id=args.env, config=config, seeds=seeds, workers=args.workers,
                                   progress=progress, deterministic=deterministic, trust_models=args.trust_model)
        results = _relabel(results, labels)
        print(f"Scenario {what}.\n")
        print(ev.markdown_table(results))
        if args.json:
            _write("--json", args.json, ev.write_json, results)
        if args.csv:
            _write("--csv", args.csv, ev.write_csv, results)
        return 0
    key, values = sweep
    by_value: dict[str, dict[str, dict[str, float]]] = {}
    for value, cfg in zip(values, configs, strict=True):
        label = value if isinstance(value, str) else json.dumps(value)
        res = ev.evaluate_many(policies, env_id=args.env, config=cfg, seeds=seeds, workers=args.workers,
                               progress=progress, deterministic=deterministic, desc=f"{key}={label}",
                               trust_models=args.trust_model)
        by_value[label] = _relabel(res, labels)
    print(f"Sweep of {key} over {', '.join(by_value)}; scenario {what}.\n")
    print(ev.sweep_markdown(key, by_value))
    if args.json:
        _write("--json", args.json, ev.write_json, {"sweep": key, "results": by_value})
    if args.csv:
        _write("--csv", args.csv, ev.write_csv, sweep=(key, by_value))
    if args.plot:
        title = f"sweep of {key}" + (f", {json.dumps(config, separators=(',', ':'))}" if config else "")
        _write("--plot", args.plot, ev.plot_sweep, key, by_value, title=title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
