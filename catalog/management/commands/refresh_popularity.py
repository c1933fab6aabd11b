from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from catalog.popularity import refresh


class Command(BaseCommand):
    help = (
        "Rebuild popular past queries (autocomplete) and clicked products (the popularity signal) from the "
        "search log now; Celery beat does it every POPULARITY_REFRESH_MINUTES."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        queries, products = refresh()
        self.stdout.write(f"refresh_popularity: {queries} popular queries, {products} clicked products")
