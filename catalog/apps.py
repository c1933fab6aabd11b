from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "catalog"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The catalogue judges trained models through its own search pipeline; the
        # embeddings layer below only announces that a model is ready to be judged.
        # Imported here, not at the top: both import models, which load after this module.
        from catalog.gate import on_model_ready
        from embeddings.registry import model_ready_for_gate

        model_ready_for_gate.connect(on_model_ready, dispatch_uid="catalog.gate")
