"""The event catalogue: one Struct per event type the outbox carries, tagged by the type.

Writers (handlers/, jobs/, storage/) record one of these with `outbox.add`; consumers (jobs/)
decode an event's payload back into its Struct with `outbox.body_of`, so each field has one
spelling and one type. Ids travel as decimal strings, as everywhere in glint's JSON. A payload
that does not decode into its type's Struct is a bad event: the consumer fails on it, and after
its retries it becomes a dead letter.

Adding an event type: a Struct here (its tag is the type, `topic` the topic it goes to), then a
handler `on_<type>` in each consumer that cares.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

import msgspec

Id = str  # a 64-bit id as a decimal string


class EventBody(msgspec.Struct, tag_field="type", kw_only=True, frozen=True):
    """What an event says; the tag is its type, `topic` where it goes."""

    topic: ClassVar[str]


def type_of(body: EventBody | type[EventBody]) -> str:
    """The event type a Struct (or an instance of it) is tagged with."""
    return body.__struct_config__.tag


# ---------------------------------------------------------------- accounts


class AccountEvent(EventBody, kw_only=True, frozen=True):
    topic = "accounts"


class UserEvent(AccountEvent, kw_only=True, frozen=True):
    """Something about one account."""

    user_id: Id


class UserRegistered(UserEvent, tag="user_registered", kw_only=True, frozen=True):
    username: str


class UserUpdated(UserEvent, tag="user_updated", kw_only=True, frozen=True):
    pass


class UserDeactivated(UserEvent, tag="user_deactivated", kw_only=True, frozen=True):
    pass


class UserRoleChanged(UserEvent, tag="user_role_changed", kw_only=True, frozen=True):
    actor_id: Id | None  # None: the first admin, made at setup
    role: str
    previous: str


class AccountDeletionRequested(UserEvent, tag="account_deletion_requested", kw_only=True, frozen=True):
    erase_after: datetime


class AccountDeletionCancelled(UserEvent, tag="account_deletion_cancelled", kw_only=True, frozen=True):
    pass


class AccountErased(UserEvent, tag="account_erased", kw_only=True, frozen=True):
    pass


class SessionRevoked(UserEvent, tag="session_revoked", kw_only=True, frozen=True):
    session_id: Id


class PasswordChanged(UserEvent, tag="password_changed", kw_only=True, frozen=True):
    via: str  # change | reset
    sessions_revoked: int


class PasswordResetRequested(AccountEvent, tag="password_reset_requested", kw_only=True, frozen=True):
    email: str  # as typed: the address may belong to nobody


class TwoFactorEnabled(UserEvent, tag="two_factor_enabled", kw_only=True, frozen=True):
    pass


class TwoFactorDisabled(UserEvent, tag="two_factor_disabled", kw_only=True, frozen=True):
    pass


class ExportRequested(UserEvent, tag="export_requested", kw_only=True, frozen=True):
    export_id: Id


class PairEvent(AccountEvent, kw_only=True, frozen=True):
    """One account (`actor_id`) did something to another (`target_id`)."""

    actor_id: Id
    target_id: Id


class FollowCreated(PairEvent, tag="follow_created", kw_only=True, frozen=True):
    pass


class FollowRemoved(PairEvent, tag="follow_removed", kw_only=True, frozen=True):
    pass


class FollowRequestCreated(PairEvent, tag="follow_request_created", kw_only=True, frozen=True):
    pass


class FollowRequestApproved(AccountEvent, tag="follow_request_approved", kw_only=True, frozen=True):
    """`target_id` accepted `requester_id`'s request: the requester now follows them."""

    requester_id: Id
    target_id: Id


class UserBlocked(PairEvent, tag="user_blocked", kw_only=True, frozen=True):
    pass


class UserMuted(PairEvent, tag="user_muted", kw_only=True, frozen=True):
    stories: bool  # their stories too


class UserUnmuted(PairEvent, tag="user_unmuted", kw_only=True, frozen=True):
    pass


# ---------------------------------------------------------------- posts and comments


class PostEvent(EventBody, kw_only=True, frozen=True):
    """Something about one post; keyed by its author."""

    topic = "posts"
    post_id: Id
    author_id: Id
    created_at: datetime | None = None  # the post's


class PostCreated(PostEvent, tag="post_created", kw_only=True, frozen=True):
    hashtags: list[str] = []
    media_ids: list[Id] = []


