"""The search parameters shared by the page and the JSON API; every error names its field."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from django import forms
from django.conf import settings
from django.core.validators import RegexValidator

from catalog.filters import Filters
from catalog.models import SKU_MAX_LENGTH
from catalog.search import MODES, SORTS

MAX_K = 100
MAX_PAGE = 1000
MAX_QUERY_CHARS = 500
PER_PAGE = 24

SORT_LABELS = {"relevance": "Best match", "price_asc": "Price: low to high", "price_desc": "Price: high to low"}
MODE_LABELS = {"hybrid": "Smart", "semantic": "Meaning", "keyword": "Exact words"}


class ListField(forms.Field):
    """A repeatable parameter (?like=a&like=b): its values stripped, blanks and repeats dropped."""

    widget = forms.MultipleHiddenInput

    def __init__(self, *, max_length: int, what: str, pattern: str | None = None, **kwargs: Any) -> None:
        super().__init__(required=False, **kwargs)
        self.max_length, self.what, self.pattern = max_length, what, re.compile(pattern) if pattern else None

    def to_python(self, value: Any) -> list[str]:
        values = value if isinstance(value, (list, tuple)) else ([] if value in (None, "") else [value])
        return list(dict.fromkeys(v.strip() for v in map(str, values) if v.strip()))

    def validate(self, value: list[str]) -> None:
        for item in value:
            if "\x00" in item:
                raise forms.ValidationError("Null characters are not allowed.")
            if len(item) > self.max_length or (self.pattern and not self.pattern.fullmatch(item)):
                raise forms.ValidationError(f"{item[:30]!r} is not {self.what}")


EXAMPLE_FIELDS = ("like", "unlike", "like_img", "unlike_img", "avoid")


def _number(name: str, kind: str = "a number") -> dict[str, str]:
    return {
        "invalid": f"{name} must be {kind}",
        "min_value": f"{name} must be at least %(limit_value)s",
        "max_value": f"{name} must be at most %(limit_value)s",
    }


class SearchForm(forms.Form):
    q = forms.CharField(
        required=False,
        max_length=MAX_QUERY_CHARS,
        error_messages={"max_length": f"q is longer than {MAX_QUERY_CHARS} characters"},
    )
    mode = forms.ChoiceField(
        required=False,
        choices=[(m, m) for m in MODES],
        error_messages={"invalid_choice": f"unknown mode %(value)s: use {', '.join(MODES)}"},
    )
    category = forms.CharField(
        required=False, max_length=120, error_messages={"max_length": "category is longer than 120 characters"}
    )
    min_price = forms.DecimalField(required=False, min_value=0, error_messages=_number("min_price"))
    max_price = forms.DecimalField(required=False, min_value=0, error_messages=_number("max_price"))
    sort = forms.ChoiceField(
        required=False,
        choices=[(s, s) for s in SORTS],
        error_messages={"invalid_choice": f"unknown sort %(value)s: use {', '.join(SORTS)}"},
    )
    page = forms.IntegerField(
        required=False, min_value=1, max_value=MAX_PAGE, error_messages=_number("page", "a whole number from 1")
    )
    k = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_K,
        error_messages={
            **_number("k", f"a whole number from 1 to {MAX_K}"),
            "min_value": f"k must be from 1 to {MAX_K}",
            "max_value": f"k must be from 1 to {MAX_K}",
        },
    )
    min_score = forms.FloatField(required=False, min_value=-1, max_value=1, error_messages=_number("min_score"))
    text_weight = forms.FloatField(
        required=False,
        min_value=0,
        max_value=1,
        error_messages={
            **_number("text_weight", "a number from 0 to 1"),
            "min_value": "text_weight must be from 0 to 1",
            "max_value": "text_weight must be from 0 to 1",
        },
    )
    img = forms.CharField(
        required=False,
        max_length=22,
        validators=[RegexValidator(r"^[A-Za-z0-9_-]+$", "img must be an id returned by a photo search")],
        error_messages={"max_length": "img must be an id returned by a photo search"},
    )

    # More like this, less like that: products (by sku), stored photo searches (by id), words.
    like = ListField(max_length=SKU_MAX_LENGTH, what="a product sku")
    unlike = ListField(max_length=SKU_MAX_LENGTH, what="a product sku")
    like_img = ListField(max_length=22, pattern=r"[A-Za-z0-9_-]+", what="an id returned by a photo search")
    unlike_img = ListField(max_length=22, pattern=r"[A-Za-z0-9_-]+", what="an id returned by a photo search")
    avoid = ListField(max_length=100, what="a phrase of at most 100 characters")

    def __init__(self, data: Any = None, *, per_page: int = PER_PAGE) -> None:
        super().__init__(data)
        self.per_page = per_page

    def clean_q(self) -> str:
        return " ".join(self.cleaned_data["q"].split())

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        low, high = data.get("min_price"), data.get("max_price")
        if low is not None and high is not None and low > high:
            raise forms.ValidationError(f"min_price ({low}) is above max_price ({high})")
        given = sum(len(data.get(name) or ()) for name in EXAMPLE_FIELDS)
        if given > settings.SEARCH_MAX_EXAMPLES:
            raise forms.ValidationError(
                f"too many examples: {given} in {', '.join(EXAMPLE_FIELDS)}; "
                f"at most {settings.SEARCH_MAX_EXAMPLES} (SEARCH_MAX_EXAMPLES)"
            )
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
    def words_weight(self) -> float | None:
        """text_weight: how much words weigh against the photo (None: SEARCH_TEXT_WEIGHT)."""
        return self.cleaned_data.get("text_weight")

    def search_arguments(self) -> dict[str, Any]:
        """The search() arguments this form sets, the same for the page and the API."""
        return {
            "mode": self.search_mode,
            "filters": self.filters,
            "k": self.per_page_k,
            "offset": self.offset,
            "sort": self.sort_order,
            "min_score": self.score_cutoff,
            "text_weight": self.words_weight,
        }

    @property
    def image_key(self) -> str:
        return self.cleaned_data.get("img") or ""

    def example_values(self, name: str) -> list[str]:
        return list(self.cleaned_data.get(name) or [])

    @property
    def has_examples(self) -> bool:
        return any(self.cleaned_data.get(name) for name in EXAMPLE_FIELDS)

    def params(self, **changes: Any) -> dict[str, str | list[str]]:
        """The query string of this search (defaults left out), with `changes` applied;
        the example lists are lists (urlencode with doseq)."""
        values: dict[str, Any] = {
            "q": self.query,
            "img": self.image_key,
            "mode": self.cleaned_data.get("mode") or "",
            "category": self.filters.category or "",
            "min_price": self.cleaned_data.get("min_price"),
            "max_price": self.cleaned_data.get("max_price"),
            "sort": self.cleaned_data.get("sort") or "",
            "min_score": self.score_cutoff,
            "page": self.page_number,
            "k": self.cleaned_data.get("k"),
            "text_weight": self.words_weight,
            **{name: self.example_values(name) for name in EXAMPLE_FIELDS},
        }
        values.update(changes)
        if values.get("page") == 1:
            values["page"] = None
        out: dict[str, str | list[str]] = {}
        for name, value in values.items():
            if value in (None, "", []):
                continue
            out[name] = [str(v) for v in value] if isinstance(value, (list, tuple)) else _plain(value)
        return out


class SharedFields(dict):
    """A form's fields, shared by its instances: Django deep-copies a form's fields for each
    instance (about 0.1 ms for SearchForm's 16) so that one may change its own. No SearchForm
    changes or renders its fields (the pages write their own inputs), and cleaning only reads
    them, so the copy is of the dict alone."""

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, forms.Field]:
        return dict(self)


SearchForm.base_fields = SharedFields(SearchForm.base_fields)


def _plain(value: Any) -> str:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral() else format(value, "f")
    return str(value)
