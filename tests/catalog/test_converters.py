"""Skus in URLs: every printable sku has exactly one product URL, and it resolves back."""
from __future__ import annotations

from urllib.parse import unquote, urlsplit

import pytest
from django.urls import resolve, reverse

from catalog.converters import SkuConverter

SKUS = ["SM-001", "A/B 50% #1?", "a b", "Ünïcødé ✓", "quote\"'s", "..", ".", "../x", "a/./b", "~.", "~~..",
        "a//b", "/lead", "trail/", "~", "%2F", "x" * 255]


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
