"""Notifications: groups ("ana and 3 others liked your post") made of items, one item per event
that made or joined a group, and the push device registrations.

An item is unique per (event, recipient), so a redelivered event adds nothing. A group takes the
items of one kind on one target of one recipient whose times fall within the grouping window of
its first; a new item bumps it to the top of the list and makes it unread again. Removing items
(an unlike, a deleted comment, an unfollow, a block) shrinks their groups and deletes the empty
ones.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from storage.media import MediaLinks

Conn = asyncpg.Pool | asyncpg.Connection

ACTORS_SHOWN = 3  # a group names its newest actors, and counts the rest


@dataclass(frozen=True)
class NewItem:
    """One notification to make: who gets it, who did what to which target, from which event."""

    recipient_id: int
    actor_id: int
    kind: str
    target_type: str  # post | comment | user | conversation | story
    target_id: int
    event_id: uuid.UUID
    created_at: datetime
    post_id: int | None = None
    comment_id: int | None = None
    parent_comment_id: int | None = None
    text: str | None = None


# ---------------------------------------------------------------- the read shape


class ActorView(msgspec.Struct, kw_only=True):
    id: str
    username: str
    full_name: str
    avatar_media_id: str | None
    is_verified: bool
    avatar_url: str | None = None  # a signed link to the avatar's smallest WebP (storage.media.MediaLinks.avatar)


class TargetView(msgspec.Struct, kw_only=True):
    type: str
    id: str
    post_id: str | None = None
    comment_id: str | None = None


class NotificationView(msgspec.Struct, kw_only=True):
    """A notification as the list, the websocket and push show it."""

    id: str
    kind: str
    actors: list[ActorView]
    actor_count: int
    count: int
    target: TargetView
    text: str | None
    created_at: datetime
    read: bool


def _id(value: int | None) -> str | None:
    return None if value is None else str(value)


_VIEW_SQL = (
    "SELECT n.id, n.kind, n.target_type, n.target_id, n.post_id, n.actor_count, n.item_count, n.updated_at,"
    " n.read_at IS NOT NULL AS read, latest.comment_id, latest.text,"
    " ARRAY(SELECT a.actor_id FROM (SELECT actor_id, max(created_at) AS at FROM notification_items"
    "        WHERE notification_id = n.id GROUP BY actor_id ORDER BY at DESC, actor_id DESC LIMIT $2) a"
    "      ORDER BY a.at DESC, a.actor_id DESC) AS actor_ids"
    " FROM notifications n"
    " LEFT JOIN LATERAL (SELECT comment_id, text FROM notification_items i WHERE i.notification_id = n.id"
    "                    ORDER BY i.created_at DESC, i.id DESC LIMIT 1) latest ON true"
)


async def _views(conn: Conn, rows: list[asyncpg.Record], links: MediaLinks | None) -> list[NotificationView]:
    actor_ids = sorted({a for r in rows for a in r["actor_ids"]})
    users = {u["id"]: u for u in await conn.fetch(
        "SELECT id, username, full_name, avatar_media_id, is_verified, avatar_key(avatar_media_id) AS avatar_key"
        " FROM users WHERE id = ANY($1::bigint[]) AND is_active",
        actor_ids,
    )} if actor_ids else {}
    out = []
    for r in rows:
        actors = [ActorView(id=str(u["id"]), username=u["username"], full_name=u["full_name"],
                            avatar_media_id=_id(u["avatar_media_id"]), is_verified=u["is_verified"],
                            avatar_url=links.avatar(u["avatar_key"]) if links is not None else None)
                  for u in (users.get(a) for a in r["actor_ids"]) if u is not None]
        out.append(NotificationView(
            id=str(r["id"]), kind=r["kind"], actors=actors, actor_count=r["actor_count"], count=r["item_count"],
            target=TargetView(type=r["target_type"], id=str(r["target_id"]), post_id=_id(r["post_id"]),
                              comment_id=_id(r["comment_id"])),
            text=r["text"], created_at=r["updated_at"], read=r["read"],
        ))
    return out


async def list_page(conn: Conn, recipient: int, after: tuple[datetime, int] | None,
                    limit: int, links: MediaLinks) -> list[NotificationView]:
    """A newest-first page of the recipient's notifications after the cursor (updated_at, id);
    up to limit + 1, the actors' avatars linked by `links`."""
    since, after_id = after if after is not None else (None, None)
    rows = await conn.fetch(
        _VIEW_SQL + " WHERE n.recipient_id = $1"
        " AND ($3::timestamptz IS NULL OR (n.updated_at, n.id) < ($3, $4::bigint))"
        " ORDER BY n.updated_at DESC, n.id DESC LIMIT $5",
        recipient, ACTORS_SHOWN, since, after_id, limit + 1,
    )
    return await _views(conn, rows, links)


