"""Probe queries made from held-out products of a catalogue, for fitting fusion weights and
for the activation gate (catalog/gate.py). Pure Python: no Django, no torch.

Shops rarely have query logs, so the probes are made from products the model did not train
on, one per product and kind:

- ``keyword``: 1–3 consecutive content words of the product's title, as a shopper types
  them. Relevant: every product whose text contains all those words (the source included).
- ``paraphrase``: the same words with at least one replaced by a WordNet synonym or broader
  term that the catalogue never uses ("coat" -> "overgarment"), same relevant set: keyword
  search cannot answer it, only meaning can.
- ``nodesc``: the keyword query matched against the photos alone (text->photo), as if the
  products had no texts. Only a joint model can answer it.
- ``photo``: a perturbed copy (crop, rotation, brightness, JPEG) of the product's photo.
  Relevant: that product and exact duplicates of its photo. Metric R@1.
- ``photo_similar``: the same perturbed photo, the source product left out of the ranking.
  Relevant: the other products of its category (a photo of an item the shop lacks).
- ``photo_words``: the same perturbed photo plus one word of the product's title that
  narrows it ("like this, but <word>"). Relevant: the products of its category whose title
  has that word. The word is not in the category's name and is in the titles of 2 to
  ``PHOTO_WORDS_MAX_RELEVANT`` products of the category, fewer than all of them: the photo
  alone finds look-alikes of any kind, the word alone that word in every category; only the
  two together find the set.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from ml import wordnet

KINDS = ("keyword", "paraphrase", "nodesc", "photo", "photo_similar", "photo_words")
METRIC = {
    "keyword": "map@10",
    "paraphrase": "map@10",
    "nodesc": "map@10",
    "photo": "r@1",
    "photo_similar": "map@10",
    "photo_words": "map@10",
}
TEXT_KINDS = ("keyword", "paraphrase")  # words alone
PHOTO_KINDS = ("photo", "photo_similar")  # a photo alone
WITH_PHOTO = PHOTO_KINDS + ("photo_words",)  # every kind whose query holds a photo
PHOTO_WORDS_MAX_RELEVANT = 30

_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
# Words a shopper would not type alone; they describe nearly everything.
STOPWORDS = frozenset(
    "a an and are as at be by for from in into is it of on or the this that to with without very "
    "its their our your new one two three set pack piece pair item product style size".split()
)
MAX_RELEVANT_FRACTION = 0.2  # a query matching more of the catalogue says little


@dataclass(frozen=True)
class ProbeItem:
    sku: str
    title: str
    category: str
    text: str  # everything the shop wrote about it (title, description, category)
    image_hash: str = ""


@dataclass(frozen=True)
class Probe:
    kind: str
    sku: str  # the held-out product it was made from
    relevant: frozenset[str]
    text: str = ""  # words (text kinds)
    seed: int = 0  # perturbation seed (photo kinds): the same probe always gets the same photo
    exclude: frozenset[str] = field(default_factory=frozenset)  # left out of the ranking

    @property
    def metric(self) -> str:
        return METRIC[self.kind]


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def _stem(word: str) -> str:
    # Crude plural folding so "boots" matches "boot"; enough for containment tests.
    if len(word) > 3 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("es") and word[-3] in "sxz":
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def content_words(text: str) -> list[str]:
    return [w for w in words(text) if len(w) > 2 and w not in STOPWORDS]


def build_probes(
    catalogue: Sequence[ProbeItem], heldout: Sequence[str], seed: int = 0, per_kind: int = 100
) -> list[Probe]:
    """Up to ``per_kind`` probes of each kind from the held-out skus (deterministic)."""
    rng = random.Random(seed)
    by_sku = {item.sku: item for item in catalogue}
    stems = {item.sku: {_stem(w) for w in words(item.text)} for item in catalogue}
    vocabulary = {w for item in catalogue for w in words(item.text)}
    vocabulary |= {_stem(w) for w in vocabulary}
    by_category: dict[str, set[str]] = defaultdict(set)
    by_image: dict[str, set[str]] = defaultdict(set)
    titled: dict[tuple[str, str], set[str]] = defaultdict(set)  # (category, title word stem) -> skus
    for item in catalogue:
        by_category[item.category].add(item.sku)
        if item.image_hash:
            by_image[item.image_hash].add(item.sku)
        for w in content_words(item.title):
            titled[(item.category, _stem(w))].add(item.sku)
    limit = max(1, int(MAX_RELEVANT_FRACTION * len(catalogue)))

    def described_by(query_words: Sequence[str]) -> frozenset[str]:
        wanted = {_stem(w) for w in query_words}
        return frozenset(sku for sku, have in stems.items() if wanted <= have)

    skus = [s for s in heldout if s in by_sku]
    rng.shuffle(skus)
    out: dict[str, list[Probe]] = {kind: [] for kind in KINDS}
    for sku in skus:
        item = by_sku[sku]
        title_words = content_words(item.title)
        if title_words and len(out["keyword"]) < per_kind:
            size = rng.choice([1, 2, 2, 3, 3]) if len(title_words) > 1 else 1
            size = min(size, len(title_words))
            start = rng.randrange(len(title_words) - size + 1)
            query = title_words[start : start + size]
            relevant = described_by(query)
            if sku in relevant and len(relevant) <= limit:
                text = " ".join(query)
                out["keyword"].append(Probe("keyword", sku, relevant, text=text))
                out["nodesc"].append(Probe("nodesc", sku, relevant, text=text))
                other = wordnet.paraphrase(query, rng, avoid=vocabulary) if wordnet.wordnet_available() else None
                if other and len(out["paraphrase"]) < per_kind:
                    out["paraphrase"].append(Probe("paraphrase", sku, relevant, text=" ".join(other)))
        if len(out["photo"]) < per_kind:
            photo_seed = rng.randrange(2**31)
            same_photo = by_image.get(item.image_hash, set()) | {sku}
            out["photo"].append(Probe("photo", sku, frozenset(same_photo), seed=photo_seed))
            siblings = by_category[item.category] - same_photo
            if siblings:
                out["photo_similar"].append(
                    Probe("photo_similar", sku, frozenset(siblings), seed=photo_seed, exclude=frozenset(same_photo))
                )
            category_stems = {_stem(w) for w in words(item.category)}
            narrowing = sorted(
                w
                for w in set(content_words(item.title))
                if _stem(w) not in category_stems
                and 2
                <= len(titled[(item.category, _stem(w))])
                <= min(PHOTO_WORDS_MAX_RELEVANT, len(by_category[item.category]) - 1)
            )
            if narrowing:
                word = random.Random(photo_seed).choice(narrowing)  # its own draw: the other kinds stay as they were
                relevant = frozenset(titled[(item.category, _stem(word))])
                out["photo_words"].append(Probe("photo_words", sku, relevant, text=word, seed=photo_seed))
    return [p for kind in KINDS for p in out[kind][:per_kind]]


def split_halves(probes: Sequence[Probe]) -> tuple[list[Probe], list[Probe]]:
    """Two disjoint halves by source product: one to fit fusion weights, one to judge."""
    skus = sorted({p.sku for p in probes})
    random.Random(1).shuffle(skus)
    fit_skus = set(skus[: len(skus) // 2])
    return [p for p in probes if p.sku in fit_skus], [p for p in probes if p.sku not in fit_skus]