class PostUpdated(PostEvent, tag="post_updated", kw_only=True, frozen=True):
    hashtags: list[str] = []


class PostDeleted(PostEvent, tag="post_deleted", kw_only=True, frozen=True, omit_defaults=True):
    removed_by: str | None = None  # "moderator" when not the author


class MentionCreated(PostEvent, tag="mention_created", kw_only=True, frozen=True):
    user_id: Id  # who is mentioned in the caption


class PostLiked(PostEvent, tag="post_liked", kw_only=True, frozen=True):
    user_id: Id  # who likes it


class PostUnliked(PostEvent, tag="post_unliked", kw_only=True, frozen=True):
    user_id: Id


class CommentEvent(EventBody, kw_only=True, frozen=True):
    """Something about one comment; `author_id` is the post's author, `user_id` the comment's."""

    topic = "posts"
    post_id: Id
    author_id: Id
    comment_id: Id
    user_id: Id
    parent_id: Id | None
    text: str
    created_at: datetime


class CommentCreated(CommentEvent, tag="comment_created", kw_only=True, frozen=True):
    pass


class CommentDeleted(CommentEvent, tag="comment_deleted", kw_only=True, frozen=True):
    pass


# ---------------------------------------------------------------- stories


class StoryEvent(EventBody, kw_only=True, frozen=True):
    topic = "stories"
    story_id: Id
    owner_id: Id


class StoryCreated(StoryEvent, tag="story_created", kw_only=True, frozen=True):
    close_friends_only: bool
    expires_at: datetime


class StoryDeleted(StoryEvent, tag="story_deleted", kw_only=True, frozen=True):
    pass


class StoryReaction(StoryEvent, tag="story_reaction", kw_only=True, frozen=True):
    """`actor_id` answered the story with an emoji or a text, sent as a direct message."""

    actor_id: Id
    kind: str  # emoji | text
    emoji: str | None
    text: str | None
    conversation_id: Id
    message_id: Id


# ---------------------------------------------------------------- messages


class MessageEvent(EventBody, kw_only=True, frozen=True):
    """Something about one message; keyed by its conversation."""

    topic = "messages"
    conversation_id: Id
    message_id: Id
    seq: int


class MessageSent(MessageEvent, tag="message_sent", kw_only=True, frozen=True):
    """Recorded for the recipients no process held a socket of when it was published."""

    sender_id: Id
    recipient_ids: list[Id]
    preview: str


class MessageRemoved(MessageEvent, tag="message_removed", kw_only=True, frozen=True):
    sender_id: Id


class MessageReaction(MessageEvent, tag="message_reaction", kw_only=True, frozen=True):
    """`user_id` reacted to `sender_id`'s message."""

    sender_id: Id
    user_id: Id
    emoji: str


# ---------------------------------------------------------------- moderation


class ModerationEvent(EventBody, kw_only=True, frozen=True):
    topic = "moderation"


class UserSuspended(ModerationEvent, tag="user_suspended", kw_only=True, frozen=True):
    user_id: Id
    actor_id: Id | None  # None: a rule, not a moderator
    reason: str
    until: datetime | None


class UserUnsuspended(ModerationEvent, tag="user_unsuspended", kw_only=True, frozen=True):
    user_id: Id
    actor_id: Id | None


class ReportCreated(ModerationEvent, tag="report_created", kw_only=True, frozen=True):
    report_id: Id
    reporter_id: Id
    target_type: str
    target_id: Id
    target_owner_id: Id
    reason: str


class ResolvedReport(msgspec.Struct, kw_only=True, frozen=True):
    report_id: Id
    reporter_id: Id


class ReportResolved(ModerationEvent, tag="report_resolved", kw_only=True, frozen=True):
    report_ids: list[Id]
    reporter_ids: list[Id]
    reports: list[ResolvedReport]
    moderator_id: Id
    action: str
    target_type: str
    target_id: Id
    target_owner_id: Id


# ---------------------------------------------------------------- the catalogue


def _tagged(cls: type[EventBody]) -> list[type[EventBody]]:
    out = [cls] if isinstance(cls.__struct_config__.tag, str) else []
    for sub in cls.__subclasses__():
        out += _tagged(sub)
    return out


CATALOGUE: dict[str, type[EventBody]] = {type_of(cls): cls for cls in _tagged(EventBody)}
