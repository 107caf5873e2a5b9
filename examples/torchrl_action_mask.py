"""TorchRL's ``ActionMask`` on offload_gym: the mask read from ``info`` into the tensordict with an explicit spec.

    python examples/torchrl_action_mask.py --steps 200

offload_gym reports the mask of the pending decision as ``info["action_mask"]`` (int8, one entry per action).
TorchRL's ``GymEnv`` drops ``info`` unless an info reader copies keys into the tensordict, and a reader left to
infer its spec (``default_info_dict_reader(["action_mask"])`` with no spec) registers it as ``Unbounded``,
which ``ActionMask`` cannot use. The reader below writes the mask as bool under ``"action_mask"`` with the
spec ``Binary(n=A, dtype=torch.bool)``, and ``invalid_actions`` (the env's count of masked actions it had to
replace) as an integer. (``default_info_dict_reader(["action_mask"], spec=[Binary(n=A, dtype=torch.int8)])``
also passes ``check_env_specs``: it copies the int8 values as they are, so its spec must say int8.)

``ActionMask`` then narrows the action spec to the legal actions after every reset and step, so
``env.rand_action`` (and ``env.rollout`` without a policy) only draws legal actions; a learned policy reads the
same ``"action_mask"`` key (``torchrl.modules.MaskedOneHotCategorical``; see ``masked_policy`` below).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.data import Binary, Composite, Unbounded
from torchrl.envs import ActionMask, GymEnv, TransformedEnv
from torchrl.envs.gym_like import BaseInfoDictReader
from torchrl.envs.utils import check_env_specs
from torchrl.modules import MaskedOneHotCategorical, ProbabilisticActor

import offload_gym  # noqa: F401  (registers the offload_gym/... ids)


class MaskInfoReader(BaseInfoDictReader):
    """Copies ``info["action_mask"]`` (as bool) and ``info["invalid_actions"]`` into the tensordict, with their specs."""

    def __init__(self, n_actions: int) -> None:
        self._spec = Composite(action_mask=Binary(n=n_actions, dtype=torch.bool),
                               invalid_actions=Unbounded(shape=(), dtype=torch.int64), shape=[])

    def __call__(self, info_dict: dict[str, Any], tensordict: TensorDictBase) -> TensorDictBase:
        tensordict.set("action_mask", torch.as_tensor(info_dict["action_mask"]).to(torch.bool))
        tensordict.set("invalid_actions", torch.as_tensor(int(info_dict.get("invalid_actions", 0)), dtype=torch.int64))
        return tensordict

    @property
    def info_spec(self) -> Composite:
        return self._spec


def make_env(env_id: str = "offload_gym/WifiOffload-tiny-v0", seed: int = 0) -> TransformedEnv:
    """``GymEnv`` + the mask reader + ``ActionMask`` (one-hot actions, TorchRL's default for ``Discrete``)."""
    base = GymEnv(env_id)
    n_actions = int(base.action_spec.space.n)
    base.set_info_dict_reader(MaskInfoReader(n_actions))
    env = TransformedEnv(base, ActionMask())
    env.set_seed(seed)
    return env


def masked_policy(env: TransformedEnv) -> ProbabilisticActor:
    """An (untrained) MLP policy whose distribution puts no mass on masked actions."""
    obs_dim = int(env.observation_spec["observation"].shape[-1])
    n_actions = int(env.action_spec.space.n)
    net = TensorDictModule(nn.Sequential(nn.Linear(obs_dim, 64), nn.Tanh(), nn.Linear(64, n_actions)),
                           in_keys=["observation"], out_keys=["logits"])
    return ProbabilisticActor(net, in_keys={"logits": "logits", "mask": "action_mask"}, out_keys=["action"],
                              distribution_class=MaskedOneHotCategorical, spec=env.action_spec, return_log_prob=True)


def masked_actions_taken(rollout: TensorDictBase) -> int:
    """How many steps took an action their own mask forbade (one-hot action against the step's mask)."""
    action = rollout["action"].to(torch.bool)
    return int((action & ~rollout["action_mask"]).any(dim=-1).sum())


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env-id", default="offload_gym/WifiOffload-tiny-v0")
    p.add_argument("--steps", type=int, default=200, help="steps of each rollout")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)

    env = make_env(args.env_id, args.seed)
    check_env_specs(env, seed=args.seed)
    print("action_mask spec:", env.observation_spec["action_mask"])

    results: dict[str, Any] = {}
    for name, policy in (("random", None), ("masked_policy", masked_policy(env))):
        # break_when_any_done=False: the episode resets inside the rollout, so the check also covers reset masks
        rollout = env.rollout(args.steps, policy=policy, break_when_any_done=False)
        taken = masked_actions_taken(rollout)
        steps_with_masked = int((~rollout["action_mask"]).any(dim=-1).sum())
        invalid = int(rollout["next", "invalid_actions"].max())
        episodes = int(rollout["next", "done"].sum())
        results[name] = {"steps": rollout.batch_size[0], "steps_with_masked_actions": steps_with_masked,
                         "masked_actions_taken": taken, "invalid_actions_reported": invalid, "episodes_done": episodes}
        print(f"{name}: {rollout.batch_size[0]} steps, {episodes} episodes ended, {steps_with_masked} steps with masked "
              f"actions, masked actions taken {taken}, env-reported invalid actions {invalid}")
    env.close()
    return results


if __name__ == "__main__":
    main()
