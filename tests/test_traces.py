"""Trace loading and replay (offload_gym.sim.traces): the shipped Azure traces, scaling rules, bad files."""

from __future__ import annotations

import hashlib
from importlib import resources

import numpy as np
import pytest

from offload_gym.sim.traces import TRACE_NAMES, Trace, TraceError, TraceSample, load_trace, replay

# Row counts and statistics from ../shared/data/azure_llm_inference_2023/README.md.
README = {
    "azure-code": {"rows": 8819, "rate": 2.567, "cv": 13.15, "prompt_p50": 1469, "output_p50": 13},
    "azure-conv": {"rows": 19366, "rate": 5.530, "cv": 1.094, "prompt_p50": 1020, "output_p50": 129},
}
SHA256 = {
    "code.csv": "54e9a6d2a4bd06ba1e060304b900abbc74cbea53de96506e60fe5bb4f2277fb6",
    "conv.csv": "2f1e5b666d4e3055fdbba98598ce2ec307767b9064e03e2fa46676dbcc7d0bf8",
}
HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens"


def _replay(trace: Trace, seed: int, **overrides: object) -> TraceSample:
    kwargs: dict[str, object] = {"n_queries": len(trace) + 1, "n_users": 20, "rate_per_user_per_s": 0.2,
                                 "token_scaling": "median", "prompt_median_tok": 150.0, "answer_median_tok": 45.0}
    kwargs.update(overrides)
    return replay(trace, np.random.default_rng(seed), **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- shipped traces


@pytest.mark.parametrize("file", sorted(SHA256))
def test_shipped_files_are_byte_exact(file: str) -> None:
    data = resources.files("offload_gym").joinpath(f"data/azure_llm_inference_2023/{file}").read_bytes()
    assert hashlib.sha256(data).hexdigest() == SHA256[file]
    assert data.count(b"\r\n") == data.count(b"\n") and not data.endswith(b"\n")  # CRLF, no final newline


@pytest.mark.parametrize("name", TRACE_NAMES)
def test_shipped_trace_matches_readme(name: str) -> None:
    trace, ref = load_trace(name), README[name]
    assert trace.name == name
    assert len(trace) == ref["rows"]
    assert trace.arrival_s.dtype == np.float64 and trace.prompt_tokens.dtype == np.int64
    assert trace.output_tokens.dtype == np.int64
    assert trace.arrival_s[0] == 0.0 and np.all(np.diff(trace.arrival_s) >= 0)
    assert trace.mean_rate_per_s == pytest.approx(ref["rate"], rel=5e-3)
    assert trace.interarrival_cv == pytest.approx(ref["cv"], rel=5e-3)
    assert np.median(trace.prompt_tokens) == ref["prompt_p50"]
    assert np.median(trace.output_tokens) == ref["output_p50"]


def test_timestamps_keep_100ns_precision() -> None:
    # code.csv rows 1 and 2: 18:17:03.9799600 and 18:17:04.0107290 (float seconds of a wall clock would lose digits)
    trace = load_trace("azure-code")
    first = resources.files("offload_gym").joinpath("data/azure_llm_inference_2023/code.csv").read_text().split("\n")
    t0, t1 = (np.datetime64(r.split(",")[0].replace(" ", "T"), "ns") for r in first[1:3])
    assert trace.arrival_s[1] == pytest.approx(float((t1 - t0).astype(np.int64)) / 1e9, abs=1e-12)
    assert trace.duration_s == pytest.approx(3435.948056, abs=1e-9)  # 19:14:19.9280160 - 18:17:03.9799600


def test_shipped_traces_are_cached_and_read_only() -> None:
    trace = load_trace("azure-code")
    assert load_trace("azure-code") is trace
    for values in (trace.arrival_s, trace.prompt_tokens, trace.output_tokens):
        with pytest.raises(ValueError, match="read-only"):
            values[0] = 1


# ---------------------------------------------------------------------------------------------------- replay


@pytest.mark.parametrize("name", TRACE_NAMES)
@pytest.mark.parametrize("seed", [0, 7])
def test_replay_reproduces_interarrival_statistics(name: str, seed: int) -> None:
    # A window of N + 1 queries holds N gaps: every gap of the trace once plus the wrap gap, whatever the start.
    # Anything shorter can miss gaps, and in the code trace ~45 idle gaps over 10 s carry most of the variance,
    # so a shorter window's CV is not the trace's.
    trace = load_trace(name)
    target_rate = 20 * 0.2
    sample = _replay(trace, seed)
    gaps = np.diff(sample.arrival_s)
    assert gaps.mean() == pytest.approx(1.0 / target_rate, rel=0.02)
    assert gaps.std() / gaps.mean() == pytest.approx(trace.interarrival_cv, rel=0.02)
    assert sample.arrival_s[0] == 0.0 and np.all(gaps >= 0)


def test_short_window_of_bursty_trace_misses_its_cv() -> None:
    # Why the test above needs a full pass: 500 queries of the code trace are far from its CV for most starts.
    trace = load_trace("azure-code")
    cvs = []
    for seed in range(10):
        gaps = np.diff(_replay(trace, seed, n_queries=500).arrival_s)
        cvs.append(gaps.std() / gaps.mean())
    assert sum(abs(cv / trace.interarrival_cv - 1) > 0.02 for cv in cvs) >= 5


def test_replay_scales_time_by_one_factor_and_wraps_with_the_mean_gap() -> None:
    trace = load_trace("azure-conv")
    n = len(trace)
    sample = _replay(trace, 3, n_queries=2 * n + 5, n_users=4, rate_per_user_per_s=1.5)
    assert sample.time_scale == pytest.approx(1.0 / (4 * 1.5 * trace.mean_interarrival_s))
    k = sample.start_row
    gaps = np.diff(sample.arrival_s)
    trace_gaps = np.append(np.diff(trace.arrival_s), trace.mean_interarrival_s)  # gap after row r, wrap last
    expected = np.roll(trace_gaps, -k)
    np.testing.assert_allclose(gaps[:n], sample.time_scale * expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(gaps[n:2 * n], gaps[:n], rtol=1e-9, atol=1e-9)  # the second pass repeats the first
    assert sample.arrival_s[n] == pytest.approx(n * trace.mean_interarrival_s * sample.time_scale)


def test_offsets_differ_across_seeds_and_a_seed_repeats() -> None:
    trace = load_trace("azure-conv")
    starts = {_replay(trace, seed, n_queries=50).start_row for seed in range(10)}
    assert len(starts) >= 8
    a, b = _replay(trace, 42, n_queries=300), _replay(trace, 42, n_queries=300)
    for field in ("arrival_s", "user", "prompt_tokens", "answer_tokens"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert a.start_row == b.start_row
    c = _replay(trace, 43, n_queries=300)
    assert c.start_row != a.start_row or not np.array_equal(c.user, a.user)


def test_phone_assignment_covers_all_phones_uniformly() -> None:
    trace = load_trace("azure-conv")
    sample = _replay(trace, 5, n_queries=4000, n_users=20)
    assert sample.user.dtype == np.int64
    counts = np.bincount(sample.user, minlength=20)
    assert len(counts) == 20 and counts.min() > 0
    assert counts.min() > 0.6 * 200 and counts.max() < 1.4 * 200  # 200 expected per phone, sd ~14


@pytest.mark.parametrize("name", TRACE_NAMES)
def test_median_token_scaling_hits_the_targets(name: str) -> None:
    trace = load_trace(name)
    sample = _replay(trace, 11, n_queries=len(trace), prompt_median_tok=150.0, answer_median_tok=45.0)
    assert np.median(sample.prompt_tokens) == pytest.approx(150.0, abs=0.5)
    assert np.median(sample.answer_tokens) == pytest.approx(45.0, abs=0.5)
    assert sample.prompt_tokens.min() >= 1 and sample.answer_tokens.min() >= 1
    # the shape is kept: the spread (p90 / p10) of the scaled lengths is the trace's, up to rounding
    p10, p90 = np.percentile(sample.answer_tokens, [10, 90])
    t10, t90 = np.percentile(trace.output_tokens, [10, 90])
    assert p90 / p10 == pytest.approx(t90 / t10, rel=0.1)


def test_no_token_scaling_keeps_the_trace_lengths() -> None:
    trace = load_trace("azure-code")
    sample = _replay(trace, 2, n_queries=100, token_scaling="none", prompt_median_tok=None, answer_median_tok=None)
    rows = (sample.start_row + np.arange(100)) % len(trace)
    np.testing.assert_array_equal(sample.prompt_tokens, trace.prompt_tokens[rows])
    np.testing.assert_array_equal(sample.answer_tokens, trace.output_tokens[rows])
    assert sample.prompt_scale == sample.answer_scale == 1.0


@pytest.mark.parametrize(("overrides", "match"), [
    ({"n_queries": 0}, "n_queries must be a whole number >= 1"),
    ({"n_queries": 2.5}, "n_queries"),
    ({"n_users": True}, "n_users"),
    ({"rate_per_user_per_s": 0.0}, "rate_per_user_per_s must be > 0"),
    ({"rate_per_user_per_s": float("nan")}, "rate_per_user_per_s must be a finite number"),
    ({"token_scaling": "mean"}, "token_scaling 'mean' is not allowed; choose one of median, none"),
    ({"prompt_median_tok": None}, "needs prompt_median_tok"),
    ({"answer_median_tok": 0.5}, "answer_median_tok must be >= 1"),
])
def test_replay_rejects_bad_arguments(overrides: dict[str, object], match: str) -> None:
    with pytest.raises(TraceError, match=match):
        _replay(load_trace("azure-conv"), 0, **overrides)


def test_replay_needs_a_generator() -> None:
    with pytest.raises(TypeError, match=r"numpy\.random\.Generator"):
        replay(load_trace("azure-conv"), 0, n_queries=1, n_users=1, rate_per_user_per_s=1.0,  # type: ignore[arg-type]
               token_scaling="none")


# ---------------------------------------------------------------------------------------------- user files


def test_user_csv_with_seconds_and_lf_loads(tmp_path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text(f"{HEADER}\n10.5,100,20\n11.0,50,5\n13.5,70,9\n")
    trace = load_trace(str(path))
    assert trace.name == "mine"
    np.testing.assert_allclose(trace.arrival_s, [0.0, 0.5, 3.0])
    np.testing.assert_array_equal(trace.prompt_tokens, [100, 50, 70])
    np.testing.assert_array_equal(trace.output_tokens, [20, 5, 9])
    assert load_trace(path).duration_s == 3.0  # a Path works too


GOOD = "2023-11-16 18:17:03.9799600,4808,10"
BAD_FILES = [
    # (content, line, column, words the message must contain)
    ("", 1, None, "empty"),
    (f"{HEADER}\r\n", 1, None, "no data rows"),
    (f"{HEADER}\n{GOOD}\n", 2, None, "only one data row"),
    (f"TIMESTAMP,ContextTokens\n{GOOD}\n{GOOD}\n", 1, 3, "2 columns, 3 are needed"),
    (f"TIMESTAMP,PromptTokens,GeneratedTokens\n{GOOD}\n{GOOD}\n", 1, 2, "expected 'ContextTokens'"),
    (f"{HEADER}\n{GOOD}\n2023-11-16 18:17:04.1,4808\n", 3, 3, "2 columns, 3 are needed"),
    (f"{HEADER}\n{GOOD}\n{GOOD},7\n", 3, 4, "4 columns, only 3 are allowed"),
    (f"{HEADER}\n{GOOD}\n2023-11-16 18:17:04.1,many,10\n", 3, 2, "whole number >= 1"),
    (f"{HEADER}\n{GOOD}\n2023-11-16 18:17:04.1,12.5,10\n", 3, 2, "whole number >= 1"),
    (f"{HEADER}\n{GOOD}\n2023-11-16 18:17:04.1,12,-3\n", 3, 3, "whole number >= 1"),
    (f"{HEADER}\n{GOOD}\n2023-11-16 18:17:04.1,12,0\n", 3, 3, "whole number >= 1"),
    (f"{HEADER}\n{GOOD}\nyesterday,12,3\n", 3, 1, "not a timestamp"),
    (f"{HEADER}\nsoon,12,3\n{GOOD}\n", 2, 1, "not a timestamp"),
    (f"{HEADER}\n{GOOD}\n2023-13-16 18:17:04.1,12,3\n", 3, 1, "not a valid time"),
    (f"{HEADER}\n1.0,12,3\n{GOOD}\n", 3, 1, "number of seconds"),
    (f"{HEADER}\n{GOOD}\n2023-11-16 18:17:04.1,12,3\n2023-11-16 18:17:03.5,12,3\n", 4, 1, "non-decreasing"),
    (f"{HEADER}\n5,1,1\n5,1,1\n", 3, 1, "positive time"),
    (f"{HEADER}\n1,1,1\n\n2,1,1\n", 3, None, "empty line"),
    (f"{HEADER}\n1,1,1\n2,1,1\ninf,1,1\n", 4, 1, "not a timestamp"),
    (f"{HEADER}\n1,1,1\n2,1,1\n1e999,1,1\n", 4, 1, "finite number of seconds"),
]


@pytest.mark.parametrize(("content", "line", "column", "words"), BAD_FILES)
def test_bad_file_gives_one_error_naming_line_and_column(tmp_path, content: str, line: int, column: int | None,
                                                          words: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content.encode())
    with pytest.raises(TraceError) as caught:
        load_trace(str(path))
    err = caught.value
    message = str(err)
    assert isinstance(err, ValueError)
    assert message.startswith(f"workload.trace: {path}: line {line}")
    assert (err.file, err.line, err.column) == (str(path), line, column)
    if column is not None:
        assert f"line {line}, column {column}" in message
    assert words in message


def test_bad_header_names_what_is_allowed(tmp_path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(f"time,ContextTokens,GeneratedTokens\n{GOOD}\n{GOOD}\n")
    with pytest.raises(TraceError, match=r"line 1, column 1 \(TIMESTAMP\): header name 'time', expected 'TIMESTAMP'; "
                                         r"the header must be TIMESTAMP,ContextTokens,GeneratedTokens"):
        load_trace(str(path))


def test_binary_file_names_the_line(tmp_path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(f"{HEADER}\n1,1,1\n".encode() + b"\xff\xfe,1,1\n")
    with pytest.raises(TraceError, match=r"line 3: byte 0xff is not text"):
        load_trace(str(path))


def test_missing_file_names_the_argument_and_the_shipped_traces(tmp_path) -> None:
    with pytest.raises(TraceError, match=r"workload.trace: 'azure-cod' is neither a shipped trace \(azure-code, "
                                         r"azure-conv\) nor a readable CSV file \(not found\)"):
        load_trace("azure-cod")
    with pytest.raises(TraceError, match=r"\(a directory\)"):
        load_trace(str(tmp_path))
    with pytest.raises(TraceError, match="needs a shipped trace name"):
        load_trace(3)  # type: ignore[arg-type]


def test_trace_validates_and_copies_its_arrays() -> None:
    arrival = np.array([0.0, 1.0, 1.0, 4.0])
    trace = Trace("t", arrival, np.array([1, 2, 3, 4]), np.array([5, 6, 7, 8]))
    arrival[1] = 9.0
    assert trace.arrival_s[1] == 1.0 and not trace.arrival_s.flags.writeable
    assert trace.mean_interarrival_s == pytest.approx(4.0 / 3)
    assert trace.interarrival_cv == pytest.approx(np.std([1.0, 0.0, 3.0]) / (4.0 / 3))
    with pytest.raises(TraceError, match="must start at 0"):
        Trace("t", np.array([1.0, 2.0]), np.array([1, 1]), np.array([1, 1]))
    with pytest.raises(TraceError, match="non-decreasing"):
        Trace("t", np.array([0.0, 2.0, 1.0]), np.array([1, 1, 1]), np.array([1, 1, 1]))
    with pytest.raises(TraceError, match=r"Trace\.output_tokens: every length must be >= 1"):
        Trace("t", np.array([0.0, 2.0]), np.array([1, 1]), np.array([1, 0]))
    with pytest.raises(TraceError, match=r"Trace\.prompt_tokens: has 1 entries"):
        Trace("t", np.array([0.0, 2.0]), np.array([1]), np.array([1, 1]))
