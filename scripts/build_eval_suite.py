#!/usr/bin/env python3
"""Build Vitrine's evaluation suite: three catalogues from different offline sources,
each with query sets that do not copy the catalogue's wording.

Usage::

    .venv/bin/python scripts/build_eval_suite.py --out var/evalsuite [--tiny] [--only fashion,emoji]

Every catalogue goes to ``OUT/<name>/``: ``catalogue.csv`` (sku,title,description,
category,price,image; image paths relative to the CSV), ``catalogue-nodesc.csv`` (the
same rows, descriptions empty), ``images/``, ``queries.jsonl``, ``queries/`` (query
photos) and ``README.md`` (sources, licences, relevance rules). Deterministic: every
random choice comes from a seeded generator. Nothing is written outside ``OUT``.

Sources (Debian packages, no downloads; ``make debian-data`` installs them):
  fashion  dataset-fashion-mnist   (MIT, Zalando SE), via scripts/build_demo_catalogue.py
  emoji    fonts-noto-color-emoji  (SIL OFL 1.1 font, Apache-2.0 images) + unicode-cldr-core
  clipart  openclipart-png         (public domain)
WordNet (wordnet-base) supplies paraphrases; ml/perturb.py makes photo queries.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import random
import re
import shutil
import struct
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import build_demo_catalogue as demo

from ml import wordnet
from ml.perturb import perturb

HEADER = ["sku", "title", "description", "category", "price", "image"]
KINDS = ("keyword", "paraphrase", "photo", "unseen_photo", "photo_words")
EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
CLDR_DIR = Path("/usr/share/unicode/cldr/common")
OPENCLIPART_DIR = Path("/usr/share/openclipart/png")
SEED = 20261124


@dataclass(frozen=True)
class Size:
    fashion_per_class: int
    emoji: int
    clipart: int
    queries: int  # per kind
    unseen_per_class: int


FULL = Size(fashion_per_class=200, emoji=1500, clipart=800, queries=150, unseen_per_class=15)
TINY = Size(fashion_per_class=6, emoji=60, clipart=60, queries=10, unseen_per_class=1)


@dataclass
class Catalogue:
    name: str
    rows: list[list[str]] = field(default_factory=list)
    queries: list[dict] = field(default_factory=list)
    readme: str = ""


# ---------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------
def sources_missing() -> list[str]:
    """Debian packages whose data is not on disk."""
    checks = {
        "dataset-fashion-mnist": demo.FMNIST_DIR / "train-images-idx3-ubyte.gz",
        "fonts-noto-color-emoji": EMOJI_FONT,
        "unicode-cldr-core": CLDR_DIR / "annotations" / "en.xml",
        "openclipart-png": OPENCLIPART_DIR,
        "wordnet-base": wordnet.wordnet_dir() / "data.noun",
    }
    return [pkg for pkg, path in checks.items() if not path.exists()]


def words_of(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower())


def vocabulary(rows: Iterable[Sequence[str]]) -> set[str]:
    """Every word of every title, description and category: what a paraphrase must avoid."""
    return {w for r in rows for w in words_of(f"{r[1]} {r[2]} {r[3]}")}


def catalogue_text(rows: Iterable[Sequence[str]]) -> list[str]:
    return [f" {' '.join(words_of(r[1] + ' ' + r[2]))} " for r in rows]


def occurs_in(phrase: str, texts: list[str]) -> bool:
    """Whether the phrase occurs word-for-word in a catalogue title or description."""
    needle = f" {' '.join(words_of(phrase))} "
    return any(needle in t for t in texts)


def price(rng: random.Random, lo: float, hi: float) -> str:
    return f"{int(rng.uniform(lo, hi)) + rng.choice([0.99, 0.49, 0.95, 0.0]):.2f}"


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def take(rng: random.Random, items: Sequence, n: int) -> list:
    """A seeded sample of up to n items, in sample order."""
    return rng.sample(list(items), min(n, len(items)))


def photo_queries(rng: random.Random, rows: list[list[str]], cat_dir: Path, n: int) -> list[dict]:
    """Perturbed copies of catalogue photos; relevant = that product and exact duplicates."""
    by_hash: dict[str, list[str]] = defaultdict(list)
    digest = {}
    for r in rows:
        digest[r[0]] = hashlib.sha256((cat_dir / r[5]).read_bytes()).hexdigest()
        by_hash[digest[r[0]]].append(r[0])
    out = []
    for k, r in enumerate(take(rng, rows, n), start=1):
        with Image.open(cat_dir / r[5]) as img:
            query = perturb(img, rng)
        name = f"queries/photo-{k:03d}.png"
        (cat_dir / name).write_bytes(png_bytes(query))
        out.append({"kind": "photo", "image": name, "relevant": by_hash[digest[r[0]]]})
    return out


# Words too common in titles to narrow anything ("a bag with a strap").
STOPWORDS = {"a", "an", "and", "the", "of", "with", "in", "on", "for", "by", "to", "or", "at"}
PHOTO_WORDS_RULES = """
- **photo_words** (photo + words): a catalogue photo perturbed as for **photo**, plus one word
  of that product's title that narrows it; relevant = the products of the same category
  whose title has that word (the product itself included). The word is not the category's
  own name and is in the titles of 2 to 30 products of the category, and fewer than all of
  them; products without such a word are skipped. The photo alone finds the product and its
  look-alikes of any kind; the word alone finds the word in every category; only the two
  together find the set. Drawn with its own seeded generator, so the other kinds are the
  same as without it. Scored by MAP@10; `manage.py eval_suite --text-weights` scores it
  for a grid of `text_weight` values (docs/evaluation.md).
