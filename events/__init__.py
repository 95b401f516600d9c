"""The event catalogue: one Struct per event type the outbox carries, tagged by the type.

Writers (handlers/, jobs/, storage/) record one of these with `outbox.add`; consumers (jobs/)
decode an event's payload back into its Struct with `outbox.body_of`, so each field has one
spelling and one type. Ids travel as decimal strings, as everywhere in glint's JSON. A payload
that does not decode into its type's Struct is a bad event: the consumer fails on it, and after
its retries it becomes a dead letter.

The catalogue is the bottom layer (`app -> handlers | jobs -> realtime -> storage -> events`): it
imports only msgspec, so every writer and every consumer can share it.

Adding an event type: a Struct here (its tag is the type, `topic` the topic it goes to), then a
handler `on_<type>` in each consumer that cares.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

import msgspec

Id = str  # a 64-bit id as a decimal string


class EventBody(msgspec.Struct, tag_field="type", kw_only=True, frozen=True):
    """What an event says; the tag is its type, `topic` where it goes. (Frozen is inherited;
    kw_only is not, and a Struct adding required fields after a default needs it.)"""

    topic: ClassVar[str]


def type_of(body: EventBody | type[EventBody]) -> str:
    """The event type a Struct (or an instance of it) is tagged with."""
    return body.__struct_config__.tag


# ---------------------------------------------------------------- accounts


class AccountEvent(EventBody):
    topic = "accounts"


class UserEvent(AccountEvent):
    """Something about one account."""

    user_id: Id


class UserRegistered(UserEvent, tag="user_registered"):
    username: str


class UserUpdated(UserEvent, tag="user_updated"):
    pass


class UserDeactivated(UserEvent, tag="user_deactivated"):
    pass


class UserRoleChanged(UserEvent, tag="user_role_changed"):
    actor_id: Id | None  # None: the first admin, made at setup
    role: str
    previous: str


class AccountDeletionRequested(UserEvent, tag="account_deletion_requested"):
    erase_after: datetime


class AccountDeletionCancelled(UserEvent, tag="account_deletion_cancelled"):
    pass


class AccountErased(UserEvent, tag="account_erased"):
    pass


class SessionRevoked(UserEvent, tag="session_revoked"):
    session_id: Id


class PasswordChanged(UserEvent, tag="password_changed"):
    via: str  # change | reset
    sessions_revoked: int


class PasswordResetRequested(AccountEvent, tag="password_reset_requested"):
    email: str  # as typed: the address may belong to nobody


class TwoFactorEnabled(UserEvent, tag="two_factor_enabled"):
    pass


class TwoFactorDisabled(UserEvent, tag="two_factor_disabled"):
    pass


class ExportRequested(UserEvent, tag="export_requested"):
    export_id: Id


class PairEvent(AccountEvent):
    """One account (`actor_id`) did something to another (`target_id`)."""

    actor_id: Id
    target_id: Id


class FollowCreated(PairEvent, tag="follow_created"):
    pass


class FollowRemoved(PairEvent, tag="follow_removed"):
    pass


class FollowRequestCreated(PairEvent, tag="follow_request_created"):
    pass


class FollowRequestApproved(AccountEvent, tag="follow_request_approved"):
    """`target_id` accepted `requester_id`'s request: the requester now follows them."""

    requester_id: Id
    target_id: Id


class KeptApart(PairEvent):
    """A hiding rule now keeps the target's things from the actor, and with `both_ways` the
    actor's from the target. Consumers act on the family (`on_kept_apart`) by what these class
    settings say, so a new rule that users set is one more subclass here and no consumer change."""

    both_ways: ClassVar[bool] = False  # each one's things are kept from the other
    forgets_notifications: ClassVar[bool] = False  # notifications between the two are removed


class UserBlocked(KeptApart, tag="user_blocked"):
    both_ways = True
    forgets_notifications = True


class UserMuted(KeptApart, tag="user_muted"):
    stories: bool  # their stories too


class KeptApartNoMore(PairEvent):
    """A hiding rule was lifted: the target's things may reach the actor again, and with
    `both_ways` the actor's the target. Consumers act on the family (`on_kept_apart_no_more`), as
    on KeptApart."""

    both_ways: ClassVar[bool] = False


class UserUnmuted(KeptApartNoMore, tag="user_unmuted"):
    pass


# ---------------------------------------------------------------- posts and comments


class PostEvent(EventBody):
    """Something about one post; keyed by its author."""

    topic = "posts"
    post_id: Id
    author_id: Id
    created_at: datetime | None = None  # the post's


class PostCreated(PostEvent, tag="post_created"):
    hashtags: list[str] = []
    media_ids: list[Id] = []


