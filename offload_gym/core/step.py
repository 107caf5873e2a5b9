"""One env decision in one compiled call: apply the action, run events to the next decision, estimate, observe.

The decision logic of :class:`~offload_gym.envs.offload_env.OffloadEnv` (placement, advancing to the next
decision, the mask, the estimates, the item observation, the phone's view of the network and the energy
features) over the compiled engine's arrays, in the floating-point order of the Python env it replaced. The
decision context lives in explicit arrays (:class:`Decision`); the observation and the mask are written into
preallocated arrays. The env keeps what
is not numeric (info dicts, rewards of finished queries, greedy's rule for the query and residual modes).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from offload_gym.core._jit import JIT_ENABLED, njit, njit_inline, njit_nogil
from offload_gym.core.atomics import atomic_load, atomic_store
from offload_gym.core.engine import (
    CF_CONTEXT,
    CF_P_DECODE_W,
    CF_P_IDLE_W,
    CF_P_PREFILL_W,
    CF_P_RX_W,
    CF_P_TX_W,
    CF_R_DEADLINE,
    CF_R_DEADLINE_PENALTY,
    CF_R_ENERGY_WEIGHT,
    CF_R_FAILURE_PENALTY,
    CF_R_LATENCY_SCALE,
    CF_R_LATENCY_WEIGHT,
    CF_R_PRODUCT,
    CI_MAX_BATCH,
    CI_MAX_K,
    CI_N_APS,
    CI_N_USERS,
    CI_QUERIES,
    GF_ENERGY_SUM,
    GF_NOW,
    GF_QUALITY_SUM,
    GF_REWARD_SUM,
    GF_STEP_REWARD,
    GI_ARRIVED,
    GI_BASE,
    GI_DECOMPOSED_DONE,
    GI_DRAINED,
    GI_FINISHED,
    GI_N_COMPLETED,
    GI_REWARDED,
    GI_SCHEDULED,
    II_LOCATION,
    PHONE,
    QF_ARRIVAL,
    QF_ENERGY,
    QF_FINISH,
    QF_QUALITY,
    QF_REWARD,
    QI_DECOMPOSED,
    QI_FAILED,
    QI_USER,
    _contenders,
    _token_bytes,
    place_aggregation,
    place_subtask,
    place_whole,
    pmax,
    pmin,
    run_until_decision,
    start_episode,
    tmp_reset,
)
from offload_gym.core.estimates import (
    aggregation_estimates,
    link_s,
    phone_free_at,
    plan,
    snapshots,
    subtask_estimates,
    subtask_inputs,
    subtask_order,
    uplink,
    usable_locations,
    whole_estimates,
)
from offload_gym.core.state import borrow_state, borrowed

if JIT_ENABLED:
    from numba.typed import List as TypedList
else:  # pragma: no cover - a plain list stands in
    TypedList = list

__all__ = ["KIND_AGGREGATION", "KIND_END", "KIND_QUERY", "KIND_SUBTASK", "account", "advance", "apply_action",
           "batch_wait", "decide_batch", "observe"]

KIND_QUERY, KIND_SUBTASK, KIND_AGGREGATION, KIND_END = 0, 1, 2, 3
# the decision context (int array): kind, query, position in the order, whether a plan exists, then the order
D_KIND, D_QUERY, D_POSITION, D_HAS_PLAN, D_ORDER = 0, 1, 2, 3, 4
# its floats: the plan's predicted latency and quality, the latency weight of the estimates
# (DF_NOW: the simulation time of the decision, written with its observation)
DF_PLAN_LATENCY, DF_PLAN_QUALITY, DF_LATENCY_WEIGHT, DF_NOW = 0, 1, 2, 3
N_DF = 4

# observation constants, in an array so that a cached kernel never keeps stale indices (OffloadEnv builds it)
(O_DECISION_QUERY, O_DECISION_SUBTASK, O_DECISION_AGGREGATION, O_PRED_DIFFICULTY, O_PRED_INPUT, O_PRED_OUTPUT,
 O_ATTACHMENT, O_READS_ATTACHMENT, O_N_SUBTASKS, O_STRUCTURE_FAN_OUT, O_STRUCTURE_CHAIN, O_STRUCTURE_DAG,
 O_POSITION, O_N_PREDECESSORS, O_CAN_DECOMPOSE, O_PLAN_LATENCY, O_PLAN_QUALITY, O_PROGRESS, O_IN_FLIGHT,
 O_OWN_PHY, O_L_REACHABLE, O_L_EST_TIME, O_L_EST_QUALITY, O_L_BACKLOG, O_L_OCCUPANCY, O_L_LINK_RATE, O_L_CONTENTION,
 O_L_IS_OWN_AP, O_N_GLOBAL, O_N_LOC, O_STRUCT_CODE_FAN_OUT, O_STRUCT_CODE_CHAIN, O_STRUCT_CODE_DAG) = range(33)
N_O = 33
# observation floats: time scale, log maxima, difficulty scale, energy scale, background stations
OF_TIME_SCALE, OF_TOKENS_LOG_MAX, OF_BYTES_LOG_MAX, OF_RATE_LOG_MAX, OF_DIFFICULTY_SCALE, OF_ENERGY_SCALE, OF_BACKGROUND = \
    range(7)
N_OF = 7


@njit
def _prepare(S: Any, D: np.ndarray, DF: np.ndarray, est: np.ndarray, plan_locs: np.ndarray, mask: np.ndarray) -> None:
    """The decision's mask, the estimates and (query step, K > 1) the plan."""
    tmp_reset(S)  # the previous decision's scratch arrays are dead
    q = D[D_QUERY]
    n_aps = S.ci[CI_N_APS]
    user = S.qi[q, QI_USER]
    for loc in range(len(mask)):
        mask[loc] = False
    for loc in usable_locations(S, user):
        mask[loc] = True
    D[D_HAS_PLAN] = 0
    kind = D[D_KIND]
    snapshots(S)
    if kind == KIND_QUERY:
        whole_estimates(S, q, est)
        if S.wl_k[q] > 1:
            mask[n_aps + 1] = True
            lat, qual = plan(S, q, DF[DF_LATENCY_WEIGHT], plan_locs)
            DF[DF_PLAN_LATENCY] = lat
            DF[DF_PLAN_QUALITY] = qual
            D[D_HAS_PLAN] = 1
    elif kind == KIND_SUBTASK:
        subtask_estimates(S, q, D[D_ORDER + D[D_POSITION]], est)
    else:
        aggregation_estimates(S, q, est)


