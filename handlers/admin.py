"""The admin API under /api/admin/: roles and the verified badge, the audit log, and making the
first admin (`glint createsuperuser`). Every route here answers 404 to accounts without the role
it needs (the `role=` option of the route decorator), and every action is audited."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import asyncpg
from aiohttp import web
from msgspec import UNSET, Meta, UnsetType

from handlers.accounts import TOPIC, RegisterRequest, check_registration, me_out, MeOut
from handlers.auth import current_user, hash_password
from handlers.common import (
    Conflict, Forbidden, NotFound, Page, Routes, Struct, check_role, encode_cursor, json_response, make_page,
    page_request, path_id, read_json,
)
from handlers.context import pool_key
from handlers.posts import cursor_id
from storage import moderation, outbox, users

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
            await outbox.add_event(conn, TOPIC, "user_role_changed", user_id, {
                "user_id": str(user_id), "actor_id": str(actor), "role": row["role"], "previous": row["old_role"]})
        if row["is_verified"] != row["old_verified"]:
            await moderation.audit_txn(conn, actor, "verified_changed", "user", user_id,
                                       details={"from": row["old_verified"], "to": row["is_verified"]})
            await outbox.add_event(conn, TOPIC, "user_updated", user_id, {"user_id": str(user_id)})
    return row


@routes.route("PATCH", "/api/admin/users/{id}/", body=UserAdminPatch, response=MeOut, role="admin")
async def patch_user(request: web.Request) -> web.Response:
    """Change an account's role (user, moderator, admin) or verified badge."""
    body = await read_json(request, UserAdminPatch)
    row = await change_role(request.app[pool_key], current_user(request), path_id(request), body)
    return json_response(me_out(row))


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
                await outbox.add_event(conn, TOPIC, "user_registered", row["id"],
                                       {"user_id": str(row["id"]), "username": row["username"]})
                await outbox.add_event(conn, TOPIC, "user_role_changed", row["id"], {
                    "user_id": str(row["id"]), "actor_id": None, "role": "admin", "previous": "user"})
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


Note = Annotated[str, Meta(max_length=2000)]