"""


def photo_words_queries(rng: random.Random, rows: list[list[str]], cat_dir: Path, n: int) -> list[dict]:
    """Perturbed catalogue photos plus a narrowing title word (PHOTO_WORDS_RULES)."""
    titled: dict[tuple[str, str], list[str]] = defaultdict(list)  # (category, word) -> skus
    for r in rows:
        for w in set(words_of(r[1])):
            titled[(r[3], w)].append(r[0])
    per_category = Counter(r[3] for r in rows)
    out: list[dict] = []
    for r in take(rng, rows, len(rows)):
        if len(out) >= n:
            break
        category_words = set(words_of(r[3]))
        words = sorted(
            w
            for w in set(words_of(r[1]))
            if w not in STOPWORDS
            and w not in category_words
            and not w.isdigit()
            and 2 <= len(titled[(r[3], w)]) <= min(30, per_category[r[3]] - 1)
        )
        if not words:
            continue
        word = rng.choice(words)
        with Image.open(cat_dir / r[5]) as img:
            query = perturb(img, rng)
        name = f"queries/photowords-{len(out) + 1:03d}.png"
        (cat_dir / name).write_bytes(png_bytes(query))
        out.append({"kind": "photo_words", "image": name, "query": word, "relevant": sorted(titled[(r[3], word)])})
    return out


def paraphrase_queries(
    rng: random.Random,
    bases: Sequence[tuple[str, list[str]]],
    rows: list[list[str]],
    n: int,
    taken: Iterable[str] = (),
) -> list[dict]:
    """WordNet paraphrases of (wording, relevant) pairs: each replaces at least one word
    by a synonym or broader term that is in no catalogue text."""
    avoid = vocabulary(rows)
    texts = catalogue_text(rows)
    seen = set(taken)
    out: list[dict] = []
    for wording, relevant in take(rng, bases, len(bases)):
        if len(out) >= n:
            break
        words = wordnet.paraphrase(wording.split(), rng, avoid=avoid)
        if words is None:
            continue
        query = " ".join(words)
        # WordNet's numerals ("xii") and codes read like no shopper's words.
        digits = any(c.isdigit() for c in query) and not any(c.isdigit() for c in wording)
        if query in seen or digits or len(query.split()) > 4 or occurs_in(query, texts):
            continue
        seen.add(query)
        out.append({"kind": "paraphrase", "query": query, "relevant": relevant})
    return out


def write_catalogue(out: Path, cat: Catalogue) -> None:
    for name, blank in (("catalogue.csv", False), ("catalogue-nodesc.csv", True)):
        with open(out / name, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(HEADER)
            for r in cat.rows:
                w.writerow(r[:2] + [""] + r[3:] if blank else r)
    with open(out / "queries.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(q, ensure_ascii=False) + "\n" for q in cat.queries)
    (out / "README.md").write_text(cat.readme, encoding="utf-8")


def counts_line(cat: Catalogue) -> str:
    per_kind = {k: sum(q["kind"] == k for q in cat.queries) for k in KINDS}
    return ", ".join(f"{k} {v}" for k, v in per_kind.items() if v)


COMMON_RULES = """\
`queries.jsonl` holds one JSON object per line: `{"kind": K, "query": "words", "relevant":
[sku, ...]}` or `{"kind": K, "image": "queries/x.png", "relevant": [...]}` (paths relative
to this folder). `relevant` lists every relevant SKU. `catalogue-nodesc.csv` has the same
rows with empty descriptions (text→photo only).

- **paraphrase**: the same need in other words; relevant = the set of the wording it
  paraphrases. No paraphrase occurs word-for-word in any catalogue title or description.
- **photo**: a catalogue photo perturbed by `ml/perturb.py` (crop keeping 75–95% of
  each side, rotation within ±15°, brightness ×0.7–1.3, JPEG quality 40–85), saved as PNG;
  relevant = that product and any product with a byte-identical image.