@njit_inline
def advance(S: Any, D: np.ndarray, DF: np.ndarray, est: np.ndarray, plan_locs: np.ndarray, mask: np.ndarray) -> int:
    """Run to the next arrival (or the drain) and set up its decision; -2 if the engine's
    arrays must grow first (nothing changed then)."""
    q = run_until_decision(S)
    if q == -2:
        return -2
    if q < 0:
        D[D_KIND] = KIND_END
        D[D_QUERY] = -1
        D[D_HAS_PLAN] = 0
        for loc in range(len(mask)):
            mask[loc] = False
        mask[PHONE] = True
        return -1
    D[D_KIND] = KIND_QUERY
    D[D_QUERY] = q
    D[D_POSITION] = 0
    _prepare(S, D, DF, est, plan_locs, mask)
    return q


@njit_inline
def apply_action(S: Any, D: np.ndarray, DF: np.ndarray, est: np.ndarray, plan_locs: np.ndarray, mask: np.ndarray,
                 a: int) -> int:
    """Apply an allowed item action ``a``; returns 1 if the simulation advanced (the query's
    last decision), -2 if it must be called again after the arrays grew (the placement is kept), else 0."""
    q = D[D_QUERY]
    n_aps = S.ci[CI_N_APS]
    kind = D[D_KIND]
    finished_query = False
    if kind == KIND_QUERY:
        if a == n_aps + 1:
            order = subtask_order(S, q)
            for j in range(len(order)):
                D[D_ORDER + j] = order[j]
            D[D_POSITION] = 0
            D[D_KIND] = KIND_SUBTASK
        else:
            place_whole(S, q, a, est[a, 0], est[a, 1])
            finished_query = True
    elif kind == KIND_SUBTASK:
        index = D[D_ORDER + D[D_POSITION]]
        place_subtask(S, q, index, a, est[a, 0], est[a, 1])
        D[D_POSITION] += 1
        if D[D_POSITION] == S.wl_k[q]:
            D[D_KIND] = KIND_AGGREGATION
    else:
        place_aggregation(S, q, a, est[a, 0], est[a, 1])
        finished_query = True
    if finished_query:
        D[D_KIND] = KIND_END  # until advance succeeds (it may ask for larger arrays first)
        if advance(S, D, DF, est, plan_locs, mask) == -2:
            return -2
        return 1
    _prepare(S, D, DF, est, plan_locs, mask)
    return 0


