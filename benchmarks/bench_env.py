#!/usr/bin/env python
"""Speed, scaling and memory of offload_gym, against CartPole-v1 on the same machine, in one process.

``python benchmarks/bench_env.py [--quick] [--soak] [--no-ppo] [--json PATH]`` prints a Markdown table
and (with ``--json``) writes the numbers. Timings are CPU time of this process (``time.process_time``; the
threaded vector env, whose threads run at once, by the wall clock),
medians over repetitions; offload and CartPole repetitions are interleaved and their ratios taken per
repetition, so that a machine shared with other work biases both sides alike. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np

import offload_gym
from offload_gym.policies import Policy, make_policy

ENV_ID = "offload_gym/WifiOffload-v0"
CARTPOLE_ID = "CartPole-v1"
USERS = (5, 10, 20, 40, 80)
APS = (1, 2, 4, 8)

#: what the performance issue asks for (reported next to the measurements; nothing asserts them)
TARGETS: dict[str, tuple[str, float]] = {
    "offload_random_dps": (">=", 20_000.0),
    "offload_greedy_dps": (">=", 15_000.0),
    "learned_planner_dps": (">=", 10_000.0),
    "vector64_dps": (">=", 200_000.0),
    "ratio_offload_cartpole": (">=", 0.15),
    "users80_vs_20_rate_ratio": (">=", 0.6),
    "greedy_predict_us": ("<", 20.0),
    "ppo_ratio": (">=", 0.8),
}


@dataclass(frozen=True)
class Settings:
    reps: int  #: repetitions of every timed measurement (the median is reported)
    episodes: int  #: paper-scenario episodes per repetition
    queries: int | None  #: episode length of the paper-scenario runs (None: the scenario's own, 200)
    scale_queries: int  #: episode length of the scaling runs
    scale_episodes: int
    cartpole_steps: int  #: CartPole steps per repetition (whole episodes, at least this many)
    greedy_episodes: int  #: episodes whose (observation, mask) pairs time greedy's predict
    mem_episodes: int  #: episodes run under tracemalloc to look for growth
    ppo_timesteps: int  #: PPO timesteps per repetition
    ppo_reps: int
    ppo_n_steps: int  #: PPO n_steps per env (8 envs)
    soak_decisions: int


FULL = Settings(reps=7, episodes=4, queries=None, scale_queries=150, scale_episodes=2, cartpole_steps=60_000,
                greedy_episodes=3, mem_episodes=6, ppo_timesteps=8192, ppo_reps=3, ppo_n_steps=32,
                soak_decisions=1_000_000)
QUICK = Settings(reps=1, episodes=1, queries=15, scale_queries=6, scale_episodes=1, cartpole_steps=500,
                 greedy_episodes=1, mem_episodes=1, ppo_timesteps=128, ppo_reps=1, ppo_n_steps=8,
                 soak_decisions=20_000)


# ----------------------------------------------------------------------------- drivers
def _episode_config(queries: int | None, **sections: dict[str, Any]) -> dict[str, Any]:
    cfg: dict[str, Any] = {k: dict(v) for k, v in sections.items()}
    if queries is not None:
        cfg.setdefault("episode", {})["queries"] = queries
    return cfg


def random_masked(rng: random.Random) -> Callable[[np.ndarray, dict[str, Any]], int]:
    """The cheap random policy: ``random.choice`` over the allowed actions."""

    def choose(obs: np.ndarray, info: dict[str, Any]) -> int:
        return rng.choice(np.flatnonzero(info["action_mask"]).tolist())

    return choose


def greedy(policy: Policy) -> Callable[[np.ndarray, dict[str, Any]], int]:
    def choose(obs: np.ndarray, info: dict[str, Any]) -> int:
        return int(policy.predict(obs, action_masks=info["action_mask"])[0])

    return choose


def run_episodes(env: gym.Env, episodes: int, seed: int,
                 choose: Callable[[np.ndarray, dict[str, Any]], int]) -> tuple[int, float]:
    """Whole episodes (resets included); returns (decisions, CPU seconds)."""
    decisions = 0
    start = time.process_time()
    for ep in range(episodes):
        obs, info = env.reset(seed=seed + ep)
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(choose(obs, info))
            decisions += 1
            done = terminated or truncated
    return decisions, time.process_time() - start


def run_cartpole(env: gym.Env, steps: int, rng: random.Random) -> tuple[int, float]:
    """Whole CartPole episodes with random actions until ``steps`` (resets included)."""
    decisions = 0
    start = time.process_time()
    env.reset(seed=rng.randrange(2**31))
    while decisions < steps:
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(rng.randrange(2))
            decisions += 1
            done = terminated or truncated
        env.reset()
    return decisions, time.process_time() - start


def median(values: list[float]) -> float:
    return float(statistics.median(values))


# ----------------------------------------------------------------------------- measurements
def measure_throughput(s: Settings) -> dict[str, Any]:
    """Decisions/s of the paper scenario (random masked and greedy) and of CartPole, interleaved."""
    cfg = _episode_config(s.queries)
    env = gym.make(ENV_ID, config=cfg)
    cart = gym.make(CARTPOLE_ID)
    policy = make_policy("greedy", env.unwrapped.config)  # type: ignore[attr-defined]
    rng = random.Random(0)
    rand, greed, cp, ratio = [], [], [], []
    run_episodes(env, 1, 10_000, random_masked(rng))  # warm-up (imports, caches, the compiled core's cache)
    run_cartpole(cart, 200, rng)
    for rep in range(s.reps):
        n, t = run_episodes(env, s.episodes, 100 * rep, random_masked(rng))
        rand.append(n / t)
        n, t = run_cartpole(cart, s.cartpole_steps, rng)
        cp.append(n / t)
        ratio.append(rand[-1] / cp[-1])
        n, t = run_episodes(env, s.episodes, 100 * rep, greedy(policy))
        greed.append(n / t)
    env.close()
    cart.close()
    return {"offload_random_dps": median(rand), "offload_greedy_dps": median(greed),
            "cartpole_random_dps": median(cp), "ratio_offload_cartpole": median(ratio)}


def measure_interfaces(s: Settings) -> dict[str, Any]:
    """Decisions/s and queries/s of the three decision interfaces (random masked), interleaved."""
    ids = {"item": ENV_ID, "query": "offload_gym/WifiOffload-query-v0", "residual": "offload_gym/WifiOffload-residual-v0"}
    cfg = _episode_config(s.queries)
    envs = {mode: gym.make(env_id, config=cfg) for mode, env_id in ids.items()}
    rng = random.Random(0)
    dps: dict[str, list[float]] = {m: [] for m in ids}
    qps: dict[str, list[float]] = {m: [] for m in ids}
    for env in envs.values():
        run_episodes(env, 1, 10_000, random_masked(rng))  # warm-up
    queries = s.episodes * envs["item"].unwrapped.config.episode.queries  # type: ignore[attr-defined]
    for rep in range(s.reps):
        for mode, env in envs.items():
            n, t = run_episodes(env, s.episodes, 100 * rep, random_masked(rng))
            dps[mode].append(n / t)
            qps[mode].append(queries / t)
    for env in envs.values():
        env.close()
    return {"interface_dps": {m: median(v) for m, v in dps.items()},
            "interface_qps": {m: median(v) for m, v in qps.items()}}


def measure_vector_and_learned(s: Settings) -> dict[str, Any]:
    """The registered vector env (64 envs, random masked, one process) and the learned-planner scenario."""
    n_envs = 64 if not s.queries else 4
    # the default (threads: one per core, at most one per 16 envs), timed by the wall clock because its threads
    # run at once; and one thread, timed by CPU time as everything else here
    threaded = gym.make_vec(ENV_ID, num_envs=n_envs, config=_episode_config(s.queries))
    single = gym.make_vec(ENV_ID, num_envs=n_envs, config=_episode_config(s.queries), threads=1)
    learned = gym.make(ENV_ID, config=_episode_config(s.queries, planner={"kind": "learned"}))
    rng = np.random.default_rng(0)
    run_episodes(learned, 1, 10_000, random_masked(random.Random(0)))  # warm-up (the planner's weights)
    vec, vec1, lrn = [], [], []
    steps = max(200, 4 * (s.queries or 200))

    def run_vector(venv: Any, seed: int, clock: Any) -> float:
        venv.reset(seed=seed)
        start = clock()
        for _ in range(steps):  # a random allowed action per env, drawn for all envs at once (a batched policy)
            masks = venv.action_masks()
            venv.step((rng.random(masks.shape) * masks).argmax(axis=1))
        return n_envs * steps / (clock() - start)

    for rep in range(max(1, s.reps // 2)):
        vec.append(run_vector(threaded, 100 * rep, time.perf_counter))
        vec1.append(run_vector(single, 100 * rep, time.process_time))
        n, t = run_episodes(learned, s.episodes, 100 * rep, random_masked(random.Random(rep)))
        lrn.append(n / t)
    threads = threaded.threads
    threaded.close()
    single.close()
    learned.close()
    return {"vector64_dps": median(vec), "vector64_one_thread_dps": median(vec1), "vector_envs": n_envs,
            "vector_threads": threads, "vector_threads_ratio": median(vec) / median(vec1),
            "learned_planner_dps": median(lrn)}


def measure_scaling(s: Settings) -> dict[str, Any]:
    """Decisions/s (random masked) against the number of phones (same rate per phone) and of APs."""
    envs: dict[str, gym.Env] = {}
    for n in USERS:
        envs[f"users{n}"] = gym.make(ENV_ID, config=_episode_config(s.scale_queries, topology={"n_users": n}))
    for a in APS:
        envs[f"aps{a}"] = gym.make(ENV_ID, config=_episode_config(s.scale_queries, topology={"n_aps": a}))
    rng = random.Random(1)
    rates: dict[str, list[float]] = {k: [] for k in envs}
    ratio_80_20: list[float] = []
    for env in envs.values():
        run_episodes(env, 1, 20_000, random_masked(rng))  # warm-up
    for rep in range(s.reps):
        for key, env in envs.items():  # interleaved, so that load changes hit every size alike
            n, t = run_episodes(env, s.scale_episodes, 1000 * rep, random_masked(rng))
            rates[key].append(n / t)
        ratio_80_20.append(rates["users80"][-1] / rates["users20"][-1])
    for env in envs.values():
        env.close()
    out: dict[str, Any] = {
        "users_dps": {str(n): median(rates[f"users{n}"]) for n in USERS},
        "aps_dps": {str(a): median(rates[f"aps{a}"]) for a in APS},
        "users80_vs_20_rate_ratio": median(ratio_80_20),
    }
    out["users80_vs_20_cost_ratio"] = 1.0 / out["users80_vs_20_rate_ratio"]
    return out


def measure_greedy_predict(s: Settings) -> dict[str, Any]:
    """Greedy's own time per decision (``predict`` on one observation and mask), in microseconds."""
    cfg = _episode_config(s.queries)
    env = gym.make(ENV_ID, config=cfg)
    policy = make_policy("greedy", env.unwrapped.config)  # type: ignore[attr-defined]
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    for ep in range(s.greedy_episodes):
        obs, info = env.reset(seed=500 + ep)
        done = False
        while not done:
            pairs.append((obs, info["action_mask"]))
            obs, _, terminated, truncated, info = env.step(int(policy.predict(obs, action_masks=info["action_mask"])[0]))
            done = terminated or truncated
    env.close()
    per_decision = []
    for _ in range(max(s.reps, 3)):
        start = time.process_time()
        for obs, mask in pairs:
            policy.predict(obs, action_masks=mask)
        per_decision.append((time.process_time() - start) / len(pairs) * 1e6)
    return {"greedy_predict_us": median(per_decision)}


