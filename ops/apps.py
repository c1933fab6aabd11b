from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "ops"
    verbose_name = "Operations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Connects the Celery worker signals (heartbeats, task in flight, reconcile on start);
        # they only ever fire inside a worker. Django's documented place for signal wiring.
        from ops import worker  # noqa: F401
