-- TOTP two-factor (issue 16). The secret is stored encrypted (AES-GCM, see handlers/two_factor.py);
-- last_step is the newest 30-second step a code was accepted for, so a code is never accepted twice.
CREATE TABLE two_factor (
    user_id bigint PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret bytea NOT NULL,
    confirmed_at timestamptz,
    last_step bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- single-use recovery codes, stored hashed (they are random, so a plain digest suffices)
CREATE TABLE recovery_codes (
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash bytea NOT NULL,
    used_at timestamptz,
    PRIMARY KEY (user_id, code_hash)
);
