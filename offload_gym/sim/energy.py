"""Phone energy per query: on-device compute (prefill, decode) and the Wi-Fi radio (transmit, receive, idle).

The model is additive: each component is a constant power times the time the phone spends in that state, and
every power is the **increment over the phone's baseline** (screen, OS, the radio in deep power-save sleep),
which no scheduling decision changes::

    compute_energy_j = prefill_power_w * prefill_s + decode_power_w * decode_s
    radio_energy_j   = tx_power_w * tx_airtime_s + rx_power_w * rx_airtime_s + idle_power_w * idle_s
    query_energy_j   = compute_energy_j + radio_energy_j

What each duration is:

- ``prefill_s``, ``decode_s``: the phone's own model processing the prompt and generating tokens (a local item).
  Nothing is counted for work on an edge server: that is the server's energy, not the battery's.
- ``tx_airtime_s``: the phone's own data on the air (upload of the prompt, context and attachments). The simulator
  counts their bits at the phone's PHY rate; frame preambles, headers and the ACKs fall in the idle share below.
  ``rx_airtime_s``: data addressed to the phone (the answer), likewise.
- ``idle_s``: **the phone's wait for an edge answer**: from the end of its upload to the start of the answer's
  download, and any contention (backoff, others' frames) before or between its own frames. The radio stays
  associated and listens (power-save polling or constant-awake listening), which costs far less than receiving but
  not nothing. Time with no offloaded work outstanding is baseline and is not counted.

Components overlap freely: a phone that computes one item locally while it waits for another item's edge answer
pays both compute and idle power for that time.

The functions are pure and take scalars; a bad argument raises :class:`EnergyError` (a ``ValueError``) naming it.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields

__all__ = ["DEFAULT_PHONE_ENERGY", "EnergyError", "PhoneEnergyParams", "compute_energy_j", "query_energy_j",
           "radio_energy_j"]


class EnergyError(ValueError):
    """An energy parameter or duration that is not allowed. The message names the field or argument."""


@dataclass(frozen=True)
class PhoneEnergyParams:
    """Power draws of a phone, each the increment over its baseline [W].

    The defaults are round engineering values for a 2023-2024 flagship phone (Snapdragon 8 Gen 2/3 class) running a
    1B-class 4-bit model (the default ``phone`` of the scenario: 3000 tok/s prefill, 48 tok/s decode) and an
    802.11n/ac/ax radio. **They were not read off a table of the papers cited below**: in preparing them only the
    papers' abstracts and introductions could be checked, so each source supports the order of magnitude and the
    ordering of the components, not the digits. Treat the range column as the honest uncertainty and sweep it.

    =================== ======= =================================================================== ============
    field               default source (what was measured, on what)                                 range
    =================== ======= =================================================================== ============
    ``prefill_power_w`` 5.0 W   Whole-SoC draw of a phone under a sustained compute-bound load.     3 - 8 W
                                MELT (Laskaridis, Katevas, Minto, Haddadi, "MELTing point: Mobile
                                Evaluation of Language Transformers", MobiCom 2024, arXiv
                                2403.12844) measured LLM energy and thermals on Android and iOS
                                phones with MLC-LLM and llama.cpp and finds that energy and heat
                                make continuous on-device execution impractical; Xiao et al.,
                                "Understanding Large Language Models in Your Pockets" (arXiv
                                2410.03613) measured battery drain across phone SoCs of the major
                                vendors. Prefill keeps the NPU/GPU (or all big cores) busy; a
                                phone sustains roughly 4 - 6 W before it throttles (a general
                                figure, not taken from these papers).
    ``decode_power_w``  3.5 W   Decode is memory-bound (MELT; Xiao et al.): compute units wait on   2 - 6 W
                                DRAM, so the SoC draws less than in prefill. Huang et al.,
                                "MNN-AECS" (arXiv 2506.19884; 5 Android and 2 iOS phones) find
                                that decode dominates on-device LLM energy. At 48 tok/s the
                                default is ~73 mJ per generated token; prefill at 3000 tok/s is
                                ~1.7 mJ per prompt token.
    ``tx_power_w``      1.2 W   Halperin, Greenstein, Sheth, Wetherall, "Demystifying 802.11n       0.7 - 2.1 W
                                Power Consumption" (HotPower 2010): their 802.11n NIC (Intel Wi-Fi
                                Link 5300, a laptop card; phone chipsets draw less) draws up to
                                2.1 W in its high-rate MIMO configurations. Sun et al., "Modeling
                                WiFi Active Power/Energy Consumption in Smartphones" (ICDCS 2014,
                                an 802.11n phone) and Saha et al., "Revisiting 802.11 Power
                                Consumption Modeling in Smartphones" (WoWMoM 2016, 802.11n/ac
                                phones) model a phone's active Wi-Fi power; their coefficients
                                are not used here.
    ``rx_power_w``      0.9 W   Same sources. Receiving needs no power amplifier and is measured    0.4 - 1.3 W
                                below transmitting; the ratio used here (3/4) was not checked.
    ``idle_power_w``    0.2 W   The radio while the phone waits for an edge answer (see the         0.02 - 0.8 W
                                module docstring). Saha et al. (2016) show that a model ignoring
                                power-save mode overestimates the power at low frame rates. In
                                power save a phone's radio averages tens of mW, and constant-awake
                                idle listening is commonly put at a large fraction of receive
                                power (neither checked here). 0.2 W assumes the radio stays mostly
                                awake while an answer is due soon.
    =================== ======= =================================================================== ============
    """

    prefill_power_w: float = 5.0
    decode_power_w: float = 3.5
    tx_power_w: float = 1.2
    rx_power_w: float = 0.9
    idle_power_w: float = 0.2

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
                raise EnergyError(f"phone_energy.{f.name}: {value!r} is not allowed; a power must be a finite "
                                  "number of watts >= 0")


DEFAULT_PHONE_ENERGY = PhoneEnergyParams()


def _duration(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise EnergyError(f"{name}: {value!r} is not allowed; a duration must be a finite number of seconds >= 0")
    return float(value)


def compute_energy_j(prefill_s: float, decode_s: float, params: PhoneEnergyParams = DEFAULT_PHONE_ENERGY) -> float:
    """Energy [J] of the phone's own model: ``prefill_power_w * prefill_s + decode_power_w * decode_s``."""
    return (params.prefill_power_w * _duration("prefill_s", prefill_s)
            + params.decode_power_w * _duration("decode_s", decode_s))


def radio_energy_j(tx_airtime_s: float, rx_airtime_s: float, idle_s: float,
                   params: PhoneEnergyParams = DEFAULT_PHONE_ENERGY) -> float:
    """Energy [J] of the phone's Wi-Fi radio: transmit and receive power times airtime, idle power times the wait."""
    return (params.tx_power_w * _duration("tx_airtime_s", tx_airtime_s)
            + params.rx_power_w * _duration("rx_airtime_s", rx_airtime_s)
            + params.idle_power_w * _duration("idle_s", idle_s))


def query_energy_j(*, prefill_s: float = 0.0, decode_s: float = 0.0, tx_airtime_s: float = 0.0,
                   rx_airtime_s: float = 0.0, idle_s: float = 0.0,
                   params: PhoneEnergyParams = DEFAULT_PHONE_ENERGY) -> float:
    """Energy [J] a query costs its phone: :func:`compute_energy_j` plus :func:`radio_energy_j`.

    Durations are summed over the query's items (a decomposed query may run some subtasks on the phone and offload
    others); a state the query never entered is 0.
    """
    return compute_energy_j(prefill_s, decode_s, params) + radio_energy_j(tx_airtime_s, rx_airtime_s, idle_s, params)
