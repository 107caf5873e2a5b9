"""The model's formulas, written once in Python: the reference that the compiled core (:mod:`offload_gym.core`)
mirrors and its tests compare with.

The core's event engine runs these on true token counts, its estimates on predicted ones (docs/model.md). Every
function here is the exact floating-point expression the core evaluates, so a test can check the core against it
bit for bit, and the renderer, the validation scripts and the tests use the same formulas.

Integer kinds (:class:`HopKind`, :class:`ItemKind`, :class:`EventKind`, :class:`FaultKind`) replace the
strings the engine used to carry: they index arrays and compare as ints, which is what a core in arrays
needs. They are :class:`enum.IntEnum`, so they print with their names.
"""

from __future__ import annotations

import math
from enum import IntEnum

__all__ = [
    "MPDU_DELIMITER_BYTES",
    "PHONE",
    "PHY_SERVICE_TAIL_BITS",
    "EventKind",
    "FaultKind",
    "Hop",
    "HopKind",
    "ItemKind",
    "decode_rate_table",
    "decode_rate_tps",
    "ofdm_symbols",
    "route",
    "token_bytes",
]

#: location 0 is always the query's own phone; location ``j >= 1`` is AP ``j - 1``'s edge server
PHONE = 0

#: bytes of the A-MPDU delimiter in front of every MPDU (802.11-2020 9.7.1); the simulator keeps the default
MPDU_DELIMITER_BYTES = 4
#: 16 SERVICE bits and 6 tail bits of an HE data field (802.11ax 27.3.12)
PHY_SERVICE_TAIL_BITS = 22


class ItemKind(IntEnum):
    """What a piece of LLM work is (also the kind of decision the env asks for)."""

    WHOLE = 0
    SUBTASK = 1
    AGGREGATION = 2


class HopKind(IntEnum):
    """One leg of a message's route."""

    UP = 0  #: phone -> its AP over Wi-Fi (hop ``(UP, ap, user)``)
    BACKHAUL = 1  #: AP -> AP over the wire (hop ``(BACKHAUL,)``)
    DOWN = 2  #: AP -> phone over Wi-Fi (hop ``(DOWN, ap, user)``)


class EventKind(IntEnum):
    """Events of the engine's queue."""

    ARRIVAL = 0
    PHONE_DONE = 1
    PREFILL_DONE = 2
    DECODE_DONE = 3
    CELL = 4  #: the next transfer completion in an AP's cell (BSS)
    BACKHAUL_DONE = 5
    RELEASE = 6  #: a query's planner time is over
    FAULT = 7


class FaultKind(IntEnum):
    """Scheduled fault events (``faults`` in the config)."""

    AP_DOWN = 0
    AP_UP = 1
    BACKGROUND = 2  #: the number of background stations changes
    BACKHAUL = 3  #: the backhaul delay and rate change


#: a route leg: ``(HopKind.UP | HopKind.DOWN, ap, user)`` or ``(HopKind.BACKHAUL,)``
Hop = tuple[int, ...]


def token_bytes(tokens: float, bytes_per_token: float, overhead_bytes: float) -> float:
    """Bytes on the air of a message carrying ``tokens`` (``wifi.bytes_per_token``, ``wifi.message_overhead_bytes``)."""
    return tokens * bytes_per_token + overhead_bytes


def route(own_ap: int, user: int, src: int, dst: int) -> list[Hop]:
    """Hops from location ``src`` to ``dst`` for a phone associated with AP ``own_ap`` (``src != dst``).

    Work on a foreign AP goes phone -> own AP -> backhaul -> target, and back the same way; AP to AP is
    one backhaul hop (docs/model.md#transfers-and-backhaul).
    """
    own = own_ap + 1
    if src == PHONE:
        hops: list[Hop] = [(HopKind.UP, own_ap, user)]
        if dst != own:
            hops.append((HopKind.BACKHAUL,))
        return hops
    if dst == PHONE:
        hops = [(HopKind.BACKHAUL,)] if src != own else []
        hops.append((HopKind.DOWN, own_ap, user))
        return hops
    return [(HopKind.BACKHAUL,)]


def decode_rate_tps(r1_tps: float, kappa: float, batch: int) -> float:
    """Per-stream decode speed of a batch of ``batch`` streams, ``r(B) = r1 / (1 + kappa (B - 1))`` (0 if empty)."""
    return r1_tps / (1.0 + kappa * (batch - 1)) if batch > 0 else 0.0


def decode_rate_table(r1_tps: float, kappa: float, max_batch: int) -> list[float]:
    """``r(b)`` for ``b = 0..max_batch``, the same floats as :func:`decode_rate_tps`, for projections that index it.

    The empty batch's entry is ``r1``, not 0: a projection only reads it with no stream decoding, and the
    formula would divide by zero there at ``kappa = 1``.
    """
    return [r1_tps] + [r1_tps / (1.0 + kappa * (b - 1)) for b in range(1, max_batch + 1)]


def ofdm_symbols(payload_bytes: float, header_bytes: float, phy_rate_bps: float, symbol_s: float) -> int:
    """OFDM data symbols of a frame carrying ``payload_bytes`` after ``header_bytes`` (MAC header and delimiter)."""
    return math.ceil((8 * (header_bytes + payload_bytes) + PHY_SERVICE_TAIL_BITS) / (phy_rate_bps * symbol_s))
