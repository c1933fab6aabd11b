"""Several photos per product: the CSV's `images` column, photos kept by content across
re-imports, every photo embedded, a product scored by its best photo (and the result says
which), on real Postgres + pgvector and the real baseline encoder."""

from __future__ import annotations

import csv
import http.server
import io
import shutil
import threading
import zipfile
from decimal import Decimal

import numpy as np
import pytest
from django.db import connection
from django.test import override_settings
from PIL import Image, ImageDraw

from catalog.filters import Filters
from catalog.ingest import extract_zip, run_import
from catalog.models import ImportJob, Product, ProductPhoto
from catalog.search import PhotoRanking, search, vector_search
from embeddings.models import EmbeddingModel, PhotoVector, ProductVector
from tests.conftest import DEMO, SMALL_CSV

HEADER = ["sku", "title", "description", "category", "price", "image", "images"]


def pattern(kind: str, size: int = 64) -> Image.Image:
    """Photos unlike the fixture's greyscale garments, and unlike each other."""
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    if kind == "stripes":
        for x in range(0, size, 8):
            draw.rectangle([x, 0, x + 3, size], fill=(220, 20, 20))
    elif kind == "dots":
        for x in range(4, size, 16):
            for y in range(4, size, 16):
                draw.ellipse([x, y, x + 8, y + 8], fill=(20, 40, 220))
    elif kind == "checker":
        for x in range(0, size, 16):
            for y in range(0, size, 16):
                if (x + y) // 16 % 2:
                    draw.rectangle([x, y, x + 15, y + 15], fill=(20, 160, 40))
    elif kind == "ring":
        draw.ellipse([8, 8, size - 8, size - 8], outline=(240, 160, 0), width=6)
    return img


def save_png(img: Image.Image, path) -> bytes:
    out = io.BytesIO()
    img.save(out, "PNG")
    path.write_bytes(out.getvalue())
    return out.getvalue()


@pytest.fixture
def shop(db, tmp_path):
    """The small fixture's images plus four patterns, in a folder a CSV can point into."""
    from embeddings.registry import ensure_active_model

    ensure_active_model()
    folder = tmp_path / "shop"
    shutil.copytree(SMALL_CSV.parent / "images", folder / "images")
    for kind in ("stripes", "dots", "checker", "ring"):
        save_png(pattern(kind), folder / "images" / f"{kind}.png")
    shutil.copy(DEMO / "fixtures" / "bad_inputs" / "images" / "bomb-50000x50000.png", folder / "images" / "bomb.png")
    return folder


def write_csv(folder, rows, name="shop.csv"):
    path = folder / name
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


def import_csv(path, capture) -> ImportJob:
    job = ImportJob.objects.create(source_name=path.name, csv_path=str(path))
    with capture(execute=True):
        return run_import(job)


# Ten products from the fixture; B-01 has three further photos, B-02 one.
def base_rows(b01_images="images/stripes.png|images/dots.png|images/checker.png", b01_title="Striped tote"):
    rows = [
        ["B-01", b01_title, "", "Bags", "30", "images/SM-010.png", b01_images],
        ["B-02", "Ring bag", "", "Bags", "20", "images/SM-014.png", "images/ring.png"],
    ]
    rows += [
        [f"T-{i:02d}", f"Item {i}", "", "T-shirts & tops", "10", f"images/SM-{i:03d}.png", ""] for i in range(21, 29)
    ]
    return rows


def photo_state(sku: str) -> list[tuple[int, int, str]]:
    """(photo id, position, its vector's id) for each further photo, in order."""
    vectors = dict(PhotoVector.objects.filter(product__sku=sku).values_list("photo_id", "pk"))
    return [(p.pk, p.position, vectors.get(p.pk)) for p in Product.objects.get(sku=sku).photos.all()]


