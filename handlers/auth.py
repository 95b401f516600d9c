"""Logins and tokens: argon2id passwords, short-lived JWT access tokens, rotating refresh tokens."""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Callable

import asyncpg

import jwt
from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from msgspec import UNSET, Meta, UnsetType
from redis.asyncio import Redis

import events
from handlers.common import (
    ApiError, Handler, NotAuthenticated, RateLimited, Routes, Struct, TokenExpired, json_response, no_content, read_json,
)
from handlers.context import (
    app_now, config_key, identity_key, limiter_key, pool_key, redis_key, ridden_key, secret_box_key,
)
from handlers.two_factor import check_second_factor
from realtime.gateway import CLOSE_UNAUTHORIZED, gateway_key
from storage import erasure, outbox, sessions, tokens, two_factor, users
from storage.ratelimit import Rider, address_key

routes = Routes("auth")

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
ALGORITHM = "HS256"


# ---------------------------------------------------------------- passwords

async def hash_password(password: str) -> str:
    """argon2id hash, computed off the event loop."""
    return await asyncio.to_thread(_hasher.hash, password)


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash("glint: no such account")


async def spend_verify_time(password: str) -> None:
    """As long as a real check takes, for a login name with no account: timing must not tell
    existing accounts from unknown ones."""
    await verify_password(await asyncio.to_thread(_dummy_hash), password)


async def verify_password(stored: str, password: str) -> bool:
    """Check a password against its hash, off the event loop."""
    try:
        return await asyncio.to_thread(_hasher.verify, stored, password)
    except (VerificationError, InvalidHashError):
        return False


# ---------------------------------------------------------------- access tokens

@dataclass(frozen=True)
class Identity:
    """Who an access token speaks for, until when (epoch seconds)."""

    user_id: int
    session_id: int
    expires_at: float


def make_access_token(secret: str, user_id: int, session_id: int, ttl: int) -> str:
    """A signed access token for a session."""
    now = int(time.time())
    claims = {"sub": str(user_id), "sid": str(session_id), "iat": now, "exp": now + ttl, "typ": "access"}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


_verified: dict[tuple[tuple[str, ...], str], tuple[Identity, float]] = {}
VERIFIED_MAX = 50_000  # tokens remembered per process (each about 300 bytes)


def read_access_token(secrets: tuple[str, ...], token: str) -> Identity:
    """Verify an access token's signature (by the current secret, or the previous one during a
    rotation) and expiry; raise 401 otherwise. A token verified once is remembered until it
    expires (the HMAC and the claims' parsing cost more than the rest of a cached request's auth);
    whether its session still stands is checked on every request all the same (middlewares)."""
    known = _verified.get((secrets, token))
    if known is not None:
        if time.time() < known[1]:
            return known[0]
        del _verified[(secrets, token)]
        raise TokenExpired()
    identity, expires = _verify(secrets, token)
    if len(_verified) >= VERIFIED_MAX:
        del _verified[next(iter(_verified))]  # the oldest remembered
    _verified[(secrets, token)] = (identity, expires)
    return identity


def _verify(secrets: tuple[str, ...], token: str) -> tuple[Identity, float]:
    claims = None
    for secret in secrets:
        try:
            claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub", "sid"]})
            break
        except jwt.ExpiredSignatureError:
            raise TokenExpired() from None
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError:
            raise NotAuthenticated("The access token is invalid.") from None
    if claims is None:
        raise NotAuthenticated("The access token is invalid.")
    if claims.get("typ") != "access":
        raise NotAuthenticated("The access token is invalid.")
    try:
        expires = float(claims["exp"])
        return Identity(int(claims["sub"]), int(claims["sid"]), expires), expires
    except (TypeError, ValueError):
        raise NotAuthenticated("The access token is invalid.") from None


def verifying_secrets(current: str, previous: str = "") -> tuple[str, ...]:
    """The secrets an access token may be signed with: the current one, then the previous one."""
    return (current, previous) if previous else (current,)


def bearer_token(request: web.Request) -> str | None:
    """The token of an `Authorization: Bearer` header, if any."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def current_user(request: web.Request) -> int:
    """The authenticated user's id; 401 when the request carries no valid token."""
    identity: Identity | None = request.get(identity_key)
    if identity is None:
        raise NotAuthenticated()
    return identity.user_id


FirstRead = Callable[[web.Request, Identity], Rider | None]
_first_reads: dict[Handler, FirstRead] = {}


def first_read(read: FirstRead) -> Callable[[Handler], Handler]:
    """Declare a route's first read, of the signed-in user's own Redis keys (their cluster slot):
    `read(request, identity)` names it (a storage.ratelimit.Rider, or None when it cannot ride; a
    request it cannot read, e.g. a bad cursor, raises an ApiError the handler answers itself) and authentication makes it in the
    same script call as the rate limit and the session check, so it costs no round trip of its
    own; the handler finds the reply with ridden(request) (None: not made, read it yourself)."""
    def register(handler: Handler) -> Handler:
        _first_reads[handler] = read
        return handler
    return register


