-- A conversation's members in joining order, read from an index rather than sorted.
--
-- The conversation list names up to 3 members of each conversation on its page besides the reader
-- (storage.messages.member_briefs: the first by joining order, then id, whom the reader may be
-- shown), and the detail lists every member in that order (get_members). Without an index in that
-- order each conversation's member rows were all read and sorted before the first three were
-- asked the visibility policy: a page of 20 groups of 250 took 5.5 ms, with it 1.8 ms (a page of
-- 20 1:1s 1.2 -> 0.5 ms). Its columns never change after a member joins, so the positions the
-- send and read paths update (read_seq, delivered_seq) stay heap-only updates.
--
-- A migration runs in a transaction (storage.db.migrate), so this is a plain CREATE INDEX, which
-- holds off writes to conversation_members while it builds: on a large deployment, build it
-- beforehand with `CREATE INDEX CONCURRENTLY IF NOT EXISTS conversation_members_joined ...` and
-- this one does nothing.

CREATE INDEX IF NOT EXISTS conversation_members_joined ON conversation_members (conversation_id, joined_at, user_id);
