"""The admin API under /api/admin/: roles and the verified badge, the audit log, and making the
first admin (`glint createsuperuser`). Every route here answers 404 to accounts without the role
it needs (the `role=` option of the route decorator), and every action is audited."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Annotated, Any, Literal

import asyncpg
from aiohttp import web
from msgspec import UNSET, Meta, UnsetType
from redis.asyncio import Redis

import events
from handlers.accounts import MeOut, RegisterRequest, check_registration, me_out
from handlers.auth import current_user, hash_password
from handlers.comments import comment_event
from handlers.common import (
    Conflict, Forbidden, NotFound, Page, Routes, Struct, ValidationFailed, check_role, decode_cursor, encode_cursor,
    has_role, json_response, make_page, page_request, path_id, read_json,
)
from handlers.context import app_now, config_key, enforcement_key, pool_key, redis_key
from handlers.media import media_links
from handlers.posts import cursor_id, emit_txn, remove_post_objects
from handlers.reports import TargetRef
from realtime import frames
from realtime.gateway import CLOSE_SUSPENDED, Gateway, gateway_key
from storage import comments, moderation, outbox, posts, stories, tokens, users
from storage import messages as message_store

if TYPE_CHECKING:
    from aiobotocore.client import AioBaseClient

routes = Routes("admin")

Role = Literal["user", "moderator", "admin"]


# ---------------------------------------------------------------- roles


class UserAdminPatch(Struct):
    role: Role | UnsetType = UNSET
    is_verified: bool | UnsetType = UNSET


async def change_role(pool: asyncpg.Pool, actor: int, user_id: int, body: UserAdminPatch) -> asyncpg.Record:
    """An admin changes an account's role and/or verified badge; each change is audited and
    emitted (user_role_changed, user_updated). An admin cannot change their own role."""
    await check_role(pool, actor, "admin")
    if user_id == actor and body.role is not UNSET:
        raise Forbidden("You cannot change your own role.")
    async with pool.acquire() as conn, conn.transaction():
        row = await moderation.set_role_txn(conn, user_id, None if body.role is UNSET else body.role,
                                            None if body.is_verified is UNSET else body.is_verified)
        if row is None:
            raise NotFound()
        if row["role"] != row["old_role"]:
            await moderation.audit_txn(conn, actor, "role_changed", "user", user_id,
                                       details={"from": row["old_role"], "to": row["role"]})
            await outbox.add(conn, events.UserRoleChanged(user_id=str(user_id), actor_id=str(actor), role=row["role"],
                                                    previous=row["old_role"]), user_id)
        if row["is_verified"] != row["old_verified"]:
            await moderation.audit_txn(conn, actor, "verified_changed", "user", user_id,
                                       details={"from": row["old_verified"], "to": row["is_verified"]})
            await outbox.add(conn, events.UserUpdated(user_id=str(user_id)), user_id)
    return row


@routes.route("PATCH", "/api/admin/users/{id}/", body=UserAdminPatch, response=MeOut, role="admin")
async def patch_user(request: web.Request) -> web.Response:
    """Change an account's role (user, moderator, admin) or verified badge."""
    body = await read_json(request, UserAdminPatch)
    row = await change_role(request.app[pool_key], current_user(request), path_id(request), body)
    if row["is_verified"] != row["old_verified"]:
        await posts.forget_authored(request.app[pool_key], request.app[redis_key], row["id"])  # the badge is in each
    return json_response(me_out(media_links(request), row))


async def create_superuser(pool: asyncpg.Pool, username: str, email: str, password: str) -> asyncpg.Record:
    """An admin account (`glint createsuperuser`), verified, made under the registration rules;
    audited with no actor."""
    check_registration(RegisterRequest(username=username, email=email, password=password))
    password_hash = await hash_password(password)
    async with pool.acquire() as conn:
        try:
            async with conn.transaction():
                row = await users.create_user_txn(conn, username, email, password_hash, "")
                row = await moderation.set_role_txn(conn, row["id"], "admin", True)
                await moderation.audit_txn(conn, None, "superuser_created", "user", row["id"],
                                           details={"to": "admin"})
                await outbox.add(conn, events.UserRegistered(user_id=str(row["id"]), username=row["username"]), row["id"])
                await outbox.add(conn, events.UserRoleChanged(user_id=str(row["id"]), actor_id=None, role="admin",
                                                              previous="user"), row["id"])
        except asyncpg.UniqueViolationError as exc:
            field = "email" if "email" in (exc.constraint_name or "") else "username"
            raise Conflict(f"This {field} is taken.", fields={field: "Already taken."}) from None
    return row


# ---------------------------------------------------------------- the audit log


