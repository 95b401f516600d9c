"""The websocket: opening /ws, and what each client frame does (frames in realtime/frames.py, the
socket's life in realtime/gateway.py). A message frame's rule is registered beside its REST twin
in handlers/messages.py (`frame_rules`); typing, presence subscriptions and `sync` (the catch-up
after a reconnect) exist only here. Every frame but a dropped typing notice counts against the
user's request budget.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web

from handlers.auth import auth_markers
from handlers.common import (
    ApiError, FrameRules, NotAuthenticated, NotFound, RateLimited, Routes, ValidationFailed, client_error,
    error_frame,
)
from handlers.context import config_key, identity_key, limiter_key, pool_key
from handlers import messages
from realtime import frames
from realtime.delivery import Delivery, receipts_key
from realtime.gateway import Connection, Gateway, gateway_key
from realtime.frames import messages_for
from storage import faults, users, visibility
from storage import messages as store
from storage.ratelimit import user_key

log = logging.getLogger("glint.messages")
outages = faults.OutageLog(log)

routes = Routes("messages")
frame_rules = FrameRules()  # the frames that exist only on the socket: typing, presence, sync


@routes.route("GET", "/ws", query={"token": "the access token (or send the Authorization header)"})
async def websocket(request: web.Request) -> web.StreamResponse:
    """Open the realtime websocket (frames in API.md; close codes in realtime/gateway.py)."""
    identity = request.get(identity_key)
    if identity is None:
        raise NotAuthenticated()
    if request.method != "GET":  # HEAD: only a GET opens a socket (RFC 6455 §4.1); it answers as a GET
        raise web.HTTPBadRequest()  # that is not a handshake does (aiohttp's own answer, in the envelope)
    hidden = await users.presence_hidden(request.app[pool_key], [identity.user_id])
    return await request.app[gateway_key].serve(
        request, user_id=identity.user_id, session_id=identity.session_id, expires_at=identity.expires_at,
        revoke_keys=auth_markers(identity), presence_visible=identity.user_id not in hidden)


async def handle_frame(conn: Connection, frame: frames.AnyClientFrame) -> None:
    """What each client frame does; rule errors and stores that are away become `error` frames
    echoing the ref (the same mapping REST uses); anything else is the gateway's internal_error."""
    try:
        await _handle(conn, frame)
    except Exception as exc:
        error = client_error(exc)
        if error is None:
            raise
        if not isinstance(exc, ApiError):
            outages.note(f"frame {type(frame).__name__}", exc)
        await conn.reply(error_frame(error, frame.ref))


async def charge_frame(conn: Connection) -> None:
    """Count a frame against its user's request budget, the same counter REST requests use; over
    the limit it is refused with a `rate_limited` error (the socket stays open). Far from the limit
    the frame goes on without waiting for the count (storage/ratelimit.py `charge`)."""
    config = conn.app[config_key]
    try:
        hit = await conn.app[limiter_key].charge(user_key(conn.user_id, "h"), 3600, config.rate_limits.per_hour)
    except faults.UNAVAILABLE as exc:  # the counter is away: the frame goes on uncounted, as messages are stored without Redis
        outages.note("charging a frame", exc)
        return
    if hit.count > config.rate_limits.per_hour:
        raise RateLimited(f"Too many requests; retry in {max(hit.reset_ms // 1000, 1)} s.")


async def _handle(conn: Connection, frame: frames.AnyClientFrame) -> None:
    if not isinstance(frame, frames.Typing):  # typing is charged only when not dropped anyway
        await charge_frame(conn)
    rule = FRAME_RULES.get(type(frame))
    if rule is not None:  # a ping has none: the gateway answered it
        await rule(conn, frame)


async def cached_members(conn: Connection, conversation_id: int) -> list[int]:
    """The members of a conversation this socket's user belongs to (cached on the socket for a
    few seconds, as typing needs it often); 404 if not a member."""
    cache: dict[int, tuple[float, list[int]]] = conn.state.setdefault("members", {})
    now = time.monotonic()
    hit = cache.get(conversation_id)
    if hit is None or hit[0] < now:
        members = await store.member_ids(conn.app[pool_key], conversation_id)
        if len(cache) > 256:
            cache.clear()
        hit = cache[conversation_id] = (now + 10.0, members)
    if conn.user_id not in hit[1]:
        raise NotFound()
    return hit[1]


@frame_rules.on(frames.Typing)
async def on_typing(conn: Connection, frame: frames.Typing) -> None:
    await send_typing(conn, int(frame.conversation_id))


