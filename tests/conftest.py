"""Shared fixtures and helpers for the offload_gym tests."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import pickle
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import gymnasium as gym
import numpy as np
import pytest

import offload_gym  # noqa: F401  (registers the ids)

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def deterministic_overrides(**extra: Any) -> dict[str, Any]:
    """A scenario with fixed token counts, no attachments, no decomposition and an exact planner."""
    cfg: dict[str, Any] = {
        "workload": {"prompt_tokens_sigma": 0.0, "answer_tokens_sigma": 0.0, "attachment_prob": 0.0,
                     "subtask_count_probs": [1.0, 0.0, 0.0, 0.0, 0.0]},
        "planner": {"kind": "oracle"},
    }
    for section, values in extra.items():
        cfg.setdefault(section, {}).update(values)
    return cfg


def rollout(env: gym.Env, seed: int, choose: Any, max_steps: int = 1_000_000) -> dict[str, Any]:
    """Run one episode; ``choose(obs, mask, rng) -> action``. Returns observations, rewards, infos."""
    rng = np.random.default_rng(seed + 12345)
    obs, info = env.reset(seed=seed)
    out: dict[str, Any] = {"obs": [obs], "rewards": [], "infos": [info]}
    for _ in range(max_steps):
        action = choose(obs, info["action_mask"].astype(bool), rng)
        obs, reward, terminated, truncated, info = env.step(action)
        out["obs"].append(obs)
        out["rewards"].append(reward)
        out["infos"].append(info)
        if terminated or truncated:
            break
    return out


def random_masked(obs: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> int:
    return int(rng.choice(np.flatnonzero(mask)))


def random_streams(rng: np.random.Generator, now: float, n: int) -> list[tuple[float, float, float]]:
    """``n`` pending streams ``(ready, prefill s, decode tokens)`` for batch projections: some ready now, some at a
    shared later time (ties), some at random times."""
    out = []
    for _ in range(n):
        kind = rng.integers(4)
        ready = now if kind == 0 else now + (0.5 if kind == 1 else float(rng.uniform(0.0, 30.0)))
        prefill = 0.0 if rng.random() < 0.1 else float(rng.uniform(0.01, 2.0))
        out.append((ready, prefill, float(rng.choice([1.0, 40.0])) if rng.random() < 0.3 else float(rng.uniform(1, 300))))
    return out


def hand_wifi_latency(wifi: Any, up_rate_bps: float, down_rate_bps: float, up_bytes: float,
                      down_bytes: float) -> float:
    """Upload then download in an otherwise idle cell (the ``wifi`` section's): one access delay each, then the
    bytes at ``S(n)/n`` (``n``: the background stations and the phone, or the AP)."""
    from offload_gym.sim import wifi as wifi_model

    n = wifi.background_stations + 1

    def dcf(rate_bps: float, payload: float) -> Any:
        return wifi_model.dcf_saturation(n, phy_rate_bps=rate_bps, payload_bytes=payload,
                                         **wifi_model.dcf_keywords(wifi))

    total = 0.0
    for rate, nbytes in ((up_rate_bps, up_bytes), (down_rate_bps, down_bytes)):
        first = dcf(rate, min(nbytes, wifi.frame_bytes))
        # alone in the cell, EDCA sends the first frame at once: one frame exchange, no backoff
        access = first.idle_access_s if n == 1 else first.access_delay_s
        total += access + 8 * nbytes / (dcf(rate, wifi.frame_bytes).throughput_bps / n)
    return total


def single_query_latency(cfg: Any, location: int, seed: int = 0) -> float:
    """Latency of an episode's first query placed whole at ``location`` (the episode must hold one query)."""
    from offload_gym.envs.offload_env import OffloadEnv

    env = OffloadEnv(config=cfg)
    env.reset(seed=seed)
    assert env.action_masks()[location], f"location {location} is not usable at the first decision"
    _, _, _, truncated, info = env.step(location)
    assert truncated and len(info["completed"]) == 1, "the episode must hold exactly one query"
    return float(info["completed"][0]["latency_s"])


@pytest.fixture(scope="session", autouse=True)
def sb3_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """SB3's logger makes a folder at every ``learn()`` without a log path: ``$SB3_LOGDIR``, else a new
    ``/tmp/SB3-<time>`` that nothing removes. The tests' go under pytest's temporary folders (subprocesses
    inherit the variable)."""
    before = os.environ.get("SB3_LOGDIR")
    os.environ["SB3_LOGDIR"] = str(tmp_path_factory.mktemp("sb3_log"))
    yield
    if before is None:
        os.environ.pop("SB3_LOGDIR", None)
    else:
        os.environ["SB3_LOGDIR"] = before


@pytest.fixture(scope="session", autouse=True)
def compiled_core_warm() -> None:
    """Compile (or load from numba's on-disk cache) the compiled core's entry points once, first: a cold
    compile takes minutes on 2 cores, and no test under a wall-clock guard should pay it."""
    try:
        import numba  # noqa: F401
    except ImportError:  # pragma: no cover - numba is a dependency
        return
    import warnings

    from offload_gym.core.warm import warm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the "compiling the core" notice
        warm()


@pytest.fixture
def tiny_env() -> gym.Env:
    env = gym.make("offload_gym/WifiOffload-tiny-v0")
    yield env
    env.close()


class Hang(Exception):
    """Guarded code that ran past its wall-clock limit (a simulator hang or livelock)."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`Hang` (with the stack where it hung) after ``seconds`` of wall time.

    SIGALRM: POSIX and the main thread only; elsewhere the body runs unguarded.
    """
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _expired(signum: int, frame: Any) -> None:
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, previous)


