"""The compiled DCF/EDCA kernel (offload_gym.core.wifi) against the Python model, float for float (``==``)."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_gym.config import WifiConfig, make_config
from offload_gym.core import wifi as core_wifi
from offload_gym.core._jit import HAVE_NUMBA
from offload_gym.sim import wifi

FRAME_BYTES = float(WifiConfig().frame_bytes)
PAYLOADS = (0.0, 1.0, 37.25, 1500.0, FRAME_BYTES)
STATIONS = (*range(1, 61), 100, 250)
#: every HE rate of the model: 12 MCS x 4 widths x 1-4 streams (distinct floats)
ALL_RATES = sorted({wifi.phy_rate_bps(mcs, bw, ss) for mcs in range(12) for bw in (20, 40, 80, 160) for ss in (1, 2, 3, 4)})
#: a cross-section for the sweeps over n: all MCS at three (width, streams) points
SOME_RATES = sorted({wifi.phy_rate_bps(mcs, bw, ss) for mcs in range(12) for bw, ss in ((20, 1), (80, 2), (160, 4))})
#: dcf_saturation keywords: both access modes, both collision models, retry limits 1/4/7, other AIFSN and windows
CONFIGS: tuple[dict[str, Any], ...] = (
    {},
    {"retry_limit": 1},
    {"retry_limit": 4},
    {"collision": "eifs"},
    {"collision": "eifs", "retry_limit": 1},
    {"collision": "eifs", "retry_limit": 4},
    {"aifsn": 2, "cw_min": 31, "cw_max": 1023, "spatial_streams": 4},
    {"aifsn": 7, "cw_min": 7, "cw_max": 255, "collision": "eifs", "spatial_streams": 1},
    {"access": "dcf"},
    {"access": "dcf", "cw_min": 31, "cw_max": 1023},
    {"access": "dcf", "cw_min": 7, "cw_max": 255},
)


def reference(n: int, rate: float, payload: float, kwargs: dict[str, Any]) -> tuple[float, float, float]:
    res = wifi.dcf_saturation(n, phy_rate_bps=rate, payload_bytes=payload, **kwargs)
    return res.throughput_bps, res.access_delay_s, res.idle_access_s


def mismatches(points: Any, kwargs: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The ``(n, rate, payload)`` points where the kernel and dcf_saturation differ in any bit."""
    params = core_wifi.dcf_kwargs_params(**kwargs)
    bad = []
    for n, rate, payload in points:
        got = core_wifi.dcf_point(n, rate, payload, params)
        want = reference(n, rate, payload, kwargs)
        if got != want:
            bad.append((n, rate, payload, got, want))
    return bad


@pytest.mark.parametrize("kwargs", CONFIGS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "default")
def test_equal_over_stations(kwargs: dict[str, Any]) -> None:
    """n = 1..60, 100, 250 at 36 rates and 5 payloads: every output identical."""
    assert mismatches(itertools.product(STATIONS, SOME_RATES, PAYLOADS), kwargs) == []


@pytest.mark.parametrize("kwargs", CONFIGS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "default")
def test_equal_over_rates(kwargs: dict[str, Any]) -> None:
    """Every HE rate (MCS, width, streams) and payload at a few station counts."""
    assert mismatches(itertools.product((1, 2, 5, 17, 50, 250), ALL_RATES, PAYLOADS), kwargs) == []


@pytest.mark.parametrize("spatial_streams", range(1, 9))
def test_equal_for_every_stream_count(spatial_streams: int) -> None:
    """The HE-LTF count (1, 2, 4, 4, 6, 6, 8, 8) enters the edca preamble."""
    kwargs = {"spatial_streams": spatial_streams}
    rates = [wifi.phy_rate_bps(mcs, 80, min(spatial_streams, 4)) for mcs in range(12)]
    assert mismatches(itertools.product((1, 3, 30), rates, PAYLOADS), kwargs) == []


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[dict[str, Any], list[tuple[int, float, float]]]:
    """Random keywords (windows in powers of two or not, retry limits up to 64, timings) and a few points."""
    cw_min = draw(st.sampled_from((1, 3, 7, 15, 31, 63)))
    if draw(st.booleans()):
        cw_max = (cw_min + 1) * 2 ** draw(st.integers(0, 7)) - 1
    else:
        cw_max = draw(st.integers(cw_min, 4095))
    timing = st.floats(1e-6, 1e-4)
    kwargs = {
        "access": draw(st.sampled_from(wifi.ACCESS_MODES)),
        "collision": draw(st.sampled_from(wifi.COLLISION_MODELS)),
        "cw_min": cw_min,
        "cw_max": cw_max,
        "retry_limit": draw(st.integers(1, 64)),
        "aifsn": draw(st.integers(1, 15)),
        "spatial_streams": draw(st.integers(1, 8)),
        "slot_s": draw(timing),
        "sifs_s": draw(timing),
        "difs_s": draw(timing),
        "preamble_s": draw(timing),
        "symbol_s": draw(st.floats(1e-6, 2e-5)),
        "he_ltf_s": draw(timing),
        "mac_header_bytes": draw(st.integers(0, 1000)),
        "ack_bytes": draw(st.integers(0, 1000)),
        "ack_rate_bps": draw(st.floats(1e6, 1e8)),
        "eifs_ack_rate_bps": draw(st.floats(1e6, 1e8)),
    }
    points = draw(st.lists(st.tuples(
        st.integers(1, 300),
        st.one_of(st.sampled_from(ALL_RATES), st.floats(1e5, 1e10)),
        st.one_of(st.sampled_from(PAYLOADS), st.floats(0.0, 65535.0)),
    ), min_size=1, max_size=5))
    return kwargs, points


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_equal_fuzzed(scenario: tuple[dict[str, Any], list[tuple[int, float, float]]]) -> None:
    kwargs, points = scenario
    assert mismatches(points, kwargs) == []


