"""The message writer's lanes (realtime/delivery.py `MessageWriter`): drafts are stored by one lane
per conversation id modulo the lane count, so each conversation keeps its order and gapless seqs
under concurrent senders, a draft sent twice at once (into one lane or two) is stored once, and
one lane's batch never waits for another lane's commit."""

from __future__ import annotations

import asyncio
import itertools
import random

import asyncpg

from realtime.delivery import MessageWriter
from storage import messages as store
from storage.messages import Draft
from storage.users import create_user_txn

_names = itertools.count(1)


class Publisher:
    """What the writer hands to the bus: kept, so a test sees each publication in order."""

    def __init__(self) -> None:
        self.items: list[tuple[int, bytes]] = []

    def submit(self, items: list[tuple[int, bytes]], done=None) -> None:
        self.items.extend(items)


class Gateway:
    """A gateway with no sockets of its own: every frame goes to the bus."""

    process_id = "test"

    def __init__(self) -> None:
        self.publisher = Publisher()

    def push_here(self, user_id, frame, *, exclude=None, delivery=None) -> int:
        return 0


async def users_in_groups(pool: asyncpg.Pool, people: int, groups: int) -> tuple[list[int], list[int]]:
    """`people` users, all members of each of `groups` groups (ids taken until every lane has one)."""
    async with pool.acquire() as conn, conn.transaction():
        users = [(await create_user_txn(conn, f"lane{n}", f"lane{n}@example.com", "not-a-hash", ""))["id"]
                 for n in (next(_names) for _ in range(people))]
        conversations = [await store.create_group_txn(conn, users[0], users[1:], "") for _ in range(groups)]
    return users, conversations


async def texts(pool: asyncpg.Pool, conversation_id: int) -> list[tuple[int, str]]:
    return [(r["seq"], r["text"]) for r in await pool.fetch(
        "SELECT seq, text FROM messages WHERE conversation_id = $1 ORDER BY seq", conversation_id)]


async def test_each_conversation_keeps_its_order_and_gapless_seqs_under_concurrent_senders_in_every_lane(pool):
    users, conversations = await users_in_groups(pool, 4, 10)
    writer = MessageWriter(pool, Gateway(), lanes=4)
    assert len({c % 4 for c in conversations}) == 4  # every lane has work
    writer.start()
    try:
        rng = random.Random(7)
        sent: dict[int, list[str]] = {c: [] for c in conversations}
        futures = []
        for n in range(400):  # submitted in one go, interleaved over conversations and senders
            conversation_id, sender = rng.choice(conversations), rng.choice(users)
            text = f"{sender}:{n}"
            sent[conversation_id].append(text)
            futures.append(writer.submit(Draft(conversation_id, sender, f"lanes-{n}", text, None, None), None))
            if n % 37 == 0:
                await asyncio.sleep(0)  # some batches start before the rest is queued
        written = await asyncio.gather(*futures)
    finally:
        await writer.stop()
    assert all(w.status == "ok" for w in written)
    for conversation_id in conversations:
        stored = await texts(pool, conversation_id)
        assert [seq for seq, _ in stored] == list(range(1, len(sent[conversation_id]) + 1))
        assert [text for _, text in stored] == sent[conversation_id]  # in submit order
    assert writer.stats["messages"] == 400
    assert writer.stats["batches"] < 400  # batched, not one statement per draft
    # each conversation's frames go to the bus in seq order too
    published: dict[int, list[int]] = {}
    for _, envelope in writer.gateway.publisher.items:
        head = envelope.split(b"\n", 1)[0].split(b"|")
        if head[0] == b"m":
            seqs = published.setdefault(int(head[2]), [])
            if not seqs or seqs[-1] != int(head[3]):  # one envelope per member: a seq repeats
                seqs.append(int(head[3]))
    assert published == {c: list(range(1, len(sent[c]) + 1)) for c in conversations}


async def two_lanes(pool: asyncpg.Pool) -> tuple[list[int], int, int, MessageWriter]:
    """Users, a conversation of lane 0 and one of lane 1, and a started writer of two lanes."""
    users, conversations = await users_in_groups(pool, 2, 8)
    first = {c % 2: c for c in reversed(conversations)}
    writer = MessageWriter(pool, Gateway(), lanes=2)
    writer.start()
    return users, first[0], first[1], writer


async def test_a_draft_sent_twice_at_once_is_stored_once_whichever_lanes_take_it(pool):
    users, same_lane, other_lane, writer = await two_lanes(pool)
    try:
        sender = users[1]
        for round_ in range(5):
            client_id = f"twice-{round_}"
            # the same client id into one conversation twice, and into a conversation of the other lane
            futures = [writer.submit(Draft(c, sender, client_id, "once", None, None), None)
                       for c in (same_lane, other_lane, same_lane)]
            written = await asyncio.gather(*futures)
            assert sorted(w.status for w in written) == ["duplicate", "duplicate", "ok"]
            assert len({w.message["id"] for w in written}) == 1  # every one answers with the original
            assert await pool.fetchval("SELECT count(*) FROM messages WHERE sender_id = $1 AND client_id = $2",
                                       sender, client_id) == 1
    finally:
        await writer.stop()
    for conversation_id in (same_lane, other_lane):
        seqs = [seq for seq, _ in await texts(pool, conversation_id)]
        assert seqs == list(range(1, len(seqs) + 1))  # no number taken by a duplicate


