"""Model-based estimates from predicted tokens only: what a scheduler can know at decision time.

For an item about to be placed, :class:`Estimator` predicts, per location, when its inputs arrive,
when it finishes and how likely it succeeds, using the current network state (contention, phone
queues, each edge's batch projected over the predicted remaining tokens of its running, queued and
in-transit streams) and the placements already made for the same query. :meth:`Estimator.plan`
runs the list scheduler over a query's subtasks on a scratch overlay, without committing anything.

The estimates never read true token counts of work that has not run yet.

Speed notes (the estimates are most of an env step). Every number is computed with the same
floating-point expressions, in the same order, as the straightforward formulation, so trajectories
are bit-for-bit unchanged; what changed is how often things are computed:

* per state (cleared by :meth:`Estimator.refresh`): each edge's snapshot, each phone's free time and
  the deciding phone's uplink/downlink share;
* per estimator (never stale): Wi-Fi access delays keyed by ``(contenders, PHY rate, OFDM symbols of
  the frame)``, because the access delay depends on the payload only through the symbol count (a
  plain ``(n, rate, bytes)`` key misses on almost every predicted, fractional message size);
* :func:`project_batch_finish` takes a heap-light path when the batch cannot fill up (the usual case),
  and each edge's part of it (its streams' fixed events) is prepared once per state;
* a predecessor's output transfer legs are computed once for all locations;
* :meth:`Estimator.plan` skips projecting an edge whose lower bound (inputs there, prefill, then
  decoding alone at full speed, less a rounding margin) already loses to a location computed exactly;
* where the batch may fill up, an edge's own streams are projected once per state (:class:`_BaseRun`,
  lazily, with checkpoints where the batch has room) and each estimate resumes from the first checkpoint
  its new streams matter at (:func:`_resume_general`), instead of projecting the whole queue again. A
  state with a long queue still costs one projection of it per edge (``O(W log W)``): exactly the same
  floats cannot be had from an earlier state's projection once time has moved. ``approx_queue_reuse``
  (off by default; see :class:`Estimator`) trades exactness for a bounded cost there.

``tests/test_benchmarks.py`` checks the fast paths against the reference ones (``tests/test_reliability.py``
the checkpointed projection); ``benchmarks/bench_overload.py`` times overloaded scenarios.
"""

from __future__ import annotations

import bisect
import heapq
import math
from dataclasses import dataclass, field
from typing import NamedTuple

from offload_gym.sim.engine import Item, Query, Simulator
from offload_gym.sim.physics import (
    MPDU_DELIMITER_BYTES,
    PHONE,
    PHY_SERVICE_TAIL_BITS,
    cell_share_bps,
    decode_rate_table,
    ofdm_symbols,
    token_bytes,
)
from offload_gym.sim.quality import decomposed_quality, success_prob

__all__ = ["Estimate", "Estimator", "Overlay", "PlanEstimate", "project_batch_finish", "subtask_order"]

_EPS_TOKENS = 1e-9


def project_batch_finish(now: float, r1: float, kappa: float, max_batch: int,
                         prefilling: list[tuple[float, float]], decoding: list[float],
                         pending: list[tuple[float, float, float]], target: int) -> float:
    """Finish time of ``pending[target]`` on a continuous-batching server.

    All decoding streams advance at the same per-stream rate ``r(B)``, so the simulation runs in
    per-stream progress ("virtual time"): a stream admitted at progress ``v`` with ``d`` tokens ends at
    ``v + d``, and only batch changes are events.

    :param prefilling: admitted streams still prefilling, as ``(prefill end time, decode tokens)``.
    :param decoding: remaining decode tokens of the admitted decoding streams.
    :param pending: not yet admitted streams in placement order, ``(ready time, prefill s, decode tokens)``;
        the earliest-placed ready one is admitted whenever the batch has room.
    """
    if len(prefilling) + len(decoding) + len(pending) <= max_batch:
        return _project_roomy(now, r1, kappa, prefilling, decoding, pending, target)
    return _project_general(now, r1, kappa, max_batch, prefilling, decoding, pending, target)


def _project_roomy(now: float, r1: float, kappa: float, prefilling: list[tuple[float, float]],
                   decoding: list[float], pending: list[tuple[float, float, float]], target: int) -> float:
    """:func:`project_batch_finish` when every stream fits in the batch at once.

    Then each pending stream is admitted when it is ready (at ``now`` if it already is), whatever its
    place in the FIFO, so admissions and prefill ends are known in advance (:func:`_fixed_events`) and
    only decode ends are found on the way (:func:`_roomy_loop`).
    """
    events: list[_Event] = [(end, 1, dec, False) for end, dec in prefilling]
    batch = len(prefilling) + len(decoding) + _fixed_events(now, pending, events, target)
    events.sort()
    dheap = list(decoding)
    heapq.heapify(dheap)
    n_streams = len(prefilling) + len(decoding) + len(pending)  # all fit: the batch grows to this at most
    return _roomy_loop(now, decode_rate_table(r1, kappa, n_streams), batch, events, dheap)


#: a fixed event of a roomy projection: (time, 0 = admission | 1 = prefill end, decode tokens, is the target)
_Event = tuple[float, int, float, bool]


def _fixed_events(now: float, pending: list[tuple[float, float, float]], events: list[_Event], target: int = -1) -> int:
    """Append the admissions and prefill ends of ``pending`` to ``events``; return how many are admitted now."""
    admitted_now = 0
    for i, (ready, prefill_s, dec) in enumerate(pending):
        if ready <= now:
            admitted_now += 1
            events.append((now + prefill_s, 1, dec, i == target))
        else:
            events.append((ready, 0, 0.0, False))
            events.append((ready + prefill_s, 1, dec, i == target))
    return admitted_now


