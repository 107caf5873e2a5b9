"""Multi-agent masked PPO (RLlib) on the tiny scenario against centralised greedy and the simple baselines.

Trains RLlib's masked PPO (new API stack) on the one-agent-per-phone env (``scenario="tiny"``: 4 phones, 2 APs,
20 queries per episode; only the phone with a pending decision acts) twice, with individual rewards:

- ``ppo-shared``: one masked module that every phone uses (parameter sharing);
- ``ppo-independent``: one module per phone (independent PPO).

Each trained policy is then evaluated deterministically (argmax of the masked logits of the module's
``forward_inference``) on held-out seeds 1000..1019 through :func:`offload_gym.multi_agent.parallel_env`, and so
are centralised ``greedy``, ``local-only`` and ``nearest-edge`` (each phone deciding its own items with the
policy's rule; for greedy this is the single-agent trajectory, checked here against the single-agent env). Every
policy meets the same workload per seed, so the differences to greedy are paired. Writes
``docs/results/multi_agent/table.md`` and ``results.json``::

    .venv-ray/bin/python scripts/multi_agent_results.py            # the default budget (about 7 minutes on 2 cores)
    .venv-ray/bin/python scripts/multi_agent_results.py --iters 2 --out /tmp/ma   # a smoke run

Needs the ray extra (``.venv-ray``).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch: the learner shares a small machine

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from agents.evaluation import evaluate_many, paired_difference, summarize
from offload_gym.integrations.rllib import (
    OffloadMultiAgentEnv,
    iteration_row,
    masked_multi_agent_ppo_config,
)
from offload_gym.policies import make_policy

ROOT = Path(__file__).resolve().parents[1]
ENV_ID = "offload_gym/WifiOffload-tiny-v0"
SCENARIO = "tiny"
METRIC_KEYS = ("mean_reward", "mean_latency_s", "mean_quality")
BASELINES = ("greedy", "local-only", "nearest-edge")
#: label -> ``policies`` of :func:`masked_multi_agent_ppo_config`
PPO_RUNS = {"ppo-shared": "shared", "ppo-independent": "independent"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--iters", type=int, default=30, metavar="N",
                   help="training iterations per run (default 30: about 3 min each on 2 shared cores, 6.5 s an iteration)")
    p.add_argument("--train-batch", type=int, default=1000, metavar="STEPS",
                   help="env steps per iteration (train_batch_size_per_learner, default 1000)")
    p.add_argument("--minibatch", type=int, default=250, metavar="STEPS", help="SGD minibatch size (default 250)")
    p.add_argument("--epochs", type=int, default=4, metavar="N", help="SGD epochs per iteration (default 4)")
    p.add_argument("--lr", type=float, default=3e-4, help="learning rate (default 3e-4)")
    p.add_argument("--hidden", default="64,64", metavar="N,N", help="hidden layer sizes (default 64,64)")
    p.add_argument("--seed", type=int, default=0, help="training seed: envs and networks (default 0)")
    p.add_argument("--eval-seed", type=int, default=1000, help="first held-out evaluation seed (default 1000)")
    p.add_argument("--episodes", type=int, default=20, help="evaluation episodes, one per seed (default 20)")
    p.add_argument("--runs", default=",".join(PPO_RUNS), metavar="LIST",
                   help=f"PPO runs to train, comma-separated from {list(PPO_RUNS)} (default both)")
    p.add_argument("--num-cpus", type=int, default=2, help="CPUs the local Ray may use (default 2)")
    p.add_argument("--out", default=str(ROOT / "docs" / "results" / "multi_agent"), metavar="DIR",
                   help="output folder (default docs/results/multi_agent)")
    return p


def _make_par_env() -> Any:
    """The parallel env exactly as RLlib trains on it (same overrides, same Dict observation)."""
    return OffloadMultiAgentEnv({}, scenario=SCENARIO, reward="individual").par_env


def _module_for(policies: str, agent: str) -> str:
    return "shared" if policies == "shared" else agent


def _episode_metrics(infos: dict[str, Any]) -> dict[str, float]:
    metrics = next(iter(infos.values()))["episode_metrics"]
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


def evaluate_rllib(algo: Any, policies: str, seeds: range) -> list[dict[str, float]]:
    """Deterministic per-phone evaluation of a trained algorithm: argmax of the masked inference logits."""
    import torch
    from ray.rllib.core.columns import Columns

    modules: dict[str, Any] = {}
    par = _make_par_env()
    episodes = []
    for seed in seeds:
        obs, infos = par.reset(seed=seed)
        while par.agents:
            agent = par.deciding_agent
            mid = _module_for(policies, agent)
            if mid not in modules:
                modules[mid] = algo.get_module(mid)
                modules[mid].eval()
            features = np.asarray(obs[agent]["observations"], dtype=np.float32)
            mask = np.asarray(obs[agent]["action_mask"], dtype=np.float32)
            batch = {Columns.OBS: {"observations": torch.from_numpy(features[None]),
                                   "action_mask": torch.from_numpy(mask[None])}}
            with torch.no_grad():
                logits = modules[mid].forward_inference(batch)[Columns.ACTION_DIST_INPUTS][0].numpy()
            logits = np.where(mask > 0, logits, -np.inf)  # the module masks already; never pick a masked action
            actions = dict.fromkeys(par.agents, 0)
            actions[agent] = int(np.argmax(logits))
            obs, _, _, _, infos = par.step(actions)
        episodes.append(_episode_metrics(infos))
    return episodes


def evaluate_baseline(name: str, seeds: range) -> list[dict[str, float]]:
    """A built-in policy, each phone deciding its own items with the policy's rule, through the parallel env."""
    par = _make_par_env()
    policy = make_policy(name, par.config)
    episodes = []
    for seed in seeds:
        obs, infos = par.reset(seed=seed)
        while par.agents:
            agent = par.deciding_agent
            action, _ = policy.predict(obs[agent]["observations"], action_masks=obs[agent]["action_mask"])
            actions = dict.fromkeys(par.agents, 0)
            actions[agent] = int(action)
            obs, _, _, _, infos = par.step(actions)
        episodes.append(_episode_metrics(infos))
    return episodes


