"""Direct messages over REST: history, send, edit, delete, react and read, and the rules each of
them shares with its websocket twin, registered here too (`frame_rules`, dispatched by
handlers/socket.py): `send_message`, `read_messages`, `delete_message`, `edit_message`,
`react_to_message`, one function per act, whichever way it came.

Sends go through the process's group-commit writer (realtime/delivery.py); every other act
publishes its frame to the members' bus channels after its commit.

A member reads a message only while its sender may reach them (storage/messages.py asks the
visibility policy's `may_reach()`, in the shapes of migration 0021, for every reader): what is
about a message (a reaction, an edit, a deletion) goes only to the members who may read it, a
reaction only to those its author may reach too, and a message a member may not read is, for
them, no such message.
"""

from __future__ import annotations

from typing import Annotated

import asyncpg
from aiohttp import web
from msgspec import Meta

from handlers.auth import current_user
from handlers.common import (
    ApiError, Forbidden, FrameRules, NotFound, Page, Routes, Struct, ValidationFailed, json_response, make_page,
    no_content, page_request, parse_id, path_id, read_json, read_pool,
)
from handlers.context import pool_key
from realtime import delivery, frames
from realtime.delivery import MessageWriter, writer_key
from realtime.frames import Message, SendBody, Seq
from realtime.gateway import Connection, Gateway, gateway_key
from realtime.frames import message_out, messages_for, messages_for_each
from storage import messages as store
from storage import visibility
from storage.bounds import is_blank, is_emoji

routes = Routes("messages")
frame_rules = FrameRules()  # the websocket twins of the routes below (dispatched by handlers/socket.py)


# ---------------------------------------------------------------- wire shapes


class ReadBody(Struct):
    seq: Seq


class ReactBody(Struct):
    emoji: frames.Emoji


class EditBody(Struct):
    text: Annotated[str, Meta(min_length=1, max_length=frames.MAX_TEXT)]


class Unstorable(ValidationFailed):
    message = "A value of this message cannot be stored."


class Blocked(ApiError):
    status, code, message = 403, "blocked", "You cannot message this user."


class EditWindowClosed(ApiError):
    status, code, message = 403, "edit_window_closed", "A message can be edited within 15 minutes of sending it."


# ---------------------------------------------------------------- the rules


async def send_message(pool: asyncpg.Pool, writer: MessageWriter, sender: int, conversation_id: int,
                       body: SendBody, origin: Connection | None = None) -> tuple[Message, bool]:
    """Store a message (or find the original of a resend); (message, created). Members only; not
    into a 1:1 with a block either way; text, media or a share required (a share of something the
    sender may see)."""
    share = body.share
    if is_blank(body.text) and body.media_id is None and share is None:
        raise ValidationFailed("A message needs text, media or a share.", fields={"text": "Send text or media."})
    media_id = int(body.media_id) if body.media_id is not None else None
    if media_id is not None and not await store.claim_media(pool, media_id, sender):
        raise ValidationFailed("media_id: no such media of yours.", fields={"media_id": "Unknown media."})
    if share is not None and not await store.shared_items(pool, [(sender, share.type, int(share.id))]):
        raise ValidationFailed(f"share: no such {share.type}.", fields={"share": f"No such {share.type}."})
    draft = store.Draft(conversation_id, sender, body.client_id, body.text, media_id, body.reply_to_seq,
                        share.type if share else None, int(share.id) if share else None)
    try:
        written: store.Written = await writer.submit(draft, origin)
    except delivery.Unstorable:
        raise Unstorable() from None
    if written.status == "not_member":
        raise NotFound()
    if written.status == "blocked":
        raise Blocked()
    if written.status == "bad_reply":  # none at that seq, or none the sender may read
        raise ValidationFailed("reply_to_seq: no such message here.", fields={"reply_to_seq": "No such message."})
    row = written.message
    message = message_out(row) if row["share_type"] is None else (await messages_for(pool, sender, [row]))[0]
    return message, written.status == "ok"


async def read_messages(pool: asyncpg.Pool, gateway: Gateway, reader: int, conversation_id: int, seq: int,
                        origin: Connection | None = None) -> None:
    """Move the reader's read position up to seq and tell the sockets of every member the reader
    may reach."""
    moved = await store.mark_read(pool, conversation_id, reader, seq)
    if moved is None:
        if await store.get_conversation(pool, conversation_id, reader) is None:
            raise NotFound()
        return
    position, members = moved
    frame = frames.encode(frames.MessageReadReceipt(conversation_id=str(conversation_id), seq=position,
                                                    user_id=str(reader)))
    await gateway.publish([(m, Gateway.envelope(frame, exclude=origin)) for m in members])


