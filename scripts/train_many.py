"""Train several (algorithm, seed) agents in parallel, evaluate them against the built-ins, plot learning curves.

    python scripts/train_many.py --algos maskable_ppo,ppo --seeds 0,1,2 --timesteps 400000 --jobs 16 \\
        --time-limit 420 --out results/train_many

Every training is its own ``train.py`` process (``torch.set_num_threads(1)``, ``OMP_NUM_THREADS=1``)
with its own log folder ``<out>/runs/<algo>_seed<seed>/``; ``--time-limit`` stops each one gracefully
(a callback ends ``learn``; the best and final models are still saved). Each run picks its
``best_model.zip`` on the validation seeds 2000..; then every best model and the built-in policies are
evaluated with the harness on the held-out seeds 1000..1000+``--report-episodes`` (which selected
nothing), and ``<out>`` receives:

* ``results.json``: per-run and built-in summaries, per-algorithm means over seeds (95 % CI across
  seeds), paired differences against greedy (per held-out seed: agent minus greedy, averaged over the
  training seeds; mean and 95 % t-interval over the held-out seeds), and each job's status;
* ``results.md``: the same as Markdown tables;
* ``learning_curves.png``: validation mean reward vs timesteps (from each run's ``evaluations.json``),
  mean over seeds with a min-max band, greedy's validation level as a horizontal line.

``--skip-training`` re-evaluates the runs already in ``<out>``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TRAIN_PY = ROOT / "train.py"
if str(ROOT) not in sys.path:  # run as a plain script from a checkout
    sys.path.insert(0, str(ROOT))


@dataclass
class Job:
    """One training process."""

    algo: str
    seed: int
    log_folder: Path
    log_file: Path
    command: list[str] = field(default_factory=list)
    returncode: int | None = None
    wall_s: float = 0.0
    run_dir: Path | None = None
    timesteps: int = 0
    status: str = "pending"

    @property
    def label(self) -> str:
        return f"{self.algo} seed {self.seed}"


def _csv(text: str, kind: type) -> list[Any]:
    return [kind(part.strip()) for part in text.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Parallel (algo, seed) trainings on offload_gym, evaluated with the harness.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--algos", default="maskable_ppo,ppo", help="comma-separated algorithms (maskable_ppo, ppo, a2c, dqn)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    p.add_argument("--env", default="offload_gym/WifiOffload-v0", help="env id")
    p.add_argument("--config", default=None, help="scenario overrides (inline JSON or JSON/YAML file), passed to train.py")
    p.add_argument("--hyperparams", default=None, help="hyperparameter overrides passed to train.py")
    p.add_argument("--timesteps", type=int, default=None, help="per training (default: the YAML's n_timesteps)")
    p.add_argument("--n-envs", type=int, default=None, help="envs per training (default: the YAML's n_envs)")
    p.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                   help="wall clock per training, after which it stops gracefully and saves")
    p.add_argument("--eval-freq", type=int, default=20_000, help="held-out evaluation every N decisions (learning curve)")
    p.add_argument("--eval-episodes", type=int, default=10, help="validation seeds (2000..) for each run's evaluations")
    p.add_argument("--report-episodes", type=int, default=20, help="held-out seeds (1000..) for the final table")
    p.add_argument("--skip-training", action="store_true", help="only evaluate the runs already in --out")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="trainings run at once")
    p.add_argument("--out", default="results/train_many", help="output folder")
    p.add_argument("--device", default="cpu", help="torch device for the trainings")
    return p


# ---------------------------------------------------------------------------------------------- running
def make_jobs(args: argparse.Namespace, out: Path) -> list[Job]:
    jobs = []
    for algo in _csv(args.algos, str):
        for seed in _csv(args.seeds, int):
            folder = out / "runs" / f"{algo}_seed{seed}"
            cmd = [sys.executable, str(TRAIN_PY), "--algo", algo, "--env", args.env, "--seed", str(seed),
                   "--log-folder", str(folder), "--num-threads", "1", "--no-progress", "--no-compare",
                   "--eval-freq", str(args.eval_freq), "--eval-episodes", str(args.eval_episodes),
                   "--device", args.device]
            for flag, value in (("--timesteps", args.timesteps), ("--n-envs", args.n_envs),
                                ("--time-limit", args.time_limit), ("--config", args.config),
                                ("--hyperparams", args.hyperparams)):
                if value is not None:
                    cmd += [flag, str(value)]
            jobs.append(Job(algo, seed, folder, out / "runs" / f"{algo}_seed{seed}.log", cmd))
    return jobs


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def run_jobs(jobs: Sequence[Job], n_parallel: int, hard_limit_s: float | None) -> None:
    """Run the jobs, at most ``n_parallel`` at once; kill any that outlives ``hard_limit_s``."""
    pending = list(jobs)
    running: list[tuple[Job, subprocess.Popen[bytes], float, Any]] = []
    env = _child_env()
    try:
        while pending or running:
            while pending and len(running) < max(1, n_parallel):
                job = pending.pop(0)
                job.log_file.parent.mkdir(parents=True, exist_ok=True)
                fh = open(job.log_file, "wb")  # closed when the job ends
                proc = subprocess.Popen(job.command, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))
                job.status = "running"
                running.append((job, proc, time.time(), fh))
                print(f"[start] {job.label} (pid {proc.pid}) -> {job.log_file}", flush=True)
            time.sleep(0.5)
            still = []
            for job, proc, t0, fh in running:
                rc = proc.poll()
                if rc is None and hard_limit_s is not None and time.time() - t0 > hard_limit_s:
                    proc.send_signal(signal.SIGINT)  # train.py exits on KeyboardInterrupt; then force
                    try:
                        rc = proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        rc = proc.wait()
                    job.status = "killed"
                if rc is None:
                    still.append((job, proc, t0, fh))
                    continue
                fh.close()
                job.returncode, job.wall_s = rc, round(time.time() - t0, 1)
                if job.status != "killed":
                    job.status = "ok" if rc == 0 else "failed"
                print(f"[done ] {job.label}: {job.status} (exit {rc}, {job.wall_s:.0f} s)", flush=True)
            running = still
    except KeyboardInterrupt:
        for _, proc, _, fh in running:
            proc.terminate()
            proc.wait()
            fh.close()
        raise


def find_run_dir(job: Job) -> Path | None:
    """The newest run folder under the job's log folder."""
    runs = [d for d in (job.log_folder / job.algo).glob("*_*") if d.is_dir()]
    if not runs:
        return None
    return max(runs, key=lambda d: d.stat().st_mtime)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


