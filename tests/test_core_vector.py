"""The batched vector env (one compiled call for all its envs) equals N single envs stepped one by one (the single
env's trajectories are the Python engine's recorded ones: tests/test_golden_trajectories.py)."""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("numba")

import offload_gym  # noqa: F401
from offload_gym.core import engine as ce
from offload_gym.core import step as cs
from offload_gym.envs import compiled
from offload_gym.envs.offload_env import OffloadEnv
from offload_gym.envs.vector import OffloadVectorEnv, SB3VecEnv

TINY = "offload_gym/WifiOffload-tiny-v0"
INFO_KEYS = ("decision", "decision_query_id", "time_s", "elapsed_s", "invalid_actions")


def test_the_step_code_reads_the_cores_indices() -> None:
    assert (compiled._D_KIND, compiled._D_QUERY) == (cs.D_KIND, cs.D_QUERY)
    assert (compiled._GF_NOW, compiled._GI_N_COMPLETED, compiled._GI_SCHEDULED, compiled._GI_DRAINED) == (
        ce.GF_NOW, ce.GI_N_COMPLETED, ce.GI_SCHEDULED, ce.GI_DRAINED)


def _single_envs(env_id: str, n: int, config: dict[str, Any] | None) -> list[OffloadEnv]:
    spec = gym.spec(env_id)
    cfg = dict(spec.kwargs.get("config") or {})
    return [OffloadEnv(config={**cfg, **(config or {})}, scenario=spec.kwargs.get("scenario", "paper"))
            for _ in range(n)]


def _compare(env_id: str, n: int, steps: int, seed: int, config: dict[str, Any] | None = None,
             invalid_every: int = 0, threads: int | None = None) -> int:
    """Step the batch and N single envs (each on its own episode, stepped by its own step(); next-step autoreset
    by hand) with the same actions; returns how many episodes ended."""
    kwargs: dict[str, Any] = {"config": config} if config else {}
    venv = gym.make_vec(env_id, num_envs=n, threads=threads, **kwargs)
    assert isinstance(venv, OffloadVectorEnv)
    singles = _single_envs(env_id, n, config)
    assert all(env.episode is None for env in singles)
    obs, info = venv.reset(seed=seed)
    assert venv.batched
    if threads is not None:
        assert venv._batch is not None and len(venv._batch.ranges) == threads
    ref = [env.reset(seed=seed + i) for i, env in enumerate(singles)]
    rng = np.random.default_rng(seed)
    autoreset = np.zeros(n, dtype=bool)
    ended = invalid = 0
    for t in range(steps):
        features = obs if not isinstance(obs, dict) else obs["observations"]
        for i, (o, inf) in enumerate(ref):
            f = o if not isinstance(o, dict) else o["observations"]
            assert np.array_equal(features[i], f), (t, i)
            assert np.array_equal(info["action_mask"][i], inf["action_mask"]), (t, i)
            for key in INFO_KEYS:
                assert info[key][i] == inf[key], (t, i, key)
            if t % 5 == 0:  # what a sub-env says of its pending decision (its episode is stepped by the batch)
                sub, single = venv.envs[i], singles[i]
                assert (sub.expert_action(), sub.deciding_user()) == (single.expert_action(), single.deciding_user())
        actions = np.array([rng.choice(np.flatnonzero(m)) for m in info["action_mask"]])
        masked = np.flatnonzero(~info["action_mask"][0].astype(bool))
        if invalid_every and t % invalid_every == 0 and masked.size:
            actions[0] = masked[-1]
            invalid += 1
        obs, rewards, terminated, truncated, info = venv.step(actions)
        for i, env in enumerate(singles):
            if autoreset[i]:
                ref[i] = env.reset()
                assert rewards[i] == 0.0 and not truncated[i]
                continue
            o, r, te, tr, inf = env.step(int(actions[i]))
            ref[i] = (o, inf)
            assert rewards[i] == r and truncated[i] == tr and terminated[i] == te, (t, i)
            if tr:
                ended += 1
                assert info["_episode_metrics"][i]
                for key, value in inf["episode_metrics"].items():
                    assert info["episode_metrics"][key][i] == value, (t, i, key)
        autoreset = terminated | truncated
    assert not invalid_every or invalid > 0  # masked actions were tried (and counted: the infos' invalid_actions)
    return ended


