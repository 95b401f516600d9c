-- glint platform: ids, users and tokens, the event outbox and consumer bookkeeping.

-- 64-bit time-ordered ids, as Instagram made them in sharded PostgreSQL:
-- 41 bits of milliseconds since 2024-01-01, 13 bits of shard, 10 bits of sequence.
CREATE SEQUENCE glint_id_seq;

CREATE FUNCTION next_id(shard_id int DEFAULT 1) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    glint_epoch bigint := 1704067200000;
    seq_id bigint;
    now_millis bigint;
BEGIN
    SELECT nextval('glint_id_seq') % 1024 INTO seq_id;
    now_millis := floor(extract(epoch FROM clock_timestamp()) * 1000);
    RETURN ((now_millis - glint_epoch) << 23) | ((shard_id % 8192)::bigint << 10) | seq_id;
END;
$$;

-- the time an id was made, for ids used as cursors
CREATE FUNCTION id_time(id bigint) RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
    SELECT to_timestamp(((id >> 23) + 1704067200000) / 1000.0)
$$;

CREATE TABLE users (
    id bigint PRIMARY KEY DEFAULT next_id(),
    username text NOT NULL,
    email text NOT NULL,
    password_hash text NOT NULL,
    full_name text NOT NULL DEFAULT '',
    bio text NOT NULL DEFAULT '',
    website text NOT NULL DEFAULT '',
    avatar_media_id bigint,
    is_private boolean NOT NULL DEFAULT false,
    is_verified boolean NOT NULL DEFAULT false,
    is_active boolean NOT NULL DEFAULT true,
    show_presence boolean NOT NULL DEFAULT true,
    notification_prefs jsonb NOT NULL DEFAULT '{}',
    posts_count integer NOT NULL DEFAULT 0,
    followers_count integer NOT NULL DEFAULT 0,
    following_count integer NOT NULL DEFAULT 0,
    last_active_at timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_username_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

-- refresh tokens are stored hashed; a family is one login, rotated on every refresh
CREATE TABLE refresh_tokens (
    token_hash bytea PRIMARY KEY,
    family_id bigint NOT NULL,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    revoked_at timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

-- events are written here in the transaction that makes them true, then relayed
CREATE TABLE outbox (
    id bigint PRIMARY KEY DEFAULT next_id(),
    event_id uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    topic text NOT NULL,
    type text NOT NULL,
    key text NOT NULL,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;

-- what each consumer has handled, so a redelivered event does nothing
CREATE TABLE processed_events (
    consumer text NOT NULL,
    event_id uuid NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
