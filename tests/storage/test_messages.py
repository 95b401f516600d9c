"""The group-commit writer (storage/messages.py `write_batch`): a batch of drafts is one statement,
numbers each conversation's messages without gaps in draft order (also under concurrent batches),
and judges each draft on its own, so a refused draft never takes the others of its batch down."""

from __future__ import annotations

import asyncio
import itertools

import asyncpg
import pytest

from storage import graph
from storage import messages as store
from storage.messages import Draft
from storage.users import create_user_txn
from tests.conftest import wait_for

_names = itertools.count(1)
_client_ids = itertools.count(1)


async def new_users(pool: asyncpg.Pool, n: int) -> list[int]:
    async with pool.acquire() as conn:
        rows = [await create_user_txn(conn, f"writer{i}", f"writer{i}@example.com", "not-a-hash", "")
                for i in (next(_names) for _ in range(n))]
    return [row["id"] for row in rows]


async def group(pool: asyncpg.Pool, creator: int, *members: int) -> int:
    async with pool.acquire() as conn, conn.transaction():
        return await store.create_group_txn(conn, creator, list(members), "")


def draft(conversation_id: int, sender_id: int, text: str = "hi", *, client_id: str | None = None,
          reply_to_seq: int | None = None) -> Draft:
    return Draft(conversation_id, sender_id, client_id or f"c{next(_client_ids)}", text, None, reply_to_seq)


async def seqs(pool: asyncpg.Pool, conversation_id: int) -> list[int]:
    return [r["seq"] for r in await pool.fetch(
        "SELECT seq FROM messages WHERE conversation_id = $1 ORDER BY seq", conversation_id)]


async def test_a_batch_is_one_statement_numbering_each_conversation_in_draft_order(pool):
    a, b, c = await new_users(pool, 3)
    g = await group(pool, a, b)
    d, _ = await store.get_or_create_direct(pool, a, c)
    drafts = [draft(g, a, "g1"), draft(d, a, "d1"), draft(g, b, "g2"), draft(g, a, "g3"), draft(d, c, "d2")]
    statements: list[str] = []
    async with pool.acquire() as conn:
        assert await store.write_batch(conn, []) == []  # asyncpg's own type introspection happens here
        conn.add_query_logger(lambda record: statements.append(record.query))
        written = await store.write_batch(conn, drafts)
    assert len(statements) == 1
    assert [w.status for w in written] == ["ok"] * 5
    assert [(w.message["conversation_id"], w.message["seq"], w.message["text"]) for w in written] == [
        (g, 1, "g1"), (d, 1, "d1"), (g, 2, "g2"), (g, 3, "g3"), (d, 2, "d2")]
    assert await pool.fetchval("SELECT last_seq FROM conversations WHERE id = $1", g) == 3
    assert await pool.fetchval("SELECT last_seq FROM conversations WHERE id = $1", d) == 2
    assert sorted(written[0].member_ids) == sorted([a, b])


async def test_a_refused_draft_takes_no_number_and_does_not_stop_the_others_of_its_batch(pool):
    a, b, outsider, blocker = await new_users(pool, 4)
    g = await group(pool, a, b)
    d, _ = await store.get_or_create_direct(pool, a, blocker)
    async with pool.acquire() as conn, conn.transaction():
        await graph.add_block_txn(conn, blocker, a)
    drafts = [draft(g, a, "first"), draft(g, outsider, "not a member"), draft(g, b, "bad reply", reply_to_seq=99),
              draft(d, a, "blocked"), draft(g, b, "second")]
    written = await store.write_batch(pool, drafts)
    assert [w.status for w in written] == ["ok", "not_member", "bad_reply", "blocked", "ok"]
    assert [w.message is None for w in written] == [False, True, True, True, False]
    assert [w.message["seq"] for w in (written[0], written[4])] == [1, 2]
    assert await seqs(pool, g) == [1, 2]
    assert await seqs(pool, d) == []


async def test_a_draft_sent_again_is_a_duplicate_of_the_original_and_takes_no_number(pool):
    a, b = await new_users(pool, 2)
    g = await group(pool, a, b)
    [first] = await store.write_batch(pool, [draft(g, a, "once", client_id="same")])
    again, other = await store.write_batch(pool, [draft(g, a, "twice", client_id="same"), draft(g, b, "next")])
    assert (again.status, again.message["id"], again.message["text"]) == ("duplicate", first.message["id"], "once")
    assert (other.status, other.message["seq"]) == ("ok", 2)
    assert await seqs(pool, g) == [1, 2]


