"""What an episode starts from: the topology, the phones and the workload, drawn from the env's generator.

The compiled core starts from an :class:`EpisodeSetup` (:class:`offload_gym.core.arrays.CoreState` copies it
into its arrays); the Python engine that the core replaced drew it the same way, from the same streams, which is
why the core reproduces that engine's recorded trajectories (``tests/test_golden_trajectories.py``). Nothing here
changes during the episode: outages re-associate phones in the core's own state, through
:meth:`EpisodeSetup.association`.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from offload_gym.config import ScenarioConfig
from offload_gym.sim import wifi as wifi_model
from offload_gym.sim.episode import EpisodeWorkload

__all__ = ["EpisodeSetup", "grid_positions", "merged_outages"]


def _default_rng(seed: int | list[int]) -> np.random.Generator:
    """``np.random.default_rng(seed)``, built as it builds one (``Generator(PCG64(SeedSequence(seed)))``) without
    its argument checks: a third less time, four times a reset."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))


def grid_positions(n_aps: int, area_m: float) -> np.ndarray:
    """Centres of a near-square grid of ``n_aps`` cells over the area (quadrant centres for 4 APs)."""
    cols = math.ceil(math.sqrt(n_aps))
    rows = math.ceil(n_aps / cols)
    xy = [((c + 0.5) * area_m / cols, (r + 0.5) * area_m / rows) for r in range(rows) for c in range(cols)]
    return np.array(xy[:n_aps], dtype=float)


class EpisodeSetup:
    """One episode's starting point, drawn from ``rng`` (the env's ``np_random``) in a fixed order.

    ``rng`` gives three seeds; from them the topology's stream (phone positions, then device classes), the
    arrivals' and the workload's streams (:class:`~offload_gym.sim.episode.EpisodeWorkload`), and the random
    access delays' own stream. Every phone associates with the strongest AP (all are up at the start).

    ``compiled_workload``: draw synthetic queries in compiled code (:mod:`offload_gym.core.workload`), the same
    numbers in the compiled core's layout.
    """

    def __init__(self, cfg: ScenarioConfig, rng: np.random.Generator, compiled_workload: bool = False) -> None:
        self.cfg = cfg
        seeds = [int(x) for x in rng.integers(2**63, size=3)]
        self.rng_topology = _default_rng(seeds[0])
        self.rng_arrivals = _default_rng(seeds[1])
        self.rng_workload = _default_rng(seeds[2])
        #: wifi.access_delay_cv > 0 only: random access delays, from a stream of their own (the others unchanged)
        self.rng_access = _default_rng([seeds[0], 7])
        topo, w = cfg.topology, cfg.wifi
        self.n_users, self.n_aps = topo.n_users, topo.n_aps
        if topo.ap_positions is not None:
            self.ap_xy = np.array(topo.ap_positions, dtype=float)
        else:
            self.ap_xy = grid_positions(self.n_aps, topo.area_m)
        if topo.user_positions is not None:
            self.user_xy = np.array(topo.user_positions, dtype=float)
        else:
            self.user_xy = self.rng_topology.uniform(0.0, topo.area_m, size=(self.n_users, 2))
        delta = self.user_xy[:, None, :] - self.ap_xy[None, :, :]
        # np.linalg.norm's own sum of squares and square root (the same floats), without its checks and dispatch
        dist = np.sqrt(np.add.reduce(delta * delta, axis=2))
        #: per phone, per AP, the path loss (dB): rows of Python floats (what the links read), and as an array
        self.loss_rows = wifi_model.path_loss_table_db(dist.tolist(), w.frequency_ghz, w.breakpoint_m)
        self.loss_db = np.array(self.loss_rows, dtype=float).reshape(dist.shape)
        self.distance_m = dist
        self.noise_dbm = wifi_model.noise_dbm(w.bandwidth_mhz, w.noise_dbm_per_20mhz)
        self._rate_bps = _rates_by_mcs(w.bandwidth_mhz, w.spatial_streams)
        all_up = [True] * self.n_aps
        #: per phone at the start: its AP (-1: out of coverage), uplink MCS, uplink and downlink PHY rates
        initial = [self.association(u, all_up) for u in range(self.n_users)]
        self.own_ap = [a for a, _, _, _ in initial]
        self.up_mcs = [m for _, m, _, _ in initial]
        self.up_rate_bps = [r for _, _, r, _ in initial]
        self.down_rate_bps = [r for _, _, _, r in initial]
        classes = cfg.phone.device_classes
        if classes:
            picks = self.rng_topology.choice(len(classes), size=self.n_users, p=[c.share for c in classes])
        #: per phone ``(prefill tok/s, decode tok/s, ability)``: its device class's, or the phone section's
        self.phone_params: list[tuple[float, float, float]] = []
        for u in range(self.n_users):
            src = classes[int(picks[u])] if classes else cfg.phone
            self.phone_params.append((src.prefill_tps, src.decode_tps, src.ability))
        #: the APs' state at the start (outages change the engines' copies)
        self.ap_up = all_up
        self.background = [w.background_stations] * self.n_aps
        #: the episode's arrivals, truths and predictions, drawn ahead (they never depend on the actions)
        self.workload = EpisodeWorkload(cfg, self.rng_arrivals, self.rng_workload, compiled=compiled_workload)

    def ap_preference(self, u: int) -> list[int]:
        """The APs from the strongest for phone ``u`` (ties: the lower index), the order it associates in."""
        row = self.loss_rows[u]
        return sorted(range(self.n_aps), key=lambda ap: (row[ap], ap))

    def link(self, u: int, ap: int) -> tuple[int, float, float] | None:
        """``(uplink MCS, uplink PHY rate, downlink PHY rate)`` of phone ``u`` with AP ``ap``, or ``None`` where
        either direction is out of coverage."""
        w = self.cfg.wifi
        loss = self.loss_rows[u][ap]
        up_mcs = wifi_model.mcs_for_snr(w.phone_tx_dbm - loss - self.noise_dbm)
        down_mcs = wifi_model.mcs_for_snr(w.ap_tx_dbm - loss - self.noise_dbm)
        if up_mcs < 0 or down_mcs < 0:
            return None
        return up_mcs, self._rate_bps[up_mcs], self._rate_bps[down_mcs]

    def association(self, u: int, ap_up: list[bool]) -> tuple[int, int, float, float]:
        """Phone ``u``'s ``(AP, uplink MCS, uplink rate, downlink rate)`` with the strongest AP that is up (``ap_up``
        per AP), or ``(-1, -1, 0, 0)`` when none is or that one is out of coverage (it computes locally)."""
        a = next((ap for ap in self.ap_preference(u) if ap_up[ap]), -1)
        if a < 0:
            return -1, -1, 0.0, 0.0
        link = self.link(u, a)
        if link is None:
            return -1, -1, 0.0, 0.0
        return a, *link


