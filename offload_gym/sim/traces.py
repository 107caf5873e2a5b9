"""Trace-driven workload: load a request trace and replay it, scaled to a scenario.

A trace is a CSV file with one request per row and the three columns of the Azure LLM inference traces::

    TIMESTAMP,ContextTokens,GeneratedTokens
    2023-11-16 18:17:03.9799600,4808,10

``TIMESTAMP`` is the arrival time, either a wall-clock time ``YYYY-MM-DD HH:MM:SS`` with an optional fraction of
up to 9 digits (kept at full precision: 100 ns in the Azure files), or a plain number of seconds (for your own
files); every row of a file uses the same form. Times are non-decreasing and only their differences matter: the
loaded arrivals start at 0. ``ContextTokens`` (prompt length) and ``GeneratedTokens`` (output length) are whole
numbers >= 1. Fields are separated by commas and not quoted; LF or CRLF line endings, with or without a newline
after the last row; a file needs at least two rows spanning a positive time.

Shipped traces (``workload.trace``): ``"azure-code"`` (8,819 requests over 57 min, very bursty, inter-arrival CV
about 13) and ``"azure-conv"`` (19,366 requests over 58 min, close to Poisson, CV about 1.1), the Azure LLM
inference traces of 2023 (Patel et al., "Splitwise", ISCA 2024; CC BY 4.0, see
``offload_gym/data/azure_llm_inference_2023/NOTICE.md``). Any other value is read as the path of a CSV file.

Replay rules (:func:`replay`), with N the trace's requests, ``a_0 = 0 <= a_1 <= ... <= a_{N-1}`` its arrivals and
``m = a_{N-1} / (N - 1)`` its mean inter-arrival time:

1. **One time scale.** Every gap of the trace is multiplied by the same factor
   ``time_scale = 1 / (n_users * rate_per_user_per_s * m)``, so the replayed mean rate is
   ``n_users * rate_per_user_per_s`` queries per second over all phones together. A single factor leaves the
   shape of the arrival process unchanged: bursts stay bursts, and the coefficient of variation (CV) of the
   inter-arrival times is the trace's. The trace's mean rate is taken as ``1 / m = (N - 1) / duration`` (gaps per
   second), which differs from rows per duration by a factor ``N / (N - 1)`` (0.01 % for the Azure traces).
2. **Random start, wrapping around.** The replay starts at a row ``k`` drawn uniformly from ``0 .. N-1`` and
   walks the rows in order ``k, k+1, ..., N-1, 0, 1, ...``, as many passes as needed. The first replayed query
   arrives at time 0. Going from the last row back to the first adds one gap of length ``m`` (the trace's mean
   inter-arrival, before scaling), so one full pass of N gaps lasts ``N * m`` trace seconds and has mean gap
   exactly ``m``; with that one extra gap at the mean, the CV of a full pass is the trace's times
   ``sqrt((N - 1) / N)``. Short windows do not reproduce the trace's statistics: in the code trace about 45 idle
   gaps longer than 10 s carry most of the variance, so a window that misses them has a much smaller CV.
3. **Phones.** Each query is assigned to a phone drawn uniformly at random from ``0 .. n_users-1``,
   independently of the others; ``rate_per_user_per_s`` is therefore each phone's mean rate.
4. **Lengths.** ``token_scaling="median"`` multiplies every prompt length by ``prompt_median_tok / median(prompt
   lengths of the trace)`` and every output length by ``answer_median_tok / median(output lengths)``, then rounds
   to the nearest whole token (ties to even, as Python's ``round``) and raises anything below 1 to 1. The shape of
   each length distribution (its spread, skew and the correlation of prompt and output) is kept, and the medians
   over a full pass equal the scenario's up to that rounding. ``token_scaling="none"`` keeps the trace's lengths.
5. **Randomness.** All randomness comes from the ``rng`` passed in, drawn in this order: the start row
   (``rng.integers(N)``), then the phones (``rng.integers(n_users, size=n_queries)``). The same trace, arguments
   and generator state give the same sample.

Arrays returned here (in :class:`Trace` and :class:`TraceSample`) are read-only: loaded shipped traces are
cached and shared, so a caller that wants to change values must copy first.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = ["TOKEN_SCALINGS", "TRACE_COLUMNS", "TRACE_NAMES", "Trace", "TraceError", "TraceSample", "load_trace", "replay"]

#: The header every trace file starts with.
TRACE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
#: Shipped trace names and their files under ``offload_gym/data/azure_llm_inference_2023``.
_SHIPPED = {"azure-code": "code.csv", "azure-conv": "conv.csv"}
TRACE_NAMES = tuple(_SHIPPED)
TOKEN_SCALINGS = ("median", "none")
_DATA_DIR = "data/azure_llm_inference_2023"

_DATETIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,9})?")
_SECONDS_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_COUNT_RE = re.compile(r"\d+")
_DATETIME_ALLOWED = "a wall-clock time YYYY-MM-DD HH:MM:SS with an optional fraction of up to 9 digits"
_SECONDS_ALLOWED = "a number of seconds"
_HEADER = ",".join(TRACE_COLUMNS)


class TraceError(ValueError):
    """A trace file, trace or replay argument that is not allowed.

    For a file, the message names the file, the line (1-based, the header is line 1) and the column (1-based, with
    its name), and says what is allowed; ``file``, ``line`` and ``column`` hold them (``None`` where not known).
    """

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 column: int | None = None) -> None:
        super().__init__(message)
        self.file = file
        self.line = line
        self.column = column


def _readonly(values: np.ndarray) -> np.ndarray:
    values.flags.writeable = False
    return values


@dataclass(frozen=True, eq=False)
class Trace:
    """A loaded trace: arrivals relative to the first request and the two lengths per request.

    The arrays are copied on construction and read-only; ``arrival_s`` starts at 0 and is non-decreasing, the
    lengths are >= 1, and the arrivals span a positive time (at least two requests).
    """

    name: str
    arrival_s: np.ndarray  #: float64 [s], arrival_s[0] == 0
    prompt_tokens: np.ndarray  #: int64 [tok], ContextTokens
    output_tokens: np.ndarray  #: int64 [tok], GeneratedTokens

    def __post_init__(self) -> None:
        arrival = np.array(self.arrival_s, dtype=np.float64)
        arrays = {"arrival_s": arrival}
        for field in ("prompt_tokens", "output_tokens"):
            raw = np.asarray(getattr(self, field))
            if raw.dtype.kind not in "iu":
                raise TraceError(f"Trace.{field}: needs whole token counts (an integer array), got dtype {raw.dtype}")
            arrays[field] = raw.astype(np.int64)
        for field, values in arrays.items():
            if values.ndim != 1:
                raise TraceError(f"Trace.{field}: needs a 1-D array, got shape {values.shape}")
        n = len(arrival)
        for field in ("prompt_tokens", "output_tokens"):
            if len(arrays[field]) != n:
                raise TraceError(f"Trace.{field}: has {len(arrays[field])} entries, arrival_s has {n}; they must match")
            if n and int(arrays[field].min()) < 1:
                raise TraceError(f"Trace.{field}: every length must be >= 1 token, got {int(arrays[field].min())}")
        if n < 2:
            raise TraceError(f"Trace.arrival_s: has {n} arrivals; a trace needs at least 2 to define a rate")
        if not np.all(np.isfinite(arrival)):
            raise TraceError("Trace.arrival_s: every arrival must be finite")
        if arrival[0] != 0.0:
            raise TraceError(f"Trace.arrival_s: must start at 0 (times relative to the first request), got {arrival[0]!r}")
        if np.any(np.diff(arrival) < 0):
            raise TraceError("Trace.arrival_s: must be non-decreasing")
        if arrival[-1] <= 0.0:
            raise TraceError("Trace.arrival_s: all arrivals are at 0; a trace must span a positive time")
        for field, values in arrays.items():
            object.__setattr__(self, field, _readonly(values))

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def duration_s(self) -> float:
        """Last arrival minus first arrival."""
        return float(self.arrival_s[-1])

    @property
    def mean_interarrival_s(self) -> float:
        """Mean gap between consecutive arrivals, ``duration_s / (N - 1)``."""
        return self.duration_s / (len(self) - 1)

    @property
    def mean_rate_per_s(self) -> float:
        """Arrival rate ``1 / mean_interarrival_s = (N - 1) / duration_s`` (rows per duration is ``N / (N-1)`` more)."""
        return 1.0 / self.mean_interarrival_s

    @property
    def interarrival_cv(self) -> float:
        """Coefficient of variation (population std / mean) of the N - 1 gaps between consecutive arrivals."""
        gaps = np.diff(self.arrival_s)
        return float(gaps.std() / gaps.mean())


@dataclass(frozen=True, eq=False)
class TraceSample:
    """The queries of one replay (:func:`replay`), in arrival order; the arrays are read-only."""

    arrival_s: np.ndarray  #: float64 [s], non-decreasing, arrival_s[0] == 0
    user: np.ndarray  #: int64 phone index of each query, in 0 .. n_users-1
    prompt_tokens: np.ndarray  #: int64 [tok]
    answer_tokens: np.ndarray  #: int64 [tok]
    start_row: int  #: the trace row (0-based data row) of the first query
    time_scale: float  #: replayed seconds per trace second
    prompt_scale: float  #: factor applied to the trace's prompt lengths (1.0 for token_scaling="none")
    answer_scale: float  #: factor applied to the trace's output lengths (1.0 for token_scaling="none")

    def __len__(self) -> int:
        return len(self.arrival_s)


# --------------------------------------------------------------------------------------------------- loading


def load_trace(source: str | os.PathLike[str]) -> Trace:
    """Load a shipped trace (``"azure-code"``, ``"azure-conv"``) or a CSV file in the same three columns.

    Shipped traces are parsed once per process and shared (their arrays are read-only). A file that is not
    allowed raises one :class:`TraceError` naming the file, the line and the column.
    """
    key = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
    if not isinstance(key, str):
        raise TraceError(f"workload.trace: needs a shipped trace name ({', '.join(TRACE_NAMES)}) or a file path, "
                         f"got {source!r}")
    if key in _SHIPPED:
        return _load_shipped(key)
    path = Path(key).expanduser()
    if not path.is_file():
        what = "a directory" if path.is_dir() else "not found"
        raise TraceError(f"workload.trace: {key!r} is neither a shipped trace ({', '.join(TRACE_NAMES)}) nor a "
                         f"readable CSV file ({what})", file=key)
    return _parse(path.read_bytes(), file=str(path), name=path.stem)


@lru_cache(maxsize=len(_SHIPPED))
def _load_shipped(name: str) -> Trace:
    resource = resources.files("offload_gym").joinpath(f"{_DATA_DIR}/{_SHIPPED[name]}")
    return _parse(resource.read_bytes(), file=f"{name} ({_DATA_DIR}/{_SHIPPED[name]})", name=name)


def _fail(file: str, line: int, column: int | None, problem: str) -> TraceError:
    if column is None:
        where = f"line {line}"
    elif column <= len(TRACE_COLUMNS):
        where = f"line {line}, column {column} ({TRACE_COLUMNS[column - 1]})"
    else:
        where = f"line {line}, column {column}"
    return TraceError(f"workload.trace: {file}: {where}: {problem}", file=file, line=line, column=column)


def _split_lines(data: bytes, file: str) -> list[str]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise _fail(file, line, None, f"byte {data[exc.start]:#04x} is not text; a trace is an ASCII/UTF-8 CSV file") from None
    lines = [s[:-1] if s.endswith("\r") else s for s in text.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()  # a newline after the last row, or trailing blank lines
    return lines


def _check_fields(fields: list[str], file: str, line: int, what: str) -> None:
    if len(fields) < len(TRACE_COLUMNS):
        raise _fail(file, line, len(fields) + 1, f"{what} has {len(fields)} column{'s' * (len(fields) != 1)}, "
                    f"{len(TRACE_COLUMNS)} are needed: {_HEADER}")
    if len(fields) > len(TRACE_COLUMNS):
        raise _fail(file, line, len(TRACE_COLUMNS) + 1, f"{what} has {len(fields)} columns, only "
                    f"{len(TRACE_COLUMNS)} are allowed: {_HEADER} (no index column, no trailing comma)")


def _parse_count(field: str, file: str, line: int, column: int) -> int:
    if not _COUNT_RE.fullmatch(field):
        raise _fail(file, line, column, f"{field!r} is not a token count; allowed: a whole number >= 1")
    value = int(field)
    if value < 1:
        raise _fail(file, line, column, f"{field!r} tokens; allowed: a whole number >= 1")
    return value


def _timestamp_form(field: str, file: str, line: int) -> bool:
    """True for a wall-clock time, False for seconds, from the first data row."""
    if _DATETIME_RE.fullmatch(field):
        return True
    if _SECONDS_RE.fullmatch(field):
        return False
    raise _fail(file, line, 1, f"{field!r} is not a timestamp; allowed: {_DATETIME_ALLOWED}, or {_SECONDS_ALLOWED} "
                "(every row in the same form)")


def _parse(data: bytes, *, file: str, name: str) -> Trace:
    lines = _split_lines(data, file)
    if not lines:
        raise _fail(file, 1, None, f"the file is empty; it needs the header {_HEADER} and at least two rows")
    header = [f.strip() for f in lines[0].split(",")]
    _check_fields(header, file, 1, "the header")
    for column, (got, want) in enumerate(zip(header, TRACE_COLUMNS, strict=True), start=1):
        if got != want:
            raise _fail(file, 1, column, f"header name {got!r}, expected {want!r}; the header must be {_HEADER}")
    if len(lines) < 3:
        rows = "no data rows" if len(lines) == 1 else "only one data row"
        raise _fail(file, len(lines), None, f"{rows} after the header; a trace needs at least two rows")

    stamps: list[str] = []
    prompts: list[int] = []
    outputs: list[int] = []
    wall_clock = True
    for index in range(1, len(lines)):
        line = index + 1
        if not lines[index].strip():
            raise _fail(file, line, None, f"empty line; every row needs {len(TRACE_COLUMNS)} columns: {_HEADER}")
        fields = [f.strip() for f in lines[index].split(",")]
        _check_fields(fields, file, line, "the row")
        stamp = fields[0]
        if index == 1:
            wall_clock = _timestamp_form(stamp, file, line)
        elif not (_DATETIME_RE if wall_clock else _SECONDS_RE).fullmatch(stamp):
            form = _DATETIME_ALLOWED if wall_clock else _SECONDS_ALLOWED
            raise _fail(file, line, 1, f"{stamp!r} is not a timestamp; allowed: {form}, the form of the first row "
                        "(line 2)")
        stamps.append(stamp)
        prompts.append(_parse_count(fields[1], file, line, 2))
        outputs.append(_parse_count(fields[2], file, line, 3))

    arrival = _wall_clock_s(stamps, file) if wall_clock else _seconds(stamps, file)
    decreasing = np.flatnonzero(np.diff(arrival) < 0)
    if decreasing.size:
        row = int(decreasing[0]) + 1
        raise _fail(file, row + 2, 1, f"{stamps[row]!r} is earlier than the row before ({stamps[row - 1]!r}); "
                    "timestamps must be non-decreasing")
    if arrival[-1] <= arrival[0]:
        raise _fail(file, len(lines), 1, "every timestamp equals the first; a trace must span a positive time")
    return Trace(name=name, arrival_s=arrival - arrival[0], prompt_tokens=np.array(prompts, dtype=np.int64),
                 output_tokens=np.array(outputs, dtype=np.int64))


def _wall_clock_s(stamps: list[str], file: str) -> np.ndarray:
    """Seconds since the first stamp, at full (ns) precision: integer nanoseconds, then one float division."""
    try:
        ns = np.array(stamps, dtype="datetime64[ns]").astype(np.int64)
    except ValueError:
        for index, stamp in enumerate(stamps):
            try:
                np.datetime64(stamp, "ns")
            except ValueError as exc:
                raise _fail(file, index + 2, 1, f"{stamp!r} is not a valid time ({exc}); allowed: "
                            f"{_DATETIME_ALLOWED}") from None
        raise
    return (ns - ns[0]).astype(np.float64) / 1e9


def _seconds(stamps: list[str], file: str) -> np.ndarray:
    seconds = np.array([float(s) for s in stamps], dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(seconds))
    if bad.size:
        raise _fail(file, int(bad[0]) + 2, 1, f"{stamps[int(bad[0])]!r} seconds is out of range; allowed: a finite "
                    "number of seconds")
    return seconds


# --------------------------------------------------------------------------------------------------- replay


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise TraceError(f"replay: {name} must be a whole number >= 1, got {value!r}")
    return int(value)


def _finite_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise TraceError(f"replay: {name} must be a finite number, got {value!r}")
    return float(value)


def replay(trace: Trace, rng: np.random.Generator, *, n_queries: int, n_users: int, rate_per_user_per_s: float,
           token_scaling: str, prompt_median_tok: float | None = None,
           answer_median_tok: float | None = None) -> TraceSample:
    """Replay ``n_queries`` queries of ``trace`` for ``n_users`` phones, scaled as the module docstring says.

    :param trace: a loaded trace (:func:`load_trace`)
    :param rng: the only source of randomness (start row, then phones)
    :param n_queries: queries to replay (>= 1); more than the trace holds wraps around
    :param n_users: phones the queries are spread over (>= 1)
    :param rate_per_user_per_s: mean query rate of each phone [1/s] (> 0); the total rate is ``n_users`` times it
    :param token_scaling: ``"median"`` (scale lengths so the trace's medians become the two medians below) or
        ``"none"`` (the trace's own lengths)
    :param prompt_median_tok: target prompt-length median [tok] (>= 1), needed for ``"median"``
    :param answer_median_tok: target answer-length median [tok] (>= 1), needed for ``"median"``
    """
    if not isinstance(trace, Trace):
        raise TypeError(f"replay: trace must be a Trace (from load_trace), got {type(trace).__name__}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"replay: rng must be a numpy.random.Generator, got {type(rng).__name__}")
    n_queries = _positive_int("n_queries", n_queries)
    n_users = _positive_int("n_users", n_users)
    rate = _finite_number("rate_per_user_per_s", rate_per_user_per_s)
    if rate <= 0.0:
        raise TraceError(f"replay: rate_per_user_per_s must be > 0 queries per second, got {rate_per_user_per_s!r}")
    if token_scaling not in TOKEN_SCALINGS:
        raise TraceError(f"replay: token_scaling {token_scaling!r} is not allowed; choose one of "
                         f"{', '.join(TOKEN_SCALINGS)}")
    prompt_scale = answer_scale = 1.0
    if token_scaling == "median":
        medians = []
        for arg, value in (("prompt_median_tok", prompt_median_tok), ("answer_median_tok", answer_median_tok)):
            if value is None:
                raise TraceError(f"replay: token_scaling 'median' needs {arg} (the scenario's median, >= 1 token)")
            median = _finite_number(arg, value)
            if median < 1.0:
                raise TraceError(f"replay: {arg} must be >= 1 token, got {value!r}")
            medians.append(median)
        prompt_scale = medians[0] / float(np.median(trace.prompt_tokens))
        answer_scale = medians[1] / float(np.median(trace.output_tokens))

    n_rows = len(trace)
    start_row = int(rng.integers(n_rows))
    user = rng.integers(n_users, size=n_queries, dtype=np.int64)

    mean_gap_s = trace.mean_interarrival_s
    time_scale = 1.0 / (n_users * rate * mean_gap_s)
    position = start_row + np.arange(n_queries, dtype=np.int64)
    passes, row = np.divmod(position, n_rows)
    pass_s = trace.duration_s + mean_gap_s  # one pass of the trace plus the wrap gap
    arrival = time_scale * ((passes * pass_s + trace.arrival_s[row]) - trace.arrival_s[start_row])

    prompts = trace.prompt_tokens[row]
    answers = trace.output_tokens[row]
    if token_scaling == "median":
        prompts = np.maximum(1, np.rint(prompts * prompt_scale)).astype(np.int64)
        answers = np.maximum(1, np.rint(answers * answer_scale)).astype(np.int64)
    return TraceSample(
        arrival_s=_readonly(arrival), user=_readonly(user), prompt_tokens=_readonly(np.array(prompts, dtype=np.int64)),
        answer_tokens=_readonly(np.array(answers, dtype=np.int64)), start_row=start_row, time_scale=time_scale,
        prompt_scale=prompt_scale, answer_scale=answer_scale,
    )
