from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from ml.config import ImageTowerCfg, TextTowerCfg, TrainCfg
from ml.data import KnownFeatures, Record, read_catalogue_csv, split_by_product
from ml.encoders import clear_encoder_cache, load_encoder
from ml.features import extract_features
from ml.metrics import rank_by_similarity, recall_at_k
from ml.tokenizer import Vocabulary
from ml.towers import GRUTextTower, ImageTower
from ml.training import TrainResult, WeightAverage, _restore, train

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 60, 220),
    "yellow": (235, 210, 20),
    "purple": (130, 40, 160),
    "orange": (245, 130, 20),
    "black": (20, 20, 20),
    "pink": (250, 150, 190),
}
SHAPES = ["circle", "square", "triangle", "cross", "ring"]
SIZES = {"small": 0.35, "large": 0.8}


def draw(colour: str, shape: str, size: str, rng: random.Random, px: int = 64) -> bytes:
    img = Image.new("RGB", (px, px), tuple(rng.randint(225, 255) for _ in range(3)))
    d = ImageDraw.Draw(img)
    s = SIZES[size] * px * rng.uniform(0.9, 1.0)
    jitter = (0.8 - SIZES[size]) * px / 4
    cx, cy = px / 2 + rng.uniform(-jitter, jitter), px / 2 + rng.uniform(-jitter, jitter)
    box = (cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2)
    c = COLOURS[colour]
    if shape == "circle":
        d.ellipse(box, fill=c)
    elif shape == "square":
        d.rectangle(box, fill=c)
    elif shape == "triangle":
        d.polygon([(cx, box[1]), (box[0], box[3]), (box[2], box[3])], fill=c)
    elif shape == "cross":
        w = s / 5
        d.rectangle((cx - w, box[1], cx + w, box[3]), fill=c)
        d.rectangle((box[0], cy - w, box[2], cy + w), fill=c)
    else:
        d.ellipse(box, outline=c, width=max(2, int(s / 7)))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def shape_catalogue(seed: int = 0) -> list[Record]:
    """80 products whose text names exactly what the image shows."""
    rng = random.Random(seed)
    return [
        Record(
            sku=f"{size}-{colour}-{shape}",
            title=f"{size} {colour} {shape}",
            description=f"A {size} {colour} {shape} printed on a card.",
            category=shape,
            price=1.0,
            image_path=None,
            image_bytes=draw(colour, shape, size, rng),
        )
        for size in SIZES
        for colour in COLOURS
        for shape in SHAPES
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainResult, list[dict], list[Record]]:
    records = shape_catalogue()
    events: list[dict] = []
    result = train(
        records,
        ImageTowerCfg(backbone="efficientnet_lite0", image_size=96, embed_dim=64, head_hidden=128),
        TextTowerCfg(embed_dim=64, hidden=64, glove_words=20_000),
        TrainCfg(epochs=25, batch_size=32, lr=3e-3, val_fraction=0.25, patience=25, seed=0, distill_corpus=300),
        tmp_path_factory.mktemp("run"),
        progress=events.append,
    )
    return result, events, records


def train_shapes(out_dir: Path, **train_cfg) -> TrainResult:
    """The shape catalogue trained by small towers; `train_cfg` sets TrainCfg's other fields."""
    return train(
        shape_catalogue(),
        ImageTowerCfg(backbone="efficientnet_lite0", image_size=96, embed_dim=64, head_hidden=128),
        TextTowerCfg(embed_dim=64, hidden=64, glove_words=20_000),
        TrainCfg(batch_size=32, val_fraction=0.25, seed=0, distill_corpus=300, distill_epochs=1, **train_cfg),
        out_dir,
    )


def test_training_lowers_loss_and_raises_recall(trained) -> None:
    result, _, _ = trained
    first, last = result.history[0], result.history[-1]
    assert last["loss"] < first["loss"] - 0.03
    assert last["val_loss"] < first["val_loss"] - 0.03
    best_map = max(h["val_map@10"] for h in result.history)
    assert best_map > first["val_map@10"] + 0.15
    assert result.metrics["t2i_recall@10"] >= first["val_recall@10"]
    assert result.metrics["t2i_recall@5"] > 0.5  # 20 val products: chance is 0.25


