"""The compiled core against the Python engine's recorded trajectories: 316 episodes (every registered id with
2 seeds, and 300 random configs with faults, random access delays, the learned planner and all three decision
interfaces), each hashed from every step's exact observation bytes, mask, reward and info numbers.

The recording (``tests/data/python_engine_trajectories.json``) was made by the Python engine with
``python scripts/trajectory_oracle.py --configs 300 --core python --record tests/data/python_engine_trajectories.json``,
before that engine was removed, so the check needs no Python engine. Exact floats also depend on numpy's and
torch's versions and on the CPU features numpy dispatches on; where those differ from the recording's, the test
skips (the closed-form tests, ``tests/test_core_closed_forms.py``, and the invariants still run there). A change
that is meant to alter the model re-records the file in the same commit (on the compiled core, ``--core auto``)
and says why.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("numba")
pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parent.parent
RECORDING = Path(__file__).parent / "data" / "python_engine_trajectories.json"


def _oracle() -> Any:
    spec = importlib.util.spec_from_file_location("trajectory_oracle", ROOT / "scripts" / "trajectory_oracle.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_compiled_core_gives_the_python_engines_recorded_trajectories() -> None:
    oracle = _oracle()
    recording = json.loads(RECORDING.read_text())
    assert len(recording["digests"]) == 316
    if oracle.platform_key() != recording["platform"]:
        pytest.skip(f"recorded under {recording['platform']}, running under {oracle.platform_key()}")
    digests, compiled = oracle.episode_digests(recording["configs"], recording["seeds"], core="auto",
                                               override=recording["override"])
    assert compiled == len(digests)  # every one ran on the compiled core
    digests = oracle.compact(digests)
    assert sorted(digests) == sorted(recording["digests"])  # the same episodes (ids and configs)
    differ = sorted(k for k in digests if digests[k] != recording["digests"][k])
    assert not differ, f"{len(differ)} of {len(digests)} episodes differ from the recording, e.g. {differ[:5]}"
