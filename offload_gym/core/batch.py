"""The continuous-batching projection of the estimates as numba kernels on arrays.

:func:`project_batch_finish_arrays` gives the same float (``==``) as the Python estimator's projection that it
replaced, on the same streams, and takes the same path (roomy when every stream fits in the batch, else
general). Bit-for-bit equality needed more than the same formulas in the same order: the order in which
equal-time events are handled changes the floats, so

* every heap holds the Python tuple's fields in parallel 1-D arrays (ints as exact floats), compares them
  as Python compares tuples (the first unequal field decides: :func:`_lt2`, :func:`_lt3`) and is pushed and
  popped with :mod:`heapq`'s own sift algorithm, so that even items that compare equal pop in the same order;
* the roomy path's events are sorted with a stable merge sort under the tuple comparison (Python's list
  sort is stable too, so both give the one stable order).

:func:`edge_finish_arrays` is the estimator's "edge snapshot + new streams appended" form
as the plain projection of the concatenated FIFO: compiled code can afford it,
so it needs no checkpoints.

Inside, the streams travel packed in one array (:func:`_pack`, :func:`pack_edge`: prefill ends, their decode
tokens, decoding remainders, then the FIFO's ready times, prefill seconds and decode tokens) and the
projections' events, sort order and heaps are regions of one buffer read by offset. A compiled call costs two
atomic reference counts per array argument and a slice one more; with six arrays, their slices and a sort that
took four arrays a comparison, those counts were most of a projection's time.
"""

from __future__ import annotations

import math

import numpy as np

from offload_gym.core._jit import njit, njit_inline

__all__ = ["EPS_TOKENS", "decode_rate_table", "edge_finish_arrays", "pack_edge", "project_batch_finish_arrays",
           "project_packed", "scratch_sizes"]

#: a stream whose end is within this many tokens of the batch's progress has ended (``estimates._EPS_TOKENS``)
EPS_TOKENS = 1e-9

#: runs of this many items are insertion-sorted before the merges
_SORT_RUN = 16


# ------------------------------------------------------------------------------------------- rates
@njit
def decode_rate_table(r1: float, kappa: float, max_batch: int) -> np.ndarray:
    """``r(b)`` for ``b = 0..max_batch`` as :func:`offload_gym.sim.physics.decode_rate_table` (entry 0 is ``r1``)."""
    out = np.empty(max_batch + 1)
    out[0] = r1
    for b in range(1, max_batch + 1):
        out[b] = r1 / (1.0 + kappa * (b - 1))
    return out


@njit
def _decode_rate(r1: float, kappa: float, b: int) -> float:
    """Entry ``b`` of :func:`decode_rate_table` (the same float), computed where a projection needs it: a table
    per projection was an allocation per estimate."""
    if b == 0:
        return r1
    return r1 / (1.0 + kappa * (b - 1))


# ------------------------------------------------------------------- heapq on parallel arrays
# Each arity has heapq's _siftdown (the new item moves up from ``pos`` towards ``start``), _siftup (the smaller
# child moves up to a leaf, then the new item sifts down), heappush, heappop (the caller reads item 0 first)
# and heapify, on the first ``n`` entries; the new item is passed by value (heapq's ``newitem``).
@njit
def _sift_down1(h: np.ndarray, o: int, start: int, pos: int, x: float) -> None:
    # the heap is h[o], h[o + 1], ...: a heap inside a larger buffer, no slice of it (a slice costs reference counts)
    while pos > start:
        parent = (pos - 1) >> 1
        if x < h[o + parent]:
            h[o + pos] = h[o + parent]
            pos = parent
            continue
        break
    h[o + pos] = x


@njit
def _sift_up1(h: np.ndarray, o: int, pos: int, n: int, x: float) -> None:
    start = pos
    child = 2 * pos + 1
    while child < n:
        right = child + 1
        if right < n and not h[o + child] < h[o + right]:
            child = right
        h[o + pos] = h[o + child]
        pos = child
        child = 2 * pos + 1
    _sift_down1(h, o, start, pos, x)


@njit
def _push1_at(h: np.ndarray, o: int, n: int, x: float) -> int:
    _sift_down1(h, o, 0, n, x)
    return n + 1


@njit
def _pop1_at(h: np.ndarray, o: int, n: int) -> int:
    n -= 1
    if n > 0:
        _sift_up1(h, o, 0, n, h[o + n])
    return n


