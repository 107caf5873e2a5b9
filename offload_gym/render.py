"""Pictures of an :class:`~offload_gym.envs.offload_env.OffloadEnv` state (``rgb_array`` and ``human`` render modes).

:func:`render_rgb` draws the state with matplotlib on an Agg canvas and returns it as a ``uint8`` array
of shape ``(600, 1200, 3)``:

* left, the map: the square area, APs (triangles), phones (dots; purple while computing, grey crosses
  when out of coverage), a line from every phone to its AP coloured by the uplink PHY rate, the Wi-Fi
  transfers in flight as thick arrows (red uplink, orange downlink, labelled with the message size) and
  the phone of the current decision circled;
* top right, per AP: the edge server's batch (running streams), queued and in-transit items against
  ``max_batch``, and the stations contending in the cell (background, uploading phones, the AP itself);
* bottom right, the current decision (kind, query, K, predicted tokens and difficulty), the
  per-location estimates behind the observation, the list scheduler's decomposed plan, and the clock.

The figure is made at the first render and reused; it lives in a module-level cache keyed (weakly) by
the env, so the env itself stays picklable. :func:`close_render` (called by ``env.close()``) drops it.

``python -m offload_gym.render --out docs/img/frame.png [--seed S] [--steps N]`` saves one frame of the
paper scenario after ``N`` decisions of the built-in greedy scheduler.
"""

from __future__ import annotations

import argparse
import os
import sys
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from offload_gym.envs.offload_env import OffloadEnv

__all__ = ["FIGSIZE_IN", "FRAME_DPI", "close_render", "main", "render_human", "render_rgb"]

FIGSIZE_IN = (12.0, 6.0)  #: figure size (inches); with FRAME_DPI the frame is 1200 x 600 px
FRAME_DPI = 100

_UP_COLOR = "tab:red"
_DOWN_COLOR = "darkorange"
_FOCUS_COLOR = "crimson"
_BUSY_COLOR = "tab:purple"
_NON_INTERACTIVE = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}


@dataclass
class _Canvas:
    """A figure with its axes, made once per env and redrawn in place."""

    fig: Figure
    ax_map: Axes
    ax_cbar: Axes
    ax_edges: Axes
    ax_cells: Axes
    ax_text: Axes
    human: bool = False
    cbar_range: tuple[float, float] | None = None


# env -> its canvas; weak keys: an env that is garbage-collected takes its figure with it
_CANVASES: weakref.WeakKeyDictionary[Any, _Canvas] = weakref.WeakKeyDictionary()
# envs in human mode that found no display (nothing is drawn for them)
_HEADLESS: weakref.WeakSet[Any] = weakref.WeakSet()


def _unwrapped(env: Any) -> OffloadEnv:
    return getattr(env, "unwrapped", env)  # type: ignore[no-any-return]


def _layout(fig: Figure, human: bool) -> _Canvas:
    return _Canvas(
        fig=fig,
        ax_map=fig.add_axes((0.045, 0.15, 0.39, 0.78)),
        ax_cbar=fig.add_axes((0.425, 0.15, 0.011, 0.78)),
        ax_edges=fig.add_axes((0.565, 0.57, 0.2, 0.36)),
        ax_cells=fig.add_axes((0.81, 0.57, 0.175, 0.36)),
        ax_text=fig.add_axes((0.528, 0.01, 0.465, 0.44)),
        human=human,
    )


def _agg_canvas() -> _Canvas:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE_IN, dpi=FRAME_DPI)
    FigureCanvasAgg(fig)
    return _layout(fig, human=False)


# ------------------------------------------------------------------ drawing
def _loc_name(loc: int) -> str:
    return "phone" if loc == 0 else f"AP{loc - 1}"


def _rate_norm(env: OffloadEnv) -> tuple[float, float]:
    from offload_gym.sim.wifi import HE_RATES_20MHZ_MBPS, phy_rate_bps

    w = env.config.wifi
    top = len(HE_RATES_20MHZ_MBPS) - 1
    return (phy_rate_bps(0, w.bandwidth_mhz, w.spatial_streams) / 1e6,
            phy_rate_bps(top, w.bandwidth_mhz, w.spatial_streams) / 1e6)


