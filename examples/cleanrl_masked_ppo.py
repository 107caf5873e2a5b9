"""Masked PPO in one file of plain torch, CleanRL style, on the offload_gym vector env.

    python examples/cleanrl_masked_ppo.py --num-envs 4 --total-timesteps 20000

What differs from a PPO loop copied from an older Gymnasium:

* **Masks.** Each sub-env puts its int8 mask in ``info["action_mask"]``; the vector env stacks it into
  ``infos["action_mask"]`` (``num_envs x A``) with the flag array ``infos["_action_mask"]`` (which rows hold
  one), at ``reset`` as at ``step``. Masked actions get a large negative logit, both when sampling and when
  the update recomputes log-probabilities and entropy, so the policy never puts mass on them.
* **Episode returns.** ``RecordEpisodeStatistics`` on the vector env (Gymnasium >= 1.0) reports a finished
  episode in ``infos["episode"]`` (``r``, ``l``, ``t`` arrays) with the flags ``infos["_episode"]``;
  there is no ``final_info`` any more.
* **Autoreset.** Gymnasium's vector envs reset a finished sub-env on the *next* ``step`` (``NEXT_STEP``):
  the step that ends an episode returns its last observation, and the following step ignores its action
  and returns the reset observation with reward 0. That step is not a transition, so it is left out of the
  update. The observation returned with ``done`` is the real final one, so a truncated episode (offload_gym
  ends every episode with ``truncated=True``) is bootstrapped from its value; ``terminated`` is not.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical

import offload_gym  # noqa: F401  (registers the offload_gym/... ids)

MASKED_LOGIT = -1e9  # finite: an all-masked row (never produced by offload_gym) stays a valid distribution


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--env-id", default="offload_gym/WifiOffload-tiny-v0")
    p.add_argument("--num-envs", type=int, default=4, help="sub-envs of the sync vector env")
    p.add_argument("--total-timesteps", type=int, default=20_000, help="vector-env steps x num_envs")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--num-steps", type=int, default=128, help="steps per sub-env per rollout")
    p.add_argument("--learning-rate", type=float, default=2.5e-4)
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--gae-lambda", type=float, default=0.95)
    p.add_argument("--num-minibatches", type=int, default=4)
    p.add_argument("--update-epochs", type=int, default=4)
    p.add_argument("--clip-coef", type=float, default=0.2)
    p.add_argument("--ent-coef", type=float, default=0.01)
    p.add_argument("--vf-coef", type=float, default=0.5)
    p.add_argument("--max-grad-norm", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (more only slow these small networks down)")
    p.add_argument("--quiet", action="store_true", help="print only the final summary")
    args = p.parse_args(argv)
    if args.num_envs < 1 or args.num_steps < 1 or args.total_timesteps < args.num_envs * args.num_steps:
        p.error("need num_envs >= 1, num_steps >= 1 and total_timesteps >= num_envs * num_steps")
    return args


def read_masks(infos: dict[str, Any], num_envs: int, n_actions: int) -> np.ndarray:
    """The stacked masks as bool (num_envs, A); rows without a mask (flag ``_action_mask`` False) allow all."""
    mask = np.ones((num_envs, n_actions), dtype=bool)
    if "action_mask" in infos:
        present = np.asarray(infos.get("_action_mask", np.ones(num_envs, dtype=bool)), dtype=bool)
        mask[present] = np.asarray(infos["action_mask"])[present].astype(bool)
    mask[~mask.any(axis=1)] = True
    return mask


def layer_init(layer: nn.Linear, std: float = float(np.sqrt(2)), bias: float = 0.0) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


class Agent(nn.Module):
    def __init__(self, obs_dim: int, n_actions: int) -> None:
        super().__init__()
        self.critic = nn.Sequential(layer_init(nn.Linear(obs_dim, 64)), nn.Tanh(), layer_init(nn.Linear(64, 64)), nn.Tanh(),
                                    layer_init(nn.Linear(64, 1), std=1.0))
        self.actor = nn.Sequential(layer_init(nn.Linear(obs_dim, 64)), nn.Tanh(), layer_init(nn.Linear(64, 64)), nn.Tanh(),
                                   layer_init(nn.Linear(64, n_actions), std=0.01))

    def get_value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(x).squeeze(-1)

    def get_action_and_value(self, x: torch.Tensor, mask: torch.Tensor, action: torch.Tensor | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = self.actor(x).masked_fill(~mask, MASKED_LOGIT)
        dist = Categorical(logits=logits)
        if action is None:
            action = dist.sample()
        return action, dist.log_prob(action), dist.entropy(), self.get_value(x)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)

    envs = gym.make_vec(args.env_id, num_envs=args.num_envs, vectorization_mode="sync")
    # gymnasium 1.0 has no AutoresetMode (its vector envs are always next-step); later ones say which mode they use
    mode = envs.metadata.get("autoreset_mode")
    if mode is not None and getattr(mode, "name", str(mode)) != "NEXT_STEP":
        raise SystemExit(f"this loop is written for next-step autoreset, the vector env uses {mode}")
    envs = gym.wrappers.vector.RecordEpisodeStatistics(envs)
    assert isinstance(envs.single_action_space, gym.spaces.Discrete)
    n_actions = int(envs.single_action_space.n)
    obs_shape = envs.single_observation_space.shape
    assert obs_shape is not None
    agent = Agent(int(np.prod(obs_shape)), n_actions)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)

    n, t_len = args.num_envs, args.num_steps
    obs_buf = torch.zeros((t_len, n, *obs_shape))
    mask_buf = torch.zeros((t_len, n, n_actions), dtype=torch.bool)
    actions = torch.zeros((t_len, n), dtype=torch.long)
    logprobs = torch.zeros((t_len, n))
    rewards = torch.zeros((t_len, n))
    terminated = torch.zeros((t_len, n))
    dones = torch.zeros((t_len, n))
    values = torch.zeros((t_len, n))
    valid = torch.zeros((t_len, n), dtype=torch.bool)  # False on next-step reset steps

    obs, infos = envs.reset(seed=args.seed)
    next_obs = torch.as_tensor(obs, dtype=torch.float32)
    next_mask = torch.as_tensor(read_masks(infos, n, n_actions))
    next_is_reset = torch.zeros(n, dtype=torch.bool)  # the previous step ended that sub-env's episode
    episode_returns: list[float] = []
    masked_taken = 0  # sampled actions the mask forbade (on real steps)
    invalid_reported = 0  # the env's own count of replaced masked actions (info["invalid_actions"], per episode)
    reset_steps = 0
    steps_with_masked = 0  # real steps on which at least one action was masked
    global_step = 0
    start = time.time()
    iterations = args.total_timesteps // (n * t_len)
    batch_size = n * t_len
    for iteration in range(1, iterations + 1):
        for g in optimizer.param_groups:
            g["lr"] = (1.0 - (iteration - 1.0) / iterations) * args.learning_rate
        for step in range(t_len):
            global_step += n
            obs_buf[step], mask_buf[step], valid[step] = next_obs, next_mask, ~next_is_reset
            with torch.no_grad():
                action, logprob, _, value = agent.get_action_and_value(next_obs, next_mask)
            actions[step], logprobs[step], values[step] = action, logprob, value
            real = ~next_is_reset
            masked_taken += int((~next_mask.gather(1, action[:, None]).squeeze(1) & real).sum())
            reset_steps += int(next_is_reset.sum())
            steps_with_masked += int((~next_mask.all(dim=1) & real).sum())

            obs, reward, term, trunc, infos = envs.step(action.numpy())
            rewards[step] = torch.as_tensor(reward, dtype=torch.float32)
            terminated[step] = torch.as_tensor(term, dtype=torch.float32)
            done = np.logical_or(term, trunc)
            dones[step] = torch.as_tensor(done, dtype=torch.float32)
            if "invalid_actions" in infos:
                flags = np.asarray(infos.get("_invalid_actions", np.ones(n, dtype=bool)), dtype=bool)
                counts = np.asarray(infos["invalid_actions"])[flags]
                invalid_reported = max(invalid_reported, int(counts.max()) if counts.size else 0)
            if "episode" in infos:
                for i in np.flatnonzero(infos["_episode"]):
                    episode_returns.append(float(infos["episode"]["r"][i]))
                    if not args.quiet:
                        print(f"global_step={global_step} env={i} episodic_return={episode_returns[-1]:.4f} "
                              f"episodic_length={int(infos['episode']['l'][i])}", flush=True)
            next_obs = torch.as_tensor(obs, dtype=torch.float32)
            next_mask = torch.as_tensor(read_masks(infos, n, n_actions))
            next_is_reset = torch.as_tensor(done, dtype=torch.bool)

        # GAE. values[t + 1] is the value of the observation step t returned: the final one when step t
        # ended the episode (next-step autoreset), so truncation bootstraps from it and termination does not;
        # the advantage chain stops at every episode end, and the reset step after it is not trained on.
        with torch.no_grad():
            next_value = agent.get_value(next_obs)
            advantages = torch.zeros_like(rewards)
            last = torch.zeros(n)
            for t in reversed(range(t_len)):
                following = next_value if t == t_len - 1 else values[t + 1]
                delta = rewards[t] + args.gamma * following * (1.0 - terminated[t]) - values[t]
                last = delta + args.gamma * args.gae_lambda * (1.0 - dones[t]) * last
                advantages[t] = last
            returns = advantages + values

        keep = valid.reshape(-1)
        b_obs = obs_buf.reshape(batch_size, *obs_shape)[keep]
        b_masks = mask_buf.reshape(batch_size, n_actions)[keep]
        b_actions = actions.reshape(-1)[keep]
        b_logprobs = logprobs.reshape(-1)[keep]
        b_adv = advantages.reshape(-1)[keep]
        b_returns = returns.reshape(-1)[keep]
        b_values = values.reshape(-1)[keep]
        n_train = int(keep.sum())
        minibatch = max(1, n_train // args.num_minibatches)
        clipfracs: list[float] = []
        approx_kl = torch.zeros(())
        for _epoch in range(args.update_epochs):
            order = torch.randperm(n_train)
            for lo in range(0, n_train, minibatch):
                mb = order[lo:lo + minibatch]
                _, newlogprob, entropy, newvalue = agent.get_action_and_value(b_obs[mb], b_masks[mb], b_actions[mb])
                logratio = newlogprob - b_logprobs[mb]
                ratio = logratio.exp()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - logratio).mean()
                    clipfracs.append(float(((ratio - 1.0).abs() > args.clip_coef).float().mean()))
                adv = b_adv[mb]
                if adv.numel() > 1:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                pg_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef)).mean()
                v_clipped = b_values[mb] + (newvalue - b_values[mb]).clamp(-args.clip_coef, args.clip_coef)
                v_loss = 0.5 * torch.max((newvalue - b_returns[mb]) ** 2, (v_clipped - b_returns[mb]) ** 2).mean()
                loss = pg_loss - args.ent_coef * entropy.mean() + args.vf_coef * v_loss
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                optimizer.step()
        if not args.quiet:
            recent = episode_returns[-10:]
            mean_ret = f"{np.mean(recent):.4f}" if recent else "n/a"
            print(f"iteration {iteration}/{iterations} global_step={global_step} trained_on={n_train}/{batch_size} "
                  f"approx_kl={float(approx_kl):.4f} clipfrac={np.mean(clipfracs):.3f} "
                  f"mean_return(last 10)={mean_ret} sps={int(global_step / (time.time() - start))}", flush=True)
    envs.close()
    summary = {"episode_returns": episode_returns, "masked_actions_taken": masked_taken,
               "invalid_actions_reported": invalid_reported, "reset_steps_skipped": reset_steps,
               "steps_with_masked_actions": steps_with_masked, "global_step": global_step}
    print(f"done: {global_step} steps, {len(episode_returns)} episodes, {steps_with_masked} steps with masked actions, "
          f"masked actions taken {masked_taken}, env-reported invalid actions {invalid_reported}, "
          f"reset steps left out {reset_steps}", flush=True)
    return summary


if __name__ == "__main__":
    main()
