from __future__ import annotations

from typing import TYPE_CHECKING, cast

from django.db import models, transaction
from django.utils import timezone
from pgvector.django import VectorField

from embeddings.vector_index import create_indexes

if TYPE_CHECKING:
    from catalog.models import Product, ProductPhoto  # type only: catalog sits above this app


class EmbeddingModel(models.Model):
    """One trained (or baseline) pair of towers. Exactly one is active at a time."""

    class Kind(models.TextChoices):
        BASELINE = "baseline"  # pretrained backbone features + MiniLM text: two spaces
        JOINT = "joint"  # trained towers: image and text share one space

    class Status(models.TextChoices):
        READY = "ready"
        ACTIVATING = "activating"  # re-embedding the catalogue; search still on the old model
        EVALUATING = "evaluating"  # vectors complete; the gate compares it with the active model
        ACTIVE = "active"
        RETIRED = "retired"
        FAILED = "failed"

    name = models.CharField(max_length=120, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    spec = models.JSONField()  # what ml.encoders.load_encoder takes
    backbone = models.CharField(max_length=60)  # the backbone actually used
    text_tower = models.CharField(max_length=60)
    image_dim = models.PositiveIntegerField()
    text_dim = models.PositiveIntegerField()
    # A joint model also stores the pretrained signals beside its joint vectors (backbone
    # features, MiniLM sentence vectors) so search can fuse them; 0 = not stored.
    image_feat_dim = models.PositiveIntegerField(default=0)
    text_feat_dim = models.PositiveIntegerField(default=0)
    # Fusion weights per search kind ({"hybrid": {signal: weight}, "semantic": ..., "photo": ...}),
    # fitted on held-out queries of the catalogue (catalog/gate.py); {} = equal weights.
    fusion = models.JSONField(default=dict, blank=True)
    # The activation gate: {"required": bool, "decision": "pending"|"activated"|"rejected"|"skipped",
    # "reason": str, "kinds": [{kind, metric, candidate, incumbent, diff, noise, verdict}, ...]}.
    gate = models.JSONField(default=dict, blank=True)
    training_data = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    notes = models.TextField(blank=True)  # e.g. why ResNet50 was replaced by a fallback
    checkpoint = models.CharField(max_length=500, blank=True)
    curve = models.CharField(max_length=500, blank=True)  # loss/recall plot
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.READY)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["status"],
                condition=models.Q(status="active"),
                name="one_active_embedding_model",
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def joint(self) -> bool:
        return self.kind == self.Kind.JOINT

    @classmethod
    def active(cls) -> EmbeddingModel | None:
        return cls.objects.filter(status=cls.Status.ACTIVE).first()

    def vector_count(self) -> int:
        return self.vectors.count()

    def column_dims(self) -> dict[str, int]:
        """Stored vector column -> its dimension under this model."""
        dims = {"image_vec": self.image_dim, "text_vec": self.text_dim}
        if self.image_feat_dim:
            dims["image_feat"] = self.image_feat_dim
        if self.text_feat_dim:
            dims["text_feat"] = self.text_feat_dim
        return dims

    @property
    def gate_rejected(self) -> bool:
        return (self.gate or {}).get("decision") == "rejected"


class ProductVector(models.Model):
    """A product's image and text vectors under one model; rows of two models never mix."""

    product = models.ForeignKey("catalog.Product", on_delete=models.CASCADE, related_name="vectors")
    model = models.ForeignKey(EmbeddingModel, on_delete=models.CASCADE, related_name="vectors")
    # No fixed dimension: models differ. Each model gets its own partial HNSW index on a
    # cast expression (see embeddings/vector_index.py).
    image_vec = VectorField()
    text_vec = VectorField()
    # Pretrained signals of a joint model (EmbeddingModel.image_feat_dim/text_feat_dim);
    # NULL for the baseline, whose image_vec/text_vec already are those signals.
    image_feat = VectorField(null=True)
    text_feat = VectorField(null=True)
    content_hash = models.CharField(max_length=64)  # Product.content_hash it was computed from
    # Copies of the product's filterable fields, so a filtered HNSW scan (iterative_scan)
    # can filter inside the index scan instead of after a join. Rewritten on every change,
    # because a changed category or price changes content_hash and so re-embeds.
    category = models.CharField(max_length=120, default="")
    price = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["product", "model"], name="one_vector_per_model")]
        # A search filtered to a small category: with this btree the planner reads the
        # category's rows and ranks them exactly instead of walking the HNSW graph until enough
        # pass the filter (1M products, a 0.5 % category: 9.7 ms against 272, and all 200
        # candidates instead of about 100; docs/benchmarks.md section 10). Larger categories
        # keep the HNSW plan.
        indexes = [models.Index(fields=["model", "category"], name="pv_model_category")]

    @classmethod
    def current(cls, model: EmbeddingModel | None = None) -> models.QuerySet[ProductVector]:
        """The model's (or every model's) vectors computed from their product's present content:
        the "up to date" of every count and check (a stale vector does not count)."""
        current = cls.objects.filter(content_hash=models.F("product__content_hash"))
        return current if model is None else current.filter(model=model)

    @classmethod
    def missing_product_ids(cls, model: EmbeddingModel) -> models.QuerySet:
        """Ids of the products with no current vector under `model`: what is left to embed."""
        products = product_model()._default_manager
        return products.exclude(pk__in=cls.current(model).values("product_id")).values_list("pk", flat=True)


