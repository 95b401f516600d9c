"""The notifications consumer: events of the accounts, posts, stories and messages topics become
notifications, then a `notification.new` frame on every connected socket of the recipient, and the
push and e-mail the recipient's preferences ask for.

Rules: never to yourself, never between users blocked either way, never from someone the
recipient mutes, each channel only as the recipient's preferences for that kind allow; undoing
or deleting what made a notification (unlike, deleted comment or post, unfollow, block) removes
it. Idempotent: the items table is unique per (event, recipient), so a redelivered event makes
nothing twice; side effects (socket, push, e-mail) follow a commit that made something new, so a
redelivery repeats none of them.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import asyncpg
from redis.asyncio import Redis

import events
from jobs.events import event_span_in_batch, handler_for
from realtime import frames
from realtime.bus import queue_publish
from realtime.gateway import Gateway, user_channel
from storage import comments, outbox, users, visibility
from storage import notifications as store
from storage.email import Email, EmailSink
from storage.media import MediaLinks
from storage.notifications import NewItem, NotificationView
from storage.outbox import Event
from storage.tracecontext import current_traceparent
from storage.sinks import PushSink

log = logging.getLogger("glint.notifications")


def describe(kind: str, actor: str, others: int = 0, text: str | None = None) -> str:
    """One line for push and e-mail: "ana and 3 others liked your post"."""
    who = actor if others <= 0 else f"{actor} and {others} other{'s' if others > 1 else ''}"
    known = events.NOTIFICATION_KINDS.get(kind)
    line = f"{who} {known.phrase if known else kind}"
    return f"{line}: {text}" if text else line


Made = tuple[NewItem, dict[str, bool], "int | None"]  # an item the rules let through, its channels, its group


@dataclass
class NotificationConsumer:
    """Reads the topics whose events notify someone; writes notifications and delivers them.

    The runtime hands it a whole fetched batch (`handle_batch`) inside the transaction that also
    records the batch's events as handled, so a batch is written exactly once or not at all; the
    items of consecutive events are written together (one statement), and what they made is
    delivered after the commit."""

    pool: asyncpg.Pool
    redis: Redis
    push: PushSink
    email: EmailSink
    group_window: float = 24 * 3600
    links: MediaLinks | None = None  # the actors' avatar links in what is pushed (None: none)
    name: str = "notifications"
    topics: tuple[str, ...] = ("accounts", "posts", "stories", "messages", "moderation")

    async def handle(self, event: Event) -> None:
        """One event in a transaction of its own, then its delivery."""
        async with self.pool.acquire() as conn, conn.transaction():
            deliver = await self.handle_batch(conn, [event])
        await deliver()

    async def handle_batch(self, conn: asyncpg.Connection, batch: list[Event]) -> Callable[[], Awaitable[None]]:
        """Inside the caller's transaction: what these events make, in their order (other types
        notify nobody); returns the delivery to run once the transaction has committed."""
        run = _Run(self, conn)
        for event in batch:
            handler = handler_for(self, event.type)
            if handler is not None:
                with event_span_in_batch(self, event):
                    run.causes[event.event_id] = current_traceparent()
                    await handler(run, event, outbox.body_of(event))
        await run.flush()
        return await self._delivery(conn, run.made, run.causes)

    # ------------------------------------------------------------ accounts

    async def on_follow_created(self, run: _Run, event: Event, e: events.FollowCreated) -> None:
        target = int(e.target_id)
        run.add([self._item(event, target, int(e.actor_id), "follow", "user", target)])

    async def on_follow_request_created(self, run: _Run, event: Event, e: events.FollowRequestCreated) -> None:
        target = int(e.target_id)
        run.add([self._item(event, target, int(e.actor_id), "follow_request", "user", target)])

    async def on_follow_request_approved(self, run: _Run, event: Event, e: events.FollowRequestApproved) -> None:
        """The request's notification goes; the requester hears it was accepted."""
        requester, target = int(e.requester_id), int(e.target_id)
        await run.remove(store.remove_follow_request, requester, target)
        run.add([self._item(event, requester, target, "follow_request_approved", "user", target)])

    async def on_follow_removed(self, run: _Run, event: Event, e: events.FollowRemoved) -> None:
        await run.remove(store.remove_follow, int(e.actor_id), int(e.target_id))

    async def on_kept_apart(self, run: _Run, event: Event, e: events.KeptApart) -> None:
        """A hiding rule that forgets what the two were notified of each other (a block)."""
        if e.forgets_notifications:
            await run.remove(store.remove_between, int(e.actor_id), int(e.target_id))

    # ------------------------------------------------------------ posts and comments

    async def on_post_liked(self, run: _Run, event: Event, e: events.PostLiked) -> None:
        post = int(e.post_id)
        run.add([self._item(event, int(e.author_id), int(e.user_id), "like", "post", post, post_id=post)])

    async def on_post_unliked(self, run: _Run, event: Event, e: events.PostUnliked) -> None:
        await run.remove(store.remove_like, int(e.post_id), int(e.user_id))

    async def on_post_deleted(self, run: _Run, event: Event, e: events.PostDeleted) -> None:
        await run.remove(store.remove_for_post, int(e.post_id))

    async def on_mention_created(self, run: _Run, event: Event, e: events.MentionCreated) -> None:
        """Mentioned in a caption: only someone who may see the post hears of it."""
        post, author, mentioned = int(e.post_id), int(e.author_id), int(e.user_id)
        if await visibility.can_see(self.pool, mentioned, author):
            run.add([self._item(event, mentioned, author, "mention", "post", post, post_id=post)])

    async def on_comment_created(self, run: _Run, event: Event, e: events.CommentCreated) -> None:
        """A reply reaches the parent's author, a comment the post's author, a mention each named
        user who may see the post; each recipient once, in that order of precedence."""
        post, post_author, commenter = int(e.post_id), int(e.author_id), int(e.user_id)
        comment, parent = int(e.comment_id), None if e.parent_id is None else int(e.parent_id)
        text = e.text[:200]
        common = dict(post_id=post, comment_id=comment, parent_comment_id=parent, text=text)
        wanted: dict[int, NewItem] = {}
        if parent is not None:
            parent_row = await comments.get_comment(self.pool, parent)
            if parent_row is not None:
                wanted[parent_row["author_id"]] = self._item(event, parent_row["author_id"], commenter, "reply",
                                                             "comment", parent, **common)
        wanted.setdefault(post_author, self._item(event, post_author, commenter, "comment", "post", post, **common))
        for user_id in await store.user_ids_by_names(self.pool, users.mentioned_usernames(text)[:20]):
            if user_id not in wanted and await visibility.can_see(self.pool, user_id, post_author):
                wanted[user_id] = self._item(event, user_id, commenter, "mention", "comment", comment, **common)
        run.add(list(wanted.values()))

    async def on_comment_deleted(self, run: _Run, event: Event, e: events.CommentDeleted) -> None:
        await run.remove(store.remove_for_comment, int(e.comment_id))

    # ------------------------------------------------------------ stories and messages

    async def on_story_reaction(self, run: _Run, event: Event, e: events.StoryReaction) -> None:
        text = e.emoji or e.text
        run.add([self._item(event, int(e.owner_id), int(e.actor_id), "story_reaction", "story", int(e.story_id),
                            text=None if text is None else text[:200])])

    async def on_story_deleted(self, run: _Run, event: Event, e: events.StoryDeleted) -> None:
        await run.remove(store.remove_for_target, "story", int(e.story_id))

    async def on_message_sent(self, run: _Run, event: Event, e: events.MessageSent) -> None:
        """Sent to recipients with no connected socket (the messages work decides who)."""
        sender, conversation = int(e.sender_id), int(e.conversation_id)
        run.add([self._item(event, int(r), sender, "message", "conversation", conversation,
                            text=e.preview[:200] or None) for r in e.recipient_ids])

    async def on_message_reaction(self, run: _Run, event: Event, e: events.MessageReaction) -> None:
        """A member reacted to someone's message (the messages work records it only for a sender
        who has not muted the conversation)."""
        run.add([self._item(event, int(e.sender_id), int(e.user_id), "message_reaction", "conversation",
                            int(e.conversation_id), text=e.emoji[:200])])

    # ------------------------------------------------------------ moderation

    async def on_report_resolved(self, run: _Run, event: Event, e: events.ReportResolved) -> None:
        """Each reporter hears that their report was dealt with (not how, nor about whom)."""
        moderator = int(e.moderator_id)
        run.add([self._item(event, int(r.reporter_id), moderator, "report_resolved", "report", int(r.report_id))
                 for r in e.reports])

    # ------------------------------------------------------------ making and delivering

    @staticmethod
    def _item(event: Event, recipient: int, actor: int, kind: str, target_type: str, target_id: int,
              **extra: Any) -> NewItem:
        return NewItem(recipient_id=recipient, actor_id=actor, kind=kind, target_type=target_type,
                       target_id=target_id, event_id=event.event_id, created_at=event.created_at, **extra)

    async def write(self, conn: asyncpg.Connection, items: list[NewItem]) -> list[Made]:
        """Inside a transaction: make what the rules allow of these items (never to yourself,
        never across a block or a mute, each channel as the recipient's preferences allow), with
        one query per rule and one statement for the in-app items; the items made (a redelivered
        one makes nothing)."""
        items = [i for i in items if i.recipient_id != i.actor_id]
        if not items:
            return []
        prefs = await users.get_notification_prefs(conn, [i.recipient_id for i in items])
        allowed = await visibility.notifiable_pairs(conn, [(i.recipient_id, i.actor_id) for i in items])
        passed: list[tuple[NewItem, dict[str, bool]]] = []
        for item in items:
            channels = prefs.get(item.recipient_id, {}).get(events.NOTIFICATION_KINDS[item.kind].follows or item.kind)
            if channels is not None and any(channels.values()) and (item.recipient_id, item.actor_id) in allowed:
                passed.append((item, channels))
        in_app = [item for item, channels in passed if channels.get("in_app")]
        groups = iter(await self._add(conn, in_app))
        made: list[Made] = []
        for item, channels in passed:
            group_id = next(groups) if channels.get("in_app") else None
            if channels.get("in_app") and group_id is None:
                continue  # a redelivery (made before, delivered before), or refused
            made.append((item, channels, group_id))
        return made

    async def _add(self, conn: asyncpg.Connection, items: list[NewItem]) -> list[int | None]:
        """The items' groups, in one statement; should the database refuse a value, the others
        are added one by one and only that item is lost (no shared fate)."""
        if not items:
            return []
        try:
            async with conn.transaction():  # a savepoint: a refused statement leaves the batch's work
                return await store.add_items_txn(conn, items, self.group_window)
        except (asyncpg.DataError, UnicodeError) as exc:
            if len(items) == 1:
                log.warning("notification for %s refused: %r", items[0].recipient_id, exc)
                return [None]
        return [g for item in items for g in await self._add(conn, [item])]

    async def _delivery(self, conn: asyncpg.Connection, made: list[Made],
                        causes: dict[uuid.UUID, str | None]) -> Callable[[], Awaitable[None]]:
        """Read what delivery needs inside the transaction; the delivery itself, for after commit.
        Each frame carries the trace of the event that made it (`causes`: event id -> traceparent)."""
        views: dict[int, NotificationView] = {}
        outside: list[tuple[NewItem, dict[str, bool], NotificationView | None]] = []
        people: dict[int, Any] = {}
        devices: dict[int, list[Any]] = {}
        if made:
            views = {int(v.id): v for v in await store.get_views(conn, [g for _, _, g in made if g is not None],
                                                                   self.links)}
            outside = [(item, channels, views.get(g) if g is not None else None)
                       for item, channels, g in made if channels.get("push") or channels.get("email")]
        if outside:
            people = await store.contacts(conn, [u for i, _, _ in outside for u in (i.recipient_id, i.actor_id)])
            pushed = [i.recipient_id for i, channels, _ in outside if channels.get("push")]
            devices = await store.devices_of(conn, pushed) if pushed else {}
        # one frame per notification made or grown, showing it as the batch left it
        shown = {g: (item.recipient_id, views[g], causes.get(item.event_id)) for item, _, g in made if g in views}

        async def deliver() -> None:
            await self.publish(list(shown.values()))
            if outside:
                await asyncio.gather(*(self._send_outside(item, channels, view, people,
                                                          devices.get(item.recipient_id, []))
                                       for item, channels, view in outside))
        return deliver

    async def publish(self, sent: list[tuple[int, NotificationView, str | None]]) -> None:
        """After commit: `notification.new` on each recipient's channel of the realtime bus, which
        every process holding one of their sockets writes out. Lossy like the bus: the list is the
        truth, so a failure is logged, never raised."""
        if not sent:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for recipient, view, traceparent in sent:
                    frame = frames.encode(frames.NotificationNew(notification=view))
                    queue_publish(self.redis, pipe, user_channel(recipient),
                                  Gateway.envelope(frame, traceparent=traceparent))
                await pipe.execute()
        except Exception:
            log.exception("publishing notification.new failed; clients see it in the list")

    async def _send_outside(self, item: NewItem, channels: dict[str, bool], view: NotificationView | None,
                            people: dict[int, Any], devices: list[Any]) -> None:
        """Push and e-mail, as the preferences ask; a failing sink is logged, never raised (the
        notification is committed, and a redelivery would not repeat it)."""
        recipient, actor = people.get(item.recipient_id), people.get(item.actor_id)
        if recipient is None or actor is None or not recipient["is_active"]:
            return
        others = (view.actor_count - 1) if view is not None else 0
        line = describe(item.kind, actor["username"], others, item.text)
        try:
            if channels.get("push") and devices:
                payload = push_payload(item, line, view)
                await asyncio.gather(*(self.push.send(d, payload) for d in devices))
            if channels.get("email"):
                await self.email.send(Email(to=recipient["email"], subject=line[:120],
                                            body=f"{line}\n\nOpen glint to see it.\n"))
        except Exception:
            log.exception("push or e-mail of a %s notification to %s failed", item.kind, item.recipient_id)