def test_training_writes_small_checkpoint_and_curve(trained) -> None:
    result, events, _ = trained
    assert result.checkpoint_path.exists() and result.curve_png.exists()
    assert result.checkpoint_path.stat().st_size < 3_000_000  # GloVe table is not stored
    assert Image.open(result.curve_png).format == "PNG"
    assert result.backbone == "efficientnet_lite0"
    phases = {e["phase"] for e in events}
    assert phases == {"features", "distill", "train"}
    last = [e for e in events if e["phase"] == "train"][-1]
    assert set(last) >= {"epoch", "epochs", "loss", "val_recall@10", "done", "total"}


def test_feature_cache_reused(trained, tmp_path) -> None:
    result, _, _ = trained
    cache = result.checkpoint_path.parent / "feature_cache"
    cached = [p for p in cache.rglob("*.npy") if not p.name.startswith("minilm_targets")]
    assert len(cached) == 80  # one file per photo, every view in it
    # the distillation targets: the WordNet corpus's and the catalogue's, cached apart
    assert len(list(cache.glob("minilm_targets_*.npy"))) == 2


def test_trained_checkpoint_encodes_and_retrieves(trained) -> None:
    result, _, records = trained
    clear_encoder_cache()
    enc = load_encoder({"kind": "checkpoint", "path": str(result.checkpoint_path)}, device="cpu")
    assert enc.joint and enc.image_dim == enc.text_dim == 64 and enc.backbone == "efficientnet_lite0"
    _, val = split_by_product(records, 0.25, 0)
    images = [Image.open(io.BytesIO(r.image_bytes)) for r in val]  # type: ignore[arg-type]
    img = enc.encode_images(images)
    txt = enc.encode_texts([r.text for r in val])
    assert img.dtype == np.float32 and img.shape == (len(val), 64)
    assert np.allclose(np.linalg.norm(img, axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(txt, axis=1), 1, atol=1e-5)
    ranked = rank_by_similarity(txt, img, list(range(len(val))), 5)
    recall = np.mean([recall_at_k(r, {i}, 5) for i, r in enumerate(ranked)])
    assert recall > 0.5  # through the full pixel pipeline, unseen products


def test_read_catalogue_csv(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(draw("red", "circle", "small", random.Random(0)))
    (tmp_path / "cat.csv").write_text(
        "sku,title,description,category,price,image\n"
        'A1,Red circle,"Round, red",Shapes,9.50,img/a.png\n'
        "B2,Blue square,,Shapes,,\n"
    )
    recs = read_catalogue_csv(tmp_path / "cat.csv")
    assert recs[0].text == "Red circle. Round, red (Shapes)"
    assert recs[0].price == 9.5 and recs[0].image_path == (tmp_path / "img" / "a.png").resolve()
    assert recs[0].read_image()[:4] == b"\x89PNG"
    assert recs[1].image_path is None and recs[1].price is None


def test_split_by_product_is_deterministic_and_keeps_groups_together() -> None:
    recs = shape_catalogue()
    dup = Record("dup", recs[0].title, "other text", recs[0].category, None, None, b"")
    train_a, val_a = split_by_product(recs + [dup], 0.25, seed=3)
    train_b, val_b = split_by_product(recs + [dup], 0.25, seed=3)
    assert [r.sku for r in val_a] == [r.sku for r in val_b]
    assert len(val_a) in (20, 21)
    side = {r.sku: "val" for r in val_a} | {r.sku: "train" for r in train_a}
    assert side["dup"] == side[recs[0].sku]


def test_known_plain_view_features_spare_that_backbone_pass(tmp_path) -> None:
    records = shape_catalogue()[:6]
    tower = ImageTower(ImageTowerCfg(backbone="efficientnet_lite0", image_size=96))
    computed, ok = extract_features(records, tower, tmp_path / "a", views=3)
    assert ok == list(range(6)) and computed.shape == (6, 3, tower.feat_dim)

    rng = np.random.default_rng(0)
    stored = {r.sku: rng.normal(size=tower.feat_dim).astype(np.float32) for r in records}

    def fetch(skus):
        return {sku: stored[sku] for sku in skus}

    known = KnownFeatures("efficientnet_lite0", 96, fetch)
    reused, _ = extract_features(records, tower, tmp_path / "b", views=3, known=known)
    assert np.allclose(reused[:, 0], np.stack([stored[r.sku] for r in records]), atol=1e-2)  # cached as fp16
    assert np.allclose(reused[:, 1:], computed[:, 1:], atol=1e-2)  # the other views still computed

    # Features of another backbone or input size are never mixed in.
    for other in (KnownFeatures("resnet50", 96, fetch), KnownFeatures("efficientnet_lite0", 224, fetch)):
        again, _ = extract_features(
            records, tower, tmp_path / f"c-{other.backbone}-{other.image_size}", views=3, known=other
        )
        assert np.allclose(again, computed, atol=1e-2)


def test_late_phase_goes_on_from_the_best_checkpoint_with_the_lighter_weight(tmp_path) -> None:
    result = train_shapes(tmp_path, epochs=12, lr=3e-3, patience=2, late_distill_weight=0.05, late_epochs=3)
    first = [h for h in result.history if h["phase"] == 0]
    late = [h for h in result.history if h["phase"] == 1]
    assert first and all(h["distill_weight"] == 0.5 for h in first)
    assert 1 <= len(late) <= 3 and all(h["distill_weight"] == 0.05 for h in late)
    assert [h["epoch"] for h in result.history] == list(range(1, len(result.history) + 1))
    assert len(result.history) <= 12  # `epochs` bounds both phases together
    # The checkpoint is the best epoch over both phases.
    best = max(result.history, key=lambda h: (h["val_recall@10"], h["val_map@10"]))
    assert result.metrics["epoch"] == best["epoch"]


def test_restore_loads_the_saved_trained_weights(trained) -> None:
    result, _, _ = trained
    state = torch.load(result.checkpoint_path, map_location="cpu", weights_only=True)
    image_tower = ImageTower(
        ImageTowerCfg(backbone="efficientnet_lite0", image_size=96, embed_dim=64, head_hidden=128), backbone=False
    )
    text_tower = GRUTextTower(
        TextTowerCfg(embed_dim=64, hidden=64, glove_words=20_000), vocab=Vocabulary(state["vocab"]["extra_words"])
    )
    _restore(result.checkpoint_path, image_tower, text_tower)
    for name, value in state["image_tower"].items():
        assert torch.equal(image_tower.state_dict()[name], value)
    for name, value in state["text_tower"].items():
        assert torch.equal(text_tower.state_dict()[name], value)


def test_late_phase_stays_within_the_epochs_asked_for(tmp_path) -> None:
    result = train_shapes(tmp_path, epochs=2)
    assert [h["phase"] for h in result.history] == [0, 0]


def test_weight_average_follows_the_weights_and_swaps_in_and_out() -> None:
    layer = torch.nn.Linear(3, 2)
    params = list(layer.parameters())
    average = WeightAverage(params, half_life_steps=2.0)
    start = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p in params:
            p.add_(1.0)
    average.update()
    # The first update's decay is the warm-up's 2/11, not the half-life's 0.707.
    for avg, s in zip(average.average, start):
        assert torch.allclose(avg, s + 9 / 11)
    trained = [p.detach().clone() for p in params]
    with average.swapped_in():
        for p, avg in zip(params, average.average):
            assert torch.equal(p, avg)
    for p, t in zip(params, trained):
        assert torch.equal(p, t)  # the trained weights are back
    for _ in range(200):
        average.update()
    for avg, t in zip(average.average, trained):
        assert torch.allclose(avg, t, atol=1e-4)  # a constant weight is its own average
    average.reset()
    assert all(torch.equal(avg, t) for avg, t in zip(average.average, trained))


def test_training_with_a_weight_average_saves_the_averaged_weights(tmp_path) -> None:
    def image_head_after_one_epoch(half_life: float) -> dict[str, torch.Tensor]:
        result = train_shapes(tmp_path / str(half_life), epochs=1, ema_half_life=half_life)
        assert result.metrics["epoch"] == 1
        return torch.load(result.checkpoint_path, map_location="cpu", weights_only=True)["image_tower"]

    # The same seed trains the same weights both ways (the average draws no random numbers);
    # what is saved after the epoch is the trained weights without it, their average with it.
    trained, averaged = image_head_after_one_epoch(0.0), image_head_after_one_epoch(1.0)
    assert trained.keys() == averaged.keys()
    assert any(not torch.equal(trained[k], averaged[k]) for k in trained)
