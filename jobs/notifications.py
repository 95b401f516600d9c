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
from dataclasses import dataclass
from typing import Any

import asyncpg
from redis.asyncio import Redis

from realtime import frames
from realtime.bus import queue_publish
from realtime.gateway import Gateway, user_channel
from storage import comments, events, outbox, users, visibility
from storage import notifications as store
from storage.email import Email, EmailSink
from storage.notifications import NewItem, NotificationView
from storage.outbox import Event
from storage.sinks import PushSink

log = logging.getLogger("glint.notifications")

PREF_KIND = {"follow_request_approved": "follow_request"}  # the preference a kind follows

PHRASES = {
    "like": "liked your post",
    "comment": "commented on your post",
    "reply": "replied to your comment",
    "mention": "mentioned you",
    "follow": "started following you",
    "follow_request": "asked to follow you",
    "follow_request_approved": "accepted your follow request",
    "story_reaction": "reacted to your story",
    "message": "sent you a message",
    "message_reaction": "reacted to your message",
    "report_resolved": "reviewed your report",
}


def describe(kind: str, actor: str, others: int = 0, text: str | None = None) -> str:
    """One line for push and e-mail: "ana and 3 others liked your post"."""
    who = actor if others <= 0 else f"{actor} and {others} other{'s' if others > 1 else ''}"
    line = f"{who} {PHRASES.get(kind, kind)}"
    return f"{line}: {text}" if text else line