"""


# ---------------------------------------------------------------------------
# Fashion: Fashion-MNIST through the demo's generator, items not in the demo
# ---------------------------------------------------------------------------
# Shop words for the keyword kind: the catalogue's own nouns and attribute words.
FASHION_KEYWORD_NOUNS = {
    demo.TSHIRT: ["t-shirt", "tee", "top"],
    demo.TROUSER: ["trousers", "pants"],
    demo.PULLOVER: ["pullover", "jumper"],
    demo.DRESS: ["dress"],
    demo.COAT: ["coat", "overcoat"],
    demo.SANDAL: ["sandals"],
    demo.SHIRT: ["shirt"],
    demo.SNEAKER: ["sneakers", "trainers"],
    demo.BAG: ["bag", "carryall"],
    demo.BOOT: ["ankle boots", "booties"],
}
FASHION_KEYWORD_ATTRS = {
    ("tone", "dark"): ["dark", "deep"],
    ("tone", "mid"): ["medium"],
    ("tone", "light"): ["light", "pale"],
    ("pattern", "plain"): ["plain", "solid"],
    ("pattern", "patterned"): ["patterned", "textured"],
    ("pattern", "striped"): ["striped"],
    ("shape", "slim"): ["slim", "narrow"],
    ("shape", "wide"): ["roomy", "wide"],
}
# Shoppers' words for the paraphrase kind: none is catalogue vocabulary.
FASHION_SHOPPER_NOUNS = {
    demo.TSHIRT: ["tshirt", "tee shirt", "tank top", "graphic tee"],
    demo.TROUSER: ["jeans", "denim", "chinos", "slacks", "leggings", "joggers"],
    demo.PULLOVER: ["sweater", "knitwear", "hoodie", "sweatshirt", "cardigan"],
    demo.DRESS: ["frock", "gown", "sundress", "maxi"],
    demo.COAT: ["parka", "jacket", "anorak", "raincoat", "winter jacket"],
    demo.SANDAL: ["flip flops", "slides", "sliders", "beach shoes"],
    demo.SHIRT: ["blouse", "button-down", "oxford shirt", "flannel"],
    demo.SNEAKER: ["running shoes", "gym shoes", "tennis shoes", "kicks", "sport shoes"],
    demo.BAG: ["handbag", "purse", "tote", "satchel", "shoulder bag"],
    demo.BOOT: ["chelsea boots", "winter boots", "short boots", "heeled booties"],
}
FASHION_SHOPPER_ATTRS = {
    ("tone", "dark"): ["black", "charcoal", "navy"],
    ("tone", "light"): ["white", "cream", "ivory"],
    ("pattern", "patterned"): ["printed", "graphic", "floral"],
    ("pattern", "striped"): ["stripy", "breton", "pinstripe"],
    ("pattern", "plain"): ["unprinted", "block colour"],
    ("shape", "slim"): ["skinny", "fitted"],
    ("shape", "wide"): ["oversized", "baggy", "loose"],
}


def demo_indices(Ytr: np.ndarray) -> set[int]:
    """Train-split indices the demo catalogue and its fixtures use (replaying its seeds)."""
    rng = np.random.default_rng(demo.SEED)
    used = {int(i) for c in range(10) for i in rng.choice(np.where(Ytr == c)[0], demo.PER_CLASS, replace=False)}
    frng = np.random.default_rng(demo.SEED + 1)
    small = set()
    for c in (demo.TSHIRT, demo.TROUSER, demo.SNEAKER, demo.BAG):
        pool = [i for i in np.where(Ytr == c)[0] if i not in used]
        small |= {int(i) for i in frng.choice(pool, 10, replace=False)}
    bad = {int(np.where(Ytr == c)[0][0]) for c in range(10)}
    return used | small | bad


def fashion_combos(
    nouns: dict, attrs: dict, products: list[dict], shaped: Iterable[int] = tuple(demo.SHAPE_WORDS)
) -> list[tuple[str, list[str]]]:
    """Every 'noun' and 'attribute noun' wording with a non-empty relevant set; shape
    words only for the classes in ``shaped``."""
    shaped = set(shaped)
    out = []
    for label, words in nouns.items():
        for noun in words:
            rel = [p["sku"] for p in products if demo.matches(p, [label], None)]
            out.append((noun, rel))
            for (key, value), adjs in attrs.items():
                if key == "pattern" and label not in demo.GARMENTS:
                    continue
                if key == "shape" and label not in shaped:
                    continue
                rel = [p["sku"] for p in products if demo.matches(p, [label], {key: value})]
                if rel:
                    out.extend((f"{adj} {noun}", rel) for adj in adjs)
    return out


def build_fashion(out: Path, size: Size, seed: int) -> Catalogue:
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    Xtr = demo.load_idx("train-images-idx3-ubyte.gz")
    Ytr = demo.load_idx("train-labels-idx1-ubyte.gz")
    Xte = demo.load_idx("t10k-images-idx3-ubyte.gz")
    Yte = demo.load_idx("t10k-labels-idx1-ubyte.gz")
    used = demo_indices(Ytr)
    picks = {}
    for c in range(10):
        unused = np.array([i for i in np.where(Ytr == c)[0] if int(i) not in used])
        picks[c] = np.sort(nrng.choice(unused, size.fashion_per_class, replace=False)).tolist()
    rows, products = demo.build_products(nrng, Xtr, Ytr, picks, "FE-{:05d}", out / "images", "images/")
    texts = catalogue_text(rows)
    queries: list[dict] = []

    keywords = fashion_combos(FASHION_KEYWORD_NOUNS, FASHION_KEYWORD_ATTRS, products)
    queries += [{"kind": "keyword", "query": q, "relevant": rel} for q, rel in take(rng, keywords, size.queries)]

    # Paraphrases: the demo's curated shopper wordings, then WordNet synonyms of the shop
    # nouns, then shopper nouns with shopper attribute words.
    curated = [(q, [p["sku"] for p in products if demo.matches(p, cls, attrs)]) for q, cls, attrs in demo.TEXT_QUERIES]
    # "skinny"/"baggy" fit clothes; a bag's measured shape is upright or wide.
    shopper = fashion_combos(
        FASHION_SHOPPER_NOUNS, FASHION_SHOPPER_ATTRS, products, shaped=set(demo.SHAPE_WORDS) - {demo.BAG}
    )
    # "tee" and "top" are golf and spinning-toy words to WordNet before they are clothes.
    nouns_only = [(q, rel) for q, rel in keywords if (" " not in q or q == "ankle boots") and q not in ("tee", "top")]
    from_wordnet = paraphrase_queries(rng, nouns_only, rows, len(nouns_only))
    pool = [(q, rel) for q, rel in curated + shopper if rel and not occurs_in(q, texts)]
    pool += [(q["query"], q["relevant"]) for q in from_wordnet]
    chosen: list[dict] = []
    seen: set[str] = set()
    for q, rel in take(rng, pool, len(pool)):
        if q not in seen and len(chosen) < size.queries:
            seen.add(q)
            chosen.append({"kind": "paraphrase", "query": q, "relevant": rel})
    queries += chosen

    (out / "queries").mkdir(exist_ok=True)
    queries += photo_queries(rng, rows, out, size.queries)

    by_class = {c: [p["sku"] for p in products if p["label"] == c] for c in range(10)}
    k = 0
    for c in range(10):
        for i in np.sort(nrng.choice(np.where(Yte == c)[0], size.unseen_per_class, replace=False)):
            k += 1
            name = f"queries/unseen-{k:03d}.png"
            (out / name).write_bytes(demo.product_png(Xte[i]))
            queries.append({"kind": "unseen_photo", "image": name, "relevant": by_class[c]})

    cat = Catalogue("fashion", rows, queries)
    cat.readme = f"""# Evaluation catalogue: fashion

