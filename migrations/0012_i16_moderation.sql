-- trust and safety: roles, reports, the audit log, suspensions and mutes

ALTER TABLE users
    ADD COLUMN role text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'moderator', 'admin')),
    -- a suspended account is also inactive (is_active = false), which is how the visibility policy
    -- (user_shown(), visible_to(), may_authenticate()) hides it and refuses its tokens; these
    -- columns say why and until when, and lifting the suspension turns is_active back on
    ADD COLUMN suspended_at timestamptz,
    ADD COLUMN suspended_until timestamptz,
    ADD COLUMN suspension_reason text;
CREATE INDEX users_suspended_until ON users (suspended_until) WHERE suspended_at IS NOT NULL;

-- a message removed by a moderator: a tombstone like a deletion, marked so clients can say why
ALTER TABLE messages ADD COLUMN removed_at timestamptz;

CREATE TABLE reports (
    id bigint PRIMARY KEY DEFAULT next_id(),
    reporter_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    target_type text NOT NULL CHECK (target_type IN ('post', 'comment', 'story', 'message', 'user')),
    target_id bigint NOT NULL,
    -- whose thing it is: `suspend` acts on them, and a moderator may not act on an admin's
    target_owner_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    reason text NOT NULL,
    text text NOT NULL DEFAULT '',
    status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    action text CHECK (action IN ('dismiss', 'remove', 'suspend')),
    note text,
    resolved_by bigint REFERENCES users (id) ON DELETE SET NULL,
    resolved_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- one open report per reporter and target: a repeat finds the first
CREATE UNIQUE INDEX reports_open_per_reporter ON reports (reporter_id, target_type, target_id) WHERE status = 'open';
CREATE INDEX reports_queue ON reports (status, id);
CREATE INDEX reports_target ON reports (target_type, target_id) WHERE status = 'open';

CREATE TABLE audit_log (
    id bigint PRIMARY KEY DEFAULT next_id(),
    actor_id bigint REFERENCES users (id) ON DELETE SET NULL,
    action text NOT NULL,
    target_type text NOT NULL,
    target_id bigint NOT NULL,
    note text NOT NULL DEFAULT '',
    details jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE mutes (
    muter_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    muted_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    stories boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (muter_id, muted_id),
    CHECK (muter_id <> muted_id)
);

-- The mute rule of the visibility policy (0010_i12_visibility.sql). A mute hides nothing (a muted
-- account's profile and posts stay reachable, and it sees no difference): it silences.
--   muted_by(v, o, stories)  does v mute o (for stories too, when asked): the home feed (fan-out
--                            and reads), explore and the story tray leave o out for v
--   may_notify(r, a)         now also false when r mutes a
-- A suspension needs no function of its own: it turns users.is_active off, which user_shown() and
-- visible_to() already require, so the account and everything it made are hidden from everyone.
CREATE FUNCTION muted_by(viewer bigint, owner bigint, for_stories boolean DEFAULT false) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM mutes m WHERE m.muter_id = viewer AND m.muted_id = owner
                                             AND (NOT for_stories OR m.stories))
$$;

CREATE OR REPLACE FUNCTION may_notify(recipient bigint, actor bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT may_reach(actor, recipient) AND NOT muted_by(recipient, actor)
$$;
