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
        (
            {"sku": "A1", "title": "t", "description": "", "category": "c", "price": "abc", "image": "i.png"},
            "not a number",
        ),
        (
            {"sku": "A1", "title": "t", "description": "", "category": "c", "price": "-1", "image": "i.png"},
            "must be a number from 0",
        ),
        (
            {"sku": "A\x071", "title": "t", "description": "", "category": "c", "price": "1", "image": "i.png"},
            "sku 'A\\x071' contains a control character (U+0007)",
        ),
        (
            {"sku": "A" * 256, "title": "t", "description": "", "category": "c", "price": "1", "image": "i.png"},
            "sku is longer than 255 characters",
        ),
        (
            {"sku": "A1", "title": "t", "description": "", "category": "c", "price": "1e99", "image": "i.png"},
            "must be a number from 0",
        ),
        (
            {"sku": "A1", "title": "t\x00", "description": "", "category": "c", "price": "1", "image": "i.png"},
            "title contains a control character",
        ),
        (
            {"sku": "A1", "title": "t", "description": "a\x00b", "category": "c", "price": "1", "image": "i.png"},
            "description contains a control character",
        ),
        (
            {"sku": "A1", "title": "t", "description": "", "category": "c", "price": "1", "image": None},
            "missing field(s): image",
        ),
        (
            {"sku": "A1", "title": "", "description": "", "category": "", "price": "1", "image": "x"},
            "title is empty; category is empty",
        ),
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


# --- catalogues as spreadsheets write them --------------------------------------------------

HEADER = ["sku", "title", "description", "category", "price", "image"]


def write_catalogue(folder, rows, *, delimiter=",", encoding="utf-8", header=HEADER, name="shop.csv") -> str:
    """Write rows (lists of cells) as a CSV next to the small fixture's images; return its path."""
    import io

    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    path = folder / name
    path.write_bytes(out.getvalue().encode(encoding))
    return path


@pytest.fixture
def shop(db, copy_catalogue):
    from embeddings.registry import ensure_active_model

    ensure_active_model()
    return copy_catalogue().parent


ODD_SKUS = [
    "A/B 50% #1?",
    "sku with spaces",
    "Ünïcødé-ßku ✓",
    "quote\"s and 'apostrophes'",
    "x" * 255,
    "../..",
    "~.",
    "a//b/",
    "100%",
]


def test_printable_skus_land_and_their_pages_answer(shop, client, django_capture_on_commit_callbacks):
    rows = [[sku, f"Product {i}", "", "Bags", "10", f"images/SM-00{i + 1}.png"] for i, sku in enumerate(ODD_SKUS)]
    job = import_file(write_catalogue(shop, rows), django_capture_on_commit_callbacks)
    assert (job.created, job.failed) == (len(ODD_SKUS), 0), job.errors
    for sku in ODD_SKUS:
        product = Product.objects.get(sku=sku)
        url = product.get_absolute_url()
        assert "#" not in url and "?" not in url and " " not in url
        page = client.get(url)
        assert page.status_code == 200, (sku, url)
        assert page.context["product"] == product
    # the API gives each sku as it is, with a link that leads back to it
    body = client.get("/api/search", {"q": "product", "mode": "keyword", "k": 20}).json()
    assert sorted(r["sku"] for r in body["results"]) == sorted(ODD_SKUS)
    for result in body["results"]:
        page = client.get(result["url"].removeprefix("http://testserver"))
        assert page.status_code == 200 and page.context["product"].sku == result["sku"]


@pytest.mark.parametrize(
    "sku, message",
    [
        ("tab\there", "contains a control character (U+0009)"),
        ("bell\x07", "contains a control character (U+0007)"),
        ("", "sku is empty"),
        ("x" * 256, "sku is longer than 255 characters"),
    ],
)
def test_bad_skus_are_row_errors(shop, django_capture_on_commit_callbacks, sku, message):
    rows = [
        [sku, "Bad sku", "", "Bags", "10", "images/SM-001.png"],
        ["GOOD-1", "Good", "", "Bags", "1", "images/SM-002.png"],
    ]
    job = import_file(write_catalogue(shop, rows), django_capture_on_commit_callbacks)
    assert job.created == 1 and job.failed == 1
    assert job.errors[0]["row"] == 1 and message in job.errors[0]["error"]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "cp1252"])
@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_encodings_and_delimiters(shop, django_capture_on_commit_callbacks, encoding, delimiter):
    rows = [
        ["ENC-1", "Café crème tote", 'Naïve\nmulti-line, "quoted"; description', "Bags", "12.50", "images/SM-001.png"],
        ["ENC-2", "Plain tote", "", "Bags", "3", "images/SM-002.png"],
    ]
    job = import_file(
        write_catalogue(shop, rows, delimiter=delimiter, encoding=encoding), django_capture_on_commit_callbacks
    )
    assert (job.created, job.failed, job.total_rows) == (2, 0, 2), job.errors
    product = Product.objects.get(sku="ENC-1")
    assert product.title == "Café crème tote"
    assert product.description == 'Naïve\nmulti-line, "quoted"; description'
    assert product.price == Decimal("12.50")
    if encoding == "cp1252":
        assert len(job.notes) == 1 and "not UTF-8" in job.notes[0] and "Windows-1252" in job.notes[0]
    else:
        assert job.notes == []


def test_decimal_comma_prices(shop, django_capture_on_commit_callbacks):
    rows = [
        ["P1", "t", "", "Bags", "12,50", "images/SM-001.png"],
        ["P2", "t", "", "Bags", "1.234,56", "images/SM-002.png"],
        ["P3", "t", "", "Bags", "1,234.56", "images/SM-003.png"],
        ["P4", "t", "", "Bags", "1,234", "images/SM-004.png"],
    ]
    import_file(write_catalogue(shop, rows, delimiter=";"), django_capture_on_commit_callbacks)
    prices = dict(Product.objects.values_list("sku", "price"))
    assert prices == {"P1": Decimal("12.50"), "P2": Decimal("1234.56"), "P3": Decimal("1234.56"), "P4": Decimal("1234")}


