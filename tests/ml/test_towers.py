from __future__ import annotations

import logging
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ml.backbones import backbone_spec, build_backbone, efficientnet_lite_classifier
from ml.config import ImageTowerCfg, TextTowerCfg
from ml.glove import load_glove
from ml.tokenizer import UNK, Vocabulary, tokenize
from ml.towers import GRUTextTower, ImageTower
from ml.transforms import open_image, to_model_input

MPL_SAMPLE = Path(__import__("matplotlib").get_data_path()) / "sample_data" / "grace_hopper.jpg"
PENGUIN = Path("/usr/share/openclipart/png/animals/emperor_penguin_ralf_ste_01.png")


def small_text_cfg(**kw: object) -> TextTowerCfg:
    base = dict(embed_dim=16, word_dim=50, hidden=8, max_len=12, vocab_source="none", dropout=0.0)
    base.update(kw)
    return TextTowerCfg(**base)  # type: ignore[arg-type]


def test_tokenize_words_and_numbers() -> None:
    assert tokenize("USB-C cable, 2m (Black)") == ["usb", "c", "cable", "2", "m", "black"]


def test_image_tower_shapes_and_norm() -> None:
    tower = ImageTower(ImageTowerCfg(backbone="efficientnet_lite0", embed_dim=32, head_hidden=64)).eval()
    with torch.no_grad():
        out = tower(torch.randn(2, 3, 64, 64))
        head_only = tower.forward_features(torch.randn(3, tower.feat_dim))
    assert out.shape == (2, 32) and head_only.shape == (3, 32)
    assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)
    assert torch.allclose(head_only.norm(dim=1), torch.ones(3), atol=1e-5)


def test_gru_shapes_and_norm() -> None:
    tower = GRUTextTower(small_text_cfg(), texts=["red shoe", "blue hat"]).eval()
    with torch.no_grad():
        out = tower(**tower.tokenize(["red shoe", "blue hat with a long brim", ""]))
    assert out.shape == (3, 16)
    assert torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-5)


def test_gru_max_pool_ignores_padding() -> None:
    torch.manual_seed(0)
    tower = GRUTextTower(small_text_cfg(), texts=["red shoe", "a very long text about blue hats"]).eval()
    with torch.no_grad():
        alone = tower(**tower.tokenize(["red shoe"]))
        padded = tower(**tower.tokenize(["red shoe", "a very long text about blue hats"]))[:1]
        # Changing the ids stored in padding slots must not matter either.
        batch = tower.tokenize(["red shoe", "a very long text about blue hats"])
        batch["ids"][0, 2:] = 3
        garbage = tower(**batch)[:1]
    assert torch.allclose(alone, padded, atol=1e-6)
    assert torch.allclose(alone, garbage, atol=1e-6)


def test_glove_gives_unseen_words_pretrained_vectors() -> None:
    cfg = small_text_cfg(vocab_source="glove6b50d", glove_words=20_000)
    tower = GRUTextTower(cfg, texts=["red zorblaxian shoe"])
    assert tower.vocab.extra_words == ["zorblaxian"]  # only non-GloVe words get own vectors
    ids = tower.vocab.ids("crimson couch qqqzzz", 12)  # words never seen in the catalogue
    assert ids[0] >= tower.vocab.n_trainable and ids[1] >= tower.vocab.n_trainable and ids[2] == UNK
    words, vectors = load_glove(20_000)
    emb = tower.embed(torch.tensor([ids[:2]]))[0].detach().numpy()
    # Initial correction is the identity: embeddings are (scaled) GloVe vectors.
    cos = lambda a, b: float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))  # noqa: E731
    assert cos(emb[0], vectors[words.index("crimson")]) > 0.999
    # The frozen table is not part of the state dict, so checkpoints stay small.
    assert not any("pretrained" in k for k in tower.state_dict())


def test_vocab_roundtrip() -> None:
    vocab = Vocabulary.build(["blue widget", "widget gizmo"], pretrained_words=["blue"], min_count=2)
    assert vocab.extra_words == ["widget"]
    again = Vocabulary(vocab.to_dict()["extra_words"], ["blue"])
    assert again.ids("blue widget gizmo", 8) == vocab.ids("blue widget gizmo", 8) == [3, 2, UNK]


def test_resnet50_offline_falls_back_loudly(monkeypatch, caplog) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", offline)
    with caplog.at_level(logging.WARNING), pytest.warns(RuntimeWarning, match="falling back to efficientnet_lite0"):
        model, dim, used = build_backbone("resnet50")
    assert used == "efficientnet_lite0" and dim == 1280
    assert "no network" in caplog.text
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1280)


def test_resnet50_missing_weights_file_falls_back(tmp_path) -> None:
    with pytest.warns(RuntimeWarning, match="resnet50 weights unavailable"):
        _, _, used = build_backbone("resnet50", weights_path=str(tmp_path / "missing.pth"))
    assert used == "efficientnet_lite0"


def test_unknown_backbone_rejected() -> None:
    with pytest.raises(ValueError):
        build_backbone("vgg11")


def _top5(model: torch.nn.Module, path: Path, name: str) -> list[str]:
    from torchvision.models import ResNet50_Weights

    categories = ResNet50_Weights.IMAGENET1K_V2.meta["categories"]
    spec = backbone_spec(name)
    x = torch.from_numpy(to_model_input([open_image(path)], spec.input_size, spec.mean, spec.std))
    with torch.no_grad():
        top = model(x)[0].topk(5).indices.tolist()
    return [categories[i] for i in top]


def test_efficientnet_lite0_weights_classify_known_images() -> None:
    model = efficientnet_lite_classifier("efficientnet_lite0")
    assert "military uniform" in _top5(model, MPL_SAMPLE, "efficientnet_lite0")
    if PENGUIN.exists():
        assert _top5(model, PENGUIN, "efficientnet_lite0")[0] == "king penguin"
    # A wrong positional mapping would not survive this check.
    noise = Image.effect_noise((224, 224), 80).convert("RGB")
    spec = backbone_spec("efficientnet_lite0")
    with torch.no_grad():
        conf = (
            model(torch.from_numpy(to_model_input([open_image(MPL_SAMPLE)], 224, spec.mean, spec.std)))
            .softmax(-1)
            .max()
        )
        noise_conf = model(torch.from_numpy(to_model_input([noise], 224, spec.mean, spec.std))).softmax(-1).max()
    assert conf > noise_conf
