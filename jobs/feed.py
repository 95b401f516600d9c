"""The feed consumer: fan-out on write into home timelines, and keeping them true to the graph.

Idempotent by construction: pushing an id twice or removing it twice leaves the same timeline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import aclosing
from dataclasses import dataclass

import asyncpg

import events
from jobs.events import handler_for
from storage import graph, outbox, timelines as tl
from storage.outbox import Event
from storage.timelines import Timelines

log = logging.getLogger("glint.feed")

MERGE_ON_FOLLOW = 50  # a new follow brings this many of the followee's recent posts


@dataclass
class FeedConsumer:
    """Reads post and graph events; writes timelines."""

    pool: asyncpg.Pool
    timelines: Timelines
    celebrity_threshold: int = 10_000
    active_days: int = 30
    name: str = "feed"
    topics: tuple[str, ...] = ("posts", "accounts")

    async def handle(self, event: Event) -> None:
        """Dispatch by event type; other types are not the feed's business."""
        handler = handler_for(self, event.type)
        if handler is not None:
            await handler(outbox.body_of(event))

    async def on_post_created(self, e: events.PostCreated) -> None:
        """Fan out to the author and their recently active followers, unless the author is a
        celebrity (their posts are merged at read time)."""
        author_id, post_id = int(e.author_id), int(e.post_id)
        started = time.perf_counter()
        if await tl.followers_count(self.pool, author_id) >= self.celebrity_threshold:
            await self.timelines.push_to_home([author_id], [post_id])
            return
        # each chunk of followers is pushed while PostgreSQL produces the next
        pushes: list[asyncio.Future[int]] = []
        targets = 0
        try:
            async with aclosing(tl.fanout_targets(self.pool, author_id, self.active_days)) as chunks:
                async for chunk in chunks:
                    targets += len(chunk)
                    pushes.append(asyncio.ensure_future(self.timelines.push_to_home(chunk, [post_id])))
        finally:  # a failed read still waits for the pushes under way (the retry pushes again)
            results = await asyncio.gather(*pushes, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        log.info("fan-out of post %s to %d/%d timelines in %.1f ms", post_id, sum(results), targets,
                 (time.perf_counter() - started) * 1000)

    async def on_follow_created(self, e: events.FollowCreated) -> None:
        """A new follow merges the followee's recent posts into the follower's timeline."""
        await self._merge(int(e.actor_id), int(e.target_id))

    async def on_follow_request_approved(self, e: events.FollowRequestApproved) -> None:
        """An approved request is a new follow."""
        await self._merge(int(e.requester_id), int(e.target_id))

    async def on_follow_removed(self, e: events.FollowRemoved) -> None:
        """An unfollow takes the author's posts out of the follower's timeline."""
        await self._unmerge(int(e.actor_id), int(e.target_id))

    async def on_kept_apart(self, e: events.KeptApart) -> None:
        """A hiding rule (a mute, a block) takes the target's posts out of the actor's timeline, and
        both ways the actor's out of the target's (reads drop them too, for what this misses or a
        fan-out that raced it)."""
        a, b = int(e.actor_id), int(e.target_id)
        await self._unmerge(a, b)
        if e.both_ways:
            await self._unmerge(b, a)

    async def on_kept_apart_no_more(self, e: events.KeptApartNoMore) -> None:
        """A lifted rule (an unmute) brings a followed account's recent posts back, as a new follow
        does (both ways when the rule was)."""
        a, b = int(e.actor_id), int(e.target_id)
        for reader, author in ((a, b), (b, a)) if e.both_ways else ((a, b),):
            if await graph.follows(self.pool, reader, author):
                await self._merge(reader, author)

    async def _merge(self, follower: int, followee: int) -> None:
        if await tl.followers_count(self.pool, followee) >= self.celebrity_threshold:
            return  # merged at read time
        posts = await tl.recent_post_ids(self.pool, followee, MERGE_ON_FOLLOW)
        if posts:
            await self.timelines.push_to_home([follower], posts)

    async def _unmerge(self, follower: int, followee: int) -> None:
        posts = await tl.recent_post_ids(self.pool, followee, self.timelines.cap)
        await self.timelines.unpush_from_home(follower, posts)
