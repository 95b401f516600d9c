"""The follow graph: follow and unfollow, follow requests of private accounts, blocks, and the
lists of followers, following, requests and blocks. Each change is one transaction that locks the
two users first (storage.graph.lock_users_txn) and writes its outbox event inside."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Awaitable, Callable, Literal

import asyncpg
from aiohttp import web

import events
from handlers.accounts import UserSummary, retry_on_deadlock, user_summary
from handlers.auth import current_user
from handlers.common import (
    NotFound, Page, PageRequest, Routes, Struct, ValidationFailed, decode_cursor, encode_cursor, json_response,
    make_page, no_content, page_request, parse_id, path_id, read_json,
)
from handlers.context import pool_key, tray_cache_key
from handlers.media import media_links
from storage import graph, outbox, visibility
from storage.stories import TrayCache

routes = Routes("graph")

PAGE_QUERY = {"limit": "1..100", "cursor": "from `next`"}


def _pair(kind: type[events.PairEvent], actor: int, target: int) -> events.PairEvent:
    return kind(actor_id=str(actor), target_id=str(target))


async def _lock_visible_pair_txn(conn: asyncpg.Connection, viewer: int, target: int) -> asyncpg.Record:
    """Lock both users; the target's row, or 404 when it is gone, inactive or either blocks the other."""
    if viewer == target:
        raise ValidationFailed("You cannot do this to yourself.", fields={"id": "That is you."})
    locked = await graph.lock_users_txn(conn, [viewer, target])
    row = locked.get(target)
    if row is None or not row["is_active"] or not await visibility.may_be_shown(conn, viewer, target):
        raise NotFound()
    return row


# ---------------------------------------------------------------- the writes REST and websocket share

FollowStatus = Literal["following", "requested"]


@retry_on_deadlock
async def do_follow(pool: asyncpg.Pool, viewer: int, target: int) -> FollowStatus:
    """Follow target, or ask to when the account is private (idempotent either way)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await _lock_visible_pair_txn(conn, viewer, target)
        if row["is_private"] and not await graph.follows(conn, viewer, target):
            if await graph.add_follow_request_txn(conn, viewer, target):
                await outbox.add(conn, _pair(events.FollowRequestCreated, viewer, target), viewer)
            return "requested"
        if await graph.add_follow_txn(conn, viewer, target):
            await outbox.add(conn, _pair(events.FollowCreated, viewer, target), viewer)
        return "following"


@retry_on_deadlock
async def do_unfollow(pool: asyncpg.Pool, viewer: int, target: int) -> None:
    """Stop following target, or withdraw the request (idempotent)."""
    async with pool.acquire() as conn, conn.transaction():
        await _lock_visible_pair_txn(conn, viewer, target)
        if await graph.remove_follows_txn(conn, [(viewer, target)]):
            await outbox.add(conn, _pair(events.FollowRemoved, viewer, target), viewer)
        await graph.remove_follow_requests_txn(conn, [(viewer, target)])


@retry_on_deadlock
async def do_answer_request(pool: asyncpg.Pool, owner: int, requester: int, approve: bool) -> None:
    """Approve (the requester now follows) or reject a pending request to follow owner; 404 if none."""
    async with pool.acquire() as conn, conn.transaction():
        await graph.lock_users_txn(conn, [owner, requester])
        if not await graph.remove_follow_requests_txn(conn, [(requester, owner)]):
            raise NotFound()
        if approve and await graph.add_follow_txn(conn, requester, owner):
            await outbox.add(conn, events.FollowRequestApproved(requester_id=str(requester), target_id=str(owner)),
                             requester)


@retry_on_deadlock
async def do_block(pool: asyncpg.Pool, viewer: int, target: int) -> None:
    """Block target: follows and requests both ways are removed, and neither sees the other."""
    if viewer == target:
        raise ValidationFailed("You cannot block yourself.", fields={"id": "That is you."})
    async with pool.acquire() as conn, conn.transaction():
        row = (await graph.lock_users_txn(conn, [viewer, target])).get(target)
        if row is None or not row["is_active"]:
            raise NotFound()
        both_ways = [(viewer, target), (target, viewer)]
        for follower, followee in await graph.remove_follows_txn(conn, both_ways):
            await outbox.add(conn, _pair(events.FollowRemoved, follower, followee), follower)
        await graph.remove_follow_requests_txn(conn, both_ways)
        if await graph.add_block_txn(conn, viewer, target):
            await outbox.add(conn, _pair(events.UserBlocked, viewer, target), viewer)


async def do_unblock(pool: asyncpg.Pool, viewer: int, target: int) -> None:
    """Lift the viewer's block of target; 404 when there was none."""
    if not await graph.remove_block(pool, viewer, target):
        raise NotFound()


