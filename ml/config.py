"""Config dataclasses for the towers and training; saved inside every checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

T = TypeVar("T", bound="_Cfg")

# What training reports as it goes ({"phase": "features" | "distill" | "train", "done", "total", ...}):
# the training job stores it for the model pages.
Progress = Callable[[dict[str, Any]], None]

# The "format" of a joint model's checkpoint (checkpoints.save_checkpoint writes it, the encoders
# check it): here, so that serving a model never imports the trainer.
CHECKPOINT_FORMAT = "vitrine-joint-v1"


class _Cfg:
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]  # every subclass is a dataclass

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[T], d: dict[str, Any]) -> T:
        # Ignore unknown keys so checkpoints written by newer code still load.
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class ImageTowerCfg(_Cfg):
    backbone: str = "resnet50"  # "resnet50" | "efficientnet_lite0" | "efficientnet_lite2"
    weights_path: str | None = None  # local backbone weights; None = packaged/torchvision default
    embed_dim: int = 256  # joint space dimension
    image_size: int = 224  # crop size fed to the backbone
    finetune_last_stage: bool = False  # only used on CUDA; CPU training caches frozen features
    head_hidden: int = 512  # hidden width of the MLP head; 0 = linear projection
    dropout: float = 0.2  # dropout inside the head (also regularises cached features)


@dataclass
class TextTowerCfg(_Cfg):
    kind: str = "gru"  # "gru" (GloVe + BiGRU, trained) | "minilm" (frozen MiniLM + projection)
    embed_dim: int = 256  # joint space dimension (must equal ImageTowerCfg.embed_dim)
    word_dim: int = 50  # word vector size; 50 matches GloVe 6B-50d
    hidden: int = 256  # GRU hidden size per direction
    max_len: int = 48  # tokens kept per text
    vocab_source: str = "glove6b50d"  # frozen pretrained table: "glove6b50d" | "none"
    glove_words: int = 100_000  # most frequent GloVe words kept (frozen, reloaded at load time)
    min_count: int = 1  # catalogue words outside GloVe need this many occurrences for an own vector
    dropout: float = 0.2  # dropout on word vectors and before the projection
    # GRU: width of a sentence layer between the pooled states and the projection; 384
    # (MiniLM's width) makes distillation train that layer to reproduce MiniLM, so the
    # projection reads MiniLM-like meaning. 0 = project the pooled states directly (default:
    # on the fashion suite 384 gained +0.03 on paraphrase words but lost 0.08 on keywords,
    # text->photo; docs/evaluation.md).
    sentence_dim: int = 0


@dataclass
class TrainCfg(_Cfg):
    epochs: int = 40  # upper bound, both phases together; early stopping usually ends sooner
    batch_size: int = 128  # in-batch negatives: bigger batches give harder negatives
    lr: float = 1e-3  # AdamW, cosine decay after a short warm-up
    weight_decay: float = 1e-4
    margin: float = 0.4  # triplet margin on euclidean distance of unit vectors (range 0..2)
    mining: str = "semi-hard"  # "hardest" | "semi-hard"
    warmup_epochs: int = 2  # semi-hard mining is used during warm-up even if mining="hardest"
    val_fraction: float = 0.15  # products held out for early stopping/metrics
    patience: int = 6  # epochs without val text->image R@10 improvement before stopping
    seed: int = 0
    feature_batch_size: int = 32  # images per backbone forward pass when caching features
    flip_augment: bool = True  # also cache features of the horizontally flipped image
    perturbed_views: int = 1  # also cache features of this many perturbed copies (crop, rotation, JPEG...)
    image_pair_weight: float = 0.5  # image<->image triplet term between two views of one photo; 0 = off
    query_views: bool = True  # GRU: also train on short query-like views of the texts (query_views.py)
    # GRU only: distil MiniLM sentence vectors into the tower (ml/distill.py) on WordNet
    # lemmas/glosses + catalogue texts, first alone, then beside the triplet loss.
    distill: bool = True
    distill_corpus: int = 20_000  # WordNet texts (the catalogue's are added)
    distill_epochs: int = 3  # distillation-only epochs before joint training
    distill_weight: float = 0.5  # weight of the distillation loss during joint training
    # GRU only: once validation stops improving, go on from the best checkpoint with this
    # lighter distillation weight for up to late_epochs (within `epochs` in all); the best
    # checkpoint over both phases is kept. None = one phase.
    late_distill_weight: float | None = 0.1
    late_epochs: int = 10
    # Validate, keep and serve an exponential moving average of the trained weights, with
    # this half-life in epochs, instead of the last step's weights; 0 = the weights as trained.
    ema_half_life: float = 0.0
    cache_dir: str | None = None  # feature cache; None = <out_dir>/feature_cache
    num_threads: int | None = None  # torch CPU threads; None = torch default