class AuditEntry(Struct):
    id: str
    actor_id: str | None
    actor_username: str | None
    action: str
    target_type: str
    target_id: str
    note: str
    details: dict
    created_at: datetime


def audit_out(row: asyncpg.Record) -> AuditEntry:
    return AuditEntry(id=str(row["id"]), actor_id=None if row["actor_id"] is None else str(row["actor_id"]),
                      actor_username=row["actor_username"], action=row["action"], target_type=row["target_type"],
                      target_id=str(row["target_id"]), note=row["note"], details=row["details"],
                      created_at=row["created_at"])


@routes.route("GET", "/api/admin/audit/", response=Page[AuditEntry], role="admin",
              query={"limit": "1..100", "cursor": "from `next`"})
async def audit_log(request: web.Request) -> web.Response:
    """The audit log of moderation and role actions, newest first."""
    page = page_request(request)
    rows = await moderation.list_audit(request.app[pool_key], cursor_id(request, page.cursor), page.limit)
    shown = make_page(request, rows, page.limit, lambda r: encode_cursor(r["id"]))
    return json_response(Page(results=[audit_out(r) for r in shown.results], next=shown.next))



# ---------------------------------------------------------------- suspension

Note = Annotated[str, Meta(max_length=2000)]


class SuspendBody(Struct):
    reason: Annotated[str, Meta(min_length=1, max_length=500)]
    until: datetime | None = None


class NoteBody(Struct):
    note: Note = ""


class Standing(Struct):
    """An account as moderators see it."""

    id: str
    username: str
    role: str
    is_active: bool
    suspended: bool
    suspended_until: datetime | None
    suspension_reason: str | None


def standing(row: asyncpg.Record) -> Standing:
    return Standing(id=str(row["id"]), username=row["username"], role=row["role"], is_active=row["is_active"],
                    suspended=row["suspended_at"] is not None, suspended_until=row["suspended_until"],
                    suspension_reason=row["suspension_reason"])


async def check_may_act_on(pool: asyncpg.Pool, actor: int, target: int) -> str:
    """The actor's role, when they may act on the target account: at least a moderator, never on
    themselves, and only an admin on an admin (a moderator acting on one is 403)."""
    role = await check_role(pool, actor, "moderator")
    if target == actor:
        raise Forbidden("You cannot act on your own account.")
    target_role = await pool.fetchval("SELECT role FROM users WHERE id = $1", target)
    if target_role is None:
        raise NotFound()
    if has_role(target_role, "admin") and not has_role(role, "admin"):
        raise Forbidden("A moderator cannot act on an admin.")
    return role


async def suspend_txn(conn: asyncpg.Connection, actor: int | None, user_id: int, reason: str,
                      until: datetime | None, note: str = "") -> asyncpg.Record:
    """Inside a transaction: suspend, revoke every refresh token, audit, emit user_suspended.
    after_suspend() follows the commit."""
    if until is not None and until.tzinfo is None:
        raise ValidationFailed("until: give a time zone (ISO 8601 with Z or an offset).", fields={"until": "No time zone."})
    if until is not None and until <= datetime.now(timezone.utc):
        raise ValidationFailed("until: must be in the future.", fields={"until": "In the past."})
    row = await moderation.suspend_txn(conn, user_id, reason, until)
    if row is None:
        raise NotFound()
    await tokens.revoke_all_for_user(conn, user_id)
    await moderation.audit_txn(conn, actor, "user_suspended", "user", user_id, note,
                               {"reason": reason, "until": until.isoformat() if until else None})
    await outbox.add(conn, events.UserSuspended(user_id=str(user_id), actor_id=None if actor is None else str(actor),
                                                reason=reason, until=until), user_id)
    return row


async def after_suspend(redis: Redis, gateway: Gateway, access_ttl: int, user_id: int) -> None:
    """After commit: the account's access tokens are refused at once (for as long as one lives),
    its sockets close with 4403."""
    await tokens.mark_user_inactive(redis, user_id, access_ttl)
    await gateway.close_user(user_id, CLOSE_SUSPENDED, b"account suspended")


async def suspend_user(pool: asyncpg.Pool, redis: Redis, gateway: Gateway, access_ttl: int, actor: int, user_id: int,
                       body: SuspendBody) -> asyncpg.Record:
    """A moderator suspends an account: it cannot log in, its tokens stop at once, and it and
    everything it made are hidden from everyone until unsuspended; nothing is deleted."""
    await check_may_act_on(pool, actor, user_id)
    async with pool.acquire() as conn, conn.transaction():
        row = await suspend_txn(conn, actor, user_id, body.reason.strip(), body.until)
    await after_suspend(redis, gateway, access_ttl, user_id)
    return row


