"""An episode on the compiled core (:mod:`offload_gym.core`), for :class:`~offload_gym.envs.offload_env.OffloadEnv`.

:class:`CompiledEpisode` owns the core's arrays and the decision context and makes one compiled call per
decision (:func:`offload_gym.core.step.apply_action`); the env keeps the Gymnasium side (action checks,
rewards and info dicts, the built-in scheduler's rule). :func:`unsupported_reason` says why a scenario runs
on the Python engine instead (faults, random access delays, approximate estimates, episodes longer than one
workload block, rendering): those features are not ported yet (issue 11).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from offload_gym.config import ScenarioConfig
from offload_gym.envs import observation as obs_layout
from offload_gym.sim.engine import FinishedSummary, Simulator
from offload_gym.sim.episode import WORKLOAD_BLOCK
from offload_gym.sim.workload import CHAIN, DAG, FAN_OUT

__all__ = ["CompiledEpisode", "core_available", "unsupported_reason"]

_KIND_NAMES = ("query", "subtask", "aggregation", "end")


def core_available() -> bool:
    """Whether the compiled core can run here (numba importable)."""
    from offload_gym.core._jit import HAVE_NUMBA

    return HAVE_NUMBA


def unsupported_reason(cfg: ScenarioConfig, render_mode: str | None = None) -> str | None:
    """Why ``cfg`` cannot run on the compiled core (``None`` if it can)."""
    f = cfg.faults
    if f.ap_outages or f.background_changes or f.backhaul_changes:
        return "faults"
    if cfg.wifi.access_delay_cv > 0:
        return "wifi.access_delay_cv"
    if cfg.approx_estimates:
        return "approx_estimates"
    if cfg.episode.queries > WORKLOAD_BLOCK:
        return f"episode.queries > {WORKLOAD_BLOCK}"
    if render_mode is not None:
        return "rendering"  # the renderer reads the Python engine's view
    return None


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
                          "(about 4 minutes on 2 CPU cores; later processes load it from the cache in about 1 s). "
                          "`python -m offload_gym.core` does it ahead; core='python' runs the Python engine instead.",
                          UserWarning, stacklevel=4)
        from offload_gym.core import engine, step

        _MODULES = (engine, step)
    return _MODULES


class CompiledEpisode:
    """One episode of the compiled core: its arrays, the pending decision, the observation buffer."""

    def __init__(self, cfg: ScenarioConfig, rng: np.random.Generator, energy: bool,
                 previous: CompiledEpisode | None = None) -> None:
        ce, cs = _modules()
        # the Python engine's constructor draws the topology and the workload with the same generators
        self.setup = Simulator(cfg, rng)
        self.state = ce.CoreState(self.setup, previous=previous.state if previous is not None else None)
        self.cfg = cfg
        n_aps = cfg.topology.n_aps
        self.n_aps = n_aps
        self.D = np.zeros(cs.D_ORDER + cfg.max_subtasks, dtype=np.int64)
        self.D[cs.D_KIND] = cs.KIND_END
        self.DF = np.zeros(3)
        self.DF[cs.DF_LATENCY_WEIGHT] = cfg.reward.latency_weight
        self.est = np.full((n_aps + 1, 3), np.nan)
        self.plan_locations = np.zeros(cfg.max_subtasks + 1, dtype=np.int64)
        self.mask = np.zeros(n_aps + 2, dtype=bool)
        self.OI, self.OF = _observation_indices()
        self.OF[cs.OF_BACKGROUND] = cfg.wifi.background_stations
        self.energy = energy
        n_features = len(obs_layout.GLOBAL_FEATURES) + (n_aps + 1) * len(obs_layout.LOCATION_FEATURES)
        self.g = np.zeros(n_features + (n_aps + 1 if energy else 0))
        self.summary = FinishedSummary()

    # ------------------------------------------------------------------ decisions
    @property
    def S(self) -> tuple[Any, ...]:
        """The core's state tuple (:attr:`offload_gym.core.engine.CoreState.arrays`)."""
        return self.state.arrays

    @property
    def kind(self) -> str:
        return _KIND_NAMES[int(self.D[_modules()[1].D_KIND])]

    @property
    def query_id(self) -> int:
        return int(self.D[_modules()[1].D_QUERY])

    @property
    def now(self) -> float:
        return float(self.S[1][_modules()[0].GF_NOW])

    def advance(self) -> list[int]:
        """To the first decision; the queries finished on the way (none)."""
        _modules()[1].begin_entry(self.state.struct, self.D, self.DF, self.est, self.plan_locations, self.mask, self.g,
                             self.OI, self.OF, self.energy)
        return self._drain()

    def apply(self, a: int) -> list[int]:
        """Place the pending item at ``a`` (or decompose), run to the next decision and observe it (one compiled
        call); the queries finished if time moved."""
        if _modules()[1].decide_entry(self.state.struct, self.D, self.DF, self.est, self.plan_locations, self.mask, self.g,
                                 self.OI, self.OF, self.energy, a) == -2:
            raise RuntimeError("compiled core: message capacity exceeded")  # pragma: no cover - sized per episode
        return self._drain()

    def _drain(self) -> list[int]:
        gi = self.S[2]
        n = int(gi[_modules()[0].GI_N_COMPLETED])
        if not n:
            return []
        gi[_modules()[0].GI_N_COMPLETED] = 0
        return self.S[35][:n].tolist()

    def observation(self) -> np.ndarray:
        """The item observation (and energy features) of the pending decision, float64 (written by each call)."""
        return self.g

    def phone_state(self, user: int, out: np.ndarray) -> list[int]:
        """``OffloadEnv._fill_state`` for phone ``user`` into ``out`` (the item layout's length); returns the
        locations it can use."""
        usable = _modules()[1].phone_state_entry(self.state.struct, user, out, self.OI, self.OF)
        return [int(x) for x in usable]

    # ------------------------------------------------------------------ finished queries
    def finished(self, q: int) -> tuple[int, float, float, float, bool, list[int], int, float, float]:
        """Finished query ``q``, counted in :attr:`summary`: ``(user, arrival_s, latency_s, quality, decomposed,
        placements, n_subtasks, attachment_bytes, energy_j)`` (the env adds the reward)."""
        ce = _modules()[0]
        qf, qi, iti = self.S[6], self.S[5], self.S[21]
        spec, _ = self.setup.workload.query(q)
        arrival = float(qf[q, ce.QF_ARRIVAL])
        latency = float(qf[q, ce.QF_FINISH]) - arrival
        quality = float(qf[q, ce.QF_QUALITY])
        decomposed = bool(qi[q, ce.QI_DECOMPOSED])
        if decomposed:
            k = len(spec.deps)
            placements = [int(iti[self.S[40][q, j], ce.II_LOCATION]) for j in range(k)]
            placements.append(int(iti[qi[q, ce.QI_AGG], ce.II_LOCATION]))
        else:
            placements = [int(iti[qi[q, ce.QI_WHOLE], ce.II_LOCATION])]
        energy_j = float(qf[q, ce.QF_ENERGY])
        self.summary.add(latency, quality, decomposed, False, False, energy_j)
        return (int(qi[q, ce.QI_USER]), arrival, latency, quality, decomposed, placements, spec.n_subtasks,
                spec.attachment_bytes, energy_j)

    @property
    def queries_arrived(self) -> int:
        return int(self.S[2][_modules()[0].GI_ARRIVED])

    @property
    def queries_finished(self) -> int:
        return int(self.S[2][_modules()[0].GI_FINISHED])

    def edge_share(self) -> float:
        gf = self.S[1]
        total = float(gf[_modules()[0].GF_TOTAL_OUT_TOKENS])
        return float(gf[_modules()[0].GF_EDGE_OUT_TOKENS]) / total if total else 0.0
