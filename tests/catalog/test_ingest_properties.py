"""Property tests (Hypothesis) for the CSV importer: it never crashes, and every data row
either lands or is reported with its number.

The parser-only properties run a few hundred examples in seconds; the end-to-end one
imports into the real database on a small sample (vectors are not computed: that is
tests/catalog/test_ingest.py's job). For a longer hunt: INGEST_PROPERTY_EXAMPLES=2000.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from catalog.ingest import COLUMNS, ImportFileError, open_csv, parse_row, run_import, scan_csv
from catalog.models import ImportJob, Product
from tests.conftest import SMALL_CSV

EXAMPLES = int(os.environ.get("INGEST_PROPERTY_EXAMPLES", "150"))
FAST = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
IMAGES = sorted(p.name for p in (SMALL_CSV.parent / "images").iterdir())[:3]
# Characters spreadsheets, people and attackers put in cells.
SPECIALS = [
    ",",
    ";",
    "\t",
    '"',
    "'",
    "\n",
    "\r",
    "\r\n",
    "\x00",
    "\x07",
    "\u2028",
    "\ufeff",
    " ",
    "#",
    "?",
    "%",
    "/",
    "\\",
    "..",
    "é",
    "€",
    "✓",
    "𝔘",
    "0",
    "-1",
    "1e9999",
    "NaN",
    "12,50",
    "=cmd|' /C calc'!A0",
]
cell_text = st.one_of(
    st.text(max_size=12),
    st.lists(st.sampled_from(SPECIALS) | st.text(max_size=3), max_size=5).map("".join),
)


def parse_everything(path: Path) -> list[int]:
    """Read a file as run_import does; return the row numbers. Only ImportFileError may escape
    sniffing, and only ValueError may escape validating a row."""
    try:
        scan = scan_csv(path)
    except ImportFileError as exc:
        assert str(exc)
        return []
    numbers = []
    for number, raw in open_csv(path, scan.format):
        numbers.append(number)
        if "__error__" in raw:
            assert raw["__error__"]
            continue
        try:
            row = parse_row(number, raw)
        except ValueError as exc:
            assert str(exc)
            continue
        assert row.sku and len(row.sku) <= 255 and row.price >= 0
    assert numbers == list(range(1, len(numbers) + 1)) and scan.total_rows == len(numbers)
    return numbers


def in_file(data: bytes) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="vitrine-prop-"))
    path = folder / "catalogue.csv"
    path.write_bytes(data)
    return path


@FAST
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_crash_the_parser(data):
    parse_everything(in_file(data))


@FAST
@given(
    st.sampled_from([",", ";", "\t"]),
    st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "cp1252"]),
    st.lists(st.sampled_from(list(',;\t"\n\r abcé€\x00')) | st.text(max_size=2), max_size=200).map("".join),
)
def test_csv_shaped_text_never_crashes_the_parser(delimiter, encoding, body):
    header = delimiter.join(COLUMNS) + "\n"
    data = (header + body).encode(encoding, errors="replace")
    parse_everything(in_file(data))


@st.composite
def catalogues(draw, skus=st.sampled_from(["A", "B", "C", "D", " A ", "", "x" * 256, "A/B 50% #1?", "ü\x07"])):
    """Rows of cells: about half valid (some changed in one cell), the rest anything."""
    good_image = st.sampled_from([f"images/{IMAGES[0]}", f"images/{IMAGES[1]}"])
    rows = []
    for _ in range(draw(st.integers(0, 12))):
        if draw(st.booleans()):
            row = [
                draw(st.sampled_from(["A", "A/B 50% #1?", "Ünï code"]) | st.integers(0, 40).map("S{}".format)),
                draw(st.sampled_from(["Title", "  padded  ", "Crème"])),
                draw(st.text(max_size=30)),
                "Bags",
                draw(st.sampled_from(["1", "12.50", "12,50", "1,234.00"])),
                draw(good_image),
            ]
            if draw(st.integers(0, 3)) == 0:
                row[draw(st.integers(0, 5))] = draw(cell_text)
        else:
            row = [
                draw(skus | cell_text),
                draw(st.sampled_from(["Title", "", "  padded  ", "t" * 301]) | cell_text),
                draw(cell_text),
                draw(st.sampled_from(["Bags", ""]) | cell_text),
                draw(st.sampled_from(["1", "12.50", "12,50", "-1", "abc", "", "1e99"]) | cell_text),
                draw(
                    st.sampled_from(
                        ["images/missing.png", "../../etc/passwd", "/etc/passwd", "", "http://127.0.0.1:9/x.png"]
                    )
                    | good_image
                    | cell_text
                ),
                *draw(st.lists(cell_text, max_size=2)),  # extra cells: reported unless empty
            ]
        rows.append(row)
    return rows


def write(rows: list[list[str]], delimiter: str, encoding: str, quoting: int, extra_column: bool) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, quoting=quoting, lineterminator="\r\n")
    writer.writerow([*COLUMNS, *(["notes"] if extra_column else [])])
    writer.writerows(rows)
    return out.getvalue().encode(encoding, errors="replace")


@FAST
@given(
    catalogues(),
    st.sampled_from([",", ";", "\t"]),
    st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "cp1252"]),
    st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
    st.booleans(),
)
def test_every_generated_row_is_numbered_exactly_once(rows, delimiter, encoding, quoting, extra_column):
    numbers = parse_everything(in_file(write(rows, delimiter, encoding, quoting, extra_column)))
    assert numbers == list(range(1, len(rows) + 1))


@pytest.mark.django_db
@settings(
    max_examples=max(20, EXAMPLES // 10),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    catalogues(),
    st.sampled_from([",", ";", "\t"]),
    st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]),
    st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
)
def test_every_row_lands_or_is_reported_with_its_number(rows, delimiter, encoding, quoting):
    # Each example's skus are its own: the database is not reset between examples.
    prefix = uuid.uuid4().hex[:8] + "-"
    rows = [[prefix + r[0] if r[0].strip() else r[0], *r[1:]] for r in rows]
    folder = Path(tempfile.mkdtemp(prefix="vitrine-prop-"))
    (folder / "images").mkdir()
    for name in IMAGES[:2]:
        (folder / "images" / name).write_bytes((SMALL_CSV.parent / "images" / name).read_bytes())
    path = folder / "catalogue.csv"
    path.write_bytes(write(rows, delimiter, encoding, quoting, extra_column=False))
    before = Product.objects.exclude(sku__startswith=prefix).count()

    job = run_import(ImportJob.objects.create(source_name="prop", csv_path=str(path)), queue_embeddings=False)

    assert job.status != ImportJob.Status.FAILED, job.error_message
    event("some rows landed" if job.created else "no row landed")
    event(f"{job.created + job.updated} of {len(rows)} landed")
    assert job.total_rows == len(rows)
    assert job.created + job.updated + job.unchanged + job.failed + job.duplicates == len(rows)
    reported = [e["row"] for e in job.errors]
    assert len(reported) == len(set(reported)) == job.failed + job.duplicates
    assert set(reported) <= set(range(1, len(rows) + 1))
    # the last row of each sku decides it: landed with its title, or reported and not stored
    last: dict[str, int] = {}
    for number, row in enumerate(rows, start=1):
        if row[0].strip():
            last[row[0].strip()] = number
    landed = {n for n in range(1, len(rows) + 1) if n not in reported}
    for sku, number in last.items():
        if "\x00" in sku:  # cannot even be looked up (Postgres text refuses NUL): must be reported
            assert number in reported
            continue
        stored = Product.objects.filter(sku=sku).first()
        if number in landed:
            assert stored is not None and stored.title == rows[number - 1][1].strip()
        else:
            assert stored is None
    assert Product.objects.exclude(sku__startswith=prefix).count() == before
