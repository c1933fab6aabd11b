from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import connection, connections, models, router
from django.db.models.fields.files import FieldFile
from django.urls import reverse

from ml.data import product_text


SKU_MAX_LENGTH = 255


class Product(models.Model):
    # Any printable text: real catalogues use spaces, '#', '/', unicode... Links escape it
    # (catalog/urls.py SkuConverter); control characters are refused by the importer.
    sku = models.CharField(
        max_length=SKU_MAX_LENGTH,
        unique=True,
        validators=[
            RegexValidator(r"^[^\x00-\x1f\x7f]+\Z", "A sku may not contain control characters (tabs, line breaks...)."),
        ],
    )
    title = models.CharField(max_length=300)
    description = models.TextField(blank=True)
    category = models.CharField(max_length=120, db_index=True)
    price = models.DecimalField(max_digits=12, decimal_places=2, db_index=True)
    image = models.ImageField(upload_to="products/", max_length=300)
    thumbnail = models.ImageField(upload_to="thumbs/", max_length=300, blank=True)
    # sha256 of the original image bytes: files are stored by it, so re-imports reuse them.
    image_hash = models.CharField(max_length=64, blank=True)
    # sha256 of everything the towers see (text fields + image_hash + the further photos'
    # hashes); a vector is current when it was computed from this hash.
    content_hash = models.CharField(max_length=64, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["sku"]

    def __str__(self) -> str:
        return f"{self.sku} · {self.title}"

    def get_absolute_url(self) -> str:
        return reverse("catalog:product", args=[self.sku])

    @staticmethod
    def compute_content_hash(
        title: str,
        description: str,
        category: str,
        price: Decimal,
        image_hash: str,
        photo_hashes: Sequence[str] = (),
    ) -> str:
        # Price is not seen by the towers, but a price change must still count as "updated".
        parts = [title, description, category, f"{price:.2f}", image_hash]
        if photo_hashes:  # only then: a product with one photo keeps the hash it always had
            parts.append("photos:" + ",".join(photo_hashes))
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()

    def photo_hashes(self) -> list[str]:
        """The further photos' sha256, in order (what compute_content_hash takes)."""
        return [p.sha256 for p in self.photos.all()] if self.pk else []

    def gallery(self) -> list[Photo]:
        """Every photo in order: the main `image` first, then the further ones."""
        return [Photo(0, self.image, self.thumbnail, None), *self.further_photos()]

    def further_photos(self) -> list[Photo]:
        """The photos after the main `image`, in order (gallery() without its first)."""
        rows = getattr(self, FURTHER_PHOTOS, None)  # loaded with the product (products_with_photos)
        if rows is not None:
            return [
                ProductPhoto(id=pk, product_id=self.pk, position=position, image=image, thumbnail=thumb).as_photo()
                for pk, position, image, thumb in rows
            ]
        return [p.as_photo() for p in self.photos.all()] if self.pk else []

    @property
    def text_for_embedding(self) -> str:
        # The same text training reads (ml.data.product_text).
        return product_text(self.title, self.description, self.category)

    def needs_embedding(self, model_id: int) -> bool:
        return not self.vectors.filter(model_id=model_id, content_hash=self.content_hash).exists()


@dataclass(frozen=True)
class Photo:
    """One of a product's photos as pages and the API show it (Product.gallery())."""

    position: int  # 0 = the main `image`, 1 = the first of `images`, ...
    image: FieldFile
    thumbnail: FieldFile
    photo_id: int | None  # the ProductPhoto row; None for the main image


class ProductPhoto(models.Model):
    """A further photo of a product (the CSV's `images` column): photo 0 stays Product.image
    (and its vectors ProductVector's), these are photos 1, 2, ... with their own vectors
    (embeddings.PhotoVector). A photo is identified by its content: a re-import keeps the
    row, and so the vectors, of an unchanged photo even if it moved; a changed photo is a
    new row."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="photos")
    position = models.PositiveSmallIntegerField()  # 1 = the photo after Product.image
    image = models.ImageField(upload_to="products/", max_length=300)
    thumbnail = models.ImageField(upload_to="thumbs/", max_length=300)
    sha256 = models.CharField(max_length=64)  # of the original bytes; files are stored by it

    class Meta:
        ordering = ["product", "position"]
        constraints = [
            models.UniqueConstraint(fields=["product", "sha256"], name="one_photo_per_content"),
            # deferred: a re-import that swaps two photos' positions checks once, at commit
            models.UniqueConstraint(
                fields=["product", "position"], name="one_photo_per_position", deferrable=models.Deferrable.DEFERRED
            ),
        ]

    def __str__(self) -> str:
        return f"photo {self.position} of product {self.product_id}"

    def as_photo(self) -> Photo:
        return Photo(self.position, self.image, self.thumbnail, self.pk)


# The annotation products_with_photos() puts each product's further photos in: [[id, position,
# image, thumbnail], ...] in position order.
FURTHER_PHOTOS = "further_photo_rows"


def products_with_photos(ids: Sequence[int]) -> dict[int, Product]:
    """Product.objects.in_bulk(ids), each product with its further photos (gallery()) read in
    the same query, a subquery per product, where prefetch_related would send a second query:
    a page of search results mostly has none, and the second query cost more than the first.

    The products are built from their rows as a QuerySet builds them (Model.from_db with every
    field, through the fields' converters), from SQL written once per database alias, not
    compiled for each page: compiling and iterating a QuerySet cost about as much CPU as
    building the 24 products themselves (docs/benchmarks.md section 8)."""
    if not ids:
        return {}
    alias = router.db_for_read(Product)
    db = connections[alias]
    sql, converters = _products_sql(alias)
    with db.cursor() as cursor:
        cursor.execute(sql, [list(ids)])
        rows = cursor.fetchall()
    names = [f.attname for f in Product._meta.concrete_fields]
    n = len(names)
    loaded: dict[int, Product] = {}
    for row in rows:
        values = list(row[:n])
        for i, convert in converters:
            values[i] = convert(values[i], None, db)
        product = Product.from_db(alias, names, values)
        further = row[n]  # jsonb, which Django's connections read as its text (JSONField parses it)
        setattr(product, FURTHER_PHOTOS, json.loads(further) if isinstance(further, str) else further)
        loaded[product.pk] = product
    return loaded


_products_sql_of: dict[str, tuple[str, list[tuple[int, Any]]]] = {}


def _products_sql(alias: str) -> tuple[str, list[tuple[int, Any]]]:
    """products_with_photos' SQL for a database alias, and the converters a QuerySet would
    apply to each column (field index, converter; none for Product's fields on Postgres)."""
    if alias not in _products_sql_of:
        db = connections[alias]
        quote = db.ops.quote_name
        fields = Product._meta.concrete_fields
        columns = ", ".join(f"p.{quote(str(f.column))}" for f in fields)
        sql = (
            f"SELECT {columns}, (SELECT coalesce(jsonb_agg(jsonb_build_array(ph.id, ph.position, ph.image,"
            f" ph.thumbnail) ORDER BY ph.position), '[]') FROM {quote(ProductPhoto._meta.db_table)} ph"
            f" WHERE ph.product_id = p.id) FROM {quote(Product._meta.db_table)} p WHERE p.id = ANY(%s)"
        )
        converters = [
            (i, convert)
            for i, f in enumerate(fields)
            for convert in db.ops.get_db_converters(f.cached_col) + f.get_db_converters(db)
        ]
        _products_sql_of[alias] = (sql, converters)
    return _products_sql_of[alias]


class ImportJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        EMBEDDING = "embedding"  # rows stored, vectors still being computed
        DONE = "done"
        FAILED = "failed"

    source_name = models.CharField(max_length=300)  # what the admin uploaded / the CLI path
    csv_path = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    total_rows = models.PositiveIntegerField(default=0)
    processed_rows = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    # rows whose sku appears again later in the same file: the last row wins, these are reported
    duplicates = models.PositiveIntegerField(default=0)
    # [{"row": 12, "sku": "...", "error": "..."}], capped so a broken 1M-row file stays small
    errors = models.JSONField(default=list, blank=True)
    error_message = models.TextField(blank=True)  # a whole-file problem (bad header, bad zip)
    # whole-file warnings that did not stop the import (encoding guessed, unknown columns ignored)
    notes = models.JSONField(default=list, blank=True)
    # ids of products created/updated by this job: what --wait and the progress bar watch
    product_ids = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    MAX_STORED_ERRORS = 1000

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"import #{self.pk} {self.source_name} ({self.status})"

    def add_error(self, row: int, sku: str, message: str) -> None:
        self.failed += 1
        if len(self.errors) < self.MAX_STORED_ERRORS:
            self.errors.append({"row": row, "sku": sku, "error": message})

    def add_duplicate(self, row: int, sku: str, later_row: int) -> None:
        self.duplicates += 1
        if len(self.errors) < self.MAX_STORED_ERRORS:
            self.errors.append(
                {
                    "row": row,
                    "sku": sku,
                    "error": (f"sku repeated at row {later_row}: this row is skipped, the last row with a sku wins"),
                }
            )

    @property
    def percent(self) -> int:
        if not self.total_rows:
            return 100 if self.status in {self.Status.DONE, self.Status.EMBEDDING} else 0
        return min(100, round(100 * self.processed_rows / self.total_rows))

    def summary(self) -> str:
        return f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged, {self.failed} failed" + (
            f", {self.duplicates} repeated skus skipped" if self.duplicates else ""
        )


class QueryImage(models.Model):
    """A shopper's uploaded query photo, kept briefly so a photo search has a URL (?img=key).

    Stored downscaled in the row (a few tens of KB) with its vector under the model that
    computed it; the vector is recomputed from the photo if the active model changes.
    Rows older than SEARCH_QUERY_IMAGE_TTL_HOURS are pruned when new ones are stored, and the
    oldest beyond SEARCH_QUERY_IMAGE_MAX_COUNT rows or SEARCH_QUERY_IMAGE_MAX_BYTES in all.
    """

    key = models.CharField(max_length=22, primary_key=True)
    photo = models.BinaryField()  # JPEG
    width = models.PositiveIntegerField()  # of the upload, after EXIF rotation
    height = models.PositiveIntegerField()
    filename = models.CharField(max_length=200, blank=True)
    model_id = models.IntegerField(null=True)  # the EmbeddingModel `vector` belongs to
    vector = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return f"query photo {self.key}"


class ApiToken(models.Model):
    """A bearer token for the bulk API (/api/imports). Only the sha256 of the token is stored:
    the admin shows the token once, when it is created. Tokens of staff users only work."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What uses it, e.g. 'nightly ERP export'.")
    # a token has 256 random bits, so a plain sha256 (no salt, no stretching) cannot be reversed
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=12, editable=False)  # the start of the token, to tell them apart
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class SearchLog(models.Model):
    """One search a shopper or API client ran: what was asked, how many results, how long.

    No IP address, cookie, user or photo is kept: a photo search is logged as kind "photo"
    (its words, if any, as text). `id` is random, so only the client that ran the search can
    report a click on it (/api/click)."""

    class Kind(models.TextChoices):
        TEXT = "text"
        PHOTO = "photo"
        PHOTO_TEXT = "photo+text", "photo + words"

    id = models.UUIDField(primary_key=True)
    created_at = models.DateTimeField(db_index=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    text = models.CharField(max_length=500, blank=True)  # the words as typed ("" for a photo alone)
    mode = models.CharField(max_length=10)
    page = models.PositiveSmallIntegerField(default=1)
    results = models.PositiveIntegerField()  # ranked results after min_score (total_candidates)
    took_ms = models.FloatField()
    source = models.CharField(max_length=4)  # "page" or "api"
    # The words were misspelt and searched corrected (such words are never suggested to others).
    corrected = models.BooleanField(default=False)
    # Today's visitors told apart, not who they are: a hash under a salt deleted after the day
    # (catalog/popularity.py); "" for searches logged before it existed.
    visitor = models.CharField(max_length=16, blank=True, default="")

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "search analytics"
        verbose_name_plural = "search analytics"

    def __str__(self) -> str:
        return f"{self.kind} {self.text!r} ({self.results} results)"


class SearchClick(models.Model):
    """A result of a logged search that was opened; one per search and product."""

    search = models.ForeignKey(SearchLog, on_delete=models.CASCADE, related_name="clicks")
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="+")
    rank = models.PositiveIntegerField()  # 1 = the first result of the search, across pages
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["search", "product"], name="one_click_per_search_product")]


class VisitorSalt(models.Model):
    """The salt of one UTC day's visitor hashes; deleted once the day is over (catalog/popularity.py)."""

    day = models.DateField(primary_key=True)
    salt = models.BinaryField()


class PopularQuery(models.Model):
    """A past query shown to other shoppers in autocomplete: rebuilt from the search log by
    catalog.popularity.refresh (only queries enough visitors searched)."""

    text = models.CharField(max_length=100, primary_key=True)  # lower case, single spaces
    visitors = models.PositiveIntegerField()  # visitor-days that searched it
    score = models.FloatField()  # visitor-days, each decayed by its age
    last_searched = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["text"], name="popularquery_prefix", opclasses=["varchar_pattern_ops"])]
        verbose_name_plural = "popular queries"


