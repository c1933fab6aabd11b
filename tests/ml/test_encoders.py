from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ml.config import ImageTowerCfg, TextTowerCfg, TrainCfg
from ml.encoders import CheckpointEncoder, clear_encoder_cache, encoder_info, load_encoder
from ml.towers import GRUTextTower, ImageTower
from ml.checkpoints import save_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    image_cfg = ImageTowerCfg(backbone="efficientnet_lite0", image_size=64, embed_dim=32, head_hidden=64)
    text_cfg = TextTowerCfg(embed_dim=32, hidden=16, glove_words=20_000)
    image_tower = ImageTower(image_cfg)
    text_tower = GRUTextTower(text_cfg, texts=["red flurbo", "blue hat"])
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, image_cfg, text_cfg, TrainCfg(), image_tower, text_tower, "efficientnet_lite0", {}, 1)
    return path


def images(n: int = 5) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (48 + 8 * i, 64, 3), dtype=np.uint8)) for i in range(n)]


def test_checkpoint_encoder_dims_and_norms(checkpoint: Path) -> None:
    enc = CheckpointEncoder(checkpoint, torch.device("cpu"))
    img = enc.encode_images(images())
    txt = enc.encode_texts(["red flurbo", "a crimson couch", ""])
    assert img.shape == (5, 32) and txt.shape == (3, 32)
    assert img.dtype == txt.dtype == np.float32
    assert np.allclose(np.linalg.norm(img, axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(txt, axis=1), 1, atol=1e-5)
    assert enc.encode_images([]).shape == (0, 32)
    assert checkpoint.stat().st_size < 2_000_000


def test_batching_does_not_change_results(checkpoint: Path) -> None:
    full = CheckpointEncoder(checkpoint, torch.device("cpu"), bf16=False)
    small = CheckpointEncoder(checkpoint, torch.device("cpu"), bf16=False, batch_size=2)
    assert small.batch_size == 2
    assert np.allclose(full.encode_images(images()), small.encode_images(images()), atol=1e-5)


def test_bf16_matches_fp32(checkpoint: Path) -> None:
    fp32 = CheckpointEncoder(checkpoint, torch.device("cpu"), bf16=False)
    bf16 = CheckpointEncoder(checkpoint, torch.device("cpu"), bf16=True)
    for a, b in (
        (fp32.encode_images(images()), bf16.encode_images(images())),
        (fp32.encode_texts(["red flurbo", "blue hat"]), bf16.encode_texts(["red flurbo", "blue hat"])),
    ):
        cosine = (a * b).sum(axis=1)
        assert cosine.min() >= 0.999, cosine


def test_load_encoder_caches_per_spec_and_device(checkpoint: Path) -> None:
    clear_encoder_cache()
    spec = {"kind": "checkpoint", "path": str(checkpoint)}
    a = load_encoder(spec, device="cpu")
    assert load_encoder(dict(spec), device="cpu") is a
    info = encoder_info(a)
    assert info["joint"] is True and info["image_dim"] == 32 and info["device"] == "cpu"
    assert info["backbone"] == "efficientnet_lite0"
    with pytest.raises(ValueError):
        load_encoder({"kind": "mystery"})


def test_baseline_encoder_is_not_joint() -> None:
    clear_encoder_cache()
    enc = load_encoder({"kind": "baseline", "backbone": "efficientnet_lite0", "text": "minilm"}, device="cpu")
    assert enc.joint is False and enc.image_dim == 1280 and enc.text_dim == 384
    img = enc.encode_images(images(2))
    txt = enc.encode_texts(["a red shoe", "crimson sneaker", "a bowl of hot soup"])
    assert img.shape == (2, 1280) and np.allclose(np.linalg.norm(img, axis=1), 1, atol=1e-5)
    assert txt[0] @ txt[1] > txt[0] @ txt[2] + 0.2  # MiniLM knows shoes from soup


def test_texts_come_back_in_their_order_whatever_their_lengths():
    enc = load_encoder({"kind": "baseline", "backbone": "efficientnet_lite0"}, device="cpu")
    texts = ["a long description of a red summer dress with thin straps", "boots", "a blue denim jacket", "hat"]
    together = enc.encode_texts(texts)
    alone = np.concatenate([enc.encode_texts([t]) for t in texts])
    assert np.allclose(together, alone, atol=1e-4)


def test_prepared_pixels_give_the_same_signals(checkpoint: Path) -> None:
    # The embed worker prepares the tower's input in a thread, then encodes it (embeddings/tasks.py).
    enc = CheckpointEncoder(checkpoint, torch.device("cpu"), bf16=False, batch_size=2)
    direct = enc.encode_image_signals(images())
    prepared = enc.encode_pixel_signals(enc.image_input(images()))
    assert set(direct) == set(prepared) == {"image_vec", "image_feat"}
    for column in direct:
        assert np.allclose(direct[column], prepared[column], atol=1e-6)
    assert enc.encode_pixel_signals(np.zeros((0, 3, 64, 64), np.float32))["image_vec"].shape == (0, 32)
