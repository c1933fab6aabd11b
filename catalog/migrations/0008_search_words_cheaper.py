from django.db import migrations

# The vocabulary triggers, cheaper: only words not yet in the vocabulary get their trigrams
# computed (most words of a new product are already there), and an update adds words only
# for rows whose title, category or description changed (an import re-saves every row it
# touches, a thumbnail or an embedding hash changes none of them).
SQL = r"""
CREATE OR REPLACE FUNCTION catalog_product_add_words() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO catalog_searchword (word, trigrams)
    SELECT w, catalog_word_trigrams(w) FROM (
        SELECT DISTINCT catalog_text_words(concat_ws(' ', n.title, n.category, n.description)) AS w
        FROM new_rows AS n
    ) AS words
    WHERE NOT EXISTS (SELECT 1 FROM catalog_searchword s WHERE s.word = words.w)
    ORDER BY w
    ON CONFLICT (word) DO NOTHING;
    RETURN NULL;
END
$$;

CREATE FUNCTION catalog_product_update_words() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO catalog_searchword (word, trigrams)
    SELECT w, catalog_word_trigrams(w) FROM (
        SELECT DISTINCT catalog_text_words(concat_ws(' ', n.title, n.category, n.description)) AS w
        FROM new_rows AS n JOIN old_rows AS o ON o.id = n.id
        WHERE (n.title, n.category, n.description) IS DISTINCT FROM (o.title, o.category, o.description)
    ) AS words
    WHERE NOT EXISTS (SELECT 1 FROM catalog_searchword s WHERE s.word = words.w)
    ORDER BY w
    ON CONFLICT (word) DO NOTHING;
    RETURN NULL;
END
$$;
DROP TRIGGER catalog_product_words_update ON catalog_product;
CREATE TRIGGER catalog_product_words_update AFTER UPDATE ON catalog_product
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION catalog_product_update_words();
"""
REVERSE = r"""
DROP TRIGGER catalog_product_words_update ON catalog_product;
CREATE TRIGGER catalog_product_words_update AFTER UPDATE ON catalog_product
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION catalog_product_add_words();
DROP FUNCTION catalog_product_update_words();
"""


class Migration(migrations.Migration):
    dependencies = [("catalog", "0007_search_words_hyphenated")]
    operations = [migrations.RunSQL(SQL, REVERSE)]
