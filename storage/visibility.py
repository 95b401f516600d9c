"""Who may see what: glint's one visibility policy.

Every reader asks here (or calls the SQL functions of migrations 0010, 0012, 0018b, 0019 and 0021 inside
its own query, which is the same policy): may viewer V see X, reach U, be shown U. The questions, each batched:

    shown_users(V, us)        may V be shown these users at all (profiles, lists, search, likers,
                              commenters, story viewers, group members)
    visible_owners(V, os)     may V see these owners' things (posts, stories, comments, and
                              hashtags and places through the posts), i.e. SQL `visible_to`;
                              a story is SQL `story_visible_to(V, owner, close_friends_only)`,
                              which adds the close-friends list
    reachable(S, rs)          may S put something in front of these users (messages, mentions,
                              group membership, close friends, story replies)
    notifiable(R, as)         may R be notified of what these actors did
    presence_watchable(V, us) may V see these users online: they show presence, follow V back
                              (both ways) or share a conversation with V, and are shown to V
    conflicts(us)             which pairs of these users may not be put together (a group)

Where a new rule goes (write it once, in the SQL function; the Python here only calls it):

  - a rule that hides two users from each other both ways (a block): `hidden_users()`;
  - a rule that hides an account from everyone (a suspension, a deactivation): `user_shown()`
    and `visibility()` (the account's things; `visible_to()` asks it), and `may_reach()` if it
    may not send either;
  - a rule that only silences one side (a mute): not a hiding rule. Notifications from the muted
    go in `may_notify()`; the home feed (fan-out and reads), explore and the tray filter it with
    `muting()` (`muted_by()` asks it) where they read (it hides nothing elsewhere: the muted account sees no
    difference);
  - a suspension is `users.is_active` turned off (storage.moderation), so `user_shown()`,
    `visibility()` and `may_authenticate()` hide the account and refuse its tokens as they do a
    deactivated one;
  - who may watch presence: `presence_shown()`;
  - a rule about one kind of thing (who may see a story): that kind's function
    (`story_visible_to()`), which every reader of that kind calls.

Storage modules that filter rows in SQL use the functions directly (`visible_to($1, p.author_id)`,
`user_shown($1, u.id)`, `NOT hidden_between(a, b)`), never a `blocks` subquery of their own. A
query that asks per row of a page (its posts' authors) selects the row forms instead, which
PostgreSQL inlines and plans with the query, where a scalar function with a sub-select runs as a
call per row (migration 0019): `CROSS JOIN LATERAL visibility($1, p.author_id) v ... v.visible`,
`muting($1, u.id) m ... m.muted`. Direct messages reach a reader while their sender may reach them
(migration 0021): one reader's messages leave out `kept_from(reader)` once per statement
(`m.sender_id NOT IN (SELECT id FROM kept_from($1))`), many readers' select `reach(sender, reader)`
per row; `may_reach()` is the same rule for one pair.
"""

from __future__ import annotations

from typing import Iterable

import asyncpg

Conn = asyncpg.Connection | asyncpg.Pool


async def _filter(conn: Conn, predicate: str, subject: int | None, others: Iterable[int]) -> set[int]:
    """Of `others`, those for which `predicate(subject, other)` holds (one query)."""
    ids = list(set(others))
    if not ids:
        return set()
    rows = await conn.fetch(
        f"SELECT o.id FROM unnest($2::bigint[]) AS o(id) WHERE {predicate}($1::bigint, o.id)", subject, ids)
    return {r["id"] for r in rows}


async def shown_users(conn: Conn, viewer: int | None, user_ids: Iterable[int]) -> set[int]:
    """Which of these users the viewer may be shown (active, no rule keeping them apart)."""
    return await _filter(conn, "user_shown", viewer, user_ids)


async def may_be_shown(conn: Conn, viewer: int | None, user_id: int) -> bool:
    """May the viewer be shown this user (their profile, their name in a list)?"""
    return user_id in await shown_users(conn, viewer, [user_id])


async def visible_owners(conn: Conn, viewer: int | None, owners: Iterable[int]) -> set[int]:
    """Which of these owners' things (posts, stories, comments under them) the viewer may see."""
    return await _filter(conn, "visible_to", viewer, owners)


async def can_see(conn: Conn, viewer: int | None, owner: int) -> bool:
    """May the viewer see the owner's things? (A private account's only to approved followers.)"""
    return owner in await visible_owners(conn, viewer, [owner])


async def reachable(conn: Conn, sender: int, recipients: Iterable[int]) -> set[int]:
    """Which of these users the sender may reach (message, mention, add to a group)."""
    return await _filter(conn, "may_reach", sender, recipients)


async def hidden_from(conn: Conn, viewer: int, others: Iterable[int]) -> set[int]:
    """Which of `others` a rule keeps apart from the viewer (both ways)."""
    ids = set(others)
    return ids - await _filter(conn, "NOT hidden_between", viewer, ids)


async def notifiable(conn: Conn, recipient: int, actors: Iterable[int]) -> set[int]:
    """Which of these actors' doings the recipient may be notified of."""
    return await _filter(conn, "may_notify", recipient, actors)


async def notifiable_pairs(conn: Conn, pairs: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
    """Of these (recipient, actor) pairs, those where the recipient may be notified of the actor
    (one query for a whole event's recipients)."""
    wanted = list(set(pairs))
    if not wanted:
        return set()
    rows = await conn.fetch(
        "SELECT p.r, p.a FROM unnest($1::bigint[], $2::bigint[]) AS p(r, a) WHERE may_notify(p.r, p.a)",
        [r for r, _ in wanted], [a for _, a in wanted])
    return {(row["r"], row["a"]) for row in rows}


async def presence_watchable(conn: Conn, viewer: int, user_ids: Iterable[int]) -> set[int]:
    """Which of these users' presence the viewer may watch."""
    return await _filter(conn, "presence_shown", viewer, user_ids)


async def hidden_user_ids(conn: Conn, viewer: int) -> list[int]:
    """Everyone a rule keeps apart from the viewer (small: a search backend excludes them up front)."""
    return [r["id"] for r in await conn.fetch("SELECT DISTINCT id FROM hidden_users($1::bigint)", viewer)]


async def conflicts(conn: Conn, user_ids: Iterable[int]) -> set[int]:
    """Of these users (a group's members), those that one of the others may not be put with."""
    ids = sorted(set(user_ids))
    if len(ids) < 2:
        return set()
    rows = await conn.fetch(
        "SELECT a.id, b.id AS other FROM unnest($1::bigint[]) AS a(id) JOIN unnest($1::bigint[]) AS b(id)"
        " ON a.id < b.id WHERE NOT may_reach(a.id, b.id) OR NOT may_reach(b.id, a.id)", ids)
    return {r["id"] for r in rows} | {r["other"] for r in rows}
