from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps


def index_live_models(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    """Live models get their indexes of the configured HNSW_STORAGE (halfvec by default; before
    the setting every index stored 4-byte floats), and lose those of the other storages. On a
    large catalogue this builds HNSW indexes: docs/benchmarks.md section 10 says how long."""
    from embeddings.vector_index import switch_storage

    EmbeddingModel = apps.get_model("embeddings", "EmbeddingModel")
    for model in EmbeddingModel.objects.filter(status__in=["active", "activating", "evaluating"]):
        dims = {
            "image_vec": model.image_dim,
            "text_vec": model.text_dim,
            "image_feat": model.image_feat_dim,
            "text_feat": model.text_feat_dim,
        }
        switch_storage(model.pk, {c: d for c, d in dims.items() if d})


class Migration(migrations.Migration):
    dependencies = [
        ("embeddings", "0004_photovector"),
    ]

    operations = [
        migrations.RunPython(index_live_models, migrations.RunPython.noop),
    ]
