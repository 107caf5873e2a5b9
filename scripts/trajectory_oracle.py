"""Exact trajectory digests over many scenarios: the oracle for changes that must not change the simulation.

Runs every registered id and ``--configs`` random valid configs (topologies, loads, PHYs, edge models,
planners including the learned one, faults, random access delays, all three decision interfaces) with a seeded
random masked policy, and hashes each step's exact observation bytes, reward, mask and the info numbers. Compare two
versions of the code by running this script under each and diffing the JSON::

    git worktree add /tmp/base HEAD~1
    PYTHONPATH=/tmp/base python scripts/trajectory_oracle.py --out /tmp/base.json
    python scripts/trajectory_oracle.py --compare /tmp/base.json

``tests/test_trajectory_pin.py`` pins a few of these in the default test run, and
``tests/test_golden_trajectories.py`` compares the compiled core with the Python engine's digests of all 316
episodes (``--configs 300``), recorded by ``--core python --record tests/data/python_engine_trajectories.json``
before that engine was removed (commit 26b61a0 still has it: run this script with ``PYTHONPATH`` at a worktree
of it and ``--core python`` to compute more of its digests).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from typing import Any

import gymnasium as gym
import numpy as np

import offload_gym  # noqa: F401  (registers the ids)
from offload_gym.envs.offload_env import OffloadEnv


def random_config(rng: np.random.Generator) -> dict[str, Any]:
    """A valid config anywhere in a broad range of the knobs that change the event sequence."""
    n_aps = int(rng.integers(1, 7))
    cfg: dict[str, Any] = {
        "topology": {"n_users": int(rng.integers(1, 41)), "n_aps": n_aps, "area_m": float(rng.choice([10.0, 30.0, 80.0]))},
        "wifi": {"background_stations": int(rng.integers(0, 40)), "bandwidth_mhz": int(rng.choice([20, 40, 80, 160])),
                 "spatial_streams": int(rng.integers(1, 4))},
        "edge": {"model": str(rng.choice(["3B", "8B", "70B"])), "kappa": float(rng.choice([0.0, 0.3, 1.0, 2.5])),
                 "max_batch": int(rng.choice([1, 2, 4, 16]))},
        "workload": {"arrival_rate": float(10 ** rng.uniform(-1.5, 0.7)),
                     "attachment_prob": float(rng.uniform(0, 1))},
        "planner": {"kind": str(rng.choice(["oracle", "noisy-oracle"])), "latency_s": float(rng.choice([0.0, 0.0, 0.3]))},
        "reward": {"kind": str(rng.choice(["linear", "product"]))},
        "episode": {"queries": int(rng.integers(5, 60))},
        "action_mode": str(rng.choice(["item", "item", "query", "residual"])),
    }
    if rng.random() < 0.3:
        start = float(rng.uniform(0, 20))
        cfg["faults"] = {"ap_outages": [{"ap": int(rng.integers(n_aps)), "start_s": start,
                                          "duration_s": float(rng.uniform(0.5, 10))}],
                         "on_outage": str(rng.choice(["redispatch", "fail"])),
                         "background_changes": [{"start_s": float(rng.uniform(0, 20)), "stations": int(rng.integers(0, 60))}],
                         "backhaul_changes": [{"start_s": float(rng.uniform(0, 20)), "delay_s": 0.01, "rate_bps": 1e8}]}
    if rng.random() < 0.1:
        cfg["workload"]["source"] = "corpus"
        cfg["planner"]["kind"] = "learned"
    if rng.random() < 0.2:  # random access delays (gamma draws from their own stream)
        cfg["wifi"]["access_delay_cv"] = float(rng.choice([0.5, 1.0, 2.0]))
    return cfg


#: the record and metric keys hashed: new keys may be added without changing a digest
RECORD_KEYS = ("query_id", "user", "arrival_s", "latency_s", "quality", "reward", "decomposed", "placements",
               "n_subtasks", "attachment_bytes", "deadline_missed", "failed", "fail_reason", "redispatched")
METRIC_KEYS = ("queries", "mean_latency_s", "p95_latency_s", "mean_quality", "mean_reward", "total_reward",
               "deadline_miss_rate", "decomposed_share", "edge_share", "invalid_actions", "failed_queries",
               "redispatched_queries", "sim_time_s")


def digest(env: gym.Env, seed: int) -> str:
    """Hash of one episode under a random masked policy seeded with ``seed``."""
    h = hashlib.sha256()
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    done = False
    while not done:
        for part in (obs.values() if isinstance(obs, dict) else (obs,)):  # a dict observation: its arrays in order
            h.update(np.asarray(part).tobytes())
        mask = np.asarray(info["action_mask"])
        h.update(mask.tobytes())
        h.update(repr((info["decision"], info["decision_query_id"], info["time_s"], info["elapsed_s"],
                       [[c[k] for k in RECORD_KEYS] for c in info["completed"]])).encode())
        action = int(rng.choice(np.flatnonzero(mask)))
        obs, reward, terminated, truncated, info = env.step(action)
        h.update(repr(float(reward)).encode())
        done = terminated or truncated
    h.update(repr([info["episode_metrics"][k] for k in METRIC_KEYS]).encode())
    return h.hexdigest()[:20]


def episode_digests(configs: int, seeds: int, core: str = "auto",
                    override: dict[str, Any] | None = None) -> tuple[dict[str, str], int, set[str]]:
    """The digest of every registered id's first ``seeds`` episodes and of ``configs`` random configs (drawn from
    a fixed seed), under ``core``; how many of them ran on the compiled core; and the keys of those with the
    learned planner (torch's floats)."""
    override = override or {}
    digests: dict[str, str] = {}
    compiled = 0
    learned: set[str] = set()
    for env_id in sorted(i for i in gym.registry if i.startswith("offload_gym/")):
        for seed in range(seeds):
            env = gym.make(env_id, config=override, core=core) if override else gym.make(env_id, core=core)
            digests[f"{env_id}#{seed}"] = digest(env, seed)
            compiled += env.unwrapped.episode is not None
            if env.unwrapped.config.planner.kind == "learned":
                learned.add(f"{env_id}#{seed}")
            env.close()
    rng = np.random.default_rng(20261201)
    for k in range(configs):
        cfg = random_config(rng)
        key = f"config{k}:{json.dumps(cfg, sort_keys=True)}"
        env = OffloadEnv(config={**cfg, **override}, core=core)
        digests[key] = digest(env, k)
        compiled += env.episode is not None
        if env.config.planner.kind == "learned":
            learned.add(key)
    return digests, compiled, learned


def compact(digests: dict[str, str]) -> dict[str, str]:
    """``digests`` with each random config's JSON in its key replaced by a hash of it (a short file to commit)."""
    out = {}
    for key, value in digests.items():
        name, sep, config = key.partition(":")
        out[f"{name}:{hashlib.sha256(config.encode()).hexdigest()[:12]}" if sep else key] = value
    return out


def platform_key() -> dict[str, Any]:
    """What exact floats depend on besides this code.

    Every episode: numpy's version (its Generator streams) and the machine type. The CPU's features do not
    matter: the simulation's ``exp`` and ``log`` are the C library's (``math``, and numba's compiled calls),
    never numpy's array loops, which have AVX-512 versions that differ in the last bit. Episodes with the
    learned planner also depend on torch's version and on the kernels it dispatches on
    (``torch.backends.cpu.get_cpu_capability()``): its matrix products sum in another order under AVX-512 than
    under AVX2.
    """
    import platform

    try:
        import torch
    except ImportError:
        torch_version = torch_cpu = None
    else:
        torch_version, torch_cpu = torch.__version__, torch.backends.cpu.get_cpu_capability()
    return {"numpy": np.__version__, "machine": platform.machine(), "torch": torch_version, "torch_cpu": torch_cpu}


#: the keys of :func:`platform_key` that only the learned planner's episodes depend on
TORCH_KEYS = ("torch", "torch_cpu")


def platform_difference(recorded: dict[str, Any], uses_torch: bool = False) -> str:
    """Empty where this platform computes a recording's exact floats (``recorded``: its :func:`platform_key`),
    else which keys differ; ``uses_torch``: the episodes include the learned planner's."""
    here = platform_key()
    keys = [k for k in here if uses_torch or k not in TORCH_KEYS]
    return ", ".join(f"{k} {recorded.get(k)!r} recorded, {here[k]!r} here" for k in keys if recorded.get(k) != here[k])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=200, help="random configs besides the registered ids")
    parser.add_argument("--seeds", type=int, default=2, help="episodes (seeds) per registered id")
    parser.add_argument("--out", default="", help="write the digests to this JSON file")
    parser.add_argument("--compare", default="", help="compare with digests in this JSON file; exit 1 on a difference")
    parser.add_argument("--record", default="", help="write the compact recording that tests/test_golden_trajectories.py"
                        " compares with (tests/data/python_engine_trajectories.json)")
    parser.add_argument("--core", default="auto", choices=("auto", "compiled", "python"),
                        help="OffloadEnv's core argument: 'python' only for code before the Python engine's removal "
                        "(a worktree of commit 26b61a0 or older on PYTHONPATH)")
    parser.add_argument("--override", default="", help="JSON overrides merged into every config, e.g. a default that "
                        "changed: '{\"wifi.access\": \"dcf\"}' reproduces the model before the ns-3 fixes")
    args = parser.parse_args(argv)
    override = json.loads(args.override) if args.override else {}
    started = time.perf_counter()
    digests, compiled, _ = episode_digests(args.configs, args.seeds, args.core, override)
    print(f"{len(digests)} episodes in {time.perf_counter() - started:.1f} s ({compiled} on the compiled core)")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(digests, f, indent=0, sort_keys=True)
    if args.record:
        recording = {"core": args.core, "configs": args.configs, "seeds": args.seeds, "override": override,
                     "platform": platform_key(), "digests": compact(digests)}
        with open(args.record, "w") as f:
            json.dump(recording, f, indent=0, sort_keys=True)
            f.write("\n")
    if args.compare:
        with open(args.compare) as f:
            base = json.load(f)
        common = sorted(set(base) & set(digests))
        differ = [k for k in common if base[k] != digests[k]]
        print(f"compared {len(common)} episodes: {len(differ)} differ")
        for k in differ[:20]:
            print("  differs:", k[:200])
        return 1 if differ or not common else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
