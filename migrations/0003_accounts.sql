-- accounts (issue 3): e-mail verification, the development e-mail sink, prefix search on users,
-- and the indexes the follow/request/block lists page through.

-- a verification token is stored hashed and spent once; it verifies the address it was sent to
CREATE TABLE email_verifications (
    token_hash bytea PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email text NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX email_verifications_user ON email_verifications (user_id);

-- where e-mail goes when no SMTP server is configured: developers and tests read it here
CREATE TABLE sent_emails (
    id bigint PRIMARY KEY DEFAULT next_id(),
    to_address text NOT NULL,
    subject text NOT NULL,
    body text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sent_emails_to ON sent_emails (lower(to_address), id DESC);

-- prefix filters of the users list (LIKE 'abc%' on the lower-cased text)
CREATE INDEX users_username_prefix ON users (lower(username) text_pattern_ops);
CREATE INDEX users_full_name_prefix ON users (lower(full_name) text_pattern_ops);

-- newest-first pages of "following" and of the viewer's blocks
CREATE INDEX follows_follower_recent ON follows (follower_id, created_at DESC);
CREATE INDEX blocks_blocker_recent ON blocks (blocker_id, created_at DESC);
