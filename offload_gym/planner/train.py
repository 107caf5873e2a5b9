"""Train the planner teacher on corpus ground truth, then distil it into the student.

Usage: ``python -m offload_gym.planner.train --out runs/planner [--tensorboard runs/planner/tb] [--ship]``.
Writes ``teacher.pt``, ``student.pt``, ``tokenizer.json`` and ``planner.json`` (configs, sizes, metrics) to
``--out``; ``--ship`` copies the student, a float16 teacher, the tokenizer and the JSON into the package assets.
The full training state is saved after every epoch: with ``--time-limit-min`` a run stops early and rerunning
the same command resumes it, bit-for-bit equal to an uninterrupted run.

Defaults (20 000 queries, teacher 6 epochs, student 8 epochs, batch 32, 1 thread) take about 12 minutes on one
free CPU core (the shipped run took 26 minutes of wall time on a busy shared 2-core machine);
``--n-train 4000 --teacher-epochs 2 --student-epochs 6`` gives a rough planner in about 1 minute.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from offload_gym.planner.corpus import MAX_SUBTASKS, STRUCTURES, CorpusQuery, make_splits
from offload_gym.planner.learned import ASSETS_DIR, TOKENIZER_FILE, LearnedPlanner
from offload_gym.planner.metrics import latency_ms, planner_metrics
from offload_gym.planner.models import (
    PlannerModel,
    distillation_loss,
    save_checkpoint,
    student_config,
    supervised_loss,
    teacher_config,
)
from offload_gym.planner.tokenizer import PAD_ID, WordTokenizer

MAX_LEN_TOKENS: int = 128
SUMMARY_FILE: str = "planner.json"


class ScalarWriter(Protocol):
    """The part of ``torch.utils.tensorboard.SummaryWriter`` used here."""

    def add_scalar(self, tag: str, scalar_value: float, global_step: int) -> None: ...

    def close(self) -> None: ...


@dataclass
class EncodedSplit:
    """Token ids (n, max_len, [PAD]-padded), their lengths, and target tensors for a list of queries."""

    ids: Tensor
    lengths: np.ndarray
    targets: dict[str, Tensor]

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def batch(self, idx: np.ndarray) -> tuple[Tensor, dict[str, Tensor]]:
        """Rows ``idx``, cropped to their longest sequence."""
        index = torch.as_tensor(idx, dtype=torch.long)
        width = int(self.lengths[idx].max())
        return self.ids[index, :width], {k: v[index] for k, v in self.targets.items()}


def encode_split(queries: list[CorpusQuery], tokenizer: WordTokenizer, max_len: int = MAX_LEN_TOKENS) -> EncodedSplit:
    """Tokenize queries and stack their ground truth (per-slot targets zero beyond K, masked in the loss)."""
    n = len(queries)
    ids = torch.full((n, max_len), PAD_ID, dtype=torch.long)
    lengths = np.zeros(n, dtype=np.int64)
    sub_b = torch.zeros((n, MAX_SUBTASKS))
    sub_log = torch.zeros((n, MAX_SUBTASKS))
    for i, q in enumerate(queries):
        row = tokenizer.encode(q.text, max_len)
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        lengths[i] = len(row)
        sub_b[i, : q.subtask_count] = torch.tensor(q.subtask_difficulty)
        sub_log[i, : q.subtask_count] = torch.log(torch.tensor(q.subtask_output_tokens, dtype=torch.float32))
    targets = {
        "subtask_count": torch.tensor([q.subtask_count for q in queries], dtype=torch.long),
        "structure": torch.tensor([STRUCTURES.index(q.structure) for q in queries], dtype=torch.long),
        "difficulty": torch.tensor([q.difficulty for q in queries], dtype=torch.float32),
        "log_answer_tokens": torch.log(torch.tensor([q.answer_tokens for q in queries], dtype=torch.float32)),
        "subtask_difficulty": sub_b,
        "subtask_log_tokens": sub_log,
    }
    return EncodedSplit(ids, lengths, targets)


def batch_indices(lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Length-bucketed batches: shuffled chunks sorted by length, batches in random order (``rng`` None: sorted)."""
    n = len(lengths)
    if rng is None:
        order = np.argsort(lengths, kind="stable")
        return [order[i : i + batch_size] for i in range(0, n, batch_size)]
    perm = rng.permutation(n)
    chunk = batch_size * 32
    batches: list[np.ndarray] = []
    for c in range(0, n, chunk):
        part = perm[c : c + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def _warmup_cosine(total_steps: int, warmup_frac: float = 0.05, floor: float = 0.05) -> Callable[[int], float]:
    warmup = max(1, int(total_steps * warmup_frac))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


LossFn = Callable[[dict[str, Tensor], np.ndarray, dict[str, Tensor]], tuple[Tensor, dict[str, float]]]


@torch.no_grad()
def evaluate_loss(model: PlannerModel, split: EncodedSplit, batch_size: int = 256) -> float:
    """Mean supervised (ground-truth) loss over a split, eval mode."""
    was_training = model.training
    model.eval()
    total = 0.0
    for idx in batch_indices(split.lengths, batch_size, None):
        ids, targets = split.batch(idx)
        loss, _ = supervised_loss(model(ids), targets)
        total += float(loss) * len(idx)
    model.train(was_training)
    return total / max(1, len(split))


def fit(
    model: PlannerModel,
    train: EncodedSplit,
    loss_fn: LossFn,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    name: str,
    val: EncodedSplit | None = None,
    writer: ScalarWriter | None = None,
    progress: bool = True,
    log_every_steps: int = 10,
    state_path: Path | None = None,
    time_limit_s: float | None = None,
) -> dict[str, Any]:
    """AdamW with warm-up + cosine decay; keeps the weights with the best validation loss (if ``val``).

    With ``state_path`` the full training state is saved after every epoch and a later call resumes from it
    (same schedule, same batch order). With ``time_limit_s`` it stops after the epoch that would otherwise
    overrun the limit; the returned history then has ``complete`` False.
    """
    t_start = time.perf_counter()
    steps_per_epoch = math.ceil(len(train) / batch_size)
    total_steps = max(1, epochs * steps_per_epoch)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _warmup_cosine(total_steps))
    history: dict[str, Any] = {"step_loss": [], "val_loss": [], "epoch_seconds": []}
    best_val, best_state = math.inf, None
    first_epoch = 0
    if state_path is not None and state_path.exists():
        saved = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["torch_rng"])
        history, best_val, best_state = saved["history"], saved["best_val"], saved["best_state"]
        first_epoch = int(saved["epoch"])
    step = first_epoch * steps_per_epoch
    bar = tqdm(total=total_steps, initial=step, desc=name, disable=not progress, dynamic_ncols=True)
    model.train()
    complete = True
    for epoch in range(first_epoch, epochs):
        t_epoch = time.perf_counter()
        for idx in batch_indices(train.lengths, batch_size, np.random.default_rng([seed, epoch])):
            ids, targets = train.batch(idx)
            loss, parts = loss_fn(model(ids), idx, targets)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            history["step_loss"].append(float(loss.detach()))
            bar.update(1)
            if step % log_every_steps == 0:
                bar.set_postfix(loss=f"{history['step_loss'][-1]:.3f}", epoch=epoch)
                if writer is not None:
                    writer.add_scalar(f"{name}/train_loss", history["step_loss"][-1], step)
                    writer.add_scalar(f"{name}/lr", sched.get_last_lr()[0], step)
                    for key, value in parts.items():
                        writer.add_scalar(f"{name}/train_{key}", value, step)
        if val is not None:
            val_loss = evaluate_loss(model, val)
            history["val_loss"].append(val_loss)
            if writer is not None:
                writer.add_scalar(f"{name}/val_loss", val_loss, step)
            if val_loss < best_val:
                best_val = val_loss
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        history["epoch_seconds"].append(time.perf_counter() - t_epoch)
        if state_path is not None:
            state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "torch_rng": torch.get_rng_state(), "history": history, "best_val": best_val,
                     "best_state": best_state, "epoch": epoch + 1}
            torch.save(state, state_path)
        elapsed = time.perf_counter() - t_start
        if time_limit_s is not None and epoch + 1 < epochs and elapsed + history["epoch_seconds"][-1] > time_limit_s:
            complete = False
            break
    bar.close()
    if best_state is not None and complete:
        model.load_state_dict(best_state)
    model.eval()
    history["best_val_loss"] = best_val
    history["steps"] = step
    history["complete"] = complete
    history["train_seconds"] = float(sum(history["epoch_seconds"]))
    return history