class ChildTraceback(Exception):
    """The traceback of an exception raised in :func:`guarded`'s child process (its ``__cause__``)."""


def guarded(seconds: float, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in a forked child process: its result (pickled back) or its exception (re-raised,
    the child's traceback as its cause); :class:`Hang` when it runs past ``seconds`` of wall time (the
    child is killed)."""
    __tracebackhide__ = True  # pytest shows the test's line and the child's traceback, not this function
    if not hasattr(os, "fork"):  # pragma: no cover - POSIX only: a signal, which compiled code does not see
        with time_limit(seconds):
            return fn(*args, **kwargs)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(read_fd)
        try:
            try:
                payload = pickle.dumps((True, fn(*args, **kwargs), ""))
            except BaseException as exc:  # every failure goes back to the parent
                text = traceback.format_exc()
                try:
                    payload = pickle.dumps((False, exc, text))
                except Exception:  # an exception that does not pickle: its text
                    payload = pickle.dumps((False, RuntimeError(repr(exc)), text))
            with os.fdopen(write_fd, "wb") as out:
                out.write(payload)
        finally:
            os._exit(0)
    os.close(write_fd)
    chunks: list[bytes] = []
    deadline = time.monotonic() + seconds
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_fd], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                raise Hang(f"still running after {seconds} s (the child process was killed)")
            chunk = os.read(read_fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)
    if not chunks:
        raise RuntimeError("the guarded child process died without a result")
    ok, value, text = pickle.loads(b"".join(chunks))
    if ok:
        return value
    raise value from ChildTraceback(text)


def load_module(path: Path, name: str) -> ModuleType:
    """The Python file ``path`` (a script, an example: not a package module) imported as module ``name``, and
    registered in ``sys.modules`` under it (dataclasses and pickling look their module up by name)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@functools.cache
def trajectory_oracle() -> ModuleType:
    """``scripts/trajectory_oracle.py`` (the episode digests, the platform key of the recordings), loaded once."""
    return load_module(ROOT / "scripts" / "trajectory_oracle.py", "trajectory_oracle")


def skip_unless_recorded_platform(recording: dict[str, Any], uses_torch: bool = False) -> None:
    """Skip unless this platform computes the exact floats of ``recording`` (its ``platform``: numpy's version and
    the machine; torch's version and CPU kernels too where ``uses_torch``, the learned planner's episodes)."""
    difference = trajectory_oracle().platform_difference(recording["platform"], uses_torch)
    if difference:
        pytest.skip(f"the recording's exact floats come from another platform: {difference}")
