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

-- The text trigram matching compares: lower case, accents removed. unaccent(regdictionary, text)
-- gives the same answer as long as the unaccent rules file is not edited, which is what every
-- "immutable unaccent" wrapper assumes; the body is bound at creation (SQL-standard body), so no
-- search_path can change what it calls.
CREATE FUNCTION glint_fold(value text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN lower(public.unaccent('public.unaccent'::regdictionary, value));

ALTER TABLE users
    ADD COLUMN search_tsv tsvector GENERATED ALWAYS AS
        (to_tsvector('glint_search', username || ' ' || full_name)) STORED,
    ADD COLUMN search_text text GENERATED ALWAYS AS (glint_fold(username || ' ' || full_name)) STORED;
CREATE INDEX users_search_tsv ON users USING gin (search_tsv);
CREATE INDEX users_search_trgm ON users USING gin (search_text gin_trgm_ops);

ALTER TABLE posts
    ADD COLUMN search_tsv tsvector GENERATED ALWAYS AS (to_tsvector('glint_search', caption)) STORED,
    ADD COLUMN search_text text GENERATED ALWAYS AS (glint_fold(caption)) STORED;
CREATE INDEX posts_search_tsv ON posts USING gin (search_tsv);
CREATE INDEX posts_search_trgm ON posts USING gin (search_text gin_trgm_ops);

ALTER TABLE hashtags
    ADD COLUMN search_tsv tsvector GENERATED ALWAYS AS (to_tsvector('glint_search', name)) STORED,
    ADD COLUMN search_text text GENERATED ALWAYS AS (glint_fold(name)) STORED;
CREATE INDEX hashtags_search_tsv ON hashtags USING gin (search_tsv);
CREATE INDEX hashtags_search_trgm ON hashtags USING gin (search_text gin_trgm_ops);

ALTER TABLE locations
    ADD COLUMN search_tsv tsvector GENERATED ALWAYS AS (to_tsvector('glint_search', name)) STORED,
    ADD COLUMN search_text text GENERATED ALWAYS AS (glint_fold(name)) STORED;
CREATE INDEX locations_search_tsv ON locations USING gin (search_tsv);
CREATE INDEX locations_search_trgm ON locations USING gin (search_text gin_trgm_ops);
