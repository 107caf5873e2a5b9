"""Compile the core into numba's on-disk cache (or load it from there): one tiny episode on every entry point."""

from __future__ import annotations

import time

import numpy as np


def warm() -> float:
    """Run 3-query episodes on the compiled core (reset, every step, a phone's view, a batch of two); returns the
    seconds taken."""
    from offload_gym.envs.offload_env import OffloadEnv

    started = time.perf_counter()
    env = OffloadEnv(config={"episode": {"queries": 3}, "topology": {"n_users": 2}}, core="compiled")
    _, info = env.reset(seed=0)
    env.phone_view(1)
    done = False
    while not done:
        _, _, _, done, info = env.step(int(np.flatnonzero(info["action_mask"])[-1]))
    from offload_gym.envs.vector import OffloadVectorEnv

    venv = OffloadVectorEnv(2, config={"episode": {"queries": 3}, "topology": {"n_users": 2}}, core="compiled")
    _, info = venv.reset(seed=0)
    for _ in range(12):  # past an episode's end, and the reset after it
        _, _, _, _, info = venv.step(np.array([int(np.flatnonzero(m)[-1]) for m in info["action_mask"]]))
    return time.perf_counter() - started