def _roomy_loop(now: float, rates: list[float], batch: int, events: list[_Event], dheap: list[float]) -> float:
    """Run a roomy projection: ``events`` sorted, ``dheap`` a heap of the decoding streams' remaining tokens,
    ``rates[b]`` the per-stream decode rate of ``b`` streams (:func:`~offload_gym.sim.physics.decode_rate_table`,
    at least up to every stream's being admitted).

    The loop visits the same event times as :func:`_project_general` and does the same arithmetic at
    each (batch changes are applied before the next rate is computed in both), so the result is the
    same float.
    """
    heappush, heappop = heapq.heappush, heapq.heappop
    n_events = len(events)
    j = 0
    t = now
    progress = 0.0
    target_v = math.inf
    while True:
        t_next = events[j][0] if j < n_events else math.inf
        if dheap:
            rate = rates[batch]
            t_dec = t + (dheap[0] - progress) / rate
            if t_dec < t_next:
                t_next = t_dec
                if t_dec <= t:  # the clock cannot resolve what is left of the top stream (large t): it ends now
                    progress = dheap[0]
                else:
                    progress += rate * (t_next - t)
            else:
                progress += rate * (t_next - t)
        elif j == n_events:  # pragma: no cover - the target is always admitted eventually
            return math.inf
        if t_next == math.inf:  # nothing left that ends in finite time (overflowed times)
            return math.inf
        t = t_next
        admitted = 0
        while j < n_events and events[j][0] <= t:
            _, kind, dec, is_target = events[j]
            j += 1
            if kind:
                v = progress + dec
                heappush(dheap, v)
                if is_target:
                    target_v = v
            else:
                admitted += 1
        limit = progress + _EPS_TOKENS
        while dheap and dheap[0] <= limit:
            heappop(dheap)
            batch -= 1
        if target_v <= limit:
            return t
        batch += admitted


def _project_general(now: float, r1: float, kappa: float, max_batch: int, prefilling: list[tuple[float, float]],
                     decoding: list[float], pending: list[tuple[float, float, float]], target: int) -> float:
    """:func:`project_batch_finish` with a full batch possible: FIFO admission among the ready streams.

    The pending streams wait in two heaps, not yet ready ``(ready time, index)`` and ready ``index``, so
    that an event costs ``O(log W)`` for ``W`` waiting streams, not a scan of them all; the admissions
    (the earliest-placed ready streams while the batch has room) and their arithmetic are the same as a scan's.
    """
    heappush, heappop = heapq.heappush, heapq.heappop
    t = now
    progress = 0.0  # tokens decoded per stream since ``now``
    dheap = [(rem, -1) for rem in decoding]
    heapq.heapify(dheap)
    pheap = [(end, dec, -1) for end, dec in prefilling]
    heapq.heapify(pheap)
    later = [(p[0], idx) for idx, p in enumerate(pending)]  # not ready at t
    heapq.heapify(later)
    ready_now: list[int] = []  # ready at t, not admitted (the batch is full)
    batch = len(dheap) + len(pheap)
    rates = decode_rate_table(r1, kappa, max(batch, max_batch))  # the batch never grows beyond both
    inf = math.inf
    rate = 0.0
    while True:
        next_ready = inf
        if batch < max_batch and (later or ready_now):
            while later and later[0][0] <= t:
                heappush(ready_now, heappop(later)[1])
            while ready_now and batch < max_batch:
                idx = heappop(ready_now)
                batch += 1
                heappush(pheap, (t + pending[idx][1], pending[idx][2], idx))
            if batch < max_batch and later:
                next_ready = later[0][0]
        t_next = next_ready
        stalled = False
        if dheap:
            rate = rates[batch]
            t_dec = t + (dheap[0][0] - progress) / rate
            if t_dec < t_next:
                t_next = t_dec
                stalled = t_dec <= t  # the clock cannot resolve what is left of the top stream (large t)
        if pheap and pheap[0][0] <= t_next:
            t_next = pheap[0][0]
            stalled = False  # a prefill ends first (or now, then the stall is handled next time)
        if t_next == inf:  # nothing left that ends in finite time (the target is always admitted eventually)
            return inf
        if stalled:
            progress = dheap[0][0]  # the top stream ends now
        elif dheap:
            progress += rate * (t_next - t)
        t = t_next
        while pheap and pheap[0][0] <= t:
            _, dec, idx = heappop(pheap)
            heappush(dheap, (progress + dec, idx))
        while dheap and dheap[0][0] <= progress + _EPS_TOKENS:
            idx = heappop(dheap)[1]
            batch -= 1
            if idx == target:
                return t


#: a checkpoint of a :class:`_BaseRun`: an iteration of the general projection at which the batch still has
#: room once the edge's own ready streams are admitted, ``(t, progress, batch, decoding heap, prefilling heap,
#: position in the ready-time order, the next event time)``; the heaps are ``None`` where they were too large to keep
_Checkpoint = tuple[float, float, int, "list[tuple[float, int]] | None", "list[tuple[float, float, int]] | None", int,
                    float]

#: checkpoints keep copies of the batch's heaps up to this many streams (beyond it a projection is run in full)
_CHECKPOINT_MAX_STREAMS = 64
#: ``approx_queue_reuse``: edges with fewer queued and in-transit streams than this are always projected exactly
_APPROX_MIN_PENDING = 32
#: ``approx_queue_reuse``: a kept projection serves ``pending // _APPROX_REUSE_DIVISOR`` further states at most
_APPROX_REUSE_DIVISOR = 16


