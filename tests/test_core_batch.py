"""The compiled batch projection (offload_gym.core.batch) against the Python estimator's that it replaced, float for
float (``==``): that projection's results on the fuzzed and long-queue inputs of this file's earlier tests are
recorded in ``tests/data/python_batch_projections.json.gz`` (438 cases, recorded at commit 26b61a0; plain float
arithmetic, so they hold on every platform). The edge form (a snapshot plus new streams) is checked against the
projection of the concatenated FIFO, and the heaps and the sort against Python's."""

from __future__ import annotations

import gzip
import heapq
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_gym.core import batch as core_batch
from offload_gym.sim import physics

RECORDING = Path(__file__).parent / "data" / "python_batch_projections.json.gz"

Prefilling = list[tuple[float, float]]
Pending = list[tuple[float, float, float]]
Case = tuple[float, float, float, int, Prefilling, list[float], Pending, int]

NOWS = (0.0, 1.5, 123.25, 1e6, 3.3e7, 1e9)  # from 1e6 on, a clock step is large next to a token's time
R1S = (78.0, 9.0, 175.0, 1e-307)  # the last: decode times overflow to inf
KAPPAS = (0.0, 0.05, 0.3, 1.0)
#: ready and prefill-end times relative to now, few enough that equal times are common; inf: never ready
OFFSETS = (-1.0, 0.0, 0.0, 0.25, 0.5, 0.5, 1.0, 2.0)
READY_OFFSETS = (*OFFSETS, math.inf)
PREFILLS = (0.0, 0.25, 0.5, 1.0 / 3.0)
TOKENS = (0.0, 1e-10, 1.0, 1.0, 3.5, 40.0, 40.0, 200.0)


def arrays(prefilling: Prefilling, decoding: list[float], pending: Pending) -> tuple[np.ndarray, ...]:
    """The kernel's six float64 arrays of python stream lists."""
    def col(rows: list[Any], k: int) -> np.ndarray:
        return np.array([r[k] for r in rows], dtype=np.float64)
    return (col(prefilling, 0), col(prefilling, 1), np.array(decoding, dtype=np.float64), col(pending, 0),
            col(pending, 1), col(pending, 2))


def compiled(now: float, r1: float, kappa: float, max_batch: int, prefilling: Prefilling, decoding: list[float],
             pending: Pending, target: int) -> float:
    return core_batch.project_batch_finish_arrays(now, r1, kappa, max_batch, *arrays(prefilling, decoding, pending),
                                                  target)


@st.composite
def streams(draw: st.DrawFn, now: float, min_pending: int = 1) -> tuple[Prefilling, list[float], Pending]:
    """Prefilling, decoding and pending streams with times drawn from a small set around ``now``."""
    off, tok = st.sampled_from(OFFSETS), st.sampled_from(TOKENS)
    prefilling = [(now + o, d) for o, d in draw(st.lists(st.tuples(off, tok), max_size=4))]
    decoding = draw(st.lists(tok, max_size=5))
    pending = [(now + o, p, d) for o, p, d in draw(st.lists(
        st.tuples(st.sampled_from(READY_OFFSETS), st.sampled_from(PREFILLS), tok), min_size=min_pending, max_size=10))]
    return prefilling, decoding, pending


@st.composite
def cases(draw: st.DrawFn) -> Case:
    now = draw(st.sampled_from(NOWS))
    r1, kappa = draw(st.sampled_from(R1S)), draw(st.sampled_from(KAPPAS))
    max_batch = draw(st.integers(1, 8))
    prefilling, decoding, pending = draw(streams(now))
    target = draw(st.integers(0, len(pending) - 1))
    return now, r1, kappa, max_batch, prefilling, decoding, pending, target


def test_constants_and_rates_are_the_python_ones() -> None:
    assert core_batch.EPS_TOKENS == 1e-9  # the Python estimator's
    for r1 in (78.0, 9.0, 1e-307):
        for kappa in KAPPAS:
            table = physics.decode_rate_table(r1, kappa, 40)
            assert list(core_batch.decode_rate_table(r1, kappa, 40)) == table
            # what the projections compute where they need a rate, entry by entry
            assert [core_batch._decode_rate(r1, kappa, b) for b in range(41)] == table


