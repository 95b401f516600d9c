"""fanout: an author posts (upload, then POST /api/posts/), and the clock runs until the post is in
the timeline of every follower whose timeline is built (what fan-out on write promises; followers
without one rebuild it from PostgreSQL on their next read, which finds the post anyway).

Each client is one author taken from the seed's authors by follower count (about 10, 100, 1,000,
5,000 and just under the celebrity threshold: celebrities are merged at read, not fanned out).
Figures: `upload` and `post` latency; `fanout_seconds` from sending the post to the last built
follower timeline holding it (polled in Redis every 5 ms, pipelined); `fanout_timelines`, how many
timelines each post had to reach; `fanout_incomplete`, posts not everywhere after `wait` seconds.
Options: wait (30), pause (0.5 s between an author's posts).
"""

from __future__ import annotations

import asyncio
import time

from bench.runner import ScenarioSkipped
from bench.scenarios import mint_tokens, option, require_routes
from bench.scenarios.media import jpeg, upload


async def prepare(target, options) -> dict:
    import asyncpg

    await require_routes(target.url, "POST /api/media/", "POST /api/posts/")
    authors = [a["id"] for a in target.manifest.get("authors", [])]
    if not authors:
        raise ScenarioSkipped("the seed manifest names no authors: run `glint bench seed`")
    conn = await asyncpg.connect(options.database_url)
    try:
        rows = await conn.fetch("SELECT followee_id, array_agg(follower_id) AS followers FROM follows"
                                " WHERE followee_id = ANY($1::bigint[]) GROUP BY followee_id", authors)
    finally:
        await conn.close()
    followers = {r["followee_id"]: list(r["followers"]) for r in rows}
    return {"authors": authors, "followers": {str(a): followers.get(a, []) for a in authors},
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

    async def built(keys: list[str]) -> list[str]:
        async with redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.exists(key)
            return [k for k, e in zip(keys, await pipe.execute()) if e]

    async def client(number: int) -> None:
        author = authors[number % len(authors)]
        token = ctx.plan["tokens"][str(author)]
        keys = await built([Timelines.key(f) for f in ctx.plan["followers"][str(author)]] + [Timelines.key(author)])
        media = await upload(ctx, token)
        if not media:
            return
        sent = time.perf_counter()
        post = await ctx.request("post", "POST", "/api/posts/", token=token,
                                 json={"caption": f"bench fan-out {number}", "media_ids": [media["id"]]}, expect=(201,))
        if not post:
            return
        member = post["id"]
        waiting = keys
        while waiting and time.perf_counter() - sent < ctx.plan["wait"]:
            async with redis.pipeline(transaction=False) as pipe:
                for key in waiting:
                    pipe.zscore(key, member)
                scores = await pipe.execute()
            waiting = [k for k, s in zip(waiting, scores) if s is None]
            if waiting:
                await asyncio.sleep(0.005)
        if waiting:
            ctx.value("fanout_incomplete", len(waiting))
        else:
            ctx.value("fanout_seconds", time.perf_counter() - sent)
        ctx.value("fanout_timelines", len(keys))
        await asyncio.sleep(ctx.plan["pause"])

    await ctx.each_client(client)
