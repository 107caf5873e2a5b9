"""Pictures of an :class:`~offload_gym.envs.offload_env.OffloadEnv` state (``rgb_array`` and ``human`` render modes).

:func:`render_rgb` draws the state with matplotlib on an Agg canvas and returns it as a ``uint8`` array
of shape ``(600, 1200, 3)``:

* left, the map: the square area, APs (triangles), phones (dots; purple while computing, grey crosses
  when out of coverage), a line from every phone to its AP coloured by the uplink PHY rate, the Wi-Fi
  transfers in flight as thick arrows (red uplink, orange downlink, labelled with the message size where
  a label fits) and the phone of the current decision circled. Marker sizes and line widths shrink with
  the numbers of APs and phones; labels are placed so that none overlaps another (a label with no free
  place is left out, and the title says how many were); phones are numbered up to
  :data:`PHONE_LABELS_MAX` phones;
* top right, per AP: the edge server's batch (running streams), queued and in-transit items against
  ``max_batch``, and the stations contending in the cell (background, uploading phones, the AP itself).
  With more than :data:`PANEL_APS` APs each panel shows its ``PANEL_APS - 1`` busiest APs and one bar
  for all the others (sum of items; most contenders of any one cell), and its title says so;
* bottom right, the current decision (kind, query, K, predicted tokens and difficulty), the
  per-location estimates behind the observation (with more than :data:`TABLE_ROWS` locations: the
  phone, the phone's own AP and the earliest finishes, then a count of the rest), the list scheduler's
  decomposed plan, and the clock.

The figure and all its artists are made at the first render and reused: a frame only updates the
artists' data. On the Agg canvas the parts that never change (axes, ticks, colour bar, legend) are
drawn once and blitted under every frame. The figure lives in a module-level cache keyed (weakly) by
the env, so the env itself stays picklable. :func:`close_render` (called by ``env.close()``) drops it.

``python -m offload_gym.render --out docs/img/frame.png [--seed S] [--steps N]`` saves one frame of the
paper scenario after ``N`` decisions of the built-in greedy scheduler.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import textwrap
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from offload_gym.envs.scene import Decision, Scene, scene
from offload_gym.sim.physics import HopKind

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.backend_bases import RendererBase
    from matplotlib.collections import LineCollection, PathCollection, PolyCollection
    from matplotlib.colors import Colormap, Normalize
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle
    from matplotlib.text import Text

    from offload_gym.envs.offload_env import OffloadEnv

__all__ = ["FIGSIZE_IN", "FRAME_DPI", "PANEL_APS", "PHONE_LABELS_MAX", "TABLE_ROWS", "close_render", "main",
           "render_human", "render_rgb"]

FIGSIZE_IN = (12.0, 6.0)  #: figure size (inches); with FRAME_DPI the frame is 1200 x 600 px
FRAME_DPI = 100
PANEL_APS = 8  #: bars per AP panel; above this many APs: the PANEL_APS - 1 busiest and one for the rest
TABLE_ROWS = 7  #: estimate rows (locations) in the text panel; above: the most relevant ones and a count
PHONE_LABELS_MAX = 60  #: phones are numbered on the map up to this many phones
FLOW_LABELS_MAX = 12  #: transfers labelled with their size per frame (more are drawn unlabelled)

_UP_COLOR = "tab:red"
_DOWN_COLOR = "darkorange"
_FOCUS_COLOR = "crimson"
_BUSY_COLOR = "tab:purple"
_NON_INTERACTIVE = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}
_TEXT_CHARS = 76  #: text-panel line width (characters of the monospace font) before a line wraps
_EMPTY_XY = np.empty((0, 2))


@dataclass
class _Sizes:
    """Marker sizes (points) and font sizes for one env's numbers of APs and phones."""

    ap_ms: float
    ap_font: float
    phone_ms: float
    phone_font: float
    assoc_lw: float
    flow_lw: float
    focus_ms: float

    @classmethod
    def of(cls, n_aps: int, n_users: int) -> _Sizes:
        map_pt = 0.39 * FIGSIZE_IN[0] * 72.0  # side of the map in points
        ap_pitch = map_pt / math.sqrt(max(n_aps, 1))  # AP spacing on the default grid
        phone_ms = float(np.clip(5.5 * math.sqrt(20.0 / max(n_users, 1)), 2.2, 5.5))
        return cls(ap_ms=float(np.clip(0.22 * ap_pitch, 7.0, 16.0)),
                   ap_font=float(np.clip(0.16 * ap_pitch, 6.5, 10.0)),
                   phone_ms=phone_ms,
                   phone_font=6.5 if n_users <= 30 else 5.5,
                   assoc_lw=float(np.clip(1.6 * math.sqrt(20.0 / max(n_users, 1)), 0.35, 1.6)),
                   flow_lw=float(np.clip(3.2 * math.sqrt(20.0 / max(n_users, 1)), 1.4, 3.2)),
                   focus_ms=max(12.0, 3.4 * phone_ms))