def train(label: str, policies: str, args: argparse.Namespace, seeds: range) -> dict[str, Any]:
    """Train one PPO run, evaluate it on ``seeds``; returns its record (curve, steps, wall time, episodes)."""
    hidden = [int(h) for h in str(args.hidden).split(",") if h.strip()]
    algo = masked_multi_agent_ppo_config(
        ENV_ID, {}, policies=policies, reward="individual", num_env_runners=0, hidden=hidden, seed=args.seed,
        lr=args.lr, train_batch_size_per_learner=args.train_batch, minibatch_size=args.minibatch,
        num_epochs=args.epochs).build_algo()
    curve: list[dict[str, Any]] = []
    start = time.perf_counter()
    try:
        for it in range(1, args.iters + 1):
            row = iteration_row(algo.train(), it, time.perf_counter() - start)
            ret = row["episode_return_mean"]
            curve.append(row)
            shown = "n/a" if ret is None else f"{ret:.3f}"
            print(f"[{label}] iter {it:>3}/{args.iters}  env steps {row['env_steps']:>7}  episodes {row['episodes']:>5}"
                  f"  mean episode return (sum over phones) {shown}  {row['seconds']:.1f} s", flush=True)
        train_s = time.perf_counter() - start
        eval_start = time.perf_counter()
        episodes = evaluate_rllib(algo, policies, seeds)
        eval_s = time.perf_counter() - eval_start
    finally:
        algo.stop()
    return {"policies": policies, "reward": "individual", "curve": curve, "train_env_steps": curve[-1]["env_steps"],
            "train_agent_steps": curve[-1]["agent_steps"], "train_wall_s": train_s, "eval_wall_s": eval_s,
            "episodes": episodes}