async def do_mute(pool: asyncpg.Pool, trays: TrayCache, viewer: int, target: int, stories_too: bool) -> None:
    """Mute target, silently and one way (target sees no difference): their posts leave the
    viewer's home feed and explore, their stories the tray (when stories_too), and the viewer gets
    no notifications of theirs. Emits user_muted when something changed."""
    async with pool.acquire() as conn, conn.transaction():
        await _lock_visible_pair_txn(conn, viewer, target)
        if await graph.add_mute(conn, viewer, target, stories_too):
            await outbox.add(conn, events.UserMuted(actor_id=str(viewer), target_id=str(target), stories=stories_too),
                             viewer)
    await _forget_tray(trays, viewer)


async def do_unmute(pool: asyncpg.Pool, trays: TrayCache, viewer: int, target: int) -> None:
    """Lift the viewer's mute of target (idempotent); emits user_unmuted when there was one."""
    async with pool.acquire() as conn, conn.transaction():
        if await graph.remove_mute(conn, viewer, target):
            await outbox.add(conn, _pair(events.UserUnmuted, viewer, target), viewer)
    await _forget_tray(trays, viewer)


async def _forget_tray(trays: TrayCache, viewer: int) -> None:
    """After commit: the viewer's cached story tray is rebuilt with the mute as it is now."""
    await trays.drop([viewer])


# ---------------------------------------------------------------- routes


class FollowOut(Struct):
    status: FollowStatus


@routes.route("POST", "/api/accounts/users/{id}/follow/", sees="shown", response=FollowOut)
async def follow(request: web.Request) -> web.Response:
    """Follow a user; for a private account this makes a follow request (status "requested")."""
    viewer = current_user(request)
    status = await do_follow(request.app[pool_key], viewer, path_id(request))
    return json_response(FollowOut(status=status))


async def _on_path_user(request: web.Request, write: Callable[[asyncpg.Pool, int, int], Awaitable[object]]) -> web.Response:
    """Run a graph write of the viewer on the user named by the path; 204."""
    viewer = current_user(request)
    await write(request.app[pool_key], viewer, path_id(request))
    return no_content()


@routes.route("POST", "/api/accounts/users/{id}/unfollow/", sees="shown", status=204)
async def unfollow(request: web.Request) -> web.Response:
    """Unfollow a user, or withdraw the follow request."""
    return await _on_path_user(request, do_unfollow)


@routes.route("POST", "/api/accounts/follow-requests/{id}/approve/", sees="owner", status=204)
async def approve_request(request: web.Request) -> web.Response:
    """Approve the follow request of user {id}: they now follow the viewer."""
    return await _on_path_user(request, partial(do_answer_request, approve=True))


@routes.route("POST", "/api/accounts/follow-requests/{id}/reject/", sees="owner", status=204)
async def reject_request(request: web.Request) -> web.Response:
    """Reject the follow request of user {id}."""
    return await _on_path_user(request, partial(do_answer_request, approve=False))


@routes.route("POST", "/api/accounts/users/{id}/block/", sees="self",  # even someone who blocks you
              status=204)
