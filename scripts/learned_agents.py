"""Train learned schedulers in several regimes and compare them with greedy (the README's "Learned agents").

    python scripts/learned_agents.py                      # every experiment, 3 seeds each, 2 at a time
    python scripts/learned_agents.py --only paper,70b --seeds 0,1,2 --jobs 2
    python scripts/learned_agents.py --skip-training      # re-evaluate and re-plot what is in --runs

Each experiment is one ``scripts/train_many.py`` call (an interface, a scenario, hyperparameters from the
YAML plus the experiment's overrides; best models picked on the validation seeds 2000..), evaluated
with greedy on the held-out seeds 1000..1019. This writes ``<out>/<experiment>/results.{json,md}`` and
``learning_curves.png`` per experiment, and ``<out>/summary.{json,md}`` and
``docs/img/learned_agents.png`` over all of them. Run folders (models, TensorBoard logs) go to
``--runs`` (default ``runs/learned_agents``, not committed).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESIDUAL = "offload_gym/WifiOffload-residual-v0"
QUERY = "offload_gym/WifiOffload-query-v0"


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    env_id: str
    config: dict[str, Any] = field(default_factory=dict)
    hyperparams: dict[str, Any] = field(default_factory=dict)
    why: str = ""


EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment("paper", "paper scenario, residual", RESIDUAL, why="the default: does the agent at least match greedy?"),
    Experiment("70b", "70B edge, residual", RESIDUAL, {"edge": {"model": "70B"}},
               why="greedy's estimates project only committed streams: optimistic on a 9 tok/s edge"),
    Experiment("users40", "40 phones, residual", RESIDUAL, {"topology": {"n_users": 40}},
               why="double the load: greedy's per-query estimates ignore the queries still to come"),
    Experiment("users40_long", "40 phones, residual, smoothing 0.5, 200k decisions", RESIDUAL,
               {"topology": {"n_users": 40}}, hyperparams={"bc_smoothing": 0.5, "n_timesteps": 200_000},
               why="the same regime with more exploration and twice the decisions"),
    Experiment("inflation14", "subtask inflation 1.4, residual", RESIDUAL, {"workload": {"subtask_output_inflation": 1.4}},
               why="decomposition costs more output than greedy's plan estimate assumes"),
    Experiment("noisy_planner", "planner difficulty noise 1.5, residual", RESIDUAL,
               {"planner": {"difficulty_noise_sigma": 1.5}},
               why="greedy takes the predicted difficulty at face value; the truth regresses to the mean"),
    Experiment("paper_query", "paper scenario, query interface", QUERY,
               why="the agent picks every placement itself, warm-started from greedy"),
    Experiment("paper_query_nobc", "paper scenario, query interface, no warm start", QUERY,
               hyperparams={"bc_decisions": 0}, why="per-query credit alone, from a random policy"),
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--only", default=None, help=f"comma-separated experiments ({', '.join(e.name for e in EXPERIMENTS)})")
    p.add_argument("--algo", default="maskable_ppo", help="algorithm for every experiment")
    p.add_argument("--seeds", default="0,1,2", help="training seeds")
    p.add_argument("--timesteps", type=int, default=None, help="per training (default: the YAML's n_timesteps)")
    p.add_argument("--jobs", type=int, default=2, help="trainings at once")
    p.add_argument("--eval-freq", type=int, default=10_000, help="validation evaluation every N decisions")
    p.add_argument("--report-episodes", type=int, default=20, help="held-out seeds 1000.. for the final tables")
    p.add_argument("--runs", default="runs/learned_agents", help="run folders (models, logs)")
    p.add_argument("--out", default="docs/results/learned_agents", help="results folder")
    p.add_argument("--plot", default="docs/img/learned_agents.png", help="summary figure")
    p.add_argument("--skip-training", action="store_true", help="only evaluate the runs already in --runs")
    return p


def _run_experiment(args: argparse.Namespace, exp: Experiment) -> dict[str, Any]:
    import train_many

    out = Path(args.out) / exp.name
    runs = Path(args.runs) / exp.name
    argv = ["--algos", args.algo, "--seeds", args.seeds, "--env", exp.env_id, "--jobs", str(args.jobs),
            "--eval-freq", str(args.eval_freq), "--eval-episodes", "10", "--report-episodes", str(args.report_episodes),
            "--out", str(runs)]
    if exp.config:
        argv += ["--config", json.dumps(exp.config)]
    if exp.hyperparams:
        argv += ["--hyperparams", json.dumps(exp.hyperparams)]
    if args.timesteps is not None:
        argv += ["--timesteps", str(args.timesteps)]
    if args.skip_training:
        argv.append("--skip-training")
    t0 = time.time()
    train_many.main(argv)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("results.json", "results.md", "learning_curves.png"):
        src = runs / name
        if src.is_file():
            (out / name).write_bytes(src.read_bytes())
    results = json.loads((runs / "results.json").read_text(encoding="utf-8"))
    return {"experiment": exp, "results": results, "wall_s": time.time() - t0}


def _wall_and_steps(results: dict[str, Any]) -> tuple[float, float]:
    jobs = [j for j in results.get("jobs", []) if j.get("status") == "ok"]
    if not jobs:
        return math.nan, math.nan
    return (sum(j["wall_s"] for j in jobs) / len(jobs), sum(j["timesteps"] for j in jobs) / len(jobs))


def summary_markdown(done: list[dict[str, Any]], algo: str) -> str:
    lines = ["| experiment | agent reward | greedy reward | agent - greedy (paired, 95 % interval) | verdict | "
             "decomposed (agent / greedy) | decisions | wall per run (2 at a time) |",
             "|---|---:|---:|---:|---|---:|---:|---:|"]
    for d in done:
        exp, res = d["experiment"], d["results"]
        agent = res["algos"].get(algo, {})
        greedy = res["builtins"].get("greedy", {})
        diff = res["paired_vs_greedy"].get(algo, {})
        lo, hi = diff.get("lo", math.nan), diff.get("hi", math.nan)
        verdict = "beats greedy" if lo > 0 else ("matches greedy" if hi >= 0 else "below greedy")
        wall, steps = _wall_and_steps(res)
        lines.append(
            f"| {exp.title} | {agent.get('mean_reward', math.nan):.4f} | {greedy.get('mean_reward', math.nan):.4f} | "
            f"{diff.get('mean', math.nan):+.4f} [{lo:+.4f}, {hi:+.4f}] | {verdict} | "
            f"{100 * agent.get('decomposed_share', math.nan):.0f} % / "
            f"{100 * greedy.get('decomposed_share', math.nan):.0f} % | {steps:,.0f} | {wall / 60:.1f} min |")
    return "\n".join(lines)


def plot_summary(path: Path, done: list[dict[str, Any]], algo: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(done)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), constrained_layout=True, squeeze=False)
    for ax, d in zip(axes.flat, done, strict=False):
        res = d["results"]
        curve = res.get("curves", {}).get(algo)
        if curve:
            (line,) = ax.plot(curve["timesteps"], curve["mean"], label=f"{algo} (mean of {int(max(curve['runs']))})")
            ax.fill_between(curve["timesteps"], curve["min"], curve["max"], color=line.get_color(), alpha=0.2)
        greedy_val = None
        for job in res.get("jobs", []):
            run_dir = job.get("run_dir")
            if run_dir and Path(run_dir, "evaluations.json").is_file():
                greedy_val = json.loads(Path(run_dir, "evaluations.json").read_text()).get("baseline_summary", {}).get(
                    "mean_reward")
                break
        if greedy_val is not None:
            ax.axhline(greedy_val, color="k", linestyle="--", label="greedy")
        ax.set_title(d["experiment"].title, fontsize=10)
        ax.set_xlabel("decisions")
        ax.set_ylabel("validation mean reward")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sys.path.insert(0, str(ROOT / "scripts"))
    chosen = EXPERIMENTS
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in {e.name for e in EXPERIMENTS}]
        if unknown:
            print(f"learned_agents.py: error: --only: unknown {unknown}; allowed: {[e.name for e in EXPERIMENTS]}",
                  file=sys.stderr)
            return 2
        chosen = tuple(e for e in EXPERIMENTS if e.name in names)
    done = [_run_experiment(args, exp) for exp in chosen]
    out = Path(args.out)
    # keep the rows of experiments not rerun this time
    previous = out / "summary.json"
    kept: list[dict[str, Any]] = []
    if args.only and previous.is_file():
        rerun = {d["experiment"].name for d in done}
        by_name = {e.name: e for e in EXPERIMENTS}
        for row in json.loads(previous.read_text(encoding="utf-8")):
            if row["name"] not in rerun and row["name"] in by_name and (out / row["name"] / "results.json").is_file():
                kept.append({"experiment": by_name[row["name"]], "wall_s": row.get("wall_s", math.nan),
                             "results": json.loads((out / row["name"] / "results.json").read_text(encoding="utf-8"))})
    order = {e.name: i for i, e in enumerate(EXPERIMENTS)}
    rows = sorted(kept + done, key=lambda d: order[d["experiment"].name])
    table = summary_markdown(rows, args.algo)
    (out / "summary.md").write_text(
        f"Command: `python scripts/learned_agents.py` ({args.algo}, seeds {args.seeds}; held-out seeds "
        f"1000..{1000 + args.report_episodes - 1}).\n\n{table}\n", encoding="utf-8")
    (out / "summary.json").write_text(json.dumps(
        [{"name": d["experiment"].name, "title": d["experiment"].title, "env_id": d["experiment"].env_id,
          "config": d["experiment"].config, "hyperparams": d["experiment"].hyperparams, "why": d["experiment"].why,
          "wall_s": d["wall_s"], "paired_vs_greedy": d["results"]["paired_vs_greedy"]} for d in rows], indent=2),
        encoding="utf-8")
    plot_summary(Path(args.plot), rows, args.algo)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