{len(rows)} products ({size.fashion_per_class} per Fashion-MNIST class).
Queries: {counts_line(cat)}.

## Sources and licences
- Photos: Fashion-MNIST (Debian `dataset-fashion-mnist`), Copyright (c) 2017 Zalando SE, MIT
  licence. Catalogue items come from the *train* split and are **not** in the demo catalogue
  or its fixtures (their indices are excluded by replaying the demo's seeds); unseen-photo
  queries come from the *test* split.
- Titles, descriptions and prices: generated by the demo's generator
  (`scripts/build_demo_catalogue.py`: `build_products`, tone/pattern/shape measured from the
  image) with seed {seed}. Synonyms: WordNet 3.0 (Debian `wordnet-base`, Princeton WordNet
  licence).

## Relevance rules
Relevant = every product of the query's class whose *measured* attributes (tone, pattern,
shape; see the demo's `eval/README.md`) match the attribute the query names.
- **keyword**: the shop's own nouns, alone or with one attribute word ("dark coat",
  "striped pullover", "trainers").
- **paraphrase**: shoppers' words that are not catalogue vocabulary: the demo's curated
  wordings (jeans, parka, flip flops, running shoes, ...), hand-listed shopper nouns with
  shopper attribute words ("black parka", "skinny jeans"), and WordNet synonyms or broader
  terms of the shop nouns.
- **unseen_photo**: a Fashion-MNIST test photo (not in the catalogue), inverted like the
  catalogue photos; relevant = every catalogue product of its class.

