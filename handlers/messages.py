"""Direct messages: conversations (1:1 and groups), messages, receipts, typing, presence and sync,
over REST and the websocket. Each websocket frame is handled beside its REST twin, and both call
the same function (`send_message`, `read_messages`, `delete_message`).

Messages are written by one writer task per process (group commit): every send queued while the
previous commit ran is stored by one statement, then acknowledged, then published to each member's
bus channel in one pipeline. Publishing is lossy by design: clients catch up with `sync`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import defaultdict
from datetime import datetime
from typing import Annotated, AsyncIterator, Iterable

import asyncpg
import jwt
from aiohttp import web
from msgspec import UNSET, Meta, UnsetType

from handlers.auth import auth_markers, bearer_token, check_session, current_user
from handlers.common import (
    ApiError, Forbidden, NotAuthenticated, NotFound, Page, RateLimited, Routes, Struct, ValidationFailed, client_error,
    decode_cursor, encode_cursor, error_frame, json_response, no_content, page_request, parse_id, path_id, read_json,
    read_pool,
)
from handlers.context import config_key, identity_key, limiter_key, pool_key, redis_key
from realtime import frames
from realtime.frames import IdStr, Message, PositiveSeq, Seq
from realtime.gateway import Connection, Delivery, Gateway, Settings, gateway_ctx, gateway_key
from realtime.presence import iso as ms_iso
from storage import faults, outbox, visibility
from storage import messages as store
from storage.metrics import MESSAGES_SENT
from storage.ratelimit import user_key

log = logging.getLogger("glint.messages")
outages = faults.OutageLog(log)

routes = Routes("messages")

MAX_GROUP = 256
BATCH_MAX = 500


# ---------------------------------------------------------------- wire shapes


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


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


class MemberOut(Struct):
    user_id: str
    read_seq: int
    delivered_seq: int


class ConversationOut(Struct):
    """A conversation with its members' positions (detail)."""

    id: str
    kind: str
    title: str
    created_by: str
    last_seq: int
    read_seq: int
    unread_count: int
    members: list[MemberOut]
    created_at: str
    last_message_at: str
    muted: bool = False  # the viewer's settings: a muted conversation never pushes nor e-mails
    pinned: bool = False
    request: bool = False  # a message request for the viewer (folder=requests) until accepted


class ConversationSummary(Struct):
    """A conversation in the viewer's list."""

    id: str
    kind: str
    title: str
    member_ids: list[str]
    last_seq: int
    read_seq: int
    unread_count: int
    last_message: Message | None
    last_message_at: str
    muted: bool = False
    pinned: bool = False
    request: bool = False


class CreateConversation(Struct):
    member_ids: Annotated[list[IdStr], Meta(min_length=1, max_length=MAX_GROUP - 1)]
    title: Annotated[str, Meta(max_length=100)] = ""


class ConversationSettings(Struct):
    """The viewer's own settings of a conversation, and a group's title (for everyone)."""

    muted: bool | UnsetType = UNSET
    pinned: bool | UnsetType = UNSET
    title: Annotated[str, Meta(max_length=100)] | UnsetType = UNSET


class AddMembers(Struct):
    user_ids: Annotated[list[IdStr], Meta(min_length=1, max_length=MAX_GROUP - 1)]


class SendBody(Struct):
    client_id: Annotated[str, Meta(min_length=1, max_length=64)]
    text: Annotated[str, Meta(max_length=frames.MAX_TEXT)] = ""
    media_id: IdStr | None = None
    reply_to_seq: PositiveSeq | None = None
    share: frames.ShareRef | None = None


class ReadBody(Struct):
    seq: Seq


class ReactBody(Struct):
    emoji: frames.Emoji


class EditBody(Struct):
    text: Annotated[str, Meta(min_length=1, max_length=frames.MAX_TEXT)]


# ---------------------------------------------------------------- the writer (group commit)


class Unstorable(ValidationFailed):
    message = "A value of this message cannot be stored."


def refused(exc: BaseException) -> BaseException:
    """What the sender of a message the database refused hears: a 400 for a value it refused
    (logged, as the edge should have caught it), the error itself otherwise."""
    if isinstance(exc, (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError, UnicodeError,
                        OverflowError, ValueError)):
        log.warning("a message was refused by the database: %r", exc)
        return Unstorable()
    return exc


class Blocked(ApiError):
    status, code, message = 403, "blocked", "You cannot message this user."


class EditWindowClosed(ApiError):
    status, code, message = 403, "edit_window_closed", "A message can be edited within 15 minutes of sending it."


class ApartMembers(ValidationFailed):
    message = "Some of these users cannot be in one group."


