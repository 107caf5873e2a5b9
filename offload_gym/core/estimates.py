"""The model-based estimates (docs/model.md, "Estimates") over the compiled engine's arrays (issue 11).

The formulation of the Python estimator the core replaced, in the same floating-point order, but without its
per-state caches and checkpointed projections: compiled, the plain projection of each edge's FIFO
(:func:`offload_gym.core.batch.project_packed`) is cheap enough. ``tests/test_core_engine.py`` checks every
estimate of replayed episodes against the Python estimator's recorded values, and the observations that carry
them are checked in ``tests/test_golden_trajectories.py``.

Estimates are written into arrays: per location ``(ready_s, finish_s, quality)``, NaN rows for the locations
the phone cannot use.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from offload_gym.core._jit import njit, njit_inline
from offload_gym.core.batch import pack_edge, project_packed, scratch_sizes
from offload_gym.core.engine import (
    CF_CONTEXT,
    CF_EDGE_ABILITY,
    CF_EDGE_DECODE,
    CF_EDGE_PREFILL,
    CF_FRAME,
    CF_KAPPA,
    CF_PLANNER_S,
    CI_MAX_BATCH,
    CI_N_APS,
    GF_BACKHAUL_DELAY,
    GF_BACKHAUL_RATE,
    GF_NOW,
    IF_DECODE_TARGET,
    IF_EST_FINISH,
    IF_EST_READY,
    IF_IN,
    IF_OUT,
    IF_PRED_DURATION,
    IF_PRED_IN,
    IF_PRED_OUT,
    IF_PREFILL_END,
    IF_START,
    II_LOCATION,
    MI_TARGETS,
    PHONE,
    QF_ARRIVAL,
    QI_USER,
    _access_delay_s,
    _contenders,
    _dcf,
    _success_prob,
    _token_bytes,
    pmax,
    tmp_floats,
    tmp_floats_filled,
    tmp_ints,
    tmp_ints_filled,
)
from offload_gym.core.wifi import P_MAC_HEADER_BYTES, P_MPDU_DELIMITER_BYTES, P_SYMBOL_S

__all__ = ["aggregation_estimates", "plan", "subtask_estimates", "subtask_order", "whole_estimates"]

_TAIL_BITS = 22.0


@njit
def phone_free_at(S: Any, user: int) -> float:
    gf, itf, phone_f, phone_i = S.gf, S.itf, S.phone_f, S.phone_i
    now = gf[GF_NOW]
    free = now + phone_f[user, 1]
    running = phone_i[user, 0]
    if running >= 0:
        free += pmax(itf[running, IF_START] + itf[running, IF_PRED_DURATION] - now, 0.0)
    return free


@njit
def usable_locations(S: Any, user: int) -> np.ndarray:
    ci, own_ap, ap_up = S.ci, S.own_ap, S.ap_up
    n_aps = ci[CI_N_APS]
    if own_ap[user] < 0:
        return tmp_ints_filled(S, 1, PHONE)
    out = tmp_ints(S, n_aps + 1)
    out[0] = PHONE
    n = 1
    for a in range(n_aps):
        if ap_up[a]:
            out[n] = a + 1
            n += 1
    return out[:n]


# ------------------------------------------------------------------------------------------- edges
@njit_inline
def _snapshot_room(S: Any, old: np.ndarray, need: int) -> np.ndarray:
    """``old`` (the state's pending snapshot rows) with room for ``need`` streams per edge: itself, or a larger
    copy that the state then holds."""
    if need <= old.shape[2]:
        return old
    grown = np.zeros((old.shape[0], 3, 2 * need))
    for e in range(old.shape[0]):  # the edges already snapshot in this pass keep theirs
        for r in range(3):
            for j in range(old.shape[2]):
                grown[e, r, j] = old[e, r, j]
    S.snap_pend = grown
    return grown


@njit_inline
def _projection_scratch(S: Any, n_x: int, n_pre: int, n_dec: int, n_pend: int) -> tuple[Any, Any, Any]:
    """The state's scratch for one projection (the packed streams, its floats and ints), grown to fit these
    streams: a projection then allocates nothing (it allocated three arrays, some 15-35 a decision)."""
    n_buf, n_work = scratch_sizes(n_pre, n_dec, n_pend)
    if S.proj_x.shape[0] < n_x:
        S.proj_x = np.empty(2 * n_x)
    if S.proj_buf.shape[0] < n_buf:
        S.proj_buf = np.empty(2 * n_buf)
    if S.proj_work.shape[0] < n_work:
        S.proj_work = np.empty(2 * n_work, dtype=np.int64)
    return S.proj_x, S.proj_buf, S.proj_work


@njit
def _edge_finish(S: Any, e: int, ready_s: float, prefill_s: float, decode_tokens: float, ex_f: np.ndarray,
                 ex_n: np.ndarray) -> float:
    """The finish of a new stream at edge ``e`` after its snapshot and the plan's extra streams there
    (``ex_f[e, 0..2, :ex_n[e]]``: ready, prefill s, predicted decode)."""
    cf, ci, gf = S.cf, S.ci, S.gf
    counts = S.snap_n
    n_pref, n_dec, n_pend = counts[e, 0], counts[e, 1], counts[e, 2]
    n_extra = ex_n[e]
    if n_pref + n_dec + n_pend == 0 and n_extra == 0:
        return ready_s + prefill_s + decode_tokens / cf[CF_EDGE_DECODE]  # idle: prefill, then decode alone
    n = n_pend + n_extra + 1
    x, buf, work = _projection_scratch(S, 2 * n_pref + n_dec + 3 * n, n_pref, n_dec, n)
    pack_edge(x, S.snap_run, S.snap_pend, ex_f, e, n_pref, n_dec, n_pend, n_extra, ready_s, prefill_s, decode_tokens)
    return project_packed(gf[GF_NOW], cf[CF_EDGE_DECODE], cf[CF_KAPPA], ci[CI_MAX_BATCH], x, n_pref, n_dec, n,
                          n_pend + n_extra, buf, work)


@njit_inline
def snapshots(S: Any) -> None:
    """Every edge's streams now into the state's snapshot rows, what the estimates of a decision project from
    (``S.snap_run[e]``, ``S.snap_pend[e]``, counts in ``S.snap_n[e]``): prefilling ``(end, predicted decode)``,
    decoding streams' predicted remaining tokens, and the FIFO of queued and in-transit streams
    ``(ready, prefill s, predicted decode)`` in placement order. Preallocated: no arrays are made per decision.
    The state's members are read once for all edges (each read costs two atomic reference counts)."""
    gf, cf, itf, edge_f = S.gf, S.cf, S.itf, S.edge_f
    run, counts, pend, ids, is_ready = S.snap_run, S.snap_n, S.snap_pend, S.snap_ids, S.queued_scratch
    edge_prefilling, edge_decoding, edge_ready, edge_waiting = (S.edge_prefilling, S.edge_decoding, S.edge_ready,
                                                                S.edge_waiting)
    now = gf[GF_NOW]
    prefill_tps = cf[CF_EDGE_PREFILL]
    for e in range(S.ci[CI_N_APS]):
        # (the queues' rows: the count in column 0, then the values; offload_gym.core.engine.QUEUE_KINDS)
        n_pref = edge_prefilling[e, 0]
        for j in range(n_pref):
            it = edge_prefilling[e, 1 + j]
            run[e, 0, j] = itf[it, IF_PREFILL_END]
            run[e, 1, j] = itf[it, IF_PRED_OUT]
        n_dec = edge_decoding[e, 0]
        if n_dec:
            progress = edge_f[e, 0] + edge_f[e, 2] * (now - edge_f[e, 1])
            for j in range(n_dec):  # in heap order, as the Python engine's heap list was walked
                it = edge_decoding[e, 1 + j]
                decoded = itf[it, IF_OUT] - (itf[it, IF_DECODE_TARGET] - progress)
                rem = itf[it, IF_PRED_OUT] - decoded
                run[e, 2, j] = rem if rem > 1.0 else 1.0
        n_ready, n_wait = edge_ready[e, 0], edge_waiting[e, 0]
        n_pend = n_ready + n_wait
        pend = _snapshot_room(S, pend, n_pend)
        if n_pend > ids.shape[0]:
            ids = np.zeros(2 * n_pend, dtype=np.int64)
            S.snap_ids = ids
        for j in range(n_ready):
            ids[j] = edge_ready[e, 1 + j]
        for j in range(n_wait):
            ids[n_ready + j] = edge_waiting[e, 1 + j]
        ids[:n_pend].sort()  # placement order (ids are placement seqs)
        for j in range(n_ready):
            is_ready[edge_ready[e, 1 + j]] = True
        for j in range(n_pend):
            it = ids[j]
            if is_ready[it]:  # queued at the edge: its true prompt is there
                pend[e, 0, j] = now
                pend[e, 1, j] = itf[it, IF_IN] / prefill_tps
            else:  # still travelling: when the estimate said it would arrive
                pend[e, 0, j] = pmax(now, itf[it, IF_EST_READY])
                pend[e, 1, j] = itf[it, IF_PRED_IN] / prefill_tps
            pend[e, 2, j] = itf[it, IF_PRED_OUT]
        for j in range(n_ready):
            is_ready[edge_ready[e, 1 + j]] = False
        counts[e, 0], counts[e, 1], counts[e, 2] = n_pref, n_dec, n_pend


# ------------------------------------------------------------------------------------------- links
@njit
def _link(S: Any, ap: int, rate_bps: float, sharing: int) -> tuple[int, float, float, float]:
    """``(contenders, PHY rate, share, frame access delay)`` of a new transfer in ``ap``'s cell."""
    cf = S.cf
    n = _contenders(S, ap) + (0 if sharing else 1)
    frame = cf[CF_FRAME]
    full = _dcf(S, n, rate_bps, frame)[0]
    return n, rate_bps, full / n / (sharing + 1), _access_delay_s(S, n, rate_bps, frame)


@njit
def uplink(S: Any, user: int) -> tuple[int, float, float, float]:
    ap = S.own_ap[user]
    return _link(S, ap, S.up_rate[user], S.cell_up[ap, user])


@njit
def downlink(S: Any, user: int) -> tuple[int, float, float, float]:
    ap = S.own_ap[user]
    return _link(S, ap, S.down_rate[user], S.cell_down[ap])


@njit
def _symbols(params: np.ndarray, rate: float, payload: float) -> float:
    header = params[P_MAC_HEADER_BYTES] + params[P_MPDU_DELIMITER_BYTES]
    return np.ceil((8.0 * (header + payload) + _TAIL_BITS) / (rate * params[P_SYMBOL_S]))


@njit
def _access_s(S: Any, n: int, rate: float, nbytes: float) -> float:
    """The access delay asked with the whole byte count that fills the same symbols."""
    cf, params = S.cf, S.params
    frame = cf[CF_FRAME]
    payload = nbytes if nbytes < frame else frame
    symbols = _symbols(params, rate, payload)
    header = params[P_MAC_HEADER_BYTES] + params[P_MPDU_DELIMITER_BYTES]
    largest = math.floor((symbols * rate * params[P_SYMBOL_S] - _TAIL_BITS) / 8 - header)
    whole = float(largest if largest < frame else frame)
    if whole < 1 or _symbols(params, rate, whole) != symbols:
        whole = payload
    return _access_delay_s(S, n, rate, whole)


@njit
def link_s(S: Any, link: tuple[int, float, float, float], nbytes: float) -> float:
    cf = S.cf
    n, rate, share, frame_access = link
    access = frame_access if nbytes >= cf[CF_FRAME] else _access_s(S, n, rate, nbytes)
    return access + 8.0 * nbytes / share


@njit
def backhaul_s(S: Any, nbytes: float) -> float:
    gf = S.gf
    return gf[GF_BACKHAUL_DELAY] + 8.0 * nbytes / gf[GF_BACKHAUL_RATE]


# ------------------------------------------------------------------------------------------- items
@njit
def subtask_inputs(S: Any, q: int, i: int) -> float:
    """Predicted input tokens of subtask ``i``: the context plus its predecessors' predicted outputs."""
    cf, wl_sub, wl_deps = S.cf, S.wl_sub, S.wl_deps
    total = 0.0
    for j in range(wl_deps[q, i, 0]):
        total += wl_sub[q, wl_deps[q, i, 1 + j], 2]
    return cf[CF_CONTEXT] + total


@njit
def subtask_order(S: Any, q: int) -> np.ndarray:
    """The list scheduler's subtask order: by depth, larger predicted output first, then index."""
    wl_sub, wl_deps = S.wl_sub, S.wl_deps
    k = S.wl_k[q]
    depth = tmp_ints_filled(S, k, 0)
    for i in range(k):
        d = -1
        for j in range(wl_deps[q, i, 0]):
            p = wl_deps[q, i, 1 + j]
            if depth[p] > d:
                d = depth[p]
        depth[i] = 1 + d
    order = tmp_ints(S, k)
    for j in range(k):
        order[j] = j
    for a in range(1, k):  # insertion sort on (depth, -pred out, index): k <= 8
        x = order[a]
        b = a - 1
        while b >= 0:
            y = order[b]
            if (depth[y] > depth[x] or (depth[y] == depth[x] and (-wl_sub[q, y, 2] > -wl_sub[q, x, 2]
                                                                    or (-wl_sub[q, y, 2] == -wl_sub[q, x, 2] and y > x)))):
                order[b + 1] = y
                b -= 1
            else:
                break
        order[b + 1] = x
    return order


@njit
def _phone_finish(S: Any, user: int, ready_s: float, input_tokens: float, pred_out: float, extra_s: float) -> float:
    phone_f = S.phone_f
    start = pmax(ready_s, phone_free_at(S, user) + extra_s)
    return start + input_tokens / phone_f[user, 2] + pred_out / phone_f[user, 3]


@njit
def _qualities(S: Any, user: int, difficulty: float) -> tuple[float, float]:
    cf, phone_f = S.cf, S.phone_f
    return _success_prob(phone_f[user, 4], difficulty), _success_prob(cf[CF_EDGE_ABILITY], difficulty)


@njit
def _clear(out: np.ndarray) -> None:
    """Every estimate NaN (loops: a slice assignment costs far more to compile)."""
    for loc in range(out.shape[0]):
        for c in range(out.shape[1]):
            out[loc, c] = np.nan


@njit_inline
def whole_estimates(S: Any, q: int, out: np.ndarray) -> None:
    """Per location, running query ``q`` whole there (answer back on the phone)."""
    cf, qf, qi, wl_f = S.cf, S.qf, S.qi, S.wl_f
    _clear(out)
    user = qi[q, QI_USER]
    release = qf[q, QF_ARRIVAL] + cf[CF_PLANNER_S]
    q_phone, q_edge = _qualities(S, user, wl_f[q, 5])
    pred_in, pred_out = wl_f[q, 0], wl_f[q, 4]
    out[PHONE, 0] = release
    out[PHONE, 1] = _phone_finish(S, user, release, pred_in, pred_out, 0.0)
    out[PHONE, 2] = q_phone
    locations = usable_locations(S, user)
    if len(locations) > 1:
        up_bytes = _token_bytes(S, wl_f[q, 0]) + wl_f[q, 3]
        down_bytes = _token_bytes(S, pred_out)
        up = link_s(S, uplink(S, user), up_bytes)
        down = link_s(S, downlink(S, user), down_bytes)
        up_bh = up + backhaul_s(S, up_bytes)
        bh_down = backhaul_s(S, down_bytes) + down
        own = S.own_ap[user] + 1
        prefill_s = pred_in / cf[CF_EDGE_PREFILL]
        ex_f, ex_n = _no_extra(S)
        for loc in locations[1:]:
            ready = release + (up if loc == own else up_bh)
            finish = _edge_finish(S, loc - 1, ready, prefill_s, pred_out, ex_f, ex_n)
            finish += down if loc == own else bh_down
            out[loc, 0] = ready
            out[loc, 1] = finish
            out[loc, 2] = q_edge


@njit
def _no_extra(S: Any) -> tuple[np.ndarray, np.ndarray]:
    """No extra streams (the state's zero counts; the rows are never read)."""
    return S.no_extra_f, S.no_extra_n


@njit
def _latest_arrivals(S: Any, q: int, preds: np.ndarray, locations: np.ndarray, own: int, ov_loc: np.ndarray,
                     ov_finish: np.ndarray, up: Any, down: Any) -> np.ndarray:
    """Per location, the latest predicted arrival of the outputs of ``preds``."""
    iti, itf, wl_sub, q_sub = S.iti, S.itf, S.wl_sub, S.sub_items
    n_aps = S.ci[CI_N_APS]
    latest = tmp_floats_filled(S, n_aps + 1, -np.inf)
    n_locs = len(locations)
    for d in preds:
        if ov_loc[d] >= 0:
            d_loc, d_finish = ov_loc[d], ov_finish[d]
        else:
            it = q_sub[q, d]
            d_loc, d_finish = iti[it, II_LOCATION], itf[it, IF_EST_FINISH]
        nbytes = _token_bytes(S, wl_sub[q, d, 2])
        if d_loc == PHONE:
            arrival = d_finish + 0.0
            if arrival > latest[0]:
                latest[0] = arrival
            if n_locs > 1:
                up_s = link_s(S, up, nbytes)
                up_bh = up_s + backhaul_s(S, nbytes)
                for loc in locations[1:]:
                    arrival = d_finish + (up_s if loc == own else up_bh)
                    if arrival > latest[loc]:
                        latest[loc] = arrival
        else:
            bh = backhaul_s(S, nbytes)
            down_s = link_s(S, down, nbytes)
            arrival = d_finish + (down_s if d_loc == own else bh + down_s)
            if arrival > latest[0]:
                latest[0] = arrival
            for loc in locations[1:]:
                arrival = d_finish + (0.0 if loc == d_loc else bh)
                if arrival > latest[loc]:
                    latest[loc] = arrival
    return latest


@njit
def _preds(S: Any, q: int, i: int) -> np.ndarray:
    wl_deps = S.wl_deps
    n = wl_deps[q, i, 0]
    out = tmp_ints(S, n)
    for j in range(n):
        out[j] = wl_deps[q, i, 1 + j]
    return out


@njit
def _subtask_ready(S: Any, q: int, i: int, ov_loc: np.ndarray, ov_finish: np.ndarray, att_eta: np.ndarray,
                   phone_extra_s: float, ap_ready: np.ndarray, phone_est: np.ndarray, locations: np.ndarray, up: Any,
                   down: Any) -> tuple[int, float, float]:
    """Fills ``phone_est`` (ready, finish, quality) and ``ap_ready[j] = (loc,
    ready)`` for the usable APs; returns how many APs, the prefill time on an edge and the edge quality."""
    cf, qf, qi, wl_f, wl_sub = S.cf, S.qf, S.qi, S.wl_f, S.wl_sub
    user = qi[q, QI_USER]
    release = qf[q, QF_ARRIVAL] + cf[CF_PLANNER_S]
    q_phone, q_edge = _qualities(S, user, wl_sub[q, i, 3])
    preds = _preds(S, q, i)
    pred_in = subtask_inputs(S, q, i)
    own = S.own_ap[user] + 1
    has_up = len(locations) > 1
    ready = release
    latest = tmp_floats(S, 0)
    if len(preds):
        latest = _latest_arrivals(S, q, preds, locations, own, ov_loc, ov_finish, up, down)
        if latest[0] > ready:
            ready = latest[0]
    phone_est[0] = ready
    phone_est[1] = _phone_finish(S, user, ready, pred_in, wl_sub[q, i, 2], phone_extra_s)
    phone_est[2] = q_phone
    prefill_s = pred_in / cf[CF_EDGE_PREFILL]
    if not has_up:
        return 0, prefill_s, q_edge
    context_bytes = _token_bytes(S, cf[CF_CONTEXT])
    attachment = wl_f[q, 3] if len(preds) == 0 else 0.0
    send_all = link_s(S, up, context_bytes + attachment)
    send_all_bh = send_all + backhaul_s(S, context_bytes + attachment)
    send_ctx = 0.0
    send_ctx_bh = 0.0
    if attachment:
        send_ctx = link_s(S, up, context_bytes)
        send_ctx_bh = send_ctx + backhaul_s(S, context_bytes)
    j = 0
    for loc in locations[1:]:
        carried = np.nan
        has_carried = False
        if attachment:
            if att_eta[loc] == att_eta[loc]:  # the plan's own carrier (not NaN)
                carried, has_carried = att_eta[loc], True
            else:
                m = S.carriers[q, loc]
                if m >= 0:
                    carried, has_carried = S.itf[S.mi[m, MI_TARGETS], IF_EST_READY], True
        if not has_carried:
            r = release + (send_all if loc == own else send_all_bh)
        else:
            r = release + (send_ctx if loc == own else send_ctx_bh)
            if carried > r:
                r = carried
        if len(preds) and latest[loc] > r:
            r = latest[loc]
        ap_ready[j, 0] = loc
        ap_ready[j, 1] = r
        j += 1
    return j, prefill_s, q_edge


@njit
def _links(S: Any, user: int, locations: np.ndarray) -> tuple[Any, Any]:
    """The deciding phone's uplink and downlink in this state (placeholders when it reaches no AP)."""
    if len(locations) > 1:
        return uplink(S, user), downlink(S, user)
    none = (0, 0.0, 1.0, 0.0)
    return none, none


@njit_inline
def subtask_estimates(S: Any, q: int, i: int, out: np.ndarray) -> None:
    """Per location, when subtask ``i`` of query ``q`` would be done there."""
    n_aps = S.ci[CI_N_APS]
    k = S.wl_k[q]
    _clear(out)
    ov_loc = tmp_ints_filled(S, k, -1)
    ov_finish = tmp_floats_filled(S, k, 0.0)
    att_eta = tmp_floats_filled(S, n_aps + 1, np.nan)
    ap_ready = tmp_floats_filled(S, 2 * n_aps, 0.0).reshape((n_aps, 2))
    phone_est = tmp_floats_filled(S, 3, 0.0)
    locations = usable_locations(S, S.qi[q, QI_USER])
    up, down = _links(S, S.qi[q, QI_USER], locations)
    n, prefill_s, q_edge = _subtask_ready(S, q, i, ov_loc, ov_finish, att_eta, 0.0, ap_ready, phone_est, locations, up,
                                          down)
    out[PHONE, 0], out[PHONE, 1], out[PHONE, 2] = phone_est[0], phone_est[1], phone_est[2]
    ex_f, ex_n = _no_extra(S)
    pred_out = S.wl_sub[q, i, 2]
    for j in range(n):
        loc = int(ap_ready[j, 0])
        finish = _edge_finish(S, loc - 1, ap_ready[j, 1], prefill_s, pred_out, ex_f, ex_n) + 0.0
        out[loc, 0] = ap_ready[j, 1]
        out[loc, 1] = finish
        out[loc, 2] = q_edge


@njit
def _aggregation_ready(S: Any, q: int, ov_loc: np.ndarray, ov_finish: np.ndarray, phone_extra_s: float,
                       ap_ready: np.ndarray, phone_est: np.ndarray, locations: np.ndarray, up: Any,
                       down: Any) -> tuple[int, float, float, float, float, int]:
    """Where the aggregation can start: ``(APs, prefill s, edge quality, down s, backhaul + down s, own)``."""
    cf, qf, qi, wl_f, wl_sub = S.cf, S.qf, S.qi, S.wl_f, S.wl_sub
    user = qi[q, QI_USER]
    k = S.wl_k[q]
    release = qf[q, QF_ARRIVAL] + cf[CF_PLANNER_S]
    q_phone, q_edge = _qualities(S, user, wl_f[q, 7])
    pred_sum = 0.0
    for j in range(k):
        pred_sum += wl_sub[q, j, 2]
    pred_in, pred_out = pred_sum, wl_f[q, 6]
    own = S.own_ap[user] + 1
    has_up = len(locations) > 1
    preds = tmp_ints(S, k)
    for j in range(k):
        preds[j] = j
    latest = _latest_arrivals(S, q, preds, locations, own, ov_loc, ov_finish, up, down)
    ready = latest[0] if latest[0] > release else release
    phone_est[0] = ready
    phone_est[1] = _phone_finish(S, user, ready, pred_in, pred_out, phone_extra_s)
    phone_est[2] = q_phone
    prefill_s = pred_in / cf[CF_EDGE_PREFILL]
    if not has_up:
        return 0, prefill_s, q_edge, 0.0, 0.0, own
    down_bytes = _token_bytes(S, pred_out)
    down_s = link_s(S, down, down_bytes)
    bh_down = backhaul_s(S, down_bytes) + down_s
    j = 0
    for loc in locations[1:]:
        ap_ready[j, 0] = loc
        ap_ready[j, 1] = latest[loc] if latest[loc] > release else release
        j += 1
    return j, prefill_s, q_edge, down_s, bh_down, own


@njit_inline
def aggregation_estimates(S: Any, q: int, out: np.ndarray) -> None:
    """Per location, the answer back on the phone."""
    n_aps = S.ci[CI_N_APS]
    k = S.wl_k[q]
    _clear(out)
    ov_loc = tmp_ints_filled(S, k, -1)
    ov_finish = tmp_floats_filled(S, k, 0.0)
    ap_ready = tmp_floats_filled(S, 2 * n_aps, 0.0).reshape((n_aps, 2))
    phone_est = tmp_floats_filled(S, 3, 0.0)
    locations = usable_locations(S, S.qi[q, QI_USER])
    up, down = _links(S, S.qi[q, QI_USER], locations)
    n, prefill_s, q_edge, down_s, bh_down, own = _aggregation_ready(S, q, ov_loc, ov_finish, 0.0, ap_ready, phone_est,
                                                                    locations, up, down)
    out[PHONE, 0], out[PHONE, 1], out[PHONE, 2] = phone_est[0], phone_est[1], phone_est[2]
    ex_f, ex_n = _no_extra(S)
    pred_out = S.wl_f[q, 6]
    for j in range(n):
        loc = int(ap_ready[j, 0])
        finish = _edge_finish(S, loc - 1, ap_ready[j, 1], prefill_s, pred_out, ex_f, ex_n)
        finish += down_s if loc == own else bh_down
        out[loc, 0] = ap_ready[j, 1]
        out[loc, 1] = finish
        out[loc, 2] = q_edge


@njit
def _bound_margin(t: float) -> float:
    return 1e-9 * (1.0 + abs(t))


@njit
def _sorted_bounds(ap_ready: np.ndarray, n: int, alone: float, rows: np.ndarray) -> np.ndarray:
    """Rows ``(ready + alone, loc, ready)`` sorted as Python sorts the tuples (by bound, then location), into
    ``rows`` (``n`` rows of 3)."""
    for j in range(n):
        rows[j, 0] = ap_ready[j, 1] + alone
        rows[j, 1] = ap_ready[j, 0]
        rows[j, 2] = ap_ready[j, 1]
    for a in range(1, n):
        x0, x1, x2 = rows[a, 0], rows[a, 1], rows[a, 2]
        b = a - 1
        while b >= 0 and (rows[b, 0] > x0 or (rows[b, 0] == x0 and rows[b, 1] > x1)):
            rows[b + 1, 0], rows[b + 1, 1], rows[b + 1, 2] = rows[b, 0], rows[b, 1], rows[b, 2]
            b -= 1
        rows[b + 1, 0], rows[b + 1, 1], rows[b + 1, 2] = x0, x1, x2
    return rows


@njit_inline
def plan(S: Any, q: int, latency_weight: float, locations_out: np.ndarray) -> tuple[float, float]:
    """The list scheduler's decomposed plan of query ``q``; returns ``(latency_s, quality)``
    and writes each subtask's location (by index), then the aggregation's, into ``locations_out``."""
    gf, cf, qi, wl_f, wl_sub, phone_f = S.gf, S.cf, S.qi, S.wl_f, S.wl_sub, S.phone_f
    n_aps = S.ci[CI_N_APS]
    now = gf[GF_NOW]
    user = qi[q, QI_USER]
    k = S.wl_k[q]
    weight = latency_weight
    edge_prefill_tps = cf[CF_EDGE_PREFILL]
    r1 = cf[CF_EDGE_DECODE]
    has_attachment = wl_f[q, 3] > 0
    prune = weight >= 0.0
    ov_loc = tmp_ints_filled(S, k, -1)
    ov_finish = tmp_floats_filled(S, k, 0.0)
    att_eta = tmp_floats_filled(S, n_aps + 1, np.nan)
    phone_extra_s = 0.0
    ex_f = tmp_floats_filled(S, n_aps * 3 * k, 0.0).reshape((n_aps, 3, k))
    ex_n = tmp_ints_filled(S, n_aps, 0)
    ap_ready = tmp_floats_filled(S, 2 * n_aps, 0.0).reshape((n_aps, 2))
    phone_est = tmp_floats_filled(S, 3, 0.0)
    qualities = tmp_floats_filled(S, k, 0.0)
    bounds = tmp_floats(S, 3 * n_aps).reshape((n_aps, 3))  # _sorted_bounds' rows, for every subtask
    order = subtask_order(S, q)
    locations = usable_locations(S, user)
    up, down = _links(S, user, locations)
    for pos in range(k):
        i = order[pos]
        n, prefill_s, q_edge = _subtask_ready(S, q, i, ov_loc, ov_finish, att_eta, phone_extra_s, ap_ready, phone_est,
                                              locations, up, down)
        pred_out = wl_sub[q, i, 2]
        loc = PHONE
        est_ready, est_finish, est_quality = phone_est[0], phone_est[1], phone_est[2]
        best = phone_est[2] / k - weight * (phone_est[1] - now)
        alone = prefill_s + pred_out / r1
        rows = _sorted_bounds(ap_ready, n, alone, bounds)
        for j in range(n):
            bound, L, ready = rows[j, 0], int(rows[j, 1]), rows[j, 2]
            if prune and q_edge / k - weight * (bound - _bound_margin(bound) - now) < best:
                continue
            finish = _edge_finish(S, L - 1, ready, prefill_s, pred_out, ex_f, ex_n)
            score = q_edge / k - weight * (finish - now)
            if score > best or (score == best and L < loc):
                loc, best = L, score
                est_ready, est_finish, est_quality = ready, finish, q_edge
        locations_out[i] = loc
        qualities[pos] = est_quality
        ov_loc[i] = loc
        ov_finish[i] = est_finish
        pred_in = subtask_inputs(S, q, i)
        if loc == PHONE:
            phone_extra_s += pred_in / phone_f[user, 2] + pred_out / phone_f[user, 3]
        else:
            e = loc - 1
            ex_f[e, 0, ex_n[e]] = est_ready
            ex_f[e, 1, ex_n[e]] = pred_in / edge_prefill_tps
            ex_f[e, 2, ex_n[e]] = pred_out
            ex_n[e] += 1
            if S.wl_deps[q, i, 0] == 0 and has_attachment and not att_eta[loc] == att_eta[loc]:
                att_eta[loc] = est_ready
    n, prefill_s, q_edge, down_s, bh_down, own = _aggregation_ready(S, q, ov_loc, ov_finish, phone_extra_s, ap_ready,
                                                                    phone_est, locations, up, down)
    agg_out = wl_f[q, 6]
    loc = PHONE
    finish_best, quality_best = phone_est[1], phone_est[2]
    alone = prefill_s + agg_out / r1
    rows = _sorted_bounds(ap_ready, n, alone, bounds)
    for j in range(n):
        bound, L, ready = rows[j, 0], int(rows[j, 1]), rows[j, 2]
        back = down_s if L == own else bh_down
        if bound - _bound_margin(bound) + back > finish_best:
            continue
        finish = _edge_finish(S, L - 1, ready, prefill_s, agg_out, ex_f, ex_n)
        finish += back
        if finish < finish_best or (finish == finish_best and L < loc):
            loc, finish_best, quality_best = L, finish, q_edge
    locations_out[k] = loc
    total = 0.0
    for pos in range(k):
        total += qualities[pos]
    quality = quality_best * (total / k)
    return finish_best - S.qf[q, QF_ARRIVAL], quality
