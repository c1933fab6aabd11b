#!/usr/bin/env python3
"""Build the Vitrine demo catalogue, evaluation queries and test fixtures.

Deterministic: every random choice comes from a seeded ``numpy`` generator and
all outputs are written in a fixed order, so two runs produce byte-identical
files (given the same Pillow/zlib version).

Usage::

    .venv/bin/python scripts/build_demo_catalogue.py --out demo/

Sources (installed from Debian, no downloads):
  * Fashion-MNIST  /usr/share/datasets/fashion-mnist/   (MIT, (c) 2017 Zalando SE)

Outputs (relative to --out):
  catalogue.csv, images/FM-xxxxx.png (and FM-xxxxx-2/-3.png: further photos of one
  product per category, the CSV's `images`), LICENSE.md,
  eval/queries.jsonl, eval/images/q-xxx.png, eval/README.md,
  fixtures/small/{catalogue.csv,images/}, fixtures/bad/{catalogue.csv,images/,EXPECTED.md,expected.json}
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
SEED = 20240611
PER_CLASS = 250
IMAGE_QUERIES_PER_CLASS = 10
HEADER = ["sku", "title", "description", "category", "price", "image"]

# Fashion-MNIST label -> (class name, shop category)
CLASSES = [
    ("T-shirt/top", "T-shirts & tops"),
    ("Trouser", "Trousers"),
    ("Pullover", "Pullovers"),
    ("Dress", "Dresses"),
    ("Coat", "Coats"),
    ("Sandal", "Sandals"),
    ("Shirt", "Shirts"),
    ("Sneaker", "Sneakers"),
    ("Bag", "Bags"),
    ("Ankle boot", "Ankle boots"),
]
CATEGORY = [c for _, c in CLASSES]
TSHIRT, TROUSER, PULLOVER, DRESS, COAT, SANDAL, SHIRT, SNEAKER, BAG, BOOT = range(10)
GARMENTS = {TSHIRT, PULLOVER, DRESS, COAT, SHIRT}  # classes where "pattern" is meaningful
TOPS = {TSHIRT, PULLOVER, SHIRT}

# ---------------------------------------------------------------------------
# Catalogue vocabulary.  Deliberately does NOT contain the shopper wordings
# used by the evaluation queries (jeans, handbag, running shoes, ...): the
# build asserts that no text query occurs verbatim in any title/description.
# ---------------------------------------------------------------------------
NOUNS = {
    TSHIRT: ["T-shirt", "tee", "top", "basic top", "T-shirt top"],
    TROUSER: ["trousers", "pants", "full-length trousers", "pair of trousers"],
    PULLOVER: ["pullover", "jumper", "long-sleeve pullover", "pullover top"],
    DRESS: ["dress", "day dress", "one-piece dress"],
    COAT: ["coat", "overcoat", "long-sleeve coat"],
    SANDAL: ["sandals", "strap sandals", "pair of sandals", "open sandals"],
    SHIRT: ["shirt", "casual shirt", "everyday shirt"],
    SNEAKER: ["sneakers", "trainers", "low-top sneakers", "pair of sneakers"],
    BAG: ["bag", "carry bag", "day bag", "carryall"],
    BOOT: ["ankle boots", "booties", "short boots", "ankle-height boots"],
}
# Made-up product-line names: add variety, make no factual claims.
LINES = [
    "Atlas",
    "Juniper",
    "Meridian",
    "Nova",
    "Solace",
    "Harbor",
    "Linden",
    "Orbit",
    "Quarry",
    "Rowan",
    "Sable",
    "Tessel",
    "Umber",
    "Vale",
    "Wren",
    "Alder",
    "Brook",
    "Cove",
    "Drift",
    "Ember",
]
LINE_SUFFIX = ["", "", "", " Studio", " Basics", " Edit", " Line"]
FLUFF = ["Everyday", "Classic", "Essential", "Modern", "Simple", "Casual", "Staple", "Easy"]
# Before a noun only hyphenated forms are used ("dark-toned coat"), so short
# shopper queries like "dark coat" never occur verbatim in the catalogue.
TONE_PRE = {
    "dark": ["dark-toned", "deep-toned"],
    "mid": ["mid-tone", "medium-tone", "mid-toned"],
    "light": ["light-toned", "pale-toned"],
}
TONE_POST = {
    "dark": ["dark", "dark tone", "deep tone"],
    "mid": ["mid-tone", "medium tone"],
    "light": ["light", "light tone", "pale"],
}
PATTERN_WORDS = {
    "plain": ["plain", "solid", "unpatterned"],
    "patterned": ["patterned", "textured", "busy-pattern"],
    "striped": ["stripe-pattern", "banded-stripe", "horizontal-stripe"],
}
SHAPE_WORDS = {
    TROUSER: {"slim": ["slim", "narrow-cut"], "wide": ["wide-cut", "roomy"]},
    DRESS: {"slim": ["slim", "narrow-silhouette"], "wide": ["full-silhouette", "wide-silhouette"]},
    COAT: {"slim": ["slim", "narrow-cut"], "wide": ["roomy", "wide-cut"]},
    PULLOVER: {"slim": ["slim", "close-cut"], "wide": ["roomy", "wide-body"]},
    TSHIRT: {"slim": ["slim", "close-cut"], "wide": ["boxy", "wide-body"]},
    SHIRT: {"slim": ["slim", "close-cut"], "wide": ["boxy", "roomy"]},
    BAG: {"slim": ["upright", "tall-format"], "wide": ["wide-format", "landscape-format"]},
}
PRICE_RANGE = {
    TSHIRT: (9, 34),
    TROUSER: (24, 89),
    PULLOVER: (24, 79),
    DRESS: (29, 129),
    COAT: (59, 249),
    SANDAL: (19, 69),
    SHIRT: (19, 64),
    SNEAKER: (39, 139),
    BAG: (19, 159),
    BOOT: (49, 179),
}
CENTS = [0.99, 0.99, 0.95, 0.49, 0.00, 0.90]

# Thresholds on measured image properties (see measure()).
TONE_DARK, TONE_LIGHT = 75.0, 135.0  # mean grey of the item after inversion (0=black)
TEXTURE_PATTERNED = 25.0  # mean |neighbour difference| inside the item
STRIPE_RATIO, STRIPE_MIN_TEX, STRIPE_MIN_FLIPS = 2.2, 22.0, 5
SHAPE_QUANTILES = (0.25, 0.75)  # per-class aspect-ratio quantiles -> slim / wide


# ---------------------------------------------------------------------------
# Data loading and measurement
# ---------------------------------------------------------------------------
def load_idx(name: str) -> np.ndarray:
    with gzip.open(FMNIST_DIR / name) as f:
        raw = f.read()
    if "labels" in name:
        return np.frombuffer(raw, np.uint8, offset=8)
    return np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)


def erode(m: np.ndarray) -> np.ndarray:
    p = np.pad(m, 1)
    return m & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]


def measure(orig: np.ndarray) -> dict:
    """Measure tone, texture, stripes and silhouette on one Fashion-MNIST image.

    ``orig`` is the raw dataset image (bright item on black). After inversion
    the item is dark-on-white, i.e. 0 = black, 255 = white.
    """
    o = orig.astype(np.float32)
    x = 255.0 - o
    mask = o > 25
    tone_val = float(x[mask].mean())
    inner = erode(erode(mask))
    dy = np.abs(np.diff(x, axis=0))
    dx = np.abs(np.diff(x, axis=1))
    iy = inner[1:, :] & inner[:-1, :]
    ix = inner[:, 1:] & inner[:, :-1]
    ady = float(dy[iy].mean()) if iy.any() else 0.0
    adx = float(dx[ix].mean()) if ix.any() else 0.0
    texture = (ady + adx) / 2
    # stripes: row means inside the item alternate up/down many times
    row_means = [x[r][inner[r]].mean() for r in range(28) if inner[r].sum() >= 6]
    flips = 0
    if len(row_means) >= 8:
        d = np.diff(np.array(row_means))
        flips = int(np.sum((np.sign(d[1:]) != np.sign(d[:-1])) & (np.abs(d[1:]) > 8)))
    rows = np.where(mask.any(1))[0]
    # mean silhouette width per occupied row, relative to the item's height
    aspect = float(mask[rows].sum(1).mean()) / (rows[-1] - rows[0] + 1)
    tone = "dark" if tone_val < TONE_DARK else "light" if tone_val > TONE_LIGHT else "mid"
    striped = texture > STRIPE_MIN_TEX and ady > STRIPE_RATIO * adx and flips >= STRIPE_MIN_FLIPS
    pattern = "striped" if striped else "patterned" if texture > TEXTURE_PATTERNED else "plain"
    return {
        "tone": tone,
        "tone_value": round(tone_val, 1),
        "texture": round(texture, 2),
        "pattern": pattern,
        "aspect": float(aspect),
    }


def product_png(orig: np.ndarray) -> bytes:
    img = Image.fromarray((255 - orig).astype(np.uint8), mode="L")
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


# ---------------------------------------------------------------------------
# Copy generation
# ---------------------------------------------------------------------------
def cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def make_copy(rng: np.random.Generator, label: int, m: dict) -> tuple[str, str]:
    """Title + description from the class and the measured attributes only."""
    pick = lambda seq: seq[int(rng.integers(len(seq)))]  # noqa: E731
    noun = pick(NOUNS[label])
    tone = pick(TONE_PRE[m["tone"]])
    tpost = pick(TONE_POST[m["tone"]])
    pat = m["pattern"] if label in GARMENTS else None
    patw = pick(PATTERN_WORDS[pat]) if pat else None
    shape = m.get("shape")
    shapew = pick(SHAPE_WORDS[label][shape]) if shape and label in SHAPE_WORDS else None
    line = pick(LINES) + pick(LINE_SUFFIX)

    # Title: a few shapes so no single fixed phrase per class.
    adjs = [a for a in (shapew, patw if pat != "plain" or rng.random() < 0.5 else None) if a]
    t = int(rng.integers(5))
    if t == 0:
        title = f"{line} {' '.join(adjs + [tone, noun])}"
    elif t == 1:
        title = f"{cap(' '.join(adjs + [noun]))} – {tpost}"
    elif t == 2:
        title = f"{pick(FLUFF)} {' '.join(adjs + [noun])}, {tpost}"
    elif t == 3:
        title = f"{line} {noun} ({', '.join([tpost] + adjs)})"
    else:
        title = f"{cap(tone)} {' '.join(adjs + [noun])} by {line}"
    title = cap(title.replace("  ", " "))

    # Description sentences, shuffled subset.
    s = []
    if label in (TROUSER, SANDAL, SNEAKER, BOOT):
        s.append(
            pick([f"{cap(tone)} {noun} from the {line} range.", f"{cap(noun)} from the {line} range, {tpost} overall."])
        )
    else:
        art = "An" if noun[0] in "aeiou" and not noun.startswith("one") else "A"
        s.append(
            pick(
                [
                    f"{art} {noun} from the {line} range, {tpost} overall.",
                    f"{'An' if tone[0] in 'aeiou' else 'A'} {tone} {noun} from the {line} range.",
                ]
            )
        )
    if pat == "plain":
        s.append(
            pick(
                [
                    "The surface reads as plain, without a visible print.",
                    "Clean, solid look with no visible pattern.",
                    "Plain finish with no busy detail.",
                ]
            )
        )
    elif pat == "patterned":
        s.append(
            pick(
                [
                    "The surface shows a visible pattern or texture.",
                    "Features an all-over pattern or textured surface.",
                    "A busy, patterned surface adds interest.",
                ]
            )
        )
    elif pat == "striped":
        s.append(
            pick(
                [
                    "Horizontal stripes run across the body.",
                    "Styled with horizontal banding stripes.",
                    "A horizontal-stripe pattern runs across the front.",
                ]
            )
        )
    if shapew:
        s.append(pick([f"The silhouette is {shapew}.", f"A {shapew} shape.", f"Cut with a {shapew} outline."]))
    s.append(
        pick(
            [
                "Product photo shown in greyscale; the tone is described rather than the colour.",
                "Shown in greyscale on a white background.",
                "Photographed flat on a white background.",
                "Greyscale product shot on white.",
            ]
        )
    )
    first, rest = s[0], s[1:]
    order = rng.permutation(len(rest))
    desc = " ".join([first] + [rest[i] for i in order])
    return title, desc


def make_price(rng: np.random.Generator, label: int) -> str:
    lo, hi = PRICE_RANGE[label]
    whole = int(rng.integers(lo, hi + 1))
    cents = CENTS[int(rng.integers(len(CENTS)))]
    if whole == 0 and cents == 0:
        cents = 0.99
    return f"{whole + cents:.2f}"


def shape_labels(indices_by_class: dict[int, list[int]], meas: dict[int, dict]) -> None:
    """Per-class quantiles of silhouette width / height -> 'slim' / 'wide'."""
    for label, idxs in indices_by_class.items():
        if label not in SHAPE_WORDS:
            continue
        asp = np.array([meas[i]["aspect"] for i in idxs])
        lo, hi = np.quantile(asp, SHAPE_QUANTILES)
        for i in idxs:
            a = meas[i]["aspect"]
            meas[i]["shape"] = "slim" if a <= lo else "wide" if a >= hi else None


# ---------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------
def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def further_views(orig: np.ndarray) -> list[bytes]:
    """Two more photos of the same item: mirrored, and a close-up of its middle."""
    img = Image.fromarray((255 - orig).astype(np.uint8), mode="L")
    views = [
        img.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        img.crop((4, 4, 24, 24)).resize((28, 28), Image.Resampling.BICUBIC),
    ]
    out = []
    for view in views:
        buf = io.BytesIO()
        view.save(buf, format="PNG", optimize=True)
        out.append(buf.getvalue())
    return out


def add_further_photos(
    rows: list[list[str]], products: list[dict], X: np.ndarray, img_dir: Path, rel_prefix: str
) -> None:
    """Give the first product of each category two further photos (the CSV's `images`
    column, appended to every row), so products with several photos are on the demo.
    Uses no random numbers: the rest of the build is unchanged."""
    first: dict[str, tuple[list[str], dict]] = {}
    for row, product in zip(rows, products, strict=True):
        first.setdefault(row[3], (row, product))
    chosen = {id(row) for row, _ in first.values()}
    for row, product in zip(rows, products, strict=True):
        refs = []
        if id(row) in chosen:
            for n, data in enumerate(further_views(X[product["index"]]), start=2):
                (img_dir / f"{row[0]}-{n}.png").write_bytes(data)
                refs.append(f"{rel_prefix}{row[0]}-{n}.png")
        row.append("|".join(refs))


def build_products(
    rng: np.random.Generator,
    X: np.ndarray,
    Y: np.ndarray,
    picks: dict[int, list[int]],
    sku_fmt: str,
    img_dir: Path,
    rel_prefix: str,
) -> tuple[list[list[str]], list[dict]]:
    """Return (rows, products) for the chosen dataset indices."""
    meas = {i: measure(X[i]) for idxs in picks.values() for i in idxs}
    shape_labels(picks, meas)
    order = sorted(i for idxs in picks.values() for i in idxs)
    img_dir.mkdir(parents=True, exist_ok=True)
    rows, products = [], []
    for n, i in enumerate(order, start=1):
        label = int(Y[i])
        m = meas[i]
        sku = sku_fmt.format(n)
        title, desc = make_copy(rng, label, m)
        price = make_price(rng, label)
        (img_dir / f"{sku}.png").write_bytes(product_png(X[i]))
        rows.append([sku, title, desc, CATEGORY[label], price, f"{rel_prefix}{sku}.png"])
        products.append({"sku": sku, "label": label, "index": int(i), **m})
    return rows, products


# ---------------------------------------------------------------------------
# Evaluation queries
# ---------------------------------------------------------------------------
# (query, classes, attribute filter or None).  Attribute filter keys: tone,
# pattern ("patterned" includes "striped"), shape.
TEXT_QUERIES = [
    # T-shirts & tops
    ("graphic tee", [TSHIRT], {"pattern": "patterned"}),
    ("tshirt", [TSHIRT], None),
    ("tank top", [TSHIRT], None),
    ("striped top", sorted(TOPS), {"pattern": "striped"}),
    ("printed t-shirt", [TSHIRT], {"pattern": "patterned"}),
    ("plain white tee", [TSHIRT], {"pattern": "plain", "tone": "light"}),
    ("black t-shirt", [TSHIRT], {"tone": "dark"}),
    # Trousers
    ("jeans", [TROUSER], None),
    ("denim", [TROUSER], None),
    ("chinos", [TROUSER], None),
    ("leggings", [TROUSER], None),
    ("skinny pants", [TROUSER], {"shape": "slim"}),
    ("wide leg pants", [TROUSER], {"shape": "wide"}),
    ("dark jeans", [TROUSER], {"tone": "dark"}),
    # Pullovers
    ("sweater", [PULLOVER], None),
    ("knitted jumper for winter", [PULLOVER], None),
    ("hoodie", [PULLOVER], None),
    ("cosy knitwear", [PULLOVER], None),
    ("patterned sweater", [PULLOVER], {"pattern": "patterned"}),
    ("light grey sweater", [PULLOVER], {"tone": "light"}),
    # Dresses
    ("summer dress", [DRESS], None),
    ("evening gown", [DRESS], None),
    ("party frock", [DRESS], None),
    ("sundress", [DRESS], None),
    ("floral print dress", [DRESS], {"pattern": "patterned"}),
    ("little black dress", [DRESS], {"tone": "dark"}),
    # Coats
    ("winter jacket", [COAT], None),
    ("parka", [COAT], None),
    ("outerwear", [COAT], None),
    ("rain jacket", [COAT], None),
    ("dark coat", [COAT], {"tone": "dark"}),
    ("light coloured jacket", [COAT], {"tone": "light"}),
    # Sandals
    ("flip flops", [SANDAL], None),
    ("beach shoes", [SANDAL], None),
    ("open toe summer shoes", [SANDAL], None),
    ("strappy heels", [SANDAL], None),
    ("gladiator sandals", [SANDAL], None),
    ("slides", [SANDAL], None),
    # Shirts
    ("blouse", [SHIRT], None),
    ("button-down", [SHIRT], None),
    ("office shirt", [SHIRT], None),
    ("flannel shirt", [SHIRT], {"pattern": "patterned"}),
    ("checked shirt", [SHIRT], {"pattern": "patterned"}),
    ("plain dark shirt", [SHIRT], {"tone": "dark", "pattern": "plain"}),
    # Sneakers
    ("running shoes", [SNEAKER], None),
    ("gym shoes", [SNEAKER], None),
    ("tennis shoes", [SNEAKER], None),
    ("sport shoes", [SNEAKER], None),
    ("kicks", [SNEAKER], None),
    ("white sneakers", [SNEAKER], {"tone": "light"}),
    ("black trainers", [SNEAKER], {"tone": "dark"}),
    # Bags
    ("handbag", [BAG], None),
    ("purse", [BAG], None),
    ("shopping bag", [BAG], None),
    ("satchel", [BAG], None),
    ("black handbag", [BAG], {"tone": "dark"}),
    # Ankle boots
    ("boots for autumn", [BOOT], None),
    ("chelsea boots", [BOOT], None),
    ("winter boots", [BOOT], None),
    ("heeled booties", [BOOT], None),
    ("black boots", [BOOT], {"tone": "dark"}),
    # Multi-class
    ("footwear", [SANDAL, SNEAKER, BOOT], None),
    ("shoes", [SANDAL, SNEAKER, BOOT], None),
    ("knitwear and outerwear", [PULLOVER, COAT], None),
]


def matches(p: dict, classes: Sequence[int], attrs: dict[str, str] | None) -> bool:
    if p["label"] not in classes:
        return False
    for k, v in (attrs or {}).items():
        val = p.get(k)
        if k == "pattern" and v == "patterned":
            if val not in ("patterned", "striped"):
                return False
        elif val != v:
            return False
    return True


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------


def build_bad_fixture(out: Path, X: np.ndarray, Y: np.ndarray, rng: np.random.Generator) -> None:
    d = out / "fixtures" / "bad"
    img = d / "images"
    img.mkdir(parents=True, exist_ok=True)
    good_idx = [
        int(np.where(Y == c)[0][k])
        for c, k in [
            (TSHIRT, 0),
            (SNEAKER, 0),
            (BAG, 0),
            (DRESS, 0),
            (COAT, 0),
            (BOOT, 0),
            (TROUSER, 0),
            (SHIRT, 0),
            (SANDAL, 0),
        ]
    ]
    goods = []
    for n, i in enumerate(good_idx, start=1):
        sku = f"BAD-G{n:02d}"
        (img / f"{sku}.png").write_bytes(product_png(X[i]))
        title, desc = make_copy(rng, int(Y[i]), measure(X[i]))
        goods.append([sku, title, desc, CATEGORY[int(Y[i])], make_price(rng, int(Y[i])), f"images/{sku}.png"])
    # Broken files
    (img / "not-an-image.png").write_text("This is a plain text file renamed to .png.\n")
    full = product_png(X[good_idx[0]])
    (img / "truncated.png").write_bytes(full[: len(full) // 2])
    (img / "BAD-X03.png").write_bytes(product_png(X[good_idx[2]]))  # image exists; row bad for other reasons
    (img / "BAD-X04.png").write_bytes(product_png(X[good_idx[3]]))
    (img / "BAD-X05.png").write_bytes(product_png(X[good_idx[4]]))
    (img / "BAD-X10.png").write_bytes(product_png(X[good_idx[5]]))
    (img / "BAD-X11.png").write_bytes(product_png(X[good_idx[6]]))

    g = iter(goods)
    rows: list[tuple[list[str], str | None]] = [
        (next(g), None),
        (
            ["BAD-X01", "", "Row with an empty title.", "T-shirts & tops", "12.99", "images/BAD-G01.png"],
            "missing (empty) title",
        ),
        (next(g), None),
        (
            ["BAD-X03", "Dark-toned day bag", "Price is not a number.", "Bags", "twelve", "images/BAD-X03.png"],
            "non-numeric price (`twelve`)",
        ),
        (
            ["BAD-X04", "Light day dress", "Negative price.", "Dresses", "-5.00", "images/BAD-X04.png"],
            "negative price (`-5.00`)",
        ),
        (
            ["BAD-X05", "Mid-tone coat", "Price is NaN.", "Coats", "NaN", "images/BAD-X05.png"],
            "price `NaN` (parses as a float in Python but is not a valid price)",
        ),
        (next(g), None),
        (
            [
                "BAD-X06",
                "Plain tee",
                "Image file does not exist.",
                "T-shirts & tops",
                "14.99",
                "images/does-not-exist.png",
            ],
            "image path does not exist",
        ),
        (
            [
                "BAD-X07",
                "Pair of sneakers",
                "Image path escapes the catalogue folder.",
                "Sneakers",
                "59.99",
                "../../etc/passwd",
            ],
            "image path escapes the catalogue folder (`../../etc/passwd`)",
        ),
        (
            ["BAD-X08", "Pair of sandals", "Absolute image path.", "Sandals", "29.99", "/etc/passwd"],
            "absolute image path (`/etc/passwd`)",
        ),
        (next(g), None),
        (
            ["BAD-X09", "Pale top", "Text file renamed to .png.", "T-shirts & tops", "9.99", "images/not-an-image.png"],
            "image is a text file with a .png name (not decodable)",
        ),
        (
            ["BAD-X12", "Dark tee", "Truncated PNG.", "T-shirts & tops", "11.99", "images/truncated.png"],
            "image is a truncated PNG (first half of a valid file; fails on full decode)",
        ),
        (next(g), None),
        (["BAD-X10", "Booties", "Empty price.", "Ankle boots", "", "images/BAD-X10.png"], "empty price"),
        (next(g), None),
        # repeats the first row's SKU: the last row wins, so row 1 is the one reported
        ([goods[0][0], "Duplicate entry", "Same SKU as row 1.", "Trousers", "39.99", "images/BAD-X11.png"], None),
        (next(g), None),
        (next(g), None),
        (next(g), None),
    ]
    write_csv(d / "catalogue.csv", [r for r, _ in rows])
    bad = [(n, r[0], why) for n, (r, why) in enumerate(rows, start=1) if why]
    good_n = [n for n, (r, why) in enumerate(rows, start=1) if not why and n != 1]  # row 1: repeated sku
    lines = [
        "# Expected validation results for `fixtures/bad/catalogue.csv`",
        "",
        "Row numbers are **1-based data rows: the header is excluded**, so row 1 is the",
        "first line after the header (line 2 of the file). Image paths are relative to",
        "the CSV's folder.",
        "",
        f"Total data rows: {len(rows)}. Good rows: {len(good_n)} ({', '.join(map(str, good_n))}). "
        f"Bad rows: {len(bad)}.",
        "Repeated sku: 1 (row 1, replaced by row 17).",
        "",
        "| row | sku | why it is bad |",
        "|----:|-----|---------------|",
    ]
    lines += [f"| {n} | `{sku}` | {why} |" for n, sku, why in bad]
    lines += [
        "",
        "Notes:",
        "- Rows 1 and 17 share the sku `BAD-G01`: the **last row wins**, so row 17 lands and row 1 is",
        "  reported as a repeated sku (counted under `duplicates`, not `failed`).",
        "- Rows 2 and 17 point at images that exist and are valid; they are bad only for the",
        "  stated reason. Rows 4, 5, 6, 15 likewise have valid images.",
        "- `images/truncated.png` has a valid PNG signature and header, so a check that only",
        "  reads the header (e.g. `PIL.Image.open` without `.load()`/`.verify()`) will accept it;",
        "  a full decode fails.",
        "- A machine-readable copy of this table is in `expected.json`.",
        "",
    ]
    (d / "EXPECTED.md").write_text("\n".join(lines), encoding="utf-8")
    exp = {
        "row_numbering": "1-based data rows, header excluded",
        "good_rows": good_n,
        "bad_rows": [{"row": n, "sku": sku, "reason": why.replace("`", "")} for n, sku, why in bad],
        "duplicate_rows": [
            {
                "row": 1,
                "sku": goods[0][0],
                "reason": ("sku repeated at row 17: the last row with a sku wins, row 1 is skipped and reported"),
            }
        ],
    }
    (d / "expected.json").write_text(json.dumps(exp, indent=2) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------
# Docs
# ---------------------------------------------------------------------------
def license_md(counts: Counter, n_eval_img: int) -> str:
    return f"""# Demo catalogue: sources, licences and what was generated

