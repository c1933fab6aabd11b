from __future__ import annotations

import csv
import json
import re
import zipfile
from decimal import Decimal

import pytest

from catalog.ingest import ImportFileError, extract_zip, parse_row, run_import
from catalog.models import ImportJob, Product
from embeddings.models import ProductVector
from tests.conftest import BAD_CSV, SMALL_CSV


def rewrite_csv(path, edit) -> list[dict]:
    """Apply edit(rows) to a catalogue CSV in place; return the edited rows."""
    rows = list(csv.DictReader(open(path)))
    edit(rows)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=rows[0].keys())
        writer.writeheader()
        writer.writerows(rows)
    return rows


def import_file(path, capture) -> ImportJob:
    job = ImportJob.objects.create(source_name=str(path), csv_path=str(path))
    with capture(execute=True):
        return run_import(job)


def test_good_file_lands_and_is_embedded(small_catalogue):
    job = small_catalogue
    assert (job.created, job.updated, job.unchanged, job.failed) == (40, 0, 0, 0)
    assert Product.objects.count() == 40
    product = Product.objects.get(sku="SM-001")
    assert product.thumbnail.name.startswith("thumbs/")
    assert product.image.storage.exists(product.image.name)
    # every product has a current vector under the active model
    assert ProductVector.objects.filter(content_hash__in=Product.objects.values("content_hash")).count() == 40


def test_reimport_changes_nothing(small_catalogue, django_capture_on_commit_callbacks):
    before = {v.pk: v.updated_at for v in ProductVector.objects.all()}
    job = import_file(SMALL_CSV, django_capture_on_commit_callbacks)
    assert (job.created, job.updated, job.unchanged, job.failed) == (0, 0, 40, 0)
    assert {v.pk: v.updated_at for v in ProductVector.objects.all()} == before


def test_changed_row_is_updated_and_reembedded(small_catalogue, copy_catalogue, django_capture_on_commit_callbacks):
    path = copy_catalogue()

    def edit(rows: list[dict]) -> None:
        rows[0]["title"] = "A completely new title"
        rows[1]["price"] = "1.00"

    rows = rewrite_csv(path, edit)
    old_vector = ProductVector.objects.get(product__sku=rows[0]["sku"])
    job = import_file(path, django_capture_on_commit_callbacks)
    assert (job.created, job.updated, job.unchanged, job.failed) == (0, 2, 38, 0)
    product = Product.objects.get(sku=rows[0]["sku"])
    assert product.title == "A completely new title"
    assert Product.objects.get(sku=rows[1]["sku"]).price == Decimal("1.00")
    new_vector = ProductVector.objects.get(product=product)
    assert new_vector.content_hash == product.content_hash != old_vector.content_hash
    assert list(new_vector.text_vec) != list(old_vector.text_vec)


def test_bad_rows_are_reported_and_good_rows_land(small_catalogue, django_capture_on_commit_callbacks):
    expected = json.loads((BAD_CSV.parent / "expected.json").read_text())
    job = import_file(BAD_CSV, django_capture_on_commit_callbacks)
    reported = {e["row"] for e in job.errors}
    expected_rows = {r["row"] for r in expected["bad_rows"]}
    duplicate_rows = {r["row"] for r in expected["duplicate_rows"]}
    assert reported == expected_rows | duplicate_rows
    assert job.failed == len(expected_rows) and job.duplicates == len(duplicate_rows)
    messages = " ".join(e["error"] for e in job.errors)
    for phrase in ("title is empty", "not a number", "escapes the CSV's folder", "not found", "sku repeated at row 17"):
        assert phrase in messages
    assert job.created + job.updated + job.unchanged == job.total_rows - job.failed - job.duplicates
    # the last row with a repeated sku wins
    assert Product.objects.get(sku="BAD-G01").title == "Duplicate entry"
    # products stored before are untouched
    assert Product.objects.filter(sku__startswith="SM-").count() == 40


