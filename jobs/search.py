"""The search consumer: keeps the search index in step with the "accounts", "posts" and
"moderation" topics.

Every event is answered by re-reading PostgreSQL for what it touched (sync_*), never by applying
the payload, so a redelivered, repeated or out-of-order event leaves the index as PostgreSQL has
it. With the postgres backend the sync verbs do nothing: its columns are generated.
"""

from __future__ import annotations

import logging

from events import EventBody
from storage import outbox
from storage.outbox import Event
from storage.search import SearchBackend

log = logging.getLogger("glint.search")

# account events whose users may have changed (a profile edit emits nothing of its own: any
# later event about the user refreshes the document, and `glint search reindex` rebuilds all)
USER_EVENTS = {
    "user_registered": ("user_id",),
    "user_updated": ("user_id",),
    "follow_created": ("actor_id", "target_id"),
    "follow_removed": ("actor_id", "target_id"),
    "follow_request_created": ("actor_id", "target_id"),
    "follow_request_approved": ("requester_id", "target_id"),
    "user_blocked": ("actor_id", "target_id"),
}
# the account was hidden, shown again or erased: its document and its posts' follow PostgreSQL
ACCOUNT_STATE_EVENTS = {"user_deactivated", "account_deletion_requested", "account_deletion_cancelled",
                        "account_erased", "user_suspended", "user_unsuspended"}
POST_EVENTS = {"post_created", "post_updated", "post_deleted"}


def _ids(body: EventBody, names: tuple[str, ...]) -> list[int]:
    return [int(getattr(body, name)) for name in names]


class SearchConsumer:
    """Indexes users, posts, hashtags and locations from events."""

    name = "search"
    topics = ("accounts", "posts", "moderation")

    def __init__(self, backend: SearchBackend) -> None:
        self.backend = backend

    async def handle(self, event: Event) -> None:
        """Sync what the event touched; events search does not care about are skipped."""
        if event.type in ACCOUNT_STATE_EVENTS:  # the account and all its posts leave or rejoin the index
            for user_id in _ids(outbox.body_of(event), ("user_id",)):
                await self.backend.sync_users([user_id])
                await self.backend.sync_author_posts(user_id)
        elif event.type in USER_EVENTS:
            await self.backend.sync_users(_ids(outbox.body_of(event), USER_EVENTS[event.type]))
        elif event.type in POST_EVENTS:
            await self.backend.sync_posts(_ids(outbox.body_of(event), ("post_id",)))