class ProductPopularity(models.Model):
    """Clicks on a product's search results, decayed by age: rebuilt with PopularQuery; the
    optional "popularity" ranking signal reads it."""

    product = models.OneToOneField(Product, on_delete=models.CASCADE, primary_key=True, related_name="+")
    clicks = models.PositiveIntegerField()  # visitor-days that clicked it
    score = models.FloatField()


class Synonym(models.Model):
    """A word shoppers may use and a catalogue word it stands for, for keyword search
    (catalog/synonyms.py): "overgarment" -> "coat". WordNet rows are made from the
    catalogue's vocabulary and apply only to words no product contains (related ones only
    to a term with no nearer row); an admin's rows apply always, and no refresh touches them."""

    class Source(models.TextChoices):
        ADMIN = "admin", "admin"
        WORDNET = "wordnet", "WordNet"
        RELATED = "related", "WordNet, further (two levels up or down)"

    term = models.CharField(max_length=100, help_text="what a shopper types: a word or a short phrase")
    word = models.CharField(max_length=100, help_text="what the catalogue says instead: a word or a short phrase")
    # Postgres' English stems of the term, sorted (SQL catalog_term_key): "Overgarments" and
    # "overgarment" are one key. Set on save.
    term_key = models.CharField(max_length=200, editable=False, db_index=True)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.ADMIN)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["term_key", "word"], name="one_synonym_per_term_word")]

    def __str__(self) -> str:
        return f"{self.term} -> {self.word}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.term, self.word = self.term.strip().lower(), self.word.strip().lower()
        self.term_key = term_key(self.term)
        super().save(*args, **kwargs)


class SynonymLookup(models.Model):
    """A vocabulary word (catalog_searchword) whose WordNet synonyms catalog.synonyms.refresh
    has added: each word is looked up once, so a WordNet synonym an admin deletes stays deleted."""

    word = models.CharField(max_length=100, primary_key=True)


def term_key(term: str) -> str:
    """A term's lookup key: Postgres' English stems of its words, sorted ("" for stop words only)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT catalog_term_key(%s)", [term])
        return cursor.fetchone()[0] or ""
