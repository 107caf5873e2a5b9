"""The event engine on explicit arrays, compiled (issue 11).

The model of docs/model.md with the same floating-point operations in the same order as the Python engine it
replaced, so that it reproduces that engine's recorded trajectories bit for bit
(``tests/test_golden_trajectories.py``; ``tests/test_core_engine.py`` replays placements against the Python
engine's recorded values). State is explicit (gymnax-style): a
:class:`CoreState` holds arrays, every kernel takes them as one reference ``S``
(:mod:`offload_gym.core.state`: ``S.qi``, ``S.events``...), and the only randomness (the workload) is drawn
ahead by :class:`~offload_gym.sim.episode.EpisodeWorkload`.

Layout. Items are numbered by placement (an item's id is its placement ``seq``, so heaps of ids are heaps in
placement order); queries by arrival; messages by creation. Per-entity columns live in 2-D arrays indexed
with the ``Q*``, ``I*`` and ``M*`` constants below. The event heap is an array of rows
``(time, seq, kind, a, b)`` (:func:`_push`), ordered exactly as a heap of ``(time, seq)`` tuples. The queues
(the cells' messages, the phones' and edges' items) are rows of 2-D int arrays, the count in column 0 and the
values after it (:data:`QUEUE_KINDS`); the ready and decoding queues are heaps kept as :mod:`heapq` keeps a list,
so that they hold their values in the same order as the typed lists they replaced.

Faults (outages that cancel, redispatch or fail the queries they touch, re-association,
background and backhaul changes) are events like the others; random access delays draw numpy's gamma numbers
from the episode's access-delay Generator (``S.rng_access``), which numba's ``Generator.gamma`` reproduces bit for bit.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from offload_gym.core._jit import JIT_ENABLED, njit, njit_inline
from offload_gym.core.state import borrow_state, borrowed
from offload_gym.core.wifi import dcf_from_fixed_point, fixed_point

if JIT_ENABLED:
    from offload_gym.core.state import CoreStruct

__all__ = ["QUEUE_KINDS", "build_struct", "clear_containers", "new_queues", "place_aggregation", "place_entry",
           "place_subtask", "place_whole", "queues_of", "run_until_decision", "run_until_decision_entry",
           "start_entry", "start_episode"]

# event kinds (offload_gym.sim.physics.EventKind)
EV_ARRIVAL, EV_PHONE_DONE, EV_PREFILL_DONE, EV_DECODE_DONE, EV_CELL, EV_BACKHAUL_DONE, EV_RELEASE, EV_FAULT = range(8)
# fault kinds (FaultKind): the rows of ``S.faults`` are (time, kind, AP, stations or backhaul delay, backhaul rate)
F_AP_DOWN, F_AP_UP, F_BACKGROUND, F_BACKHAUL = 0, 1, 2, 3
# item kinds and hop kinds (ItemKind, HopKind)
K_WHOLE, K_SUBTASK, K_AGGREGATION = 0, 1, 2
H_UP, H_BACKHAUL, H_DOWN = 0, 1, 2
PHONE = 0
BYTES_EPS = 1e-6
TOKENS_EPS = 1e-9

# query columns: floats
QF_ARRIVAL, QF_FINISH, QF_QUALITY, QF_ENERGY, QF_TX, QF_RX, QF_NET_START, QF_NET_END, QF_REWARD = range(9)
N_QF = 9
# query columns: ints
# (QI_FAIL_AP: the AP whose outage failed the query)
(QI_USER, QI_DECOMPOSED, QI_RELEASED, QI_N_ITEMS, QI_N_MSGS, QI_N_DEFERRED, QI_WHOLE, QI_AGG, QI_FAILED,
 QI_REDISPATCHED, QI_DONE, QI_FAIL_AP) = range(12)
N_QI = 12
# item columns: floats
(IF_IN, IF_OUT, IF_DIFF, IF_PRED_IN, IF_PRED_OUT, IF_PRED_DIFF, IF_READY, IF_START, IF_FINISH, IF_EST_READY,
 IF_EST_FINISH, IF_PRED_DURATION, IF_DECODE_TARGET, IF_PREFILL_END) = range(14)
N_IF = 14
# item columns: ints
II_QUERY, II_KIND, II_INDEX, II_LOCATION, II_PENDING, II_DONE, II_CANCELLED, II_N_PREDS = range(8)
N_II = 8
# message columns: floats
MF_NBYTES, MF_REMAINING, MF_ACCESS_UNTIL, MF_LAST, MF_RATE, MF_PHY_RATE, MF_FINISH_AT = range(7)
N_MF = 7
# message columns: ints (then the hops' kinds and APs, then the targets)
MI_QUERY, MI_ANSWER, MI_SRC, MI_DST, MI_HOP, MI_N_HOPS, MI_DELIVERED, MI_CANCELLED, MI_N_TARGETS = range(9)
MI_HOPS = 9  # 3 hops: kind at MI_HOPS + 2 h, AP at MI_HOPS + 2 h + 1
MI_TARGETS = MI_HOPS + 6

# float parameters
(CF_FRAME, CF_BYTES_PER_TOKEN, CF_OVERHEAD, CF_EDGE_PREFILL, CF_EDGE_DECODE, CF_KAPPA, CF_EDGE_ABILITY, CF_PLANNER_S,
 CF_CONTEXT, CF_AGG_OUT, CF_AGG_DIFF, CF_P_PREFILL_W, CF_P_DECODE_W, CF_P_TX_W, CF_P_RX_W, CF_P_IDLE_W,
 # the reward (offload_gym.core.step.account): product form or not, its latency scale, latency weight, deadline
 # penalty, deadline and energy weight
 CF_R_PRODUCT, CF_R_LATENCY_SCALE, CF_R_LATENCY_WEIGHT, CF_R_DEADLINE_PENALTY, CF_R_DEADLINE, CF_R_ENERGY_WEIGHT,
 CF_R_FAILURE_PENALTY,
 # the gamma shape of random access delays, 1 / wifi.access_delay_cv^2 (0: every message waits the mean)
 CF_ACCESS_SHAPE) = range(24)
N_CF = 24
# int parameters (CI_OUTAGE_FAILS: faults.on_outage is "fail", else queries hit by an outage are redispatched)
CI_QUERIES, CI_MAX_BATCH, CI_N_USERS, CI_N_APS, CI_IMMEDIATE, CI_MAX_K, CI_OUTAGE_FAILS = range(7)
N_CI = 7
# global scalars: floats, ints
# (then the episode's sums over the rewarded queries, in finishing order: the last call's reward, rewards,
# qualities, energies)
(GF_NOW, GF_BACKHAUL_DELAY, GF_BACKHAUL_RATE, GF_EDGE_OUT_TOKENS, GF_TOTAL_OUT_TOKENS, GF_STEP_REWARD, GF_REWARD_SUM,
 GF_QUALITY_SUM, GF_ENERGY_SUM) = range(9)
N_GF = 9
# (GI_N_COMPLETED: queries in ``S.completed``, in finishing order; GI_REWARDED: how many of them are rewarded;
# GI_DECOMPOSED_DONE: how many of those ran decomposed; GI_BASE: the episode's id of query row 0, whose earlier
# queries' rows were dropped (CoreState.compact): GI_ARRIVED, GI_SCHEDULED, GI_FINISHED and CI_QUERIES count
# from it; GI_TMP_F, GI_TMP_I: the floats and ints of the decision's scratch in use, tmp_floats; GI_DRAINED: how
# many of ``S.completed``'s queries the env has seen, kept here so that a batch's call marks them without Python)
(GI_EVENT_SEQ, GI_PLACE_SEQ, GI_ARRIVED, GI_SCHEDULED, GI_FINISHED, GI_N_MSGS, GI_N_COMPLETED, GI_REWARDED,
 GI_DECOMPOSED_DONE, GI_N_EVENTS, GI_FAILED, GI_REDISPATCHED, GI_BASE, GI_TMP_F, GI_TMP_I, GI_DRAINED) = range(16)
N_GI = 16


# ---------------------------------------------------------------------------------------------------- helpers
@njit
def pmax(a: float, b: float) -> float:
    """Python's ``max(a, b)``: ``b`` only if it is greater (the same float for ties and NaN as the Python code)."""
    return b if b > a else a


