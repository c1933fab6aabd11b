"""Teaching the GRU text tower word meaning beyond the catalogue, by distilling MiniLM.

A GRU trained only on one shop's texts knows only that shop's words: "jeans", "parka" or
"flip flops" mean nothing to it when no product uses them. MiniLM knows them. So before
(and while) the GRU learns the catalogue, a small linear head on its pooled states is
trained to reproduce MiniLM's sentence vectors of a general corpus — WordNet lemmas and
glosses (ml/wordnet.py) plus the catalogue's own texts — so words land near their
meaning although the catalogue never uses them. During joint training the same loss keeps
running beside the triplet loss, so the catalogue does not wash the meaning out.

A tower with a sentence layer (TextTowerCfg.sentence_dim = 384) is distilled through that
layer, which the joint projection then reads, and which checkpoints keep; otherwise a
training-only head does the distilling.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import Progress, TrainCfg
from .data import length_order
from .tokenizer import PAD, UNK
from .towers import GRUTextTower, MiniLM
from .wordnet import distillation_corpus, wordnet_available

logger = logging.getLogger(__name__)


def teacher_vectors(
    texts: Sequence[str], encode: Callable[[list[str]], np.ndarray], cache_dir: Path | None = None, chunk: int = 256
) -> np.ndarray:
    """MiniLM vectors of `texts`, (N, 384) float32; cached on disk by the texts' hash."""
    key = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:20]
    path = Path(cache_dir) / f"minilm_targets_{key}.npy" if cache_dir else None
    if path is not None and path.exists():
        cached = np.load(path)
        if cached.shape[0] == len(texts):
            return cached.astype(np.float32)
    order = length_order(texts)  # glosses run from one word to forty
    parts = [encode([texts[i] for i in order[s : s + chunk]]) for s in range(0, len(order), chunk)]
    vectors = np.zeros((len(texts), 384), np.float32)
    if parts:
        by_length = np.concatenate(parts).astype(np.float32)
        vectors = np.empty_like(by_length)
        vectors[order] = by_length
    half = vectors.astype(np.float16)  # half precision halves the cache
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, half)
    # Rounded as the cache keeps them, so the run that computes the targets trains exactly
    # like every later run that reads them (ml/features.py does the same).
    return half.astype(np.float32)


class Distiller(nn.Module):
    """Cosine distillation of sentence vectors into a GRU tower's pooled states."""

    targets: torch.Tensor  # a buffer: the sentence vectors, moved with the module

    def __init__(self, tower: GRUTextTower, texts: Sequence[str], targets: np.ndarray, seed: int = 0) -> None:
        super().__init__()
        if len(texts) != len(targets):
            raise ValueError("one target vector per text")
        self.tower = tower
        # A tower with a sentence layer of MiniLM's width is distilled through it, so the
        # projection reads the distilled meaning; otherwise a training-only head does.
        sentence = tower.sentence
        if sentence is not None and sentence.out_features == targets.shape[1]:
            self.head: nn.Module = sentence
        else:
            self.head = nn.Linear(2 * tower.cfg.hidden, targets.shape[1])
        self.rows = [tower.vocab.ids(t, tower.cfg.max_len) or [UNK] for t in texts]
        self.register_buffer("targets", F.normalize(torch.from_numpy(np.asarray(targets, np.float32)), dim=-1))
        self.rng = random.Random(seed)

    def sample(self, size: int) -> list[int]:
        return [self.rng.randrange(len(self.rows)) for _ in range(size)]

    def loss(self, index: Sequence[int]) -> torch.Tensor:
        rows = [self.rows[i] for i in index]
        lengths = torch.tensor([len(r) for r in rows])
        ids = torch.full((len(rows), int(lengths.max())), PAD, dtype=torch.long)
        for j, r in enumerate(rows):
            ids[j, : len(r)] = torch.tensor(r)
        device = self.targets.device
        predicted = self.head(self.tower.pooled(ids.to(device), lengths))
        return (1.0 - F.cosine_similarity(predicted, self.targets[list(index)], dim=-1)).mean()

    def pretrain(
        self, epochs: int, batch_size: int = 256, lr: float = 2e-3, progress: Callable[[dict], None] | None = None
    ) -> list[float]:
        """Distillation alone, before the catalogue: mean loss per epoch."""
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
        history = []
        order = list(range(len(self.rows)))
        self.train()
        for epoch in range(1, epochs + 1):
            self.rng.shuffle(order)
            losses = []
            for start in range(0, len(order), batch_size):
                loss = self.loss(order[start : start + batch_size])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 5.0)
                optimizer.step()
                losses.append(loss.item())
            history.append(float(np.mean(losses)))
            if progress:
                progress({"phase": "distill", "done": epoch, "total": epochs, "loss": history[-1]})
        return history


def _minilm_vectors(teacher: MiniLM, device: torch.device, batch: list[str]) -> np.ndarray:
    with torch.no_grad():
        tokens = teacher.tokenize(batch)
        return teacher(**{k: v.to(device) for k, v in tokens.items()}).float().cpu().numpy()


def distillation_targets(
    corpus: Sequence[str],
    catalogue_texts: Sequence[str],
    encode: Callable[[list[str]], np.ndarray],
    cache_dir: Path | None,
) -> tuple[list[str], np.ndarray]:
    """The texts to distil on (the corpus, then the catalogue's texts it lacks) and their
    teacher vectors. The corpus's vectors and the catalogue's are cached apart: the corpus
    is the same for every catalogue, so only a first training encodes it (about a minute
    on two cores for 20,000 WordNet texts) and a catalogue that changes re-encodes its own."""
    general = list(dict.fromkeys(corpus))
    known = set(general)
    own = [t for t in dict.fromkeys(catalogue_texts) if t not in known]
    parts = [teacher_vectors(texts, encode, cache_dir) for texts in (general, own) if texts]
    return general + own, np.concatenate(parts) if parts else np.zeros((0, 384), np.float32)


def build_distiller(
    tower: GRUTextTower,
    catalogue_texts: Sequence[str],
    train_cfg: TrainCfg,
    cache_dir: Path,
    device: torch.device,
    progress: Progress | None = None,
) -> Distiller:
    """A Distiller over WordNet + the catalogue's texts, pre-trained for ``distill_epochs``."""
    corpus = distillation_corpus(train_cfg.distill_corpus, train_cfg.seed) if wordnet_available() else []
    if not corpus:
        logger.warning("WordNet is not installed (Debian wordnet-base): distilling on catalogue texts only")
    teacher: list[MiniLM] = []  # loaded on the first text the cache lacks; lives only here

    def encode(batch: list[str]) -> np.ndarray:
        if not teacher:
            teacher.append(MiniLM().to(device).eval())
        return _minilm_vectors(teacher[0], device, batch)

    if progress:
        progress({"phase": "distill", "done": 0, "total": train_cfg.distill_epochs})
    texts, targets = distillation_targets(corpus, catalogue_texts, encode, cache_dir)
    distiller = Distiller(tower, texts, targets, train_cfg.seed).to(device)
    losses = distiller.pretrain(train_cfg.distill_epochs, progress=progress)
    logger.info("distilled MiniLM into the GRU on %d texts: loss %s", len(texts), [round(x, 4) for x in losses])
    return distiller
