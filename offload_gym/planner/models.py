"""Transformer-encoder planner (teacher and distilled student share the architecture)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from offload_gym.planner.corpus import MAX_SUBTASKS, STRUCTURES
from offload_gym.planner.tokenizer import PAD_ID

N_STRUCTURES: int = len(STRUCTURES)
# Fixed output offsets so the regression heads start near the corpus medians.
LOG_ANSWER_TOKENS_CENTER: float = math.log(45.0)
LOG_SUBTASK_TOKENS_CENTER: float = math.log(21.0)
SUBTASK_DIFFICULTY_CENTER: float = -0.5


@dataclass(frozen=True)
class PlannerConfig:
    """Architecture of a ``PlannerModel``."""

    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    ff: int
    max_len: int = 128
    dropout: float = 0.1

    def to_dict(self) -> dict[str, int | float]:
        """JSON-able form."""
        return asdict(self)


# Paper: 120 M teacher → 12 M student (10 %); scaled down ~100x to train on a CPU in minutes.
TEACHER_SIZE: dict[str, int] = {"d_model": 144, "n_layers": 4, "n_heads": 4, "ff": 576}
STUDENT_SIZE: dict[str, int] = {"d_model": 56, "n_layers": 2, "n_heads": 4, "ff": 224}


def teacher_config(vocab_size: int, max_len: int = 128) -> PlannerConfig:
    """Teacher architecture (~1.1 M parameters for a ~500-piece vocabulary)."""
    return PlannerConfig(vocab_size=vocab_size, max_len=max_len, dropout=0.1, **TEACHER_SIZE)


def student_config(vocab_size: int, max_len: int = 128) -> PlannerConfig:
    """Student architecture (~10 % of the teacher's parameters)."""
    return PlannerConfig(vocab_size=vocab_size, max_len=max_len, dropout=0.0, **STUDENT_SIZE)


class PlannerModel(nn.Module):
    """Encoder over token ids with heads for K, structure, difficulty and (log) output lengths.

    ``forward`` returns a dict of tensors: ``count_logits`` (B, 5) for K = 1..5, ``structure_logits`` (B, 3)
    in ``STRUCTURES`` order, ``difficulty`` (B,), ``log_answer_tokens`` (B,), and per subtask slot
    ``subtask_difficulty`` (B, 5) and ``subtask_log_tokens`` (B, 5).
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        n_layers: int,
        n_heads: int,
        ff: int,
        max_len: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.config = PlannerConfig(vocab_size, d_model, n_layers, n_heads, ff, max_len, dropout)
        self.token_embedding = nn.Embedding(vocab_size, d_model, padding_idx=PAD_ID)
        self.position_embedding = nn.Embedding(max_len, d_model)
        self.embedding_dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, dim_feedforward=ff, dropout=dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(d_model)
        self.pool_proj = nn.Sequential(nn.Linear(2 * d_model, d_model), nn.GELU())
        self.count_head = nn.Linear(d_model, MAX_SUBTASKS)
        self.structure_head = nn.Linear(d_model, N_STRUCTURES)
        self.scalar_head = nn.Linear(d_model, 2)  # difficulty, log answer tokens
        self.subtask_head = nn.Linear(d_model, 2 * MAX_SUBTASKS)  # per-slot difficulty, log tokens

    @classmethod
    def from_config(cls, config: PlannerConfig) -> PlannerModel:
        """Build a model from a ``PlannerConfig``."""
        return cls(**config.to_dict())  # type: ignore[arg-type]

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def forward(self, ids: Tensor) -> dict[str, Tensor]:
        """Predictions for a (B, T) batch of token ids padded with [PAD] (T <= max_len)."""
        ids = ids[:, : self.config.max_len]
        pad = ids == PAD_ID
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.embedding_dropout(self.token_embedding(ids) + self.position_embedding(positions)[None])
        x = self.encoder(x, src_key_padding_mask=pad if bool(pad.any()) else None)
        x = self.final_norm(x)
        keep = (~pad).unsqueeze(-1).to(x.dtype)
        mean = (x * keep).sum(1) / keep.sum(1).clamp_min(1.0)
        h = self.pool_proj(torch.cat([x[:, 0], mean], dim=-1))
        scalars = self.scalar_head(h)
        sub = self.subtask_head(h)
        return {
            "count_logits": self.count_head(h),
            "structure_logits": self.structure_head(h),
            "difficulty": scalars[:, 0],
            "log_answer_tokens": scalars[:, 1] + LOG_ANSWER_TOKENS_CENTER,
            "subtask_difficulty": sub[:, :MAX_SUBTASKS] + SUBTASK_DIFFICULTY_CENTER,
            "subtask_log_tokens": sub[:, MAX_SUBTASKS:] + LOG_SUBTASK_TOKENS_CENTER,
        }


# Loss weights: log lengths have small variance (~0.36), so they get more weight than difficulty.
LOSS_WEIGHTS: dict[str, float] = {
    "count": 1.0,
    "structure": 0.5,
    "difficulty": 1.0,
    "log_answer_tokens": 2.5,
    "subtask_difficulty": 1.0,
    "subtask_log_tokens": 2.5,
}


def _masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    return ((pred - target) ** 2 * mask).sum() / mask.sum().clamp_min(1.0)


def slot_mask(subtask_count: Tensor) -> Tensor:
    """(B, 5) float mask, 1 for slots below the true K (``subtask_count`` holds K in 1..5)."""
    slots = torch.arange(MAX_SUBTASKS, device=subtask_count.device)
    return (slots[None, :] < subtask_count[:, None]).float()


def supervised_loss(out: dict[str, Tensor], targets: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
    """Weighted ground-truth loss; per-slot terms masked by the true K. Returns (loss, parts)."""
    mask = slot_mask(targets["subtask_count"])
    parts = {
        "count": F.cross_entropy(out["count_logits"], targets["subtask_count"] - 1),
        "structure": F.cross_entropy(out["structure_logits"], targets["structure"]),
        "difficulty": F.mse_loss(out["difficulty"], targets["difficulty"]),
        "log_answer_tokens": F.mse_loss(out["log_answer_tokens"], targets["log_answer_tokens"]),
        "subtask_difficulty": _masked_mse(out["subtask_difficulty"], targets["subtask_difficulty"], mask),
        "subtask_log_tokens": _masked_mse(out["subtask_log_tokens"], targets["subtask_log_tokens"], mask),
    }
    loss = sum((LOSS_WEIGHTS[k] * v for k, v in parts.items()), torch.zeros(()))
    return loss, {k: float(v.detach()) for k, v in parts.items()}


def distillation_loss(
    student_out: dict[str, Tensor],
    teacher_out: dict[str, Tensor],
    targets: dict[str, Tensor],
    alpha: float = 0.5,
    temperature: float = 2.0,
) -> tuple[Tensor, dict[str, float]]:
    """``alpha`` x ground-truth loss + (1 - alpha) x soft loss against the teacher.

    Soft loss: KL(teacher || student) on count and structure logits at ``temperature`` (scaled by T^2) and MSE
    to the teacher's regressions (per-slot terms masked by the true K).
    """
    hard, hard_parts = supervised_loss(student_out, targets)
    mask = slot_mask(targets["subtask_count"])
    t2 = temperature**2

    def kl(name: str) -> Tensor:
        log_p_s = F.log_softmax(student_out[name] / temperature, dim=-1)
        log_p_t = F.log_softmax(teacher_out[name].detach() / temperature, dim=-1)
        return F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean") * t2

    soft_parts = {
        "count": kl("count_logits"),
        "structure": kl("structure_logits"),
        "difficulty": F.mse_loss(student_out["difficulty"], teacher_out["difficulty"].detach()),
        "log_answer_tokens": F.mse_loss(student_out["log_answer_tokens"], teacher_out["log_answer_tokens"].detach()),
        "subtask_difficulty": _masked_mse(
            student_out["subtask_difficulty"], teacher_out["subtask_difficulty"].detach(), mask
        ),
        "subtask_log_tokens": _masked_mse(
            student_out["subtask_log_tokens"], teacher_out["subtask_log_tokens"].detach(), mask
        ),
    }
    soft = sum((LOSS_WEIGHTS[k] * v for k, v in soft_parts.items()), torch.zeros(()))
    loss = alpha * hard + (1.0 - alpha) * soft
    parts = {f"hard/{k}": v for k, v in hard_parts.items()}
    parts.update({f"soft/{k}": float(v.detach()) for k, v in soft_parts.items()})
    return loss, parts


def save_checkpoint(model: PlannerModel, path: str | Path, role: str, half: bool = False) -> None:
    """Write ``{"config", "role", "state_dict"}``; ``half`` stores float16 weights (loaded back as float32)."""
    state = {k: (v.half() if half and v.is_floating_point() else v).clone() for k, v in model.state_dict().items()}
    torch.save({"config": model.config.to_dict(), "role": role, "state_dict": state}, Path(path))


def load_checkpoint(path: str | Path) -> tuple[PlannerModel, str]:
    """Model (float32, eval mode, CPU) and role from a checkpoint written by ``save_checkpoint``."""
    data = torch.load(Path(path), map_location="cpu", weights_only=True)
    model = PlannerModel.from_config(PlannerConfig(**data["config"]))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in data["state_dict"].items()})
    model.eval()
    return model, str(data.get("role", "unknown"))
