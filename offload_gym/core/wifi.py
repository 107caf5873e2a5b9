"""Bianchi's DCF/EDCA saturation point as a numba kernel: :func:`offload_gym.sim.wifi.dcf_saturation`, bit for bit.

The compiled engine asks for the contention point on every hop, so the kernel takes the Wi-Fi parameters as one
float64 array (:func:`dcf_params`, slots ``P_*``) and returns only what the engine reads: total payload
throughput, a tagged station's mean access delay and the idle-medium exchange time.

Same floats as the Python model, operation for operation (tests/test_core_wifi.py compares them with ``==``):

* every ``float ** int`` of the model is ``x ** float(i)`` here: CPython calls libm ``pow`` for both, while numba
  lowers an integer exponent to repeated multiplication, which can differ in the last bit;
* ``sum((2p)^i)`` adds left to right from 0, ``round`` is banker's rounding in both (numba uses ``rint``);
* ``math.ceil(x) * symbol_s`` is ``np.ceil(x) * symbol_s``: the same float without an int64 that can overflow;
* ``min(window << i, cw_max + 1)`` doubles ``window`` until it reaches the cap: the same ints without a shift past
  64 bits.

The kernels assume the inputs :func:`~offload_gym.sim.wifi.dcf_saturation` accepts (``n_stations >= 1``, a rate
``> 0``, a payload ``>= 0``, ``retry_limit >= 1``, 1..8 spatial streams, the int-valued slots holding ints); they
do not validate, the Python function raises ``ValueError`` on the rest.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np

from offload_gym.config import WifiConfig
from offload_gym.core._jit import HAVE_NUMBA, njit
from offload_gym.sim import wifi as wifi_model
from offload_gym.sim.physics import PHY_SERVICE_TAIL_BITS

__all__ = [
    "ACCESS_DCF",
    "ACCESS_EDCA",
    "COLLISION_ACK_TIMEOUT",
    "COLLISION_EIFS",
    "N_PARAMS",
    "dcf_cache",
    "dcf_kwargs_params",
    "dcf_params",
    "dcf_point",
    "dcf_point_cached",
    "message_access_point",
]

# slots of the params array, in dcf_saturation's keyword order
P_SLOT_S = 0
P_SIFS_S = 1
P_DIFS_S = 2
P_CW_MIN = 3
P_CW_MAX = 4
P_PREAMBLE_S = 5
P_SYMBOL_S = 6
P_MAC_HEADER_BYTES = 7
P_MPDU_DELIMITER_BYTES = 8
P_ACK_BYTES = 9
P_ACK_RATE_BPS = 10
P_ACK_PREAMBLE_S = 11
P_ACK_SYMBOL_S = 12
P_SPATIAL_STREAMS = 13
P_ACCESS = 14
P_AIFSN = 15
P_HE_LTF_S = 16
P_RETRY_LIMIT = 17
P_COLLISION = 18
P_EIFS_ACK_RATE_BPS = 19
N_PARAMS = 20

#: ``params[P_ACCESS]``: 802.11ax EDCA as ns-3 runs it, or classic DCF (``access="edca"`` / ``"dcf"``)
ACCESS_EDCA = 0
ACCESS_DCF = 1
#: ``params[P_COLLISION]`` (edca): ``collision="ack-timeout"`` / ``"eifs"``
COLLISION_ACK_TIMEOUT = 0
COLLISION_EIFS = 1

#: the keyword of dcf_saturation behind each slot
_PARAM_NAMES: tuple[str, ...] = (
    "slot_s", "sifs_s", "difs_s", "cw_min", "cw_max", "preamble_s", "symbol_s", "mac_header_bytes",
    "mpdu_delimiter_bytes", "ack_bytes", "ack_rate_bps", "ack_preamble_s", "ack_symbol_s", "spatial_streams",
    "access", "aifsn", "he_ltf_s", "retry_limit", "collision", "eifs_ack_rate_bps",
)
_CODES: dict[str, dict[str, int]] = {
    "access": {"edca": ACCESS_EDCA, "dcf": ACCESS_DCF},
    "collision": {"ack-timeout": COLLISION_ACK_TIMEOUT, "eifs": COLLISION_EIFS},
}
#: the engine passes every keyword but mpdu_delimiter_bytes, which keeps its default (offload_gym.sim.wifi.dcf_keywords)
_WIFI_CONFIG_FIELDS: tuple[str, ...] = tuple(name for name in _PARAM_NAMES if name != "mpdu_delimiter_bytes")
_TAIL_BITS = float(PHY_SERVICE_TAIL_BITS)


def dcf_kwargs_params(**kwargs: Any) -> np.ndarray:
    """The params array of ``dcf_saturation(n, phy_rate_bps=..., payload_bytes=..., **kwargs)``: its defaults for
    the keywords not given (read from its signature, so the two cannot drift apart)."""
    defaults = inspect.signature(wifi_model.dcf_saturation.__wrapped__).parameters
    unknown = set(kwargs) - set(_PARAM_NAMES)
    if unknown:
        raise ValueError(f"dcf_kwargs_params: {sorted(unknown)} are not keywords of dcf_saturation")
    params = np.empty(N_PARAMS, dtype=np.float64)
    for slot, name in enumerate(_PARAM_NAMES):
        value = kwargs.get(name, defaults[name].default)
        if name in _CODES:
            if value not in _CODES[name]:
                raise ValueError(f"{name}: {value!r} is not allowed; choose one of {list(_CODES[name])}")
            value = _CODES[name][value]
        params[slot] = float(value)
    return params


def dcf_params(wifi: WifiConfig) -> np.ndarray:
    """The params array of the engine's Wi-Fi model for ``cfg.wifi`` (the keywords of
    :func:`offload_gym.sim.wifi.dcf_keywords`)."""
    return dcf_kwargs_params(**{name: getattr(wifi, name) for name in _WIFI_CONFIG_FIELDS})


@njit
def _tau_of(p: float, access: int, window: int, stages: int, cap: int, retry_limit: int) -> float:
    """``tau(p)`` of ``_fixed_point`` (dcf) or ``_fixed_point_retry`` (edca), in their order of operations."""
    if access == ACCESS_DCF:
        total = 0.0  # sum() starts from int 0: 0 + x0 is x0
        base = 2.0 * p
        for i in range(stages):
            total += base ** float(i)
        return 2.0 / (1.0 + window + p * window * total)
    num = 0.0
    den = 0.0
    power = 1.0
    w = window
    for _ in range(retry_limit):
        wi = min(w, cap)
        num += power
        den += power * (wi + 1) / 2.0
        power *= p
        if w < cap:
            w *= 2
    return num / den


@njit
def _fixed_point(n_stations: int, access: int, window: int, stages: int, cap: int, retry_limit: int) -> tuple[float, float]:
    """``(tau, p)`` of Bianchi's fixed point: ``_bisect`` of the Python model (80 halvings of [0, 1])."""
    if n_stations == 1:
        if access == ACCESS_DCF:
            return 2.0 / (1.0 + window), 0.0
        return _tau_of(0.0, access, window, stages, cap, retry_limit), 0.0
    exponent = float(n_stations - 1)
    lo = 0.0
    hi = 1.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if 1.0 - (1.0 - _tau_of(mid, access, window, stages, cap, retry_limit)) ** exponent > mid:
            lo = mid
        else:
            hi = mid
    p = 0.5 * (lo + hi)
    return _tau_of(p, access, window, stages, cap, retry_limit), p