@njit
def pmin(a: float, b: float) -> float:
    """Python's ``min(a, b)``: ``b`` only if it is smaller."""
    return b if b < a else a


# The event heap: rows (time, seq, kind, a, b) of ``S.events`` (floats: the ints are exact), ``GI_N_EVENTS`` of
# them in heap order by (time, seq). seq is unique, so it pops events in exactly the order a heapq of
# (time, seq) tuples does; an array, not a typed list, because a typed list's item access costs a call and
# reference counts (measured: a fifth of the core's reference counting).
@njit
def _event_before(time_i: float, seq_i: float, time: float, seq: float) -> bool:
    """``(time_i, seq_i) < (time, seq)`` (floats, not the heap and a row: a compiled call that takes an array
    costs two atomic reference counts, and the heap makes one per level)."""
    return time_i < time or (time_i == time and seq_i < seq)


@njit
def _push(S: Any, time: float, kind: int, a: int, b: int) -> None:
    gi = S.gi
    gi[GI_EVENT_SEQ] += 1
    seq = float(gi[GI_EVENT_SEQ])
    n = gi[GI_N_EVENTS]
    ev = S.events
    if n == ev.shape[0]:  # full: twice the room (the state then holds the new array)
        grown = np.empty((2 * n + 16, 5))
        for r in range(n):
            for c in range(5):
                grown[r, c] = ev[r, c]
        S.events = grown
        ev = grown
    pos = n
    while pos > 0:
        parent = (pos - 1) >> 1
        if not _event_before(ev[parent, 0], ev[parent, 1], time, seq):
            for c in range(5):
                ev[pos, c] = ev[parent, c]
            pos = parent
        else:
            break
    ev[pos, 0], ev[pos, 1], ev[pos, 2], ev[pos, 3], ev[pos, 4] = time, seq, float(kind), float(a), float(b)
    gi[GI_N_EVENTS] = n + 1


@njit
def _pop_event(S: Any) -> tuple[float, int, int, int]:
    """The earliest event ``(time, kind, a, b)``, removed (the heap is not empty)."""
    ev, gi = S.events, S.gi
    time, kind, a, b = ev[0, 0], int(ev[0, 2]), int(ev[0, 3]), int(ev[0, 4])
    n = gi[GI_N_EVENTS] - 1
    gi[GI_N_EVENTS] = n
    if n == 0:
        return time, kind, a, b
    lt, ls, lk, la, lb = ev[n, 0], ev[n, 1], ev[n, 2], ev[n, 3], ev[n, 4]
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= n:
            break
        if child + 1 < n and _event_before(ev[child + 1, 0], ev[child + 1, 1], ev[child, 0], ev[child, 1]):
            child += 1
        if _event_before(ev[child, 0], ev[child, 1], lt, ls):
            for c in range(5):
                ev[pos, c] = ev[child, c]
            pos = child
        else:
            break
    ev[pos, 0], ev[pos, 1], ev[pos, 2], ev[pos, 3], ev[pos, 4] = lt, ls, lk, la, lb
    return time, kind, a, b


@njit
def events_of(S: Any) -> np.ndarray:
    """The event heap's rows (a copy; for pickling: growing replaces the state's array)."""
    return S.events[: S.gi[GI_N_EVENTS]].copy()


# The queues: per cell its messages on the air (in the order they started), per phone its ready items (a heap),
# per edge its waiting items (placed, inputs not all there; placement order), ready items (a heap), decoding
# items (a heap by (decode target, id): the target is the item's IF_DECODE_TARGET) and prefilling items
# (admission order). Each kind is one 2-D int array, a row per cell, phone or edge: the count in column 0, the
# values in columns 1..count. Arrays, not numba typed lists: a typed list's append, pop and indexed read are
# calls into C with atomic reference counts (they were about a fifth of a decision), and heapq on them
# compiles slowly. A full row doubles every row's room (the state then holds the new array: Python reads the
# queues through :func:`queues_of`).
Q_CELL, Q_PHONE_READY, Q_EDGE_WAITING, Q_EDGE_READY, Q_EDGE_DECODING, Q_EDGE_PREFILLING = range(6)
#: the queue kinds, in :func:`queues_of`'s order, by their state members' names
QUEUE_KINDS = ("cell_msgs", "phone_ready", "edge_waiting", "edge_ready", "edge_decoding", "edge_prefilling")
#: the values a queue row has room for at first
QUEUE_ROOM = 15


@njit
def _queue(S: Any, which: int) -> np.ndarray:
    if which == Q_CELL:
        return S.cell_msgs
    if which == Q_PHONE_READY:
        return S.phone_ready
    if which == Q_EDGE_WAITING:
        return S.edge_waiting
    if which == Q_EDGE_READY:
        return S.edge_ready
    if which == Q_EDGE_DECODING:
        return S.edge_decoding
    return S.edge_prefilling


@njit
def _queue_grown(S: Any, which: int) -> np.ndarray:
    """Queue kind ``which`` with twice the room in every row (the state holds the new array)."""
    old = _queue(S, which)
    rows, cols = old.shape
    grown = np.zeros((rows, 2 * cols - 1), dtype=np.int64)
    for r in range(rows):
        for c in range(old[r, 0] + 1):
            grown[r, c] = old[r, c]
    if which == Q_CELL:
        S.cell_msgs = grown
    elif which == Q_PHONE_READY:
        S.phone_ready = grown
    elif which == Q_EDGE_WAITING:
        S.edge_waiting = grown
    elif which == Q_EDGE_READY:
        S.edge_ready = grown
    elif which == Q_EDGE_DECODING:
        S.edge_decoding = grown
    else:
        S.edge_prefilling = grown
    return grown


@njit
def _q_append(S: Any, which: int, row: int, value: int) -> np.ndarray:
    """Append ``value`` to row ``row`` of queue kind ``which``; the queue's array (grown if it was full)."""
    Q = _queue(S, which)
    n = Q[row, 0] + 1
    if n == Q.shape[1]:
        Q = _queue_grown(S, which)
    Q[row, n] = value
    Q[row, 0] = n
    return Q


@njit
def _q_remove(Q: np.ndarray, row: int, value: int) -> bool:
    """Remove the first ``value`` of row ``row`` (the others keep their order); whether it was there."""
    n = Q[row, 0]
    for j in range(1, n + 1):
        if Q[row, j] == value:
            for c in range(j, n):
                Q[row, c] = Q[row, c + 1]
            Q[row, 0] = n - 1
            return True
    return False


@njit
def _q_has(Q: np.ndarray, row: int, value: int) -> bool:
    for j in range(1, Q[row, 0] + 1):
        if Q[row, j] == value:
            return True
    return False


# The heaps: CPython's heapq (which numba's ports) on a row's values, so that a row holds its values in the order
# a list under heapq would. Keys are the item ids, or for the decoding heaps (decode target, id) as the tuples
# the Python engine pushed were ordered.
@njit_inline
def _before(itf: np.ndarray, by_target: bool, a: int, b: int) -> bool:
    """``a < b``, or ``(target of a, a) < (target of b, b)`` as Python orders tuples."""
    if by_target:
        ta, tb = itf[a, IF_DECODE_TARGET], itf[b, IF_DECODE_TARGET]
        if ta != tb:
            return ta < tb
    return a < b


@njit
def _sift_down(Q: np.ndarray, row: int, start: int, pos: int, itf: np.ndarray, by_target: bool) -> None:
    """heapq's ``_siftdown(heap, start, pos)`` on row ``row`` (heap index ``i`` is column ``i + 1``)."""
    new = Q[row, 1 + pos]
    while pos > start:
        parent = (pos - 1) >> 1
        p = Q[row, 1 + parent]
        if _before(itf, by_target, new, p):
            Q[row, 1 + pos] = p
            pos = parent
            continue
        break
    Q[row, 1 + pos] = new


