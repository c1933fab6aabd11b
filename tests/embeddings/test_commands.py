from __future__ import annotations

from django.core.management import call_command

from embeddings.models import EmbeddingModel, ProductVector


def test_embed_missing_queues_only_what_is_missing(small_catalogue, capsys, django_capture_on_commit_callbacks):
    ProductVector.objects.filter(product__sku__in=["SM-001", "SM-002"]).delete()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("embed_missing")
    assert "2 products missing vectors" in capsys.readouterr().out
    assert ProductVector.objects.filter(model=EmbeddingModel.active()).count() == 40
    with django_capture_on_commit_callbacks(execute=True):
        call_command("embed_missing")
    assert "0 products missing vectors" in capsys.readouterr().out