@njit
def account(S: Any) -> float:
    """Reward the queries finished since the last call, in finishing order; returns the sum of their rewards.

    A finished query's reward: ``linear``
    ``quality - w * latency - penalty * [latency > deadline]``, ``product`` ``quality * exp(-latency / scale)``,
    ``-failure_penalty`` for a failed one (``faults.on_outage = fail``), minus ``energy_weight * energy`` when that
    weight is set. Each query's reward goes to its ``QF_REWARD``; the
    episode's sums (rewards, qualities, energies, decomposed queries) grow in finishing order, the order of the
    Python env's running sums it replaced, so the metrics are bit for bit the recorded ones.
    """
    gf, gi, cf, qf, qi, completed = S.gf, S.gi, S.cf, S.qf, S.qi, S.completed
    step = 0.0
    for j in range(gi[GI_REWARDED], gi[GI_N_COMPLETED]):
        q = completed[j]
        latency_s = qf[q, QF_FINISH] - qf[q, QF_ARRIVAL]
        quality = qf[q, QF_QUALITY]
        if qi[q, QI_FAILED]:
            reward = -cf[CF_R_FAILURE_PENALTY]
        elif cf[CF_R_PRODUCT] != 0.0:
            reward = quality * math.exp(-latency_s / cf[CF_R_LATENCY_SCALE])
        else:
            missed = 1.0 if latency_s > cf[CF_R_DEADLINE] else 0.0
            reward = quality - cf[CF_R_LATENCY_WEIGHT] * latency_s - cf[CF_R_DEADLINE_PENALTY] * missed
        if cf[CF_R_ENERGY_WEIGHT] != 0.0:
            reward -= cf[CF_R_ENERGY_WEIGHT] * qf[q, QF_ENERGY]
        qf[q, QF_REWARD] = reward
        step += reward
        gf[GF_REWARD_SUM] += reward
        gf[GF_QUALITY_SUM] += quality
        gf[GF_ENERGY_SUM] += qf[q, QF_ENERGY]
        gi[GI_DECOMPOSED_DONE] += qi[q, QI_DECOMPOSED]
    gi[GI_REWARDED] = gi[GI_N_COMPLETED]
    gf[GF_STEP_REWARD] = step
    return step


# ------------------------------------------------------------------------------------------- observation
@njit
def _item_fields(S: Any, D: np.ndarray) -> tuple[float, float, float, int]:
    """The pending item's predicted difficulty, input and output tokens, and its predecessors (-1: not a subtask)."""
    wl_f, wl_sub, wl_deps = S.wl_f, S.wl_sub, S.wl_deps
    q = D[D_QUERY]
    kind = D[D_KIND]
    if kind == KIND_QUERY:
        return wl_f[q, 5], wl_f[q, 0], wl_f[q, 4], -1
    if kind == KIND_SUBTASK:
        i = D[D_ORDER + D[D_POSITION]]
        return wl_sub[q, i, 3], subtask_inputs(S, q, i), wl_sub[q, i, 2], wl_deps[q, i, 0]
    k = S.wl_k[q]
    total = 0.0
    for j in range(k):
        total += wl_sub[q, j, 2]
    return wl_f[q, 7], total, wl_f[q, 6], -1


