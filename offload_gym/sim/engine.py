"""Event-driven simulator core: phones, APs with edge servers, Wi-Fi cells, backhaul and queries.

No Gymnasium here. :class:`Simulator` is driven by a caller that, at every query arrival, places the
query (whole on a location, or decomposed with a location per subtask and for the aggregation step).
Time only advances in :meth:`Simulator.run_until_decision`, which processes events until the next
query arrives (returned) or everything has drained (``None``).

Locations are numbered ``0`` (the query's own phone) and ``1..A`` (AP ``j - 1``'s edge server).

Model (docs/model.md, sections Transfers and backhaul, Compute on phones and edges, Faults):

* Wi-Fi is flow level. In each AP's cell the contenders are the background stations, the phones with
  an active upload and the AP if it is sending; an upload gets ``S(n, R, frame) / n`` shared over the
  phone's concurrent uploads and the AP's share ``S(n, R_dl, frame) / n`` is split over its downloads.
  Every message first waits one access delay ``D(n', R, min(bytes, frame))`` (n' counts itself). Rates
  are recomputed whenever a transfer starts or ends.
* The backhaul is a fixed delay plus serialisation; work on a foreign AP goes phone -> own AP ->
  backhaul -> target and back the same way.
* Faults (``faults``): an AP that is down loses its work and the data through it; outages of one AP that
  overlap (or touch) are merged, so the AP is down over the union of their intervals.
* A phone runs one item at a time; an edge batches up to ``max_batch`` streams, each prefilling at
  ``prefill_tps`` then decoding at ``r(B) = r1 / (1 + kappa (B - 1))`` with ``B`` counting every admitted
  stream. Every location starts the earliest-placed item whose inputs have all arrived.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from offload_gym.config import ScenarioConfig
from offload_gym.sim import wifi as wifi_model
from offload_gym.sim.energy import PhoneEnergyParams, compute_energy_j, radio_energy_j
from offload_gym.sim.metrics import FinishedSummary
from offload_gym.sim.physics import PHONE, EventKind, FaultKind, Hop, HopKind, ItemKind, cell_share_bps, decode_rate_tps
from offload_gym.sim.physics import route as physics_route
from offload_gym.sim.physics import token_bytes as physics_token_bytes
from offload_gym.sim.planner import Prediction
from offload_gym.sim.quality import decomposed_quality, success_prob
from offload_gym.sim.setup import EpisodeSetup, merged_outages
from offload_gym.sim.view import SimView
from offload_gym.sim.workload import QuerySpec

__all__ = ["AGGREGATION", "FINISHED_LOG_LIMIT", "PHONE", "SUBTASK", "WHOLE", "FinishedSummary", "Item", "Message",
           "Query", "Simulator", "merged_outages"]

WHOLE, SUBTASK, AGGREGATION = ItemKind.WHOLE, ItemKind.SUBTASK, ItemKind.AGGREGATION

_ARRIVAL, _PHONE_DONE, _PREFILL_DONE, _DECODE_DONE = (EventKind.ARRIVAL, EventKind.PHONE_DONE, EventKind.PREFILL_DONE,
                                                      EventKind.DECODE_DONE)
_BSS, _BACKHAUL_DONE, _RELEASE, _FAULT = EventKind.CELL, EventKind.BACKHAUL_DONE, EventKind.RELEASE, EventKind.FAULT
_UP, _BACKHAUL = HopKind.UP, HopKind.BACKHAUL
_BYTES_EPS = 1e-6
_TOKENS_EPS = 1e-9


class Item:
    """One piece of LLM work: a whole query, a subtask or an aggregation step."""

    __slots__ = (
        "cancelled",
        "decode_target",
        "depth",
        "difficulty",
        "done",
        "est_finish",
        "est_ready",
        "finish_time",
        "index",
        "input_tokens",
        "kind",
        "location",
        "output_tokens",
        "pending",
        "pred_difficulty",
        "pred_duration_s",
        "pred_input_tokens",
        "pred_output_tokens",
        "preds",
        "query",
        "ready_time",
        "seq",
        "start_time",
        "succs",
    )

    def __init__(self, query: Query, kind: int, index: int, input_tokens: float, output_tokens: int,
                 difficulty: float, pred_input_tokens: float, pred_output_tokens: float, pred_difficulty: float) -> None:
        self.query = query
        self.kind = kind
        self.index = index
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.difficulty = difficulty
        self.pred_input_tokens = pred_input_tokens
        self.pred_output_tokens = pred_output_tokens
        self.pred_difficulty = pred_difficulty
        self.preds: tuple[int, ...] = ()
        self.succs: list[Item] = []
        self.depth = 0
        self.location = -1
        self.seq = -1
        self.pending = 0
        self.ready_time = math.nan
        self.start_time = math.nan
        self.finish_time = math.nan
        self.est_ready = math.nan
        self.est_finish = math.nan
        self.pred_duration_s = 0.0
        self.decode_target = 0.0
        self.done = False
        self.cancelled = False


class Query:
    """A query, its truth, its prediction and, once placed, its items."""

    __slots__ = (
        "aggregation",
        "arrival_time",
        "attachment_msgs",
        "decomposed",
        "deferred",
        "energy_j",
        "fail_reason",
        "failed",
        "finish_time",
        "items",
        "messages",
        "net_end",
        "net_start",
        "prediction",
        "qid",
        "quality",
        "redispatched",
        "released",
        "rx_s",
        "spec",
        "subtasks",
        "tx_s",
        "user",
        "whole",
    )

    def __init__(self, qid: int, user: int, arrival_time: float, spec: QuerySpec, prediction: Prediction) -> None:
        self.qid = qid
        self.user = user
        self.arrival_time = arrival_time
        self.spec = spec
        self.prediction = prediction
        self.decomposed = False
        self.whole: Item | None = None
        self.subtasks: list[Item] = []
        self.aggregation: Item | None = None
        self.items: list[Item] = []
        self.attachment_msgs: dict[int, Message] = {}
        self.finish_time = math.nan
        self.quality = math.nan
        self.released = True
        self.deferred: list[Any] = []
        self.messages: list[Message] = []
        self.redispatched = False
        self.failed = False
        self.fail_reason = ""
        # the phone's energy (issue: energy): compute so far, then the total once finished; its own airtime up and
        # down, and the span from its first transfer's start to its last's end (the radio awake for it)
        self.energy_j = 0.0
        self.tx_s = 0.0
        self.rx_s = 0.0
        self.net_start = math.nan
        self.net_end = math.nan


class Message:
    """Bytes travelling along a route of hops (:func:`offload_gym.sim.physics.route`)."""

    __slots__ = ("access_until", "answer", "cancelled", "delivered", "dst", "finish_at", "hop", "hops", "last", "nbytes",
                 "phy_rate", "query", "rate_bps", "remaining", "src", "targets")

    def __init__(self, nbytes: float, hops: list[Hop], targets: list[Item], answer: Query | None,
                 src: int = 0, dst: int = 0) -> None:
        self.nbytes = nbytes
        self.src = src
        self.dst = dst
        self.phy_rate = 0.0
        self.finish_at = math.inf  # scheduled completion of the current Wi-Fi hop
        self.cancelled = False
        self.hops = hops
        self.hop = 0
        self.targets = targets
        self.answer = answer
        self.remaining = nbytes
        self.access_until = 0.0
        self.last = 0.0
        self.rate_bps = 0.0
        self.delivered = False
        self.query: Query | None = None  #: the query whose data this is (set by the simulator)


@dataclass
class _Cell:
    """One AP's Wi-Fi contention domain."""

    msgs: list[Message] = field(default_factory=list)
    uploads: dict[int, int] = field(default_factory=dict)  # user -> active uploads
    downloads: int = 0
    version: int = 0


