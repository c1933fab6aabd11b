"""Query-like views of product texts, for training the GRU text tower.

Shoppers type two or three words ("dark coat"), while a product's text is a title plus a
paragraph. Trained only on whole product texts, the tower learns to read paragraphs and
does poorly on short queries and on words the catalogue never uses. So during training
each product's text is sometimes replaced by a short view of it (its title, its category,
a few consecutive words), and some words are swapped for a word a shopper may type for
them instead: a WordNet synonym, broader or narrower term or similar adjective ("trousers"
-> jeans, chinos; "dark" -> black), or, for a word WordNet does not know, a nearest GloVe
neighbour. The photo stays the product's, so the tower learns those words from what they
look like in this shop. A short view describes many products at once, so products whose
text contains every word of the view are masked out as negatives for it instead of being
pushed away.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from ml import wordnet
from ml.tokenizer import UNK, tokenize
from ml.towers import GRUTextTower

P_FULL, P_TITLE, P_CATEGORY = 0.4, 0.2, 0.1  # the rest: a window of 1-4 words
P_WORDNET = 0.25  # per word that has one, swap for a WordNet shopper term
# Per word WordNet has no shopper term for, swap for a GloVe neighbour. Only those (the
# others' neighbours are dropped when the views are built): GloVe's neighbours include
# opposites and other products ("dark" -> bright, pale; "sandals" -> boots), which teach a
# photo the wrong words.
P_SWAP = 0.1
NEIGHBOURS, MIN_COSINE = 8, 0.6


class TextViews:
    def __init__(
        self,
        tower: GRUTextTower | None,
        titles: Sequence[str],
        categories: Sequence[str],
        texts: Sequence[str],
        seed: int = 0,
    ) -> None:
        self.vocab = tower.vocab if tower is not None else None
        self.max_len = tower.cfg.max_len if tower is not None else 64
        self.rng = random.Random(seed)
        self.full = [tokenize(t)[: self.max_len] for t in texts]
        self.title = [tokenize(t) for t in titles]
        self.category = [tokenize(c) for c in categories]
        self.words = [set(f) | set(c) for f, c in zip(self.full, self.category)]
        self.shopper_terms = self._shopper_terms(tower) if tower is not None else {}
        neighbours = self._neighbours(tower) if tower is not None else {}
        self.neighbours = {t: n for t, n in neighbours.items() if t not in self.shopper_terms}

    def _neighbours(self, tower: GRUTextTower) -> dict[int, list[int]]:
        table = tower.embed.pretrained
        if not len(table):
            return {}
        offset = tower.vocab.n_trainable
        used = sorted({i for words in self.full for i in (tower.vocab._index.get(w, 0) for w in words) if i >= offset})
        if not used:
            return {}
        unit = F.normalize(table.float(), dim=1)
        out: dict[int, list[int]] = {}
        for start in range(0, len(used), 512):
            ids = torch.tensor(used[start : start + 512])
            sims = unit[ids - offset] @ unit.T
            values, top = sims.topk(NEIGHBOURS + 1, dim=1)
            for word_id, vals, cand in zip(ids.tolist(), values, top):
                keep = [
                    int(c) + offset
                    for v, c in zip(vals.tolist(), cand.tolist())
                    if v >= MIN_COSINE and int(c) + offset != word_id
                ]
                if keep:
                    out[word_id] = keep
        return out

    def _shopper_terms(self, tower: GRUTextTower) -> dict[int, list[list[int]]]:
        """Token ids of wordnet.shopper_terms() of every title and category word, keeping
        the terms whose every word the tower knows."""
        if not wordnet.wordnet_available():
            return {}
        index = tower.vocab._index
        out: dict[int, list[list[int]]] = {}
        for word in sorted({w for words in self.title + self.category for w in words}):
            word_id = index.get(word, UNK)
            if word_id == UNK:
                continue
            phrases = [tokenize(term) for term in wordnet.shopper_terms(word)]
            # WordNet lists lemmas ("jean"), shoppers type plurals ("jeans") as often.
            phrases += [[*p[:-1], p[-1] + "s"] for p in phrases if p and not p[-1].endswith("s")]
            terms = [[index.get(t, UNK) for t in p] for p in phrases]
            terms = [ids for ids in terms if ids and UNK not in ids]
            if terms:
                out[word_id] = terms
        return out

    def swapped(self, ids: list[int]) -> list[int]:
        """``ids`` with some words swapped for a shopper term or a GloVe neighbour."""
        out: list[int] = []
        for t in ids:
            if t in self.shopper_terms and self.rng.random() < P_WORDNET:
                out += self.rng.choice(self.shopper_terms[t])
            elif t in self.neighbours and self.rng.random() < P_SWAP:
                out.append(self.rng.choice(self.neighbours[t]))
            else:
                out.append(t)
        return out[: self.max_len]

    def view(self, i: int) -> list[str]:
        """One query-like view of product i's text, as words."""
        r = self.rng.random()
        if r < P_FULL or not self.title[i]:
            return self.full[i]
        if r < P_FULL + P_TITLE:
            return self.title[i]
        if r < P_FULL + P_TITLE + P_CATEGORY and self.category[i]:
            return self.category[i]
        source = self.title[i] + self.category[i]
        size = self.rng.randint(1, min(4, len(source)))
        start = self.rng.randint(0, len(source) - size)
        return source[start : start + size] or self.full[i]

    def also_described(self, index: Sequence[int], views: Sequence[Sequence[str]]) -> torch.Tensor:
        """(N, N) mask: [row, col] True when view col's words all occur in product row's text."""
        mask = torch.zeros(len(index), len(index), dtype=torch.bool)
        for col, view in enumerate(views):
            if view is self.full[index[col]]:
                continue
            wanted = set(view)
            for row, i in enumerate(index):
                if row != col and wanted <= self.words[i]:
                    mask[row, col] = True
        return mask

    def sample(self, index: Sequence[int]) -> tuple[list[list[int]], torch.Tensor]:
        """GRU: token ids of one view per product (some words swapped), and the mask."""
        assert self.vocab is not None, "word views need the GRU tower's vocabulary"
        views = [self.view(i) for i in index]
        rows = []
        for view in views:
            ids = [self.vocab._index.get(w, UNK) for w in view[: self.max_len]] or [UNK]
            rows.append(self.swapped(ids))
        return rows, self.also_described(index, views)


class SentenceViewBank:
    """Frozen sentence encoders (MiniLM) cannot encode a fresh view every step cheaply,
    so each product gets a fixed bank of views encoded once; training samples from it."""

    def __init__(self, views: TextViews, encode: Callable[[list[str]], torch.Tensor], n_views: int = 4) -> None:
        self.views = views
        n = len(views.full)
        self.words: list[list[list[str]]] = []
        for i in range(n):
            bank = [views.full[i]]
            while len(bank) < n_views + 1:
                bank.append(views.view(i))
            self.words.append(bank)
        flat = [" ".join(w) for bank in self.words for w in bank]
        self.vectors = encode(flat).reshape(n, n_views + 1, -1)
        self.rng = views.rng

    def sample(self, index: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        picks = [self.rng.randrange(len(self.words[i])) for i in index]
        vectors = torch.stack([self.vectors[i, p] for i, p in zip(index, picks)])
        return vectors, self.views.also_described(index, [self.words[i][p] for i, p in zip(index, picks)])
