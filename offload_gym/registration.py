"""Idempotent registration of the offload_gym environment ids."""

from __future__ import annotations

import gymnasium as gym

ENV_IDS: dict[str, str] = {
    "offload_gym/WifiOffload-v0": "paper",
    "offload_gym/WifiOffload-tiny-v0": "tiny",
    # the paper scenario behind the learnable decision interfaces (config action_mode)
    "offload_gym/WifiOffload-query-v0": "paper-query",
    "offload_gym/WifiOffload-residual-v0": "paper-residual",
    # replayed Azure LLM inference traces (workload.source trace), and the phone's energy in the reward
    "offload_gym/WifiOffload-azure-code-v0": "azure-code",
    "offload_gym/WifiOffload-azure-conv-v0": "azure-conv",
    "offload_gym/WifiOffload-energy-v0": "paper-energy",
    # the action mask inside a Dict observation {"observations", "action_mask"} (config observation_format)
    "offload_gym/WifiOffload-dict-v0": "paper-dict",
}


def register_envs() -> None:
    """Register every id once; calling again is a no-op."""
    for env_id, scenario in ENV_IDS.items():
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point="offload_gym.envs.offload_env:OffloadEnv",
            # gym.make_vec(id, num_envs=N, config=...) without a vectorization_mode: N envs stepped in one call
            vector_entry_point="offload_gym.envs.vector:OffloadVectorEnv",
            kwargs={"scenario": scenario},
            disable_env_checker=False,
        )