def test_bad_row_never_overwrites_a_stored_product(small_catalogue, copy_catalogue, django_capture_on_commit_callbacks):
    path = copy_catalogue()
    first_sku = next(csv.DictReader(open(path)))["sku"]
    before = Product.objects.get(sku=first_sku)
    rows = rewrite_csv(path, lambda rows: rows[0].update(image="images/does-not-exist.png", title="Should not land"))
    job = import_file(path, django_capture_on_commit_callbacks)
    assert job.failed == 1 and job.errors[0]["row"] == 1
    after = Product.objects.get(sku=rows[0]["sku"])
    assert (after.title, after.content_hash) == (before.title, before.content_hash)


def test_wrong_header_fails_the_whole_file(db, tmp_path, django_capture_on_commit_callbacks):
    path = tmp_path / "x.csv"
    path.write_text("sku,name,price\n1,a,2\n")
    job = import_file(path, django_capture_on_commit_callbacks)
    assert job.status == ImportJob.Status.FAILED
    assert "missing title, description, category, image" in job.error_message


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"sku": "A1", "title": "t", "description": "", "category": "c", "price": "abc", "image": "i.png"}, "not a number"),
        ({"sku": "A1", "title": "t", "description": "", "category": "c", "price": "-1", "image": "i.png"}, "must be a number from 0"),
        ({"sku": "A\x071", "title": "t", "description": "", "category": "c", "price": "1", "image": "i.png"}, "sku 'A\\x071' contains a control character (U+0007)"),
        ({"sku": "A" * 256, "title": "t", "description": "", "category": "c", "price": "1", "image": "i.png"}, "sku is longer than 255 characters"),
        ({"sku": "A1", "title": "t", "description": "", "category": "c", "price": "1e99", "image": "i.png"}, "must be a number from 0"),
        ({"sku": "A1", "title": "t\x00", "description": "", "category": "c", "price": "1", "image": "i.png"}, "title contains a control character"),
        ({"sku": "A1", "title": "t", "description": "a\x00b", "category": "c", "price": "1", "image": "i.png"}, "description contains a control character"),
        ({"sku": "A1", "title": "t", "description": "", "category": "c", "price": "1", "image": None}, "missing field(s): image"),
        ({"sku": "A1", "title": "", "description": "", "category": "", "price": "1", "image": "x"}, "title is empty; category is empty"),
    ],
)
def test_parse_row_names_the_problem(raw, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_row(1, raw)


def test_zip_with_escaping_entry_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("catalogue.csv", "sku,title,description,category,price,image\n")
        zf.writestr("../../outside.txt", "x")
    with pytest.raises(ImportFileError, match="escapes"):
        extract_zip(archive, tmp_path / "out")
    assert not (tmp_path.parent / "outside.txt").exists()


def test_zip_bomb_is_refused(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("catalogue.csv", "sku,title,description,category,price,image\n")
        zf.writestr("images/big.bin", b"\0" * 50_000_000)
    with pytest.raises(ImportFileError, match="zip bomb"):
        extract_zip(archive, tmp_path / "out")


def test_zip_upload_imports(db, tmp_path, django_capture_on_commit_callbacks):
    from embeddings.registry import ensure_active_model

    ensure_active_model()
    archive = tmp_path / "shop.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in SMALL_CSV.parent.rglob("*"):
            if path.is_file():
                zf.write(path, f"shop/{path.relative_to(SMALL_CSV.parent)}")
    csv_path = extract_zip(archive, tmp_path / "unzipped")
    job = import_file(csv_path, django_capture_on_commit_callbacks)
    assert job.created == 40 and job.failed == 0


def test_private_image_urls_are_refused(db, tmp_path, django_capture_on_commit_callbacks):
    from embeddings.registry import ensure_active_model

    ensure_active_model()
    path = tmp_path / "urls.csv"
    path.write_text(
        "sku,title,description,category,price,image\n"
        "U1,Loopback,,Bags,1,http://127.0.0.1:6379/x.png\n"
        "U2,Metadata,,Bags,1,http://169.254.169.254/latest\n"
        "U3,Private,,Bags,1,http://10.0.0.8/a.png\n"
        "U4,Scheme,,Bags,1,file:///etc/passwd\n"
    )
    job = import_file(path, django_capture_on_commit_callbacks)
    assert job.failed == 4
    assert sum("non-public address" in e["error"] for e in job.errors) == 3
    assert Product.objects.count() == 0
