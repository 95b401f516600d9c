"""The websocket frame codec: every frame is a JSON object tagged by `type`.

Client frames are one msgspec tagged union behind one decoder; server frames are Structs encoded by
one encoder. A frame that does not decode raises FrameError, which the gateway answers with an
`error` frame (echoing the frame's `ref` when it can find one) and keeps the socket open.

At the end, how a stored message renders into the `Message` body for one viewer.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Iterable, Literal, Union

import asyncpg
import msgspec
from msgspec import Meta

from storage import messages as store
from storage.bounds import BIGINT_MAX, ID_PATTERN, bad_text, plain_validation
from storage.notifications import NotificationView

IdStr = Annotated[str, Meta(pattern=ID_PATTERN, description="a 64-bit id as a string (1..2^63-1)")]
Seq = Annotated[int, Meta(ge=0, le=BIGINT_MAX, description="a position in a conversation")]
PositiveSeq = Annotated[int, Meta(ge=1, le=BIGINT_MAX, description="a message's seq")]
Ref = Union[Annotated[str, Meta(max_length=64)], Annotated[int, Meta(ge=-BIGINT_MAX, le=BIGINT_MAX)], None]
MAX_TEXT = 4000


def iso(moment: datetime) -> str:
    """An aware time as frames and bodies write it: ISO 8601 UTC with a `Z`."""
    return moment.isoformat().replace("+00:00", "Z")


def iso_ms(ms: int | None) -> str | None:
    """An epoch-milliseconds time (presence's last_seen) as iso() writes it; None stays None."""
    return None if ms is None else iso(datetime.fromtimestamp(ms / 1000, timezone.utc))


class ClientFrame(msgspec.Struct, tag_field="type", kw_only=True, forbid_unknown_fields=True):
    """A frame a client sends; `ref` is echoed in the reply."""

    ref: Ref = None


# a message as its sender writes it: the body of POST /api/conversations/{id}/messages/ and, with
# the conversation's id, the message.send frame (no docstring: it would become the body's OpenAPI
# description)
class SendBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    client_id: Annotated[str, Meta(min_length=1, max_length=64)]
    text: Annotated[str, Meta(max_length=MAX_TEXT)] = ""
    media_id: IdStr | None = None
    reply_to_seq: PositiveSeq | None = None
    share: ShareRef | None = None


# a ClientFrame, though not its subclass: msgspec joins no two bases that both have fields, so it
# repeats the tag and `ref`
class SendMessage(SendBody, tag_field="type", tag="message.send"):
    conversation_id: IdStr
    ref: Ref = None


class ShareRef(msgspec.Struct, forbid_unknown_fields=True):
    """What a message shares: a post, a story or a profile."""

    type: Literal["post", "story", "user"]
    id: IdStr


class ReadMessages(ClientFrame, tag="message.read"):
    conversation_id: IdStr
    seq: Seq


class OnMessage(ClientFrame):
    """A frame about one message of a conversation."""

    conversation_id: IdStr
    seq: PositiveSeq


class DeleteMessage(OnMessage, tag="message.delete"):
    pass


Emoji = Annotated[str, Meta(min_length=1, max_length=16, description="one emoji")]


class ReactMessage(OnMessage, tag="message.react"):
    """Set your one reaction to a message (replacing the one you had)."""

    emoji: Emoji


class UnreactMessage(OnMessage, tag="message.unreact"):
    pass


class EditMessage(OnMessage, tag="message.edit"):
    """New text for your own text message, within 15 minutes of sending it."""

    text: Annotated[str, Meta(min_length=1, max_length=MAX_TEXT)]


class Typing(ClientFrame, tag="typing"):
    conversation_id: IdStr


class SubscribePresence(ClientFrame, tag="presence.subscribe"):
    user_ids: Annotated[list[IdStr], Meta(max_length=1000)]


class Sync(ClientFrame, tag="sync"):
    """`conversations`: the last seq held per conversation; `changes`: the change counter last seen
    per conversation (from sync.done, message.edited, message.reaction). Messages up to that seq
    edited or reacted to after the counter come as message.edited; without a counter, those of the
    last 200 changes do."""

    conversations: Annotated[dict[IdStr, Seq], Meta(max_length=1000)]
    changes: Annotated[dict[IdStr, Seq], Meta(max_length=1000)] | None = None


class Ping(ClientFrame, tag="ping"):
    pass


AnyClientFrame = Union[SendMessage, ReadMessages, DeleteMessage, ReactMessage, UnreactMessage, EditMessage, Typing,
                       SubscribePresence, Sync, Ping]


# ---------------------------------------------------------------- server frames


class Media(msgspec.Struct, kw_only=True):
    id: str


class Reaction(msgspec.Struct, kw_only=True):
    user_id: str
    emoji: str


class SharedItem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A shared post, story or profile as one member sees it: its summary, or only type and id
    with `unavailable: true` (and `available: false`) where the member may not see it."""

    type: str
    id: str
    available: bool = True
    unavailable: bool = False
    # a post: author_id, caption, thumbnail; a story: owner_id, caption, expires_at; a user: username, name
    author_id: str | None = None
    owner_id: str | None = None
    caption: str | None = None
    thumbnail: str | None = None
    expires_at: str | None = None
    username: str | None = None
    name: str | None = None


class Message(msgspec.Struct, kw_only=True):
    """A direct message as clients see it, over REST and the socket. `change_seq` is the
    conversation's change counter at its last edit or reaction (0: never changed)."""

    id: str
    conversation_id: str
    seq: int
    sender_id: str
    client_id: str
    text: str
    media: Media | None
    reply_to_seq: Annotated[int | None, Meta(
        description="the seq of the message this one replies to; null when it replies to none, or to a message"
                    " the viewer may not read (its sender is kept from them)")]
    deleted: bool
    removed: bool = False  # deleted by a moderator (then `deleted` is true too)
    created_at: str
    reactions: list[Reaction] = []
    edited_at: str | None = None
    share: SharedItem | None = None
    change_seq: int = 0


class ServerFrame(msgspec.Struct, tag_field="type", kw_only=True):
    """A frame the server sends."""


class Hello(ServerFrame, tag="hello"):
    user_id: str
    session_id: str
    heartbeat: float


class MessageAck(ServerFrame, tag="message.ack"):
    ref: Ref
    message: Message


class MessageNew(ServerFrame, tag="message.new"):
    message: Message


class AtMessage(ServerFrame):
    """A frame about the message at `seq` of a conversation."""

    conversation_id: str
    seq: int


class MessageDelivered(AtMessage, tag="message.delivered"):
    user_id: str


class MessageReadReceipt(AtMessage, tag="message.read"):
    user_id: str


class MessageDeleted(AtMessage, tag="message.deleted"):
    pass


class MessageRemoved(AtMessage, tag="message.removed"):
    """A moderator removed this message: clients show it as removed (it is a tombstone in history)."""


class MessageReaction(AtMessage, tag="message.reaction"):
    """A member set (emoji) or took back (null) their reaction to a message."""

    user_id: str
    emoji: str | None
    change_seq: int


class MessageEdited(ServerFrame, tag="message.edited"):
    """A message's new state (after an edit; in `sync`, after edits or reactions)."""

    message: Message


class TypingNotice(ServerFrame, tag="typing"):
    conversation_id: str
    user_id: str


class Presence(ServerFrame, tag="presence"):
    user_id: str
    status: Literal["online", "offline"]
    last_seen: str | None


class SyncDone(ServerFrame, tag="sync.done"):
    ref: Ref = None
    changes: dict[str, int] = {}  # each synced conversation's change counter, for the next sync


class Pong(ServerFrame, tag="pong"):
    ref: Ref = None


class ErrorFrame(ServerFrame, tag="error"):
    code: str
    message: str
    ref: Ref = None
    retry_after: int | None = None  # seconds; set with code "unavailable" (a store is away: resend then)


Error = ErrorFrame  # (named apart from the REST error body in the OpenAPI document)


class Resync(ServerFrame, tag="resync"):
    """Frames meant for this socket may have been lost while the bus was away: run `sync` (with
    the last seq held per conversation) to fetch what was missed."""

    reason: str = "bus"


class NotificationNew(ServerFrame, tag="notification.new"):
    """A new (or newly grown) notification; the notifications consumer sends it through the bus."""

    notification: NotificationView


AnyServerFrame = Union[Hello, MessageAck, MessageNew, MessageDelivered, MessageReadReceipt, MessageDeleted,
                       MessageRemoved, MessageReaction, MessageEdited, TypingNotice, Presence, SyncDone, Pong, ErrorFrame,
                       Resync]


# ---------------------------------------------------------------- the codec

_decoder = msgspec.json.Decoder(AnyClientFrame)
_encoder = msgspec.json.Encoder()


class FrameError(Exception):
    """A client frame that could not be decoded; becomes an `error` frame."""

    def __init__(self, code: str, message: str, ref: Ref = None) -> None:
        super().__init__(message)
        self.code, self.message, self.ref = code, message, ref


def _ref_of(data: bytes) -> Ref:
    try:
        value: Any = msgspec.json.decode(data)
    except (msgspec.DecodeError, RecursionError):  # nested past msgspec's depth: no ref to find
        return None
    ref = value.get("ref") if isinstance(value, dict) else None
    if isinstance(ref, str) and len(ref) <= 64 or isinstance(ref, int) and not isinstance(ref, bool) \
            and abs(ref) <= BIGINT_MAX:
        return ref
    return None


def decode_client(data: bytes | str) -> AnyClientFrame:
    """One client frame; raises FrameError naming what is wrong (text that is not UTF-8 or holds
    a NUL included: no store could keep it)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    problem = bad_text(raw)
    if problem is not None:
        raise FrameError("invalid_text", problem, _ref_of(raw) if problem.endswith("NUL character.") else None)
    try:
        return _decoder.decode(data)
    except msgspec.ValidationError as exc:
        raw = data.encode() if isinstance(data, str) else data
        text = str(exc)
        code = "unknown_type" if "Invalid value" in text and "`$.type`" in text or "missing required field `type`" in text \
            else "invalid_frame"
        raise FrameError(code, plain_validation(text), _ref_of(raw)) from None
    except msgspec.DecodeError:
        raise FrameError("malformed_json", "The frame is not a JSON object.") from None
    except RecursionError:
        raise FrameError("malformed_json", "The frame is nested too deeply.") from None


def encode(frame: ServerFrame) -> bytes:
    """The JSON bytes of a server frame."""
    return _encoder.encode(frame)


def error(code: str, message: str, ref: Ref = None, retry_after: int | None = None) -> bytes:
    """An encoded `error` frame."""
    return _encoder.encode(Error(ref=ref, code=code, message=message, retry_after=retry_after))


# ---------------------------------------------------------------- a stored message as a viewer sees it
#
# The `Message` body with its reactions, and a shared post, story or profile rendered for the
# viewer by storage.visibility's policy (a deleted message is a tombstone). REST history, the
# socket's replay and the writer's live frames all render here, so a new message field is a field
# on `Message` and a line in `message_out`.


def message_out(row: asyncpg.Record, prefix: str = "", reactions: Iterable[tuple[int, str]] = (),
                share: SharedItem | None = None, reply_hidden: bool = False) -> Message:
    """A stored message as clients see it (a deleted one is a tombstone); `share` is its shared
    item as rendered for the viewer; `reply_hidden`: it replies to a message the viewer may not
    read, so it shows as no reply (`reply_to_seq` null), as a message the viewer may not see is
    none (storage.messages.replies_hidden)."""
    media_id = row[prefix + "media_id"]
    edited_at = row[prefix + "edited_at"]
    return Message(
        id=str(row[prefix + "id"]), conversation_id=str(row[prefix + "conversation_id"]), seq=row[prefix + "seq"],
        sender_id=str(row[prefix + "sender_id"]), client_id=row[prefix + "client_id"], text=row[prefix + "text"],
        media=Media(id=str(media_id)) if media_id is not None else None,
        reply_to_seq=None if reply_hidden else row[prefix + "reply_to_seq"],
        deleted=row[prefix + "deleted_at"] is not None, removed=row[prefix + "removed_at"] is not None,
        created_at=iso(row[prefix + "created_at"]),
        reactions=[Reaction(user_id=str(u), emoji=e) for u, e in reactions],
        edited_at=iso(edited_at) if edited_at is not None else None, share=share, change_seq=row[prefix + "change_seq"],
    )


async def messages_for(pool: asyncpg.Pool, viewer: int, rows: list[asyncpg.Record], prefix: str = "") -> list[Message]:
    """Stored messages (each row holds one) as this viewer sees them: with the reactions they may
    see, and shares rendered for them."""
    return (await messages_for_each(pool, [viewer], rows, prefix))[viewer]


async def messages_for_each(pool: asyncpg.Pool, viewers: Iterable[int], rows: list[asyncpg.Record],
                            prefix: str = "") -> dict[int, list[Message]]:
    """Stored messages (each row holds one) as each of these viewers sees them: with the reactions
    that viewer may see (storage.visibility's policy: those whose authors may reach them), shares
    rendered for them, and no reply to a message they may not read."""
    viewers = list(dict.fromkeys(viewers))
    reactions = await store.reactions_seen(pool, [r[prefix + "id"] for r in rows], viewers)
    shares = await render_shares(pool, viewers, rows, prefix)
    unseen = await store.replies_hidden(pool, [(viewer, r) for r in rows for viewer in viewers], prefix)
    return {viewer: [message_out(r, prefix, reactions.get((viewer, r[prefix + "id"]), ()),
                                 shares.get((viewer, r[prefix + "id"])), (viewer, r[prefix + "id"]) in unseen)
                     for r in rows]
            for viewer in viewers}


async def render_shares(pool: asyncpg.Pool, viewers: Iterable[int], rows: list[asyncpg.Record],
                        prefix: str = "") -> dict[tuple[int, int], SharedItem]:
    """Each (viewer, message id) of the messages that share something: the shared item as that
    viewer may see it (storage.visibility's policy), else only its type and id, unavailable."""
    shared = [r for r in rows if r[prefix + "share_type"] is not None and r[prefix + "deleted_at"] is None]
    if not shared:
        return {}
    viewers = list(viewers)
    pairs = [(v, r[prefix + "share_type"], r[prefix + "share_id"]) for r in shared for v in viewers]
    seen = await store.shared_items(pool, pairs)
    out: dict[tuple[int, int], SharedItem] = {}
    for row in shared:
        kind, item_id = row[prefix + "share_type"], row[prefix + "share_id"]
        for viewer in viewers:
            found = seen.get((viewer, kind, item_id))
            out[(viewer, row[prefix + "id"])] = shared_out(kind, item_id, found)
    return out


def shared_out(kind: str, item_id: int, found: asyncpg.Record | None) -> SharedItem:
    if found is None:
        return SharedItem(type=kind, id=str(item_id), available=False, unavailable=True)
    if kind == "user":
        return SharedItem(type=kind, id=str(item_id), username=found["username"], name=found["full_name"])
    expires = found["expires_at"]
    return SharedItem(
        type=kind, id=str(item_id), caption=found["caption"],
        author_id=str(found["owner_id"]) if kind == "post" else None,
        owner_id=str(found["owner_id"]) if kind == "story" else None,
        expires_at=iso(expires) if expires is not None else None)