@njit
def _fill_state(S: Any, g: np.ndarray, user: int, OI: np.ndarray, OF: np.ndarray) -> None:
    """What phone ``user`` knows of the network now."""
    gf, gi, ci = S.gf, S.gi, S.ci
    n_aps = ci[CI_N_APS]
    n_users = ci[CI_N_USERS]
    time_scale = OF[OF_TIME_SCALE]
    base = gi[GI_BASE]  # the queries before the first row (dropped): the same ints, so the same float
    g[OI[O_PROGRESS]] = (gi[GI_ARRIVED] + base) / (ci[CI_QUERIES] + base)
    g[OI[O_IN_FLIGHT]] = math.tanh((gi[GI_ARRIVED] - gi[GI_FINISHED]) / n_users)
    phy_mbps = S.up_rate[user] / 1e6
    g[OI[O_OWN_PHY]] = math.log1p(phy_mbps) / OF[OF_RATE_LOG_MAX]
    now = gf[GF_NOW]
    own = S.own_ap[user]
    contention_norm = OF[OF_BACKGROUND] + n_users + 1
    n_loc = OI[O_N_LOC]
    o = OI[O_N_GLOBAL]
    t = phone_free_at(S, user) - now
    if t < 0.0:
        t = 0.0
    g[o + OI[O_L_BACKLOG]] = t / (t + time_scale)
    g[o + OI[O_L_OCCUPANCY]] = 1.0 if S.phone_i[user, 0] >= 0 else 0.0
    g[o + OI[O_L_LINK_RATE]] = g[OI[O_OWN_PHY]]
    link_rate = 0.0
    if own >= 0:
        g[o + OI[O_L_CONTENTION]] = pmin(_contenders(S, own) / contention_norm, 1.0)
        share_bps = 8.0 * 1500.0 / pmax(link_s(S, uplink(S, user), 1500.0), 1e-12)
        link_rate = pmin(math.log1p(share_bps / 1e6) / OF[OF_RATE_LOG_MAX], 1.0)
    max_batch = ci[CI_MAX_BATCH]
    edge_ready, edge_waiting, edge_i = S.edge_ready, S.edge_waiting, S.edge_i  # read once (reference counts)
    for e in range(n_aps):
        o += n_loc
        g[o + OI[O_L_BACKLOG]] = pmin((edge_ready[e, 0] + edge_waiting[e, 0]) / max_batch, 1.0)
        g[o + OI[O_L_OCCUPANCY]] = edge_i[e, 0] / max_batch
        g[o + OI[O_L_LINK_RATE]] = link_rate
        g[o + OI[O_L_CONTENTION]] = pmin(_contenders(S, e) / contention_norm, 1.0)
        g[o + OI[O_L_IS_OWN_AP]] = 1.0 if e == own else 0.0


