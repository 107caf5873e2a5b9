"""An episode on the compiled core (:mod:`offload_gym.core`), for :class:`~offload_gym.envs.offload_env.OffloadEnv`.

:class:`CompiledEpisode` owns the core's arrays and the decision context and makes one compiled call per
decision (:func:`offload_gym.core.step.decide_entry`: placement, events, rewards, estimates, observation); the
env keeps the Gymnasium side (action checks, info dicts and records, the built-in scheduler's rule).
Rendering reads the core's arrays (:mod:`offload_gym.envs.scene`). Episodes of any length run here: the arrays
grow by workload blocks and drop the rows of the queries nothing needs any more
(:meth:`offload_gym.core.arrays.CoreState.compact`), so they hold the queries in flight and about a block.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from offload_gym.config import ScenarioConfig
from offload_gym.envs import observation as obs_layout
from offload_gym.sim.metrics import FinishedSummary
from offload_gym.sim.physics import PHONE
from offload_gym.sim.setup import EpisodeSetup
from offload_gym.sim.workload import CHAIN, DAG, FAN_OUT

__all__ = ["CompiledEpisode", "EpisodeBuffers", "core_available"]

_KIND_NAMES = ("query", "subtask", "aggregation", "end")
_KIND_END = 3
# the core's indices the per-step code reads (equal to offload_gym.core's; tests/test_core_vector.py checks them), so
# that a step does not look them up in the core's modules
_D_KIND, _D_QUERY, _GF_NOW, _GI_N_COMPLETED, _GI_SCHEDULED, _GI_DRAINED = 0, 1, 0, 6, 3, 15

@dataclass
class EpisodeBuffers:
    """The arrays one decision of the compiled core reads and writes besides the state: the decision context
    ``D``/``DF``, the estimates, the plan's locations, the mask and the observation ``g`` (float64). A batch of
    envs gives each episode its rows of ``(N, ...)`` arrays."""

    D: np.ndarray
    DF: np.ndarray
    est: np.ndarray
    plan_locations: np.ndarray
    mask: np.ndarray
    g: np.ndarray

    @classmethod
    def allocate(cls, cfg: ScenarioConfig, energy: bool, n: int | None = None) -> EpisodeBuffers:
        """New buffers for one episode (``n`` None) or ``n`` rows of each for a batch."""
        from offload_gym.core import step as cs

        n_aps, k = cfg.topology.n_aps, cfg.max_subtasks
        n_features = len(obs_layout.GLOBAL_FEATURES) + (n_aps + 1) * len(obs_layout.LOCATION_FEATURES)
        lead = () if n is None else (n,)
        return cls(np.zeros((*lead, cs.D_ORDER + k), dtype=np.int64), np.zeros((*lead, cs.N_DF)),
                   np.full((*lead, n_aps + 1, 3), np.nan), np.zeros((*lead, k + 1), dtype=np.int64),
                   np.zeros((*lead, n_aps + 2), dtype=bool), np.zeros((*lead, n_features + (n_aps + 1 if energy else 0))))

    def row(self, i: int) -> EpisodeBuffers:
        """Row ``i`` of a batch's buffers (views)."""
        return EpisodeBuffers(self.D[i], self.DF[i], self.est[i], self.plan_locations[i], self.mask[i], self.g[i])


def core_available() -> bool:
    """Whether the compiled core can run here (numba importable)."""
    from offload_gym.core._jit import HAVE_NUMBA

    return HAVE_NUMBA


