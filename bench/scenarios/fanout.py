"""fanout: an author posts (upload, then POST /api/posts/), and the clock runs until the post is in
the timeline of every follower whose timeline is built (what fan-out on write promises; followers
without one rebuild it from PostgreSQL on their next read, which finds the post anyway).

Each client is one author taken from the seed's authors by follower count (about 10, 100, 1,000,
5,000 and just under the celebrity threshold: celebrities are merged at read, not fanned out), or
with `followers=10000,50000` the seeded accounts whose follower counts are nearest those (serve
with GLINT_CELEBRITY_THRESHOLD above them to time a fan-out on write that large).
Figures: `upload` and `post` latency; `fanout_seconds` from sending the post to the last built
follower timeline holding it (a sample of the timelines, every 50th and the last, is polled in
Redis every millisecond by a script that walks on from the first still without the post; the
moment the sample holds it counts once a walk over every timeline confirms it, and should that
walk find one without it, `fanout_sample_early` counts that and the walks time the post);
`fanout_after_response_seconds` from the 201 arriving (the post committed before it was sent) to the last timeline, so commit to last timeline lies between them; `fanout_timelines`, how many timelines each post had to reach;
`fanout_incomplete`, posts not everywhere after `wait` seconds.
With `via=feed` the clock stops instead when the post is on the first feed page of each of
`readers` (3) of the author's followers, polled every 5 ms through GET /api/posts/feed/: the
celebrity path (an author from GLINT_CELEBRITY_THRESHOLD followers up is merged into the page when
it is read, not pushed), timed the same way: `visible_seconds` from sending the post and
`visible_after_response_seconds` from the 201, to the last reader's page holding it.
Options: wait (30), pause (0.5 s between an author's posts), followers (a comma list), via
(timelines or feed), readers (3).
"""

from __future__ import annotations

import asyncio
import time

from bench.runner import ScenarioSkipped
from bench.scenarios import mint_tokens, option, require_routes
from bench.scenarios.media import jpeg, upload


# how many of KEYS, from the first, hold ARGV[1] (it stops at the first that does not)
_LEADING = """
for i = 1, #KEYS do
    if not redis.call('ZSCORE', KEYS[i], ARGV[1]) then return i - 1 end
end
return #KEYS
"""


SAMPLE_EVERY = 50  # the sample the poller watches: every 50th timeline (a push script covers 1,000)


