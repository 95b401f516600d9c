-- The conversation list reads a member's conversations in order of activity from an index on
-- their own member rows (storage/messages.py, list_conversations).
--
-- The list orders by the reader's last activity: the newest message they may read (the reach
-- rule of 0021), else the conversation's creation. That depends on blocks at read time, so it
-- cannot be stored; it was computed for every conversation of the reader before the top-N sort
-- (a probe of conversations and of messages per conversation: 8,500 buffers, 7 ms a page for a
-- user in 1,000 conversations). What can be stored is a bound of it: `active_at`, the time of
-- the conversation's newest message whoever sent it, is never earlier than any member's last
-- activity. The list scans a member's rows by it and asks the reach rule only of the candidates
-- a page needs, stopping once no row further down can outrank the page.
--
-- `conversations.last_message_at` held the same time for the conversation; since the list
-- orders by the reader's own activity nothing reads it, so it goes, and the message writer
-- stamps the members' rows instead.

ALTER TABLE conversation_members ADD COLUMN active_at timestamptz NOT NULL DEFAULT now();

UPDATE conversation_members m SET active_at = c.last_message_at
FROM conversations c WHERE c.id = m.conversation_id;

-- the inbox and the requests folder (pinned and declined ones are listed apart, or not at all)
CREATE INDEX conversation_members_by_activity ON conversation_members (user_id, accepted, active_at, conversation_id)
    WHERE declined_at IS NULL AND pinned_at IS NULL;
-- pinned ones, at most a few per member, most recently pinned first
CREATE INDEX conversation_members_pinned ON conversation_members (user_id, pinned_at)
    WHERE pinned_at IS NOT NULL;

ALTER TABLE conversations DROP COLUMN last_message_at;
