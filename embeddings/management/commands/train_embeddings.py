from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from embeddings.models import EmbeddingModel, TrainingJob, product_model
from embeddings.registry import missing_count
from embeddings.train_jobs import DEFAULTS, run_training
from ops.beat import beating
from ops.models import JobHeartbeat


class Command(BaseCommand):
    help = "Train the joint image/text towers on the catalogue and register the model."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--backbone", help="resnet50 | efficientnet_lite0 | efficientnet_lite2 (default: EMBEDDINGS_IMAGE_BACKBONE)"
        )
        parser.add_argument("--text", choices=["gru", "minilm"], default="gru")
        parser.add_argument("--dim", type=int, help="joint dimension (default: EMBED_DIM)")
        parser.add_argument(
            "--epochs", type=int, help=f"upper bound, early stopping ends sooner (default: {DEFAULTS['epochs']})"
        )
        parser.add_argument("--mining", choices=["hardest", "semi-hard"], help=f"default: {DEFAULTS['mining']}")
        parser.add_argument("--margin", type=float, help=f"default: {DEFAULTS['margin']}")
        parser.add_argument("--seed", type=int, help=f"default: {DEFAULTS['seed']}")
        parser.add_argument("--name", help="model name (default: joint-<backbone>-<text>-<time>)")
        parser.add_argument("--activate", action="store_true", help="re-embed the catalogue with it and switch")
        parser.add_argument("--wait", action="store_true", help="with --activate: wait until it serves search")

    def handle(self, *args: object, **opts: object) -> None:
        params = {k: opts[k] for k in ("backbone", "text", "dim", "epochs", "mining", "margin", "seed", "name")}
        job = TrainingJob.objects.create(params=params, activate=bool(opts["activate"]))
        bars: dict[str, tqdm] = {}

        def echo(event: dict) -> None:
            phase = event.get("phase", "")
            if phase == "features":
                bar = bars.setdefault(
                    "features", tqdm(total=event.get("total", 0), desc="backbone features", unit="img")
                )
                bar.n = event.get("done", 0)
                bar.refresh()
            elif phase == "train" and "epoch" in event:
                bar = bars.setdefault("train", tqdm(total=event.get("epochs", 0), desc="epochs", unit="epoch"))
                bar.n = event["epoch"]
                bar.set_postfix(loss=f"{event.get('loss', 0):.4f}", val_r10=f"{event.get('val_recall@10', 0):.3f}")
                bar.refresh()

        started = time.monotonic()
        try:
            # The heartbeat tells the reconciler this training is alive (a killed run ends FAILED).
            with beating(JobHeartbeat.Kind.TRAINING, job.pk):
                model = run_training(job, echo=echo)
        except ValueError as exc:
            job.status, job.error = TrainingJob.Status.FAILED, str(exc)
            job.save(update_fields=["status", "error"])
            raise CommandError(str(exc)) from exc
        finally:
            for bar in bars.values():
                bar.close()
        took = time.monotonic() - started
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in model.metrics.items() if isinstance(v, (int, float)))
        self.stdout.write(f"trained {model.name} in {took:.0f}s ({model.backbone} + {model.text_tower}); {metrics}")
        if opts["activate"] and opts["wait"]:
            self._wait_active(model)

    def _wait_active(self, model: EmbeddingModel, timeout: float = 3600) -> None:
        bar = tqdm(desc="re-embedding catalogue", unit="product")
        deadline = time.monotonic() + timeout
        while True:
            model.refresh_from_db()
            if model.status == EmbeddingModel.Status.ACTIVE:
                break
            if (model.gate or {}).get("decision") == "rejected" and model.status == EmbeddingModel.Status.READY:
                bar.close()
                self.stdout.write(
                    self.style.WARNING(
                        f"{model.name} was not activated by the gate: {model.gate.get('reason')}. "
                        "Search keeps the current model; see /models/ for the comparison."
                    )
                )
                return
            bar.total = product_model().objects.count()
            bar.n = bar.total - missing_count(model)
            bar.refresh()
            if time.monotonic() > deadline:
                raise CommandError("timed out waiting for the model to become active: is an 'embed' worker running?")
            time.sleep(1)
        bar.close()
        reason = (model.gate or {}).get("reason")
        self.stdout.write(f"{model.name} is now the active model" + (f" (gate: {reason})" if reason else ""))
