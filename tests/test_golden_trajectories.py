"""The compiled core against the Python engine's recorded trajectories: 316 episodes (every registered id with
2 seeds, and 300 random configs with faults, random access delays, the learned planner and all three decision
interfaces), each hashed from every step's exact observation bytes, mask, reward and info numbers.

The recording (``tests/data/python_engine_trajectories.json``) was made by the Python engine with
``python scripts/trajectory_oracle.py --configs 300 --core python --record tests/data/python_engine_trajectories.json``,
before that engine was removed, so the check needs no Python engine. The learned planner's episodes were
re-recorded on the compiled core (``--core auto``) when its forward pass went to 16 length-sorted texts a batch on
one torch thread (15 of its 36 episodes changed in the last bits of its predictions; the other 301 digests are the
Python engine's, unchanged). Exact floats also depend on numpy's
version and the machine type (the test skips where those differ from the recording's; the closed-form tests,
``tests/test_core_closed_forms.py``, and the invariants still run there), and the learned planner's episodes on
torch's version and CPU kernels (they are compared only where those are the recording's). A change
that is meant to alter the model re-records the file in the same commit (on the compiled core, ``--core auto``)
and says why.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import skip_unless_recorded_platform, trajectory_oracle

pytest.importorskip("numba")
pytest.importorskip("torch")

RECORDING = Path(__file__).parent / "data" / "python_engine_trajectories.json"


def test_the_compiled_core_gives_the_python_engines_recorded_trajectories() -> None:
    oracle = trajectory_oracle()
    recording = json.loads(RECORDING.read_text())
    assert len(recording["digests"]) == 316
    skip_unless_recorded_platform(recording)
    digests, compiled, learned = oracle.episode_digests(recording["configs"], recording["seeds"], core="auto",
                                                        override=recording["override"])
    assert compiled == len(digests)  # every one ran on the compiled core
    assert 20 <= len(learned) <= 60  # the learned planner's episodes, compared only under the recording's torch
    same_torch = not oracle.platform_difference(recording["platform"], uses_torch=True)
    compared = set(oracle.compact({k: v for k, v in digests.items() if same_torch or k not in learned}))
    digests = oracle.compact(digests)
    assert sorted(digests) == sorted(recording["digests"])  # the same episodes (ids and configs)
    differ = sorted(k for k in compared if digests[k] != recording["digests"][k])
    assert not differ, f"{len(differ)} of {len(compared)} episodes differ from the recording, e.g. {differ[:5]}"
