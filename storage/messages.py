"""Direct messages in PostgreSQL: conversations, members with their read/delivered positions, and
messages numbered per conversation with no gaps.

The hot path is `write_batch`: one statement stores every message a process queued while its last
commit ran (group commit). It locks the touched conversations in id order, judges each message
(duplicate, member, block, reply), bumps each conversation's `last_seq` by the number it takes and
inserts the messages with the numbers in between, so seqs stay gapless under any number of
concurrent senders in any number of processes.

A member reads a message only while its sender may reach them (the visibility policy's
`may_reach()`, which live delivery asks at send time, in its shapes of migration 0021): history,
`sync`, the list's last message, order and activity time, unread counts, reactions, replies, media
and the data export all ask it at read time, so a block in a group hides each one's messages from
the other, those sent before it too, a reaction is shown only to those its author may reach, and a
reply to a hidden message shows as no reply.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Sequence

import asyncpg

import events
from storage import outbox
from storage.bounds import BIGINT_MAX
from storage.users import BRIEF_COLUMNS

Conn = asyncpg.Connection | asyncpg.Pool

MESSAGE_COLUMNS = ("id, conversation_id, seq, sender_id, client_id, text, media_id, reply_to_seq, deleted_at, removed_at,"
                   " created_at, edited_at, change_seq, share_type, share_id")
EDIT_WINDOW_MINUTES = 15


def readable_by(reader: str, alias: str = "m") -> str:
    """The SQL condition that the reader (a parameter such as `$2`) may read message `alias`: its
    sender may reach them (the policy's set of those who may not, built once per statement)."""
    return f"{alias}.sender_id NOT IN (SELECT id FROM kept_from({reader}))"


def last_readable(reader: str) -> str:
    """The join that gives each conversation `c` its newest message the reader (a parameter such as
    `$1`) may read, as the row `last` with its columns prefixed `last_message_` (all NULL when there
    is none); `LAST_ACTIVITY` is when that conversation was last active for the reader."""
    columns = ', '.join('l.' + col + ' AS last_message_' + col for col in MESSAGE_COLUMNS.split(', '))
    return (f"LEFT JOIN LATERAL (SELECT {columns} FROM messages l WHERE l.conversation_id = c.id"
            f" AND {readable_by(reader, 'l')} ORDER BY l.seq DESC LIMIT 1) last ON true")


# the conversation's last activity as one reader sees it: its newest message they may read, else
# its creation. `conversations.last_message_at` is bumped by every message, those a block hides
# from this reader too, so ordering or showing it let a blocked sender move the conversation to
# the top of the reader's list while the message itself stayed hidden; it only bounds this
# (list_conversations).
LAST_ACTIVITY = "coalesce(last.last_message_created_at, c.created_at)"


def pair_key(a: int, b: int) -> str:
    """The unique key of the 1:1 conversation between two users, whatever the order."""
    low, high = sorted((a, b))
    return f"{low}:{high}"


# ---------------------------------------------------------------- conversations

async def get_or_create_direct(pool: asyncpg.Pool, a: int, b: int) -> tuple[int, bool]:
    """The 1:1 conversation of a and b, made on first use; (id, created). Two first uses at once
    make one: the loser's insert waits for the winner's commit, then finds its row."""
    key = pair_key(a, b)
    async with pool.acquire() as conn, conn.transaction():
        conversation_id = await conn.fetchval(
            "INSERT INTO conversations (kind, pair_key, created_by) VALUES ('direct', $1, $2)"
            " ON CONFLICT (pair_key) DO NOTHING RETURNING id", key, a)
        if conversation_id is None:
            conversation_id = await conn.fetchval("SELECT id FROM conversations WHERE pair_key = $1", key)
            # starting it yourself accepts it (a request you had, or declined)
            await conn.execute("UPDATE conversation_members SET accepted = true, declined_at = NULL"
                               " WHERE conversation_id = $1 AND user_id = $2 AND NOT accepted", conversation_id, a)
            return conversation_id, False
        await add_members_as_requests(conn, conversation_id, a, [a, b])
        return conversation_id, True


async def add_members_as_requests(conn: asyncpg.Connection, conversation_id: int, inviter: int,
                                  user_ids: Iterable[int]) -> None:
    """Members join accepted when they follow the inviter (or are the inviter); otherwise the
    conversation is a message request for them. Existing members are kept as they are."""
    await conn.execute(
        "INSERT INTO conversation_members (conversation_id, user_id, accepted)"
        " SELECT $1, u, u = $2 OR EXISTS (SELECT 1 FROM follows f WHERE f.follower_id = u AND f.followee_id = $2)"
        " FROM unnest($3::bigint[]) AS u ON CONFLICT DO NOTHING", conversation_id, inviter, sorted(set(user_ids)))


async def create_group_txn(conn: asyncpg.Connection, creator: int, member_ids: Sequence[int], title: str) -> int:
    """Inside a transaction: a group with its creator and members."""
    conversation_id = await conn.fetchval(
        "INSERT INTO conversations (kind, title, created_by) VALUES ('group', $1, $2) RETURNING id", title, creator)
    await add_members_as_requests(conn, conversation_id, creator, [creator, *member_ids])
    return conversation_id


async def get_conversation(conn: Conn, conversation_id: int, viewer: int) -> asyncpg.Record | None:
    """A conversation the viewer is a member of, with the viewer's positions and its last activity
    as the viewer sees it (`last_message_at`: LAST_ACTIVITY); None otherwise."""
    return await conn.fetchrow(
        f"SELECT c.id, c.kind, c.title, c.created_by, c.last_seq, {LAST_ACTIVITY} AS last_message_at, c.created_at,"
        " m.read_seq, m.delivered_seq, m.muted, m.pinned_at, m.accepted, m.declined_at"
        " FROM conversations c JOIN conversation_members m ON m.conversation_id = c.id AND m.user_id = $2"
        f" {last_readable('$2')} WHERE c.id = $1", conversation_id, viewer)


async def get_members(conn: Conn, conversation_id: int, viewer: int) -> list[asyncpg.Record]:
    """Members with their read and delivered positions, in joining order, each with what lists
    show of them (BRIEF_COLUMNS, `id` and `username` NULL for one the viewer may not be shown:
    the policy's user_shown())."""
    return await conn.fetch(
        f"SELECT m.user_id, m.read_seq, m.delivered_seq, m.joined_at, u.id, {BRIEF_COLUMNS}"
        " FROM conversation_members m"
        " LEFT JOIN users u ON u.id = m.user_id AND user_shown($2, u.id)"
        " WHERE m.conversation_id = $1 ORDER BY m.joined_at, m.user_id", conversation_id, viewer)


# the first $3 other members of each conversation $2 that the viewer $1 may be shown (the policy's
# user_shown()), in joining order: read in that order from conversation_members_joined (migration
# 0024) with the filter above it (OFFSET 0), so it is asked of members only until enough pass, not
# of every member of a large group
_MEMBER_BRIEFS = f"""
SELECT c.id AS conversation_id, u.id, {BRIEF_COLUMNS}
FROM unnest($2::bigint[]) WITH ORDINALITY AS c(id, n)
CROSS JOIN LATERAL (
    SELECT o.user_id, o.joined_at
    FROM (SELECT m.user_id, m.joined_at FROM conversation_members m
          WHERE m.conversation_id = c.id AND m.user_id <> $1
          ORDER BY m.joined_at, m.user_id OFFSET 0) o
    WHERE user_shown($1, o.user_id)
    LIMIT $3
) s
JOIN users u ON u.id = s.user_id
ORDER BY c.n, s.joined_at, s.user_id
"""


async def member_briefs(conn: Conn, viewer: int, conversation_ids: Sequence[int],
                        per_conversation: int) -> dict[int, list[asyncpg.Record]]:
    """For a page of conversations (one query): up to `per_conversation` members of each besides
    the viewer, the first by joining order (then id) whom the viewer may be shown, each with what
    lists show of them (BRIEF_COLUMNS); a conversation with none is missing."""
    if not conversation_ids:
        return {}
    briefs: dict[int, list[asyncpg.Record]] = {}
    for row in await conn.fetch(_MEMBER_BRIEFS, viewer, list(conversation_ids), per_conversation):
        briefs.setdefault(row["conversation_id"], []).append(row)
    return briefs


async def member_ids(conn: Conn, conversation_id: int) -> list[int]:
    """The ids of a conversation's members."""
    rows = await conn.fetch("SELECT user_id FROM conversation_members WHERE conversation_id = $1", conversation_id)
    return [r["user_id"] for r in rows]


async def lock_group_txn(conn: asyncpg.Connection, conversation_id: int) -> asyncpg.Record | None:
    """Inside a transaction: lock a conversation row so member changes serialize; None if missing."""
    return await conn.fetchrow(
        "SELECT id, kind, created_by FROM conversations WHERE id = $1 FOR UPDATE", conversation_id)


async def add_members_txn(conn: asyncpg.Connection, conversation_id: int, inviter: int, user_ids: Iterable[int]) -> int:
    """Inside a transaction: add members (existing ones are kept; a request for those who do not
    follow the inviter); return the member count after."""
    await add_members_as_requests(conn, conversation_id, inviter, user_ids)
    return await conn.fetchval("SELECT count(*) FROM conversation_members WHERE conversation_id = $1", conversation_id)


async def remove_member(conn: Conn, conversation_id: int, user_id: int) -> bool:
    """Take a member out; False if they were not one."""
    status = await conn.execute(
        "DELETE FROM conversation_members WHERE conversation_id = $1 AND user_id = $2", conversation_id, user_id)
    return status.endswith(" 1")


MAX_PINNED = 5


def _listed(member: str) -> str:
    """The columns of a listed conversation, from the reader's member row (`member`: its alias),
    the conversation `c`, the reader's last readable message `last` (last_readable) and
    `activity.at` (LAST_ACTIVITY)."""
    return f"""
    c.id, c.kind, c.title, c.created_by, c.last_seq, activity.at AS last_message_at, c.created_at,
    {member}.read_seq, {member}.delivered_seq, {member}.muted, {member}.pinned_at, {member}.accepted,
    (SELECT count(*) FROM messages u WHERE u.conversation_id = c.id AND u.seq > {member}.read_seq
        AND u.sender_id <> $1 AND u.deleted_at IS NULL AND {readable_by('$1', 'u')}) AS unread,
    (SELECT array_agg(o.user_id ORDER BY o.joined_at, o.user_id) FROM conversation_members o
        WHERE o.conversation_id = c.id) AS member_ids,
    last.*"""


# A page by the reader's last activity, which no index holds (it depends on blocks at read time),
# read by a bound of it that the message writer keeps anyway: `conversations.last_message_at` (the
# conversation's newest message, whoever sent it) is never earlier than the reader's LAST_ACTIVITY.
# The reader's member rows in the folder $5 (accepted ones, or requests from people the viewer may
# be shown), neither pinned nor declined, are read with their conversations, one primary-key probe
# each (OFFSET 0 keeps it so: flattened, a custom plan hash-joined a scan of every conversation),
# keeping no more than the bound (the candidates' rows are read again, copying every one cost
# more); the candidates are the $6 next below the cursor by that bound, and those above it (a row moves
# down from its bound, never up: those are rows an earlier page passed over whose newest messages
# the reader may not read). Only the candidates are asked for the reader's last readable message.
# The page is the top $4 of them by the reader's activity, and it is complete when it ends at or
# above the last candidate's bound (`edge_at`, `edge_id`), since every row below that one was last
# active earlier still, or when there were fewer than $6 (`candidates`).
_LIST_PAGE = f"""
WITH mine AS MATERIALIZED (
    SELECT m.conversation_id AS id, c.last_message_at AS bound_at,
           m.read_seq, m.delivered_seq, m.muted, m.pinned_at, m.accepted
    FROM conversation_members m
    CROSS JOIN LATERAL (SELECT s.created_by, s.last_message_at FROM conversations s WHERE s.id = m.conversation_id
                        OFFSET 0) c
    WHERE m.user_id = $1 AND m.accepted = $5 AND m.declined_at IS NULL AND m.pinned_at IS NULL
      AND (m.accepted OR user_shown($1, c.created_by))
),
below AS MATERIALIZED (
    SELECT * FROM mine WHERE (bound_at, id) < ($2, $3) ORDER BY bound_at DESC, id DESC LIMIT $6
),
candidates AS (
    SELECT * FROM below
    UNION ALL
    SELECT * FROM mine WHERE (bound_at, id) >= ($2, $3)
)
SELECT {_listed('m')},
       (SELECT count(*) FROM below) AS candidates,
       (SELECT b.bound_at FROM below b ORDER BY b.bound_at, b.id LIMIT 1) AS edge_at,
       (SELECT b.id FROM below b ORDER BY b.bound_at, b.id LIMIT 1) AS edge_id
FROM candidates m
JOIN conversations c ON c.id = m.id
{last_readable('$1')}
CROSS JOIN LATERAL (SELECT {LAST_ACTIVITY} AS at) activity
WHERE (activity.at, c.id) < ($2, $3)
ORDER BY activity.at DESC, c.id DESC
LIMIT $4
"""

# pinned ones: at most MAX_PINNED a member, most recently pinned first
_LIST_PINNED = f"""
SELECT {_listed('m')}
FROM conversation_members m
JOIN conversations c ON c.id = m.conversation_id
{last_readable('$1')}
CROSS JOIN LATERAL (SELECT {LAST_ACTIVITY} AS at) activity
WHERE m.user_id = $1 AND m.pinned_at IS NOT NULL AND m.declined_at IS NULL AND m.accepted = $3
  AND (m.accepted OR user_shown($1, c.created_by))
ORDER BY m.pinned_at DESC, c.id DESC
LIMIT $2
"""

# candidates a page asks first, past its own rows: enough to outrun a few conversations whose
# newest messages the reader may not read; a page that needs more asks again with more
CANDIDATES_PAST_PAGE = 16


async def list_conversations(conn: Conn, viewer: int, before: tuple[datetime, int] | None,
                             limit: int, requests: bool = False, pinned: bool = False) -> list[asyncpg.Record]:
    """The viewer's conversations in one folder (accepted ones, or requests from people the viewer
    may be shown), pinned ones (all, most recently pinned first; `before` does not apply) or the
    others (latest activity first), each with the last message the viewer may read, the unread
    count of those and its members' ids; `before` is the (last_message_at, id) of the previous
    page's last. Latest activity (`last_message_at`) is the viewer's: LAST_ACTIVITY, so a message
    hidden from them neither moves a conversation nor dates it. Declined ones are in neither
    folder. The last message's columns are prefixed `last_message_` (`last_message_id` is NULL when
    there is none), apart from the conversation's own `last_seq`."""
    if pinned:
        return await conn.fetch(_LIST_PINNED, viewer, limit, not requests)
    # always a bound (not `$2 IS NULL OR ...`), so that a generic plan is the same for every page
    at, below_id = before if before is not None else (datetime.max.replace(tzinfo=timezone.utc), BIGINT_MAX)
    candidates = limit + CANDIDATES_PAST_PAGE
    while True:
        rows = await conn.fetch(_LIST_PAGE, viewer, at, below_id, limit, not requests, candidates)
        if not rows or rows[0]["candidates"] < candidates:
            return rows
        last = rows[-1]
        if len(rows) == limit and (last["last_message_at"], last["id"]) >= (last["edge_at"], last["edge_id"]):
            return rows
        candidates *= 8


async def update_member_settings(pool: asyncpg.Pool, conversation_id: int, user_id: int, muted: bool | None,
                                 pinned: bool | None) -> bool:
    """Set a member's muted and pinned flags (None: keep); False when they are not a member.
    Pinning more than MAX_PINNED raises TooManyPinned (nothing changes)."""
    async with pool.acquire() as c, c.transaction():
        row = await c.fetchrow(
            "UPDATE conversation_members SET muted = coalesce($3, muted),"
            " pinned_at = CASE WHEN $4::boolean IS NULL THEN pinned_at WHEN $4 THEN coalesce(pinned_at, now())"
            " ELSE NULL END WHERE conversation_id = $1 AND user_id = $2 RETURNING pinned_at",
            conversation_id, user_id, muted, pinned)
        if row is None:
            return False
        if pinned and await c.fetchval("SELECT count(*) FROM conversation_members WHERE user_id = $1"
                                       " AND pinned_at IS NOT NULL", user_id) > MAX_PINNED:
            raise TooManyPinned()
        return True


class TooManyPinned(Exception):
    """More than MAX_PINNED pinned conversations."""


async def set_title(conn: Conn, conversation_id: int, title: str) -> None:
    """A group's title (for every member)."""
    await conn.execute("UPDATE conversations SET title = $2 WHERE id = $1 AND kind = 'group'", conversation_id, title)


async def answer_request(conn: Conn, conversation_id: int, user_id: int, accept: bool) -> bool:
    """Accept a conversation (into the inbox) or decline it (out of both folders, no pushes);
    False when the user is not a member."""
    status = await conn.execute(
        "UPDATE conversation_members SET accepted = $3, declined_at = CASE WHEN $3 THEN NULL ELSE now() END"
        " WHERE conversation_id = $1 AND user_id = $2", conversation_id, user_id, accept)
    return status.endswith(" 1")


async def unread_count(conn: Conn, conversation_id: int, viewer: int) -> int:
    """Messages after the viewer's read position that others sent, that are not deleted and that
    the viewer may read."""
    return await conn.fetchval(
        "SELECT count(*) FROM messages u JOIN conversation_members m"
        " ON m.conversation_id = u.conversation_id AND m.user_id = $2"
        " WHERE u.conversation_id = $1 AND u.seq > m.read_seq AND u.sender_id <> $2 AND u.deleted_at IS NULL"
        f" AND {readable_by('$2', 'u')}", conversation_id, viewer)


# ---------------------------------------------------------------- messages: the group commit

@dataclass(frozen=True)
class Draft:
    """A message to store, as a sender asked for it."""

    conversation_id: int
    sender_id: int
    client_id: str
    text: str
    media_id: int | None
    reply_to_seq: int | None
    share_type: str | None = None
    share_id: int | None = None


@dataclass(frozen=True)
class Written:
    """What became of a draft: status "ok" (stored now), "duplicate" (stored before: `message` is
    the original), "not_member", "blocked" or "bad_reply" (nothing stored)."""

    status: str
    message: asyncpg.Record | None
    member_ids: list[int]
    quiet_ids: frozenset[int] = frozenset()  # members who get no push or e-mail (muted, or a request)


_WRITE_BATCH = f"""
WITH input AS (
    SELECT * FROM unnest($1::int[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::bigint[], $7::bigint[],
                         $8::text[], $9::bigint[])
        AS t(idx, conversation_id, sender_id, client_id, text, media_id, reply_to_seq, share_type, share_id)
),
-- lock every touched conversation in id order, so concurrent batches never deadlock on them
locked AS MATERIALIZED (
    SELECT c.id, c.kind FROM conversations c
    WHERE c.id IN (SELECT conversation_id FROM input)
    ORDER BY c.id FOR UPDATE
),
-- then the senders' member rows (own_read below moves them), in key order as every writer of
-- member rows locks them (mark_delivered_batch): updated in the join's order, they deadlocked with
-- the receipt writer, and every lane waited out PostgreSQL's deadlock timeout behind the loser
senders AS MATERIALIZED (
    SELECT cm.conversation_id, cm.user_id FROM conversation_members cm
    WHERE (cm.conversation_id, cm.user_id) IN (SELECT conversation_id, sender_id FROM input)
      AND (SELECT count(*) FROM locked) >= 0  -- evaluated once, first: every conversation locked before these
    ORDER BY cm.conversation_id, cm.user_id FOR UPDATE OF cm
),
judged AS MATERIALIZED (
    SELECT i.*, old.id AS existing_id,
        CASE
            WHEN old.id IS NOT NULL THEN 'duplicate'
            WHEN l.id IS NULL OR NOT EXISTS (
                SELECT 1 FROM conversation_members cm
                WHERE cm.conversation_id = i.conversation_id AND cm.user_id = i.sender_id) THEN 'not_member'
            -- the visibility policy (storage.visibility): a 1:1 with someone the sender may not reach
            WHEN l.kind = 'direct' AND EXISTS (
                SELECT 1 FROM conversation_members o CROSS JOIN LATERAL reach(i.sender_id, o.user_id) r
                WHERE o.conversation_id = i.conversation_id AND NOT r.reachable) THEN 'blocked'
            -- a reply to a message the sender may read (one whose sender may reach them)
            WHEN i.reply_to_seq IS NOT NULL AND NOT EXISTS (
                SELECT 1 FROM messages r
                WHERE r.conversation_id = i.conversation_id AND r.seq = i.reply_to_seq
                  AND may_reach(r.sender_id, i.sender_id)) THEN 'bad_reply'
            ELSE 'ok'
        END AS status
    FROM input i
    LEFT JOIN messages old ON old.sender_id = i.sender_id AND old.client_id = i.client_id
    LEFT JOIN locked l ON l.id = i.conversation_id
    WHERE (SELECT count(*) FROM senders) >= 0  -- evaluated once, first: every sender's row locked before own_read
),
counts AS (
    SELECT conversation_id, count(*) AS n FROM judged WHERE status = 'ok' GROUP BY conversation_id
),
-- last_message_at bounds every reader's last activity (list_conversations): never moved back, even
-- by a batch whose transaction began before the one that wrote this conversation's newer messages
bumped AS (
    UPDATE conversations c SET last_seq = c.last_seq + counts.n, last_message_at = GREATEST(c.last_message_at, now())
    FROM counts WHERE c.id = counts.conversation_id
    RETURNING c.id, c.last_seq - counts.n AS base
),
inserted AS (
    INSERT INTO messages (conversation_id, seq, sender_id, client_id, text, media_id, reply_to_seq, share_type, share_id)
    SELECT j.conversation_id, b.base + row_number() OVER (PARTITION BY j.conversation_id ORDER BY j.idx),
           j.sender_id, j.client_id, j.text, j.media_id, j.reply_to_seq, j.share_type, j.share_id
    FROM judged j JOIN bumped b ON b.id = j.conversation_id
    WHERE j.status = 'ok'
    ORDER BY j.idx
    RETURNING {MESSAGE_COLUMNS}
),
-- sending implies having read (and received) everything up to one's own message, and accepting
-- the conversation (answering a message request accepts it)
own_read AS (
    UPDATE conversation_members cm
    SET read_seq = GREATEST(cm.read_seq, s.seq), delivered_seq = GREATEST(cm.delivered_seq, s.seq), accepted = true,
        declined_at = NULL
    FROM (SELECT conversation_id, sender_id, max(seq) AS seq FROM inserted GROUP BY 1, 2) s
    WHERE cm.conversation_id = s.conversation_id AND cm.user_id = s.sender_id
)
SELECT j.idx, 'ok' AS status, ins.*,
       -- delivered to the members the sender may reach (a group keeps people who blocked each other
       -- later), asked in the row form: inlined, where a call of may_reach() per member cost 5 us
       (SELECT array_agg(cm.user_id) FROM conversation_members cm CROSS JOIN LATERAL reach(ins.sender_id, cm.user_id) r
        WHERE cm.conversation_id = ins.conversation_id AND r.reachable) AS member_ids,
       (SELECT array_agg(user_id) FROM conversation_members
        WHERE conversation_id = ins.conversation_id AND (muted OR NOT accepted)) AS quiet_ids
FROM inserted ins JOIN judged j ON j.sender_id = ins.sender_id AND j.client_id = ins.client_id
UNION ALL
SELECT j.idx, j.status, {', '.join('old.' + c for c in MESSAGE_COLUMNS.split(', '))}, NULL::bigint[], NULL::bigint[]
FROM judged j LEFT JOIN messages old ON old.id = j.existing_id
WHERE j.status <> 'ok'
"""


async def write_batch(conn: Conn, drafts: Sequence[Draft]) -> list[Written]:
    """Store a batch of drafts in one statement (its own transaction); results in draft order.

    Drafts must have distinct (sender_id, client_id). Raises asyncpg.UniqueViolationError when
    another process stored one of them while this statement ran: the statement then changed
    nothing, and a retry finds the original.
    """
    rows = await conn.fetch(
        _WRITE_BATCH,
        list(range(len(drafts))),
        [d.conversation_id for d in drafts], [d.sender_id for d in drafts], [d.client_id for d in drafts],
        [d.text for d in drafts], [d.media_id for d in drafts], [d.reply_to_seq for d in drafts],
        [d.share_type for d in drafts], [d.share_id for d in drafts],
    )
    results: list[Written | None] = [None] * len(drafts)
    for row in rows:
        message = row if row["id"] is not None else None
        results[row["idx"]] = Written(row["status"], message, list(row["member_ids"] or ()),
                                      frozenset(row["quiet_ids"] or ()))
    return [r if r is not None else Written("not_member", None, []) for r in results]


async def get_message(conn: Conn, conversation_id: int, seq: int, reader: int) -> asyncpg.Record | None:
    """One message by its place in a conversation, if the reader may read it."""
    return await conn.fetchrow(
        f"SELECT {MESSAGE_COLUMNS} FROM messages m WHERE conversation_id = $1 AND seq = $2 AND {readable_by('$3')}",
        conversation_id, seq, reader)


async def history(conn: Conn, conversation_id: int, reader: int, before_seq: int | None, after_seq: int | None,
                  limit: int) -> list[asyncpg.Record]:
    """The messages the reader may read, by seq: after `after_seq` ascending, else before
    `before_seq` (or the newest) descending. Fetches limit + 1 so callers can tell whether there
    is more."""
    if after_seq is not None:
        return await conn.fetch(
            f"SELECT {MESSAGE_COLUMNS} FROM messages m WHERE conversation_id = $1 AND seq > $2 AND {readable_by('$4')}"
            " ORDER BY seq LIMIT $3", conversation_id, after_seq, limit + 1, reader)
    # always a bound (not `$2 IS NULL OR seq < $2`), so that a generic plan scans the index from it
    return await conn.fetch(
        f"SELECT {MESSAGE_COLUMNS} FROM messages m WHERE conversation_id = $1 AND seq < $2 AND {readable_by('$4')}"
        " ORDER BY seq DESC LIMIT $3", conversation_id, BIGINT_MAX if before_seq is None else before_seq,
        limit + 1, reader)


async def member_conversations(conn: Conn, viewer: int, conversation_ids: Iterable[int]) -> dict[int, int]:
    """Of these conversations, the ones the viewer is a member of, with their change counter."""
    rows = await conn.fetch(
        "SELECT c.id, c.change_seq FROM conversations c JOIN conversation_members m"
        " ON m.conversation_id = c.id AND m.user_id = $1 WHERE c.id = ANY($2::bigint[])",
        viewer, list(set(conversation_ids)))
    return {r["id"]: r["change_seq"] for r in rows}


async def delete_message(conn: Conn, conversation_id: int, seq: int, sender_id: int) -> asyncpg.Record | None:
    """Delete for everyone: the sender's message becomes a tombstone (text and media gone, seq
    kept so nobody sees a gap). None when there is no such message of this sender."""
    return await conn.fetchrow(
        f"UPDATE messages SET text = '', media_id = NULL, deleted_at = coalesce(deleted_at, now())"
        f" WHERE conversation_id = $1 AND seq = $2 AND sender_id = $3 RETURNING {MESSAGE_COLUMNS}",
        conversation_id, seq, sender_id)


# ---------------------------------------------------------------- reactions and edits
# Each bumps the conversation's change counter under its row lock (in the same transaction) and
# stamps the message with it, so `changed_since` finds every change after a counter a client saw.

async def _bump_changes(conn: asyncpg.Connection, conversation_id: int, message_id: int) -> int:
    change = await conn.fetchval(
        "UPDATE conversations SET change_seq = change_seq + 1 WHERE id = $1 RETURNING change_seq", conversation_id)
    await conn.execute("UPDATE messages SET change_seq = $2 WHERE id = $1", message_id, change)
    return change


@dataclass(frozen=True)
class Reacted:
    """A reaction set or taken back: the message's row, whether anything changed, and the
    conversation's change counter after it (0 when nothing changed)."""

    message: asyncpg.Record
    changed: bool
    change_seq: int = 0


async def set_reaction(pool: asyncpg.Pool, conversation_id: int, seq: int, user_id: int,
                       emoji: str | None) -> Reacted | None:
    """Set (emoji) or take back (None) a member's one reaction to a message; None when there is no
    such live message the member may read. A new reaction to someone else's message records a
    `message_reaction` event in the same transaction, unless its sender muted the conversation or
    has not accepted it."""
    async with pool.acquire() as conn, conn.transaction():
        message = await conn.fetchrow(
            f"SELECT {MESSAGE_COLUMNS} FROM messages m WHERE conversation_id = $1 AND seq = $2 AND deleted_at IS NULL"
            f" AND {readable_by('$3')}", conversation_id, seq, user_id)
        if message is None:
            return None
        if emoji is None:
            status = await conn.execute(
                "DELETE FROM message_reactions WHERE message_id = $1 AND user_id = $2", message["id"], user_id)
            changed = not status.endswith(" 0")
        else:
            changed = await conn.fetchval(
                "INSERT INTO message_reactions (message_id, user_id, emoji) VALUES ($1, $2, $3)"
                " ON CONFLICT (message_id, user_id) DO UPDATE SET emoji = EXCLUDED.emoji, created_at = now()"
                " WHERE message_reactions.emoji <> EXCLUDED.emoji RETURNING true",
                message["id"], user_id, emoji) is not None
        if not changed:
            return Reacted(message, False)
        change = await _bump_changes(conn, conversation_id, message["id"])
        owner = message["sender_id"]
        if emoji is not None and owner != user_id and await conn.fetchval(
                "SELECT NOT muted AND accepted FROM conversation_members WHERE conversation_id = $1 AND user_id = $2",
                conversation_id, owner):
            await outbox.add(conn, events.MessageReaction(
                conversation_id=str(conversation_id), seq=seq, message_id=str(message["id"]), sender_id=str(owner),
                user_id=str(user_id), emoji=emoji), conversation_id)
        return Reacted(message, True, change)


async def edit_message(pool: asyncpg.Pool, conversation_id: int, seq: int, sender_id: int,
                       text: str) -> asyncpg.Record | None:
    """The sender's own live text message (no media, no share), within the edit window, gets new
    text; None when no such message qualifies (the caller tells why)."""
    async with pool.acquire() as conn, conn.transaction():
        message_id = await conn.fetchval(
            "SELECT id FROM messages WHERE conversation_id = $1 AND seq = $2 AND sender_id = $3"
            " AND deleted_at IS NULL AND media_id IS NULL AND share_type IS NULL"
            f" AND created_at > now() - interval '{EDIT_WINDOW_MINUTES} minutes'", conversation_id, seq, sender_id)
        if message_id is None:
            return None
        await _bump_changes(conn, conversation_id, message_id)
        return await conn.fetchrow(
            f"UPDATE messages SET text = $2, edited_at = now() WHERE id = $1 RETURNING {MESSAGE_COLUMNS}",
            message_id, text)


async def reactions_seen(conn: Conn, message_ids: Iterable[int],
                         viewers: Iterable[int]) -> dict[tuple[int, int], list[tuple[int, str]]]:
    """Each (viewer, message id): the message's reactions that viewer may see (their authors may
    reach them), (user_id, emoji) oldest first."""
    ids, readers = list(set(message_ids)), list(set(viewers))
    if not ids or not readers:
        return {}
    rows = await conn.fetch(
        "SELECT v.id AS viewer, x.message_id, x.user_id, x.emoji FROM message_reactions x"
        " CROSS JOIN unnest($2::bigint[]) AS v(id) CROSS JOIN LATERAL reach(x.user_id, v.id) r"
        " WHERE x.message_id = ANY($1::bigint[]) AND r.reachable ORDER BY x.created_at, x.user_id", ids, readers)
    out: dict[tuple[int, int], list[tuple[int, str]]] = {}
    for row in rows:
        out.setdefault((row["viewer"], row["message_id"]), []).append((row["user_id"], row["emoji"]))
    return out


async def replies_hidden(conn: Conn, seen: Iterable[tuple[int, asyncpg.Record]],
                         prefix: str = "") -> set[tuple[int, int]]:
    """Of these (viewer, message) pairs (rows with MESSAGE_COLUMNS, prefixed), the (viewer, message
    id) of those where the message replies to one the viewer may not read (its sender may not reach
    them): for them the reply shows as no reply, so a message they read points at nothing hidden
    from them. One query, none when no message replies."""
    wanted = [(viewer, r) for viewer, r in seen if r[prefix + "reply_to_seq"] is not None]
    if not wanted:
        return set()
    rows = await conn.fetch(
        "SELECT w.viewer, w.id FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[])"
        "   AS w(viewer, id, conversation_id, seq)"
        " JOIN messages t ON t.conversation_id = w.conversation_id AND t.seq = w.seq"
        " CROSS JOIN LATERAL reach(t.sender_id, w.viewer) r WHERE NOT r.reachable",
        [v for v, _ in wanted], [r[prefix + "id"] for _, r in wanted],
        [r[prefix + "conversation_id"] for _, r in wanted], [r[prefix + "reply_to_seq"] for _, r in wanted])
    return {(row["viewer"], row["id"]) for row in rows}


async def changed_since(conn: Conn, conversation_id: int, reader: int, after_change: int, up_to_seq: int,
                        limit: int) -> list[asyncpg.Record]:
    """The messages up to `up_to_seq` that the reader may read, edited or reacted to after change
    counter `after_change`, in change order (at most limit + 1)."""
    return await conn.fetch(
        # `change_seq > 0` too: a generic plan cannot tell that `> $2` implies it, and needs it for the index
        f"SELECT {MESSAGE_COLUMNS} FROM messages m WHERE conversation_id = $1 AND change_seq > $2 AND change_seq > 0"
        f" AND seq <= $3 AND {readable_by('$5')}"
        " ORDER BY change_seq LIMIT $4", conversation_id, after_change, up_to_seq, limit + 1, reader)


# ---------------------------------------------------------------- shares

# what each (viewer, shared item) pair may see, by the one visibility policy's SQL functions; a
# pair missing from the result is unavailable to that viewer (gone, expired, private, kept apart)
_SHARED = """
WITH want AS (SELECT DISTINCT * FROM unnest($1::bigint[], $2::text[], $3::bigint[]) AS w(viewer, type, id))
SELECT w.viewer, w.type, w.id, p.author_id AS owner_id, p.caption, NULL::text AS username, NULL::text AS full_name,
       NULL::timestamptz AS expires_at
FROM want w JOIN posts p ON p.id = w.id
WHERE w.type = 'post' AND visible_to(w.viewer, p.author_id)
UNION ALL
SELECT w.viewer, w.type, w.id, s.owner_id, s.caption, NULL, NULL, s.expires_at
FROM want w JOIN stories s ON s.id = w.id
WHERE w.type = 'story' AND s.deleted_at IS NULL AND s.expires_at > now()
  AND story_visible_to(w.viewer, s.owner_id, s.close_friends_only)
UNION ALL
SELECT w.viewer, w.type, w.id, u.id, NULL, u.username, u.full_name, NULL
FROM want w JOIN users u ON u.id = w.id
WHERE w.type = 'user' AND user_shown(w.viewer, u.id)
"""


async def shared_items(conn: Conn, pairs: Sequence[tuple[int, str, int]]) -> dict[tuple[int, str, int], asyncpg.Record]:
    """Of these (viewer, type, id) triples, the shared items each viewer may see, with their summary."""
    if not pairs:
        return {}
    rows = await conn.fetch(_SHARED, [p[0] for p in pairs], [p[1] for p in pairs], [p[2] for p in pairs])
    return {(r["viewer"], r["type"], r["id"]): r for r in rows}


async def claim_media(conn: Conn, media_id: int, owner: int) -> bool:
    """Mark the owner's media used by a message (so the cleanup job keeps it and no post takes it);
    True if it is the owner's, not deleted, and unused or already used by messages only (sending
    the same picture again, or to another conversation)."""
    return bool(await conn.fetchval(
        "UPDATE media SET attached_at = coalesce(attached_at, now())"
        " WHERE id = $1 AND owner_id = $2 AND deleted_at IS NULL"
        "   AND (attached_at IS NULL OR EXISTS (SELECT 1 FROM messages WHERE media_id = $1))"
        " RETURNING true", media_id, owner))


async def media_seen_by(conn: Conn, media_id: int, viewer: int) -> bool:
    """Is this media in a (not deleted) message the viewer may read, of a conversation they are a
    member of?"""
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM messages m JOIN conversation_members cm"
        " ON cm.conversation_id = m.conversation_id AND cm.user_id = $2"
        f" WHERE m.media_id = $1 AND m.deleted_at IS NULL AND {readable_by('$2')})", media_id, viewer))