def train_teacher(model: PlannerModel, train: EncodedSplit, **kwargs: Any) -> dict[str, Any]:
    """Fit the teacher on ground truth (``kwargs`` go to ``fit``)."""

    def loss_fn(out: dict[str, Tensor], idx: np.ndarray, targets: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        return supervised_loss(out, targets)

    return fit(model, train, loss_fn, name="teacher", **kwargs)


@torch.no_grad()
def teacher_outputs(teacher: PlannerModel, split: EncodedSplit, batch_size: int = 256) -> dict[str, Tensor]:
    """The teacher's eval-mode outputs for every row of ``split`` (soft targets for distillation)."""
    teacher.eval()
    stored: dict[str, Tensor] = {}
    for idx in batch_indices(split.lengths, batch_size, None):
        ids, _ = split.batch(idx)
        for key, value in teacher(ids).items():
            if key not in stored:
                stored[key] = torch.zeros((len(split), *value.shape[1:]), dtype=value.dtype)
            stored[key][torch.as_tensor(idx, dtype=torch.long)] = value
    return stored


def train_student(
    student: PlannerModel,
    train: EncodedSplit,
    soft_targets: dict[str, Tensor],
    *,
    alpha: float = 0.5,
    temperature: float = 2.0,
    **kwargs: Any,
) -> dict[str, Any]:
    """Distil: ``alpha`` x ground-truth loss + (1 - alpha) x loss to the teacher's precomputed outputs."""

    def loss_fn(out: dict[str, Tensor], idx: np.ndarray, targets: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        index = torch.as_tensor(idx, dtype=torch.long)
        teacher_out = {k: v[index] for k, v in soft_targets.items()}
        return distillation_loss(out, teacher_out, targets, alpha=alpha, temperature=temperature)

    return fit(student, train, loss_fn, name="student", **kwargs)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m offload_gym.planner.train", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/planner"), help="output directory for checkpoints")
    p.add_argument("--seed", type=int, default=0, help="corpus and training seed")
    p.add_argument("--n-train", type=int, default=20000, help="training queries")
    p.add_argument("--n-val", type=int, default=1000, help="validation queries")
    p.add_argument("--n-test", type=int, default=2000, help="test queries")
    p.add_argument("--teacher-epochs", type=int, default=6)
    p.add_argument("--student-epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--teacher-lr", type=float, default=1.5e-3)
    p.add_argument("--student-lr", type=float, default=3e-3)
    p.add_argument("--alpha", type=float, default=0.5, help="weight of the ground-truth loss in distillation")
    p.add_argument("--temperature", type=float, default=2.0, help="distillation softmax temperature")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--time-limit-min", type=float, default=None,
                   help="stop after the epoch that would overrun this many minutes; rerun the command to resume")
    p.add_argument("--tensorboard", type=Path, default=None, help="TensorBoard log directory")
    p.add_argument("--no-progress", action="store_true", help="hide the tqdm progress bars")
    p.add_argument("--ship", action="store_true", help="copy the student (+ fp16 teacher) into the package assets")
    return p.parse_args(argv)


