"""Whole env trajectories on the compiled core: the Python engine's recorded ones (observations, rewards, infos),
growth and compaction of its arrays, pickling, plain-Python runs of its source.

The Python engine that the core replaced is gone; what it gave for the episodes below is recorded in
``tests/data/python_engine_env_trajectories.json`` (the sha256 of :func:`trajectory`'s output per case, recorded
with :func:`case_digest` on the Python engine at commit 26b61a0). As for ``tests/test_golden_trajectories.py``, the
comparison skips where numpy's version or the machine type differ from the recording's (none of these episodes
runs the learned planner, so torch's floats do not enter).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import skip_unless_recorded_platform

pytest.importorskip("numba")

from offload_gym.envs.offload_env import OffloadEnv
from offload_gym.multi_agent import parallel_env
from offload_gym.sim.episode import WORKLOAD_BLOCK

ROOT = Path(__file__).resolve().parent.parent
RECORDING = Path(__file__).parent / "data" / "python_engine_env_trajectories.json"


def trajectory(env: gym.Env, seed: int, steps: int = 10_000) -> list[Any]:
    """Every step's observation, reward, mask and info numbers under a seeded random masked policy."""
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    out: list[Any] = []
    for _ in range(steps):
        features = obs if not isinstance(obs, dict) else obs[next(iter(obs))]
        out.append((np.asarray(features).tobytes(), info["action_mask"].tobytes(), info["decision"],
                    info["decision_query_id"], info["time_s"], info["elapsed_s"], repr(info["completed"])))
        obs, reward, terminated, truncated, info = env.step(int(rng.choice(np.flatnonzero(info["action_mask"]))))
        out.append(repr(float(reward)))
        if terminated or truncated:
            out.append(repr(info["episode_metrics"]))
            break
    return out


#: faults (outages redispatched or failed, overlapping ones merged, phones left out of coverage, background and
#: backhaul changes) and random access delays, each of which the episodes below exercise
FAULTED = [
    {"faults": {"ap_outages": [{"ap": 0, "start_s": 1.0, "duration_s": 2.0}]}, "episode": {"queries": 60}},
    {"faults": {"ap_outages": [{"ap": 1, "start_s": 0.5, "duration_s": 5.0}, {"ap": 1, "start_s": 3.0, "duration_s": 4.0},
                               {"ap": 2, "start_s": 2.0, "duration_s": 1.0}], "on_outage": "fail"},
     "episode": {"queries": 80}},
    {"faults": {"background_changes": [{"start_s": 1.0, "stations": 40}, {"start_s": 3.0, "stations": 2, "ap": 1}],
                "backhaul_changes": [{"start_s": 2.0, "delay_s": 0.05, "rate_bps": 1e7}]}, "episode": {"queries": 60}},
    {"topology": {"n_users": 30, "n_aps": 1}, "reward": {"energy_weight": 0.1}, "episode": {"queries": 80},
     "faults": {"ap_outages": [{"ap": 0, "start_s": 0.5, "duration_s": 3.0}], "on_outage": "fail"}},
    {"topology": {"n_users": 30, "n_aps": 2, "area_m": 120.0}, "planner": {"latency_s": 0.3}, "episode": {"queries": 80},
     "faults": {"ap_outages": [{"ap": 0, "start_s": 0.5, "duration_s": 3.0}]}},
    {"wifi": {"access_delay_cv": 2.0, "background_stations": 8}, "topology": {"n_users": 30}, "episode": {"queries": 80},
     "faults": {"ap_outages": [{"ap": 2, "start_s": 1.0, "duration_s": 2.0}]}},
    {"wifi": {"access_delay_cv": 0.7}, "episode": {"queries": 40}},
]


LONG = {"topology": {"n_users": 3, "n_aps": 2}, "episode": {"queries": WORKLOAD_BLOCK + 300}}
#: an outage every 30 s (the next block's queries arrive from about 6,930 s) and random access delays
LONG_OUTAGES = {**LONG, "wifi": {"access_delay_cv": 1.0},
                "faults": {"ap_outages": [{"ap": 0, "start_s": 30.0 * k, "duration_s": 20.0} for k in range(1, 300)],
                           "on_outage": "fail"}}
LONG_FAULTED = {**LONG, "episode": {"queries": 3 * WORKLOAD_BLOCK + 100}, "wifi": {"access_delay_cv": 1.0},
                "faults": {"ap_outages": [{"ap": 0, "start_s": 45.0 * k, "duration_s": 20.0} for k in range(1, 500)]}}


