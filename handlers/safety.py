"""Account safety: changing the password, resetting it by e-mail, the sessions list, two-factor,
and deleting the account.

Each of these revokes sessions in PostgreSQL (the truth) and then, after commit, marks them
refused in the Redis cache and closes their sockets, so that their access tokens and sockets stop
at once (handlers/auth.py refuse_sessions).

Events (topic "accounts", key the user id), written in the transaction that makes them true:
`password_changed {user_id, via: change|reset, sessions_revoked}`, `password_reset_requested
{email}` (keyed by the address; jobs/safety.py mints and mails the token), `session_revoked
{user_id, session_id}` (also from POST /api/token/revoke/), `two_factor_enabled {user_id}`,
`two_factor_disabled {user_id}`, `account_deletion_requested {user_id, erase_after}`, then
`account_deletion_cancelled {user_id}` (a login, handlers/auth.py) or `account_erased {user_id}`
(jobs/erasure.py); `export_requested {user_id, export_id}` (handlers/export.py, built by
jobs/export.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

import asyncpg
from aiohttp import web
from msgspec import Meta

import events
from handlers.accounts import fail, password_problem
from handlers.auth import Identity, check_address_limit, hash_password, refuse_account, refuse_sessions, verify_password
from handlers import two_factor as two_factor_rules
from handlers.two_factor import SecretBox
from handlers.common import (
    Conflict, NotAuthenticated, NotFound, Page, Routes, Struct, ValidationFailed, json_response, no_content, path_id,
    read_json,
)
from handlers.context import app_now, config_key, identity_key, pool_key, secret_box_key
from storage import erasure, outbox, safety, sessions, tokens, two_factor, users

routes = Routes("accounts")

NewPassword = Annotated[str, Meta(min_length=8, max_length=1024)]


def viewer_identity(request: web.Request) -> Identity:
    """The authenticated identity (user and session); 401 without one."""
    identity: Identity | None = request.get(identity_key)
    if identity is None:
        raise NotAuthenticated()
    return identity


# ---------------------------------------------------------------- password change


class PasswordChange(Struct):
    old_password: Annotated[str, Meta(min_length=1, max_length=1024)]
    new_password: NewPassword


async def change_password(app: web.Application, identity: Identity, old: str, new: str) -> None:
    """Replace the password once the old one is confirmed; every other session is revoked."""
    pool = app[pool_key]
    row = await users.get_user(pool, identity.user_id)
    if row is None or not await verify_password(row["password_hash"], old):
        raise ValidationFailed("old_password: incorrect.", fields={"old_password": "Incorrect password."})
    problem = password_problem(row["username"], new)
    fail({"new_password": problem} if problem else {})
    new_hash = await hash_password(new)
    async with pool.acquire() as conn, conn.transaction():
        await users.set_password_hash(conn, identity.user_id, new_hash)
        revoked = await tokens.revoke_all_for_user(conn, identity.user_id, keep_family=identity.session_id)
        await outbox.add(conn, events.PasswordChanged(user_id=str(identity.user_id), via="change",
                                                    sessions_revoked=len(revoked)), identity.user_id)
    await refuse_sessions(app, identity.user_id, revoked)


@routes.route("POST", "/api/accounts/password/", body=PasswordChange, status=204)
async def post_password(request: web.Request) -> web.Response:
    """Change the password (confirm the old one); every other session of the account is revoked."""
    identity = viewer_identity(request)
    body = await read_json(request, PasswordChange)
    await change_password(request.app, identity, body.old_password, body.new_password)
    return no_content()


# ---------------------------------------------------------------- password reset


class ResetRequest(Struct):
    email: Annotated[str, Meta(min_length=3, max_length=254)]


class Accepted(Struct):
    status: str = "accepted"


@routes.route("POST", "/api/accounts/password-reset/", body=ResetRequest, response=Accepted, status=202,
              auth=False)
async def request_reset(request: web.Request) -> web.Response:
    """Ask for a reset token by e-mail; 202 whether or not the address has an account.

    The request only records an event, the same work for every address; the consumer looks the
    address up and mails a token, so neither the answer nor its timing tells whether it exists."""
    body = await read_json(request, ResetRequest)
    await check_address_limit(request, "password-reset")
    async with request.app[pool_key].acquire() as conn, conn.transaction():
        await outbox.add(conn, events.PasswordResetRequested(email=body.email), body.email.lower())
    return json_response(Accepted(), status=202)


class ResetConfirm(Struct):
    token: Annotated[str, Meta(min_length=1, max_length=512)]
    new_password: NewPassword


def bad_token() -> ValidationFailed:
    return ValidationFailed("token: invalid or expired.", fields={"token": "Invalid or expired."})


async def confirm_reset(app: web.Application, token: str, new: str) -> None:
    """Spend a reset token: the password is replaced and every session of the account revoked."""
    pool = app[pool_key]
    token_hash = tokens.hash_token(token)
    owner = await safety.reset_owner(pool, token_hash)
    if owner is None:
        raise bad_token()
    problem = password_problem(owner["username"], new)
    fail({"new_password": problem} if problem else {})
    new_hash = await hash_password(new)
    async with pool.acquire() as conn, conn.transaction():
        user_id = await safety.spend_reset_txn(conn, token_hash)
        if user_id is None:  # spent by a concurrent confirm meanwhile
            raise bad_token()
        await users.set_password_hash(conn, user_id, new_hash)
        revoked = await tokens.revoke_all_for_user(conn, user_id)
        await outbox.add(conn, events.PasswordChanged(user_id=str(user_id), via="reset", sessions_revoked=len(revoked)),
                         user_id)
    await refuse_sessions(app, user_id, revoked)


@routes.route("POST", "/api/accounts/password-reset/confirm/", body=ResetConfirm, status=204, auth=False)
async def post_reset_confirm(request: web.Request) -> web.Response:
    """Set a new password with a reset token (single use, 1 hour); every session is revoked."""
    body = await read_json(request, ResetConfirm)
    await confirm_reset(request.app, body.token, body.new_password)
    return no_content()


# ---------------------------------------------------------------- sessions


class SessionOut(Struct):
    id: str
    device: str
    user_agent: str
    ip: str
    created_at: datetime
    last_used_at: datetime
    current: bool


_BROWSERS = (("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"),
             ("Safari/", "Safari"))
_SYSTEMS = (("iPhone", "iOS"), ("iPad", "iPadOS"), ("Android", "Android"), ("Windows", "Windows"),
            ("Mac OS X", "macOS"), ("CrOS", "ChromeOS"), ("Linux", "Linux"))


def device_name(user_agent: str) -> str:
    """A person's name for the device behind a User-Agent: "Firefox on Linux", or the client's
    own product name ("glint-ios/2.1"), or "Unknown device"."""
    browser = next((name for token, name in _BROWSERS if token in user_agent), None)
    system = next((name for token, name in _SYSTEMS if token in user_agent), None)
    if browser and system:
        return f"{browser} on {system}"
    if browser or system:
        return browser or system or ""
    product = user_agent.split(" ", 1)[0].strip()
    return product[:64] if product else "Unknown device"


@routes.route("GET", "/api/accounts/sessions/", response=Page[SessionOut])
async def list_sessions(request: web.Request) -> web.Response:
    """The account's live sessions, most recently used first (device, address, last used, current)."""
    identity = viewer_identity(request)
    rows = await sessions.list_live(request.app[pool_key], identity.user_id, request.app[config_key].auth.refresh_token_ttl)
    results = [SessionOut(id=str(r["id"]), device=device_name(r["user_agent"]), user_agent=r["user_agent"],
                          ip=r["ip"], created_at=r["created_at"], last_used_at=r["last_used_at"],
                          current=r["id"] == identity.session_id) for r in rows]
    return json_response(Page(results=results, next=None))


