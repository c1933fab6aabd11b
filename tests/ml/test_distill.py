from __future__ import annotations

import numpy as np
import torch

from ml.config import TextTowerCfg
from ml.distill import Distiller, distillation_targets, teacher_vectors
from ml.towers import GRUTextTower

TEXTS = [
    "blue jeans",
    "denim trousers",
    "flip flops",
    "beach sandals",
    "parka",
    "winter coat",
    "running shoes",
    "trainers",
    "leather handbag",
    "tote bag",
    "summer dress",
    "frock",
]


def tiny_tower() -> GRUTextTower:
    torch.manual_seed(0)
    cfg = TextTowerCfg(vocab_source="none", word_dim=16, hidden=32, embed_dim=16, min_count=1, dropout=0.0)
    return GRUTextTower(cfg, texts=TEXTS)


def test_distillation_lowers_its_loss_on_a_small_corpus():
    targets = np.random.default_rng(0).normal(size=(len(TEXTS), 24)).astype(np.float32)
    distiller = Distiller(tiny_tower(), TEXTS, targets, seed=0)
    with torch.no_grad():
        before = distiller.loss(range(len(TEXTS))).item()
    history = distiller.pretrain(epochs=60, batch_size=4, lr=5e-3)
    with torch.no_grad():
        after = distiller.loss(range(len(TEXTS))).item()
    assert history[-1] < history[0]
    assert after < 0.5 * before


def test_teacher_vectors_are_cached_by_the_texts(tmp_path):
    calls = []

    def encode(batch):
        calls.append(len(batch))
        return np.ones((len(batch), 8), np.float32)

    first = teacher_vectors(TEXTS, encode, tmp_path, chunk=5)
    again = teacher_vectors(TEXTS, encode, tmp_path, chunk=5)
    assert calls == [5, 5, 2]  # the second call read the cache
    assert np.allclose(first, again)
    teacher_vectors(TEXTS[:3], encode, tmp_path)
    assert calls[-1] == 3  # other texts, other cache entry


def test_a_sentence_layer_is_what_distillation_trains_and_what_the_projection_reads():
    torch.manual_seed(0)
    cfg = TextTowerCfg(vocab_source="none", word_dim=16, hidden=32, embed_dim=16, dropout=0.0, sentence_dim=24)
    tower = GRUTextTower(cfg, texts=TEXTS)
    targets = np.random.default_rng(0).normal(size=(len(TEXTS), 24)).astype(np.float32)
    distiller = Distiller(tower, TEXTS, targets, seed=0)
    assert distiller.head is tower.sentence  # kept in the tower, so in its checkpoint
    assert tower.proj.in_features == 24
    distiller.pretrain(epochs=60, batch_size=4, lr=5e-3)
    with torch.no_grad():
        ids = tower.tokenize(TEXTS)
        sentence = torch.nn.functional.normalize(tower.sentence(tower.pooled(ids["ids"], ids["lengths"])), dim=-1)
        expected = torch.nn.functional.normalize(tower.proj(sentence), dim=-1)
        assert torch.allclose(tower(ids["ids"], ids["lengths"]), expected, atol=1e-5)
        # The trained layer reproduces the targets: its vectors are closest to their own target.
        target = torch.nn.functional.normalize(torch.from_numpy(targets), dim=-1)
        assert (sentence @ target.T).argmax(dim=1).eq(torch.arange(len(TEXTS))).float().mean() > 0.8


def test_teacher_vectors_come_back_in_the_texts_order(tmp_path):
    def encode(batch):  # a vector that names its text: its length and first letter
        return np.array([[len(t), ord(t[0])] for t in batch], np.float32)

    vectors = teacher_vectors(TEXTS, encode, None, chunk=5)
    assert vectors.tolist() == [[len(t), ord(t[0])] for t in TEXTS]


def test_computed_teacher_vectors_equal_the_cached_ones_exactly(tmp_path):
    # Half precision on disk: the run that computes the targets must see the same numbers
    # as later runs that read them, or two trainings from one seed differ.
    rng = np.random.default_rng(0)

    def encode(batch):
        return rng.standard_normal((len(batch), 8)).astype(np.float32) / 3

    computed = teacher_vectors(TEXTS, encode, tmp_path)
    assert np.array_equal(computed, teacher_vectors(TEXTS, encode, tmp_path))


def test_the_corpus_targets_are_cached_apart_from_the_catalogue_ones(tmp_path):
    encoded = []

    def encode(batch):
        encoded.extend(batch)
        return np.stack([np.full(8, len(t), np.float32) for t in batch])

    corpus, catalogue = TEXTS[:8], [*TEXTS[6:], "red scarf"]
    texts, targets = distillation_targets(corpus, catalogue, encode, tmp_path)
    assert texts == [*TEXTS, "red scarf"]  # the corpus, then the catalogue's texts it lacks
    assert [row[0] for row in targets] == [len(t) for t in texts]
    encoded.clear()
    # The catalogue changes: only its own texts are encoded again, the corpus is read back.
    texts, targets = distillation_targets(corpus, [*catalogue, "wool hat"], encode, tmp_path)
    assert sorted(encoded) == sorted([*TEXTS[8:], "red scarf", "wool hat"])
    assert [row[0] for row in targets] == [len(t) for t in texts]