def test_images_column_lands_and_every_photo_is_embedded(shop, django_capture_on_commit_callbacks):
    job = import_csv(write_csv(shop, base_rows()), django_capture_on_commit_callbacks)
    assert (job.created, job.failed, job.notes) == (10, 0, [])
    b01 = Product.objects.get(sku="B-01")
    assert [p.position for p in b01.gallery()] == [0, 1, 2, 3]
    assert [p.image.name.rsplit("/", 1)[-1].split(".")[0] for p in b01.gallery()[1:]] == b01.photo_hashes()
    model = EmbeddingModel.active()
    assert PhotoVector.objects.filter(model=model).count() == 4  # B-01's three, B-02's one
    assert ProductVector.objects.filter(model=model).count() == 10
    row = PhotoVector.objects.get(photo=b01.photos.get(position=2), model=model)
    assert (row.product_id, row.category, row.price) == (b01.pk, "Bags", Decimal("30.00"))
    assert len(row.image_vec) == model.image_dim
    # A product with one photo keeps the content hash it had before photos existed.
    tee = Product.objects.get(sku="T-21")
    assert tee.content_hash == Product.compute_content_hash(tee.title, "", tee.category, tee.price, tee.image_hash)
    assert b01.content_hash != Product.compute_content_hash(b01.title, "", b01.category, b01.price, b01.image_hash)


def test_repeated_photos_are_kept_once(shop, django_capture_on_commit_callbacks):
    rows = [
        [
            "D-1",
            "Dup",
            "",
            "Bags",
            "1",
            "images/SM-031.png",
            "images/stripes.png|images/SM-031.png| images/stripes.png |images/dots.png||",
        ]
    ]
    job = import_csv(write_csv(shop, rows), django_capture_on_commit_callbacks)
    assert job.created == 1
    assert [p.position for p in Product.objects.get(sku="D-1").gallery()] == [0, 1, 2]


def test_reimport_keeps_photos_by_content(shop, django_capture_on_commit_callbacks):
    import_csv(write_csv(shop, base_rows()), django_capture_on_commit_callbacks)
    before = photo_state("B-01")
    stripes, dots, checker = before
    assert all(vector for _, _, vector in before)

    again = import_csv(write_csv(shop, base_rows()), django_capture_on_commit_callbacks)
    assert (again.unchanged, again.updated) == (10, 0)
    assert photo_state("B-01") == before

    # Reordered: each photo keeps its row and vector at its new place; the product changes
    # (its content hash covers the order) and is re-embedded, its further photos are not.
    vector_times = dict(PhotoVector.objects.values_list("pk", "updated_at"))
    reordered = import_csv(
        write_csv(shop, base_rows("images/checker.png|images/stripes.png|images/dots.png")),
        django_capture_on_commit_callbacks,
    )
    assert (reordered.updated, reordered.unchanged) == (1, 9), reordered.errors
    assert photo_state("B-01") == [(checker[0], 1, checker[2]), (stripes[0], 2, stripes[2]), (dots[0], 3, dots[2])]
    assert dict(PhotoVector.objects.values_list("pk", "updated_at")) == vector_times

    # Removed: its row and vector go; a new one is added and embedded.
    changed = import_csv(
        write_csv(shop, base_rows("images/dots.png|images/ring.png")), django_capture_on_commit_callbacks
    )
    assert changed.updated == 1
    state = photo_state("B-01")
    assert [(pid, pos) for pid, pos, _ in state][0] == (dots[0], 1) and state[0][2] == dots[2]
    assert state[1][0] not in {stripes[0], checker[0]} and state[1][2] is not None
    assert not ProductPhoto.objects.filter(pk__in=[stripes[0], checker[0]]).exists()
    assert not PhotoVector.objects.filter(pk__in=[stripes[2], checker[2]]).exists()
    p = Product.objects.get(sku="B-01")
    assert ProductVector.objects.get(product=p).content_hash == p.content_hash

    # No photos left: the product goes back to one photo and its one-photo content hash.
    import_csv(write_csv(shop, base_rows("")), django_capture_on_commit_callbacks)
    p = Product.objects.get(sku="B-01")
    assert photo_state("B-01") == [] and not PhotoVector.objects.filter(product=p).exists()
    assert p.content_hash == Product.compute_content_hash(p.title, "", p.category, p.price, p.image_hash)