@dataclass
class _Artists:
    """Every artist a frame updates, made once for an env's sizes."""

    key: tuple[Any, ...]  # (n_aps, n_users, area, rate range, max_batch): what the artists were made for
    sizes: _Sizes
    cmap: Colormap
    norm: Normalize
    title: Text
    heading: Text
    assoc: LineCollection
    flow_lines: LineCollection
    flow_heads: PolyCollection
    flow_texts: list[Text]
    aps: PathCollection
    ap_texts: list[Text]
    phones: list[PathCollection]  # idle, computing, out of coverage
    phone_texts: list[Text]
    focus: PathCollection
    edge_bars: list[list[Rectangle]]  # in batch, queued, in transit; one bar per slot
    edge_texts: list[list[Text]]
    edge_ticks: list[Text]  # AP names under the slots
    cell_bars: list[list[Rectangle]]  # background, phones up, AP sending
    cell_texts: list[Text]
    cell_ticks: list[Text]
    block: _MonoBlock
    label_key: Any = None  # what the static labels were placed for (positions, figure size)
    hidden_labels: int = 0  # AP and phone labels that found no free place
    static_boxes: list[Box] = field(default_factory=list)  # placed labels and AP markers, display px
    static_key: Any = None  # the state of everything drawn into the Agg background

    def animated(self, c: _Canvas) -> list[tuple[Axes, list[Artist]]]:
        """Per axes, the artists drawn on top of the Agg background every frame, in drawing order."""
        top_k = self.edge_ticks[0].get_animated() if self.edge_ticks else False
        on_map: list[Artist] = [*self.phones, self.flow_lines, self.flow_heads, *self.flow_texts, self.focus, self.title]
        return [
            (c.ax_map, sorted(on_map, key=lambda a: a.get_zorder())),
            (c.ax_edges, [*(b for bars in self.edge_bars for b in bars), *(t for ts in self.edge_texts for t in ts),
                          *(self.edge_ticks if top_k else [])]),
            (c.ax_cells, [*(b for bars in self.cell_bars for b in bars), *self.cell_texts,
                          *(self.cell_ticks if top_k else [])]),
            (c.ax_text, [self.block]),
        ]


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
    art: _Artists | None = None
    background: Any = None  # Agg: the parts that rarely change, blitted under each frame
    background_key: Any = None


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


# ------------------------------------------------------------------ monospace text from cached glyphs
_GLYPHS: dict[tuple[float, float], tuple[np.ndarray, np.ndarray, int, int]] = {}  # (size pt, dpi) -> tiles
_CHARSET = "".join(chr(i) for i in range(32, 127)) + "×…–"


