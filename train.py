"""Train a Stable-Baselines3 / sb3-contrib agent on offload_gym (RL-Zoo-style command line).

    python train.py                                   # MaskablePPO, paper scenario, residual interface, ~5 min on 2 cores
    python train.py --algo ppo --env offload_gym/WifiOffload-tiny-v0 --timesteps 20000
    python train.py --config '{"edge": {"kappa": 0.1}}' --seed 3 --n-envs 4
    python train.py --resume logs/maskable_ppo/WifiOffload-v0_1/checkpoints/rl_model_100000_steps.zip

    python train.py --env offload_gym/WifiOffload-v0 # the item interface (every subtask is a decision)

Each run gets ``<log-folder>/<algo>/<env-name>_<n>/`` with ``config.yml`` (resolved scenario and
hyperparameters), ``args.yml``, ``command.txt``, TensorBoard logs (``tb/``), ``checkpoints/``,
``monitor/``, ``best_model.zip`` (best mean reward on the validation seeds 2000..),
``final_model.zip``, each with a ``.json`` sidecar naming the env it was trained on (``env_id``,
``config``: ``evaluate.py`` reads it), ``evaluations.json`` and ``comparison.{md,json}`` (the agent
against the built-in policies on the held-out seeds 1000.., which selected nothing). Bad arguments print
one ``train.py: error: ...`` line and exit with code 2.

Credit and warm start (flags, or the same keys in the hyperparameter YAML): ``--credit query`` scores
each decision by the reward of the query it placed; ``--gamma-per-s G`` discounts by simulated time
(:mod:`agents.credit`); ``--bc-decisions N`` clones the built-in scheduler from N of its decisions
(policy and critic) before PPO starts (:mod:`agents.imitation`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from agents.cli import UsageError, load_mapping

EXIT_USAGE = 2
__all__ = ["UsageError", "build_parser", "load_mapping", "main", "make_run_dir", "train"]


# ---------------------------------------------------------------------------------------------- arguments
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train an RL scheduler on offload_gym (SB3 / sb3-contrib).",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--algo", default="maskable_ppo", help="maskable_ppo, ppo, a2c or dqn")
    p.add_argument("--env", default="offload_gym/WifiOffload-residual-v0",
                   help="registered env id (default: the paper scenario behind the residual interface, the recipe that "
                        "matches greedy; offload_gym/WifiOffload-v0 for the item interface)")
    p.add_argument("--config", default=None,
                   help="scenario overrides: inline JSON or a JSON/YAML file (e.g. '{\"edge\": {\"kappa\": 0.1}}')")
    p.add_argument("--hyperparams", "-params", default=None,
                   help="hyperparameter overrides on top of agents/hyperparams/<algo>.yml: inline JSON/YAML or a file")
    p.add_argument("--timesteps", "-n", type=int, default=None,
                   help="env decisions to train for (default: n_timesteps of the YAML; with --resume: additional steps)")
    p.add_argument("--n-envs", type=int, default=None, help="parallel envs (default: n_envs of the YAML)")
    p.add_argument("--seed", type=int, default=0, help="random seed (-1: draw one and print it)")
    p.add_argument("--vec-env", default="dummy", choices=["dummy", "subproc", "batched"],
                   help="VecEnv kind (batched: all envs in one compiled call)")
    p.add_argument("--start-method", default=None, help="multiprocessing start method for subproc (default forkserver)")
    p.add_argument("--eval-freq", type=int, default=20_000,
                   help="evaluate on the validation seeds (2000..) every N env decisions (all envs together); "
                        "<=0: only at the end")
    p.add_argument("--eval-episodes", type=int, default=10,
                   help="episodes per evaluation: validation seeds 2000.. during training, held-out 1000.. "
                        "in the final comparison")
    p.add_argument("--save-freq", type=int, default=100_000, help="checkpoint every N env decisions; <=0: none")
    p.add_argument("--log-folder", "-f", default="logs", help="root of the run folders")
    p.add_argument("--tensorboard", "-tb", default=None, help="TensorBoard log dir (default: <run folder>/tb)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, auto)")
    p.add_argument("--credit", default=None, choices=["step", "query"],
                   help="step: the env's reward per step; query: each decision scored by the reward of the query it "
                        "placed (default: credit of the YAML, else step)")
    p.add_argument("--gamma-per-s", type=float, default=None, metavar="G",
                   help="discount per simulated second instead of gamma per decision (default: gamma_per_s of the "
                        "YAML, else per-decision gamma)")
    p.add_argument("--bc-decisions", type=int, default=None, metavar="N",
                   help="warm start: behaviour-clone the built-in scheduler from N of its decisions before training "
                        "(default: bc_decisions of the YAML, else 0 = off)")
    p.add_argument("--bc-dataset", default=None, metavar="PATH",
                   help="warm start from a dataset written by python -m agents.imitation instead of collecting one")
    p.add_argument("--bc-epochs", type=int, default=None, help="behaviour-cloning epochs (default: YAML bc_epochs, else 10)")

    p.add_argument("--num-threads", type=int, default=1,
                   help="torch threads (1 is fastest for these small networks, and far faster on a busy machine)")
    p.add_argument("--resume", default=None, metavar="PATH",
                   help="continue from a saved model / checkpoint zip (num_timesteps keeps counting)")
    p.add_argument("--trust-model", action="store_true",
                   help="let the --resume file be unpickled (runs code stored in it): only for files you made. Without "
                        "it the model is rebuilt from its JSON entries, the YAML's schedules and its weights")
    p.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                   help="stop training gracefully after this much wall clock (models are still saved)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: on when stdout is a terminal)")
    p.add_argument("--compare", action=argparse.BooleanOptionalAction, default=True,
                   help="at the end, evaluate the agent and the built-in policies on the held-out seeds and print a table")
    p.add_argument("--verbose", "-v", type=int, default=1, help="0 quiet, 1 evaluations, 2 also SB3's training tables")
    return p


def make_run_dir(log_folder: str | Path, algo: str, env_name: str) -> Path:
    """Create ``<log_folder>/<algo>/<env_name>_<n>`` with the next free ``n`` (safe against parallel runs)."""
    parent = Path(log_folder) / algo
    parent.mkdir(parents=True, exist_ok=True)
    taken = []
    for d in parent.glob(f"{env_name}_*"):
        suffix = d.name[len(env_name) + 1:]
        if suffix.isdigit():
            taken.append(int(suffix))
    n = max(taken, default=0) + 1
    while True:
        run_dir = parent / f"{env_name}_{n}"
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            n += 1


def _plain(value: Any) -> Any:
    """JSON round trip: tuples to lists, everything YAML-safe."""
    return json.loads(json.dumps(value, default=str))


def _write_yaml(path: Path, data: Any) -> None:
    import yaml

    path.write_text(yaml.safe_dump(_plain(data), sort_keys=False, default_flow_style=False), encoding="utf-8")


# ---------------------------------------------------------------------------------------------- setup
def _resolve(args: argparse.Namespace) -> dict[str, Any]:
    """Validate algo, env, hyperparameters and scenario config; raise UsageError with one line otherwise."""
    import gymnasium as gym

    from agents.algorithms import HyperparamError, algo_kwargs, check_algo, check_hyperparam_values, load_hyperparams
    from agents.sb3_setup import check_env_id
    from offload_gym.config import merge_overrides

    try:
        check_algo(args.algo)
        spec = check_env_id(args.env)
        entry = load_hyperparams(args.algo, args.env, load_mapping(args.hyperparams, "--hyperparams"))
        kwargs = algo_kwargs(args.algo, entry)
    except (HyperparamError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    env_kwargs = dict(entry.get("env_kwargs") or {})
    overrides = load_mapping(args.config, "--config")
    if overrides:
        env_kwargs["config"] = merge_overrides(env_kwargs.get("config") or {}, overrides)
    try:
        probe = gym.make(spec, **env_kwargs)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"--config: {exc}") from None
    scenario = probe.unwrapped.config.to_dict()  # type: ignore[attr-defined]
    probe.close()
    n_envs = args.n_envs if args.n_envs is not None else int(entry.get("n_envs", 1))
    timesteps = args.timesteps if args.timesteps is not None else int(entry.get("n_timesteps", 100_000))
    if n_envs < 1:
        raise UsageError(f"--n-envs: must be at least 1, got {n_envs}")
    if timesteps < 1:
        raise UsageError(f"--timesteps: must be at least 1, got {timesteps}")
    if args.eval_episodes < 1:
        raise UsageError(f"--eval-episodes: must be at least 1, got {args.eval_episodes}")
    if args.time_limit is not None and not (args.time_limit > 0 and math.isfinite(args.time_limit)):
        raise UsageError(f"--time-limit: must be a positive number of seconds, got {args.time_limit}")
    _check_folder("--log-folder", args.log_folder)
    if args.tensorboard is not None:
        _check_folder("--tensorboard", args.tensorboard)
    _check_device(args.device)
    if args.vec_env == "subproc" and args.start_method is not None:
        import multiprocessing as mp

        if args.start_method not in mp.get_all_start_methods():
            raise UsageError(f"--start-method: {args.start_method!r} is not available here; choose one of "
                             f"{', '.join(mp.get_all_start_methods())}")
    try:
        check_hyperparam_values(args.algo, kwargs)
    except HyperparamError as exc:
        raise UsageError(str(exc)) from None
    if args.resume is not None and not Path(args.resume).is_file():
        if Path(args.resume + ".zip").is_file():
            args.resume = args.resume + ".zip"
        else:
            raise UsageError(f"--resume: no such file {args.resume!r}; expected a model or checkpoint .zip")
    if args.resume is not None:
        _check_resume_file(args.resume, args.algo)
    learning = _resolve_learning(args, entry)
    return {"spec": spec, "entry": entry, "kwargs": kwargs, "env_kwargs": env_kwargs, "scenario": scenario,
            "n_envs": n_envs, "timesteps": timesteps, **learning}


def _check_folder(flag: str, folder: str) -> None:
    """``folder`` exists as a writable folder or can be made; UsageError naming ``flag`` otherwise."""
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag}: {folder!r} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{flag}: cannot create the folder {folder!r} ({exc.strerror or exc})") from None
    if not os.access(path, os.W_OK):
        raise UsageError(f"{flag}: the folder {folder!r} is not writable")


def _check_device(device: str) -> None:
    import torch

    if device == "auto":  # SB3's own: cuda when available, else cpu
        return
    try:
        torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(f"--device: {device!r} is not a torch device; use cpu, cuda, cuda:N or auto") from None


def _resolve_learning(args: argparse.Namespace, entry: dict[str, Any]) -> dict[str, Any]:
    """Credit, time discount and warm start: the flag, else the YAML key, else off; UsageError when bad."""
    credit = args.credit if args.credit is not None else str(entry.get("credit", "step"))
    if credit not in ("step", "query"):
        raise UsageError(f"hyperparams: credit: {credit!r} is not allowed; choose step or query")
    gamma_per_s = args.gamma_per_s if args.gamma_per_s is not None else entry.get("gamma_per_s")
    if gamma_per_s is not None:
        try:
            gamma_per_s = float(gamma_per_s)
        except (TypeError, ValueError):
            raise UsageError(f"--gamma-per-s: {gamma_per_s!r} is not a number") from None
        if not 0.0 <= gamma_per_s <= 1.0:
            raise UsageError(f"--gamma-per-s: {gamma_per_s!r} is out of range; must be in [0, 1]")
    bc_decisions = args.bc_decisions if args.bc_decisions is not None else int(entry.get("bc_decisions", 0) or 0)
    bc_epochs = args.bc_epochs if args.bc_epochs is not None else int(entry.get("bc_epochs", 10))
    bc_smoothing = float(entry.get("bc_smoothing", 0.0))
    if not 0.0 <= bc_smoothing < 1.0:
        raise UsageError(f"hyperparams: bc_smoothing: {bc_smoothing!r} is out of range; must be in [0, 1)")
    if bc_decisions < 0:
        raise UsageError(f"--bc-decisions: must be >= 0, got {bc_decisions}")
    if bc_epochs < 1:
        raise UsageError(f"--bc-epochs: must be at least 1, got {bc_epochs}")
    if args.bc_dataset is not None and not Path(args.bc_dataset).is_file():
        raise UsageError(f"--bc-dataset: no such file {args.bc_dataset!r}; write one with python -m agents.imitation")
    warm = bc_decisions > 0 or args.bc_dataset is not None
    if args.algo == "dqn" and (credit != "step" or gamma_per_s is not None or warm):
        raise UsageError("--algo dqn: credit, gamma_per_s and behaviour cloning need an on-policy actor-critic "
                         "(maskable_ppo, ppo, a2c)")
    if warm and args.resume is not None:
        raise UsageError("--bc-decisions / --bc-dataset: a resumed model is already trained; drop the warm start")
    return {"credit": credit, "gamma_per_s": gamma_per_s, "bc_decisions": bc_decisions, "bc_epochs": bc_epochs,
            "bc_smoothing": bc_smoothing}


def _check_resume_file(path: str, algo: str) -> None:
    """A readable SB3 zip saved by ``algo``'s class; UsageError naming what is wrong otherwise."""
    import zipfile

    from agents.algorithms import ALGOS
    from agents.policies import detect_sb3_algorithm

    try:
        with zipfile.ZipFile(path) as zf:
            if "data" not in zf.namelist():
                raise UsageError(f"--resume: {path!r} is a zip but not a Stable-Baselines3 model (no 'data' entry)")
        saved_by = detect_sb3_algorithm(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        msg = str(exc).removeprefix("policy: ").split("; expected")[0]
        raise UsageError(f"--resume: {path!r} is not a readable Stable-Baselines3 model ({msg})") from None
    expected = ALGOS[algo].__name__
    if saved_by is not None and saved_by != expected:
        hint = next((k for k, v in ALGOS.items() if v.__name__ == saved_by), saved_by)
        raise UsageError(f"--resume: {path!r} was saved by {saved_by}, not {expected}; pass --algo {hint}")


def _load_for_resume(args: argparse.Namespace, env: Any, tb_dir: str, kwargs: dict[str, Any]) -> Any:
    from agents.algorithms import ALGOS
    from agents.policies import PolicyLoadError, load_sb3_model

    algo_cls = ALGOS[args.algo]
    # schedules come from the hyperparameters, not from pickles in the file
    overrides = {k: kwargs[k] for k in ("learning_rate", "clip_range", "clip_range_vf", "train_freq")
                 if kwargs.get(k) is not None}
    try:
        return load_sb3_model(args.resume, algo_cls.__name__, trust=args.trust_model, overrides=overrides,
                              spaces=(env.observation_space, env.action_space), env=env, device=args.device,
                              tensorboard_log=tb_dir)
    except PolicyLoadError as exc:
        raise UsageError(f"--resume: {str(exc).removeprefix('policy: ')}") from None
    except Exception as exc:
        msg = " ".join(str(exc).split())[:300]
        raise UsageError(f"--resume: cannot load {args.resume!r} as {algo_cls.__name__} for {args.env} "
                         f"({type(exc).__name__}: {msg})") from None


def _warm_start(args: argparse.Namespace, r: dict[str, Any], model: Any, run_dir: Path) -> None:
    """Behaviour-clone the built-in scheduler into ``model`` (actor and critic); writes ``bc.json``."""
    from agents.imitation import collect, load_dataset, pretrain, value_targets

    start = time.time()
    if args.bc_dataset is not None:
        try:
            data, meta = load_dataset(args.bc_dataset)
            if meta.get("env_id") not in (None, args.env):
                raise ValueError(f"it was collected on {meta.get('env_id')!r}, not on --env {args.env!r}")
        except ValueError as exc:
            raise UsageError(f"--bc-dataset: {exc}") from None
        source = f"dataset {args.bc_dataset}"
    else:
        # seeds 10_000.. : clear of the training envs' first seeds, the held-out 1000.. and validation 2000..
        data = collect(args.env, r["bc_decisions"], config=r["env_kwargs"].get("config"), seed=10_000 + args.seed)
        source = f"{len(data['actions'])} decisions of the built-in scheduler"
    targets = value_targets(data, credit=r["credit"], gamma=float(model.gamma), gamma_per_s=r["gamma_per_s"])
    try:
        stats = pretrain(model, data, epochs=r["bc_epochs"], value_targets=targets, smoothing=r["bc_smoothing"],
                         seed=args.seed, verbose=int(args.verbose >= 2))
    except ValueError as exc:
        raise UsageError(f"--bc-dataset: {exc}") from None
    stats.update(source=source, decisions=len(data["actions"]), seconds=time.time() - start)
    (run_dir / "bc.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    if args.verbose:
        print(f"warm start: cloned {source} in {stats['seconds']:.0f} s, accuracy {stats['accuracy']:.3f}, "
              f"critic MSE {stats['value_loss']:.4f}")


def _compare(args: argparse.Namespace, run_dir: Path, config: dict[str, Any] | None, seeds: tuple[int, ...]) -> str:
    """Agent (best and final model) vs the built-ins on the held-out seeds; writes comparison.{md,json}."""
    from agents.evaluation import evaluate_many, markdown_table, write_json
    from agents.policies import BUILTIN_POLICIES

    agents = {f"{args.algo} (best)": run_dir / "best_model.zip", f"{args.algo} (final)": run_dir / "final_model.zip"}
    specs = [*BUILTIN_POLICIES, *(str(p) for p in agents.values() if p.is_file())]
    raw = evaluate_many(specs, env_id=args.env, config=config, seeds=seeds, progress=bool(args.progress))
    names = {str(p): label for label, p in agents.items()}
    results = {names.get(k, k): v for k, v in raw.items()}
    table = markdown_table(results)
    header = (f"{args.env}, {len(seeds)} held-out seeds {seeds[0]}..{seeds[-1]} (best_model was picked on the "
              "validation seeds 2000.., not these), deterministic policies\n\n")
    (run_dir / "comparison.md").write_text(header + table + "\n", encoding="utf-8")
    write_json(run_dir / "comparison.json", results)
    return table


def train(args: argparse.Namespace) -> Path:
    """Run one training as described by the parsed ``args``; returns the run folder."""
    import numpy as np
    import torch

    if args.num_threads is not None and args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    if args.seed is None or args.seed < 0:
        args.seed = int(np.random.SeedSequence().entropy % (2**31))
        print(f"seed: {args.seed}")
    if args.progress is None:
        args.progress = sys.stdout.isatty()
    r = _resolve(args)

    from agents.sb3_setup import env_name

    run_dir = make_run_dir(args.log_folder, args.algo, env_name(args.env))
    try:
        return _train_in(args, r, run_dir)
    except BaseException as exc:
        _remove_failed_run(run_dir, interrupted=isinstance(exc, KeyboardInterrupt))
        raise


def _remove_failed_run(run_dir: Path, interrupted: bool) -> None:
    """A run that failed before it saved any model leaves no folder behind (nor empty parents)."""
    if interrupted or any(run_dir.rglob("*.zip")):
        return  # something was trained: keep it
    shutil.rmtree(run_dir, ignore_errors=True)
    for parent in (run_dir.parent, run_dir.parent.parent):
        with contextlib.suppress(OSError):
            parent.rmdir()  # only if empty


def _train_in(args: argparse.Namespace, r: dict[str, Any], run_dir: Path) -> Path:
    """The training proper, writing into ``run_dir``."""
    from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback

    from agents.algorithms import ALGOS
    from agents.callbacks import (
        EpisodeMetricsCallback,
        HarnessEvalCallback,
        ProgressBarCallback,
        ProgressLogCallback,
        TimeLimitCallback,
        heldout_seeds,
        validation_seeds,
    )
    from agents.credit import CreditCallback
    from agents.sb3_setup import make_vec_env

    seeds = heldout_seeds(args.eval_episodes)
    val_seeds = validation_seeds(args.eval_episodes)
    tb_dir = str(Path(args.tensorboard) if args.tensorboard else run_dir / "tb")
    (run_dir / "command.txt").write_text(shlex.join([sys.executable, *sys.argv]) + "\n", encoding="utf-8")
    _write_yaml(run_dir / "args.yml", vars(args))
    _write_yaml(run_dir / "config.yml", {
        "algo": args.algo, "env_id": args.env, "n_envs": r["n_envs"], "n_timesteps": r["timesteps"], "seed": args.seed,
        "resumed_from": args.resume, "hyperparams": r["entry"], "env_kwargs": r["env_kwargs"], "scenario": r["scenario"],
        "credit": r["credit"], "gamma_per_s": r["gamma_per_s"], "bc_decisions": r["bc_decisions"],
        "bc_dataset": args.bc_dataset, "validation_seeds": list(val_seeds),
    })
    sidecar = {"env_id": args.env, "config": r["env_kwargs"].get("config") or {}, "algo": args.algo,
               "command": shlex.join(["python", "train.py", *sys.argv[1:]])}
    for name in ("best_model", "final_model"):  # evaluate.py runs a model on the env its sidecar names
        (run_dir / f"{name}.json").write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
    if args.verbose:
        print(f"run folder: {run_dir}")

    config = r["env_kwargs"].get("config")
    env = make_vec_env(r["spec"], r["n_envs"], seed=args.seed, env_kwargs=r["env_kwargs"], vec_env=args.vec_env,
                       start_method=args.start_method, monitor_dir=run_dir / "monitor")
    try:
        if args.resume is not None:
            model = _load_for_resume(args, env, tb_dir, r["kwargs"])
        else:
            model = ALGOS[args.algo](env=env, seed=args.seed, device=args.device, tensorboard_log=tb_dir,
                                     verbose=1 if args.verbose >= 2 else 0, **r["kwargs"])
            if r["bc_decisions"] > 0 or args.bc_dataset is not None:
                _warm_start(args, r, model, run_dir)
        eval_calls = max(args.eval_freq // r["n_envs"], 1) if args.eval_freq > 0 else 0
        callbacks = [
            # first, so that the buffer is relabelled before any other callback reads it
            CreditCallback(r["credit"], r["gamma_per_s"]),
            EpisodeMetricsCallback(),
            HarnessEvalCallback(env_id=args.env, config=config, seeds=val_seeds, eval_freq=eval_calls, run_dir=run_dir,
                                verbose=args.verbose),
            TimeLimitCallback(args.time_limit, verbose=args.verbose),
        ]
        if args.save_freq > 0:
            callbacks.append(CheckpointCallback(save_freq=max(args.save_freq // r["n_envs"], 1),
                                                save_path=str(run_dir / "checkpoints"), name_prefix="rl_model"))
        # SB3 finishes the rollout it is in: show the steps it really runs (learning-rate schedules still count
        # against --timesteps, as they always did)
        total = _whole_rollouts(r["timesteps"], r["kwargs"], r["n_envs"])
        if total != r["timesteps"] and args.verbose:
            print(f"--timesteps {r['timesteps']:,} runs {total:,} steps: whole rollouts of n_steps x n_envs = "
                  f"{int(r['kwargs']['n_steps']) * r['n_envs']:,}")
        if args.progress:
            callbacks.append(ProgressBarCallback(total))
        elif args.verbose:  # a log, not a terminal: lines instead of a bar
            callbacks.append(ProgressLogCallback(total, every=max(total // 10, 1)))
        start = time.time()
        interrupted = False
        try:
            model.learn(total_timesteps=r["timesteps"], callback=CallbackList(callbacks),
                        progress_bar=False, tb_log_name=args.algo, reset_num_timesteps=args.resume is None)
        except KeyboardInterrupt:  # zoo behaviour: Ctrl-C stops training, the model is still saved
            interrupted = True
            print(f"train.py: interrupted at {model.num_timesteps} steps; saving the model", file=sys.stderr)
        elapsed = time.time() - start
        model.save(run_dir / "final_model")
    finally:
        env.close()
    if args.verbose:
        rate = model.num_timesteps / max(elapsed, 1e-9)
        print(f"trained {model.num_timesteps} steps in {elapsed:.0f} s ({rate:.0f} steps/s incl. evaluations); "
              f"saved {run_dir / 'final_model.zip'}")
    if interrupted:
        raise KeyboardInterrupt
    if args.compare:
        table = _compare(args, run_dir, config, seeds)
        print(f"\n{args.env}, held-out seeds {seeds[0]}..{seeds[-1]}:\n")
        print(table)
    return run_dir


def _whole_rollouts(timesteps: int, kwargs: dict[str, Any], n_envs: int) -> int:
    """The steps an on-policy algorithm really runs: SB3 finishes the rollout it is in (``n_steps`` per env)."""
    n_steps = kwargs.get("n_steps")
    if not n_steps:
        return timesteps
    rollout = int(n_steps) * n_envs
    return -(-timesteps // rollout) * rollout


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        train(args)
    except UsageError as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("train.py: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