{COMMON_RULES}"""
    return cat


# ---------------------------------------------------------------------------
# Emoji: Noto Color Emoji rendered with Pillow, names and keywords from CLDR
# ---------------------------------------------------------------------------
SKIN_TONE = re.compile("[\U0001f3fb-\U0001f3ff]")
REGIONAL = re.compile("^[\U0001f1e6-\U0001f1ff]{2}$")
TAG_FLAG = re.compile("^\U0001f3f4[\U000e0020-\U000e007f]+$")
HELD_BACK = 0.35  # share of distinct CLDR keywords kept out of every description


def strip_vs(s: str) -> str:
    return s.replace("\ufe0f", "").replace("\ufe0e", "")


def parse_unicode_set(text: str) -> list[str]:
    """The members of a labels.txt UnicodeSet like ``[😀-😆{👨‍⚕️}☺]``."""
    body = text.strip()[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "{":
            j = body.index("}", i)
            out.append(body[i + 1 : j])
            i = j + 1
        elif i + 2 < len(body) and body[i + 1] == "-":
            out.extend(chr(c) for c in range(ord(ch), ord(body[i + 2]) + 1))
            i += 3
        else:
            out.append(ch)
            i += 1
    return out


def emoji_labels() -> dict[str, tuple[str, str]]:
    """emoji (variation selectors stripped) -> (group, subgroup) from CLDR labels.txt."""
    labels: dict[str, tuple[str, str]] = {}
    for line in (CLDR_DIR / "properties" / "labels.txt").read_text(encoding="utf-8").splitlines():
        if not line.startswith("["):
            continue
        chars, group, sub = (p.strip() for p in line.split(";"))
        for e in parse_unicode_set(chars):
            labels.setdefault(strip_vs(e), (group, sub))
    return labels


def emoji_order() -> list[str]:
    """Emoji in CLDR's emoji collation order (collation/root.xml), variation selectors stripped."""
    xml = (CLDR_DIR / "collation" / "root.xml").read_text(encoding="utf-8")
    block = xml.split("# START AUTOGENERATED EMOJI ORDER", 1)[-1].split("]]>", 1)[0]
    order: list[str] = []
    for line in block.splitlines():
        line = line.split("#", 1)[0].strip() if not line.startswith("< '#") else line
        if line.startswith("<*"):
            order.extend(strip_vs(c) for c in line[2:].strip())
        elif line.startswith("<") and not line.startswith("<<"):
            order.append(strip_vs(line[1:].split("=")[0].strip().strip("'")))
    return order


def emoji_group(e: str, labels: dict, order_index: dict, order: list[str]) -> str | None:
    """CLDR group of an emoji. labels.txt lists emoji up to Emoji 11; for later ones:
    flags are Flags, a sequence takes its first emoji's group, anything else the group of
    the nearest labelled emoji before it in CLDR's emoji collation order."""
    key = strip_vs(e)
    if key in labels:
        return labels[key][0]
    if REGIONAL.match(key) or TAG_FLAG.match(key):
        return "Flags"
    if len(key) > 1 and key[0] in labels:
        return labels[key[0]][0]
    pos = order_index.get(key)
    if pos is None:
        return None
    for prev in reversed(order[:pos]):
        if prev in labels:
            return labels[prev][0]
    return None


def cldr_annotations(path: Path) -> tuple[dict[str, str], dict[str, list[str]]]:
    names, keywords = {}, {}
    for a in ET.parse(path).getroot().iter("annotation"):
        text = (a.text or "").strip()
        if a.get("type") == "tts":
            names[a.get("cp", "")] = text
        else:
            keywords[a.get("cp", "")] = [k.strip() for k in text.split("|") if k.strip()]
    return names, keywords


def emoji_renderer() -> Callable[[str], Image.Image | None]:
    font = ImageFont.truetype(str(EMOJI_FONT), 109)  # the size of the font's bitmaps
    advance = font.getlength("\U0001f600")

    def render(e: str) -> Image.Image | None:
        # One glyph wide (a ZWJ sequence the font lacks shapes as several) and not blank.
        if abs(font.getlength(e) - advance) > 0.5:
            return None
        canvas = Image.new("RGB", (136, 136), "white")
        ImageDraw.Draw(canvas).text((0, 4), e, font=font, embedded_color=True, fill="black")
        if canvas.convert("L").point(lambda v: 255 - v).getbbox() is None:
            return None
        return canvas.resize((128, 128), Image.Resampling.LANCZOS)

    return render


