from django.db import migrations, models

# WordNet synonyms gain "related" rows: broader terms two levels up and narrower terms two
# levels down (ml.wordnet.related_terms). Forgetting which words were looked up makes the
# next refresh (after an import, or Celery beat) look every vocabulary word up again; the
# existing rows stay and the new ones are added (ON CONFLICT DO NOTHING). Admin rows are
# untouched.
FORGET_LOOKUPS = "DELETE FROM catalog_synonymlookup"


class Migration(migrations.Migration):
    dependencies = [("catalog", "0015_synonym_lookup")]

    operations = [
        migrations.AlterField(
            model_name="synonym",
            name="source",
            field=models.CharField(
                choices=[
                    ("admin", "admin"),
                    ("wordnet", "WordNet"),
                    ("related", "WordNet, further (two levels up or down)"),
                ],
                default="admin",
                max_length=10,
            ),
        ),
        migrations.RunSQL(FORGET_LOOKUPS, migrations.RunSQL.noop),
    ]