async def delete_message(pool: asyncpg.Pool, gateway: Gateway, sender: int, conversation_id: int, seq: int) -> None:
    """Delete for everyone: only the sender; the message becomes a tombstone, members are told."""
    if await store.get_conversation(pool, conversation_id, sender) is None:
        raise NotFound()
    row = await store.delete_message(pool, conversation_id, seq, sender)
    if row is None:
        existing = await store.get_message(pool, conversation_id, seq, sender)
        raise NotFound() if existing is None else Forbidden("Only the sender can delete a message.")
    await publish_to_members(pool, gateway, conversation_id, [sender],
                             frames.encode(frames.MessageDeleted(conversation_id=str(conversation_id), seq=seq)))


async def reached_members(pool: asyncpg.Pool, conversation_id: int, actors: list[int]) -> list[int]:
    """The members of a conversation that every one of the actors may reach (as message.new goes
    to those its sender may reach), the actors among them included."""
    members = await store.member_ids(pool, conversation_id)
    reached = set(members)
    for actor in set(actors):
        reached &= await visibility.reachable(pool, actor, members) | {actor}
    return [m for m in members if m in reached]


async def publish_to_members(pool: asyncpg.Pool, gateway: Gateway, conversation_id: int, actors: list[int],
                             frame: bytes) -> None:
    """One frame to the members of a conversation that every one of the actors may reach."""
    members = await reached_members(pool, conversation_id, actors)
    await gateway.publish([(m, Gateway.envelope(frame)) for m in members])


async def react_to_message(pool: asyncpg.Pool, gateway: Gateway, user: int, conversation_id: int, seq: int,
                           emoji: str | None) -> None:
    """Set (or, with None, take back) the member's one reaction to a message they may read;
    message.reaction goes to the members both the reactor and the message's sender may reach."""
    if await store.get_conversation(pool, conversation_id, user) is None:
        raise NotFound()
    if emoji is not None and not is_emoji(emoji):
        raise ValidationFailed("emoji: one emoji.", fields={"emoji": "React with one emoji."})
    reacted = await store.set_reaction(pool, conversation_id, seq, user, emoji)
    if reacted is None:
        raise NotFound()
    if reacted.changed:
        await publish_to_members(pool, gateway, conversation_id, [user, reacted.message["sender_id"]],
                                 frames.encode(frames.MessageReaction(
                                     conversation_id=str(conversation_id), seq=seq, user_id=str(user), emoji=emoji,
                                     change_seq=reacted.change_seq)))


async def edit_message(pool: asyncpg.Pool, gateway: Gateway, sender: int, conversation_id: int, seq: int,
                       text: str) -> Message:
    """The sender's own text message gets new text within the edit window; the members the sender
    may reach get message.edited, each with the reactions they may see."""
    if is_blank(text):
        raise ValidationFailed("A message needs text.", fields={"text": "Write something."})
    if await store.get_conversation(pool, conversation_id, sender) is None:
        raise NotFound()
    row = await store.edit_message(pool, conversation_id, seq, sender, text)
    if row is None:
        existing = await store.get_message(pool, conversation_id, seq, sender)
        if existing is None or existing["deleted_at"] is not None:
            raise NotFound()
        if existing["sender_id"] != sender:
            raise Forbidden("Only the sender can edit a message.")
        if existing["media_id"] is not None or existing["share_type"] is not None:
            raise ValidationFailed("Only text messages can be edited.")
        raise EditWindowClosed()
    members = await reached_members(pool, conversation_id, [sender])
    seen = await messages_for_each(pool, [sender, *members], [row])
    await gateway.publish([(m, Gateway.envelope(frames.encode(frames.MessageEdited(message=seen[m][0]))))
                           for m in members])
    return seen[sender][0]


# ---------------------------------------------------------------- websocket frames


@frame_rules.on(frames.SendMessage)
async def on_send(conn: Connection, frame: frames.SendMessage) -> None:
    message, _ = await send_message(conn.app[pool_key], conn.app[writer_key], conn.user_id,
                                    int(frame.conversation_id), frame, origin=conn)
    await conn.send(frames.MessageAck(ref=frame.ref, message=message))


@frame_rules.on(frames.ReadMessages)
async def on_read(conn: Connection, frame: frames.ReadMessages) -> None:
    await read_messages(conn.app[pool_key], conn.gateway, conn.user_id, int(frame.conversation_id), frame.seq,
                        origin=conn)


@frame_rules.on(frames.DeleteMessage)
async def on_delete(conn: Connection, frame: frames.DeleteMessage) -> None:
    await delete_message(conn.app[pool_key], conn.gateway, conn.user_id, int(frame.conversation_id), frame.seq)


@frame_rules.on(frames.ReactMessage, frames.UnreactMessage)
async def on_react(conn: Connection, frame: frames.ReactMessage | frames.UnreactMessage) -> None:
    emoji = frame.emoji if isinstance(frame, frames.ReactMessage) else None
    await react_to_message(conn.app[pool_key], conn.gateway, conn.user_id, int(frame.conversation_id), frame.seq,
                           emoji)