def _plain(obj: Any) -> Any:
    """JSON-ready: NaN / inf become null, tuples lists, numpy scalars Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, range)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _ci(mean: float, half: float, digits: int = 3) -> str:
    return f"{mean:.{digits}f} ± {half:.{digits}f}" if math.isfinite(half) else f"{mean:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    unknown = [r for r in runs if r not in PPO_RUNS]
    if args.iters < 1 or unknown or args.episodes < 2:
        print(f"error: need --iters >= 1, --episodes >= 2 and --runs from {list(PPO_RUNS)} (got {unknown})",
              file=sys.stderr)
        return 2
    seeds = range(args.eval_seed, args.eval_seed + args.episodes)
    started = time.perf_counter()
    cpu_started = time.process_time()

    records: dict[str, dict[str, Any]] = {}
    for name in BASELINES:
        records[name] = {"episodes": evaluate_baseline(name, seeds)}
    # the parallel env with greedy on every phone is centralised greedy: check it against the single-agent env
    single = evaluate_many(["greedy"], env_id=ENV_ID, seeds=seeds, workers=1)["greedy"]
    par_greedy = summarize(records["greedy"]["episodes"])
    greedy_check = {k: {"parallel_env": par_greedy[k], "single_agent_env": single[k]} for k in METRIC_KEYS}
    if any(abs(v["parallel_env"] - v["single_agent_env"]) > 1e-9 for v in greedy_check.values()):
        print(f"warning: greedy through the parallel env differs from the single-agent env: {greedy_check}",
              file=sys.stderr)
    print(f"baselines done ({time.perf_counter() - started:.0f} s)", flush=True)

    import ray

    # a private local Ray (address="local"): never attach to a cluster another process started on this machine
    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False)
    for label in runs:
        records[label] = train(label, PPO_RUNS[label], args, seeds)
        print(f"[{label}] trained in {records[label]['train_wall_s']:.0f} s, evaluated in "
              f"{records[label]['eval_wall_s']:.0f} s", flush=True)
    ray.shutdown()

    greedy_rewards = [e["mean_reward"] for e in records["greedy"]["episodes"]]
    for rec in records.values():
        rec["summary"] = summarize(rec["episodes"])
        rec["diff_to_greedy"] = paired_difference([e["mean_reward"] - g for e, g in zip(rec["episodes"],
                                                                                          greedy_rewards, strict=True)])
    order = sorted(records, key=lambda n: -records[n]["summary"]["mean_reward"])
    lines = ["| policy | mean reward | mean latency (s) | mean quality | reward − greedy (paired) | training env steps "
             "| training wall time |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name in order:
        rec = records[name]
        s, d = rec["summary"], rec["diff_to_greedy"]
        diff = "—" if name == "greedy" else _ci(d["mean"], d["ci95"])
        steps = f"{rec['train_env_steps']:,}" if "train_env_steps" in rec else "—"
        wall = f"{rec['train_wall_s']:.0f} s" if "train_wall_s" in rec else "—"
        lines.append(f"| `{name}` | {_ci(s['mean_reward'], s['mean_reward_ci95'])} | "
                     f"{_ci(s['mean_latency_s'], s['mean_latency_s_ci95'])} | {s['mean_quality']:.3f} | {diff} | "
                     f"{steps} | {wall} |")
    total_s = time.perf_counter() - started
    command = "python scripts/multi_agent_results.py" + ("" if argv is None and len(sys.argv) == 1 else
                                                          " " + shlex.join(sys.argv[1:] if argv is None else argv))
    text = ("\n".join(lines) + "\n\n"
            f"Tiny scenario (4 phones, 2 APs, 20 queries per episode), one agent per phone, individual rewards. "
            f"Mean over {args.episodes} held-out seeds ({seeds[0]}..{seeds[-1]}) ± 95 % t-interval; the difference to "
            "greedy is paired per seed (same workload). PPO: RLlib masked PPO (new API stack), "
            f"{args.iters} iterations × {args.train_batch} env steps, minibatch {args.minibatch}, {args.epochs} epochs, "
            f"lr {args.lr}, hidden {args.hidden}, seed {args.seed}; evaluated deterministically (argmax of the masked "
            "logits). `ppo-shared`: one module for every phone; `ppo-independent`: one module per phone. Baselines: "
            "each phone applies the policy's rule to its own items (for greedy, exactly the centralised single-agent "
            "greedy trajectory). Mean reward is the per-query mean of the episode (`episode_metrics`).\n\n"
            f"Produced by `{command}` ({total_s / 60:.1f} min wall on 2 shared CPU cores).\n")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(text, encoding="utf-8")
    (out / "results.json").write_text(json.dumps(_plain({
        "command": command, "wall_s": total_s, "cpu_s_driver": time.process_time() - cpu_started,
        "scenario": SCENARIO, "eval_seeds": list(seeds), "train_seed": args.seed,
        "hyperparameters": {"iters": args.iters, "train_batch": args.train_batch, "minibatch": args.minibatch,
                            "epochs": args.epochs, "lr": args.lr, "hidden": args.hidden},
        "greedy_parallel_vs_single_agent": greedy_check, "policies": records}), indent=1, allow_nan=False) + "\n",
        encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