def test_changed_words_do_not_reembed_further_photos(shop, django_capture_on_commit_callbacks):
    import_csv(write_csv(shop, base_rows()), django_capture_on_commit_callbacks)
    before = dict(PhotoVector.objects.values_list("pk", "updated_at"))
    rows = base_rows(b01_title="Striped canvas tote")
    rows[0][3] = "Totes"  # a new category: the photos' filter copies follow it
    job = import_csv(write_csv(shop, rows), django_capture_on_commit_callbacks)
    assert job.updated == 1
    b01 = Product.objects.get(sku="B-01")
    assert ProductVector.objects.get(product=b01).content_hash == b01.content_hash
    assert set(PhotoVector.objects.values_list("pk", flat=True)) == set(before)
    assert set(PhotoVector.objects.filter(product=b01).values_list("category", flat=True)) == {"Totes"}


@pytest.mark.parametrize(
    "images, message",
    [
        ("images/stripes.png|images/bomb.png", "images photo 2 'images/bomb.png': image too large"),
        ("images/nope.png", "images photo 1 'images/nope.png': image file 'images/nope.png' not found"),
        ("../secret.png", "images photo 1 '../secret.png': image path '../secret.png' escapes the CSV's folder"),
        ("http://127.0.0.1:9/x.png", "images photo 1 'http://127.0.0.1:9/x.png': "),
        ("images/dots.png\x07", "images contains a control character"),
    ],
)
def test_a_bad_photo_is_a_row_error_and_loses_nothing(shop, django_capture_on_commit_callbacks, images, message):
    import_csv(write_csv(shop, base_rows()), django_capture_on_commit_callbacks)
    before = (Product.objects.get(sku="B-01").content_hash, photo_state("B-01"))
    job = import_csv(write_csv(shop, base_rows(images, b01_title="Changed")), django_capture_on_commit_callbacks)
    assert (job.failed, job.unchanged) == (1, 9)
    assert job.errors[0]["row"] == 1 and job.errors[0]["sku"] == "B-01"
    assert message in job.errors[0]["error"], job.errors[0]["error"]
    if "127.0.0.1" in images:
        assert "non-public address (127.0.0.1)" in job.errors[0]["error"]
    b01 = Product.objects.get(sku="B-01")
    assert (b01.title, b01.content_hash, photo_state("B-01")) == ("Striped tote", *before)


def test_too_many_photos_is_a_row_error(shop, django_capture_on_commit_callbacks, settings):
    settings.PRODUCT_MAX_PHOTOS = 3
    job = import_csv(write_csv(shop, base_rows()), django_capture_on_commit_callbacks)
    assert job.failed == 1 and job.created == 9
    assert job.errors[0]["error"] == (
        "images names 3 photos: a product has at most 3 (image and 2 more; PRODUCT_MAX_PHOTOS)"
    )


class _Photos(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self):  # noqa: N802
        body = self.files.get(self.path)
        self.send_response(200 if body else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args):
        pass


def test_photo_urls_are_downloaded(shop, django_capture_on_commit_callbacks, settings):
    import ipaddress

    _Photos.files = {f"/{k}.png": (shop / "images" / f"{k}.png").read_bytes() for k in ("stripes", "dots")}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Photos)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.INGEST_ALLOWED_PRIVATE_NETWORKS = [ipaddress.ip_network("127.0.0.1/32")]
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        rows = [
            ["U-1", "Url photos", "", "Bags", "5", "images/SM-031.png", f"{base}/stripes.png|{base}/dots.png"],
            ["U-2", "Missing", "", "Bags", "5", "images/SM-032.png", f"{base}/gone.png"],
        ]
        job = import_csv(write_csv(shop, rows), django_capture_on_commit_callbacks)
    finally:
        server.shutdown()
    assert job.created == 1 and job.failed == 1
    assert f"images photo 1 '{base}/gone.png': " in job.errors[0]["error"]
    u1 = Product.objects.get(sku="U-1")
    assert [p.position for p in u1.gallery()] == [0, 1, 2]
    assert PhotoVector.objects.filter(product=u1).count() == 2


