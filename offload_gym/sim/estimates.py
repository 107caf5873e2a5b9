"""Model-based estimates from predicted tokens only: what a scheduler can know at decision time.

For an item about to be placed, :class:`Estimator` predicts, per location, when its inputs arrive,
when it finishes and how likely it succeeds, using the current network state (contention, phone
queues, each edge's batch projected over the predicted remaining tokens of its running, queued and
in-transit streams) and the placements already made for the same query. :meth:`Estimator.plan`
runs the list scheduler over a query's subtasks on a scratch overlay, without committing anything.

The estimates never read true token counts of work that has not run yet.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

from offload_gym.sim.engine import PHONE, Item, Query, Simulator
from offload_gym.sim.quality import decomposed_quality, success_prob

__all__ = ["Estimate", "Estimator", "Overlay", "PlanEstimate", "project_batch_finish", "subtask_order"]


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
    heappush, heappop = heapq.heappush, heapq.heappop
    t = now
    progress = 0.0  # tokens decoded per stream since ``now``
    dheap = [(rem, -1) for rem in decoding]
    heapq.heapify(dheap)
    pheap = [(end, dec, -1) for end, dec in prefilling]
    heapq.heapify(pheap)
    waiting = list(range(len(pending)))
    batch = len(dheap) + len(pheap)
    inf = math.inf
    while True:
        next_ready = inf
        if waiting and batch < max_batch:
            kept = []
            for idx in waiting:
                ready = pending[idx][0]
                if batch < max_batch and ready <= t:
                    batch += 1
                    heappush(pheap, (t + pending[idx][1], pending[idx][2], idx))
                else:
                    kept.append(idx)
                    if ready < next_ready:
                        next_ready = ready
            waiting = kept
            if batch >= max_batch:
                next_ready = inf
        t_next = next_ready
        if dheap:
            rate = r1 / (1.0 + kappa * (batch - 1))
            t_dec = t + (dheap[0][0] - progress) / rate
            if t_dec < t_next:
                t_next = t_dec
        if pheap and pheap[0][0] < t_next:
            t_next = pheap[0][0]
        if t_next == inf:  # pragma: no cover - the target is always admitted eventually
            return inf
        if dheap:
            progress += rate * (t_next - t)
        t = t_next
        while pheap and pheap[0][0] <= t:
            _, dec, idx = heappop(pheap)
            heappush(dheap, (progress + dec, idx))
        while dheap and dheap[0][0] <= progress + 1e-9:
            idx = heappop(dheap)[1]
            batch -= 1
            if idx == target:
                return t


def subtask_order(query: Query) -> list[int]:
    """Presentation order: topological by depth, larger predicted work first within a depth."""
    subs = query.subtasks
    return sorted(range(len(subs)), key=lambda i: (subs[i].depth, -subs[i].pred_output_tokens, i))


@dataclass(frozen=True, slots=True)
class Estimate:
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


class Estimator:
    """Estimates over a :class:`Simulator`'s current state. Call :meth:`refresh` after time moved."""

    def __init__(self, sim: Simulator, latency_weight: float) -> None:
        self.sim = sim
        self.latency_weight = latency_weight
        self._edge_snap: dict[int, tuple[list[tuple[float, float]], list[float], list[tuple[float, float, float]]]] = {}
        self._phone_free: dict[int, float] = {}
        self._transfer: dict[tuple[int, int, int, float], float] = {}

    def refresh(self) -> None:
        """Forget the per-state caches (call whenever the simulator's state changed)."""
        self._edge_snap.clear()
        self._phone_free.clear()
        self._transfer.clear()

    # ----------------------------------------------------------------- building blocks
    def phone_free_at(self, user: int) -> float:
        """When the phone has worked through what is placed on it (serial, predicted durations)."""
        free = self._phone_free.get(user)
        if free is None:
            sim = self.sim
            phone = sim.phones[user]
            free = sim.now + phone.unstarted_pred_s
            running = phone.running
            if running is not None:
                free += max(running.start_time + running.pred_duration_s - sim.now, 0.0)
            self._phone_free[user] = free
        return free

    def _edge_snapshot(self, e: int) -> tuple[list[tuple[float, float]], list[float], list[tuple[float, float, float]]]:
        snap = self._edge_snap.get(e)
        if snap is None:
            sim = self.sim
            edge = sim.edges[e]
            now = sim.now
            prefill_tps = sim.cfg.edge.prefill_tps
            prefilling = [(end, item.pred_output_tokens) for item, end in edge.prefilling.values()]
            progress = sim.edge_progress_now(e)
            decoding = []
            for target, _, item in edge.decoding:
                decoded = item.output_tokens - (target - progress)
                decoding.append(max(item.pred_output_tokens - decoded, 1.0))
            queued = [(item.seq, now, item.input_tokens / prefill_tps, item.pred_output_tokens)
                      for _, item in edge.ready]
            queued += [(item.seq, max(now, item.est_ready), item.pred_input_tokens / prefill_tps,
                        item.pred_output_tokens) for item in edge.waiting.values()]
            queued.sort()
            snap = (prefilling, decoding, [(r, p, d) for _, r, p, d in queued])
            self._edge_snap[e] = snap
        return snap

    def edge_finish(self, e: int, ready_s: float, prefill_s: float, decode_tokens: float,
                    overlay: Overlay | None = None) -> float:
        prefilling, decoding, pending = self._edge_snapshot(e)
        extra = overlay.edge_extra.get(e) if overlay is not None else None
        c = self.sim.cfg.edge
        if not (prefilling or decoding or pending or extra):  # idle edge: prefill, then decode alone
            return ready_s + prefill_s + decode_tokens / c.decode_tps
        items = [*pending, *extra, (ready_s, prefill_s, decode_tokens)] if extra else [
            *pending, (ready_s, prefill_s, decode_tokens)]
        return project_batch_finish(self.sim.now, c.decode_tps, c.kappa, c.max_batch, prefilling, decoding, items,
                                    len(items) - 1)

    def uplink_s(self, user: int, nbytes: float) -> float:
        sim = self.sim
        ap = sim.own_ap[user]
        cell = sim.cells[ap]
        mine = cell.uploads.get(user, 0)
        n = sim.cell_contenders(ap) + (0 if mine else 1)
        rate = sim.up_rate_bps[user]
        share = sim.dcf(n, rate, sim.cfg.wifi.frame_bytes).throughput_bps / n / (mine + 1)
        access = sim.dcf(n, rate, min(nbytes, sim.cfg.wifi.frame_bytes)).access_delay_s
        return access + 8.0 * nbytes / share

    def downlink_s(self, user: int, nbytes: float) -> float:
        sim = self.sim
        ap = sim.own_ap[user]
        cell = sim.cells[ap]
        n = sim.cell_contenders(ap) + (0 if cell.downloads else 1)
        rate = sim.down_rate_bps[user]
        share = sim.dcf(n, rate, sim.cfg.wifi.frame_bytes).throughput_bps / n / (cell.downloads + 1)
        access = sim.dcf(n, rate, min(nbytes, sim.cfg.wifi.frame_bytes)).access_delay_s
        return access + 8.0 * nbytes / share

    def transfer_s(self, user: int, src: int, dst: int, nbytes: float) -> float:
        """Predicted time for ``nbytes`` from location ``src`` to ``dst`` under the current contention."""
        if src == dst:
            return 0.0
        key = (user, src, dst, nbytes)
        total = self._transfer.get(key)
        if total is not None:
            return total
        w = self.sim.cfg.wifi
        total = 0.0
        for hop in self.sim.route(user, src, dst):
            if hop[0] == "bh":
                total += w.backhaul_delay_s + 8.0 * nbytes / w.backhaul_rate_bps
            elif hop[0] == "up":
                total += self.uplink_s(user, nbytes)
            else:
                total += self.downlink_s(user, nbytes)
        self._transfer[key] = total
        return total

    def token_bytes(self, tokens: float) -> float:
        w = self.sim.cfg.wifi
        return tokens * w.bytes_per_token + w.message_overhead_bytes

    def locations(self, user: int) -> list[int]:
        """Locations the phone can use now (0 always; the APs that are up if it is in coverage)."""
        return self.sim.usable_locations(user)

    def release_s(self, query: Query) -> float:
        return query.arrival_time + self.sim.cfg.planner.latency_s

    def _compute_finish(self, user: int, location: int, ready_s: float, item: Item, input_tokens: float,
                        overlay: Overlay | None) -> float:
        sim = self.sim
        if location == PHONE:
            phone = sim.phones[user]
            extra = overlay.phone_extra_s if overlay is not None else 0.0
            start = max(ready_s, self.phone_free_at(user) + extra)
            return start + input_tokens / phone.prefill_tps + item.pred_output_tokens / phone.decode_tps
        prefill_s = input_tokens / sim.cfg.edge.prefill_tps
        return self.edge_finish(location - 1, ready_s, prefill_s, item.pred_output_tokens, overlay)

    # ----------------------------------------------------------------- per decision
    def whole(self, query: Query, item: Item) -> dict[int, Estimate]:
        """Answer-at-phone time and quality of running ``query`` whole at each usable location."""
        user, sim = query.user, self.sim
        release = self.release_s(query)
        out: dict[int, Estimate] = {}
        up_bytes = self.token_bytes(query.spec.prompt_tokens) + query.spec.attachment_bytes
        down_bytes = self.token_bytes(item.pred_output_tokens)
        for loc in self.locations(user):
            ready = release if loc == PHONE else release + self.transfer_s(user, PHONE, loc, up_bytes)
            finish = self._compute_finish(user, loc, ready, item, item.pred_input_tokens, None)
            if loc != PHONE:
                finish += self.transfer_s(user, loc, PHONE, down_bytes)
            out[loc] = Estimate(ready, finish, success_prob(sim.ability(user, loc), item.pred_difficulty))
        return out

    def _pred_location_finish(self, query: Query, index: int, overlay: Overlay | None) -> tuple[int, float]:
        if overlay is not None and index in overlay.placed:
            return overlay.placed[index]
        item = query.subtasks[index]
        return item.location, item.est_finish

    def subtask(self, query: Query, item: Item, overlay: Overlay | None = None) -> dict[int, Estimate]:
        """Finish time at each location of a subtask, given where its predecessors went."""
        user, sim = query.user, self.sim
        release = self.release_s(query)
        context_bytes = self.token_bytes(sim.cfg.workload.subtask_context_tokens)
        attachment = query.spec.attachment_bytes if not item.preds else 0.0
        out: dict[int, Estimate] = {}
        for loc in self.locations(user):
            ready = release
            if loc != PHONE:
                carried = self._attachment_eta(query, loc, overlay) if attachment else None
                if carried is None:
                    ready = release + self.transfer_s(user, PHONE, loc, context_bytes + attachment)
                else:
                    ready = max(release + self.transfer_s(user, PHONE, loc, context_bytes), carried)
            pred_in = item.pred_input_tokens
            for d in item.preds:
                d_loc, d_finish = self._pred_location_finish(query, d, overlay)
                d_out = query.subtasks[d].pred_output_tokens
                ready = max(ready, d_finish + self.transfer_s(user, d_loc, loc, self.token_bytes(d_out)))
            finish = self._compute_finish(user, loc, ready, item, pred_in, overlay)
            out[loc] = Estimate(ready, finish, success_prob(sim.ability(user, loc), item.pred_difficulty))
        return out

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
        user, sim = query.user, self.sim
        out: dict[int, Estimate] = {}
        down_bytes = self.token_bytes(item.pred_output_tokens)
        for loc in self.locations(user):
            ready = self.release_s(query)
            for d in range(len(query.subtasks)):
                d_loc, d_finish = self._pred_location_finish(query, d, overlay)
                d_out = query.subtasks[d].pred_output_tokens
                ready = max(ready, d_finish + self.transfer_s(user, d_loc, loc, self.token_bytes(d_out)))
            finish = self._compute_finish(user, loc, ready, item, item.pred_input_tokens, overlay)
            finish += self.transfer_s(user, loc, PHONE, down_bytes)
            out[loc] = Estimate(ready, finish, success_prob(sim.ability(user, loc), item.pred_difficulty))
        return out

    def subtask_score(self, est: Estimate, n_subtasks: int) -> float:
        """Greedy's subtask objective: quality share minus weighted time to finish."""
        return est.quality / n_subtasks - self.latency_weight * (est.finish_s - self.sim.now)

    def plan(self, query: Query, order: list[int]) -> PlanEstimate:
        """The list scheduler's decomposed plan for ``query``: predicted latency and quality, not committed."""
        overlay = Overlay()
        sim = self.sim
        k = len(query.subtasks)
        locations = [0] * (k + 1)
        qualities = []
        for i in order:
            item = query.subtasks[i]
            ests = self.subtask(query, item, overlay)
            loc = max(ests, key=lambda L: (self.subtask_score(ests[L], k), -L))
            est = ests[loc]
            locations[i] = loc
            qualities.append(est.quality)
            overlay.placed[i] = (loc, est.finish_s)
            if loc == PHONE:
                phone = sim.phones[query.user]
                overlay.phone_extra_s += (item.pred_input_tokens / phone.prefill_tps
                                          + item.pred_output_tokens / phone.decode_tps)
            else:
                overlay.edge_extra.setdefault(loc - 1, []).append(
                    (est.ready_s, item.pred_input_tokens / sim.cfg.edge.prefill_tps, item.pred_output_tokens))
                if not item.preds and query.spec.attachment_bytes > 0 and loc not in overlay.attachment_eta:
                    overlay.attachment_eta[loc] = est.ready_s
        agg = query.aggregation
        assert agg is not None
        ests = self.aggregation(query, agg, overlay)
        loc = min(ests, key=lambda L: (ests[L].finish_s, L))
        locations[k] = loc
        quality = decomposed_quality(ests[loc].quality, qualities)
        return PlanEstimate(ests[loc].finish_s - query.arrival_time, quality, tuple(locations))