def build_emoji(out: Path, size: Size, seed: int) -> Catalogue:
    rng = random.Random(seed)
    names, keywords = cldr_annotations(CLDR_DIR / "annotations" / "en.xml")
    dnames, dkeywords = cldr_annotations(CLDR_DIR / "annotationsDerived" / "en.xml")
    labels, order = emoji_labels(), emoji_order()
    order_index = {e: i for i, e in enumerate(order)}
    candidates = []
    for e, name in list(names.items()) + [(e, n) for e, n in dnames.items() if e not in names]:
        # Skin-tone variants are near-duplicates of their base emoji; single regional
        # indicators and tone swatches are not things.
        if SKIN_TONE.search(e) or re.fullmatch("[\U0001f1e6-\U0001f1ff]", e):
            continue
        group = emoji_group(e, labels, order_index, order)
        if group:
            candidates.append((order_index.get(strip_vs(e), len(order)), e, name, group))
    candidates.sort()
    render = emoji_renderer()
    chosen: list[tuple[str, str, str, Image.Image]] = []
    for _, e, name, group in take(rng, candidates, len(candidates)):
        if len(chosen) >= size.emoji:
            break
        img = render(e)
        if img is not None:
            chosen.append((e, name, group, img))
    chosen.sort(key=lambda c: (order_index.get(strip_vs(c[0]), len(order)), c[0]))

    # Hold a share of all keywords back from every description, so keyword queries
    # are not catalogue text. Words of names stay: they are in the titles anyway.
    all_kws = {e: [k.lower() for k in keywords.get(e) or dkeywords.get(e) or []] for e, *_ in chosen}
    title_words = {w for _, name, _, _ in chosen for w in words_of(name)}
    distinct = sorted({k for ks in all_kws.values() for k in ks})
    held = {k for k in distinct if not set(words_of(k)) <= title_words and rng.random() < HELD_BACK}
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for n, (e, name, group, img) in enumerate(chosen, start=1):
        sku = f"EM-{n:04d}"
        kept = [k for k in all_kws[e] if k not in held and k != name.lower()]
        desc = f"Emoji: {', '.join(kept)}." if kept else f"Emoji from the {group} group."
        (out / "images" / f"{sku}.png").write_bytes(png_bytes(img))
        rows.append([sku, name, desc, group, price(rng, 1, 9), f"images/{sku}.png"])
    texts = catalogue_text(rows)
    skus = {e: r[0] for (e, *_), r in zip(chosen, rows)}
    queries: list[dict] = []

    by_kw: dict[str, list[str]] = defaultdict(list)
    for e, ks in all_kws.items():
        for k in ks:
            if skus[e] not in by_kw[k]:
                by_kw[k].append(skus[e])
    kw_pool = [(k, sorted(by_kw[k])) for k in sorted(held) if 1 <= len(words_of(k)) <= 3 and not occurs_in(k, texts)]
    queries += [{"kind": "keyword", "query": k, "relevant": rel} for k, rel in take(rng, kw_pool, size.queries)]
    by_title: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        by_title[r[1].lower()].append(r[0])
    bases = kw_pool + [(t, rel) for t, rel in sorted(by_title.items()) if len(words_of(t)) <= 3]
    bases = [(" ".join(words_of(t)), rel) for t, rel in bases]
    queries += paraphrase_queries(rng, bases, rows, size.queries, taken=(q["query"] for q in queries))
    (out / "queries").mkdir(exist_ok=True)
    queries += photo_queries(rng, rows, out, size.queries)

    cat = Catalogue("emoji", rows, queries)
    groups = sorted({r[3] for r in rows})
    cat.readme = f"""# Evaluation catalogue: emoji

{len(rows)} products, queries: {counts_line(cat)}. Categories: {", ".join(groups)}.

## Sources and licences
- Images: Noto Color Emoji (Debian `fonts-noto-color-emoji`: font under the SIL Open Font
  Licence 1.1, emoji images under Apache-2.0), rendered with Pillow (size 109,
  `embedded_color=True`) onto white and saved as 128×128 PNG. Emoji the font cannot draw as
  one glyph, skin-tone variants and bare regional indicators are left out.
- Names and keywords: Unicode CLDR (Debian `unicode-cldr-core`, Unicode licence),
  `annotations/en.xml` and `annotationsDerived/en.xml`. Title = the CLDR short name.
  Description = the emoji's CLDR keywords minus the held-back ones (below).
- Category = the emoji's group from CLDR `properties/labels.txt` (groups as CLDR labels them,
  e.g. "Smileys & People"). That file lists emoji up to Emoji 11; for newer ones the rule is:
  flags are "Flags", a sequence takes its first emoji's group, anything else takes the
  group of the nearest labelled emoji before it in CLDR's emoji collation order
  (`collation/root.xml`, type emoji); emoji with no group by these rules are left out.
- Prices: seeded random, 1–9. Paraphrases: WordNet 3.0 (Debian `wordnet-base`).

## Relevance rules
- **keyword**: {HELD_BACK:.0%} of the distinct CLDR keywords (never one made only of title words)
  are held back from every description; a keyword query is one of them that occurs in no
  title or description. Relevant = every emoji whose CLDR keywords include it.
- **paraphrase**: WordNet paraphrases of those keywords and of emoji names; relevant = the
  wording's set (for a name: the emoji with that name).

{COMMON_RULES}"""
    return cat


# ---------------------------------------------------------------------------
# Clipart: openclipart-png, titles cleaned from file names with WordNet
# ---------------------------------------------------------------------------
# Folders of icon themes, card decks, generated shapes and patterns: cryptic or
# mass-produced names (star_25pt06step, gnome-mime-image-x-xcf, ornamental_c_9).
CLIPART_SKIP = (
    "computer/icons",
    "recreation/games/cards",
    "shapes/stars",
    "shapes/jigsaw",
    "special",
    "signs_and_symbols/led",
    "logos",
    "buttons",
    "unsorted",
)
CLIPART_PER_TITLE = 2
AUTHOR_MIN_TITLES = 3
CLIPART_MAX_PIXELS = 16_000_000  # a few posters are 100+ megapixels: slow to decode, no gain
NUMBER_WORDS = {"one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"}
TITLE_STOP = {
    "and",
    "of",
    "the",
    "with",
    "in",
    "on",
    "for",
    "to",
    "a",
    "an",
    "under",
    "over",
    "at",
    "by",
    "from",
    "as",
    "into",
    "without",
}


