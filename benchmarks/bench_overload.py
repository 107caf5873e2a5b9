#!/usr/bin/env python
"""Time per decision in overloaded scenarios (issue 15, item 5), against the default scenario.

``python benchmarks/bench_overload.py [--reps N] [--seed S] [--only NAME ...]`` prints, per case, the median over
``N`` repetitions of CPU milliseconds per decision (``time.process_time``; one episode per repetition, reset
included) and the ratio to the default paper scenario with greedy. The estimates are exact in every case (the
approximation the Python engine offered for overloaded edges, ``approx_estimates``, went with that engine; its
last two-engine run is ``docs/results/overload_python_engine.md``). Cases:

* ``default``: the paper scenario, greedy;
* ``70B-<Q>``: a 70B edge model, nearest-edge (always the phone's own AP), ``Q`` queries (the queues grow);
* ``1ap-mb1``: one AP, ``edge.max_batch`` 1, arrival rate 1000/s, 400 queries, nearest-edge;
* ``1000-phones``: 1000 phones, 600 queries, greedy.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from offload_gym import OffloadEnv
from offload_gym.policies import make_policy

#: name -> (config overrides, policy)
CASES: dict[str, tuple[dict[str, Any], str]] = {
    "default": ({}, "greedy"),
    **{f"70B-{q}": ({"edge": {"model": "70B"}, "episode": {"queries": q}}, "nearest-edge")
       for q in (200, 400, 800, 1600)},
    "1ap-mb1": ({"topology": {"n_aps": 1}, "edge": {"max_batch": 1}, "workload": {"arrival_rate": 1000},
                 "episode": {"queries": 400}}, "nearest-edge"),
    "1000-phones": ({"topology": {"n_users": 1000}, "episode": {"queries": 600}}, "greedy"),
}


def run_episode(config: dict[str, Any], policy_name: str, seed: int) -> tuple[float, int]:
    """CPU seconds and decisions of one episode (reset included)."""
    env = OffloadEnv(config=config)
    policy = make_policy(policy_name, env.config, seed=seed)
    start = time.process_time()
    obs, _ = env.reset(seed=seed)
    decisions = 0
    done = False
    while not done:
        action = policy.decide(obs, env.action_masks())
        obs, _, terminated, truncated, _ = env.step(action)
        decisions += 1
        done = terminated or truncated
    elapsed = time.process_time() - start
    env.close()
    return elapsed, decisions


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions per case (median reported)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", choices=sorted(CASES), help="run only these cases")
    args = parser.parse_args(argv)
    names = args.only or list(CASES)
    if "default" not in names:
        names = ["default", *names]
    run_episode({"episode": {"queries": 3}}, "greedy", args.seed)  # untimed: loads numba and the core
    results: dict[str, tuple[float, int, float]] = {}
    per_step: dict[str, list[float]] = {name: [] for name in names}
    totals: dict[str, list[float]] = {name: [] for name in names}
    decisions: dict[str, int] = {}
    for _ in range(args.reps):
        for name in names:  # interleaved, so that a busy machine biases all cases alike
            config, policy_name = CASES[name]
            elapsed, decisions[name] = run_episode(config, policy_name, args.seed)
            per_step[name].append(1000.0 * elapsed / decisions[name])
            totals[name].append(elapsed)
    for name in names:
        results[name] = (statistics.median(per_step[name]), decisions[name], statistics.median(totals[name]))
    print("| case | policy | decisions | episode s | ms/decision | vs default |")
    print("|---|---|---:|---:|---:|---:|")
    base = results["default"][0]
    for name, (ms, n, total) in results.items():
        print(f"| {name} | {CASES[name][1]} | {n} | {total:.2f} | {ms:.3f} | {ms / base:.2f}x |")


if __name__ == "__main__":
    main()