def _long_workload(workload: dict[str, Any]) -> dict[str, Any]:
    return {**LONG, "episode": {"queries": 2 * WORKLOAD_BLOCK + 50}, "workload": workload}


#: the recorded episodes: name -> (config, seed, steps)
CASES: dict[str, tuple[dict[str, Any], int, int]] = {
    **{f"faulted-{i}-seed{seed}": (config, seed, 10_000) for i, config in enumerate(FAULTED) for seed in (0, 1)},
    **{f"faulted-{i}-300-queries": ({**FAULTED[i], "episode": {"queries": 300}}, 3, 10_000) for i in (0, 3, 5)},
    "long-outages": (LONG_OUTAGES, 6, 100_000),
    "long-corpus": (_long_workload({"source": "corpus"}), 2, 100_000),
    "long-trace": (_long_workload({"source": "trace", "trace": "azure-code"}), 2, 100_000),
    "long-faulted": (LONG_FAULTED, 5, 100_000),
}


def case_digest(name: str, core: str = "auto") -> str:
    """The sha256 of case ``name``'s :func:`trajectory` on ``core`` (``python`` recorded the file, at 26b61a0)."""
    config, seed, steps = CASES[name]
    return hashlib.sha256(repr(trajectory(OffloadEnv(config=config, core=core), seed, steps)).encode()).hexdigest()


def recorded(name: str) -> str:
    """The Python engine's digest of case ``name`` (skips where the platform differs from the recording's)."""
    recording = json.loads(RECORDING.read_text())
    skip_unless_recorded_platform(recording)
    return recording["digests"][name]


def test_the_recording_holds_every_case() -> None:
    assert sorted(json.loads(RECORDING.read_text())["digests"]) == sorted([*CASES, "multi-agent-views"])


@pytest.mark.parametrize("name", [name for name in CASES if name.startswith("faulted-") and "seed" in name])
def test_faults_and_random_access_delays_give_the_python_engines_trajectories(name: str) -> None:
    assert case_digest(name) == recorded(name)


def test_the_faulted_episodes_fail_redispatch_and_change_the_network() -> None:
    """The configs above are not vacuous: outages fail and redispatch queries, and the background and backhaul
    changes move latencies (on the compiled core, which the env runs them on by default)."""
    def metrics(config: dict[str, Any], seed: int = 0) -> dict[str, Any]:
        env = OffloadEnv(config=config)
        _, info = env.reset(seed=seed)
        assert env.episode is not None
        rng = np.random.default_rng(seed)
        done = False
        while not done:
            _, _, terminated, truncated, info = env.step(int(rng.choice(np.flatnonzero(info["action_mask"]))))
            done = terminated or truncated
        return info["episode_metrics"]

    assert metrics(FAULTED[0])["redispatched_queries"] > 0
    assert metrics(FAULTED[1])["failed_queries"] > 0 and metrics(FAULTED[1])["redispatched_queries"] == 0
    assert metrics(FAULTED[2])["mean_latency_s"] != metrics({"episode": {"queries": 60}})["mean_latency_s"]
    assert metrics(FAULTED[3])["failed_queries"] > 0


def test_every_core_argument_runs_the_compiled_core_and_the_removed_options_say_so() -> None:
    for core in ("auto", "compiled"):
        env = OffloadEnv(core=core)
        env.reset(seed=0)
        assert env.episode is not None
    with pytest.raises(ValueError, match=r"core: 'python' was removed with the Python engine.*NUMBA_DISABLE_JIT"):
        OffloadEnv(core="python")
    with pytest.raises(ValueError, match="core: 'fast' is not allowed; choose one of \\['auto', 'compiled'\\]"):
        OffloadEnv(core="fast")
    with pytest.raises(ValueError, match=r"approx_estimates: true is no longer allowed.*allowed: false"):
        OffloadEnv(config={"approx_estimates": True})
    with pytest.raises(ValueError, match="approx_estimates"):  # at a reset that turns it on, too
        OffloadEnv().reset(seed=0, options={"config": {"approx_estimates": True}})
    assert OffloadEnv(config={"approx_estimates": False}).config.approx_estimates is False  # saved configs load


