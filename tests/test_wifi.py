"""Wi-Fi physics against closed forms: Bianchi saturation (docs/model.md#closed-form-tests), path loss, MCS."""

from __future__ import annotations

import math

import pytest

from offload_gym.sim.wifi import (
    MCS_SNR_THRESHOLDS_DB,
    dcf_saturation,
    he_ltf_count,
    mcs_for_snr,
    noise_dbm,
    path_loss_db,
    phy_rate_bps,
)

# docs/model.md#closed-form-tests: 1500 B at 86 Mb/s (HE20 MCS7), classic DCF timings
BIANCHI_REFERENCE = {1: (35.4, 0.34), 5: (35.9, 1.7), 10: (33.9, 3.5), 20: (31.7, 7.6), 50: (28.3, 21.2)}


@pytest.mark.parametrize("n", sorted(BIANCHI_REFERENCE))
def test_dcf_saturation_matches_reference(n: int) -> None:
    """The classic computation (access "dcf") against the reference values (docs/model.md#closed-form-tests), within 2 %."""
    throughput_mbps, delay_ms = BIANCHI_REFERENCE[n]
    res = dcf_saturation(n, phy_rate_bps=86e6, payload_bytes=1500, access="dcf")
    assert res.throughput_bps / 1e6 == pytest.approx(throughput_mbps, rel=0.02)
    assert res.access_delay_s * 1e3 == pytest.approx(delay_ms, rel=0.02)


def test_fixed_point_is_consistent() -> None:
    for n in (2, 7, 30, 120):
        res = dcf_saturation(n, phy_rate_bps=480e6, payload_bytes=1500, access="dcf")
        assert res.collision_prob == pytest.approx(1 - (1 - res.tau) ** (n - 1), abs=1e-9)
        w, m, p = 16, 6, res.collision_prob
        assert res.tau == pytest.approx(2 / (1 + w + p * w * sum((2 * p) ** i for i in range(m))), rel=1e-9)


def test_single_station_closed_form() -> None:
    # n = 1: tau = 2 / (W + 1), no collisions, E[slot] = (1 - tau) sigma + tau T_s
    res = dcf_saturation(1, phy_rate_bps=86e6, payload_bytes=1500)
    tau = 2 / 17
    assert res.tau == pytest.approx(tau)
    slot = (1 - tau) * 9e-6 + tau * res.success_time_s
    assert res.throughput_bps == pytest.approx(tau * 12000 / slot)
    assert res.access_delay_s == pytest.approx(slot / tau)


def test_edca_timings_by_hand() -> None:
    """access "edca": AIFS = SIFS + 3 slots, the HE preamble by spatial streams, EIFS after a collision."""
    # MCS11 80 MHz 2 SS: 1201 Mb/s x 13.6 us = 16,334 bits a symbol; 1534 B + 22 bits -> 1 symbol
    rate = 143.4e6 * 4.2 * 2
    res = dcf_saturation(1, phy_rate_bps=rate, payload_bytes=1500, spatial_streams=2)
    symbols = math.ceil((8 * (30 + 4 + 1500) + 22) / (rate * 13.6e-6))
    t_data = 44e-6 + 8e-6 + symbols * 13.6e-6  # one more HE-LTF at 2 streams
    t_ack = 20e-6 + math.ceil((8 * 14 + 22) / (24e6 * 4e-6)) * 4e-6  # 28 us at 24 Mb/s
    aifs = 16e-6 + 3 * 9e-6
    assert res.success_time_s == pytest.approx(t_data + 16e-6 + t_ack + aifs, rel=1e-12)
    assert res.collision_time_s == pytest.approx(t_data + 16e-6 + 9e-6 + aifs, rel=1e-12)  # ACK timeout, then AIFS
    assert res.idle_access_s == pytest.approx(t_data + 16e-6 + t_ack, rel=1e-12)
    eifs = 16e-6 + (20e-6 + math.ceil((8 * 14 + 22) / (6e6 * 4e-6)) * 4e-6) + aifs  # ACK at 6 Mb/s: 44 us
    with_eifs = dcf_saturation(1, phy_rate_bps=rate, payload_bytes=1500, spatial_streams=2, collision="eifs")
    assert with_eifs.collision_time_s == pytest.approx(t_data + eifs, rel=1e-12)
    dcf = dcf_saturation(1, phy_rate_bps=rate, payload_bytes=1500, access="dcf")
    assert dcf.success_time_s == pytest.approx(44e-6 + symbols * 13.6e-6 + 16e-6 + t_ack + 34e-6, rel=1e-12)
    assert dcf.collision_time_s == pytest.approx(44e-6 + symbols * 13.6e-6 + 34e-6, rel=1e-12)
    assert res.throughput_bps < dcf.throughput_bps and res.access_delay_s > dcf.access_delay_s
    one = dcf_saturation(1, phy_rate_bps=rate, payload_bytes=1500, spatial_streams=1)
    assert res.success_time_s - one.success_time_s == pytest.approx(8e-6, rel=1e-9)


