"""Inference wrapper around a trained planner checkpoint (the shipped student by default)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from offload_gym.planner.corpus import MAX_SUBTASKS, STRUCTURES
from offload_gym.planner.models import PlannerModel, load_checkpoint
from offload_gym.planner.tokenizer import WordTokenizer

ASSETS_DIR: Path = Path(__file__).resolve().parent / "assets"
DEFAULT_CHECKPOINT: Path = ASSETS_DIR / "student.pt"
TOKENIZER_FILE: str = "tokenizer.json"


#: torch threads the planner's forward pass runs on, whatever the process's setting: float32 reductions split by
#: thread count, so the predictions (and the episodes that use them) differed between 1 and 2 threads, that is
#: between machines and between processes that set torch's threads (tests, training scripts). One: a second
#: thread cut the wall time of a batch by about 1.4x for 2x its CPU time, and envs stepped in parallel (vector
#: envs, subprocesses) have no core to spare
PLANNER_THREADS = 1

#: texts per forward pass, after sorting by length: padding is paid for in full, and a padded batch takes torch's
#: masked-softmax path, several times slower per row than its plain one; 16 rows cost about half the CPU time
#: per text of 64 (tried 8, 12, 16, 21, 32, 64 on the shipped student)
PLANNER_BATCH_ROWS = 16


@contextlib.contextmanager
def _fixed_threads(n: int) -> Iterator[None]:
    """Run the block on ``n`` torch threads, then restore the process's count."""
    before = torch.get_num_threads()
    if before != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if before != n:
            torch.set_num_threads(before)


@dataclass(frozen=True)
class PlannerOutput:
    """Planner annotation of one query; per-slot arrays have 5 entries, the first ``subtask_count`` matter."""

    subtask_count: int
    structure: str
    difficulty: float
    answer_tokens: float
    subtask_difficulty: np.ndarray
    subtask_output_tokens: np.ndarray


def resolve_checkpoint(path: str | Path, default_name: str = "student.pt") -> Path:
    """Checkpoint file for ``path``: the file itself, or ``default_name`` inside a directory."""
    p = Path(path)
    return p / default_name if p.is_dir() else p


@functools.lru_cache(maxsize=8)
def _load_cached(checkpoint: str) -> LearnedPlanner:
    return LearnedPlanner._from_file(Path(checkpoint))


class LearnedPlanner:
    """Tokenizer + ``PlannerModel`` on CPU; pickles as its checkpoint path and reloads (cached) on unpickle."""

    def __init__(self, model: PlannerModel, tokenizer: WordTokenizer, checkpoint: Path, role: str = "student") -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.checkpoint = checkpoint
        self.role = role
        self.max_len = model.config.max_len

    @classmethod
    def _from_file(cls, checkpoint: Path) -> LearnedPlanner:
        model, role = load_checkpoint(checkpoint)
        tokenizer = WordTokenizer.load(checkpoint.parent / TOKENIZER_FILE)
        if tokenizer.vocab_size != model.config.vocab_size:
            raise ValueError(f"{checkpoint}: vocabulary size differs from {TOKENIZER_FILE}")
        return cls(model, tokenizer, checkpoint, role)

    @classmethod
    def load_default(cls) -> LearnedPlanner:
        """The shipped distilled student (loaded once per process)."""
        return _load_cached(str(DEFAULT_CHECKPOINT))

    @classmethod
    def load(cls, path: str | Path) -> LearnedPlanner:
        """Planner from a checkpoint file or a directory holding ``student.pt`` (``tokenizer.json`` beside it)."""
        return _load_cached(str(resolve_checkpoint(path).resolve()))

    @property
    def num_parameters(self) -> int:
        """Trainable parameters of the wrapped model."""
        return self.model.num_parameters()

    def predict_arrays(self, texts: list[str], batch_size: int = PLANNER_BATCH_ROWS) -> dict[str, np.ndarray]:
        """Batched raw predictions: ``subtask_count`` (n,), ``structure`` (n,) index into STRUCTURES,
        ``difficulty`` (n,), ``answer_tokens`` (n,), ``subtask_difficulty`` / ``subtask_output_tokens`` (n, 5).

        The texts are sorted by length, then run ``batch_size`` per forward pass: a text's floats depend in their
        last bits on its batch-mates' lengths, so the same list gives the same floats, a different list may not.
        """
        n = len(texts)
        out = {
            "subtask_count": np.zeros(n, dtype=np.int64),
            "structure": np.zeros(n, dtype=np.int64),
            "difficulty": np.zeros(n),
            "answer_tokens": np.zeros(n),
            "subtask_difficulty": np.zeros((n, MAX_SUBTASKS)),
            "subtask_output_tokens": np.zeros((n, MAX_SUBTASKS)),
        }
        encoded = [self.tokenizer.encode(t, self.max_len) for t in texts]
        order = np.argsort([len(e) for e in encoded], kind="stable")  # similar lengths share a batch
        with torch.inference_mode(), _fixed_threads(PLANNER_THREADS):
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                rows = [encoded[i] for i in idx]
                width = max(len(r) for r in rows)
                ids = torch.zeros((len(rows), width), dtype=torch.long)
                for j, row in enumerate(rows):
                    ids[j, : len(row)] = torch.tensor(row, dtype=torch.long)
                res = self.model(ids)
                count = res["count_logits"].argmax(-1) + 1
                structure = torch.where(count > 1, res["structure_logits"].argmax(-1), 0)
                out["subtask_count"][idx] = count.numpy()
                out["structure"][idx] = structure.numpy()
                out["difficulty"][idx] = res["difficulty"].double().numpy()
                out["answer_tokens"][idx] = res["log_answer_tokens"].double().exp().numpy()
                out["subtask_difficulty"][idx] = res["subtask_difficulty"].double().numpy()
                out["subtask_output_tokens"][idx] = res["subtask_log_tokens"].double().exp().numpy()
        return out

    def predict(self, texts: list[str]) -> list[PlannerOutput]:
        """Annotate each query text."""
        if not texts:
            return []
        arr = self.predict_arrays(texts)
        return [
            PlannerOutput(
                subtask_count=int(arr["subtask_count"][i]),
                structure=STRUCTURES[int(arr["structure"][i])],
                difficulty=float(arr["difficulty"][i]),
                answer_tokens=float(arr["answer_tokens"][i]),
                subtask_difficulty=arr["subtask_difficulty"][i].copy(),
                subtask_output_tokens=arr["subtask_output_tokens"][i].copy(),
            )
            for i in range(len(texts))
        ]

    def __getstate__(self) -> dict[str, str]:
        """Pickle only the checkpoint path."""
        return {"checkpoint": str(self.checkpoint)}

    def __setstate__(self, state: dict[str, str]) -> None:
        """Reload from the checkpoint path (shares the per-process cache)."""
        loaded = _load_cached(state["checkpoint"])
        self.__dict__.update(loaded.__dict__)

    def __repr__(self) -> str:
        return f"LearnedPlanner(role={self.role!r}, params={self.num_parameters}, checkpoint={str(self.checkpoint)!r})"
