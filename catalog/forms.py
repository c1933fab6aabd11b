"""The search parameters shared by the page and the JSON API; every error names its field."""
from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from django import forms
from django.conf import settings
from django.core.validators import RegexValidator

from catalog.search import MODES, SORTS, Filters

MAX_K = 100
MAX_QUERY_CHARS = 500
PER_PAGE = 24

SORT_LABELS = {"relevance": "Best match", "price_asc": "Price: low to high", "price_desc": "Price: high to low"}
MODE_LABELS = {"hybrid": "Smart", "semantic": "Meaning", "keyword": "Exact words"}


def _number(name: str, kind: str = "a number") -> dict[str, str]:
    return {"invalid": f"{name} must be {kind}", "min_value": f"{name} must be at least %(limit_value)s",
            "max_value": f"{name} must be at most %(limit_value)s"}


class SearchForm(forms.Form):
    q = forms.CharField(required=False, max_length=MAX_QUERY_CHARS,
                        error_messages={"max_length": f"q is longer than {MAX_QUERY_CHARS} characters"})
    mode = forms.ChoiceField(required=False, choices=[(m, m) for m in MODES],
                             error_messages={"invalid_choice": f"unknown mode %(value)s: use {', '.join(MODES)}"})
    category = forms.CharField(required=False, max_length=120,
                               error_messages={"max_length": "category is longer than 120 characters"})
    min_price = forms.DecimalField(required=False, min_value=0, error_messages=_number("min_price"))
    max_price = forms.DecimalField(required=False, min_value=0, error_messages=_number("max_price"))
    sort = forms.ChoiceField(required=False, choices=[(s, s) for s in SORTS],
                             error_messages={"invalid_choice": f"unknown sort %(value)s: use {', '.join(SORTS)}"})
    page = forms.IntegerField(required=False, min_value=1, max_value=1000,
                              error_messages=_number("page", "a whole number from 1"))
    k = forms.IntegerField(required=False, min_value=1, max_value=MAX_K,
                           error_messages={**_number("k", f"a whole number from 1 to {MAX_K}"),
                                           "min_value": f"k must be from 1 to {MAX_K}",
                                           "max_value": f"k must be from 1 to {MAX_K}"})
    min_score = forms.FloatField(required=False, min_value=-1, max_value=1, error_messages=_number("min_score"))
    img = forms.CharField(required=False, max_length=22, validators=[
        RegexValidator(r"^[A-Za-z0-9_-]+$", "img must be an id returned by a photo search")],
        error_messages={"max_length": "img must be an id returned by a photo search"})

    def __init__(self, data: Any = None, *, per_page: int = PER_PAGE) -> None:
        super().__init__(data)
        self.per_page = per_page

    def clean_q(self) -> str:
        return " ".join(self.cleaned_data["q"].split())

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        low, high = data.get("min_price"), data.get("max_price")
        if low is not None and high is not None and low > high:
            raise forms.ValidationError(f"min_price ({low}) is above max_price ({high})")
        return data

    def first_error(self) -> str:
        for name, messages in self.errors.items():
            message = str(messages[0])
            # Django's own messages ("Null characters are not allowed.") do not say which field
            if name != "__all__" and not re.search(rf"\b{name}\b", message):
                message = f"{name}: {message}"
            return message
        return ""

    # The cleaned values, with defaults filled in.
    @property
    def query(self) -> str:
        return self.cleaned_data.get("q") or ""

    @property
    def search_mode(self) -> str:
        return self.cleaned_data.get("mode") or settings.SEARCH_DEFAULT_MODE

    @property
    def sort_order(self) -> str:
        return self.cleaned_data.get("sort") or "relevance"

    @property
    def per_page_k(self) -> int:
        return self.cleaned_data.get("k") or self.per_page

    @property
    def page_number(self) -> int:
        return self.cleaned_data.get("page") or 1

    @property
    def offset(self) -> int:
        return (self.page_number - 1) * self.per_page_k

    @property
    def filters(self) -> Filters:
        d = self.cleaned_data
        return Filters(d.get("category") or None, d.get("min_price"), d.get("max_price"))

    @property
    def score_cutoff(self) -> float | None:
        return self.cleaned_data.get("min_score")

    @property
    def image_key(self) -> str:
        return self.cleaned_data.get("img") or ""

    def params(self, **changes: Any) -> dict[str, str]:
        """The query string of this search (defaults left out), with `changes` applied."""
        values: dict[str, Any] = {
            "q": self.query, "img": self.image_key, "mode": self.cleaned_data.get("mode") or "",
            "category": self.filters.category or "", "min_price": self.cleaned_data.get("min_price"),
            "max_price": self.cleaned_data.get("max_price"), "sort": self.cleaned_data.get("sort") or "",
            "min_score": self.score_cutoff, "page": self.page_number, "k": self.cleaned_data.get("k"),
        }
        values.update(changes)
        if values.get("page") == 1:
            values["page"] = None
        out = {}
        for name, value in values.items():
            if value in (None, ""):
                continue
            out[name] = _plain(value)
        return out


def _plain(value: Any) -> str:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral() else format(value, "f")
    return str(value)