@frame_rules.on(frames.EditMessage)
async def on_edit(conn: Connection, frame: frames.EditMessage) -> None:
    await edit_message(conn.app[pool_key], conn.gateway, conn.user_id, int(frame.conversation_id), frame.seq,
                       frame.text)


# ---------------------------------------------------------------- REST routes


@routes.route("GET", "/api/conversations/{id}/messages/", sees="member", response=Page[Message],
              query={"before_seq": "messages before this seq, newest first", "after_seq":
                     "messages after this seq, oldest first", "limit": "page size (default 50, max 100)"})
async def list_messages(request: web.Request) -> web.Response:
    """History by sequence number: after_seq ascending, else before_seq (or the newest) descending;
    only the messages the viewer may read (not those of a member they are kept apart from)."""
    viewer = current_user(request)
    conversation_id = path_id(request)
    page = page_request(request, default=50)
    before, after = seq_param(request, "before_seq"), seq_param(request, "after_seq")
    if before is not None and after is not None:
        raise ValidationFailed("Give before_seq or after_seq, not both.", fields={"after_seq": "Not with before_seq."})
    pool = await read_pool(request)
    if await store.get_conversation(pool, conversation_id, viewer) is None:
        raise NotFound()
    rows = await store.history(pool, conversation_id, viewer, before, after, page.limit)
    name = "after_seq" if after is not None else "before_seq"
    items = await messages_for(pool, viewer, rows)
    return json_response(make_page(request, items, page.limit, lambda m: str(m.seq), param=name))


def seq_param(request: web.Request, name: str) -> int | None:
    """A non-negative seq from the query string; a bad one is 400."""
    raw = request.query.get(name)
    if raw in (None, ""):
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise ValidationFailed(f"{name} must be a number.", fields={name: "Must be a number."})
    return int(raw)


@routes.route("POST", "/api/conversations/{id}/messages/", sees="member", body=SendBody, response=Message, status=201,
              also={200: "a resend with a client_id already used: the original message, unchanged"})
async def post_message(request: web.Request) -> web.Response:
    """Send a message (REST twin of message.send); a resend with the same client_id returns the original (200)."""
    viewer = current_user(request)
    conversation_id = path_id(request)
    body = await read_json(request, SendBody)
    message, created = await send_message(request.app[pool_key], request.app[writer_key], viewer, conversation_id,
                                          body)
    return json_response(message, status=201 if created else 200)


@routes.route("DELETE", "/api/conversations/{id}/messages/{seq}/", sees="owner", status=204)
async def remove_message(request: web.Request) -> web.Response:
    """Delete your message for everyone: it becomes a tombstone and members get message.deleted."""
    viewer = current_user(request)
    conversation_id = path_id(request)
    seq = parse_id(request.match_info.get("seq"))
    await delete_message(request.app[pool_key], request.app[gateway_key], viewer, conversation_id, seq)
    return no_content()


@routes.route("PATCH", "/api/conversations/{id}/messages/{seq}/", sees="owner", body=EditBody, response=Message)
async def patch_message(request: web.Request) -> web.Response:
    """Edit your own text message within 15 minutes of sending it (REST twin of message.edit)."""
    viewer = current_user(request)
    body = await read_json(request, EditBody)
    message = await edit_message(request.app[pool_key], request.app[gateway_key], viewer, path_id(request),
                                 parse_id(request.match_info.get("seq")), body.text)
    return json_response(message)


@routes.route("POST", "/api/conversations/{id}/messages/{seq}/reactions/", sees="member", body=ReactBody, status=204)
async def post_reaction(request: web.Request) -> web.Response:
    """Set your one reaction to a message, replacing the one you had (REST twin of message.react)."""
    body = await read_json(request, ReactBody)
    await react_to_message(request.app[pool_key], request.app[gateway_key], current_user(request), path_id(request),
                           parse_id(request.match_info.get("seq")), body.emoji)
    return no_content()


@routes.route("DELETE", "/api/conversations/{id}/messages/{seq}/reactions/", sees="member", status=204)
async def delete_reaction(request: web.Request) -> web.Response:
    """Take back your reaction to a message (REST twin of message.unreact)."""
    await react_to_message(request.app[pool_key], request.app[gateway_key], current_user(request), path_id(request),
                           parse_id(request.match_info.get("seq")), None)
    return no_content()


@routes.route("POST", "/api/conversations/{id}/read/", sees="member", body=ReadBody, status=204)
async def mark_read(request: web.Request) -> web.Response:
    """Mark the conversation read up to seq (REST twin of the message.read frame)."""
    viewer = current_user(request)
    conversation_id = path_id(request)
    body = await read_json(request, ReadBody)
    await read_messages(request.app[pool_key], request.app[gateway_key], viewer, conversation_id, body.seq)
    return no_content()