def test_episodes_longer_than_a_workload_block_give_the_python_engines_trajectory() -> None:
    """The core's arrays grow by the workload's next block (the same draws, in the same order), and an outage
    and random access delays span the boundary."""
    config, seed, steps = CASES["long-outages"]
    compiled = OffloadEnv(config=config)
    out = trajectory(compiled, seed, steps)
    assert hashlib.sha256(repr(out).encode()).hexdigest() == recorded("long-outages")
    assert compiled.episode is not None and compiled.episode.state.loaded == WORKLOAD_BLOCK + 300
    assert compiled.episode.base > 0  # the first block's finished queries' rows were dropped when it grew
    assert compiled.episode_metrics()["queries"] == WORKLOAD_BLOCK + 300  # every query was counted
    assert compiled.episode_metrics()["failed_queries"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["long-corpus", "long-trace"])
def test_long_corpus_and_trace_episodes_give_the_python_engines_trajectories(name: str) -> None:
    assert case_digest(name) == recorded(name)


@pytest.mark.parametrize("index", [0, 3, 5])
def test_message_arrays_that_grow_at_every_turn_give_the_same_trajectories(index: int,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """With no message rows per query at the start, the arrays are full early: the
    call that finds them full returns, they double, and the call goes on where it stopped (faulted configs:
    cancelled and redispatched messages too). The trajectory is the one of roomy arrays, and the Python engine's."""
    from offload_gym.core import arrays

    name = f"faulted-{index}-300-queries"
    config, seed, steps = CASES[name]
    roomy = trajectory(OffloadEnv(config=config), seed, steps)
    monkeypatch.setattr(arrays, "MESSAGES_PER_QUERY", 0)
    compiled = OffloadEnv(config=config)
    grown = trajectory(compiled, seed, steps)
    assert grown == roomy
    assert compiled.episode is not None
    assert len(compiled.episode.state.arrays[8]) >= 2 * compiled.episode.state.msg_margin  # it grew
    assert hashlib.sha256(repr(grown).encode()).hexdigest() == recorded(name)


@pytest.mark.parametrize("config", [*FAULTED, {"workload": {"source": "corpus"}, "episode": {"queries": 50}}],
                         ids=[*(f"faulted-{i}" for i in range(len(FAULTED))), "corpus"])
def test_an_episode_after_another_is_the_same_seed_on_a_fresh_env(config: dict[str, Any],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A reset refills the previous episode's arrays, lists and compiled state in place (CoreState._recycle): no
    count, queue, message, event, fault or random-access stream may leak from the episode before, whether it
    ended or was cut off mid-way with work in flight, or its message arrays grew."""
    from offload_gym.core import arrays

    monkeypatch.setattr(arrays, "MESSAGES_PER_QUERY", 1)  # the arrays grow in the first episode
    used = OffloadEnv(config=config)
    first = trajectory(used, 11)
    assert used.episode is not None
    struct = used.episode.state.struct
    rng = np.random.default_rng(0)
    _, info = used.reset(seed=12)  # cut off with queries, messages and events in flight
    for _ in range(40):
        _, _, terminated, truncated, info = used.step(int(rng.choice(np.flatnonzero(info["action_mask"]))))
        if terminated or truncated:
            break
    in_flight = used.episode.state.arrays[2]
    assert used.episode.state.struct is struct  # recycled, not rebuilt
    assert int(in_flight[arrays.GI_N_EVENTS]) > 0 and int(in_flight[arrays.GI_N_MSGS]) > 0
    after = [trajectory(used, seed) for seed in (13, 11)]
    assert used.episode.state.struct is struct
    assert after == [trajectory(OffloadEnv(config=config), seed) for seed in (13, 11)]
    assert after[1] == first


@pytest.mark.parametrize("index", [0, 3])
def test_queues_that_fill_up_grow_inside_the_compiled_code_with_the_same_trajectory(
        index: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Queue rows start with room for one value: every queue kind grows (the compiled state then holds larger
    arrays than Python built), and the trajectory, a pickled copy's and the next recycled episode's do not change."""
    from offload_gym.core import engine
    from offload_gym.core.arrays import QUEUE_SLOTS

    name = f"faulted-{index}-300-queries"
    config, seed, steps = CASES[name]

    def to_one_edge(env: OffloadEnv) -> list[Any]:  # the last allowed action: edge queues build up (ready ones too)
        _, info = env.reset(seed=2)
        out, done = [], False
        while not done:
            obs, reward, terminated, truncated, info = env.step(int(np.flatnonzero(info["action_mask"])[-1]))
            out.append((obs.tobytes(), reward, repr(info)))
            done = terminated or truncated
        return out

    roomy = trajectory(OffloadEnv(config=config), seed, steps)
    roomy_one_edge = to_one_edge(OffloadEnv(config=config))
    monkeypatch.setattr(engine, "QUEUE_ROOM", 1)
    tight = OffloadEnv(config=config)
    assert trajectory(tight, seed, steps) == roomy
    assert tight.episode is not None
    state = tight.episode.state
    grown = [Q.shape[1] for Q in engine.queues_of(state.struct)]
    built = [state.arrays[slot].shape[1] for slot in QUEUE_SLOTS]
    assert built == [2] * 6 and all(grown[k] > 2 for k in (0, 1, 2, 4)), grown  # cells, phones, waiting, decoding
    assert [Q.shape[1] for Q in state.current_arrays()[14:15]] == grown[:1]

    rng = np.random.default_rng(5)
    _, info = tight.reset(seed=seed)
    for _ in range(120):
        _, _, _, _, info = tight.step(int(rng.choice(np.flatnonzero(info["action_mask"]))))
    clone = pickle.loads(pickle.dumps(tight))
    for _ in range(100):
        a = int(rng.choice(np.flatnonzero(info["action_mask"])))
        out, twin = tight.step(a), clone.step(a)
        assert out[0].tobytes() == twin[0].tobytes() and out[1:4] == twin[1:4] and repr(out[4]) == repr(twin[4])
        info = out[4]
        if out[2] or out[3]:
            break
    assert trajectory(tight, seed, steps) == roomy  # a recycled state: its queues emptied, their room kept
    assert to_one_edge(tight) == roomy_one_edge
    assert tight.episode is not None and engine.queues_of(tight.episode.state.struct)[3].shape[1] > 2


def test_a_grown_episode_pickles_and_continues_identically() -> None:
    env = OffloadEnv(config=LONG, core="compiled")
    _, info = env.reset(seed=1)
    assert env.episode is not None and env.episode.state.loaded == WORKLOAD_BLOCK
    while env.episode.state.loaded == WORKLOAD_BLOCK:  # the phone, to the second block
        _, _, _, _, info = env.step(0)
    clone = pickle.loads(pickle.dumps(env))
    rng = np.random.default_rng(0)
    for _ in range(300):
        a = int(rng.choice(np.flatnonzero(info["action_mask"])))
        obs1, r1, _, t1, info = env.step(a)
        obs2, r2, _, t2, info2 = clone.step(a)
        assert obs1.tobytes() == obs2.tobytes() and r1 == r2 and t1 == t2 and repr(info) == repr(info2)
    assert env.episode.base > 0 and clone.episode is not None and clone.episode.base == env.episode.base


def test_long_episodes_keep_the_rows_in_flight_and_count_every_query_once() -> None:
    """Five workload blocks: at each growth the rows of the queries nothing needs any more are dropped, so the
    arrays hold about a block while the episode's ids, counts and metrics cover every query."""
    n = 5 * WORKLOAD_BLOCK
    env = OffloadEnv(config={**LONG, "episode": {"queries": n}, "wifi": {"access_delay_cv": 1.0},
                             "faults": {"ap_outages": [{"ap": 1, "start_s": 2000.0 * k, "duration_s": 300.0}
                                                       for k in range(1, 20)]}})
    _, info = env.reset(seed=3)
    rng = np.random.default_rng(3)
    ids, decisions, most_rows = [], [info["decision_query_id"]], 0
    done = False
    while not done:
        _, _, _, done, info = env.step(int(rng.choice(np.flatnonzero(info["action_mask"]))))
        ids += [c["query_id"] for c in info["completed"]]
        decisions.append(info["decision_query_id"])
        assert env.episode is not None
        most_rows = max(most_rows, len(env.episode.state.arrays[5]))
    assert sorted(ids) == list(range(n))  # each query finished once, under its episode id
    assert sorted(set(decisions) - {-1}) == list(range(n))
    metrics = env.episode_metrics()
    assert metrics["queries"] == n and metrics["redispatched_queries"] > 0
    assert env.episode.base > 3 * WORKLOAD_BLOCK and most_rows <= 2 * WORKLOAD_BLOCK + 64


@pytest.mark.slow
def test_a_long_faulted_episode_gives_the_python_trajectory_across_several_compactions() -> None:
    config, seed, steps = CASES["long-faulted"]
    compiled = OffloadEnv(config=config)
    out = trajectory(compiled, seed, steps)
    assert compiled.episode is not None and compiled.episode.base > 2 * WORKLOAD_BLOCK
    assert hashlib.sha256(repr(out).encode()).hexdigest() == recorded("long-faulted")


def test_a_compiled_env_pickles_mid_episode_and_continues_identically() -> None:
    env = OffloadEnv(core="compiled")
    rng = np.random.default_rng(0)
    _, info = env.reset(seed=4)
    for _ in range(30):
        _, _, _, _, info = env.step(int(rng.choice(np.flatnonzero(info["action_mask"]))))
    clone = pickle.loads(pickle.dumps(env))
    for _ in range(200):
        a = int(rng.choice(np.flatnonzero(info["action_mask"])))
        obs1, r1, _, t1, info = env.step(a)
        obs2, r2, _, t2, info2 = clone.step(a)
        assert obs1.tobytes() == obs2.tobytes() and r1 == r2 and t1 == t2 and repr(info) == repr(info2)
        if t1:
            break


def multi_agent_digest(core: str = "auto") -> str:
    """The sha256 of every phone's view over 40 steps of the multi-agent front (recorded as ``multi-agent-views``)."""
    env = parallel_env(config={"topology": {"n_users": 5}}, core=core)
    obs, _ = env.reset(seed=2)
    rng = np.random.default_rng(2)
    seen = []
    for _ in range(40):
        seen.append({a: o["observations"].tobytes() for a, o in obs.items()})
        acting = {a: int(rng.choice(np.flatnonzero(o["action_mask"]))) for a, o in obs.items()}
        obs, _, _, trunc, _ = env.step(acting)
        if any(trunc.values()):
            break
    assert len(seen) == 40 and len(seen[0]) == 5
    return hashlib.sha256(repr(seen).encode()).hexdigest()


def test_multi_agent_phone_views_are_the_python_engines() -> None:
    """Every phone's view, the deciding one's and the others' (what each knows of the network), as recorded."""
    assert multi_agent_digest() == recorded("multi-agent-views")


_PLAIN_PYTHON_RUN = """
import hashlib, sys
sys.path.insert(0, {tests!r})
from test_core_env import trajectory
from offload_gym.core._jit import JIT_ENABLED
from offload_gym.envs.offload_env import OffloadEnv
env = OffloadEnv(config={config!r}, core="compiled")
digest = hashlib.sha256(repr(trajectory(env, 4)).encode()).hexdigest()
print(JIT_ENABLED, env.episode is not None, digest)
"""


def test_numba_disable_jit_runs_the_same_core_as_plain_python() -> None:
    """``NUMBA_DISABLE_JIT=1`` (for debugging the kernels in Python) runs the core's source as Python and gives the
    compiled core's trajectory (faults, access delays)."""
    from offload_gym.core._jit import JIT_ENABLED

    if not JIT_ENABLED:
        pytest.skip("this process runs the core as plain Python already")
    config = {**FAULTED[0], "episode": {"queries": 12}, "wifi": {"access_delay_cv": 1.0}}
    expected = hashlib.sha256(repr(trajectory(OffloadEnv(config=config), 4)).encode()).hexdigest()
    code = _PLAIN_PYTHON_RUN.format(tests=str(Path(__file__).parent), config=config)
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "NUMBA_DISABLE_JIT": "1"},
                         capture_output=True, text=True, timeout=600, check=True)
    assert out.stdout.split() == ["False", "True", expected]


