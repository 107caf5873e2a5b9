"""Ray RLlib and Ray Tune for offload_gym: action-masked PPO on one machine or on a Ray cluster.

Needs the optional extra ``pip install -e ".[ray]"`` (ray[rllib,tune] 2.60; ray pins gymnasium 1.2.2, so a venv
of its own is advised). ``import offload_gym`` never imports this module.

Why this module exists
----------------------
RLlib makes its environments in its env-runner processes (and Tune runs each trial in its own process). A plain
gymnasium id such as ``"offload_gym/WifiOffload-tiny-v0"`` is only known to a process that imported
offload_gym, so a remote runner fails with ``NamespaceNotFound``. :func:`register_rllib_envs` registers every
offload_gym id with Ray's own registry, whose creator imports offload_gym wherever it runs. The creator always
builds the Dict observation ``{"observations": Box, "action_mask": MultiBinary(n_actions)}``
(``observation_format: dict``), which RLlib's action-masking RLModule reads: masked actions get logit
``FLOAT_MIN`` and so probability 0, while sampling, in training and in the value function.

Usage
-----
>>> from offload_gym.integrations.rllib import masked_ppo_config, episode_return_mean
>>> algo = masked_ppo_config("offload_gym/WifiOffload-tiny-v0", config={"wifi.background_stations": 4}).build()
>>> result = algo.train()
>>> episode_return_mean(result)  # mean return of the episodes finished in this iteration

One agent per phone: :func:`masked_multi_agent_ppo_config` trains on :class:`OffloadMultiAgentEnv`, the RLlib
``MultiAgentEnv`` form of :func:`offload_gym.multi_agent.parallel_env` in which only the phone with a pending
decision gets an observation and acts, with one masked module shared by all phones or one per phone.

``masked_ppo_config`` (and its multi-agent twin) returns an ordinary ``PPOConfig`` (new API stack): change it
further with its methods (``.env_runners(num_env_runners=4)``, ``.learners(num_learners=1)``, ...) or hand it to
``ray.tune.Tuner`` as the ``param_space`` (see ``scripts/tune_sweep.py``). On a cluster (``ray.init(address=...)``)
every node needs offload_gym importable: install it there, or ship it with
``ray.init(runtime_env={"py_modules": [offload_gym]})`` (what ``--ship-code`` does in the scripts).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from typing import Any

try:
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec
    from ray.rllib.env.multi_agent_env import MultiAgentEnv
    from ray.rllib.examples.rl_modules.classes.action_masking_rlm import ActionMaskingTorchRLModule
    from ray.tune.registry import register_env
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("offload_gym.integrations.rllib needs Ray RLlib: pip install -e \".[ray]\" "
                      "(a venv of its own is advised: ray pins gymnasium)") from exc

from offload_gym.registration import ENV_IDS

__all__ = [
    "DICT_KEYS",
    "MULTI_AGENT_POLICIES",
    "ActionMaskingTorchRLModule",
    "OffloadMultiAgentEnv",
    "episode_return_mean",
    "init_ray",
    "iteration_row",
    "load_config_text",
    "make_rllib_env",
    "make_rllib_multi_agent_env",
    "masked_multi_agent_ppo_config",
    "masked_ppo_config",
    "multi_agent_env_name",
    "register_rllib_envs",
]

#: the config the RLlib creator forces: the Dict observation with the keys RLlib's masking RLModule reads
DICT_KEYS: dict[str, str] = {"observation_format": "dict", "observation_key": "observations",
                             "action_mask_key": "action_mask"}


def make_rllib_env(env_config: Mapping[str, Any] | None = None, *, env_id: str = "offload_gym/WifiOffload-tiny-v0") -> Any:
    """Build the offload_gym env ``env_id`` for RLlib, from RLlib's ``env_config``.

    ``env_config`` holds config overrides as for ``gym.make(env_id, config=...)`` (nested sections or dotted keys,
    e.g. ``{"wifi.background_stations": 4}``); RLlib's ``EnvContext`` is read as a plain dict. The observation is
    forced to the Dict format with keys ``observations`` / ``action_mask`` (:data:`DICT_KEYS`). This function
    imports offload_gym itself, so it works in any Ray process where offload_gym is importable.
    """
    import offload_gym  # noqa: F401  (registers the ids in this process too)
    from offload_gym.envs.offload_env import OffloadEnv

    if env_id not in ENV_IDS:
        raise ValueError(f"env_id: {env_id!r} is not an offload_gym id; choose one of {sorted(ENV_IDS)}")
    overrides = dict(env_config or {})
    overrides.update(DICT_KEYS)
    return OffloadEnv(config=overrides, scenario=ENV_IDS[env_id])


def register_rllib_envs(env_ids: Sequence[str] | None = None) -> list[str]:
    """Register offload_gym ids (default: all of :data:`offload_gym.registration.ENV_IDS`) with Ray's registry.

    After this, ``PPOConfig().environment("offload_gym/WifiOffload-tiny-v0", env_config={...})`` works with remote
    env runners and in Tune trials: the name resolves to :func:`make_rllib_env` in every Ray process. The ids
    keep their gymnasium names but always give the Dict observation (see :data:`DICT_KEYS`). Call it after
    ``ray.init`` or before: Ray sends its registry to the cluster either way. Idempotent; returns the ids.
    """
    ids = list(ENV_IDS) if env_ids is None else list(env_ids)
    for env_id in ids:
        if env_id not in ENV_IDS:
            raise ValueError(f"env_ids: {env_id!r} is not an offload_gym id; choose from {sorted(ENV_IDS)}")
        register_env(env_id, functools.partial(make_rllib_env, env_id=env_id))
    return ids


def masked_ppo_config(env_id: str = "offload_gym/WifiOffload-tiny-v0", config: Mapping[str, Any] | None = None, *,
                      num_env_runners: int = 0, hidden: Sequence[int] = (64, 64), seed: int | None = None,
                      **training_kwargs: Any) -> PPOConfig:
    """A PPO config (RLlib new API stack) whose RLModule never picks a masked action.

    Args:
        env_id: an offload_gym id (registered with Ray here, see :func:`register_rllib_envs`).
        config: scenario overrides for the env (RLlib's ``env_config``), e.g. ``{"wifi.background_stations": 4}``.
        num_env_runners: remote sampling processes (0: sample in the driver, the cheapest on a laptop).
        hidden: hidden layer sizes of the policy and value networks (``fcnet_hiddens``; ``head_fcnet_hiddens``
            stays RLlib's default).
        seed: seeds the env runners' envs and the networks (``.debugging(seed=...)``).
        **training_kwargs: passed to ``PPOConfig.training`` (``lr``, ``gamma``, ``train_batch_size_per_learner``,
            ``minibatch_size``, ``num_epochs``, ``entropy_coeff``, ...).

    The module is RLlib's ``ActionMaskingTorchRLModule`` (from ray's examples): the policy and value networks see
    ``observations``; ``action_mask`` only sets the logits of masked actions to ``FLOAT_MIN``.
    """
    register_rllib_envs([env_id])
    cfg = (
        PPOConfig()
        .api_stack(enable_rl_module_and_learner=True, enable_env_runner_and_connector_v2=True)
        .environment(env_id, env_config=dict(config or {}))
        .env_runners(num_env_runners=num_env_runners)
        .rl_module(rl_module_spec=RLModuleSpec(module_class=ActionMaskingTorchRLModule,
                                               model_config={"fcnet_hiddens": list(hidden)}))
    )
    if training_kwargs:
        cfg = cfg.training(**training_kwargs)
    if seed is not None:
        cfg = cfg.debugging(seed=seed)
    return cfg


# ---------------------------------------------------------------------------------------------- multi-agent

#: ``policies`` of :func:`masked_multi_agent_ppo_config`: one module for every phone, or one module per phone
MULTI_AGENT_POLICIES = ("shared", "independent")


class OffloadMultiAgentEnv(MultiAgentEnv):
    """RLlib ``MultiAgentEnv``, one agent per phone, over :func:`offload_gym.multi_agent.parallel_env`.

    Only the phone with a pending decision gets an observation (and so acts) at each step; the others wait.
    Rewards go to every phone at every step (0 for most): RLlib holds a waiting phone's rewards and credits them
    to its last action when it next acts. When the episode ends every phone gets a last observation and is
    truncated (``__all__``), so a phone's last action is bootstrapped from its own view. Observations are the
    multi-agent env's Dict ``{"observations", "action_mask"}`` (the waiting phones' masks allow only action 0,
    but a waiting phone is never asked). ``reward``: ``"individual"`` (a phone's own queries) or ``"shared"``.
    """

    def __init__(self, config: Mapping[str, Any] | None = None, *, scenario: str = "tiny",
                 reward: str = "individual") -> None:
        super().__init__()
        from offload_gym.multi_agent import parallel_env

        overrides = dict(config or {})
        overrides.update(DICT_KEYS)
        self.par_env = parallel_env(config=overrides, scenario=scenario, reward=reward)
        self.possible_agents = list(self.par_env.possible_agents)
        self.agents = list(self.possible_agents)
        self.observation_spaces = {a: self.par_env.observation_space(a) for a in self.possible_agents}
        self.action_spaces = {a: self.par_env.action_space(a) for a in self.possible_agents}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, Any], dict[str, Any]]:
        obs, infos = self.par_env.reset(seed=seed, options=options)
        self.agents = list(self.possible_agents)
        agent = self.par_env.deciding_agent
        assert agent is not None
        return {agent: obs[agent]}, {agent: infos[agent]}

    def step(self, action_dict: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float], dict[str, bool],
                                                           dict[str, bool], dict[str, Any]]:
        obs, rewards, terms, _truncs, infos = self.par_env.step(action_dict)
        done = not self.par_env.agents
        agent = self.par_env.deciding_agent
        if done or agent is None:
            terminated = any(terms.values())
            self.agents = []
            return (obs, dict(rewards), {**dict.fromkeys(obs, terminated), "__all__": terminated},
                    {**dict.fromkeys(obs, not terminated), "__all__": not terminated}, infos)
        return ({agent: obs[agent]}, dict(rewards), {"__all__": False}, {"__all__": False}, {agent: infos[agent]})

    def render(self) -> Any:
        return self.par_env.render()

    def close(self) -> None:
        self.par_env.close()


def multi_agent_env_name(env_id: str) -> str:
    """The Ray registry name of ``env_id``'s multi-agent form (``"multi_agent:" + env_id``)."""
    return "multi_agent:" + env_id


def make_rllib_multi_agent_env(env_config: Mapping[str, Any] | None = None, *,
                               env_id: str = "offload_gym/WifiOffload-tiny-v0") -> OffloadMultiAgentEnv:
    """Build :class:`OffloadMultiAgentEnv` from RLlib's ``env_config``: scenario overrides plus the optional key
    ``multi_agent_reward`` (``"individual"``, the default, or ``"shared"``)."""
    if env_id not in ENV_IDS:
        raise ValueError(f"env_id: {env_id!r} is not an offload_gym id; choose one of {sorted(ENV_IDS)}")
    overrides = dict(env_config or {})
    reward = str(overrides.pop("multi_agent_reward", "individual"))
    return OffloadMultiAgentEnv(overrides, scenario=ENV_IDS[env_id], reward=reward)


def _shared_policy(agent_id: Any, episode: Any = None, **kwargs: Any) -> str:
    return "shared"


def _own_policy(agent_id: Any, episode: Any = None, **kwargs: Any) -> str:
    return str(agent_id)


def masked_multi_agent_ppo_config(env_id: str = "offload_gym/WifiOffload-tiny-v0",
                                  config: Mapping[str, Any] | None = None, *, policies: str = "shared",
                                  reward: str = "individual", num_env_runners: int = 0,
                                  hidden: Sequence[int] = (64, 64), seed: int | None = None,
                                  **training_kwargs: Any) -> PPOConfig:
    """Multi-agent PPO (RLlib new API stack) on ``env_id``'s one-agent-per-phone form, masks applied.

    Args:
        env_id: an offload_gym id; its scenario is the multi-agent env's (``topology.n_users`` phones).
        config: scenario overrides (as for :func:`masked_ppo_config`).
        policies: ``"shared"``: one masked PPO module that every phone uses (parameter sharing; module id
            ``"shared"``); ``"independent"``: one module per phone (independent PPO; module ids = agent ids
            ``"phone_0"`` ..), which needs ``topology.n_users`` fixed in ``config`` (not a Tune search space).
        reward: ``"individual"`` (each phone its own queries' rewards) or ``"shared"`` (every phone the total).
        num_env_runners, hidden, seed, **training_kwargs: as for :func:`masked_ppo_config`.

    The env is registered with Ray as :func:`multi_agent_env_name` (``"multi_agent:" + env_id``).
    """
    from offload_gym.config import make_config

    if policies not in MULTI_AGENT_POLICIES:
        raise ValueError(f"policies: {policies!r} is not allowed; choose one of {list(MULTI_AGENT_POLICIES)}")
    if env_id not in ENV_IDS:
        raise ValueError(f"env_id: {env_id!r} is not an offload_gym id; choose one of {sorted(ENV_IDS)}")
    name = multi_agent_env_name(env_id)
    register_env(name, functools.partial(make_rllib_multi_agent_env, env_id=env_id))
    if policies == "shared":
        module_ids, mapping = ["shared"], _shared_policy
    else:
        n_users = make_config(dict(config or {}), scenario=ENV_IDS[env_id]).topology.n_users
        module_ids, mapping = [f"phone_{u}" for u in range(n_users)], _own_policy
    spec = RLModuleSpec(module_class=ActionMaskingTorchRLModule, model_config={"fcnet_hiddens": list(hidden)})
    cfg = (
        PPOConfig()
        .api_stack(enable_rl_module_and_learner=True, enable_env_runner_and_connector_v2=True)
        .environment(name, env_config={**dict(config or {}), "multi_agent_reward": reward})
        .env_runners(num_env_runners=num_env_runners)
        .multi_agent(policies=set(module_ids), policy_mapping_fn=mapping)
        .rl_module(rl_module_spec=MultiRLModuleSpec(rl_module_specs=dict.fromkeys(module_ids, spec)))
    )
    if training_kwargs:
        cfg = cfg.training(**training_kwargs)
    if seed is not None:
        cfg = cfg.debugging(seed=seed)
    return cfg


def episode_return_mean(result: Mapping[str, Any]) -> float | None:
    """The mean episode return in a result of ``Algorithm.train()`` (or a Tune result), ``None`` when no episode
    has finished yet. Reads ``env_runners/episode_return_mean`` (nested or flattened with ``/``)."""
    runners = result.get("env_runners")
    value = runners.get("episode_return_mean") if isinstance(runners, Mapping) else None
    if value is None:
        value = result.get("env_runners/episode_return_mean")
    return None if value is None else float(value)


def iteration_row(result: Mapping[str, Any], iteration: int, seconds: float) -> dict[str, Any]:
    """One line of a training log from a result of ``Algorithm.train()``: lifetime env and agent steps, episodes,
    the mean episode return (``None`` before the first episode ends) and the seconds so far."""
    runners = result.get("env_runners", {})
    agent_steps = runners.get("num_agent_steps_sampled_lifetime") or 0
    if isinstance(agent_steps, Mapping):  # multi-agent: per agent
        agent_steps = sum(agent_steps.values())
    return {"iteration": iteration, "env_steps": int(runners.get("num_env_steps_sampled_lifetime", 0)),
            "agent_steps": int(agent_steps), "episodes": int(runners.get("num_episodes_lifetime", 0)),
            "episode_return_mean": episode_return_mean(result), "seconds": round(seconds, 1)}


def init_ray(address: str | None = None, *, ship_code: bool = False, num_cpus: int | None = None) -> None:
    """Start Ray locally (``address=None``, or the ``RAY_ADDRESS`` environment variable when set) or connect to a
    cluster (``"auto"`` on a cluster node, ``"ray://HEAD:10001"`` from outside). ``ship_code``: upload this
    offload_gym package to the cluster's workers (``runtime_env`` ``py_modules``) instead of needing it installed
    on every node; its dependencies (numpy, gymnasium, ...) must be there. ``num_cpus`` only for a local start.
    Quiet: no dashboard. Does nothing if Ray is already initialised."""
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"include_dashboard": False}
    if ship_code:
        import offload_gym

        kwargs["runtime_env"] = {"py_modules": [offload_gym]}
    if address is None and not os.environ.get("RAY_ADDRESS"):
        # a new local instance: Ray would otherwise attach to whatever cluster /tmp/ray/ray_current_cluster names
        # (a stale one from an earlier run on this machine makes ray.init fail)
        address = "local"
    if address == "local" and num_cpus is not None:
        kwargs["num_cpus"] = num_cpus
    ray.init(address=address, **kwargs)


def load_config_text(text: str | None) -> dict[str, Any]:
    """A ``--config`` argument: inline JSON or YAML (``'{"wifi.background_stations": 4}'``) or a .json / .yaml
    file; ``None`` gives ``{}``. Raises ``ValueError`` unless it is a mapping."""
    from pathlib import Path

    import yaml

    if text is None:
        return {}
    path = Path(text)
    raw = path.read_text(encoding="utf-8") if not text.lstrip().startswith("{") and path.is_file() else text
    data = yaml.safe_load(raw)  # JSON is YAML
    if not isinstance(data, dict):
        raise ValueError(f"--config: expected a mapping of overrides, got {type(data).__name__}")
    return data