def spread(items: list, count: int) -> list:
    """Up to `count` of the items, evenly spaced from the first."""
    step = max(len(items) // max(count, 1), 1)
    return items[::step][:count]


async def prepare(target, options) -> dict:
    import asyncpg

    await require_routes(target.url, "POST /api/media/", "POST /api/posts/")
    authors = [a["id"] for a in target.manifest.get("authors", [])]
    wanted = [int(n) for n in str(option(options, "followers", "")).split(",") if n.strip()]
    if not authors and not wanted:
        raise ScenarioSkipped("the seed manifest names no authors: run `glint bench seed`")
    conn = await asyncpg.connect(options.database_url)
    try:
        if wanted:
            authors = [await conn.fetchval("SELECT id FROM users WHERE is_active"
                                           " ORDER BY abs(followers_count - $1), id LIMIT 1", n) for n in wanted]
        rows = await conn.fetch("SELECT followee_id, array_agg(follower_id) AS followers FROM follows"
                                " WHERE followee_id = ANY($1::bigint[]) GROUP BY followee_id", authors)
    finally:
        await conn.close()
    followers = {r["followee_id"]: list(r["followers"]) for r in rows}
    via = str(option(options, "via", "timelines"))
    if via not in ("timelines", "feed"):
        raise ValueError(f"via={via}: timelines or feed")
    count = int(option(options, "readers", 3))
    # the readers of an author's posts: followers spread over the list
    readers = {str(a): spread(sorted(followers.get(a, [])), count) for a in authors} if via == "feed" else {}
    reader_ids = sorted({r for rs in readers.values() for r in rs})
    return {"authors": authors, "followers": {str(a): followers.get(a, []) for a in authors}, "via": via,
            "readers": readers, "reader_tokens": dict(zip(map(str, reader_ids),
                                                          mint_tokens(options.jwt_secret, reader_ids, options.token_ttl))),
            "tokens": dict(zip(map(str, authors), mint_tokens(options.jwt_secret, authors, options.token_ttl))),
            "jpeg": jpeg(320, 240), "wait": float(option(options, "wait", 30.0)),
            "pause": float(option(options, "pause", 0.5))}


async def setup(ctx):
    from redis.asyncio import Redis

    return Redis.from_url(ctx.options.redis_url)


async def teardown(ctx, redis) -> None:
    await redis.aclose()


async def work(ctx, redis) -> None:
    from storage.timelines import Timelines

    authors = ctx.plan["authors"]
    leading = redis.register_script(_LEADING)

    async def built(keys: list[str]) -> list[str]:
        async with redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.exists(key)
            return [k for k, e in zip(keys, await pipe.execute()) if e]

    async def present(keys: list[str], member: str) -> int:
        # how many of the timelines, from the first, hold the post, in script calls of 1,000
        # (it stops at the first that does not)
        done = 0
        while done < len(keys):
            chunk = keys[done:done + 1000]
            held = await leading(keys=chunk, args=[member])
            done += held
            if held < len(chunk):
                break
        return done

    async def on_pages(readers: list[str], member: str) -> None:
        # each reader's first feed page, polled until it holds the post
        waiting = list(readers)
        while waiting:
            pages = await asyncio.gather(*(ctx.request("feed", "GET", "/api/posts/feed/?limit=5", token=token)
                                           for token in waiting))
            waiting = [t for t, page in zip(waiting, pages) if not page or member not in [p["id"] for p in page["results"]]]
            if waiting:
                await asyncio.sleep(0.005)

    async def post_once(number: int, token: str) -> tuple[str, float, float] | None:
        # upload, then post: the post's id, when it was sent and when its 201 came (None on a failure)
        media = await upload(ctx, token)
        if not media:
            return None
        sent = time.perf_counter()
        post = await ctx.request("post", "POST", "/api/posts/", token=token,
                                 json={"caption": f"bench fan-out {number}", "media_ids": [media["id"]]}, expect=(201,))
        return (post["id"], sent, time.perf_counter()) if post else None

    async def client(number: int) -> None:
        author = authors[number % len(authors)]
        token = ctx.plan["tokens"][str(author)]
        if ctx.plan["via"] == "feed":
            await client_via_feed(number, author, token)
            return
        keys = await built([Timelines.key(f) for f in ctx.plan["followers"][str(author)]] + [Timelines.key(author)])
        posted = await post_once(number, token)
        if not posted:
            return
        member, sent, committed = posted
        # watch a sample (every SAMPLE_EVERY-th timeline and the last) every millisecond, walking on
        # from its first timeline still without the post: a few hundred lookups in all, not the
        # 10,000 a walk over every timeline costs the Redis that is being timed. The moment the
        # sample is complete is the figure once a walk over every timeline confirms it; should
        # that walk find one without the post, the clock runs on until a walk finds none.
        sample = keys[SAMPLE_EVERY - 1::SAMPLE_EVERY] + keys[-1:]
        seen = done = 0
        finished = time.perf_counter() if not keys else None
        while done < len(keys) and time.perf_counter() - sent < ctx.plan["wait"]:
            if seen < len(sample):
                seen += await present(sample[seen:], member)
                if seen < len(sample):
                    await asyncio.sleep(0.001)
                    continue
                finished = time.perf_counter()
            done += await present(keys[done:], member)
            if done < len(keys):  # the sample was complete before the rest: the walks time it
                ctx.value("fanout_sample_early", 1)
                finished = None
                await asyncio.sleep(0.001)
            elif finished is None:
                finished = time.perf_counter()
        if done < len(keys):
            ctx.value("fanout_incomplete", len(keys) - done)
        else:
            ctx.value("fanout_seconds", finished - sent)
            ctx.value("fanout_after_response_seconds", finished - committed)
        ctx.value("fanout_timelines", len(keys))
        await asyncio.sleep(ctx.plan["pause"])

    async def client_via_feed(number: int, author: int, token: str) -> None:
        readers = [ctx.plan["reader_tokens"][str(r)] for r in ctx.plan["readers"][str(author)]]
        posted = await post_once(number, token) if readers else None
        if not posted:
            return
        member, sent, committed = posted
        try:
            await asyncio.wait_for(on_pages(readers, member), ctx.plan["wait"])
        except asyncio.TimeoutError:
            ctx.value("fanout_incomplete", 1)
        else:
            done = time.perf_counter()
            ctx.value("visible_seconds", done - sent)
            ctx.value("visible_after_response_seconds", done - committed)
        await asyncio.sleep(ctx.plan["pause"])

    await ctx.each_client(client)