async def get_views(conn: Conn, ids: list[int], links: MediaLinks | None) -> list[NotificationView]:
    """These notifications as views (the consumer pushes them), in no particular order; the
    actors' avatars linked by `links` (None: none linked)."""
    rows = await conn.fetch(_VIEW_SQL + " WHERE n.id = ANY($1::bigint[])", ids, ACTORS_SHOWN)
    return await _views(conn, rows, links)


async def unread_count(conn: Conn, recipient: int) -> int:
    """How many of the recipient's notifications are unread."""
    return await conn.fetchval(
        "SELECT count(*) FROM notifications WHERE recipient_id = $1 AND read_at IS NULL", recipient
    )


async def mark_read(conn: Conn, recipient: int, up_to: int | None) -> int | None:
    """Mark read all the recipient's notifications, or those at or below notification `up_to` in
    the list; how many changed, or None when `up_to` is not the recipient's."""
    if up_to is None:
        status = await conn.execute(
            "UPDATE notifications SET read_at = now() WHERE recipient_id = $1 AND read_at IS NULL", recipient
        )
        return int(status.split()[-1])
    status = await conn.execute(
        "WITH mark AS (SELECT updated_at, id FROM notifications WHERE id = $2 AND recipient_id = $1)"
        " UPDATE notifications n SET read_at = now() FROM mark"
        " WHERE n.recipient_id = $1 AND n.read_at IS NULL AND (n.updated_at, n.id) <= (mark.updated_at, mark.id)",
        recipient, up_to,
    )
    changed = int(status.split()[-1])
    if changed == 0 and not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM notifications WHERE id = $1 AND recipient_id = $2)", up_to, recipient):
        return None
    return changed


# ---------------------------------------------------------------- making them


async def user_ids_by_names(conn: Conn, usernames: list[str]) -> list[int]:
    """The active users with these usernames (any case), for @mentions in comments."""
    if not usernames:
        return []
    rows = await conn.fetch("SELECT id FROM users WHERE lower(username) = ANY($1::text[]) AND is_active",
                            [n.lower() for n in usernames])
    return [r["id"] for r in rows]


def _columns(items: list[NewItem]) -> list[list[Any]]:
    return [[i.recipient_id for i in items], [i.actor_id for i in items], [i.kind for i in items],
            [i.target_type for i in items], [i.target_id for i in items], [i.event_id for i in items],
            [i.created_at for i in items], [i.post_id for i in items], [i.comment_id for i in items],
            [i.parent_comment_id for i in items], [i.text for i in items]]


async def add_items_txn(conn: asyncpg.Connection, items: list[NewItem], window_seconds: float) -> list[int | None]:
    """Inside a transaction: add each item, in order, to its open group (or a new one), as the
    SQL function add_notification_item (migration 0008) does, in two statements for the whole
    list: the groups' locks first, taken in one order by every writer (so two writers never
    wait on each other in a circle), then the items. Each item's group id, or None where the
    event already made that recipient's item."""
    if not items:
        return []
    columns = _columns(items)
    await conn.execute(
        "SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT hashtextextended("
        "r || ':' || kind || ':' || t || ':' || target, 6) AS k"
        " FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[]) AS u(r, kind, t, target) ORDER BY k) keys",
        columns[0], columns[2], columns[3], columns[4],
    )
    rows = await conn.fetch(
        "SELECT add_notification_item(r, a, kind, t, target, ev, at, $12, post, comment, parent, body) AS g"
        " FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::uuid[],"
        "             $7::timestamptz[], $8::bigint[], $9::bigint[], $10::bigint[], $11::text[])"
        "      WITH ORDINALITY AS u(r, a, kind, t, target, ev, at, post, comment, parent, body, n)"
        " ORDER BY n",
        *columns, timedelta(seconds=window_seconds),
    )
    return [r["g"] for r in rows]


# ---------------------------------------------------------------- removing them


async def _settle_groups_txn(conn: asyncpg.Connection, group_ids: list[int]) -> None:
    """After items went: delete the groups left empty, recount the others."""
    if not group_ids:
        return
    await conn.execute(
        "DELETE FROM notifications n WHERE n.id = ANY($1::bigint[])"
        " AND NOT EXISTS (SELECT 1 FROM notification_items i WHERE i.notification_id = n.id)",
        group_ids,
    )
    await conn.execute(
        "UPDATE notifications n SET actor_count = c.actors, item_count = c.items, updated_at = c.latest"
        " FROM (SELECT notification_id, count(DISTINCT actor_id) AS actors, count(*) AS items,"
        "       max(created_at) AS latest FROM notification_items WHERE notification_id = ANY($1::bigint[])"
        "       GROUP BY notification_id) c WHERE n.id = c.notification_id",
        group_ids,
    )


async def _remove_items(conn: asyncpg.Connection, where: str, *args: Any) -> int:
    async with conn.transaction():  # a savepoint inside the caller's transaction
        rows = await conn.fetch(f"DELETE FROM notification_items WHERE {where} RETURNING notification_id", *args)
        await _settle_groups_txn(conn, sorted({r["notification_id"] for r in rows}))
    return len(rows)


