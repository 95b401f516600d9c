-- direct messages: conversations (1:1 and groups), their members with read/delivered positions,
-- and messages numbered 1, 2, 3 ... per conversation with no gaps.

CREATE TABLE conversations (
    id bigint PRIMARY KEY DEFAULT next_id(),
    kind text NOT NULL CHECK (kind IN ('direct', 'group')),
    -- 'low:high' user ids of a 1:1: unique, so concurrent first use makes exactly one
    pair_key text UNIQUE,
    title text NOT NULL DEFAULT '',
    created_by bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- the seq of the newest message; bumped under the row lock in the transaction that inserts
    last_seq bigint NOT NULL DEFAULT 0,
    last_message_at timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'direct') = (pair_key IS NOT NULL))
);

CREATE TABLE conversation_members (
    conversation_id bigint NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    read_seq bigint NOT NULL DEFAULT 0,
    delivered_seq bigint NOT NULL DEFAULT 0,
    joined_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX conversation_members_user ON conversation_members (user_id);

CREATE TABLE messages (
    id bigint PRIMARY KEY DEFAULT next_id(),
    conversation_id bigint NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq bigint NOT NULL,
    sender_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id text NOT NULL,
    text text NOT NULL DEFAULT '',
    -- media rows come from the media pipeline (0004); referenced without a foreign key
    media_id bigint,
    reply_to_seq bigint,
    deleted_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (conversation_id, seq)
);
-- a resend with the same client id finds the original
CREATE UNIQUE INDEX messages_sender_client ON messages (sender_id, client_id);