@njit
def _sift_up(Q: np.ndarray, row: int, pos: int, itf: np.ndarray, by_target: bool) -> None:
    """heapq's ``_siftup(heap, pos)`` on row ``row``."""
    end = Q[row, 0]
    start = pos
    new = Q[row, 1 + pos]
    child = 2 * pos + 1
    while child < end:
        right = child + 1
        if right < end and not _before(itf, by_target, Q[row, 1 + child], Q[row, 1 + right]):
            child = right
        Q[row, 1 + pos] = Q[row, 1 + child]
        pos = child
        child = 2 * pos + 1
    Q[row, 1 + pos] = new
    _sift_down(Q, row, start, pos, itf, by_target)


@njit
def _heap_push(S: Any, which: int, row: int, value: int) -> None:
    """``heapq.heappush`` onto row ``row`` of heap kind ``which``."""
    Q = _q_append(S, which, row, value)
    _sift_down(Q, row, 0, Q[row, 0] - 1, S.itf, which == Q_EDGE_DECODING)


@njit
def _heap_pop(S: Any, which: int, row: int) -> int:
    """``heapq.heappop`` from row ``row`` (not empty) of heap kind ``which``."""
    Q = _queue(S, which)
    n = Q[row, 0] - 1
    last = Q[row, 1 + n]
    Q[row, 0] = n
    if n == 0:
        return last
    top = Q[row, 1]
    Q[row, 1] = last
    _sift_up(Q, row, 0, S.itf, which == Q_EDGE_DECODING)
    return top