@dataclass
class _Edge:
    """One AP's edge server with continuous batching."""

    batch: int = 0  # admitted streams (prefilling + decoding)
    prefilling: dict[int, tuple[Item, float]] = field(default_factory=dict)  # seq -> (item, prefill end)
    decoding: list[tuple[float, int, Item]] = field(default_factory=list)  # heap of (target V, seq, item)
    ready: list[tuple[int, Item]] = field(default_factory=list)  # heap by placement seq
    waiting: dict[int, Item] = field(default_factory=dict)  # placed, inputs not all arrived
    progress: float = 0.0  # tokens decoded per stream since reset (virtual time)
    progress_time: float = 0.0
    rate_tps: float = 0.0
    version: int = 0


@dataclass
class _Phone:
    running: Item | None = None
    version: int = 0  # bumped when a running item is aborted (its completion event goes stale)
    run_end: float = 0.0
    ready: list[tuple[int, Item]] = field(default_factory=list)
    unstarted_pred_s: float = 0.0  # predicted compute of placed, not yet started items
    prefill_tps: float = 0.0
    decode_tps: float = 0.0
    ability: float = 0.0


#: a bound for :attr:`Simulator.finished_log` that callers needing only metrics can pass (``finished_log_limit``)
FINISHED_LOG_LIMIT = 1_000


@dataclass(frozen=True)
class CompletedQuery:
    """What the caller learns about a finished query."""

    query: Query
    latency_s: float
    quality: float