class MessageWriter:
    """One per process: stores queued drafts a batch per statement, acks, publishes after commit,
    and records `message_sent` events for recipients with no socket anywhere."""

    def __init__(self, pool: asyncpg.Pool, gateway: Gateway) -> None:
        self.pool = pool
        self.gateway = gateway
        self.queue: list[tuple[store.Draft, asyncio.Future, Connection | None]] = []
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.stats = {"batches": 0, "messages": 0}

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="message-writer")

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        if self.task is not None:
            self.queue.append(None)  # type: ignore[arg-type]  # the stop marker
            self.wakeup.set()
            await self.task

    def submit(self, draft: store.Draft, origin: Connection | None) -> asyncio.Future:
        """Queue a draft (synchronously, so a socket's sends keep their order); the future gives
        its store.Written."""
        future = asyncio.get_running_loop().create_future()
        self.queue.append((draft, future, origin))
        self.wakeup.set()
        return future

    async def _run(self) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            while self.queue:
                batch, self.queue = self.queue[:BATCH_MAX], self.queue[BATCH_MAX:]
                stop = any(item is None for item in batch)
                batch = [item for item in batch if item is not None]
                if batch:
                    try:
                        await self._write(batch)
                    except Exception as exc:
                        if faults.is_unavailable(exc):
                            outages.note("storing messages", exc)
                        else:
                            log.exception("message batch failed")
                        for _, future, _ in batch:
                            if not future.done():
                                future.set_exception(exc)
                if stop:
                    return

    async def _write(self, batch: list[tuple[store.Draft, asyncio.Future, Connection | None]]) -> None:
        # the same (sender, client id) twice in one batch: the later ones share the first's result
        first: dict[tuple[int, str], int] = {}
        unique: list[tuple[store.Draft, asyncio.Future, Connection | None]] = []
        followers: list[tuple[int, asyncio.Future]] = []
        for draft, future, origin in batch:
            key = (draft.sender_id, draft.client_id)
            if key in first:
                followers.append((first[key], future))
            else:
                first[key] = len(unique)
                unique.append((draft, future, origin))
        drafts = [d for d, _, _ in unique]
        results: list[store.Written | BaseException]
        try:
            results = list(await self._store(drafts))
        except Exception as exc:
            if faults.is_unavailable(exc):
                raise  # the store is away: every sender hears it
            if len(drafts) == 1:
                results = [refused(exc)]
            else:
                # no shared fate: one value the database refuses fails its own send, not the batch
                log.warning("a batch of %d messages failed (%r); storing them one by one", len(drafts), exc)
                results = [await self._store_one(d) for d in drafts]
        self.stats["batches"] += 1
        self.stats["messages"] += len(drafts)
        MESSAGES_SENT.inc(sum(1 for w in results if not isinstance(w, BaseException) and w.status == "ok"))
        for (draft, future, _), written in zip(unique, results):
            if not future.done():
                if isinstance(written, BaseException):
                    future.set_exception(written)
                else:
                    future.set_result(written)
        for index, future in followers:
            if not future.done():
                original = results[index]
                if isinstance(original, BaseException):
                    future.set_exception(original)
                else:
                    future.set_result(store.Written("duplicate", original.message, []))
        await self._publish([(w, origin) for (_, _, origin), w in zip(unique, results)
                             if not isinstance(w, BaseException) and w.status == "ok"])

    async def _store(self, drafts: list[store.Draft]) -> list[store.Written]:
        for attempt in range(5):
            try:
                return await store.write_batch(self.pool, drafts)
            except (asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError):
                # another process stored one of these client ids meanwhile (a retry finds the
                # original), or lock orders crossed; the statement changed nothing
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")

    async def _store_one(self, draft: store.Draft) -> store.Written | BaseException:
        try:
            return (await self._store([draft]))[0]
        except Exception as exc:
            return exc if faults.is_unavailable(exc) else refused(exc)

    async def _publish(self, written: list[tuple[store.Written, Connection | None]]) -> None:
        """Hand the frames to the bus publisher (the writer never waits on the bus). Once they are
        out, recipients no process holds a socket of get `message_sent`, for a push; when the bus
        could not take them, every recipient counts as offline: a push too many, never one missing."""
        items: list[tuple[int, bytes]] = []
        owners: list[int | None] = []
        for w, origin in written:
            row = w.message
            frame = frames.encode(frames.MessageNew(message=message_out(row)))
            # a share is rendered for each member by the visibility policy: one frame each
            shares = await render_shares(self.pool, w.member_ids, [row]) if row["share_type"] is not None else {}
            sender = row["sender_id"]
            delivery = Delivery(row["conversation_id"], row["seq"], sender)
            for member in w.member_ids:
                own = frame if not shares else frames.encode(frames.MessageNew(
                    message=message_out(row, share=shares[(member, row["id"])])))
                items.append((member, Gateway.envelope(own, exclude=origin if member == sender else None,
                                                       delivery=delivery)))
                owners.append(None if member == sender or member in w.quiet_ids else id(w))

        async def published(counts: list[int] | None) -> None:
            offline: dict[int, list[int]] = defaultdict(list)
            for (member, _), owner, count in zip(items, owners, counts or [0] * len(items)):
                if owner is not None and count == 0:
                    offline[owner].append(member)
            if offline:
                await self._record_offline([(w.message, offline[id(w)]) for w, _ in written if id(w) in offline])

        self.gateway.publisher.submit(items, published)

    async def _record_offline(self, rows: list[tuple[asyncpg.Record, list[int]]]) -> None:
        """`message_sent` for recipients no process holds a socket of, for the notifications work.
        Written right after the message's commit (who is offline is known only after publishing):
        a crash in between loses that push, never the message."""
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                for row, recipients in rows:
                    await outbox.add_event(conn, "messages", "message_sent", row["conversation_id"], {
                        "message_id": str(row["id"]), "conversation_id": str(row["conversation_id"]),
                        "seq": row["seq"], "sender_id": str(row["sender_id"]),
                        "recipient_ids": [str(r) for r in recipients], "preview": row["text"][:100],
                    })
        except Exception as exc:
            if faults.is_unavailable(exc):
                outages.note("recording message_sent events", exc)
            else:
                log.exception("recording message_sent events failed")


