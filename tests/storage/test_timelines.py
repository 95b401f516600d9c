"""Home timelines in Redis: what a push does (built timelines only, the cap and its slack); the
celebrity list the home page merges from."""

from __future__ import annotations

import asyncio

from storage import graph, timelines as tl
from storage.timelines import SENTINEL, Timelines
from tests.conftest import wait_for
from tests.support import user_with_token


async def test_a_push_reaches_only_built_timelines_whatever_its_chunks(redis_clean):
    timelines = Timelines(redis_clean, cap=50)
    users = list(range(1, 26))
    for user in users[::2]:
        await timelines.store_home(user, [])
    assert await timelines.push_to_home(users, [7, 9], chunk=4) == 13
    for user in users:
        assert await timelines.read_home(user, None, 10) == ([9, 7] if user % 2 else None)
    assert await timelines.push_to_home(users, [9], chunk=4) == 13  # again: the same timelines
    assert await timelines.read_home(1, None, 10) == [9, 7]


async def test_a_pushed_timeline_grows_at_most_a_slack_past_its_cap_then_is_trimmed_back(redis_clean):
    timelines = Timelines(redis_clean, cap=16)
    assert timelines.slack == 2
    await timelines.store_home(1, [])
    sizes = []
    for post in range(1, 41):
        await timelines.push_to_home([1], [post])
        sizes.append(await redis_clean.zcard(Timelines.key(1)) - 1)  # less the sentinel
    assert max(sizes) == 16 + 2
    assert sizes[14:20] == [15, 16, 17, 18, 16, 17]  # the cap, the slack, back to the cap
    ids = await timelines.read_home(1, None, 100)
    assert ids == list(range(40, 40 - len(ids), -1))  # the newest, without a gap
    assert await redis_clean.zscore(Timelines.key(1), SENTINEL) == 0


async def test_a_push_of_many_posts_leaves_the_newest_cap_of_them(redis_clean):
    timelines = Timelines(redis_clean, cap=16)
    await timelines.store_home(1, [1, 2, 3])
    assert await timelines.push_to_home([1], list(range(100, 150))) == 1
    assert await timelines.read_home(1, None, 100) == list(range(149, 133, -1))


async def test_lowering_the_celebrity_floor_waits_for_a_follow_in_flight_and_lists_its_account(client, pool):
    fan, _ = await user_with_token(client)
    star, _ = await user_with_token(client)
    fan_id, star_id = int(fan["id"]), int(star["id"])
    assert await pool.fetchval("SELECT followers FROM celebrity_floor") > 1
    async with pool.acquire() as following, pool.acquire() as lowering:
        transaction = following.transaction()
        await transaction.start()
        await graph.lock_users_txn(following, [fan_id, star_id])
        assert await graph.add_follow_txn(following, fan_id, star_id)  # star's first follower, under the old floor
        keep = asyncio.ensure_future(tl.keep_celebrities(lowering, 1))
        waiting = lowering.get_server_pid()
        await wait_for(lambda: pool.fetchval("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1",
                                             waiting))
        assert not keep.done()
        await transaction.commit()
        await keep
    assert await pool.fetchval("SELECT followers FROM celebrity_floor") == 1
    assert await pool.fetchval("SELECT count(*) FROM celebrities WHERE user_id = $1", star_id) == 1


async def test_processes_lowering_the_celebrity_floor_at_once_take_turns(client, pool):
    fan, _ = await user_with_token(client)
    star, _ = await user_with_token(client)
    async with pool.acquire() as conn:
        async with conn.transaction():
            await graph.lock_users_txn(conn, [int(fan["id"]), int(star["id"])])
            await graph.add_follow_txn(conn, int(fan["id"]), int(star["id"]))
    async with pool.acquire() as a, pool.acquire() as b:
        for _ in range(10):
            await pool.execute("UPDATE celebrity_floor SET followers = 1000000")
            await asyncio.gather(tl.keep_celebrities(a, 1), tl.keep_celebrities(b, 2))  # neither deadlocks
    assert await pool.fetchval("SELECT followers FROM celebrity_floor") == 1
    assert await pool.fetchval("SELECT count(*) FROM celebrities WHERE user_id = $1", int(star["id"])) == 1


async def test_a_follow_waiting_on_a_lowering_of_the_floor_is_listed_by_the_floor_it_lowered_to(client, pool):
    fan, _ = await user_with_token(client)
    star, _ = await user_with_token(client)
    fan_id, star_id = int(fan["id"]), int(star["id"])
    async with pool.acquire() as lowering, pool.acquire() as following:
        transaction = lowering.transaction()  # keep_celebrities, held between its steps
        await transaction.start()
        await lowering.execute("LOCK TABLE celebrities IN SHARE ROW EXCLUSIVE MODE")
        await lowering.execute("UPDATE celebrity_floor SET followers = 1")

        async def follow() -> None:
            async with following.transaction():
                await graph.lock_users_txn(following, [fan_id, star_id])
                await graph.add_follow_txn(following, fan_id, star_id)

        followed = asyncio.ensure_future(follow())
        await wait_for(lambda: pool.fetchval("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1",
                                             following.get_server_pid()))
        await tl.list_celebrities(lowering)  # the follow is not committed: the backfill cannot see it
        await transaction.commit()
        await followed
    # the follow's listing waited for the lock, then read the lowered floor
    assert await pool.fetchval("SELECT count(*) FROM celebrities WHERE user_id = $1", star_id) == 1


async def test_a_count_raised_by_any_writer_lists_the_account(client, pool):
    star, _ = await user_with_token(client)
    async with pool.acquire() as conn:
        await tl.keep_celebrities(conn, 5)
    await pool.execute("UPDATE users SET followers_count = 4 WHERE id = $1", int(star["id"]))
    assert await pool.fetchval("SELECT count(*) FROM celebrities") == 0
    await pool.execute("UPDATE users SET followers_count = 5 WHERE id = $1", int(star["id"]))  # SQL by hand
    assert await pool.fetchval("SELECT user_id FROM celebrities") == int(star["id"])