def _draw_map(c: _Canvas, env: OffloadEnv) -> None:
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D

    ax = c.ax_map
    ax.cla()
    area = env.config.topology.area_m
    ax.set_xlim(0.0, area)
    ax.set_ylim(0.0, area)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.grid(True, color="0.92", lw=0.6)
    ax.set_axisbelow(True)
    cmap = colormaps["viridis"]
    lo, hi = _rate_norm(env)
    norm = Normalize(vmin=lo, vmax=hi)
    if c.cbar_range != (lo, hi):  # the colour bar only changes with the Wi-Fi config
        c.ax_cbar.cla()
        cbar = c.fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=c.ax_cbar)
        cbar.set_label("phone uplink PHY rate (Mb/s)", fontsize=9)
        cbar.ax.tick_params(labelsize=8)
        c.cbar_range = (lo, hi)
    sim = env.sim
    if sim is None:
        ax.set_title("offload_gym: call reset() first", fontsize=11)
        return
    # plain arrays whatever container the simulator keeps them in
    ap_xy = np.asarray(sim.ap_xy, dtype=float).reshape(-1, 2)
    user_xy = np.asarray(sim.user_xy, dtype=float).reshape(-1, 2)
    own = np.asarray(sim.own_ap, dtype=int).reshape(-1)
    up_rate = np.asarray(sim.up_rate_bps, dtype=float).reshape(-1)
    # association lines, coloured by the uplink rate
    for u in range(sim.n_users):
        a = int(own[u])
        if a < 0:
            continue
        rate = up_rate[u] / 1e6
        ax.plot([user_xy[u, 0], ap_xy[a, 0]], [user_xy[u, 1], ap_xy[a, 1]], color=cmap(norm(rate)), lw=1.6,
                alpha=0.85, zorder=1)
    # Wi-Fi transfers in flight, one arrow per (direction, AP, phone)
    flows: dict[tuple[str, int, int], list[float]] = {}
    for cell in sim.cells:
        for m in cell.msgs:
            direction, ap, user = m.hops[m.hop]
            flows.setdefault((direction, int(ap), int(user)), []).append(float(m.nbytes))
    for (direction, ap, user), sizes in flows.items():
        p_phone, p_ap = user_xy[user], ap_xy[ap]
        src, dst = (p_phone, p_ap) if direction == "up" else (p_ap, p_phone)
        color = _UP_COLOR if direction == "up" else _DOWN_COLOR
        ax.annotate("", xy=(dst[0], dst[1]), xytext=(src[0], src[1]), zorder=4,
                    arrowprops={"arrowstyle": "-|>,head_length=0.7,head_width=0.35", "color": color, "lw": 3.2,
                                "shrinkA": 5, "shrinkB": 9})
        mid = 0.5 * (p_phone + p_ap)
        label = f"{sum(sizes) / 1e3:.0f} kB" + (f" ×{len(sizes)}" if len(sizes) > 1 else "")
        ax.text(mid[0], mid[1], label, fontsize=7, color=color, ha="center", va="center", zorder=5,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
    # APs
    ax.scatter(ap_xy[:, 0], ap_xy[:, 1], marker="^", s=260, c="tab:blue", edgecolors="black", zorder=3)
    for a in range(sim.n_aps):
        ax.annotate(f"AP{a}", (ap_xy[a, 0], ap_xy[a, 1]), xytext=(0, 11), textcoords="offset points", ha="center",
                    fontsize=10, fontweight="bold", color="navy", zorder=6)
    # phones: idle / computing / out of coverage
    busy = np.array([p.running is not None for p in sim.phones], dtype=bool)
    covered = own >= 0
    for sel, color, marker in ((covered & ~busy, "black", "o"), (covered & busy, _BUSY_COLOR, "o"),
                               (~covered, "0.55", "x")):
        if sel.any():
            ax.scatter(user_xy[sel, 0], user_xy[sel, 1], s=30, c=color, marker=marker, zorder=3)
    for u in range(sim.n_users):
        ax.annotate(str(u), (user_xy[u, 0], user_xy[u, 1]), xytext=(4, -9), textcoords="offset points", fontsize=6.5,
                    color="0.3", zorder=3)
    # the phone of the current decision
    query = env._query
    if query is not None and env._kind != "end":
        xy = user_xy[query.user]
        ax.scatter([xy[0]], [xy[1]], s=340, facecolors="none", edgecolors=_FOCUS_COLOR, linewidths=2.4, zorder=6)
    ax.set_title(f"{sim.n_users} phones, {sim.n_aps} APs, {area:g} m square   t = {sim.now:.3f} s", fontsize=11)
    handles = [
        Line2D([], [], ls="none", marker="^", ms=10, mfc="tab:blue", mec="black", label="AP + edge server"),
        Line2D([], [], ls="none", marker="o", ms=5, color="black", label="phone"),
        Line2D([], [], ls="none", marker="o", ms=5, color=_BUSY_COLOR, label="phone computing"),
        Line2D([], [], ls="none", marker="x", ms=6, color="0.55", label="out of coverage"),
        Line2D([], [], color=_UP_COLOR, lw=3, label="uplink transfer"),
        Line2D([], [], color=_DOWN_COLOR, lw=3, label="downlink transfer"),
        Line2D([], [], ls="none", marker="o", ms=12, mfc="none", mec=_FOCUS_COLOR, mew=2, label="phone of the decision"),
    ]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=4, fontsize=8, frameon=False,
              handletextpad=0.4, columnspacing=1.2)


