"""Search: users, posts, hashtags and locations, relevance-ordered, prefix- and typo-tolerant.

The configured backend proposes ids best first; what the viewer may see is then decided from
PostgreSQL (visible_users, render_posts, hashtags/locations still in use), so a stale index never
shows a blocked user, a private account's post to a non-follower, a deleted post or a deactivated
account. When that drops candidates, the backend is asked again until the page is full.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import msgspec
from aiohttp import web

from handlers.accounts import UserSummary, user_summary
from handlers.auth import current_user
from handlers.common import (
    InvalidCursor, Page, PageRequest, Routes, ServiceUnavailable, Struct, ValidationFailed, decode_cursor, encode_cursor,
    json_response, page_request, read_pool,
)
from handlers.context import search_key
from handlers.media import media_links
from handlers.posts import PostOut, post_bodies
from storage import search
from storage.bounds import is_blank
from storage.search import Hit, Kind

routes = Routes("search")

QUERY_MAX = 100
ROUNDS = 4  # backend calls per page at most, when visibility drops candidates
QUERY_DOC = {"q": "what to find (prefixes and typos match)", "limit": "1..100", "cursor": "from `next`"}


class HashtagOut(Struct):
    id: str
    name: str
    post_count: int


class LocationOut(Struct):
    id: str
    name: str
    lat: float | None
    lng: float | None
    post_count: int


# ---------------------------------------------------------------- hydration: id -> what the viewer sees

Hydrate = Callable[[web.Request, int, list[int]], Awaitable[dict[int, Any]]]


async def _users(request: web.Request, viewer: int, ids: list[int]) -> dict[int, UserSummary]:
    rows = await search.visible_users(await read_pool(request), viewer, ids)
    return {i: user_summary(media_links(request), r) for i, r in rows.items()}


async def _posts(request: web.Request, viewer: int, ids: list[int]) -> dict[int, msgspec.Raw]:
    return await post_bodies(request, viewer, ids)  # each a PostOut's JSON


async def _hashtags(request: web.Request, viewer: int, ids: list[int]) -> dict[int, HashtagOut]:
    rows = await search.hashtags_with_posts(await read_pool(request), viewer, ids)
    return {i: HashtagOut(id=str(i), name=r["name"], post_count=r["post_count"]) for i, r in rows.items()}


async def _locations(request: web.Request, viewer: int, ids: list[int]) -> dict[int, LocationOut]:
    rows = await search.locations_with_posts(await read_pool(request), viewer, ids)
    return {i: LocationOut(id=str(i), name=r["name"], lat=r["lat"], lng=r["lng"], post_count=r["post_count"])
            for i, r in rows.items()}


HYDRATE: dict[str, Hydrate] = {"users": _users, "posts": _posts, "hashtags": _hashtags, "locations": _locations}


# ---------------------------------------------------------------- the rule


def read_query(request: web.Request) -> search.Query:
    """?q=, required, at most QUERY_MAX characters."""
    raw = request.query.get("q", "")
    if is_blank(raw):
        raise ValidationFailed("q is required.", fields={"q": "This field is required."})
    if len(raw) > QUERY_MAX:
        raise ValidationFailed(f"q: at most {QUERY_MAX} characters.", fields={"q": f"At most {QUERY_MAX} characters."})
    return search.parse_query(raw)


async def search_page(request: web.Request, kind: Kind, viewer: int, query: search.Query, page: PageRequest) -> Page:
    """One page of what the viewer may see, best first; `next` resumes after the last candidate
    used (shown or dropped)."""
    backend = request.app[search_key]
    after = decode_cursor(page.cursor, *backend.cursor_kinds)
    shown: list[tuple[Hit, Any]] = []
    last: Hit | None = None
    exhausted = False
    for _ in range(ROUNDS):
        want = page.limit + 1 - len(shown)
        try:
            hits = await backend.search(kind, viewer, query, after, want)
        except ValueError:
            raise InvalidCursor() from None
        except search.SearchUnavailable:
            raise ServiceUnavailable("Search is unavailable; try again shortly.") from None
        items = await HYDRATE[kind](request, viewer, [h.id for h in hits])
        for hit in hits:
            last = hit
            if hit.id in items:
                shown.append((hit, items[hit.id]))
                if len(shown) > page.limit:
                    break
        if len(hits) < want:
            exhausted = True
            break
        if len(shown) > page.limit:
            break
        after = list(hits[-1].after)
    if len(shown) > page.limit:
        shown, last = shown[:page.limit], shown[page.limit - 1][0]
    elif exhausted:
        last = None
    next_url = None
    if last is not None:
        query_args = dict(request.query)
        query_args.update(cursor=encode_cursor(*last.after), limit=str(page.limit))
        next_url = str(request.rel_url.with_query(query_args))
    return Page(results=[item for _, item in shown], next=next_url)


def _search_route(kind: Kind, response: type, summary: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    """GET /api/search/{kind}/: one page of `kind` for ?q=, as Page[response]; its handler is
    `search_{kind}` (the OpenAPI operation) and `summary` its docstring."""

    async def handler(request: web.Request) -> web.Response:
        viewer = current_user(request)
        page = page_request(request)
        query = read_query(request)
        return json_response(await search_page(request, kind, viewer, query, page))

    handler.__name__ = handler.__qualname__ = f"search_{kind}"
    handler.__doc__ = summary
    return routes.route("GET", f"/api/search/{kind}/", response=Page[response], query=QUERY_DOC)(handler)


# ---------------------------------------------------------------- routes


search_users = _search_route("users", UserSummary, "Users by username or full name, best match first.")
search_posts = _search_route("posts", PostOut, "Posts by caption, best match first, only those the viewer may see.")
search_hashtags = _search_route("hashtags", HashtagOut, "Hashtags in use, with their post counts, best match first.")
search_locations = _search_route("locations", LocationOut,
                                 "Locations posts were made at, with their post counts, best match first.")