@pytest.mark.parametrize("env_id", [TINY, "offload_gym/WifiOffload-energy-v0", "offload_gym/WifiOffload-dict-v0"])
def test_batched_vector_env_equals_single_envs(env_id: str) -> None:
    config = {"episode": {"queries": 12}} if env_id != TINY else None
    assert _compare(env_id, 3, 160, seed=5, config=config) >= 3


def test_batched_masked_actions_are_counted_or_raise_as_in_a_single_env() -> None:
    assert _compare(TINY, 2, 120, seed=9, invalid_every=3) >= 1
    venv = gym.make_vec(TINY, num_envs=2, config={"invalid_action": "raise"})
    _, info = venv.reset(seed=0)
    while info["action_mask"][1].all():  # to a decision with a masked action (decompose, for a one-subtask query)
        _, _, _, _, info = venv.step(np.zeros(2, dtype=int))
    masked = np.flatnonzero(~info["action_mask"][1].astype(bool))
    with pytest.raises(ValueError, match=r"actions\[1\]"):
        venv.step(np.array([0, masked[0]]))
    with pytest.raises(ValueError, match="outside Discrete"):
        venv.step(np.array([99, 0]))


def test_batched_faults_equal_single_envs() -> None:
    """Outages (failing queries), a background burst and random access delays, batched."""
    config = {"episode": {"queries": 20}, "wifi": {"access_delay_cv": 1.5},
              "faults": {"ap_outages": [{"ap": 0, "start_s": 1.0, "duration_s": 2.0}], "on_outage": "fail",
                         "background_changes": [{"start_s": 2.0, "stations": 30}]}}
    assert _compare(TINY, 3, 200, seed=2, config=config) >= 3


def test_threads_step_their_ranges_of_the_batch_to_the_same_trajectories() -> None:
    """Three threads over seven envs (uneven ranges), with faults and random access delays: each env's draws
    and arrays are its own, so the trajectories are those of single envs."""
    config = {"episode": {"queries": 15}, "wifi": {"access_delay_cv": 1.0},
              "faults": {"ap_outages": [{"ap": 1, "start_s": 0.5, "duration_s": 1.5}]}}
    assert _compare(TINY, 7, 150, seed=11, config=config, threads=3) >= 7
    venv = OffloadVectorEnv(7, scenario="tiny", threads=3)
    venv.reset(seed=0)
    assert venv._batch is not None
    assert venv._batch.ranges == [(0, 2), (2, 4), (4, 7)]  # contiguous, covering every env once
    batch = venv._batch
    active = np.array([True, False, True, True, True, False, True])
    for reset_s, expected_first in ((0.0, 2), (1e-3, 0)):  # the calling thread also resets 2 envs
        batch._decision_s, batch._reset_s = 25e-6, reset_s
        ranges = batch._ranges(active, 2)
        assert [lo for lo, _ in ranges] == [0, *(hi for _, hi in ranges[:-1])] and ranges[-1][1] == 7
        steps = [int(active[lo:hi].sum()) for lo, hi in ranges]
        assert sum(steps) == 5 and steps[0] == expected_first  # resets free: even shares; costly: none
        assert max(steps) - min(steps[1:]) <= 1
    venv.step(np.zeros(7, dtype=np.int64))  # the phone: always allowed
    workers = list(batch._workers)
    assert len(workers) == 2 and all(worker.thread.is_alive() for worker in workers)
    venv.close()
    for worker in workers:  # closing ends the worker threads, whether they wait in compiled code or sleep
        worker.thread.join(timeout=10.0)
        assert not worker.thread.is_alive()


def test_batched_episodes_longer_than_a_workload_block_equal_single_envs() -> None:
    """Each env's arrays grow by its workload's next block mid-batch; the batch steps its new state."""
    from offload_gym.sim.episode import WORKLOAD_BLOCK

    config = {"topology": {"n_users": 2, "n_aps": 2}, "episode": {"queries": WORKLOAD_BLOCK + 40}}
    assert _compare(TINY, 2, 13_000, seed=1, config=config) >= 2