class _BaseRun:
    """The general projection of an edge's own streams (no new stream), run lazily, with checkpoints.

    A stream appended to the FIFO (a candidate, after the plan's hypothetical ones) changes nothing in
    :func:`_project_general` until an iteration at which the batch has room once the earlier streams that are
    ready are admitted: before that it is neither admitted nor the next ready time looked at. At such an
    iteration (a checkpoint, at time ``t`` with next event ``t_next``) it matters iff it is ready
    (``ready <= t``) or becomes ready before the next event (``ready < t_next``). So the projection of the
    edge's own streams is run once per state, and each estimate resumes (:func:`_resume_general`) from the
    first checkpoint its appended streams matter at, doing from there exactly what :func:`_project_general`
    does on the whole list: the same floats, for about the cost of the new stream's own lifetime.
    """

    __slots__ = ("batch", "checkpoints", "dheap", "done", "later", "max_batch", "pending", "pheap", "pos",
                 "progress", "rate", "rates", "stalled", "t", "t_next", "t_nexts")

    def __init__(self, now: float, r1: float, kappa: float, max_batch: int, prefilling: list[tuple[float, float]],
                 decoding: list[float], pending: list[tuple[float, float, float]],
                 rates: list[float] | None = None) -> None:
        self.max_batch = max_batch
        n = max(max_batch, len(prefilling) + len(decoding)) + 1  # the batch never grows beyond both
        if rates is None or len(rates) < n:
            rates = decode_rate_table(r1, kappa, n - 1)
        self.rates = rates  # rates[b]: the per-stream rate with b streams in the batch
        self.pending = pending
        #: the pending streams by ``(ready time, index)``: a heap's pop order, so a position replaces the heap
        self.later = sorted([(p[0], idx) for idx, p in enumerate(pending)])
        self.checkpoints: list[_Checkpoint] = []
        self.t_nexts: list[float] = []  # per checkpoint, its next event time (non-decreasing)
        self.done = False
        # the loop's state between calls of _advance (plain data, so that an estimator pickles)
        self.t = now
        self.progress = 0.0
        self.dheap = [(rem, -1) for rem in decoding]
        heapq.heapify(self.dheap)
        self.pheap = [(end, dec, -1) for end, dec in prefilling]
        heapq.heapify(self.pheap)
        self.batch = len(self.dheap) + len(self.pheap)
        self.pos = 0
        self.rate = 0.0
        self.t_next: float | None = None  # set while stopped just after a checkpoint (the iteration's second half to do)
        self.stalled = False

    def _advance(self) -> None:
        """Go on with :func:`_project_general` (no target) up to the next checkpoint, recorded, or to the end.

        At a checkpoint the ready streams are all admitted, so no heap of ready indices outlives a call.
        """
        heappush, heappop = heapq.heappush, heapq.heappop
        pending, later = self.pending, self.later
        n_later = len(later)
        rates, max_batch = self.rates, self.max_batch
        dheap, pheap = self.dheap, self.pheap
        t, progress, batch, pos, rate = self.t, self.progress, self.batch, self.pos, self.rate
        inf = math.inf
        eps = _EPS_TOKENS
        ready_now: list[int] = []
        t_next = self.t_next
        stalled = self.stalled
        resuming = t_next is not None
        while True:
            if resuming:
                resuming = False
            else:
                next_ready = inf
                if batch < max_batch and (pos < n_later or ready_now):
                    while pos < n_later and later[pos][0] <= t:
                        heappush(ready_now, later[pos][1])
                        pos += 1
                    while ready_now and batch < max_batch:
                        idx = heappop(ready_now)
                        batch += 1
                        heappush(pheap, (t + pending[idx][1], pending[idx][2], idx))
                    if batch < max_batch and pos < n_later:
                        next_ready = later[pos][0]
                t_next = next_ready
                stalled = False
                if dheap:
                    rate = rates[batch]
                    t_dec = t + (dheap[0][0] - progress) / rate
                    if t_dec < t_next:
                        t_next = t_dec
                        stalled = t_dec <= t
                if pheap and pheap[0][0] <= t_next:
                    t_next = pheap[0][0]
                    stalled = False
                if batch < max_batch:  # a checkpoint (ready_now is empty here)
                    keep = batch <= _CHECKPOINT_MAX_STREAMS
                    self.checkpoints.append((t, progress, batch, dheap.copy() if keep else None,
                                             pheap.copy() if keep else None, pos, t_next))
                    self.t_nexts.append(t_next)
                    self.t, self.progress, self.batch, self.pos, self.rate = t, progress, batch, pos, rate
                    self.t_next, self.stalled = t_next, stalled
                    return
            assert t_next is not None
            if t_next == inf:  # everything ended, or nothing left ends in finite time
                self.done = True
                self.t_next = None
                return
            if stalled:
                progress = dheap[0][0]
            elif dheap:
                progress += rate * (t_next - t)
            t = t_next
            while pheap and pheap[0][0] <= t:
                _, dec, idx = heappop(pheap)
                heappush(dheap, (progress + dec, idx))
            while dheap and dheap[0][0] <= progress + eps:
                heappop(dheap)
                batch -= 1

    def checkpoint_for(self, first_ready: float) -> _Checkpoint | None:
        """The first checkpoint at which streams appended to the FIFO, the earliest ready at ``first_ready``,
        matter; ``None`` if there is none (then they are never admitted: their finish is infinite)."""
        checkpoints, t_nexts = self.checkpoints, self.t_nexts
        k = bisect.bisect_left(t_nexts, first_ready)  # before it, t <= t_next < first_ready: they do not matter
        while True:
            while k < len(checkpoints):
                cp = checkpoints[k]
                if first_ready < cp[6] or first_ready <= cp[0]:
                    return cp
                k += 1
            if self.done:
                return None
            self._advance()


def _resume_general(cp: _Checkpoint, max_batch: int, run: _BaseRun, appended: list[tuple[float, float, float]]) -> float:
    """:func:`_project_general` over ``run``'s streams then ``appended`` (the target last), from checkpoint ``cp``.

    The same admissions and arithmetic as the full projection from that iteration on: the edge's own streams
    not ready at the checkpoint come from ``run.later`` by position, the appended ones wait in a heap of their own.
    """
    heappush, heappop = heapq.heappush, heapq.heappop
    t, progress, batch, dheap0, pheap0, pos, _ = cp
    assert dheap0 is not None and pheap0 is not None
    dheap = dheap0.copy()
    pheap = pheap0.copy()
    pending, later = run.pending, run.later
    n_later = len(later)
    n_base = len(pending)
    target = n_base + len(appended) - 1
    alater = [(a[0], n_base + j) for j, a in enumerate(appended)]
    heapq.heapify(alater)
    ready_now: list[int] = []
    inf = math.inf
    eps = _EPS_TOKENS
    rates = run.rates
    rate = 0.0
    while True:
        next_ready = inf
        if batch < max_batch and (pos < n_later or alater or ready_now):
            while pos < n_later and later[pos][0] <= t:
                heappush(ready_now, later[pos][1])
                pos += 1
            while alater and alater[0][0] <= t:
                heappush(ready_now, heappop(alater)[1])
            while ready_now and batch < max_batch:
                idx = heappop(ready_now)
                batch += 1
                stream = pending[idx] if idx < n_base else appended[idx - n_base]
                heappush(pheap, (t + stream[1], stream[2], idx))
            if batch < max_batch:
                if pos < n_later:
                    next_ready = later[pos][0]
                if alater and alater[0][0] < next_ready:
                    next_ready = alater[0][0]
        t_next = next_ready
        stalled = False
        if dheap:
            rate = rates[batch]
            t_dec = t + (dheap[0][0] - progress) / rate
            if t_dec < t_next:
                t_next = t_dec
                stalled = t_dec <= t
        if pheap and pheap[0][0] <= t_next:
            t_next = pheap[0][0]
            stalled = False
        if t_next == inf:
            return inf
        if stalled:
            progress = dheap[0][0]
        elif dheap:
            progress += rate * (t_next - t)
        t = t_next
        while pheap and pheap[0][0] <= t:
            _, dec, idx = heappop(pheap)
            heappush(dheap, (progress + dec, idx))
        while dheap and dheap[0][0] <= progress + eps:
            idx = heappop(dheap)[1]
            batch -= 1
            if idx == target:
                return t


