"""Smoke test of benchmarks/bench_env.py (no timing asserts), and the batch projection's fast path against the
general one."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import offload_gym  # noqa: F401  (registers the ids)
from offload_gym.core import batch as core_batch

ROOT = Path(__file__).resolve().parents[1]

RATES = ("offload_random_dps", "offload_greedy_dps", "cartpole_random_dps", "ratio_offload_cartpole",
         "users80_vs_20_rate_ratio", "users80_vs_20_cost_ratio", "greedy_predict_us", "env_mem_kib", "env_peak_kib",
         "rss_mib", "ppo_offload_sps", "ppo_cartpole_sps", "ppo_ratio")


def test_bench_env_quick_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_env.py"), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| measurement | value | unit | target |" in proc.stdout
    results: dict[str, Any] = json.loads(out.read_text())
    assert results["quick"] is True
    for key in RATES:
        assert math.isfinite(results[key]) and results[key] > 0, key
    assert math.isfinite(results["mem_growth_kib"])
    assert set(results["users_dps"]) == {"5", "10", "20", "40", "80"}
    assert set(results["aps_dps"]) == {"1", "2", "4", "8"}
    for value in [*results["users_dps"].values(), *results["aps_dps"].values()]:
        assert math.isfinite(value) and value > 0
    assert not any(key.startswith("python_core") for key in results)  # the Python engine is gone


@pytest.mark.parametrize("seed", range(4))
def test_roomy_batch_projection_equals_the_general_one(seed: int) -> None:
    """The heap-light path (every stream fits in the batch) returns the very same float as the FIFO simulation."""
    rng = random.Random(seed)
    for _ in range(400):
        now = rng.choice([0.0, 3.25, rng.uniform(0, 100)])
        grid = rng.random() < 0.5  # coarse values make simultaneous events (ties) likely

        def time_after(scale: float) -> float:
            return now + (rng.randint(0, 4) * 0.125 if grid else rng.uniform(0, scale))  # noqa: B023

        prefilling = [(time_after(0.2), float(rng.randint(1, 60))) for _ in range(rng.randint(0, 3))]
        decoding = [float(rng.randint(1, 80)) if grid else rng.uniform(1, 80) for _ in range(rng.randint(0, 5))]
        pending = [(rng.choice([now - 1.0, now, time_after(0.5)]), rng.choice([0.0, 0.125, rng.uniform(0, 0.3)]),
                    float(rng.randint(1, 60))) for _ in range(rng.randint(1, 5))]
        target = rng.randrange(len(pending))
        kappa = rng.choice([0.0, 0.3, rng.uniform(0, 2)])
        roomy = len(prefilling) + len(decoding) + len(pending)
        arrays = (np.array([p[0] for p in prefilling]), np.array([p[1] for p in prefilling]), np.array(decoding),
                  *(np.array([p[k] for p in pending]) for k in range(3)))
        expected = core_batch._project_general(now, 78.0, kappa, roomy, *arrays, target)
        assert core_batch.project_batch_finish_arrays(now, 78.0, kappa, roomy, *arrays, target) == expected
        assert core_batch._project_roomy(now, 78.0, kappa, *arrays, target) == expected
