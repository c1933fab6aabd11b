"""The encoder API used by the site: images/texts -> L2-normalised float32 vectors.

``load_encoder(spec)`` returns one cached ``Encoder`` per (spec, device, batch
size, compile) per process, loaded once behind a lock (as immich's InferenceModel
does), so web workers and Celery tasks share it. It reads no environment: the
site passes its settings (embeddings/registry.py).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .backbones import autocast, backbone_spec, bf16_supported, build_backbone
from .config import CHECKPOINT_FORMAT, ImageTowerCfg, TextTowerCfg
from .data import length_order
from .tokenizer import Vocabulary
from .towers import MINILM_DIM, GRUTextTower, ImageTower, MiniLM, MiniLMTextTower, build_text_tower
from .transforms import to_model_input

logger = logging.getLogger(__name__)


def resolve_device(device: str | None = None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _l2(x: np.ndarray) -> np.ndarray:
    # Re-normalise in float32: bf16 autocast leaves norms off by ~1e-3.
    x = x.astype(np.float32, copy=False)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class Encoder:
    """Base encoder; subclasses provide ``_image_signals`` and ``_text_signals``."""

    name: str
    joint: bool  # True when image and text vectors share one space
    image_dim: int
    text_dim: int
    backbone: str  # backbone actually used (after any fallback)
    text_kind: str  # "gru" or "minilm"

    def __init__(
        self, device: torch.device, bf16: bool | None = None, batch_size: int = 64, torch_compile: bool = False
    ) -> None:
        self.device = device
        self.bf16 = bf16_supported(device) if bf16 is None else bf16
        # On CPU, bf16 autocast made text encoding slower for both the GRU (~1.6x) and
        # MiniLM (bench/encoder_throughput); it pays off for the image backbones only.
        self.text_bf16 = self.bf16 and self.device.type != "cpu"
        self.batch_size = max(1, batch_size)  # images or texts per forward pass
        self.torch_compile = torch_compile
        self.image_size = 224
        self.mean: tuple[float, ...] = (0.5, 0.5, 0.5)
        self.std: tuple[float, ...] = (0.5, 0.5, 0.5)
        # One forward pass at a time: each already uses all intra-op threads,
        # so concurrent requests would only oversubscribe the CPU.
        self._lock = threading.Lock()

    def _prepare(self, module: nn.Module, image: bool) -> nn.Module:
        module = module.to(self.device).eval()
        if image:
            module = module.to(memory_format=torch.channels_last)
        if self.torch_compile:
            # an OptimizedModule (an nn.Module) at run time; torch types it as any callable
            module = torch.compile(module)  # type: ignore[assignment]
        return module

    # Subclasses map a batch to {stored column: tensor}; only the columns asked for are computed.
    image_columns: tuple[str, ...] = ("image_vec",)
    text_columns: tuple[str, ...] = ("text_vec",)

    def _image_signals(self, pixels: torch.Tensor, columns: Sequence[str]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _text_signals(self, texts: Sequence[str], columns: Sequence[str]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    # A joint model's heads over stored pretrained vectors, with no backbone or MiniLM pass
    # (CheckpointEncoder; embeddings/tasks.py asks only when stored_pretrained found some).
    def signals_from_pretrained(
        self, image_feat: np.ndarray, text_feat: np.ndarray, texts: Sequence[str]
    ) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def image_signals_from_features(self, image_feat: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def column_dims(self) -> dict[str, int]:
        return {"image_vec": self.image_dim, "text_vec": self.text_dim}

    def encode_image_signals(
        self, images: Sequence[Image.Image], columns: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Every image signal this model stores (or ``columns`` of them): column -> (N, dim), L2-normalised.

        One backbone pass per batch serves all of them.
        """
        columns = tuple(columns or self.image_columns)
        dims = self.column_dims()
        parts: dict[str, list[np.ndarray]] = {c: [np.zeros((0, dims[c]), np.float32)] for c in columns}
        for s in range(0, len(images), self.batch_size):
            out = self._pixel_signals(self.image_input(images[s : s + self.batch_size]), columns)
            for c in columns:
                parts[c].append(out[c])
        return {c: _l2(np.concatenate(p)) for c, p in parts.items()}

    def image_input(self, images: Sequence[Image.Image]) -> np.ndarray:
        """The image tower's input for `images`: (N, 3, size, size) float32, resized, centre-cropped
        and normalised. PIL and numpy only, no lock: a thread may prepare the next photos while
        a forward pass runs (embeddings/tasks.py)."""
        return to_model_input(images, self.image_size, self.mean, self.std)

    def encode_pixel_signals(self, pixels: np.ndarray, columns: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """As encode_image_signals, from image_input's output."""
        columns = tuple(columns or self.image_columns)
        dims = self.column_dims()
        parts: dict[str, list[np.ndarray]] = {c: [np.zeros((0, dims[c]), np.float32)] for c in columns}
        for s in range(0, len(pixels), self.batch_size):
            out = self._pixel_signals(pixels[s : s + self.batch_size], columns)
            for c in columns:
                parts[c].append(out[c])
        return {c: _l2(np.concatenate(p)) for c, p in parts.items()}

    def _pixel_signals(self, pixels: np.ndarray, columns: Sequence[str]) -> dict[str, np.ndarray]:
        x = torch.from_numpy(pixels).to(self.device).contiguous(memory_format=torch.channels_last)
        with self._lock, torch.inference_mode(), autocast(self.device, self.bf16):
            out = self._image_signals(x, columns)
        return {c: out[c].float().cpu().numpy() for c in columns}

    def encode_text_signals(self, texts: Sequence[str], columns: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Every text signal this model stores (or ``columns`` of them): column -> (N, dim), L2-normalised."""
        columns = tuple(columns or self.text_columns)
        dims = self.column_dims()
        parts: dict[str, list[np.ndarray]] = {c: [np.zeros((0, dims[c]), np.float32)] for c in columns}
        order = length_order(texts)
        for s in range(0, len(texts), self.batch_size):
            with self._lock, torch.inference_mode(), autocast(self.device, self.text_bf16):
                out = self._text_signals([texts[i] for i in order[s : s + self.batch_size]], columns)
            for c in columns:
                parts[c].append(out[c].float().cpu().numpy())
        unsorted = np.argsort(order)
        return {c: _l2(np.concatenate(p))[unsorted] for c, p in parts.items()}

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(N, image_dim) float32, L2-normalised: the vectors stored as image_vec."""
        return self.encode_image_signals(images, ("image_vec",))["image_vec"]

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(N, text_dim) float32, L2-normalised: the vectors stored as text_vec."""
        return self.encode_text_signals(texts, ("text_vec",))["text_vec"]


class BaselineEncoder(Encoder):
    """Untrained baseline: pretrained backbone features + MiniLM sentence vectors (two spaces)."""

    joint = False

    def __init__(
        self,
        backbone: str = "resnet50",
        weights_path: str | None = None,
        device: torch.device | None = None,
        bf16: bool | None = None,
        batch_size: int = 64,
        torch_compile: bool = False,
    ) -> None:
        super().__init__(device or resolve_device(), bf16, batch_size, torch_compile)
        model, self.image_dim, self.backbone = build_backbone(backbone, weights_path)
        spec = backbone_spec(self.backbone)
        self.image_size, self.mean, self.std = spec.input_size, spec.mean, spec.std
        self.image_model = self._prepare(model, image=True)
        self.minilm = MiniLM()
        self.text_model = self._prepare(self.minilm, image=False)
        self.text_dim = MINILM_DIM
        self.name = f"baseline-{self.backbone}-minilm"
        self.text_kind = "minilm"

    def _image_signals(self, pixels: torch.Tensor, columns: Sequence[str]) -> dict[str, torch.Tensor]:
        return {"image_vec": self.image_model(pixels)}

    def _text_signals(self, texts: Sequence[str], columns: Sequence[str]) -> dict[str, torch.Tensor]:
        batch = self.minilm.tokenize(texts)
        return {"text_vec": self.text_model(**{k: v.to(self.device) for k, v in batch.items()})}


class CheckpointEncoder(Encoder):
    """A trained joint model saved by ``ml.training.train``."""

    joint = True

    def __init__(
        self,
        path: str | Path,
        device: torch.device | None = None,
        bf16: bool | None = None,
        batch_size: int = 64,
        torch_compile: bool = False,
    ) -> None:
        super().__init__(device or resolve_device(), bf16, batch_size, torch_compile)
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint")
        image_cfg = ImageTowerCfg.from_dict(ckpt["image_cfg"])
        image_cfg.backbone = ckpt["backbone"]  # the resolved one: never re-run the fallback
        # Checkpoints written before the GRU's sentence layer existed project the pooled states.
        text_cfg = TextTowerCfg.from_dict({"sentence_dim": 0, **ckpt["text_cfg"]})

        image_tower = ImageTower(image_cfg)
        missing, unexpected = image_tower.load_state_dict(ckpt["image_tower"], strict=False)
        if unexpected or any(k.startswith("head.") for k in missing):
            raise ValueError(f"{path}: image tower mismatch ({unexpected[:3]}, {missing[:3]})")
        vocab = Vocabulary(ckpt["vocab"]["extra_words"]) if ckpt.get("vocab") else None
        text_tower = build_text_tower(text_cfg, vocab=vocab)
        missing, unexpected = text_tower.load_state_dict(ckpt["text_tower"], strict=False)
        # MiniLM weights come from their package, everything else from the checkpoint.
        if unexpected or [k for k in missing if not k.startswith("minilm.")]:
            raise ValueError(f"{path}: text tower mismatch ({unexpected[:3]}, {missing[:3]})")

        self.text_tower: GRUTextTower | MiniLMTextTower = text_tower
        assert image_tower.backbone is not None
        # Backbone and head run separately: the backbone's pooled features are a signal too.
        self.backbone_model = self._prepare(image_tower.backbone, image=True)
        self.image_tower = image_tower
        self.head_model = self._prepare(image_tower.head, image=False)
        self.text_model = self._prepare(text_tower, image=False)
        # The pretrained sentence vectors: the MiniLM tower's own, else a MiniLM loaded beside the GRU.
        self.minilm = text_tower.minilm if isinstance(text_tower, MiniLMTextTower) else MiniLM()
        self.minilm_model = (
            self.minilm if isinstance(text_tower, MiniLMTextTower) else self._prepare(self.minilm, image=False)
        )
        self.image_feat_dim = image_tower.feat_dim
        self.text_feat_dim = MINILM_DIM
        spec = backbone_spec(image_cfg.backbone)
        self.image_size, self.mean, self.std = image_cfg.image_size, spec.mean, spec.std
        self.image_dim = self.text_dim = image_cfg.embed_dim
        self.backbone = image_cfg.backbone
        self.metrics: dict[str, float] = dict(ckpt.get("metrics") or {})
        self.name = f"{Path(path).stem}-{self.backbone}-{text_cfg.kind}"
        self.text_kind = text_cfg.kind

    image_columns = ("image_vec", "image_feat")
    text_columns = ("text_vec", "text_feat")

    def column_dims(self) -> dict[str, int]:
        return {**super().column_dims(), "image_feat": self.image_feat_dim, "text_feat": self.text_feat_dim}

    def _image_signals(self, pixels: torch.Tensor, columns: Sequence[str]) -> dict[str, torch.Tensor]:
        features = self.backbone_model(pixels)
        out = {"image_feat": features}
        if "image_vec" in columns:
            out["image_vec"] = self.head_model(F.normalize(features.float(), dim=-1))
        return out

    def signals_from_pretrained(
        self, image_feat: np.ndarray, text_feat: np.ndarray, texts: Sequence[str]
    ) -> dict[str, np.ndarray]:
        """All four signals from stored pretrained vectors (unit backbone features, MiniLM
        sentence vectors) of the same products: no backbone or MiniLM pass, only the heads
        and, for the GRU, the text tower. The results equal a full encode of the same inputs."""
        image = self.image_signals_from_features(image_feat)
        with self._lock, torch.inference_mode():
            if isinstance(self.text_tower, MiniLMTextTower):
                sentences = torch.from_numpy(np.ascontiguousarray(text_feat, np.float32)).to(self.device)
                text_vec = self.text_tower.forward_features(sentences).float().cpu().numpy()
        if not isinstance(self.text_tower, MiniLMTextTower):
            text_vec = self.encode_texts(texts)
        return {**image, "text_vec": _l2(text_vec), "text_feat": _l2(text_feat)}

    def image_signals_from_features(self, image_feat: np.ndarray) -> dict[str, np.ndarray]:
        """The image signals from stored unit backbone features: the head only, no backbone."""
        with self._lock, torch.inference_mode():
            feats = torch.from_numpy(np.ascontiguousarray(image_feat, np.float32)).to(self.device)
            image_vec = self.head_model(feats).float().cpu().numpy()
        return {"image_vec": _l2(image_vec), "image_feat": _l2(image_feat)}

    def _text_signals(self, texts: Sequence[str], columns: Sequence[str]) -> dict[str, torch.Tensor]:
        out = {}
        if "text_vec" in columns:
            batch = self.text_tower.tokenize(texts)
            out["text_vec"] = self.text_model(**{k: v.to(self.device) for k, v in batch.items()})
        if "text_feat" in columns:
            batch = self.minilm.tokenize(texts)
            out["text_feat"] = self.minilm_model(**{k: v.to(self.device) for k, v in batch.items()})
        return out


_cache: dict[tuple[str, str, int, bool], Encoder] = {}
_cache_lock = threading.Lock()


def load_encoder(
    spec: dict[str, Any], device: str | None = None, batch_size: int = 64, torch_compile: bool = False
) -> Encoder:
    """Return the process-wide encoder for ``spec``, loading it on first use.

    ``{"kind": "baseline", "backbone": "resnet50", "weights_path": None, "text": "minilm"}``
    or ``{"kind": "checkpoint", "path": "/path/model.pt"}``. Device: ``device``, else CUDA
    when available, else CPU. ``batch_size``: images or texts per forward pass;
    ``torch_compile``: run the towers through torch.compile. The site passes its settings
    (embeddings/registry.py).
    """
    dev = resolve_device(device)
    key = (json.dumps(spec, sort_keys=True, default=str), str(dev), batch_size, torch_compile)
    # Loaded already: no lock, so a search on the serving model never waits behind another
    # model being loaded (embeddings/warm.py loads the next one while search goes on).
    enc = _cache.get(key)
    if enc is not None:
        return enc
    with _cache_lock:
        enc = _cache.get(key)
        if enc is None:
            kind = spec.get("kind")
            if kind == "baseline":
                if spec.get("text", "minilm") != "minilm":
                    raise ValueError("baseline text encoder must be 'minilm'")
                enc = BaselineEncoder(
                    spec.get("backbone", "resnet50"),
                    spec.get("weights_path"),
                    dev,
                    batch_size=batch_size,
                    torch_compile=torch_compile,
                )
            elif kind == "checkpoint":
                enc = CheckpointEncoder(spec["path"], dev, batch_size=batch_size, torch_compile=torch_compile)
            else:
                raise ValueError(f"unknown encoder kind {kind!r}")
            logger.info("loaded encoder %s on %s", enc.name, dev)
            _cache[key] = enc
        return enc


def clear_encoder_cache() -> None:
    with _cache_lock:
        _cache.clear()


def encoder_info(enc: Encoder) -> dict[str, Any]:
    return {
        "name": enc.name,
        "backbone": enc.backbone,
        "image_dim": enc.image_dim,
        "text_dim": enc.text_dim,
        "joint": enc.joint,
        "device": str(enc.device),
        "bf16": enc.bf16,
    }
