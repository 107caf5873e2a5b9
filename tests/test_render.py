"""Render modes: ``ansi`` text, ``rgb_array`` pictures, ``human`` windows (a no-op without a display)."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import offload_gym  # noqa: F401 - registers the ids
from offload_gym import render as render_mod
from offload_gym.envs.offload_env import OffloadEnv

TINY = "offload_gym/WifiOffload-tiny-v0"


def _make(render_mode: str | None, env_id: str = TINY) -> gym.Env[Any, Any]:
    return gym.make(env_id, render_mode=render_mode)


def _frame(env: gym.Env[Any, Any]) -> np.ndarray:
    frame = env.render()
    assert isinstance(frame, np.ndarray)
    return frame


def test_metadata_lists_the_modes() -> None:
    assert OffloadEnv.metadata["render_modes"] == ["ansi", "rgb_array", "human"]


def test_rgb_array_is_uint8_hwc_with_a_stable_shape() -> None:
    env = _make("rgb_array")
    env.reset(seed=0)
    first = _frame(env)
    assert first.dtype == np.uint8
    assert first.ndim == 3 and first.shape[2] == 3
    assert first.shape == (600, 1200, 3)
    for _ in range(4):
        env.step(env.unwrapped.action_masks().nonzero()[0][-1])  # type: ignore[attr-defined]
        frame = _frame(env)
        assert frame.shape == first.shape and frame.dtype == np.uint8
    env.close()


def test_frame_before_reset_and_at_episode_end_has_the_same_shape() -> None:
    env = OffloadEnv(scenario="tiny", render_mode="rgb_array")
    before = _frame(env)
    env.reset(seed=3)
    truncated = False
    while not truncated:
        _, _, _, truncated, _ = env.step(0)
    after = _frame(env)
    assert before.shape == after.shape == (600, 1200, 3)
    env.close()


def test_different_states_give_different_pixels() -> None:
    env = _make("rgb_array")
    env.reset(seed=0)
    a = _frame(env)
    env.step(1)  # whole on AP 0 (the tiny scenario's phones are all in coverage)
    env.step(0)
    b = _frame(env)
    assert not np.array_equal(a, b)
    env.reset(seed=1)  # another topology
    c = _frame(env)
    assert not np.array_equal(a, c)
    env.close()


def test_same_state_gives_the_same_pixels() -> None:
    env = _make("rgb_array")
    env.reset(seed=5)
    assert np.array_equal(_frame(env), _frame(env))
    env.close()


def test_ansi_still_returns_text() -> None:
    env = _make("ansi")
    env.reset(seed=0)
    text = env.render()
    assert isinstance(text, str) and text.strip()
    assert "AP0" in text
    env.close()


def test_check_env_passes_without_warnings_in_rgb_array_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render_mod, "_has_display", lambda: False)  # check_env also tries "human": no window
    env = _make("rgb_array")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []
    env.close()


def test_env_pickles_mid_episode_after_a_render() -> None:
    env = _make("rgb_array")
    env.reset(seed=2)
    for _ in range(3):
        env.step(0)
    frame = _frame(env)
    clone = pickle.loads(pickle.dumps(env))
    # the copy draws the same state on a figure of its own
    assert np.array_equal(_frame(clone), frame)
    mask = env.unwrapped.action_masks()  # type: ignore[attr-defined]
    a = int(np.flatnonzero(mask)[0])
    obs1, *_ = env.step(a)
    obs2, *_ = clone.step(a)
    np.testing.assert_array_equal(obs1, obs2)
    env.close()
    clone.close()


def test_close_is_idempotent_and_render_works_after_close() -> None:
    env = _make("rgb_array")
    env.reset(seed=0)
    first = _frame(env)
    env.close()
    env.close()
    assert np.array_equal(_frame(env), first)  # a fresh figure, the same picture
    env.close()


def test_bogus_render_mode_raises_value_error() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gym.make warns before the env raises
        with pytest.raises(ValueError, match="render_mode"):
            gym.make(TINY, render_mode="bogus")


def test_human_without_display_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render_mod, "_has_display", lambda: False)
    env = _make("human")
    env.reset(seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert env.render() is None
        env.step(0)
        assert env.render() is None
    assert [str(w.message) for w in caught] == []
    pickle.dumps(env)
    env.close()
    env.close()


def test_command_line_writes_a_png(tmp_path: Path) -> None:
    out = tmp_path / "img" / "frame.png"
    assert render_mod.main(["--out", str(out), "--steps", "3", "--seed", "1"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
