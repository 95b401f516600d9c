-- account safety (issue 16) and durable revocations (issue 13): a session per login is the truth of
-- whether its access tokens may still be used; Redis only caches it. The id is the refresh-token
-- family id that access tokens carry as `sid`.
CREATE TABLE sessions (
    id bigint PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz NOT NULL DEFAULT now(),
    user_agent text NOT NULL DEFAULT '',
    ip text NOT NULL DEFAULT '',
    revoked_at timestamptz
);
CREATE INDEX sessions_user_recent ON sessions (user_id, last_used_at DESC);

-- the families that exist already become sessions, revoked where every token of theirs is
INSERT INTO sessions (id, user_id, created_at, last_used_at, revoked_at)
SELECT family_id, min(user_id), min(created_at), max(coalesce(used_at, created_at)),
       CASE WHEN bool_and(revoked_at IS NOT NULL) THEN max(revoked_at) END
FROM refresh_tokens GROUP BY family_id;

-- may this account use its tokens at all? The one place later account states (suspension,
-- deletion) add their rule, so the REST check, the socket sweep and the cache fill agree.
CREATE FUNCTION may_authenticate(p_user bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT u.is_active FROM users u WHERE u.id = p_user), false)
$$;