# ---------------------------------------------------------------------------------------------- aggregation
def aggregate(summaries: Sequence[dict[str, float]], metrics: Sequence[str]) -> dict[str, float]:
    """Mean over runs of each metric and a 95 % t-interval half-width across runs (``<metric>_ci95``)."""
    from agents.evaluation import t_quantile

    out: dict[str, float] = {"runs": float(len(summaries))}
    for metric in metrics:
        values = [float(s[metric]) for s in summaries if metric in s and math.isfinite(float(s[metric]))]
        if not values:
            continue
        mean = sum(values) / len(values)
        out[metric] = mean
        if len(values) > 1:
            sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
            out[f"{metric}_ci95"] = t_quantile(0.975, len(values) - 1) * sd / math.sqrt(len(values))
        else:
            out[f"{metric}_ci95"] = math.nan
    return out


def learning_curves(jobs: Sequence[Job]) -> dict[str, dict[str, list[float]]]:
    """Per algorithm: a common timestep grid and the mean / min / max of held-out mean reward over seeds."""
    import numpy as np

    curves: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for job in jobs:
        if job.run_dir is None:
            continue
        evals = _read_json(job.run_dir / "evaluations.json").get("evaluations") or []
        points = sorted((float(e["timesteps"]), float(e["mean_reward"])) for e in evals
                        if "timesteps" in e and "mean_reward" in e)
        if points:
            xs, ys = zip(*points, strict=True)
            curves.setdefault(job.algo, []).append((np.array(xs), np.array(ys)))
    out: dict[str, dict[str, list[float]]] = {}
    for algo, runs in curves.items():
        grid = np.unique(np.concatenate([x for x, _ in runs]))
        mean, lo, hi, n = [], [], [], []
        for t in grid:
            vals = [float(np.interp(t, x, y)) for x, y in runs if x[0] <= t <= x[-1]]
            if not vals:
                vals = [float(y[-1]) for x, y in runs if t > x[-1]] or [math.nan]
            mean.append(float(np.mean(vals)))
            lo.append(float(np.min(vals)))
            hi.append(float(np.max(vals)))
            n.append(float(len(vals)))
        out[algo] = {"timesteps": grid.tolist(), "mean": mean, "min": lo, "max": hi, "runs": n}
    return out


