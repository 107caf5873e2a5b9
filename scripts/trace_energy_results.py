"""The built-in schedulers on replayed Azure traces and with the phone's energy in the reward.

Runs every built-in policy on the synthetic paper scenario, on the two replayed traces and on the paper
scenario with ``reward.energy_weight`` 0.05 per J, on the same held-out seeds, and writes the table the
README shows (``docs/results/traces_energy/table.md``) with the raw summaries (``results.json``)::

    python scripts/trace_energy_results.py --episodes 20 --workers 2

Every policy meets the same workload per seed (common random numbers), so orderings are paired.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from agents.evaluation import _fmt_ci as _cell
from agents.evaluation import default_policies, evaluate_many

ROOT = Path(__file__).resolve().parents[1]

#: (label, env id, overrides)
CASES: tuple[tuple[str, str, dict[str, Any] | None], ...] = (
    ("synthetic (paper)", "offload_gym/WifiOffload-v0", None),
    ("azure-conv trace", "offload_gym/WifiOffload-azure-conv-v0", None),
    ("azure-code trace", "offload_gym/WifiOffload-azure-code-v0", None),
    ("paper, energy in the reward (0.05/J)", "offload_gym/WifiOffload-energy-v0", None),
    ("azure-code, energy in the reward", "offload_gym/WifiOffload-azure-code-v0", {"reward": {"energy_weight": 0.05}}),
)


def _ranking(results: dict[str, dict[str, float]], key: str) -> list[str]:
    return sorted(results, key=lambda name: -results[name][key])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "docs" / "results" / "traces_energy"))
    args = parser.parse_args(argv)
    seeds = range(args.seed, args.seed + args.episodes)
    policies = default_policies()
    started = time.perf_counter()
    all_results: dict[str, dict[str, dict[str, float]]] = {}
    lines = ["| scenario | policy | mean latency (s) | mean quality | mean reward | mean energy (J) | deadline miss "
             "| edge share |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    orders = []
    for label, env_id, config in CASES:
        results = evaluate_many(policies, env_id=env_id, config=config, seeds=seeds, workers=args.workers)
        all_results[label] = results
        for name in _ranking(results, "mean_reward"):
            s = results[name]
            lines.append(f"| {label} | `{name}` | {_cell(s, 'mean_latency_s', 3)} | {s['mean_quality']:.3f} | "
                         f"{_cell(s, 'mean_reward', 3)} | {s['mean_energy_j']:.3f} | "
                         f"{100 * s['deadline_miss_rate']:.1f} % | {100 * s['edge_share']:.1f} % |")
        by_latency = sorted(results, key=lambda n: results[n]["mean_latency_s"])
        orders.append(f"- {label}: by reward " + " > ".join(f"`{n}`" for n in _ranking(results, "mean_reward"))
                      + "; by latency " + " < ".join(f"`{n}`" for n in by_latency))
        print(f"{label}: done ({time.perf_counter() - started:.0f} s)", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = ("\n".join(lines) + "\n\nOrderings (mean over the seeds; ties within the CIs are not resolved):\n\n"
            + "\n".join(orders) + "\n\n" + f"{args.episodes} episodes (seeds {args.seed}..{args.seed + args.episodes - 1}) "
            f"per policy and scenario, `python scripts/trace_energy_results.py --episodes {args.episodes}`.\n")
    (out / "table.md").write_text(text)
    (out / "results.json").write_text(json.dumps(all_results, indent=1, sort_keys=True))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