async def remove_like(conn: asyncpg.Connection, post_id: int, actor: int) -> int:
    """An unlike: the like notification it made goes; how many items went."""
    return await _remove_items(conn, "kind = 'like' AND post_id = $1 AND actor_id = $2", post_id, actor)


async def remove_for_post(conn: asyncpg.Connection, post_id: int) -> int:
    """A deleted post: every notification about it (likes, comments, mentions) goes."""
    return await _remove_items(conn, "post_id = $1", post_id)


async def remove_for_comment(conn: asyncpg.Connection, comment_id: int) -> int:
    """A deleted comment (and its replies): the notifications they made go."""
    return await _remove_items(conn, "comment_id = $1 OR parent_comment_id = $1", comment_id)


async def remove_follow(conn: asyncpg.Connection, follower: int, followee: int) -> int:
    """An ended follow: "started following you" and "approved your request" go."""
    return await _remove_items(
        conn,
        "(kind IN ('follow', 'follow_request') AND actor_id = $1 AND recipient_id = $2)"
        " OR (kind = 'follow_request_approved' AND actor_id = $2 AND recipient_id = $1)",
        follower, followee,
    )


async def remove_follow_request(conn: asyncpg.Connection, requester: int, target: int) -> int:
    """A request answered: its "asked to follow you" goes."""
    return await _remove_items(conn, "kind = 'follow_request' AND actor_id = $1 AND recipient_id = $2",
                               requester, target)


async def remove_between(conn: asyncpg.Connection, a: int, b: int) -> int:
    """A block: whatever either made for the other goes."""
    return await _remove_items(conn, "(actor_id = $1 AND recipient_id = $2) OR (actor_id = $2 AND recipient_id = $1)",
                               a, b)


async def remove_for_target(conn: asyncpg.Connection, target_type: str, target_id: int) -> int:
    """A deleted target (a story): its notifications go."""
    status = await conn.execute("DELETE FROM notifications WHERE target_type = $1 AND target_id = $2",
                                target_type, target_id)
    return int(status.split()[-1])


async def delete_older_than(pool: asyncpg.Pool, days: int, batch: int = 10_000) -> int:
    """Delete notifications untouched for `days`, in batches (short locks); how many went."""
    total = 0
    while True:
        status = await pool.execute(
            "DELETE FROM notifications WHERE id IN (SELECT id FROM notifications"
            " WHERE updated_at < now() - make_interval(days => $1) LIMIT $2)",
            days, batch,
        )
        n = int(status.split()[-1])
        total += n
        if n < batch:
            return total


# ---------------------------------------------------------------- push devices


async def add_device(conn: Conn, user_id: int, endpoint: str, keys: dict[str, str], platform: str) -> asyncpg.Record:
    """Register a push device (registering the same endpoint again updates its keys)."""
    return await conn.fetchrow(
        "INSERT INTO push_devices (user_id, endpoint, keys, platform) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (user_id, endpoint) DO UPDATE SET keys = EXCLUDED.keys, platform = EXCLUDED.platform"
        " RETURNING id, endpoint, keys, platform, created_at",
        user_id, endpoint, keys, platform,
    )


async def remove_device(conn: Conn, user_id: int, device_id: int) -> bool:
    """Unregister one of the user's devices; False if it is not theirs."""
    return await conn.fetchval(
        "DELETE FROM push_devices WHERE id = $1 AND user_id = $2 RETURNING true", device_id, user_id
    ) is not None


async def contacts(conn: Conn, user_ids: list[int]) -> dict[int, asyncpg.Record]:
    """{id: (id, username, email, is_active)} of these users, for push and e-mail lines."""
    rows = await conn.fetch("SELECT id, username, email, is_active FROM users WHERE id = ANY($1::bigint[])",
                            list(set(user_ids)))
    return {r["id"]: r for r in rows}


async def devices_of(conn: Conn, user_ids: list[int]) -> dict[int, list[asyncpg.Record]]:
    """{user_id: their push devices, newest first} for these users, in one query."""
    rows = await conn.fetch(
        "SELECT id, user_id, endpoint, keys, platform, created_at FROM push_devices WHERE user_id = ANY($1::bigint[])"
        " ORDER BY id DESC", list(set(user_ids)),
    )
    out: dict[int, list[asyncpg.Record]] = {}
    for row in rows:
        out.setdefault(row["user_id"], []).append(row)
    return out


async def list_devices(conn: Conn, user_id: int) -> list[asyncpg.Record]:
    """The user's push devices, newest first."""
    return (await devices_of(conn, [user_id])).get(user_id, [])


async def forget_device(conn: Conn, device_id: int) -> None:
    """A push service said the device is gone (404/410): stop pushing to it."""
    await conn.execute("DELETE FROM push_devices WHERE id = $1", device_id)