async def test_a_lane_stores_its_batch_while_another_lane_waits_for_its_commit(pool):
    users, blocked, free, writer = await two_lanes(pool)
    try:
        async with pool.acquire() as conn, conn.transaction():
            # another writer holds the conversation's row lock: lane 0's statement waits for it
            await conn.execute("SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE", blocked)
            waiting = writer.submit(Draft(blocked, users[0], "held", "held", None, None), None)
            stored = await asyncio.wait_for(writer.submit(Draft(free, users[0], "free", "free", None, None), None), 5)
            assert stored.status == "ok"
            assert not waiting.done()
        assert (await asyncio.wait_for(waiting, 5)).status == "ok"
    finally:
        await writer.stop()


async def test_the_batch_statement_planned_on_a_fresh_database_finds_messages_by_index_not_by_scanning(database_url):
    """The writer's connections plan the batch statement once, often while the tables are small;
    the plan must still be one for large tables, or each batch reads every message stored."""
    from storage import db

    store_pool = await db.create_pool(database_url, min_size=0, max_size=1, generic_plans=True)
    try:
        async with store_pool.acquire() as conn:
            # the generic plan of a statement with parameters, without values for them
            await conn.execute("CREATE FUNCTION pg_temp.plan_of(q text) RETURNS SETOF text LANGUAGE plpgsql"
                               " AS $$ BEGIN RETURN QUERY EXECUTE 'EXPLAIN (GENERIC_PLAN) ' || q; END $$")
            plan = "\n".join(await conn.fetchval("SELECT array_agg(p) FROM pg_temp.plan_of($1) p", store._WRITE_BATCH))
            # the same statement on a connection that may scan: the plan a small table gets
            await conn.execute("SET enable_seqscan = on")
            scanning = "\n".join(await conn.fetchval("SELECT array_agg(p) FROM pg_temp.plan_of($1) p",
                                                     store._WRITE_BATCH))
    finally:
        await store_pool.close()
    assert "Seq Scan on messages" in scanning
    assert "Seq Scan on messages" not in plan and "messages_sender_client" in plan
    assert "Seq Scan on conversation_members" not in plan and "Seq Scan on conversations" not in plan


async def test_a_batch_locks_its_senders_member_rows_in_key_order_so_the_receipt_writer_never_deadlocks_with_it(pool):
    """The receipt writer locks member rows in (conversation, user) order; a batch moves its senders'
    rows (they have read up to their own message) and must take them in that order too, after its
    conversations: taken in the join's order they deadlocked, and every lane behind the batch
    waited out PostgreSQL's deadlock timeout."""
    users, conversations = await users_in_groups(pool, 2, 12)
    rows = sorted((c, users[n % 2]) for n, c in enumerate(conversations))  # the senders' rows in key order
    async with pool.acquire() as receipts, receipts.transaction():
        # the receipt writer holds the first row in key order and is about to take the others
        lock = "SELECT 1 FROM conversation_members WHERE conversation_id = $1 AND user_id = $2 FOR UPDATE"
        await receipts.execute(lock, *rows[0])
        batch = asyncio.create_task(store.write_batch(pool, [
            Draft(c, u, f"order-{c}", "in reverse", None, None) for c, u in reversed(rows)]))
        for _ in range(500):  # until the batch waits for a lock (it then holds whatever it took before)
            # (asked on another connection: a transaction sees the backends as they were at its start)
            waiting = await pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%WITH input AS%'")
            if waiting:
                break
            await asyncio.sleep(0.01)
        assert waiting == 1 and not batch.done()
        await receipts.execute("SET LOCAL lock_timeout = '5s'")
        for row in rows[1:]:  # the batch has taken none of the later rows: it waits for the first
            await receipts.execute(lock, *row)
    written = await asyncio.wait_for(batch, 5)
    assert [w.status for w in written] == ["ok"] * len(rows)
    assert await pool.fetchval("SELECT count(*) FROM conversation_members WHERE read_seq = 1") == len(rows)


async def test_the_app_writes_messages_in_as_many_lanes_as_GLINT_MESSAGE_WRITER_LANES(aiohttp_client, stack_env,
                                                                                     database_url, redis_url, redis_clean):
    from app.main import create_app
    from realtime.delivery import writer_key
    from tests.conftest import make_config

    default = await aiohttp_client(create_app(make_config(stack_env, database_url=database_url, redis_url=redis_url)))
    assert len(default.app[writer_key].lanes) == 1
    config = make_config({**stack_env, "GLINT_MESSAGE_WRITER_LANES": "3"}, database_url=database_url,
                         redis_url=redis_url)
    client = await aiohttp_client(create_app(config))
    writer = client.app[writer_key]
    assert len(writer.lanes) == 3 and writer.store_pool.get_max_size() == 3
