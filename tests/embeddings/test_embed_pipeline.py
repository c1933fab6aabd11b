"""The embed worker's pipeline (embeddings/tasks.py embed_batch): photos decoded in a thread
while the text tower runs, JPEGs decoded at reduced scale (EMBED_JPEG_DRAFT); the stored
vectors are those of the encoder on the same decoded photos."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from tests.conftest import SMALL_CSV


def jpeg_catalogue(folder, side: int = 640):
    """The small fixture catalogue with its photos as `side` px JPEGs."""
    rows = list(csv.DictReader(open(SMALL_CSV, newline="")))
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for row in rows[:8]:
        image = Image.open(SMALL_CSV.parent / row["image"]).convert("RGB").resize((side, side))
        noisy = np.clip(np.asarray(image, np.float32) + rng.normal(0, 8, (side, side, 3)), 0, 255).astype(np.uint8)
        row["image"] = f"images/{row['sku']}.jpg"
        Image.fromarray(noisy).save(folder / row["image"], "JPEG", quality=90)
    path = folder / "catalogue.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows[:8])
    return path


@pytest.mark.parametrize("draft", [True, False])
def test_stored_vectors_are_the_encoders_on_the_same_decode(
    db, settings, tmp_path, draft, django_capture_on_commit_callbacks
):
    from django.core.files.storage import default_storage

    from catalog.ingest import run_import
    from catalog.models import ImportJob, Product
    from embeddings.models import ProductVector
    from embeddings.registry import encoder_for, ensure_active_model
    from ml.transforms import open_image

    settings.EMBED_JPEG_DRAFT = draft
    model = ensure_active_model()
    job = ImportJob.objects.create(source_name="jpeg", csv_path=str(jpeg_catalogue(tmp_path)))
    with django_capture_on_commit_callbacks(execute=True):
        run_import(job)
    products = list(Product.objects.order_by("sku"))
    assert len(products) == 8
    encoder = encoder_for(model)
    data = [default_storage.open(p.image.name, "rb").read() for p in products]
    drafted = encoder.encode_images([open_image(d, draft_size=encoder.image_size) for d in data])
    full = encoder.encode_images([open_image(d) for d in data])
    texts = encoder.encode_texts([p.text_for_embedding for p in products])
    stored = {v.product_id: v for v in ProductVector.objects.filter(model=model)}
    image_vecs = np.stack([np.asarray(stored[p.pk].image_vec, np.float32) for p in products])
    text_vecs = np.stack([np.asarray(stored[p.pk].text_vec, np.float32) for p in products])
    expected = drafted if draft else full
    assert np.allclose(image_vecs, expected, atol=1e-3)
    assert np.allclose(text_vecs, texts, atol=1e-4)
    # A reduced-scale decode changes the vectors a little, never much.
    cosine = (drafted * full).sum(axis=1)
    assert cosine.min() > 0.95
    if draft:
        assert not np.allclose(drafted, full, atol=1e-3)  # the setting did something
