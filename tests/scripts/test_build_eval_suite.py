"""scripts/build_eval_suite.py --tiny: every file, header, query and skus, and determinism."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "build_eval_suite.py"


def load_builder():
    spec = importlib.util.spec_from_file_location("build_eval_suite", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


builder = load_builder()
MISSING = builder.sources_missing()
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f"Debian data packages missing: {' '.join(MISSING)} (make debian-data)"
)
CATALOGUES = {
    "fashion": set(builder.KINDS),
    "emoji": set(builder.KINDS) - {"unseen_photo"},
    "clipart": set(builder.KINDS) - {"unseen_photo"},
}


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("evalsuite") / "suite"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--out", str(out)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    for name in CATALOGUES:
        assert f"{name}: " in run.stdout
    return out


def read_rows(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def words(text: str) -> str:
    return " " + " ".join(re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower())) + " "


def test_writes_only_the_three_catalogues(suite: Path) -> None:
    assert sorted(p.name for p in suite.iterdir()) == sorted(CATALOGUES)
    for name in CATALOGUES:
        files = {p.name for p in (suite / name).iterdir()}
        assert files == {"catalogue.csv", "catalogue-nodesc.csv", "images", "queries", "queries.jsonl", "README.md"}


@pytest.mark.parametrize("name", sorted(CATALOGUES))
def test_catalogue_files(suite: Path, name: str) -> None:
    d = suite / name
    header, rows = read_rows(d / "catalogue.csv")
    assert header == ["sku", "title", "description", "category", "price", "image"]
    assert 50 <= len(rows) <= 70
    assert len({r["sku"] for r in rows}) == len(rows)
    for r in rows:
        assert r["title"] and r["description"] and r["category"]
        assert float(r["price"]) > 0
        assert not Path(r["image"]).is_absolute()
        with Image.open(d / r["image"]) as img:
            img.verify()
    nodesc_header, nodesc = read_rows(d / "catalogue-nodesc.csv")
    assert nodesc_header == header
    assert nodesc == [{**r, "description": ""} for r in rows]
    readme = (d / "README.md").read_text(encoding="utf-8")
    assert "licen" in readme.lower() and "Relevance" in readme


@pytest.mark.parametrize("name", sorted(CATALOGUES))
def test_queries(suite: Path, name: str) -> None:
    d = suite / name
    _, rows = read_rows(d / "catalogue.csv")
    skus = {r["sku"] for r in rows}
    texts = [words(r["title"] + " " + r["description"]) for r in rows]
    lines = (d / "queries.jsonl").read_text(encoding="utf-8").splitlines()
    queries = [json.loads(line) for line in lines]
    kinds: dict[str, int] = {}
    for q in queries:
        kinds[q["kind"]] = kinds.get(q["kind"], 0) + 1
        assert q["relevant"] and set(q["relevant"]) <= skus, q
        assert len(set(q["relevant"])) == len(q["relevant"])
        if q["kind"] in ("keyword", "paraphrase"):
            assert set(q) == {"kind", "query", "relevant"}
            assert 1 <= len(q["query"].split()) <= 4, q
        elif q["kind"] == "photo_words":  # a photo + one title word: its category's titles with it
            assert set(q) == {"kind", "image", "query", "relevant"} and len(q["query"].split()) == 1
            by_sku = {r["sku"]: r for r in rows}
            category = {by_sku[sku]["category"] for sku in q["relevant"]}
            assert len(category) == 1, q
            matching = {r["sku"] for r in rows if r["category"] in category and f" {q['query']} " in words(r["title"])}
            assert set(q["relevant"]) == matching and 2 <= len(matching) <= 30, q
        else:
            assert set(q) == {"kind", "image", "relevant"}
            assert q["image"].startswith("queries/")
            with Image.open(d / q["image"]) as img:
                assert img.mode == "RGB" or q["kind"] == "unseen_photo"
        if q["kind"] == "paraphrase":  # other words than the catalogue's
            assert not any(words(q["query"]) in t for t in texts), q
    assert set(kinds) == CATALOGUES[name]
    # photo_words: the tiny clipart has few titles that share a word within a category
    assert all(8 <= n <= 12 for kind, n in kinds.items() if kind != "photo_words"), kinds
    assert 4 <= kinds["photo_words"] <= 10, kinds
    if name == "emoji":  # held-back keywords: never catalogue text
        for q in queries:
            if q["kind"] == "keyword":
                assert not any(words(q["query"]) in t for t in texts), q


def test_photo_query_is_a_perturbed_catalogue_photo(suite: Path) -> None:
    d = suite / "clipart"
    _, rows = read_rows(d / "catalogue.csv")
    image_of = {r["sku"]: r["image"] for r in rows}
    q = next(json.loads(line) for line in (d / "queries.jsonl").read_text().splitlines() if '"photo"' in line)
    with Image.open(d / q["image"]) as query, Image.open(d / image_of[q["relevant"][0]]) as item:
        assert 0.74 <= query.width / item.width <= 0.96
        assert 0.74 <= query.height / item.height <= 0.96


def test_deterministic(suite: Path, tmp_path: Path) -> None:
    # Another process with another hash seed: set order must not leak into the output.
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--out", str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    )
    assert run.returncode == 0, run.stderr
    for name in CATALOGUES:
        for f in ("queries.jsonl", "catalogue.csv"):
            assert (tmp_path / name / f).read_bytes() == (suite / name / f).read_bytes(), (name, f)
    first = sorted(p.relative_to(suite) for p in suite.rglob("*"))
    assert first == sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))


def test_only_and_unknown_names(tmp_path: Path) -> None:
    assert builder.main(["--tiny", "--out", str(tmp_path), "--only", "emoji"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["emoji"]
    with pytest.raises(SystemExit):
        builder.main(["--tiny", "--out", str(tmp_path), "--only", "shoes"])
