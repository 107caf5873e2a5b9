"""802.11ax link budget and DCF contention (Bianchi 2000), flow level.

Pure functions of their arguments; nothing here knows about Gymnasium or the simulator state.

* :func:`path_loss_db` - TGax enterprise model with a breakpoint (:func:`path_loss_table_db`: of a table).
* :func:`mcs_for_snr` / :func:`phy_rate_bps` - SNR to the highest HE MCS whose threshold it meets.
* :func:`dcf_saturation` - Bianchi's fixed point for ``n`` saturated stations: attempt probability
  ``tau``, conditional collision probability, total payload throughput and a tagged station's mean
  access delay (contract; docs/model.md#wi-fi-channel-access).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from offload_gym.sim.physics import MPDU_DELIMITER_BYTES, PHY_SERVICE_TAIL_BITS

__all__ = [
    "ACCESS_MODES",
    "BANDWIDTH_FACTOR",
    "COLLISION_MODELS",
    "HE_RATES_20MHZ_MBPS",
    "MCS_SNR_THRESHOLDS_DB",
    "DcfResult",
    "dcf_keywords",
    "dcf_saturation",
    "he_ltf_count",
    "legacy_frame_s",
    "mcs_for_snr",
    "message_access_s",
    "noise_dbm",
    "path_loss_db",
    "path_loss_table_db",
    "phy_rate_bps",
]

#: Minimum SNR (dB) for HE MCS 0..11.
MCS_SNR_THRESHOLDS_DB: tuple[float, ...] = (5, 8, 11, 14, 18, 22, 25, 29, 32, 35, 38, 41)
#: HE data rates per spatial stream at 20 MHz with 0.8 us GI (Mb/s), MCS 0..11.
HE_RATES_20MHZ_MBPS: tuple[float, ...] = (8.6, 17.2, 25.8, 34.4, 51.5, 68.8, 77.4, 86.0, 103.2, 114.7, 129.0, 143.4)
#: HE rate multiplier per channel width (more data tones than a plain doubling).
BANDWIDTH_FACTOR: dict[int, float] = {20: 1.0, 40: 2.0, 80: 4.2, 160: 8.4}


def path_loss_db(distance_m: float, frequency_ghz: float = 5.18, breakpoint_m: float = 10.0) -> float:
    """TGax enterprise path loss: ``40.05 + 20 log10(f/2.4) + 20 log10(min(d, d_bp)) + 35 log10(d/d_bp)[d > d_bp]``.

    Distances below 1 m are clamped to 1 m (the model's reference distance).
    """
    return path_loss_table_db([[distance_m]], frequency_ghz, breakpoint_m)[0][0]


def path_loss_table_db(distances_m: list[list[float]], frequency_ghz: float = 5.18,
                       breakpoint_m: float = 10.0) -> list[list[float]]:
    """:func:`path_loss_db` of every distance of a table (rows of Python floats), the same floats: the frequency's
    term is computed once (``(40.05 + 20 log10(f/2.4)) + ...`` is the formula's own left-to-right order)."""
    log10 = math.log10
    frequency_term = 40.05 + 20.0 * log10(frequency_ghz / 2.4)
    table = []
    for row in distances_m:
        out = []
        for distance in row:
            d = max(distance, 1.0)
            loss = frequency_term + 20.0 * log10(min(d, breakpoint_m))
            if d > breakpoint_m:
                loss += 35.0 * log10(d / breakpoint_m)
            out.append(loss)
        table.append(out)
    return table


def noise_dbm(bandwidth_mhz: int, noise_dbm_per_20mhz: float = -94.0) -> float:
    """Noise power over the channel: +3 dB per doubling of the 20 MHz base."""
    return noise_dbm_per_20mhz + 10.0 * math.log10(bandwidth_mhz / 20.0)


def mcs_for_snr(snr_db: float) -> int:
    """Highest MCS whose SNR threshold ``snr_db`` meets; -1 when below MCS0 (out of coverage, or NaN)."""
    if not snr_db >= MCS_SNR_THRESHOLDS_DB[0]:
        return -1
    return bisect.bisect_right(MCS_SNR_THRESHOLDS_DB, snr_db) - 1  # the thresholds increase


def phy_rate_bps(mcs: int, bandwidth_mhz: int = 80, spatial_streams: int = 2) -> float:
    """HE PHY rate (b/s) for an MCS index; 0 for ``mcs < 0``."""
    if mcs < 0:
        return 0.0
    if bandwidth_mhz not in BANDWIDTH_FACTOR:
        raise ValueError(f"bandwidth_mhz: {bandwidth_mhz} is not allowed; choose one of {sorted(BANDWIDTH_FACTOR)}")
    return HE_RATES_20MHZ_MBPS[mcs] * 1e6 * BANDWIDTH_FACTOR[bandwidth_mhz] * spatial_streams


@dataclass(frozen=True)
class DcfResult:
    """Bianchi saturation operating point of ``n_stations`` stations sharing one channel."""

    n_stations: int
    tau: float  #: per-slot transmission probability of a station
    collision_prob: float  #: conditional collision probability p
    throughput_bps: float  #: total payload throughput S of the channel
    access_delay_s: float  #: mean time from head-of-line to successful transmission of a tagged station
    expected_slot_s: float  #: mean length of a generic (idle, success or collision) slot
    success_time_s: float  #: T_s, the channel time of one successful exchange
    collision_time_s: float  #: T_c
    #: a frame sent at once on an idle medium (no AIFS, no backoff): ``T_data + SIFS + T_ack`` (``edca``: what a
    #: message starting alone in its cell waits when ``immediate_access``; 802.11-2020 10.23.2.2)
    idle_access_s: float = 0.0
    drop_prob: float = 0.0  #: share of frames dropped at the retry limit (``edca``; 0 with unlimited retries)


@lru_cache(maxsize=4096)
def _fixed_point(n_stations: int, window: int, stages: int) -> tuple[float, float]:
    """Solve ``tau = 2 / (1 + W + p W sum_{i<m} (2p)^i)``, ``p = 1 - (1 - tau)^(n-1)`` by bisection on p."""
    if n_stations == 1:
        return 2.0 / (1.0 + window), 0.0

    def tau_of(p: float) -> float:
        return 2.0 / (1.0 + window + p * window * sum((2.0 * p) ** i for i in range(stages)))

    return _bisect(n_stations, tau_of)


def _bisect(n_stations: int, tau_of: Callable[[float], float]) -> tuple[float, float]:
    """The root of ``p = 1 - (1 - tau(p))^(n-1)``, ``(tau, p)``: the left side minus p decreases in p, so bisection
    on [0, 1] finds the unique root (80 halvings: to the last bit of a double)."""
    lo, hi = 0.0, 1.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if 1.0 - (1.0 - tau_of(mid)) ** (n_stations - 1) > mid:
            lo = mid
        else:
            hi = mid
    p = 0.5 * (lo + hi)
    return tau_of(p), p


#: ``access`` of :func:`dcf_saturation`: 802.11ax EDCA best effort as ns-3 runs it (default), or classic DCF
ACCESS_MODES = ("edca", "dcf")
#: ``collision`` of :func:`dcf_saturation` (``edca``): the fitted ACK-timeout collision time, or 802.11's EIFS
COLLISION_MODELS = ("ack-timeout", "eifs")


def he_ltf_count(spatial_streams: int) -> int:
    """HE-LTF symbols of an HE SU PPDU for ``spatial_streams`` streams (802.11ax-2021 Table 27-13: 1, 2, 4, 4, 6, 6,
    8, 8)."""
    if not 1 <= spatial_streams <= 8:
        raise ValueError(f"spatial_streams: {spatial_streams} is not allowed; must be 1..8")
    return spatial_streams if spatial_streams <= 2 else 2 * math.ceil(spatial_streams / 2)


def message_access_s(res: DcfResult, immediate_access: bool) -> float:
    """The access delay a message's first frame waits: ``res.access_delay_s``, except on an idle medium (the
    sender alone, ``n_stations == 1``) with ``immediate_access``, where a frame that finds the medium idle goes
    at once, without AIFS or backoff (802.11-2020 10.23.2.2; ns-3 ``ChannelAccessManager``): ``idle_access_s``."""
    return res.idle_access_s if immediate_access and res.n_stations == 1 else res.access_delay_s


def legacy_frame_s(nbytes: float, rate_bps: float, preamble_s: float = 20e-6, symbol_s: float = 4e-6) -> float:
    """Duration of a non-HT (legacy OFDM) frame: preamble and SIGNAL, then 16 service + 8 * bytes + 6 tail bits."""
    return preamble_s + math.ceil((8 * nbytes + PHY_SERVICE_TAIL_BITS) / (rate_bps * symbol_s)) * symbol_s


@lru_cache(maxsize=4096)
def _fixed_point_retry(n_stations: int, windows: tuple[int, ...]) -> tuple[float, float]:
    """Bianchi's fixed point with a retry limit of ``len(windows)`` attempts (window ``W_i`` at attempt ``i``):
    ``tau = sum_i p^i / sum_i p^i (W_i + 1) / 2`` and ``p = 1 - (1 - tau)^(n-1)``, by bisection on p."""

    def tau_of(p: float) -> float:
        num = den = 0.0
        power = 1.0
        for w in windows:
            num += power
            den += power * (w + 1) / 2.0
            power *= p
        return num / den

    if n_stations == 1:
        return tau_of(0.0), 0.0
    return _bisect(n_stations, tau_of)


def _delivered_backoff_slots(p: float, windows: tuple[int, ...]) -> float:
    """Mean generic slots from the head of the queue to the success of a frame that is delivered (not dropped at
    the retry limit): ``sum_j p^(j-1) (1 - p) sum_{i<j} (W_i + 1) / 2 / (1 - p^R)``."""
    # (1 - p) cancels between the sum and 1 - p^R = (1 - p) sum_{j<R} p^j: what is left has no 0 / 0 when p -> 1
    # (every frame collides: the delivered ones are spread evenly over the R attempts)
    total = 0.0
    weight = 0.0
    waited = 0.0
    power = 1.0
    for w in windows:
        waited += (w + 1) / 2.0
        total += power * waited
        weight += power
        power *= p
    return total / weight


def dcf_keywords(wifi: Any) -> dict[str, Any]:
    """The keywords of :func:`dcf_saturation` that a scenario's ``wifi`` section (``WifiConfig``) sets: all but
    the rate, the payload and ``mpdu_delimiter_bytes`` (which keeps its default), as both engines pass them."""
    w = wifi
    return {
        "slot_s": w.slot_s, "sifs_s": w.sifs_s, "difs_s": w.difs_s, "cw_min": w.cw_min, "cw_max": w.cw_max,
        "preamble_s": w.preamble_s, "symbol_s": w.symbol_s, "mac_header_bytes": w.mac_header_bytes,
        "ack_bytes": w.ack_bytes, "ack_rate_bps": w.ack_rate_bps, "ack_preamble_s": w.ack_preamble_s,
        "ack_symbol_s": w.ack_symbol_s, "spatial_streams": w.spatial_streams, "access": w.access,
        "aifsn": w.aifsn, "he_ltf_s": w.he_ltf_s, "retry_limit": w.retry_limit, "collision": w.collision,
        "eifs_ack_rate_bps": w.eifs_ack_rate_bps,
    }


@lru_cache(maxsize=8192)  # bounded: a full cache is a few MiB per process
def dcf_saturation(
    n_stations: int,
    *,
    phy_rate_bps: float,
    payload_bytes: float,
    slot_s: float = 9e-6,
    sifs_s: float = 16e-6,
    difs_s: float = 34e-6,
    cw_min: int = 15,
    cw_max: int = 1023,
    preamble_s: float = 44e-6,
    symbol_s: float = 13.6e-6,
    mac_header_bytes: int = 30,
    mpdu_delimiter_bytes: int = MPDU_DELIMITER_BYTES,
    ack_bytes: int = 14,
    ack_rate_bps: float = 24e6,
    ack_preamble_s: float = 20e-6,
    ack_symbol_s: float = 4e-6,
    spatial_streams: int = 2,
    access: str = "edca",
    aifsn: int = 3,
    he_ltf_s: float = 8e-6,
    retry_limit: int = 7,
    collision: str = "ack-timeout",
    eifs_ack_rate_bps: float = 6e6,
) -> DcfResult:
    """Bianchi (2000) saturation throughput and access delay, basic access.

    ``T_s = T_data + SIFS + T_ack + IFS`` and ``T_c = T_data + IFS_c``; the data frame is the HE
    preamble plus whole OFDM symbols carrying MAC header, MPDU delimiter, payload, 16 service bits
    and 6 tail bits. The access delay of a tagged station is ``E[slot] / (tau (1 - tau)^(n - 1))``.

    ``access`` chooses the timings (docs/model.md#wi-fi-channel-access; validated against ns-3 in ``validation/ns3``):

    * ``"edca"`` (default): 802.11ax best-effort EDCA as ns-3 3.37 runs it, four corrections measured in
      ``validation/ns3`` (throughput within 3.5 %, access delay within 2.2 % of ns-3 for 1-50 stations at
      HE-MCS7/20 MHz/1 SS and HE-MCS11/80 MHz/2 SS):

      1. the idle wait before the backoff is ``AIFS = SIFS + aifsn * slot`` (43 us for best effort;
         802.11-2020 10.23.2.4), not DIFS;
      2. the HE SU preamble grows by ``he_ltf_s`` per HE-LTF beyond the first (``preamble_s`` is the one-LTF
         preamble, 44 us; 52 us at 2 streams; 802.11ax-2021 27.3.11, ns-3 measures the same);
      3. a frame is dropped after ``retry_limit`` attempts (802.11 dot11ShortRetryLimit 7; ns-3
         ``MaxSsrc``): the fixed point runs over those stages only, and the access delay is that of the frames
         delivered (a dropped frame's time is not in it);
      4. the collision time: ``collision="ack-timeout"`` (default) ``T_c = T_data + SIFS + slot + AIFS``, the
         colliding stations' ACK timeout then AIFS, the value that fits ns-3 best (a fit, not a clause of the
         standard); ``collision="eifs"``: ``T_c = T_data + EIFS`` with ``EIFS = SIFS + ACK at the lowest basic
         rate + AIFS`` (802.11-2020 10.3.2.3.7), which leaves the model 3-7 % slower than ns-3.

    * ``"dcf"``: the classic computation (docs/model.md#classic-dcf): DIFS, a fixed ``preamble_s`` whatever the
      streams, unlimited retries, ``T_c = T_data + DIFS`` (the edca-only arguments unused). It matches
      the reference values of docs/model.md#closed-form-tests, and ns-3 within 4 % at one stream but up to 23 % too fast at the
      default PHY.

    :param n_stations: contending stations (>= 1).
    :param phy_rate_bps: PHY rate every station is assumed to use.
    :param payload_bytes: payload per frame; 0 is a header-only (null data) frame: it still contends for the
        channel and is acknowledged, so it has an access delay, but it carries no throughput.
    :param spatial_streams: streams of the data frames (sets the HE-LTF count, ``edca`` only).
    """
    if access not in ACCESS_MODES:
        raise ValueError(f"access: {access!r} is not allowed; choose one of {list(ACCESS_MODES)}")
    if n_stations < 1:
        raise ValueError(f"n_stations: {n_stations} is not allowed; must be >= 1")
    if phy_rate_bps <= 0:
        raise ValueError(f"phy_rate_bps: {phy_rate_bps} is not allowed; must be > 0")
    if not payload_bytes >= 0:
        raise ValueError(f"payload_bytes: {payload_bytes} is not allowed; must be >= 0")
    if collision not in COLLISION_MODELS:
        raise ValueError(f"collision: {collision!r} is not allowed; choose one of {list(COLLISION_MODELS)}")
    window = cw_min + 1
    stages = round(math.log2((cw_max + 1) / window))
    windows: tuple[int, ...] = ()
    if access == "dcf":
        tau, p = _fixed_point(int(n_stations), window, stages)
    else:
        if retry_limit < 1:
            raise ValueError(f"retry_limit: {retry_limit} is not allowed; must be >= 1 attempt")
        windows = tuple(min(window << i, cw_max + 1) for i in range(retry_limit))
        tau, p = _fixed_point_retry(int(n_stations), windows)

    bits_per_symbol = phy_rate_bps * symbol_s
    data_bits = 8 * (mac_header_bytes + mpdu_delimiter_bytes + payload_bytes) + PHY_SERVICE_TAIL_BITS
    if access == "dcf":
        preamble, ifs = preamble_s, difs_s
    else:
        preamble, ifs = preamble_s + (he_ltf_count(spatial_streams) - 1) * he_ltf_s, sifs_s + aifsn * slot_s
    t_data = preamble + math.ceil(data_bits / bits_per_symbol) * symbol_s
    t_ack = legacy_frame_s(ack_bytes, ack_rate_bps, ack_preamble_s, ack_symbol_s)
    t_success = t_data + sifs_s + t_ack + ifs
    if access == "dcf":
        t_collision = t_data + difs_s
    elif collision == "ack-timeout":
        t_collision = t_data + sifs_s + slot_s + ifs
    else:
        t_collision = t_data + sifs_s + legacy_frame_s(ack_bytes, eifs_ack_rate_bps, ack_preamble_s, ack_symbol_s) + ifs

    p_idle_each = 1.0 - tau
    p_tr = 1.0 - p_idle_each**n_stations
    p_one = n_stations * tau * p_idle_each ** (n_stations - 1)  # = P_tr * P_s
    expected_slot = (1.0 - p_tr) * slot_s + p_one * t_success + (p_tr - p_one) * t_collision
    throughput = p_one * 8.0 * payload_bytes / expected_slot
    if access == "dcf":
        access_delay = expected_slot / (tau * p_idle_each ** (n_stations - 1))
        drop = 0.0
    else:
        access_delay = expected_slot * _delivered_backoff_slots(p, windows)
        drop = p ** len(windows)
    return DcfResult(
        n_stations=int(n_stations), tau=tau, collision_prob=p, throughput_bps=throughput,
        access_delay_s=access_delay, expected_slot_s=expected_slot, success_time_s=t_success,
        collision_time_s=t_collision, idle_access_s=t_data + sifs_s + t_ack, drop_prob=drop,
    )
