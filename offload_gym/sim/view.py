"""A read-only view of a :class:`~offload_gym.sim.engine.Simulator`'s state.

The estimator, the observation and the renderer read the network through :class:`SimView`, never through
the engine's private structures (its per-AP cells and edges, its phones). The engine can then change how it
keeps its state (a compiled core keeps it in arrays) without touching any reader, and no reader can change
the state by accident: what the view returns is either a number, a tuple, or a read-only mapping/sequence.

Items (:class:`~offload_gym.sim.engine.Item`) are handed out as they are: readers use their predicted
fields (``pred_*``), placement (``location``, ``seq``) and estimates (``est_ready``); none writes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING

from offload_gym.sim.physics import HopKind

if TYPE_CHECKING:
    import numpy as np

    from offload_gym.sim.engine import Item, Simulator
    from offload_gym.sim.wifi import DcfResult

__all__ = ["SimView", "Transfer"]

#: a Wi-Fi transfer in flight: ``(direction, ap, phone, bytes)``, direction :attr:`HopKind.UP` or :attr:`HopKind.DOWN`
Transfer = tuple[HopKind, int, int, float]


class SimView:
    """Read-only accessors over one simulator (``sim.view``). Cheap: nothing is copied that is not returned."""

    __slots__ = ("_sim", "phone_ability", "phone_decode_tps", "phone_prefill_tps")

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim
        # constant over an episode (the device class of each phone), so kept as tuples for the hot paths
        self.phone_prefill_tps: tuple[float, ...] = tuple(p.prefill_tps for p in sim.phones)
        self.phone_decode_tps: tuple[float, ...] = tuple(p.decode_tps for p in sim.phones)
        self.phone_ability: tuple[float, ...] = tuple(p.ability for p in sim.phones)

    # ------------------------------------------------------------------ clock, topology, links
    @property
    def now(self) -> float:
        """Simulation time (s)."""
        return self._sim.now

    @property
    def n_users(self) -> int:
        return self._sim.n_users

    @property
    def n_aps(self) -> int:
        return self._sim.n_aps

    @property
    def own_ap(self) -> Sequence[int]:
        """Per phone, the AP it is associated with (-1: out of coverage)."""
        return self._sim.own_ap

    @property
    def up_rate_bps(self) -> Sequence[float]:
        """Per phone, its uplink PHY rate (0 when out of coverage)."""
        return self._sim.up_rate_bps

    @property
    def down_rate_bps(self) -> Sequence[float]:
        return self._sim.down_rate_bps

    @property
    def ap_up(self) -> Sequence[bool]:
        """Per AP, whether it is up (``faults.ap_outages``)."""
        return self._sim.ap_up

    @property
    def ap_xy(self) -> np.ndarray:
        return self._sim.ap_xy

    @property
    def user_xy(self) -> np.ndarray:
        return self._sim.user_xy

    @property
    def backhaul_delay_s(self) -> float:
        """The backhaul's latency now (``faults.backhaul_changes`` change it)."""
        return self._sim.backhaul_delay_s

    @property
    def backhaul_rate_bps(self) -> float:
        return self._sim.backhaul_rate_bps

    def usable_locations(self, user: int) -> list[int]:
        """Locations a new item of ``user`` may go to now (a new list)."""
        return self._sim.usable_locations(user)

    def access_delay_s(self, n: int, rate_bps: float, payload_bytes: float) -> float:
        """What a new message's first frame waits for the channel (the engine's rule, ``Simulator.access_delay_s``)."""
        return self._sim.access_delay_s(n, rate_bps, payload_bytes)

    def dcf(self, n: int, rate_bps: float, payload_bytes: float) -> DcfResult:
        """The Wi-Fi model's saturation operating point with this scenario's frame timings."""
        return self._sim.dcf(n, rate_bps, payload_bytes)

    # ------------------------------------------------------------------ cells
    def cell_contenders(self, ap: int) -> int:
        """Stations contending in AP ``ap``'s cell now: background + uploading phones + the AP if sending."""
        return self._sim.cell_contenders(ap)

    def cell_uploads(self, ap: int, user: int) -> int:
        """Uploads phone ``user`` has in flight in AP ``ap``'s cell."""
        return self._sim.cells[ap].uploads.get(user, 0)

    def cell_uploading_phones(self, ap: int) -> int:
        return len(self._sim.cells[ap].uploads)

    def cell_downloads(self, ap: int) -> int:
        """Downloads AP ``ap`` is sending."""
        return self._sim.cells[ap].downloads

    def cell_transfers(self, ap: int) -> list[Transfer]:
        """The Wi-Fi transfers in flight in AP ``ap``'s cell (a new list)."""
        out: list[Transfer] = []
        for msg in self._sim.cells[ap].msgs:
            direction, cell_ap, user = msg.hops[msg.hop]
            out.append((HopKind(direction), int(cell_ap), int(user), float(msg.nbytes)))
        return out

    # ------------------------------------------------------------------ phones
    def phone_running(self, user: int) -> Item | None:
        """The item the phone is computing, if any."""
        return self._sim.phones[user].running

    def phone_unstarted_pred_s(self, user: int) -> float:
        """Predicted compute time of the items placed on the phone that have not started."""
        return self._sim.phones[user].unstarted_pred_s

    # ------------------------------------------------------------------ edges
    def edge_batch(self, e: int) -> int:
        """Streams admitted on edge ``e`` (prefilling and decoding)."""
        return self._sim.edges[e].batch

    def edge_queued(self, e: int) -> int:
        """Items on edge ``e`` whose inputs have all arrived, waiting for room in the batch."""
        return len(self._sim.edges[e].ready)

    def edge_in_transit(self, e: int) -> int:
        """Items placed on edge ``e`` whose inputs have not all arrived."""
        return len(self._sim.edges[e].waiting)

    def edge_prefilling(self, e: int) -> Mapping[int, tuple[Item, float]]:
        """``seq -> (item, prefill end time)`` of the streams prefilling on edge ``e``."""
        return MappingProxyType(self._sim.edges[e].prefilling)

    def edge_decoding(self, e: int) -> Sequence[tuple[float, int, Item]]:
        """``(progress at which it ends, seq, item)`` of the streams decoding on edge ``e``, as a heap."""
        return self._sim.edges[e].decoding

    def edge_ready(self, e: int) -> Sequence[tuple[int, Item]]:
        """``(seq, item)`` of :meth:`edge_queued`'s items, as a heap by placement."""
        return self._sim.edges[e].ready

    def edge_waiting(self, e: int) -> Mapping[int, Item]:
        """``seq -> item`` of :meth:`edge_in_transit`'s items, in placement order."""
        return MappingProxyType(self._sim.edges[e].waiting)

    def edge_progress_now(self, e: int) -> float:
        """Tokens decoded per stream on edge ``e`` since the episode began (its virtual clock)."""
        return self._sim.edge_progress_now(e)
