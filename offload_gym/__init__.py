"""offload_gym: a Gymnasium environment for decomposition-aware LLM inference offloading over Wi-Fi.

``import offload_gym`` registers ``offload_gym/WifiOffload-v0`` (the paper scenario) and
``offload_gym/WifiOffload-tiny-v0`` (4 phones, 2 APs, 20 queries).
"""

from offload_gym.config import ConfigError, ScenarioConfig, make_config
from offload_gym.envs.offload_env import OffloadEnv
from offload_gym.registration import ENV_IDS, register_envs

__version__ = "0.1.0"
__all__ = ["ENV_IDS", "ConfigError", "OffloadEnv", "ScenarioConfig", "make_config", "register_envs"]

register_envs()
