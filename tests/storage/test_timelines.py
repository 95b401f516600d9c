"""Home timelines in Redis: what a push does (built timelines only, the cap and its slack)."""

from __future__ import annotations

from storage.timelines import SENTINEL, Timelines


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