def _heap_ops(arity: int) -> tuple[Any, Any, Any]:
    """push(arrays, n, item), pop(arrays, n) and heapify(arrays, n) of the kernel's heaps of ``arity`` fields."""
    b = core_batch
    push, pop, heapify = {1: (b._push1, b._pop1, b._heapify1), 2: (b._push2, b._pop2, b._heapify2),
                          3: (b._push3, b._pop3, b._heapify3)}[arity]
    return (lambda a, n, item: push(*a, n, *item)), (lambda a, n: pop(*a, n)), (lambda a, n: heapify(*a, n))


def _as_tuples(a: list[np.ndarray], n: int) -> list[tuple[float, ...]]:
    return [tuple(float(col[i]) for col in a) for i in range(n)]


@pytest.mark.parametrize("arity", [1, 2, 3])
def test_heap_is_heapq(arity: int) -> None:
    """Pushes and pops of tuples with many ties (-0.0 and 0.0 among them): the same array as heapq's after every
    step, so equal keys pop in heapq's order."""
    push, pop, heapify = _heap_ops(arity)
    rng = np.random.default_rng(arity)
    values = (-0.0, 0.0, 1.0, 2.0, 3.0)
    for _ in range(20):
        size = 200
        a = [np.empty(size) for _ in range(arity)]
        ref: list[tuple[float, ...]] = []
        n = 0
        for _ in range(size):
            if n and rng.random() < 0.4:
                top = _as_tuples(a, 1)[0]
                assert top == heapq.heappop(ref)
                n = pop(a, n)
            else:
                item = tuple(float(rng.choice(values)) for _ in range(arity))
                n = push(a, n, item)
                heapq.heappush(ref, item)
            got = _as_tuples(a, n)
            assert got == ref
            assert [math.copysign(1.0, x[0]) for x in got] == [math.copysign(1.0, x[0]) for x in ref]
        data = [tuple(float(rng.choice(values)) for _ in range(arity)) for _ in range(int(rng.integers(0, 60)))]
        a = [np.array([d[c] for d in data], dtype=np.float64) for c in range(arity)]
        heapify(a, len(data))
        heapq.heapify(data)
        assert _as_tuples(a, len(data)) == data


def test_sort_is_pythons_stable_sort() -> None:
    """The events' merge sort gives the order of ``sorted`` on tuples (stable: -0.0 and 0.0 keep their order)."""
    rng = np.random.default_rng(1)
    for n in (0, 1, 5, 16, 17, 33, 100, 257):
        t = rng.choice([-0.0, 0.0, 1.0, 2.0], size=n)
        kind = rng.choice([0.0, 1.0], size=n)
        dec = rng.choice([-0.0, 0.0, 1.0], size=n)
        tgt = rng.choice([0.0, 1.0], size=n)
        order = core_batch._stable_order(t, kind, dec, tgt, n, np.empty(2 * n, dtype=np.int64))
        want = sorted(range(n), key=lambda i: (t[i], kind[i], dec[i], tgt[i]))
        assert list(order) == want


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # numpy scalars under NUMBA_DISABLE_JIT
def test_the_projection_gives_the_python_estimators_recorded_results() -> None:
    """438 states: 400 fuzzed ones (both paths, every kind of stream list empty and not, finite and inf results,
    clocks up to 1e9 s), a stall at 1e17 s, and 200 pending streams behind a batch of 8 and roomy batches of up to
    60 streams."""
    with gzip.open(RECORDING, "rt") as f:
        recorded = json.load(f)["cases"]
    assert len(recorded) == 438
    seen: Counter[str] = Counter()
    for now, r1, kappa, max_batch, prefilling, decoding, pending, target, want in recorded:
        prefilling = [tuple(p) for p in prefilling]
        pending = [tuple(p) for p in pending]
        got = compiled(now, r1, kappa, max_batch, prefilling, decoding, pending, target)
        assert got == want, (now, r1, kappa, max_batch, prefilling, decoding, pending, target)
        roomy = len(prefilling) + len(decoding) + len(pending) <= max_batch
        seen["roomy" if roomy else "general"] += 1
        seen["inf" if want == math.inf else "finite"] += 1
        seen[f"large-now-finite-{'roomy' if roomy else 'general'}"] += now >= 1e6 and math.isfinite(want)
        seen["prefilling"] += bool(prefilling)
        seen["decoding"] += bool(decoding)
        seen["no-prefilling"] += not prefilling
        seen["no-decoding"] += not decoding
        seen["kappa=1"] += kappa == 1.0
        seen["ready-before-now"] += any(p[0] < now for p in pending)
        seen["ready-after-now"] += any(p[0] > now for p in pending)
        seen["tied-ready"] += len({p[0] for p in pending}) < len(pending)
        seen["long-queue"] += len(pending) >= 100
        seen["huge-now"] += now >= 1e17
    for key in ("roomy", "general", "large-now-finite-roomy", "large-now-finite-general", "prefilling",
                "no-prefilling", "decoding", "no-decoding", "kappa=1", "ready-before-now", "ready-after-now", "tied-ready"):
        assert seen[key] >= 30, (key, seen)
    assert seen["inf"] >= 10 and seen["finite"] >= 200 and seen["long-queue"] >= 24 and seen["huge-now"] >= 2, seen


