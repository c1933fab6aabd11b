from django.db import migrations

# Keyword search: a stored tsvector over title (weight A), category (B) and description (C),
# kept up to date by Postgres itself. Django never reads it; catalog/keyword.py queries it.
SQL = """
ALTER TABLE catalog_product ADD COLUMN search_doc tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('english', coalesce(title, '')), 'A') ||
    setweight(to_tsvector('english', coalesce(category, '')), 'B') ||
    setweight(to_tsvector('english', coalesce(description, '')), 'C')
) STORED;
CREATE INDEX catalog_product_search_doc ON catalog_product USING gin (search_doc);
"""
REVERSE = """
DROP INDEX IF EXISTS catalog_product_search_doc;
ALTER TABLE catalog_product DROP COLUMN IF EXISTS search_doc;
"""


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]
    operations = [migrations.RunSQL(SQL, REVERSE)]
