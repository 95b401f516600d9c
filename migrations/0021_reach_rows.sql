-- may_reach() in the two shapes the readers of direct messages need (storage/messages.py).
--
-- A message reaches a member only when its sender may reach them: live delivery asked may_reach()
-- at send time, but history, `sync`, the conversation list's last message and unread counts,
-- reactions and media showed every message of a conversation to every member, so in a group that
-- keeps two people who blocked each other, each still read the other's messages. Those readers now
-- ask the same rule per message, at read time: a reader sees a message (and a reaction) only while
-- its author may reach them, so a block hides the messages sent before it too, and lifting it shows
-- them again, as it does posts and comments.
--
-- Asked per message, the scalar may_reach() runs as a call each time (its hidden_between() has a
-- sub-select, so it is not inlined): 6-7 us a row, a 200-message sync page 1.3 ms on top of 0.4 ms.
-- A set-returning SQL function is inlined into the query and planned with it (0019), so the rule
-- lives in one now, and reach() and may_reach() ask it:
--
--   kept_from(r)   the users who may not put anything in front of r (r never among them)
--   reach(s, r)    one row: reachable, may s put something in front of r (the rule may_reach() answered)
--
-- A query about one reader's messages leaves their senders out of the set once
-- (`m.sender_id NOT IN (SELECT id FROM kept_from($1))`, a hashed sub-plan built once per
-- statement: an unread count over 1,000 messages stays 0.6 ms, where a probe of blocks per message
-- made it 6); one that asks for many readers selects the row form per row
-- (`CROSS JOIN LATERAL reach(x.user_id, v.id) r ... AND r.reachable`); a question about one pair
-- may still call may_reach(). All three are the one rule. Blocks hide both ways, so kept_from(r)
-- is hidden_users(r): the block rule stays there.

CREATE FUNCTION kept_from(recipient bigint) RETURNS TABLE (id bigint)
LANGUAGE sql STABLE AS $$
    SELECT h.id FROM hidden_users(recipient) h WHERE h.id IS DISTINCT FROM recipient
$$;

CREATE FUNCTION reach(sender bigint, recipient bigint) RETURNS TABLE (reachable boolean)
LANGUAGE sql STABLE AS $$
    SELECT sender = recipient OR NOT EXISTS (SELECT 1 FROM kept_from(recipient) k WHERE k.id = sender)
$$;

CREATE OR REPLACE FUNCTION may_reach(sender bigint, recipient bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT reachable FROM reach(sender, recipient)
$$;
