from __future__ import annotations

import io
import zipfile

import pytest
from django.urls import reverse

from catalog.models import ImportJob, Product
from tests.conftest import BAD_CSV, SMALL_CSV


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("alice", "alice@example.com", "pw")
    client.force_login(user)
    return client


def zipped(folder) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in folder.rglob("*"):
            if path.is_file():
                archive.write(path, path.relative_to(folder))
    buffer.seek(0)
    buffer.name = "shop.zip"
    return buffer


def test_zip_upload_runs_an_import_with_live_state(staff_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(reverse("admin:catalog_importjob_upload"), {"file": zipped(SMALL_CSV.parent)})
    job = ImportJob.objects.get()
    assert response.status_code == 302 and response.url == reverse("admin:catalog_importjob_progress", args=[job.pk])
    page = staff_client.get(response.url)
    assert page.status_code == 200 and b'role="progressbar"' in page.content
    state = staff_client.get(reverse("admin:catalog_importjob_state", args=[job.pk])).json()
    assert state["status"] == "done" and state["created"] == 40 and state["embedded"] == 40
    assert state["percent"] == 100 and Product.objects.count() == 40


def test_csv_upload_with_bad_rows_lists_them(staff_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(reverse("admin:catalog_importjob_upload"), {"file": zipped(BAD_CSV.parent)})
    state = staff_client.get(reverse("admin:catalog_importjob_state", args=[ImportJob.objects.get().pk])).json()
    assert state["failed"] == 10 and state["duplicates"] == 1 and {e["row"] for e in state["errors"]} >= {1, 2, 4, 9}
    assert all(e["error"] for e in state["errors"])


def test_upload_rejects_other_file_types(staff_client):
    upload = io.BytesIO(b"hello")
    upload.name = "notes.pdf"
    response = staff_client.post(reverse("admin:catalog_importjob_upload"), {"file": upload})
    assert response.status_code == 200 and b"Upload a .csv or a .zip file" in response.content
    assert not ImportJob.objects.exists()


def test_zip_escaping_its_folder_fails_the_job_clearly(staff_client, django_capture_on_commit_callbacks):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("catalogue.csv", "sku,title,description,category,price,image\n")
        archive.writestr("../evil.png", b"x")
    buffer.seek(0)
    buffer.name = "evil.zip"
    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(reverse("admin:catalog_importjob_upload"), {"file": buffer})
    job = ImportJob.objects.get()
    assert job.status == ImportJob.Status.FAILED and "escapes" in job.error_message


def test_product_admin_lists_thumbnails(staff_client, small_catalogue):
    page = staff_client.get(reverse("admin:catalog_product_changelist") + "?q=SM-001")
    assert page.status_code == 200 and b"thumbs/" in page.content


def test_editing_a_product_in_the_admin_reembeds_it(staff_client, small_catalogue, django_capture_on_commit_callbacks):
    from embeddings.models import ProductVector

    product = Product.objects.get(sku="SM-001")
    before = ProductVector.objects.get(product=product)
    url = reverse("admin:catalog_product_change", args=[product.pk])
    form = {
        "sku": product.sku,
        "title": "Renamed in the admin",
        "description": product.description,
        "category": product.category,
        "price": str(product.price),
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(url, form)
    assert response.status_code == 302, response.content[:2000]
    product.refresh_from_db()
    after = ProductVector.objects.get(product=product)
    assert product.title == "Renamed in the admin"
    assert after.content_hash == product.content_hash != before.content_hash


def test_excel_unicode_text_upload_reports_notes_and_repeats(staff_client, django_capture_on_commit_callbacks):
    # Excel's "Unicode text": UTF-16 with a BOM, tab-separated; the same parser as the CLI
    text = (
        "sku\ttitle\tdescription\tcategory\tprice\timage\tcolour\n"
        "Ü-1\tFirst\t\tBags\t1\tnope.png\tred\nÜ-1\tSecond\t\tBags\t2\tnope.png\tblue\n"
    )
    upload = io.BytesIO(text.encode("utf-16"))
    upload.name = "export.txt"
    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(reverse("admin:catalog_importjob_upload"), {"file": upload})
    state = staff_client.get(reverse("admin:catalog_importjob_state", args=[ImportJob.objects.get().pk])).json()
    assert state["notes"] == ["ignored 1 column(s) Vitrine does not use: colour"]
    assert (state["total_rows"], state["duplicates"], state["failed"]) == (2, 1, 1)
    assert [(e["row"], e["sku"]) for e in state["errors"]] == [(1, "Ü-1"), (2, "Ü-1")]
    assert "sku repeated at row 2" in state["errors"][0]["error"] and "not found" in state["errors"][1]["error"]