async def send_typing(conn: Connection, conversation_id: int) -> None:
    """Tell the other members someone is typing; at most one per typing_min_interval per
    conversation and socket (the rest are dropped)."""
    last: dict[int, float] = conn.state.setdefault("typing", {})
    now = time.monotonic()
    if now - last.get(conversation_id, -1e9) < conn.app[config_key].realtime.typing_min_interval:
        return
    last[conversation_id] = now  # before any await: frames of one socket are handled concurrently
    if len(last) > 256:
        last.clear()
    await charge_frame(conn)
    members = await cached_members(conn, conversation_id)
    reached = await visibility.reachable(conn.app[pool_key], conn.user_id, members)
    frame = frames.encode(frames.TypingNotice(conversation_id=str(conversation_id), user_id=str(conn.user_id)))
    await conn.gateway.publish([(m, Gateway.envelope(frame)) for m in members if m != conn.user_id and m in reached])


@frame_rules.on(frames.SubscribePresence)
async def subscribe_presence(conn: Connection, frame: frames.SubscribePresence) -> None:
    """Watch these users' presence (replacing the previous list); answer their current state.
    Users whose presence the viewer may not watch (storage.visibility) always look offline, with no
    last_seen."""
    limit = conn.app[config_key].realtime.presence_subscribe_max
    if len(frame.user_ids) > limit:
        raise ValidationFailed(f"Subscribe to at most {limit} users.")
    pool = conn.app[pool_key]
    wanted = list(dict.fromkeys(int(u) for u in frame.user_ids))
    watchable = await visibility.presence_watchable(pool, conn.user_id, wanted)
    allowed = [u for u in wanted if u in watchable]
    await conn.gateway.watch(conn, allowed)
    states = await conn.gateway.presence.lookup(allowed)
    for uid in wanted:
        online, seen = states.get(uid, (False, None))
        await conn.send(frames.Presence(user_id=str(uid), status="online" if online else "offline",
                                        last_seen=None if online else frames.iso_ms(seen)))


SYNC_PAGE = 200


@frame_rules.on(frames.Sync)
async def sync(conn: Connection, frame: frames.Sync) -> None:
    """Everything after each given seq, oldest first, as message.new frames; then, for messages up
    to that seq edited or reacted to after the given change counter (without one: in the last 200
    changes), their current state as message.edited; then sync.done with each conversation's
    change counter. Conversations the user is not a member of are skipped, and so are the messages
    they may not read (storage/messages.py: those whose sender may not reach them), as live
    delivery skips them."""
    pool = conn.app[pool_key]
    wanted = {int(k): v for k, v in frame.conversations.items()}
    seen_changes = {int(k): v for k, v in (frame.changes or {}).items()}
    counters = await store.member_conversations(pool, conn.user_id, wanted)
    receipts = conn.app[receipts_key]
    for conversation_id, counter in counters.items():
        after = held = wanted[conversation_id]
        conn.hold(conversation_id)  # live frames wait until the replay is queued
        try:
            while True:
                rows = (await store.history(pool, conversation_id, conn.user_id, None, after, SYNC_PAGE))[:SYNC_PAGE]
                for row, message in zip(rows, await messages_for(pool, conn.user_id, rows)):
                    if conn.sent_live(conversation_id, row["seq"]):
                        continue
                    await conn.send(frames.MessageNew(message=message))
                    receipts.add(conn.user_id, Delivery(conversation_id, row["seq"], row["sender_id"]))
                if len(rows) < SYNC_PAGE:
                    break
                after = rows[-1]["seq"]
            after = rows[-1]["seq"] if rows else after
        finally:
            conn.release(conversation_id, after)
        since = seen_changes.get(conversation_id, max(counter - SYNC_PAGE, 0))
        while since < counter:
            rows = (await store.changed_since(pool, conversation_id, conn.user_id, since, held, SYNC_PAGE))[:SYNC_PAGE]
            for message in await messages_for(pool, conn.user_id, rows):
                await conn.send(frames.MessageEdited(message=message))
            if len(rows) < SYNC_PAGE:
                break
            since = rows[-1]["change_seq"]
    await conn.send(frames.SyncDone(ref=frame.ref, changes={str(c): n for c, n in counters.items()}))


# every client frame's rule, from each module that registers some (add a module here when one does)
FRAME_RULES = {**messages.frame_rules.rules, **frame_rules.rules}
