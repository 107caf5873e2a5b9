"""One long episode on the compiled core, watching what it holds: the rows of its arrays and the process's memory.

Runs one episode of ``--queries`` queries (default 262,144: 64 workload blocks) of a registered id (default the
paper scenario) under a random masked policy and prints, every ``--every`` decisions, the queries arrived, the
query rows the core's arrays hold (:attr:`offload_gym.core.arrays.CoreState.base` moves up as the rows of
finished queries are dropped), the process's resident set size and the decisions per second so far. At the end
it checks that every query finished once under its own id and that the episode's metrics count them all (exit
code 1 otherwise).

    python scripts/long_episode.py                      # 262,144 queries, about 1 minute on one core
    python scripts/long_episode.py --queries 1000000 --every 200000
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
from soak import rss_mib  # scripts/soak.py, beside this script

import offload_gym  # noqa: F401  (registers the ids)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=64 * 4096, help="episode.queries (default 262,144)")
    parser.add_argument("--env-id", default="offload_gym/WifiOffload-v0")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=100_000, help="decisions between lines (default 100,000)")
    args = parser.parse_args(argv)
    if args.queries < 1 or args.every < 1:
        parser.error("--queries and --every must be at least 1")
    env = gym.make(args.env_id, config={"episode": {"queries": args.queries}}, core="compiled")
    inner = env.unwrapped
    rng = np.random.default_rng(args.seed)
    _, info = env.reset(seed=args.seed)
    finished = np.zeros(args.queries, dtype=np.int64)
    decisions, most_rows, done = 0, 0, False
    start = time.process_time()
    print("decisions   arrived  rows held  RSS MiB  decisions/s")
    while not done:
        _, _, _, done, info = env.step(int(rng.choice(np.flatnonzero(info["action_mask"]))))
        decisions += 1
        for record in info["completed"]:
            finished[record["query_id"]] += 1
        state = inner.episode.state
        rows = len(state.arrays[5])
        most_rows = max(most_rows, rows)
        if decisions % args.every == 0 or done:
            rate = decisions / max(time.process_time() - start, 1e-9)
            print(f"{decisions:>9,d} {inner.episode.queries_arrived:>9,d} {rows:>10,d} {rss_mib():8.1f} {rate:12,.0f}")
    metrics = info["episode_metrics"]
    ok = bool((finished == 1).all()) and metrics["queries"] == args.queries
    print(f"most rows held: {most_rows:,d} of {args.queries:,d} queries; every query finished once: "
          f"{bool((finished == 1).all())}; metrics count {metrics['queries']:,d}; "
          f"mean latency {metrics['mean_latency_s']:.4f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
