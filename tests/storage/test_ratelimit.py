"""Rate-limit counts taken together: what `RateLimiter.count` gives each request."""

from __future__ import annotations

import asyncio

import pytest

from storage.ratelimit import RateLimiter, user_key
from tests.conftest import wait_for


@pytest.mark.redis_cluster
async def test_counts_taken_together_give_each_request_its_own_count_as_one_at_a_time_would(redis_clean):
    limiter = RateLimiter(redis_clean)
    keys = [user_key(user, "h") for user in (1, 2, 3)]
    assert (await limiter.hit(keys[0], 3600)).count == 1  # the same counter as `hit`
    hits = await asyncio.gather(*(limiter.count(keys[n % 3], 3600) for n in range(30)))
    for n, key in enumerate(keys):
        counts = [hit.count for hit in hits[n::3]]
        assert counts == list(range(2, 12)) if n == 0 else list(range(1, 11))  # in arrival order, none twice
        assert int(await redis_clean.get(key)) == counts[-1]
        assert 0 < await redis_clean.pttl(key) <= 3_600_000
    assert all(0 < hit.reset_ms <= 3_600_000 and not hit.refused for hit in hits)
    assert (await limiter.count(keys[1], 3600)).count == 11  # and alone again afterwards


async def test_a_count_that_cannot_reach_redis_fails_every_request_waiting_on_it(redis_clean):
    limiter = RateLimiter(redis_clean)

    async def away(counts):
        raise ConnectionError("away")

    limiter._count_keys = away
    outcomes = await asyncio.gather(*(limiter.count(user_key(1, "h"), 3600) for _ in range(3)),
                                    return_exceptions=True)
    assert [type(o) for o in outcomes] == [ConnectionError] * 3
    del limiter._count_keys
    assert (await limiter.count(user_key(1, "h"), 3600)).count == 1


async def test_charges_far_from_the_limit_go_on_at_once_and_still_reach_redis_and_near_it_wait(redis_clean):
    limiter = RateLimiter(redis_clean)
    key = user_key(1, "h")
    limit = 40  # a headroom of 4: from 36 on each charge waits for Redis's count
    assert (await limiter.charge(key, 3600, limit)).count == 1  # nothing known yet: it waits
    sent = []
    for _ in range(34):
        before = len(limiter._pending)
        sent.append((await limiter.charge(key, 3600, limit)).count)
        if sent[-1] <= 35:
            assert len(limiter._pending) == before + 1  # went on with its count still on the way
    assert sent == list(range(2, 36))
    await wait_for(lambda: limiter._counting is None)
    assert int(await redis_clean.get(key)) == 35
    # another process's requests are known here at the next answer (the headroom is that slack);
    # near the limit every charge waits for Redis's count, which has them
    await redis_clean.incrby(key, 4)
    hits = [await limiter.charge(key, 3600, limit) for _ in range(3)]
    assert [h.count for h in hits] == [36, 41, 42]
    assert int(await redis_clean.get(key)) == 42