async def test_concurrent_batches_number_every_conversation_without_gaps_or_deadlocks(pool):
    users = await new_users(pool, 3)
    conversations = [await group(pool, users[0], *users[1:]) for _ in range(3)]
    batches = [[draft(conversations[(i + k) % 3] if i % 2 else conversations[(i - k) % 3], users[k % 3],
                      f"{i}.{k}") for k in range(6)]
               for i in range(8)]  # each batch touches the conversations in its own order

    async def write(drafts: list[Draft]) -> list[store.Written]:
        async with pool.acquire() as conn:
            return await store.write_batch(conn, drafts)

    results = await asyncio.gather(*(write(b) for b in batches))
    stored = [await seqs(pool, conversation_id) for conversation_id in conversations]
    assert all(s == list(range(1, len(s) + 1)) for s in stored)
    assert sum(map(len, stored)) == 8 * 6
    for written in results:  # within a batch, one conversation's drafts are numbered in draft order
        assert all(w.status == "ok" for w in written)
        for conversation_id in conversations:
            mine = [w.message["seq"] for w in written if w.message["conversation_id"] == conversation_id]
            assert mine == sorted(mine)


async def test_sending_reads_up_to_ones_own_message_and_accepts_a_request(pool):
    a, b, c = await new_users(pool, 3)
    g = await group(pool, a, b, c)  # b and c follow nobody: the group is a request for them
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("UPDATE conversation_members SET muted = true WHERE conversation_id = $1 AND user_id = $2",
                           g, a)
    [from_a] = await store.write_batch(pool, [draft(g, a, "welcome")])
    assert from_a.quiet_ids == frozenset({a, b, c})  # muted, or not accepted yet
    await store.write_batch(pool, [draft(g, b, "thanks")])
    row = await pool.fetchrow("SELECT read_seq, delivered_seq, accepted FROM conversation_members"
                              " WHERE conversation_id = $1 AND user_id = $2", g, b)
    assert tuple(row) == (2, 2, True)
    [again] = await store.write_batch(pool, [draft(g, a, "glad you came")])
    assert again.quiet_ids == frozenset({a, c})


async def test_the_same_draft_stored_meanwhile_by_another_writer_fails_whole_then_a_retry_finds_it(pool):
    a, b = await new_users(pool, 2)
    g = await group(pool, a, b)
    async with pool.acquire() as first, pool.acquire() as second:
        waiting_pid = second.get_server_pid()
        async with first.transaction():
            await store.write_batch(first, [draft(g, a, "mine", client_id="raced")])
            racing = asyncio.ensure_future(store.write_batch(second, [draft(g, b, "other"),
                                                                      draft(g, a, "mine", client_id="raced")]))

            async def second_waits_for_the_lock() -> bool:
                return await pool.fetchval("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1",
                                           waiting_pid) is True

            await wait_for(second_waits_for_the_lock)
        with pytest.raises(asyncpg.UniqueViolationError):
            await racing
        assert await seqs(pool, g) == [1]  # the failed statement changed nothing, b's draft included
        other, retried = await store.write_batch(second, [draft(g, b, "other"), draft(g, a, "mine", client_id="raced")])
    assert (other.status, other.message["seq"]) == ("ok", 2)
    assert (retried.status, retried.message["seq"]) == ("duplicate", 1)


async def test_messages_holding_a_media_item_are_found_by_index_not_by_reading_every_message(pool):
    a, b = await new_users(pool, 2)
    g = await group(pool, a, b)
    sent, other = await pool.fetchval(
        "INSERT INTO media (owner_id, kind, content_type, size_bytes, original_key, attached_at)"
        " VALUES ($1, 'image', 'image/jpeg', 1, 'k', now()) RETURNING id", a), 1
    # a conversation's worth of history, one message in a hundred with media, one of them `sent`
    await pool.execute(
        "INSERT INTO messages (conversation_id, seq, sender_id, client_id, text, media_id)"
        " SELECT $1, s, $2, 'seed' || s, 'hello', CASE WHEN s = 20000 THEN $3::bigint WHEN s % 100 = 0 THEN s END"
        " FROM generate_series(1, 20000) s", g, a, sent)
    await pool.execute("ANALYZE messages")
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")  # as planned for any media id
        assert await store.media_seen_by(conn, sent, b)
        assert not await store.media_seen_by(conn, other, b)
        assert await store.claim_media(conn, sent, a)  # sent before, by messages only: may be sent again
        scans = await conn.fetchrow(
            "SELECT pg_stat_get_xact_numscans('messages'::regclass) AS whole,"
            " pg_stat_get_xact_numscans(to_regclass('messages_media')) AS by_media")
    assert scans["whole"] == 0 and scans["by_media"] == 3
