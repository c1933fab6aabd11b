"""Issue #11 items 7 and 6 in a real browser: an API token made in the admin and used for a
bulk import, and the search analytics page. Screenshots go to test-output/screenshots/."""

from __future__ import annotations

import io
import os
import zipfile

import pytest

from tests.conftest import OUTPUT, SMALL_CSV

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = pytest.mark.browser
SCREENSHOTS = OUTPUT / "screenshots"


def zip_bytes(folder) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in folder.rglob("*"):
            if path.is_file():
                archive.write(path, path.relative_to(folder))
    return buffer.getvalue()


def log_in(page, base: str, django_user_model) -> None:
    django_user_model.objects.create_superuser("alice", "alice@example.com", "correct horse")
    page.goto(base + "/admin/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "correct horse")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")


def test_a_token_made_in_the_admin_imports_through_the_api(live_server, page, django_user_model):
    from embeddings.registry import ensure_active_model

    ensure_active_model()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    base = live_server.url
    log_in(page, base, django_user_model)
    page.goto(base + "/admin/catalog/apitoken/add/")
    page.select_option("#id_user", label="alice")
    page.fill("#id_name", "ERP nightly export")
    page.click("input[name=_save]")
    token = page.locator("#new-api-token").inner_text()
    assert token.startswith("vit_")
    page.screenshot(path=SCREENSHOTS / "admin-api-token-created.png", full_page=True)

    api = page.context.request  # no session cookie is needed; the token alone must do
    answer = api.post(
        base + "/api/imports",
        headers={"Authorization": f"Bearer {token}"},
        multipart={"file": {"name": "shop.zip", "mimeType": "application/zip", "buffer": zip_bytes(SMALL_CSV.parent)}},
    )
    assert answer.status == 202, answer.text()
    job = answer.json()
    state = api.get(job["url"], headers={"Authorization": f"Bearer {token}"}).json()
    assert state["status"] == "done" and state["created"] == 40 and state["embedded"] == 40
    refused = api.get(job["url"], headers={"Authorization": "Bearer vit_wrong"})
    assert refused.status == 401

    page.goto(base + f"/admin/catalog/importjob/{job['id']}/progress/")
    page.wait_for_function("document.getElementById('job-embedded').textContent === '40 / 40'")
    page.wait_for_timeout(600)  # the bars' width transition
    assert not page.locator("#job-error").is_visible()
    page.screenshot(path=SCREENSHOTS / "admin-api-import-progress.png", full_page=True)
    page.goto(base + "/admin/catalog/apitoken/")
    row = page.locator("#result_list tbody tr").first
    assert "ERP nightly export" in row.inner_text() and token not in page.content()
    assert "-" not in row.locator(".field-last_used_at").inner_text()  # used just now
    page.screenshot(path=SCREENSHOTS / "admin-api-tokens.png", full_page=True)


def test_searches_and_clicks_reach_the_analytics_page(shop, page, django_user_model):
    from catalog.models import SearchClick, SearchLog

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(shop + "/")
    # typed slowly enough that every prefix is searched: the log keeps one search, "dark"
    page.locator("#q").press_sequentially("dark", delay=400)
    page.wait_for_function("document.querySelector('#results-state')?.dataset.queryId")
    page.wait_for_timeout(500)
    page.keyboard.press("Escape")  # close the autocomplete over the results
    assert list(SearchLog.objects.values_list("text", flat=True)) == ["dark"]
    second = page.locator("#results .card").nth(1)
    sku, rank = second.get_attribute("data-sku"), second.get_attribute("data-rank")
    assert rank == "2"
    second.locator(".card-link").click()
    page.wait_for_url("**/p/**")
    for _ in range(50):
        if SearchClick.objects.exists():
            break
        page.wait_for_timeout(100)
    click = SearchClick.objects.get()
    assert (click.search.text, click.product.sku, click.rank) == ("dark", sku, 2)
    page.goto(shop + "/?q=xyzzyq&mode=keyword&correct=0")
    page.goto(shop + "/?q=dark+trousers")

    log_in(page, shop, django_user_model)
    page.goto(shop + "/admin/catalog/searchlog/")
    today = page.locator("#per-day tbody tr").first
    assert [c.strip() for c in today.locator("td").all_inner_texts()][1:] == ["3", "1 (33%)", "33%", "1", "2.0"]
    assert "xyzzyq" in page.locator("#zero-queries").inner_text()
    assert "dark" in page.locator("#top-queries").inner_text()
    page.screenshot(path=SCREENSHOTS / "admin-search-analytics.png", full_page=True)
    with page.expect_download() as download:
        page.click("#export-csv")
    assert "xyzzyq" in download.value.path().read_text()
