"""Soak test: many decisions in one process, watching memory for leaks.

Runs ``--decisions`` steps (default 1,000,000) of a random masked policy on the paper scenario
(``offload_gym/WifiOffload-v0``), episodes back to back with a fresh seed each, and samples the
process's resident set size (``/proc/self/statm``; ``ru_maxrss`` as the peak) and tracemalloc's
current traced memory (after a ``gc.collect()``) at regular intervals, always right after a reset
(mid-episode queues and caches are not leaks). The verdict compares the first sample after 10 % of
the decisions (warm caches, steady state) with the last one: the growth must stay below
``--max-growth-pct`` (5 %), else the exit code is 1. With tracemalloc on (the default) the traced
memory is judged, since tracemalloc's own bookkeeping inflates RSS; with ``--no-tracemalloc`` the
RSS is. tracemalloc slows the env about 6x: for a million decisions use ``--no-tracemalloc``. The
last sample's largest growth sites (tracemalloc) and the fill of offload_gym's functools caches are
printed, to tell a leak from a bounded cache filling up.

    python scripts/soak.py --no-tracemalloc         # 1,000,000 decisions, RSS (~5-8 min on one core)
    python scripts/soak.py --decisions 100000 --json runs/soak.json   # tracemalloc, ~3 min

``--json PATH`` writes every sample and the verdict.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import time
import tracemalloc
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import offload_gym  # noqa: F401  (registers the ids)

MIB = 1024.0 * 1024.0


@dataclass
class Sample:
    decisions: int
    episodes: int
    wall_s: float
    rss_mib: float
    peak_rss_mib: float
    traced_mib: float | None
    lru_entries: int  # entries in offload_gym's functools caches (bounded caches fill up: growth, not a leak)


def lru_caches() -> dict[str, Any]:
    """``module.function -> cache_info()`` of every functools cache in the loaded offload_gym modules."""
    out: dict[str, Any] = {}
    for name, module in list(sys.modules.items()):
        if not name.startswith("offload_gym") or module is None:
            continue
        for attr, obj in list(vars(module).items()):
            info = getattr(obj, "cache_info", None)
            if callable(info) and getattr(obj, "__module__", None) == name:
                out[f"{name}.{attr}"] = info()
    return out


def rss_mib() -> float:
    """Current resident set size (MiB): /proc/self/statm where it exists, else the peak from getrusage."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / MIB
    except (OSError, ValueError, IndexError):  # not Linux
        return peak_rss_mib()


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024.0  # bytes on macOS, KiB on Linux


def take_sample(decisions: int, episodes: int, start: float, trace: bool) -> Sample:
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] / MIB if trace else None
    entries = sum(info.currsize for info in lru_caches().values())
    return Sample(decisions, episodes, time.perf_counter() - start, rss_mib(), peak_rss_mib(), traced, entries)


def growth_pct(base: float, end: float) -> float:
    return 100.0 * (end - base) / base if base > 0 else 0.0


