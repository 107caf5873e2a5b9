"""The Gymnasium adapter around :class:`offload_gym.sim.engine.Simulator`."""

from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from offload_gym.config import ScenarioConfig, check_planner_checkpoint, make_config, merge_overrides
from offload_gym.envs import observation as obs_layout
from offload_gym.envs.compiled import CompiledEpisode, EpisodeBuffers, core_available, unsupported_reason
from offload_gym.policies import GreedyPolicy
from offload_gym.sim.energy import compute_energy_j, radio_energy_j
from offload_gym.sim.engine import FINISHED_LOG_LIMIT, PHONE, SUBTASK, WHOLE, Item, Query, Simulator
from offload_gym.sim.estimates import Estimate, Estimator, PlanEstimate, subtask_order
from offload_gym.sim.physics import token_bytes
from offload_gym.sim.workload import CHAIN, DAG, FAN_OUT

__all__ = ["OffloadEnv"]

_QUERY, _SUBTASK, _AGGREGATION, _END = "query", "subtask", "aggregation", "end"
#: ``core`` of :class:`OffloadEnv`
CORES = ("auto", "compiled", "python")

# Observation indices, derived from the feature names (a reordering of the names moves the values with them).
_GLOBAL_INDEX = {name: i for i, name in enumerate(obs_layout.GLOBAL_FEATURES)}
_LOCATION_INDEX = {name: i for i, name in enumerate(obs_layout.LOCATION_FEATURES)}
_G_DECISION_QUERY = _GLOBAL_INDEX["decision_query"]
_G_DECISION_SUBTASK = _GLOBAL_INDEX["decision_subtask"]
_G_DECISION_AGGREGATION = _GLOBAL_INDEX["decision_aggregation"]
_G_ITEM_PRED_DIFFICULTY = _GLOBAL_INDEX["item_pred_difficulty"]
_G_ITEM_PRED_INPUT_TOKENS = _GLOBAL_INDEX["item_pred_input_tokens"]
_G_ITEM_PRED_OUTPUT_TOKENS = _GLOBAL_INDEX["item_pred_output_tokens"]
_G_QUERY_ATTACHMENT_BYTES = _GLOBAL_INDEX["query_attachment_bytes"]
_G_ITEM_READS_ATTACHMENT = _GLOBAL_INDEX["item_reads_attachment"]
_G_QUERY_N_SUBTASKS = _GLOBAL_INDEX["query_n_subtasks"]
_G_STRUCTURE_FAN_OUT = _GLOBAL_INDEX["structure_fan_out"]
_G_STRUCTURE_CHAIN = _GLOBAL_INDEX["structure_chain"]
_G_STRUCTURE_DAG = _GLOBAL_INDEX["structure_dag"]
_G_ITEM_POSITION = _GLOBAL_INDEX["item_position"]
_G_ITEM_N_PREDECESSORS = _GLOBAL_INDEX["item_n_predecessors"]
_G_CAN_DECOMPOSE = _GLOBAL_INDEX["can_decompose"]
_G_PLAN_PRED_LATENCY = _GLOBAL_INDEX["plan_pred_latency"]
_G_PLAN_PRED_QUALITY = _GLOBAL_INDEX["plan_pred_quality"]
_G_EPISODE_PROGRESS = _GLOBAL_INDEX["episode_progress"]
_G_QUERIES_IN_FLIGHT = _GLOBAL_INDEX["queries_in_flight"]
_G_OWN_PHY_RATE = _GLOBAL_INDEX["own_phy_rate"]
_L_REACHABLE = _LOCATION_INDEX["reachable"]
_L_EST_TIME = _LOCATION_INDEX["est_time"]
_L_EST_QUALITY = _LOCATION_INDEX["est_quality"]
_L_BACKLOG = _LOCATION_INDEX["backlog"]
_L_OCCUPANCY = _LOCATION_INDEX["occupancy"]
_L_LINK_RATE = _LOCATION_INDEX["link_rate"]
_L_CONTENTION = _LOCATION_INDEX["contention"]
_L_IS_OWN_AP = _LOCATION_INDEX["is_own_ap"]
_G_STRUCTURE = {FAN_OUT: _G_STRUCTURE_FAN_OUT, CHAIN: _G_STRUCTURE_CHAIN, DAG: _G_STRUCTURE_DAG}


