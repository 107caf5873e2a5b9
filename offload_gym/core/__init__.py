"""The compiled simulation core (issue 11), in progress: numba kernels on explicit arrays.

Nothing in the environment calls this package yet; :mod:`offload_gym.sim` is still the engine every env
runs. Each kernel here reproduces a piece of :mod:`offload_gym.sim` bit for bit (its tests compare the two
on fuzzed inputs), so that the core can replace the Python engine piece by piece and the trajectory
oracle (``scripts/trajectory_oracle.py``) stays the judge.

Kernels are compiled with numba where it is installed (``pip install numba``; the ``dev`` extra has it) and
cached on disk; without numba, or with ``NUMBA_DISABLE_JIT=1``, the same source runs as plain Python.
"""