def _observation_indices() -> tuple[np.ndarray, np.ndarray]:
    """The observation layout's indices and constants for :func:`offload_gym.core.step.observe`, from the names."""
    from offload_gym.core import step as cs

    gi = {name: i for i, name in enumerate(obs_layout.GLOBAL_FEATURES)}
    li = {name: i for i, name in enumerate(obs_layout.LOCATION_FEATURES)}
    oi = np.zeros(cs.N_O, dtype=np.int64)
    for slot, name in ((cs.O_DECISION_QUERY, "decision_query"), (cs.O_DECISION_SUBTASK, "decision_subtask"),
                       (cs.O_DECISION_AGGREGATION, "decision_aggregation"), (cs.O_PRED_DIFFICULTY, "item_pred_difficulty"),
                       (cs.O_PRED_INPUT, "item_pred_input_tokens"), (cs.O_PRED_OUTPUT, "item_pred_output_tokens"),
                       (cs.O_ATTACHMENT, "query_attachment_bytes"), (cs.O_READS_ATTACHMENT, "item_reads_attachment"),
                       (cs.O_N_SUBTASKS, "query_n_subtasks"), (cs.O_STRUCTURE_FAN_OUT, "structure_fan_out"),
                       (cs.O_STRUCTURE_CHAIN, "structure_chain"), (cs.O_STRUCTURE_DAG, "structure_dag"),
                       (cs.O_POSITION, "item_position"), (cs.O_N_PREDECESSORS, "item_n_predecessors"),
                       (cs.O_CAN_DECOMPOSE, "can_decompose"), (cs.O_PLAN_LATENCY, "plan_pred_latency"),
                       (cs.O_PLAN_QUALITY, "plan_pred_quality"), (cs.O_PROGRESS, "episode_progress"),
                       (cs.O_IN_FLIGHT, "queries_in_flight"), (cs.O_OWN_PHY, "own_phy_rate")):
        oi[slot] = gi[name]
    for slot, name in ((cs.O_L_REACHABLE, "reachable"), (cs.O_L_EST_TIME, "est_time"), (cs.O_L_EST_QUALITY, "est_quality"),
                       (cs.O_L_BACKLOG, "backlog"), (cs.O_L_OCCUPANCY, "occupancy"), (cs.O_L_LINK_RATE, "link_rate"),
                       (cs.O_L_CONTENTION, "contention"), (cs.O_L_IS_OWN_AP, "is_own_ap")):
        oi[slot] = li[name]
    oi[cs.O_N_GLOBAL] = len(obs_layout.GLOBAL_FEATURES)
    oi[cs.O_N_LOC] = len(obs_layout.LOCATION_FEATURES)
    oi[cs.O_STRUCT_CODE_FAN_OUT], oi[cs.O_STRUCT_CODE_CHAIN], oi[cs.O_STRUCT_CODE_DAG] = FAN_OUT, CHAIN, DAG
    of = np.zeros(cs.N_OF)
    of[cs.OF_TIME_SCALE] = obs_layout.TIME_SCALE_S
    of[cs.OF_TOKENS_LOG_MAX] = obs_layout.TOKENS_LOG_MAX
    of[cs.OF_BYTES_LOG_MAX] = obs_layout.BYTES_LOG_MAX
    of[cs.OF_RATE_LOG_MAX] = obs_layout.RATE_LOG_MAX
    of[cs.OF_DIFFICULTY_SCALE] = obs_layout.DIFFICULTY_SCALE
    of[cs.OF_ENERGY_SCALE] = obs_layout.ENERGY_SCALE_J
    return oi, of


_MODULES: tuple[Any, Any] | None = None


def _modules() -> tuple[Any, Any]:
    """The core's engine and step modules, imported on first use (numba's import is not paid by ``import
    offload_gym``)."""
    global _MODULES
    if _MODULES is None:
        from offload_gym.core._jit import JIT_ENABLED, cache_is_warm

        if JIT_ENABLED and not cache_is_warm():
            warnings.warn("offload_gym: compiling the simulation core with numba, once after an install or upgrade "
                          "(about 1.5 minutes on 2 CPU cores; later processes load it from the cache in about 1 s). "
                          "`python -m offload_gym.core` does it ahead.",
                          UserWarning, stacklevel=4)
        from offload_gym.core import engine, step

        _MODULES = (engine, step)
    return _MODULES


