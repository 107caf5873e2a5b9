"""Behaviour cloning of the built-in scheduler: expert datasets and a warm start for SB3 policies.

Every offload_gym env exposes its built-in scheduler's action for the pending decision through
``env.unwrapped.expert_action()`` (greedy in the ``item`` and ``query`` interfaces, "follow" in
``residual``). This module plays episodes with it and records what a warm start needs:

* :func:`collect` / the command line writes a dataset (``.npz``, no pickles): observations, action masks,
  expert actions, and per decision the env's step reward, the simulated time that passed
  (``info["elapsed_s"]``), episode starts and the reward of the query the decision placed.
* :func:`pretrain` fits an SB3 actor-critic policy (PPO, A2C or MaskablePPO, on its own network) to it:
  masked cross-entropy on the actions (``-log pi(a_expert | s)`` under the mask) plus, for the critic,
  a mean-squared error to the returns the training run will use (same credit and discounting,
  :func:`agents.credit.gae` with ``lambda = 1``), so PPO starts with a critic that already knows the
  expert's values and its first advantages are not noise.

    python -m agents.imitation --env offload_gym/WifiOffload-residual-v0 --decisions 20000 --out bc.npz

``train.py --bc-decisions N`` (or ``--bc-dataset PATH``) runs both steps before PPO takes over.
The ``imitation`` package is not used: its releases pin gymnasium ~=0.29.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import offload_gym  # noqa: F401 - registers the env ids
from agents.cli import UsageError, load_mapping
from agents.credit import discounts, gae

__all__ = ["collect", "load_dataset", "main", "pretrain", "save_dataset", "value_targets"]

_ARRAYS = ("obs", "masks", "actions", "rewards", "elapsed_s", "episode_starts", "query_rewards")


def collect(env_id: str, n_decisions: int, *, config: Mapping[str, Any] | None = None, seed: int = 0,
            progress: bool = False) -> dict[str, np.ndarray]:
    """Play the built-in scheduler for at least ``n_decisions`` decisions (whole episodes, seeds ``seed, seed+1, ...``).

    :return: arrays ``obs (N, D) float32``, ``masks (N, n_actions) bool``, ``actions (N,) int64``,
        ``rewards``, ``elapsed_s``, ``query_rewards (N,) float64`` and ``episode_starts (N,) bool``
    """
    if n_decisions < 1:
        raise ValueError(f"n_decisions: must be at least 1, got {n_decisions}")
    env = gym.make(env_id, config=dict(config)) if config else gym.make(env_id)
    base = env.unwrapped
    rows: dict[str, list[Any]] = {k: [] for k in _ARRAYS}
    episode = 0
    start = time.time()
    try:
        while len(rows["actions"]) < n_decisions:
            obs, info = env.reset(seed=seed + episode)
            pending = int(info["decision_query_id"])
            query_of_step: list[int] = []
            rewards_by_query: dict[int, float] = {}
            first = True
            while True:
                action = base.expert_action()  # type: ignore[attr-defined]
                rows["obs"].append(obs)
                rows["masks"].append(np.asarray(info["action_mask"], dtype=bool))
                rows["actions"].append(action)
                rows["episode_starts"].append(first)
                query_of_step.append(pending)
                first = False
                obs, reward, terminated, truncated, info = env.step(action)
                rows["rewards"].append(float(reward))
                rows["elapsed_s"].append(float(info["elapsed_s"]))
                for record in info["completed"]:
                    rewards_by_query[int(record["query_id"])] = float(record["reward"])
                pending = int(info["decision_query_id"])
                if terminated or truncated:
                    break
            rows["query_rewards"] += [rewards_by_query[q] for q in query_of_step]  # the episode drained: all known
            episode += 1
            if progress:
                print(f"\rcollected {len(rows['actions'])} decisions ({episode} episodes, {time.time() - start:.0f} s)",
                      end="", file=sys.stderr)
    finally:
        env.close()
    if progress:
        print(file=sys.stderr)
    return {
        "obs": np.asarray(rows["obs"], dtype=np.float32),
        "masks": np.asarray(rows["masks"], dtype=bool),
        "actions": np.asarray(rows["actions"], dtype=np.int64),
        "rewards": np.asarray(rows["rewards"], dtype=np.float64),
        "elapsed_s": np.asarray(rows["elapsed_s"], dtype=np.float64),
        "episode_starts": np.asarray(rows["episode_starts"], dtype=bool),
        "query_rewards": np.asarray(rows["query_rewards"], dtype=np.float64),
    }


def save_dataset(path: str | Path, data: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
    """Write ``data`` and a JSON ``meta`` (env id, config, seed) as a compressed ``.npz`` (no pickles)."""
    np.savez_compressed(path, **{k: np.asarray(data[k]) for k in _ARRAYS}, meta=np.array(json.dumps(dict(meta))))


def load_dataset(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a dataset written by :func:`save_dataset` (``allow_pickle=False``); ``ValueError`` naming what is wrong."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError) as exc:  # ValueError: not an .npz, and np.load would need a pickle
        raise ValueError(f"cannot read {str(path)!r} as a behaviour-cloning dataset ({exc})") from None
    if not hasattr(loaded, "files"):
        raise ValueError(f"cannot read {str(path)!r} as a behaviour-cloning dataset (a bare array, not an .npz)")
    with loaded as f:
        missing = [k for k in (*_ARRAYS, "meta") if k not in f.files]
        if missing:
            raise ValueError(f"{str(path)!r} is not an offload_gym behaviour-cloning dataset (missing {missing})")
        try:
            data = {k: f[k] for k in _ARRAYS}
            meta = json.loads(str(f["meta"]))
        except (ValueError, OSError) as exc:
            raise ValueError(f"cannot read {str(path)!r} as a behaviour-cloning dataset ({exc})") from None
    return data, meta


def value_targets(data: Mapping[str, np.ndarray], *, credit: str, gamma: float, gamma_per_s: float | None) -> np.ndarray:
    """Monte-Carlo returns of the dataset under the training run's credit and discounting (lambda = 1)."""
    rewards = np.asarray(data["query_rewards"] if credit == "query" else data["rewards"], dtype=np.float64)
    n = rewards.size
    zeros = np.zeros((n, 1))
    starts = np.asarray(data["episode_starts"], dtype=bool)[:, None]
    per_step = discounts(data["elapsed_s"], gamma, gamma_per_s)
    _, returns = gae(rewards[:, None], zeros, starts, per_step[:, None], np.zeros(1), np.ones(1), 1.0)
    return returns[:, 0]


