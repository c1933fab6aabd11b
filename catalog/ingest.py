"""CSV (or ZIP of CSV + images) -> validated rows -> upserted products -> queued embeddings.

The file is streamed in chunks of rows, never held whole. Each row is validated on its
own: a bad row is recorded with its row number and reason and the good rows still land.
A row only ever replaces a product once it is fully valid, so nothing stored before is
lost. Rows identical to what is stored are counted "unchanged" and not re-embedded.

Catalogues come as spreadsheets export them: UTF-8 with or without a BOM, UTF-16 with a
BOM, or Windows-1252 (read as such, with a note); `,`, `;`, tab or `|` between fields
(picked from the header line); quoted fields with newlines. An optional `images` column
names a product's further photos (`|`-separated paths or URLs, after `image`); each is
stored by content hash (ProductPhoto), so a re-import keeps an unchanged photo and its
vectors. A first pass (`scan_csv`)
checks the encoding and header, counts the rows and finds skus given more than once: the
last row with a sku wins and the earlier ones are reported. Every data row ends counted
as exactly one of created, updated, unchanged, failed or duplicate.
"""

from __future__ import annotations

import codecs
import csv
import logging
import re
import shutil
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from django.conf import settings
from django.db import DataError, IntegrityError, transaction
from django.utils import timezone

from catalog.fetch import FetchError, is_url, read_local, read_url
from catalog.images import sha256, store_product_image
from catalog.models import SKU_MAX_LENGTH, ImportJob, Product, ProductPhoto
from embeddings.dispatch import queue_embedding
from ops.beat import beating
from ops.models import JobHeartbeat
from searchsite.celery import app

logger = logging.getLogger(__name__)

REFRESH_SYNONYMS = "catalog.tasks.refresh_synonyms"

COLUMNS = ("sku", "title", "description", "category", "price", "image")
OPTIONAL_COLUMNS = ("images",)  # further photos: paths or URLs separated by "|"
PHOTO_SEPARATOR = "|"
CHUNK_ROWS = 200
DELIMITERS = (",", ";", "\t", "|")  # tried on the header line; ties go to the first
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "vertical bar"}
# C0/C1 control characters, and the line/paragraph separators; tab and newlines are allowed
# in descriptions only. NUL can never be stored (Postgres text refuses it).
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
TEXT_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
MAX_PRICE = Decimal("9999999999.99")
# csv's default field limit is 128 KiB; descriptions longer than this are bad rows anyway.
csv.field_size_limit(1024 * 1024)