@njit
def _heap_remove(S: Any, which: int, row: int, value: int) -> bool:
    """Remove ``value`` from a heap's row as the Python engine did (``list.pop`` at its place, then
    ``heapq.heapify``); whether it was there."""
    Q = _queue(S, which)
    if not _q_remove(Q, row, value):
        return False
    itf, by_target = S.itf, which == Q_EDGE_DECODING
    for i in range(Q[row, 0] // 2 - 1, -1, -1):
        _sift_up(Q, row, i, itf, by_target)
    return True


@njit
def queues_of(S: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The state's queue arrays (:data:`QUEUE_KINDS`' order; not copies: a full one is replaced by a larger one,
    so Python reads them here rather than keeping its own references)."""
    return S.cell_msgs, S.phone_ready, S.edge_waiting, S.edge_ready, S.edge_decoding, S.edge_prefilling


# The decision's scratch: the estimates' small arrays (per location, per subtask) are views of two preallocated
# state arrays, handed out in order and all given back at once when the next decision is prepared (tmp_reset).
# Allocating them cost about 30 NRT allocations a decision, with their reference counts and frees.
@njit
def tmp_reset(S: Any) -> None:
    gi = S.gi
    gi[GI_TMP_F] = 0
    gi[GI_TMP_I] = 0


@njit
def tmp_floats(S: Any, n: int) -> np.ndarray:
    """``n`` floats of the decision's scratch (values left as they were: the caller fills them); an array of its
    own when the scratch is used up (a decision that needs more than the state sized it for)."""
    gi, buf = S.gi, S.tmp_f
    o = gi[GI_TMP_F]
    if o + n > buf.shape[0]:
        return np.empty(n)
    gi[GI_TMP_F] = o + n
    return buf[o:o + n]


@njit
def tmp_ints(S: Any, n: int) -> np.ndarray:
    """``n`` ints of the decision's scratch (as :func:`tmp_floats`)."""
    gi, buf = S.gi, S.tmp_i
    o = gi[GI_TMP_I]
    if o + n > buf.shape[0]:
        return np.empty(n, dtype=np.int64)
    gi[GI_TMP_I] = o + n
    return buf[o:o + n]


@njit
def tmp_floats_filled(S: Any, n: int, value: float) -> np.ndarray:
    out = tmp_floats(S, n)
    for j in range(n):
        out[j] = value
    return out


@njit
def tmp_ints_filled(S: Any, n: int, value: int) -> np.ndarray:
    out = tmp_ints(S, n)
    for j in range(n):
        out[j] = value
    return out


#: rows of the Wi-Fi model's memo (a power of two); when it is 3/4 full, new points are computed, not stored
DCF_MEMO_ROWS = 8192


@njit
def _dcf(S: Any, n: int, rate: float, payload: float) -> tuple[float, float, float]:
    """``dcf_point`` memoised per ``(n, rate, payload)`` in an open-addressing table of plain arrays (row:
    used, n, rate, payload, throughput, access delay, idle access; row ``DCF_MEMO_ROWS`` counts the used ones),
    and its fixed point per station count ``n`` in the rows after it (used, tau, p): a new payload then costs
    the frame arithmetic only."""
    memo, params = S.memo, S.params
    rows = DCF_MEMO_ROWS
    h = (n * 2654435761 + int(rate) * 40503 + int(payload * 64.0) * 2246822519) & (rows - 1)
    while memo[h, 0] != 0.0:
        if memo[h, 1] == n and memo[h, 2] == rate and memo[h, 3] == payload:
            return memo[h, 4], memo[h, 5], memo[h, 6]
        h = (h + 1) & (rows - 1)
    fp_row = rows + 1 + n
    if fp_row < memo.shape[0] and memo[fp_row, 0] != 0.0:
        tau, p = memo[fp_row, 1], memo[fp_row, 2]
    else:
        tau, p = fixed_point(n, params)
        if fp_row < memo.shape[0]:
            memo[fp_row, 0], memo[fp_row, 1], memo[fp_row, 2] = 1.0, tau, p
    res = dcf_from_fixed_point(n, rate, payload, params, tau, p)
    if memo[rows, 0] < 0.75 * rows:
        memo[h, 0] = 1.0
        memo[h, 1] = n
        memo[h, 2] = rate
        memo[h, 3] = payload
        memo[h, 4], memo[h, 5], memo[h, 6] = res
        memo[rows, 0] += 1.0
    return res


@njit
def _access_delay_s(S: Any, n: int, rate: float, payload: float) -> float:
    ci = S.ci
    _, access, idle = _dcf(S, n, rate, payload)
    if ci[CI_IMMEDIATE] != 0 and n == 1:
        return idle
    return access


@njit
def _token_bytes(S: Any, tokens: float) -> float:
    cf = S.cf
    return tokens * cf[CF_BYTES_PER_TOKEN] + cf[CF_OVERHEAD]


@njit
def _contenders(S: Any, ap: int) -> int:
    background, cell_n_up, cell_down = S.background, S.cell_n_up, S.cell_down
    return background[ap] + cell_n_up[ap] + (1 if cell_down[ap] else 0)


# ---------------------------------------------------------------------------------------------------- messages
@njit
def _new_message(S: Any, user: int, src: int, dst: int, nbytes: float, target: int, answer: int, query: int) -> int:
    gi, mf, mi, qi, qmsgs, own_ap = S.gi, S.mf, S.mi, S.qi, S.qmsgs, S.own_ap
    m = gi[GI_N_MSGS]
    gi[GI_N_MSGS] += 1
    mf[m, MF_NBYTES] = nbytes
    mf[m, MF_REMAINING] = nbytes
    mf[m, MF_ACCESS_UNTIL] = 0.0
    mf[m, MF_LAST] = 0.0
    mf[m, MF_RATE] = 0.0
    mf[m, MF_PHY_RATE] = 0.0
    mf[m, MF_FINISH_AT] = math.inf
    mi[m, MI_QUERY] = query
    mi[m, MI_ANSWER] = answer
    mi[m, MI_SRC] = src
    mi[m, MI_DST] = dst
    mi[m, MI_HOP] = 0
    mi[m, MI_DELIVERED] = 0
    mi[m, MI_CANCELLED] = 0
    # the route (offload_gym.sim.physics.route)
    oa = own_ap[user]
    own = oa + 1
    nh = 0
    if src == PHONE:
        mi[m, MI_HOPS] = H_UP
        mi[m, MI_HOPS + 1] = oa
        nh = 1
        if dst != own:
            mi[m, MI_HOPS + 2] = H_BACKHAUL
            mi[m, MI_HOPS + 3] = -1
            nh = 2
    elif dst == PHONE:
        if src != own:
            mi[m, MI_HOPS] = H_BACKHAUL
            mi[m, MI_HOPS + 1] = -1
            nh = 1
        mi[m, MI_HOPS + 2 * nh] = H_DOWN
        mi[m, MI_HOPS + 2 * nh + 1] = oa
        nh += 1
    else:
        mi[m, MI_HOPS] = H_BACKHAUL
        mi[m, MI_HOPS + 1] = -1
        nh = 1
    mi[m, MI_N_HOPS] = nh
    if target >= 0:
        mi[m, MI_TARGETS] = target
        mi[m, MI_N_TARGETS] = 1
    else:
        mi[m, MI_N_TARGETS] = 0
    qmsgs[query, qi[query, QI_N_MSGS]] = m
    qi[query, QI_N_MSGS] += 1
    return m


@njit
def _cell_advance(S: Any, ap: int) -> None:
    gf, mf, cell_msgs = S.gf, S.mf, S.cell_msgs
    now = gf[GF_NOW]
    for j in range(1, cell_msgs[ap, 0] + 1):
        m = cell_msgs[ap, j]
        last, until = mf[m, MF_LAST], mf[m, MF_ACCESS_UNTIL]
        start = last if last > until else until
        if now > start:
            mf[m, MF_REMAINING] -= mf[m, MF_RATE] * (now - start) / 8.0
        mf[m, MF_LAST] = now


@njit
def _cell_reschedule(S: Any, ap: int) -> None:
    gf, cf, mf, mi, qi = S.gf, S.cf, S.mf, S.mi, S.qi
    cell_msgs, cell_up, cell_down, cell_version = S.cell_msgs, S.cell_up, S.cell_down, S.cell_version
    cell_version[ap] += 1
    n_msgs = cell_msgs[ap, 0]
    if n_msgs == 0:
        return
    n = _contenders(S, ap)
    frame = cf[CF_FRAME]
    now = gf[GF_NOW]
    next_time = math.inf
    for j in range(1, n_msgs + 1):
        m = cell_msgs[ap, j]
        h = mi[m, MI_HOP]
        direction = mi[m, MI_HOPS + 2 * h]
        user = qi[mi[m, MI_QUERY], QI_USER]  # the hop's phone is its query's
        sharing = cell_up[ap, user] if direction == H_UP else cell_down[ap]
        thr = _dcf(S, n, mf[m, MF_PHY_RATE], frame)[0]
        rate = thr / n / sharing
        mf[m, MF_RATE] = rate
        until = mf[m, MF_ACCESS_UNTIL]
        start = until if until > now else now
        rem = mf[m, MF_REMAINING]
        t = start + 8.0 * (rem if rem > 0.0 else 0.0) / rate
        mf[m, MF_FINISH_AT] = t
        if t < next_time:
            next_time = t
    _push(S, next_time, EV_CELL, ap, cell_version[ap])


@njit
def _start_hop(S: Any, m: int) -> None:
    gf, cf, qf, qi, mf, mi = S.gf, S.cf, S.qf, S.qi, S.mf, S.mi
    up_rate, down_rate = S.up_rate, S.down_rate
    cell_n_up, cell_down, cell_up = S.cell_n_up, S.cell_down, S.cell_up
    now = gf[GF_NOW]
    h = mi[m, MI_HOP]
    kind = mi[m, MI_HOPS + 2 * h]
    if kind == H_BACKHAUL:
        _push(S, now + gf[GF_BACKHAUL_DELAY] + 8.0 * mf[m, MF_NBYTES] / gf[GF_BACKHAUL_RATE], EV_BACKHAUL_DONE, m, 0)
        return
    ap = mi[m, MI_HOPS + 2 * h + 1]
    q = mi[m, MI_QUERY]
    user = qi[q, QI_USER]
    if qf[q, QF_NET_START] != qf[q, QF_NET_START]:  # nan: the query's first transfer
        qf[q, QF_NET_START] = now
    _cell_advance(S, ap)
    mf[m, MF_REMAINING] = mf[m, MF_NBYTES]
    mf[m, MF_LAST] = now
    if kind == H_UP:
        if cell_up[ap, user] == 0:
            cell_n_up[ap] += 1
        cell_up[ap, user] += 1
        rate = up_rate[user]
    else:
        cell_down[ap] += 1
        rate = down_rate[user]
    mf[m, MF_PHY_RATE] = rate
    _q_append(S, Q_CELL, ap, m)
    n_own = _contenders(S, ap)
    nbytes = mf[m, MF_NBYTES]
    frame = cf[CF_FRAME]
    access = _access_delay_s(S, n_own, rate, nbytes if nbytes < frame else frame)
    shape = cf[CF_ACCESS_SHAPE]
    if shape != 0.0:  # a gamma draw with the model's mean and the configured spread (numpy's, from its stream)
        access = S.rng_access.gamma(shape, access / shape)
    mf[m, MF_ACCESS_UNTIL] = now + access
    _cell_reschedule(S, ap)


@njit
def _cell_remove(S: Any, ap: int, m: int) -> None:
    gf, qf, qi, mf, mi = S.gf, S.qf, S.qi, S.mf, S.mi
    cell_n_up, cell_down, cell_up = S.cell_n_up, S.cell_down, S.cell_up
    _q_remove(S.cell_msgs, ap, m)
    h = mi[m, MI_HOP]
    direction = mi[m, MI_HOPS + 2 * h]
    q = mi[m, MI_QUERY]
    user = qi[q, QI_USER]
    rem, nbytes, phy = mf[m, MF_REMAINING], mf[m, MF_NBYTES], mf[m, MF_PHY_RATE]
    sent = nbytes - rem if rem > 0.0 else nbytes
    airtime = 8.0 * sent / phy if phy > 0.0 else 0.0
    if direction == H_UP:
        qf[q, QF_TX] += airtime
    else:
        qf[q, QF_RX] += airtime
    qf[q, QF_NET_END] = gf[GF_NOW]
    if direction == H_UP:
        cell_up[ap, user] -= 1
        if cell_up[ap, user] == 0:
            cell_n_up[ap] -= 1
    else:
        cell_down[ap] -= 1


@njit_inline
def _cell_event(S: Any, ap: int) -> None:
    gf, mf, cell_msgs = S.gf, S.mf, S.cell_msgs
    _cell_advance(S, ap)
    now = gf[GF_NOW]
    finished = []
    for j in range(1, cell_msgs[ap, 0] + 1):
        m = cell_msgs[ap, j]
        if mf[m, MF_FINISH_AT] <= now or (now >= mf[m, MF_ACCESS_UNTIL] and mf[m, MF_REMAINING] <= BYTES_EPS):
            finished.append(m)
    for m in finished:
        _cell_remove(S, ap, m)
    _cell_reschedule(S, ap)
    for m in finished:
        _next_hop(S, m)


@njit_inline
def _next_hop(S: Any, m: int) -> None:
    mi = S.mi
    mi[m, MI_HOP] += 1
    if mi[m, MI_HOP] < mi[m, MI_N_HOPS]:
        _start_hop(S, m)
        return
    mi[m, MI_DELIVERED] = 1
    if mi[m, MI_ANSWER] >= 0:
        _finish_query(S, mi[m, MI_ANSWER])
    for j in range(mi[m, MI_N_TARGETS]):
        _input_arrived(S, mi[m, MI_TARGETS + j])


# ---------------------------------------------------------------------------------------------------- compute
@njit
def _input_arrived(S: Any, it: int) -> None:
    gf, qi, itf, iti = S.gf, S.qi, S.itf, S.iti
    if iti[it, II_CANCELLED]:
        return
    iti[it, II_PENDING] -= 1
    if iti[it, II_PENDING] > 0:
        return
    itf[it, IF_READY] = gf[GF_NOW]
    loc = iti[it, II_LOCATION]
    if loc == PHONE:
        user = qi[iti[it, II_QUERY], QI_USER]
        _heap_push(S, Q_PHONE_READY, user, it)
        _phone_try_start(S, user)
    else:
        e = loc - 1
        _q_remove(S.edge_waiting, e, it)
        _heap_push(S, Q_EDGE_READY, e, it)
        _edge_try_admit(S, e)


@njit
def _phone_try_start(S: Any, user: int) -> None:
    gf, itf, phone_f, phone_i = S.gf, S.itf, S.phone_f, S.phone_i
    if phone_i[user, 0] >= 0 or S.phone_ready[user, 0] == 0:
        return
    it = _heap_pop(S, Q_PHONE_READY, user)
    phone_i[user, 0] = it
    phone_f[user, 1] -= itf[it, IF_PRED_DURATION]
    now = gf[GF_NOW]
    itf[it, IF_START] = now
    duration = itf[it, IF_IN] / phone_f[user, 2] + itf[it, IF_OUT] / phone_f[user, 3]
    phone_f[user, 0] = now + duration
    _push(S, phone_f[user, 0], EV_PHONE_DONE, user, phone_i[user, 1])


@njit
def _phone_energy_j(S: Any, it: int, user: int, elapsed_s: float) -> float:
    cf, itf, phone_f = S.cf, S.itf, S.phone_f
    prefill_s = itf[it, IF_IN] / phone_f[user, 2]
    prefilled_s = elapsed_s if elapsed_s <= prefill_s else prefill_s
    return cf[CF_P_PREFILL_W] * prefilled_s + cf[CF_P_DECODE_W] * (elapsed_s - prefilled_s)


@njit_inline
def _phone_done(S: Any, user: int) -> None:
    qf, itf, iti, phone_f, phone_i = S.qf, S.itf, S.iti, S.phone_f, S.phone_i
    it = phone_i[user, 0]
    qf[iti[it, II_QUERY], QF_ENERGY] += _phone_energy_j(S, it, user, phone_f[user, 0] - itf[it, IF_START])
    phone_i[user, 0] = -1
    _item_done(S, it)
    _phone_try_start(S, user)


@njit
def _edge_rate(S: Any, batch: int) -> float:
    cf = S.cf
    return cf[CF_EDGE_DECODE] / (1.0 + cf[CF_KAPPA] * (batch - 1)) if batch > 0 else 0.0


@njit
def _edge_progress_now(S: Any, e: int) -> float:
    gf, edge_f = S.gf, S.edge_f
    return edge_f[e, 0] + edge_f[e, 2] * (gf[GF_NOW] - edge_f[e, 1])


@njit
def _edge_retime(S: Any, e: int) -> None:
    gf, edge_f, edge_i = S.gf, S.edge_f, S.edge_i
    edge_f[e, 0] = _edge_progress_now(S, e)
    edge_f[e, 1] = gf[GF_NOW]
    edge_f[e, 2] = _edge_rate(S, edge_i[e, 0])
    edge_i[e, 1] += 1
    decoding = S.edge_decoding
    if decoding[e, 0] > 0:
        target = S.itf[decoding[e, 1], IF_DECODE_TARGET]
        left = target - edge_f[e, 0]
        _push(S, gf[GF_NOW] + (left if left > 0.0 else 0.0) / edge_f[e, 2], EV_DECODE_DONE, e, edge_i[e, 1])


@njit
def _edge_try_admit(S: Any, e: int) -> None:
    gf, ci, cf, itf, edge_i = S.gf, S.ci, S.cf, S.itf, S.edge_i
    admitted = False
    while S.edge_ready[e, 0] > 0 and edge_i[e, 0] < ci[CI_MAX_BATCH]:
        it = _heap_pop(S, Q_EDGE_READY, e)
        edge_i[e, 0] += 1
        now = gf[GF_NOW]
        itf[it, IF_START] = now
        end = now + itf[it, IF_IN] / cf[CF_EDGE_PREFILL]
        itf[it, IF_PREFILL_END] = end
        _q_append(S, Q_EDGE_PREFILLING, e, it)
        _push(S, end, EV_PREFILL_DONE, e, it)
        admitted = True
    if admitted:
        _edge_retime(S, e)


@njit_inline
def _prefill_done(S: Any, e: int, it: int) -> None:
    itf, iti = S.itf, S.iti
    if iti[it, II_CANCELLED]:
        return
    _q_remove(S.edge_prefilling, e, it)
    itf[it, IF_DECODE_TARGET] = _edge_progress_now(S, e) + itf[it, IF_OUT]
    _heap_push(S, Q_EDGE_DECODING, e, it)  # keyed by (IF_DECODE_TARGET, id)
    _edge_retime(S, e)


@njit_inline
def _decode_done(S: Any, e: int) -> None:
    gf, itf, edge_i = S.gf, S.itf, S.edge_i
    progress = _edge_progress_now(S, e)
    done = []
    if S.edge_decoding[e, 0] > 0:
        done.append(_heap_pop(S, Q_EDGE_DECODING, e))
    while S.edge_decoding[e, 0] > 0 and itf[S.edge_decoding[e, 1], IF_DECODE_TARGET] <= progress + TOKENS_EPS:
        done.append(_heap_pop(S, Q_EDGE_DECODING, e))
    edge_i[e, 0] -= len(done)
    _edge_retime(S, e)
    for it in done:
        gf[GF_EDGE_OUT_TOKENS] += itf[it, IF_OUT]
        _item_done(S, it)
    _edge_try_admit(S, e)


@njit_inline
def _item_done(S: Any, it: int) -> None:
    gf, qi, itf, iti, wl_deps, q_sub = S.gf, S.qi, S.itf, S.iti, S.wl_deps, S.sub_items
    iti[it, II_DONE] = 1
    itf[it, IF_FINISH] = gf[GF_NOW]
    q = iti[it, II_QUERY]
    user = qi[q, QI_USER]
    gf[GF_TOTAL_OUT_TOKENS] += itf[it, IF_OUT]
    loc = iti[it, II_LOCATION]
    if iti[it, II_KIND] == K_SUBTASK:
        # the successors in a fixed order: the later subtasks that read this one, by index, then
        # the aggregation (every item of the query is placed before time moves on)
        index = iti[it, II_INDEX]
        k = S.wl_k[q]
        for j in range(index + 1, k + 1):
            if j < k:
                reads = False
                for t in range(wl_deps[q, j, 0]):
                    if wl_deps[q, j, 1 + t] == index:
                        reads = True
                if not reads:
                    continue
                succ = q_sub[q, j]
            else:
                succ = qi[q, QI_AGG]
            if iti[succ, II_LOCATION] == loc:
                _input_arrived(S, succ)
            else:
                m = _new_message(S, user, loc, iti[succ, II_LOCATION], _token_bytes(S, itf[it, IF_OUT]), succ, -1, q)
                _start_hop(S, m)
        return
    if loc == PHONE:
        _finish_query(S, q)
    else:
        m = _new_message(S, user, loc, PHONE, _token_bytes(S, itf[it, IF_OUT]), -1, q, q)
        _start_hop(S, m)


@njit
def _success_prob(ability: float, difficulty: float) -> float:
    return 0.5 * math.erfc(-(ability - difficulty) / math.sqrt(2.0))


@njit
def _ability(S: Any, user: int, loc: int) -> float:
    cf, phone_f = S.cf, S.phone_f
    return phone_f[user, 4] if loc == PHONE else cf[CF_EDGE_ABILITY]


@njit
def _finish_query(S: Any, q: int) -> None:
    gf, qf, qi, itf, iti = S.gf, S.qf, S.qi, S.itf, S.iti
    qf[q, QF_FINISH] = gf[GF_NOW]
    user = qi[q, QI_USER]
    if qi[q, QI_DECOMPOSED] and not qi[q, QI_REDISPATCHED]:
        total = 0.0  # in subtask order (the float sum depends on it)
        k = S.wl_k[q]
        for j in range(k):
            s = S.sub_items[q, j]
            total += _success_prob(_ability(S, user, iti[s, II_LOCATION]), itf[s, IF_DIFF])
        n_sub = k
        agg = qi[q, QI_AGG]
        quality = _success_prob(_ability(S, user, iti[agg, II_LOCATION]), itf[agg, IF_DIFF]) * (total / n_sub)
    else:
        w = qi[q, QI_WHOLE]
        quality = _success_prob(_ability(S, user, iti[w, II_LOCATION]), itf[w, IF_DIFF])
    _record(S, q, quality)


@njit
def _record(S: Any, q: int, quality: float) -> None:
    gf, gi, cf, qf, qi, completed = S.gf, S.gi, S.cf, S.qf, S.qi, S.completed
    qf[q, QF_QUALITY] = quality
    idle_s = 0.0
    if qf[q, QF_NET_START] == qf[q, QF_NET_START]:
        end = gf[GF_NOW] if qi[q, QI_FAILED] else qf[q, QF_NET_END]
        awake_s = end - qf[q, QF_NET_START] - qf[q, QF_TX] - qf[q, QF_RX]
        idle_s = awake_s if awake_s > 0.0 else 0.0
    qf[q, QF_ENERGY] += (cf[CF_P_TX_W] * qf[q, QF_TX] + cf[CF_P_RX_W] * qf[q, QF_RX] + cf[CF_P_IDLE_W] * idle_s)
    qi[q, QI_DONE] = 1
    gi[GI_FINISHED] += 1
    completed[gi[GI_N_COMPLETED]] = q  # in finishing order (the env reads those after its last look)
    gi[GI_N_COMPLETED] += 1


# ---------------------------------------------------------------------------------------------------- placement
@njit
def _assign(S: Any, q: int, kind: int, index: int, loc: int, in_tok: float, out_tok: float, diff: float,
            pred_in: float, pred_out: float, pred_diff: float, est_ready: float, est_finish: float) -> int:
    """A new item of query ``q`` at ``loc`` (its id is its placement seq); returns the id."""
    gi, qi, itf, iti, phone_f, qitems = S.gi, S.qi, S.itf, S.iti, S.phone_f, S.query_items
    it = gi[GI_PLACE_SEQ]
    gi[GI_PLACE_SEQ] += 1
    itf[it, IF_IN] = in_tok
    itf[it, IF_OUT] = out_tok
    itf[it, IF_DIFF] = diff
    itf[it, IF_PRED_IN] = pred_in
    itf[it, IF_PRED_OUT] = pred_out
    itf[it, IF_PRED_DIFF] = pred_diff
    itf[it, IF_READY] = math.nan
    itf[it, IF_START] = math.nan
    itf[it, IF_FINISH] = math.nan
    itf[it, IF_EST_READY] = est_ready
    itf[it, IF_EST_FINISH] = est_finish
    itf[it, IF_PRED_DURATION] = 0.0
    itf[it, IF_DECODE_TARGET] = 0.0
    itf[it, IF_PREFILL_END] = 0.0
    iti[it, II_QUERY] = q
    iti[it, II_KIND] = kind
    iti[it, II_INDEX] = index
    iti[it, II_LOCATION] = loc
    iti[it, II_PENDING] = 0
    iti[it, II_DONE] = 0
    iti[it, II_CANCELLED] = 0
    iti[it, II_N_PREDS] = 0
    qitems[q, qi[q, QI_N_ITEMS]] = it
    qi[q, QI_N_ITEMS] += 1
    if loc == PHONE:
        user = qi[q, QI_USER]
        d = pred_in / phone_f[user, 2] + pred_out / phone_f[user, 3]
        itf[it, IF_PRED_DURATION] = d
        phone_f[user, 1] += d
    else:
        _q_append(S, Q_EDGE_WAITING, loc - 1, it)
    return it


@njit_inline
def _when_released(S: Any, q: int, is_send: int, ident: int) -> None:
    qi, deferred = S.qi, S.deferred
    if qi[q, QI_RELEASED]:
        _do(S, is_send, ident)
    else:
        j = qi[q, QI_N_DEFERRED]
        deferred[q, j, 0] = is_send
        deferred[q, j, 1] = ident
        qi[q, QI_N_DEFERRED] = j + 1


@njit_inline
def _do(S: Any, is_send: int, ident: int) -> None:
    if is_send:
        _start_hop(S, ident)
    else:
        _input_arrived(S, ident)


@njit_inline
def _release(S: Any, q: int) -> None:
    qi, deferred = S.qi, S.deferred
    qi[q, QI_RELEASED] = 1
    n = qi[q, QI_N_DEFERRED]
    qi[q, QI_N_DEFERRED] = 0
    for j in range(n):
        _do(S, deferred[q, j, 0], deferred[q, j, 1])


@njit
def place_whole(S: Any, q: int, loc: int, est_ready: float, est_finish: float) -> int:
    """Run query ``q`` whole at ``loc``."""
    qi, wl_f = S.qi, S.wl_f
    qi[q, QI_DECOMPOSED] = 0
    prompt = wl_f[q, 0]
    it = _assign(S, q, K_WHOLE, 0, loc, prompt, wl_f[q, 1], wl_f[q, 2], prompt, wl_f[q, 4], wl_f[q, 5],
                 est_ready, est_finish)
    qi[q, QI_WHOLE] = it
    if loc == PHONE:
        _when_released(S, q, 0, it)
    else:
        S.iti[it, II_PENDING] = 1
        nbytes = _token_bytes(S, prompt) + wl_f[q, 3]
        m = _new_message(S, qi[q, QI_USER], PHONE, loc, nbytes, it, -1, q)
        _when_released(S, q, 1, m)
    return it


@njit
def place_subtask(S: Any, q: int, index: int, loc: int, est_ready: float, est_finish: float) -> int:
    """Place subtask ``index`` of query ``q`` (its predecessors already placed) at ``loc``."""
    cf, qi, iti, mi, wl_f, wl_sub, wl_deps = S.cf, S.qi, S.iti, S.mi, S.wl_f, S.wl_sub, S.wl_deps
    q_sub = S.sub_items
    qi[q, QI_DECOMPOSED] = 1
    context = cf[CF_CONTEXT]
    n_deps = wl_deps[q, index, 0]
    true_sum = 0.0
    pred_sum = 0.0
    for j in range(n_deps):
        d = wl_deps[q, index, 1 + j]
        true_sum += wl_sub[q, d, 0]
        pred_sum += wl_sub[q, d, 2]
    it = _assign(S, q, K_SUBTASK, index, loc, context + true_sum, wl_sub[q, index, 0], wl_sub[q, index, 1],
                 context + pred_sum, wl_sub[q, index, 2], wl_sub[q, index, 3], est_ready, est_finish)
    q_sub[q, index] = it
    iti[it, II_N_PREDS] = n_deps
    iti[it, II_PENDING] = n_deps
    if loc != PHONE:
        iti[it, II_PENDING] += 1
        nbytes = _token_bytes(S, context)
        attachment = wl_f[q, 3]
        needs = n_deps == 0 and attachment > 0
        carrier = S.carriers[q, loc] if needs else -1
        if needs and carrier < 0:
            nbytes += attachment
        m = _new_message(S, qi[q, QI_USER], PHONE, loc, nbytes, it, -1, q)
        if needs and carrier < 0:
            S.carriers[q, loc] = m
        elif carrier >= 0 and not mi[carrier, MI_DELIVERED]:
            iti[it, II_PENDING] += 1
            mi[carrier, MI_TARGETS + mi[carrier, MI_N_TARGETS]] = it
            mi[carrier, MI_N_TARGETS] += 1
        _when_released(S, q, 1, m)
    elif n_deps == 0:
        _when_released(S, q, 0, it)
    return it


@njit
def place_aggregation(S: Any, q: int, loc: int, est_ready: float, est_finish: float) -> int:
    """Place the aggregation step of query ``q`` (every subtask placed) at ``loc``."""
    cf, qi, iti, wl_f, wl_sub = S.cf, S.qi, S.iti, S.wl_f, S.wl_sub
    k = S.wl_k[q]
    true_sum = 0.0
    pred_sum = 0.0
    for j in range(k):
        true_sum += wl_sub[q, j, 0]
        pred_sum += wl_sub[q, j, 2]
    it = _assign(S, q, K_AGGREGATION, k, loc, true_sum, cf[CF_AGG_OUT], cf[CF_AGG_DIFF], pred_sum, wl_f[q, 6],
                 wl_f[q, 7], est_ready, est_finish)
    qi[q, QI_AGG] = it
    iti[it, II_N_PREDS] = k
    iti[it, II_PENDING] = k
    return it


# ---------------------------------------------------------------------------------------------------- faults
# (the queries an outage hits are found first and then hit one by one, in arrival order; a query's messages in
# creation order, then its items: subtasks by index, then the aggregation, or the whole query)
@njit
def _fault(S: Any, r: int) -> None:
    faults = S.faults
    kind = int(faults[r, 1])
    ap = int(faults[r, 2])
    if kind == F_AP_DOWN:
        _ap_down(S, ap)
    elif kind == F_AP_UP:
        S.ap_up[ap] = 1
        for u in range(S.ci[CI_N_USERS]):  # back to the strongest AP
            _associate(S, u)
    elif kind == F_BACKGROUND:
        lo, hi = (0, S.ci[CI_N_APS]) if ap < 0 else (ap, ap + 1)
        for a in range(lo, hi):
            _cell_advance(S, a)
            S.background[a] = int(faults[r, 3])
            _cell_reschedule(S, a)
    else:  # backhaul: hops that start from now on
        S.gf[GF_BACKHAUL_DELAY] = faults[r, 3]
        S.gf[GF_BACKHAUL_RATE] = faults[r, 4]


@njit
def _associate(S: Any, u: int) -> None:
    """Phone ``u`` to the strongest AP that is up (``S.assoc_order``), or to none when out of its coverage (a
    rate of 0 in ``S.assoc_rates``)."""
    own_ap, up_rate, down_rate, ap_up, order, rates = S.own_ap, S.up_rate, S.down_rate, S.ap_up, S.assoc_order, S.assoc_rates
    own_ap[u] = -1
    up_rate[u] = 0.0
    down_rate[u] = 0.0
    for j in range(order.shape[1]):
        a = order[u, j]
        if ap_up[a]:
            if rates[u, a, 0] > 0.0:
                own_ap[u] = a
                up_rate[u] = rates[u, a, 0]
                down_rate[u] = rates[u, a, 1]
            return


@njit
def _ap_down(S: Any, ap: int) -> None:
    """AP ``ap`` fails: its work and the data through it are lost; its phones re-associate."""
    gi, qi, own_ap = S.gi, S.qi, S.own_ap
    S.ap_up[ap] = 0
    hit = np.zeros(gi[GI_ARRIVED], dtype=np.bool_)
    for q in range(gi[GI_ARRIVED]):
        hit[q] = not qi[q, QI_DONE] and _touches(S, q, ap)
    for q in range(gi[GI_ARRIVED]):
        if hit[q]:
            _outage_hit(S, q, ap)
    n_users = S.ci[CI_N_USERS]
    stranded = np.zeros(n_users, dtype=np.bool_)
    for u in range(n_users):
        if own_ap[u] == ap:
            _associate(S, u)
            stranded[u] = own_ap[u] < 0
    # a phone left out of coverage cannot get back what still runs or travels on the APs
    for q in range(gi[GI_ARRIVED]):
        hit[q] = not qi[q, QI_DONE] and stranded[qi[q, QI_USER]] and _uses_network(S, q)
    for q in range(gi[GI_ARRIVED]):
        if hit[q]:
            _outage_hit(S, q, ap)


@njit
def _uses_network(S: Any, q: int) -> bool:
    """Whether query ``q`` has unfinished work off the phone or undelivered messages."""
    qi, iti, mi = S.qi, S.iti, S.mi
    for j in range(qi[q, QI_N_ITEMS]):
        it = S.query_items[q, j]
        if iti[it, II_LOCATION] != PHONE and not iti[it, II_DONE] and not iti[it, II_CANCELLED]:
            return True
    for j in range(qi[q, QI_N_MSGS]):
        m = S.qmsgs[q, j]
        if not mi[m, MI_DELIVERED] and not mi[m, MI_CANCELLED]:
            return True
    return False


@njit
def _touches(S: Any, q: int, ap: int) -> bool:
    """Whether query ``q`` has unfinished work at AP ``ap`` or undelivered data routed through it (a redispatched
    query runs on its phone only: never)."""
    qi, iti, mi = S.qi, S.iti, S.mi
    if qi[q, QI_REDISPATCHED]:
        return False
    loc = ap + 1
    for j in range(qi[q, QI_N_ITEMS]):
        it = S.query_items[q, j]
        if iti[it, II_LOCATION] == loc and not iti[it, II_DONE] and not iti[it, II_CANCELLED]:
            return True
    for j in range(qi[q, QI_N_MSGS]):
        m = S.qmsgs[q, j]
        if mi[m, MI_DELIVERED] or mi[m, MI_CANCELLED]:
            continue
        if mi[m, MI_SRC] == loc or mi[m, MI_DST] == loc:
            return True
        for h in range(mi[m, MI_HOP], mi[m, MI_N_HOPS]):
            if mi[m, MI_HOPS + 2 * h] != H_BACKHAUL and mi[m, MI_HOPS + 2 * h + 1] == ap:
                return True
    return False


@njit
def _outage_hit(S: Any, q: int, ap: int) -> None:
    gf, gi, qf, qi = S.gf, S.gi, S.qf, S.qi
    now = gf[GF_NOW]
    if qf[q, QF_NET_START] == qf[q, QF_NET_START]:  # the phone waited for the network until now
        qf[q, QF_NET_END] = now
    _cancel_work(S, q)
    if S.ci[CI_OUTAGE_FAILS]:
        qi[q, QI_FAILED] = 1
        qi[q, QI_FAIL_AP] = ap
        qf[q, QF_FINISH] = now
        gi[GI_FAILED] += 1
        _record(S, q, 0.0)
    else:  # run again, whole, on its own phone from now (the prompt is still there); at most once
        gi[GI_REDISPATCHED] += 1
        qi[q, QI_REDISPATCHED] = 1
        wl_f = S.wl_f
        prompt = wl_f[q, 0]
        it = _assign(S, q, K_WHOLE, 0, PHONE, prompt, wl_f[q, 1], wl_f[q, 2], prompt, wl_f[q, 4], wl_f[q, 5],
                     math.nan, math.nan)
        qi[q, QI_WHOLE] = it
        S.iti[it, II_PENDING] = 1
        _when_released(S, q, 0, it)


@njit
def _cancel_work(S: Any, q: int) -> None:
    """Remove every unfinished item and undelivered message of query ``q`` from the network."""
    qi, mi = S.qi, S.mi
    for j in range(qi[q, QI_N_MSGS]):
        m = S.qmsgs[q, j]
        if mi[m, MI_DELIVERED] or mi[m, MI_CANCELLED]:
            continue
        mi[m, MI_CANCELLED] = 1
        h = mi[m, MI_HOP]
        if h < mi[m, MI_N_HOPS] and mi[m, MI_HOPS + 2 * h] != H_BACKHAUL:
            ap = mi[m, MI_HOPS + 2 * h + 1]
            if _q_has(S.cell_msgs, ap, m):  # on the air
                _cell_advance(S, ap)
                _cell_remove(S, ap, m)
                _cell_reschedule(S, ap)
    qi[q, QI_N_DEFERRED] = 0  # a query still in its planner time keeps its release event
    if qi[q, QI_DECOMPOSED]:
        for j in range(S.wl_k[q]):
            _cancel_item(S, S.sub_items[q, j])
        _cancel_item(S, qi[q, QI_AGG])
    else:
        _cancel_item(S, qi[q, QI_WHOLE])


@njit
def _cancel_item(S: Any, it: int) -> None:
    gf, qf, qi, itf, iti, phone_f, phone_i = S.gf, S.qf, S.qi, S.itf, S.iti, S.phone_f, S.phone_i
    if iti[it, II_DONE]:
        return
    iti[it, II_CANCELLED] = 1
    q = iti[it, II_QUERY]
    loc = iti[it, II_LOCATION]
    if loc == PHONE:
        user = qi[q, QI_USER]
        if phone_i[user, 0] == it:
            qf[q, QF_ENERGY] += _phone_energy_j(S, it, user, gf[GF_NOW] - itf[it, IF_START])
            phone_i[user, 0] = -1
            phone_i[user, 1] += 1
            _phone_try_start(S, user)
            return
        phone_f[user, 1] -= itf[it, IF_PRED_DURATION]
        _heap_remove(S, Q_PHONE_READY, user, it)
        return
    e = loc - 1
    _q_remove(S.edge_waiting, e, it)
    if _heap_remove(S, Q_EDGE_READY, e, it):
        return
    if not _q_remove(S.edge_prefilling, e, it) and not _heap_remove(S, Q_EDGE_DECODING, e, it):
        return
    S.edge_i[e, 0] -= 1
    _edge_retime(S, e)
    _edge_try_admit(S, e)


# ---------------------------------------------------------------------------------------------------- the loop
@njit
def _schedule_next_arrival(S: Any) -> None:
    gi, ci, wl_arrival, wl_user = S.gi, S.ci, S.wl_arrival, S.wl_user
    k = gi[GI_SCHEDULED]
    if k >= ci[CI_QUERIES] or k >= len(wl_arrival):
        return
    gi[GI_SCHEDULED] += 1
    _push(S, wl_arrival[k], EV_ARRIVAL, wl_user[k], 0)


@njit_inline
def _arrive(S: Any, user: int) -> int:
    gf, gi, cf, qf, qi = S.gf, S.gi, S.cf, S.qf, S.qi
    q = gi[GI_ARRIVED]
    gi[GI_ARRIVED] += 1
    now = gf[GF_NOW]
    qi[q, QI_USER] = user
    qf[q, QF_ARRIVAL] = now
    qf[q, QF_FINISH] = math.nan
    qf[q, QF_QUALITY] = math.nan
    qf[q, QF_ENERGY] = 0.0
    qf[q, QF_TX] = 0.0
    qf[q, QF_RX] = 0.0
    qf[q, QF_NET_START] = math.nan
    qf[q, QF_NET_END] = math.nan
    qi[q, QI_RELEASED] = 1
    if cf[CF_PLANNER_S] > 0:
        qi[q, QI_RELEASED] = 0
        _push(S, now + cf[CF_PLANNER_S], EV_RELEASE, q, 0)
    _schedule_next_arrival(S)
    return q


@njit
def run_until_decision(S: Any) -> int:
    """Process events until a query arrives (its id, to be placed), everything drained (-1) or the arrays need
    to grow (-2: call again after :meth:`CoreState.grow`)."""
    gf, gi, ci = S.gf, S.gi, S.ci
    total = ci[CI_QUERIES]
    cell_version, phone_i, edge_i = S.cell_version, S.phone_i, S.edge_i
    while gi[GI_N_EVENTS] > 0:
        if gi[GI_FINISHED] == total:
            break
        if gi[GI_N_MSGS] + S.msg_margin > S.mi.shape[0]:
            return -2
        time, kind, a, b = _pop_event(S)
        if time > gf[GF_NOW]:
            gf[GF_NOW] = time
        if kind == EV_ARRIVAL:
            return _arrive(S, a)
        if kind == EV_CELL:
            if b == cell_version[a]:
                _cell_event(S, a)
        elif kind == EV_DECODE_DONE:
            if b == edge_i[a, 1]:
                _decode_done(S, a)
        elif kind == EV_PREFILL_DONE:
            _prefill_done(S, a, b)
        elif kind == EV_PHONE_DONE:
            if b == phone_i[a, 1]:
                _phone_done(S, a)
        elif kind == EV_BACKHAUL_DONE:
            if not S.mi[a, MI_CANCELLED]:
                _next_hop(S, a)
        elif kind == EV_RELEASE:
            _release(S, a)
        elif kind == EV_FAULT:
            _fault(S, a)
    return -1


# ---------------------------------------------------------------------------------------------------- entry points
@njit
def build_struct(events: Any, gf: Any, gi: Any, cf: Any, ci: Any, qi: Any, qf: Any, mf: Any, mi: Any, up_rate: Any,
                 down_rate: Any, own_ap: Any, ap_up: Any, background: Any, cell_msgs: Any, cell_n_up: Any,
                 cell_down: Any, cell_up: Any, qmsgs: Any, cell_version: Any, itf: Any, iti: Any, memo: Any,
                 params: Any, phone_ready: Any, phone_f: Any, phone_i: Any, edge_waiting: Any, edge_ready: Any, edge_f: Any,
                 edge_i: Any, edge_decoding: Any, edge_prefilling: Any, successors: Any, query_items: Any,
                 completed: Any, deferred: Any, wl_f: Any, wl_sub: Any, wl_deps: Any, sub_items: Any, carriers: Any,
                 wl_k: Any, wl_arrival: Any, wl_user: Any, msg_margin: Any, queued_scratch: Any, wl_structure: Any,
                 snap_run: Any, snap_pend: Any, snap_n: Any, snap_ids: Any, no_extra_f: Any, no_extra_n: Any,
                 faults: Any, assoc_order: Any, assoc_rates: Any, rng_access: Any, proj_x: Any, proj_buf: Any,
                 proj_work: Any, tmp_f: Any, tmp_i: Any) -> Any:
    """The state (:mod:`offload_gym.core.state`) from :class:`~offload_gym.core.arrays.CoreState`'s arrays, once an
    episode: its members are the arrays and lists Python holds, so both see the same memory. One argument per
    member (``state.FIELDS``' order): numba types arrays passed alone in C, a tuple of them member by member in
    Python (1.2 ms a reset, against 60 us this way). The arrays are borrowed (:func:`offload_gym.core.state.borrowed`:
    no reference counts), so the Python side keeps them alive."""
    _b = borrowed
    return CoreStruct(_b(events), _b(gf), _b(gi), _b(cf), _b(ci), _b(qi), _b(qf), _b(mf), _b(mi), _b(up_rate),
                      _b(down_rate), _b(own_ap), _b(ap_up), _b(background), _b(cell_msgs), _b(cell_n_up),
                      _b(cell_down), _b(cell_up), _b(qmsgs), _b(cell_version), _b(itf), _b(iti), _b(memo), _b(params),
                      _b(phone_ready), _b(phone_f), _b(phone_i), _b(edge_waiting), _b(edge_ready), _b(edge_f),
                      _b(edge_i), _b(edge_decoding), _b(edge_prefilling), _b(successors), _b(query_items),
                      _b(completed), _b(deferred), _b(wl_f), _b(wl_sub), _b(wl_deps), _b(sub_items), _b(carriers),
                      _b(wl_k), _b(wl_arrival), _b(wl_user), msg_margin, _b(queued_scratch), _b(wl_structure),
                      _b(snap_run), _b(snap_pend), _b(snap_n), _b(snap_ids), _b(no_extra_f), _b(no_extra_n),
                      _b(faults), _b(assoc_order), _b(assoc_rates), rng_access, _b(proj_x), _b(proj_buf),
                      _b(proj_work), _b(tmp_f), _b(tmp_i))


@njit
def start_episode(S: Any) -> None:
    """Schedule the first arrival and the faults (the start of an episode)."""
    _schedule_next_arrival(S)
    faults = S.faults
    for r in range(faults.shape[0]):
        _push(S, faults[r, 0], EV_FAULT, r, 0)


# What Python calls with the state it holds (an owned CoreStruct): each borrows it for the kernels
# (offload_gym.core.state.borrow_state), which are compiled for the borrowed type only.
@njit
def start_entry(S: Any) -> None:
    """:func:`start_episode`, from Python."""
    start_episode(borrow_state(S))


@njit
def run_until_decision_entry(S: Any) -> int:
    """:func:`run_until_decision`, from Python."""
    return run_until_decision(borrow_state(S))


@njit
def place_entry(S: Any, kind: int, q: int, index: int, loc: int) -> int:
    """:func:`place_whole` (``kind`` K_WHOLE), :func:`place_subtask` or :func:`place_aggregation`, from Python
    (without estimates)."""
    B = borrow_state(S)
    if kind == K_WHOLE:
        return place_whole(B, q, loc, math.nan, math.nan)
    if kind == K_SUBTASK:
        return place_subtask(B, q, index, loc, math.nan, math.nan)
    return place_aggregation(B, q, loc, math.nan, math.nan)


@njit
def clear_containers(S: Any) -> None:
    """Empty every queue of the state (their arrays stay): a recycled state starts with none
    (:meth:`offload_gym.core.arrays.CoreState._recycle`)."""
    for which in range(6):  # QUEUE_KINDS
        Q = _queue(S, which)
        for r in range(Q.shape[0]):
            Q[r, 0] = 0


# ---------------------------------------------------------------------------------------------------- Python side
def new_queues(n_users: int, n_aps: int) -> tuple[np.ndarray, ...]:
    """The state's queues, empty (:data:`QUEUE_KINDS`' order): a row per cell, phone or edge."""
    rows = (n_aps, n_users, n_aps, n_aps, n_aps, n_aps)
    return tuple(np.zeros((n, 1 + QUEUE_ROOM), dtype=np.int64) for n in rows)
