"""The home feed and explore."""

from __future__ import annotations

from aiohttp import web

from handlers.auth import Identity, current_user, first_read, ridden
from handlers.common import (
    InvalidCursor, Page, PageRequest, Routes, encode_cursor, json_response, next_link, page_request, read_pool,
)
from handlers.context import config_key, pool_key, redis_key, timelines_key
from handlers.posts import PostOut, cursor_id, render_live
from storage import explore, timelines as tl
from storage.cluster import is_cluster
from storage.posts import LivePage
from storage.ratelimit import Rider
from storage.timelines import Timelines

routes = Routes("feed")


async def home_feed_page(timelines: Timelines, pool, viewer: int, before: int | None, count: int,
                         celebrity_threshold: int, read: list | None = None) -> LivePage:
    """Up to `count` posts of the viewer's home feed below `before`, with the live part of those
    the viewer may see: the timeline (rebuilt from PostgreSQL when missing, never shown empty)
    merged with followed celebrities' recent posts. `read`: the timeline's read already made
    (Timelines.home_rider's reply)."""
    ids = timelines.home_of(read, before, count) if read is not None else await timelines.read_home(viewer, before, count)
    if ids is None:
        rebuilt = await tl.rebuild_ids(pool, viewer, celebrity_threshold, timelines.cap)
        await timelines.store_home(viewer, rebuilt)
        ids = [i for i in rebuilt if before is None or i < before][:count]
    return await tl.home_page(pool, viewer, ids, celebrity_threshold, before, count)


def timeline_read(request: web.Request, identity: Identity) -> Rider:
    """The feed's first read, its page of the timeline (and on one Redis node the posts' cache
    entries), made with the rate limit (first_read)."""
    page = page_request(request)
    return request.app[timelines_key].home_rider(identity.user_id, cursor_id(request, page.cursor), page.limit + 1,
                                                 with_posts=not is_cluster(request.app[redis_key]))


@routes.route("GET", "/api/posts/feed/", response=Page[PostOut], query={"limit": "page size", "cursor": "from `next`"})
@first_read(timeline_read)
async def home_feed(request: web.Request) -> web.Response:
    """The viewer's home feed, newest first."""
    viewer = current_user(request)
    page = page_request(request)
    before = cursor_id(request, page.cursor)
    config = request.app[config_key]
    read = ridden(request)
    found = await home_feed_page(request.app[timelines_key], request.app[pool_key], viewer, before,
                                 page.limit + 1, config.feed.celebrity_threshold, read)
    shown = found.ids[: page.limit]
    results = await render_live(request, found.live, shown, Timelines.cached_of(read) if read is not None else None)
    next_url = None
    if len(found.ids) > page.limit:
        # the cursor is the last id considered, shown or hidden, so no post is skipped or repeated
        next_url = next_link(request, page.limit, cursor=encode_cursor(shown[-1]))
    return json_response(Page(results=results, next=next_url))


def explore_offset(request: web.Request, page: PageRequest) -> int:
    """Where explore's page starts: the offset in its cursor, within the ranking (at most
    explore.SIZE long; past it Redis would overflow offset + limit and the page is none)."""
    offset = cursor_id(request, page.cursor) or 0
    if offset > explore.SIZE:
        raise InvalidCursor()
    return offset


def ranking_read(request: web.Request, identity: Identity) -> Rider | None:
    """Explore's first read, its slice of the ranking, made with the rate limit on one Redis node (first_read)."""
    if is_cluster(request.app[redis_key]):
        return None
    page = page_request(request)
    return explore.trending_rider(explore_offset(request, page), page.limit)


@routes.route("GET", "/api/posts/explore/", response=Page[PostOut], query={"limit": "page size", "cursor": "from `next`"})
@first_read(ranking_read)
async def explore_feed(request: web.Request) -> web.Response:
    """Trending posts from public accounts the viewer does not follow (the newest ones while none trend)."""
    viewer = current_user(request)
    page = page_request(request)
    offset = explore_offset(request, page)
    pool = await read_pool(request)
    read = ridden(request)
    ranked = (explore.ridden_trending_of(read) if read is not None
              else await explore.read_trending(request.app[redis_key], offset, page.limit))
    cached = explore.ridden_cached_of(read) if read is not None else None
    if not ranked and (offset == 0 or not await explore.has_trending(request.app[redis_key])):
        # nothing ranked yet (a fresh install, no likes in the window): the newest public posts, never a dead end
        ranked, cached = await explore.read_recent(pool, offset, page.limit), None
    results = await render_live(request, await explore.shown_live(pool, viewer, ranked), ranked, cached)
    next_url = None
    if len(ranked) == page.limit:
        next_url = next_link(request, page.limit, cursor=encode_cursor(offset + page.limit))
    return json_response(Page(results=results, next=next_url))