def rss_mib() -> float:
    """Resident set size now (Linux /proc), else the peak from getrusage."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def measure_memory(s: Settings) -> dict[str, Any]:
    """tracemalloc of one env after an episode, and its growth over further episodes (same env)."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    env = gym.make(ENV_ID, config=_episode_config(s.queries))
    rng = random.Random(3)
    run_episodes(env, 1, 900, random_masked(rng))
    gc.collect()
    after_one = tracemalloc.get_traced_memory()[0]
    run_episodes(env, s.mem_episodes, 901, random_masked(rng))
    gc.collect()
    after_more, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    env.close()
    return {
        "env_mem_kib": (after_one - base) / 1024,
        "env_peak_kib": (peak - base) / 1024,
        "mem_growth_kib": (after_more - after_one) / 1024,
        "mem_growth_episodes": s.mem_episodes,
        "rss_mib": rss_mib(),
    }


def measure_soak(s: Settings) -> dict[str, Any]:
    """RSS over ``soak_decisions`` decisions of one env in one process (random masked policy)."""
    env = gym.make(ENV_ID)
    rng = random.Random(4)
    choose = random_masked(rng)
    checkpoints: list[tuple[int, float]] = []
    every = max(s.soak_decisions // 10, 1)
    decisions, seed = 0, 0
    start = time.process_time()
    obs, info = env.reset(seed=seed)
    while decisions < s.soak_decisions:
        obs, _, terminated, truncated, info = env.step(choose(obs, info))
        decisions += 1
        if terminated or truncated:
            seed += 1
            obs, info = env.reset(seed=seed)
        if decisions % every == 0:
            gc.collect()
            checkpoints.append((decisions, rss_mib()))
    elapsed = time.process_time() - start
    env.close()
    first = checkpoints[0][1]
    return {
        "soak_decisions": decisions,
        "soak_dps": decisions / elapsed,
        "soak_rss_first_mib": first,
        "soak_rss_last_mib": checkpoints[-1][1],
        "soak_rss_growth_mib": checkpoints[-1][1] - first,
        "soak_rss_mib": [round(r, 2) for _, r in checkpoints],
    }


class _SpacesOnly(gym.Env):  # type: ignore[misc]
    """An env with the paper scenario's spaces that does nothing (episodes of 300 steps): what PPO costs on these
    spaces when the env costs nothing."""

    def __init__(self, like: gym.Env) -> None:
        self.observation_space, self.action_space = like.observation_space, like.action_space
        self._obs = np.zeros(self.observation_space.shape, dtype=np.float32)
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._t = 0
        return self._obs, {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._t += 1
        return self._obs, 0.0, False, self._t >= 300, {}


def measure_info_copy(s: Settings) -> dict[str, Any]:
    """What SB3's ``DummyVecEnv`` adds per step: it deep-copies the infos (``copy.deepcopy``); the paper scenario's
    infos under uniform (unmasked, as PPO's) actions, with and without their ``completed`` records."""
    import copy

    env = gym.make(ENV_ID, config=_episode_config(s.queries))
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    infos = []
    for _ in range(max(200, s.cartpole_steps // 10)):
        _, _, _, truncated, info = env.step(int(rng.integers(env.action_space.n)))
        infos.append(info)
        if truncated:
            env.reset()
    start = time.process_time()
    for info in infos:
        copy.deepcopy(info)
    full = (time.process_time() - start) / len(infos)
    bare = [{k: v for k, v in info.items() if k != "completed"} for info in infos]
    start = time.process_time()
    for info in bare:
        copy.deepcopy(info)
    return {"info_deepcopy_us": 1e6 * full, "info_deepcopy_bare_us": 1e6 * (time.process_time() - start) / len(bare)}


def measure_ppo(s: Settings) -> dict[str, Any]:
    """SB3 PPO (MlpPolicy, 8 envs in a DummyVecEnv, one torch thread) on the paper scenario, on CartPole and on
    an env with the paper scenario's spaces that does nothing (:class:`_SpacesOnly`)."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    torch.set_num_threads(1)
    # SB3's logger makes a folder at every learn() without a log path ($SB3_LOGDIR, else a new /tmp/SB3-<time>)
    logs = tempfile.TemporaryDirectory(prefix="bench_sb3_")
    os.environ.setdefault("SB3_LOGDIR", logs.name)
    n_envs = 8
    rollout = n_envs * s.ppo_n_steps
    timesteps = max(rollout, s.ppo_timesteps // rollout * rollout)

    def model_for(make: Callable[[], gym.Env]) -> Any:
        venv = DummyVecEnv([make for _ in range(n_envs)])
        return PPO("MlpPolicy", venv, n_steps=s.ppo_n_steps, batch_size=min(64, rollout), n_epochs=4, seed=0,
                   device="cpu", verbose=0)

    config = _episode_config(s.queries)
    like = gym.make(ENV_ID)
    models = {"offload": model_for(lambda: gym.make(ENV_ID, config=config)),
              "cartpole": model_for(lambda: gym.make(CARTPOLE_ID)),
              "spaces_only": model_for(lambda: _SpacesOnly(like))}
    for model in models.values():
        model.learn(rollout)  # warm-up
    rates: dict[str, list[float]] = {k: [] for k in models}
    ratio = []
    for _ in range(s.ppo_reps):
        for key, model in models.items():
            start = time.process_time()
            model.learn(timesteps, reset_num_timesteps=False)
            rates[key].append(timesteps / (time.process_time() - start))
        ratio.append(rates["offload"][-1] / rates["cartpole"][-1])
    for model in models.values():
        model.get_env().close()
    if os.environ.get("SB3_LOGDIR") == logs.name:
        del os.environ["SB3_LOGDIR"]
    logs.cleanup()
    return {"ppo_offload_sps": median(rates["offload"]), "ppo_cartpole_sps": median(rates["cartpole"]),
            "ppo_ratio": median(ratio), "ppo_n_steps": s.ppo_n_steps, "ppo_timesteps": timesteps,
            "ppo_spaces_only_ratio": median(rates["spaces_only"]) / median(rates["cartpole"])}


# ----------------------------------------------------------------------------- report
def machine() -> dict[str, Any]:
    import gymnasium

    return {"python": platform.python_version(), "numpy": np.__version__, "gymnasium": gymnasium.__version__,
            "offload_gym": getattr(offload_gym, "__version__", "?"), "platform": platform.platform(),
            "cpus": os.cpu_count()}


def _fmt(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def _target(key: str, value: float) -> str:
    if key not in TARGETS:
        return ""
    op, bound = TARGETS[key]
    ok = value >= bound if op == ">=" else value < bound
    return f"{op} {_fmt(bound)} ({'met' if ok else 'not met'})"


def markdown(results: dict[str, Any], python_engine: dict[str, Any] | None = None,
             python_engine_source: str = "") -> str:
    """The results as a Markdown table; ``python_engine``: an earlier run's results with the Python engine's rows
    (``docs/results/bench_python_engine.json``, before that engine was removed), added at the end."""
    rows: list[tuple[str, str, str, str]] = []

    def add(label: str, key: str, unit: str) -> None:
        if key in results:
            rows.append((label, _fmt(results[key]), unit, _target(key, results[key])))

    add("paper scenario, random masked", "offload_random_dps", "decisions/s")
    add("paper scenario, greedy (predict included)", "offload_greedy_dps", "decisions/s")
    add("CartPole-v1 via gym.make, random", "cartpole_random_dps", "steps/s")
    add("offload random / CartPole", "ratio_offload_cartpole", "ratio")
    add("learned planner scenario, random masked", "learned_planner_dps", "decisions/s")
    if "vector64_dps" in results:
        rows.append((f"vector env ({results['vector_envs']} envs, one process, {results['vector_threads']} threads, "
                     "wall clock), random masked", _fmt(results["vector64_dps"]), "decisions/s",
                     _target("vector64_dps", results["vector64_dps"])))
        rows.append((f"vector env ({results['vector_envs']} envs, threads=1), random masked",
                     _fmt(results["vector64_one_thread_dps"]), "decisions/s", ""))
        add("vector env, threaded / one thread", "vector_threads_ratio", "ratio")
    for n, v in results.get("users_dps", {}).items():
        rows.append((f"{n} phones (4 APs), random masked", _fmt(v), "decisions/s", ""))
    add("80 phones / 20 phones, per-decision rate", "users80_vs_20_rate_ratio", "ratio")
    add("80 phones / 20 phones, per-decision cost", "users80_vs_20_cost_ratio", "ratio")
    for a, v in results.get("aps_dps", {}).items():
        rows.append((f"{a} APs (20 phones), random masked", _fmt(v), "decisions/s", ""))
    for mode, v in results.get("interface_dps", {}).items():
        rows.append((f"action_mode {mode}, random masked", _fmt(v), "decisions/s", ""))
        rows.append((f"action_mode {mode}, random masked, per query", _fmt(results["interface_qps"][mode]),
                     "queries/s", ""))
    add("greedy predict", "greedy_predict_us", "us/decision")
    add("one env after an episode (tracemalloc)", "env_mem_kib", "KiB")
    add("peak during it (tracemalloc)", "env_peak_kib", "KiB")
    if "mem_growth_kib" in results:
        rows.append((f"growth over {results['mem_growth_episodes']} more episodes (tracemalloc)",
                     _fmt(results["mem_growth_kib"]), "KiB", ""))
    add("process RSS", "rss_mib", "MiB")
    if "soak_decisions" in results:
        rows.append((f"RSS growth over {results['soak_decisions']:,} decisions", _fmt(results["soak_rss_growth_mib"]),
                     "MiB", ""))
        add("soak throughput", "soak_dps", "decisions/s")
    add("PPO on the paper scenario", "ppo_offload_sps", "steps/s")
    add("PPO on CartPole-v1", "ppo_cartpole_sps", "steps/s")
    add("PPO offload / CartPole", "ppo_ratio", "ratio")
    add("PPO on the paper scenario's spaces, env doing nothing / CartPole", "ppo_spaces_only_ratio", "ratio")
    add("SB3 DummyVecEnv's deepcopy of one step's info", "info_deepcopy_us", "us")
    add("the same without its completed records", "info_deepcopy_bare_us", "us")
    if python_engine is not None:
        where = f"the run in {python_engine_source}" if python_engine_source else "an earlier run"
        old_random, old_cartpole = python_engine["python_core_random_dps"], python_engine["cartpole_random_dps"]
        rows.append((f"Python engine (removed), random masked: {where}", _fmt(old_random), "decisions/s", ""))
        rows.append((f"Python engine (removed), greedy: {where}", _fmt(python_engine["python_core_greedy_dps"]),
                     "decisions/s", ""))
        rows.append(("Python engine random / CartPole, both from that run", _fmt(old_random / old_cartpole), "ratio", ""))
        if "ratio_offload_cartpole" in results:
            rows.append(("compiled / Python engine, random masked, each against its own run's CartPole",
                         _fmt(results["ratio_offload_cartpole"] / (old_random / old_cartpole)), "ratio", ""))
    lines = ["| measurement | value | unit | target |", "|---|---:|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of a few seconds")
    parser.add_argument("--soak", action="store_true", help="also run 1,000,000 decisions and track RSS (minutes)")
    parser.add_argument("--no-ppo", action="store_true", help="skip the SB3 PPO comparison")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--python-engine", metavar="PATH", default="",
                        help="add the Python engine's rows from an earlier run's JSON (docs/results/"
                        "bench_python_engine.json: the last run before that engine was removed)")
    args = parser.parse_args(argv)
    python_engine = None
    if args.python_engine:
        with open(args.python_engine) as f:
            python_engine = json.load(f)
    s = QUICK if args.quick else FULL
    wall = time.perf_counter()
    results: dict[str, Any] = {"quick": args.quick, "settings": asdict(s), "machine": machine()}
    steps: list[Callable[[Settings], dict[str, Any]]] = [
        measure_throughput, measure_interfaces, measure_vector_and_learned, measure_scaling, measure_greedy_predict,
        measure_memory, measure_info_copy]
    if not args.no_ppo:
        steps.append(measure_ppo)
    if args.soak:
        steps.append(measure_soak)
    for step in steps:
        print(f"[bench] {step.__name__} ...", file=sys.stderr, flush=True)
        results.update(step(s))
    results["wall_s"] = time.perf_counter() - wall
    print(markdown(results, python_engine, args.python_engine))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, sort_keys=True, allow_nan=False)
    bad = [k for k, v in results.items() if isinstance(v, float) and not math.isfinite(v)]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
