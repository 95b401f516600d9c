-- The messages that hold a media item, found by an index rather than by reading the whole table.
--
-- Who may fetch a media item sent in a conversation (storage.messages.media_seen_by, every
-- GET /api/media/{id}/ of someone else's upload that no post shows) and whether an upload may be
-- sent again (claim_media, every message with media) ask `messages WHERE media_id = $1`, and
-- messages had no index on media_id: each asked with a sequential scan of every message. Partial,
-- since most messages hold no media (text and shares), and deleting a message clears its media_id;
-- `media_id = $1` implies `media_id IS NOT NULL`, so the planner uses it for those lookups, generic
-- plans included.
--
-- A migration runs in a transaction (storage.db.migrate), so this is a plain CREATE INDEX, which
-- holds off writes to messages while it builds: on a large deployment, build it beforehand with
-- `CREATE INDEX CONCURRENTLY IF NOT EXISTS messages_media ...` and this one does nothing.

CREATE INDEX IF NOT EXISTS messages_media ON messages (media_id) WHERE media_id IS NOT NULL;