def plot_learning_curves(path: Path, curves: dict[str, dict[str, list[float]]], greedy: float | None,
                         title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), constrained_layout=True)
    for algo, c in curves.items():
        (line,) = ax.plot(c["timesteps"], c["mean"], label=f"{algo} (mean over seeds)")
        ax.fill_between(c["timesteps"], c["min"], c["max"], color=line.get_color(), alpha=0.2)
    if greedy is not None and math.isfinite(greedy):
        ax.axhline(greedy, color="k", linestyle="--", label="greedy")
    ax.set_xlabel("timesteps (env decisions)")
    ax.set_ylabel("validation mean reward per query")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _aggregate_table(per_algo: dict[str, dict[str, float]], builtins: dict[str, dict[str, float]]) -> str:
    def cell(s: dict[str, float], key: str, digits: int = 3) -> str:
        v, ci = s.get(key, math.nan), s.get(f"{key}_ci95", math.nan)
        return f"{v:.{digits}f} ± {ci:.{digits}f}" if math.isfinite(ci) else f"{v:.{digits}f}"

    lines = ["| agent | runs | mean reward (±95 % CI over seeds) | mean latency (s) | mean quality | deadline miss |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, s in per_algo.items():
        lines.append(f"| `{name}` | {int(s.get('runs', 0))} | {cell(s, 'mean_reward')} | {cell(s, 'mean_latency_s')} | "
                     f"{cell(s, 'mean_quality')} | {100 * s.get('deadline_miss_rate', math.nan):.1f} % |")
    for name, s in builtins.items():
        lines.append(f"| `{name}` (built-in) | - | {s.get('mean_reward', math.nan):.3f} | "
                     f"{s.get('mean_latency_s', math.nan):.3f} | {s.get('mean_quality', math.nan):.3f} | "
                     f"{100 * s.get('deadline_miss_rate', math.nan):.1f} % |")
    return "\n".join(lines)


def evaluate_and_report(args: argparse.Namespace, jobs: Sequence[Job], out: Path) -> dict[str, Any]:
    import numpy as np

    from agents.callbacks import heldout_seeds
    from agents.evaluation import METRICS, evaluate_many, markdown_table, paired_difference, write_json
    from agents.policies import BUILTIN_POLICIES

    sys.path.insert(0, str(ROOT))
    from train import load_mapping

    config = load_mapping(args.config, "--config") or None
    seeds = heldout_seeds(args.report_episodes)
    models: dict[str, str] = {}
    for job in jobs:
        job.run_dir = find_run_dir(job)
        if job.run_dir is None:
            continue
        evals = _read_json(job.run_dir / "evaluations.json").get("evaluations") or []
        job.timesteps = int(max((e.get("timesteps", 0) for e in evals), default=0))
        best = job.run_dir / "best_model.zip"
        if best.is_file():
            models[str(best)] = job.label
    specs = [*BUILTIN_POLICIES, *models]
    print(f"[eval ] {len(BUILTIN_POLICIES)} built-ins and {len(models)} best models on {len(seeds)} held-out seeds",
          flush=True)
    episodes: dict[tuple[str, int], dict[str, float]] = {}
    raw = evaluate_many(specs, env_id=args.env, config=config, seeds=seeds, workers=max(1, args.jobs),
                        episodes_out=episodes)
    builtins = {k: v for k, v in raw.items() if k in BUILTIN_POLICIES}
    runs = {models[k]: v for k, v in raw.items() if k in models}
    per_algo: dict[str, dict[str, float]] = {}
    paired: dict[str, dict[str, float]] = {}
    for algo in dict.fromkeys(j.algo for j in jobs):
        summaries = [runs[j.label] for j in jobs if j.algo == algo and j.label in runs]
        if summaries:
            per_algo[algo] = aggregate(summaries, METRICS)
        specs_of_algo = [k for k, label in models.items() if label.startswith(f"{algo} seed")]
        if specs_of_algo:
            diffs = [float(np.mean([episodes[(k, s)]["mean_reward"] for k in specs_of_algo]))
                     - episodes[("greedy", s)]["mean_reward"] for s in seeds]
            paired[algo] = {**paired_difference(diffs), "runs": float(len(specs_of_algo))}
    for spec, label in models.items():
        paired[label] = paired_difference([episodes[(spec, s)]["mean_reward"] - episodes[("greedy", s)]["mean_reward"]
                                           for s in seeds])
    curves = learning_curves(jobs)
    greedy_val = [_read_json(j.run_dir / "evaluations.json").get("baseline_summary", {}).get("mean_reward")
                  for j in jobs if j.run_dir is not None]
    greedy = next((g for g in greedy_val if g is not None), None)
    plot_learning_curves(out / "learning_curves.png", curves, greedy,
                         f"{args.env}: validation mean reward ({args.eval_episodes} seeds), band = min..max over seeds")
    results = {
        "env_id": args.env, "config": config, "seeds": list(seeds),
        "builtins": builtins, "runs": runs, "algos": per_algo, "paired_vs_greedy": paired, "curves": curves,
        "jobs": [{**asdict(j), "log_folder": str(j.log_folder), "log_file": str(j.log_file),
                  "run_dir": str(j.run_dir) if j.run_dir else None} for j in jobs],
    }
    write_json(out / "results.json", results)
    md = [f"# train_many: {args.env}", "",
          f"Held-out seeds {seeds[0]}..{seeds[-1]} (each run's best model was picked on the validation seeds 2000..), "
          "deterministic policies.",
          "", "## Per algorithm (mean over training seeds, 95 % CI across seeds)", "",
          _aggregate_table(per_algo, builtins), "", "## Paired difference in mean reward against greedy",
          "", "Per held-out seed, agent minus greedy on the same queries; 95 % t-interval over the held-out seeds.", "",
          "| agent | difference | 95 % interval |", "|---|---:|---:|",
          *[f"| `{k}` | {v['mean']:+.4f} | [{v['lo']:+.4f}, {v['hi']:+.4f}] |" for k, v in paired.items()],
          "", "## Every run (best model) and the built-ins (95 % CI over episodes)",
          "", markdown_table({**builtins, **runs}), "", "## Jobs", "",
          "| run | status | timesteps | wall (s) | folder |", "|---|---|---:|---:|---|"]
    md += [f"| {j.label} | {j.status} | {j.timesteps} | {j.wall_s:.0f} | {j.run_dir} |" for j in jobs]
    (out / "results.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    return results


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from agents.algorithms import ALGOS

    algos = _csv(args.algos, str)
    unknown = [a for a in algos if a not in ALGOS]
    if unknown or not algos:
        print(f"train_many.py: error: --algos: unknown {unknown or 'empty list'}; allowed: {', '.join(ALGOS)}",
              file=sys.stderr)
        return 2
    try:
        seeds = _csv(args.seeds, int)
    except ValueError:
        seeds = []
    if not seeds:
        print(f"train_many.py: error: --seeds: {args.seeds!r} is not a comma-separated list of integers", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = make_jobs(args, out)
    hard = None if args.time_limit is None else 1.5 * args.time_limit + 120.0
    t0 = time.time()
    if args.skip_training:
        for job in jobs:
            job.status = "ok" if find_run_dir(job) is not None else "missing"
    else:
        run_jobs(jobs, args.jobs, hard)
        print(f"[train] {len(jobs)} trainings in {time.time() - t0:.0f} s", flush=True)
    evaluate_and_report(args, jobs, out)
    print((out / "results.md").read_text(encoding="utf-8"))
    print(f"wrote {out / 'results.json'}, {out / 'results.md'}, {out / 'learning_curves.png'}")
    failed = [j.label for j in jobs if j.status != "ok"]
    if failed:
        print(f"warning: {len(failed)} job(s) did not finish cleanly: {', '.join(failed)} (see their .log files)",
              file=sys.stderr)
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
