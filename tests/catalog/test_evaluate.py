from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from catalog.models import Product
from embeddings.models import EvaluationRun
from tests.conftest import SMALL_CSV


def test_evaluate_scores_every_method(small_catalogue, tmp_path, capsys):
    by_category: dict[str, list[str]] = {}
    for sku, category in Product.objects.values_list("sku", "category"):
        by_category.setdefault(category, []).append(sku)
    image = next((SMALL_CSV.parent / "images").iterdir())
    sku_of_image = Product.objects.get(sku=image.stem).sku if Product.objects.filter(sku=image.stem).exists() else None
    queries = tmp_path / "queries.jsonl"
    lines = [{"query": category.lower(), "relevant": skus} for category, skus in by_category.items()]
    own_category = Product.objects.get(sku=sku_of_image).category if sku_of_image else next(iter(by_category))
    (tmp_path / "q.png").write_bytes(image.read_bytes())
    lines.append({"image": "q.png", "relevant": by_category[own_category]})
    queries.write_text("\n".join(json.dumps(line) for line in lines))

    call_command("evaluate", str(queries))
    out = capsys.readouterr().out
    run = EvaluationRun.objects.get()
    assert run.n_text_queries == len(by_category) and run.n_image_queries == 1
    methods = {r["method"] for r in run.results["rows"]}
    assert "keyword (Postgres full-text)" in methods
    assert any("baseline" in m and "photo" in m for m in methods)
    for row in run.results["rows"]:
        assert 0.0 <= row["mAP@10"] <= 1.0 and 0.0 <= row["R@10"] <= 1.0
    keyword = next(r for r in run.results["rows"] if r["method"].startswith("keyword"))
    # category names are words of every product's text: keyword search finds them
    assert keyword["P@10"] == pytest.approx(1.0)
    assert "mAP@10" in out and "evaluation #" in out


def test_evaluate_rejects_a_bad_query_file(small_catalogue, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "x"}\n')
    with pytest.raises(CommandError, match="line 1: 'relevant' must be a non-empty list"):
        call_command("evaluate", str(bad))