@functools.lru_cache(maxsize=64)
def _rates_by_mcs(bandwidth_mhz: int, spatial_streams: int) -> tuple[float, ...]:
    """:func:`~offload_gym.sim.wifi.phy_rate_bps` of every MCS, for a channel width and stream count."""
    return tuple(wifi_model.phy_rate_bps(mcs, bandwidth_mhz, spatial_streams)
                 for mcs in range(len(wifi_model.HE_RATES_20MHZ_MBPS)))


def merged_outages(outages: list[tuple[int, float, float]]) -> list[tuple[int, float, float]]:
    """``(ap, start, end)`` outages with the overlapping (or touching) ones of each AP merged into their union.

    Each merged interval keeps the place of its earliest-listed member, so that outages that do not overlap
    are scheduled in the order given.
    """
    by_ap: dict[int, list[tuple[float, float, int]]] = {}
    for order, (ap, start, end) in enumerate(outages):
        by_ap.setdefault(ap, []).append((start, end, order))
    merged: list[tuple[int, int, float, float]] = []  # (first order, ap, start, end)
    for ap, spans in by_ap.items():
        spans.sort()
        first, start, end = spans[0][2], spans[0][0], spans[0][1]
        for s, e, order in spans[1:]:
            if s <= end:
                end = max(end, e)
                first = min(first, order)
            else:
                merged.append((first, ap, start, end))
                first, start, end = order, s, e
        merged.append((first, ap, start, end))
    merged.sort()
    return [(ap, start, end) for _, ap, start, end in merged]
