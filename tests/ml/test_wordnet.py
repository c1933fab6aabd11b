from __future__ import annotations

import os
import random
import subprocess
import sys
import time

import pytest

from ml import wordnet
from ml.wordnet import alternatives, distillation_corpus, paraphrase, wordnet_available

pytestmark = pytest.mark.skipif(
    not wordnet_available(),
    reason="Debian package wordnet-base is not installed (make debian-data)",
)


def test_jeans_have_trouser_words() -> None:
    alts = alternatives("jeans")
    assert "denim" in alts
    assert {"trouser", "pant"} & set(alts)
    assert "jeans" not in alts and "jean" not in alts


def test_sneakers_are_gym_or_tennis_shoes() -> None:
    alts = alternatives("sneakers")
    assert alts[:2] == ["gym shoe", "tennis shoe"]
    assert "shoe" in alts  # the hypernym comes after the synonyms


def test_plural_is_looked_up_by_its_base_form_and_never_returned() -> None:
    alts = alternatives("boots")
    assert alts == alternatives("boot")
    assert "footwear" in alts
    assert not {"boot", "boots"} & set(alts)


def test_compound_with_a_hyphen_in_wordnet() -> None:
    # WordNet spells it "flip-flop"; only its first (most frequent) sense is used.
    assert alternatives("flip flops")[:1] == ["reversal"]


def test_lower_case_spaces_and_deterministic() -> None:
    alts = alternatives("Parka")
    assert alts == ["windbreaker", "windcheater", "anorak", "jacket"]
    assert all(a == a.lower() and "_" not in a for a in alternatives("handbag"))


def test_function_words_and_unknown_words_have_none() -> None:
    assert alternatives("in") == []
    assert alternatives("qwzxv") == []


def test_paraphrase_replaces_at_least_one_word() -> None:
    rng = random.Random(3)
    for _ in range(20):
        out = paraphrase(["dark", "parka"], rng)
        assert out is not None and len(out) == 2 and out != ["dark", "parka"]


def test_paraphrase_respects_avoid() -> None:
    rng = random.Random(0)
    avoid = {"jacket", "anorak", "windbreaker"}
    seen = set()
    for _ in range(30):
        out = paraphrase(["parka"], rng, avoid=avoid)
        assert out is not None
        seen.add(out[0])
    assert seen == {"windcheater"}
    assert paraphrase(["parka"], rng, avoid=avoid | {"windcheater"}) is None


def test_paraphrase_none_when_nothing_can_change() -> None:
    assert paraphrase(["qwzxv", "for"], random.Random(0)) is None


def test_paraphrase_deterministic_for_a_seed() -> None:
    words = ["striped", "sweater", "for", "winter"]
    assert paraphrase(words, random.Random(7)) == paraphrase(words, random.Random(7))


def test_distillation_corpus_sized_mixed_and_deterministic() -> None:
    start = time.perf_counter()
    corpus = distillation_corpus(60_000, seed=1)
    assert time.perf_counter() - start < 5
    assert len(corpus) == 60_000 and len(set(corpus)) == 60_000
    assert corpus == distillation_corpus(60_000, seed=1)
    assert corpus[:50] != distillation_corpus(60_000, seed=2)[:50]
    glosses = [t for t in corpus if len(t.split()) >= 4]
    assert 0.3 < len(glosses) / len(corpus) < 0.7
    assert max(len(t.split()) for t in corpus) <= 12
    phrases, _ = wordnet._corpus_pools()
    assert {"parka", "flip-flop", "blue jean"} <= set(phrases)
    assert distillation_corpus(10, seed=0) == distillation_corpus(10, seed=0)
    assert len(distillation_corpus(10, seed=0)) == 10


def test_same_order_under_any_hash_seed() -> None:
    code = "from ml.wordnet import alternatives as a; print(a('neon'), a('pink'))"
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outs) == 1


def test_related_terms_reach_two_levels_up_and_down() -> None:
    trousers = wordnet.related_terms("trousers")
    assert {"jean", "chino", "shorts", "clothing"} <= set(trousers)  # kinds of trousers; two levels up
    assert not set(alternatives("trousers")) & set(trousers)
    assert "footwear" in wordnet.related_terms("sneaker")  # sneaker -> shoe -> footwear
    assert {"parka", "anorak"} <= set(wordnet.related_terms("jacket"))


def test_related_terms_leave_out_words_that_mostly_mean_something_else() -> None:
    # "whites" (white trousers) and "flannels" are kinds of trousers, but "white" is a colour
    # and "flannel" a fabric first: a shopper typing them does not mean trousers.
    assert not {"white", "flannel"} & set(wordnet.related_terms("trousers"))


def test_related_terms_are_capped_and_deterministic() -> None:
    flowers = wordnet.related_terms("flower")
    assert len(flowers) == wordnet.MAX_RELATED
    assert flowers == wordnet.related_terms("flower")
    assert wordnet.related_terms("qwzxv") == [] and wordnet.related_terms("in") == []


def test_shopper_terms_add_narrower_nouns_and_similar_adjectives() -> None:
    trousers = wordnet.shopper_terms("trousers")
    assert trousers[: len(alternatives("trousers"))] == alternatives("trousers")  # nearest first
    assert {"jean", "chino", "denim"} <= set(trousers)  # kinds of trousers
    assert {"black", "dusky"} <= set(wordnet.shopper_terms("dark"))  # similar adjectives
    assert "pale" in wordnet.shopper_terms("light")
    assert len(trousers) == len(set(trousers)) and "trousers" not in trousers
    assert wordnet.shopper_terms("qwzxv") == [] and wordnet.shopper_terms("the") == []


def test_an_adjective_stands_for_its_adjective_sense_alone() -> None:
    plain = wordnet.shopper_terms("plain")
    assert "simple" in plain and not {"field", "land", "ground"} & set(plain)  # not the flat land
    assert "picket" not in wordnet.shopper_terms("pale")  # not the fence post
    assert "frock" in wordnet.shopper_terms("dress")  # a noun keeps its noun terms