class PhotoVector(models.Model):
    """A further product photo's image vectors under one model (catalog.ProductPhoto; photo 0's
    are ProductVector's image columns). A photo row's content never changes (a new photo is
    a new row), so a row is current as long as it exists; embed_batch writes a product's
    photo vectors in the same transaction as its ProductVector, so a product with a current
    ProductVector has every photo's vector."""

    photo = models.ForeignKey("catalog.ProductPhoto", on_delete=models.CASCADE, related_name="vectors")
    model = models.ForeignKey(EmbeddingModel, on_delete=models.CASCADE, related_name="photo_vectors")
    # Copies, so a photo search groups by product and filters inside the HNSW scan without
    # a join (as ProductVector's); embed_batch rewrites category/price with the product's.
    product = models.ForeignKey("catalog.Product", on_delete=models.CASCADE, related_name="+")
    category = models.CharField(max_length=120, default="")
    price = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    # The image columns of ProductVector, same meaning and dimension under the model.
    image_vec = VectorField()
    image_feat = VectorField(null=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["photo", "model"], name="one_photo_vector_per_model")]
        indexes = [models.Index(fields=["model", "category"], name="phv_model_category")]  # as ProductVector's


# The catalogue's models, which the vectors belong to. The catalog app sits above this one and
# imports it, so this side reaches them through its foreign keys, never by importing catalog.
def product_model() -> type[Product]:
    return cast("type[Product]", ProductVector._meta.get_field("product").related_model)


def photo_model() -> type[ProductPhoto]:
    return cast("type[ProductPhoto]", PhotoVector._meta.get_field("photo").related_model)


def atomic_switch(new: EmbeddingModel) -> EmbeddingModel | None:
    """Make `new` the active model in one transaction; return the model it replaced.

    Its HNSW indexes are built first if they are not there yet (a first model, with few or no
    vectors yet; a path that skipped registry.finish_activation_if_complete): an active model
    always has them, or every search would scan all its vectors."""
    create_indexes(new.pk, new.column_dims())
    with transaction.atomic():
        old = EmbeddingModel.objects.select_for_update().filter(status=EmbeddingModel.Status.ACTIVE).first()
        if old and old.pk == new.pk:
            return None
        if old:
            old.status = EmbeddingModel.Status.RETIRED
            old.save(update_fields=["status"])
        new.status = EmbeddingModel.Status.ACTIVE
        new.activated_at = timezone.now()
        new.save(update_fields=["status", "activated_at"])
    return old


class TrainingJob(models.Model):
    """One run of train_embeddings (from the command line or the staff page), with live progress."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    params = models.JSONField(default=dict)  # backbone, text tower, dim, epochs, mining, margin
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress = models.JSONField(default=dict, blank=True)  # last progress event
    history = models.JSONField(default=list, blank=True)  # one entry per epoch
    model = models.ForeignKey(EmbeddingModel, null=True, blank=True, on_delete=models.SET_NULL)
    activate = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"training #{self.pk} ({self.status})"


class EvaluationRun(models.Model):
    """The result of `manage.py evaluate`: metrics of every method on one query file."""

    queries_file = models.CharField(max_length=500)
    n_text_queries = models.PositiveIntegerField(default=0)
    n_image_queries = models.PositiveIntegerField(default=0)
    # {"rows": [{"method", "model", "task", "R@1", "R@5", "R@10", "MRR@10", "mAP@10", "P@10"}, ...]}
    results = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]


def fallback_note(requested: str | None, used: str) -> str:
    """What a model says of its image backbone when it is not the one asked for ("" when it is):
    a ResNet50 without weights falls back, loudly, to EfficientNet-Lite0 (ml/backbones.py)."""
    if not requested or requested == used:
        return ""
    return f"Requested image backbone {requested!r} was not available (no weights offline); {used!r} is used instead."
