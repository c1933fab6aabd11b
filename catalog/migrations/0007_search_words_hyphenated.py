from django.db import migrations

# Hyphenated words ("t-shirt", "long-sleeve") join the vocabulary as they are written, so a
# shopper's "tshirt" is one edit from "t-shirt" (and not corrected to "shirt").
SQL = r"""
CREATE OR REPLACE FUNCTION catalog_text_words(doc text) RETURNS SETOF text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT DISTINCT t.lexeme FROM unnest(to_tsvector('simple', doc)) AS t
    WHERE t.lexeme ~ '^[[:alpha:]]+(-[[:alpha:]]+)*$' AND length(t.lexeme) BETWEEN 3 AND 40
$$;

INSERT INTO catalog_searchword (word, trigrams)
SELECT w, catalog_word_trigrams(w) FROM (
    SELECT DISTINCT catalog_text_words(concat_ws(' ', title, category, description)) AS w FROM catalog_product
) AS words
ON CONFLICT (word) DO NOTHING;
"""
REVERSE = r"""
CREATE OR REPLACE FUNCTION catalog_text_words(doc text) RETURNS SETOF text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT DISTINCT t.lexeme FROM unnest(to_tsvector('simple', doc)) AS t
    WHERE t.lexeme ~ '^[[:alpha:]]{3,40}$'
$$;
DELETE FROM catalog_searchword WHERE word LIKE '%-%';
"""


class Migration(migrations.Migration):
    dependencies = [("catalog", "0006_search_words")]
    operations = [migrations.RunSQL(SQL, REVERSE)]
