"""Skus in URLs: every printable sku has exactly one product URL, and it resolves back."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import pytest
from django.urls import resolve, reverse

from catalog.converters import SkuConverter

SKUS = [
    "SM-001",
    "A/B 50% #1?",
    "a b",
    "Ünïcødé ✓",
    "quote\"'s",
    "..",
    ".",
    "../x",
    "a/./b",
    "~.",
    "~~..",
    "a//b",
    "/lead",
    "trail/",
    "~",
    "%2F",
    "x" * 255,
]


@pytest.mark.parametrize("sku", SKUS)
def test_reverse_then_resolve_gives_the_sku_back(sku):
    url = reverse("catalog:product", args=[sku])
    assert url.startswith("/p/") and url.endswith("/")
    assert not {"#", "?", " ", '"'} & set(url)
    path = unquote(urlsplit(url).path)  # what the server hands Django
    assert "/./" not in path + "/" and "/../" not in path + "/"
    match = resolve(path)
    assert match.url_name == "product" and match.kwargs["sku"] == sku


@pytest.mark.parametrize("sku", SKUS)
def test_converter_is_a_bijection(sku):
    converter = SkuConverter()
    assert converter.to_python(converter.to_url(sku)) == sku


@pytest.mark.parametrize("sku", ["a\tb", "a\nb", "nul\x00"])
def test_control_characters_are_no_sku(db, client, sku):
    from django.core.exceptions import ValidationError

    from catalog.models import Product

    with pytest.raises(ValidationError, match="control characters"):
        Product(sku=sku, title="t", category="c", price=1, image="x.png", content_hash="h").full_clean()
    # and a URL carrying one is a plain 404, never a database error
    assert client.get("/p/" + "".join(f"%{ord(c):02X}" if ord(c) < 32 else c for c in sku) + "/").status_code == 404
