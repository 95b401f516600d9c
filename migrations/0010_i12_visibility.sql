-- One visibility policy (storage/visibility.py is its Python face). Every rule that keeps one user
-- from another is written in exactly one of these functions; every query that filters by who may
-- see, reach or be shown what calls them instead of repeating the rule. They are STABLE, so a
-- statement plans each once and calls it per row: filter rows by the cheap conditions first.
--
--   hidden_users(v)       the users kept apart from v both ways (blocks, either direction)
--   hidden_between(a, b)  is b among hidden_users(a)
--   user_shown(v, u)      may v be shown u at all: u exists and is active, and not hidden
--   visible_to(v, o)      may v see o's things (posts, stories, comments on them, hashtags and
--                         places through them): user_shown, and o public, o's follower, or o
--   may_reach(s, r)       may s put something in front of r (messages, mentions, group membership)
--   may_notify(r, a)      may r be notified of what a did
--   presence_shown(v, u)  may v see u's online state: u shows presence, user_shown, and u and v
--                         follow each other or share a conversation

CREATE FUNCTION hidden_users(viewer bigint) RETURNS TABLE (id bigint)
LANGUAGE sql STABLE AS $$
    SELECT blocked_id FROM blocks WHERE blocker_id = viewer
    UNION ALL
    SELECT blocker_id FROM blocks WHERE blocked_id = viewer
$$;

CREATE FUNCTION hidden_between(a bigint, b bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM hidden_users(a) h WHERE h.id = b)
$$;

CREATE FUNCTION user_shown(viewer bigint, target bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM users u
        WHERE u.id = target AND u.is_active
          AND (viewer IS NULL OR u.id = viewer OR NOT hidden_between(viewer, u.id))
    )
$$;

CREATE OR REPLACE FUNCTION visible_to(viewer bigint, owner bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM users u
        WHERE u.id = owner AND u.is_active
          AND (viewer IS NULL OR u.id = viewer OR NOT hidden_between(viewer, u.id))
          AND (NOT u.is_private OR u.id = viewer OR EXISTS (
                SELECT 1 FROM follows f WHERE f.follower_id = viewer AND f.followee_id = u.id))
    )
$$;

CREATE FUNCTION may_reach(sender bigint, recipient bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT sender = recipient OR NOT hidden_between(sender, recipient)
$$;

CREATE FUNCTION may_notify(recipient bigint, actor bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT may_reach(actor, recipient)
$$;

CREATE FUNCTION presence_shown(viewer bigint, target bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT viewer <> target AND EXISTS (
        SELECT 1 FROM users u
        WHERE u.id = target AND u.is_active AND u.show_presence
          AND NOT hidden_between(viewer, u.id)
          AND ((EXISTS (SELECT 1 FROM follows f WHERE f.follower_id = u.id AND f.followee_id = viewer)
                AND EXISTS (SELECT 1 FROM follows f WHERE f.follower_id = viewer AND f.followee_id = u.id))
               OR EXISTS (SELECT 1 FROM conversation_members a JOIN conversation_members b
                          ON b.conversation_id = a.conversation_id
                          WHERE a.user_id = u.id AND b.user_id = viewer))
    )
$$;