def _ap_ticks(ax: Axes, n: int) -> None:
    ax.set_xticks(range(n))
    ax.set_xticklabels([f"AP{e}" for e in range(n)], fontsize=8, rotation=0 if n <= 8 else 90)
    ax.tick_params(axis="y", labelsize=8)


def _draw_edges(c: _Canvas, env: OffloadEnv) -> None:
    ax = c.ax_edges
    ax.cla()
    sim = env.sim
    n = env.n_aps
    max_batch = env.config.edge.max_batch
    batch = np.array([sim.edges[e].batch for e in range(n)] if sim is not None else [0] * n, dtype=float)
    queued = np.array([len(sim.edges[e].ready) for e in range(n)] if sim is not None else [0] * n, dtype=float)
    transit = np.array([len(sim.edges[e].waiting) for e in range(n)] if sim is not None else [0] * n, dtype=float)
    x = np.arange(n)
    w = 0.27
    ax.bar(x - w, batch, w, color="tab:green", label="in batch")
    ax.bar(x, queued, w, color="tab:orange", label="queued")
    ax.bar(x + w, transit, w, color="tab:gray", label="in transit")
    for xs, vals in ((x - w, batch), (x, queued), (x + w, transit)):
        for xi, v in zip(xs, vals, strict=True):
            if v > 0:
                ax.text(xi, v, f"{v:.0f}", ha="center", va="bottom", fontsize=7)
    ax.axhline(max_batch, color="tab:green", ls="--", lw=1)
    top = max(float(max_batch), float(np.max(np.concatenate([batch, queued, transit]))) if n else 0.0) * 1.22
    ax.set_ylim(0.0, top)
    ax.text(n - 0.5, max_batch, f"max_batch {max_batch}", ha="right", va="bottom", fontsize=7, color="tab:green")
    ax.set_xlim(-0.6, n - 0.4)
    _ap_ticks(ax, n)
    ax.set_ylabel("items", fontsize=9)
    ax.set_title("edge servers", fontsize=10)
    ax.legend(loc="upper left", fontsize=7, ncol=3, frameon=False, handlelength=1.0, columnspacing=0.8)


def _draw_cells(c: _Canvas, env: OffloadEnv) -> None:
    ax = c.ax_cells
    ax.cla()
    sim = env.sim
    n = env.n_aps
    bg = float(env.config.wifi.background_stations)
    up = np.array([len(sim.cells[e].uploads) for e in range(n)] if sim is not None else [0] * n, dtype=float)
    ap = np.array([1.0 if sim.cells[e].downloads else 0.0 for e in range(n)] if sim is not None else [0] * n)
    x = np.arange(n)
    ax.bar(x, np.full(n, bg), 0.6, color="0.75", label="background")
    ax.bar(x, up, 0.6, bottom=bg, color=_UP_COLOR, label="phones up")
    ax.bar(x, ap, 0.6, bottom=bg + up, color=_DOWN_COLOR, label="AP sending")
    for e in range(n):
        total = sim.cell_contenders(e) if sim is not None else int(bg)
        ax.text(e, bg + up[e] + ap[e], str(total), ha="center", va="bottom", fontsize=8, fontweight="bold")
    ax.set_ylim(0.0, max(bg + float(np.max(up + ap)) if n else bg, 1.0) * 1.35)
    ax.set_xlim(-0.6, n - 0.4)
    _ap_ticks(ax, n)
    ax.set_ylabel("stations", fontsize=9)
    ax.set_title("Wi-Fi contenders per cell", fontsize=10)
    ax.legend(loc="upper left", fontsize=7, ncol=2, frameon=False, handlelength=1.0, columnspacing=0.8)


