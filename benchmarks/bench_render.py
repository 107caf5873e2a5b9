#!/usr/bin/env python
"""Milliseconds per ``rgb_array`` frame: the paper scenario, 64 APs and 1000 phones.

``python benchmarks/bench_render.py [--frames 30] [--ref REF] [--ref-frames 5] [--skip 40] [--save DIR]``
makes ``offload_gym/WifiOffload-v0`` with ``render_mode="rgb_array"`` at each size, takes ``--skip``
greedy decisions (seed 0), renders one warm-up frame,
then ``--frames`` frames, one greedy decision apart, and prints the median wall and CPU milliseconds of
``env.render()`` (the decisions are not timed). With ``--ref``, ``offload_gym/render.py`` at that git ref
is loaded next to the working tree's and renders the same states in the same process, alternating with
the current code frame by frame, over the first ``--ref-frames`` frames (the old code is slow), so that
both are measured under the same machine load. ``--save DIR`` writes the last frame of each size (and
of the ref) as PNG. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import gymnasium as gym
import numpy as np

import offload_gym  # noqa: F401 - registers the ids
from offload_gym.policies import make_policy

ROOT = Path(__file__).resolve().parents[1]
ENV_ID = "offload_gym/WifiOffload-v0"
SIZES: dict[str, dict[str, Any]] = {
    "default": {},
    "64 APs": {"topology": {"n_aps": 64}},
    "1000 phones": {"topology": {"n_users": 1000}},
}


def load_ref(ref: str) -> ModuleType:
    """``offload_gym/render.py`` at git ``ref`` as a module of its own (its own figure cache)."""
    source = subprocess.run(["git", "show", f"{ref}:offload_gym/render.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location("_ref_render", f.name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["_ref_render"] = module
    spec.loader.exec_module(module)
    os.unlink(f.name)
    return module


def _timed(render: Callable[[], Any]) -> tuple[float, float, np.ndarray]:
    w0, c0 = time.perf_counter(), time.process_time()
    frame = render()
    return (time.perf_counter() - w0) * 1e3, (time.process_time() - c0) * 1e3, frame


def bench(name: str, config: dict[str, Any], frames: int, ref: ModuleType | None, ref_frames: int,
          save: Path | None, skip: int = 40) -> dict[str, tuple[float, float]]:
    """Median (wall ms, CPU ms) per frame of the current code (``"new"``) and of the ref (``"ref"``)."""
    env = gym.make(ENV_ID, config=config, render_mode="rgb_array")
    obs, info = env.reset(seed=0)
    policy = make_policy("greedy", env.unwrapped.config)  # type: ignore[attr-defined]
    times: dict[str, list[tuple[float, float]]] = {"new": [], "ref": []}
    last: dict[str, np.ndarray] = {}

    def new() -> Any:
        return env.render()

    def old() -> Any:
        assert ref is not None
        return ref.render_rgb(env)

    for _ in range(skip):  # a state some way into the episode: transfers and batches in flight
        a, _ = policy.predict(obs, action_masks=info["action_mask"])
        obs, _r, terminated, truncated, info = env.step(a)
        if terminated or truncated:
            obs, info = env.reset(seed=0)
    new()  # warm-up: the figure is built here
    if ref is not None:
        old()
    for i in range(frames):
        a, _ = policy.predict(obs, action_masks=info["action_mask"])
        obs, _r, terminated, truncated, info = env.step(a)
        if terminated or truncated:
            obs, info = env.reset(seed=i + 1)
        order = [("new", new)]
        if ref is not None and i < ref_frames:
            order = [*order, ("ref", old)] if i % 2 == 0 else [("ref", old), *order]
        for key, fn in order:
            wall, cpu, frame = _timed(fn)
            times[key].append((wall, cpu))
            last[key] = frame
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        from matplotlib.image import imsave

        for key, frame in last.items():
            imsave(save / f"{name.replace(' ', '_')}_{key}.png", frame)
    env.close()
    if ref is not None:
        ref.close_render(env)
    return {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items() if v}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30, help="timed frames per size (default 30)")
    parser.add_argument("--ref", help="git ref whose offload_gym/render.py to time alongside (e.g. HEAD)")
    parser.add_argument("--ref-frames", type=int, default=5, help="frames of the ref per size (default 5)")
    parser.add_argument("--skip", type=int, default=40, help="greedy decisions before the warm-up frame (default 40)")
    parser.add_argument("--save", type=Path, help="folder for the last frame of each size, as PNG")
    args = parser.parse_args(argv)
    ref = load_ref(args.ref) if args.ref else None
    print(f"| size | frames | new median ms (wall / CPU) |{' ref median ms (wall / CPU) | speed-up |' if ref else ''}")
    print(f"|---|---|---|{'---|---|' if ref else ''}")
    for name, config in SIZES.items():
        r = bench(name, config, args.frames, ref, args.ref_frames, args.save, args.skip)
        row = f"| {name} | {args.frames} | {r['new'][0]:.1f} / {r['new'][1]:.1f} |"
        if "ref" in r:
            row += f" {r['ref'][0]:.1f} / {r['ref'][1]:.1f} (n={min(args.ref_frames, args.frames)}) |"
            row += f" {r['ref'][1] / max(r['new'][1], 1e-9):.1f}x |"
        print(row, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
