"""A Ray Tune grid sweep of action-masked RLlib PPO over learning rates and one scenario key.

    pip install -e ".[ray]"        # a venv of its own is advised (ray pins gymnasium)
    python scripts/tune_sweep.py                                    # 2 lr x 2 contention levels, tiny env, local
    python scripts/tune_sweep.py --lr 1e-4,3e-4,1e-3 --key wifi.background_stations --values 0,16,64 \\
        --env offload_gym/WifiOffload-v0 --stop-iters 50 --train-batch 4000 --num-samples 3
    python scripts/tune_sweep.py --address auto --storage /shared/tune ...   # the same sweep on a Ray cluster

Every combination of ``--lr`` and ``--values`` (for the config key ``--key``, given as a dotted scenario key) is
a trial, repeated ``--num-samples`` times; each trial trains for ``--stop-iters`` iterations. The table of
results (final mean episode return per trial) is printed and written as CSV (default
``runs/tune/<name>/results.csv``). Locally Ray uses this machine's CPUs, one trial per CPU; on a cluster
(``--address``) the trials spread over its nodes: ``--storage`` must then be a folder every node sees (a
shared file system, or a ``s3://`` / ``gs://`` URI) and offload_gym importable on every node (or ``--ship-code``).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path
from typing import Any

from offload_gym.integrations.rllib import episode_return_mean, init_ray, load_config_text, masked_ppo_config


def _numbers(text: str) -> list[Any]:
    """``"1e-4,3e-4"`` -> numbers (int when integral in the text), anything else stays a string."""
    out: list[Any] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        try:
            out.append(int(part))
        except ValueError:
            try:
                out.append(float(part))
            except ValueError:
                out.append(part)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--env", default="offload_gym/WifiOffload-tiny-v0", metavar="ID", help="offload_gym id")
    p.add_argument("--config", default=None, metavar="JSON_OR_YAML",
                   help="scenario overrides shared by all trials: inline JSON/YAML or a .json / .yaml file")
    p.add_argument("--lr", default="1e-4,1e-3", metavar="V,V", help="learning rates to grid over (default 1e-4,1e-3)")
    p.add_argument("--key", default="wifi.background_stations", metavar="DOTTED.KEY",
                   help="scenario key to grid over (default wifi.background_stations)")
    p.add_argument("--values", default="4,32", metavar="V,V", help="values of --key (default 4,32)")
    p.add_argument("--num-samples", type=int, default=1, metavar="N",
                   help="repeats of every grid point, each with its own seed (default 1)")
    p.add_argument("--stop-iters", type=int, default=2, metavar="N", help="training iterations per trial (default 2)")
    p.add_argument("--train-batch", type=int, default=200, metavar="STEPS",
                   help="env steps per iteration (default 200)")
    p.add_argument("--minibatch", type=int, default=100, metavar="STEPS", help="SGD minibatch size (default 100)")
    p.add_argument("--epochs", type=int, default=2, metavar="N", help="SGD epochs per iteration (default 2)")
    p.add_argument("--hidden", default="64,64", metavar="N,N", help="hidden layer sizes (default 64,64)")
    p.add_argument("--num-env-runners", type=int, default=0, metavar="N",
                   help="remote sampling processes per trial (default 0: sample in the trial's process)")
    p.add_argument("--max-concurrent", type=int, default=0, metavar="N",
                   help="trials at once (default 0: as many as the CPUs allow)")
    p.add_argument("--address", default=None,
                   help="Ray cluster to connect to ('auto', 'ray://HEAD:10001'; default: RAY_ADDRESS or a local Ray)")
    p.add_argument("--ship-code", action="store_true",
                   help="upload this offload_gym package to the cluster (runtime_env py_modules)")
    p.add_argument("--storage", default="runs/tune", metavar="DIR_OR_URI",
                   help="Tune's storage folder (default runs/tune; on a cluster a shared path or URI)")
    p.add_argument("--name", default=None, help="experiment name (default sweep_<time>)")
    p.add_argument("--csv", default=None, metavar="PATH", help="results CSV (default <storage>/<name>/results.csv)")
    return p


def _nested(dotted: str, value: Any) -> dict[str, Any]:
    """``("wifi.background_stations", v)`` -> ``{"wifi": {"background_stations": v}}``."""
    out: Any = value
    for part in reversed(dotted.split(".")):
        out = {part: out}
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _lookup(config: dict[str, Any], dotted: str) -> Any:
    cur: Any = config
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return cur.get(dotted) if isinstance(cur, dict) else None
        cur = cur[part]
    return cur


def sweep(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run the sweep that ``args`` describe; returns one row per trial (also printed and written as CSV)."""
    from ray import tune

    base = load_config_text(args.config)
    lrs, values = _numbers(args.lr), _numbers(args.values)
    if not lrs or not values:
        raise ValueError("--lr and --values: give at least one value each")
    name = args.name or f"sweep_{time.strftime('%Y%m%d-%H%M%S')}"
    storage = args.storage if "://" in args.storage else str(Path(args.storage).resolve())
    hidden = [int(h) for h in str(args.hidden).split(",") if h.strip()]
    env_config = _merge(base, _nested(args.key, tune.grid_search(values)))
    param_space = masked_ppo_config(
        args.env, env_config, num_env_runners=args.num_env_runners, hidden=hidden,
        lr=tune.grid_search(lrs), train_batch_size_per_learner=args.train_batch,
        minibatch_size=args.minibatch, num_epochs=args.epochs,
    ).debugging(seed=tune.randint(0, 2**31 - 1) if args.num_samples > 1 else 0)

    init_ray(args.address, ship_code=args.ship_code)
    tuner = tune.Tuner(
        param_space.algo_class, param_space=param_space,  # the class, not "PPO": the name imports every algorithm
        tune_config=tune.TuneConfig(num_samples=args.num_samples, max_concurrent_trials=args.max_concurrent or None),
        run_config=tune.RunConfig(name=name, storage_path=storage, stop={"training_iteration": args.stop_iters},
                                  verbose=1, checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=True)),
    )
    start = time.perf_counter()
    grid = tuner.fit()
    seconds = time.perf_counter() - start
    rows: list[dict[str, Any]] = []
    for result in grid:
        cfg = result.config or {}
        metrics = result.metrics or {}
        rows.append({
            "trial": metrics.get("trial_id", Path(result.path).name if result.path else ""),
            "lr": cfg.get("lr"),
            args.key: _lookup(cfg.get("env_config", {}) or {}, args.key),
            "iterations": metrics.get("training_iteration"),
            "env_steps": metrics.get("num_env_steps_sampled_lifetime",
                                     (metrics.get("env_runners") or {}).get("num_env_steps_sampled_lifetime")),
            "episode_return_mean": episode_return_mean(metrics),
            "error": "" if result.error is None else type(result.error).__name__,
        })
    rows.sort(key=lambda r: (_order(r[args.key]), _order(r["lr"])))
    _print_table(rows)
    csv_path = Path(args.csv) if args.csv else (Path(storage) / name / "results.csv" if "://" not in storage
                                                  else Path("runs/tune") / name / "results.csv")
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["trial"])
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} trials in {seconds:.1f} s; results: {csv_path}")
    return rows


def _order(value: Any) -> tuple[int, float, str]:
    """Sort numbers by value, before anything else (by text)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def _print_table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("no trials")
        return
    cols = list(rows[0])

    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))

    widths = [max(len(c), *(len(fmt(r[c])) for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        print("  ".join(fmt(r[c]).ljust(w) for c, w in zip(cols, widths, strict=True)))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.stop_iters < 1 or args.num_samples < 1:
        print("--stop-iters and --num-samples: must be at least 1", file=sys.stderr)
        return 2
    try:
        rows = sweep(args)
    except ValueError as exc:  # a bad --config, --env or grid
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 1 if any(r["error"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