## Image sources

### Fashion-MNIST (all product and query photos)

- Source: https://github.com/zalandoresearch/fashion-mnist, installed from the Debian
  package `dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist/`).
- Copyright: **Copyright (c) 2017 Zalando SE, https://tech.zalando.com**
- `images/FM-xxxxx-2.png` and `-3.png` (the `images` column: further photos of the first
  product of each category) are that product's own photo mirrored, and a close-up of it.
- Licence: **MIT** (Expat):

> Permission is hereby granted, free of charge, to any person obtaining a copy of this
> software and associated documentation files (the "Software"), to deal in the Software
> without restriction, including without limitation the rights to use, copy, modify,
> merge, publish, distribute, sublicense, and/or sell copies of the Software, and to
> permit persons to whom the Software is furnished to do so, subject to the following
> conditions:
>
> The above copyright notice and this permission notice shall be included in all copies
> or substantial portions of the Software.
>
> THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED,
> INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A
> PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT
> HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF
> CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR
> THE USE OR OTHER DEALINGS IN THE SOFTWARE.

### Openclipart

Not used. The Debian `openclipart-png` package (public domain) was considered, but its
file names mix truncated titles with author names (e.g. `bowl_chaspo_.png`,
`chiave_architetto_france_01.png`), so clean product titles could not be derived
reliably; it was skipped.

