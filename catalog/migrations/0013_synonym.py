from django.db import migrations, models

# Synonyms for keyword search (catalog/synonyms.py). catalog_term_key(text) is a term's
# English stems, sorted and joined by spaces: the key a query word is looked up by, so the
# stemming is Postgres' own on both sides. catalog_searchword.synonyms_done marked the
# vocabulary words whose WordNet synonyms are already in catalog_synonym (until 0015).
SQL = r"""
CREATE FUNCTION catalog_term_key(t text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_to_string(tsvector_to_array(to_tsvector('english', t)), ' ')
$$;
ALTER TABLE catalog_searchword ADD COLUMN synonyms_done boolean NOT NULL DEFAULT false;
CREATE INDEX catalog_searchword_synonyms_todo ON catalog_searchword (word) WHERE NOT synonyms_done;
"""
REVERSE = r"""
DROP INDEX IF EXISTS catalog_searchword_synonyms_todo;
ALTER TABLE catalog_searchword DROP COLUMN IF EXISTS synonyms_done;
DROP FUNCTION IF EXISTS catalog_term_key(text);
"""


class Migration(migrations.Migration):
    dependencies = [("catalog", "0012_productphoto")]

    operations = [
        migrations.RunSQL(SQL, REVERSE),
        migrations.CreateModel(
            name="Synonym",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("term", models.CharField(help_text="what a shopper types: a word or a short phrase", max_length=100)),
                (
                    "word",
                    models.CharField(
                        help_text="what the catalogue says instead: a word or a short phrase", max_length=100
                    ),
                ),
                ("term_key", models.CharField(db_index=True, editable=False, max_length=200)),
                (
                    "source",
                    models.CharField(
                        choices=[("admin", "admin"), ("wordnet", "WordNet")], default="admin", max_length=10
                    ),
                ),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("term_key", "word"), name="one_synonym_per_term_word")],
            },
        ),
    ]
