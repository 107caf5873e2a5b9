"""What a picture of the env shows, read from whichever engine runs the episode.

:func:`scene` copies the few numbers the renderers (:mod:`offload_gym.render` and the ``ansi`` text) draw
into a :class:`Scene`: the topology and associations, the transfers in flight, the edges' batches and queues,
the cells' contenders and the pending decision with its estimates and plan, from the compiled core's arrays
(:attr:`~offload_gym.envs.offload_env.OffloadEnv.episode`), so the renderers need not know the core's layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from offload_gym.sim.physics import HopKind

if TYPE_CHECKING:
    from offload_gym.envs.compiled import CompiledEpisode
    from offload_gym.envs.offload_env import OffloadEnv

__all__ = ["Decision", "LocationEstimate", "Scene", "scene"]

#: one Wi-Fi transfer in flight: (direction, the cell's AP, the phone, message bytes)
Transfer = tuple[HopKind, int, int, float]


@dataclass(frozen=True)
class LocationEstimate:
    """A location's estimates behind the observation (absolute times, s)."""

    ready_s: float
    finish_s: float
    quality: float


@dataclass(frozen=True)
class Decision:
    """The pending decision."""

    kind: str  # "query", "subtask" or "aggregation"
    query_id: int
    user: int
    n_subtasks: int
    structure: int  # FAN_OUT, CHAIN or DAG (offload_gym.sim.workload)
    attachment_bytes: float
    #: subtask decisions: the position in the placement order (0-based) and the subtask's index
    position: int
    subtask_index: int
    pred_input_tokens: float
    pred_output_tokens: float
    pred_difficulty: float
    #: per location (0 = phone, 1 + a = AP a) where it can run
    estimates: dict[int, LocationEstimate]
    #: query decisions of K > 1: the list scheduler's plan (latency s, quality, locations of the subtasks and
    #: the aggregation)
    plan: tuple[float, float, list[int]] | None


@dataclass(frozen=True)
class Scene:
    """The state a picture shows (:func:`scene`)."""

    now_s: float
    queries_arrived: int
    queries_finished: int
    ap_xy: np.ndarray  # (n_aps, 2) m
    user_xy: np.ndarray  # (n_users, 2) m
    own_ap: np.ndarray  # per phone, -1: out of coverage
    up_rate_bps: np.ndarray  # per phone
    phone_busy: np.ndarray  # per phone, computing an item
    transfers: list[Transfer]  # cell by cell, each cell's in its order
    edge_batch: np.ndarray  # per AP: streams admitted
    edge_queued: np.ndarray  # items whose inputs are all there, waiting for room
    edge_in_transit: np.ndarray  # items placed whose inputs are not all there
    cell_uploading_phones: np.ndarray
    cell_downloads: np.ndarray
    cell_contenders: np.ndarray
    mask: np.ndarray  # the item actions' mask (0..n_aps + 1)
    decision: Decision | None  # None at the episode's end

    @property
    def n_users(self) -> int:
        return int(self.user_xy.shape[0])

    @property
    def n_aps(self) -> int:
        return int(self.ap_xy.shape[0])


def scene(env: OffloadEnv) -> Scene | None:
    """What ``env`` shows now (``None`` before its first reset)."""
    if env.episode is None:
        return None
    return _compiled_scene(env, env.episode)


def _compiled_scene(env: OffloadEnv, episode: CompiledEpisode) -> Scene:
    """The same from the core's arrays (``offload_gym.core.arrays.CoreState.arrays``: the slot numbers are
    documented there)."""
    from offload_gym.core import engine as ce
    from offload_gym.core import step as cs

    S = episode.S
    qi, mf, mi = S[5], S[7], S[8]
    n_aps = episode.n_aps
    transfers: list[Transfer] = []
    for ap in range(n_aps):
        for m in episode.state.queue(14, ap).tolist():  # the cell's messages, in order
            h = int(mi[m, ce.MI_HOP])
            kind = int(mi[m, ce.MI_HOPS + 2 * h])
            cell_ap = int(mi[m, ce.MI_HOPS + 2 * h + 1])
            transfers.append((HopKind(kind), cell_ap, int(qi[mi[m, ce.MI_QUERY], ce.QI_USER]), float(mf[m, ce.MF_NBYTES])))
    uploading, downloads = S[15].astype(int), S[16].astype(int)
    D, DF, est = episode.D, episode.DF, episode.est
    kind = episode.kind
    decision = None
    if kind != "end":
        q = int(D[cs.D_QUERY])  # the row (the episode's id less episode.base)
        k = int(S[42][q])
        wl_f = S[37]
        position = int(D[cs.D_POSITION])
        subtask = int(D[cs.D_ORDER + position]) if kind == "subtask" else -1
        # the pending item's predictions, as the observation reads them (the kernel itself, called from Python)
        pred_difficulty, pred_input, pred_output, _ = cs.item_fields_entry(episode.state.struct, D)
        estimates = {loc: LocationEstimate(float(est[loc, 0]), float(est[loc, 1]), float(est[loc, 2]))
                     for loc in range(n_aps + 1) if est[loc, 1] == est[loc, 1]}  # NaN: not usable
        plan = None
        if kind == "query" and D[cs.D_HAS_PLAN]:
            plan = (float(DF[cs.DF_PLAN_LATENCY]), float(DF[cs.DF_PLAN_QUALITY]),
                    [int(x) for x in episode.plan_locations[:k + 1]])
        decision = Decision(
            kind=kind, query_id=q + episode.base, user=int(qi[q, ce.QI_USER]), n_subtasks=k, structure=int(S[47][q]),
            attachment_bytes=float(wl_f[q, 3]), position=position, subtask_index=subtask,
            pred_input_tokens=float(pred_input), pred_output_tokens=float(pred_output),
            pred_difficulty=float(pred_difficulty), estimates=estimates, plan=plan)
    setup = episode.setup
    return Scene(
        now_s=episode.now, queries_arrived=episode.queries_arrived, queries_finished=episode.queries_finished,
        ap_xy=np.asarray(setup.ap_xy, dtype=float).reshape(-1, 2),
        user_xy=np.asarray(setup.user_xy, dtype=float).reshape(-1, 2),
        own_ap=S[11].astype(int), up_rate_bps=S[9].astype(float), phone_busy=S[26][:, 0] >= 0,
        transfers=transfers,
        edge_batch=S[30][:, 0].astype(int),
        edge_queued=np.array([len(episode.state.queue(28, e)) for e in range(n_aps)], dtype=int),
        edge_in_transit=np.array([len(episode.state.queue(27, e)) for e in range(n_aps)], dtype=int),
        cell_uploading_phones=uploading, cell_downloads=downloads,
        cell_contenders=S[13].astype(int) + uploading + (downloads > 0),
        mask=episode.mask.copy(), decision=decision)
