from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY: a large catalogue keeps being searched and embedded while
    # the btrees are built (a few seconds per million rows), and it cannot run in a transaction.
    atomic = False

    dependencies = [
        ("embeddings", "0005_index_storage"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="productvector",
            index=models.Index(fields=["model", "category"], name="pv_model_category"),
        ),
        AddIndexConcurrently(
            model_name="photovector",
            index=models.Index(fields=["model", "category"], name="phv_model_category"),
        ),
    ]
