"""Word tokenizer and vocabulary for the GRU text tower.

Ids: 0 = padding, 1 = unknown, then catalogue words that have no pretrained
vector (trainable), then the frozen pretrained (GloVe) words. Only the first
two groups are stored in checkpoints; the pretrained word list is reloaded.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import torch

PAD, UNK = 0, 1
_TOKEN_RE = re.compile(r"[^\W\d_]+|\d+")


def tokenize(text: str) -> list[str]:
    # Letters-only words and digit runs: "USB-C 3.1 cable" -> usb c 3 1 cable,
    # which matches how GloVe 6B tokenised most hyphenated words and numbers.
    return _TOKEN_RE.findall(text.lower())


class Vocabulary:
    def __init__(self, extra_words: Sequence[str], pretrained_words: Sequence[str] = ()) -> None:
        self.extra_words = list(extra_words)
        self.n_trainable = 2 + len(self.extra_words)  # pad + unk + extra words
        self.n_pretrained = len(pretrained_words)
        self._index: dict[str, int] = {}
        # Pretrained first, then extras override: extras never collide by construction.
        for i, w in enumerate(pretrained_words):
            self._index.setdefault(w, self.n_trainable + i)
        for i, w in enumerate(self.extra_words):
            self._index[w] = 2 + i

    def __len__(self) -> int:
        return self.n_trainable + self.n_pretrained

    @classmethod
    def build(cls, texts: Iterable[str], pretrained_words: Sequence[str] = (), min_count: int = 1) -> Vocabulary:
        """Catalogue words missing from ``pretrained_words`` get trainable vectors."""
        known = set(pretrained_words)
        counts = Counter(t for text in texts for t in tokenize(text) if t not in known)
        extra = sorted(w for w, c in counts.items() if c >= min_count)
        return cls(extra, pretrained_words)

    def ids(self, text: str, max_len: int) -> list[int]:
        out = [self._index.get(t, UNK) for t in tokenize(text)[:max_len]]
        return out or [UNK]  # never empty: max pooling needs one step

    def encode_batch(self, texts: Sequence[str], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids (N, L) padded with PAD, lengths (N,))."""
        rows = [self.ids(t, max_len) for t in texts]
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        ids = torch.full((len(rows), int(lengths.max()) if rows else 1), PAD, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return ids, lengths

    def to_dict(self) -> dict[str, Any]:
        return {"extra_words": self.extra_words, "n_pretrained": self.n_pretrained}