class TitleCleaner:
    """Clean an openclipart file name into a title: the leading run of English words
    (lower-case WordNet lemmas), which ends where author names, ids or foreign words
    begin. Author first names that are also words ("jean victor balin", "dan gerhards")
    are found as word pairs that follow at least three different words across the files."""

    def __init__(self, stems: Iterable[str]):
        self.reader = wordnet._require()
        self.cache: dict[str, bool] = {}
        before: dict[tuple[str, str], set[str]] = defaultdict(set)
        for stem in stems:
            t, _ = self.tokens(stem)
            for k in range(1, len(t) - 1):
                before[(t[k], t[k + 1])].add(t[k - 1])
        # An author's name follows many different titles ("sandwich one jean victor",
        # "flat cake jean victor"); a title's words rarely do.
        self.authors = {
            a
            for (a, b), prev in before.items()
            if len(prev) >= AUTHOR_MIN_TITLES and self.is_word(a) and b not in TITLE_STOP
        }

    @staticmethod
    def tokens(stem: str) -> tuple[list[str], bool]:
        """The name's tokens, and whether the last one may be a fragment: the package cut
        long names to about 24 characters ("wireless_transmitter_bra_01")."""
        base = re.sub(r"(_\d+[a-z]?|_)+$", "", stem.lower())
        tokens = [t for t in re.split(r"[-_.\s]+", base) if t]
        return tokens, 23 <= len(base) <= 25 and len(tokens) > 1

    def is_word(self, t: str) -> bool:
        if t in TITLE_STOP:
            return True
        if t not in self.cache:
            ok = False
            if len(t) >= 3 and t.isalpha():
                for pos in "nav":
                    base = self.reader.morphy(t, pos)
                    if base and any(
                        lemma.name() == base for s in self.reader.synsets(base, pos) for lemma in s.lemmas()
                    ):
                        ok = True
                        break
            self.cache[t] = ok
        return self.cache[t]

    def is_noun(self, t: str) -> bool:
        return t not in TITLE_STOP and self.reader.morphy(t, "n") is not None

    def title(self, stem: str) -> str | None:
        t, cut = self.tokens(stem)
        known = [self.is_word(tok) for tok in t]
        if cut:
            known[-1] = False
        out: list[str] = []
        for k, tok in enumerate(t):
            if not known[k]:
                break
            after = t[k + 1] if k + 1 < len(t) else None
            if tok in self.authors and after is not None:
                break
            out.append(tok)
        while out and (out[-1] in TITLE_STOP or out[-1] in NUMBER_WORDS):
            out.pop()
        if not out or out[0] in TITLE_STOP or not any(self.is_noun(w) for w in out):
            return None
        return " ".join(out)


def clipart_files() -> list[tuple[str, Path]]:
    """(relative path, file) for every openclipart PNG outside the skipped folders, one
    per real file (the package links some files into several folders)."""
    seen, out = set(), []
    for p in sorted(OPENCLIPART_DIR.rglob("*.png")):
        rel = p.relative_to(OPENCLIPART_DIR).as_posix()
        real = p.resolve()
        if any(rel.startswith(s + "/") for s in CLIPART_SKIP) or real in seen:
            continue
        seen.add(real)
        with open(p, "rb") as f:  # PNG signature, then IHDR: width and height
            head = f.read(24)
        width, height = struct.unpack(">II", head[16:24])
        if head[:8] != b"\x89PNG\r\n\x1a\n" or width * height > CLIPART_MAX_PIXELS:
            continue
        out.append((rel, p))
    return out


def clipart_image(path: Path) -> Image.Image:
    with Image.open(path) as img:
        img.load()
        rgba = img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    flat = Image.alpha_composite(white, rgba).convert("RGB")
    flat.thumbnail((256, 256), Image.Resampling.LANCZOS)
    return flat


