"""Issue #4 in a real browser: the embedding map (hover shows the product, click opens it)
and the evaluation page. Screenshots go to test-output/screenshots/."""

from __future__ import annotations

import math
import os

import pytest

from tests.conftest import OUTPUT

# Playwright's sync API runs an event loop in this thread; the fixtures' database access
# would otherwise be refused as "called from an async context".
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = pytest.mark.browser
SCREENSHOTS = OUTPUT / "screenshots"


def loneliest_point(data: dict, panel: int = 0) -> int:
    """The point farthest from its nearest neighbour: hovering it can only hit it."""
    points = data["panels"][panel]["points"]

    def gap(i: int) -> float:
        a = points[i]
        return min(math.dist((a["x"], a["y"]), (b["x"], b["y"])) for j, b in enumerate(points) if j != i)

    return max(range(len(points)), key=gap)


def test_map_hover_click_and_evaluation(shop, page, transactional_db):
    from embeddings.models import EmbeddingModel, EvaluationRun

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    model = EmbeddingModel.active()
    assert model is not None

    page.goto(shop + "/models/map/")
    page.wait_for_function("window.vitrineMap && window.vitrineMap.ready()", timeout=120_000)
    data = page.evaluate("window.vitrineMap.data()")
    assert len(data["panels"]) == 2  # the baseline: photo space and text space side by side
    assert page.locator("#map-legend button").count() == len(data["categories"]) == 4
    assert "Two spaces" in page.locator(".map-intro").inner_text()

    index = loneliest_point(data)
    point = data["panels"][0]["points"][index]
    product = data["products"][point["p"]]
    # bring the point into the viewport: the mouse can only hover what is on screen
    page.evaluate(f"window.scrollBy(0, window.vitrineMap.screenPoint(0, {index}).y - innerHeight / 2)")
    where = page.evaluate(f"window.vitrineMap.screenPoint(0, {index})")
    page.mouse.move(where["x"], where["y"])
    tip = page.locator("#map-tip")
    tip.wait_for(state="visible")
    assert tip.locator(".tip-title").inner_text() == product["title"]
    assert product["category"] in tip.inner_text()
    page.wait_for_function("[...document.querySelectorAll('#map-tip img')].every((i) => i.complete)")
    page.screenshot(path=SCREENSHOTS / "models-map-hover-1280.png")

    page.mouse.click(where["x"], where["y"])
    page.wait_for_url(f"**{product['url']}")
    assert page.locator("h1").inner_text() == product["title"]

    EvaluationRun.objects.create(
        queries_file="demo/eval/queries.jsonl",
        n_text_queries=3,
        n_image_queries=2,
        results={
            "products": 40,
            "rows": [
                {
                    "method": "keyword (Postgres full-text)",
                    "model": "-",
                    "task": "text→image",
                    "queries": 3,
                    "R@1": 0.1,
                    "R@5": 0.2,
                    "R@10": 0.3,
                    "MRR@10": 0.3,
                    "mAP@10": 0.25,
                    "P@10": 0.3,
                },
                {
                    "method": "semantic (MiniLM text→text, baseline)",
                    "model": model.name,
                    "task": "text→image",
                    "queries": 3,
                    "R@1": 0.2,
                    "R@5": 0.4,
                    "R@10": 0.5,
                    "MRR@10": 0.6,
                    "mAP@10": 0.55,
                    "P@10": 0.5,
                },
                {
                    "method": f"photo→photo (pretrained {model.backbone} features, baseline)",
                    "model": model.name,
                    "task": "image→image",
                    "queries": 2,
                    "R@1": 0.3,
                    "R@5": 0.5,
                    "R@10": 0.7,
                    "MRR@10": 0.8,
                    "mAP@10": 0.7,
                    "P@10": 0.6,
                },
            ],
        },
    )
    page.goto(shop + "/models/evaluation/")
    tables = page.locator("table.eval-table")
    assert tables.count() == 2
    assert page.locator(".eval-task h2").all_inner_texts() == ["text→image", "image→image"]
    best = page.locator("table.eval-table").first.locator("td.best")
    assert "0.550" in best.all_inner_texts()
    assert page.locator("figure.chart svg rect").count() == 3
    page.screenshot(path=SCREENSHOTS / "models-evaluation-1280.png", full_page=True)

    page.goto(shop + "/models/")
    assert model.name in page.locator(".model-card").first.inner_text()
    page.screenshot(path=SCREENSHOTS / "models-registry-1280.png", full_page=True)
