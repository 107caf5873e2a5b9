"""Phone energy model (offload_gym.sim.energy): hand-computed cases and argument checks."""

from __future__ import annotations

import dataclasses
import math

import pytest

from offload_gym.sim.energy import (
    DEFAULT_PHONE_ENERGY,
    EnergyError,
    PhoneEnergyParams,
    compute_energy_j,
    query_energy_j,
    radio_energy_j,
)

PARAMS = PhoneEnergyParams(prefill_power_w=4.0, decode_power_w=2.5, tx_power_w=1.5, rx_power_w=0.75, idle_power_w=0.1)


def test_compute_energy_is_power_times_time() -> None:
    # 0.05 s prefill at 4 W + 0.8 s decode at 2.5 W = 0.2 + 2.0 J
    assert compute_energy_j(0.05, 0.8, PARAMS) == pytest.approx(2.2, rel=1e-12)
    assert compute_energy_j(0.0, 0.0, PARAMS) == 0.0


def test_radio_energy_is_power_times_airtime_plus_idle() -> None:
    # 2 ms tx at 1.5 W + 8 ms rx at 0.75 W + 1.2 s waiting at 0.1 W = 0.003 + 0.006 + 0.12 J
    assert radio_energy_j(0.002, 0.008, 1.2, PARAMS) == pytest.approx(0.129, rel=1e-12)


def test_local_query_on_an_idle_phone_matches_the_hand_calculation() -> None:
    # Default phone: 150 prompt tokens at 3000 tok/s, 45 answer tokens at 48 tok/s, nothing on the radio.
    prefill_s, decode_s = 150 / 3000, 45 / 48
    expected = 5.0 * 0.05 + 3.5 * 0.9375  # 0.25 + 3.28125 J
    assert query_energy_j(prefill_s=prefill_s, decode_s=decode_s) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(3.53125)


def test_offloaded_query_counts_only_the_radio() -> None:
    energy = query_energy_j(tx_airtime_s=0.004, rx_airtime_s=0.001, idle_s=2.0, params=PARAMS)
    assert energy == pytest.approx(1.5 * 0.004 + 0.75 * 0.001 + 0.1 * 2.0, rel=1e-12)
    assert energy == pytest.approx(radio_energy_j(0.004, 0.001, 2.0, PARAMS), rel=1e-15)


def test_query_energy_is_the_sum_of_its_parts() -> None:
    parts = {"prefill_s": 0.3, "decode_s": 1.7, "tx_airtime_s": 0.02, "rx_airtime_s": 0.01, "idle_s": 0.5}
    total = query_energy_j(**parts, params=PARAMS)
    assert total == pytest.approx(compute_energy_j(0.3, 1.7, PARAMS) + radio_energy_j(0.02, 0.01, 0.5, PARAMS))
    assert total == pytest.approx(4.0 * 0.3 + 2.5 * 1.7 + 1.5 * 0.02 + 0.75 * 0.01 + 0.1 * 0.5)


def test_each_power_scales_only_its_own_component() -> None:
    base = query_energy_j(prefill_s=1.0, decode_s=1.0, tx_airtime_s=1.0, rx_airtime_s=1.0, idle_s=1.0, params=PARAMS)
    for field in ("prefill_power_w", "decode_power_w", "tx_power_w", "rx_power_w", "idle_power_w"):
        bumped = dataclasses.replace(PARAMS, **{field: getattr(PARAMS, field) + 1.0})
        energy = query_energy_j(prefill_s=1.0, decode_s=1.0, tx_airtime_s=1.0, rx_airtime_s=1.0, idle_s=1.0,
                                params=bumped)
        assert energy == pytest.approx(base + 1.0), field


def test_defaults_are_ordered_as_the_sources_say() -> None:
    d = DEFAULT_PHONE_ENERGY
    assert d.prefill_power_w > d.decode_power_w > d.tx_power_w > d.rx_power_w > d.idle_power_w > 0
    assert dataclasses.is_dataclass(d) and d == PhoneEnergyParams()
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.tx_power_w = 2.0  # type: ignore[misc]


@pytest.mark.parametrize("value", [-0.1, math.inf, math.nan, True, "1.0"])
def test_bad_power_names_the_field(value: object) -> None:
    with pytest.raises(EnergyError, match=r"phone_energy\.rx_power_w: .* a power must be a finite number of watts >= 0"):
        PhoneEnergyParams(rx_power_w=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("argument", ["prefill_s", "decode_s", "tx_airtime_s", "rx_airtime_s", "idle_s"])
@pytest.mark.parametrize("value", [-1e-9, math.nan, math.inf, None])
def test_bad_duration_names_the_argument(argument: str, value: object) -> None:
    with pytest.raises(EnergyError, match=rf"^{argument}: .* a duration must be a finite number of seconds >= 0"):
        query_energy_j(**{argument: value})  # type: ignore[arg-type]
    assert issubclass(EnergyError, ValueError)