def build_clipart(out: Path, size: Size, seed: int) -> Catalogue:
    rng = random.Random(seed)
    files = clipart_files()
    cleaner = TitleCleaner(Path(rel).stem for rel, _ in files)
    by_title: dict[str, list[tuple[str, Path]]] = defaultdict(list)
    for rel, p in files:
        title = cleaner.title(Path(rel).stem)
        if title and len(by_title[title]) < CLIPART_PER_TITLE:
            by_title[title].append((rel, p))
    items = sorted((rel, p, t) for t, fs in by_title.items() for rel, p in fs)
    chosen = sorted(take(rng, items, size.clipart))
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for n, (rel, p, title) in enumerate(chosen, start=1):
        sku = f"CA-{n:04d}"
        folders = rel.split("/")[:-1]
        category = folders[0].replace("_", " ").capitalize()
        where = " / ".join(f.replace("_", " ").replace("-", " ") for f in folders)
        desc = f"Clipart: {title}, from the {where} collection."
        (out / "images" / f"{sku}.png").write_bytes(png_bytes(clipart_image(p)))
        rows.append([sku, title.capitalize(), desc, category, price(rng, 2, 25), f"images/{sku}.png"])

    # Keyword queries: 1-3 words of a title; relevant = every product whose title has
    # all of them (plural or singular).
    def norm(w: str) -> str:
        return cleaner.reader.morphy(w, "n") or w

    title_sets = [(r[0], {norm(w) for w in words_of(r[1])}) for r in rows]
    wordings = set()
    for r in rows:
        words = [w for w in words_of(r[1]) if w not in TITLE_STOP]
        for k in range(len(words)):
            for j in range(k + 1, min(k + 3, len(words)) + 1):
                wordings.add(" ".join(words[k:j]))
    pool: list[tuple[str, list[str]]] = []
    for q in sorted(wordings):
        # A shopper's words end in a thing ("falling rocks", not "falling" or "orange simple").
        last = q.split()[-1]
        if not cleaner.is_noun(last) or last.isdigit() or last in NUMBER_WORDS:
            continue
        need = {norm(w) for w in q.split()}
        relevant = [sku for sku, ts in title_sets if need <= ts]
        if relevant:
            pool.append((q, relevant))
    queries: list[dict] = [{"kind": "keyword", "query": q, "relevant": rel} for q, rel in take(rng, pool, size.queries)]
    queries += paraphrase_queries(rng, pool, rows, size.queries, taken=(q["query"] for q in queries))
    (out / "queries").mkdir(exist_ok=True)
    queries += photo_queries(rng, rows, out, size.queries)

    cat = Catalogue("clipart", rows, queries)
    cat.readme = f"""# Evaluation catalogue: clipart

{len(rows)} products, queries: {counts_line(cat)}.

## Sources and licences
- Images: Open Clip Art Library (Debian `openclipart-png`), public domain (Creative Commons
  public domain dedication). Flattened onto white, at most 256 px a side, PNG.
- Category = the top folder of the file ("Animals", "Food", ...). Folders of icon themes,
  card decks, generated stars/jigsaw pieces/LEDs, gradients and patterns, logos, buttons and
  "unsorted" are skipped (cryptic or mass-produced names).
- Title = the file name cleaned: the leading run of English words (lower-case WordNet
  lemmas) before the first author name, id or foreign word; an author first name that is
  also a word is dropped when the same name pair occurs in several files; files with no
  such run or no noun in it (e.g. Italian names) are skipped; at most {CLIPART_PER_TITLE} files
  per title.
  Description = a short sentence from the title and the folder path.
- Prices: seeded random, 2–25. Paraphrases: WordNet 3.0 (Debian `wordnet-base`).

## Relevance rules
- **keyword**: 1–3 consecutive title words; relevant = every product whose title contains
  all of them (singular or plural).
- **paraphrase**: WordNet paraphrases of those keyword wordings; relevant = the wording's set.

{COMMON_RULES}"""
    return cat


# ---------------------------------------------------------------------------
BUILDERS: dict[str, Callable[[Path, Size, int], Catalogue]] = {
    "fashion": build_fashion,
    "emoji": build_emoji,
    "clipart": build_clipart,
}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("var/evalsuite"))
    ap.add_argument("--tiny", action="store_true", help="about 60 products and 10 queries per kind")
    ap.add_argument("--only", default=",".join(BUILDERS), help="comma-separated catalogue names")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BUILDERS]
    if unknown:
        ap.error(f"unknown catalogue(s) {', '.join(unknown)}; choose from {', '.join(BUILDERS)}")
    missing = sources_missing()
    if missing:
        print(f"missing Debian data packages: {' '.join(missing)} (run `make debian-data` as root)", file=sys.stderr)
        return 2
    size = TINY if args.tiny else FULL
    for name in names:
        start = time.perf_counter()
        out = args.out / name
        shutil.rmtree(out, ignore_errors=True)  # only this catalogue's own folder
        out.mkdir(parents=True)
        cat = BUILDERS[name](out, size, SEED + list(BUILDERS).index(name))
        (out / "queries").mkdir(exist_ok=True)
        cat.queries += photo_words_queries(
            random.Random(SEED + 100 + list(BUILDERS).index(name)), cat.rows, out, size.queries
        )
        cat.readme = cat.readme.rstrip("\n") + "\n" + PHOTO_WORDS_RULES
        write_catalogue(out, cat)
        print(
            f"{name}: {len(cat.rows)} products; queries: {counts_line(cat)} "
            f"({time.perf_counter() - start:.1f} s) -> {out}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