@pytest.mark.parametrize("kwargs", [{}, {"collision": "eifs"}, {"access": "dcf"}], ids=["edca", "eifs", "dcf"])
@pytest.mark.parametrize("immediate_access", [True, False])
def test_message_access_point(kwargs: dict[str, Any], immediate_access: bool) -> None:
    """The first frame's wait: the idle exchange alone in the cell with immediate_access, else the access delay."""
    params = core_wifi.dcf_kwargs_params(**kwargs)
    for n, rate, payload in itertools.product((1, 2, 16, 60), SOME_RATES, PAYLOADS):
        res = wifi.dcf_saturation(n, phy_rate_bps=rate, payload_bytes=payload, **kwargs)
        want = wifi.message_access_s(res, immediate_access)
        assert core_wifi.message_access_point(n, rate, payload, params, immediate_access) == want
    if immediate_access:  # the two branches differ: the test sees which one is taken
        res = wifi.dcf_saturation(1, phy_rate_bps=SOME_RATES[0], payload_bytes=1500.0, **kwargs)
        assert res.idle_access_s != res.access_delay_s


@pytest.mark.parametrize("overrides", [{}, {"access": "dcf"}, {"collision": "eifs", "retry_limit": 3, "aifsn": 2,
                                                               "immediate_access": False, "spatial_streams": 3}])
def test_dcf_params_is_the_engine_model(overrides: dict[str, Any]) -> None:
    """dcf_params(cfg.wifi) gives the model the engine runs: ``dcf_saturation`` with the Wi-Fi section's keywords
    (``sim.wifi.dcf_keywords``), and a message's access delay by ``message_access_s`` (one frame exchange alone in
    the cell with EDCA's immediate access)."""
    cfg = make_config({"wifi": overrides})
    params = core_wifi.dcf_params(cfg.wifi)
    assert params.shape == (core_wifi.N_PARAMS,) and params.dtype == np.float64
    immediate = cfg.wifi.immediate_access and cfg.wifi.access == "edca"
    keywords = wifi.dcf_keywords(cfg.wifi)
    for n, rate in itertools.product((1, 2, 17, 40), SOME_RATES[::5]):
        res = wifi.dcf_saturation(n, phy_rate_bps=rate, payload_bytes=FRAME_BYTES, **keywords)
        assert core_wifi.dcf_point(n, rate, FRAME_BYTES, params) == (res.throughput_bps, res.access_delay_s,
                                                                     res.idle_access_s)
        want = wifi.message_access_s(res, immediate)
        assert core_wifi.message_access_point(n, rate, FRAME_BYTES, params, immediate) == want


def test_params_slots() -> None:
    params = core_wifi.dcf_kwargs_params(access="dcf", collision="eifs", cw_max=255, retry_limit=4)
    assert params[core_wifi.P_ACCESS] == core_wifi.ACCESS_DCF
    assert params[core_wifi.P_COLLISION] == core_wifi.COLLISION_EIFS
    assert params[core_wifi.P_CW_MAX] == 255 and params[core_wifi.P_RETRY_LIMIT] == 4
    assert params[core_wifi.P_SLOT_S] == 9e-6 and params[core_wifi.P_MPDU_DELIMITER_BYTES] == 4
    with pytest.raises(ValueError, match="not keywords"):
        core_wifi.dcf_kwargs_params(slot=9e-6)
    with pytest.raises(ValueError, match="access"):
        core_wifi.dcf_kwargs_params(access="pcf")


def test_cached_point_equals_point() -> None:
    params = core_wifi.dcf_kwargs_params()
    cache = core_wifi.dcf_cache()
    for _ in range(2):  # misses, then hits
        for n, rate, payload in itertools.product((1, 2, 30), SOME_RATES[::4], PAYLOADS):
            assert core_wifi.dcf_point_cached(cache, n, rate, payload, params) == core_wifi.dcf_point(n, rate, payload,
                                                                                                        params)
    assert len(cache) == 3 * len(SOME_RATES[::4]) * len(set(PAYLOADS))


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed")
def test_kernels_are_compiled() -> None:
    """With numba importable the kernels are numba dispatchers that compiled a signature (not plain Python)."""
    from numba.core import config

    if config.DISABLE_JIT:
        pytest.skip("NUMBA_DISABLE_JIT=1: the plain-Python form runs")
    params = core_wifi.dcf_kwargs_params()
    core_wifi.dcf_point(3, 86e6, 1500.0, params)
    core_wifi.message_access_point(1, 86e6, 1500.0, params, True)
    core_wifi.dcf_point_cached(core_wifi.dcf_cache(), 3, 86e6, 1500.0, params)
    for kernel in (core_wifi.dcf_point, core_wifi.message_access_point, core_wifi.dcf_point_cached):
        assert kernel.signatures, kernel