def _decision_lines(env: OffloadEnv) -> list[str]:
    from offload_gym.sim.workload import CHAIN, DAG, FAN_OUT

    sim = env.sim
    assert sim is not None
    cfg = env.config
    lines = [f"t = {sim.now:.3f} s   queries arrived {sim.queries_arrived}/{cfg.episode.queries}, "
             f"finished {sim.queries_finished}, in flight {sim.queries_arrived - sim.queries_finished}"]
    query, kind = env._query, env._kind
    if query is None or kind == "end":
        m = env.episode_metrics()
        lines += ["decision: END (episode over, all queries drained)",
                  f"mean latency {m['mean_latency_s']:.3f} s, p95 {m['p95_latency_s']:.3f} s, "
                  f"quality {m['mean_quality']:.3f}, reward {m['mean_reward']:+.3f}"]
        return lines
    spec = query.spec
    k = spec.n_subtasks
    structure = {FAN_OUT: "fan-out", CHAIN: "chain", DAG: "DAG"}.get(spec.structure, "?") if k > 1 else "whole only"
    item = env._current_item()
    assert item is not None
    own = int(sim.own_ap[query.user])
    where = f"AP{own}" if own >= 0 else "no AP"
    step = ""
    if kind == "subtask":
        step = f" {env._position + 1}/{k} (subtask #{env._order[env._position]})"
    lines.append(f"decision: {kind.upper()}{step}   query {query.qid} from phone {query.user} ({where}), "
                 f"K = {k} ({structure})")
    attach = f", attachment {spec.attachment_bytes / 1e3:.0f} kB" if spec.attachment_bytes > 0 else ""
    lines.append(f"  predicted: in {item.pred_input_tokens:.0f} tok, out {item.pred_output_tokens:.0f} tok, "
                 f"difficulty {item.pred_difficulty:+.2f}{attach}")
    lines.append("  estimates     ready     finish   quality  allowed")
    mask = env._mask
    for loc in range(env.n_aps + 1):
        est = env._estimates.get(loc)
        allowed = "yes" if bool(mask[loc]) else "no"
        if est is None:
            lines.append(f"  {_loc_name(loc):8s}         -          -         -  {allowed:>7s}")
            continue
        lines.append(f"  {_loc_name(loc):8s} {est.ready_s - sim.now:8.3f}s {est.finish_s - sim.now:9.3f}s "
                     f"{est.quality:9.3f}  {allowed:>7s}")
    plan = env._plan
    if plan is not None:
        subs = " ".join(_loc_name(loc) for loc in plan.locations[:-1])
        lines.append(f"  decomposed plan: {plan.latency_s:.3f} s, quality {plan.quality:.3f}   "
                     f"[{subs} | agg {_loc_name(plan.locations[-1])}]")
    elif kind == "query":
        lines.append("  decomposed plan: - (K = 1, cannot decompose)")
    return lines


def _draw_text(c: _Canvas, env: OffloadEnv) -> None:
    ax = c.ax_text
    ax.cla()
    ax.set_axis_off()
    lines = _decision_lines(env) if env.sim is not None else ["not reset"]
    ax.text(0.0, 1.0, "\n".join(lines), transform=ax.transAxes, ha="left", va="top", family="monospace", fontsize=9.5,
            linespacing=1.35, bbox={"boxstyle": "round,pad=0.5", "fc": "#f6f6f2", "ec": "0.6"})


def _draw(c: _Canvas, env: OffloadEnv) -> None:
    _draw_map(c, env)
    _draw_edges(c, env)
    _draw_cells(c, env)
    _draw_text(c, env)


