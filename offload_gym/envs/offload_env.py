"""The Gymnasium adapter around the compiled simulation core (:class:`~offload_gym.envs.compiled.CompiledEpisode`)."""

from __future__ import annotations

from typing import Any, ClassVar, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from offload_gym.config import ScenarioConfig, check_planner_checkpoint, make_config, merge_overrides
from offload_gym.envs import observation as obs_layout
from offload_gym.envs.compiled import CompiledEpisode, EpisodeBuffers, core_available
from offload_gym.envs.info import StepInfo
from offload_gym.policies import GreedyPolicy
from offload_gym.sim.physics import PHONE

__all__ = ["OffloadEnv"]

_END = "end"
#: ``core`` of :class:`OffloadEnv`: both run the compiled core (the argument stays for code that passes it)
CORES = ("auto", "compiled")


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
    simulated time need (``agents/credit.py``: each decision scored by its own query's reward). The info is a
    :class:`~offload_gym.envs.info.StepInfo`, a ``dict`` whose deep copy (SB3's ``DummyVecEnv`` makes one every
    step) is about twice as fast as ``copy.deepcopy``'s generic one and the same copy; it pickles as a plain
    ``dict``, and the records in ``completed`` are plain dicts.

    ## Episode end
    After the episode's last query (``episode.queries``, 200) is placed, in-flight work drains, its
    reward is paid and the step returns ``truncated=True`` with ``info["episode_metrics"]``. There is no
    terminal state (``terminated`` is always False). No query is ever lost: arrived = finished.

    ## Arguments
    ``gym.make("offload_gym/WifiOffload-v0", config={...}, render_mode=None)``. ``config`` takes nested
    (or dotted) overrides of the scenario, validated into a frozen :class:`~offload_gym.config.ScenarioConfig`
    at ``env.unwrapped.config``. The episodes run on the compiled core (:mod:`offload_gym.core`, numba), which
    replaced the Python engine of earlier versions with the same trajectories bit for bit; ``NUMBA_DISABLE_JIT=1``
    runs the core's source as plain Python, for debugging. ``core`` (``"auto"``, the default, or ``"compiled"``;
    both mean the compiled core) is kept for code that passes it.
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
      compiled core (``core``), with the same trajectories; then the Python engine (``core="python"``) and
      ``approx_estimates`` removed (the compiled core reproduces the engine's recorded trajectories).
    """

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": ["ansi", "rgb_array", "human"], "render_fps": 4,
        # gymnasium < 1.1 has no AutoresetMode; its vector envs always reset on the next step
        **({"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP} if hasattr(gym.vector, "AutoresetMode") else {}),
    }

    def __init__(self, config: dict[str, Any] | ScenarioConfig | None = None, scenario: str = "paper",
                 render_mode: str | None = None, core: str = "auto") -> None:
        if core == "python":
            raise ValueError("core: 'python' was removed with the Python engine (the compiled core gives its "
                             "trajectories bit for bit); NUMBA_DISABLE_JIT=1 runs the compiled core's source as plain "
                             f"Python for debugging; choose one of {list(CORES)}")
        if core not in CORES:
            raise ValueError(f"core: {core!r} is not allowed; choose one of {list(CORES)}")
        if not core_available():
            raise ValueError("core: the compiled core needs numba (a dependency of offload_gym: pip install numba)")
        #: the ``core`` argument (``auto`` or ``compiled``: both run the compiled core)
        self.core = core
        self.config = make_config(config, scenario=scenario)
        check_planner_checkpoint(self.config)
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
        #: whether the observation carries each location's estimated phone energy (``reward.energy_weight > 0``)
        self.observes_energy = self.config.reward.energy_weight > 0
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
        #: the episode on the compiled core (``None`` before the first reset)
        self.episode: CompiledEpisode | None = None
        #: where a compiled episode keeps its decision arrays: rows of a batch's (OffloadVectorEnv), else its own
        self._episode_buffers: EpisodeBuffers | None = None
        self._n_item = self._n_global + (self.n_aps + 1) * self._n_loc
        self._reset_state()

    def _reset_state(self) -> None:
        self._mask = np.zeros(self.n_aps + 2, dtype=bool)  # over the item actions (0..A+1)
        self._suggested: int | None = None  # the built-in scheduler's item action at this decision (cached)
        self._invalid_actions = 0

    # ------------------------------------------------------------------ Gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        if options and "config" in options:
            self.config = self._merged_config(options["config"])
        self._reset_state()
        self.episode = CompiledEpisode(self.config, self.np_random, self.observes_energy, previous=self.episode,
                                       buffers=self._episode_buffers)
        self._mask = self.episode.mask
        completed = [self._finished_record(q) for q in self.episode.advance()]
        if completed:  # pragma: no cover - nothing can finish before the first decision
            raise RuntimeError("a query finished before the first decision")
        if self.render_mode == "human":
            self.render()
        return self._emit(self._observation()), self._info([], 0.0)

    @property
    def _kind(self) -> str:
        """The pending decision's kind (``"end"`` once the episode is over, and before the first reset): the
        episode's, so that an episode stepped from outside (a batch's compiled call) needs no catching up."""
        episode = self.episode
        return _END if episode is None else episode.kind

    @property
    def _done(self) -> bool:
        """Whether no decision is pending: before the first reset, and after the episode's final step."""
        episode = self.episode
        return episode is None or episode.ended

    def _now(self) -> float:
        assert self.episode is not None
        return self.episode.now

    def deciding_user(self) -> int:
        """The phone whose query the pending decision belongs to (-1 when none is pending)."""
        episode = self.episode
        if episode is None or episode.ended:
            return -1
        return episode.pending_user()

    def _merged_config(self, overrides: Any) -> ScenarioConfig:
        if isinstance(overrides, ScenarioConfig):  # a whole scenario, as gym.make accepts
            new = overrides
        elif isinstance(overrides, dict):
            new = make_config(merge_overrides(self.config.to_dict(), overrides))
        else:
            raise ValueError(f"options['config']: expected a mapping of overrides or a ScenarioConfig, "
                             f"got {type(overrides).__name__}")
        check_planner_checkpoint(new)
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
        return new

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        episode = self.episode
        if episode is None or episode.ended:
            raise RuntimeError("step() called after the episode ended (or before reset()); call reset() first")
        if self.follow_action is None and self.action_mode == "item":
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
        while self.action_mode != "item" and self._kind in ("subtask", "aggregation"):
            completed += self._apply(self._builtin_action())
        reward = float(sum(c["reward"] for c in completed))
        truncated = self._kind == _END
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
        """:meth:`step` of the item interface: the same results as the general path in fewer Python calls (a
        step is a few tens of microseconds, so the calls count)."""
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
        self._suggested = None
        completed = []
        reward = 0.0  # summed in finishing order, as the general path sums them
        for q in done:
            record = self._finished_record(q)
            reward += record["reward"]
            completed.append(record)
        truncated = kind == _END
        if truncated:
            features = np.zeros(len(self.observation_names), dtype=np.float32)
        else:
            features = episode.g.astype(np.float32)
        now = episode.now
        info: dict[str, Any] = StepInfo(
            action_mask=mask.astype(np.int8), decision=kind,
            decision_query_id=-1 if truncated else episode.query_id, time_s=now, elapsed_s=now - start_s,
            invalid_actions=self._invalid_actions, completed=completed,
        )
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
        assert self.episode is not None
        done = self.episode.apply(a)
        self._suggested = None
        return [self._finished_record(q) for q in done]

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
        if self._done:
            return PHONE
        if self.follow_action is not None:
            return self.follow_action
        return self._builtin_action()

    def _builtin_action(self, item_obs: np.ndarray | None = None) -> int:
        """Greedy's item action at the current decision, from the item observation and mask (cached per decision).

        ``item_obs``: the pending decision's item observation when the caller has already built it.
        """
        if self._suggested is None:
            if item_obs is None:
                assert self.episode is not None
                item_obs = self.episode.observation()[: self._n_item]
            obs = np.array(item_obs, dtype=np.float32)
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

    def _observation(self) -> np.ndarray:
        episode = self.episode
        if episode is None or self._kind == _END:
            return np.zeros(len(self.observation_names), dtype=np.float32)
        g = episode.observation()
        if self.follow_action is None:
            return g.astype(np.float32)
        out = np.zeros(len(self.observation_names), dtype=np.float32)  # residual: greedy's choice, one-hot
        out[: g.size] = g
        out[g.size + self._builtin_action(g[: self._n_item])] = 1.0
        return out

    def _finished_record(self, q: int) -> dict[str, Any]:
        """Query ``q``'s ``completed`` record, once the core has finished it (``reward``: the core's, which keeps
        the episode's sums)."""
        episode = self.episode
        assert episode is not None
        (user, arrival_s, latency_s, quality, decomposed, placements, n_subtasks, attachment_bytes, energy_j, reward,
         failed, fail_reason, redispatched) = episode.finished(q)
        return {
            "query_id": q, "user": user, "arrival_s": arrival_s, "latency_s": latency_s, "quality": quality,
            "reward": reward, "decomposed": decomposed, "placements": placements, "n_subtasks": n_subtasks,
            "attachment_bytes": attachment_bytes, "deadline_missed": latency_s > self.config.reward.deadline_s,
            "failed": failed, "fail_reason": fail_reason, "redispatched": redispatched, "energy_j": energy_j,
        }

    def phone_view(self, user: int) -> np.ndarray:
        """What phone ``user`` observes now (the multi-agent interface's per-phone observation, box features).

        The pending decision's phone sees the observation (its item, the estimates for it, and the state).
        Any other phone sees the same layout with no item: the decision kind, item, plan and estimate features
        are 0, ``reachable`` marks the locations it could use, and the rest is what it knows of the network
        (its own phone and link, and what each AP broadcasts).
        """
        if self.deciding_user() == user:
            return self._observation()
        out = np.zeros(len(self.observation_names), dtype=np.float32)
        if self.episode is None or self._kind == _END:
            return out
        state = np.zeros(self._n_item)
        reachable = self._n_global + obs_layout.LOCATION_FEATURES.index("reachable")
        for loc in self.episode.phone_state(user, state):
            state[reachable + loc * self._n_loc] = 1.0
        out[: self._n_item] = state
        return out

    def _info(self, completed: list[dict[str, Any]], elapsed_s: float) -> dict[str, Any]:
        pending = not self._done
        query_id = self.episode.query_id if pending and self.episode is not None else -1
        info: dict[str, Any] = StepInfo(
            action_mask=(self._mask if self.follow_action is None else self.action_masks()).astype(np.int8),
            decision=self._kind,
            decision_query_id=query_id,
            time_s=self._now(),
            elapsed_s=elapsed_s,
            invalid_actions=self._invalid_actions,
            completed=completed,
        )
        if self._kind == _END:
            info["episode_metrics"] = self.episode_metrics()
        return info

    def episode_metrics(self) -> dict[str, float]:
        """Metrics over the queries finished so far in this episode."""
        episode = self.episode
        if episode is None:
            raise RuntimeError("episode_metrics() called before reset()")
        return self._metrics(episode.summary(), episode.edge_share(), *episode.fault_counts(), episode.now,
                             *episode.reward_sums())

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