Progress = Callable[[ImportJob], None]


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (wrong header, not a CSV, bad ZIP)."""


@dataclass
class CsvFormat:
    """How a catalogue CSV is written, as found by `sniff_csv`."""

    encoding: str  # a Python codec name
    delimiter: str
    columns: list[str]  # the header, normalised (stripped, lower case)
    notes: list[str] = field(default_factory=list)  # whole-file warnings


@dataclass
class CsvScan:
    """What a first pass over the rows found (see `scan_csv`)."""

    format: CsvFormat
    total_rows: int
    last_row: dict[str, int]  # sku -> the last row that has it, for skus given more than once


@dataclass
class Row:
    number: int  # 1-based data row (the header is row 0)
    sku: str
    title: str
    description: str
    category: str
    price: Decimal
    image: str
    images: list[str] = field(default_factory=list)  # further photos, in order


_THOUSANDS_COMMAS = re.compile(r"-?\d{1,3}(,\d{3})+")


def parse_price(text: str) -> Decimal:
    """ "1234.5", "1,234.50", "1.234,50", "12,50" (a decimal comma, as `;`-separated files from
    European spreadsheets write it). Raises InvalidOperation for anything else."""
    text = text.replace(" ", "").replace("\u00a0", "").replace("\u202f", "")
    if "," in text and "." in text:
        # whichever comes last is the decimal point
        text = text.replace(".", "").replace(",", ".") if text.rfind(",") > text.rfind(".") else text.replace(",", "")
    elif "," in text:
        text = text.replace(",", "") if _THOUSANDS_COMMAS.fullmatch(text) else text.replace(",", ".")
    if len(text) > 40:  # Decimal would parse "1e999999999"; no price needs this many characters
        raise InvalidOperation(text)
    return Decimal(text)


def parse_row(number: int, raw: dict) -> Row:
    """Validate one CSV record; raise ValueError naming every problem found."""
    if None in raw:
        width = sum(1 for k in raw if k is not None and not k.startswith("__"))
        raise ValueError(f"too many fields ({width + len(raw[None])}, expected {width})")
    missing = [c for c in COLUMNS if raw.get(c) is None]
    if missing:
        raise ValueError(f"missing field(s): {', '.join(missing)}")
    values = {k: (raw[k] or "").strip() for k in COLUMNS}
    problems = []
    if not values["sku"]:
        problems.append("sku is empty")
    elif control := CONTROL_RE.search(values["sku"]):
        problems.append(f"sku {values['sku'][:70]!r} contains a control character (U+{ord(control.group()):04X})")
    elif len(values["sku"]) > SKU_MAX_LENGTH:
        problems.append(f"sku is longer than {SKU_MAX_LENGTH} characters ({len(values['sku'])})")
    for name, limit in (("title", 300), ("category", 120)):
        if not values[name]:
            problems.append(f"{name} is empty")
        elif len(values[name]) > limit:
            problems.append(f"{name} is longer than {limit} characters")
        elif CONTROL_RE.search(values[name]):
            problems.append(f"{name} contains a control character or line break")
    if len(values["description"]) > 20_000:
        problems.append("description is longer than 20,000 characters")
    elif TEXT_CONTROL_RE.search(values["description"]):
        problems.append("description contains a control character")
    if CONTROL_RE.search(values["image"]):
        problems.append("image contains a control character")
    images_text = (raw.get("images") or "").strip()
    images = [ref.strip() for ref in images_text.split(PHOTO_SEPARATOR) if ref.strip()]
    if CONTROL_RE.search(images_text):
        problems.append("images contains a control character")
    elif len(images) + 1 > settings.PRODUCT_MAX_PHOTOS:
        problems.append(
            f"images names {len(images)} photos: a product has at most {settings.PRODUCT_MAX_PHOTOS} "
            f"(image and {settings.PRODUCT_MAX_PHOTOS - 1} more; PRODUCT_MAX_PHOTOS)"
        )
    price = None
    try:
        price = parse_price(values["price"]) if values["price"] else None
        if price is None:
            problems.append("price is empty")
        elif not price.is_finite() or price < 0 or price > MAX_PRICE:
            problems.append(f"price {values['price']!r} must be a number from 0 to {MAX_PRICE}")
        else:
            price = price.quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        problems.append(f"price {values['price'][:30]!r} is not a number")
    if not values["image"]:
        problems.append("image is empty")
    if problems or price is None:  # no price is one of the problems
        raise ValueError("; ".join(problems))
    return Row(
        number,
        values["sku"],
        values["title"],
        values["description"],
        values["category"],
        price,
        values["image"],
        images,
    )


def read_image_bytes(ref: str, base_dir: Path) -> bytes:
    if is_url(ref):
        return read_url(
            ref,
            max_bytes=settings.MAX_IMAGE_BYTES,
            timeout=settings.INGEST_URL_TIMEOUT,
            allow_private=settings.INGEST_ALLOW_PRIVATE_URLS,
            allowed_networks=settings.INGEST_ALLOWED_PRIVATE_NETWORKS,
        )
    return read_local(ref, base_dir, settings.MAX_IMAGE_BYTES)


def _decode_whole(path: Path, codec: str) -> None:
    """Raise UnicodeDecodeError unless the whole file decodes as `codec` (read in 1 MB pieces)."""
    with open(path, encoding=codec, errors="strict", newline="") as handle:
        while handle.read(1 << 20):
            pass


def _check_encoding(path: Path) -> tuple[str, list[str]]:
    """Return (codec, notes): the file's encoding, or ImportFileError naming the problem.

    Reads the whole file once, in blocks, so a bad byte on the last line is found before
    any row is stored."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    for bom, codec in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if head.startswith(bom):  # utf-16: Excel's "Unicode text" export
            try:
                _decode_whole(path, codec)
            except UnicodeDecodeError as exc:
                raise ImportFileError(
                    f"{path.name} starts with a {codec.upper()} byte-order mark but is not valid {codec.upper()} "
                    f'({exc.reason}). Save it as "CSV UTF-8" and upload that.'
                ) from exc
            return codec, []
    offset = line = 0  # of `data` below in the file, and newlines before it
    pending = b""  # an incomplete UTF-8 sequence carried to the next block
    with open(path, "rb") as handle:
        while True:
            block = handle.read(1 << 20)
            if offset == 0 and _looks_binary(block):
                raise ImportFileError(
                    f"{path.name} is a binary file (or UTF-16 without a byte-order mark), not a CSV: "
                    f'its first line has NUL bytes. Save it as "CSV UTF-8" and upload that.'
                )
            data = pending + block
            try:
                _, consumed = codecs.utf_8_decode(data, "strict", not block)
            except UnicodeDecodeError as exc:
                line += data[: exc.start].count(b"\n")
                return _fallback_encoding(path, offset + exc.start, line + 1)
            line += data[:consumed].count(b"\n")
            offset += consumed
            pending = data[consumed:]
            if not block:
                return "utf-8-sig", []  # a UTF-8 BOM, if any, is dropped