def pretrain(model: Any, data: Mapping[str, np.ndarray], *, epochs: int = 10, batch_size: int = 256,
             learning_rate: float = 1e-3, value_targets: np.ndarray | None = None, smoothing: float = 0.0,
             seed: int = 0, verbose: int = 0) -> dict[str, float]:
    """Behaviour-clone ``data`` into ``model.policy`` (an SB3 actor-critic); returns accuracy and losses.

    The actor minimises the cross-entropy to the expert's action under the action mask (MaskablePPO) or
    unmasked (PPO, A2C: the expert's action is always allowed, so the policy learns to avoid masked ones
    too). ``smoothing`` moves that much of the target's mass from the expert's action to all allowed
    actions evenly: the clone's argmax is the expert, but its samples still explore the alternatives, so
    PPO has deviations to learn from (with 0 a residual clone almost never leaves "follow"). The critic,
    when ``value_targets`` are given, fits them by mean-squared error. Adam over the policy's parameters.
    """
    import torch as th

    policy = model.policy
    masked = type(model).__name__ == "MaskablePPO"
    obs = th.as_tensor(np.asarray(data["obs"]), dtype=th.float32)
    actions = th.as_tensor(np.asarray(data["actions"]), dtype=th.int64)
    masks = np.asarray(data["masks"], dtype=bool)
    targets = None if value_targets is None else th.as_tensor(value_targets, dtype=th.float32)
    n = obs.shape[0]
    if tuple(obs.shape[1:]) != tuple(model.observation_space.shape) or masks.shape[1] != int(model.action_space.n):
        raise ValueError(f"the dataset's observations {tuple(obs.shape[1:])} and {masks.shape[1]} actions do not fit "
                         f"the model ({model.observation_space.shape}, {model.action_space.n} actions): collect it on "
                         "the env being trained")
    optimizer = th.optim.Adam(policy.parameters(), lr=learning_rate)
    rng = np.random.default_rng(seed)
    policy.set_training_mode(True)
    stats: dict[str, float] = {}
    for epoch in range(epochs):
        order = rng.permutation(n)
        pi_losses, v_losses = [], []
        for lo in range(0, n, batch_size):
            idx = order[lo:lo + batch_size]
            kwargs = {"action_masks": masks[idx]} if masked else {}
            values, log_prob, _ = policy.evaluate_actions(obs[idx], actions[idx], **kwargs)
            loss = -log_prob.mean()
            if smoothing > 0.0:
                dist = policy.get_distribution(obs[idx], **kwargs).distribution
                log_all = th.log_softmax(dist.logits, dim=-1)
                allowed = th.as_tensor(masks[idx], dtype=th.float32)
                spread = -(log_all.clamp_min(-1e4) * allowed).sum(-1) / allowed.sum(-1)
                loss = (1.0 - smoothing) * loss + smoothing * spread.mean()
            pi_losses.append(loss.item())
            if targets is not None:
                v_loss = th.nn.functional.mse_loss(values.flatten(), targets[idx])
                v_losses.append(v_loss.item())
                loss = loss + v_loss
            optimizer.zero_grad()
            loss.backward()
            th.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            optimizer.step()
        stats = {"epoch": epoch + 1, "bc_loss": float(np.mean(pi_losses)),
                 "value_loss": float(np.mean(v_losses)) if v_losses else float("nan")}
        if verbose:
            print(f"behaviour cloning epoch {epoch + 1}/{epochs}: actor loss {stats['bc_loss']:.4f}, "
                  f"critic loss {stats['value_loss']:.4f}")
    policy.set_training_mode(False)
    with th.no_grad():
        correct = 0
        for lo in range(0, n, 4096):
            sl = slice(lo, lo + 4096)
            kwargs = {"action_masks": masks[sl]} if masked else {}
            dist = policy.get_distribution(obs[sl], **kwargs)
            correct += int((dist.get_actions(deterministic=True) == actions[sl]).sum())
    stats["accuracy"] = correct / n
    return stats