class OffloadEnv(gym.Env[np.ndarray, np.int64]):
    """Decomposition-aware LLM inference offloading in a multi-user, multi-AP Wi-Fi network.

    ## Description
    Phones issue LLM queries (Poisson). A planner predicts each query's difficulty and output length
    and its decomposition into ``K`` subtasks (fan-out, chain or DAG) plus an aggregation step. The
    agent is the scheduler: for every query it decides whether to run it whole on the phone, whole on
    an AP's edge server, or decomposed, and then where each subtask and the aggregation run. Latency
    comes from Wi-Fi contention (Bianchi DCF, flow level), the backhaul, phone compute and edge
    continuous batching; quality from the ability of the model that ran each piece (probit IRT).
    After arXiv 2604.21399 (Han & Sun, 2026). Simulation only, as in the paper.

    ## Steps are decisions
    The simulator runs events until a decision is due, then returns. All of a query's decisions happen
    at its arrival instant:

    | decision kind | when | action ``0`` | action ``j = 1..A`` | action ``A + 1`` |
    |---|---|---|---|---|
    | ``query`` | a query arrived | whole on the phone | whole on AP ``j - 1`` | decompose (masked if ``K = 1``) |
    | ``subtask`` | after "decompose", once per subtask in topological order, larger predicted work first within a depth | phone | AP ``j - 1`` | masked |
    | ``aggregation`` | after the last subtask | phone | AP ``j - 1`` | masked |

    ## Decision interfaces (``config={"action_mode": ...}``)
    | ``action_mode`` | registered id | the agent decides | actions |
    |---|---|---|---|
    | ``item`` (default) | ``WifiOffload-v0`` | every query, subtask and aggregation (the table above) | ``Discrete(A + 2)`` |
    | ``query`` | ``WifiOffload-query-v0`` | each query: phone, AP ``j`` or decompose; the built-in scheduler (greedy's list scheduler) then places the subtasks and the aggregation within the same step | ``Discrete(A + 2)`` |
    | ``residual`` | ``WifiOffload-residual-v0`` | each query, as in ``query``, plus action ``A + 2`` = follow the built-in scheduler (whatever greedy would do, decomposition included) | ``Discrete(A + 3)`` |

    In ``query`` and ``residual`` modes a step is one query, so no step passes without simulated time
    and rewards are not delayed by the zero-time subtask steps. ``residual`` appends the built-in's
    choice (one-hot over phone, APs, decompose: ``suggested_*``) to the observation, and "follow" is never
    masked. Greedy on ``query`` and "follow" on ``residual`` reproduce greedy on ``item`` exactly.
    :meth:`expert_action` gives the built-in's action for the pending decision in any mode (behaviour
    cloning: ``python -m agents.imitation``).

    ## Action space
    ``Discrete(A + 2)`` (``residual``: ``A + 3``). What is not allowed now is masked: :meth:`action_masks` (bool, for
    sb3-contrib ``MaskablePPO``) and ``info["action_mask"]`` (int8). APs are masked for a phone out of
    coverage. A masked action is replaced by the phone (always valid) and counted in
    ``info["invalid_actions"]``; with ``config={"invalid_action": "raise"}`` it raises ``ValueError``.
    An action outside the space always raises.

    ## Observation space
    A flat ``Box(float32)`` in ``[0, 1]`` (difficulty in ``[-1, 1]``), names in
    :attr:`observation_names`. Global features (20):

    | feature | meaning |
    |---|---|
    | ``decision_query/subtask/aggregation`` | decision kind, one-hot (all 0 on the final step) |
    | ``item_pred_difficulty`` | predicted difficulty of the item / 4 |
    | ``item_pred_input_tokens``, ``item_pred_output_tokens`` | ``log1p(tokens) / log1p(16384)`` |
    | ``query_attachment_bytes``, ``item_reads_attachment`` | attachment size (log) and whether this item needs it |
    | ``query_n_subtasks``, ``structure_fan_out/chain/dag`` | ``(K - 1) / (K_max - 1)``, structure one-hot |
    | ``item_position``, ``item_n_predecessors`` | subtask's place in the order, its predecessors |
    | ``can_decompose``, ``plan_pred_latency``, ``plan_pred_quality`` | the list scheduler's decomposed plan (query step) |
    | ``episode_progress``, ``queries_in_flight``, ``own_phy_rate`` | progress, load, this phone's PHY rate |

    Then 8 features per location (phone, AP 0, ..., AP A-1):

    | feature | meaning |
    |---|---|
    | ``reachable`` | 1 if the item may run there |
    | ``est_time`` | predicted time from now until the answer is on the phone (query, aggregation) or the subtask is done, squashed ``t / (t + 2 s)`` |
    | ``est_quality`` | ``Phi(theta_L - predicted difficulty)`` |
    | ``backlog`` | phone: squashed predicted busy time; AP: queued and in-transit items / ``max_batch`` |
    | ``occupancy`` | phone busy (0/1); AP batch / ``max_batch`` |
    | ``link_rate`` | predicted Wi-Fi share of this phone towards the location (log Mb/s) |
    | ``contention`` | contenders in that cell / (background + phones + 1) |
    | ``is_own_ap`` | the phone's own AP |

    With ``reward.energy_weight > 0`` (``WifiOffload-energy-v0``), A + 1 features follow:
    ``phone_est_energy``, ``ap0_est_energy``, ...: the phone's estimated energy for the pending item at
    each location, squashed ``e / (e + 1 J)`` (0 where unreachable). Without the energy term the
    observation, its names and its trajectories are exactly those above.

    The estimates use predicted tokens only: each edge's batch is projected over the predicted
    remaining tokens of its running, queued and in-transit streams, and subtask estimates include
    when already-placed predecessors' outputs arrive and the load this query's earlier subtasks added.

    ## Rewards
    A step's reward is the sum over queries that finished while the simulator advanced of
    ``quality - latency_weight * latency_s - deadline_penalty * [latency_s > deadline_s]`` (default
    ``linear``) or ``quality * exp(-latency_s / latency_scale_s)`` (``product``), less
    ``energy_weight * energy_j`` (0 by default). Per-query values are in ``info["completed"]``.

    ``energy_j`` is the phone's energy for the query above its baseline (``energy`` config section,
    sources in :mod:`offload_gym.sim.energy`): ``prefill_power_w`` and ``decode_power_w`` times the
    phone's own compute time; ``tx_power_w`` and ``rx_power_w`` times its airtime (bytes at its PHY rate,
    up and down); ``idle_power_w`` while the radio waits for offloaded work (from its first transfer's start
    to its last's end, less that airtime). Edge compute is the server's energy, not the battery's.

    ## Info
    | key | meaning |
    |---|---|
    | ``action_mask`` | int8 mask of the pending decision (as :meth:`action_masks`) |
    | ``decision`` | the pending decision's kind: ``query``, ``subtask``, ``aggregation`` or ``end`` |
    | ``decision_query_id`` | id of the query the pending decision belongs to (the one the next action decides); ``-1`` on the final step |
    | ``time_s``, ``elapsed_s`` | simulated time now, and the simulated seconds that passed during this step (0 in ``reset``) |
    | ``completed`` | one dict per query finished during this step: ``query_id, user, arrival_s, latency_s, quality, reward, energy_j, decomposed, placements, ...`` |
    | ``invalid_actions`` | masked actions replaced so far in the episode |
    | ``episode_metrics`` | final step only: ``queries, mean_latency_s, p95_latency_s, mean_quality, mean_reward, mean_energy_j, deadline_miss_rate, ...`` |

    ``decision_query_id``, ``elapsed_s`` and ``completed`` are what per-query credit and discounting by
    simulated time need (``agents/credit.py``: each decision scored by its own query's reward).

    ## Episode end
    After the episode's last query (``episode.queries``, 200) is placed, in-flight work drains, its
    reward is paid and the step returns ``truncated=True`` with ``info["episode_metrics"]``. There is no
    terminal state (``terminated`` is always False). No query is ever lost: arrived = finished.

    ## Arguments
    ``gym.make("offload_gym/WifiOffload-v0", config={...}, render_mode=None)``. ``config`` takes nested
    (or dotted) overrides of the scenario, validated into a frozen :class:`~offload_gym.config.ScenarioConfig`
    at ``env.unwrapped.config``. ``core="auto"`` (default) runs the episodes on the compiled core
    (:mod:`offload_gym.core`, numba; bit-for-bit the same trajectories as the Python engine) where the scenario
    is supported, else on the Python engine (:attr:`sim`): ``approx_estimates`` (deprecated) is not ported.
    Episodes of any length run compiled (the core keeps the rows of the queries in flight and about one workload
    block), and every ``render_mode`` draws either engine's state (:mod:`offload_gym.envs.scene`).
    ``core="compiled"`` makes an unported scenario an error; ``core="python"`` always runs the Python engine.
    ``reset(options={"config": {...}})`` changes the scenario from that episode on (the number of APs, the
    interface and whether energy is observed, which fix the spaces, cannot change).

    Registered variants: ``WifiOffload-tiny-v0`` (4 phones, 2 APs, 20 queries), ``-query-v0`` and
    ``-residual-v0`` (decision interfaces), ``-azure-code-v0`` and ``-azure-conv-v0`` (arrivals and lengths
    replayed from the Azure LLM inference traces of 2023, ``workload.source = "trace"``; time scaled to
    ``arrival_rate`` per phone, lengths to the scenario's medians, a random start row per seed) and
    ``-energy-v0`` (``reward.energy_weight`` 0.05 per J).

    ## Rendering
    ``render_mode="ansi"`` (text), ``"rgb_array"`` (uint8 picture: map with associations, link rates and
    in-flight transfers; per-AP batch, queue and contention; the current decision and its estimates) or
    ``"human"`` (the same picture in a matplotlib window, drawn at every step; nothing without a display).

    ## Starting state
    ``reset(seed=...)`` places the phones uniformly at random (unless ``topology.user_positions``), draws
    the episode's workload and runs the simulator to the first query's arrival: the first observation
    is that query's decision, with every AP idle.

    ## Version history
    * v0: initial release; ``action_mode`` (query, residual), ``decision_query_id``, ``elapsed_s`` and
      :meth:`expert_action` added without changing the item interface's trajectories; then trace workloads,
      ``energy_j`` / ``mean_energy_j`` and the optional energy term, also without changing them; then the
      compiled core (``core``), with the same trajectories.
    """

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": ["ansi", "rgb_array", "human"], "render_fps": 4,
        # gymnasium < 1.1 has no AutoresetMode; its vector envs always reset on the next step
        **({"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP} if hasattr(gym.vector, "AutoresetMode") else {}),
    }

    def __init__(self, config: dict[str, Any] | ScenarioConfig | None = None, scenario: str = "paper",
                 render_mode: str | None = None, core: str = "auto") -> None:
        if core not in CORES:
            raise ValueError(f"core: {core!r} is not allowed; choose one of {list(CORES)}")
        #: which simulation core runs the episodes: ``auto`` (compiled where the scenario is supported),
        #: ``compiled`` (an error where it is not) or ``python`` (the reference engine)
        self.core = core
        self.config = make_config(config, scenario=scenario)
        check_planner_checkpoint(self.config)
        _warn_if_deprecated(self.config)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode: {render_mode!r} is not allowed; choose one of "
                             f"{self.metadata['render_modes']} or None")
        self.render_mode = render_mode
        self.n_aps = self.config.topology.n_aps
        self.action_mode = self.config.action_mode
        #: residual mode only: the action that follows the built-in scheduler (``None`` otherwise)
        self.follow_action: int | None = self.n_aps + 2 if self.action_mode == "residual" else None
        self.action_space = spaces.Discrete(self.n_aps + (3 if self.follow_action is not None else 2))
        self._n_actions = int(self.action_space.n)
        residual = self.follow_action is not None
        self._energy_weight = self.config.reward.energy_weight
        #: whether the observation carries each location's estimated phone energy (``reward.energy_weight > 0``)
        self.observes_energy = self._energy_weight > 0
        low, high = obs_layout.observation_bounds(self.n_aps, residual=residual, energy=self.observes_energy)
        #: the feature vector's space (the whole observation space in the box format)
        self.features_space = spaces.Box(low, high, dtype=np.float32)
        self._dict_keys: tuple[str, str] | None = None
        if self.config.observation_format == "dict":
            self._dict_keys = (self.config.observation_key, self.config.action_mask_key)
            self.observation_space: spaces.Space[Any] = spaces.Dict({
                self._dict_keys[0]: self.features_space,
                self._dict_keys[1]: spaces.MultiBinary(int(self.action_space.n)),
            })
        else:
            self.observation_space = self.features_space
        self.observation_names: tuple[str, ...] = obs_layout.observation_names(self.n_aps, residual=residual,
                                                                              energy=self.observes_energy)
        self._n_global = len(obs_layout.GLOBAL_FEATURES)
        self._n_loc = len(obs_layout.LOCATION_FEATURES)
        # The built-in scheduler: greedy's rule on the item observation (expert, sub-scheduler, "follow").
        self._builtin = GreedyPolicy(self.config)
        self.sim: Simulator | None = None
        #: the episode on the compiled core (``None`` when the Python engine runs it, :attr:`sim`)
        self.episode: CompiledEpisode | None = None
        #: where a compiled episode keeps its decision arrays: rows of a batch's (OffloadVectorEnv), else its own
        self._episode_buffers: EpisodeBuffers | None = None
        self._n_item = self._n_global + (self.n_aps + 1) * self._n_loc
        self._reset_state()

    def _reset_state(self) -> None:
        self._query: Query | None = None
        self._kind = _END
        self._order: list[int] = []
        self._position = 0
        self._whole_item: Item | None = None
        self._estimates: dict[int, Estimate] = {}
        self._plan: PlanEstimate | None = None
        self._mask = np.zeros(self.n_aps + 2, dtype=bool)  # over the item actions (0..A+1)
        self._suggested: int | None = None  # the built-in scheduler's item action at this decision (cached)
        self._invalid_actions = 0
        # running sums, so memory does not grow with the episode (the simulator keeps only latencies)
        self._reward_sum = 0.0
        self._reward_count = 0
        self._done = True

    # ------------------------------------------------------------------ Gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        if options and "config" in options:
            self.config = self._merged_config(options["config"])
        self._reset_state()
        if self._runs_compiled():
            self.sim = None
            self.episode = CompiledEpisode(self.config, self.np_random, self.observes_energy, previous=self.episode,
                                           buffers=self._episode_buffers)
            self._mask = self.episode.mask
            self._done = False
            completed = [self._compiled_record(q) for q in self.episode.advance()]
            self._kind = self.episode.kind
        else:
            self.episode = None
            self.sim = Simulator(self.config, self.np_random, finished_log_limit=FINISHED_LOG_LIMIT)
            self.estimator = Estimator(self.sim, self.config.reward.latency_weight,
                                       approx_queue_reuse=self.config.approx_estimates)
            self._done = False
            completed = self._advance()
        if completed:  # pragma: no cover - nothing can finish before the first decision
            raise RuntimeError("a query finished before the first decision")
        if self.render_mode == "human":
            self.render()
        return self._emit(self._observation()), self._info([], 0.0)

    def _sync_compiled(self) -> None:
        """Catch up with a compiled episode stepped from outside (a batch's one compiled call for all its envs)."""
        episode = self.episode
        assert episode is not None
        self._kind = episode.kind
        self._suggested = None
        episode.mark_drained()  # the batch has rewarded them
        if self._kind == _END:
            self._done = True

    def _runs_compiled(self) -> bool:
        """Whether this episode runs on the compiled core (``core``; unported features: the Python engine)."""
        if self.core == "python":
            return False
        reason = unsupported_reason(self.config)
        if self.core == "compiled":
            if not core_available():
                raise ValueError("core: 'compiled' needs numba (pip install numba); use core='auto' or 'python'")
            if reason is not None:
                raise ValueError(f"core: 'compiled' does not run {reason} yet (issue 11); use core='auto' or 'python'")
            return True
        return reason is None and core_available()

    def _now(self) -> float:
        if self.episode is not None:
            return self.episode.now
        assert self.sim is not None
        return self.sim.now

    def deciding_user(self) -> int:
        """The phone whose query the pending decision belongs to (-1 when none is pending)."""
        if self._done or self._kind == _END:
            return -1
        if self.episode is not None:
            return self.episode.pending_user()
        return self._query.user if self._query is not None else -1

    def _merged_config(self, overrides: Any) -> ScenarioConfig:
        if isinstance(overrides, ScenarioConfig):  # a whole scenario, as gym.make accepts
            new = overrides
        elif isinstance(overrides, dict):
            new = make_config(merge_overrides(self.config.to_dict(), overrides))
        else:
            raise ValueError(f"options['config']: expected a mapping of overrides or a ScenarioConfig, "
                             f"got {type(overrides).__name__}")
        check_planner_checkpoint(new)
        _warn_if_deprecated(new)
        for key, old_value, new_value in (("topology.n_aps", self.config.topology.n_aps, new.topology.n_aps),
                                          ("action_mode", self.config.action_mode, new.action_mode),
                                          ("observation_format", self.config.observation_format, new.observation_format),
                                          ("observation_key", self.config.observation_key, new.observation_key),
                                          ("action_mask_key", self.config.action_mask_key, new.action_mask_key),
                                          ("reward.energy_weight > 0", self.config.reward.energy_weight > 0,
                                           new.reward.energy_weight > 0)):
            if new_value != old_value:
                raise ValueError(f"options['config']: {key} fixes the spaces and cannot change at reset "
                                 f"({old_value!r} -> {new_value!r}); make a new env instead")
        self._builtin = GreedyPolicy(new)
        self._energy_weight = new.reward.energy_weight
        return new

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._done or (self.sim is None and self.episode is None):
            raise RuntimeError("step() called after the episode ended (or before reset()); call reset() first")
        if self.episode is not None and self.follow_action is None and self.action_mode == "item":
            return self._step_compiled_item(action)
        a = self._check_action(action)
        if not self._allowed(a):
            self._masked_action(a)
            a = PHONE
        elif a == self.follow_action:
            a = self._builtin_action()
        start_s = self._now()
        completed = self._apply(a)
        # query and residual modes: the built-in scheduler places the subtasks and the aggregation
        while self.action_mode != "item" and self._kind in (_SUBTASK, _AGGREGATION):
            completed += self._apply(self._builtin_action())
        reward = float(sum(c["reward"] for c in completed))
        truncated = self._kind == _END
        if truncated:
            self._done = True
        obs = self._emit(self._observation())
        info = self._info(completed, self._now() - start_s)
        if self.render_mode == "human":
            self.render()
        return obs, reward, False, truncated, info

    def _masked_action(self, a: int) -> None:
        """A masked action: raise (``invalid_action`` raise) or count it (it then runs on the phone)."""
        if self.config.invalid_action == "raise":
            allowed = [int(i) for i in np.flatnonzero(self.action_masks())]
            raise ValueError(f"action: {a} is masked at this {self._kind} decision; allowed actions: {allowed}")
        self._invalid_actions += 1

    def _step_compiled_item(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """:meth:`step` of the item interface on the compiled core: the same results in fewer Python calls (a
        step is a few tens of microseconds, so the calls count). ``tests/test_core_env.py`` compares it with the
        Python engine's step by step."""
        episode = self.episode
        assert episode is not None
        a = self._check_action(action)
        mask = self._mask
        if not mask[a]:
            self._masked_action(a)
            a = PHONE
        start_s = episode.now
        done = episode.apply(a)
        kind = episode.kind
        self._kind = kind
        self._suggested = None
        completed = []
        reward = 0.0  # summed in finishing order, as the Python engine's step sums them
        for q in done:
            record = self._compiled_record(q)
            reward += record["reward"]
            completed.append(record)
        truncated = kind == _END
        if truncated:
            self._done = True
            features = np.zeros(len(self.observation_names), dtype=np.float32)
        else:
            features = episode.g.astype(np.float32)
        now = episode.now
        info: dict[str, Any] = {
            "action_mask": mask.astype(np.int8), "decision": kind,
            "decision_query_id": -1 if truncated else episode.query_id, "time_s": now, "elapsed_s": now - start_s,
            "invalid_actions": self._invalid_actions, "completed": completed,
        }
        if truncated:
            info["episode_metrics"] = self.episode_metrics()
        if self.render_mode == "human":
            self.render()
        return self._emit(features), reward, False, truncated, info

    def _emit(self, features: np.ndarray) -> Any:
        """The observation in the configured format: the features, or ``{features, action mask}``."""
        if self._dict_keys is None:
            return features
        return {self._dict_keys[0]: features, self._dict_keys[1]: self.action_masks().astype(np.int8)}

    def _allowed(self, action: int) -> bool:
        return action == self.follow_action or (action < self._mask.size and bool(self._mask[action]))

    def _apply(self, a: int) -> list[dict[str, Any]]:
        """One item-level decision ``a`` (already allowed); returns the queries finished if the simulator advanced."""
        if self.episode is not None:
            done = self.episode.apply(a)
            self._kind = self.episode.kind
            self._suggested = None
            return [self._compiled_record(q) for q in done]
        sim, query = self.sim, self._query
        assert sim is not None and query is not None
        finished_query = False
        if self._kind == _QUERY:
            if a == self.n_aps + 1:
                sim.begin_decomposition(query)
                self._order = subtask_order(query)
                self._position = 0
                self._kind = _SUBTASK
            else:
                item = sim.place_whole(query, a, self._whole_item)
                self._commit_estimate(item, a)
                finished_query = True
        elif self._kind == _SUBTASK:
            index = self._order[self._position]
            item = sim.place_subtask(query, index, a)
            self._commit_estimate(item, a)
            self._position += 1
            if self._position == len(self._order):
                self._kind = _AGGREGATION
        else:
            item = sim.place_aggregation(query, a)
            self._commit_estimate(item, a)
            finished_query = True
        if finished_query:
            return self._advance()
        self.estimator.refresh()
        self._prepare_decision()
        return []

    def action_masks(self) -> np.ndarray:
        """Bool mask of the actions allowed at the current decision (for sb3-contrib MaskablePPO)."""
        if self.follow_action is None:
            return self._mask.copy()
        return np.append(self._mask, not self._done)

    def expert_action(self) -> int:
        """The built-in scheduler's (greedy's) action for the current decision, in this env's action space.

        ``item`` and ``query`` modes: greedy's choice, exactly what ``make_policy("greedy")`` would pick from
        this observation and mask. ``residual`` mode: :attr:`follow_action`. On the final step (no decision
        pending) it is 0. Used for behaviour cloning (``python -m agents.imitation``).
        """
        if self._done or self._kind == _END:
            return PHONE
        if self.follow_action is not None:
            return self.follow_action
        return self._builtin_action()

    def _builtin_action(self, item_obs: list[float] | None = None) -> int:
        """Greedy's item action at the current decision, from the item observation and mask (cached per decision).

        ``item_obs``: the pending decision's item observation when the caller has already built it.
        """
        if self._suggested is None:
            if item_obs is None and self.episode is not None:
                item_obs = self.episode.observation()[: self._n_item]
            obs = np.array(item_obs if item_obs is not None else self._item_observation(), dtype=np.float32)
            self._suggested = self._builtin.decide(obs, self._mask)
        return self._suggested

    def render(self) -> str | np.ndarray | None:  # type: ignore[override]
        """``ansi``: text state; ``rgb_array``: uint8 (H, W, 3) picture; ``human``: matplotlib window (no-op headless)."""
        if self.render_mode == "ansi":
            return self._render_ansi()
        if self.render_mode == "rgb_array":
            from offload_gym.render import render_rgb

            return render_rgb(self)
        if self.render_mode == "human":
            from offload_gym.render import render_human

            render_human(self)
        return None

    def close(self) -> None:
        if self.render_mode in ("rgb_array", "human"):
            from offload_gym.render import close_render

            close_render(self)

    # ------------------------------------------------------------------ internals
    def _check_action(self, action: Any) -> int:
        n = self._n_actions
        if isinstance(action, (int, np.integer)) and not isinstance(action, bool):  # the common case, fast
            a = int(action)
            if 0 <= a < n:
                return a
            raise ValueError(self._outside_message(a, n))
        try:
            arr = np.asarray(action)
            if arr.size != 1 or (not np.issubdtype(arr.dtype, np.integer) and not (
                    np.issubdtype(arr.dtype, np.floating) and float(arr.reshape(-1)[0]).is_integer())):
                raise TypeError
            a = int(arr.reshape(-1)[0])
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"action: {action!r} is not an integer in Discrete({n}); allowed 0..{n - 1}") from None
        if not 0 <= a < n:
            raise ValueError(self._outside_message(a, n))
        return a

    def _outside_message(self, a: int, n: int) -> str:
        follow = f", {self.follow_action} follow the built-in scheduler" if self.follow_action is not None else ""
        shown = a if abs(a) < 10**12 else f"{float(a):.3g}"
        return (f"action: {shown} is outside Discrete({n}); allowed 0..{n - 1} "
                f"(0 phone, 1..{self.n_aps} AP, {self.n_aps + 1} decompose{follow})")

    def _commit_estimate(self, item: Item, location: int) -> None:
        est = self._estimates.get(location)
        if est is not None:
            item.est_ready, item.est_finish = est.ready_s, est.finish_s
        else:  # pragma: no cover - every allowed location has an estimate
            item.est_ready = item.est_finish = self.sim.now if self.sim else 0.0

    def _advance(self) -> list[dict[str, Any]]:
        """Run the simulator to the next arrival (or drain) and set up its decision."""
        sim = self.sim
        assert sim is not None
        query = sim.run_until_decision()
        completed = [self._completed_record(c) for c in sim.pop_completed()]
        self._query = query
        self.estimator.refresh()
        if query is None:
            self._kind = _END
            self._mask = np.zeros(self.n_aps + 2, dtype=bool)
            self._mask[PHONE] = True
            return completed
        self._kind = _QUERY
        self._whole_item = sim.make_whole_item(query)
        if query.spec.n_subtasks > 1:
            sim.prepare_decomposition(query)
        self._prepare_decision()
        return completed

    def _prepare_decision(self) -> None:
        sim, query = self.sim, self._query
        assert sim is not None and query is not None
        est = self.estimator
        mask = np.zeros(self.n_aps + 2, dtype=bool)
        mask[sim.usable_locations(query.user)] = True
        self._plan = None
        self._suggested = None
        if self._kind == _QUERY:
            assert self._whole_item is not None
            self._estimates = est.whole(query, self._whole_item)
            if query.spec.n_subtasks > 1:
                mask[self.n_aps + 1] = True
                self._plan = est.plan(query, subtask_order(query))
        elif self._kind == _SUBTASK:
            item = query.subtasks[self._order[self._position]]
            self._estimates = est.subtask(query, item)
        else:
            assert query.aggregation is not None
            self._estimates = est.aggregation(query, query.aggregation)
        self._mask = mask

    def _current_item(self) -> Item | None:
        query = self._query
        if query is None:
            return None
        if self._kind == _QUERY:
            return self._whole_item
        if self._kind == _SUBTASK:
            return query.subtasks[self._order[self._position]]
        return query.aggregation

    def _completed_record(self, c: Any) -> dict[str, Any]:
        query = c.query
        if query.redispatched:
            placements = [PHONE]
        elif query.decomposed and query.aggregation is not None:
            placements = [s.location for s in query.subtasks] + [query.aggregation.location]
        else:
            placements = [query.whole.location] if query.whole is not None else []
        return self._record(query.qid, query.user, query.arrival_time, c.latency_s, c.quality, query.decomposed,
                            placements, query.spec.n_subtasks, query.spec.attachment_bytes, query.energy_j,
                            query.failed, query.fail_reason, query.redispatched)

    def _record(self, query_id: int, user: int, arrival_s: float, latency_s: float, quality: float, decomposed: bool,
                placements: list[int], n_subtasks: int, attachment_bytes: float, energy_j: float, failed: bool = False,
                fail_reason: str = "", redispatched: bool = False, reward: float | None = None) -> dict[str, Any]:
        """A finished query's ``completed`` record (either core). ``reward``: the compiled core's (it keeps the
        episode's sums); ``None``: computed here and added to the episode's sums (the Python engine)."""
        if reward is None:
            reward = -self.config.reward.failure_penalty if failed else self._query_reward(latency_s, quality)
            if self._energy_weight:
                reward -= self._energy_weight * energy_j
            self._reward_sum += reward
            self._reward_count += 1
        return {
            "query_id": query_id, "user": user, "arrival_s": arrival_s, "latency_s": latency_s, "quality": quality,
            "reward": reward, "decomposed": decomposed, "placements": placements, "n_subtasks": n_subtasks,
            "attachment_bytes": attachment_bytes, "deadline_missed": latency_s > self.config.reward.deadline_s,
            "failed": failed, "fail_reason": fail_reason, "redispatched": redispatched, "energy_j": energy_j,
        }

    def _query_reward(self, latency_s: float, quality: float) -> float:
        r = self.config.reward
        if r.kind == "product":
            return quality * math.exp(-latency_s / r.latency_scale_s)
        return quality - r.latency_weight * latency_s - r.deadline_penalty * float(latency_s > r.deadline_s)

    def _observation(self) -> np.ndarray:
        if self.episode is not None:
            return self._compiled_observation()
        if self.sim is None or self._query is None or self._kind == _END:
            return np.zeros(len(self.observation_names), dtype=np.float32)
        g = self._item_observation()
        if self.observes_energy:
            g += self._energy_features()
        if self.follow_action is not None:  # residual: the built-in scheduler's choice, one-hot
            suggestion = [0.0] * (self.n_aps + 2)
            suggestion[self._builtin_action(g)] = 1.0
            g += suggestion
        return np.array(g, dtype=np.float32)

    def _compiled_observation(self) -> np.ndarray:
        episode = self.episode
        assert episode is not None
        if self._kind == _END:
            return np.zeros(len(self.observation_names), dtype=np.float32)
        g = episode.observation()
        if self.follow_action is None:
            return g.astype(np.float32)
        out = np.zeros(len(self.observation_names), dtype=np.float32)  # residual: greedy's choice, one-hot
        out[: g.size] = g
        out[g.size + self._builtin_action(g[: self._n_item])] = 1.0
        return out

    def _compiled_record(self, q: int) -> dict[str, Any]:
        """``_completed_record`` for query ``q`` finished on the compiled core."""
        episode = self.episode
        assert episode is not None
        (user, arrival_s, latency_s, quality, decomposed, placements, n_subtasks, attachment_bytes, energy_j, reward,
         failed, fail_reason, redispatched) = episode.finished(q)
        return self._record(q, user, arrival_s, latency_s, quality, decomposed, placements, n_subtasks, attachment_bytes,
                            energy_j, failed, fail_reason, redispatched, reward=reward)

    def _item_observation(self) -> list[float]:
        """The item-interface observation of the pending decision, as a list (converted once by the caller)."""
        sim, query, kind = self.sim, self._query, self._kind
        assert sim is not None and query is not None
        view = sim.view
        size = self._n_global + (self.n_aps + 1) * self._n_loc
        cfg = self.config
        spec = query.spec
        k = spec.n_subtasks
        g = [0.0] * size
        item: Item | None
        if kind == _QUERY:
            item = self._whole_item
            g[_G_DECISION_QUERY] = 1.0
        elif kind == _SUBTASK:
            item = query.subtasks[self._order[self._position]]
            g[_G_DECISION_SUBTASK] = 1.0
            g[_G_ITEM_POSITION] = self._position / k
            g[_G_ITEM_N_PREDECESSORS] = len(item.preds) / max(k - 1, 1)
        else:
            item = query.aggregation
            g[_G_DECISION_AGGREGATION] = 1.0
            g[_G_ITEM_POSITION] = 1.0
            g[_G_ITEM_N_PREDECESSORS] = 1.0
        assert item is not None
        g[_G_ITEM_PRED_DIFFICULTY] = min(max(item.pred_difficulty / obs_layout.DIFFICULTY_SCALE, -1.0), 1.0)
        g[_G_ITEM_PRED_INPUT_TOKENS] = min(math.log1p(item.pred_input_tokens) / obs_layout.TOKENS_LOG_MAX, 1.0)
        g[_G_ITEM_PRED_OUTPUT_TOKENS] = min(math.log1p(item.pred_output_tokens) / obs_layout.TOKENS_LOG_MAX, 1.0)
        g[_G_QUERY_ATTACHMENT_BYTES] = min(math.log1p(spec.attachment_bytes) / obs_layout.BYTES_LOG_MAX, 1.0)
        reads = kind == _QUERY or (kind == _SUBTASK and not item.preds)
        g[_G_ITEM_READS_ATTACHMENT] = 1.0 if reads and spec.attachment_bytes > 0 else 0.0
        k_max = cfg.max_subtasks
        g[_G_QUERY_N_SUBTASKS] = (k - 1) / (k_max - 1) if k_max > 1 else 0.0
        if k > 1:
            g[_G_STRUCTURE[spec.structure]] = 1.0
        time_scale = obs_layout.TIME_SCALE_S
        plan = self._plan
        if plan is not None:
            g[_G_CAN_DECOMPOSE] = 1.0
            t = plan.latency_s
            if t < 0.0:
                t = 0.0
            g[_G_PLAN_PRED_LATENCY] = t / (t + time_scale)
            g[_G_PLAN_PRED_QUALITY] = plan.quality
        self._fill_state(g, query.user)
        now = view.now
        estimates = self._estimates
        o = self._n_global
        _put_estimate(g, o, estimates.get(PHONE), now, time_scale)
        for e in range(view.n_aps):
            o += self._n_loc
            _put_estimate(g, o, estimates.get(e + 1), now, time_scale)
        return g

    def _fill_state(self, g: list[float], user: int) -> None:
        """Write what phone ``user`` knows of the network now into ``g`` (item layout): the episode's progress
        and load, its own PHY rate, backlog, busy flag and link share, and what each AP broadcasts (queue,
        batch, contention in its cell)."""
        sim = self.sim
        assert sim is not None
        view, cfg = sim.view, self.config
        time_scale = obs_layout.TIME_SCALE_S
        g[_G_EPISODE_PROGRESS] = sim.queries_arrived / cfg.episode.queries
        g[_G_QUERIES_IN_FLIGHT] = math.tanh((sim.queries_arrived - sim.queries_finished) / sim.n_users)
        phy_mbps = view.up_rate_bps[user] / 1e6
        g[_G_OWN_PHY_RATE] = math.log1p(phy_mbps) / obs_layout.RATE_LOG_MAX
        now = view.now
        own = int(view.own_ap[user])
        contention_norm = cfg.wifi.background_stations + sim.n_users + 1
        n_loc = self._n_loc
        o = self._n_global
        # the phone
        t = self.estimator.phone_free_at(user) - now
        if t < 0.0:
            t = 0.0
        g[o + _L_BACKLOG] = t / (t + time_scale)
        g[o + _L_OCCUPANCY] = 1.0 if view.phone_running(user) is not None else 0.0
        g[o + _L_LINK_RATE] = g[_G_OWN_PHY_RATE]
        link_rate = 0.0
        if own >= 0:
            g[o + _L_CONTENTION] = min(view.cell_contenders(own) / contention_norm, 1.0)
            share_bps = 8.0 * 1500.0 / max(self.estimator.uplink_s(user, 1500.0), 1e-12)
            link_rate = min(math.log1p(share_bps / 1e6) / obs_layout.RATE_LOG_MAX, 1.0)
        # the APs
        max_batch = cfg.edge.max_batch
        for e in range(view.n_aps):
            o += n_loc
            g[o + _L_BACKLOG] = min((view.edge_queued(e) + view.edge_in_transit(e)) / max_batch, 1.0)
            g[o + _L_OCCUPANCY] = view.edge_batch(e) / max_batch
            g[o + _L_LINK_RATE] = link_rate
            g[o + _L_CONTENTION] = min(view.cell_contenders(e) / contention_norm, 1.0)
            g[o + _L_IS_OWN_AP] = 1.0 if e == own else 0.0

    def phone_view(self, user: int) -> np.ndarray:
        """What phone ``user`` observes now (the multi-agent interface's per-phone observation, box features).

        The pending decision's phone sees the observation (its item, the estimates for it, and the state).
        Any other phone sees the same layout with no item: the decision kind, item, plan and estimate features
        are 0, ``reachable`` marks the locations it could use, and the rest is what it knows of the network
        (:meth:`_fill_state`: its own phone and link, and what each AP broadcasts).
        """
        if self.deciding_user() == user:
            return self._observation()
        out = np.zeros(len(self.observation_names), dtype=np.float32)
        if self.episode is not None:
            if self._kind == _END:
                return out
            state = np.zeros(self._n_item)
            for loc in self.episode.phone_state(user, state):
                state[self._n_global + loc * self._n_loc + _L_REACHABLE] = 1.0
            out[: self._n_item] = state
            return out
        if self.sim is None or self._kind == _END:
            return out
        g = [0.0] * (self._n_global + (self.n_aps + 1) * self._n_loc)
        self._fill_state(g, user)
        for loc in self.sim.view.usable_locations(user):
            g[self._n_global + loc * self._n_loc + _L_REACHABLE] = 1.0
        out[: len(g)] = g
        return out

    def _energy_features(self) -> list[float]:
        """Per location, the squashed estimate of the phone's energy for the pending item there (0 unreachable).

        Phone: its compute, from the predicted tokens. An AP: the phone's airtime for what it uploads itself for
        the item (the prompt and attachment of a whole query; a subtask's context, the attachment for a root
        subtask and the outputs of predecessors it computed; for the aggregation, the outputs of the subtasks it
        computed) and for the answer if the item answers the phone, at the current PHY rates, plus the radio
        awake over the rest of the estimated wait. The same powers as the simulator's accounting.
        """
        sim, query = self.sim, self._query
        item = self._current_item()
        assert sim is not None and query is not None and item is not None
        view, params = sim.view, sim.energy_params
        user = query.user
        out = [0.0] * (self.n_aps + 1)
        prefill_s = item.pred_input_tokens / view.phone_prefill_tps[user]
        decode_s = item.pred_output_tokens / view.phone_decode_tps[user]
        energies = {PHONE: compute_energy_j(prefill_s, decode_s, params)}
        if len(self._estimates) > 1:
            w = self.config.wifi

            def msg_bytes(tokens: float) -> float:
                return token_bytes(tokens, w.bytes_per_token, w.message_overhead_bytes)

            # what the phone itself uploads for the item: the prompt (whole), the context and the outputs of
            # predecessors it computed (subtask), the outputs of the subtasks it computed (aggregation)
            if item.kind == WHOLE:
                up_bytes = msg_bytes(item.pred_input_tokens) + query.spec.attachment_bytes
            else:
                inputs = item.preds if item.kind == SUBTASK else range(len(query.subtasks))
                up_bytes = sum(msg_bytes(query.subtasks[d].pred_output_tokens) for d in inputs
                               if query.subtasks[d].location == PHONE)
                if item.kind == SUBTASK:
                    up_bytes += msg_bytes(self.config.workload.subtask_context_tokens)
                    if not item.preds:
                        up_bytes += query.spec.attachment_bytes
            answers_phone = item.kind != SUBTASK
            down_bytes = msg_bytes(item.pred_output_tokens)
            up_rate, down_rate = view.up_rate_bps[user], view.down_rate_bps[user]
            tx_s = 8.0 * up_bytes / up_rate if up_rate > 0 else 0.0
            rx_s = 8.0 * down_bytes / down_rate if answers_phone and down_rate > 0 else 0.0
            for loc, est in self._estimates.items():
                if loc != PHONE:
                    idle_s = max(est.finish_s - view.now - tx_s - rx_s, 0.0)
                    energies[loc] = radio_energy_j(tx_s, rx_s, idle_s, params)
        for loc, energy_j in energies.items():
            if loc in self._estimates:
                out[loc] = energy_j / (energy_j + obs_layout.ENERGY_SCALE_J)
        return out

    def _info(self, completed: list[dict[str, Any]], elapsed_s: float) -> dict[str, Any]:
        pending = not self._done and self._kind != _END
        if self.episode is not None:
            query_id = self.episode.query_id if pending else -1
        else:
            query_id = self._query.qid if pending and self._query is not None else -1
        info: dict[str, Any] = {
            "action_mask": (self._mask if self.follow_action is None else self.action_masks()).astype(np.int8),
            "decision": self._kind,
            "decision_query_id": query_id,
            "time_s": self._now(),
            "elapsed_s": elapsed_s,
            "invalid_actions": self._invalid_actions,
            "completed": completed,
        }
        if self._kind == _END:
            info["episode_metrics"] = self.episode_metrics()
        return info

    def episode_metrics(self) -> dict[str, float]:
        """Metrics over the queries finished so far in this episode."""
        if self.episode is not None:
            episode = self.episode
            return self._metrics(episode.summary(), episode.edge_share(), *episode.fault_counts(), episode.now,
                                 *episode.reward_sums())
        sim = self.sim
        assert sim is not None
        return self._metrics(sim.summary, sim.edge_output_tokens / sim.total_output_tokens if sim.total_output_tokens
                             else 0.0, sim.failed_queries, sim.redispatched_queries, sim.now, self._reward_sum,
                             self._reward_count)

    def _metrics(self, summary: Any, edge_share: float, failed: int, redispatched: int, now: float, reward_sum: float,
                 reward_count: int) -> dict[str, float]:
        n = summary.count
        return {
            "queries": n,
            "mean_latency_s": summary.mean_latency_s(),
            "p95_latency_s": summary.p95_latency_s(),
            "mean_quality": summary.mean_quality(),
            "mean_energy_j": summary.mean_energy_j(),
            "mean_reward": reward_sum / reward_count if reward_count else 0.0,
            "total_reward": reward_sum,
            "deadline_miss_rate": summary.deadline_miss_rate(self.config.reward.deadline_s),
            "decomposed_share": summary.decomposed_share(),
            "edge_share": edge_share,
            "invalid_actions": self._invalid_actions,
            "failed_queries": failed,
            "redispatched_queries": redispatched,
            "sim_time_s": now,
        }

    def _render_ansi(self) -> str:
        from offload_gym.envs.scene import scene

        sc = scene(self)
        if sc is None:
            return "offload_gym: not reset\n"
        now = sc.now_s
        kind = sc.decision.kind if sc.decision is not None else _END
        lines = [f"t={now:9.3f}s  arrived={sc.queries_arrived}/{self.config.episode.queries} "
                 f"finished={sc.queries_finished}  decision={kind}"]
        for e in range(sc.n_aps):
            lines.append(f"  AP{e}: batch {sc.edge_batch[e]:2d}/{self.config.edge.max_batch} "
                         f"queued {sc.edge_queued[e]:2d} in-transit {sc.edge_in_transit[e]:2d}  "
                         f"contenders {sc.cell_contenders[e]:3d}")
        d = sc.decision
        if d is not None:
            lines.append(f"  query {d.query_id} from phone {d.user} (AP{int(sc.own_ap[d.user])}): "
                         f"K={d.n_subtasks} pred out {d.pred_output_tokens:.0f} tok, "
                         f"b^={d.pred_difficulty:+.2f}")
            for loc, est in sorted(d.estimates.items()):
                name = "phone" if loc == PHONE else f"AP{loc - 1}"
                lines.append(f"    {name:6s} est {est.finish_s - now:7.3f}s  quality {est.quality:.3f}")
            if d.plan is not None:
                lines.append(f"    decomposed plan: {d.plan[0]:.3f}s quality {d.plan[1]:.3f}")
        return "\n".join(lines) + "\n"


def _warn_if_deprecated(cfg: ScenarioConfig) -> None:
    """``approx_estimates`` is deprecated: it approximates the Python engine's estimates to save time there, and
    the compiled core computes them exactly in less time than that approximation takes."""
    if cfg.approx_estimates:
        warnings.warn("approx_estimates is deprecated and goes with the Python engine: the compiled core (the default "
                      "without it) computes the estimates exactly, 3-8x faster per decision than the approximation "
                      "in the overloaded cases of benchmarks/bench_overload.py --approx; this episode runs on the "
                      "Python engine with approximate estimates", FutureWarning, stacklevel=3)


def _put_estimate(g: list[float], o: int, est: Estimate | None, now: float, time_scale: float) -> None:
    """A location's ``reachable``, squashed ``est_time`` and ``est_quality`` features at offset ``o``."""
    if est is None:
        g[o + _L_EST_TIME] = 1.0 - 1e-6  # unreachable: the worst time
        return
    t = est.finish_s - now
    if t < 0.0:
        t = 0.0
    g[o + _L_REACHABLE], g[o + _L_EST_TIME], g[o + _L_EST_QUALITY] = 1.0, t / (t + time_scale), est.quality