def test_retry_limit_fixed_point_and_delivered_delay() -> None:
    """edca: Bianchi over 7 attempts (windows 16, 32, ..., 1024, 1024); the access delay of delivered frames."""
    for n in (2, 10, 50):
        res = dcf_saturation(n, phy_rate_bps=86e6, payload_bytes=1500, spatial_streams=1)
        p = res.collision_prob
        windows = [min(16 * 2**i, 1024) for i in range(7)]
        tau = sum(p**i for i in range(7)) / sum(p**i * (w + 1) / 2 for i, w in enumerate(windows))
        assert res.tau == pytest.approx(tau, rel=1e-9)
        assert p == pytest.approx(1 - (1 - res.tau) ** (n - 1), abs=1e-9)
        slots = sum(p ** (j - 1) * (1 - p) * sum((w + 1) / 2 for w in windows[:j]) for j in range(1, 8)) / (1 - p**7)
        assert res.access_delay_s == pytest.approx(res.expected_slot_s * slots, rel=1e-9)
        assert res.drop_prob == pytest.approx(p**7, rel=1e-9)
    # without drops (a huge limit) it is the classic expression E[slot] / (tau (1 - p))
    big = dcf_saturation(10, phy_rate_bps=86e6, payload_bytes=1500, spatial_streams=1, retry_limit=64)
    assert big.access_delay_s == pytest.approx(big.expected_slot_s / (big.tau * (1 - big.collision_prob)), rel=1e-6)


def test_he_ltf_count_follows_the_standard_table() -> None:
    assert [he_ltf_count(n) for n in range(1, 9)] == [1, 2, 4, 4, 6, 6, 8, 8]
    with pytest.raises(ValueError, match="spatial_streams"):
        he_ltf_count(9)
    with pytest.raises(ValueError, match="access"):
        dcf_saturation(3, phy_rate_bps=86e6, payload_bytes=1500, access="csma")


def test_more_stations_never_faster_per_station() -> None:
    for rate in (36e6, 480e6, 1204.56e6):
        previous_share, previous_delay = math.inf, 0.0
        for n in range(1, 80):
            res = dcf_saturation(n, phy_rate_bps=rate, payload_bytes=1500)
            share = res.throughput_bps / n
            assert share <= previous_share + 1e-9
            assert res.access_delay_s >= previous_delay - 1e-12
            previous_share, previous_delay = share, res.access_delay_s


def test_dcf_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n_stations"):
        dcf_saturation(0, phy_rate_bps=86e6, payload_bytes=1500)
    with pytest.raises(ValueError, match="phy_rate_bps"):
        dcf_saturation(3, phy_rate_bps=0.0, payload_bytes=1500)


def test_path_loss_tgax_enterprise() -> None:
    # docs/model.md#topology-and-radio: 5 m 60.7 dB, 10 m 66.7 dB, 20 m 77.3 dB, 40 m 87.8 dB at 5.18 GHz
    for d, expected in ((5, 60.7), (10, 66.7), (20, 77.3), (40, 87.8)):
        assert path_loss_db(d) == pytest.approx(expected, abs=0.1)
    assert path_loss_db(15) > path_loss_db(10)


def test_mcs_thresholds_and_rates() -> None:
    assert mcs_for_snr(4.9) == -1
    for mcs, threshold in enumerate(MCS_SNR_THRESHOLDS_DB):
        assert mcs_for_snr(threshold) == mcs
    assert phy_rate_bps(11, 20, 1) == pytest.approx(143.4e6)
    assert phy_rate_bps(11, 80, 2) == pytest.approx(143.4e6 * 4.2 * 2)
    assert phy_rate_bps(-1) == 0.0
    assert noise_dbm(80) == pytest.approx(-94 + 10 * math.log10(4))


def test_mcs_for_snr_is_the_highest_threshold_met_everywhere() -> None:
    """The bisection against the definition (the last MCS whose threshold the SNR meets), around every threshold,
    below MCS0 and for NaN (no coverage)."""
    for snr in [t + d for t in MCS_SNR_THRESHOLDS_DB for d in (-1e-9, 0.0, 1e-9, 0.5)] + [-100.0, 100.0, math.inf]:
        assert mcs_for_snr(snr) == max((m for m, t in enumerate(MCS_SNR_THRESHOLDS_DB) if snr >= t), default=-1)
    assert mcs_for_snr(math.nan) == -1 and mcs_for_snr(-math.inf) == -1


def test_the_path_loss_of_a_table_and_the_setups_distances_are_the_reference_floats() -> None:
    """The per-table path loss is :func:`path_loss_db` of each entry, and the episode setup's distances are
    ``np.linalg.norm``'s to the last bit (both are written out for speed)."""
    import numpy as np

    from offload_gym.config import make_config
    from offload_gym.sim.setup import EpisodeSetup
    from offload_gym.sim.wifi import path_loss_table_db

    rng = np.random.default_rng(3)
    drawn = rng.uniform(0.0, 80.0, size=(30, 4)) ** rng.uniform(0.5, 1.5, size=(30, 4))
    rows = [*drawn.tolist(), [0.0, 1.0, 10.0, 10.5]]
    for f, bp in ((5.18, 10.0), (2.4, 5.0), (6.0, 20.0)):
        table = path_loss_table_db(rows, f, bp)
        assert table == [[path_loss_db(d, f, bp) for d in row] for row in rows]
        assert table[-1][0] == table[-1][1]  # clamped to 1 m
    for seed in range(5):
        setup = EpisodeSetup(make_config({"topology": {"n_users": 25, "n_aps": 6}}), np.random.default_rng(seed))
        expected = np.linalg.norm(setup.user_xy[:, None, :] - setup.ap_xy[None, :, :], axis=2)
        assert setup.distance_m.tobytes() == expected.tobytes()
        assert setup.loss_db.tolist() == [[path_loss_db(d) for d in row] for row in expected.tolist()]