async def revoke_session(app: web.Application, user_id: int, session_id: int) -> None:
    """Log one of the user's own sessions out; someone else's, or a revoked one, is 404."""
    pool = app[pool_key]
    async with pool.acquire() as conn, conn.transaction():
        if not await sessions.is_live_own(conn, user_id, session_id):
            raise NotFound()
        await tokens.revoke_family_txn(conn, session_id)
        await outbox.add(conn, events.SessionRevoked(user_id=str(user_id), session_id=str(session_id)), user_id)
    await refuse_sessions(app, user_id, [session_id])


@routes.route("DELETE", "/api/accounts/sessions/{id}/", sees="owner", status=204)
async def delete_session(request: web.Request) -> web.Response:
    """Log out one of the account's sessions (the current one too); 404 if it is not the viewer's."""
    identity = viewer_identity(request)
    await revoke_session(request.app, identity.user_id, path_id(request))
    return no_content()


# ---------------------------------------------------------------- two-factor


class TwoFactorSetup(Struct):
    secret: str
    otpauth_url: str


class CodeRequest(Struct):
    code: Annotated[str, Meta(min_length=1, max_length=64)]


class RecoveryCodes(Struct):
    recovery_codes: list[str]


class DisableTwoFactor(Struct):
    password: Annotated[str, Meta(min_length=1, max_length=1024)]
    code: Annotated[str, Meta(min_length=1, max_length=64, description="a TOTP or recovery code")]


def bad_code() -> ValidationFailed:
    return ValidationFailed("code: wrong, expired or already used.", fields={"code": "Wrong, expired or already used."})


async def start_two_factor(pool: asyncpg.Pool, box: SecretBox, user_id: int) -> TwoFactorSetup:
    """A new TOTP secret, sealed at rest, and its otpauth:// URL; 409 once two-factor is on."""
    row = await users.get_user(pool, user_id)
    if row is None:
        raise NotFound()
    secret = two_factor_rules.new_secret()
    if not await two_factor.start_setup(pool, user_id, box.seal(secret)):
        raise Conflict("Two-factor is already on; disable it first.")
    return TwoFactorSetup(secret=secret, otpauth_url=two_factor_rules.otpauth_url(secret, row["username"]))


