"""The texts a training run embeds: pre-tokenised (GRU) or pre-encoded (frozen MiniLM) once."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .data import length_order
from .tokenizer import PAD
from .towers import GRUTextTower, MiniLMTextTower


class TextInputs:
    """Pre-tokenised (GRU) or pre-encoded (frozen MiniLM) texts, batched by index."""

    def __init__(self, tower: GRUTextTower | MiniLMTextTower, texts: Sequence[str], device: torch.device) -> None:
        self.tower, self.device = tower, device
        if isinstance(tower, MiniLMTextTower):
            self.sentences = self.encode_sentences(texts)
        else:
            assert isinstance(tower, GRUTextTower)
            self.rows = [tower.vocab.ids(t, tower.cfg.max_len) for t in texts]

    def encode_sentences(self, texts: Sequence[str]) -> torch.Tensor:
        assert isinstance(self.tower, MiniLMTextTower)
        chunks = []
        order = length_order(texts)
        with torch.no_grad():
            for s in range(0, len(texts), 64):
                batch = self.tower.tokenize([texts[i] for i in order[s : s + 64]])
                chunks.append(self.tower.minilm(**{k: v.to(self.device) for k, v in batch.items()}).cpu())
        return torch.cat(chunks)[torch.from_numpy(np.argsort(order))]

    def embed(self, index: Sequence[int], rows: list[list[int]] | None = None) -> torch.Tensor:
        if isinstance(self.tower, MiniLMTextTower):
            return self.tower.forward_features(self.sentences[list(index)].to(self.device))
        rows = rows or [self.rows[i] for i in index]
        lengths = torch.tensor([len(r) for r in rows])
        ids = torch.full((len(rows), int(lengths.max())), PAD, dtype=torch.long)
        for j, r in enumerate(rows):
            ids[j, : len(r)] = torch.tensor(r)
        return self.tower(ids.to(self.device), lengths)