@njit
def observe(S: Any, D: np.ndarray, DF: np.ndarray, est: np.ndarray, g: np.ndarray, OI: np.ndarray, OF: np.ndarray,
            energy: bool) -> None:
    """The item observation (and, with ``energy``, the energy features after it) into ``g``; the time
    into ``DF[DF_NOW]`` (a batch reads all its envs' times from there at once)."""
    DF[DF_NOW] = S.gf[GF_NOW]
    for j in range(len(g)):
        g[j] = 0.0
    kind = D[D_KIND]
    if kind == KIND_END:
        return
    gf, ci, wl_f = S.gf, S.ci, S.wl_f
    q = D[D_QUERY]
    k = S.wl_k[q]
    user = S.qi[q, QI_USER]
    pred_diff, pred_in, pred_out, n_preds = _item_fields(S, D)
    if kind == KIND_QUERY:
        g[OI[O_DECISION_QUERY]] = 1.0
    elif kind == KIND_SUBTASK:
        g[OI[O_DECISION_SUBTASK]] = 1.0
        g[OI[O_POSITION]] = D[D_POSITION] / k
        g[OI[O_N_PREDECESSORS]] = n_preds / max(k - 1, 1)
    else:
        g[OI[O_DECISION_AGGREGATION]] = 1.0
        g[OI[O_POSITION]] = 1.0
        g[OI[O_N_PREDECESSORS]] = 1.0
    g[OI[O_PRED_DIFFICULTY]] = pmin(pmax(pred_diff / OF[OF_DIFFICULTY_SCALE], -1.0), 1.0)
    g[OI[O_PRED_INPUT]] = pmin(math.log1p(pred_in) / OF[OF_TOKENS_LOG_MAX], 1.0)
    g[OI[O_PRED_OUTPUT]] = pmin(math.log1p(pred_out) / OF[OF_TOKENS_LOG_MAX], 1.0)
    attachment = wl_f[q, 3]
    g[OI[O_ATTACHMENT]] = pmin(math.log1p(attachment) / OF[OF_BYTES_LOG_MAX], 1.0)
    reads = kind == KIND_QUERY or (kind == KIND_SUBTASK and n_preds == 0)
    g[OI[O_READS_ATTACHMENT]] = 1.0 if reads and attachment > 0 else 0.0
    k_max = ci[CI_MAX_K]
    g[OI[O_N_SUBTASKS]] = (k - 1) / (k_max - 1) if k_max > 1 else 0.0
    if k > 1:
        structure = S.wl_structure[q]
        if structure == OI[O_STRUCT_CODE_FAN_OUT]:
            g[OI[O_STRUCTURE_FAN_OUT]] = 1.0
        elif structure == OI[O_STRUCT_CODE_CHAIN]:
            g[OI[O_STRUCTURE_CHAIN]] = 1.0
        elif structure == OI[O_STRUCT_CODE_DAG]:
            g[OI[O_STRUCTURE_DAG]] = 1.0
    time_scale = OF[OF_TIME_SCALE]
    if D[D_HAS_PLAN]:
        g[OI[O_CAN_DECOMPOSE]] = 1.0
        t = DF[DF_PLAN_LATENCY]
        if t < 0.0:
            t = 0.0
        g[OI[O_PLAN_LATENCY]] = t / (t + time_scale)
        g[OI[O_PLAN_QUALITY]] = DF[DF_PLAN_QUALITY]
    _fill_state(S, g, user, OI, OF)
    now = gf[GF_NOW]
    n_aps = ci[CI_N_APS]
    o = OI[O_N_GLOBAL]
    for loc in range(n_aps + 1):
        if est[loc, 1] != est[loc, 1]:  # NaN: not a usable location
            g[o + OI[O_L_EST_TIME]] = 1.0 - 1e-6
        else:
            t = est[loc, 1] - now
            if t < 0.0:
                t = 0.0
            g[o + OI[O_L_REACHABLE]] = 1.0
            g[o + OI[O_L_EST_TIME]] = t / (t + time_scale)
            g[o + OI[O_L_EST_QUALITY]] = est[loc, 2]
        o += OI[O_N_LOC]
    if energy:
        _energy_features(S, D, est, g, o, OF, pred_in, pred_out, n_preds)


