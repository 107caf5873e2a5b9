"""Paper-style table of teacher vs distilled student: size, CPU latency, and accuracy on the test split.

Usage: ``python -m offload_gym.planner.report [--teacher PATH] [--student PATH] [--markdown]``. Defaults to the
shipped assets; the test split is regenerated from the corpus seed and sizes recorded in ``planner.json``
beside the student checkpoint. The last lines give the noisy-oracle settings (``planner.length_noise_sigma``,
``planner.difficulty_noise_sigma``) that reproduce the student's errors.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from offload_gym.planner.corpus import make_splits
from offload_gym.planner.learned import ASSETS_DIR, LearnedPlanner, resolve_checkpoint
from offload_gym.planner.metrics import latency_ms, planner_metrics

SUMMARY_FILE: str = "planner.json"

# (label, metric key, format); keys are looked up in the row dicts built by ``evaluate``.
ROWS: tuple[tuple[str, str, str], ...] = (
    ("parameters", "parameters", "{:,.0f}"),
    ("CPU latency, batch 1 (median ms)", "latency_median_ms", "{:.2f}"),
    ("subtask-count accuracy", "count_accuracy", "{:.1%}"),
    ("subtask count within +-1", "count_within_1", "{:.1%}"),
    ("structure accuracy (K >= 2)", "structure_accuracy_k_ge_2", "{:.1%}"),
    ("difficulty RMSE, monolithic", "difficulty_rmse", "{:.3f}"),
    ("difficulty RMSE, per subtask", "subtask_difficulty_rmse", "{:.3f}"),
    ("answer length MAE (tokens)", "answer_tokens_mae", "{:.1f}"),
    ("answer length within 25 %", "answer_within_25pct", "{:.1%}"),
    ("subtask length MAE (tokens)", "subtask_tokens_mae", "{:.1f}"),
    ("subtask length within 25 %", "subtask_within_25pct", "{:.1%}"),
    ("std log(pred/true), lengths", "length_noise_sigma", "{:.3f}"),
    ("std (pred - true), difficulty", "difficulty_noise_sigma", "{:.3f}"),
)


def evaluate(planner: LearnedPlanner, test_texts: list[str], queries: list[Any], n_calls: int) -> dict[str, float]:
    """Parameters, batch-1 latency and test metrics of one planner, as a flat dict."""
    row: dict[str, float] = {"parameters": float(planner.num_parameters)}
    row["latency_median_ms"] = latency_ms(planner, test_texts, n_calls=n_calls)["median_ms"]
    row.update(planner_metrics(planner.predict_arrays(test_texts), queries))
    return row


def format_table(columns: dict[str, dict[str, float]], markdown: bool) -> str:
    """Render rows x columns as Markdown or aligned plain text; missing values show as ``n/a``."""
    names = list(columns)
    cells = [
        [label, *[fmt.format(columns[n][key]) if key in columns[n] else "n/a" for n in names]]
        for label, key, fmt in ROWS
    ]
    header = ["metric", *names]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * len(names)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in cells]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header, *cells]) for i in range(len(header))]
    fmt_row = lambda r: "  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r))  # noqa: E731
    return "\n".join([fmt_row(header), "  ".join("-" * w for w in widths), *(fmt_row(r) for r in cells)])


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m offload_gym.planner.report", description=__doc__.splitlines()[0])
    p.add_argument("--student", type=Path, default=ASSETS_DIR / "student.pt", help="student checkpoint or dir")
    p.add_argument("--teacher", type=Path, default=None, help="teacher checkpoint (default: beside the student)")
    p.add_argument("--compare", action="append", default=[], metavar="LABEL=PATH",
                   help="extra column, e.g. a student trained without distillation (repeatable)")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument("--calls", type=int, default=200, help="batch-1 calls for the latency median")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--n-test", type=int, default=None, help="test queries (default: as recorded in planner.json)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """CLI entry point."""
    args = _parse_args(argv)
    torch.set_num_threads(args.threads)
    student_path = resolve_checkpoint(args.student)
    summary_path = student_path.parent / SUMMARY_FILE
    summary: dict[str, Any] = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    corpus = summary.get("corpus", {"seed": 0, "n_test": 2000})
    n_test = args.n_test if args.n_test is not None else int(corpus["n_test"])
    queries = make_splits(int(corpus["seed"]), 0, 0, n_test)["test"]
    texts = [q.text for q in queries]

    teacher_path = student_path.parent / "teacher.pt"
    if args.teacher is not None:
        teacher_path = resolve_checkpoint(args.teacher, "teacher.pt")
    columns: dict[str, dict[str, float]] = {}
    teacher_note = ""
    if teacher_path.exists():
        columns["teacher"] = evaluate(LearnedPlanner.load(teacher_path), texts, queries, args.calls)
    elif "teacher" in summary:
        recorded = summary["teacher"]
        columns["teacher"] = {"parameters": float(recorded["parameters"]), **recorded["test_metrics"]}
        columns["teacher"]["latency_median_ms"] = recorded["latency_batch1"]["median_ms"]
        teacher_note = f"(teacher column recorded at training time in {summary_path})"
    student = evaluate(LearnedPlanner.load(student_path), texts, queries, args.calls)
    columns["student"] = student
    for spec in args.compare:
        label, sep, path = spec.partition("=")
        if not sep:
            raise SystemExit(f"--compare expects LABEL=PATH, got {spec!r}")
        columns[label] = evaluate(LearnedPlanner.load(path), texts, queries, args.calls)

    print(f"Planner on the test split: {n_test} queries, corpus seed {corpus['seed']}; "
          f"CPU, {args.threads} thread(s), batch 1 latency over {args.calls} calls")
    print(format_table(columns, args.markdown))
    if "teacher" in columns:
        ratio = columns["teacher"]["parameters"] / student["parameters"]
        print(f"student / teacher parameters: 1 : {ratio:.2f} ({100 / ratio:.1f} % of the teacher)")
    if teacher_note:
        print(teacher_note)
    print(
        "noisy-oracle settings that match the student: "
        f"planner.length_noise_sigma = {student['length_noise_sigma']:.3f}, "
        f"planner.difficulty_noise_sigma = {student['difficulty_noise_sigma']:.3f}"
    )


if __name__ == "__main__":
    main()