def _stopped(writer: Any, stage: str, history: dict[str, Any]) -> dict[str, Any]:
    """Close the log and report a stage stopped by the time limit (a rerun resumes it)."""
    if writer is not None:
        writer.close()
    print(f"{stage} stopped at the time limit after epoch {len(history['val_loss'])}; rerun to resume")
    return {"complete": False, "stage": stage}


def _remaining_s(args: argparse.Namespace, t_start: float) -> float | None:
    if args.time_limit_min is None:
        return None
    return args.time_limit_min * 60.0 - (time.perf_counter() - t_start)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Full pipeline; returns the summary written to ``planner.json`` (``{"complete": False}`` if cut short).

    Training state is kept in ``--out``: rerunning the same command resumes an interrupted or time-limited run.
    """
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t_start = time.perf_counter()
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    writer: ScalarWriter | None = None
    if args.tensorboard is not None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(args.tensorboard))

    splits = make_splits(args.seed, args.n_train, args.n_val, args.n_test)
    tokenizer = WordTokenizer.train([q.text for q in splits["train"]], min_count=2)
    if (out_dir / TOKENIZER_FILE).exists() and WordTokenizer.load(out_dir / TOKENIZER_FILE).vocab != tokenizer.vocab:
        raise ValueError(f"{out_dir} holds a run with another corpus; use a fresh --out")
    tokenizer.save(out_dir / TOKENIZER_FILE)
    enc = {name: encode_split(qs, tokenizer) for name, qs in splits.items()}
    common = {"batch_size": args.batch_size, "val": enc["val"], "writer": writer, "progress": not args.no_progress}

    teacher = PlannerModel.from_config(teacher_config(tokenizer.vocab_size, MAX_LEN_TOKENS))
    teacher_hist = train_teacher(
        teacher, enc["train"], epochs=args.teacher_epochs, lr=args.teacher_lr, seed=args.seed,
        state_path=out_dir / "teacher_state.pt", time_limit_s=_remaining_s(args, t_start), **common,
    )
    if not teacher_hist["complete"]:
        return _stopped(writer, "teacher", teacher_hist)
    save_checkpoint(teacher, out_dir / "teacher.pt", role="teacher")

    torch.manual_seed(args.seed + 1)
    student = PlannerModel.from_config(student_config(tokenizer.vocab_size, MAX_LEN_TOKENS))
    t0 = time.perf_counter()
    soft = teacher_outputs(teacher, enc["train"])
    soft_targets_s = time.perf_counter() - t0
    student_hist = train_student(
        student, enc["train"], soft, alpha=args.alpha, temperature=args.temperature, epochs=args.student_epochs,
        lr=args.student_lr, seed=args.seed + 1, state_path=out_dir / "student_state.pt",
        time_limit_s=_remaining_s(args, t_start), **common,
    )
    if not student_hist["complete"]:
        return _stopped(writer, "student", student_hist)
    save_checkpoint(student, out_dir / "student.pt", role="student")

    test_texts = [q.text for q in splits["test"]]
    summary: dict[str, Any] = {
        "format": 1,
        "complete": True,
        "corpus": {"seed": args.seed, "n_train": args.n_train, "n_val": args.n_val, "n_test": args.n_test},
        "tokenizer": {"file": TOKENIZER_FILE, "vocab_size": tokenizer.vocab_size, "max_len": MAX_LEN_TOKENS},
        "distillation": {"alpha": args.alpha, "temperature": args.temperature,
                         "soft_target_seconds": round(soft_targets_s, 1)},
        "batch_size": args.batch_size,
        "threads": args.threads,
    }
    for role, model, hist, epochs, lr in (
        ("teacher", teacher, teacher_hist, args.teacher_epochs, args.teacher_lr),
        ("student", student, student_hist, args.student_epochs, args.student_lr),
    ):
        planner = LearnedPlanner(model, tokenizer, out_dir / f"{role}.pt", role)
        metrics = planner_metrics(planner.predict_arrays(test_texts), splits["test"])
        summary[role] = {
            "checkpoint": f"{role}.pt",
            "config": model.config.to_dict(),
            "parameters": model.num_parameters(),
            "epochs": epochs,
            "lr": lr,
            "steps": hist["steps"],
            "train_seconds": round(hist["train_seconds"], 1),
            "best_val_loss": hist["best_val_loss"],
            "val_loss_per_epoch": hist["val_loss"],
            "test_metrics": metrics,
            "latency_batch1": latency_ms(planner, test_texts, n_calls=200),
        }
        if writer is not None:
            for key, value in metrics.items():
                writer.add_scalar(f"{role}/test_{key}", value, 0)
    summary["parameter_ratio"] = summary["teacher"]["parameters"] / summary["student"]["parameters"]
    summary["last_run_wall_seconds"] = round(time.perf_counter() - t_start, 1)
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    if writer is not None:
        writer.close()
    if args.ship:
        ship(out_dir, summary)
    return summary


def ship(out_dir: Path, summary: dict[str, Any], assets_dir: Path = ASSETS_DIR) -> None:
    """Copy student, float16 teacher, tokenizer and summary into ``assets_dir``."""
    from offload_gym.planner.models import load_checkpoint

    assets_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out_dir / "student.pt", assets_dir / "student.pt")
    shutil.copyfile(out_dir / TOKENIZER_FILE, assets_dir / TOKENIZER_FILE)
    teacher, _ = load_checkpoint(out_dir / "teacher.pt")
    save_checkpoint(teacher, assets_dir / "teacher.pt", role="teacher", half=True)
    shipped = dict(summary)
    shipped["teacher"] = dict(summary["teacher"], stored_dtype="float16")
    shipped["student"] = dict(summary["student"], stored_dtype="float32")
    (assets_dir / SUMMARY_FILE).write_text(json.dumps(shipped, indent=2))


def main(argv: Sequence[str] | None = None) -> None:
    """CLI entry point."""
    args = _parse_args(argv)
    summary = run(args)
    if not summary["complete"]:
        return
    brief = {
        role: {k: summary[role][k] for k in ("parameters", "train_seconds", "best_val_loss")}
        for role in ("teacher", "student")
    }
    print(json.dumps({"out": str(args.out), "last_run_wall_seconds": summary["last_run_wall_seconds"], **brief},
                     indent=2))


if __name__ == "__main__":
    main()
