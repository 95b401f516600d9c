"""A stored message as a viewer sees it: the `Message` frame body, with its reactions, and a
shared post, story or profile rendered for that viewer by storage.visibility's policy (a deleted
message is a tombstone). REST, the socket's replay and the writer's live frames all render here."""

from __future__ import annotations

from typing import Iterable

import asyncpg

from realtime import frames
from realtime.frames import Message, iso
from storage import messages as store


def message_out(row: asyncpg.Record, prefix: str = "", reactions: Iterable[tuple[int, str]] = (),
                share: frames.SharedItem | None = None) -> Message:
    """A stored message as clients see it (a deleted one is a tombstone); `share` is its shared
    item as rendered for the viewer."""
    media_id = row[prefix + "media_id"]
    edited_at = row[prefix + "edited_at"]
    return Message(
        id=str(row[prefix + "id"]), conversation_id=str(row[prefix + "conversation_id"]), seq=row[prefix + "seq"],
        sender_id=str(row[prefix + "sender_id"]), client_id=row[prefix + "client_id"], text=row[prefix + "text"],
        media=frames.Media(id=str(media_id)) if media_id is not None else None,
        reply_to_seq=row[prefix + "reply_to_seq"], deleted=row[prefix + "deleted_at"] is not None,
        removed=row[prefix + "removed_at"] is not None, created_at=iso(row[prefix + "created_at"]),
        reactions=[frames.Reaction(user_id=str(u), emoji=e) for u, e in reactions],
        edited_at=iso(edited_at) if edited_at is not None else None, share=share, change_seq=row[prefix + "change_seq"],
    )


async def messages_for(pool: asyncpg.Pool, viewer: int, rows: list[asyncpg.Record], prefix: str = "") -> list[Message]:
    """Stored messages as this viewer sees them: with their reactions, and shares rendered for them."""
    live = [r for r in rows if r[prefix + "id"] is not None]
    reactions = await store.reactions_of(pool, [r[prefix + "id"] for r in live])
    shares = await render_shares(pool, [viewer], live, prefix)
    return [message_out(r, prefix, reactions.get(r[prefix + "id"], ()), shares.get((viewer, r[prefix + "id"])))
            for r in rows]


async def render_shares(pool: asyncpg.Pool, viewers: Iterable[int], rows: list[asyncpg.Record],
                        prefix: str = "") -> dict[tuple[int, int], frames.SharedItem]:
    """Each (viewer, message id) of the messages that share something: the shared item as that
    viewer may see it (storage.visibility's policy), else only its type and id, unavailable."""
    shared = [r for r in rows if r[prefix + "share_type"] is not None and r[prefix + "deleted_at"] is None]
    if not shared:
        return {}
    viewers = list(viewers)
    pairs = [(v, r[prefix + "share_type"], r[prefix + "share_id"]) for r in shared for v in viewers]
    seen = await store.shared_items(pool, pairs)
    out: dict[tuple[int, int], frames.SharedItem] = {}
    for row in shared:
        kind, item_id = row[prefix + "share_type"], row[prefix + "share_id"]
        for viewer in viewers:
            found = seen.get((viewer, kind, item_id))
            out[(viewer, row[prefix + "id"])] = shared_out(kind, item_id, found)
    return out


def shared_out(kind: str, item_id: int, found: asyncpg.Record | None) -> frames.SharedItem:
    if found is None:
        return frames.SharedItem(type=kind, id=str(item_id), available=False, unavailable=True)
    if kind == "user":
        return frames.SharedItem(type=kind, id=str(item_id), username=found["username"], name=found["full_name"])
    expires = found["expires_at"]
    return frames.SharedItem(
        type=kind, id=str(item_id), caption=found["caption"],
        author_id=str(found["owner_id"]) if kind == "post" else None,
        owner_id=str(found["owner_id"]) if kind == "story" else None,
        expires_at=iso(expires) if expires is not None else None)