@njit
def _heapify1_at(h: np.ndarray, o: int, n: int) -> None:
    for i in range(n // 2 - 1, -1, -1):
        _sift_up1(h, o, i, n, h[o + i])


@njit
def _push1(h: np.ndarray, n: int, x: float) -> int:
    return _push1_at(h, 0, n, x)


@njit
def _pop1(h: np.ndarray, n: int) -> int:
    return _pop1_at(h, 0, n)


@njit
def _heapify1(h: np.ndarray, n: int) -> None:
    _heapify1_at(h, 0, n)


@njit
def _lt2(a0: float, a1: float, b0: float, b1: float) -> bool:
    """``(a0, a1) < (b0, b1)`` as Python compares tuples."""
    if a0 != b0:
        return a0 < b0
    return a1 < b1


@njit
def _sift_down2(k: np.ndarray, v: np.ndarray, start: int, pos: int, x0: float, x1: float) -> None:
    while pos > start:
        parent = (pos - 1) >> 1
        if _lt2(x0, x1, k[parent], v[parent]):
            k[pos] = k[parent]
            v[pos] = v[parent]
            pos = parent
            continue
        break
    k[pos] = x0
    v[pos] = x1


@njit
def _sift_up2(k: np.ndarray, v: np.ndarray, pos: int, n: int, x0: float, x1: float) -> None:
    start = pos
    child = 2 * pos + 1
    while child < n:
        right = child + 1
        if right < n and not _lt2(k[child], v[child], k[right], v[right]):
            child = right
        k[pos] = k[child]
        v[pos] = v[child]
        pos = child
        child = 2 * pos + 1
    _sift_down2(k, v, start, pos, x0, x1)


@njit
def _push2(k: np.ndarray, v: np.ndarray, n: int, x0: float, x1: float) -> int:
    _sift_down2(k, v, 0, n, x0, x1)
    return n + 1


@njit
def _pop2(k: np.ndarray, v: np.ndarray, n: int) -> int:
    n -= 1
    if n > 0:
        _sift_up2(k, v, 0, n, k[n], v[n])
    return n


@njit
def _heapify2(k: np.ndarray, v: np.ndarray, n: int) -> None:
    for i in range(n // 2 - 1, -1, -1):
        _sift_up2(k, v, i, n, k[i], v[i])


@njit
def _lt3(a0: float, a1: float, a2: float, b0: float, b1: float, b2: float) -> bool:
    """``(a0, a1, a2) < (b0, b1, b2)`` as Python compares tuples."""
    if a0 != b0:
        return a0 < b0
    if a1 != b1:
        return a1 < b1
    return a2 < b2


@njit
def _sift_down3(k: np.ndarray, u: np.ndarray, v: np.ndarray, start: int, pos: int, x0: float, x1: float,
                x2: float) -> None:
    while pos > start:
        parent = (pos - 1) >> 1
        if _lt3(x0, x1, x2, k[parent], u[parent], v[parent]):
            k[pos] = k[parent]
            u[pos] = u[parent]
            v[pos] = v[parent]
            pos = parent
            continue
        break
    k[pos] = x0
    u[pos] = x1
    v[pos] = x2


@njit
def _sift_up3(k: np.ndarray, u: np.ndarray, v: np.ndarray, pos: int, n: int, x0: float, x1: float, x2: float) -> None:
    start = pos
    child = 2 * pos + 1
    while child < n:
        right = child + 1
        if right < n and not _lt3(k[child], u[child], v[child], k[right], u[right], v[right]):
            child = right
        k[pos] = k[child]
        u[pos] = u[child]
        v[pos] = v[child]
        pos = child
        child = 2 * pos + 1
    _sift_down3(k, u, v, start, pos, x0, x1, x2)


@njit
def _push3(k: np.ndarray, u: np.ndarray, v: np.ndarray, n: int, x0: float, x1: float, x2: float) -> int:
    _sift_down3(k, u, v, 0, n, x0, x1, x2)
    return n + 1


@njit
def _pop3(k: np.ndarray, u: np.ndarray, v: np.ndarray, n: int) -> int:
    n -= 1
    if n > 0:
        _sift_up3(k, u, v, 0, n, k[n], u[n], v[n])
    return n


@njit
def _heapify3(k: np.ndarray, u: np.ndarray, v: np.ndarray, n: int) -> None:
    for i in range(n // 2 - 1, -1, -1):
        _sift_up3(k, u, v, i, n, k[i], u[i], v[i])


# ----------------------------------------------------------------------------------------- sort
@njit
def _lt4(t_i: float, kind_i: float, dec_i: float, tgt_i: float, t_j: float, kind_j: float, dec_j: float,
         tgt_j: float) -> bool:
    """``(t_i, kind_i, dec_i, tgt_i) < (t_j, kind_j, dec_j, tgt_j)`` as Python compares tuples.

    Floats, not the arrays and two indices: a compiled call that takes arrays costs two atomic reference counts
    per array (about 20 ns a call with four), and the sort makes one per comparison."""
    if t_i != t_j:
        return t_i < t_j
    if kind_i != kind_j:
        return kind_i < kind_j
    if dec_i != dec_j:
        return dec_i < dec_j
    return tgt_i < tgt_j


@njit
def _stable_order_at(keys: np.ndarray, o_t: int, o_kind: int, o_dec: int, o_tgt: int, n: int,
                     work: np.ndarray) -> int:
    """Indices of the first ``n`` tuples ``(t, kind, dec, tgt)`` in the stable sorted order that ``list.sort``
    gives: insertion-sorted runs, then merges. The fields are ``keys[o_t + i]``, ``keys[o_kind + i]``...;
    ``work``: ``2 n`` ints, the order is ``work[r:r + n]`` for the ``r`` returned (0 or ``n``). Offsets into
    one buffer, not four arrays and slices: each array argument and slice costs atomic reference counts."""
    a, b = 0, n  # the runs being merged are at work[a:], the merge writes work[b:]
    for i in range(n):
        work[i] = i
    for lo in range(0, n, _SORT_RUN):
        hi = min(lo + _SORT_RUN, n)
        for i in range(lo + 1, hi):
            x = work[i]
            m = i
            while m > lo:
                y = work[m - 1]
                if not _lt4(keys[o_t + x], keys[o_kind + x], keys[o_dec + x], keys[o_tgt + x],
                            keys[o_t + y], keys[o_kind + y], keys[o_dec + y], keys[o_tgt + y]):
                    break
                work[m] = y
                m -= 1
            work[m] = x
    width = _SORT_RUN
    while width < n:
        for lo in range(0, n, 2 * width):
            mid = min(lo + width, n)
            hi = min(lo + 2 * width, n)
            i, j, m = lo, mid, lo
            while i < mid and j < hi:
                u, v = work[a + j], work[a + i]  # the right run's item first only when strictly smaller: stable
                if _lt4(keys[o_t + u], keys[o_kind + u], keys[o_dec + u], keys[o_tgt + u],
                        keys[o_t + v], keys[o_kind + v], keys[o_dec + v], keys[o_tgt + v]):
                    work[b + m] = u
                    j += 1
                else:
                    work[b + m] = v
                    i += 1
                m += 1
            while i < mid:
                work[b + m] = work[a + i]
                i += 1
                m += 1
            while j < hi:
                work[b + m] = work[a + j]
                j += 1
                m += 1
        a, b = b, a
        width *= 2
    return a


@njit
def _stable_order(t: np.ndarray, kind: np.ndarray, dec: np.ndarray, tgt: np.ndarray, n: int,
                  work: np.ndarray) -> np.ndarray:
    """:func:`_stable_order_at` of four key arrays (the result is a view of ``work``)."""
    keys = np.empty(4 * n)
    for i in range(n):
        keys[i], keys[n + i], keys[2 * n + i], keys[3 * n + i] = t[i], kind[i], dec[i], tgt[i]
    r = _stable_order_at(keys, 0, n, 2 * n, 3 * n, n, work)
    return work[r:r + n]


# ------------------------------------------------------------------------------------ roomy path
@njit
def _roomy_loop(now: float, r1: float, kappa: float, batch: int, buf: np.ndarray, size: int, work: np.ndarray,
                r: int, n_events: int, nd: int) -> float:
    """``estimates._roomy_loop``: the events ``(time, kind, decode tokens, is target)`` (``buf[e]``,
    ``buf[size + e]``, ``buf[2 size + e]``, ``buf[3 size + e]``) in the sorted order ``work[r:r + n_events]``,
    and from ``buf[4 size]`` a heap of the decoding streams' end progress (``nd`` entries, room for every
    stream)."""
    o_heap = 4 * size
    j = 0
    t = now
    progress = 0.0
    target_v = math.inf
    while True:
        t_next = buf[work[r + j]] if j < n_events else math.inf
        if nd > 0:
            rate = _decode_rate(r1, kappa, batch)
            t_dec = t + (buf[o_heap] - progress) / rate
            if t_dec < t_next:
                t_next = t_dec
                if t_dec <= t:  # the clock cannot resolve what is left of the top stream: it ends now
                    progress = buf[o_heap]
                else:
                    progress += rate * (t_next - t)
            else:
                progress += rate * (t_next - t)
        elif j == n_events:
            return math.inf
        if t_next == math.inf:
            return math.inf
        t = t_next
        admitted = 0
        while j < n_events and buf[work[r + j]] <= t:
            e = work[r + j]
            if buf[size + e] != 0.0:
                v = progress + buf[2 * size + e]
                nd = _push1_at(buf, o_heap, nd, v)
                if buf[3 * size + e] != 0.0:
                    target_v = v
            else:
                admitted += 1
            j += 1
        limit = progress + EPS_TOKENS
        while nd > 0 and buf[o_heap] <= limit:
            nd = _pop1_at(buf, o_heap, nd)
            batch -= 1
        if target_v <= limit:
            return t
        batch += admitted


@njit
def _roomy_packed(now: float, r1: float, kappa: float, x: np.ndarray, n_pre: int, n_dec: int, n_pend: int,
                  target: int, buf: np.ndarray, work: np.ndarray) -> float:
    """``estimates._project_roomy``: the fixed events (``_fixed_events``) sorted, then the roomy loop.

    The event fields (kind 0 = admission, 1 = prefill end; is target 0 or 1, as floats) and the decoding heap
    are regions of one buffer, read by offset: allocations, slices and array arguments (reference counts) are
    most of the cost of a small projection. ``buf``, ``work``: scratch of at least :func:`scratch_sizes`.
    """
    dr = 2 * n_pre  # the offsets in x (:func:`_pack`): decoding remainders; pending ready, prefill s, decode
    pr = dr + n_dec
    pp = pr + n_pend
    pc = pp + n_pend
    size = n_pre + 2 * n_pend
    o_kind, o_dec, o_tgt, o_heap = size, 2 * size, 3 * size, 4 * size
    k = 0
    for i in range(n_pre):
        buf[k] = x[i]
        buf[o_kind + k] = 1.0
        buf[o_dec + k] = x[n_pre + i]
        buf[o_tgt + k] = 0.0
        k += 1
    admitted_now = 0
    for i in range(n_pend):
        if x[pr + i] <= now:
            admitted_now += 1
            buf[k] = now + x[pp + i]
        else:
            buf[k] = x[pr + i]
            buf[o_kind + k] = 0.0
            buf[o_dec + k] = 0.0
            buf[o_tgt + k] = 0.0
            k += 1
            buf[k] = x[pr + i] + x[pp + i]
        buf[o_kind + k] = 1.0
        buf[o_dec + k] = x[pc + i]
        buf[o_tgt + k] = 1.0 if i == target else 0.0
        k += 1
    r = _stable_order_at(buf, 0, o_kind, o_dec, o_tgt, k, work)
    for i in range(n_dec):
        buf[o_heap + i] = x[dr + i]
    _heapify1_at(buf, o_heap, n_dec)
    return _roomy_loop(now, r1, kappa, n_pre + n_dec + admitted_now, buf, size, work, r, k, n_dec)


# ---------------------------------------------------------------------------------- general path
@njit
def _general_packed(now: float, r1: float, kappa: float, max_batch: int, x: np.ndarray, n_pre: int, n_dec: int,
                    n_pend: int, target: int, buf: np.ndarray, later: np.ndarray) -> float:
    """``estimates._project_general``: FIFO admission among the ready streams when the batch may fill up.

    Heaps of ``(end progress, index)`` (decoding), ``(prefill end, decode tokens, index)`` (prefilling) and
    ``index`` (ready, not admitted), all in one buffer (the first two as slices of it, the ready heap and the
    sort's keys by offset). The not-ready heap of unique ``(ready time,
    index)`` pops in sorted order, so it is that order (a stable sort on the ready time) walked by position.
    ``buf``, ``later``: scratch of at least :func:`scratch_sizes`.
    """
    dr = 2 * n_pre  # the offsets in x (:func:`_pack`): decoding remainders; pending ready, prefill s, decode
    pr = dr + n_dec
    pp = pr + n_pend
    pc = pp + n_pend
    n_all = n_pre + n_dec + n_pend
    n_p = n_pre + n_pend
    d_key, d_idx = buf[:n_all], buf[n_all:2 * n_all]
    o = 2 * n_all
    p_end, p_dec, p_idx = buf[o:o + n_p], buf[o + n_p:o + 2 * n_p], buf[o + 2 * n_p:o + 3 * n_p]
    o += 3 * n_p
    o_ready, o_zeros, o_later = o, o + n_pend, o + 2 * n_pend  # the ready heap, zeros, the pending ready times
    for i in range(n_dec):
        d_key[i] = x[dr + i]
        d_idx[i] = -1.0
    nd = n_dec
    _heapify2(d_key, d_idx, nd)
    for i in range(n_pre):
        p_end[i] = x[i]
        p_dec[i] = x[n_pre + i]
        p_idx[i] = -1.0
    npf = n_pre
    _heapify3(p_end, p_dec, p_idx, npf)
    for i in range(n_pend):
        buf[o_zeros + i] = 0.0
        buf[o_later + i] = x[pr + i]
    # ties by index, as (ready, index) tuples compare
    r = _stable_order_at(buf, o_later, o_zeros, o_zeros, o_zeros, n_pend, later)
    pos = 0
    nr = 0
    batch = nd + npf
    t = now
    progress = 0.0
    rate = 0.0
    inf = math.inf
    while True:
        next_ready = inf
        if batch < max_batch and (pos < n_pend or nr > 0):
            while pos < n_pend and x[pr + later[r + pos]] <= t:
                nr = _push1_at(buf, o_ready, nr, float(later[r + pos]))
                pos += 1
            while nr > 0 and batch < max_batch:
                idx = int(buf[o_ready])
                nr = _pop1_at(buf, o_ready, nr)
                batch += 1
                npf = _push3(p_end, p_dec, p_idx, npf, t + x[pp + idx], x[pc + idx], float(idx))
            if batch < max_batch and pos < n_pend:
                next_ready = x[pr + later[r + pos]]
        t_next = next_ready
        stalled = False
        if nd > 0:
            rate = _decode_rate(r1, kappa, batch)
            t_dec = t + (d_key[0] - progress) / rate
            if t_dec < t_next:
                t_next = t_dec
                stalled = t_dec <= t  # the clock cannot resolve what is left of the top stream
        if npf > 0 and p_end[0] <= t_next:
            t_next = p_end[0]
            stalled = False
        if t_next == inf:
            return inf
        if stalled:
            progress = d_key[0]
        elif nd > 0:
            progress += rate * (t_next - t)
        t = t_next
        while npf > 0 and p_end[0] <= t:
            v, idx_p = progress + p_dec[0], p_idx[0]
            npf = _pop3(p_end, p_dec, p_idx, npf)
            nd = _push2(d_key, d_idx, nd, v, idx_p)
        while nd > 0 and d_key[0] <= progress + EPS_TOKENS:
            idx_d = d_idx[0]
            nd = _pop2(d_key, d_idx, nd)
            batch -= 1
            if idx_d == target:
                return t


@njit
def _pack(prefill_end_s: np.ndarray, prefill_dec: np.ndarray, decoding_rem: np.ndarray, pend_ready_s: np.ndarray,
          pend_prefill_s: np.ndarray, pend_dec: np.ndarray) -> np.ndarray:
    """The six stream arrays in one: prefill ends, their decode tokens, decoding remainders, pending ready times,
    prefill seconds and decode tokens, one after another. The projections take this one array and the counts,
    not six: a compiled call costs two atomic reference counts per array argument (and a slice one more)."""
    n_pre, n_dec, n_pend = prefill_end_s.shape[0], decoding_rem.shape[0], pend_ready_s.shape[0]
    x = np.empty(2 * n_pre + n_dec + 3 * n_pend)
    for i in range(n_pre):
        x[i] = prefill_end_s[i]
        x[n_pre + i] = prefill_dec[i]
    for i in range(n_dec):
        x[2 * n_pre + i] = decoding_rem[i]
    o = 2 * n_pre + n_dec
    for i in range(n_pend):
        x[o + i] = pend_ready_s[i]
        x[o + n_pend + i] = pend_prefill_s[i]
        x[o + 2 * n_pend + i] = pend_dec[i]
    return x


@njit
def _project_roomy(now: float, r1: float, kappa: float, prefill_end_s: np.ndarray, prefill_dec: np.ndarray,
                   decoding_rem: np.ndarray, pend_ready_s: np.ndarray, pend_prefill_s: np.ndarray,
                   pend_dec: np.ndarray, target: int) -> float:
    """:func:`_roomy_packed` of the six stream arrays."""
    n_pre, n_dec, n_pend = prefill_end_s.shape[0], decoding_rem.shape[0], pend_ready_s.shape[0]
    buf, work = _new_scratch(n_pre, n_dec, n_pend)
    return _roomy_packed(now, r1, kappa, _pack(prefill_end_s, prefill_dec, decoding_rem, pend_ready_s,
                                               pend_prefill_s, pend_dec),
                         n_pre, n_dec, n_pend, target, buf, work)


@njit
def _project_general(now: float, r1: float, kappa: float, max_batch: int, prefill_end_s: np.ndarray,
                     prefill_dec: np.ndarray, decoding_rem: np.ndarray, pend_ready_s: np.ndarray,
                     pend_prefill_s: np.ndarray, pend_dec: np.ndarray, target: int) -> float:
    """:func:`_general_packed` of the six stream arrays."""
    n_pre, n_dec, n_pend = prefill_end_s.shape[0], decoding_rem.shape[0], pend_ready_s.shape[0]
    buf, work = _new_scratch(n_pre, n_dec, n_pend)
    return _general_packed(now, r1, kappa, max_batch, _pack(prefill_end_s, prefill_dec, decoding_rem, pend_ready_s,
                                                            pend_prefill_s, pend_dec),
                           n_pre, n_dec, n_pend, target, buf, work)


# ------------------------------------------------------------------------------------ entry points
@njit
def scratch_sizes(n_pre: int, n_dec: int, n_pend: int) -> tuple[int, int]:
    """Floats and ints of scratch that :func:`project_packed` needs for these streams, on either path (the roomy
    one: ``4 (n_pre + 2 n_pend) + n_pre + n_dec + n_pend`` floats, ``2 (n_pre + 2 n_pend)`` ints; the general one:
    ``5 n_pre + 2 n_dec + 8 n_pend`` floats, ``2 n_pend`` ints)."""
    return 5 * n_pre + 2 * n_dec + 9 * n_pend, 2 * (n_pre + 2 * n_pend)


@njit
def _new_scratch(n_pre: int, n_dec: int, n_pend: int) -> tuple[np.ndarray, np.ndarray]:
    """Fresh scratch of :func:`scratch_sizes` (for the callers outside the estimates, which pass the state's)."""
    n_buf, n_work = scratch_sizes(n_pre, n_dec, n_pend)
    return np.empty(n_buf), np.empty(n_work, dtype=np.int64)


@njit
def project_packed(now: float, r1: float, kappa: float, max_batch: int, x: np.ndarray, n_pre: int, n_dec: int,
                   n_pend: int, target: int, buf: np.ndarray, work: np.ndarray) -> float:
    """:func:`project_batch_finish_arrays` of the streams packed in ``x`` (:func:`_pack`'s layout), with scratch
    ``buf`` (floats) and ``work`` (ints) of at least :func:`scratch_sizes` (the estimates pass the state's, so a
    projection allocates nothing: three allocations were a third of the kernels' allocations per decision)."""
    if n_pre + n_dec + n_pend <= max_batch:
        return _roomy_packed(now, r1, kappa, x, n_pre, n_dec, n_pend, target, buf, work)
    return _general_packed(now, r1, kappa, max_batch, x, n_pre, n_dec, n_pend, target, buf, work)


@njit
def _project_new_scratch(now: float, r1: float, kappa: float, max_batch: int, x: np.ndarray, n_pre: int, n_dec: int,
                         n_pend: int, target: int) -> float:
    """:func:`project_packed` with scratch of its own (the callers outside the estimates)."""
    buf, work = _new_scratch(n_pre, n_dec, n_pend)
    return project_packed(now, r1, kappa, max_batch, x, n_pre, n_dec, n_pend, target, buf, work)


@njit_inline
def project_batch_finish_arrays(now: float, r1: float, kappa: float, max_batch: int, prefill_end_s: np.ndarray,
                                prefill_dec: np.ndarray, decoding_rem: np.ndarray, pend_ready_s: np.ndarray,
                                pend_prefill_s: np.ndarray, pend_dec: np.ndarray, target: int) -> float:
    """Finish time of pending stream ``target``: ``estimates.project_batch_finish`` with ``prefilling`` as
    ``(prefill_end_s, prefill_dec)``, ``decoding`` as ``decoding_rem`` and ``pending`` as ``(pend_ready_s,
    pend_prefill_s, pend_dec)`` (float64 arrays), the same float, on the same path."""
    return _project_new_scratch(now, r1, kappa, max_batch, _pack(prefill_end_s, prefill_dec, decoding_rem,
                                                                 pend_ready_s, pend_prefill_s, pend_dec),
                                prefill_end_s.shape[0], decoding_rem.shape[0], pend_ready_s.shape[0], target)


@njit
def pack_edge(x: np.ndarray, run: np.ndarray, pend: np.ndarray, extra: np.ndarray, e: int, n_pre: int, n_dec: int,
              n_pend: int, n_extra: int, ready_s: float, prefill_s: float, decode_tokens: float) -> None:
    """Edge ``e``'s streams into ``x`` (at least ``2 n_pre + n_dec + 3 (n_pend + n_extra + 1)`` floats) in
    :func:`_pack`'s layout: its snapshot (``run[e]``: prefill ends, their decode
    tokens, decoding remainders; ``pend[e]``: its FIFO's ready times, prefill seconds, decode tokens), then the
    plan's ``extra[e]`` streams and the new stream last in the FIFO. Read from the rows, not from slices of them
    (each slice costs reference counts)."""
    n = n_pend + n_extra + 1
    for i in range(n_pre):
        x[i] = run[e, 0, i]
        x[n_pre + i] = run[e, 1, i]
    for i in range(n_dec):
        x[2 * n_pre + i] = run[e, 2, i]
    o = 2 * n_pre + n_dec
    for i in range(n_pend):
        x[o + i] = pend[e, 0, i]
        x[o + n + i] = pend[e, 1, i]
        x[o + 2 * n + i] = pend[e, 2, i]
    for i in range(n_extra):
        x[o + n_pend + i] = extra[e, 0, i]
        x[o + n + n_pend + i] = extra[e, 1, i]
        x[o + 2 * n + n_pend + i] = extra[e, 2, i]
    x[o + n - 1] = ready_s
    x[o + 2 * n - 1] = prefill_s
    x[o + 3 * n - 1] = decode_tokens


def _rows(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Three equally long arrays as the rows of one ``(1, 3, n)`` array (edge 0 of :func:`pack_edge`)."""
    out = np.zeros((1, 3, max(a.shape[0], 1)))
    out[0, 0, :a.shape[0]], out[0, 1, :a.shape[0]], out[0, 2, :a.shape[0]] = a, b, c
    return out


def edge_finish_arrays(now: float, r1: float, kappa: float, max_batch: int, prefill_end_s: np.ndarray,
                       prefill_dec: np.ndarray, decoding_rem: np.ndarray, pend_ready_s: np.ndarray,
                       pend_prefill_s: np.ndarray, pend_dec: np.ndarray, extra_ready_s: np.ndarray,
                       extra_prefill_s: np.ndarray, extra_dec: np.ndarray, ready_s: float, prefill_s: float,
                       decode_tokens: float) -> float:
    """A new stream placed after an edge's snapshot (its prefilling, decoding and pending streams) and the plan's
    ``extra`` ones, projected over the whole FIFO with the new stream the target: the estimates' edge form
    (``estimates._edge_finish``, the same :func:`pack_edge` and :func:`project_packed`) on plain arrays."""
    n_pre, n_dec = prefill_end_s.shape[0], decoding_rem.shape[0]
    run = np.zeros((1, 3, max(n_pre, n_dec, 1)))
    run[0, 0, :n_pre], run[0, 1, :n_pre], run[0, 2, :n_dec] = prefill_end_s, prefill_dec, decoding_rem
    n_pend, n_extra = pend_ready_s.shape[0], extra_ready_s.shape[0]
    x = np.empty(2 * n_pre + n_dec + 3 * (n_pend + n_extra + 1))
    pack_edge(x, run, _rows(pend_ready_s, pend_prefill_s, pend_dec), _rows(extra_ready_s, extra_prefill_s, extra_dec),
              0, n_pre, n_dec, n_pend, n_extra, ready_s, prefill_s, decode_tokens)
    return _project_new_scratch(now, r1, kappa, max_batch, x, n_pre, n_dec, n_pend + n_extra + 1, n_pend + n_extra)