async def block(request: web.Request) -> web.Response:
    """Block a user: follows and requests both ways go, and each is hidden from the other."""
    return await _on_path_user(request, do_block)


@routes.route("POST", "/api/accounts/users/{id}/unblock/", sees="shown", status=204)
async def unblock(request: web.Request) -> web.Response:
    """Lift a block (follows are not restored); 404 when there was none."""
    return await _on_path_user(request, do_unblock)


class MuteBody(Struct):
    stories: bool = True


@routes.route("POST", "/api/accounts/users/{id}/mute/", sees="shown", body=MuteBody, status=204)
async def mute(request: web.Request) -> web.Response:
    """Mute a user (silent, one-way): their posts leave your feed, their stories your tray (stories: true, the default)."""
    viewer = current_user(request)
    body = await read_json(request, MuteBody) if request.body_exists else MuteBody()
    await do_mute(request.app[pool_key], request.app[tray_cache_key], viewer, path_id(request), body.stories)
    return no_content()


@routes.route("POST", "/api/accounts/users/{id}/unmute/", sees="self", status=204)  # lifting one is always allowed
async def unmute(request: web.Request) -> web.Response:
    """Unmute a user (idempotent)."""
    await do_unmute(request.app[pool_key], request.app[tray_cache_key], current_user(request), path_id(request))
    return no_content()


def _edge_after(page: PageRequest) -> tuple[datetime, int] | None:
    parts = decode_cursor(page.cursor, datetime, str)
    return None if parts is None else (parts[0], parse_id(parts[1], "cursor"))


async def edge_page(request: web.Request, kind: str, owner: int, hide_blocked_for: int | None) -> web.Response:
    """One page of an edge list as {results, next}."""
    page = page_request(request)
    rows = await graph.list_edges(request.app[pool_key], kind, owner, hide_blocked_for, _edge_after(page), page.limit)
    result = make_page(request, rows, page.limit,
                       lambda r: encode_cursor(r["edge_created_at"].isoformat(), str(r["id"])))
    return json_response(Page(results=[user_summary(media_links(request), r) for r in result.results], next=result.next))


async def _visible_owner(request: web.Request) -> tuple[int, int]:
    """(viewer, owner) when the viewer may see the owner's lists; 404 otherwise."""
    viewer = current_user(request)
    owner = path_id(request)
    if not await visibility.can_see(request.app[pool_key], viewer, owner):
        raise NotFound()
    return viewer, owner


@routes.route("GET", "/api/accounts/users/{id}/followers/", sees="audience", response=Page[UserSummary], query=PAGE_QUERY)
async def followers(request: web.Request) -> web.Response:
    """Who follows the user, newest first."""
    viewer, owner = await _visible_owner(request)
    return await edge_page(request, "followers", owner, viewer)


@routes.route("GET", "/api/accounts/users/{id}/following/", sees="audience", response=Page[UserSummary], query=PAGE_QUERY)
async def following(request: web.Request) -> web.Response:
    """Whom the user follows, newest first."""
    viewer, owner = await _visible_owner(request)
    return await edge_page(request, "following", owner, viewer)


@routes.route("GET", "/api/accounts/follow-requests/", response=Page[UserSummary], query=PAGE_QUERY)
async def follow_requests(request: web.Request) -> web.Response:
    """Pending requests to follow the viewer, newest first."""
    viewer = current_user(request)
    return await edge_page(request, "follow_requests", viewer, viewer)


@routes.route("GET", "/api/accounts/blocks/", response=Page[UserSummary], query=PAGE_QUERY)
async def blocks(request: web.Request) -> web.Response:
    """The users the viewer blocks, newest first."""
    return await edge_page(request, "blocks", current_user(request), None)


@routes.route("GET", "/api/accounts/mutes/", response=Page[UserSummary], query=PAGE_QUERY)
async def mutes(request: web.Request) -> web.Response:
    """The users the viewer mutes, newest first."""
    return await edge_page(request, "mutes", current_user(request), None)