@pytest.mark.parametrize(
    "data, needle",
    [
        (
            b"sku,title,description,category,price,image\nA,caf\x81,d,c,1,x.png\n",
            "is not UTF-8 text (byte 0x81 on line 2",
        ),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "the first line must be a header naming the columns"),
        (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff;", "its first line has NUL bytes"),
        (b"", "is empty"),
        (b"name;cost\nA;1\n", "first line must be a header naming the columns"),
        (
            b"sku;title;price\nA;t;1\n",
            "missing description, category, image (the header was read as semicolon-separated)",
        ),
        (b"sku,title,description,category,price,image,price\n", "price appear more than once"),
    ],
)
def test_unreadable_files_fail_whole_and_clearly(shop, django_capture_on_commit_callbacks, data, needle):
    before = Product.objects.count()
    path = shop / "broken.csv"
    path.write_bytes(data)
    job = import_file(path, django_capture_on_commit_callbacks)
    assert job.status == ImportJob.Status.FAILED and needle in job.error_message
    assert Product.objects.count() == before


def test_repeated_sku_last_row_wins_and_earlier_rows_are_reported(shop, django_capture_on_commit_callbacks):
    rows = [
        ["R1", "first", "", "Bags", "1", "images/SM-001.png"],
        ["R2", "other", "", "Bags", "1", "images/SM-002.png"],
        ["R1", "second", "", "Bags", "2", "images/SM-001.png"],
        ["R1", "third", "", "Bags", "3", "images/SM-003.png"],
    ]
    job = import_file(write_catalogue(shop, rows), django_capture_on_commit_callbacks)
    assert (job.created, job.failed, job.duplicates) == (2, 0, 2)
    assert [(e["row"], e["sku"]) for e in job.errors] == [(1, "R1"), (3, "R1")]
    assert all("sku repeated at row 4" in e["error"] for e in job.errors)
    assert Product.objects.get(sku="R1").title == "third"
    assert "2 repeated skus skipped" in job.summary()


def test_unknown_columns_are_noted_once_and_ignored(shop, django_capture_on_commit_callbacks):
    header = ["SKU", " Title ", "colour", "description", "category", "price", "image", "", "weight"]
    rows = [
        ["X1", "t", "red", "", "Bags", "1", "images/SM-001.png", "", "2kg"],
        ["X2", "t", "blue", "", "Bags", "1", "images/SM-002.png", "", "1kg"],
    ]
    job = import_file(write_catalogue(shop, rows, header=header), django_capture_on_commit_callbacks)
    assert (job.created, job.failed) == (2, 0)
    assert job.notes == ["ignored 3 column(s) Vitrine does not use: colour, (unnamed column 8), weight"]


def test_short_long_and_unclosed_rows_are_reported_with_their_number(shop, django_capture_on_commit_callbacks):
    path = shop / "ragged.csv"
    path.write_text(
        "sku,title,description,category,price,image\n"
        "OK1,t,,Bags,1,images/SM-001.png\n"
        "SHORT,t,,Bags\n"
        "LONG,t,,Bags,1,images/SM-002.png,surprise\n"
        "TRAIL,t,,Bags,1,images/SM-003.png,,\n"
        "\n"
        'OPEN,"t,,Bags,1,images/SM-004.png\n'
        "LOST,t,,Bags,1,images/SM-005.png\n"
    )
    job = import_file(path, django_capture_on_commit_callbacks)
    errors = {e["row"]: e["error"] for e in job.errors}
    assert job.created == 2 and set(errors) == {2, 3, 5}
    assert "missing field(s): price, image" in errors[2]
    assert "too many fields" in errors[3]
    assert "is a quote left open?" in errors[5] and "lines 7-8" in errors[5]
    assert job.total_rows == 5 == job.created + job.failed


def test_bad_file_changes_nothing_stored(small_catalogue, copy_catalogue, django_capture_on_commit_callbacks):
    before = list(Product.objects.order_by("sku").values_list("sku", "title", "content_hash"))
    path = copy_catalogue().parent / "bad.csv"
    # good rows first; a byte neither UTF-8 nor Windows-1252 on the last line refuses the whole file
    path.write_bytes(
        b"sku,title,description,category,price,image\nSM-001,New title,,Bags,1,images/SM-001.png\n"
        b"SM-002,\x81,,Bags,1,images/SM-002.png\n"
    )
    job = import_file(path, django_capture_on_commit_callbacks)
    assert job.status == ImportJob.Status.FAILED
    assert list(Product.objects.order_by("sku").values_list("sku", "title", "content_hash")) == before


def test_cli_reports_notes_and_rows(shop, capsys):
    from django.core.management import call_command

    rows = [
        ["C1", "Crème", "", "Bags", "1", "images/SM-001.png", "x"],
        ["C1", "Crème 2", "", "Bags", "1", "images/SM-001.png", "y"],
    ]
    path = write_catalogue(shop, rows, delimiter=";", encoding="cp1252", header=HEADER + ["extra"])
    call_command("ingest_csv", str(path))
    out, err = capsys.readouterr()
    assert "note: shop.csv is not UTF-8" in err and "note: ignored 1 column(s)" in err
    assert "row 1: C1: sku repeated at row 2" in err
    assert "1 created" in out and "1 repeated skus skipped" in out
    assert Product.objects.get(sku="C1").title == "Crème 2"