@routes.route("POST", "/api/accounts/2fa/setup/", response=TwoFactorSetup)
async def setup_two_factor(request: web.Request) -> web.Response:
    """Start TOTP set-up: a new secret and its otpauth:// URL (409 once two-factor is on)."""
    identity = viewer_identity(request)
    return json_response(await start_two_factor(request.app[pool_key], request.app[secret_box_key], identity.user_id))


async def turn_on_two_factor(pool: asyncpg.Pool, box: SecretBox, now: datetime, user_id: int, code: str) -> list[str]:
    """Confirm the set-up with a code of its secret (right for `now`): two-factor is on; the
    recovery codes, shown once."""
    row = await two_factor.get(pool, user_id)
    if row is None:
        raise ValidationFailed("Start with POST /api/accounts/2fa/setup/.", fields={"code": "No set-up started."})
    if row["confirmed_at"] is not None:
        raise Conflict("Two-factor is already on.")
    if not await two_factor_rules.check_totp(pool, box, now, user_id, row["secret"], code):
        raise bad_code()
    codes = two_factor_rules.new_recovery_codes()
    async with pool.acquire() as conn, conn.transaction():
        if not await two_factor.confirm_txn(conn, user_id, [two_factor_rules.hash_recovery_code(c) for c in codes]):
            raise Conflict("Two-factor is already on.")
        await outbox.add(conn, events.TwoFactorEnabled(user_id=str(user_id)), user_id)
    return codes


@routes.route("POST", "/api/accounts/2fa/confirm/", body=CodeRequest, response=RecoveryCodes)
async def confirm_two_factor(request: web.Request) -> web.Response:
    """Turn two-factor on with a code from the new secret; returns the recovery codes, shown once."""
    identity = viewer_identity(request)
    body = await read_json(request, CodeRequest)
    app = request.app
    codes = await turn_on_two_factor(app[pool_key], app[secret_box_key], app_now(app), identity.user_id, body.code)
    return json_response(RecoveryCodes(recovery_codes=codes))


async def turn_off_two_factor(pool: asyncpg.Pool, box: SecretBox, now: datetime, user_id: int, password: str,
                              code: str) -> None:
    """Turn two-factor off, once the password and a TOTP (right for `now`) or recovery code are confirmed."""
    row = await users.get_user(pool, user_id)
    if row is None or not await verify_password(row["password_hash"], password):
        raise ValidationFailed("password: incorrect.", fields={"password": "Incorrect password."})
    if not await two_factor.is_enabled(pool, user_id):
        raise Conflict("Two-factor is not on.")
    if not await two_factor_rules.check_second_factor(pool, box, now, user_id, code):
        raise bad_code()
    async with pool.acquire() as conn, conn.transaction():
        await two_factor.disable_txn(conn, user_id)
        await outbox.add(conn, events.TwoFactorDisabled(user_id=str(user_id)), user_id)


@routes.route("POST", "/api/accounts/2fa/disable/", body=DisableTwoFactor, status=204)
async def disable_two_factor(request: web.Request) -> web.Response:
    """Turn two-factor off, confirmed with the password and a TOTP or recovery code."""
    identity = viewer_identity(request)
    body = await read_json(request, DisableTwoFactor)
    app = request.app
    await turn_off_two_factor(app[pool_key], app[secret_box_key], app_now(app), identity.user_id, body.password,
                              body.code)
    return no_content()


# ---------------------------------------------------------------- account deletion


class DeletionRequest(Struct):
    password: Annotated[str, Meta(min_length=1, max_length=1024)]


class DeletionScheduled(Struct):
    erase_after: datetime


async def request_deletion(app: web.Application, now: datetime, grace_days: int,
                           user_id: int, password: str) -> datetime:
    """Hide the account at once (`now`) and schedule its erasure after the grace period (a login
    within it cancels); every session is revoked. When it will be erased."""
    pool = app[pool_key]
    row = await users.get_user(pool, user_id)
    if row is None or not await verify_password(row["password_hash"], password):
        raise ValidationFailed("password: incorrect.", fields={"password": "Incorrect password."})
    erase_after = now + timedelta(days=grace_days)
    async with pool.acquire() as conn, conn.transaction():
        if not await erasure.request_txn(conn, user_id, now):
            raise NotFound()
        revoked = await tokens.revoke_all_for_user(conn, user_id)
        await outbox.add(conn, events.AccountDeletionRequested(user_id=str(user_id), erase_after=erase_after), user_id)
    await refuse_account(app, user_id, b"account deleted", sessions=revoked)
    return erase_after


@routes.route("DELETE", "/api/accounts/users/me/", body=DeletionRequest, response=DeletionScheduled, status=202)
async def delete_me(request: web.Request) -> web.Response:
    """Delete the account (confirm with the password): hidden at once, erased after 30 days unless
    the owner logs in again before then."""
    identity = viewer_identity(request)
    body = await read_json(request, DeletionRequest)
    app = request.app
    erase_after = await request_deletion(app, app_now(app), app[config_key].accounts.deletion_grace_days,
                                         identity.user_id, body.password)
    return json_response(DeletionScheduled(erase_after=erase_after), status=202)