# ------------------------------------------------------------------ public API
def render_rgb(env: Any) -> np.ndarray:
    """The env's state as a ``uint8`` RGB array of shape ``(H, W, 3)`` (600 x 1200 by default).

    ``env`` is an :class:`~offload_gym.envs.offload_env.OffloadEnv` or a wrapper around one. The figure
    is made at the first call and reused by later calls for the same env.
    """
    u = _unwrapped(env)
    c = _CANVASES.get(u)
    if c is None or c.human:
        c = _agg_canvas()
        _CANVASES[u] = c
    _draw(c, u)
    canvas = c.fig.canvas
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())  # type: ignore[attr-defined]
    return np.ascontiguousarray(rgba[..., :3], dtype=np.uint8)


def _has_display() -> bool:
    """Whether pyplot can show a window: a display exists and the backend it resolved to is interactive."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        import matplotlib.pyplot as plt  # resolves the backend; falls back to Agg where the GUI cannot start

        backend = str(plt.get_backend()).lower()
    except Exception:  # a backend that fails to import
        return False
    return backend not in _NON_INTERACTIVE and not backend.startswith("module://matplotlib_inline")


def render_human(env: Any, pause_s: float | None = None) -> None:
    """Show the env's state in a matplotlib window (non-blocking).

    Without a display (or with a non-interactive matplotlib backend such as Agg) this does nothing.
    ``pause_s`` defaults to ``1 / metadata["render_fps"]``.
    """
    u = _unwrapped(env)
    if u in _HEADLESS:
        return
    c = _CANVASES.get(u)
    if c is None or not c.human or not _figure_open(c.fig):
        c = _open_window(u)
        if c is None:
            _HEADLESS.add(u)
            return
    import matplotlib.pyplot as plt

    _draw(c, u)
    c.fig.canvas.draw_idle()
    fps = float(getattr(u, "metadata", {}).get("render_fps", 4) or 4)
    plt.pause(pause_s if pause_s is not None else 1.0 / fps)


def _open_window(u: Any) -> _Canvas | None:
    """A shown pyplot figure for ``u``, or None where no window can be opened."""
    if not _has_display():
        return None
    try:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=FIGSIZE_IN, dpi=FRAME_DPI)
        plt.show(block=False)
    except Exception:  # a display that cannot open a window (bad $DISPLAY, missing toolkit): as headless
        return None
    c = _layout(fig, human=True)
    _CANVASES[u] = c
    weakref.finalize(u, plt.close, fig)
    return c


def _figure_open(fig: Figure) -> bool:
    import matplotlib.pyplot as plt

    return bool(plt.fignum_exists(fig.number))  # type: ignore[attr-defined]


def close_render(env: Any) -> None:
    """Drop (and close, if shown) the figure of ``env``; safe to call more than once."""
    u = _unwrapped(env)
    _HEADLESS.discard(u)
    c = _CANVASES.pop(u, None)
    if c is not None and c.human and "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt

        plt.close(c.fig)


# ------------------------------------------------------------------ command line
def main(argv: Sequence[str] | None = None) -> int:
    """Save one frame of the paper scenario after ``--steps`` greedy decisions."""
    parser = argparse.ArgumentParser(prog="python -m offload_gym.render", description=main.__doc__)
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--seed", type=int, default=0, help="episode seed (default 0)")
    parser.add_argument("--steps", type=int, default=60, help="decisions to take before the frame (default 60)")
    parser.add_argument("--env-id", default="offload_gym/WifiOffload-v0", help="registered env id")
    args = parser.parse_args(argv)
    if args.steps < 0:
        parser.error("--steps: must be >= 0")

    import gymnasium as gym
    from matplotlib.image import imsave

    import offload_gym  # noqa: F401 - registers the ids
    from offload_gym.policies import make_policy

    env = gym.make(args.env_id, render_mode="rgb_array")
    try:
        obs, info = env.reset(seed=args.seed)
        pol = make_policy("greedy", env.unwrapped.config)  # type: ignore[attr-defined]
        for _ in range(args.steps):
            a, _state = pol.predict(obs, action_masks=info["action_mask"])
            obs, _r, terminated, truncated, info = env.step(a)
            if terminated or truncated:
                break
        frame = env.render()
        assert isinstance(frame, np.ndarray)
        out = os.path.abspath(args.out)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        imsave(out, frame)
    finally:
        env.close()
    print(f"wrote {args.out} ({frame.shape[1]}x{frame.shape[0]} px, seed {args.seed}, "
          f"{args.steps} decisions, t = {float(info['time_s']):.3f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
