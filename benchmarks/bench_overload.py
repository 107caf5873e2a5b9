#!/usr/bin/env python
"""Time per decision in overloaded scenarios (issue 15, item 5), against the default scenario.

``python benchmarks/bench_overload.py [--reps N] [--seed S] [--only NAME ...] [--approx]`` prints, per case and
engine (the compiled core, the Python engine), the median over ``N`` repetitions of CPU milliseconds per
decision (``time.process_time``; one episode per repetition, reset included) and the ratio to the same engine's
default paper scenario with greedy. ``--approx`` adds rows of the Python engine with the estimator's
``approx_queue_reuse`` on (``approx_estimates``, deprecated: an approximation, off by default) and, for the nearest-edge
cases (whose trajectory does not depend on the estimates), the relative error of its general-projection
finish estimates against the exact ones, ``|approx - exact| / (exact - now)``. Cases:

* ``default``: the paper scenario, greedy;
* ``70B-<Q>``: a 70B edge model, nearest-edge (always the phone's own AP), ``Q`` queries (the queues grow);
* ``1ap-mb1``: one AP, ``edge.max_batch`` 1, arrival rate 1000/s, 400 queries, nearest-edge;
* ``1000-phones``: 1000 phones, 600 queries, greedy.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from typing import Any

from offload_gym import OffloadEnv
from offload_gym.policies import make_policy
from offload_gym.sim import estimates

#: name -> (config overrides, policy)
CASES: dict[str, tuple[dict[str, Any], str]] = {
    "default": ({}, "greedy"),
    **{f"70B-{q}": ({"edge": {"model": "70B"}, "episode": {"queries": q}}, "nearest-edge")
       for q in (200, 400, 800, 1600)},
    "1ap-mb1": ({"topology": {"n_aps": 1}, "edge": {"max_batch": 1}, "workload": {"arrival_rate": 1000},
                 "episode": {"queries": 400}}, "nearest-edge"),
    "1000-phones": ({"topology": {"n_users": 1000}, "episode": {"queries": 600}}, "greedy"),
}


#: the rows timed per case: (engine, whether ``approx_queue_reuse`` is on)
Variant = tuple[str, bool]


def run_episode(config: dict[str, Any], policy_name: str, seed: int, approx: bool = False,
                core: str = "python") -> tuple[float, int]:
    """CPU seconds and decisions of one episode (reset included) on ``core``; ``approx``: the Python engine's
    ``approx_queue_reuse`` on."""
    env = OffloadEnv(config=config, core=core)
    policy = make_policy(policy_name, env.config, seed=seed)
    start = time.process_time()
    obs, _ = env.reset(seed=seed)
    if approx:
        env.estimator.approx_queue_reuse = True
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


def approx_errors(config: dict[str, Any], policy_name: str, seed: int) -> list[float]:
    """Relative errors of ``approx_queue_reuse``'s general-projection estimates over one episode (untimed)."""
    errors: list[float] = []
    original = estimates.Estimator._edge_finish_general

    def checked(self: estimates.Estimator, e: int, state: Any, ready_s: float, prefill_s: float,
                decode_tokens: float, extra: list[tuple[float, float, float]] | None) -> float:
        got = original(self, e, state, ready_s, prefill_s, decode_tokens, extra)
        exact_state = self._exact_edge_state(e)
        items = [*exact_state.pending, *(extra or []), (ready_s, prefill_s, decode_tokens)]
        now = self.view.now
        exact = estimates._project_general(now, self._edge_decode_tps, self._kappa, self._max_batch,
                                           exact_state.prefilling, exact_state.decoding, items, len(items) - 1)
        if math.isfinite(exact) and exact > now:
            errors.append(abs(got - exact) / (exact - now))
        return got

    estimates.Estimator._edge_finish_general = checked  # type: ignore[method-assign]
    try:
        run_episode(config, policy_name, seed, approx=True)
    finally:
        estimates.Estimator._edge_finish_general = original  # type: ignore[method-assign]
    return errors


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions per case (median reported)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", choices=sorted(CASES), help="run only these cases")
    parser.add_argument("--approx", action="store_true", help="also time (and check) approx_queue_reuse")
    args = parser.parse_args(argv)
    names = args.only or list(CASES)
    if "default" not in names:
        names = ["default", *names]
    variants: list[Variant] = [("compiled", False), ("python", False)] + ([("python", True)] if args.approx else [])
    results: dict[tuple[str, Variant], tuple[float, int, float]] = {}
    for core, _ in variants:  # untimed: the compiled core's first episode in a process loads numba and the core
        run_episode({"episode": {"queries": 3}}, "greedy", args.seed, core=core)
    for name in names:
        config, policy_name = CASES[name]
        per_step: dict[Variant, list[float]] = {v: [] for v in variants}
        totals: dict[Variant, list[float]] = {v: [] for v in variants}
        decisions: dict[Variant, int] = {}
        for _ in range(args.reps):
            for v in variants:  # interleaved, so that a busy machine biases all alike
                elapsed, decisions[v] = run_episode(config, policy_name, args.seed, approx=v[1], core=v[0])
                per_step[v].append(1000.0 * elapsed / decisions[v])
                totals[v].append(elapsed)
        for v in variants:
            results[name, v] = (statistics.median(per_step[v]), decisions[v], statistics.median(totals[v]))
    print("| case | policy | engine | estimator | decisions | episode s | ms/decision | vs default |")
    print("|---|---|---|---|---:|---:|---:|---:|")
    for (name, (core, approx)), (ms, n, total) in results.items():
        kind = "approx_queue_reuse" if approx else "exact"
        base = results["default", (core, False)][0]
        print(f"| {name} | {CASES[name][1]} | {core} | {kind} | {n} | {total:.2f} | {ms:.3f} | {ms / base:.2f}x |")
    if args.approx:
        print()
        print("| case | compiled exact / Python approx_queue_reuse, ms per decision |")
        print("|---|---:|")
        for name in names:
            ratio = results[name, ("compiled", False)][0] / results[name, ("python", True)][0]
            print(f"| {name} | {ratio:.3f} |")
        print()
        print("| case | general estimates | median rel. error | p95 | max |")
        print("|---|---:|---:|---:|---:|")
        for name in names:
            config, policy_name = CASES[name]
            if policy_name != "nearest-edge":
                continue
            errors = sorted(approx_errors(config, policy_name, args.seed))
            if errors:
                p95 = errors[min(len(errors) - 1, int(0.95 * len(errors)))]
                print(f"| {name} | {len(errors)} | {statistics.median(errors):.2e} | {p95:.2e} | {errors[-1]:.2e} |")


if __name__ == "__main__":
    main()