@dataclass
class NotificationConsumer:
    """Reads the topics whose events notify someone; writes notifications and delivers them."""

    pool: asyncpg.Pool
    redis: Redis
    push: PushSink
    email: EmailSink
    group_window: float = 24 * 3600
    name: str = "notifications"
    topics: tuple[str, ...] = ("accounts", "posts", "stories", "messages", "moderation")

    async def handle(self, event: Event) -> None:
        """Dispatch by event type; other types notify nobody."""
        handler = getattr(self, f"on_{event.type}", None)
        if handler is not None:
            await handler(event, outbox.body_of(event))

    # ------------------------------------------------------------ accounts

    async def on_follow_created(self, event: Event, e: events.FollowCreated) -> None:
        target = int(e.target_id)
        await self.notify([self._item(event, target, int(e.actor_id), "follow", "user", target)])

    async def on_follow_request_created(self, event: Event, e: events.FollowRequestCreated) -> None:
        target = int(e.target_id)
        await self.notify([self._item(event, target, int(e.actor_id), "follow_request", "user", target)])

    async def on_follow_request_approved(self, event: Event, e: events.FollowRequestApproved) -> None:
        """The request's notification goes; the requester hears it was accepted."""
        requester, target = int(e.requester_id), int(e.target_id)
        await store.remove_follow_request(self.pool, requester, target)
        await self.notify([self._item(event, requester, target, "follow_request_approved", "user", target)])

    async def on_follow_removed(self, event: Event, e: events.FollowRemoved) -> None:
        await store.remove_follow(self.pool, int(e.actor_id), int(e.target_id))

    async def on_user_blocked(self, event: Event, e: events.UserBlocked) -> None:
        await store.remove_between(self.pool, int(e.actor_id), int(e.target_id))

    # ------------------------------------------------------------ posts and comments

    async def on_post_liked(self, event: Event, e: events.PostLiked) -> None:
        post = int(e.post_id)
        await self.notify([self._item(event, int(e.author_id), int(e.user_id), "like", "post", post, post_id=post)])

    async def on_post_unliked(self, event: Event, e: events.PostUnliked) -> None:
        await store.remove_like(self.pool, int(e.post_id), int(e.user_id))

    async def on_post_deleted(self, event: Event, e: events.PostDeleted) -> None:
        await store.remove_for_post(self.pool, int(e.post_id))

    async def on_mention_created(self, event: Event, e: events.MentionCreated) -> None:
        """Mentioned in a caption: only someone who may see the post hears of it."""
        post, author, mentioned = int(e.post_id), int(e.author_id), int(e.user_id)
        if await visibility.can_see(self.pool, mentioned, author):
            await self.notify([self._item(event, mentioned, author, "mention", "post", post, post_id=post)])

    async def on_comment_created(self, event: Event, e: events.CommentCreated) -> None:
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
        await self.notify(list(wanted.values()))

    async def on_comment_deleted(self, event: Event, e: events.CommentDeleted) -> None:
        await store.remove_for_comment(self.pool, int(e.comment_id))

    # ------------------------------------------------------------ stories and messages

    async def on_story_reaction(self, event: Event, e: events.StoryReaction) -> None:
        text = e.emoji or e.text
        await self.notify([self._item(event, int(e.owner_id), int(e.actor_id), "story_reaction", "story",
                                      int(e.story_id), text=None if text is None else text[:200])])

    async def on_story_deleted(self, event: Event, e: events.StoryDeleted) -> None:
        await store.remove_for_target(self.pool, "story", int(e.story_id))

    async def on_message_sent(self, event: Event, e: events.MessageSent) -> None:
        """Sent to recipients with no connected socket (the messages work decides who)."""
        sender, conversation = int(e.sender_id), int(e.conversation_id)
        await self.notify([self._item(event, int(r), sender, "message", "conversation", conversation,
                                      text=e.preview[:200] or None) for r in e.recipient_ids])

    async def on_message_reaction(self, event: Event, e: events.MessageReaction) -> None:
        """A member reacted to someone's message (the messages work records it only for a sender
        who has not muted the conversation)."""
        await self.notify([self._item(event, int(e.sender_id), int(e.user_id), "message_reaction", "conversation",
                                      int(e.conversation_id), text=e.emoji[:200])])

    # ------------------------------------------------------------ moderation

    async def on_report_resolved(self, event: Event, e: events.ReportResolved) -> None:
        """Each reporter hears that their report was dealt with (not how, nor about whom)."""
        moderator = int(e.moderator_id)
        await self.notify([self._item(event, int(r.reporter_id), moderator, "report_resolved", "report",
                                      int(r.report_id)) for r in e.reports])

    # ------------------------------------------------------------ making and delivering

    @staticmethod
    def _item(event: Event, recipient: int, actor: int, kind: str, target_type: str, target_id: int,
              **extra: Any) -> NewItem:
        return NewItem(recipient_id=recipient, actor_id=actor, kind=kind, target_type=target_type,
                       target_id=target_id, event_id=event.event_id, created_at=event.created_at, **extra)

    async def notify(self, items: list[NewItem]) -> list[int]:
        """Make what the rules allow of these items, then deliver what is new; the ids of the
        notifications made or grown."""
        items = [i for i in items if i.recipient_id != i.actor_id]
        if not items:
            return []
        made: list[tuple[NewItem, dict[str, bool], int | None]] = []
        async with self.pool.acquire() as conn:  # one connection for the whole event: fewer round trips
            prefs = await users.get_notification_prefs(conn, [i.recipient_id for i in items])
            allowed = await visibility.notifiable_pairs(conn, [(i.recipient_id, i.actor_id) for i in items])
            for item in items:
                channels = prefs.get(item.recipient_id, {}).get(PREF_KIND.get(item.kind, item.kind))
                if channels is None or not any(channels.values()):
                    continue
                if (item.recipient_id, item.actor_id) not in allowed:
                    continue
                group_id = None
                if channels.get("in_app"):
                    try:
                        group_id = await store.add_item(conn, item, self.group_window)
                    except (asyncpg.DataError, UnicodeError) as exc:
                        # no shared fate: a value the database refuses loses this one item only
                        log.warning("notification for %s refused: %r", item.recipient_id, exc)
                        continue
                    if group_id is None:
                        continue  # a redelivery: made before, delivered before
                made.append((item, channels, group_id))
            if not made:
                return []
            views = {int(v.id): v for v in await store.get_views(conn, [g for _, _, g in made if g is not None])}
            outside = [(item, channels, views.get(g) if g is not None else None)
                       for item, channels, g in made if channels.get("push") or channels.get("email")]
            people = await store.contacts(conn, [u for i, _, _ in outside for u in (i.recipient_id, i.actor_id)]) \
                if outside else {}
            devices = {i.recipient_id: await store.list_devices(conn, i.recipient_id)
                       for i, channels, _ in outside if channels.get("push")}
        await self.publish([(item.recipient_id, views[g]) for item, _, g in made if g in views])
        if outside:
            await asyncio.gather(*(self._send_outside(item, channels, view, people, devices.get(item.recipient_id, []))
                                   for item, channels, view in outside))
        return [g for _, _, g in made if g is not None]

    async def publish(self, sent: list[tuple[int, NotificationView]]) -> None:
        """After commit: `notification.new` on each recipient's channel of the realtime bus, which
        every process holding one of their sockets writes out. Lossy like the bus: the list is the
        truth, so a failure is logged, never raised."""
        if not sent:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for recipient, view in sent:
                    frame = frames.encode(frames.NotificationNew(notification=view))
                    queue_publish(self.redis, pipe, user_channel(recipient), Gateway.envelope(frame))
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