def test_zip_with_photos_imports(shop, tmp_path, django_capture_on_commit_callbacks):
    write_csv(shop, base_rows())
    archive = tmp_path / "shop.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in shop.rglob("*"):
            if path.is_file() and path.name != "bomb.png":
                zf.write(path, f"shop/{path.relative_to(shop)}")
    job = import_csv(extract_zip(archive, tmp_path / "unzipped"), django_capture_on_commit_callbacks)
    assert job.created == 10 and job.failed == 0
    assert len(Product.objects.get(sku="B-01").gallery()) == 4


# --- search: a product scores by its best photo ---------------------------------------------


@pytest.fixture
def photo_shop(shop, django_capture_on_commit_callbacks):
    import_csv(write_csv(shop, base_rows()), django_capture_on_commit_callbacks)
    return shop


def test_a_product_ranks_by_its_best_photo_and_says_which(photo_shop):
    dots = Image.open(photo_shop / "images" / "dots.png").convert("RGB")
    result = search(image=dots, k=5)
    top = result.hits[0]
    assert top.product.sku == "B-01"
    assert top.photo is not None and top.photo.position == 2
    assert top.photo.image.name == Product.objects.get(sku="B-01").photos.get(position=2).image.name
    assert top.score == pytest.approx(1.0, abs=1e-3)
    assert [h.product.sku for h in result.hits].count("B-01") == 1  # one result per product
    # A hit placed by its main photo reports photo 0.
    main = Image.open(photo_shop / "images" / "SM-025.png").convert("RGB")
    first = search(image=main, k=3).hits[0]
    assert first.product.sku == "T-25" and first.photo.position == 0


def test_photo_search_fills_pages_and_filters(photo_shop):
    ring = Image.open(photo_shop / "images" / "ring.png").convert("RGB")
    page1 = search(image=ring, k=4)
    page2 = search(image=ring, k=4, offset=4)
    assert page1.hits[0].product.sku == "B-02" and page1.hits[0].photo.position == 1
    assert len(page1.hits) == len(page2.hits) == 4 and page1.has_next
    seen = [h.product.sku for h in page1.hits + page2.hits]
    assert len(set(seen)) == 8
    everything = search(image=ring, k=50)
    assert len(everything.hits) == 10
    tees = search(image=ring, k=50, filters=Filters(category="T-shirts & tops"))
    assert {h.product.category for h in tees.hits} == {"T-shirts & tops"} and len(tees.hits) == 8
    assert all(h.photo.position == 0 for h in tees.hits)


