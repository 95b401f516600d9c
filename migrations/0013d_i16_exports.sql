-- data export (issue 16): an archive of the account built in the background, stored in S3 until
-- expires_at, then removed by a job
CREATE TABLE exports (
    id bigint PRIMARY KEY DEFAULT next_id(),
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'ready', 'failed', 'expired')),
    object_key text,
    size_bytes bigint,
    requested_at timestamptz NOT NULL DEFAULT now(),
    ready_at timestamptz,
    expires_at timestamptz
);
CREATE INDEX exports_user ON exports (user_id, id DESC);
CREATE INDEX exports_to_expire ON exports (expires_at) WHERE status = 'ready';
-- at most one archive being built per account: a repeated request joins it
CREATE UNIQUE INDEX exports_one_pending ON exports (user_id) WHERE status = 'pending';
