"""`make eval` end to end on the tiny suite: build it, then run eval_suite as the Makefile does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from embeddings.models import EmbeddingModel

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "build_eval_suite.py"
DEBIAN_DATA = (
    "/usr/share/wordnet",
    "/usr/share/datasets/fashion-mnist",
    "/usr/share/openclipart",
    "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf",
    "/usr/share/unicode/cldr",
)
MISSING = [p for p in DEBIAN_DATA if not Path(p).exists()]


@pytest.mark.timeout(1800)  # three catalogues, two trainings each: minutes on two cores
@pytest.mark.skipif(bool(MISSING), reason=f"Debian data missing: {' '.join(MISSING)} (make debian-data)")
def test_make_eval_runs_end_to_end_on_the_tiny_suite(tmp_path, transactional_db, capsys):
    suite = tmp_path / "suite"
    built = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--out", str(suite)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    out = tmp_path / "results.md"
    call_command(
        "eval_suite", suite=suite, towers="gru,minilm", epochs=1, wipe=True, markdown=out, text_weights="0,0.5,1"
    )
    table = out.read_text()
    for name in ("fashion", "emoji", "clipart"):
        for kind in ("keyword", "paraphrase", "nodesc", "photo"):
            assert f"| {name} | {kind} |" in table, (name, kind)
    assert "| fashion | unseen_photo |" in table
    for name in ("fashion", "emoji", "clipart"):  # photo + words, and its text_weight grid
        assert f"| {name} | photo_words | map@10 | semantic |" in table
        for method in ("baseline", "gru", "minilm"):
            assert f"| {name} | {method} | hybrid |" in table, (name, method)
    assert "Chosen: text_weight " in table
    for words in ("keyword", "paraphrase"):  # words against photos alone, wordings apart
        assert f"| fashion | nodesc | map@10 | text_photo ({words}) |" in table
    # Every trained model went through the gate and says what it decided.
    gates = [line for line in table.splitlines() if line.startswith("| fashion | 60 |")]
    assert gates and gates[0].count("**") == 4  # **decision** for GRU and for MiniLM
    assert EmbeddingModel.objects.filter(status=EmbeddingModel.Status.ACTIVE).count() == 1
    assert "active at the end" in capsys.readouterr().out


def test_eval_suite_refuses_to_run_without_wipe(db, tmp_path):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--wipe"):
        call_command("eval_suite", suite=tmp_path)
    with pytest.raises(CommandError, match="build_eval_suite"):
        call_command("eval_suite", suite=tmp_path, wipe=True)


def test_wipe_leaves_no_word_of_the_last_catalogue(db):
    # Another catalogue's vocabulary would get synonyms of its own and take a broad term's
    # places from the next catalogue's words (docs/evaluation.md, "The keyword column's drift").
    from django.db import connection

    from catalog.models import Product, Synonym
    from catalog.suite import wipe
    from catalog.synonyms import refresh

    Product.objects.create(sku="A-1", title="Waterproof anorak", category="Coats", price="10.00", description="")
    Synonym.objects.create(term="tee", word="shirt", source=Synonym.Source.ADMIN)
    refresh()

    def words() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM catalog_searchword WHERE word = 'anorak'")
            return cursor.fetchone()[0]

    assert words() == 1 and Synonym.objects.filter(word="anorak").exists()
    wipe()
    assert words() == 0 and not Synonym.objects.filter(word="anorak").exists()
    assert Synonym.objects.filter(source=Synonym.Source.ADMIN, term="tee").exists()  # an admin's are kept
