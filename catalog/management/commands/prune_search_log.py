from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from catalog.analytics import prune


class Command(BaseCommand):
    help = "Delete logged searches and their clicks older than SEARCH_LOG_DAYS (or --days)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days", type=int, default=None, help=f"keep this many days (default {settings.SEARCH_LOG_DAYS})"
        )

    def handle(self, *args: Any, days: int | None, **options: Any) -> None:
        keep = settings.SEARCH_LOG_DAYS if days is None else days
        self.stdout.write(f"prune_search_log: {prune(keep)} searches older than {keep} days deleted")