def _looks_binary(head: bytes) -> bool:
    # NULs in the header line mean an image, an archive or UTF-16 without a BOM; a stray NUL
    # further down is one bad row (parse_row refuses control characters), not a bad file.
    return b"\0" in head.split(b"\n", 1)[0][: 64 * 1024]


def _fallback_encoding(path: Path, bad_offset: int, bad_line: int) -> tuple[str, list[str]]:
    with open(path, "rb") as handle:
        handle.seek(bad_offset)
        bad_byte = handle.read(1)
    where = f"byte 0x{bad_byte.hex()} on line {bad_line}, at byte {bad_offset:,},"
    try:
        _decode_whole(path, "cp1252")
    except UnicodeDecodeError as exc:
        raise ImportFileError(
            f"{path.name} is not UTF-8 text ({where} is not valid UTF-8) nor Windows-1252 "
            f'({exc.reason}). Save it as "CSV UTF-8" and upload that.'
        ) from exc
    return "cp1252", [
        f"{path.name} is not UTF-8 ({where} is not valid UTF-8): it was read as Windows-1252 "
        '(cp1252, "ANSI"). If accented letters look wrong, save it as "CSV UTF-8" and import it again.'
    ]


def _normalise_header(name: str) -> str:
    return name.strip().strip("\ufeff").strip().lower()


def sniff_csv(path: Path) -> CsvFormat:
    """Find a catalogue CSV's encoding, delimiter and columns; ImportFileError if unusable."""
    encoding, notes = _check_encoding(path)
    with open(path, encoding=encoding, errors="strict", newline="") as handle:
        # The header never has quoted newlines worth keeping, but read it as csv would.
        first_line = handle.readline(64 * 1024)
    best: tuple[int, str, list[str]] = (0, ",", [])
    for delimiter in DELIMITERS:
        try:
            header = next(csv.reader([first_line], delimiter=delimiter), [])
        except csv.Error:
            continue
        names = [_normalise_header(h) for h in header]
        known = len(set(names) & set(COLUMNS))
        if known > best[0]:
            best = (known, delimiter, names)
    known, delimiter, names = best
    if not first_line.strip():
        raise ImportFileError(f"{path.name} is empty: the first line must be the header {','.join(COLUMNS)}")
    if known == 0:
        raise ImportFileError(
            f"{path.name}: the first line must be a header naming the columns {','.join(COLUMNS)} "
            f"(separated by commas, semicolons or tabs); found {first_line.strip()[:120]!r}"
        )
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise ImportFileError(
            f"{path.name}: header must have columns {','.join(COLUMNS)}; missing {', '.join(missing)}"
            f" (the header was read as {DELIMITER_NAMES[delimiter]}-separated)"
        )
    repeated = sorted({n for n in names if n in COLUMNS + OPTIONAL_COLUMNS and names.count(n) > 1})
    if repeated:
        raise ImportFileError(f"{path.name}: column(s) {', '.join(repeated)} appear more than once in the header")
    extra = [
        n if n else f"(unnamed column {i + 1})" for i, n in enumerate(names) if n not in COLUMNS + OPTIONAL_COLUMNS
    ]
    # A trailing delimiter on the header is an empty last column, not worth a note.
    while extra and extra[-1] == f"(unnamed column {len(names)})" and not names[-1]:
        extra.pop()
        names = names[:-1]
    if extra:
        notes.append(
            f"ignored {len(extra)} column(s) Vitrine does not use: {', '.join(e[:60] for e in extra[:20])}"
            + (" …" if len(extra) > 20 else "")
        )
    return CsvFormat(encoding, delimiter, names, notes)