async def unsuspend_user(pool: asyncpg.Pool, redis: Redis, actor: int | None, user_id: int,
                         note: str = "") -> asyncpg.Record | None:
    """Lift a suspension (a moderator, or the expiry job with no actor): the account and its things
    are back as they were; audited, emits user_unsuspended. None if it was not suspended."""
    async with pool.acquire() as conn, conn.transaction():
        row = await moderation.unsuspend_txn(conn, user_id)
        if row is None:
            return None
        await moderation.audit_txn(conn, actor, "user_unsuspended", "user", user_id, note)
        await outbox.add(conn, events.UserUnsuspended(user_id=str(user_id),
                                                      actor_id=None if actor is None else str(actor)), user_id)
    await tokens.clear_user_mark(redis, user_id)
    return row


async def lift_expired_suspensions(pool: asyncpg.Pool, redis: Redis) -> int:
    """The periodic job: suspensions whose `until` has passed are lifted."""
    lifted = 0
    for user_id in await moderation.expired_suspensions(pool):
        lifted += await unsuspend_user(pool, redis, None, user_id, "expired") is not None
    return lifted


@routes.route("GET", "/api/admin/users/", response=Page[Standing], role="moderator",
              query={"q": "username or full-name prefix", "limit": "1..100", "cursor": "from `next`"})
async def find_accounts(request: web.Request) -> web.Response:
    """Accounts by username, optionally those whose username or name starts with ?q=, with their
    standing: suspended and deactivated ones too, which the users list hides (to lift a suspension)."""
    page = page_request(request)
    after = decode_cursor(page.cursor, str)
    q = request.query.get("q", "").strip()
    if len(q) > 64:
        raise ValidationFailed("q: at most 64 characters.", fields={"q": "At most 64 characters."})
    rows = await users.search_accounts(request.app[pool_key], q or None, after[0] if after else None, page.limit)
    result = make_page(request, rows, page.limit, lambda r: encode_cursor(r["sort_key"]))
    return json_response(Page(results=[standing(r) for r in result.results], next=result.next))


@routes.route("POST", "/api/admin/users/{id}/suspend/", body=SuspendBody, response=Standing, role="moderator")
async def suspend(request: web.Request) -> web.Response:
    """Suspend an account (until a time, or until unsuspended): no log-in, tokens and sockets cut, all of it hidden."""
    body = await read_json(request, SuspendBody)
    app = request.app
    row = await suspend_user(app[pool_key], app[redis_key], app[gateway_key], app[config_key].auth.access_token_ttl,
                             current_user(request), path_id(request), body)
    return json_response(standing(row))


@routes.route("POST", "/api/admin/users/{id}/unsuspend/", body=NoteBody, response=Standing, role="moderator")
async def unsuspend(request: web.Request) -> web.Response:
    """Lift a suspension: the account and everything it made are back."""
    body = await read_json(request, NoteBody) if request.body_exists else NoteBody()
    user_id = path_id(request)
    await check_may_act_on(request.app[pool_key], current_user(request), user_id)
    row = await unsuspend_user(request.app[pool_key], request.app[redis_key], current_user(request), user_id, body.note)
    if row is None:
        raise Conflict("This account is not suspended.")
    return json_response(standing(row))


# ---------------------------------------------------------------- the queue and resolutions


class ReporterOut(Struct):
    id: str
    username: str


class TargetOut(Struct):
    """A reported thing as a moderator sees it, whatever its visibility."""

    type: str
    id: str
    exists: bool
    owner: Standing | None
    text: str | None
    media_ids: list[str]
    post_id: str | None
    conversation_id: str | None
    seq: int | None
    created_at: datetime | None


class QueueItem(Struct):
    id: str
    status: str
    reason: str
    text: str
    reporter: ReporterOut | None
    target: TargetOut
    target_report_count: int
    created_at: datetime
    action: str | None
    note: str | None
    resolved_by: str | None
    resolved_at: datetime | None


def target_out(kind: str, target_id: int, row: asyncpg.Record | None, owner: asyncpg.Record | None) -> TargetOut:
    live = row is not None and not row["gone"]
    return TargetOut(
        type=kind, id=str(target_id), exists=live, owner=standing(owner) if owner is not None else None,
        text=row["text"] if live else None, media_ids=[str(m) for m in row["media_ids"]] if live else [],
        post_id=str(row["post_id"]) if live and kind == "comment" else None,
        conversation_id=str(row["conversation_id"]) if row is not None and row["conversation_id"] else None,
        seq=row["seq"] if row is not None else None, created_at=row["created_at"] if row is not None else None,
    )