@njit
def _energy_features(S: Any, D: np.ndarray, est: np.ndarray, g: np.ndarray, o: int, OF: np.ndarray, pred_in: float,
                     pred_out: float, n_preds: int) -> None:
    """At offset ``o``: each usable location's estimated phone energy, squashed."""
    cf, ci, wl_f, wl_sub, wl_deps, phone_f = S.cf, S.ci, S.wl_f, S.wl_sub, S.wl_deps, S.phone_f
    q = D[D_QUERY]
    kind = D[D_KIND]
    user = S.qi[q, QI_USER]
    n_aps = ci[CI_N_APS]
    now = S.gf[GF_NOW]
    scale = OF[OF_ENERGY_SCALE]
    prefill_s = pred_in / phone_f[user, 2]
    decode_s = pred_out / phone_f[user, 3]
    phone_j = cf[CF_P_PREFILL_W] * prefill_s + cf[CF_P_DECODE_W] * decode_s
    if est[PHONE, 1] == est[PHONE, 1]:
        g[o] = phone_j / (phone_j + scale)
    n_usable = 0
    for loc in range(n_aps + 1):
        if est[loc, 1] == est[loc, 1]:
            n_usable += 1
    if n_usable <= 1:
        return
    k = S.wl_k[q]
    if kind == KIND_QUERY:
        up_bytes = _token_bytes(S, pred_in) + wl_f[q, 3]
    else:
        up_bytes = 0.0
        if kind == KIND_SUBTASK:
            i = D[D_ORDER + D[D_POSITION]]
            for j in range(wl_deps[q, i, 0]):
                d = wl_deps[q, i, 1 + j]
                if S.iti[S.sub_items[q, d], II_LOCATION] == PHONE:
                    up_bytes += _token_bytes(S, wl_sub[q, d, 2])
            up_bytes += _token_bytes(S, cf[CF_CONTEXT])
            if n_preds == 0:
                up_bytes += wl_f[q, 3]
        else:
            for d in range(k):
                if S.iti[S.sub_items[q, d], II_LOCATION] == PHONE:
                    up_bytes += _token_bytes(S, wl_sub[q, d, 2])
    answers_phone = kind != KIND_SUBTASK
    down_bytes = _token_bytes(S, pred_out)
    up_rate, down_rate = S.up_rate[user], S.down_rate[user]
    tx_s = 8.0 * up_bytes / up_rate if up_rate > 0 else 0.0
    rx_s = 8.0 * down_bytes / down_rate if answers_phone and down_rate > 0 else 0.0
    for loc in range(1, n_aps + 1):
        if est[loc, 1] == est[loc, 1]:
            idle_s = pmax(est[loc, 1] - now - tx_s - rx_s, 0.0)
            radio_j = cf[CF_P_TX_W] * tx_s + cf[CF_P_RX_W] * rx_s + cf[CF_P_IDLE_W] * idle_s
            g[o + loc] = radio_j / (radio_j + scale)



# ------------------------------------------------------------------------------------------- entry points
@njit
def decide_entry(S: Any, D: np.ndarray, DF: np.ndarray, est: np.ndarray, plan_locs: np.ndarray, mask: np.ndarray,
                 g: np.ndarray, OI: np.ndarray, OF: np.ndarray, energy: bool, a: int) -> int:
    """One decision: :func:`apply_action` of ``a``, the finished queries' rewards (:func:`account`), then the next
    decision's observation (into ``g``). ``a == -1`` starts the episode instead: the first arrival and the faults,
    run to the arrival, its decision and observation; ``a == -2`` goes on after a call that returned -2 (the
    message arrays were full; they have grown since), from where it stopped (one entry point for all three: the
    core compiles once, not once per entry point). The state and the arrays are borrowed for the kernels
    (:mod:`offload_gym.core.state`: no reference counts; the caller holds them)."""
    B = borrow_state(S)
    D, DF, est, plan_locs, mask, g = borrowed(D), borrowed(DF), borrowed(est), borrowed(plan_locs), borrowed(mask), \
        borrowed(g)
    OI, OF = borrowed(OI), borrowed(OF)
    if a == -1:
        start_episode(B)
        flag = advance(B, D, DF, est, plan_locs, mask)
    elif a == -2:
        flag = advance(B, D, DF, est, plan_locs, mask)
        account(B)
    else:
        flag = apply_action(B, D, DF, est, plan_locs, mask, a)
        account(B)
    observe(B, D, DF, est, g, OI, OF, energy)
    return flag


@njit
def new_batch(S: Any) -> Any:
    """A batch's list of states, ``S`` first (a typed list made here: numba caches it, unlike typed lists made
    from Python, whose methods compile in every process)."""
    states = TypedList()
    states.append(S)
    return states


@njit
def batch_append(states: Any, S: Any) -> None:
    states.append(S)


@njit
def batch_set(states: Any, i: int, S: Any) -> None:
    states[i] = S


#: a batch worker's control row (``decide_batch`` with ``polls > 0``): the job the calling thread posted last and
#: its range of envs, the job the worker finished last, whether to stop, and whether the worker sleeps (Python's)
CTL_POSTED, CTL_LO, CTL_HI, CTL_DONE, CTL_STOP, CTL_SLEEPING = range(6)
N_CTL = 6


