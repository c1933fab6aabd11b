"""The catalogue version that the result-page cache (catalog/search_cache.py) keys on.

The first statement of a transaction that writes a table a search result is made of
(products, their photos, the vectors, the models, the click popularity, the typo vocabulary,
the synonyms) adds one to a counter in that transaction, so the sum of the counters changes
when such a write commits, together with the write. (A search inside a writing transaction
would see the counter before its own later writes: catalog/search_cache.py caches nothing
there.) One row per Postgres backend: a writer only ever updates its own row, so writers
never wait on each other or deadlock over the counter, and readers sum a handful of rows.
"""

from django.db import migrations

TABLES = [
    "catalog_product",
    "catalog_productphoto",
    "catalog_productpopularity",
    "catalog_searchword",
    "catalog_synonym",
    "embeddings_productvector",
    "embeddings_photovector",
    "embeddings_embeddingmodel",
]

SQL = """
CREATE TABLE catalog_catalogueversion (backend integer PRIMARY KEY, n bigint NOT NULL);
CREATE FUNCTION catalog_bump_catalogue_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Once per transaction (SET LOCAL semantics: a rolled-back savepoint forgets it too).
    IF current_setting('vitrine.catalogue_bumped', true) IS DISTINCT FROM 'y' THEN
        INSERT INTO catalog_catalogueversion (backend, n) VALUES (pg_backend_pid(), 1)
        ON CONFLICT (backend) DO UPDATE SET n = catalog_catalogueversion.n + 1;
        PERFORM set_config('vitrine.catalogue_bumped', 'y', true);
    END IF;
    RETURN NULL;
END $$;
""" + "".join(
    f"CREATE TRIGGER catalog_catalogue_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {t} "
    "FOR EACH STATEMENT EXECUTE FUNCTION catalog_bump_catalogue_version();\n"
    for t in TABLES
)

REVERSE = (
    "".join(f"DROP TRIGGER IF EXISTS catalog_catalogue_version ON {t};\n" for t in TABLES)
    + """
DROP FUNCTION IF EXISTS catalog_bump_catalogue_version();
DROP TABLE IF EXISTS catalog_catalogueversion;
"""
)


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0013_synonym"),
        ("embeddings", "0004_photovector"),
    ]

    operations = [migrations.RunSQL(SQL, REVERSE)]