async def render_queue(pool: asyncpg.Pool, rows: list[asyncpg.Record]) -> list[QueueItem]:
    """Reports with their targets and the accounts involved, in a query per target type and one for accounts."""
    found = await moderation.targets(pool, [(r["target_type"], r["target_id"]) for r in rows])
    people = await moderation.accounts(pool, [u for r in rows for u in (r["reporter_id"], r["target_owner_id"])])
    out = []
    for r in rows:
        reporter = people.get(r["reporter_id"])
        out.append(QueueItem(
            id=str(r["id"]), status=r["status"], reason=r["reason"], text=r["text"],
            reporter=ReporterOut(id=str(reporter["id"]), username=reporter["username"]) if reporter else None,
            target=target_out(r["target_type"], r["target_id"], found.get((r["target_type"], r["target_id"])),
                              people.get(r["target_owner_id"])),
            target_report_count=r["target_report_count"], created_at=r["created_at"], action=r["action"],
            note=r["note"], resolved_by=None if r["resolved_by"] is None else str(r["resolved_by"]),
            resolved_at=r["resolved_at"],
        ))
    return out


@routes.route("GET", "/api/admin/reports/", response=Page[QueueItem], role="moderator",
              query={"status": "open (default) or resolved", "type": "post, comment, story, message or user",
                     "limit": "1..100", "cursor": "from `next`"})
async def report_queue(request: web.Request) -> web.Response:
    """The moderation queue, oldest first, each report with its target and the target's report count."""
    status = request.query.get("status", "open")
    kind = request.query.get("type") or None
    if status not in ("open", "resolved"):
        raise ValidationFailed("status: open or resolved.", fields={"status": "open or resolved."})
    if kind is not None and kind not in moderation.TARGET_TYPES:
        raise ValidationFailed("type: unknown.", fields={"type": "One of " + ", ".join(moderation.TARGET_TYPES)})
    page = page_request(request)
    pool = request.app[pool_key]
    rows = await moderation.queue(pool, status, kind, cursor_id(request, page.cursor), page.limit)
    shown = make_page(request, rows, page.limit, lambda r: encode_cursor(r["id"]))
    return json_response(Page(results=await render_queue(pool, shown.results), next=shown.next))


class ResolveBody(Struct):
    action: Literal["dismiss", "remove", "suspend"]
    note: Note = ""


class Resolution(Struct):
    action: str
    target: TargetRef
    resolved_report_ids: list[str]


@dataclass(frozen=True)
class Enforcement:
    """What a moderator's resolution reaches after its commit: the caches that forget a removed
    thing, the bucket of its media, the sockets of a removed message's members or of a suspended
    owner. Made once at start-up, when the gateway is up (app/clients.py, enforcement_key)."""

    pool: asyncpg.Pool
    redis: Redis
    s3: AioBaseClient
    bucket: str
    trays: stories.TrayCache
    gateway: Gateway
    access_ttl: int  # how long an access token lives: how long a suspended owner's stay refused


async def remove_target_txn(conn: asyncpg.Connection, kind: str, target_id: int, owner: int,
                            now: datetime) -> dict[str, Any] | None:
    """Inside a transaction: delete a reported post, comment or story (as of `now`), or make a
    message a removed tombstone, emitting what the owner's own deletion emits; what after_remove()
    needs, or None when the target is already gone."""
    if kind == "post":
        deleted = await posts.delete_post_txn(conn, target_id, owner)
        if deleted is not None:
            await emit_txn(conn, events.PostDeleted, deleted.row, removed_by="moderator")
        return None if deleted is None else {"object_keys": deleted.object_keys}
    if kind == "comment":
        row = await comments.get_comment(conn, target_id)
        deleted = await comments.delete_comment_txn(conn, target_id) if row is not None else None
        if deleted is not None:
            await outbox.add(conn, comment_event(events.CommentDeleted, deleted, row["post_author_id"]),
                             row["post_author_id"])
        return None if deleted is None else {}
    if kind == "story":
        story = await stories.delete_story_txn(conn, target_id, owner, now)
        if story is not None:
            await outbox.add(conn, events.StoryDeleted(story_id=str(target_id), owner_id=str(owner)), owner)
        return None if story is None else {}
    message = await moderation.remove_message_txn(conn, target_id)
    if message is not None:
        await outbox.add(conn, events.MessageRemoved(
            message_id=str(message["id"]), conversation_id=str(message["conversation_id"]), seq=message["seq"],
            sender_id=str(message["sender_id"])), message["conversation_id"])
    return None if message is None else {"conversation_id": message["conversation_id"], "seq": message["seq"]}