class CompiledEpisode:
    """One episode of the compiled core: its arrays, the pending decision, the observation buffer."""

    def __init__(self, cfg: ScenarioConfig, rng: np.random.Generator, energy: bool,
                 previous: CompiledEpisode | None = None, buffers: EpisodeBuffers | None = None) -> None:
        """``buffers``: the decision arrays to use (a batch's rows, :class:`EpisodeBuffers`); new ones if ``None``."""
        from offload_gym.core.arrays import CoreState

        cs = _modules()[1]
        # the topology and the workload (the workload's queries in compiled code where it can:
        # offload_gym.core.workload)
        self.setup = EpisodeSetup(cfg, rng, compiled_workload=True)
        self.state = CoreState(self.setup, previous=previous.state if previous is not None else None)
        self.cfg = cfg
        self.n_aps = cfg.topology.n_aps
        if buffers is None:
            buffers = EpisodeBuffers.allocate(cfg, energy)
        self.D, self.DF, self.est, self.plan_locations, self.mask, self.g = (
            buffers.D, buffers.DF, buffers.est, buffers.plan_locations, buffers.mask, buffers.g)
        self.D[:] = 0
        self.D[cs.D_KIND] = cs.KIND_END
        self.DF[:] = 0.0
        self.DF[cs.DF_LATENCY_WEIGHT] = cfg.reward.latency_weight
        self.est[:] = np.nan
        self.plan_locations[:] = 0
        self.mask[:] = False
        self.g[:] = 0.0
        self.OI, self.OF = _observation_indices()
        self.OF[cs.OF_BACKGROUND] = cfg.wifi.background_stations
        self.energy = energy
        #: the episode's id of the core's query row 0 (:attr:`offload_gym.core.arrays.CoreState.base`): the ids
        #: Python hands out are the episode's (row + base)
        self.base = 0
        #: of the rewarded queries whose rows were dropped: their latencies in finishing order (chunks, 8 bytes a
        #: query), and how many failed and were redispatched
        self._dropped_latencies: list[np.ndarray] = []
        self._dropped_counts = [0, 0, 0]  # queries, failed, redispatched
        self._bind()

    def _bind(self) -> None:
        """What each step uses, looked up once (and again after unpickling: the state's reference is new)."""
        from offload_gym.core.arrays import compiled_overload

        self._gf, self._gi, self._completed = self.S[1], self.S[2], self.S[35]
        self._decide_args = (self.state.struct, self.D, self.DF, self.est, self.plan_locations, self.mask, self.g,
                             self.OI, self.OF, self.energy)
        self._decide = compiled_overload(_modules()[1].decide_entry, (*self._decide_args, 0))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in ("_gf", "_gi", "_completed", "_decide", "_decide_args"):
            del state[name]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._bind()

    # ------------------------------------------------------------------ decisions
    @property
    def S(self) -> tuple[Any, ...]:
        """The core's arrays (:attr:`offload_gym.core.arrays.CoreState.arrays`)."""
        return self.state.arrays

    @property
    def kind(self) -> str:
        return _KIND_NAMES[int(self.D[_D_KIND])]

    @property
    def ended(self) -> bool:
        """Whether the episode is over (no decision pending)."""
        return int(self.D[_D_KIND]) == _KIND_END

    @property
    def query_id(self) -> int:
        """The pending decision's query (the episode's id)."""
        return int(self.D[_D_QUERY]) + self.base

    def pending_user(self) -> int:
        """The phone whose query the pending decision belongs to."""
        return int(self.S[5][int(self.D[_D_QUERY]), 0])

    @property
    def now(self) -> float:
        return float(self._gf[_GF_NOW])

    def advance(self) -> list[int]:
        """To the first decision; the queries finished on the way (none)."""
        self._decide(*self._decide_args, -1)
        self.grow_if_needed()
        return self._drain()

    def apply(self, a: int) -> list[int]:
        """Place the pending item at ``a`` (or decompose), run to the next decision and observe it (one compiled
        call); the queries finished if time moved."""
        if self._decide(*self._decide_args, a) == -2:
            self._go_on()
        self.grow_if_needed()
        return self._drain()

    def _go_on(self) -> None:
        """After a call that returned -2 (its message arrays full): grow them and go on (``a = -2``) until done."""
        while True:
            self.state.grow_messages()
            self._bind()
            if self._decide(*self._decide_args, -2) != -2:
                return

    def go_on(self, reward: float) -> float:
        """:meth:`_go_on` for a batch whose call for this episode returned -2 with ``reward`` so far: that plus the
        rewards of the queries rewarded since, in their order (the sum a single call would have made)."""
        ce = _modules()[0]
        gi, qf = self._gi, self.S[6]
        rewarded = int(gi[ce.GI_REWARDED])
        self._go_on()
        for q in self._completed[rewarded:int(gi[ce.GI_REWARDED])]:
            reward += float(qf[q, ce.QF_REWARD])
        return reward

    def grow_if_needed(self) -> bool:
        """Load the workload's next block when the engine is about to schedule an arrival beyond the loaded
        queries (:meth:`offload_gym.core.arrays.CoreState.grow`); whether it did (the state's reference is then
        new: a batch must take it). A call schedules one arrival at most, so asking after every call is enough:
        the engine itself would stop scheduling arrivals at the end of its arrays."""
        state = self.state
        if state.loaded == state.n_queries or int(self._gi[_GI_SCHEDULED]) + state.base < state.loaded:
            return False
        dropped, seen, rows = state.grow(self.setup, self._drained)
        self._bind()  # the state's arrays are new
        if dropped:
            self._drained -= seen
            self._dropped_latencies.append(rows[:, 0].copy())
            counts = self._dropped_counts
            counts[0] += len(rows)
            counts[1] += int(rows[:, 1].sum())
            counts[2] += int(rows[:, 2].sum())
            if int(self.D[_D_KIND]) != _KIND_END:
                self.D[_D_QUERY] -= dropped
            self.base = state.base
        return True

    def move_to(self, buffers: EpisodeBuffers) -> None:
        """Keep the decision arrays in ``buffers`` (a batch's rows) from now on, with their current values."""
        for field in fields(buffers):
            name = field.name
            target = getattr(buffers, name)
            target[...] = getattr(self, name)
            setattr(self, name, target)
        self._bind()

    @property
    def _drained(self) -> int:
        """Of the finished queries (in finishing order), how many the env has seen (in the state: a batch's
        compiled call marks them, :func:`offload_gym.core.step.decide_batch`)."""
        return int(self._gi[_GI_DRAINED])

    @_drained.setter
    def _drained(self, n: int) -> None:
        self._gi[_GI_DRAINED] = n

    def mark_drained(self) -> None:
        """Count every query finished so far as seen (a batch has already rewarded them)."""
        self._drained = int(self._gi[_GI_N_COMPLETED])

    def _drain(self) -> list[int]:
        """The queries finished since the last look, in finishing order."""
        gi = self._gi
        n, drained = int(gi[_GI_N_COMPLETED]), int(gi[_GI_DRAINED])
        if n == drained:
            return []
        done = self._completed[drained:n].tolist()
        gi[_GI_DRAINED] = n
        base = self.base
        return [q + base for q in done] if base else done

    def observation(self) -> np.ndarray:
        """The item observation (and energy features) of the pending decision, float64 (written by each call)."""
        return self.g

    def phone_state(self, user: int, out: np.ndarray) -> list[int]:
        """``OffloadEnv._fill_state`` for phone ``user`` into ``out`` (the item layout's length); returns the
        locations it can use."""
        usable = _modules()[1].phone_state_entry(self.state.struct, user, out, self.OI, self.OF)
        return [int(x) for x in usable]

    # ------------------------------------------------------------------ finished queries
    def finished(self, query_id: int) -> tuple[int, float, float, float, bool, list[int], int, float, float, float,
                                               bool, str, bool]:
        """Finished query ``query_id`` (the episode's id, as :meth:`advance` and :meth:`apply` return them):
        ``(user, arrival_s, latency_s, quality, decomposed, placements, n_subtasks, attachment_bytes, energy_j,
        reward, failed, fail_reason, redispatched)``."""
        ce = _modules()[0]
        S = self.state.arrays
        q = query_id - self.base
        f, i = S[6][q].tolist(), S[5][q].tolist()  # the query's rows as Python numbers: two calls, not twenty
        arrival = f[ce.QF_ARRIVAL]
        decomposed, failed, redispatched = i[ce.QI_DECOMPOSED] != 0, i[ce.QI_FAILED] != 0, i[ce.QI_REDISPATCHED] != 0
        k = int(S[42][q])
        iti = S[21]
        if redispatched:
            placements = [PHONE]
        elif decomposed:
            placements = iti[S[40][q, :k], ce.II_LOCATION].tolist()
            placements.append(int(iti[i[ce.QI_AGG], ce.II_LOCATION]))
        else:
            placements = [int(iti[i[ce.QI_WHOLE], ce.II_LOCATION])]
        return (i[ce.QI_USER], arrival, f[ce.QF_FINISH] - arrival, f[ce.QF_QUALITY], decomposed, placements, k,
                float(S[37][q, 3]), f[ce.QF_ENERGY], f[ce.QF_REWARD], failed,
                f"ap_outage:{i[ce.QI_FAIL_AP]}" if failed else "", redispatched)

    def summary(self) -> FinishedSummary:
        """What the episode's metrics need of the rewarded queries (the core's sums, in finishing order)."""
        ce = _modules()[0]
        gf, gi, qf, qi = self._gf, self._gi, self.S[6], self.S[5]
        order = self._completed[: int(gi[ce.GI_REWARDED])]
        latencies = qf[order, ce.QF_FINISH] - qf[order, ce.QF_ARRIVAL]
        if self._dropped_latencies:  # the dropped rows' queries came first: the same latencies in the same order
            latencies = np.concatenate([*self._dropped_latencies, latencies])
        _, failed, redispatched = self._dropped_counts
        return FinishedSummary.of(latencies, float(gf[ce.GF_QUALITY_SUM]), int(gi[ce.GI_DECOMPOSED_DONE]),
                                  float(gf[ce.GF_ENERGY_SUM]), failed=int(qi[order, ce.QI_FAILED].sum()) + failed,
                                  redispatched=int(qi[order, ce.QI_REDISPATCHED].sum()) + redispatched)

    def fault_counts(self) -> tuple[int, int]:
        """Queries failed and redispatched by outages so far."""
        ce = _modules()[0]
        return int(self._gi[ce.GI_FAILED]), int(self._gi[ce.GI_REDISPATCHED])

    def reward_sums(self) -> tuple[float, int]:
        """The sum of the rewarded queries' rewards, and their count."""
        ce = _modules()[0]
        return float(self._gf[ce.GF_REWARD_SUM]), int(self._gi[ce.GI_REWARDED]) + self._dropped_counts[0]

    @property
    def queries_arrived(self) -> int:
        return int(self.S[2][_modules()[0].GI_ARRIVED]) + self.base

    @property
    def queries_finished(self) -> int:
        return int(self.S[2][_modules()[0].GI_FINISHED]) + self.base

    def edge_share(self) -> float:
        gf = self.S[1]
        total = float(gf[_modules()[0].GF_TOTAL_OUT_TOKENS])
        return float(gf[_modules()[0].GF_EDGE_OUT_TOKENS]) / total if total else 0.0
