-- account deletion with a grace period (issue 16): a requested deletion hides the account at once
-- (is_active = false, as deactivation does, so the one visibility policy hides it) and records when;
-- a login within the grace period cancels it. erasure_started_at is set when the erasure job takes
-- the account: from then on a login no longer cancels, and the job resumes it after a crash.
ALTER TABLE users
    ADD COLUMN deletion_requested_at timestamptz,
    ADD COLUMN erasure_started_at timestamptz;
CREATE INDEX users_deletion_due ON users (deletion_requested_at) WHERE deletion_requested_at IS NOT NULL;