@override_settings(HNSW_STORAGE="vector")  # exact to 1e-4 (halfvec rounds scores to ~1e-3)
def test_photo_vector_search_equals_the_best_photo_by_brute_force(db):
    """vector_search over main and further photos: for every page and filter, the same
    products, order and photos as the max over each product's photos computed in numpy."""
    from embeddings.vector_index import create_indexes

    dim = 16
    model = EmbeddingModel.objects.create(
        name="random-photos", kind="baseline", spec={}, backbone="none", text_tower="none", image_dim=dim, text_dim=dim
    )
    rng = np.random.default_rng(7)

    def unit(n):
        v = rng.normal(size=(n, dim)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    products = Product.objects.bulk_create(
        Product(
            sku=f"P-{i:03d}",
            title=f"p {i}",
            category="Odd" if i % 3 == 0 else "Even",
            price=Decimal(i),
            image=f"products/p{i}.png",
            content_hash=str(i),
        )
        for i in range(120)
    )
    main = unit(len(products))
    ProductVector.objects.bulk_create(
        ProductVector(
            product=p,
            model=model,
            image_vec=v.tolist(),
            text_vec=v.tolist(),
            content_hash=str(i),
            category=p.category,
            price=p.price,
        )
        for i, (p, v) in enumerate(zip(products, main))
    )
    vectors = {p.pk: [(None, main[i])] for i, p in enumerate(products)}
    for i, p in enumerate(products[:60]):
        for position, v in enumerate(unit(1 + i % 4), start=1):
            photo = ProductPhoto.objects.create(
                product=p, position=position, image="x.png", thumbnail="x.jpg", sha256=f"{i}-{position}"
            )
            PhotoVector.objects.create(
                photo=photo, model=model, product=p, category=p.category, price=p.price, image_vec=v.tolist()
            )
            vectors[p.pk].append((photo.pk, v))
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    create_indexes(model.pk, model.column_dims())
    categories = {p.pk: p.category for p in products}

    for query in unit(5):
        best = {}
        for pid, photos in vectors.items():
            photo_id, v = max(photos, key=lambda item: float(item[1] @ query))
            best[pid] = (float(v @ query), photo_id)
        for filters, keep in (
            (Filters(), lambda pid: True),
            (Filters(category="Odd"), lambda pid: categories[pid] == "Odd"),
        ):
            expected = sorted((pid for pid in best if keep(pid)), key=lambda pid: -best[pid][0])
            for k, offset in ((10, 0), (10, 10), (25, 5)):
                ranking = vector_search(model, "image_vec", query, k, offset, filters)
                assert isinstance(ranking, PhotoRanking)
                assert [pid for pid, _ in ranking] == expected[offset : offset + k]
                for pid, score in ranking:
                    assert score == pytest.approx(best[pid][0], abs=1e-4)
                    assert ranking.photos.get(pid) == best[pid][1]
    # Words are never compared with photos' further vectors: text columns are plain lists.
    assert not isinstance(vector_search(model, "text_vec", unit(1)[0], 5), PhotoRanking)


# --- the API and the pages -------------------------------------------------------------------


def test_api_says_which_photo_matched(photo_shop, client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("dots.png", (photo_shop / "images" / "dots.png").read_bytes())
    response = client.post("/api/search/image", {"image": upload, "k": 3})
    assert response.status_code == 200, response.content[:300]
    top = response.json()["results"][0]
    assert top["sku"] == "B-01"
    assert [p["position"] for p in top["photos"]] == [0, 1, 2, 3]
    assert top["matched_photo"] == top["photos"][2]
    assert top["matched_photo"]["thumbnail_url"].startswith("http://testserver/media/thumbs/")
    # Keywords alone: no photo placed it.
    words = client.get("/api/search", {"q": "striped tote", "mode": "keyword"}).json()["results"][0]
    assert words["sku"] == "B-01" and words["matched_photo"] is None and len(words["photos"]) == 4


def test_result_card_shows_the_matched_photo_and_links_to_it(photo_shop, client):
    from catalog.models import QueryImage

    upload = io.BytesIO((photo_shop / "images" / "dots.png").read_bytes())
    upload.name = "dots.png"
    response = client.post("/", {"image": upload}, follow=True)
    assert response.status_code == 200
    html = response.content.decode()
    b01 = Product.objects.get(sku="B-01")
    card = html[html.index('data-sku="B-01"') :]
    card = card[: card.index("</li>")]
    assert b01.photos.get(position=2).thumbnail.url in card
    assert "photo 3/4" in card and "photo=2" in card
    assert QueryImage.objects.count() == 1


def test_product_page_has_a_gallery(photo_shop, client):
    b01 = Product.objects.get(sku="B-01")
    html = client.get(b01.get_absolute_url()).content.decode()
    assert html.count('class="gallery-thumb"') == 4
    assert f'src="{b01.image.url}"' in html and 'aria-current="true"' in html
    shown = client.get(b01.get_absolute_url(), {"photo": "2", "back": "/?q=x"}).content.decode()
    assert f'src="{b01.photos.get(position=2).image.url}" alt="Striped tote, photo 3 of 4"' in shown
    assert 'href="?photo=3&amp;back=%2F%3Fq%3Dx"' in shown or 'href="?back=%2F%3Fq%3Dx&amp;photo=3"' in shown
    for bad in ("9", "-1", "x", ""):
        assert client.get(b01.get_absolute_url(), {"photo": bad}).status_code == 200
    one = client.get(Product.objects.get(sku="T-21").get_absolute_url()).content.decode()
    assert 'class="gallery"' not in one


def test_admin_shows_further_photos(photo_shop, admin_client):
    b01 = Product.objects.get(sku="B-01")
    html = admin_client.get(f"/admin/catalog/product/{b01.pk}/change/").content.decode()
    assert "Further photos" in html
    for photo in b01.photos.all():
        assert photo.thumbnail.url in html and f"photo {photo.position}" in html and photo.sha256[:12] in html
    tee = Product.objects.get(sku="T-21")
    assert "none (the CSV" in admin_client.get(f"/admin/catalog/product/{tee.pk}/change/").content.decode()


def test_words_against_photos_use_each_products_best_photo(small_catalogue, shop, django_capture_on_commit_callbacks):
    """A joint model's words -> photos list (text_photo) scores each product by its best
    photo too, and the hit says which: the photo whose stored vector is nearest the words."""
    from django.core.management import call_command

    from catalog.search import text_query_vectors
    from embeddings.registry import encoder_for
    from embeddings.tasks import embed_batch, pretrained_donor, stored_photo_features

    import_csv(write_csv(shop, base_rows()), django_capture_on_commit_callbacks)
    call_command("train_embeddings", epochs=2, name="tiny-joint", backbone="efficientnet_lite0")
    joint = EmbeddingModel.objects.get(name="tiny-joint")
    # The further photos, like the main ones, reuse the backbone features the baseline stored:
    # the same vectors as a full encode, without the backbone pass.
    encoder = encoder_for(joint)
    photos = list(ProductPhoto.objects.order_by("pk"))
    assert set(stored_photo_features(pretrained_donor(joint, encoder), photos)) == {ph.pk for ph in photos}
    embed_batch(list(Product.objects.values_list("pk", flat=True)), joint)
    assert PhotoVector.objects.filter(model=joint).count() == 4
    images = [Image.open(ph.image.path).convert("RGB") for ph in photos]
    full = encoder.encode_image_signals(images)
    for column in ("image_vec", "image_feat"):
        stored = np.stack(
            [np.asarray(getattr(PhotoVector.objects.get(photo=ph, model=joint), column), np.float32) for ph in photos]
        )
        assert (stored * full[column]).sum(axis=1).min() > 0.995, column
    baseline = EmbeddingModel.active()
    for ph in photos:  # the backbone features: the baseline's own, copied by Postgres (copied_features)
        mine = PhotoVector.objects.get(photo=ph, model=joint).image_feat
        assert np.array_equal(mine, PhotoVector.objects.get(photo=ph, model=baseline).image_vec)
    further_won = 0
    for words in ("striped bag", "dotted tote", "green checked bag", "dark trousers", "light sneakers"):
        result = search(words, mode="semantic", signals=["text_photo"], model=joint, k=50)
        query = text_query_vectors(joint, words, ["text_vec"])["text_vec"]
        assert len(result.hits) == Product.objects.count()
        for hit in result.hits:
            vectors = {0: ProductVector.objects.get(product=hit.product, model=joint).image_vec}
            for pv in PhotoVector.objects.filter(product=hit.product, model=joint).select_related("photo"):
                vectors[pv.photo.position] = pv.image_vec
            best = max(vectors, key=lambda position: float(np.dot(vectors[position], query)))
            assert hit.photo.position == best, (words, hit.product.sku)
            assert hit.score == pytest.approx(float(np.dot(vectors[best], query)), abs=1e-3)
            further_won += best > 0
    assert further_won > 0  # some product was placed by a further photo, so the check above bites
