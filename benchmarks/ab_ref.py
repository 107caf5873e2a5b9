#!/usr/bin/env python
"""Before/after in one process: the estimates and ``_observation`` of a git ref against the working tree.

``python benchmarks/ab_ref.py [--ref HEAD] [--reps 5] [--episodes 3]`` loads
``offload_gym/sim/estimates.py`` and ``OffloadEnv._observation`` from ``--ref`` (everything else is the
working tree), then alternates the two versions repetition by repetition on the paper scenario
(random masked and greedy) and prints median decisions/s of each and their ratio. It also checks that
both versions give the same observations and rewards for the same seeds and actions.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import gymnasium as gym
import numpy as np

import offload_gym  # noqa: F401  (registers the ids)
from offload_gym.envs import offload_env
from offload_gym.policies import make_policy

ROOT = Path(__file__).resolve().parents[1]
ENV_ID = "offload_gym/WifiOffload-v0"
Version = tuple[Any, Callable[..., np.ndarray]]


def _load(name: str, source: str, swap: dict[str, ModuleType]) -> ModuleType:
    """Import ``source`` as module ``name``, with ``swap`` standing in for those modules meanwhile."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location(name, f.name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    saved = {k: sys.modules.get(k) for k in swap}
    sys.modules.update(swap)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return module


def version_at(ref: str) -> Version:
    def show(path: str) -> str:
        return subprocess.run(["git", "show", f"{ref}:{path}"], cwd=ROOT, check=True, capture_output=True,
                              text=True).stdout

    estimates = _load("_ab_estimates", show("offload_gym/sim/estimates.py"), {})
    env_module = _load("_ab_offload_env", show("offload_gym/envs/offload_env.py"),
                       {"offload_gym.sim.estimates": estimates})
    return estimates.Estimator, env_module.OffloadEnv._observation


def use(version: Version) -> None:
    offload_env.Estimator, offload_env.OffloadEnv._observation = version  # type: ignore[misc, method-assign]


def run(env: gym.Env, seed: int, episodes: int, policy: str) -> tuple[int, float, list[tuple[float, bytes]]]:
    """Decisions, CPU seconds and the (reward, observation bytes) of every step of ``episodes`` episodes."""
    rng = random.Random(seed)
    greedy = make_policy("greedy", env.unwrapped.config)  # type: ignore[attr-defined]
    decisions, trace = 0, []
    start = time.process_time()
    for ep in range(episodes):
        obs, info = env.reset(seed=seed + ep)
        done = False
        while not done:
            if policy == "greedy":
                action = int(greedy.predict(obs, action_masks=info["action_mask"])[0])
            else:
                action = rng.choice(np.flatnonzero(info["action_mask"]).tolist())
            obs, reward, terminated, truncated, info = env.step(action)
            trace.append((float(reward), obs.tobytes()))
            decisions += 1
            done = terminated or truncated
    return decisions, time.process_time() - start, trace


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="HEAD", help="git ref of the 'before' version (default HEAD)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--episodes", type=int, default=3)
    args = parser.parse_args(argv)
    versions = {"before": version_at(args.ref), "after": (offload_env.Estimator, offload_env.OffloadEnv._observation)}
    env = gym.make(ENV_ID)
    same = True
    print(f"| policy | before ({args.ref}) | after (working tree) | after / before |\n|---|---:|---:|---:|")
    for policy in ("random", "greedy"):
        rates: dict[str, list[float]] = {k: [] for k in versions}
        for rep in range(args.reps):
            trace: dict[str, list[tuple[float, bytes]]] = {}
            for name, version in versions.items():
                use(version)
                n, seconds, trace[name] = run(env, 100 * rep, args.episodes, policy)
                rates[name].append(n / seconds)
            same = same and trace["before"] == trace["after"]
        before, after = statistics.median(rates["before"]), statistics.median(rates["after"])
        print(f"| {policy} | {before:,.0f} | {after:,.0f} | {after / before:.2f} |")
    use(versions["after"])
    print(f"\nidentical observations and rewards: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
