from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from catalog.suite import choose_text_weight, default_suite_dir, grid_table, popularity_table, run_catalogue, table
from searchsite.celery import app


class Command(BaseCommand):
    help = (
        "Run the evaluation suite (scripts/build_eval_suite.py builds it): per catalogue, keyword search, "
        "the untrained baseline and a gated trained model per text tower, scored through search(). "
        "WIPES the catalogue and models of the database it runs on: `make eval` gives it its own data dir."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--suite", type=Path, default=None, help="folder of catalogues (default var/evalsuite)")
        parser.add_argument("--catalogues", default="", help="comma-separated names (default: every folder)")
        parser.add_argument("--towers", default="gru,minilm", help="text towers to train")
        parser.add_argument(
            "--epochs", type=int, default=None, help="training epochs (default: the documented default)"
        )
        parser.add_argument(
            "--max-products", type=int, default=None, help="only the first N products of each catalogue"
        )
        parser.add_argument(
            "--popularity",
            default="",
            help="comma-separated popularity boost weights to measure on a simulated click "
            "history (e.g. 0,0.25,0.5,1; default: not measured)",
        )
        parser.add_argument("--markdown", type=Path, default=None, help="also write the table to this file")
        parser.add_argument(
            "--text-weights",
            default="",
            help="comma-separated text_weight values (0..1): also score "
            "the photo_words queries for each, and say which the rule picks (SEARCH_TEXT_WEIGHT)",
        )
        parser.add_argument("--wipe", action="store_true", help="confirm: empty this database's catalogue first")

    def handle(self, *args: Any, **opts: Any) -> None:
        if not opts["wipe"]:
            raise CommandError(
                "eval_suite empties the catalogue and the models: pass --wipe (make eval does, on its own data dir)"
            )
        suite = Path(opts["suite"] or default_suite_dir())
        names = [n for n in str(opts["catalogues"]).split(",") if n]
        folders = [suite / n for n in names] if names else sorted(p.parent for p in suite.glob("*/queries.jsonl"))
        missing = [
            str(f) for f in folders if not (f / "catalogue.csv").is_file() or not (f / "queries.jsonl").is_file()
        ]
        if missing or not folders:
            raise CommandError(
                f"no suite catalogue at {', '.join(missing) or suite}: run scripts/build_eval_suite.py first"
            )
        app.conf.task_always_eager = True  # one process does it all, in order
        settings.GATE_KEEP_REFUSED_VECTORS = True  # refused models are scored too
        towers = tuple(t for t in str(opts["towers"]).split(",") if t)
        try:
            popularity = [float(w) for w in str(opts["popularity"]).split(",") if w.strip()]
        except ValueError as exc:
            raise CommandError(f"--popularity: comma-separated numbers, e.g. 0,0.5,1 ({exc})") from exc
        if any(w < 0 for w in popularity):
            raise CommandError("--popularity: weights are 0 or more")
        try:
            weights = [float(w) for w in str(opts["text_weights"]).split(",") if w.strip()]
        except ValueError as exc:
            raise CommandError(f"--text-weights: {exc}") from exc
        if any(not 0 <= w <= 1 for w in weights):
            raise CommandError("--text-weights: each must be from 0 to 1")
        results = []
        for folder in folders:
            results.append(
                run_catalogue(
                    folder,
                    opts["epochs"],
                    towers,
                    echo=lambda s: self.stdout.write(s),
                    limit=opts["max_products"],
                    popularity=popularity,
                    text_weights=weights,
                )
            )
        out = table(results)
        if popularity:
            out += "\n\n" + popularity_table(results)
        if weights:
            best, why = choose_text_weight(results)
            out += "\n\nphoto_words MAP@10 by text_weight (best of each row in bold):\n\n" + grid_table(results)
            out += f"\n\nChosen: {why}"
        self.stdout.write(out)
        if opts["markdown"]:
            Path(opts["markdown"]).write_text(out + "\n")