def open_csv(path: Path, fmt: CsvFormat | None = None) -> Iterator[tuple[int, dict]]:
    """Yield (data row number, record); raise ImportFileError for a file that cannot be read.

    A record maps each column to its value (None when the row is short; the key None
    holds non-empty cells beyond the header) or is {"__error__": why} for an unreadable
    row. Blank lines are skipped and not numbered."""
    fmt = fmt or sniff_csv(path)
    width = len(fmt.columns)
    with open(path, encoding=fmt.encoding, errors="strict", newline="") as handle:
        reader = csv.reader(handle, delimiter=fmt.delimiter)
        try:
            next(reader)  # the header, already read by sniff_csv
        except (StopIteration, csv.Error):
            return
        number = 0
        while True:
            first_line = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                number += 1
                yield number, {"__error__": f"unreadable CSV row (line {first_line} of the file): {exc}"}
                continue
            except UnicodeDecodeError as exc:  # sniff_csv read it all; only if the file changed since
                raise ImportFileError(f"{path.name} changed while it was read: {exc}") from exc
            if not cells:
                continue
            number += 1
            raw: dict = {name: (cells[i] if i < len(cells) else None) for i, name in enumerate(fmt.columns)}
            overflow = [c for c in cells[width:] if c.strip()]
            if overflow:
                raw[None] = cells[width:]
            if reader.line_num > first_line:
                raw["__lines__"] = (first_line, reader.line_num)
            yield number, raw


def scan_csv(path: Path) -> CsvScan:
    """First pass: format, number of rows, and the last row of every sku that repeats."""
    fmt = sniff_csv(path)
    total = 0
    last: dict[str, int] = {}
    repeats: set[str] = set()
    for number, raw in open_csv(path, fmt):
        total = number
        sku = _sku_of(raw)
        if sku:
            if sku in last:
                repeats.add(sku)
            last[sku] = number
    return CsvScan(fmt, total, {sku: last[sku] for sku in repeats})


def _sku_of(raw: dict) -> str:
    return "" if "__error__" in raw else (raw.get("sku") or "").strip()


def count_rows(path: Path) -> int:
    try:
        return scan_csv(path).total_rows
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


@dataclass
class FurtherPhoto:
    """One photo of a row's `images`, read but not yet stored."""

    number: int  # its place in the `images` cell (1 = first), for messages
    ref: str
    sha256: str
    data: bytes

    def problem(self, exc: Exception) -> str:
        return f"images photo {self.number} {self.ref[:200]!r}: {exc}"


def read_further_photos(row: Row, base_dir: Path, image_hash: str) -> list[FurtherPhoto]:
    """The row's `images`, read; a photo repeating `image` or an earlier one is dropped.
    Raises FetchError naming the photo that cannot be read."""
    photos: list[FurtherPhoto] = []
    seen = {image_hash}
    for number, ref in enumerate(row.images, start=1):
        try:
            data = read_image_bytes(ref, base_dir)
        except FetchError as exc:
            raise FetchError(f"images photo {number} {ref[:200]!r}: {exc}") from exc
        digest = sha256(data)
        if digest not in seen:
            seen.add(digest)
            photos.append(FurtherPhoto(number, ref, digest, data))
    return photos


def _import_row(row: Row, existing: Product | None, base_dir: Path) -> tuple[str, Product]:
    """Return ("created"|"updated"|"unchanged", product). Raises ValueError for a bad row."""
    data = read_image_bytes(row.image, base_dir)
    image_hash = sha256(data)
    further = read_further_photos(row, base_dir, image_hash)
    content_hash = Product.compute_content_hash(
        row.title, row.description, row.category, row.price, image_hash, [p.sha256 for p in further]
    )
    if existing is not None and existing.content_hash == content_hash:
        return "unchanged", existing
    if existing is not None and existing.image_hash == image_hash and existing.image:
        image_name, thumb_name = existing.image.name, existing.thumbnail.name
    else:
        image_name, thumb_name = store_product_image(data, image_hash)
    kept = {p.sha256: p for p in existing.photos.all()} if existing is not None else {}
    stored: dict[str, tuple[str, str]] = {}
    for photo in further:  # every new photo is checked (decode limits) before anything is saved
        if photo.sha256 not in kept:
            try:
                stored[photo.sha256] = store_product_image(photo.data, photo.sha256)
            except ValueError as exc:
                raise ValueError(photo.problem(exc)) from exc
    product = existing or Product(sku=row.sku)
    product.title, product.description, product.category = row.title, row.description, row.category
    product.price, product.image_hash, product.content_hash = row.price, image_hash, content_hash
    product.image.name, product.thumbnail.name = image_name, thumb_name
    product.save()
    _save_photos(product, further, kept, stored)
    return ("updated" if existing is not None else "created"), product


