"""The Python side of the compiled engine: :class:`CoreState` builds one episode's arrays from its
:class:`~offload_gym.sim.setup.EpisodeSetup` (its topology, phones and workload); :class:`CoreEngine` drives the
engine's placements from Python (the replay tests).

Nothing here is compiled, so editing this module does not invalidate numba's cache of the core
(:func:`offload_gym.core._jit._drop_stale_cache` leaves it out of its stamp).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from offload_gym.config import ScenarioConfig
from offload_gym.core._jit import JIT_ENABLED
from offload_gym.core.engine import (
    CF_ACCESS_SHAPE,
    CF_AGG_DIFF,
    CF_AGG_OUT,
    CF_BYTES_PER_TOKEN,
    CF_CONTEXT,
    CF_EDGE_ABILITY,
    CF_EDGE_DECODE,
    CF_EDGE_PREFILL,
    CF_FRAME,
    CF_KAPPA,
    CF_OVERHEAD,
    CF_P_DECODE_W,
    CF_P_IDLE_W,
    CF_P_PREFILL_W,
    CF_P_RX_W,
    CF_P_TX_W,
    CF_PLANNER_S,
    CF_R_DEADLINE,
    CF_R_DEADLINE_PENALTY,
    CF_R_ENERGY_WEIGHT,
    CF_R_FAILURE_PENALTY,
    CF_R_LATENCY_SCALE,
    CF_R_LATENCY_WEIGHT,
    CF_R_PRODUCT,
    CI_IMMEDIATE,
    CI_MAX_BATCH,
    CI_MAX_K,
    CI_N_APS,
    CI_N_USERS,
    CI_OUTAGE_FAILS,
    CI_QUERIES,
    DCF_MEMO_ROWS,
    EV_BACKHAUL_DONE,
    EV_PREFILL_DONE,
    EV_RELEASE,
    F_AP_DOWN,
    F_AP_UP,
    F_BACKGROUND,
    F_BACKHAUL,
    GF_BACKHAUL_DELAY,
    GF_BACKHAUL_RATE,
    GF_NOW,
    GI_ARRIVED,
    GI_BASE,
    GI_FINISHED,
    GI_N_COMPLETED,
    GI_N_EVENTS,
    GI_N_MSGS,
    GI_PLACE_SEQ,
    GI_REWARDED,
    GI_SCHEDULED,
    IF_EST_FINISH,
    IF_EST_READY,
    II_QUERY,
    K_AGGREGATION,
    K_SUBTASK,
    K_WHOLE,
    MI_ANSWER,
    MI_N_TARGETS,
    MI_QUERY,
    MI_TARGETS,
    N_CF,
    N_CI,
    N_GF,
    N_GI,
    N_IF,
    N_II,
    N_MF,
    N_QF,
    N_QI,
    QF_ARRIVAL,
    QF_ENERGY,
    QF_FINISH,
    QF_QUALITY,
    QI_AGG,
    QI_DONE,
    QI_FAILED,
    QI_N_DEFERRED,
    QI_N_ITEMS,
    QI_N_MSGS,
    QI_REDISPATCHED,
    QI_WHOLE,
    build_struct,
    clear_containers,
    events_of,
    new_queues,
    place_entry,
    queues_of,
    run_until_decision_entry,
    start_entry,
)
from offload_gym.core.state import make_struct
from offload_gym.core.wifi import dcf_params
from offload_gym.sim.setup import merged_outages

__all__ = ["MESSAGES_PER_QUERY", "QUEUE_SLOTS", "CoreEngine", "CoreState", "compiled_overload"]

#: message rows allocated per loaded query at first (a whole query sends 2, a decomposed one of K subtasks
#: about 2K + 2; the worst case is 33): the arrays double when an event could overflow them
#: (:meth:`CoreState.grow_messages`)
MESSAGES_PER_QUERY = 4

#: the slots of :attr:`CoreState.arrays` that hold the queues, in :data:`offload_gym.core.engine.QUEUE_KINDS`' order
#: (a row per cell, phone or edge: the count in column 0, then the values). A full queue is replaced inside the
#: compiled code by one with more room, so Python reads them through :meth:`CoreState.current_arrays`.
QUEUE_SLOTS = (14, 24, 27, 28, 31, 32)


#: the slots that a recycled state zeroes (:meth:`CoreState._recycle`): the event heap, the global ints, the
#: per-query, per-item and per-message rows, the cells', edges' and phones' counters and the estimates' scratch
_ZERO_SLOTS = (0, 2, 5, 6, 7, 8, 15, 16, 17, 18, 19, 20, 21, 29, 30, 33, 34, 35, 36, 46, 48, 49, 50, 51, 52, 53)

#: compiled overloads found by :func:`compiled_overload`, by kernel and argument types
_OVERLOADS: dict[tuple[Any, ...], Any] = {}


def _type_key(kernel: Any, value: Any) -> Any:
    """What numba's type of ``value`` depends on, cheaper to compute than the type: for an array its dtype,
    dimensions, layout and writability (``numba.core.typing.typeof._typeof_ndarray``), for a StructRef the type
    it carries; anything else the type itself."""
    if type(value) is np.ndarray:
        flags = value.flags
        return value.dtype, value.ndim, flags.c_contiguous, flags.f_contiguous, flags.writeable
    numba_type = getattr(value, "_numba_type_", None)
    return numba_type if numba_type is not None else kernel.typeof_pyval(value)


def compiled_overload(kernel: Any, args: tuple[Any, ...]) -> Any:
    """The compiled code that ``kernel(*args)`` runs, to call directly with arguments of the same types.

    numba's dispatcher types every argument of every call to pick its overload; typing an array costs about
    0.2 us, and a reset built the state (58 members) and bound the decision kernel (11 arguments): 0.5 ms a
    reset, a sixth of it (measured). The overload is the one the dispatcher itself would run, loaded from
    numba's cache or compiled as a first call would, and looked up once per process and argument types.
    Without the compiler the kernel itself."""
    if not JIT_ENABLED:
        return kernel
    key = (kernel, *(_type_key(kernel, a) for a in args))
    found = _OVERLOADS.get(key)
    if found is None:
        found = _OVERLOADS[key] = kernel.compile(tuple(kernel.typeof_pyval(a) for a in args))
    return found


class CoreState:
    """Every array of one episode's compiled engine; :attr:`arrays` is the tuple the kernels take."""

    def __init__(self, sim: Any, previous: CoreState | None = None) -> None:
        """Build from an episode's :class:`offload_gym.sim.setup.EpisodeSetup` (its topology, phones and workload).

        ``previous``: an earlier episode's state; its Wi-Fi model memo is kept when the Wi-Fi parameters and the
        station bound are the same (:attr:`memo_key`): the model's points do not depend on the episode."""
        cfg: ScenarioConfig = sim.cfg
        n_users, n_aps = cfg.topology.n_users, cfg.topology.n_aps
        n_queries = cfg.episode.queries
        wl = sim.workload
        #: the queries the workload has drawn: its first block, then one more per :meth:`grow`
        self.loaded = loaded = len(wl.arrival_s)
        #: the episode's id of query row 0 (the rows of earlier queries were dropped: :meth:`compact`); the arrays
        #: hold the rows of queries ``base..loaded-1``, and the core's query ids count from it
        self.base = 0
        max_k = cfg.max_subtasks
        w, e, en = cfg.wifi, cfg.edge, cfg.energy
        cf = np.zeros(N_CF)
        cf[CF_FRAME] = w.frame_bytes
        cf[CF_BYTES_PER_TOKEN] = w.bytes_per_token
        cf[CF_OVERHEAD] = w.message_overhead_bytes
        cf[CF_EDGE_PREFILL], cf[CF_EDGE_DECODE], cf[CF_KAPPA], cf[CF_EDGE_ABILITY] = (e.prefill_tps, e.decode_tps,
                                                                                     e.kappa, e.ability)
        cf[CF_PLANNER_S] = cfg.planner.latency_s
        cf[CF_CONTEXT] = cfg.workload.subtask_context_tokens
        cf[CF_AGG_OUT] = cfg.workload.aggregation_output_tokens
        cf[CF_AGG_DIFF] = cfg.workload.aggregation_difficulty
        cf[CF_P_PREFILL_W], cf[CF_P_DECODE_W] = en.prefill_power_w, en.decode_power_w
        cf[CF_P_TX_W], cf[CF_P_RX_W], cf[CF_P_IDLE_W] = en.tx_power_w, en.rx_power_w, en.idle_power_w
        r = cfg.reward
        cf[CF_R_PRODUCT] = 1.0 if r.kind == "product" else 0.0
        cf[CF_R_LATENCY_SCALE], cf[CF_R_LATENCY_WEIGHT] = r.latency_scale_s, r.latency_weight
        cf[CF_R_DEADLINE_PENALTY], cf[CF_R_DEADLINE] = r.deadline_penalty, r.deadline_s
        cf[CF_R_ENERGY_WEIGHT] = r.energy_weight
        cf[CF_R_FAILURE_PENALTY] = r.failure_penalty
        cv = w.access_delay_cv
        cf[CF_ACCESS_SHAPE] = 1.0 / (cv * cv) if cv > 0 else 0.0
        ci = np.zeros(N_CI, dtype=np.int64)
        ci[CI_QUERIES], ci[CI_MAX_BATCH], ci[CI_N_USERS], ci[CI_N_APS] = n_queries, e.max_batch, n_users, n_aps
        ci[CI_IMMEDIATE] = int(w.immediate_access and w.access == "edca")
        ci[CI_MAX_K] = max_k
        ci[CI_OUTAGE_FAILS] = int(cfg.faults.on_outage == "fail")
        gf = np.zeros(N_GF)
        gf[GF_BACKHAUL_DELAY], gf[GF_BACKHAUL_RATE] = w.backhaul_delay_s, w.backhaul_rate_bps
        gi = np.zeros(N_GI, dtype=np.int64)
        wl_f, wl_sub, wl_deps, wl_k, wl_structure = _block_arrays(wl, 0, loaded, max_k)
        phone_f = np.zeros((n_users, 5))  # run_end, unstarted_pred_s, prefill_tps, decode_tps, ability
        phone_i = np.zeros((n_users, 2), dtype=np.int64)  # running item (-1), version
        phone_i[:, 0] = -1
        for u, (prefill_tps, decode_tps, ability) in enumerate(sim.phone_params):
            phone_f[u, 2:5] = (prefill_tps, decode_tps, ability)
        self.n_queries = n_queries
        #: the scenario this state's arrays are laid out for (None once :meth:`grow` changed their rows): a reset
        #: with the same scenario object refills them instead of allocating (:meth:`_recycle`)
        self.layout_cfg: ScenarioConfig | None = cfg
        if previous is not None and getattr(previous, "layout_cfg", None) is cfg and previous.loaded == loaded:
            self._recycle(previous, sim, (gf, cf, ci, phone_f, phone_i, wl_f, wl_sub, wl_deps, wl_k, wl_structure))
            return
        # the previous episode's (read-only) parameters when the Wi-Fi config is the same: building them costs 0.6 ms
        params = previous.arrays[23] if previous is not None and previous.wifi == w else dcf_params(w)
        self.wifi = w
        memo_rows = DCF_MEMO_ROWS + 2 + w.background_stations + n_users + 1
        #: what a memo depends on: the Wi-Fi parameters and its size (the largest station count)
        self.memo_key = (params.tobytes(), memo_rows)
        if previous is not None and previous.memo_key == self.memo_key:
            memo = previous.arrays[22]
        else:
            memo = np.zeros((memo_rows, 7))
        self.msg_margin = 4 * (e.max_batch + 2) * (max_k + 2) + 64  # messages one event can create, at most
        rows = _query_rows(loaded, max_k, n_aps)
        mf, mi = _message_rows(loaded * MESSAGES_PER_QUERY + self.msg_margin, max_k)
        cell_msgs, phone_ready, edge_waiting, edge_ready, edge_decoding, edge_prefilling = new_queues(n_users, n_aps)
        self.arrays: tuple[Any, ...] = (
            np.empty((4 * (n_users + n_aps) + 16, 5)),  # 0 the event heap (it grows: the state then holds another)
            gf, gi, cf, ci,  # 1-4
            rows[5], rows[6],  # 5, 6 qi, qf
            mf, mi,  # 7, 8 per message (they grow: grow_messages)
            np.array(sim.up_rate_bps, dtype=np.float64),  # 9
            np.array(sim.down_rate_bps, dtype=np.float64),  # 10
            np.array(sim.own_ap, dtype=np.int64),  # 11
            np.array(sim.ap_up, dtype=np.int64),  # 12
            np.array(sim.background, dtype=np.int64),  # 13
            cell_msgs,  # 14 cell messages, in order
            np.zeros(n_aps, dtype=np.int64),  # 15 uploading phones per cell
            np.zeros(n_aps, dtype=np.int64),  # 16 downloads per cell
            np.zeros((n_aps, n_users), dtype=np.int64),  # 17 uploads per (cell, phone)
            rows[18],  # 18 messages per query
            np.zeros(n_aps, dtype=np.int64),  # 19 cell versions
            rows[20], rows[21],  # 20, 21 itf, iti
            memo,  # 22 the Wi-Fi model's memo (_dcf)
            params,  # 23
            phone_ready,  # 24 phone ready heaps (item ids = placement order; the queues grow)
            phone_f, phone_i,  # 25, 26
            edge_waiting,  # 27 edge waiting (placed, inputs not all there), in placement order
            edge_ready,  # 28 edge ready heaps
            np.zeros((n_aps, 3)),  # 29 edge progress, progress time, rate
            np.zeros((n_aps, 2), dtype=np.int64),  # 30 edge batch, version
            edge_decoding,  # 31 edge decoding heaps (by decode target, then item)
            edge_prefilling,  # 32 edge prefilling, in admission order
            rows[33], rows[34], rows[35], rows[36],  # 33-36 successors, items per query, finished, deferred
            wl_f, wl_sub, wl_deps,  # 37-39
            rows[40], rows[41],  # 40, 41 subtask item ids per query, attachment carriers per (query, location)
            wl_k,  # 42
            np.array(wl.arrival_s, dtype=np.float64), np.array(wl.user, dtype=np.int64),  # 43, 44
            self.msg_margin,  # 45
            rows[46],  # 46 scratch: per item, queued at its edge
            wl_structure,  # 47 per query: FAN_OUT, CHAIN or DAG
            # 48-53 the estimates' scratch (offload_gym.core.estimates.snapshots; the pending rows grow)
            np.zeros((n_aps, 3, e.max_batch + 1)), np.zeros((n_aps, 3, 64)), np.zeros((n_aps, 3), dtype=np.int64),
            np.zeros(64, dtype=np.int64), np.zeros((n_aps, 3, 1)), np.zeros(n_aps, dtype=np.int64),
            *_fault_arrays(sim),  # 54-56
            sim.rng_access,  # 57
            np.empty(256), np.empty(512), np.empty(256, dtype=np.int64),  # 58-60 the projections' scratch (grows)
            # 61, 62 the decision's scratch (engine.tmp_floats): what a plan of max_k subtasks takes, with room
            np.empty(256 + 16 * (n_aps + 1) * (max_k + 2)), np.empty(64 + 8 * (n_aps + 1) * (max_k + 2), dtype=np.int64),
        )
        #: what the kernels take: one reference over these arrays (offload_gym.core.state)
        self.struct = self._struct()

    def _recycle(self, previous: CoreState, sim: Any, fresh: tuple[np.ndarray, ...]) -> None:
        """Take over ``previous``'s arrays, queues and compiled state (same scenario, same rows), refilled as a new
        state of ``sim`` starts: allocating the members (then 61, the queues typed lists) and building the state
        cost about as much as drawing the episode (measured: 0.4 ms of a 1.8 ms reset). ``previous`` must not be
        stepped again: its episode is over (the env's reset replaces it). ``fresh``: this episode's new global,
        config, phone and workload arrays, copied in.

        ``tests/test_core_env.py`` checks that an episode after any other equals the same seed on a fresh env."""
        clear_containers(previous.struct)
        A = previous.current_arrays()
        self.wifi, self.memo_key, self.msg_margin = previous.wifi, previous.memo_key, previous.msg_margin
        gf, cf, ci, phone_f, phone_i, *block = fresh
        for slot, value in zip((1, 3, 4, 25, 26, 37, 38, 39, 42, 47), (gf, cf, ci, phone_f, phone_i, *block),
                               strict=True):
            A[slot][...] = value
        for slot in _ZERO_SLOTS:  # what the engine counts, queues and writes as it goes
            A[slot].fill(0)
        A[40].fill(-1)
        A[41].fill(-1)
        A[9][:] = sim.up_rate_bps
        A[10][:] = sim.down_rate_bps
        A[11][:] = sim.own_ap
        A[12][:] = sim.ap_up
        A[13][:] = sim.background
        A[43][:] = sim.workload.arrival_s
        A[44][:] = sim.workload.user
        faults, order, rates = _fault_arrays(sim)
        A[54][...] = faults
        A[55][...] = order
        A[56][...] = rates
        # the access delays' stream: the state's Generator (compiled code holds it) continues from the new one's
        rng = A[57]
        rng.bit_generator.state = sim.rng_access.bit_generator.state
        sim.rng_access = rng
        self.arrays, self.struct = tuple(A), previous.struct
        previous.layout_cfg = None

    def grow_messages(self) -> None:
        """Double the message arrays (the engine returned -2: fewer free rows than one event can fill); the
        kernels' state is rebuilt over them, and the call that returned -2 goes on with ``a = -2``."""
        arrays = self.current_arrays()
        mf, mi = _message_rows(2 * len(arrays[8]), int(self.arrays[4][CI_MAX_K]))
        self._rebuild(_with_old_rows(arrays, {7: mf, 8: mi}))

    def _rebuild(self, arrays: list[Any]) -> None:
        """The state over ``arrays`` (grown ones), the event heap carried over from the current state."""
        arrays[0] = _with_room(self._heap())
        self.arrays = tuple(arrays)
        self.struct = self._struct()

    def grow(self, sim: Any, drained: int = 0) -> tuple[int, int, np.ndarray]:
        """Load the workload's next block, after dropping the rows nothing needs any more (:meth:`compact`, which
        returns what it dropped): every per-query array gets the block's rows (the old rows copied), and the
        kernels' state is rebuilt over them (the event heap carried over)."""
        dropped = self.compact(drained)
        start, max_k, n_aps = self.loaded, int(self.arrays[4][CI_MAX_K]), int(self.arrays[4][CI_N_APS])
        wl = sim.workload
        wl.arrival(start)  # draws the next block (the same generators, in the order of the recorded trajectories)
        n = len(wl.arrival_s)
        self.loaded = start + n
        self.layout_cfg = None  # rows of another size than a new episode's
        arrays = _with_old_rows(self.current_arrays(), _query_rows(self.loaded - self.base, max_k, n_aps))
        for slot, new in zip((37, 38, 39, 42, 47), _block_arrays(wl, start, n, max_k), strict=True):
            arrays[slot] = np.concatenate([arrays[slot], new])
        arrays[43] = np.concatenate([arrays[43], np.asarray(wl.arrival_s, dtype=np.float64)])
        arrays[44] = np.concatenate([arrays[44], np.asarray(wl.user, dtype=np.int64)])
        self._rebuild(arrays)
        return dropped

    def compact(self, drained: int) -> tuple[int, int, np.ndarray]:
        """Drop the rows of the oldest queries once nothing needs them: every query below the first kept one
        (:attr:`base` moves up by it) has finished and been rewarded, the env has seen it (``drained``: how many
        of ``completed``'s queries it has read) and no event, queue, batch or message refers to it. The kept
        queries, items and messages are renumbered in their order (heaps stay heaps: ids only keep their
        order), every reference to them is rewritten, and the completed queries the env has seen leave
        ``completed``. Returns the queries and ``completed`` positions dropped, and the dropped positions' rows
        of ``(latency_s, failed, redispatched)`` in finishing order (what the episode's metrics keep).

        With it an episode keeps the rows of the queries in flight only (plus the block being loaded), so its
        length is not bounded by memory."""
        A = self.current_arrays()
        gi, qi, qf, mi, iti = A[2], A[5], A[6], A[8], A[21]
        n_items, n_msgs = int(gi[GI_PLACE_SEQ]), int(gi[GI_N_MSGS])
        n_completed, rewarded = int(gi[GI_N_COMPLETED]), int(gi[GI_REWARDED])
        seen = min(drained, rewarded)
        completed = A[35]
        none = np.zeros((0, 3))
        heap = self._heap()
        kinds = heap[:, 2].astype(np.int64)
        base = _first_needed_query(A, heap, seen)
        if base <= 0:
            return 0, 0, none
        order = completed[:seen]
        dropped = np.stack([qf[order, QF_FINISH] - qf[order, QF_ARRIVAL], qi[order, QI_FAILED].astype(float),
                            qi[order, QI_REDISPATCHED].astype(float)], axis=1)
        # the new ids: kept rows in their order
        kept_items = np.flatnonzero(iti[:n_items, II_QUERY] >= base)
        kept_msgs = np.flatnonzero(mi[:n_msgs, MI_QUERY] >= base)
        item_id = np.full(max(n_items, 1), -1, dtype=np.int64)
        item_id[kept_items] = np.arange(kept_items.size)
        msg_id = np.full(max(n_msgs, 1), -1, dtype=np.int64)
        msg_id[kept_msgs] = np.arange(kept_msgs.size)

        def items(v: np.ndarray) -> np.ndarray:
            return _renumbered(item_id, v)

        def msgs(v: np.ndarray) -> np.ndarray:
            return _renumbered(msg_id, v)

        rows = self.loaded - self.base - base  # query rows kept (of the loaded ones)
        max_k, n_aps = int(A[4][CI_MAX_K]), int(A[4][CI_N_APS])
        fresh = _query_rows(rows, max_k, n_aps)
        # per query: the rows from ``base`` on, their references renumbered
        q_rows = slice(base, base + rows)
        new_qi = qi[q_rows].copy()
        for col in (QI_WHOLE, QI_AGG):  # set once the item is placed (0 before: left as it is, never read)
            v = new_qi[:, col]
            placed = (v >= 0) & (v < n_items)
            placed[placed] = iti[v[placed], II_QUERY] == np.arange(base, base + rows)[placed]
            new_qi[placed, col] = item_id[v[placed]]
        fresh[5] = new_qi
        fresh[6] = qf[q_rows].copy()
        n_q_items, n_q_msgs, n_q_deferred = new_qi[:, QI_N_ITEMS], new_qi[:, QI_N_MSGS], new_qi[:, QI_N_DEFERRED]
        for slot, counts, renumber in ((34, n_q_items, items), (18, n_q_msgs, msgs)):
            old = A[slot][q_rows]
            used = np.arange(old.shape[1])[None, :] < counts[:, None]
            fresh[slot][:] = np.where(used, renumber(old), old)
        deferred = A[36][q_rows].copy()
        used = np.arange(deferred.shape[1])[None, :] < n_q_deferred[:, None]
        is_send = deferred[:, :, 0] == 1
        deferred[:, :, 1] = np.where(used & is_send, msgs(deferred[:, :, 1]),
                                     np.where(used, items(deferred[:, :, 1]), deferred[:, :, 1]))
        fresh[36] = deferred
        fresh[40] = items(A[40][q_rows])
        fresh[41] = msgs(A[41][q_rows])
        fresh[35][: n_completed - seen] = completed[seen:n_completed] - base
        # per item and per message: the kept rows, their references renumbered
        k = kept_items.size
        fresh[20][:k] = A[20][kept_items]
        new_iti = A[21][kept_items].copy()
        new_iti[:, II_QUERY] -= base
        fresh[21][:k] = new_iti
        fresh[33][:k] = A[33][kept_items]
        fresh[46][:k] = A[46][kept_items]
        mf, new_mi = np.zeros_like(A[7]), np.zeros_like(mi)
        km = kept_msgs.size
        mf[:km] = A[7][kept_msgs]
        kept_mi = mi[kept_msgs].copy()
        kept_mi[:, MI_QUERY] -= base
        answer = kept_mi[:, MI_ANSWER]
        kept_mi[:, MI_ANSWER] = np.where(answer >= 0, answer - base, answer)
        targets = kept_mi[:, MI_TARGETS:]
        used = np.arange(targets.shape[1])[None, :] < kept_mi[:, MI_N_TARGETS][:, None]
        kept_mi[:, MI_TARGETS:] = np.where(used, items(targets), targets)
        new_mi[:km] = kept_mi
        A[7], A[8] = mf, new_mi
        for slot, array in fresh.items():
            A[slot] = array
        for slot in (37, 38, 39, 42, 43, 44, 47):  # the workload's rows
            A[slot] = A[slot][q_rows].copy()
        # the phones' running items, the event heap and the queues
        phone_i = A[26].copy()
        phone_i[:, 0] = items(phone_i[:, 0])
        A[26] = phone_i
        heap = heap.copy()
        at = kinds == EV_PREFILL_DONE
        heap[at, 4] = item_id[heap[at, 4].astype(np.int64)]
        at = kinds == EV_BACKHAUL_DONE
        heap[at, 3] = msg_id[heap[at, 3].astype(np.int64)]
        at = kinds == EV_RELEASE
        heap[at, 3] -= base
        A[0] = _with_room(heap)
        for slot in QUEUE_SLOTS:  # messages in the cells' queues, items in the others (heaps stay heaps)
            A[slot] = _renumbered_queue(A[slot], msg_id if slot == 14 else item_id)
        # the counters
        gi = gi.copy()
        gi[GI_ARRIVED] -= base
        gi[GI_SCHEDULED] -= base
        gi[GI_FINISHED] -= base
        gi[GI_PLACE_SEQ] = k
        gi[GI_N_MSGS] = km
        gi[GI_N_COMPLETED] -= seen
        gi[GI_REWARDED] -= seen
        gi[GI_BASE] += base
        A[2] = gi
        ci = A[4].copy()
        ci[CI_QUERIES] -= base
        A[4] = ci
        self.base += base
        self.arrays = tuple(A)
        self.struct = self._struct()
        return base, seen, dropped

    def __getstate__(self) -> dict[str, Any]:
        """The arrays (the event heap's rows and the queues as the compiled state holds them), not the state."""
        state = self.__dict__.copy()
        arrays = self.current_arrays()
        arrays[0] = self._heap()
        state["arrays"] = arrays
        del state["struct"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        arrays = state.pop("arrays")
        self.__dict__.update(state)
        arrays[0] = _with_room(arrays[0])
        self.arrays = tuple(arrays)
        self.struct = self._struct()

    def current_arrays(self) -> list[Any]:
        """:attr:`arrays` with the queues the compiled state holds now (a queue that filled up was replaced by a
        larger one there; :data:`QUEUE_SLOTS`), as a list."""
        arrays = list(self.arrays)
        for slot, queue in zip(QUEUE_SLOTS, queues_of(self.struct), strict=True):
            arrays[slot] = queue
        return arrays

    def queue(self, slot: int, row: int) -> np.ndarray:
        """The values of row ``row`` of the queue in slot ``slot`` (:data:`QUEUE_SLOTS`), in their order (a view)."""
        Q = queues_of(self.struct)[QUEUE_SLOTS.index(slot)]
        return Q[row, 1 : 1 + Q[row, 0]]

    def _heap(self) -> np.ndarray:
        """The event heap's rows, in heap order (a copy)."""
        if JIT_ENABLED:
            return events_of(self.struct)
        return self.struct.events[: int(self.arrays[2][GI_N_EVENTS])].copy()

    def _struct(self) -> Any:
        """The state the kernels take (:mod:`offload_gym.core.state`), over :attr:`arrays`."""
        if not JIT_ENABLED:
            return make_struct(self.arrays)
        return compiled_overload(build_struct, self.arrays)(*self.arrays)


class CoreEngine:
    """The compiled engine behind a Python API of placement calls (for the replay tests; the env drives the core
    through :mod:`offload_gym.core.step` instead)."""

    def __init__(self, sim: Any) -> None:
        self.state = CoreState(sim)
        self.A = self.state.arrays  # what Python reads
        self.S = self.state.struct  # what the kernels take
        start_entry(self.S)

    @property
    def now(self) -> float:
        return float(self.A[1][GF_NOW])

    def run_until_decision(self) -> int:
        q = run_until_decision_entry(self.S)
        while q == -2:  # the message arrays were full: they grow, and the loop goes on from where it stopped
            self.state.grow_messages()
            self.A, self.S = self.state.arrays, self.state.struct
            q = run_until_decision_entry(self.S)
        return int(q)

    def pop_completed(self) -> list[int]:
        gi = self.A[2]
        n = int(gi[GI_N_COMPLETED])
        gi[GI_N_COMPLETED] = 0
        return self.A[35][:n].tolist()

    def place_whole(self, q: int, loc: int) -> int:
        return int(place_entry(self.S, K_WHOLE, q, 0, loc))

    def place_subtask(self, q: int, index: int, loc: int) -> int:
        return int(place_entry(self.S, K_SUBTASK, q, index, loc))

    def place_aggregation(self, q: int, loc: int) -> int:
        return int(place_entry(self.S, K_AGGREGATION, q, 0, loc))

    def set_estimate(self, item: int, ready_s: float, finish_s: float) -> None:
        """What the estimates said of a placed item (the estimates of later decisions read it)."""
        itf = self.A[20]
        itf[item, IF_EST_READY] = ready_s
        itf[item, IF_EST_FINISH] = finish_s

    def query_record(self, q: int) -> tuple[float, float, float]:
        """Finish time, quality and energy of query ``q``."""
        qf = self.A[6]
        return float(qf[q, QF_FINISH]), float(qf[q, QF_QUALITY]), float(qf[q, QF_ENERGY])


def _fault_arrays(sim: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The faults' table, in the order they are scheduled (the merged outages' down and up rows,
    :func:`offload_gym.sim.setup.merged_outages`, then the background and backhaul changes as the config lists
    them), and what re-associating a phone
    needs: its APs from the strongest (``EpisodeSetup.ap_preference``) and the PHY rates it would get with each
    (``EpisodeSetup.link``; 0 where it is out of coverage)."""
    faults = sim.cfg.faults
    rows: list[tuple[float, int, int, float, float]] = []
    outages = merged_outages([(o.ap, o.start_s, o.start_s + o.duration_s) for o in faults.ap_outages])
    for ap, start, end in outages:
        rows += [(start, F_AP_DOWN, ap, 0.0, 0.0), (end, F_AP_UP, ap, 0.0, 0.0)]
    rows += [(c.start_s, F_BACKGROUND, c.ap, float(c.stations), 0.0) for c in faults.background_changes]
    rows += [(c.start_s, F_BACKHAUL, -1, c.delay_s, c.rate_bps) for c in faults.backhaul_changes]
    table = np.array(rows, dtype=np.float64).reshape(len(rows), 5)
    n_users, n_aps = sim.n_users, sim.n_aps
    order = np.zeros((n_users, n_aps), dtype=np.int64)
    rates = np.zeros((n_users, n_aps, 2))
    if not faults.ap_outages:  # nobody re-associates
        return table, order, rates
    for u in range(n_users):
        order[u] = sim.ap_preference(u)
        for ap in range(n_aps):
            link = sim.link(u, ap)
            if link is not None:
                rates[u, ap] = link[1:]
    return table, order, rates


def _with_old_rows(arrays: list[Any], fresh: dict[int, np.ndarray]) -> list[Any]:
    """``arrays`` with each slot of ``fresh`` replaced by its (larger) array, the old rows copied to its start."""
    for slot, array in fresh.items():
        array[: len(arrays[slot])] = arrays[slot]
        arrays[slot] = array
    return arrays


def _first_needed_query(A: list[Any], heap: np.ndarray, seen: int) -> int:
    """The first query row a compaction keeps: the first unfinished query, or finished but not among the
    ``seen`` first of ``completed``, or referred to by an event, a queue, a batch or a message in a cell."""
    gi, qi, mi, iti, completed = A[2], A[5], A[8], A[21], A[35]
    arrived, n_completed = int(gi[GI_ARRIVED]), int(gi[GI_N_COMPLETED])
    unfinished = np.flatnonzero(qi[:arrived, QI_DONE] == 0)
    base = int(unfinished[0]) if unfinished.size else arrived
    if n_completed > seen:
        base = min(base, int(completed[seen:n_completed].min()))
    kinds = heap[:, 2].astype(np.int64)
    live_items = [int(x) for x in heap[kinds == EV_PREFILL_DONE, 4]]
    live_msgs = [int(x) for x in heap[kinds == EV_BACKHAUL_DONE, 3]]
    live_queries = [int(x) for x in heap[kinds == EV_RELEASE, 3]]
    for slot in QUEUE_SLOTS:  # the cells' messages; the phones' and edges' items
        live = live_msgs if slot == 14 else live_items
        for row in A[slot]:
            live.extend(row[1 : 1 + row[0]].tolist())
    live_items.extend(int(x) for x in A[26][:, 0] if x >= 0)  # the items the phones run
    if live_items:
        base = min(base, int(iti[np.array(live_items, dtype=np.int64), II_QUERY].min()))
    if live_msgs:
        base = min(base, int(mi[np.array(live_msgs, dtype=np.int64), MI_QUERY].min()))
    if live_queries:
        base = min(base, min(live_queries))
    return base


def _renumbered_queue(queue: np.ndarray, new_id: np.ndarray) -> np.ndarray:
    """A copy of a queue array (a row per cell, phone or edge: count, values), its values renumbered."""
    out = queue.copy()
    used = (np.arange(queue.shape[1])[None, :] >= 1) & (np.arange(queue.shape[1])[None, :] <= queue[:, :1])
    out[used] = _renumbered(new_id, queue[used])
    return out


def _renumbered(new_id: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``ids`` through the table ``new_id`` (old id -> new id); negative ones (none) and any outside the table
    (values in unused slots, never read) as they are."""
    inside = (ids >= 0) & (ids < len(new_id))
    return np.where(inside, new_id[np.clip(ids, 0, len(new_id) - 1)], ids)


def _with_room(heap: np.ndarray) -> np.ndarray:
    """An event heap's rows (in heap order) in an array with room to grow."""
    events = np.empty((max(2 * len(heap), 16), 5))
    events[: len(heap)] = heap
    return events


def _message_rows(n_msgs: int, max_k: int) -> tuple[np.ndarray, np.ndarray]:
    """The message arrays (``mf``, ``mi``) for ``n_msgs`` messages, as they start."""
    return np.zeros((n_msgs, N_MF)), np.zeros((n_msgs, MI_TARGETS + max_k + 1), dtype=np.int64)


def _query_rows(n_queries: int, max_k: int, n_aps: int) -> dict[int, np.ndarray]:
    """The per-query arrays (by slot of :attr:`CoreState.arrays`) for ``n_queries`` queries, as they start."""
    items = n_queries * (max_k + 2)
    msgs_per_query = 2 + max_k + max_k * max_k + 1
    return {
        5: np.zeros((n_queries, N_QI), dtype=np.int64),  # qi
        6: np.zeros((n_queries, N_QF)),  # qf
        18: np.zeros((n_queries, msgs_per_query), dtype=np.int64),  # messages per query
        20: np.zeros((items, N_IF)),  # itf
        21: np.zeros((items, N_II), dtype=np.int64),  # iti
        33: np.zeros((items, max_k + 1), dtype=np.int64),  # successors
        34: np.zeros((n_queries, max_k + 2), dtype=np.int64),  # items per query
        35: np.zeros(n_queries, dtype=np.int64),  # the finished queries, in finishing order (GI_N_COMPLETED)
        36: np.zeros((n_queries, max_k + 2, 2), dtype=np.int64),  # deferred actions (is send, id)
        40: np.full((n_queries, max_k), -1, dtype=np.int64),  # subtask item ids per query
        41: np.full((n_queries, n_aps + 1), -1, dtype=np.int64),  # attachment carriers per (query, location)
        46: np.zeros(items, dtype=np.bool_),  # scratch: per item, queued at its edge
    }


def _block_arrays(wl: Any, start: int, n: int, max_k: int) -> tuple[np.ndarray, ...]:
    """The workload's current block (queries ``start..start+n-1``) in the engine's layout: drawn so in compiled
    code, or from the queries' Python objects."""
    if wl.block is not None:
        return tuple(wl.block)
    return _workload_arrays(wl, n, max_k, start)


def _workload_arrays(wl: Any, n_queries: int, max_k: int, start: int = 0) -> tuple[np.ndarray, ...]:
    """Queries ``start..start+n_queries-1`` of the workload in the engine's layout, from their Python objects
    (corpus queries, the learned planner; :func:`offload_gym.core.workload.draw_block` draws the others in this
    layout directly)."""
    # the workload: per query (prompt, answer, difficulty, attachment, pred answer, pred difficulty,
    # pred aggregation output, pred aggregation difficulty); per subtask (out, diff, pred out, pred diff)
    wl_f = np.zeros((n_queries, 8))
    wl_sub = np.zeros((n_queries, max_k, 4))
    wl_deps = np.zeros((n_queries, max_k, max_k + 1), dtype=np.int64)
    wl_k = np.zeros(n_queries, dtype=np.int64)
    wl_structure = np.zeros(n_queries, dtype=np.int64)
    rows, sub_rows, dep_rows = [], [], []
    for q in range(n_queries):  # one pass in Python, then whole arrays (row writes cost more than the reads)
        spec, pred = wl.query(start + q)
        rows.append((spec.prompt_tokens, spec.answer_tokens, spec.difficulty, spec.attachment_bytes,
                     pred.answer_tokens, pred.difficulty, pred.aggregation_output_tokens, pred.aggregation_difficulty,
                     len(spec.deps), spec.structure))
        for i, deps in enumerate(spec.deps):
            sub_rows.append((q, i, spec.subtask_output_tokens[i], spec.subtask_difficulty[i],
                             pred.subtask_output_tokens[i], pred.subtask_difficulty[i]))
            for j, d in enumerate(deps):
                dep_rows.append((q, i, j, d))
    table = np.array(rows, dtype=np.float64).reshape(n_queries, 10)
    wl_f[:] = table[:, :8]
    wl_k[:] = table[:, 8]
    wl_structure[:] = table[:, 9]
    if sub_rows:
        sub = np.array(sub_rows, dtype=np.float64)
        qs, idx = sub[:, 0].astype(np.int64), sub[:, 1].astype(np.int64)
        wl_sub[qs, idx] = sub[:, 2:]
    if dep_rows:
        dep = np.array(dep_rows, dtype=np.int64)
        wl_deps[dep[:, 0], dep[:, 1], 1 + dep[:, 2]] = dep[:, 3]
        np.add.at(wl_deps[:, :, 0], (dep[:, 0], dep[:, 1]), 1)
    return wl_f, wl_sub, wl_deps, wl_k, wl_structure
