"""The compiled simulation core (issue 11): numba kernels on explicit arrays.

The env runs its episodes here wherever the scenario is supported (``OffloadEnv(core="auto")``, the default;
:mod:`offload_gym.envs.compiled`), and the batched vector env steps all its envs in one call. Each kernel
reproduces :mod:`offload_gym.sim` bit for bit (the tests compare the two on fuzzed inputs and whole
trajectories; ``scripts/trajectory_oracle.py`` is the judge), faults and random access delays included; what
is not ported (the deprecated approximate estimates) runs on the Python engine.

Kernels are compiled with numba where it is installed (``pip install numba``; the ``dev`` extra has it) and
cached on disk; without numba, or with ``NUMBA_DISABLE_JIT=1``, the same source runs as plain Python.
"""
