"""An episode's workload, drawn ahead of the simulation.

What arrives when, from which phone, with which truth and which planner prediction never depends on the
scheduler's actions, so it is drawn before the simulation needs it: at reset for the whole of an episode of
up to :data:`WORKLOAD_BLOCK` queries (the default episodes), and then in further blocks of that size as the
episode goes on, which keeps memory bounded for the longest allowed episodes. The draws are the same
whatever the block size: arrivals come from their own generator in the order ``(gap, phone)`` per query,
and each query's truth and planner noise from two generators seeded by one per-query seed, the seeds
themselves drawn in order from a third generator. One seed per query keeps common random numbers across
scenarios: changing the decomposition settings changes only the decomposition, never later queries.

With ``workload.source = "trace"`` the arrivals, phones and lengths come from a replayed trace
(:func:`offload_gym.sim.traces.replay`, with the arrival generator), drawn whole at reset, and everything
else about each query from its per-query seed as for synthetic queries.

A compiled core reads the arrays :attr:`EpisodeWorkload.arrival_s` and :attr:`EpisodeWorkload.user` of the
current block directly. With ``compiled=True`` (the compiled core's episodes) synthetic queries are drawn by
:func:`offload_gym.core.workload.draw_block` from the same per-query seeds, the same floats in the compiled
engine's layout (:attr:`EpisodeWorkload.block`); :meth:`EpisodeWorkload.query` then draws a query's objects in
Python only when asked.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from offload_gym.config import PlannerConfig, ScenarioConfig, WorkloadConfig
from offload_gym.sim.planner import Prediction, predict, predict_learned
from offload_gym.sim.seeding import Reseeder, seed_states_many
from offload_gym.sim.traces import TraceSample, load_trace, replay
from offload_gym.sim.workload import QuerySpec, draw_corpus_query, draw_query

__all__ = ["WORKLOAD_BLOCK", "EpisodeWorkload"]

#: queries drawn at a time (a whole default episode at reset)
WORKLOAD_BLOCK = 4096


@functools.lru_cache(maxsize=32)
def _synthetic_params(workload: WorkloadConfig, planner: PlannerConfig) -> Any:
    """:func:`offload_gym.core.workload.synthetic_params`, once per configuration (its arrays are only read)."""
    from offload_gym.core.workload import synthetic_params

    return synthetic_params(workload, planner)


class EpisodeWorkload:
    """Arrival times, phones, truths and predictions of an episode's ``cfg.episode.queries`` queries.

    :param rng_arrivals: the arrival process's generator (gaps and phones).
    :param rng_workload: the generator of the per-query seeds.
    """

    __slots__ = ("_block_start", "_cfg", "_compiled", "_drawn", "_last_arrival_s", "_predictions", "_rng_arrivals",
                 "_rng_workload", "_seeds", "_specs", "_trace", "arrival_s", "block", "n_queries", "user")

    def __init__(self, cfg: ScenarioConfig, rng_arrivals: np.random.Generator, rng_workload: np.random.Generator,
                 compiled: bool = False) -> None:
        """``compiled``: draw synthetic queries with :func:`offload_gym.core.workload.draw_block` (into
        :attr:`block`) where it covers them (not the corpus, not the learned planner)."""
        self._cfg = cfg
        self._compiled = compiled and not cfg.uses_corpus and cfg.planner.kind in ("oracle", "noisy-oracle")
        #: the current block's queries in the compiled engine's layout (``compiled`` only, else ``None``)
        self.block: Any = None
        self._seeds = np.empty(0, dtype=np.int64)
        self._drawn: dict[int, tuple[QuerySpec, Prediction]] = {}
        self._rng_arrivals = rng_arrivals
        self._rng_workload = rng_workload
        self.n_queries = cfg.episode.queries
        self._block_start = 0
        self._last_arrival_s = 0.0
        #: arrival times (s) and phones of the current block's queries
        self.arrival_s = np.empty(0, dtype=np.float64)
        self.user = np.empty(0, dtype=np.int64)
        self._specs: list[QuerySpec] = []
        self._predictions: list[Prediction] = []
        #: the replayed trace (``workload.source`` trace), whole
        self._trace: TraceSample | None = None
        wl = cfg.workload
        if wl.source == "trace":
            self._trace = replay(load_trace(wl.trace), rng_arrivals, n_queries=self.n_queries,
                                 n_users=cfg.topology.n_users, rate_per_user_per_s=wl.arrival_rate,
                                 token_scaling=wl.trace_token_scaling, prompt_median_tok=wl.prompt_tokens_median,
                                 answer_median_tok=wl.answer_tokens_median)
        self._draw_block(0)

    def _draw_block(self, start: int) -> None:
        cfg = self._cfg
        n = min(WORKLOAD_BLOCK, self.n_queries - start)
        rate = cfg.workload.arrival_rate * cfg.topology.n_users
        scale = 1.0 / rate
        exponential, integers = self._rng_arrivals.exponential, self._rng_arrivals.integers
        n_users = cfg.topology.n_users
        trace = self._trace
        if trace is not None:
            self.arrival_s = np.array(trace.arrival_s[start:start + n], dtype=np.float64)
            self.user = np.array(trace.user[start:start + n], dtype=np.int64)
        elif self._compiled:  # the same draws in a compiled loop (offload_gym.core.workload.draw_arrivals)
            from offload_gym.core.workload import draw_arrivals

            self.arrival_s, self.user = draw_arrivals(self._rng_arrivals, n, scale, n_users, self._last_arrival_s)
            if n:
                self._last_arrival_s = float(self.arrival_s[-1])
        else:
            times, users = [], []
            t = self._last_arrival_s
            for _ in range(n):  # gap then phone per query, as the arrival process always drew them
                t = t + float(exponential(scale))
                times.append(t)
                users.append(int(integers(n_users)))
            self._last_arrival_s = t
            self.arrival_s = np.array(times, dtype=np.float64)
            self.user = np.array(users, dtype=np.int64)
        seeds = self._rng_workload.integers(2**63, size=n)
        self._block_start = start
        if self._compiled:
            from offload_gym.core.workload import draw_block

            lengths = (None, None) if trace is None else (trace.prompt_tokens[start:start + n],
                                                          trace.answer_tokens[start:start + n])
            self.block = draw_block(seeds, _synthetic_params(cfg.workload, cfg.planner), *lengths)
            self._seeds = seeds
            self._drawn = {}
            return
        self._specs, self._predictions = self._draw_queries(seeds, start)

    def _draw_queries(self, seeds: np.ndarray, start: int) -> tuple[list[QuerySpec], list[Prediction]]:
        # query i's truth from the stream of default_rng([seeds[i], 0]) and its planner noise from that of
        # default_rng([seeds[i], 1]), both by re-seeding one generator (offload_gym.sim.seeding): the same draws
        cfg = self._cfg
        reseed = Reseeder().reseed
        if cfg.uses_corpus and cfg.planner.kind == "learned":
            ((states, incs),) = seed_states_many(seeds, (0,))
            specs = [draw_corpus_query(cfg.workload, reseed(state, inc)) for state, inc in zip(states, incs, strict=True)]
            # the block's texts at once: sorted by length across the block, the planner's batches pad least
            return specs, predict_learned(specs, cfg.workload, cfg.planner.checkpoint)
        draw = draw_corpus_query if cfg.uses_corpus else draw_query
        trace = self._trace
        workload, planner = cfg.workload, cfg.planner
        (states0, incs0), (states1, incs1) = seed_states_many(seeds, (0, 1))
        specs, predictions = [], []
        for i in range(len(seeds)):
            if trace is not None:
                spec = draw_query(workload, reseed(states0[i], incs0[i]),
                                  prompt_tokens=int(trace.prompt_tokens[start + i]),
                                  answer_tokens=int(trace.answer_tokens[start + i]))
            else:
                spec = draw(workload, reseed(states0[i], incs0[i]))
            specs.append(spec)  # done with the truth's stream before the same generator is re-seeded for the noise
            predictions.append(predict(spec, planner, workload, reseed(states1[i], incs1[i])))
        return specs, predictions

    def _local(self, k: int) -> int:
        if not 0 <= k < self.n_queries:
            raise IndexError(f"query {k} is outside the episode's {self.n_queries} queries")
        if k >= self._block_start + len(self.arrival_s):  # the next block: queries are asked for in order
            self._draw_block(self._block_start + len(self.arrival_s))
        if k < self._block_start:
            raise IndexError(f"query {k} is in a block already dropped (blocks of {WORKLOAD_BLOCK} queries, in order)")
        return k - self._block_start

    def arrival(self, k: int) -> tuple[float, int]:
        """Arrival time (s) and phone of query ``k``."""
        i = self._local(k)
        return float(self.arrival_s[i]), int(self.user[i])

    def query(self, k: int) -> tuple[QuerySpec, Prediction]:
        """Truth and planner prediction of query ``k``."""
        i = self._local(k)
        if self._compiled:  # drawn in compiled code: the objects in Python, on demand, from the same seed
            if i not in self._drawn:
                specs, predictions = self._draw_queries(self._seeds[i:i + 1], self._block_start + i)
                self._drawn[i] = specs[0], predictions[0]
            return self._drawn[i]
        return self._specs[i], self._predictions[i]