# ---------------------------------------------------------------- receipts

async def mark_read(conn: Conn, conversation_id: int, user_id: int, seq: int) -> tuple[int, list[int]] | None:
    """Move a member's read position up to seq (capped at the last message); (new position, the
    ids of the members the reader may reach, who are told) when it moved, None when it did not or
    they are not a member."""
    row = await conn.fetchrow(
        "UPDATE conversation_members m SET read_seq = LEAST($3, c.last_seq),"
        " delivered_seq = GREATEST(m.delivered_seq, LEAST($3, c.last_seq))"
        " FROM conversations c WHERE c.id = m.conversation_id AND m.conversation_id = $1 AND m.user_id = $2"
        " AND m.read_seq < LEAST($3, c.last_seq)"
        " RETURNING m.read_seq,"
        " (SELECT array_agg(o.user_id) FROM conversation_members o CROSS JOIN LATERAL reach($2, o.user_id) r"
        "  WHERE o.conversation_id = $1 AND r.reachable) AS member_ids",
        conversation_id, user_id, seq)
    return (row["read_seq"], list(row["member_ids"])) if row else None


async def mark_delivered_batch(conn: Conn, positions: Sequence[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Move delivered positions up, for (conversation_id, user_id, seq) triples (one per pair);
    return the ones that moved. Rows are locked in key order, as every writer of them does."""
    rows = await conn.fetch(
        """
        WITH v AS (SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS v(conversation_id, user_id, seq)),
        target AS MATERIALIZED (
            SELECT m.conversation_id, m.user_id, v.seq FROM conversation_members m
            JOIN v ON v.conversation_id = m.conversation_id AND v.user_id = m.user_id
            WHERE m.delivered_seq < v.seq
            ORDER BY m.conversation_id, m.user_id FOR UPDATE OF m
        )
        UPDATE conversation_members m SET delivered_seq = GREATEST(m.delivered_seq, t.seq)
        FROM target t WHERE m.conversation_id = t.conversation_id AND m.user_id = t.user_id
        RETURNING m.conversation_id, m.user_id, m.delivered_seq
        """,
        [p[0] for p in positions], [p[1] for p in positions], [p[2] for p in positions])
    return [(r["conversation_id"], r["user_id"], r["delivered_seq"]) for r in rows]