def rider_for(request: web.Request, identity: Identity) -> Rider | None:
    """The first read of the route this request matched, if it declares one (first_read)."""
    read = _first_reads.get(request.match_info.handler)
    if read is None:
        return None
    try:
        return read(request, identity)
    except ApiError:
        return None


def ridden(request: web.Request) -> Any:
    """The reply of this request's first read (first_read), or None when it was not made."""
    return request.get(ridden_key)


def auth_markers(identity: Identity) -> tuple[str, ...]:
    """The Redis keys caching whether this identity's session and user may authenticate ("1" each)."""
    return (tokens.session_key(identity.user_id, identity.session_id), tokens.inactive_key(identity.user_id))


async def check_session(pool: asyncpg.Pool, redis: Redis, access_ttl: int, user_id: int, session_id: int) -> bool:
    """Ask PostgreSQL whether a session may still be used (the cache had no answer), and cache it
    for an access token's lifetime."""
    state = await sessions.load_state(pool, user_id, session_id)
    await tokens.fill_cache(redis, user_id, session_id, state.session_ok, state.user_ok, access_ttl)
    return state.allowed


async def check_address_limit(request: web.Request, scope: str) -> None:
    """The stricter per-address limit of login and registration."""
    config = request.app[config_key]
    hit = await request.app[limiter_key].hit(address_key(scope, request.remote or "unknown"), 60)
    if hit.count > config.rate_limits.auth_per_minute:
        retry = max(hit.reset_ms // 1000, 1)
        raise RateLimited(f"Too many {scope} attempts; try again in {retry} s.", headers={"Retry-After": str(retry)})


class AccountSuspended(NotAuthenticated):
    code, message = "account_suspended", "This account is suspended."


# ---------------------------------------------------------------- routes


class TokenRequest(Struct):
    username: Annotated[str, Meta(min_length=1, max_length=254, description="username or e-mail")]
    password: Annotated[str, Meta(min_length=1, max_length=1024)]
    code: Annotated[str, Meta(min_length=1, max_length=64, description=(
        "a TOTP or recovery code, required once two-factor is on"))] | UnsetType = UNSET


class TwoFactorRequired(NotAuthenticated):
    code, message = "2fa_required", "This account has two-factor on: send a TOTP or recovery code as `code`."


class TwoFactorInvalid(NotAuthenticated):
    code, message = "2fa_invalid", "The two-factor code is wrong, expired or already used."


class RefreshRequest(Struct):
    refresh: Annotated[str, Meta(min_length=1, max_length=512)]


class TokenPair(Struct):
    access: str
    refresh: str


async def start_session(request: web.Request, user_id: int) -> TokenPair:
    """A new token family for a user who just proved who they are."""
    config = request.app[config_key]
    pool = request.app[pool_key]
    family = await tokens.new_family_id(pool)
    refresh = tokens.new_token()
    async with pool.acquire() as conn, conn.transaction():
        await sessions.create(conn, family, user_id, request.headers.get("User-Agent", ""), request.remote or "")
        await tokens.issue(conn, user_id, family, refresh, config.auth.refresh_token_ttl)
    await tokens.fill_cache(request.app[redis_key], user_id, family, True, True, config.auth.access_token_ttl)
    await users.touch_active(pool, user_id)
    return TokenPair(access=make_access_token(config.auth.jwt_secret, user_id, family, config.auth.access_token_ttl),
                     refresh=refresh)


async def cancel_deletion(pool: asyncpg.Pool, redis: Redis, now: datetime, grace_days: int, user_id: int) -> None:
    """The owner logged in within the grace period: the account is shown again and not erased."""
    not_before = now - timedelta(days=grace_days)
    async with pool.acquire() as conn, conn.transaction():
        if not await erasure.cancel_txn(conn, user_id, not_before):
            raise NotAuthenticated("No active account found with the given credentials.")
        await outbox.add(conn, events.AccountDeletionCancelled(user_id=str(user_id)), user_id)
    await tokens.clear_user_mark(redis, user_id)


@routes.route("POST", "/api/token/", body=TokenRequest, response=TokenPair, auth=False)
async def obtain_token(request: web.Request) -> web.Response:
    """Log in with username (or e-mail), password and, once two-factor is on, code (else 2fa_required).

    Returns an access and a refresh token; a wrong or reused code is 401 2fa_invalid. A login within
    the grace period of a requested account deletion cancels the deletion."""
    body = await read_json(request, TokenRequest)
    await check_address_limit(request, "login")
    # keyed by address and name together: attempts from elsewhere cannot lock the account's owner out
    hit = await request.app[limiter_key].hit(
        address_key("login-user", f"{request.remote or 'unknown'}/{body.username.lower()}"), 60)
    if hit.count > request.app[config_key].rate_limits.auth_per_minute:
        retry = max(hit.reset_ms // 1000, 1)
        raise RateLimited(f"Too many attempts for this account; try again in {retry} s.",
                          headers={"Retry-After": str(retry)})
    pool = request.app[pool_key]
    user = await users.get_login(pool, body.username)
    if user is None:
        await spend_verify_time(body.password)
    if user is None or not await verify_password(user["password_hash"], body.password):
        raise NotAuthenticated("No active account found with the given credentials.")
    if user["suspended_at"] is not None:
        raise AccountSuspended()
    pending_deletion = not user["is_active"] and await erasure.is_pending(pool, user["id"])
    if not user["is_active"] and not pending_deletion:
        raise NotAuthenticated("No active account found with the given credentials.")
    if await two_factor.is_enabled(pool, user["id"]):
        if body.code is UNSET:
            raise TwoFactorRequired()
        if not await check_second_factor(pool, request.app[secret_box_key], app_now(request.app), user["id"], body.code):
            raise TwoFactorInvalid()
    if pending_deletion:
        await cancel_deletion(pool, request.app[redis_key], app_now(request.app),
                              request.app[config_key].accounts.deletion_grace_days, user["id"])
    if _hasher.check_needs_rehash(user["password_hash"]):
        await users.set_password_hash(pool, user["id"], await hash_password(body.password))
    return json_response(await start_session(request, user["id"]))


async def refuse_sessions(app: web.Application, user_id: int, family_ids: list[int]) -> None:
    """After a commit that revoked sessions: their access tokens are refused, and their sockets in
    every process closed with 4401, at once (the sockets' sweep would find them only at its next pass)."""
    if family_ids:
        await tokens.mark_sessions_revoked(app[redis_key], user_id, family_ids, app[config_key].auth.access_token_ttl)
        await app[gateway_key].close_sessions(user_id, family_ids, CLOSE_UNAUTHORIZED, b"session revoked")


async def refuse_account(app: web.Application, user_id: int, reason: bytes,
                         sessions: tuple[int, ...] | list[int] = ()) -> None:
    """After a commit that took an account's access away (deactivated, deletion asked): every
    access token refused and every socket closed with 4401, at once; `sessions` revoked with it
    stay refused if the account comes back (one close of the account's sockets covers theirs)."""
    ttl = app[config_key].auth.access_token_ttl
    await tokens.mark_user_inactive(app[redis_key], user_id, ttl)
    await tokens.mark_sessions_revoked(app[redis_key], user_id, list(sessions), ttl)
    await app[gateway_key].close_user(user_id, CLOSE_UNAUTHORIZED, reason)


@routes.route("POST", "/api/token/refresh/", body=RefreshRequest, response=TokenPair, auth=False)
async def refresh_token(request: web.Request) -> web.Response:
    """Spend a refresh token for a new pair; reusing a spent one revokes its whole family."""
    body = await read_json(request, RefreshRequest)
    config = request.app[config_key]
    next_token = tokens.new_token()
    async with request.app[pool_key].acquire() as conn, conn.transaction():
        rotation = await tokens.rotate_txn(conn, body.refresh, next_token, config.auth.refresh_token_ttl)
    if rotation.status == "reused":
        await refuse_sessions(request.app, rotation.user_id, [rotation.family_id])
    if rotation.status != "ok":
        raise NotAuthenticated(f"The refresh token is {rotation.status if rotation.status != 'unknown' else 'invalid'}.")
    # an active client refreshes at least once per access-token lifetime: the cheapest place to
    # record activity (feeds fan out only to recently active users), off every other request
    await users.touch_active(request.app[pool_key], rotation.user_id)
    access = make_access_token(config.auth.jwt_secret, rotation.user_id, rotation.family_id, config.auth.access_token_ttl)
    return json_response(TokenPair(access=access, refresh=next_token))


@routes.route("POST", "/api/token/revoke/", body=RefreshRequest, status=204, auth=False)
async def revoke_token(request: web.Request) -> web.Response:
    """Log out: revoke the refresh token's family and the access tokens of that session."""
    body = await read_json(request, RefreshRequest)
    pool = request.app[pool_key]
    found = await tokens.family_of(pool, body.refresh)
    if found is not None:
        family_id, user_id = found
        async with pool.acquire() as conn, conn.transaction():
            await tokens.revoke_family_txn(conn, family_id)
            await outbox.add(conn, events.SessionRevoked(user_id=str(user_id), session_id=str(family_id)), user_id)
        await refuse_sessions(request.app, user_id, [family_id])
    return no_content()
