-- direct messages that clients expect: reactions, edits, shares, and per-member conversation
-- settings (muted, pinned, message requests).

-- every edit or reaction bumps its conversation's change counter (under the conversation's row
-- lock, so the counter is gapless and ordered like the commits) and stamps the message with it:
-- `sync` replays the messages changed after the counter a client last saw.
ALTER TABLE conversations ADD COLUMN change_seq bigint NOT NULL DEFAULT 0;

ALTER TABLE messages
    ADD COLUMN edited_at timestamptz,
    ADD COLUMN change_seq bigint NOT NULL DEFAULT 0,
    ADD COLUMN share_type text CHECK (share_type IN ('post', 'story', 'user')),
    ADD COLUMN share_id bigint,
    ADD CHECK ((share_type IS NULL) = (share_id IS NULL));
CREATE INDEX messages_changed ON messages (conversation_id, change_seq) WHERE change_seq > 0;

-- one reaction per member per message (a new one replaces it)
CREATE TABLE message_reactions (
    message_id bigint NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    emoji text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, user_id)
);

-- per member: muted (delivered, never pushed or e-mailed), pinned (listed first), and whether the
-- member accepted the conversation (false: a message request, started by someone they did not
-- follow) or declined it (hidden from both folders until they start or answer it themselves)
ALTER TABLE conversation_members
    ADD COLUMN muted boolean NOT NULL DEFAULT false,
    ADD COLUMN pinned_at timestamptz,
    ADD COLUMN accepted boolean NOT NULL DEFAULT true,
    ADD COLUMN declined_at timestamptz;
