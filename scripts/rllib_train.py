"""Train action-masked PPO with Ray RLlib on an offload_gym id, on this machine or on a Ray cluster.

    pip install -e ".[ray]"        # a venv of its own is advised (ray pins gymnasium)
    python scripts/rllib_train.py                                   # tiny env, 3 iterations, local Ray
    python scripts/rllib_train.py --env offload_gym/WifiOffload-v0 --config '{"wifi.background_stations": 4}' \\
        --iters 50 --train-batch 4000 --num-env-runners 4
    python scripts/rllib_train.py --address auto --num-env-runners 16 --iters 200   # on a Ray cluster node
    python scripts/rllib_train.py --multi-agent shared       # one agent per phone, one shared masked module
    python scripts/rllib_train.py --multi-agent independent --multi-agent-reward shared   # a module per phone

Prints one line per iteration (env steps, episodes, mean episode return, seconds) and saves the algorithm's
checkpoint into the run folder (default ``runs/rllib/<time>_<env>/checkpoint``, with ``args.json`` and
``progress.csv``). Restore it with ``ray.rllib.algorithms.algorithm.Algorithm.from_checkpoint(PATH)``.
The masking RLModule is :func:`offload_gym.integrations.rllib.masked_ppo_config`; ``--multi-agent`` trains on
the one-agent-per-phone env (only the phone with a pending decision acts) with
:func:`~offload_gym.integrations.rllib.masked_multi_agent_ppo_config`; the return printed is then the sum over
the phones.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

from offload_gym.integrations.rllib import (
    MULTI_AGENT_POLICIES,
    init_ray,
    iteration_row,
    load_config_text,
    masked_multi_agent_ppo_config,
    masked_ppo_config,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--env", default="offload_gym/WifiOffload-tiny-v0", metavar="ID", help="offload_gym id")
    p.add_argument("--config", default=None, metavar="JSON_OR_YAML",
                   help="scenario overrides: inline JSON/YAML or a .json / .yaml file")
    p.add_argument("--iters", type=int, default=3, metavar="N", help="training iterations (default 3)")
    p.add_argument("--train-batch", type=int, default=400, metavar="STEPS",
                   help="env steps per iteration (train_batch_size_per_learner, default 400)")
    p.add_argument("--minibatch", type=int, default=100, metavar="STEPS", help="SGD minibatch size (default 100)")
    p.add_argument("--epochs", type=int, default=4, metavar="N", help="SGD epochs per iteration (default 4)")
    p.add_argument("--lr", type=float, default=3e-4, help="learning rate (default 3e-4)")
    p.add_argument("--hidden", default="64,64", metavar="N,N", help="hidden layer sizes (default 64,64)")
    p.add_argument("--num-env-runners", type=int, default=0, metavar="N",
                   help="remote sampling processes (default 0: sample in this process)")
    p.add_argument("--multi-agent", default=None, choices=MULTI_AGENT_POLICIES,
                   help="one agent per phone: 'shared' (one module for all phones) or 'independent' (one each)")
    p.add_argument("--multi-agent-reward", default="individual", choices=("individual", "shared"),
                   help="with --multi-agent: each phone its own queries' rewards, or every phone the total")
    p.add_argument("--seed", type=int, default=0, help="seed of the envs and networks (default 0)")
    p.add_argument("--address", default=None,
                   help="Ray cluster to connect to ('auto', 'ray://HEAD:10001'; default: RAY_ADDRESS or a local Ray)")
    p.add_argument("--ship-code", action="store_true",
                   help="upload this offload_gym package to the cluster (runtime_env py_modules)")
    p.add_argument("--run-dir", default=None, metavar="DIR", help="run folder (default runs/rllib/<time>_<env>)")
    return p


def train(args: argparse.Namespace) -> tuple[Path, list[dict[str, Any]]]:
    """Run the training that ``args`` describe; returns the run folder and one row per iteration."""
    config = load_config_text(args.config)
    hidden = [int(h) for h in str(args.hidden).split(",") if h.strip()]
    run_dir = Path(args.run_dir or Path("runs") / "rllib" /
                   f"{time.strftime('%Y%m%d-%H%M%S')}_{args.env.split('/')[-1]}"
                   f"{'_multi-agent-' + args.multi_agent if args.multi_agent else ''}").resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "args.json").write_text(json.dumps(vars(args), indent=2) + "\n", encoding="utf-8")
    init_ray(args.address, ship_code=args.ship_code)
    common: dict[str, Any] = {"num_env_runners": args.num_env_runners, "hidden": hidden, "seed": args.seed,
                              "lr": args.lr, "train_batch_size_per_learner": args.train_batch,
                              "minibatch_size": args.minibatch, "num_epochs": args.epochs}
    if args.multi_agent:
        algo_config = masked_multi_agent_ppo_config(args.env, config, policies=args.multi_agent,
                                                    reward=args.multi_agent_reward, **common)
    else:
        algo_config = masked_ppo_config(args.env, config, **common)
    algo = algo_config.build_algo()
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    try:
        for it in range(1, args.iters + 1):
            row = iteration_row(algo.train(), it, time.perf_counter() - start)
            ret = row["episode_return_mean"]
            rows.append(row)
            shown = "n/a (no episode finished)" if ret is None else f"{ret:.3f}"
            print(f"iter {it:>3}/{args.iters}  env steps {row['env_steps']:>7}  episodes {row['episodes']:>5}  "
                  f"mean episode return {shown}  {row['seconds']:.1f} s", flush=True)
        checkpoint = algo.save_to_path(str(run_dir / "checkpoint"))
    finally:
        algo.stop()
    with (run_dir / "progress.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["iteration"])
        writer.writeheader()
        writer.writerows(rows)
    print(f"checkpoint: {checkpoint}")
    return run_dir, rows


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.iters < 1:
        print("--iters: must be at least 1", file=sys.stderr)
        return 2
    try:
        train(args)
    except ValueError as exc:  # a bad --config or --env
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
