"""``python -m offload_gym.core``: compile the core into numba's on-disk cache ahead of its first use."""

from offload_gym.core.warm import warm

if __name__ == "__main__":
    print(f"offload_gym: the compiled core is ready ({warm():.1f} s)")