class Simulator:
    """The whole network for one episode. Build with a config and a seeded generator.

    ``finished_log_limit``: how many of the latest finished queries :attr:`finished_log` keeps (None: all;
    each record keeps its query, a few KB). :attr:`summary` has what episode metrics need in constant memory
    (plus 8 bytes a query for the latencies), whatever the limit.
    """

    def __init__(self, cfg: ScenarioConfig, rng: np.random.Generator, finished_log_limit: int | None = None,
                 compiled_workload: bool = False) -> None:
        self.cfg = cfg
        #: the topology, phones and workload this episode starts from (the compiled core starts from the same)
        self.setup = setup = EpisodeSetup(cfg, rng, compiled_workload=compiled_workload)
        self.rng_access = setup.rng_access  # the one stream drawn from during the episode (access delays)
        #: the phone's power draws (``energy``), for the energy model's own functions
        self.energy_params = PhoneEnergyParams(**asdict(cfg.energy))
        cv = cfg.wifi.access_delay_cv
        self._access_shape = 1.0 / (cv * cv) if cv > 0 else 0.0
        self.n_users = cfg.topology.n_users
        self.n_aps = cfg.topology.n_aps
        self.now = 0.0
        self._events: list[tuple[float, int, int, Any, Any]] = []
        self._event_seq = 0
        self._place_seq = 0
        self.queries_arrived = 0
        self._arrivals_scheduled = 0
        self.queries_finished = 0
        self.completed: list[CompletedQuery] = []
        #: the latest finished queries (at most ``finished_log_limit``), for inspection and tests
        self.finished_log: deque[CompletedQuery] = deque(maxlen=finished_log_limit)
        self.summary = FinishedSummary()
        self.edge_output_tokens = 0.0
        self.total_output_tokens = 0.0
        self.in_flight: dict[int, Query] = {}
        # the engine's own copies of what outages change (the setup keeps the start)
        self.ap_up = list(setup.ap_up)
        self.background = list(setup.background)
        self.backhaul_delay_s = cfg.wifi.backhaul_delay_s
        self.backhaul_rate_bps = cfg.wifi.backhaul_rate_bps
        self.redispatched_queries = 0
        self.failed_queries = 0
        self.ap_xy, self.user_xy, self.distance_m = setup.ap_xy, setup.user_xy, setup.distance_m
        # plain lists: indexed on every event, where numpy scalar access costs more than the arithmetic
        self.own_ap: list[int] = list(setup.own_ap)
        self.up_rate_bps: list[float] = list(setup.up_rate_bps)
        self.down_rate_bps: list[float] = list(setup.down_rate_bps)
        self.up_mcs: list[int] = list(setup.up_mcs)
        self.phone_params = setup.phone_params
        self.phones = [_Phone() for _ in range(self.n_users)]
        for phone, (prefill_tps, decode_tps, ability) in zip(self.phones, setup.phone_params, strict=True):
            phone.prefill_tps, phone.decode_tps, phone.ability = prefill_tps, decode_tps, ability
        #: the read-only view the estimator, the observation and the renderer read the state through
        self.view = SimView(self)
        self.cells = [_Cell() for _ in range(self.n_aps)]
        self.edges = [_Edge() for _ in range(self.n_aps)]
        #: the episode's arrivals, truths and predictions, drawn ahead (they never depend on the actions)
        self.workload = setup.workload
        self._dcf_cache: dict[tuple[int, float, float], wifi_model.DcfResult] = {}
        w = cfg.wifi
        self._dcf_kwargs = wifi_model.dcf_keywords(w)
        self._immediate_access = w.immediate_access and w.access == "edca"
        self._schedule_next_arrival()
        self._schedule_faults()

    # ------------------------------------------------------------------ topology
    def ap_preference(self, u: int) -> list[int]:
        """The APs from the strongest for phone ``u`` (ties: the lower index), the order it associates in."""
        return self.setup.ap_preference(u)

    def link(self, u: int, ap: int) -> tuple[int, float, float] | None:
        """``(uplink MCS, uplink PHY rate, downlink PHY rate)`` of phone ``u`` with AP ``ap``, or ``None`` where
        either direction is out of coverage."""
        return self.setup.link(u, ap)

    def _associate(self, u: int) -> None:
        """Associate phone ``u`` with the strongest AP that is up, or none when out of coverage."""
        self.own_ap[u], self.up_mcs[u], self.up_rate_bps[u], self.down_rate_bps[u] = self.setup.association(u,
                                                                                                           self.ap_up)

    # ------------------------------------------------------------------ events
    def _push(self, time: float, kind: int, a: Any = None, b: Any = None) -> None:
        self._event_seq += 1
        heapq.heappush(self._events, (time, self._event_seq, kind, a, b))

    def _schedule_next_arrival(self) -> None:
        if self._arrivals_scheduled >= self.cfg.episode.queries:
            return
        t, user = self.workload.arrival(self._arrivals_scheduled)
        self._arrivals_scheduled += 1
        self._push(t, _ARRIVAL, user)

    def run_until_decision(self) -> Query | None:
        """Process events until a query arrives (returned, to be placed) or all work has drained (None)."""
        events = self._events
        total = self.cfg.episode.queries
        while events:
            if self.queries_finished == total:
                break  # all work done: what remains are stale events and faults after the episode
            time, _, kind, a, b = heapq.heappop(events)
            if time < self.now - 1e-9:  # pragma: no cover - an invariant, not an input error
                raise RuntimeError(f"event time went backwards: {time} < {self.now}")
            self.now = max(self.now, time)
            if kind == _ARRIVAL:
                return self._arrive(a)
            if kind == _BSS:
                if b == self.cells[a].version:
                    self._cell_event(a)
            elif kind == _DECODE_DONE:
                if b == self.edges[a].version:
                    self._decode_done(a)
            elif kind == _PREFILL_DONE:
                self._prefill_done(a, b)
            elif kind == _PHONE_DONE:
                if b == self.phones[a].version:
                    self._phone_done(a)
            elif kind == _BACKHAUL_DONE:
                if not a.cancelled:
                    self._next_hop(a)
            elif kind == _RELEASE:
                self._release(a)
            elif kind == _FAULT:
                self._fault(a, b)
        if self.queries_finished != self.queries_arrived:  # pragma: no cover - conservation invariant
            raise RuntimeError(f"drained with {self.queries_arrived - self.queries_finished} queries unfinished")
        return None

    def _arrive(self, user: int) -> Query:
        spec, prediction = self.workload.query(self.queries_arrived)
        query = Query(self.queries_arrived, user, self.now, spec, prediction)
        self.queries_arrived += 1
        self.in_flight[query.qid] = query
        if self.cfg.planner.latency_s > 0:
            query.released = False
            self._push(self.now + self.cfg.planner.latency_s, _RELEASE, query)
        self._schedule_next_arrival()
        return query

    # ------------------------------------------------------------------ placement
    def reachable(self, user: int) -> bool:
        """Whether the phone can reach the APs (it is in coverage of an AP that is up)."""
        return self.own_ap[user] >= 0

    def usable_locations(self, user: int) -> list[int]:
        """Locations a new item of ``user`` may go to now: the phone, and every AP that is up if reachable."""
        if self.own_ap[user] < 0:
            return [PHONE]
        return [PHONE, *(a + 1 for a in range(self.n_aps) if self.ap_up[a])]

    def make_whole_item(self, query: Query) -> Item:
        spec, pred = query.spec, query.prediction
        return Item(query, WHOLE, 0, spec.prompt_tokens, spec.answer_tokens, spec.difficulty,
                    spec.prompt_tokens, pred.answer_tokens, pred.difficulty)

    def make_decomposed_items(self, query: Query) -> tuple[list[Item], Item]:
        """The subtask items (index order) and the aggregation item of a query, not yet placed."""
        spec, pred, wl = query.spec, query.prediction, self.cfg.workload
        subtasks: list[Item] = []
        for i, deps in enumerate(spec.deps):
            true_in = wl.subtask_context_tokens + sum(spec.subtask_output_tokens[d] for d in deps)
            pred_in = wl.subtask_context_tokens + sum(pred.subtask_output_tokens[d] for d in deps)
            item = Item(query, SUBTASK, i, true_in, spec.subtask_output_tokens[i], spec.subtask_difficulty[i],
                        pred_in, pred.subtask_output_tokens[i], pred.subtask_difficulty[i])
            item.preds = deps
            item.depth = 1 + max((subtasks[d].depth for d in deps), default=-1)
            for d in deps:
                subtasks[d].succs.append(item)
            subtasks.append(item)
        agg = Item(query, AGGREGATION, len(subtasks), sum(spec.subtask_output_tokens), wl.aggregation_output_tokens,
                   wl.aggregation_difficulty, sum(pred.subtask_output_tokens), pred.aggregation_output_tokens,
                   pred.aggregation_difficulty)
        agg.preds = tuple(range(len(subtasks)))
        for s in subtasks:
            s.succs.append(agg)
        return subtasks, agg

    def place_whole(self, query: Query, location: int, item: Item | None = None) -> Item:
        """Run the query whole at ``location`` (``item``: one made by :meth:`make_whole_item`, or a new one)."""
        item = item if item is not None else self.make_whole_item(query)
        query.whole = item
        query.subtasks, query.aggregation = [], None
        query.items = [item]
        self._assign(item, location)
        if location == PHONE:
            self._when_released(query, ("ready", item))
        else:
            nbytes = self._token_bytes(query.spec.prompt_tokens) + query.spec.attachment_bytes
            item.pending = 1
            self._when_released(query, ("send", self._message(query.user, PHONE, location, nbytes, [item], None)))
        return item

    def prepare_decomposition(self, query: Query) -> None:
        """Create the (unplaced) subtask and aggregation items so that estimates can plan with them."""
        query.subtasks, query.aggregation = self.make_decomposed_items(query)

    def begin_decomposition(self, query: Query) -> None:
        """Commit to running ``query`` decomposed; its subtasks are then placed one by one."""
        if not query.subtasks:
            self.prepare_decomposition(query)
        subtasks, agg = query.subtasks, query.aggregation
        assert agg is not None
        query.decomposed = True
        query.subtasks = subtasks
        query.aggregation = agg
        query.items = [*subtasks, agg]

    def place_subtask(self, query: Query, index: int, location: int) -> Item:
        """Place subtask ``index``; its predecessors must already be placed."""
        item = query.subtasks[index]
        for d in item.preds:
            if query.subtasks[d].location < 0:
                raise ValueError(f"subtask {index}: predecessor {d} must be placed first")
        self._assign(item, location)
        item.pending = len(item.preds)
        if location != PHONE:
            item.pending += 1
            nbytes = self._token_bytes(self.cfg.workload.subtask_context_tokens)
            needs_attachment = not item.preds and query.spec.attachment_bytes > 0
            carrier = query.attachment_msgs.get(location) if needs_attachment else None
            if needs_attachment and carrier is None:
                nbytes += query.spec.attachment_bytes  # the attachment travels once per query and location
            msg = self._message(query.user, PHONE, location, nbytes, [item], None)
            if needs_attachment and carrier is None:
                query.attachment_msgs[location] = msg
            elif carrier is not None and not carrier.delivered:
                item.pending += 1
                carrier.targets.append(item)
            self._when_released(query, ("send", msg))
        elif not item.preds:
            self._when_released(query, ("ready", item))
        return item

    def place_aggregation(self, query: Query, location: int) -> Item:
        agg = query.aggregation
        assert agg is not None
        self._assign(agg, location)
        agg.pending = len(agg.preds)
        return agg

    def _assign(self, item: Item, location: int) -> None:
        if location < 0 or location > self.n_aps:
            raise ValueError(f"location: {location} is not allowed; 0 (phone) or 1..{self.n_aps} (APs)")
        if location != PHONE and not self.reachable(item.query.user):
            raise ValueError(f"location: AP {location} is unreachable for phone {item.query.user} (out of coverage)")
        if location != PHONE and not self.ap_up[location - 1]:
            raise ValueError(f"location: AP {location} is down (faults.ap_outages)")
        item.location = location
        item.seq = self._place_seq
        self._place_seq += 1
        if location == PHONE:
            phone = self.phones[item.query.user]
            item.pred_duration_s = (item.pred_input_tokens / phone.prefill_tps
                                    + item.pred_output_tokens / phone.decode_tps)
            phone.unstarted_pred_s += item.pred_duration_s
        else:
            self.edges[location - 1].waiting[item.seq] = item

    # deferred actions honour the planner latency
    def _when_released(self, query: Query, action: tuple[Any, ...]) -> None:
        if query.released:
            self._do(query, action)
        else:
            query.deferred.append(action)

    def _release(self, query: Query) -> None:
        query.released = True
        actions, query.deferred = query.deferred, []
        for action in actions:
            self._do(query, action)

    def _do(self, query: Query, action: tuple[Any, ...]) -> None:
        if action[0] == "ready":
            self._input_arrived(action[1])
        else:
            self._start_hop(action[1])

    def _token_bytes(self, tokens: float) -> float:
        w = self.cfg.wifi
        return physics_token_bytes(tokens, w.bytes_per_token, w.message_overhead_bytes)

    # ------------------------------------------------------------------ routing and messages
    def route(self, user: int, src: int, dst: int) -> list[Hop]:
        """Hops from location ``src`` to ``dst`` for a query of ``user``."""
        return physics_route(self.own_ap[user], user, src, dst)

    def _message(self, user: int, src: int, dst: int, nbytes: float, targets: list[Item],
                 answer: Query | None) -> Message:
        msg = Message(nbytes, self.route(user, src, dst), targets, answer, src, dst)
        query = answer if answer is not None else targets[0].query
        query.messages.append(msg)
        msg.query = query
        return msg

    def _send(self, user: int, src: int, dst: int, nbytes: float, targets: list[Item], answer: Query | None) -> Message:
        msg = self._message(user, src, dst, nbytes, targets, answer)
        self._start_hop(msg)
        return msg

    def _start_hop(self, msg: Message) -> None:
        hop = msg.hops[msg.hop]
        if hop[0] == _BACKHAUL:
            self._push(self.now + self.backhaul_delay_s + 8.0 * msg.nbytes / self.backhaul_rate_bps, _BACKHAUL_DONE, msg)
            return
        direction, ap, user = hop
        query = msg.query
        if query is not None and query.net_start != query.net_start:  # nan: the query's first transfer
            query.net_start = self.now
        cell = self.cells[ap]
        self._cell_advance(cell)
        msg.remaining = msg.nbytes
        msg.last = self.now
        if direction == _UP:
            cell.uploads[user] = cell.uploads.get(user, 0) + 1
            rate = self.up_rate_bps[user]
        else:
            cell.downloads += 1
            rate = self.down_rate_bps[user]
        msg.phy_rate = rate  # the link rate when the hop started (a later re-association does not change it)
        cell.msgs.append(msg)
        n_own = self.cell_contenders(ap)
        access = self.access_delay_s(n_own, rate, min(msg.nbytes, self.cfg.wifi.frame_bytes))
        if self._access_shape:  # a gamma draw with the model's mean and the configured spread
            access = float(self.rng_access.gamma(self._access_shape, access / self._access_shape))
        msg.access_until = self.now + access
        self._cell_reschedule(ap)

    def _next_hop(self, msg: Message) -> None:
        msg.hop += 1
        if msg.hop < len(msg.hops):
            self._start_hop(msg)
            return
        msg.delivered = True
        if msg.answer is not None:
            self._finish_query(msg.answer)
        for item in msg.targets:
            self._input_arrived(item)

    def dcf(self, n: int, rate_bps: float, payload_bytes: float) -> wifi_model.DcfResult:
        key = (n, rate_bps, payload_bytes)
        res = self._dcf_cache.get(key)
        if res is None:
            res = wifi_model.dcf_saturation(n, phy_rate_bps=rate_bps, payload_bytes=payload_bytes, **self._dcf_kwargs)
            self._dcf_cache[key] = res
        return res

    def access_delay_s(self, n: int, rate_bps: float, payload_bytes: float) -> float:
        """What a message's first frame waits for the channel with ``n`` contenders (itself included): the
        model's mean access delay, or, alone in the cell with ``wifi.immediate_access``, one frame exchange."""
        return wifi_model.message_access_s(self.dcf(n, rate_bps, payload_bytes), self._immediate_access)

    def cell_contenders(self, ap: int) -> int:
        """Stations contending in AP ``ap``'s cell now: background + uploading phones + the AP if sending."""
        cell = self.cells[ap]
        return self.background[ap] + len(cell.uploads) + (1 if cell.downloads else 0)

    def _cell_advance(self, cell: _Cell) -> None:
        now = self.now
        for m in cell.msgs:
            start = m.last if m.last > m.access_until else m.access_until
            if now > start:
                m.remaining -= m.rate_bps * (now - start) / 8.0
            m.last = now

    def _cell_reschedule(self, ap: int) -> None:
        """Recompute every transfer's rate in the cell and schedule the next completion.

        A message drains only after its access delay, so its completion is
        ``max(now, access end) + remaining / rate``; access ends need no event of their own.
        """
        cell = self.cells[ap]
        cell.version += 1
        if not cell.msgs:
            return
        n = self.cell_contenders(ap)
        frame = self.cfg.wifi.frame_bytes
        now = self.now
        next_time = math.inf
        uploads, downloads = cell.uploads, cell.downloads
        for m in cell.msgs:
            direction, _, user = m.hops[m.hop]
            sharing = uploads[user] if direction == _UP else downloads
            m.rate_bps = cell_share_bps(self.dcf(n, m.phy_rate, frame).throughput_bps, n, sharing)
            start = m.access_until if m.access_until > now else now
            t = start + 8.0 * (m.remaining if m.remaining > 0.0 else 0.0) / m.rate_bps
            m.finish_at = t
            if t < next_time:
                next_time = t
        self._push(next_time, _BSS, ap, cell.version)

    def _cell_event(self, ap: int) -> None:
        cell = self.cells[ap]
        self._cell_advance(cell)
        # done when its scheduled completion has come: comparing times, not leftover bytes, guarantees progress
        # when a few bytes would take less than the clock's resolution
        now = self.now
        finished = [m for m in cell.msgs
                    if m.finish_at <= now or (now >= m.access_until and m.remaining <= _BYTES_EPS)]
        for m in finished:
            self._cell_remove(cell, m)
        self._cell_reschedule(ap)
        for m in finished:
            self._next_hop(m)

    def _cell_remove(self, cell: _Cell, m: Message) -> None:
        """Take ``m`` out of the cell (done, or cancelled after ``_cell_advance``); count the phone's airtime."""
        cell.msgs.remove(m)
        direction, _, user = m.hops[m.hop]
        query = m.query
        if query is not None:
            sent = m.nbytes - m.remaining if m.remaining > 0.0 else m.nbytes
            airtime = 8.0 * sent / m.phy_rate if m.phy_rate > 0.0 else 0.0
            if direction == _UP:
                query.tx_s += airtime
            else:
                query.rx_s += airtime
            query.net_end = self.now
        if direction == _UP:  # the cell's count of this phone's uploads, or of the AP's downloads
            left = cell.uploads[user] - 1
            if left:
                cell.uploads[user] = left
            else:
                del cell.uploads[user]
        else:
            cell.downloads -= 1

    # ------------------------------------------------------------------ compute
    def _input_arrived(self, item: Item) -> None:
        if item.cancelled:
            return
        item.pending -= 1
        if item.pending > 0:
            return
        item.ready_time = self.now
        if item.location == PHONE:
            phone = self.phones[item.query.user]
            heapq.heappush(phone.ready, (item.seq, item))
            self._phone_try_start(item.query.user)
        else:
            edge = self.edges[item.location - 1]
            del edge.waiting[item.seq]
            heapq.heappush(edge.ready, (item.seq, item))
            self._edge_try_admit(item.location - 1)

    def _phone_try_start(self, user: int) -> None:
        phone = self.phones[user]
        if phone.running is not None or not phone.ready:
            return
        _, item = heapq.heappop(phone.ready)
        phone.running = item
        phone.unstarted_pred_s -= item.pred_duration_s
        item.start_time = self.now
        duration = item.input_tokens / phone.prefill_tps + item.output_tokens / phone.decode_tps
        phone.run_end = self.now + duration
        self._push(phone.run_end, _PHONE_DONE, user, phone.version)

    def _phone_energy_j(self, item: Item, elapsed_s: float) -> float:
        """Energy of ``elapsed_s`` seconds of ``item`` on its phone: prefill first, then decode."""
        prefill_s = item.input_tokens / self.phones[item.query.user].prefill_tps
        prefilled_s = elapsed_s if elapsed_s <= prefill_s else prefill_s
        return compute_energy_j(prefilled_s, elapsed_s - prefilled_s, self.energy_params)

    def _phone_done(self, user: int) -> None:
        phone = self.phones[user]
        item = phone.running
        assert item is not None
        item.query.energy_j += self._phone_energy_j(item, phone.run_end - item.start_time)
        phone.running = None
        self._item_done(item)
        self._phone_try_start(user)

    def edge_rate_tps(self, batch: int) -> float:
        e = self.cfg.edge
        return decode_rate_tps(e.decode_tps, e.kappa, batch)

    def edge_progress_now(self, e: int) -> float:
        edge = self.edges[e]
        return edge.progress + edge.rate_tps * (self.now - edge.progress_time)

    def _edge_retime(self, e: int) -> None:
        """Bring the edge's decode progress to now, set the rate for its batch, reschedule the next finish."""
        edge = self.edges[e]
        edge.progress = self.edge_progress_now(e)
        edge.progress_time = self.now
        edge.rate_tps = self.edge_rate_tps(edge.batch)
        edge.version += 1
        if edge.decoding:
            target = edge.decoding[0][0]
            self._push(self.now + max(target - edge.progress, 0.0) / edge.rate_tps, _DECODE_DONE, e, edge.version)

    def _edge_try_admit(self, e: int) -> None:
        edge = self.edges[e]
        admitted = False
        while edge.ready and edge.batch < self.cfg.edge.max_batch:
            _, item = heapq.heappop(edge.ready)
            edge.batch += 1
            item.start_time = self.now
            end = self.now + item.input_tokens / self.cfg.edge.prefill_tps
            edge.prefilling[item.seq] = (item, end)
            self._push(end, _PREFILL_DONE, e, item)
            admitted = True
        if admitted:
            self._edge_retime(e)

    def _prefill_done(self, e: int, item: Item) -> None:
        edge = self.edges[e]
        if item.cancelled:
            return  # removed by a fault while prefilling
        del edge.prefilling[item.seq]
        item.decode_target = self.edge_progress_now(e) + item.output_tokens
        heapq.heappush(edge.decoding, (item.decode_target, item.seq, item))
        self._edge_retime(e)

    def _decode_done(self, e: int) -> None:
        edge = self.edges[e]
        progress = self.edge_progress_now(e)
        # the event was scheduled for the stream on top (its version matched): it is done even when the
        # clock's resolution left a sliver of tokens, which would otherwise reschedule the same event forever
        done: list[Item] = [heapq.heappop(edge.decoding)[2]] if edge.decoding else []
        while edge.decoding and edge.decoding[0][0] <= progress + _TOKENS_EPS:
            done.append(heapq.heappop(edge.decoding)[2])
        edge.batch -= len(done)
        self._edge_retime(e)
        for item in done:
            self.edge_output_tokens += item.output_tokens
            self._item_done(item)
        self._edge_try_admit(e)

    def _item_done(self, item: Item) -> None:
        item.done = True
        item.finish_time = self.now
        query = item.query
        self.total_output_tokens += item.output_tokens
        if item.kind == SUBTASK:
            for succ in item.succs:
                if succ.location == item.location:
                    self._input_arrived(succ)
                else:
                    nbytes = self._token_bytes(item.output_tokens)
                    self._send(query.user, item.location, succ.location, nbytes, [succ], None)
            return
        # a whole query or the aggregation: the answer goes back to the phone
        if item.location == PHONE:
            self._finish_query(query)
        else:
            self._send(query.user, item.location, PHONE, self._token_bytes(item.output_tokens), [], query)

    def ability(self, user: int, location: int) -> float:
        return self.phones[user].ability if location == PHONE else self.cfg.edge.ability

    def _finish_query(self, query: Query) -> None:
        query.finish_time = self.now
        user = query.user
        if query.decomposed and not query.redispatched:
            assert query.aggregation is not None
            subs = [success_prob(self.ability(user, s.location), s.difficulty) for s in query.subtasks]
            agg = query.aggregation
            quality = decomposed_quality(success_prob(self.ability(user, agg.location), agg.difficulty), subs)
        else:
            assert query.whole is not None
            quality = success_prob(self.ability(user, query.whole.location), query.whole.difficulty)
        self._record(query, quality)

    def _record(self, query: Query, quality: float) -> None:
        query.quality = quality
        idle_s = 0.0
        if query.net_start == query.net_start:  # it used the network: the radio stayed awake for it
            end = self.now if query.failed else query.net_end
            awake_s = end - query.net_start - query.tx_s - query.rx_s
            idle_s = awake_s if awake_s > 0.0 else 0.0
        query.energy_j += radio_energy_j(query.tx_s, query.rx_s, idle_s, self.energy_params)
        del self.in_flight[query.qid]
        self.queries_finished += 1
        record = CompletedQuery(query, self.now - query.arrival_time, quality)
        self.completed.append(record)
        self.finished_log.append(record)
        self.summary.add(record.latency_s, quality, query.decomposed, query.failed, query.redispatched, query.energy_j)

    # ------------------------------------------------------------------ invariants
    def _compute_lower_bound_s(self, item: Item, user: int, location: int) -> float:
        if location == PHONE:
            phone = self.phones[user]
            return item.input_tokens / phone.prefill_tps + item.output_tokens / phone.decode_tps
        edge = self.cfg.edge
        return item.input_tokens / edge.prefill_tps + item.output_tokens / edge.decode_tps

    def _wifi_lower_bound_s(self, nbytes: float) -> float:
        """One message alone on the channel at the fastest PHY rate of the configuration."""
        w = self.cfg.wifi
        best = wifi_model.phy_rate_bps(len(wifi_model.HE_RATES_20MHZ_MBPS) - 1, w.bandwidth_mhz, w.spatial_streams)
        alone = self.dcf(1, best, w.frame_bytes)
        return self.access_delay_s(1, best, min(nbytes, w.frame_bytes)) + 8.0 * nbytes / alone.throughput_bps

    def latency_lower_bound_s(self, query: Query) -> float:
        """A no-contention, no-queue lower bound of the query's latency for where it ran (0 if it failed)."""
        if query.failed:
            return 0.0
        bound = self.cfg.planner.latency_s
        if query.redispatched or not query.decomposed:
            item = query.whole
            assert item is not None
            bound += self._compute_lower_bound_s(item, query.user, item.location)
            if item.location != PHONE and not query.redispatched:
                bound += self._wifi_lower_bound_s(self._token_bytes(item.input_tokens) + query.spec.attachment_bytes)
                bound += self._wifi_lower_bound_s(self._token_bytes(item.output_tokens))
            return bound
        agg = query.aggregation
        assert agg is not None
        slowest = max(self._compute_lower_bound_s(s, query.user, s.location) for s in query.subtasks)
        return bound + slowest + self._compute_lower_bound_s(agg, query.user, agg.location)

    # ------------------------------------------------------------------ faults
    def _schedule_faults(self) -> None:
        faults = self.cfg.faults
        for ap, start, end in merged_outages([(o.ap, o.start_s, o.start_s + o.duration_s) for o in faults.ap_outages]):
            self._push(start, _FAULT, FaultKind.AP_DOWN, ap)
            self._push(end, _FAULT, FaultKind.AP_UP, ap)
        for change in faults.background_changes:
            self._push(change.start_s, _FAULT, FaultKind.BACKGROUND, change)
        for change in faults.backhaul_changes:
            self._push(change.start_s, _FAULT, FaultKind.BACKHAUL, change)

    def _fault(self, kind: FaultKind, data: Any) -> None:
        if kind == FaultKind.AP_DOWN:
            self._ap_down(int(data))
        elif kind == FaultKind.AP_UP:
            self._ap_up(int(data))
        elif kind == FaultKind.BACKGROUND:
            aps = range(self.n_aps) if data.ap < 0 else (data.ap,)
            for ap in aps:
                self._cell_advance(self.cells[ap])
                self.background[ap] = data.stations
                self._cell_reschedule(ap)
        else:  # backhaul: hops that start from now on
            self.backhaul_delay_s, self.backhaul_rate_bps = data.delay_s, data.rate_bps

    def _ap_down(self, ap: int) -> None:
        """AP ``ap`` fails: its work and the data through it are lost; its phones re-associate."""
        self.ap_up[ap] = False
        for query in [q for q in self.in_flight.values() if self._touches(q, ap)]:
            self._outage_hit(query, ap)
        stranded = []
        for u in range(self.n_users):
            if self.own_ap[u] == ap:
                self._associate(u)
                if self.own_ap[u] < 0:
                    stranded.append(u)
        # a phone left out of coverage cannot get back what still runs or travels on the APs
        for query in [q for q in self.in_flight.values() if q.user in stranded and self._uses_network(q)]:
            self._outage_hit(query, ap)

    def _ap_up(self, ap: int) -> None:
        self.ap_up[ap] = True
        for u in range(self.n_users):  # back to the strongest AP
            self._associate(u)

    def _outage_hit(self, query: Query, ap: int) -> None:
        if query.net_start == query.net_start:  # the phone waited for the network until now
            query.net_end = self.now
        self._cancel_work(query)
        if self.cfg.faults.on_outage == "fail":
            query.failed = True
            query.fail_reason = f"ap_outage:{ap}"
            query.finish_time = self.now
            self.failed_queries += 1
            self._record(query, 0.0)
        else:
            self._redispatch(query)

    @staticmethod
    def _uses_network(query: Query) -> bool:
        """Whether the query has unfinished work off the phone or undelivered messages."""
        return (any(i.location != PHONE and not i.done and not i.cancelled for i in query.items)
                or any(not m.delivered and not m.cancelled for m in query.messages))

    def _touches(self, query: Query, ap: int) -> bool:
        """Whether the query has unfinished work at AP ``ap`` or undelivered data routed through it.

        Cancelled items and messages (an earlier outage's) are not work: a redispatched query runs on its
        phone only, so a later outage never restarts it (a query is redispatched at most once).
        """
        if query.redispatched:
            return False
        loc = ap + 1
        if any(item.location == loc and not item.done and not item.cancelled for item in query.items):
            return True
        for m in query.messages:
            if m.delivered or m.cancelled:
                continue
            if m.src == loc or m.dst == loc or any(h[0] != _BACKHAUL and h[1] == ap for h in m.hops[m.hop:]):
                return True
        return False

    def _cancel_work(self, query: Query) -> None:
        """Remove every unfinished item and undelivered message of ``query`` from the network."""
        for m in query.messages:
            if m.delivered or m.cancelled:
                continue
            m.cancelled = True
            if m.hop < len(m.hops) and m.hops[m.hop][0] != _BACKHAUL:
                ap = m.hops[m.hop][1]
                cell = self.cells[ap]
                if m in cell.msgs:
                    self._cell_advance(cell)
                    self._cell_remove(cell, m)
                    self._cell_reschedule(ap)
        query.deferred = []  # a query still in its planner time keeps its release event
        for item in query.items:
            if item.done or item.location < 0:
                continue
            item.cancelled = True
            if item.location == PHONE:
                self._cancel_on_phone(item)
            else:
                self._cancel_on_edge(item)

    def _cancel_on_phone(self, item: Item) -> None:
        user = item.query.user
        phone = self.phones[user]
        if phone.running is item:
            item.query.energy_j += self._phone_energy_j(item, self.now - item.start_time)
            phone.running = None
            phone.version += 1
            self._phone_try_start(user)
            return
        phone.unstarted_pred_s -= item.pred_duration_s
        phone.ready = [entry for entry in phone.ready if entry[1] is not item]
        heapq.heapify(phone.ready)

    def _cancel_on_edge(self, item: Item) -> None:
        e = item.location - 1
        edge = self.edges[e]
        edge.waiting.pop(item.seq, None)
        if any(entry[1] is item for entry in edge.ready):
            edge.ready = [entry for entry in edge.ready if entry[1] is not item]
            heapq.heapify(edge.ready)
            return
        if item.seq in edge.prefilling:
            del edge.prefilling[item.seq]
        elif any(entry[2] is item for entry in edge.decoding):
            edge.decoding = [entry for entry in edge.decoding if entry[2] is not item]
            heapq.heapify(edge.decoding)
        else:
            return
        edge.batch -= 1
        self._edge_retime(e)
        self._edge_try_admit(e)

    def _redispatch(self, query: Query) -> None:
        """Run the query again, whole, on its own phone from now (the prompt is still there); at most once."""
        if query.redispatched:  # pragma: no cover - _touches and _uses_network exclude redispatched queries
            raise RuntimeError(f"query {query.qid} redispatched twice")
        self.redispatched_queries += 1
        query.redispatched = True
        item = self.make_whole_item(query)
        query.whole = item
        query.items = [*query.items, item]
        self._assign(item, PHONE)
        item.pending = 1
        self._when_released(query, ("ready", item))

    def pop_completed(self) -> list[CompletedQuery]:
        out, self.completed = self.completed, []
        return out