def _save_photos(
    product: Product, further: list[FurtherPhoto], kept: dict[str, ProductPhoto], stored: dict[str, tuple[str, str]]
) -> None:
    """Make the product's ProductPhoto rows match `further`: an unchanged photo keeps its row
    (and vectors) at its new position, a removed one is deleted, a new one is added."""
    if kept:  # `kept` is every photo the product had: with none, there is nothing to remove
        product.photos.exclude(sha256__in=[p.sha256 for p in further]).delete()
    moved = []
    for position, photo in enumerate(further, start=1):
        row = kept.get(photo.sha256)
        if row is not None and row.position != position:
            row.position = position
            moved.append(row)
    # One UPDATE for all the moves: the (deferrable) unique position is checked once, after
    # the statement, so two photos may swap places.
    ProductPhoto.objects.bulk_update(moved, ["position"])
    ProductPhoto.objects.bulk_create(
        ProductPhoto(
            product=product,
            position=position,
            image=stored[photo.sha256][0],
            thumbnail=stored[photo.sha256][1],
            sha256=photo.sha256,
        )
        for position, photo in enumerate(further, start=1)
        if photo.sha256 not in kept
    )


def _storable(sku: str) -> bool:
    return bool(sku) and len(sku) <= SKU_MAX_LENGTH and not CONTROL_RE.search(sku)


def _printable(text: str) -> str:
    """Control characters escaped: a report must be readable, and Postgres JSON refuses NUL."""
    return CONTROL_RE.sub(lambda m: repr(m.group())[1:-1], text[: SKU_MAX_LENGTH * 4])


def _row_message(message: str, raw: dict) -> str:
    if "__lines__" in raw:
        first, last = raw["__lines__"]
        message += f" (this row spans lines {first}-{last} of the file: is a quote left open?)"
    return message


def run_import(
    job: ImportJob, progress: Progress | None = None, queue_embeddings: bool = True, resume: bool = False
) -> ImportJob:
    """Import job.csv_path into the catalogue, updating the job's counts as it goes.

    resume: continue an interrupted job after its last committed chunk (job.processed_rows),
    keeping its counts. While it runs, the job's heartbeat shows the reconciler it is alive.
    """
    with beating(JobHeartbeat.Kind.IMPORT, job.pk):
        return _run_import(job, progress, queue_embeddings, job.processed_rows if resume else 0)


def _run_import(job: ImportJob, progress: Progress | None, queue_embeddings: bool, start_row: int) -> ImportJob:
    path = Path(job.csv_path)
    job.status = ImportJob.Status.RUNNING
    job.save()
    changed_ids: list[int] = []
    try:
        scan = scan_csv(path)
        job.total_rows = scan.total_rows
        job.notes = [_printable(note) for note in scan.format.notes]
        job.save()
        for chunk in _chunks(open_csv(path, scan.format), CHUNK_ROWS):
            if chunk[-1][0] <= start_row:
                continue  # committed before the interruption (chunks end where processed_rows does)
            skus = [_sku_of(raw) for _, raw in chunk]
            existing = {
                p.sku: p
                for p in Product.objects.filter(sku__in=[s for s in skus if _storable(s)]).prefetch_related("photos")
            }
            chunk_ids: list[int] = []
            for number, raw in chunk:
                if number <= start_row:
                    continue
                sku = _sku_of(raw)
                if scan.last_row.get(sku, number) != number:
                    job.add_duplicate(number, _printable(sku), scan.last_row[sku])
                    continue
                try:
                    if "__error__" in raw:
                        raise ValueError(raw["__error__"])
                    row = parse_row(number, raw)
                    with transaction.atomic():
                        outcome, product = _import_row(row, existing.get(row.sku), path.parent)
                except (ValueError, FetchError) as exc:  # ImageError is a ValueError
                    job.add_error(number, _printable(sku), _printable(_row_message(str(exc), raw)))
                    continue
                except OSError as exc:
                    job.add_error(number, _printable(sku), _printable(f"cannot read image: {exc}"))
                    continue
                except (DataError, IntegrityError) as exc:
                    # A value Postgres refuses, or the same sku created meanwhile by another import.
                    job.add_error(
                        number, _printable(sku), _printable(f"could not be stored: {str(exc).splitlines()[0]}")
                    )
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
    if changed_ids:
        # The new words' synonyms (catalog/synonyms.py); sent by name, as catalog.tasks imports this module.
        transaction.on_commit(app.signature(REFRESH_SYNONYMS).delay)
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


def prepare_upload(job: ImportJob, upload_path: Path, unzip_into: Path | None = None) -> None:
    """Point the job at a CSV: the file itself, or the CSV inside a ZIP (extracted into
    `unzip_into`, default an "unzipped" folder beside it). A file named .zip that is no ZIP
    is refused as such (ImportFileError), not read as a CSV."""
    if zipfile.is_zipfile(upload_path) or upload_path.suffix.lower() == ".zip":
        job.csv_path = str(extract_zip(upload_path, unzip_into or upload_path.parent / "unzipped"))
    else:
        job.csv_path = str(upload_path)
    job.save(update_fields=["csv_path"])
