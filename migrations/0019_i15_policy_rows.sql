-- The visibility policy's per-row questions as rows (0010_i12_visibility.sql, 0012_i16_moderation.sql).
-- PostgreSQL inlines a scalar SQL function only when its body is an expression without a sub-select,
-- so visible_to() and muted_by() run as function calls, one per row of the query that asks them:
-- about 0.1 ms each, most of a page's query (a saved page of 21 posts: 2.7 ms against 0.5 ms).
-- A set-returning SQL function is inlined into the query that selects from it (LATERAL) and
-- planned with it. So the rules now live in these, and visible_to() and muted_by() ask them:
--
--   visibility(v, o)      one row: visible, may v see o's things (the rule visible_to() answered)
--   muting(v, o, stories) one row: muted, does v mute o (for stories too, when asked)
--
-- A page query selects them per row (`CROSS JOIN LATERAL visibility($1, p.author_id) v`); a
-- question about one owner may still call visible_to(), which is the same rule. hidden_between()
-- is spelled out inside visibility() (its EXISTS over hidden_users()), as a scalar call there
-- would again run per row.

CREATE FUNCTION visibility(viewer bigint, owner bigint) RETURNS TABLE (visible boolean)
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM users u
        WHERE u.id = owner AND u.is_active
          AND (viewer IS NULL OR u.id = viewer OR NOT EXISTS (SELECT 1 FROM hidden_users(viewer) h WHERE h.id = u.id))
          AND (NOT u.is_private OR u.id = viewer OR EXISTS (
                SELECT 1 FROM follows f WHERE f.follower_id = viewer AND f.followee_id = u.id))
    )
$$;

CREATE OR REPLACE FUNCTION visible_to(viewer bigint, owner bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT visible FROM visibility(viewer, owner)
$$;

CREATE FUNCTION muting(viewer bigint, owner bigint, for_stories boolean DEFAULT false) RETURNS TABLE (muted boolean)
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM mutes m WHERE m.muter_id = viewer AND m.muted_id = owner
                                             AND (NOT for_stories OR m.stories))
$$;

CREATE OR REPLACE FUNCTION muted_by(viewer bigint, owner bigint, for_stories boolean DEFAULT false) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT muted FROM muting(viewer, owner, for_stories)
$$;
