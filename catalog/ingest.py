"""CSV (or ZIP of CSV + images) -> validated rows -> upserted products -> queued embeddings.

The file is streamed in chunks of rows, never held whole. Each row is validated on its
own: a bad row is recorded with its row number and reason and the good rows still land.
A row only ever replaces a product once it is fully valid, so nothing stored before is
lost. Rows identical to what is stored are counted "unchanged" and not re-embedded.
"""
from __future__ import annotations

import csv
import logging
import re
import shutil
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from catalog.fetch import FetchError, is_url, read_local, read_url
from catalog.images import sha256, store_product_image
from catalog.models import ImportJob, Product

logger = logging.getLogger(__name__)

COLUMNS = ("sku", "title", "description", "category", "price", "image")
CHUNK_ROWS = 200
SKU_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/]{0,63}$")
MAX_PRICE = Decimal("9999999999.99")
# csv's default field limit is 128 KiB; descriptions longer than this are bad rows anyway.
csv.field_size_limit(1024 * 1024)

Progress = Callable[[ImportJob], None]


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (wrong header, not a CSV, bad ZIP)."""


@dataclass
class Row:
    number: int  # 1-based data row (the header is row 0)
    sku: str
    title: str
    description: str
    category: str
    price: Decimal
    image: str


def parse_row(number: int, raw: dict) -> Row:
    """Validate one CSV record; raise ValueError naming every problem found."""
    if None in raw:
        raise ValueError(f"too many fields ({len(COLUMNS) + len(raw[None])}, expected {len(COLUMNS)})")
    missing = [c for c in COLUMNS if raw.get(c) is None]
    if missing:
        raise ValueError(f"missing field(s): {', '.join(missing)}")
    values = {k: (raw[k] or "").strip() for k in COLUMNS}
    problems = []
    if not values["sku"]:
        problems.append("sku is empty")
    elif not SKU_RE.match(values["sku"]):
        problems.append(f"sku {values['sku'][:70]!r} has characters other than letters, digits, . _ - / or is over 64 long")
    for field, limit in (("title", 300), ("category", 120)):
        if not values[field]:
            problems.append(f"{field} is empty")
        elif len(values[field]) > limit:
            problems.append(f"{field} is longer than {limit} characters")
    if len(values["description"]) > 20_000:
        problems.append("description is longer than 20,000 characters")
    price = None
    try:
        price = Decimal(values["price"].replace(",", "")) if values["price"] else None
        if price is None:
            problems.append("price is empty")
        elif not price.is_finite() or price < 0 or price > MAX_PRICE:
            problems.append(f"price {values['price']!r} must be a number from 0 to {MAX_PRICE}")
        else:
            price = price.quantize(Decimal("0.01"))
    except InvalidOperation:
        problems.append(f"price {values['price'][:30]!r} is not a number")
    if not values["image"]:
        problems.append("image is empty")
    if problems:
        raise ValueError("; ".join(problems))
    return Row(number, values["sku"], values["title"], values["description"], values["category"], price, values["image"])  # type: ignore[arg-type]


def read_image_bytes(ref: str, base_dir: Path) -> bytes:
    if is_url(ref):
        return read_url(
            ref,
            max_bytes=settings.MAX_IMAGE_BYTES,
            timeout=settings.INGEST_URL_TIMEOUT,
            allow_private=settings.INGEST_ALLOW_PRIVATE_URLS,
        )
    return read_local(ref, base_dir, settings.MAX_IMAGE_BYTES)


def open_csv(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield (data row number, record); raise ImportFileError for a bad header."""
    with open(path, newline="", encoding="utf-8-sig", errors="strict") as handle:
        reader = csv.DictReader(handle)
        try:
            header = [h.strip().lower() for h in (reader.fieldnames or [])]
        except UnicodeDecodeError as exc:
            raise ImportFileError(f"{path.name} is not UTF-8 text: {exc}") from exc
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise ImportFileError(
                f"{path.name}: header must have columns {','.join(COLUMNS)}; missing {', '.join(missing)}"
            )
        reader.fieldnames = header
        number = 0
        while True:
            try:
                raw = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as exc:
                number += 1
                yield number, {"__error__": f"unreadable CSV row: {exc}"}
                continue
            number += 1
            yield number, raw


def count_rows(path: Path) -> int:
    try:
        return sum(1 for _ in open_csv(path))
    except ImportFileError:
        return 0


def _chunks(rows: Iterator[tuple[int, dict]], size: int) -> Iterator[list[tuple[int, dict]]]:
    chunk: list[tuple[int, dict]] = []
    for item in rows:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _import_row(row: Row, existing: Product | None, base_dir: Path) -> tuple[str, Product]:
    """Return ("created"|"updated"|"unchanged", product). Raises ValueError for a bad row."""
    data = read_image_bytes(row.image, base_dir)
    image_hash = sha256(data)
    content_hash = Product.compute_content_hash(row.title, row.description, row.category, row.price, image_hash)
    if existing is not None and existing.content_hash == content_hash:
        return "unchanged", existing
    if existing is not None and existing.image_hash == image_hash and existing.image:
        image_name, thumb_name = existing.image.name, existing.thumbnail.name
    else:
        image_name, thumb_name = store_product_image(data, image_hash)
    product = existing or Product(sku=row.sku)
    product.title, product.description, product.category = row.title, row.description, row.category
    product.price, product.image_hash, product.content_hash = row.price, image_hash, content_hash
    product.image.name, product.thumbnail.name = image_name, thumb_name
    product.save()
    return ("updated" if existing is not None else "created"), product