def subtask_order(query: Query) -> list[int]:
    """Presentation order: topological by depth, larger predicted work first within a depth."""
    subs = query.subtasks
    return sorted(range(len(subs)), key=lambda i: (subs[i].depth, -subs[i].pred_output_tokens, i))


class Estimate(NamedTuple):
    """Per-location prediction for one item: absolute times (s) and success probability."""

    ready_s: float  #: inputs all at the location
    finish_s: float  #: item done there (for whole queries and the aggregation: answer back on the phone)
    quality: float


@dataclass
class Overlay:
    """Hypothetical placements of the current query that are not in the simulator (for the plan)."""

    placed: dict[int, tuple[int, float]] = field(default_factory=dict)  # subtask -> (location, finish)
    attachment_eta: dict[int, float] = field(default_factory=dict)  # location -> attachment arrival
    phone_extra_s: float = 0.0
    edge_extra: dict[int, list[tuple[float, float, float]]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PlanEstimate:
    latency_s: float
    quality: float
    locations: tuple[int, ...]  #: per subtask index, then the aggregation's


class _Link(NamedTuple):
    """One direction of the deciding phone's Wi-Fi link in the current state."""

    n: int  #: contenders, counting this transfer
    rate_bps: float  #: PHY rate
    share_bps: float  #: this transfer's share of the cell's throughput
    frame_access_s: float  #: access delay of a full frame


class _EdgeState:
    """An edge's streams in the current state, and what every roomy projection on it starts from."""

    __slots__ = ("appended", "batch", "decoding", "dheap", "events", "idle", "n_streams", "pending", "prefilling",
                 "run")

    def __init__(self, prefilling: list[tuple[float, float]], decoding: list[float],
                 pending: list[tuple[float, float, float]]) -> None:
        self.prefilling = prefilling
        self.decoding = decoding
        self.pending = pending
        self.n_streams = len(prefilling) + len(decoding) + len(pending)
        self.idle = self.n_streams == 0
        self.events: list[_Event] = []  # fixed events of the streams above, sorted
        self.batch = 0  # streams admitted once the ones ready now are in
        self.dheap: list[float] = []  # decoding streams' remaining tokens, sorted (a heap)
        self.run: _BaseRun | None = None  # the general projection of these streams, once one is asked for
        #: ``approx_queue_reuse`` only: the streams placed since ``run`` (kept from an earlier state) was built
        self.appended: list[tuple[float, float, float]] | None = None


class Estimator:
    """Estimates over a :class:`Simulator`'s current state. Call :meth:`refresh` after time moved.

    ``approx_queue_reuse`` (off by default; an approximation, trajectories change when it is on): an edge
    with at least ``_APPROX_MIN_PENDING`` queued and in-transit streams keeps its general batch projection
    across states, for up to ``pending // _APPROX_REUSE_DIVISOR`` states, while its admitted streams are ones
    the projection knew; the streams placed since are appended to its FIFO. That bounds the cost per decision
    on overloaded edges (one projection per that many decisions), at the price of estimates that ignore what
    happened since the kept projection was made (streams that ran shorter or longer than predicted).
    """

    def __init__(self, sim: Simulator, latency_weight: float, approx_queue_reuse: bool = False) -> None:
        #: what the estimates read: the simulator's read-only view (never its private structures)
        self.view = sim.view
        self.latency_weight = latency_weight
        self.approx_queue_reuse = approx_queue_reuse
        self._state_id = 0  # refreshes so far
        #: approx_queue_reuse: per edge, (projection, its streams' seqs, their largest, state id built, states it serves)
        self._kept_runs: dict[int, tuple[_BaseRun, set[int], int, int, int]] = {}
        self._rates: list[float] | None = None  # _batch_rates, once asked for
        cfg = sim.cfg
        w, e = cfg.wifi, cfg.edge
        self._frame = w.frame_bytes
        self._bytes_per_token = w.bytes_per_token
        self._overhead_bytes = w.message_overhead_bytes
        self._frame_header_bytes = w.mac_header_bytes + MPDU_DELIMITER_BYTES
        self._symbol_s = w.symbol_s
        self._edge_prefill_tps = e.prefill_tps
        self._edge_decode_tps = e.decode_tps
        self._kappa = e.kappa
        self._max_batch = e.max_batch
        self._edge_ability = e.ability
        self._planner_latency_s = cfg.planner.latency_s
        self._context_tokens = cfg.workload.subtask_context_tokens
        self._edge_state: dict[int, _EdgeState] = {}
        self._phone_free: dict[int, float] = {}
        self._up: dict[int, _Link] = {}
        self._down: dict[int, _Link] = {}
        self._access: dict[tuple[int, float, int], float] = {}  # (n, rate, OFDM symbols) -> access delay
        self._locations: dict[int, list[int]] = {}

    def refresh(self) -> None:
        """Forget the per-state caches (call whenever the simulator's state changed)."""
        self._state_id += 1
        self._edge_state.clear()
        self._phone_free.clear()
        self._up.clear()
        self._down.clear()
        self._locations.clear()

    # ----------------------------------------------------------------- building blocks
    def phone_free_at(self, user: int) -> float:
        """When the phone has worked through what is placed on it (serial, predicted durations)."""
        free = self._phone_free.get(user)
        if free is None:
            view = self.view
            free = view.now + view.phone_unstarted_pred_s(user)
            running = view.phone_running(user)
            if running is not None:
                free += max(running.start_time + running.pred_duration_s - view.now, 0.0)
            self._phone_free[user] = free
        return free

    def _build_edge_state(self, e: int) -> _EdgeState:
        if self.approx_queue_reuse:
            kept = self._kept_state(e)
            if kept is not None:
                self._edge_state[e] = kept
                return kept
        state = self._edge_state[e] = self._exact_edge_state(e)
        if self.approx_queue_reuse and len(state.pending) >= _APPROX_MIN_PENDING and state.n_streams >= self._max_batch:
            state.run = _BaseRun(self.view.now, self._edge_decode_tps, self._kappa, self._max_batch, state.prefilling,
                                 state.decoding, state.pending, self._batch_rates())
            view = self.view
            seqs = {*view.edge_prefilling(e), *view.edge_waiting(e), *(item.seq for _, _, item in view.edge_decoding(e)),
                    *(item.seq for _, item in view.edge_ready(e))}
            self._kept_runs[e] = (state.run, seqs, max(seqs), self._state_id,
                                  len(state.pending) // _APPROX_REUSE_DIVISOR)
        return state

    def _kept_state(self, e: int) -> _EdgeState | None:
        """``approx_queue_reuse``: edge ``e``'s state on its kept projection, with the streams placed since it was
        made appended (``None`` where it does not serve: too old, a short queue, or an admitted stream it lacks)."""
        kept = self._kept_runs.get(e)
        if kept is None:
            return None
        run, seqs, max_seq, built, serves = kept
        view = self.view
        ready, waiting = view.edge_ready(e), view.edge_waiting(e)  # waiting: in placement order, the new ones last
        prefilling_now, decoding_now = view.edge_prefilling(e), view.edge_decoding(e)
        n_pending = len(ready) + len(waiting)
        n_streams = n_pending + len(prefilling_now) + len(decoding_now)
        if (self._state_id - built > serves or n_pending < _APPROX_MIN_PENDING or n_streams < self._max_batch
                or not all(seq in seqs for seq in prefilling_now)
                or not all(item.seq in seqs for _, _, item in decoding_now)):
            return None
        now = view.now
        prefill_tps = self._edge_prefill_tps
        new = [(seq, now, item.input_tokens / prefill_tps, item.pred_output_tokens)
               for seq, item in ready if seq > max_seq]  # a scan of the queue (no per-edge log of arrivals)
        if waiting and next(reversed(waiting)) > max_seq:
            for seq in reversed(waiting):
                if seq <= max_seq:
                    break
                item = waiting[seq]
                new.append((seq, max(now, item.est_ready), item.pred_input_tokens / prefill_tps,
                            item.pred_output_tokens))
        new.sort()
        prefilling, decoding = self._admitted_streams(e)
        state = _EdgeState(prefilling, decoding, [])
        state.n_streams = n_streams
        state.idle = False
        state.run = run
        state.appended = [(r, p, d) for _, r, p, d in new]
        return state

    def _admitted_streams(self, e: int) -> tuple[list[tuple[float, float]], list[float]]:
        """Edge ``e``'s prefilling ``(end, predicted decode tokens)`` and decoding streams' predicted remaining tokens."""
        view = self.view
        prefilling = [(end, item.pred_output_tokens) for item, end in view.edge_prefilling(e).values()]
        decoding = []
        streams = view.edge_decoding(e)
        if streams:
            progress = view.edge_progress_now(e)
            for target, _, item in streams:
                decoded = item.output_tokens - (target - progress)
                rem = item.pred_output_tokens - decoded
                decoding.append(rem if rem > 1.0 else 1.0)
        return prefilling, decoding

    def _exact_edge_state(self, e: int) -> _EdgeState:
        """Edge ``e``'s streams in the current state (not cached)."""
        view = self.view
        now = view.now
        prefill_tps = self._edge_prefill_tps
        prefilling, decoding = self._admitted_streams(e)
        ready, waiting = view.edge_ready(e), view.edge_waiting(e)
        pending: list[tuple[float, float, float]]
        if waiting:
            queued = [(item.seq, now, item.input_tokens / prefill_tps, item.pred_output_tokens)
                      for _, item in ready]
            queued += [(item.seq, max(now, item.est_ready), item.pred_input_tokens / prefill_tps,
                        item.pred_output_tokens) for item in waiting.values()]
            queued.sort()
            pending = [(r, p, d) for _, r, p, d in queued]
        elif ready:
            pending = [(now, item.input_tokens / prefill_tps, item.pred_output_tokens)
                       for _, item in sorted(ready)]  # seqs are unique: items never compared
        else:
            pending = []
        state = _EdgeState(prefilling, decoding, pending)
        if not state.idle and state.n_streams < self._max_batch:  # else every projection on it is a general one
            state.events = [(end, 1, dec, False) for end, dec in prefilling]
            state.batch = len(prefilling) + len(decoding) + _fixed_events(now, pending, state.events)
            state.events.sort()
            state.dheap = sorted(decoding)
        return state

    def _edge_finish(self, e: int, ready_s: float, prefill_s: float, decode_tokens: float,
                     extra: list[tuple[float, float, float]] | None) -> float:
        """Predicted finish on edge ``e`` of a stream placed after its current items and ``extra`` (the plan's)."""
        state = self._edge_state.get(e)
        if state is None:
            state = self._build_edge_state(e)
        if state.idle and not extra:  # idle edge: prefill, then decode alone
            return ready_s + prefill_s + decode_tokens / self._edge_decode_tps
        now = self.view.now
        if state.n_streams + (len(extra) if extra else 0) >= self._max_batch:  # the batch may fill up: FIFO matters
            return self._edge_finish_general(e, state, ready_s, prefill_s, decode_tokens, extra)
        batch = state.batch
        if ready_s <= now:
            batch += 1
            events = [(now + prefill_s, 1, decode_tokens, True)]
        else:
            events = [(ready_s, 0, 0.0, False), (ready_s + prefill_s, 1, decode_tokens, True)]
        if extra:
            batch += _fixed_events(now, extra, events)
        if state.events or extra:
            events += state.events
            events.sort()
        return _roomy_loop(now, self._batch_rates(), batch, events, state.dheap.copy())

    def _edge_finish_general(self, e: int, state: _EdgeState, ready_s: float, prefill_s: float,
                             decode_tokens: float, extra: list[tuple[float, float, float]] | None) -> float:
        """:func:`_project_general` of a new stream after ``state``'s streams and ``extra``: resumed from the
        state's base run (run once per state) where the new streams start to matter; the same float
        (with ``approx_queue_reuse``, on a long queue, the base run may be an earlier state's: see the class)."""
        appended = [*extra, (ready_s, prefill_s, decode_tokens)] if extra else [(ready_s, prefill_s, decode_tokens)]
        run = state.run
        if run is None:
            run = state.run = _BaseRun(self.view.now, self._edge_decode_tps, self._kappa, self._max_batch,
                                       state.prefilling, state.decoding, state.pending, self._batch_rates())
        if state.appended:
            appended = [*state.appended, *appended]
            first_ready = min(a[0] for a in appended)
        else:
            first_ready = min(a[0] for a in appended) if extra else ready_s
        cp = run.checkpoint_for(first_ready)
        if cp is None:
            return math.inf
        if cp[3] is None:  # a batch too large to have been kept: the full projection
            items = [*run.pending, *appended]
            return _project_general(self.view.now, self._edge_decode_tps, self._kappa, self._max_batch,
                                    state.prefilling, state.decoding, items, len(items) - 1)
        return _resume_general(cp, self._max_batch, run, appended)

    def _batch_rates(self) -> list[float]:
        """:func:`~offload_gym.sim.physics.decode_rate_table` of this edge model up to ``max_batch``, once."""
        rates = self._rates
        if rates is None:
            rates = self._rates = decode_rate_table(self._edge_decode_tps, self._kappa, self._max_batch)
        return rates

    def _access_s(self, n: int, rate: float, nbytes: float) -> float:
        """Access delay ``D(n, rate, min(nbytes, frame))``; it depends on the bytes only via the OFDM symbols."""
        payload = nbytes if nbytes < self._frame else self._frame
        symbols = self._symbols(rate, payload)
        key = (n, rate, symbols)
        access = self._access.get(key)
        if access is None:
            # ask the model with a whole number of bytes that fills the same symbols, as the simulator's own
            # messages do, so that the model's caches do not fill up with one entry per fractional size
            largest = math.floor((symbols * rate * self._symbol_s - PHY_SERVICE_TAIL_BITS) / 8 - self._frame_header_bytes)
            whole = float(min(largest, self._frame))
            if whole < 1 or self._symbols(rate, whole) != symbols:  # pragma: no cover - rounding at a boundary
                whole = payload
            access = self.view.access_delay_s(n, rate, whole)
            self._access[key] = access
        return access

    def _symbols(self, rate: float, payload: float) -> int:
        """OFDM symbols of a data frame carrying ``payload`` bytes (as in ``wifi.dcf_saturation``)."""
        return ofdm_symbols(payload, self._frame_header_bytes, rate, self._symbol_s)

    def _uplink(self, user: int) -> _Link:
        link = self._up.get(user)
        if link is None:
            view = self.view
            ap = view.own_ap[user]
            link = self._up[user] = self._cell_link(ap, view.up_rate_bps[user], view.cell_uploads(ap, user))
        return link

    def _downlink(self, user: int) -> _Link:
        link = self._down.get(user)
        if link is None:
            view = self.view
            ap = view.own_ap[user]
            link = self._down[user] = self._cell_link(ap, view.down_rate_bps[user], view.cell_downloads(ap))
        return link

    def _cell_link(self, ap: int, rate_bps: float, sharing: int) -> _Link:
        """A new transfer in ``ap``'s cell that shares its sender's airtime with ``sharing`` others."""
        n = self.view.cell_contenders(ap) + (0 if sharing else 1)  # the sender joins unless already contending
        full = self.view.dcf(n, rate_bps, self._frame)
        return _Link(n, rate_bps, cell_share_bps(full.throughput_bps, n, sharing + 1),
                     self.view.access_delay_s(n, rate_bps, self._frame))

    def _link_s(self, link: _Link, nbytes: float) -> float:
        access = link.frame_access_s if nbytes >= self._frame else self._access_s(link.n, link.rate_bps, nbytes)
        return access + 8.0 * nbytes / link.share_bps

    def uplink_s(self, user: int, nbytes: float) -> float:
        return self._link_s(self._uplink(user), nbytes)

    def _backhaul_s(self, nbytes: float) -> float:
        view = self.view  # live values: backhaul faults change them
        return view.backhaul_delay_s + 8.0 * nbytes / view.backhaul_rate_bps

    def token_bytes(self, tokens: float) -> float:
        return token_bytes(tokens, self._bytes_per_token, self._overhead_bytes)

    def locations(self, user: int) -> list[int]:
        """Locations the phone can use now (0 always; the APs that are up if it is in coverage)."""
        return self.view.usable_locations(user)

    def _usable(self, user: int) -> list[int]:
        """:meth:`locations`, once per state (not to be modified)."""
        usable = self._locations.get(user)
        if usable is None:
            usable = self._locations[user] = self.view.usable_locations(user)
        return usable

    def _qualities(self, user: int, difficulty: float) -> tuple[float, float]:
        """Success probability on the phone and on any edge."""
        return (success_prob(self.view.phone_ability[user], difficulty),
                success_prob(self._edge_ability, difficulty))

    def _phone_finish(self, user: int, ready_s: float, item: Item, input_tokens: float, extra_s: float) -> float:
        view = self.view
        free = self._phone_free.get(user)
        if free is None:
            free = self.phone_free_at(user)
        start = max(ready_s, free + extra_s)
        return start + input_tokens / view.phone_prefill_tps[user] + item.pred_output_tokens / view.phone_decode_tps[user]

    # ----------------------------------------------------------------- per decision
    def whole(self, query: Query, item: Item) -> dict[int, Estimate]:
        """Answer-at-phone time and quality of running ``query`` whole at each usable location."""
        user = query.user
        release = query.arrival_time + self._planner_latency_s
        q_phone, q_edge = self._qualities(user, item.pred_difficulty)
        pred_in, pred_out = item.pred_input_tokens, item.pred_output_tokens
        ready = release
        out = {PHONE: Estimate(ready, self._phone_finish(user, ready, item, pred_in, 0.0), q_phone)}
        locations = self._usable(user)
        if len(locations) > 1:
            up_bytes = self.token_bytes(query.spec.prompt_tokens) + query.spec.attachment_bytes
            down_bytes = self.token_bytes(pred_out)
            up = self._link_s(self._uplink(user), up_bytes)
            down = self._link_s(self._downlink(user), down_bytes)
            up_bh = up + self._backhaul_s(up_bytes)
            bh_down = self._backhaul_s(down_bytes) + down
            own = self.view.own_ap[user] + 1
            prefill_s = pred_in / self._edge_prefill_tps
            for loc in locations[1:]:
                ready = release + (up if loc == own else up_bh)
                finish = self._edge_finish(loc - 1, ready, prefill_s, pred_out, None)
                finish += down if loc == own else bh_down
                out[loc] = Estimate(ready, finish, q_edge)
        return out

    def _latest_arrivals(self, query: Query, indices: range | tuple[int, ...], locations: list[int], own: int,
                         overlay: Overlay | None) -> list[float]:
        """Per location (a list indexed by location), the latest predicted arrival there of the outputs of
        subtasks ``indices`` (-inf if none; only ``locations`` are filled in)."""
        # Each output's transfer legs are computed once and shared by the locations: the legs of
        # physics.route (phone -> own AP is the uplink, another AP adds the backhaul; AP -> AP the backhaul),
        # summed in their order of travel.
        user = query.user
        subtasks = query.subtasks
        placed = overlay.placed if overlay is not None else None
        latest = [-math.inf] * (self.view.n_aps + 1)
        aps = locations[1:]
        bytes_per_token, overhead = self._bytes_per_token, self._overhead_bytes
        for d in indices:
            if placed is not None and d in placed:
                d_loc, d_finish = placed[d]
            else:
                sub = subtasks[d]
                d_loc, d_finish = sub.location, sub.est_finish
            nbytes = token_bytes(subtasks[d].pred_output_tokens, bytes_per_token, overhead)
            if d_loc == PHONE:
                arrival = d_finish + 0.0
                if arrival > latest[0]:
                    latest[0] = arrival
                if aps:
                    up = self._link_s(self._uplink(user), nbytes)
                    up_bh = up + self._backhaul_s(nbytes)
                    for loc in aps:
                        arrival = d_finish + (up if loc == own else up_bh)
                        if arrival > latest[loc]:
                            latest[loc] = arrival
            else:
                bh = self._backhaul_s(nbytes)
                down = self._link_s(self._downlink(user), nbytes)
                arrival = d_finish + (down if d_loc == own else bh + down)
                if arrival > latest[0]:
                    latest[0] = arrival
                for loc in aps:
                    arrival = d_finish + (0.0 if loc == d_loc else bh)
                    if arrival > latest[loc]:
                        latest[loc] = arrival
        return latest

    def subtask(self, query: Query, item: Item, overlay: Overlay | None = None) -> dict[int, Estimate]:
        """Finish time at each location of a subtask, given where its predecessors went."""
        phone_est, ap_ready, prefill_s, q_edge = self._subtask_ready(query, item, overlay)
        return self._with_edges(phone_est, ap_ready, prefill_s, item.pred_output_tokens, q_edge, overlay)

    def _subtask_ready(self, query: Query, item: Item,
                       overlay: Overlay | None) -> tuple[Estimate, list[tuple[int, float]], float, float]:
        """A subtask's phone estimate, when its inputs are at each usable AP, its prefill time and edge quality."""
        user = query.user
        release = query.arrival_time + self._planner_latency_s
        q_phone, q_edge = self._qualities(user, item.pred_difficulty)
        preds = item.preds
        pred_in = item.pred_input_tokens
        own = self.view.own_ap[user] + 1
        locations = self._usable(user)
        latest = self._latest_arrivals(query, preds, locations, own, overlay) if preds else None
        # the phone: no transfer of the context
        ready = release
        if latest is not None and latest[0] > ready:
            ready = latest[0]
        extra_s = overlay.phone_extra_s if overlay is not None else 0.0
        phone_est = Estimate(ready, self._phone_finish(user, ready, item, pred_in, extra_s), q_phone)
        prefill_s = pred_in / self._edge_prefill_tps
        if len(locations) == 1:
            return phone_est, [], prefill_s, q_edge
        context_bytes = self.token_bytes(self._context_tokens)
        attachment = query.spec.attachment_bytes if not preds else 0.0
        up_link = self._uplink(user)
        send_all = self._link_s(up_link, context_bytes + attachment)
        send_all_bh = send_all + self._backhaul_s(context_bytes + attachment)
        if attachment:
            send_ctx = self._link_s(up_link, context_bytes)
            send_ctx_bh = send_ctx + self._backhaul_s(context_bytes)
        ap_ready = []
        for loc in locations[1:]:
            carried = self._attachment_eta(query, loc, overlay) if attachment else None
            if carried is None:
                ready = release + (send_all if loc == own else send_all_bh)
            else:
                ready = release + (send_ctx if loc == own else send_ctx_bh)
                if carried > ready:
                    ready = carried
            if latest is not None and latest[loc] > ready:
                ready = latest[loc]
            ap_ready.append((loc, ready))
        return phone_est, ap_ready, prefill_s, q_edge

    def _attachment_eta(self, query: Query, loc: int, overlay: Overlay | None) -> float | None:
        if overlay is not None and loc in overlay.attachment_eta:
            return overlay.attachment_eta[loc]
        msg = query.attachment_msgs.get(loc)
        if msg is None:
            return None
        for item in msg.targets[:1]:
            return item.est_ready
        return None  # pragma: no cover

    def aggregation(self, query: Query, item: Item, overlay: Overlay | None = None) -> dict[int, Estimate]:
        """Answer-at-phone time at each location of the aggregation step."""
        phone_est, ap_ready, prefill_s, q_edge, down, bh_down, own = self._aggregation_ready(query, item, overlay)
        return self._with_edges(phone_est, ap_ready, prefill_s, item.pred_output_tokens, q_edge, overlay,
                                own, down, bh_down)

    def _with_edges(self, phone_est: Estimate, ap_ready: list[tuple[int, float]], prefill_s: float, pred_out: float,
                    q_edge: float, overlay: Overlay | None, own: int = -1, down_s: float = 0.0,
                    bh_down_s: float = 0.0) -> dict[int, Estimate]:
        """The phone's estimate plus each usable AP's projected finish, and the answer's trip back when the
        item answers the phone (``down_s`` from the own AP ``own``, ``bh_down_s`` from another)."""
        out = {PHONE: phone_est}
        edge_extra = overlay.edge_extra if overlay is not None else None
        for loc, ready in ap_ready:
            finish = self._edge_finish(loc - 1, ready, prefill_s, pred_out,
                                       edge_extra.get(loc - 1) if edge_extra is not None else None)
            finish += down_s if loc == own else bh_down_s
            out[loc] = Estimate(ready, finish, q_edge)
        return out

    def _aggregation_ready(self, query: Query, item: Item, overlay: Overlay | None
                           ) -> tuple[Estimate, list[tuple[int, float]], float, float, float, float, int]:
        """The aggregation's phone estimate, input arrival per usable AP, prefill time, edge quality, and the
        answer's trip to the phone from the own AP and from another AP; and the own AP's location."""
        user = query.user
        release = query.arrival_time + self._planner_latency_s
        q_phone, q_edge = self._qualities(user, item.pred_difficulty)
        pred_in, pred_out = item.pred_input_tokens, item.pred_output_tokens
        own = self.view.own_ap[user] + 1
        locations = self._usable(user)
        latest = self._latest_arrivals(query, range(len(query.subtasks)), locations, own, overlay)
        ready = latest[0] if latest[0] > release else release
        extra_s = overlay.phone_extra_s if overlay is not None else 0.0
        phone_est = Estimate(ready, self._phone_finish(user, ready, item, pred_in, extra_s), q_phone)
        prefill_s = pred_in / self._edge_prefill_tps
        if len(locations) == 1:
            return phone_est, [], prefill_s, q_edge, 0.0, 0.0, own
        down_bytes = self.token_bytes(pred_out)
        down = self._link_s(self._downlink(user), down_bytes)
        bh_down = self._backhaul_s(down_bytes) + down
        ap_ready = [(loc, latest[loc] if latest[loc] > release else release) for loc in locations[1:]]
        return phone_est, ap_ready, prefill_s, q_edge, down, bh_down, own

    def subtask_score(self, est: Estimate, n_subtasks: int) -> float:
        """Greedy's subtask objective: quality share minus weighted time to finish."""
        return est.quality / n_subtasks - self.latency_weight * (est.finish_s - self.view.now)

    def plan(self, query: Query, order: list[int]) -> PlanEstimate:
        """The list scheduler's decomposed plan for ``query``: predicted latency and quality, not committed.

        The same choices as taking the best of :meth:`subtask` (and the soonest of :meth:`aggregation`) at
        every step, but an edge whose lower bound (inputs there, prefill, then decoding alone at full speed)
        already loses to a location computed exactly is not projected: it cannot be chosen.
        """
        overlay = Overlay()
        now = self.view.now
        weight = self.latency_weight
        phone_prefill_tps = self.view.phone_prefill_tps[query.user]
        phone_decode_tps = self.view.phone_decode_tps[query.user]
        edge_prefill_tps = self._edge_prefill_tps
        r1 = self._edge_decode_tps
        has_attachment = query.spec.attachment_bytes > 0
        prune = weight >= 0.0  # scores fall as finish times grow
        k = len(query.subtasks)
        locations = [0] * (k + 1)
        qualities = []
        for i in order:
            item = query.subtasks[i]
            phone_est, ap_ready, prefill_s, q_edge = self._subtask_ready(query, item, overlay)
            pred_out = item.pred_output_tokens
            loc, est = PHONE, phone_est
            best = phone_est.quality / k - weight * (phone_est.finish_s - now)
            alone = prefill_s + pred_out / r1
            for bound, L, ready in sorted([(ready + alone, L, ready) for L, ready in ap_ready]):
                # a lower bound of the finish (with room for rounding) gives an upper bound of the score
                if prune and q_edge / k - weight * (bound - _bound_margin(bound) - now) < best:
                    continue
                finish = self._edge_finish(L - 1, ready, prefill_s, pred_out, overlay.edge_extra.get(L - 1))
                score = q_edge / k - weight * (finish - now)
                if score > best or (score == best and L < loc):  # the best score; the lowest location among equals
                    loc, best, est = L, score, Estimate(ready, finish, q_edge)
            locations[i] = loc
            qualities.append(est.quality)
            overlay.placed[i] = (loc, est.finish_s)
            if loc == PHONE:
                overlay.phone_extra_s += (item.pred_input_tokens / phone_prefill_tps
                                          + item.pred_output_tokens / phone_decode_tps)
            else:
                extra = overlay.edge_extra.get(loc - 1)
                if extra is None:
                    extra = overlay.edge_extra[loc - 1] = []
                extra.append((est.ready_s, item.pred_input_tokens / edge_prefill_tps, item.pred_output_tokens))
                if not item.preds and has_attachment and loc not in overlay.attachment_eta:
                    overlay.attachment_eta[loc] = est.ready_s
        agg = query.aggregation
        assert agg is not None
        phone_est, ap_ready, prefill_s, q_edge, down, bh_down, own = self._aggregation_ready(query, agg, overlay)
        loc, finish_best, quality_best = PHONE, phone_est.finish_s, phone_est.quality
        alone = prefill_s + agg.pred_output_tokens / r1
        for bound, L, ready in sorted([(ready + alone, L, ready) for L, ready in ap_ready]):
            back = down if L == own else bh_down
            if bound - _bound_margin(bound) + back > finish_best:
                continue  # cannot be the soonest
            finish = self._edge_finish(L - 1, ready, prefill_s, agg.pred_output_tokens, overlay.edge_extra.get(L - 1))
            finish += back
            if finish < finish_best or (finish == finish_best and L < loc):
                loc, finish_best, quality_best = L, finish, q_edge
        locations[k] = loc
        quality = decomposed_quality(quality_best, qualities)
        return PlanEstimate(finish_best - query.arrival_time, quality, tuple(locations))


def _bound_margin(t: float) -> float:
    """Slack for rounding in a projected time near ``t`` (s): far above the accumulated float error."""
    return 1e-9 * (1.0 + abs(t))
