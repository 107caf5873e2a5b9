"""802.11ax link budget and DCF contention (Bianchi 2000), flow level.

Pure functions of their arguments; nothing here knows about Gymnasium or the simulator state.

* :func:`path_loss_db` - TGax enterprise model with a breakpoint.
* :func:`mcs_for_snr` / :func:`phy_rate_bps` - SNR to the highest HE MCS whose threshold it meets.
* :func:`dcf_saturation` - Bianchi's fixed point for ``n`` saturated stations: attempt probability
  ``tau``, conditional collision probability, total payload throughput and a tagged station's mean
  access delay (contract, DESIGN.md section 4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "BANDWIDTH_FACTOR",
    "HE_RATES_20MHZ_MBPS",
    "MCS_SNR_THRESHOLDS_DB",
    "DcfResult",
    "dcf_saturation",
    "mcs_for_snr",
    "noise_dbm",
    "path_loss_db",
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
    d = max(distance_m, 1.0)
    loss = 40.05 + 20.0 * math.log10(frequency_ghz / 2.4) + 20.0 * math.log10(min(d, breakpoint_m))
    if d > breakpoint_m:
        loss += 35.0 * math.log10(d / breakpoint_m)
    return loss


def noise_dbm(bandwidth_mhz: int, noise_dbm_per_20mhz: float = -94.0) -> float:
    """Noise power over the channel: +3 dB per doubling of the 20 MHz base."""
    return noise_dbm_per_20mhz + 10.0 * math.log10(bandwidth_mhz / 20.0)


def mcs_for_snr(snr_db: float) -> int:
    """Highest MCS whose SNR threshold ``snr_db`` meets; -1 when below MCS0 (out of coverage)."""
    mcs = -1
    for index, threshold in enumerate(MCS_SNR_THRESHOLDS_DB):
        if snr_db >= threshold:
            mcs = index
    return mcs


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


@lru_cache(maxsize=4096)
def _fixed_point(n_stations: int, window: int, stages: int) -> tuple[float, float]:
    """Solve ``tau = 2 / (1 + W + p W sum_{i<m} (2p)^i)``, ``p = 1 - (1 - tau)^(n-1)`` by bisection on p."""
    if n_stations == 1:
        return 2.0 / (1.0 + window), 0.0

    def tau_of(p: float) -> float:
        return 2.0 / (1.0 + window + p * window * sum((2.0 * p) ** i for i in range(stages)))

    lo, hi = 0.0, 1.0
    for _ in range(80):  # p(tau(p)) - p is decreasing in p: a unique root in [0, 1)
        mid = 0.5 * (lo + hi)
        if 1.0 - (1.0 - tau_of(mid)) ** (n_stations - 1) > mid:
            lo = mid
        else:
            hi = mid
    p = 0.5 * (lo + hi)
    return tau_of(p), p


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
    mpdu_delimiter_bytes: int = 4,
    ack_bytes: int = 14,
    ack_rate_bps: float = 24e6,
    ack_preamble_s: float = 20e-6,
    ack_symbol_s: float = 4e-6,
) -> DcfResult:
    """Bianchi (2000) saturation throughput and access delay, basic access.

    ``T_s = T_data + SIFS + T_ack + DIFS`` and ``T_c = T_data + DIFS``; the data frame is the HE
    preamble plus whole OFDM symbols carrying MAC header, MPDU delimiter, payload, 16 service bits
    and 6 tail bits. The access delay of a tagged station is ``E[slot] / (tau (1 - tau)^(n - 1))``.

    :param n_stations: contending stations (>= 1).
    :param phy_rate_bps: PHY rate every station is assumed to use.
    :param payload_bytes: payload per frame; 0 is a header-only (null data) frame: it still contends for the
        channel and is acknowledged, so it has an access delay, but it carries no throughput.
    """
    if n_stations < 1:
        raise ValueError(f"n_stations: {n_stations} is not allowed; must be >= 1")
    if phy_rate_bps <= 0:
        raise ValueError(f"phy_rate_bps: {phy_rate_bps} is not allowed; must be > 0")
    if not payload_bytes >= 0:
        raise ValueError(f"payload_bytes: {payload_bytes} is not allowed; must be >= 0")
    window = cw_min + 1
    stages = round(math.log2((cw_max + 1) / window))
    tau, p = _fixed_point(int(n_stations), window, stages)

    bits_per_symbol = phy_rate_bps * symbol_s
    data_bits = 8 * (mac_header_bytes + mpdu_delimiter_bytes + payload_bytes) + 22
    t_data = preamble_s + math.ceil(data_bits / bits_per_symbol) * symbol_s
    ack_bits_per_symbol = ack_rate_bps * ack_symbol_s
    t_ack = ack_preamble_s + math.ceil((8 * ack_bytes + 22) / ack_bits_per_symbol) * ack_symbol_s
    t_success = t_data + sifs_s + t_ack + difs_s
    t_collision = t_data + difs_s

    p_idle_each = 1.0 - tau
    p_tr = 1.0 - p_idle_each**n_stations
    p_one = n_stations * tau * p_idle_each ** (n_stations - 1)  # = P_tr * P_s
    expected_slot = (1.0 - p_tr) * slot_s + p_one * t_success + (p_tr - p_one) * t_collision
    throughput = p_one * 8.0 * payload_bytes / expected_slot
    access_delay = expected_slot / (tau * p_idle_each ** (n_stations - 1))
    return DcfResult(
        n_stations=int(n_stations), tau=tau, collision_prob=p, throughput_bps=throughput,
        access_delay_s=access_delay, expected_slot_s=expected_slot, success_time_s=t_success,
        collision_time_s=t_collision,
    )
