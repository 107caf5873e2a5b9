"""Small word-level tokenizer with exact round-trip for in-vocabulary text.

Text is split into pieces by ``PIECE_PATTERN``: a word, a number or a run of punctuation, each carrying its
leading space, or a run of whitespace. Concatenating the pieces gives the text back, so
``decode(encode(text))`` equals ``text`` whenever every piece is in the vocabulary (and the text fits).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

PAD, UNK, CLS = "[PAD]", "[UNK]", "[CLS]"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, CLS)
PAD_ID, UNK_ID, CLS_ID = 0, 1, 2
PIECE_PATTERN = re.compile(r" ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+")


def split_pieces(text: str) -> list[str]:
    """Pieces of ``text``; ``"".join(split_pieces(text)) == text``."""
    return PIECE_PATTERN.findall(text)


class WordTokenizer:
    """Word-level tokenizer; id 0 is [PAD], 1 [UNK], 2 [CLS] (prepended by ``encode``)."""

    def __init__(self, vocab: list[str]) -> None:
        if tuple(vocab[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"vocabulary must start with {SPECIAL_TOKENS}")
        self.vocab: list[str] = list(vocab)
        self.index: dict[str, int] = {piece: i for i, piece in enumerate(self.vocab)}

    @classmethod
    def train(cls, texts: Iterable[str], min_count: int = 1, max_size: int | None = None) -> WordTokenizer:
        """Vocabulary of the pieces seen at least ``min_count`` times (most frequent first)."""
        counts = Counter(piece for text in texts for piece in split_pieces(text))
        ranked = sorted((p for p, c in counts.items() if c >= min_count), key=lambda p: (-counts[p], p))
        if max_size is not None:
            ranked = ranked[: max(0, max_size - len(SPECIAL_TOKENS))]
        return cls([*SPECIAL_TOKENS, *ranked])

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included."""
        return len(self.vocab)

    def encode(self, text: str, max_len: int) -> list[int]:
        """[CLS] followed by the piece ids, truncated to ``max_len`` ids in all (no padding)."""
        ids = [CLS_ID] + [self.index.get(piece, UNK_ID) for piece in split_pieces(text)]
        return ids[:max_len]

    def encode_batch(self, texts: list[str], max_len: int) -> np.ndarray:
        """Encoded texts right-padded with [PAD] to the longest one, shape (n, <= max_len), int64."""
        rows = [self.encode(text, max_len) for text in texts]
        width = max((len(r) for r in rows), default=1)
        out = np.full((len(rows), width), PAD_ID, dtype=np.int64)
        for i, row in enumerate(rows):
            out[i, : len(row)] = row
        return out

    def decode(self, ids: Iterable[int]) -> str:
        """Text of the ids, skipping [PAD] and [CLS]; unknown pieces come back as ``[UNK]``."""
        return "".join(self.vocab[i] for i in ids if i not in (PAD_ID, CLS_ID))

    def to_dict(self) -> dict[str, object]:
        """JSON-able form."""
        return {"kind": "word-piece-with-spaces", "pattern": PIECE_PATTERN.pattern, "vocab": self.vocab}

    def save(self, path: str | Path) -> None:
        """Write the vocabulary to a JSON file."""
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> WordTokenizer:
        """Read a tokenizer written by ``save``."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("pattern") != PIECE_PATTERN.pattern:
            raise ValueError(f"{path}: tokenizer written with a different piece pattern")
        return cls(list(data["vocab"]))
