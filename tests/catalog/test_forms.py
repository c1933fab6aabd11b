"""The search form (catalog/forms.py): its instances share their fields instead of each
deep-copying them, and clean every input as forms with copied fields do."""

from __future__ import annotations

import copy

from django.http import QueryDict

from catalog.forms import SearchForm, SharedFields

INPUTS = [
    "q=red+dress",
    "q=+red++dress+&mode=keyword&k=10&page=3&sort=price_desc",
    "q=boots&category=Shoes&min_price=10.50&max_price=80&min_score=0.3&text_weight=0.25",
    "img=abc_DEF-123&q=",
    "like=SKU-1&like=SKU-2&like=SKU-1&unlike=x&avoid=leather&like_img=a-b",
    "q=x&mode=fuzzy",
    "q=x&sort=cheapest",
    "q=x&k=0",
    "q=x&k=101",
    "q=x&page=abc",
    "q=x&min_price=50&max_price=10",
    "q=x&min_price=-1",
    "q=x&text_weight=2",
    "q=x&img=no/slash",
    "q=" + "w" * 501,
    "q=a%00b",
    "like=" + "s" * 300,
    "",
]


def copied_fields_form(data: QueryDict) -> SearchForm:
    """A SearchForm with its own deep copy of every field, as Django makes for each form."""
    form = SearchForm(data)
    form.fields = copy.deepcopy(dict(SearchForm.base_fields))
    return form


def outcome(form: SearchForm) -> tuple:
    valid = form.is_valid()
    return valid, form.cleaned_data if valid else None, form.first_error(), {k: list(v) for k, v in form.errors.items()}


def test_shared_fields_clean_as_copied_ones() -> None:
    for raw in INPUTS:
        data = QueryDict(raw)
        assert outcome(SearchForm(data)) == outcome(copied_fields_form(data)), raw


def test_forms_share_fields_but_not_their_dict() -> None:
    first, second = SearchForm(QueryDict("q=a")), SearchForm(QueryDict("q=b&k=0"))
    assert isinstance(SearchForm.base_fields, SharedFields)
    assert first.fields["q"] is second.fields["q"] is SearchForm.base_fields["q"]
    first.fields.pop("img")  # a form may still change which fields it has, for itself alone
    assert "img" in second.fields and "img" in SearchForm.base_fields
    assert first.is_valid() and not second.is_valid()
    assert first.cleaned_data["q"] == "a" and "k" in second.errors and not first.errors
