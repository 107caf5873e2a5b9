"""One agent per phone: a PettingZoo ``ParallelEnv`` over the same simulator as the single-agent env.

``offload_gym.multi_agent.parallel_env(config=...)`` (PettingZoo's module convention; ``env()`` gives the AEC
form) makes one agent per phone, ``"phone_0"`` .. ``"phone_{N-1}"``. Each phone decides its own queries,
subtasks and aggregation steps from its own view; decisions still come one at a time (queries arrive in
continuous time), so at every step exactly one phone has a pending decision and acts.

## Spaces
Every agent has the single-agent env's ``Discrete(A + 2)`` actions (``A + 3`` in the residual interface) and
a ``Dict`` observation (the single-agent dict format's keys, ``observations`` and ``action_mask`` by default):

| key | content |
|---|---|
| ``observations`` | the phone's view, the single-agent observation's layout (``OffloadEnv.observation_names``) |
| ``action_mask`` | ``MultiBinary``: the deciding phone's mask; for any other phone only action 0 |

**What a phone sees.** The deciding phone sees exactly the single-agent observation: its item, the
estimates for each location, and the state. The estimates use what each AP broadcasts about its own edge
(queued, in-transit and admitted streams with their predicted lengths) and its cell (contenders): a phone
knows its own queue, link and position, and the APs tell it theirs. The other phones see the same layout
with no item (decision, item, plan and estimate features 0): their own backlog, busy flag and link, which
locations they could use, and the APs' broadcast state (:meth:`OffloadEnv.phone_view`).

**Actions.** Only the deciding phone's action is applied (``infos[agent]["deciding"]``); the others' actions
are ignored (their masks allow only 0; leaving them out of ``actions`` is fine too). A masked action of the
deciding phone follows ``invalid_action`` as in the single-agent env.

## Rewards
``reward="individual"`` (default): each phone receives the rewards of its own queries that finished during
the step (the single-agent per-query reward). ``reward="shared"``: every phone receives the step's total,
the single-agent reward. Per-query records are in ``infos[agent]["completed"]`` (the phone's own).

## Episode end
When the last query has drained, every agent is truncated together (``infos[agent]["episode_metrics"]``),
and ``agents`` becomes empty. Seeds work as in the single-agent env: same seed and actions, same trajectory.

An RLlib ``MultiAgentEnv`` in which only the deciding phone acts is in ``offload_gym.integrations.rllib``.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv
from pettingzoo.utils.conversions import parallel_to_aec

from offload_gym.config import ScenarioConfig, make_config, merge_overrides
from offload_gym.envs.offload_env import OffloadEnv

__all__ = ["REWARD_MODES", "OffloadParallelEnv", "env", "parallel_env"]

REWARD_MODES = ("individual", "shared")


def _agent(user: int) -> str:
    return f"phone_{user}"


class OffloadParallelEnv(ParallelEnv):
    """One agent per phone over :class:`~offload_gym.envs.offload_env.OffloadEnv` (module docstring: spaces,
    views, rewards, episode end).

    :param config: scenario overrides (or a :class:`ScenarioConfig`), as for the single-agent env.
    :param scenario: a named scenario (``offload_gym.config.SCENARIOS``).
    :param reward: ``"individual"`` (each phone its own queries' rewards) or ``"shared"`` (the step's total).
    :param render_mode: as the single-agent env's.
    """

    metadata: ClassVar[dict[str, Any]] = {"name": "offload_gym_multi_phone_v0", "render_modes": ["ansi", "rgb_array"],
                                          "is_parallelizable": True}

    def __init__(self, config: dict[str, Any] | ScenarioConfig | None = None, scenario: str = "paper",
                 reward: str = "individual", render_mode: str | None = None, core: str = "auto") -> None:
        if reward not in REWARD_MODES:
            raise ValueError(f"reward: {reward!r} is not allowed; choose one of {list(REWARD_MODES)}")
        cfg = make_config(config, scenario=scenario)
        # the single-agent core with box features: the dict form is made here, per phone
        core_cfg = make_config(merge_overrides(cfg.to_dict(), {"observation_format": "box"}))
        self.core = OffloadEnv(config=core_cfg, render_mode=render_mode, core=core)
        self.config = cfg
        self.reward_mode = reward
        self.render_mode = render_mode
        self.possible_agents = [_agent(u) for u in range(cfg.topology.n_users)]
        self.agents: list[str] = []
        self._obs_key, self._mask_key = cfg.observation_key, cfg.action_mask_key
        n_actions = int(self.core.action_space.n)
        self._n_actions = n_actions
        self._observation_space = spaces.Dict({
            self._obs_key: self.core.features_space,
            self._mask_key: spaces.MultiBinary(n_actions),
        })
        self._action_space = spaces.Discrete(n_actions)
        self._idle_mask = np.zeros(n_actions, dtype=np.int8)
        self._idle_mask[0] = 1
        self._deciding = -1

    @functools.cache  # noqa: B019 - PettingZoo wants the same object per agent
    def observation_space(self, agent: str) -> spaces.Space[Any]:
        return self._observation_space

    @functools.cache  # noqa: B019
    def action_space(self, agent: str) -> spaces.Space[Any]:
        return self._action_space

    @property
    def deciding_agent(self) -> str | None:
        """The phone whose decision is pending (``None`` once the episode has ended)."""
        return _agent(self._deciding) if self._deciding >= 0 else None

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, Any], dict[str, Any]]:
        _, info = self.core.reset(seed=seed, options=options)
        self.agents = list(self.possible_agents)
        self._set_deciding(info)
        return self._observations(info), self._infos(info, [])

    def _set_deciding(self, info: dict[str, Any]) -> None:
        self._deciding = self.core.deciding_user() if info["decision"] != "end" else -1

    def _observations(self, info: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for u, agent in enumerate(self.possible_agents):
            mask = np.asarray(info["action_mask"], dtype=np.int8) if u == self._deciding else self._idle_mask.copy()
            out[agent] = {self._obs_key: self.core.phone_view(u), self._mask_key: mask}
        return out

    def _infos(self, info: dict[str, Any], completed: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for u, agent in enumerate(self.possible_agents):
            entry: dict[str, Any] = {"deciding": u == self._deciding, "decision": info["decision"] if u == self._deciding
                                     else "none", "time_s": info["time_s"],
                                     "completed": [c for c in completed if c["user"] == u]}
            if "episode_metrics" in info:
                entry["episode_metrics"] = info["episode_metrics"]
            out[agent] = entry
        return out

    def step(self, actions: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float], dict[str, bool],
                                                        dict[str, bool], dict[str, Any]]:
        if not self.agents:
            raise RuntimeError("step() called after the episode ended (or before reset()); call reset() first")
        deciding = self.deciding_agent
        assert deciding is not None
        if deciding not in actions:
            raise ValueError(f"actions: no action for {deciding!r}, the phone whose decision is pending")
        for agent in actions:
            if agent not in self.possible_agents:
                raise ValueError(f"actions: {agent!r} is not an agent; agents are {self.possible_agents[0]!r} .. "
                                 f"{self.possible_agents[-1]!r}")
        _, reward, terminated, truncated, info = self.core.step(actions[deciding])
        completed = info["completed"]
        if self.reward_mode == "shared":
            rewards = dict.fromkeys(self.possible_agents, float(reward))
        else:
            rewards = dict.fromkeys(self.possible_agents, 0.0)
            for c in completed:
                rewards[_agent(c["user"])] += float(c["reward"])
        self._set_deciding(info)
        done = bool(terminated or truncated)
        observations = self._observations(info)
        infos = self._infos(info, completed)
        terminations = dict.fromkeys(self.possible_agents, bool(terminated))
        truncations = dict.fromkeys(self.possible_agents, bool(truncated))
        if done:
            self.agents = []
        return observations, rewards, terminations, truncations, infos

    def render(self) -> Any:
        return self.core.render()

    def close(self) -> None:
        self.core.close()

    def state(self) -> np.ndarray:
        """The centralised view (the deciding phone's observation; zeros at the end), for centralised critics."""
        return self.core._observation()


def parallel_env(config: dict[str, Any] | ScenarioConfig | None = None, scenario: str = "paper",
                 reward: str = "individual", render_mode: str | None = None, core: str = "auto") -> OffloadParallelEnv:
    """The PettingZoo ``ParallelEnv``: one agent per phone (see the module docstring); ``core`` as in ``OffloadEnv``."""
    return OffloadParallelEnv(config=config, scenario=scenario, reward=reward, render_mode=render_mode, core=core)


def env(config: dict[str, Any] | ScenarioConfig | None = None, scenario: str = "paper", reward: str = "individual",
        render_mode: str | None = None, core: str = "auto") -> Any:
    """The same environment in PettingZoo's AEC form (agents take turns; only the deciding phone's turn matters)."""
    return parallel_to_aec(parallel_env(config=config, scenario=scenario, reward=reward, render_mode=render_mode,
                                        core=core))
