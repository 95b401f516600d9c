-- fan-out on write (issue 15): a post's recently active followers from index-only scans alone,
-- never a heap visit per follow row or per follower (storage/timelines.py fanout_targets).
-- follows by followee with the follower in the key; the accounts that may get a fan-out, with the
-- time they were last seen (written at most once an hour per user, storage/users.py); the
-- accounts that mute an author without reading every mute.
CREATE INDEX follows_followee_follower ON follows (followee_id, follower_id);
CREATE INDEX users_active_seen ON users (id) INCLUDE (last_active_at) WHERE is_active;
CREATE INDEX mutes_muted ON mutes (muted_id);
