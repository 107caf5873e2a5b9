"""The compiled simulation core (issue 11): numba kernels on explicit arrays.

The env runs every episode here (:mod:`offload_gym.envs.compiled`), and the batched vector env steps all its
envs in one call. The core replaced a Python event engine and estimator and reproduces their trajectories bit
for bit, faults and random access delays included: ``tests/test_golden_trajectories.py`` compares it with a
recording of that engine's 316 oracle episodes (``scripts/trajectory_oracle.py``), and
``tests/test_core_closed_forms.py`` with closed forms. The formulas it mirrors are in :mod:`offload_gym.sim`
(:mod:`~offload_gym.sim.physics`, :mod:`~offload_gym.sim.wifi`, :mod:`~offload_gym.sim.workload`).

Kernels are compiled with numba (a dependency) and cached on disk. With ``NUMBA_DISABLE_JIT=1`` the same source
runs as plain Python, for debugging (a test checks it gives the compiled trajectory); ``OffloadEnv`` refuses to
run where numba cannot be imported at all.
"""
