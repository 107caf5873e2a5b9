"""Adapters for RL libraries that are optional extras of offload_gym.

Nothing here is imported by ``import offload_gym``: each submodule imports its library only when it is itself
imported, so the core never needs them.

- :mod:`offload_gym.integrations.rllib`: Ray RLlib and Ray Tune (``pip install -e ".[ray]"``): env registration
  that remote Ray workers can see, a PPO config whose RLModule applies the action mask, and an RLlib
  ``MultiAgentEnv`` (one agent per phone, only the deciding phone acts) with its multi-agent PPO config.
"""
