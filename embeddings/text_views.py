"""Query-like views of product texts, for training the GRU text tower.

Shoppers type two or three words ("dark coat"), while a product's text is a title plus a
paragraph. Trained only on whole product texts, the tower learns to read paragraphs and
does poorly on short queries and on words the catalogue never uses. So during training
each product's text is sometimes replaced by a short view of it (its title, its category,
a few consecutive words), and some words are swapped for their nearest GloVe neighbours
(the frozen table knows that "jeans" sits near "trousers"). A short view describes many
products at once, so products whose text contains every word of the view are masked out
as negatives for it instead of being pushed away.
"""
from __future__ import annotations

import random
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from embeddings.tokenizer import tokenize

P_FULL, P_TITLE, P_CATEGORY = 0.4, 0.2, 0.1  # the rest: a window of 1-4 words
P_SWAP = 0.1  # per word, swap for a GloVe neighbour
NEIGHBOURS, MIN_COSINE = 8, 0.6


class TextViews:
    def __init__(self, tower: torch.nn.Module, titles: Sequence[str], categories: Sequence[str], texts: Sequence[str], seed: int = 0) -> None:
        self.vocab = tower.vocab
        self.max_len = tower.cfg.max_len
        self.rng = random.Random(seed)
        self.full = [tokenize(t)[: self.max_len] for t in texts]
        self.title = [tokenize(t) for t in titles]
        self.category = [tokenize(c) for c in categories]
        self.words = [set(f) | set(c) for f, c in zip(self.full, self.category)]
        self.neighbours = self._neighbours(tower)

    def _neighbours(self, tower: torch.nn.Module) -> dict[int, list[int]]:
        table = getattr(tower.embed, "pretrained", None)
        if table is None or not len(table):
            return {}
        offset = self.vocab.n_trainable
        used = sorted({i for words in self.full for i in (self.vocab._index.get(w, 0) for w in words) if i >= offset})
        if not used:
            return {}
        unit = F.normalize(table.float(), dim=1)
        out: dict[int, list[int]] = {}
        for start in range(0, len(used), 512):
            ids = torch.tensor(used[start : start + 512])
            sims = unit[ids - offset] @ unit.T
            values, top = sims.topk(NEIGHBOURS + 1, dim=1)
            for word_id, vals, cand in zip(ids.tolist(), values, top):
                keep = [int(c) + offset for v, c in zip(vals.tolist(), cand.tolist()) if v >= MIN_COSINE and int(c) + offset != word_id]
                if keep:
                    out[word_id] = keep
        return out

    def sample(self, index: Sequence[int]) -> tuple[list[list[int]], torch.Tensor]:
        """Token ids of one view per product, and the (N, N) 'also described' mask."""
        views: list[list[str]] = []
        for i in index:
            r = self.rng.random()
            if r < P_FULL or not self.title[i]:
                view = self.full[i]
            elif r < P_FULL + P_TITLE:
                view = self.title[i]
            elif r < P_FULL + P_TITLE + P_CATEGORY and self.category[i]:
                view = self.category[i]
            else:
                source = self.title[i] + self.category[i]
                size = self.rng.randint(1, min(4, len(source)))
                start = self.rng.randint(0, len(source) - size)
                view = source[start : start + size]
            views.append(view or self.full[i])
        rows = []
        for view in views:
            ids = [self.vocab._index.get(w, 1) for w in view[: self.max_len]] or [1]
            ids = [self.rng.choice(self.neighbours[t]) if t in self.neighbours and self.rng.random() < P_SWAP else t for t in ids]
            rows.append(ids)
        mask = torch.zeros(len(index), len(index), dtype=torch.bool)
        for col, view in enumerate(views):
            if view is self.full[index[col]]:
                continue
            wanted = set(view)
            for row, i in enumerate(index):
                if row != col and wanted <= self.words[i]:
                    mask[row, col] = True
        return rows, mask