def run_import(job: ImportJob, progress: Progress | None = None, queue_embeddings: bool = True) -> ImportJob:
    """Import job.csv_path into the catalogue, updating the job's counts as it goes."""
    from embeddings.dispatch import queue_embedding

    path = Path(job.csv_path)
    job.status = ImportJob.Status.RUNNING
    job.total_rows = count_rows(path)
    job.save()
    seen: dict[str, int] = {}
    changed_ids: list[int] = []
    try:
        for chunk in _chunks(open_csv(path), CHUNK_ROWS):
            skus = [(raw.get("sku") or "").strip() for _, raw in chunk if "__error__" not in raw]
            existing = {p.sku: p for p in Product.objects.filter(sku__in=skus)}
            chunk_ids: list[int] = []
            for number, raw in chunk:
                sku = (raw.get("sku") or "").strip() if "__error__" not in raw else ""
                try:
                    if "__error__" in raw:
                        raise ValueError(raw["__error__"])
                    row = parse_row(number, raw)
                    if row.sku in seen:
                        raise ValueError(f"duplicate sku {row.sku!r} (first seen at row {seen[row.sku]})")
                    seen[row.sku] = number
                    with transaction.atomic():
                        outcome, product = _import_row(row, existing.get(row.sku), path.parent)
                except (ValueError, FetchError) as exc:  # ImageError is a ValueError
                    job.add_error(number, sku, str(exc))
                    continue
                except OSError as exc:
                    job.add_error(number, sku, f"cannot read image: {exc}")
                    continue
                setattr(job, outcome, getattr(job, outcome) + 1)
                if outcome != "unchanged":
                    chunk_ids.append(product.pk)
            job.processed_rows = chunk[-1][0]
            changed_ids.extend(chunk_ids)
            job.save()
            if queue_embeddings and chunk_ids:
                queue_embedding(chunk_ids)
            if progress:
                progress(job)
    except ImportFileError as exc:
        job.status = ImportJob.Status.FAILED
        job.error_message = str(exc)
        job.finished_at = timezone.now()
        job.save()
        if progress:
            progress(job)
        return job
    job.product_ids = changed_ids
    job.status = ImportJob.Status.EMBEDDING if changed_ids else ImportJob.Status.DONE
    job.finished_at = timezone.now()
    job.save()
    if progress:
        progress(job)
    return job


# --- ZIP uploads -------------------------------------------------------------------

MAX_ZIP_ENTRIES = 200_000
MAX_ZIP_RATIO = 200  # uncompressed/compressed: beyond this it is a zip bomb


def extract_zip(zip_path: Path, dest: Path) -> Path:
    """Safely extract a catalogue ZIP; return the path of the single CSV inside it."""
    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as exc:
        raise ImportFileError(f"{zip_path.name} is not a valid ZIP file") from exc
    with archive:
        members = archive.infolist()
        if len(members) > MAX_ZIP_ENTRIES:
            raise ImportFileError(f"ZIP has {len(members):,} entries (limit {MAX_ZIP_ENTRIES:,})")
        total = sum(m.file_size for m in members)
        compressed = max(1, sum(m.compress_size for m in members))
        if total > settings.MAX_IMPORT_BYTES or total / compressed > MAX_ZIP_RATIO:
            raise ImportFileError(
                f"ZIP expands to {total:,} bytes ({total / compressed:.0f}× its size): refused as a possible zip bomb"
            )
        root = dest.resolve()
        for member in members:
            target = (root / member.filename).resolve()
            if member.filename.startswith(("/", "\\")) or not target.is_relative_to(root):
                raise ImportFileError(f"ZIP entry {member.filename!r} escapes the archive's folder")
            if member.is_dir():
                continue
            if (member.external_attr >> 16) & 0o170000 == 0o120000:
                raise ImportFileError(f"ZIP entry {member.filename!r} is a symbolic link; refused")
        root.mkdir(parents=True, exist_ok=True)
        for member in members:
            target = (root / member.filename).resolve()
            if member.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, length=1024 * 1024)
    csvs = [p for p in root.rglob("*.csv") if "__MACOSX" not in p.parts]
    if len(csvs) != 1:
        raise ImportFileError(f"ZIP must contain exactly one .csv file, found {len(csvs)}")
    return csvs[0]


def prepare_upload(job: ImportJob, upload_path: Path) -> None:
    """Point the job at a CSV: the upload itself, or the CSV inside an uploaded ZIP."""
    if zipfile.is_zipfile(upload_path):
        job.csv_path = str(extract_zip(upload_path, upload_path.parent / "unzipped"))
    else:
        job.csv_path = str(upload_path)
    job.save(update_fields=["csv_path"])