@njit
def _delivered_backoff_slots(p: float, window: int, cap: int, retry_limit: int) -> float:
    """Mean generic slots to the success of a delivered frame (``_delivered_backoff_slots`` of the model)."""
    total = 0.0
    weight = 0.0
    waited = 0.0
    power = 1.0
    w = window
    for _ in range(retry_limit):
        waited += (min(w, cap) + 1) / 2.0
        total += power * waited
        weight += power
        power *= p
        if w < cap:
            w *= 2
    return total / weight


@njit
def _legacy_frame_s(nbytes: float, rate_bps: float, preamble_s: float, symbol_s: float) -> float:
    """``legacy_frame_s`` of the model: the non-HT ACK's duration."""
    return preamble_s + np.ceil((8.0 * nbytes + _TAIL_BITS) / (rate_bps * symbol_s)) * symbol_s


@njit
def _frame_times(phy_rate_bps: float, payload_bytes: float, params: np.ndarray) -> tuple[float, float, float, float]:
    """``(T_data, T_ack, T_s, T_c)`` of the model, in its order of operations."""
    access = int(params[P_ACCESS])
    slot_s = params[P_SLOT_S]
    sifs_s = params[P_SIFS_S]
    difs_s = params[P_DIFS_S]
    symbol_s = params[P_SYMBOL_S]
    bits_per_symbol = phy_rate_bps * symbol_s
    data_bits = 8.0 * (params[P_MAC_HEADER_BYTES] + params[P_MPDU_DELIMITER_BYTES] + payload_bytes) + _TAIL_BITS
    if access == ACCESS_DCF:
        preamble = params[P_PREAMBLE_S]
        ifs = difs_s
    else:
        streams = int(params[P_SPATIAL_STREAMS])
        ltfs = streams if streams <= 2 else 2 * ((streams + 1) // 2)  # he_ltf_count: 2 ceil(ss / 2)
        preamble = params[P_PREAMBLE_S] + (ltfs - 1) * params[P_HE_LTF_S]
        ifs = sifs_s + int(params[P_AIFSN]) * slot_s
    t_data = preamble + np.ceil(data_bits / bits_per_symbol) * symbol_s
    ack_bytes = params[P_ACK_BYTES]
    t_ack = _legacy_frame_s(ack_bytes, params[P_ACK_RATE_BPS], params[P_ACK_PREAMBLE_S], params[P_ACK_SYMBOL_S])
    t_success = t_data + sifs_s + t_ack + ifs
    if access == ACCESS_DCF:
        t_collision = t_data + difs_s
    elif int(params[P_COLLISION]) == COLLISION_ACK_TIMEOUT:
        t_collision = t_data + sifs_s + slot_s + ifs
    else:
        t_eifs_ack = _legacy_frame_s(ack_bytes, params[P_EIFS_ACK_RATE_BPS], params[P_ACK_PREAMBLE_S],
                                     params[P_ACK_SYMBOL_S])
        t_collision = t_data + sifs_s + t_eifs_ack + ifs
    return t_data, t_ack, t_success, t_collision


@njit
def dcf_point(n_stations: int, phy_rate_bps: float, payload_bytes: float, params: np.ndarray) -> tuple[float, float, float]:
    """``(throughput_bps, access_delay_s, idle_access_s)`` of ``dcf_saturation(n_stations, ...)`` for the
    parameters ``params`` (:func:`dcf_params`): the same floats, bit for bit. Inputs are not validated."""
    tau, p = fixed_point(n_stations, params)
    return dcf_from_fixed_point(n_stations, phy_rate_bps, payload_bytes, params, tau, p)


@njit
def fixed_point(n_stations: int, params: np.ndarray) -> tuple[float, float]:
    """``(tau, p)`` for ``n_stations``: the expensive part of :func:`dcf_point` (80 bisection steps), which
    depends on the station count and the parameters only, so callers can keep it per count."""
    access = int(params[P_ACCESS])
    window = int(params[P_CW_MIN]) + 1
    cap = int(params[P_CW_MAX]) + 1
    retry_limit = int(params[P_RETRY_LIMIT])
    stages = 0
    if access == ACCESS_DCF:
        stages = round(math.log2(cap / window))
    return _fixed_point(n_stations, access, window, stages, cap, retry_limit)


@njit
def dcf_from_fixed_point(n_stations: int, phy_rate_bps: float, payload_bytes: float, params: np.ndarray, tau: float,
                         p: float) -> tuple[float, float, float]:
    """:func:`dcf_point` given its :func:`fixed_point` ``(tau, p)``: frame times, slot and the three results."""
    access = int(params[P_ACCESS])
    window = int(params[P_CW_MIN]) + 1
    cap = int(params[P_CW_MAX]) + 1
    retry_limit = int(params[P_RETRY_LIMIT])
    t_data, t_ack, t_success, t_collision = _frame_times(phy_rate_bps, payload_bytes, params)

    slot_s = params[P_SLOT_S]
    p_idle_each = 1.0 - tau
    p_tr = 1.0 - p_idle_each ** float(n_stations)
    p_one = n_stations * tau * p_idle_each ** float(n_stations - 1)
    expected_slot = (1.0 - p_tr) * slot_s + p_one * t_success + (p_tr - p_one) * t_collision
    throughput = p_one * 8.0 * payload_bytes / expected_slot
    if access == ACCESS_DCF:
        access_delay = expected_slot / (tau * p_idle_each ** float(n_stations - 1))
    else:
        access_delay = expected_slot * _delivered_backoff_slots(p, window, cap, retry_limit)
    return throughput, access_delay, t_data + params[P_SIFS_S] + t_ack


@njit
def message_access_point(n_stations: int, phy_rate_bps: float, payload_bytes: float, params: np.ndarray,
                         immediate_access: bool) -> float:
    """``message_access_s(dcf_saturation(...), immediate_access)``: the idle-medium exchange for a sender alone in
    its cell with ``immediate_access``, else the mean access delay."""
    _, access_delay, idle_access = dcf_point(n_stations, phy_rate_bps, payload_bytes, params)
    return idle_access if immediate_access and n_stations == 1 else access_delay


def dcf_cache() -> Any:
    """An empty memo for :func:`dcf_point_cached`, keyed ``(n, rate_bps, payload_bytes)`` like the engine's
    ``_dcf_cache``: a numba typed Dict (a plain dict without numba or with ``NUMBA_DISABLE_JIT=1``). One memo
    serves one params array."""
    if not HAVE_NUMBA:  # pragma: no cover
        return {}
    from numba import typed, types

    return typed.Dict.empty(types.Tuple((types.int64, types.float64, types.float64)), types.UniTuple(types.float64, 3))


@njit
def dcf_point_cached(cache: Any, n_stations: int, phy_rate_bps: float, payload_bytes: float,
                     params: np.ndarray) -> tuple[float, float, float]:
    """:func:`dcf_point` through the memo ``cache`` (:func:`dcf_cache`), filled for ``params`` only."""
    key = (n_stations, float(phy_rate_bps), float(payload_bytes))
    if key in cache:
        return cache[key]
    res = dcf_point(n_stations, phy_rate_bps, payload_bytes, params)
    cache[key] = res
    return res