class ReceiptWriter:
    """Delivered receipts, coalesced: each (conversation, recipient) moves to the highest seq its
    sockets wrote since the last flush, in one statement, and the senders are told."""

    def __init__(self, pool: asyncpg.Pool, gateway: Gateway) -> None:
        self.pool = pool
        self.gateway = gateway
        self.pending: dict[tuple[int, int], tuple[int, set[int]]] = {}
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.stopping = False

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="receipt-writer")

    async def stop(self) -> None:
        if self.task is not None:
            self.stopping = True
            self.wakeup.set()
            await self.task

    async def _mark(self, positions: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
        for attempt in range(3):
            try:
                return await store.mark_delivered_batch(self.pool, positions)
            except asyncpg.DeadlockDetectedError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def add(self, user_id: int, delivery: Delivery) -> None:
        """A socket of user_id wrote message delivery.seq out."""
        if user_id == delivery.sender_id:
            return
        key = (delivery.conversation_id, user_id)
        seq, senders = self.pending.get(key, (0, set()))
        senders.add(delivery.sender_id)
        self.pending[key] = (max(seq, delivery.seq), senders)
        self.wakeup.set()

    async def _run(self) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            if self.pending:
                pending, self.pending = self.pending, {}
                try:
                    await self._flush(pending)
                except Exception:
                    log.exception("delivered receipts failed")
            if self.stopping:
                return

    async def _flush(self, pending: dict[tuple[int, int], tuple[int, set[int]]]) -> None:
        positions = sorted((conv, user, seq) for (conv, user), (seq, _) in pending.items())
        try:
            moved = await self._mark(positions)
        except Exception as exc:
            if faults.is_unavailable(exc):
                raise
            # no shared fate: a position the database refuses loses only its own receipt
            log.warning("a batch of %d delivered receipts failed (%r); writing them one by one", len(positions), exc)
            moved = []
            for position in positions:
                try:
                    moved += await self._mark([position])
                except Exception as one:
                    if faults.is_unavailable(one):
                        raise
                    log.warning("delivered receipt %s refused: %r", position, one)
        items = []
        for conv, user, seq in moved:
            frame = frames.encode(frames.MessageDelivered(conversation_id=str(conv), seq=seq, user_id=str(user)))
            for sender in pending[(conv, user)][1]:
                items.append((sender, Gateway.envelope(frame)))
        await self.gateway.publish(items)


writer_key = web.AppKey("message_writer", MessageWriter)
receipts_key = web.AppKey("receipt_writer", ReceiptWriter)


def on_delivered(conn: Connection, delivery: Delivery) -> None:
    """The gateway's callback once a socket wrote a message.new out."""
    conn.app[receipts_key].add(conn.user_id, delivery)


# ---------------------------------------------------------------- the rules


async def send_message(app: web.Application, sender: int, conversation_id: int, body: SendBody | frames.SendMessage,
                       origin: Connection | None = None) -> tuple[Message, bool]:
    """Store a message (or find the original of a resend); (message, created). Members only; not
    into a 1:1 with a block either way; text, media or a share required (a share of something the
    sender may see)."""
    share = body.share
    if not body.text.strip() and body.media_id is None and share is None:
        raise ValidationFailed("A message needs text, media or a share.", fields={"text": "Send text or media."})
    pool = app[pool_key]
    media_id = int(body.media_id) if body.media_id is not None else None
    if media_id is not None and not await store.claim_media(pool, media_id, sender):
        raise ValidationFailed("media_id: no such media of yours.", fields={"media_id": "Unknown media."})
    if share is not None and not await store.shared_items(pool, [(sender, share.type, int(share.id))]):
        raise ValidationFailed(f"share: no such {share.type}.", fields={"share": f"No such {share.type}."})
    draft = store.Draft(conversation_id, sender, body.client_id, body.text, media_id, body.reply_to_seq,
                        share.type if share else None, int(share.id) if share else None)
    written: store.Written = await app[writer_key].submit(draft, origin)
    if written.status == "not_member":
        raise NotFound()
    if written.status == "blocked":
        raise Blocked()
    if written.status == "bad_reply":
        raise ValidationFailed("reply_to_seq: no such message here.", fields={"reply_to_seq": "No such message."})
    row = written.message
    message = message_out(row) if row["share_type"] is None else (await messages_for(pool, sender, [row]))[0]
    return message, written.status == "ok"


async def read_messages(app: web.Application, reader: int, conversation_id: int, seq: int,
                        origin: Connection | None = None) -> None:
    """Move the reader's read position up to seq and tell every member's sockets."""
    pool = app[pool_key]
    moved = await store.mark_read(pool, conversation_id, reader, seq)
    if moved is None:
        if await store.get_conversation(pool, conversation_id, reader) is None:
            raise NotFound()
        return
    position, members = moved
    frame = frames.encode(frames.MessageReadReceipt(conversation_id=str(conversation_id), seq=position,
                                                    user_id=str(reader)))
    await app[gateway_key].publish([(m, Gateway.envelope(frame, exclude=origin)) for m in members])


async def delete_message(app: web.Application, sender: int, conversation_id: int, seq: int) -> None:
    """Delete for everyone: only the sender; the message becomes a tombstone, members are told."""
    pool = app[pool_key]
    if await store.get_conversation(pool, conversation_id, sender) is None:
        raise NotFound()
    row = await store.delete_message(pool, conversation_id, seq, sender)
    if row is None:
        existing = await store.get_message(pool, conversation_id, seq)
        raise NotFound() if existing is None else Forbidden("Only the sender can delete a message.")
    frame = frames.encode(frames.MessageDeleted(conversation_id=str(conversation_id), seq=seq))
    members = await store.member_ids(pool, conversation_id)
    await app[gateway_key].publish([(m, Gateway.envelope(frame)) for m in members])


async def publish_to_members(app: web.Application, actor: int, conversation_id: int, frame: bytes) -> None:
    """One frame to the members of a conversation the actor may reach (as message.new goes)."""
    pool = app[pool_key]
    members = await store.member_ids(pool, conversation_id)
    reached = await visibility.reachable(pool, actor, members) | {actor}
    await app[gateway_key].publish([(m, Gateway.envelope(frame)) for m in members if m in reached])


async def react_to_message(app: web.Application, user: int, conversation_id: int, seq: int, emoji: str | None) -> None:
    """Set (or, with None, take back) the member's one reaction; members get message.reaction."""
    pool = app[pool_key]
    if await store.get_conversation(pool, conversation_id, user) is None:
        raise NotFound()
    if emoji is not None and not emoji.strip():
        raise ValidationFailed("emoji must not be blank.", fields={"emoji": "Pick an emoji."})
    reacted = await store.set_reaction(pool, conversation_id, seq, user, emoji)
    if reacted is None:
        raise NotFound()
    if reacted.changed:
        await publish_to_members(app, user, conversation_id, frames.encode(frames.MessageReaction(
            conversation_id=str(conversation_id), seq=seq, user_id=str(user), emoji=emoji,
            change_seq=reacted.change_seq)))


async def edit_message(app: web.Application, sender: int, conversation_id: int, seq: int, text: str) -> Message:
    """The sender's own text message gets new text within the edit window; members get message.edited."""
    if not text.strip():
        raise ValidationFailed("A message needs text.", fields={"text": "Write something."})
    pool = app[pool_key]
    if await store.get_conversation(pool, conversation_id, sender) is None:
        raise NotFound()
    row = await store.edit_message(pool, conversation_id, seq, sender, text)
    if row is None:
        existing = await store.get_message(pool, conversation_id, seq)
        if existing is None or existing["deleted_at"] is not None:
            raise NotFound()
        if existing["sender_id"] != sender:
            raise Forbidden("Only the sender can edit a message.")
        if existing["media_id"] is not None or existing["share_type"] is not None:
            raise ValidationFailed("Only text messages can be edited.")
        raise EditWindowClosed()
    message = (await messages_for(pool, sender, [row]))[0]
    await publish_to_members(app, sender, conversation_id, frames.encode(frames.MessageEdited(message=message)))
    return message


async def create_conversation(app: web.Application, creator: int, body: CreateConversation) -> tuple[int, bool]:
    """One other member: the 1:1 conversation (made on first use); more: a new group."""
    pool = app[pool_key]
    others = {int(m) for m in body.member_ids} - {creator}
    if not others:
        raise ValidationFailed("member_ids must name someone else.", fields={"member_ids": "Name someone else."})
    unknown = await unreachable(pool, creator, others)
    if len(body.member_ids) == 1:
        if unknown:
            raise NotFound("No such user.")
        return await store.get_or_create_direct(pool, creator, others.pop())
    if unknown:
        raise ValidationFailed("member_ids: unknown users.",
                               fields={"member_ids": "Unknown: " + ", ".join(str(u) for u in sorted(unknown))})
    if await visibility.conflicts(pool, others):
        raise ApartMembers(fields={"member_ids": ApartMembers.message})
    async with pool.acquire() as conn, conn.transaction():
        return await store.create_group_txn(conn, creator, sorted(others), body.title), True


async def unreachable(pool: asyncpg.Pool, sender: int, users: set[int]) -> set[int]:
    """Of these users, those the sender may not add or message: unknown, inactive, or kept apart."""
    return users - (await store.existing_active_users(pool, users) & await visibility.reachable(pool, sender, users))


async def conversation_detail(pool: asyncpg.Pool, conversation_id: int, viewer: int) -> ConversationOut:
    """A conversation the viewer belongs to; 404 otherwise."""
    row = await store.get_conversation(pool, conversation_id, viewer)
    if row is None:
        raise NotFound()
    members = await store.get_members(pool, conversation_id)
    return ConversationOut(
        id=str(row["id"]), kind=row["kind"], title=row["title"], created_by=str(row["created_by"]),
        last_seq=row["last_seq"], read_seq=row["read_seq"],
        unread_count=await store.unread_count(pool, conversation_id, viewer),
        members=[MemberOut(user_id=str(m["user_id"]), read_seq=m["read_seq"], delivered_seq=m["delivered_seq"])
                 for m in members],
        created_at=iso(row["created_at"]), last_message_at=iso(row["last_message_at"]),
        muted=row["muted"], pinned=row["pinned_at"] is not None, request=not row["accepted"],
    )


# ---------------------------------------------------------------- REST routes


@routes.route("GET", "/api/conversations/", response=Page[ConversationSummary],
              query={"folder": "inbox (default) or requests: conversations started by people you do not follow,"
                               " until you accept them", "cursor": "from `next`", "limit": "page size"})
async def list_conversations(request: web.Request) -> web.Response:
    """The viewer's conversations in a folder: pinned ones first (on the first page), then the rest,
    latest activity first, with the last message and unread count."""
    viewer = current_user(request)
    page = page_request(request)
    folder = request.query.get("folder", "inbox")
    if folder not in ("inbox", "requests"):
        raise ValidationFailed("folder must be inbox or requests.", fields={"folder": "inbox or requests."})
    cursor = decode_cursor(page.cursor, datetime, str)
    before = (cursor[0], parse_id(cursor[1], "cursor")) if cursor is not None else None
    pool = request.app[pool_key]
    requests = folder == "requests"
    pinned = [] if before is not None else await store.list_conversations(
        pool, viewer, None, store.MAX_PINNED, requests, pinned=True)
    rows = await store.list_conversations(pool, viewer, before, page.limit + 1, requests)
    lasts = await messages_for(pool, viewer, pinned + rows, "last_")
    items = [ConversationSummary(
        id=str(r["id"]), kind=r["kind"], title=r["title"], member_ids=[str(m) for m in r["member_ids"] or ()],
        last_seq=r["last_seq"], read_seq=r["read_seq"], unread_count=r["unread"],
        last_message=last if r["last_id"] is not None else None,
        last_message_at=iso(r["last_message_at"]), muted=r["muted"], pinned=r["pinned_at"] is not None,
        request=not r["accepted"],
    ) for r, last in zip(pinned + rows, lasts)]
    listed = make_next(request, items[len(pinned):], page.limit,
                       lambda c: {"cursor": encode_cursor(c.last_message_at, c.id)})
    return json_response(Page(results=items[:len(pinned)] + listed.results, next=listed.next))


@routes.route("PATCH", "/api/conversations/{id}/", sees="member", body=ConversationSettings, response=ConversationOut)
async def patch_conversation(request: web.Request) -> web.Response:
    """Mute (still delivered, never pushed nor e-mailed) or pin (listed first; at most 5) a
    conversation for yourself, or rename a group (for everyone)."""
    viewer = current_user(request)
    conversation_id = path_id(request)
    body = await read_json(request, ConversationSettings)
    pool = request.app[pool_key]
    row = await store.get_conversation(pool, conversation_id, viewer)
    if row is None:
        raise NotFound()
    if body.title is not UNSET and row["kind"] != "group":
        raise ValidationFailed("Only a group has a title.", fields={"title": "Only a group has a title."})
    try:
        await store.update_member_settings(pool, conversation_id, viewer, None if body.muted is UNSET else body.muted,
                                           None if body.pinned is UNSET else body.pinned)
    except store.TooManyPinned:
        raise ValidationFailed(f"Pin at most {store.MAX_PINNED} conversations.",
                               fields={"pinned": f"At most {store.MAX_PINNED}."}) from None
    if body.title is not UNSET:
        await store.set_title(pool, conversation_id, body.title)
    return json_response(await conversation_detail(pool, conversation_id, viewer))


@routes.route("POST", "/api/conversations/{id}/accept/", sees="member", response=ConversationOut)
async def accept_conversation(request: web.Request) -> web.Response:
    """Accept a message request: the conversation moves to your inbox and its messages push again."""
    viewer = current_user(request)
    conversation_id = path_id(request)
    pool = request.app[pool_key]
    if not await store.answer_request(pool, conversation_id, viewer, accept=True):
        raise NotFound()
    return json_response(await conversation_detail(pool, conversation_id, viewer))


@routes.route("DELETE", "/api/conversations/{id}/", sees="member", status=204)
async def decline_conversation(request: web.Request) -> web.Response:
    """Decline (delete) a conversation for yourself: it leaves both folders and never pushes; the
    others see no difference. Starting it again yourself, or answering, brings it back."""
    if not await store.answer_request(request.app[pool_key], path_id(request), current_user(request), accept=False):
        raise NotFound()
    return no_content()


def make_next(request: web.Request, items: list, limit: int, query_of) -> Page:
    """A page of at most `limit` items whose `next` carries `query_of(last item)`."""
    if len(items) <= limit:
        return Page(results=items, next=None)
    items = items[:limit]
    query = {**request.query, **query_of(items[-1]), "limit": str(limit)}
    return Page(results=items, next=str(request.rel_url.with_query(query)))


@routes.route("POST", "/api/conversations/", body=CreateConversation, response=ConversationOut, status=201,
              also={200: "one other member, and the 1:1 conversation with them exists already: that one"})
async def start_conversation(request: web.Request) -> web.Response:
    """Start a conversation: one other member gives the 1:1 (the existing one if any), more a group."""
    viewer = current_user(request)
    body = await read_json(request, CreateConversation)
    conversation_id, created = await create_conversation(request.app, viewer, body)
    detail = await conversation_detail(request.app[pool_key], conversation_id, viewer)
    return json_response(detail, status=201 if created else 200)


@routes.route("GET", "/api/conversations/{id}/", sees="member", response=ConversationOut)
async def get_conversation(request: web.Request) -> web.Response:
    """A conversation: members, title and each member's read position."""
    return json_response(await conversation_detail(request.app[pool_key], path_id(request), current_user(request)))


@routes.route("POST", "/api/conversations/{id}/members/", sees="member", body=AddMembers, response=ConversationOut)
async def add_members(request: web.Request) -> web.Response:
    """Add members to a group (any member may; at most 256 members)."""
    viewer = current_user(request)
    conversation_id = path_id(request)
    body = await read_json(request, AddMembers)
    pool = request.app[pool_key]
    new = {int(u) for u in body.user_ids}
    unknown = await unreachable(pool, viewer, new)
    if unknown:
        raise ValidationFailed("user_ids: unknown users.",
                               fields={"user_ids": "Unknown: " + ", ".join(str(u) for u in sorted(unknown))})
    async with pool.acquire() as conn, conn.transaction():
        row = await store.lock_group_txn(conn, conversation_id)
        if row is None or await store.get_conversation(conn, conversation_id, viewer) is None:
            raise NotFound()
        if row["kind"] != "group":
            raise ValidationFailed("Members can be added to groups only.")
        if await visibility.conflicts(conn, new | set(await store.member_ids(conn, conversation_id))):
            raise ApartMembers(fields={"user_ids": ApartMembers.message})
        if await store.add_members_txn(conn, conversation_id, viewer, new) > MAX_GROUP:
            raise ValidationFailed(f"A group has at most {MAX_GROUP} members.",
                                   fields={"user_ids": f"At most {MAX_GROUP} members."})
    return json_response(await conversation_detail(pool, conversation_id, viewer))


@routes.route("DELETE", "/api/conversations/{id}/members/{user_id}/", sees="owner", status=204)
async def remove_member(request: web.Request) -> web.Response:
    """Leave a group (your own id) or, as its creator, remove a member."""
    viewer = current_user(request)
    conversation_id, target = path_id(request), path_id(request, "user_id")
    pool = request.app[pool_key]
    row = await store.get_conversation(pool, conversation_id, viewer)
    if row is None:
        raise NotFound()
    if row["kind"] != "group":
        raise ValidationFailed("A 1:1 conversation has no members to remove.")
    if target != viewer and row["created_by"] != viewer:
        raise Forbidden("Only the group's creator can remove others.")
    if not await store.remove_member(pool, conversation_id, target):
        raise NotFound()
    return no_content()


@routes.route("GET", "/api/conversations/{id}/messages/", sees="member", response=Page[Message],
              query={"before_seq": "messages before this seq, newest first", "after_seq":
                     "messages after this seq, oldest first", "limit": "page size (default 50, max 100)"})
async def list_messages(request: web.Request) -> web.Response:
    """History by sequence number: after_seq ascending, else before_seq (or the newest) descending."""
    viewer = current_user(request)
    conversation_id = path_id(request)
    page = page_request(request, default=50)
    before, after = seq_param(request, "before_seq"), seq_param(request, "after_seq")
    if before is not None and after is not None:
        raise ValidationFailed("Give before_seq or after_seq, not both.", fields={"after_seq": "Not with before_seq."})
    pool = await read_pool(request)
    if await store.get_conversation(pool, conversation_id, viewer) is None:
        raise NotFound()
    rows = await store.history(pool, conversation_id, before, after, page.limit)
    name = "after_seq" if after is not None else "before_seq"
    items = await messages_for(pool, viewer, rows)
    return json_response(make_next(request, items, page.limit, lambda m: {name: str(m.seq)}))


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
    message, created = await send_message(request.app, viewer, conversation_id, body)
    return json_response(message, status=201 if created else 200)


@routes.route("DELETE", "/api/conversations/{id}/messages/{seq}/", sees="owner", status=204)
async def remove_message(request: web.Request) -> web.Response:
    """Delete your message for everyone: it becomes a tombstone and members get message.deleted."""
    viewer = current_user(request)
    conversation_id = path_id(request)
    seq = parse_id(request.match_info.get("seq"))
    await delete_message(request.app, viewer, conversation_id, seq)
    return no_content()


@routes.route("PATCH", "/api/conversations/{id}/messages/{seq}/", sees="owner", body=EditBody, response=Message)
async def patch_message(request: web.Request) -> web.Response:
    """Edit your own text message within 15 minutes of sending it (REST twin of message.edit)."""
    viewer = current_user(request)
    body = await read_json(request, EditBody)
    message = await edit_message(request.app, viewer, path_id(request),
                                 parse_id(request.match_info.get("seq")), body.text)
    return json_response(message)


@routes.route("POST", "/api/conversations/{id}/messages/{seq}/reactions/", sees="member", body=ReactBody, status=204)
async def post_reaction(request: web.Request) -> web.Response:
    """Set your one reaction to a message, replacing the one you had (REST twin of message.react)."""
    body = await read_json(request, ReactBody)
    await react_to_message(request.app, current_user(request), path_id(request),
                           parse_id(request.match_info.get("seq")), body.emoji)
    return no_content()


@routes.route("DELETE", "/api/conversations/{id}/messages/{seq}/reactions/", sees="member", status=204)
async def delete_reaction(request: web.Request) -> web.Response:
    """Take back your reaction to a message (REST twin of message.unreact)."""
    await react_to_message(request.app, current_user(request), path_id(request),
                           parse_id(request.match_info.get("seq")), None)
    return no_content()


@routes.route("POST", "/api/conversations/{id}/read/", sees="member", body=ReadBody, status=204)
async def mark_read(request: web.Request) -> web.Response:
    """Mark the conversation read up to seq (REST twin of the message.read frame)."""
    viewer = current_user(request)
    conversation_id = path_id(request)
    body = await read_json(request, ReadBody)
    await read_messages(request.app, viewer, conversation_id, body.seq)
    return no_content()


# ---------------------------------------------------------------- the websocket


@routes.route("GET", "/ws", query={"token": "the access token (or send the Authorization header)"})
async def websocket(request: web.Request) -> web.StreamResponse:
    """Open the realtime websocket (frames in API.md; close codes in realtime/gateway.py)."""
    identity = request.get(identity_key)
    if identity is None:
        raise NotAuthenticated()
    token = bearer_token(request) or request.query.get("token", "")
    expires_at = float(jwt.decode(token, options={"verify_signature": False})["exp"])
    visible = identity.user_id not in await store.presence_hidden(request.app[pool_key], [identity.user_id])
    del token  # this frame lives as long as the socket: keep nothing in it that the socket does not need
    return await request.app[gateway_key].serve(
        request, user_id=identity.user_id, session_id=identity.session_id, expires_at=expires_at,
        revoke_keys=auth_markers(identity), presence_visible=visible)


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
    the limit it is refused with a `rate_limited` error (the socket stays open)."""
    config = conn.app[config_key]
    try:
        hit = await conn.app[limiter_key].hit(user_key(conn.user_id, "h"), 3600)
    except faults.UNAVAILABLE as exc:  # the counter is away: the frame goes on uncounted, as messages are stored without Redis
        outages.note("charging a frame", exc)
        return
    if hit.count > config.rate_limit_per_hour:
        raise RateLimited(f"Too many requests; retry in {max(hit.reset_ms // 1000, 1)} s.")


async def _handle(conn: Connection, frame: frames.AnyClientFrame) -> None:
    app = conn.app
    if not isinstance(frame, frames.Typing):  # typing is charged only when not dropped anyway
        await charge_frame(conn)
    if isinstance(frame, frames.SendMessage):
        message, _ = await send_message(app, conn.user_id, int(frame.conversation_id), frame, origin=conn)
        await conn.send(frames.MessageAck(ref=frame.ref, message=message))
    elif isinstance(frame, frames.ReadMessages):
        await read_messages(app, conn.user_id, int(frame.conversation_id), frame.seq, origin=conn)
    elif isinstance(frame, frames.DeleteMessage):
        await delete_message(app, conn.user_id, int(frame.conversation_id), frame.seq)
    elif isinstance(frame, frames.ReactMessage):
        await react_to_message(app, conn.user_id, int(frame.conversation_id), frame.seq, frame.emoji)
    elif isinstance(frame, frames.UnreactMessage):
        await react_to_message(app, conn.user_id, int(frame.conversation_id), frame.seq, None)
    elif isinstance(frame, frames.EditMessage):
        await edit_message(app, conn.user_id, int(frame.conversation_id), frame.seq, frame.text)
    elif isinstance(frame, frames.Typing):
        await send_typing(conn, int(frame.conversation_id))
    elif isinstance(frame, frames.SubscribePresence):
        await subscribe_presence(conn, frame)
    elif isinstance(frame, frames.Sync):
        await sync(conn, frame)


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


async def send_typing(conn: Connection, conversation_id: int) -> None:
    """Tell the other members someone is typing; at most one per typing_min_interval per
    conversation and socket (the rest are dropped)."""
    last: dict[int, float] = conn.state.setdefault("typing", {})
    now = time.monotonic()
    if now - last.get(conversation_id, -1e9) < conn.app[config_key].typing_min_interval:
        return
    last[conversation_id] = now  # before any await: frames of one socket are handled concurrently
    if len(last) > 256:
        last.clear()
    await charge_frame(conn)
    members = await cached_members(conn, conversation_id)
    reached = await visibility.reachable(conn.app[pool_key], conn.user_id, members)
    frame = frames.encode(frames.TypingNotice(conversation_id=str(conversation_id), user_id=str(conn.user_id)))
    await conn.gateway.publish([(m, Gateway.envelope(frame)) for m in members if m != conn.user_id and m in reached])


async def subscribe_presence(conn: Connection, frame: frames.SubscribePresence) -> None:
    """Watch these users' presence (replacing the previous list); answer their current state.
    Users whose presence the viewer may not watch (storage.visibility) always look offline, with no
    last_seen."""
    limit = conn.app[config_key].presence_subscribe_max
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
                                        last_seen=None if online else ms_iso(seen)))


SYNC_PAGE = 200


async def sync(conn: Connection, frame: frames.Sync) -> None:
    """Everything after each given seq, oldest first, as message.new frames; then, for messages up
    to that seq edited or reacted to after the given change counter (without one: in the last 200
    changes), their current state as message.edited; then sync.done with each conversation's
    change counter. Conversations the user is not a member of are skipped."""
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
                rows = (await store.history(pool, conversation_id, None, after, SYNC_PAGE))[:SYNC_PAGE]
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
            rows = (await store.changed_since(pool, conversation_id, since, held, SYNC_PAGE))[:SYNC_PAGE]
            for message in await messages_for(pool, conn.user_id, rows):
                await conn.send(frames.MessageEdited(message=message))
            if len(rows) < SYNC_PAGE:
                break
            since = rows[-1]["change_seq"]
    await conn.send(frames.SyncDone(ref=frame.ref, changes={str(c): n for c, n in counters.items()}))


# ---------------------------------------------------------------- wiring


def realtime_ctx(sockets: weakref.WeakSet):
    """The cleanup context of the gateway (bus, heartbeats) and the message and receipt writers;
    `sockets` is the app's set of open websockets that shutdown closes."""

    def build(app: web.Application) -> Gateway:
        c = app[config_key]
        settings = Settings(max_frame_bytes=c.ws_max_frame_bytes, idle_timeout=c.ws_idle_timeout,
                            heartbeat=c.ws_heartbeat, send_queue=c.ws_send_queue, max_inflight=c.ws_max_inflight,
                            presence_ttl=c.presence_ttl, presence_refresh=c.presence_refresh,
                            publish_give_up=c.bus_publish_give_up_seconds)
        return Gateway(app[redis_key], settings, on_frame=handle_frame, on_delivered=on_delivered, sockets=sockets,
                       verify_session=lambda user_id, session_id: check_session(app, user_id, session_id))

    start_gateway = gateway_ctx(build)

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async for _ in start_gateway(app):
            writer = app[writer_key] = MessageWriter(app[pool_key], app[gateway_key])
            receipts = app[receipts_key] = ReceiptWriter(app[pool_key], app[gateway_key])
            writer.start()
            receipts.start()
            try:
                yield
            finally:
                await writer.stop()
                await receipts.stop()

    return ctx