async def after_remove(enforcement: Enforcement, kind: str, target_id: int, owner: int,
                       removed: dict[str, Any]) -> None:
    """After commit: caches forget the removed thing; every member of a removed message's
    conversation gets message.removed."""
    pool = enforcement.pool
    if kind == "post":
        await posts.forget_cached(enforcement.redis, [target_id])
        await remove_post_objects(enforcement.s3, enforcement.bucket, target_id, removed["object_keys"])
    elif kind == "story":
        await enforcement.trays.drop([owner, *await stories.follower_ids(pool, owner)])
    elif kind == "message":
        frame = frames.encode(frames.MessageRemoved(conversation_id=str(removed["conversation_id"]),
                                                    seq=removed["seq"]))
        members = await message_store.member_ids(pool, removed["conversation_id"])
        await enforcement.gateway.publish([(m, Gateway.envelope(frame)) for m in members])


async def resolve_report(enforcement: Enforcement, now: datetime, actor: int, report_id: int,
                         body: ResolveBody) -> Resolution:
    """Resolve a report and every other open report on its target with one action: dismiss,
    remove the target (as of `now`), or suspend its owner. Never on one's own reports or things,
    and a moderator never removes or suspends an admin's. Audited; reporters are told
    (report_resolved)."""
    pool = enforcement.pool
    await check_role(pool, actor, "moderator")
    report = await moderation.get_report(pool, report_id)
    if report is None:
        raise NotFound()
    if report["status"] != "open":
        raise Conflict("This report is resolved already.")
    kind, target_id, owner = report["target_type"], report["target_id"], report["target_owner_id"]
    if actor in await moderation.reporters_on_target(pool, kind, target_id):
        raise Forbidden("You cannot resolve reports you filed.")
    if body.action != "dismiss":
        await check_may_act_on(pool, actor, owner)
    elif owner == actor:
        raise Forbidden("You cannot resolve reports about yourself.")
    if body.action == "remove" and kind == "user":
        raise ValidationFailed("action: an account cannot be removed; suspend it.", fields={"action": "Not for accounts."})
    removed = None
    async with pool.acquire() as conn, conn.transaction():
        if body.action == "remove":
            removed = await remove_target_txn(conn, kind, target_id, owner, now)
        elif body.action == "suspend":
            await suspend_txn(conn, actor, owner, f"report {report_id}: {report['reason']}", None, body.note)
        resolved = await moderation.resolve_target_txn(conn, kind, target_id, body.action, body.note, actor)
        if not resolved:
            raise Conflict("This report is resolved already.")
        ids = [str(r["id"]) for r in resolved]
        await moderation.audit_txn(conn, actor, f"report_{body.action}", kind, target_id, body.note,
                                   {"report_ids": ids, "owner_id": str(owner), "removed": removed is not None})
        await outbox.add(conn, events.ReportResolved(
            report_ids=ids, reporter_ids=sorted({str(r["reporter_id"]) for r in resolved}),
            reports=[events.ResolvedReport(report_id=str(r["id"]), reporter_id=str(r["reporter_id"])) for r in resolved],
            moderator_id=str(actor), action=body.action, target_type=kind, target_id=str(target_id),
            target_owner_id=str(owner)), target_id)
    if removed is not None:
        await after_remove(enforcement, kind, target_id, owner, removed)
    if body.action == "suspend":
        await after_suspend(enforcement.redis, enforcement.gateway, enforcement.access_ttl, owner)
    return Resolution(action=body.action, target=TargetRef(type=kind, id=str(target_id)), resolved_report_ids=ids)


@routes.route("POST", "/api/admin/reports/{id}/resolve/", body=ResolveBody, response=Resolution, role="moderator")
async def resolve(request: web.Request) -> web.Response:
    """Resolve a report and every open report on the same target: dismiss, remove the target, or suspend its owner."""
    body = await read_json(request, ResolveBody)
    app = request.app
    return json_response(await resolve_report(app[enforcement_key], app_now(app), current_user(request),
                                              path_id(request), body))


# ---------------------------------------------------------------- the overview


class Stats(Struct):
    users: int
    active_24h: int
    posts: int
    messages: int
    open_reports: int
    connected_sockets: int


@routes.route("GET", "/api/admin/stats/", response=Stats, role="moderator")
async def admin_stats(request: web.Request) -> web.Response:
    """Counts: users, active in 24 h, posts, messages, open reports, connected sockets (all processes)."""
    row = await moderation.stats(request.app[pool_key])
    sockets = await request.app[gateway_key].presence.count_connections()
    return json_response(Stats(**dict(row), connected_sockets=sockets))