def _glyph_tiles(size_pt: float, dpi: float) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Coverage bitmaps of the monospace font, one fixed cell a character: (code -> tile index, tiles, w, h).

    matplotlib (3.11) renders text glyph by glyph in Python, which makes a screenful of text cost tens
    of milliseconds; the text panel is composed from these tiles instead (made once per size and dpi)."""
    key = (size_pt, dpi)
    if key not in _GLYPHS:
        from matplotlib.backends.backend_agg import RendererAgg
        from matplotlib.font_manager import FontProperties

        prop = FontProperties(family="monospace", size=size_pt)
        probe = RendererAgg(8, 8, dpi)
        w, _h, _d = probe.get_text_width_height_descent("M" * 20, prop, False)
        cw = max(round(w / 20.0), 1)
        ch = math.ceil(size_pt * dpi / 72.0 * 1.3)
        baseline = round(ch * 0.74)
        r = RendererAgg(3 * cw, ch, dpi)
        gc = r.new_gc()
        gc.set_foreground("black")
        tiles = np.zeros((len(_CHARSET), ch, cw), dtype=np.uint8)
        for i, char in enumerate(_CHARSET):
            if char == " ":
                continue
            r.clear()
            r.draw_text(gc, cw, baseline, char, prop, 0.0)
            tiles[i] = np.asarray(r.buffer_rgba())[:, cw:2 * cw, 3]
        gc.restore()
        lookup = np.full(0x2100, _CHARSET.index("?"), dtype=np.intp)
        for i, char in enumerate(_CHARSET):
            lookup[ord(char)] = i
        _GLYPHS[key] = (lookup, tiles, cw, ch)
    return _GLYPHS[key]


def _make_block(size_pt: float, color: str) -> _MonoBlock:
    from matplotlib.artist import Artist
    from matplotlib.colors import to_rgb

    class MonoBlock(Artist):
        """Lines of monospace text whose top left corner is ``margin_px`` inside its axes' top left."""

        def __init__(self) -> None:
            super().__init__()
            self.lines: list[str] = []
            self.rgb = (np.array(to_rgb(color)) * 255).astype(np.uint8)
            self.margin_px = 6.0

        def set_lines(self, lines: list[str]) -> None:
            self.lines = lines
            self.stale = True

        def draw(self, renderer: RendererBase) -> None:
            if not self.get_visible() or not self.lines or self.axes is None:
                return
            lookup, tiles, cw, ch = _glyph_tiles(size_pt, float(self.axes.figure.dpi))
            box = self.axes.bbox
            cols = max(1, min(max(len(s) for s in self.lines), int((box.width - 2 * self.margin_px) // cw)))
            rows = self.lines[: max(1, int((box.height - 2 * self.margin_px) // ch))]
            codes = np.full((len(rows), cols), ord(" "), dtype=np.intp)
            for i, line in enumerate(rows):
                line = line[:cols]
                codes[i, : len(line)] = [min(ord(ch_), lookup.size - 1) for ch_ in line]
            alpha = tiles[lookup[codes]].transpose(0, 2, 1, 3).reshape(len(rows) * ch, cols * cw)
            img = np.empty((*alpha.shape, 4), dtype=np.uint8)
            img[..., :3] = self.rgb
            img[..., 3] = alpha
            gc = renderer.new_gc()
            x = round(box.x0 + self.margin_px)
            y = round(box.y1 - self.margin_px) - img.shape[0]
            renderer.draw_image(gc, x, y, img[::-1])  # Agg's image rows run upwards
            gc.restore()
            self.stale = False

    return MonoBlock()  # type: ignore[return-value]


if TYPE_CHECKING:
    from matplotlib.artist import Artist as _ArtistBase

    class _MonoBlock(_ArtistBase):
        lines: list[str]

        def set_lines(self, lines: list[str]) -> None: ...


# ------------------------------------------------------------------ building (once per env)
def _loc_name(loc: int) -> str:
    return "phone" if loc == 0 else f"AP{loc - 1}"


def _rate_norm(env: OffloadEnv) -> tuple[float, float]:
    from offload_gym.sim.wifi import HE_RATES_20MHZ_MBPS, phy_rate_bps

    w = env.config.wifi
    top = len(HE_RATES_20MHZ_MBPS) - 1
    return (phy_rate_bps(0, w.bandwidth_mhz, w.spatial_streams) / 1e6,
            phy_rate_bps(top, w.bandwidth_mhz, w.spatial_streams) / 1e6)


def _slots(n_aps: int) -> int:
    return min(n_aps, PANEL_APS)


def _build(c: _Canvas, env: OffloadEnv, key: tuple[Any, ...]) -> _Artists:
    """Clear the axes and make every artist for ``env``'s sizes (data comes per frame)."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.collections import LineCollection, PolyCollection
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D
    from matplotlib.patches import FancyBboxPatch

    for ax in (c.ax_map, c.ax_cbar, c.ax_edges, c.ax_cells, c.ax_text):
        ax.cla()
    c.background = None
    n_aps, n_users = env.n_aps, env.config.topology.n_users
    area = env.config.topology.area_m
    sz = _Sizes.of(n_aps, n_users)
    animated = not c.human  # Agg: these are drawn over a background that holds the rest

    ax = c.ax_map
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
    cbar = c.fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=c.ax_cbar)
    cbar.set_label("phone uplink PHY rate (Mb/s)", fontsize=9)
    cbar.ax.tick_params(labelsize=8)

    def text(s: str = "", anim: bool = False, **kw: Any) -> Text:
        t = ax.text(0.0, 0.0, s, clip_on=True, animated=anim, **kw)
        t.set_visible(False)
        return t

    # the association lines, APs and labels only change with the topology: in the background
    assoc = LineCollection([], linewidths=sz.assoc_lw, alpha=0.85, zorder=1)
    ax.add_collection(assoc)
    flow_lines = LineCollection([], linewidths=sz.flow_lw, zorder=4, capstyle="butt", animated=animated)
    ax.add_collection(flow_lines)
    flow_heads = PolyCollection([], zorder=4, linewidths=0, animated=animated)
    ax.add_collection(flow_heads)
    flow_texts = [text(anim=animated, fontsize=7, ha="center", va="center", zorder=5,
                       bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
                  for _ in range(FLOW_LABELS_MAX)]
    aps = ax.scatter([], [], marker="^", s=sz.ap_ms ** 2, c="tab:blue", edgecolors="black",
                     linewidths=0.8 if n_aps > 16 else 1.0, zorder=3)
    ap_texts = [text(f"AP{a}", ha="center", va="center", fontsize=sz.ap_font, fontweight="bold", color="navy",
                     zorder=6, bbox={"boxstyle": "square,pad=0.05", "fc": "white", "ec": "none", "alpha": 0.85})
                for a in range(n_aps)]
    phones = [ax.scatter([], [], s=sz.phone_ms ** 2, c=color, marker=marker, zorder=3, animated=animated,
                         linewidths=1.0 if marker == "x" else 0.0)
              for color, marker in (("black", "o"), (_BUSY_COLOR, "o"), ("0.55", "x"))]
    phone_texts = ([text(str(u), ha="center", va="center", fontsize=sz.phone_font, color="0.3", zorder=3)
                    for u in range(n_users)] if n_users <= PHONE_LABELS_MAX else [])
    focus = ax.scatter([], [], s=sz.focus_ms ** 2, facecolors="none", edgecolors=_FOCUS_COLOR,
                       linewidths=2.4 if n_users <= 100 else 1.8, zorder=6, animated=animated)
    title = ax.set_title(" ", fontsize=11, loc="right")  # the clock; the rest of the title is static
    title.set_animated(animated)
    heading = ax.set_title(f"{n_users} phones, {n_aps} APs, {area:g} m square", fontsize=11, loc="left")
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

    # per-AP panels: one slot per AP, or the busiest and one for the rest
    m = _slots(n_aps)
    top_k = n_aps > m
    x = np.arange(m)
    small = m > 6

    def bars(ax: Axes, dx: float, width: float, color: str, label: str) -> list[Rectangle]:
        made = list(ax.bar(x + dx, np.zeros(m), width, color=color, label=label))
        for b in made:
            b.set_animated(animated)
        return made

    def ticks(ax: Axes) -> list[Text]:
        ax.set_xticks(x, [""] * m if top_k else [f"AP{e}" for e in range(m)])
        ax.tick_params(axis="x", labelsize=7 if small else 8)
        ax.tick_params(axis="y", labelsize=8)
        ax.set_xlim(-0.6, m - 0.4)
        return [ax.text(xi, -0.03, "", transform=ax.get_xaxis_transform(), ha="center", va="top",
                        fontsize=7 if small else 8, animated=animated and top_k) for xi in x]

    ax = c.ax_edges
    w = 0.27
    edge_bars = [bars(ax, dx, w, color, label) for dx, color, label in
                 ((-w, "tab:green", "in batch"), (0.0, "tab:orange", "queued"), (w, "tab:gray", "in transit"))]
    edge_texts = [[ax.text(xi + dx, 0.0, "", ha="center", va="bottom", fontsize=6 if small else 7, clip_on=True,
                           animated=animated) for xi in x] for dx in (-w, 0.0, w)]
    max_batch = env.config.edge.max_batch
    ax.axhline(max_batch, color="tab:green", ls="--", lw=1)
    ax.text(m - 0.5, max_batch, f"max_batch {max_batch}", ha="right", va="bottom", fontsize=7, color="tab:green")
    edge_ticks = ticks(ax)
    ax.set_ylabel("items", fontsize=9)
    ax.set_title(f"edge servers: {m - 1} busiest of {n_aps}" if top_k else "edge servers", fontsize=10)
    ax.legend(loc="upper left", fontsize=7, ncol=3, frameon=False, handlelength=1.0, columnspacing=0.8)

    ax = c.ax_cells
    cell_bars = [bars(ax, 0.0, 0.6, color, label)
                 for color, label in (("0.75", "background"), (_UP_COLOR, "phones up"), (_DOWN_COLOR, "AP sending"))]
    cell_texts = [ax.text(xi, 0.0, "", ha="center", va="bottom", fontsize=7 if small else 8, fontweight="bold",
                          clip_on=True, animated=animated) for xi in x]
    cell_ticks = ticks(ax)
    ax.set_ylabel("stations", fontsize=9)
    ax.set_title(f"contenders: {m - 1} busiest of {n_aps} cells" if top_k else "Wi-Fi contenders per cell",
                 fontsize=10)
    ax.legend(loc="upper left", fontsize=7, ncol=2, frameon=False, handlelength=1.0, columnspacing=0.8)

    ax = c.ax_text
    ax.set_axis_off()
    ax.add_patch(FancyBboxPatch((0.0, 0.0), 1.0, 1.0, boxstyle="round,pad=0,rounding_size=0.02",
                                transform=ax.transAxes, fc="#f6f6f2", ec="0.6", clip_on=False))
    block = _make_block(8.5, "black")
    block.set_animated(animated)
    block.set_zorder(3)  # above the box
    ax.add_artist(block)
    return _Artists(key=key, sizes=sz, cmap=cmap, norm=norm, title=title, heading=heading, assoc=assoc,
                    flow_lines=flow_lines,
                    flow_heads=flow_heads, flow_texts=flow_texts, aps=aps, ap_texts=ap_texts, phones=phones,
                    phone_texts=phone_texts, focus=focus, edge_bars=edge_bars, edge_texts=edge_texts,
                    edge_ticks=edge_ticks, cell_bars=cell_bars, cell_texts=cell_texts, cell_ticks=cell_ticks,
                    block=block)


# ------------------------------------------------------------------ label placement
Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in display pixels
def _renderer(fig: Figure) -> RendererBase:
    get = getattr(fig.canvas, "get_renderer", None)
    return get() if get is not None else fig._get_renderer()  # type: ignore[attr-defined, no-any-return]


def _overlaps(b: Box, boxes: Sequence[Box]) -> bool:
    return any(b[0] < o[2] and o[0] < b[2] and b[1] < o[3] and o[1] < b[3] for o in boxes)


def _text_box(t: Text, renderer: RendererBase, pad: float) -> Box:
    e = t.get_window_extent(renderer)
    return (e.x0 - pad, e.y0 - pad, e.x1 + pad, e.y1 + pad)


def _place(t: Text, anchor_px: np.ndarray, offsets_px: Sequence[tuple[float, float]], inv: Any,
           renderer: RendererBase, taken: list[Box], frame: Box, pad: float = 1.0, soft: Sequence[Box] = ()) -> bool:
    """Put text ``t`` at the first of ``offsets_px`` from ``anchor_px`` where it overlaps nothing in ``taken``
    (nor in ``soft``, if some offset allows) and stays inside ``frame``; record its box in ``taken``.
    Hidden (and False) where no offset fits."""
    t.set_visible(True)  # an invisible text measures as nothing
    for avoid in ([*taken, *soft], taken) if soft else (taken,):
        for dx, dy in offsets_px:
            t.set_position(tuple(inv.transform((anchor_px[0] + dx, anchor_px[1] + dy))))
            b = _text_box(t, renderer, pad)
            inside = b[0] >= frame[0] and b[1] >= frame[1] and b[2] <= frame[2] and b[3] <= frame[3]
            if inside and not _overlaps(b, avoid):
                taken.append(b)
                return True
    t.set_visible(False)
    return False


def _place_static_labels(c: _Canvas, art: _Artists, ap_xy: np.ndarray, user_xy: np.ndarray) -> None:
    """AP names and phone numbers, placed once per topology so that none overlaps another or an AP marker."""
    ax, fig = c.ax_map, c.fig
    ax.apply_aspect()
    key = (ap_xy.tobytes(), user_xy.tobytes(), tuple(fig.bbox.bounds), tuple(ax.get_position().bounds))
    if art.label_key == key:
        return
    renderer = _renderer(fig)
    to_px = ax.transData
    inv = to_px.inverted()
    frame_b = ax.bbox
    frame: Box = (frame_b.x0, frame_b.y0, frame_b.x1, frame_b.y1)
    px_per_pt = fig.dpi / 72.0
    sz = art.sizes
    ap_px = to_px.transform(ap_xy) if len(ap_xy) else _EMPTY_XY
    user_px = to_px.transform(user_xy) if len(user_xy) else _EMPTY_XY
    half = 0.5 * sz.ap_ms * px_per_pt
    taken: list[Box] = [(x - half, y - half, x + half, y + half) for x, y in ap_px]  # the AP markers
    ph = 0.5 * sz.phone_ms * px_per_pt
    # few phones: AP labels avoid their markers where they can, phone labels always
    dots: list[Box] = [(x - ph, y - ph, x + ph, y + ph) for x, y in user_px] if art.phone_texts else []
    hidden = 0
    r = half + 1.0
    for a, t in enumerate(art.ap_texts):
        t.set_visible(True)
        e = t.get_window_extent(renderer)
        w, h = e.width, e.height
        offsets = [(0.0, r + 0.5 * h), (0.0, -r - 0.5 * h), (r + 0.5 * w, 0.0), (-r - 0.5 * w, 0.0),
                   (r + 0.4 * w, r + 0.4 * h), (-r - 0.4 * w, r + 0.4 * h), (r + 0.4 * w, -r - 0.4 * h),
                   (-r - 0.4 * w, -r - 0.4 * h)]
        hidden += not _place(t, ap_px[a], offsets, inv, renderer, taken, frame, soft=dots)
    pr = 0.5 * sz.phone_ms * px_per_pt + 1.0
    for u, t in enumerate(art.phone_texts):
        t.set_visible(True)
        e = t.get_window_extent(renderer)
        w, h = e.width, e.height
        offsets = [(pr + 0.5 * w, -pr - 0.3 * h), (pr + 0.5 * w, pr + 0.3 * h), (-pr - 0.5 * w, -pr - 0.3 * h),
                   (-pr - 0.5 * w, pr + 0.3 * h), (0.0, -pr - 0.5 * h), (0.0, pr + 0.5 * h)]
        hidden += not _place(t, user_px[u], offsets, inv, renderer, taken, frame, pad=0.5, soft=dots)
    art.hidden_labels = hidden
    art.static_boxes = taken
    art.label_key = key


# ------------------------------------------------------------------ per-frame updates

# ------------------------------------------------------------------ per-frame updates
def _update_map(c: _Canvas, art: _Artists, env: OffloadEnv, sc: Scene | None) -> Any:
    """Update the map's artists; returns the state of its background part (topology, associations)."""
    n_aps, area = env.n_aps, env.config.topology.area_m
    if sc is None:
        for coll in (art.assoc, art.flow_lines):
            coll.set_segments([])
        art.flow_heads.set_verts([])
        for coll in (art.aps, *art.phones, art.focus):
            coll.set_offsets(_EMPTY_XY)
        for t in (*art.flow_texts, *art.ap_texts, *art.phone_texts):
            t.set_visible(False)
        art.title.set_text("")
        art.heading.set_text("offload_gym: call reset() first")
        art.label_key = None
        art.static_boxes = []
        return None
    ap_xy, user_xy, own, up_rate = sc.ap_xy, sc.user_xy, sc.own_ap, sc.up_rate_bps
    _place_static_labels(c, art, ap_xy, user_xy)
    covered = own >= 0
    # association lines, coloured by the uplink rate
    idx = np.flatnonzero(covered)
    art.assoc.set_segments(np.stack([user_xy[idx], ap_xy[own[idx]]], axis=1) if idx.size else [])
    art.assoc.set_color(art.cmap(art.norm(up_rate[idx] / 1e6)) if idx.size else "none")
    art.aps.set_offsets(ap_xy)
    busy = sc.phone_busy
    for coll, sel in zip(art.phones, (covered & ~busy, covered & busy, ~covered), strict=True):
        coll.set_offsets(user_xy[sel] if sel.any() else _EMPTY_XY)
    _update_flows(c, art, sc, ap_xy, user_xy)
    if sc.decision is not None:
        art.focus.set_offsets(user_xy[sc.decision.user][None, :])
    else:
        art.focus.set_offsets(_EMPTY_XY)
    notes = []
    if not art.phone_texts:
        notes.append(f"phones are not numbered above {PHONE_LABELS_MAX} phones")
    if art.hidden_labels:
        notes.append(f"{art.hidden_labels} label{'s' if art.hidden_labels > 1 else ''} left out for want of room")
    heading = f"{sc.n_users} phones, {n_aps} APs, {area:g} m square"
    art.heading.set_text(heading + ("\n(" + "; ".join(notes) + ")" if notes else ""))
    art.heading.set_fontsize(10 if notes else 11)
    art.title.set_text(f"t = {sc.now_s:.3f} s")
    return (art.label_key, own.tobytes(), up_rate.tobytes(), art.heading.get_text())


def _update_flows(c: _Canvas, art: _Artists, sc: Scene, ap_xy: np.ndarray, user_xy: np.ndarray) -> None:
    """Wi-Fi transfers in flight, one arrow per (direction, AP, phone); the biggest labelled where they fit."""
    flows: dict[tuple[int, int, int], list[float]] = {}
    for direction, ap, user, nbytes in sc.transfers:
        flows.setdefault((direction, ap, user), []).append(nbytes)
    for t in art.flow_texts:
        t.set_visible(False)
    if not flows:
        art.flow_lines.set_segments([])
        art.flow_heads.set_verts([])
        return
    ax, fig = c.ax_map, c.fig
    ax.apply_aspect()
    data_per_pt = (ax.get_xlim()[1] - ax.get_xlim()[0]) / max(ax.bbox.width, 1.0) * fig.dpi / 72.0
    sz = art.sizes
    keys = list(flows)
    up = np.array([k[0] == HopKind.UP for k in keys])
    p_ap = ap_xy[[k[1] for k in keys]]
    p_phone = user_xy[[k[2] for k in keys]]
    src = np.where(up[:, None], p_phone, p_ap)
    dst = np.where(up[:, None], p_ap, p_phone)
    vec = dst - src
    length = np.hypot(vec[:, 0], vec[:, 1])
    unit = vec / np.maximum(length, 1e-12)[:, None]
    shrink_a = np.where(up, 0.5 * sz.phone_ms, 0.5 * sz.ap_ms) * data_per_pt
    shrink_b = np.where(up, 0.5 * sz.ap_ms + 1.5, 0.5 * sz.phone_ms + 1.5) * data_per_pt
    head_len = 2.6 * sz.flow_lw * data_per_pt
    head_w = 1.2 * sz.flow_lw * data_per_pt
    # short links: shrink less, so that every arrow keeps at least its head
    room = np.maximum(length - head_len, 0.0)
    scale = np.minimum(1.0, room / np.maximum(shrink_a + shrink_b, 1e-12))
    shrink_a, shrink_b = shrink_a * scale, shrink_b * scale
    start = src + unit * shrink_a[:, None]
    tip = dst - unit * shrink_b[:, None]
    base = tip - unit * head_len
    perp = np.stack([-unit[:, 1], unit[:, 0]], axis=1) * head_w
    colors = [_UP_COLOR if u else _DOWN_COLOR for u in up]
    art.flow_lines.set_segments(np.stack([start, base + unit * 0.2 * head_len], axis=1))
    art.flow_lines.set_color(colors)
    art.flow_heads.set_verts(np.stack([tip, base + perp, base - perp], axis=1))
    art.flow_heads.set_facecolor(colors)
    # labels: biggest transfers first, each where it overlaps no other label
    order = sorted(range(len(keys)), key=lambda i: -sum(flows[keys[i]]))
    renderer = _renderer(fig)
    to_px = ax.transData
    inv = to_px.inverted()
    b = ax.bbox
    frame: Box = (b.x0, b.y0, b.x1, b.y1)
    taken = list(art.static_boxes)
    j = 0  # next free text of the pool
    for i in order:
        if j >= len(art.flow_texts):
            break
        t = art.flow_texts[j]
        sizes = flows[keys[i]]
        t.set_text(f"{sum(sizes) / 1e3:.0f} kB" + (f" ×{len(sizes)}" if len(sizes) > 1 else ""))
        t.set_color(colors[i])
        mid = to_px.transform(0.5 * (p_phone[i] + p_ap[i]))
        along = to_px.transform(p_ap[i]) - to_px.transform(p_phone[i])
        step = along / max(float(np.hypot(*along)), 1e-9) * 12.0
        offsets = [(0.0, 0.0), (step[0], step[1]), (-step[0], -step[1]), (2 * step[0], 2 * step[1]),
                   (-2 * step[0], -2 * step[1])]
        j += _place(t, mid, offsets, inv, renderer, taken, frame, pad=2.0)  # a text that found no room is reused


def _busiest(load: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices shown in ``m`` slots (by AP number) and those summarised in the last slot (empty if none)."""
    n = load.size
    if n <= m:
        return np.arange(n), np.arange(0)
    top = np.sort(np.argsort(-load, kind="stable")[: m - 1])
    rest = np.setdiff1d(np.arange(n), top)
    return top, rest



def _nice_top(v: float) -> float:
    """``v`` rounded up to 1, 2 or 5 times a power of ten: y limits that change rarely."""
    if v <= 1.0:
        return 1.0
    p = 10.0 ** math.floor(math.log10(v))
    return next(s * p for s in (1.0, 2.0, 5.0, 10.0) if s * p >= v - 1e-9)


def _set_ticks(ticks: list[Text], names: list[str]) -> None:
    for t, name in zip(ticks, names, strict=True):
        t.set_text(name)
        t.set_visible(True)


def _update_edges(c: _Canvas, art: _Artists, env: OffloadEnv, sc: Scene | None) -> Any:
    n = env.n_aps
    m = _slots(n)
    max_batch = env.config.edge.max_batch
    if sc is not None:
        batch = sc.edge_batch.astype(float)
        queued = sc.edge_queued.astype(float)
        transit = sc.edge_in_transit.astype(float)
    else:
        batch = queued = transit = np.zeros(n)
    shown, rest = _busiest(batch + queued + transit, m)
    vals = [np.append(v[shown], v[rest].sum()) if rest.size else v[shown] for v in (batch, queued, transit)]
    for bars, texts, v in zip(art.edge_bars, art.edge_texts, vals, strict=True):
        for bar, t, h in zip(bars, texts, v, strict=True):
            bar.set_height(h)
            bar.set_visible(h > 0)
            t.set_visible(h > 0)
            if h > 0:
                t.set_text(f"{h:.0f}")
                t.set_y(h)
    if rest.size:
        _set_ticks(art.edge_ticks, [f"AP{e}" for e in shown] + [f"+{rest.size}\n(sum)"])
    top = _nice_top(max(float(max_batch), max(float(v.max()) for v in vals) if m else 0.0)) * 1.22
    c.ax_edges.set_ylim(0.0, top)
    return top


def _update_cells(c: _Canvas, art: _Artists, env: OffloadEnv, sc: Scene | None) -> Any:
    n = env.n_aps
    m = _slots(n)
    if sc is not None:
        up = sc.cell_uploading_phones.astype(float)
        ap = (sc.cell_downloads > 0).astype(float)
        total = sc.cell_contenders.astype(float)
    else:
        up = ap = np.zeros(n)
        total = np.full(n, float(env.config.wifi.background_stations))
    bg = total - up - ap
    shown, rest = _busiest(total, m)
    if rest.size:  # the last slot: the most crowded of the other cells
        worst = rest[int(np.argmax(total[rest]))]
        _set_ticks(art.cell_ticks, [f"AP{e}" for e in shown] + [f"+{rest.size}\n(max)"])
        shown = np.append(shown, worst)
    for bars, v, bottom in zip(art.cell_bars, (bg, up, ap), (np.zeros(n), bg, bg + up), strict=True):
        for bar, h, y in zip(bars, v[shown], bottom[shown], strict=True):
            bar.set_height(h)
            bar.set_visible(h > 0)
            bar.set_y(y)
    for t, v in zip(art.cell_texts, total[shown], strict=True):
        t.set_text(f"{v:.0f}")
        t.set_y(v)
        t.set_visible(True)
    top = _nice_top(max(float(total[shown].max()) if m else 0.0, 1.0)) * 1.35
    c.ax_cells.set_ylim(0.0, top)
    return top


def _estimate_rows(env: OffloadEnv, sc: Scene, decision: Decision) -> tuple[list[int], int]:
    """Locations (0 = phone, 1 + a = AP a) in the estimate table, and how many are left out.

    All of them up to :data:`TABLE_ROWS`; beyond, the phone, the deciding phone's own AP, then the
    earliest estimated finishes (allowed ones first), in location order."""
    n = env.n_aps + 1
    if n <= TABLE_ROWS:
        return list(range(n)), 0
    keep = [0]
    own = int(sc.own_ap[decision.user])
    if own >= 0:
        keep.append(own + 1)
    mask = sc.mask

    def rank(loc: int) -> tuple[int, float, int]:
        est = decision.estimates.get(loc)
        return (0 if bool(mask[loc]) else 1, est.finish_s if est is not None else math.inf, loc)

    for loc in sorted((loc for loc in range(1, n) if loc not in keep), key=rank):
        if len(keep) >= TABLE_ROWS:
            break
        keep.append(loc)
    return sorted(keep), n - len(keep)


def _decision_lines(env: OffloadEnv, sc: Scene) -> list[str]:
    from offload_gym.sim.workload import CHAIN, DAG, FAN_OUT

    cfg = env.config
    now = sc.now_s
    lines = [f"t = {now:.3f} s   queries arrived {sc.queries_arrived}/{cfg.episode.queries}, "
             f"finished {sc.queries_finished}, in flight {sc.queries_arrived - sc.queries_finished}"]
    d = sc.decision
    if d is None:
        m = env.episode_metrics()
        lines += ["decision: END (episode over, all queries drained)",
                  f"mean latency {m['mean_latency_s']:.3f} s, p95 {m['p95_latency_s']:.3f} s, "
                  f"quality {m['mean_quality']:.3f}, reward {m['mean_reward']:+.3f}"]
        return lines
    k = d.n_subtasks
    structure = {FAN_OUT: "fan-out", CHAIN: "chain", DAG: "DAG"}.get(d.structure, "?") if k > 1 else "whole only"
    own = int(sc.own_ap[d.user])
    where = f"AP{own}" if own >= 0 else "no AP"
    step = ""
    if d.kind == "subtask":
        step = f" {d.position + 1}/{k} (subtask #{d.subtask_index})"
    lines.append(f"decision: {d.kind.upper()}{step}   query {d.query_id} from phone {d.user} ({where}), "
                 f"K = {k} ({structure})")
    attach = f", attachment {d.attachment_bytes / 1e3:.0f} kB" if d.attachment_bytes > 0 else ""
    lines.append(f"  predicted: in {d.pred_input_tokens:.0f} tok, out {d.pred_output_tokens:.0f} tok, "
                 f"difficulty {d.pred_difficulty:+.2f}{attach}")
    rows, left_out = _estimate_rows(env, sc, d)
    lines.append("  estimates     ready     finish   quality  allowed")
    mask = sc.mask
    for loc in rows:
        est = d.estimates.get(loc)
        allowed = "yes" if bool(mask[loc]) else "no"
        if est is None:
            lines.append(f"  {_loc_name(loc):8s}         -          -         -  {allowed:>7s}")
            continue
        lines.append(f"  {_loc_name(loc):8s} {est.ready_s - now:8.3f}s {est.finish_s - now:9.3f}s "
                     f"{est.quality:9.3f}  {allowed:>7s}")
    if left_out:
        allowed_out = sum(1 for loc in range(1, env.n_aps + 1) if loc not in rows and bool(mask[loc]))
        lines.append(f"  ... {left_out} more APs ({allowed_out} allowed) not listed: shown are the phone, "
                     f"its own AP and the earliest finishes")
    if d.plan is not None:
        latency_s, quality, locations = d.plan
        subs = " ".join(_loc_name(loc) for loc in locations[:-1])
        lines.append(f"  decomposed plan: {latency_s:.3f} s, quality {quality:.3f}   "
                     f"[{subs} | agg {_loc_name(locations[-1])}]")
    elif d.kind == "query":
        lines.append("  decomposed plan: - (K = 1, cannot decompose)")
    return lines


def _wrap(lines: list[str], width: int = _TEXT_CHARS) -> list[str]:
    out: list[str] = []
    for line in lines:
        if len(line) <= width:
            out.append(line)
            continue
        indent = " " * (len(line) - len(line.lstrip()) + 4)
        out.extend(textwrap.wrap(line, width, subsequent_indent=indent, break_on_hyphens=False))
    return out


def _draw(c: _Canvas, env: OffloadEnv) -> None:
    """Bring the artists of ``c`` up to date with ``env`` (making them first where needed)."""
    n_users = env.config.topology.n_users
    key = (env.n_aps, n_users, env.config.topology.area_m, _rate_norm(env), env.config.edge.max_batch)
    if c.art is None or c.art.key != key:
        c.art = _build(c, env, key)
    art = c.art
    sc = scene(env)
    map_key = _update_map(c, art, env, sc)
    edges_top = _update_edges(c, art, env, sc)
    cells_top = _update_cells(c, art, env, sc)
    art.block.set_lines(_wrap(_decision_lines(env, sc)) if sc is not None else ["not reset"])
    art.static_key = (map_key, edges_top, cells_top)


def _agg_frame(c: _Canvas) -> None:
    """Draw ``c`` on its Agg canvas: the background (redrawn only when it changed), then the rest on top."""
    assert c.art is not None
    fig = c.fig
    canvas = fig.canvas
    bg_key = (c.art.key, c.art.static_key, tuple(fig.bbox.bounds))
    if c.background is None or c.background_key != bg_key:
        canvas.draw()  # the animated artists are left out
        c.background = canvas.copy_from_bbox(fig.bbox)  # type: ignore[attr-defined]
        c.background_key = bg_key
    else:
        canvas.restore_region(c.background)  # type: ignore[attr-defined]
    for ax, artists in c.art.animated(c):
        for a in artists:
            ax.draw_artist(a)


# ------------------------------------------------------------------ public API
def render_rgb(env: Any) -> np.ndarray:
    """The env's state as a ``uint8`` RGB array of shape ``(H, W, 3)`` (600 x 1200 by default).

    ``env`` is an :class:`~offload_gym.envs.offload_env.OffloadEnv` or a wrapper around one. The figure
    and its artists are made at the first call; later calls for the same env update their data and
    redraw only what changes.
    """
    u = _unwrapped(env)
    c = _CANVASES.get(u)
    if c is None or c.human:
        c = _agg_canvas()
        _CANVASES[u] = c
    _draw(c, u)
    _agg_frame(c)
    rgba = np.asarray(c.fig.canvas.buffer_rgba())  # type: ignore[attr-defined]
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