def soak(decisions: int, *, samples: int, seed: int, trace: bool, env_id: str, progress: bool) -> dict[str, Any]:
    """Run the soak; return the samples, throughput and growth figures."""
    if trace:
        tracemalloc.start()
    env = gym.make(env_id)
    rng = np.random.default_rng(seed)
    interval = max(decisions // samples, 1)
    warm_at = max(decisions // 10, 1)
    start = time.perf_counter()
    episodes = 0
    last_end = 0  # step at which the previous episode ended
    max_episode_steps = 0  # longest episode so far: the last sample is taken at the last boundary that fits
    _obs, info = env.reset(seed=seed)
    history: list[Sample] = [take_sample(0, 0, start, trace)]
    baseline: Sample | None = None
    baseline_snapshot: tracemalloc.Snapshot | None = None  # taken with the samples, at episode boundaries
    last_snapshot: tracemalloc.Snapshot | None = None
    next_sample = warm_at
    for step in range(1, decisions + 1):
        action = int(rng.choice(np.flatnonzero(info["action_mask"])))
        _obs, _, terminated, truncated, info = env.step(action)
        if not (terminated or truncated):
            continue
        episodes += 1
        _obs, info = env.reset(seed=seed + episodes)
        # sample at episode boundaries only: mid-episode state (queues, caches) is not a leak
        if step >= next_sample or step + max_episode_steps > decisions:
            history.append(take_sample(step, episodes, start, trace))
            if trace:
                last_snapshot = tracemalloc.take_snapshot()
            if baseline is None:
                baseline = history[-1]
                baseline_snapshot = last_snapshot
            next_sample = step + interval
            if progress:
                s = history[-1]
                traced_txt = f"  traced {s.traced_mib:8.3f} MiB" if s.traced_mib is not None else ""
                print(f"{step:>10,d} decisions  {episodes:>6,d} episodes  {s.wall_s:7.1f} s  "
                      f"RSS {s.rss_mib:8.2f} MiB{traced_txt}  lru entries {s.lru_entries:,d}", flush=True)
        max_episode_steps = max(max_episode_steps, step - last_end)
        last_end = step
    wall = time.perf_counter() - start
    env.close()
    end = history[-1]
    if baseline is None or baseline is end:
        raise SystemExit(f"--decisions {decisions}: too few episodes ended to compare memory; give more decisions")
    result: dict[str, Any] = {
        "env_id": env_id,
        "decisions": decisions,
        "episodes": episodes,
        "wall_s": wall,
        "decisions_per_s": decisions / wall if wall > 0 else float("nan"),
        "tracemalloc": trace,
        "baseline": asdict(baseline),
        "end": asdict(end),
        "rss_growth_pct": growth_pct(baseline.rss_mib, end.rss_mib),
        "traced_growth_pct": (growth_pct(baseline.traced_mib, end.traced_mib)
                              if baseline.traced_mib is not None and end.traced_mib is not None else None),
        "samples": [asdict(s) for s in history],
    }
    result["lru_caches"] = {k: v._asdict() for k, v in lru_caches().items()}
    if baseline_snapshot is not None and last_snapshot is not None:
        ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]  # the snapshots themselves
        diff = last_snapshot.filter_traces(ignore).compare_to(baseline_snapshot.filter_traces(ignore), "lineno")
        result["top_growth"] = [{"where": str(d.traceback), "size_diff_kib": d.size_diff / 1024, "count_diff": d.count_diff}
                                for d in diff[:8]]
    if trace:
        tracemalloc.stop()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=1_000_000, help="env steps in total (default 1,000,000)")
    parser.add_argument("--samples", type=int, default=50, help="memory samples over the run (default 50)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first episode and of the policy")
    parser.add_argument("--env-id", default="offload_gym/WifiOffload-v0", help="registered env id (default: paper)")
    parser.add_argument("--max-growth-pct", type=float, default=5.0,
                        help="fail (exit 1) if RSS or traced memory grows more than this from 10%% to the end")
    parser.add_argument("--no-tracemalloc", dest="trace", action="store_false", help="RSS only (faster)")
    parser.add_argument("--json", type=Path, default=None, help="write the samples and verdict here")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    if args.decisions < 10:
        parser.error(f"--decisions: {args.decisions} is too small; give at least 10")
    if args.samples < 2:
        parser.error(f"--samples: {args.samples} is too small; give at least 2")
    result = soak(args.decisions, samples=args.samples, seed=args.seed, trace=args.trace, env_id=args.env_id,
                  progress=not args.quiet)
    # tracemalloc's own bookkeeping and snapshots inflate RSS: with it on, judge the traced memory only
    judged = "traced_growth_pct" if args.trace else "rss_growth_pct"
    result["judged"] = judged
    result["max_growth_pct"] = args.max_growth_pct
    result["passed"] = result[judged] < args.max_growth_pct
    base, end = result["baseline"], result["end"]
    print(f"decisions {result['decisions']:,d} in {result['episodes']:,d} episodes, {result['wall_s']:.1f} s "
          f"({result['decisions_per_s']:,.0f}/s)")
    print(f"RSS: start {result['samples'][0]['rss_mib']:.2f} MiB, after 10 % {base['rss_mib']:.2f} MiB, "
          f"end {end['rss_mib']:.2f} MiB, peak {end['peak_rss_mib']:.2f} MiB: growth {result['rss_growth_pct']:+.2f} %")
    if result["traced_growth_pct"] is not None:
        print(f"tracemalloc: after 10 % {base['traced_mib']:.3f} MiB, end {end['traced_mib']:.3f} MiB: "
              f"growth {result['traced_growth_pct']:+.2f} %")
    print(f"offload_gym lru caches: after 10 % {base['lru_entries']:,d} entries, end {end['lru_entries']:,d}: "
          + ", ".join(f"{k.split('.')[-1]} {v['currsize']:,d}/{v['maxsize']:,d}" for k, v in result["lru_caches"].items()))
    for d in result.get("top_growth", [])[:5]:
        print(f"  growth from 10 % to the last sample: {d['size_diff_kib']:+9.1f} KiB {d['count_diff']:+7d} blocks  "
              f"{d['where']}")
    what = "tracemalloc growth (RSS includes tracemalloc's overhead)" if args.trace else "RSS growth"
    print(f"verdict: {'PASS' if result['passed'] else 'FAIL'}: {what} {result[judged]:+.2f} % "
          f"(target < {args.max_growth_pct} %)")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
