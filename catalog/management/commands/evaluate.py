from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from catalog.evaluation import evaluate
from embeddings.models import EmbeddingModel
from embeddings.registry import register_baseline

COLUMNS = ("R@1", "R@5", "R@10", "MRR@10", "mAP@10", "P@10")


class Command(BaseCommand):
    help = "Score every model and the baselines on a JSONL query file (text→image and image→image)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("queries", type=Path, help='JSONL: {"query"|"image": ..., "relevant": [sku, ...]}')
        parser.add_argument("--model", action="append", help="model name (repeatable; default: every usable model)")
        parser.add_argument("--markdown", action="store_true", help="print a Markdown table")

    def handle(self, *args: object, queries: Path, model: list[str] | None, markdown: bool, **opts: object) -> None:
        if not queries.is_file():
            raise CommandError(f"{queries} does not exist")
        usable = EmbeddingModel.objects.exclude(status=EmbeddingModel.Status.FAILED)
        if model:
            models = list(usable.filter(name__in=model))
            missing = set(model) - {m.name for m in models}
            if missing:
                raise CommandError(f"no such model(s): {', '.join(sorted(missing))}")
        else:
            models = list(usable.order_by("created_at"))
        if not any(m.kind == EmbeddingModel.Kind.BASELINE for m in models):
            models.insert(0, register_baseline())  # the untrained reference is always measured
        try:
            run = evaluate(queries, models)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(format_table(run.results["rows"], markdown))
        self.stdout.write(
            f"evaluation #{run.pk}: {run.n_text_queries} text and {run.n_image_queries} image queries "
            f"over {run.results['products']} products"
        )


def format_table(rows: list[dict], markdown: bool = False) -> str:
    header = ["task", "method", "model", *COLUMNS]
    lines = []
    body = [[r["task"], r["method"], r["model"], *(f"{r[c]:.3f}" for c in COLUMNS)] for r in rows]
    if markdown:
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    for row in [header, *body]:
        lines.append("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))
    return "\n".join(lines)
