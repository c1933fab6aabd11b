from django.db import migrations, models

# The "looked up" mark of catalog/synonyms.refresh moves from a column of catalog_searchword
# (a raw table) to a table of its own that Django manages beside catalog_synonym, so emptying
# the synonyms (a flush) empties the marks with them. Words are looked up again; rows that
# already exist are kept (ON CONFLICT DO NOTHING).
SQL = """
DROP INDEX IF EXISTS catalog_searchword_synonyms_todo;
ALTER TABLE catalog_searchword DROP COLUMN IF EXISTS synonyms_done;
"""
REVERSE = """
ALTER TABLE catalog_searchword ADD COLUMN synonyms_done boolean NOT NULL DEFAULT false;
CREATE INDEX catalog_searchword_synonyms_todo ON catalog_searchword (word) WHERE NOT synonyms_done;
"""


class Migration(migrations.Migration):
    dependencies = [("catalog", "0014_catalogue_version")]

    operations = [
        migrations.RunSQL(SQL, REVERSE),
        migrations.CreateModel(
            name="SynonymLookup",
            fields=[("word", models.CharField(max_length=100, primary_key=True, serialize=False))],
        ),
    ]
