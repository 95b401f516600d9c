-- search (issue 6), the postgres backend: full text that ignores accents, and trigram similarity
-- for typos. Both extensions are "trusted" (the database owner may create them) and ship with the
-- embedded PostgreSQL build.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS unaccent;

-- to_tsvector('simple', unaccent(x)) cannot be indexed (unaccent is only STABLE), but a text search
-- configuration that runs words through unaccent then simple can: to_tsvector(config, text) is
-- IMMUTABLE, so it may feed a generated column.
CREATE TEXT SEARCH CONFIGURATION glint_search (COPY = simple);
ALTER TEXT SEARCH CONFIGURATION glint_search
    ALTER MAPPING FOR asciiword, asciihword, hword_asciipart, word, hword, hword_part WITH unaccent, simple;

-- Lower case without accents, for comparing names (2-argument unaccent gives the same answer as
-- long as the unaccent rules file is not edited, which every "immutable unaccent" wrapper assumes;
-- the SQL-standard body is bound at creation, so no search_path can change what it calls).
CREATE FUNCTION glint_fold(value text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN lower(public.unaccent('public.unaccent'::regdictionary, value));

ALTER TABLE users ADD COLUMN search_tsv tsvector GENERATED ALWAYS AS
    (to_tsvector('glint_search', username || ' ' || full_name)) STORED;
ALTER TABLE posts ADD COLUMN search_tsv tsvector GENERATED ALWAYS AS (to_tsvector('glint_search', caption)) STORED;
ALTER TABLE hashtags ADD COLUMN search_tsv tsvector GENERATED ALWAYS AS (to_tsvector('glint_search', name)) STORED;
ALTER TABLE locations ADD COLUMN search_tsv tsvector GENERATED ALWAYS AS (to_tsvector('glint_search', name)) STORED;
CREATE INDEX users_search_tsv ON users USING gin (search_tsv);
CREATE INDEX posts_search_tsv ON posts USING gin (search_tsv);
CREATE INDEX hashtags_search_tsv ON hashtags USING gin (search_tsv);
CREATE INDEX locations_search_tsv ON locations USING gin (search_tsv);

-- Typos: trigram similarity against every caption is a scan of all of them (about a second at
-- 100,000 posts), so, as the pg_trgm documentation suggests, a typo is corrected against the
-- vocabulary instead: every word the four tsvectors hold, trigram-indexed; the corrections join the
-- full-text query as alternatives. Triggers keep it (words are never removed: a stale one only adds
-- an alternative that matches nothing).
CREATE TABLE search_words (word text PRIMARY KEY);
CREATE INDEX search_words_trgm ON search_words USING gin (word gin_trgm_ops);

CREATE FUNCTION glint_collect_words() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- sorted, so two transactions adding the same new words wait for each other instead of deadlocking
    INSERT INTO search_words (word)
    SELECT DISTINCT w FROM new_rows n, unnest(tsvector_to_array(n.search_tsv)) AS w ORDER BY w
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END;
$$;

CREATE FUNCTION glint_collect_row_words() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO search_words (word)
    SELECT DISTINCT w FROM unnest(tsvector_to_array(NEW.search_tsv)) AS w ORDER BY w
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END;
$$;

-- inserts (COPY included) once per statement; updates only when the searched text changed
CREATE TRIGGER users_search_words AFTER INSERT ON users
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION glint_collect_words();
CREATE TRIGGER users_search_words_update AFTER UPDATE OF username, full_name ON users
    FOR EACH ROW WHEN (OLD.search_tsv IS DISTINCT FROM NEW.search_tsv) EXECUTE FUNCTION glint_collect_row_words();
CREATE TRIGGER posts_search_words AFTER INSERT ON posts
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION glint_collect_words();
CREATE TRIGGER posts_search_words_update AFTER UPDATE OF caption ON posts
    FOR EACH ROW WHEN (OLD.search_tsv IS DISTINCT FROM NEW.search_tsv) EXECUTE FUNCTION glint_collect_row_words();
CREATE TRIGGER hashtags_search_words AFTER INSERT ON hashtags
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION glint_collect_words();
CREATE TRIGGER locations_search_words AFTER INSERT ON locations
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION glint_collect_words();

INSERT INTO search_words (word)
SELECT DISTINCT w FROM (
    SELECT search_tsv FROM users UNION ALL SELECT search_tsv FROM posts
    UNION ALL SELECT search_tsv FROM hashtags UNION ALL SELECT search_tsv FROM locations
) t, unnest(tsvector_to_array(t.search_tsv)) AS w
ON CONFLICT DO NOTHING;
