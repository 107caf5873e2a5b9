"""Vector forms of the env: a Gymnasium ``VectorEnv`` (the registered vector entry point) and an SB3 ``VecEnv``.

``gym.make_vec("offload_gym/WifiOffload-v0", num_envs=N, config={...})`` returns :class:`OffloadVectorEnv` for
every registered id (``vectorization_mode="sync"`` / ``"async"`` still give Gymnasium's own). It steps the N
envs of one scenario in one call, in this process, and offers what a masked learner needs:

* ``action_masks()``: the ``(N, n_actions)`` bool masks of the pending decisions, and ``infos["action_mask"]``
  (int8, with the flag array ``infos["_action_mask"]``), as Gymnasium's vector envs stack them;
* on each sub-env's final step, its ``infos["episode_metrics"]`` (with ``infos["_episode_metrics"]``);
* the autoreset mode declared in ``metadata["autoreset_mode"]``: next-step, as Gymnasium's ``SyncVectorEnv``
  (the step after a sub-env's episode ended resets it; that step's action is ignored, its reward is 0);
* seeds as ``SyncVectorEnv``'s: ``reset(seed=s)`` seeds sub-env ``i`` with ``s + i``, so the trajectories equal
  those of N single envs.

:class:`SB3VecEnv` is the same batch as a Stable-Baselines3 ``VecEnv`` (SB3's semantics: a finished sub-env is
reset at once and its last observation is in ``infos[i]["terminal_observation"]``); MaskablePPO finds the masks
through ``env_method("action_masks")``.

Both step all N envs in **one compiled call** (:func:`offload_gym.core.step.decide_batch`) when the decision
interface is ``item`` (the default): each sub-env keeps its episode's
decision arrays in row ``i`` of the batch's arrays, so observations and masks are never copied env by env.
That call releases the GIL: with ``threads=T`` (by default one per core, at most one per 16 envs) T threads each
step a contiguous share of the envs at once. The extra threads wait for their shares inside the compiled call
(polling a control row, up to about 0.5 ms after each step before they sleep), so a step hands them out without
waking a thread (64 envs on 2 cores: about 1.5x the decisions/s of one thread; with a thread pool's hand-off it
was 0.94-1.1x). The resets and the Python side of a step stay on the calling thread, which resets the finished
envs while the others step the rest.
Their infos then carry ``action_mask``, ``decision``, ``decision_query_id``, ``time_s``, ``elapsed_s`` and
``invalid_actions``, but not ``completed`` (the per-query records: ``vectorization_mode="sync"`` gives them).
In the query and residual interfaces (whose built-in scheduler runs in Python) they step the envs one after
another, with every info key. The trajectories are the same either way.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array

from offload_gym.core._jit import JIT_ENABLED
from offload_gym.envs.compiled import EpisodeBuffers
from offload_gym.envs.offload_env import OffloadEnv

__all__ = ["OffloadVectorEnv", "SB3VecEnv"]


def _seeds(seed: int | Sequence[int | None] | None, n: int) -> list[int | None]:
    if seed is None:
        return [None] * n
    if isinstance(seed, (int, np.integer)):
        return [int(seed) + i for i in range(n)]
    seeds = list(seed)
    if len(seeds) != n:
        raise ValueError(f"seed: {len(seeds)} seeds for {n} envs; give one int or one seed per env")
    return seeds


class OffloadVectorEnv(gym.vector.VectorEnv):
    """N envs of one scenario stepped together (module docstring: masks, statistics, autoreset, seeds).

    :param num_envs: how many envs (>= 1).
    :param config, scenario, render_mode, core: as :class:`~offload_gym.envs.offload_env.OffloadEnv`'s, for every
        sub-env.
    :param threads: how many threads step a batched call (the compiled kernel releases the GIL, so each steps its
        own share of the envs at once; the trajectories do not depend on it). ``None``: one per CPU core this
        process may use, at most one per 16 envs (:func:`default_threads`). Give 1 where other processes already
        use the cores (several vector envs in subprocesses, a learner training on several threads beside it): the
        extra threads poll for their next share for up to about 0.5 ms after each step.
    """

    metadata: dict[str, Any] = {  # noqa: RUF012 - gymnasium reads it from the class
        "render_modes": ["ansi", "rgb_array"],
        **({"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP} if hasattr(gym.vector, "AutoresetMode") else {}),
    }

    def __init__(self, num_envs: int = 1, config: dict[str, Any] | None = None, scenario: str = "paper",
                 render_mode: str | None = None, core: str = "auto", threads: int | None = None,
                 **kwargs: Any) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs: {num_envs!r} is not allowed; must be an integer >= 1")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, (int, np.integer))
                                    or threads < 1):
            raise ValueError(f"threads: {threads!r} is not allowed; must be an integer >= 1 or None (one per core)")
        if kwargs:
            raise TypeError(f"unexpected arguments {sorted(kwargs)}; OffloadVectorEnv takes num_envs, config, scenario, "
                            "render_mode, core and threads")
        self.envs = [OffloadEnv(config=config, scenario=scenario, render_mode=render_mode, core=core)
                     for _ in range(int(num_envs))]
        self.num_envs = int(num_envs)
        #: threads stepping a batched call (:func:`default_threads` unless given)
        self.threads = int(threads) if threads is not None else default_threads(self.num_envs)
        self.render_mode = render_mode
        first = self.envs[0]
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._obs = create_empty_array(self.single_observation_space, n=self.num_envs, fn=np.zeros)
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        self._batch: _Batch | None = None

    @property
    def config(self) -> Any:
        """The sub-envs' scenario (:class:`~offload_gym.config.ScenarioConfig`)."""
        return self.envs[0].config

    @property
    def batched(self) -> bool:
        """Whether the current episodes run in one compiled call per step (else one env after another)."""
        return self._batch is not None

    def reset(self, *, seed: int | Sequence[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        infos: dict[str, Any] = {}
        observations, single_infos = self._reset_all(_seeds(seed, self.num_envs), options)
        for i, info in enumerate(single_infos):
            infos = self._add_info(infos, info, i)
        self._autoreset[:] = False
        self._obs = concatenate(self.single_observation_space, observations, self._obs)
        return self._copy_obs(), infos

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        actions = np.asarray(actions)
        if actions.shape[:1] != (self.num_envs,):
            raise ValueError(f"actions: shape {actions.shape}; expected one action per env, ({self.num_envs},)")
        if self._batch is not None:
            return self._step_batch(actions)
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terminations = np.zeros(self.num_envs, dtype=bool)
        truncations = np.zeros(self.num_envs, dtype=bool)
        infos: dict[str, Any] = {}
        observations = []
        for i, env in enumerate(self.envs):
            if self._autoreset[i]:  # next-step autoreset: this step only resets the finished sub-env
                obs, info = env.reset()
            else:
                obs, reward, terminated, truncated, info = env.step(actions[i])
                rewards[i], terminations[i], truncations[i] = float(reward), terminated, truncated
            observations.append(obs)
            infos = self._add_info(infos, info, i)
        self._autoreset = terminations | truncations
        self._obs = concatenate(self.single_observation_space, observations, self._obs)
        return self._copy_obs(), rewards, terminations, truncations, infos

    def _reset_all(self, seeds: list[int | None], options: dict[str, Any] | None) -> tuple[list[Any], list[dict[str, Any]]]:
        """Reset every sub-env, then batch their episodes where they allow it."""
        observations, infos = [], []
        for env, s in zip(self.envs, seeds, strict=True):
            env._episode_buffers = None
            obs, info = env.reset(seed=s, options=options)
            observations.append(obs)
            infos.append(info)
        if self._batch is not None:
            self._batch.close()
        self._batch = _Batch.of(self.envs, self.threads)
        return observations, infos

    def _step_batch(self, actions: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        batch = self._batch
        assert batch is not None
        resetting = self._autoreset
        # next-step autoreset: this step only resets the finished sub-envs, while the threads step the others
        rewards, truncations = batch.step(self.envs, actions, active=~resetting,
                                          resets=[int(i) for i in np.flatnonzero(resetting)])
        terminations = np.zeros(self.num_envs, dtype=bool)
        infos = batch.infos(self.envs)
        for i in np.flatnonzero(truncations):
            infos = self._add_info(infos, {"episode_metrics": self.envs[i].episode_metrics()}, int(i))
        self._autoreset = truncations.copy()
        return batch.observation(self._dict_keys()), rewards, terminations, truncations, infos

    def _dict_keys(self) -> tuple[str, str] | None:
        return self.envs[0]._dict_keys

    def _copy_obs(self) -> Any:
        if isinstance(self._obs, dict):
            return {k: v.copy() for k, v in self._obs.items()}
        return self._obs.copy()

    def action_masks(self) -> np.ndarray:
        """``(num_envs, n_actions)`` bool masks of the sub-envs' pending decisions."""
        if self._batch is not None:
            return self._batch.buffers.mask.copy()
        return np.stack([env.action_masks() for env in self.envs])

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Call a method (or read an attribute) of every sub-env, as ``SyncVectorEnv.call``."""
        out = []
        for env in self.envs:
            attr = getattr(env, name)
            out.append(attr(*args, **kwargs) if callable(attr) else attr)
        return tuple(out)

    def get_attr(self, name: str) -> tuple[Any, ...]:
        return tuple(getattr(env, name) for env in self.envs)

    def render(self) -> tuple[Any, ...] | None:  # type: ignore[override]
        if self.render_mode is None:
            return None
        return tuple(env.render() for env in self.envs)

    def close_extras(self, **kwargs: Any) -> None:
        if getattr(self, "_batch", None) is not None:
            self._batch.close()  # type: ignore[union-attr]
        for env in getattr(self, "envs", ()):  # none if the constructor failed
            env.close()


def _ema(average: float, value: float, weight: float = 0.1) -> float:
    """An exponential moving average's next value."""
    return (1.0 - weight) * average + weight * value


def default_threads(num_envs: int) -> int:
    """Threads for a batch of ``num_envs`` envs: one per CPU core this process may use, at most one per 16 envs
    (a thread's hand-off costs tens of microseconds; 16 decisions take about 0.5 ms)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, num_envs // 16))


class _Batch:
    """The compiled episodes of a batch's envs, stepped in one compiled call
    (:func:`offload_gym.core.step.decide_batch`): their decision arrays are rows of ``(N, ...)`` arrays."""

    def __init__(self, envs: list[OffloadEnv], threads: int = 1) -> None:
        from offload_gym.core import step as cs

        first = envs[0]
        assert first.episode is not None
        self.n = len(envs)
        self.step_fn = cs.decide_batch
        self.kind_end = cs.KIND_END
        self.buffers = EpisodeBuffers.allocate(first.config, first.observes_energy, n=self.n)
        self.OI, self.OF = first.episode.OI, first.episode.OF
        self.set_state = cs.batch_set
        self.states: Any = None
        for i, env in enumerate(envs):
            assert env.episode is not None
            env._episode_buffers = self.buffers.row(i)  # later resets (autoreset) make their episode in the row
            env.episode.move_to(env._episode_buffers)
            env._mask = env.episode.mask
            if self.states is None:
                self.states = cs.new_batch(env.episode.state.struct)
            else:
                cs.batch_append(self.states, env.episode.state.struct)
        #: the episodes whose states are in ``states`` (a sub-env reset from outside the batch is caught; a reset
        #: may keep the state object itself: offload_gym.core.arrays.CoreState._recycle)
        self.episodes = [env.episode for env in envs]
        self.rewards = np.zeros(self.n)
        self.flags = np.zeros(self.n, dtype=np.int64)
        self.blocks = np.zeros(self.n, dtype=np.int64)  # which envs need their workload's next block (the call says)
        self.invalid_raises = first.config.invalid_action == "raise"
        self.n_actions = int(first.action_space.n)
        self.energy = first.observes_energy
        self.rows = np.arange(self.n)
        self.kind_names = np.array(["query", "subtask", "aggregation", "end"], dtype=object)
        self.df_now = cs.DF_NOW
        self.start_s = np.array([env.episode.now for env in envs if env.episode is not None])
        #: each env's :attr:`~offload_gym.envs.compiled.CompiledEpisode.base` (the decisions' query ids are rows)
        self.bases = np.zeros(self.n, dtype=np.int64)
        #: contiguous ranges of envs, one per thread (the first is stepped by the calling thread)
        parts = min(threads, self.n) if JIT_ENABLED else 1  # (the workers wait in compiled code)
        edges = [self.n * k // parts for k in range(parts + 1)]
        self.ranges = list(itertools.pairwise(edges))
        #: what the compiled call steps besides the range: the actions and which envs step are copied in, so that
        #: the worker threads (which wait inside one compiled call, :class:`_Worker`) always read the same arrays
        self.actions = np.zeros(self.n, dtype=np.int64)
        self.active = np.zeros(self.n, dtype=bool)
        b = self.buffers
        self.call_args = (self.states, b.D, b.DF, b.est, b.plan_locations, b.mask, b.g, self.OI, self.OF, self.energy,
                          self.actions, self.active, self.rewards, self.flags, self.blocks)
        self.no_control = np.zeros(cs.N_CTL, dtype=np.int64)
        self.wait_fn = cs.batch_wait
        self._workers: list[_Worker] = []
        self._workers_pid = 0
        #: seconds per decision of the compiled call and per reset, as measured (they set the threads' shares)
        self._decision_s, self._reset_s = 25e-6, 1e-3

    def close(self) -> None:
        """Stop the batch's worker threads (if any)."""
        for worker in getattr(self, "_workers", ()):
            worker.stop()
        self._workers = []

    def __del__(self) -> None:
        self.close()  # the workers hold the batch's arrays, not the batch: they end with it

    def _started_workers(self) -> list[_Worker]:
        """The threads stepping every range but the first, started on first use in this process (a forked child
        inherits the objects but not their threads: it starts its own)."""
        if not self._workers or self._workers_pid != os.getpid():
            self._workers = [_Worker(self.step_fn, self.wait_fn, self.call_args, k) for k in range(len(self.ranges) - 1)]
            self._workers_pid = os.getpid()
        return self._workers

    def _decide(self, envs: list[OffloadEnv], actions: np.ndarray, active: np.ndarray, resets: list[int]) -> None:
        """The compiled call over the active envs, one range per thread when there are several, and the resets of
        the ``resets`` envs (inactive in the call) on the calling thread meanwhile: a reset is Python (about as
        long as 30-40 decisions), which the other threads' compiled code does not wait for. A reset writes only
        its own env's state and rows, which the call does not touch (an inactive row is skipped)."""
        self.actions[:] = actions
        self.active[:] = active
        if len(self.ranges) == 1:
            self._reset(envs, resets)
            self.step_fn(*self.call_args, 0, self.n, self.no_control, 0)
            return
        ranges = self._ranges(active, len(resets)) if resets else self.ranges
        workers = self._started_workers()
        jobs = [worker.post(lo, hi) for worker, (lo, hi) in zip(workers, ranges[1:], strict=True)]
        try:
            self._reset(envs, resets)
            start = time.perf_counter()
            self.step_fn(*self.call_args, *ranges[0], self.no_control, 0)
            stepped = int(np.count_nonzero(active[ranges[0][0]:ranges[0][1]]))
            if stepped and not resets:
                self._decision_s = _ema(self._decision_s, (time.perf_counter() - start) / stepped)
        finally:
            for worker, job in zip(workers, jobs, strict=True):  # every range done before the arrays are read
                worker.wait(job)

    def _reset(self, envs: list[OffloadEnv], resets: list[int]) -> None:
        """Reset the ``resets`` envs (their states join the batch after the call: :meth:`readopt`)."""
        if not resets:
            return
        start = time.perf_counter()
        for i in resets:
            envs[i].reset()
        self._reset_s = _ema(self._reset_s, (time.perf_counter() - start) / len(resets))

    def _ranges(self, active: np.ndarray, n_resets: int) -> list[tuple[int, int]]:
        """Contiguous ranges of envs, one per thread, whose work is even when the first thread also resets
        ``n_resets`` envs: it steps fewer active envs by the resets' time in decisions (each cost measured as
        the batch runs)."""
        parts = len(self.ranges)
        load = n_resets * self._reset_s / max(self._decision_s, 1e-9)  # the resets, in decisions
        n_active = int(np.count_nonzero(active))
        first = max(0.0, (n_active + load) / parts - load)  # the calling thread's active envs
        rest = (n_active - first) / (parts - 1)  # each other thread's
        targets = [first + k * rest for k in range(parts)]  # active envs before each range's end
        counts = np.cumsum(active)
        edges = [0, *(int(np.searchsorted(counts, t, side="left")) + (1 if t > 0 else 0) for t in targets[:-1]), self.n]
        edges = [min(max(e, 0), self.n) for e in edges]
        for k in range(1, len(edges)):
            edges[k] = max(edges[k], edges[k - 1])
        return list(itertools.pairwise(edges))

    @classmethod
    def of(cls, envs: list[OffloadEnv], threads: int = 1) -> _Batch | None:
        """A batch of the freshly reset envs' episodes, or ``None`` where the envs step one by one: in the query
        and residual interfaces, whose built-in scheduler runs in Python."""
        if envs[0].action_mode != "item" or any(env.episode is None for env in envs):
            return None
        return cls(envs, threads)

    def readopt(self, envs: list[OffloadEnv], i: int) -> None:
        """Env ``i`` was reset (into its row): its new episode."""
        episode = envs[i].episode
        assert episode is not None and episode.D.base is self.buffers.D
        self._take_state(i, episode)
        self.start_s[i] = episode.now

    def _take_state(self, i: int, episode: Any) -> None:
        """Env ``i``'s episode has a new state (a reset, or its arrays grew): the batch steps that one."""
        self.set_state(self.states, i, episode.state.struct)
        self.episodes[i] = episode
        self.bases[i] = episode.base

    def step(self, envs: list[OffloadEnv], actions: np.ndarray, active: np.ndarray,
             resets: Sequence[int] = ()) -> tuple[np.ndarray, np.ndarray]:
        """Apply ``actions`` of the ``active`` envs in one compiled call, and reset the ``resets`` envs (inactive)
        meanwhile; the rewards and which envs' episodes ended (truncated)."""
        if not np.issubdtype(actions.dtype, np.integer):
            actions = np.array([envs[i]._check_action(a) for i, a in enumerate(actions)], dtype=np.int64)
        actions = actions.astype(np.int64, copy=False).reshape(self.n)
        outside = active & ((actions < 0) | (actions >= self.n_actions))
        if outside.any():
            i = int(np.flatnonzero(outside)[0])
            envs[i]._check_action(int(actions[i]))  # raises with the env's message
        actions = np.where(active, actions, 0)  # a resetting env's action is ignored
        masks = self.buffers.mask
        invalid = active & ~masks[self.rows, actions]
        if invalid.any():
            if self.invalid_raises:
                i = int(np.flatnonzero(invalid)[0])
                allowed = [int(x) for x in np.flatnonzero(masks[i])]
                raise ValueError(f"actions[{i}]: {int(actions[i])} is masked at this {envs[i]._kind} decision; "
                                 f"allowed actions: {allowed}")
            actions = np.where(invalid, 0, actions)  # as a single env: a masked action runs on the phone, counted
            for i in np.flatnonzero(invalid):
                envs[i]._invalid_actions += 1
        episodes = self.episodes
        if [env.episode for env in envs] != episodes:  # (by identity) a sub-env was reset from outside the batch
            for i in np.flatnonzero(active):
                episode = envs[i].episode
                if episode is None or episode is not episodes[i]:
                    if episode is None or episode.D.base is not self.buffers.D:
                        raise RuntimeError(f"env {i} of the batch was reset outside it onto another engine; reset "
                                           "the vector env instead")
                    self.readopt(envs, int(i))
        b = self.buffers
        self.start_s = b.DF[:, self.df_now].copy()  # each decision's time (written with its observation)
        self._decide(envs, actions, active, list(resets))
        for i in resets:
            self.readopt(envs, i)
        blocks = self.blocks
        for i in np.flatnonzero(self.flags == -2):  # its message arrays were full: they grow, and it goes on
            episode = envs[i].episode
            self.rewards[i] = episode.go_on(float(self.rewards[i]))
            episode.mark_drained()  # the batch has rewarded them
            self._take_state(int(i), episode)
            blocks[i] = 1  # the call's word on it is stale: ask the episode
        # the call marked the finished queries seen and flagged the envs whose next workload block is due: the
        # sub-envs read their decision from their rows, and only the built-in scheduler's cached action is stale
        for i in np.flatnonzero(blocks):
            episode = envs[i].episode
            if episode.grow_if_needed():
                self._take_state(int(i), episode)
        for env in envs:
            env._suggested = None
        truncated = active & (b.D[:, 0] == self.kind_end)
        return self.rewards.copy(), truncated

    def observation(self, dict_keys: tuple[str, str] | None) -> Any:
        features = self.buffers.g.astype(np.float32)
        if dict_keys is None:
            return features
        return {dict_keys[0]: features, dict_keys[1]: self.buffers.mask.astype(np.int8)}

    def infos(self, envs: list[OffloadEnv]) -> dict[str, Any]:
        """The sub-envs' infos as Gymnasium batches them (``completed``, the per-query records, left out)."""
        b = self.buffers
        kinds = b.D[:, 0]
        now = b.DF[:, self.df_now].copy()
        everywhere = np.ones(self.n, dtype=bool)
        return {
            "action_mask": b.mask.astype(np.int8), "_action_mask": everywhere,
            "decision": self.kind_names[kinds], "_decision": everywhere,
            "decision_query_id": np.where(kinds == self.kind_end, -1, b.D[:, 1] + self.bases),
            "_decision_query_id": everywhere,
            "time_s": now, "_time_s": everywhere,
            "elapsed_s": now - self.start_s, "_elapsed_s": everywhere,
            "invalid_actions": np.array([env._invalid_actions for env in envs]), "_invalid_actions": everywhere,
        }


#: polls of a worker with no job before it sleeps (about 0.5 ms on this project's machine: the gap between a
#: learner's steps is usually shorter, so the next job finds it awake), and of the calling thread waiting for a job
#: before it yields its CPU (a worker the machine descheduled gets it back) and looks at whether the worker is alive
#: (about 25 us)
_SERVE_POLLS, _WAIT_POLLS = 1_000_000, 100_000
_yield_cpu: Any = getattr(os, "sched_yield", lambda: time.sleep(0))


class _Worker:
    """A thread that steps one range of a batch's envs per step. It waits for its next range inside the compiled
    call (:func:`offload_gym.core.step.decide_batch` with ``polls``), so a step hands it its range in a memory
    write: no GIL to take and no sleeping thread to wake (a thread pool's hand-off took about 50 us a step, a
    seventh of a 64-env step). With no job for ``_SERVE_POLLS`` polls it sleeps on an event; the next job wakes it.

    The control row's writes from Python happen under the GIL, so the sleep and the post of a job cannot miss each
    other: the worker marks itself sleeping, then looks for a job once more; a post writes the job, then wakes a
    worker marked sleeping."""

    def __init__(self, step_fn: Any, wait_fn: Any, call_args: tuple[Any, ...], index: int) -> None:
        from offload_gym.core import step as cs

        self.cs = cs
        self.step_fn, self.wait_fn, self.call_args = step_fn, wait_fn, call_args
        self.control = np.zeros(cs.N_CTL, dtype=np.int64)
        self.wake = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, name=f"offload_gym_batch_{index}", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        cs, control = self.cs, self.control
        try:
            while True:
                self.step_fn(*self.call_args, 0, 0, control, _SERVE_POLLS)
                if control[cs.CTL_STOP]:
                    return
                self.wake.clear()
                control[cs.CTL_SLEEPING] = 1
                while control[cs.CTL_POSTED] == control[cs.CTL_DONE] and not control[cs.CTL_STOP]:
                    self.wake.wait(timeout=0.05)  # (a post sets it; the timeout only guards the protocol)
                control[cs.CTL_SLEEPING] = 0
        except BaseException as exc:  # the calling thread raises it
            self.error = exc
            control[cs.CTL_DONE] = control[cs.CTL_POSTED]

    def post(self, lo: int, hi: int) -> int:
        """Give the worker envs ``lo..hi-1`` to step; the job's number (for :meth:`wait`)."""
        cs, control = self.cs, self.control
        if self.error is not None or not self.thread.is_alive():
            raise RuntimeError("a worker thread of the batched vector env stopped") from self.error
        control[cs.CTL_LO], control[cs.CTL_HI] = lo, hi
        job = int(control[cs.CTL_POSTED]) + 1
        control[cs.CTL_POSTED] = job
        if control[cs.CTL_SLEEPING]:
            self.wake.set()
        return job

    def wait(self, job: int) -> None:
        """Until the worker finished job ``job`` (it raises what the worker raised)."""
        while not self.wait_fn(self.control, job, _WAIT_POLLS):
            if self.error is not None or not self.thread.is_alive():
                break
            _yield_cpu()  # a while without the job done: let a worker the machine has descheduled run
        if self.error is not None:
            raise RuntimeError("a worker thread of the batched vector env failed") from self.error
        if not self.thread.is_alive() and self.control[self.cs.CTL_DONE] != job:
            raise RuntimeError("a worker thread of the batched vector env stopped")

    def stop(self) -> None:
        """End the thread (it finishes its job first)."""
        self.control[self.cs.CTL_STOP] = 1
        self.wake.set()


class SB3VecEnv:
    """:class:`OffloadVectorEnv` as a Stable-Baselines3 ``VecEnv`` (made on first use: SB3 is imported lazily).

    ``SB3VecEnv(num_envs, config=..., scenario=..., seed=...)`` returns an instance of a
    ``stable_baselines3.common.vec_env.VecEnv`` subclass.
    """

    def __new__(cls, num_envs: int = 1, config: dict[str, Any] | None = None, scenario: str = "paper",
                seed: int | None = None, core: str = "auto", threads: int | None = None) -> Any:
        return _sb3_class()(OffloadVectorEnv(num_envs, config=config, scenario=scenario, core=core, threads=threads),
                            seed=seed)


_SB3_CLASS: type | None = None


def _sb3_step_batch(sb3_env: Any, actions: np.ndarray) -> Any:
    """SB3's ``step_wait`` on a batched :class:`OffloadVectorEnv`: all envs in one compiled call, finished ones
    reset at once (SB3's convention: the last observation in ``terminal_observation``, the reset's info in
    ``reset_infos``). Each info has the next decision's ``action_mask``; a final one also the episode's metrics,
    under ``episode_metrics`` and each at the top level (for ``VecMonitor(info_keywords=...)``)."""
    venv: OffloadVectorEnv = sb3_env.venv
    batch = venv._batch
    assert batch is not None
    rewards, dones = batch.step(venv.envs, np.asarray(actions), active=np.ones(venv.num_envs, dtype=bool))
    keys = venv._dict_keys()
    infos: list[dict[str, Any]] = [{"TimeLimit.truncated": bool(d)} for d in dones]
    if dones.any():
        final = batch.observation(keys)
        for i in np.flatnonzero(dones):
            env = venv.envs[i]
            metrics = env.episode_metrics()
            infos[i].update(metrics)
            infos[i]["episode_metrics"] = metrics
            infos[i]["terminal_observation"] = {k: v[i] for k, v in final.items()} if keys is not None else final[i]
            _, sb3_env.reset_infos[i] = env.reset()
            batch.readopt(venv.envs, int(i))
    masks = batch.buffers.mask.astype(np.int8)
    for i, info in enumerate(infos):
        info["action_mask"] = masks[i]
    return batch.observation(keys), rewards.astype(np.float32), dones, infos


def _sb3_class() -> type:
    global _SB3_CLASS
    if _SB3_CLASS is not None:
        return _SB3_CLASS
    from stable_baselines3.common.vec_env import VecEnv

    class _OffloadSB3VecEnv(VecEnv):
        """SB3 view of an :class:`OffloadVectorEnv`; finished sub-envs reset at once (SB3's convention)."""

        def __init__(self, venv: OffloadVectorEnv, seed: int | None = None) -> None:
            self.venv = venv
            super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
            self._seed = seed
            self._actions: np.ndarray | None = None
            self._last_obs: list[Any] = [None] * venv.num_envs

        def reset(self) -> Any:
            seeds: list[int | None] = list(self._seeds)
            if self._seed is not None and all(s is None for s in seeds):  # the constructor's seed, first reset only
                seeds = [self._seed + i for i in range(self.num_envs)]
            self._seed = None
            observations, infos = self.venv._reset_all(seeds, None)
            for i, (obs, info) in enumerate(zip(observations, infos, strict=True)):
                self._last_obs[i], self.reset_infos[i] = obs, info
            self._reset_seeds()
            space = self.venv.single_observation_space
            return concatenate(space, self._last_obs, create_empty_array(space, n=self.num_envs))

        def step_async(self, actions: np.ndarray) -> None:
            self._actions = np.asarray(actions)

        def step_wait(self) -> Any:
            assert self._actions is not None
            if self.venv._batch is not None:
                return _sb3_step_batch(self, self._actions)
            envs = self.venv.envs
            observations, rewards = [], np.zeros(self.num_envs, dtype=np.float32)
            dones = np.zeros(self.num_envs, dtype=bool)
            infos: list[dict[str, Any]] = []
            for i, env in enumerate(envs):
                obs, reward, terminated, truncated, info = env.step(self._actions[i])
                rewards[i], dones[i] = float(reward), bool(terminated or truncated)
                info = dict(info)
                info["TimeLimit.truncated"] = bool(truncated and not terminated)
                if dones[i]:
                    info["terminal_observation"] = obs
                    obs, self.reset_infos[i] = env.reset()
                observations.append(obs)
                infos.append(info)
            space = self.venv.single_observation_space
            return concatenate(space, observations, create_empty_array(space, n=self.num_envs)), rewards, dones, infos

        def close(self) -> None:
            self.venv.close()

        def _targets(self, indices: Any) -> list[OffloadEnv]:
            return [self.venv.envs[i] for i in self._get_indices(indices)]

        def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
            return [getattr(env, attr_name) for env in self._targets(indices)]

        def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
            for env in self._targets(indices):
                setattr(env, attr_name, value)

        def env_method(self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any) -> list[Any]:
            return [getattr(env, method_name)(*method_args, **method_kwargs) for env in self._targets(indices)]

        def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
            return [False for _ in self._targets(indices)]

        def get_images(self) -> Sequence[np.ndarray | None]:
            return [None for _ in self.venv.envs]

    _SB3_CLASS = _OffloadSB3VecEnv
    return _OffloadSB3VecEnv
