"""Render modes: ``ansi`` text, ``rgb_array`` pictures, ``human`` windows (a no-op without a display)."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import skip_unless_recorded_platform
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


# ------------------------------------------------------------------ large sizes (issue 15, item 6)
PAPER = "offload_gym/WifiOffload-v0"


def _greedy_steps(env: gym.Env[Any, Any], n: int, seed: int = 0) -> None:
    from offload_gym.policies import make_policy

    obs, info = env.reset(seed=seed)
    policy = make_policy("greedy", env.unwrapped.config)  # type: ignore[attr-defined]
    for _ in range(n):
        a, _ = policy.predict(obs, action_masks=info["action_mask"])
        obs, _r, terminated, truncated, info = env.step(a)
        assert not (terminated or truncated)


@pytest.mark.parametrize("topology", [{"n_aps": 64}, {"n_users": 1000}, {"n_users": 300, "area_m": 10_000.0}])
def test_large_scenarios_render_fixed_size_frames_that_change(topology: dict[str, Any]) -> None:
    env = gym.make(PAPER, config={"topology": topology}, render_mode="rgb_array")
    _greedy_steps(env, 5)
    a = _frame(env)
    assert a.shape == (600, 1200, 3) and a.dtype == np.uint8
    _greedy_steps(env, 12)
    b = _frame(env)
    assert b.shape == a.shape and b.dtype == np.uint8
    assert not np.array_equal(a, b)
    env.close()


def _canvas(env: gym.Env[Any, Any]) -> Any:
    return render_mod._CANVASES[env.unwrapped]


def _boxes(texts: list[Any], renderer: Any) -> list[Any]:
    return [t.get_window_extent(renderer) for t in texts if t.get_visible() and t.get_text()]


def test_ap_labels_do_not_overlap_at_64_aps() -> None:
    env = gym.make(PAPER, config={"topology": {"n_aps": 64}}, render_mode="rgb_array")
    _greedy_steps(env, 3)
    _frame(env)
    c = _canvas(env)
    renderer = c.fig.canvas.get_renderer()
    art = c.art
    boxes = _boxes(art.ap_texts, renderer)
    assert len(boxes) == 64  # the default grid leaves room for every name
    labels = boxes + _boxes(art.phone_texts, renderer)
    for i, p in enumerate(labels):
        assert c.ax_map.bbox.x0 <= p.x0 and p.x1 <= c.ax_map.bbox.x1  # nothing spills out of the map
        assert c.ax_map.bbox.y0 <= p.y0 and p.y1 <= c.ax_map.bbox.y1
        for q in labels[i + 1:]:
            assert not p.overlaps(q), (p, q)
    env.close()


def test_per_ap_panels_and_estimates_summarise_many_aps() -> None:
    env = gym.make(PAPER, config={"topology": {"n_aps": 64}}, render_mode="rgb_array")
    _greedy_steps(env, 3)
    _frame(env)
    c = _canvas(env)
    assert c.ax_edges.get_title() == f"edge servers: {render_mod.PANEL_APS - 1} busiest of 64"
    assert "busiest of 64 cells" in c.ax_cells.get_title()
    ticks = [t.get_text() for t in c.art.edge_ticks]
    assert len(ticks) == render_mod.PANEL_APS and ticks[-1].startswith("+57")
    text = "\n".join(c.art.block.lines)
    assert f"{65 - render_mod.TABLE_ROWS} more APs" in text  # a summary line, not all 64 rows
    assert sum(line.startswith("  AP") for line in c.art.block.lines) == render_mod.TABLE_ROWS - 1
    env.close()


def test_thousand_phones_are_not_numbered_and_the_title_says_so() -> None:
    env = gym.make(PAPER, config={"topology": {"n_users": 1000}}, render_mode="rgb_array")
    _greedy_steps(env, 2)
    _frame(env)
    art = _canvas(env).art
    assert art.phone_texts == []
    assert "not numbered" in art.heading.get_text()
    env.close()


def test_blitted_frame_equals_a_fresh_figure_of_the_same_state() -> None:
    env = gym.make(PAPER, render_mode="rgb_array")
    _greedy_steps(env, 10)
    _frame(env)  # the figure and its background are made here
    env.step(int(np.flatnonzero(env.unwrapped.action_masks())[0]))  # type: ignore[attr-defined]
    later = _frame(env)  # drawn over the cached background
    clone = pickle.loads(pickle.dumps(env))  # no figure: its first frame is drawn from scratch
    assert np.array_equal(_frame(clone), later)
    env.close()
    clone.close()


def test_close_frees_the_figure() -> None:
    env = _make("rgb_array")
    env.reset(seed=0)
    _frame(env)
    assert env.unwrapped in render_mod._CANVASES
    env.close()
    assert env.unwrapped not in render_mod._CANVASES


def test_human_layout_draws_the_same_artists_without_blitting() -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    env = gym.make(PAPER, config={"topology": {"n_aps": 64}}, render_mode="rgb_array")
    _greedy_steps(env, 4)
    fig = Figure(figsize=render_mod.FIGSIZE_IN, dpi=render_mod.FRAME_DPI)
    FigureCanvasAgg(fig)
    c = render_mod._layout(fig, human=True)
    render_mod._draw(c, env.unwrapped)
    assert not any(a.get_animated() for _ax, arts in c.art.animated(c) for a in arts)
    fig.canvas.draw()
    img = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    text_panel = img[400:560, 650:1150]  # the decision text is there (drawn from cached glyphs)
    assert (text_panel < 100).any()
    env.close()


#: the episodes whose scenes the Python engine's recording holds (tests/data/python_engine_env_trajectories.json)
SCENE_CONFIGS: list[dict[str, Any]] = [
    {"topology": {"n_users": 12, "n_aps": 3}, "episode": {"queries": 40}},
    {"topology": {"n_users": 16, "n_aps": 4}, "episode": {"queries": 40}, "workload": {"attachment_prob": 0.5},
     "faults": {"ap_outages": [{"ap": 0, "start_s": 0.3, "duration_s": 3.0}], "on_outage": "fail"}},
]


def _plain(value: Any) -> Any:
    """A scene's value as plain Python numbers and lists (the same for numpy and Python numbers of one value)."""
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [_plain(getattr(value, f.name)) for f in dataclasses.fields(value)]
    if isinstance(value, np.ndarray):
        return [_plain(x) for x in value.tolist()]
    if isinstance(value, dict):
        return [[_plain(k), _plain(v)] for k, v in sorted(value.items())]
    if isinstance(value, (list, tuple)):
        return [_plain(x) for x in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    return value


def scene_digest(config: dict[str, Any], env: OffloadEnv | None = None, seen: set[str] | None = None,
                 on_step: Any = None) -> str:
    """The sha256 of what the renderers draw at every decision of one episode (the scene of envs/scene.py and the
    ``ansi`` text), under a fixed rule of actions (decompose often, spread the rest). ``on_step(env)`` runs at
    each decision (the live test renders the picture there); ``seen`` collects the decision kinds."""
    import dataclasses
    import hashlib

    from offload_gym.envs.scene import scene

    def drawn(env: OffloadEnv) -> bytes:
        sc = scene(env)
        assert sc is not None
        if sc.decision is not None and sc.decision.kind == "query":  # the position means something at subtasks only
            sc = dataclasses.replace(sc, decision=dataclasses.replace(sc.decision, position=0))
        return repr(_plain(sc)).encode() + env._render_ansi().encode()

    env = env if env is not None else OffloadEnv(config=config)
    _, info = env.reset(seed=3)
    digest = hashlib.sha256()
    for t in range(400):
        digest.update(drawn(env))
        if seen is not None:
            seen.add(info["decision"])
        if on_step is not None:
            on_step(env)
        allowed = np.flatnonzero(info["action_mask"])
        a = int(allowed[-1] if t % 3 == 0 else allowed[t % allowed.size])
        _, _, _, truncated, info = env.step(a)
        if truncated:
            break
    assert truncated
    digest.update(drawn(env))  # the last one, with the metrics
    return digest.hexdigest()


@pytest.mark.parametrize("index", range(len(SCENE_CONFIGS)))
def test_the_renderers_draw_the_python_engines_recorded_scenes(index: int) -> None:
    """What the renderers read (envs/scene.py: the topology, transfers in flight, edge batches and queues, cell
    contenders, the pending decision with its estimates and plan) and the ``ansi`` text equal the Python engine's
    at every decision (decompositions, subtask and aggregation decisions, transfers in flight, an outage): the
    Python engine's renderers drew its frames from the same scene, so the pictures are its pictures too."""
    import json

    from offload_gym.envs.scene import scene

    pytest.importorskip("torch")
    env = OffloadEnv(config=SCENE_CONFIGS[index], render_mode="rgb_array")
    seen: set[str] = set()
    flows = [0]

    def draw(env: OffloadEnv) -> None:
        frame = env.render()
        assert isinstance(frame, np.ndarray) and frame.dtype == np.uint8
        flows[0] += bool(render_mod._CANVASES[env].art.flow_lines.get_segments())

    digest = scene_digest(SCENE_CONFIGS[index], env, seen, draw)
    assert {"query", "subtask", "aggregation"} <= seen and flows[0] > 0
    sc = scene(env)
    assert sc is not None and sc.decision is None  # the final step: nothing pending
    env.close()
    recording = json.loads((Path(__file__).parent / "data" / "python_engine_env_trajectories.json").read_text())
    skip_unless_recorded_platform(recording)
    assert digest == recording["scenes"][index]
