"""Gymnasium adapters."""

from offload_gym.envs.offload_env import OffloadEnv

__all__ = ["OffloadEnv"]