class PostUpdated(PostEvent, tag="post_updated"):
    hashtags: list[str] = []


class PostDeleted(PostEvent, tag="post_deleted", kw_only=True, frozen=True, omit_defaults=True):
    removed_by: str | None = None  # "moderator" when not the author


class MentionCreated(PostEvent, tag="mention_created", kw_only=True):
    user_id: Id  # who is mentioned in the caption


class PostLiked(PostEvent, tag="post_liked", kw_only=True):
    user_id: Id  # who likes it


class PostUnliked(PostEvent, tag="post_unliked", kw_only=True):
    user_id: Id


class CommentEvent(EventBody):
    """Something about one comment; `author_id` is the post's author, `user_id` the comment's."""

    topic = "posts"
    post_id: Id
    author_id: Id
    comment_id: Id
    user_id: Id
    parent_id: Id | None
    text: str
    created_at: datetime


class CommentCreated(CommentEvent, tag="comment_created"):
    pass


class CommentDeleted(CommentEvent, tag="comment_deleted"):
    pass


# ---------------------------------------------------------------- stories


class StoryEvent(EventBody):
    topic = "stories"
    story_id: Id
    owner_id: Id


class StoryCreated(StoryEvent, tag="story_created"):
    close_friends_only: bool
    expires_at: datetime


class StoryDeleted(StoryEvent, tag="story_deleted"):
    pass


class StoryReaction(StoryEvent, tag="story_reaction"):
    """`actor_id` answered the story with an emoji or a text, sent as a direct message."""

    actor_id: Id
    kind: str  # emoji | text
    emoji: str | None
    text: str | None
    conversation_id: Id
    message_id: Id


# ---------------------------------------------------------------- messages


class MessageEvent(EventBody):
    """Something about one message; keyed by its conversation."""

    topic = "messages"
    conversation_id: Id
    message_id: Id
    seq: int


class MessageSent(MessageEvent, tag="message_sent"):
    """Recorded for the recipients no process held a socket of when it was published."""

    sender_id: Id
    recipient_ids: list[Id]
    preview: str


class MessageRemoved(MessageEvent, tag="message_removed"):
    sender_id: Id


class MessageReaction(MessageEvent, tag="message_reaction"):
    """`user_id` reacted to `sender_id`'s message."""

    sender_id: Id
    user_id: Id
    emoji: str


# ---------------------------------------------------------------- moderation


class ModerationEvent(EventBody):
    topic = "moderation"


class UserSuspended(ModerationEvent, tag="user_suspended"):
    user_id: Id
    actor_id: Id | None  # None: a rule, not a moderator
    reason: str
    until: datetime | None


class UserUnsuspended(ModerationEvent, tag="user_unsuspended"):
    user_id: Id
    actor_id: Id | None


class ReportCreated(ModerationEvent, tag="report_created"):
    report_id: Id
    reporter_id: Id
    target_type: str
    target_id: Id
    target_owner_id: Id
    reason: str


class ResolvedReport(msgspec.Struct, frozen=True):
    report_id: Id
    reporter_id: Id


class ReportResolved(ModerationEvent, tag="report_resolved"):
    report_ids: list[Id]
    reporter_ids: list[Id]
    reports: list[ResolvedReport]
    moderator_id: Id
    action: str
    target_type: str
    target_id: Id
    target_owner_id: Id


# ---------------------------------------------------------------- the catalogue


def _types(cls: type[EventBody]) -> list[type[EventBody]]:
    """The event types below a class: its leaves (a class with subclasses only shares fields)."""
    subs = cls.__subclasses__()
    return [t for sub in subs for t in _types(sub)] if subs else [cls]


CATALOGUE: dict[str, type[EventBody]] = {type_of(cls): cls for cls in _types(EventBody)}


# ---------------------------------------------------------------- the notifications they make


class NotificationKind(msgspec.Struct, frozen=True):
    """A kind of notification the notifications consumer makes from these events."""

    phrase: str  # push's and e-mail's line after the actor: "ana liked your post"
    follows: str | None = None  # the kind whose preferences it goes by (None: its own)


NOTIFICATION_KINDS: dict[str, NotificationKind] = {
    "like": NotificationKind("liked your post"),
    "comment": NotificationKind("commented on your post"),
    "reply": NotificationKind("replied to your comment"),
    "mention": NotificationKind("mentioned you"),
    "follow": NotificationKind("started following you"),
    "follow_request": NotificationKind("asked to follow you"),
    "follow_request_approved": NotificationKind("accepted your follow request", follows="follow_request"),
    "message": NotificationKind("sent you a message"),
    "message_reaction": NotificationKind("reacted to your message"),
    "story_reaction": NotificationKind("reacted to your story"),
    "report_resolved": NotificationKind("reviewed your report"),
}