@njit_nogil
def decide_batch(states: Any, D: np.ndarray, DF: np.ndarray, est: np.ndarray, plan_locs: np.ndarray, mask: np.ndarray,
                 g: np.ndarray, OI: np.ndarray, OF: np.ndarray, energy: bool, actions: np.ndarray, active: np.ndarray,
                 rewards: np.ndarray, flags: np.ndarray, blocks: np.ndarray, lo: int, hi: int, ctl: np.ndarray,
                 polls: int) -> None:
    """:func:`decide_entry` for each env ``i`` in ``lo..hi-1`` with ``active[i]`` of a batch of one scenario: its
    state ``states[i]`` and row ``i`` of every other array; its reward into ``rewards[i]`` (0 if inactive), its flag
    into ``flags[i]``. It releases the GIL: Python threads step disjoint ranges of one batch at once (the envs share
    nothing they write). The states and arrays are borrowed for the kernels, as in :func:`decide_entry`.

    What Python would otherwise ask of each env after the call is done here: its finished queries are marked seen
    (``GI_DRAINED``: the batch has rewarded them) and ``blocks[i]`` is 1 where its next arrival is beyond the loaded
    queries (:meth:`offload_gym.envs.compiled.CompiledEpisode.grow_if_needed` then loads the next block), else 0.

    ``polls`` 0: that one range. ``polls`` > 0: a worker thread's wait for its shares, in compiled code (so no GIL
    and no wake-up between steps): each job the calling thread posts in the control row ``ctl`` (``CTL_*``: its
    range, then its number in ``CTL_POSTED``) is stepped and marked done (``CTL_DONE``); it returns after ``polls``
    polls with no job, or when told to stop. The row is read and written atomically (:mod:`offload_gym.core.atomics`).
    """
    D, DF, est, plan_locs, mask, g = borrowed(D), borrowed(DF), borrowed(est), borrowed(plan_locs), borrowed(mask), \
        borrowed(g)
    OI, OF = borrowed(OI), borrowed(OF)
    idle = 0
    job = -1
    while True:
        if polls == 0:
            if job == 0:
                return
            job = 0
        else:
            posted = atomic_load(ctl, CTL_POSTED)
            if posted == atomic_load(ctl, CTL_DONE):
                if atomic_load(ctl, CTL_STOP) != 0 or idle >= polls:
                    return
                idle += 1
                continue
            idle = 0
            job = posted
            lo, hi = atomic_load(ctl, CTL_LO), atomic_load(ctl, CTL_HI)
        for i in range(lo, hi):
            blocks[i] = 0
            if not active[i]:
                rewards[i] = 0.0
                flags[i] = 0
                continue
            S = states[i]
            B = borrow_state(S)
            flags[i] = apply_action(B, D[i], DF[i], est[i], plan_locs[i], mask[i], actions[i])
            rewards[i] = account(B)
            observe(B, D[i], DF[i], est[i], g[i], OI, OF, energy)
            gi = B.gi
            gi[GI_DRAINED] = gi[GI_N_COMPLETED]
            # the arrivals scheduled so far reach the loaded ones and more are to come (rows count from the base)
            scheduled = gi[GI_SCHEDULED]
            if scheduled >= len(B.wl_arrival) and scheduled < B.ci[CI_QUERIES]:
                blocks[i] = 1
        if polls != 0:
            atomic_store(ctl, CTL_DONE, job)


@njit_nogil
def batch_wait(ctl: np.ndarray, job: int, polls: int) -> bool:
    """Whether a batch worker finished job ``job`` (``ctl``: its control row, :func:`decide_batch`), polling up to
    ``polls`` times without the GIL."""
    for _ in range(polls):
        if atomic_load(ctl, CTL_DONE) == job:
            return True
    return atomic_load(ctl, CTL_DONE) == job


@njit
def phone_state_entry(S: Any, user: int, out: np.ndarray, OI: np.ndarray, OF: np.ndarray) -> np.ndarray:
    """What phone ``user`` knows of the network (into ``out``); returns the locations it can use."""
    B = borrow_state(S)
    _fill_state(B, out, user, OI, OF)
    return usable_locations(B, user).copy()  # a view of the decision's scratch: Python gets its own array


@njit
def item_fields_entry(S: Any, D: np.ndarray) -> tuple[float, float, float, int]:
    """:func:`_item_fields`, from Python."""
    return _item_fields(borrow_state(S), D)
