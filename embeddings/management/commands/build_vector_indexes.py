from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandParser

from embeddings.models import EmbeddingModel
from embeddings.vector_index import create_indexes, index_storage, switch_storage

# Models whose vectors search reads. An activating model has no indexes while it re-embeds:
# they are built, of the configured storage, once its vectors are stored.
LIVE = (EmbeddingModel.Status.ACTIVE, EmbeddingModel.Status.EVALUATING)


class Command(BaseCommand):
    help = (
        "Build the missing or invalid HNSW indexes of the configured HNSW_STORAGE for every model search "
        "reads (active, evaluating); with --drop-others, then drop their indexes of the other storages."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--drop-others", action="store_true", help="drop the indexes of the other storages")

    def handle(self, *args: object, drop_others: bool, **opts: object) -> None:
        storage = index_storage()
        built = dropped = 0
        started = time.perf_counter()
        for model in EmbeddingModel.objects.filter(status__in=LIVE).order_by("pk"):
            if drop_others:
                dropped += switch_storage(model.pk, model.column_dims())
            else:
                create_indexes(model.pk, model.column_dims())
            built += len(model.column_dims())
        self.stdout.write(
            f"{storage} indexes present for {built} model columns, {dropped} other indexes dropped "
            f"in {time.perf_counter() - started:.1f} s"
        )