## What is real and what was generated

- **Real:** the photos. They are the original Fashion-MNIST 28×28 greyscale images
  (product photos from Zalando's catalogue), and the class label of each image.
- **Transformed:** every image was **inverted** (255 − value) so the item appears dark on a
  white background like a product shot. Nothing else was changed: same 28×28 size, no
  resizing, sharpening or colouring. Files were re-encoded as PNG.
- **Generated (not real product data):** SKUs, titles, descriptions, prices, product-line
  names ("Atlas", "Juniper", …) and shop category names.
  - Titles and descriptions are built from templates using only the class label and
    properties **measured from the image**: tone (dark / mid / light, from the mean grey of
    the item's pixels), surface (plain / patterned / horizontally striped, from local
    pixel differences inside the item), and for clothing and bags a silhouette word
    (slim / wide, from the mean silhouette width divided by the item's height, relative to other items of the same
    class). The measurements are heuristics and can be wrong for individual items.
  - No colours, materials, sizes, brands or fit claims are invented; because the photos
    are greyscale, copy talks about *tone*, not colour.
  - Prices are drawn with a seeded random generator from a plausible per-category range.
- **Source split:** catalogue products come from the Fashion-MNIST *train* split; the
  {n_eval_img} evaluation query images come from the *test* split and are not in the
  catalogue.

Products per category: {", ".join(f"{k}: {v}" for k, v in counts.items())}.

Generated by `scripts/build_demo_catalogue.py` (seed {SEED}).
"""


def eval_readme(
    text_stats: Sequence[tuple[str, Sequence[int], dict[str, str] | None, int]], n_img: int, per_class_img: int
) -> str:
    tbl = "\n".join(
        f"| {q} | {', '.join(CATEGORY[c] for c in cls)} | "
        f"{', '.join(f'{k}={v}' for k, v in (a or {}).items()) or '—'} | {n} |"
        for q, cls, a, n in text_stats
    )
    return f"""# Evaluation queries

`queries.jsonl` — one JSON object per line, either

    {{"query": "running shoes", "relevant": ["FM-00012", ...]}}
    {{"image": "images/q-001.png", "relevant": ["FM-00003", ...]}}

Image paths are relative to this folder. `relevant` lists **all** relevant catalogue
SKUs (often hundreds), so recall@k and nDCG/MAP are meaningful; precision@k is the most
natural headline metric.

Counts: **{len(text_stats)} text queries** and **{n_img} image queries**
({per_class_img} per category). Text queries come first in the file, then image queries.

## How relevance was defined

- **Image queries:** photos from the Fashion-MNIST **test** split (never in the
  catalogue, which uses the train split), inverted to dark-on-white exactly like the
  catalogue images. Relevant = every catalogue product of the same Fashion-MNIST class.
- **Text queries:** shopper-style wordings that are **held out** from the catalogue text —
  the build asserts that no query string occurs verbatim (case-insensitive) in any
  catalogue title or description, so matching needs synonyms/paraphrase ("jeans" →
  Trousers, "running shoes" → Sneakers, "handbag" → Bags, "winter jacket" → Coats).
  Relevant = every catalogue product whose class is in the query's target classes and,
  where the query names a visible attribute, whose **measured** attribute matches:
  - tone words (black/dark → `tone=dark`, white/light/light grey → `tone=light`),
  - pattern words (graphic, printed, floral, checked, flannel, patterned → `pattern` is patterned
    or striped; striped → `pattern=striped`; plain → `pattern=plain`),
  - shape words (skinny → `shape=slim`, wide leg → `shape=wide`).
  Attributes are measured from the greyscale image by the same heuristics used to write
  the catalogue copy (see `../LICENSE.md`); e.g. "floral print dress" cannot be checked
  for flowers, so it is approximated by "patterned dress". Queries naming a sub-style the
  dataset cannot distinguish ("chelsea boots", "tank top", "hoodie", "leggings",
  "evening gown") count every product of the class as relevant — a coarse but
  consistent definition. Treat attribute-query scores as approximate.

## Text queries

| query | categories | attribute filter | # relevant |
|-------|-----------|------------------|-----------:|
{tbl}
"""


# ---------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="demo", type=Path)
    ap.add_argument("--per-class", default=PER_CLASS, type=int)
    args = ap.parse_args()
    out: Path = args.out

    # Remove only what this script generates, so reruns are clean.
    for sub in ("images", "eval", "fixtures"):
        shutil.rmtree(out / sub, ignore_errors=True)
    for f in ("catalogue.csv", "LICENSE.md"):
        (out / f).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)

    Xtr, Ytr = load_idx("train-images-idx3-ubyte.gz"), load_idx("train-labels-idx1-ubyte.gz")
    Xte, Yte = load_idx("t10k-images-idx3-ubyte.gz"), load_idx("t10k-labels-idx1-ubyte.gz")
    rng = np.random.default_rng(SEED)

    # ---- main catalogue ----------------------------------------------------
    picks = {c: np.sort(rng.choice(np.where(Ytr == c)[0], args.per_class, replace=False)).tolist() for c in range(10)}
    rows, products = build_products(rng, Xtr, Ytr, picks, "FM-{:05d}", out / "images", "images/")
    add_further_photos(rows, products, Xtr, out / "images", "images/")
    write_csv(out / "catalogue.csv", rows, HEADER + ["images"])
    per_category = Counter(r[3] for r in rows)
    counts = {c: per_category[c] for c in CATEGORY}

    # ---- evaluation ----------------------------------------------------------
    catalogue_text = [(r[1] + " \n " + r[2]).lower() for r in rows]
    lines, text_stats = [], []
    for q, cls, attrs in TEXT_QUERIES:
        clash = [t for t in catalogue_text if q.lower() in t]
        assert not clash, f"query {q!r} occurs verbatim in catalogue text: {clash[0]!r}"
        rel = [p["sku"] for p in products if matches(p, cls, attrs)]
        assert rel, f"query {q!r} has no relevant products"
        lines.append({"query": q, "relevant": rel})
        text_stats.append((q, cls, attrs, len(rel)))
    by_class = {c: [p["sku"] for p in products if p["label"] == c] for c in range(10)}
    qdir = out / "eval" / "images"
    qdir.mkdir(parents=True, exist_ok=True)
    n = 0
    for c in range(10):
        for i in np.sort(rng.choice(np.where(Yte == c)[0], IMAGE_QUERIES_PER_CLASS, replace=False)):
            n += 1
            name = f"q-{n:03d}.png"
            (qdir / name).write_bytes(product_png(Xte[i]))
            lines.append({"image": f"images/{name}", "relevant": by_class[c]})
    with open(out / "eval" / "queries.jsonl", "w", encoding="utf-8") as handle:
        for obj in lines:
            handle.write(json.dumps(obj, ensure_ascii=False) + "\n")
    (out / "eval" / "README.md").write_text(eval_readme(text_stats, n, IMAGE_QUERIES_PER_CLASS), encoding="utf-8")

    # ---- docs ----------------------------------------------------------------
    (out / "LICENSE.md").write_text(license_md(Counter(counts), n), encoding="utf-8")

    # ---- fixtures ------------------------------------------------------------
    frng = np.random.default_rng(SEED + 1)
    used = set(i for v in picks.values() for i in v)
    small_picks = {}
    for c in (TSHIRT, TROUSER, SNEAKER, BAG):
        pool = [i for i in np.where(Ytr == c)[0] if i not in used]
        small_picks[c] = sorted(int(i) for i in frng.choice(pool, 10, replace=False))
    srows, _ = build_products(
        frng, Xtr, Ytr, small_picks, "SM-{:03d}", out / "fixtures" / "small" / "images", "images/"
    )
    write_csv(out / "fixtures" / "small" / "catalogue.csv", srows)
    build_bad_fixture(out, Xtr, Ytr, np.random.default_rng(SEED + 2))

    # ---- summary -------------------------------------------------------------
    print("products per category:")
    for k, v in counts.items():
        print(f"  {k:16s} {v}")
    print(f"total products: {len(rows)}")
    print(f"eval: {len(text_stats)} text queries, {n} image queries")
    print(f"fixtures: small={len(srows)} rows")
    tone = Counter(p["tone"] for p in products)
    pat = Counter(p["pattern"] for p in products if p["label"] in GARMENTS)
    print(f"tone: {dict(tone)}  pattern(garments): {dict(pat)}")


if __name__ == "__main__":
    main()
