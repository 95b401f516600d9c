-- stories (issue 7): one media item shown for exactly 24 hours, views once per viewer, reactions
-- and replies that travel as direct messages, and the owner's archive.

-- expires_at is decided by the writer (created_at + 24 h) and every read compares it with the
-- caller's clock, so an expired story is never served, whether or not a job has run since.
CREATE TABLE stories (
    id bigint PRIMARY KEY DEFAULT next_id(),
    owner_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- SET NULL: the media job deletes retired media rows; the story (in the archive) outlives them
    media_id bigint REFERENCES media (id) ON DELETE SET NULL,
    caption text NOT NULL DEFAULT '',
    close_friends_only boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    deleted_at timestamptz,
    -- set by the archive job once expired; view_count is frozen then
    archived_at timestamptz,
    view_count integer NOT NULL DEFAULT 0,
    -- set when the story's media was retired (an hour after expiry, or on deletion)
    media_removed_at timestamptz,
    CHECK (expires_at > created_at)
);
CREATE INDEX stories_owner_live ON stories (owner_id, expires_at) WHERE deleted_at IS NULL;
CREATE INDEX stories_to_archive ON stories (expires_at) WHERE archived_at IS NULL AND deleted_at IS NULL;
CREATE INDEX stories_media_to_remove ON stories (expires_at) WHERE media_removed_at IS NULL;
CREATE INDEX stories_archive ON stories (owner_id, id DESC) WHERE archived_at IS NOT NULL AND deleted_at IS NULL;

-- one row per (story, viewer): a repeated view changes nothing
CREATE TABLE story_views (
    story_id bigint NOT NULL REFERENCES stories (id) ON DELETE CASCADE,
    viewer_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    id bigint NOT NULL DEFAULT next_id(),
    created_at timestamptz NOT NULL,
    PRIMARY KEY (story_id, viewer_id)
);
CREATE INDEX story_views_order ON story_views (story_id, id DESC);

-- a reaction (emoji) or reply (text) is a direct message; this row says which story it answers
-- (the message is referenced without a foreign key, as messages reference media)
CREATE TABLE story_replies (
    message_id bigint PRIMARY KEY,
    conversation_id bigint NOT NULL,
    story_id bigint NOT NULL REFERENCES stories (id) ON DELETE CASCADE,
    sender_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('emoji', 'text')),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX story_replies_story ON story_replies (story_id);

-- the owner's close-friends list pages by friend id
CREATE INDEX close_friends_friend ON close_friends (friend_id);