def test_compiled_overloads_are_found_once_per_argument_types() -> None:
    """``compiled_overload`` (what a reset binds the decision kernel and builds the state with) gives the overload
    numba's dispatcher runs, looked up once per argument types: the same code for another array of those types,
    another one for an array of another dtype or a non-contiguous one, whose numba types differ."""
    from offload_gym.core._jit import JIT_ENABLED
    from offload_gym.core.arrays import compiled_overload
    from offload_gym.core.batch import _heapify1

    if not JIT_ENABLED:
        pytest.skip("without the compiler the kernel itself is called")
    rng = np.random.default_rng(0)
    values = rng.random(9)
    first = values.copy()
    found = compiled_overload(_heapify1, (first, 9))
    found(first, 9)
    reference = values.copy()
    _heapify1(reference, 9)  # through the dispatcher
    assert first.tobytes() == reference.tobytes() and first.tobytes() != values.tobytes()
    assert compiled_overload(_heapify1, (values.copy(), 3)) is found
    strided = np.repeat(values, 2)[::2]
    others = {compiled_overload(_heapify1, (np.arange(9), 9)), compiled_overload(_heapify1, (strided, 9))}
    assert found not in others and len(others) == 2
    assert compiled_overload(_heapify1, (strided, 9)) in others  # found again, not compiled again
    strided_copy = strided.copy()
    compiled_overload(_heapify1, (strided, 9))(strided, 9)
    _heapify1(strided_copy, 9)
    assert strided.tobytes() == strided_copy.tobytes()