# ---------------------------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agents.imitation",
                                description="Write a behaviour-cloning dataset of the built-in scheduler's decisions.")
    p.add_argument("--env", default="offload_gym/WifiOffload-residual-v0", help="registered env id")
    p.add_argument("--config", default=None, help="scenario overrides: inline JSON/YAML or a file")
    p.add_argument("--decisions", type=int, default=20_000, help="at least this many decisions (whole episodes)")
    p.add_argument("--seed", type=int, default=0, help="first episode seed (keep clear of the held-out 1000..)")
    p.add_argument("--out", required=True, help="output .npz")
    args = p.parse_args(argv)
    try:
        config = load_mapping(args.config, "--config")
        if args.decisions < 1:
            raise UsageError(f"--decisions: must be at least 1, got {args.decisions}")
        if args.seed < 0:
            raise UsageError(f"--seed: must be >= 0, got {args.seed}")
        out = Path(args.out)
        if out.is_dir() or not out.parent.exists():
            raise UsageError(f"--out: cannot write {args.out!r} (a folder, or its folder does not exist)")
        try:
            gym.spec(args.env)
        except gym.error.Error:
            raise UsageError(f"--env: unknown env id {args.env!r}") from None
        try:
            data = collect(args.env, args.decisions, config=config, seed=args.seed, progress=sys.stderr.isatty())
        except ValueError as exc:
            raise UsageError(f"--config: {exc}") from None
    except UsageError as exc:
        print(f"python -m agents.imitation: error: {exc}", file=sys.stderr)
        return 2
    save_dataset(out, data, {"env_id": args.env, "config": config, "seed": args.seed})
    print(f"wrote {len(data['actions'])} decisions to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