@pytest.mark.parametrize("max_batch", [8, 1])
def test_a_stall_at_huge_times_terminates_near_the_clock(max_batch: int) -> None:
    """1e17 s: one clock step is 16 s, the decoding stream's 5 tokens take no time (tests/test_reliability.py)."""
    got = compiled(1e17, 78.0, 0.05, max_batch, [], [5.0], [(1e17, 0.01, 40.0)], 0)
    assert math.isfinite(got) and 1e17 <= got <= 1e17 + 4 * math.ulp(1e17)


@st.composite
def edge_cases(draw: st.DrawFn) -> tuple[Case, Pending]:
    now, r1, kappa, max_batch, prefilling, decoding, pending, _ = draw(cases())
    pending = pending[:draw(st.integers(0, len(pending)))]  # the snapshot's own may be none
    extra = draw(streams(now, 0))[2][:3]
    return (now, r1, kappa, max_batch, prefilling, decoding, pending, 0), extra


def edge_compiled(now: float, r1: float, kappa: float, max_batch: int, prefilling: Prefilling, decoding: list[float],
                  pending: Pending, extra: Pending, new: tuple[float, float, float]) -> float:
    ex = arrays([], [], extra)[3:]
    return core_batch.edge_finish_arrays(now, r1, kappa, max_batch, *arrays(prefilling, decoding, pending), *ex, *new)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # numpy scalars under NUMBA_DISABLE_JIT
def test_fuzzed_edge_finish_equals_the_concatenated_projection() -> None:
    """The estimates' edge form (the edge's snapshot, the plan's extra streams, the new one) is the projection of
    the concatenated FIFO with the new stream the target."""
    seen: Counter[str] = Counter()

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(edge_cases(), st.sampled_from(READY_OFFSETS), st.sampled_from(PREFILLS), st.sampled_from(TOKENS))
    def check(case: tuple[Case, Pending], ready_off: float, prefill_s: float, tokens: float) -> None:
        (now, r1, kappa, max_batch, prefilling, decoding, pending, _), extra = case
        new = (now + ready_off, prefill_s, tokens)
        items = [*pending, *extra, new]
        want = compiled(now, r1, kappa, max_batch, prefilling, decoding, items, len(items) - 1)
        assert edge_compiled(now, r1, kappa, max_batch, prefilling, decoding, pending, extra, new) == want
        seen["roomy" if len(prefilling) + len(decoding) + len(items) <= max_batch else "general"] += 1
        seen["extra"] += bool(extra)
        seen["no-pending"] += not pending

    check()
    assert min(seen["roomy"], seen["general"], seen["extra"], seen["no-pending"]) >= 20, seen