def test_after_each_batched_step_no_env_is_owed_its_next_block_and_every_finished_query_is_seen(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch's call flags the envs whose next workload block is due and marks their finished queries seen
    (Python asks only the flagged envs): no env is ever left behind, and the rows of seen queries are dropped."""
    from offload_gym.sim import episode as sim_episode

    monkeypatch.setattr(sim_episode, "WORKLOAD_BLOCK", 40)
    venv = OffloadVectorEnv(3, config={"episode": {"queries": 300}}, core="compiled", threads=1)
    _, info = venv.reset(seed=4)
    rng = np.random.default_rng(4)
    compacted = ended = 0
    for _ in range(1200):
        _, _, _, truncated, info = venv.step(np.array([rng.choice(np.flatnonzero(m)) for m in info["action_mask"]]))
        ended += int(truncated.sum())
        for env in venv.envs:
            episode = env.episode
            assert episode is not None
            state, gi = episode.state, episode.S[2]
            assert state.loaded == state.n_queries or int(gi[ce.GI_SCHEDULED]) + state.base < state.loaded
            assert int(gi[ce.GI_DRAINED]) == int(gi[ce.GI_N_COMPLETED])
            compacted += state.base > 0
    assert ended >= 3 and compacted > 0  # whole episodes, and the seen queries' rows were dropped as blocks loaded


def test_batched_message_arrays_that_grow_equal_single_envs(monkeypatch: pytest.MonkeyPatch) -> None:
    """An env of the batch whose message arrays are full goes on alone after they grew; its reward adds up the
    queries rewarded before and after, in order, as one call would have."""
    from offload_gym.core import arrays

    monkeypatch.setattr(arrays, "MESSAGES_PER_QUERY", 0)
    config = {"episode": {"queries": 60}, "faults": {"ap_outages": [{"ap": 1, "start_s": 5.0, "duration_s": 5.0}]}}
    assert _compare(TINY, 3, 400, seed=8, config=config, threads=2) >= 3


def test_threads_are_checked_and_default_to_the_cores_at_most_one_per_16_envs() -> None:
    from offload_gym.envs.vector import default_threads

    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads"):
            OffloadVectorEnv(2, scenario="tiny", threads=bad)  # type: ignore[arg-type]
    cores = len(os.sched_getaffinity(0))
    assert default_threads(1) == 1 and default_threads(15) == 1
    assert default_threads(64) == min(cores, 4) and default_threads(10_000) == cores
    assert OffloadVectorEnv(3, scenario="tiny").threads == 1


def _step_in_child(venv: OffloadVectorEnv, actions: np.ndarray, out: Any) -> None:
    obs, rewards, *_ = venv.step(actions)
    out.put((obs, rewards))


def test_a_forked_child_steps_a_threaded_batch_without_hanging() -> None:
    """A child forked from a process whose batch had started its threads has none of them: it starts its own
    (a pool whose threads died in the fork would wait for ever)."""
    import multiprocessing

    venv = OffloadVectorEnv(4, scenario="tiny", threads=2)
    _, info = venv.reset(seed=3)
    actions = np.array([int(np.flatnonzero(m)[-1]) for m in info["action_mask"]])
    _, _, _, _, info = venv.step(actions)  # the parent's threads are running
    actions = np.array([int(np.flatnonzero(m)[0]) for m in info["action_mask"]])
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_step_in_child, args=(venv, actions, out))
    child.start()
    try:
        obs_child, rewards_child = out.get(timeout=60)
        child.join(timeout=60)
    finally:
        if child.is_alive():  # a hung child: this test fails, and the child goes
            child.kill()
    assert child.exitcode == 0
    obs, rewards, *_ = venv.step(actions)  # the parent, from the same state
    assert np.array_equal(obs, obs_child) and np.array_equal(rewards, rewards_child)
    venv.close()


def test_the_query_interface_steps_env_by_env() -> None:
    query = gym.make_vec("offload_gym/WifiOffload-query-v0", num_envs=2)
    query.reset(seed=0)
    assert not query.batched and "completed" in query.step(np.zeros(2, dtype=int))[-1]


def test_sb3_form_batched_equals_dummy_vec_env_across_episode_ends() -> None:
    from stable_baselines3.common.vec_env import DummyVecEnv

    ours = SB3VecEnv(2, scenario="tiny", seed=3)
    dummy = DummyVecEnv([lambda: gym.make(TINY) for _ in range(2)])
    dummy.seed(3)
    obs_a, obs_b = ours.reset(), dummy.reset()
    assert ours.venv.batched
    rng = np.random.default_rng(1)
    dones = 0
    for _ in range(200):
        assert np.array_equal(obs_a, obs_b)
        masks = np.stack(ours.env_method("action_masks"))
        assert np.array_equal(masks, np.stack(dummy.env_method("action_masks")))
        actions = np.array([rng.choice(np.flatnonzero(m)) for m in masks])
        obs_a, r_a, d_a, info_a = ours.step(actions)
        obs_b, r_b, d_b, info_b = dummy.step(actions)
        assert np.array_equal(r_a, r_b) and np.array_equal(d_a, d_b)
        for i in np.flatnonzero(d_a):
            dones += 1
            assert np.array_equal(info_a[i]["terminal_observation"], info_b[i]["terminal_observation"])
            assert info_a[i]["episode_metrics"] == info_b[i]["episode_metrics"]
    assert dones >= 2


def test_a_sub_env_reset_from_outside_the_batch_is_followed() -> None:
    """``venv.call("reset")`` or a sub-env's own reset gives it a new episode: the batch steps that one."""
    venv = gym.make_vec(TINY, num_envs=2)
    single = OffloadEnv(scenario="tiny")
    venv.reset(seed=0)
    venv.envs[1].reset(seed=42)
    single.reset(seed=42)
    for _ in range(15):
        masks = venv.action_masks()
        actions = np.array([int(np.flatnonzero(m)[0]) for m in masks])
        obs, rewards, _, truncated, _ = venv.step(actions)
        obs_ref, reward_ref, _, truncated_ref, _ = single.step(int(actions[1]))
        assert np.array_equal(obs[1], obs_ref) and rewards[1] == reward_ref and truncated[1] == truncated_ref
        if truncated.any():
            break


def test_a_worker_asleep_between_steps_is_woken_by_the_next_one() -> None:
    """A worker with no job for a while sleeps on its event; the next step's post wakes it, and the trajectories
    are those of one thread."""
    import time

    config = {"episode": {"queries": 8}}
    threaded = OffloadVectorEnv(32, config=config, threads=2)
    single = OffloadVectorEnv(32, config=config, threads=1)
    rng = np.random.default_rng(2)
    (obs, info), (obs1, _) = threaded.reset(seed=2), single.reset(seed=2)
    assert threaded._batch is not None
    slept = 0
    for t in range(40):
        actions = np.array([rng.choice(np.flatnonzero(m)) for m in info["action_mask"]])
        obs, rewards, _, truncated, info = threaded.step(actions)
        obs1, rewards1, _, truncated1, _ = single.step(actions)
        assert np.array_equal(obs, obs1) and np.array_equal(rewards, rewards1) and np.array_equal(truncated, truncated1)
        if t % 10 == 9:
            worker = threaded._batch._workers[0]
            deadline = time.monotonic() + 5.0
            while not worker.control[cs.CTL_SLEEPING] and time.monotonic() < deadline:
                time.sleep(0.002)
            slept += int(worker.control[cs.CTL_SLEEPING])
    assert slept == 4
    threaded.close()
    single.close()


def test_a_worker_that_fails_raises_in_the_calling_thread() -> None:
    from offload_gym.envs.vector import _Worker

    def failing(*args: Any) -> None:
        if args[-1] > 0:  # the worker's serving call
            raise ValueError("boom")

    worker = _Worker(failing, cs.batch_wait, (), 0)
    worker.thread.join(timeout=10.0)
    with pytest.raises(RuntimeError, match=r"worker thread .* stopped") as raised:
        worker.post(0, 1)
    assert isinstance(raised.value.__cause__, ValueError)


def test_a_worker_that_fails_in_a_job_raises_at_the_wait() -> None:
    import time

    from offload_gym.envs.vector import _Worker

    def failing_in_a_job(*args: Any) -> None:
        control = args[-2]
        while control[cs.CTL_POSTED] == control[cs.CTL_DONE]:
            time.sleep(0.001)
        raise ValueError("boom")

    worker = _Worker(failing_in_a_job, cs.batch_wait, (), 0)
    job = worker.post(0, 1)
    with pytest.raises(RuntimeError, match=r"worker thread .* failed") as raised:
        worker.wait(job)
    assert isinstance(raised.value.__cause__, ValueError)