@dataclass
class _Run:
    """The events of one transaction as they are handled: consecutive events' items wait in
    `pending` and are written together; a removal first writes what is pending, so the batch
    ends as the events one by one would have left it."""

    consumer: NotificationConsumer
    conn: asyncpg.Connection
    pending: list[NewItem] = field(default_factory=list)
    made: list[Made] = field(default_factory=list)
    causes: dict[uuid.UUID, str | None] = field(default_factory=dict)  # each event's traceparent, as handled

    def add(self, items: list[NewItem]) -> None:
        self.pending += items

    async def remove(self, remove: Callable[..., Awaitable[int]], *args: Any) -> None:
        await self.flush()
        await remove(self.conn, *args)

    async def flush(self) -> None:
        if self.pending:
            self.made += await self.consumer.write(self.conn, self.pending)
            self.pending = []


def push_payload(item: NewItem, line: str, view: NotificationView | None) -> dict[str, Any]:
    """What a device receives: a title line and enough to open the right screen."""
    return {
        "title": "glint", "body": line, "kind": item.kind,
        "notification_id": None if view is None else view.id,
        "target": {"type": item.target_type, "id": str(item.target_id)},
        "actor_id": str(item.actor_id), "created_at": item.created_at.isoformat(),
    }


async def delete_old(pool: asyncpg.Pool, days: int) -> int:
    """The daily retention job's body: notifications untouched for `days` go."""
    return await store.delete_older_than(pool, days)

