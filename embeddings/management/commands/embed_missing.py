from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from embeddings.dispatch import missing_ids, queue_embedding
from embeddings.models import EmbeddingModel
from embeddings.registry import ensure_active_model


class Command(BaseCommand):
    help = "Queue embedding batches for every product without a current vector (active model by default)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", help="model name (default: the active model)")

    def handle(self, *args: object, model: str | None, **opts: object) -> None:
        if model:
            target = EmbeddingModel.objects.filter(name=model).first()
            if target is None:
                raise CommandError(f"no model named {model!r}")
        else:
            target = ensure_active_model()
        ids = missing_ids(target)
        batches = queue_embedding(ids, [target])
        self.stdout.write(f"{len(ids)} products missing vectors under {target.name}: {batches} batches queued")
