"""Accounts: registration and e-mail verification, the viewer's own profile and settings,
deactivation, other users' profiles and the users list."""

from __future__ import annotations

import logging
import re
from datetime import datetime
from functools import wraps
from typing import TYPE_CHECKING, Annotated, Awaitable, Callable, Literal, ParamSpec, TypeVar
from urllib.parse import urlsplit

import asyncpg
from aiohttp import web
from msgspec import UNSET, Meta, UnsetType

import events
from handlers.auth import check_address_limit, current_user, hash_password, refuse_account, verify_password
from handlers.common import (
    Conflict, NotFound, Page, Routes, Struct, ValidationFailed, decode_cursor, encode_cursor, json_response,
    make_page, no_content, page_request, parse_id, path_id, read_json, read_pool,
)
from handlers.context import config_key, email_sink_key, pool_key, redis_key
from handlers.media import AVATAR_URL_DOC, media_links
from storage import email, graph, outbox, posts, tokens, users, visibility
from storage.media import MediaLinks

if TYPE_CHECKING:  # only app/ reads configuration; handlers only see the decoded Struct
    from app.config import Config

log = logging.getLogger("glint.accounts")
routes = Routes("accounts")

# letters, digits, "." and "_", with a letter or digit, no "." first, last or twice in a row ("." and
# ".." read as paths, "_.a." as a typo)
USERNAME = re.compile(r"^(?=.*[A-Za-z0-9])(?!\.)(?!.*\.\.)(?!.*\.$)[A-Za-z0-9._]{1,30}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")  # a dotted domain without empty labels
COMMON_PASSWORDS = frozenset("""
password password1 password12 password123 password! passw0rd p@ssw0rd p@ssword 12345678 123456789
1234567890 0123456789 123123123 12341234 11111111 00000000 88888888 87654321 qwerty12 qwerty123
qwertyui qwertyuiop 1q2w3e4r 1qaz2wsx zaq12wsx asdfghjk asdf1234 abcd1234 abc12345 abcdefgh
iloveyou iloveyou1 sunshine sunshine1 princess princess1 football football1 baseball baseball1
welcome1 welcome123 admin123 administrator letmein1 letmein123 trustno1 monkey123 superman
superman1 starwars starwars1 dragon123 master123 changeme changeme1 whatever computer internet
michael1 jennifer jordan23 shadow12 freedom1 secret123 qazwsxedc
""".split())


DEADLOCK_ATTEMPTS = 3
P = ParamSpec("P")
R = TypeVar("R")


def id_str(value: int | None) -> str | None:
    """An id as it goes out in JSON."""
    return None if value is None else str(value)


# ---------------------------------------------------------------- shapes


class RegisterRequest(Struct):
    username: Annotated[str, Meta(min_length=1, max_length=30)]
    email: Annotated[str, Meta(min_length=3, max_length=254)]
    password: Annotated[str, Meta(min_length=8, max_length=1024)]
    full_name: Annotated[str, Meta(max_length=64)] = ""


class UserOut(Struct):
    id: str
    username: str
    full_name: str
    bio: str
    website: str
    avatar_media_id: str | None
    avatar_url: Annotated[str | None, Meta(description=AVATAR_URL_DOC)]
    is_private: bool
    is_verified: bool
    posts_count: int
    followers_count: int
    following_count: int
    created_at: datetime


class MeOut(UserOut):
    email: str
    show_presence: bool
    role: Literal["user", "moderator", "admin"]


class ProfileOut(UserOut):
    relationship: graph.Relationship


class UserSummary(Struct):
    id: str
    username: str
    full_name: str
    avatar_media_id: str | None
    is_private: bool
    is_verified: bool
    avatar_url: Annotated[str | None, Meta(description=AVATAR_URL_DOC)] = None


def _user_fields(links: MediaLinks, row: asyncpg.Record) -> dict:
    """A profile's fields from a row of storage.users.PROFILE_COLUMNS."""
    return dict(
        id=str(row["id"]), username=row["username"], full_name=row["full_name"], bio=row["bio"],
        website=row["website"], avatar_media_id=id_str(row["avatar_media_id"]),
        avatar_url=links.avatar(row["avatar_key"]), is_private=row["is_private"],
        is_verified=row["is_verified"], posts_count=row["posts_count"], followers_count=row["followers_count"],
        following_count=row["following_count"], created_at=row["created_at"],
    )


def user_out(links: MediaLinks, row: asyncpg.Record) -> UserOut:
    """The public shape of a user row."""
    return UserOut(**_user_fields(links, row))


def me_out(links: MediaLinks, row: asyncpg.Record) -> MeOut:
    """The viewer's own profile, with the private fields."""
    return MeOut(**_user_fields(links, row), email=row["email"], show_presence=row["show_presence"], role=row["role"])


def user_summary(links: MediaLinks, row: asyncpg.Record) -> UserSummary:
    """A user as an item of a list (a row of storage.graph.SUMMARY_COLUMNS)."""
    return UserSummary(id=str(row["id"]), username=row["username"], full_name=row["full_name"],
                       avatar_media_id=id_str(row["avatar_media_id"]), is_private=row["is_private"],
                       is_verified=row["is_verified"], avatar_url=links.avatar(row["avatar_key"]))


def retry_on_deadlock(write: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Run a write again when PostgreSQL aborts it to break a deadlock with some other feature's
    transaction (its own rolled back, so nothing is half done); graph writes lock in id order, so
    among themselves this does not happen."""
    @wraps(write)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(DEADLOCK_ATTEMPTS):
            try:
                return await write(*args, **kwargs)
            except asyncpg.DeadlockDetectedError:
                if attempt == DEADLOCK_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")
    return run


def fail(fields: dict[str, str]) -> None:
    """Raise one 400 naming every failed field, if any failed."""
    if fields:
        raise ValidationFailed("; ".join(f"{k}: {v}" for k, v in fields.items()), fields=fields)


# ---------------------------------------------------------------- registration


def check_registration(body: RegisterRequest) -> None:
    """The rules a new account's fields must meet; each failure names its field."""
    fields: dict[str, str] = {}
    if not USERNAME.match(body.username):
        fields["username"] = "Use 1-30 letters, digits, '.' and '_', with a letter or digit, and no '.' first, last or twice in a row."
    if not EMAIL.match(body.email):
        fields["email"] = "Enter a valid e-mail address."
    problem = password_problem(body.username, body.password)
    if problem:
        fields["password"] = problem
    fail(fields)


def password_problem(username: str, password: str) -> str | None:
    """Why a new password (of at least 8 characters) may not be used, if it may not."""
    if password.lower() == username.lower():
        return "The password may not be the username."
    if password.lower() in COMMON_PASSWORDS:
        return "This password is too common."
    return None


async def send_verification(sink: email.EmailSink, public_url: str, address: str, token: str) -> None:
    """Mail the verification token (after commit); a failing sink is logged, the account stays."""
    message = email.Email(
        to=address, subject="Verify your e-mail address for glint",
        body=(f"Your verification token: {token}\n\nOpen {public_url.rstrip('/')}/verify?token={token}"
              f" or send it to POST /api/accounts/verify-email/ as {{\"token\": ...}}."),
    )
    try:
        await sink.send(message)
    except Exception:  # SMTP down must not turn a created account into an error
        log.exception("could not send the verification e-mail")


async def create_account(pool: asyncpg.Pool, sink: email.EmailSink, config: Config,
                         body: RegisterRequest) -> asyncpg.Record:
    """Create the user, its verification token and the user_registered event in one transaction,
    then mail the token; a taken username or e-mail is 409."""
    password_hash = await hash_password(body.password)
    token = tokens.new_token()
    async with pool.acquire() as conn:
        try:
            async with conn.transaction():
                row = await users.create_user_txn(conn, body.username, body.email, password_hash, body.full_name)
                await users.add_email_verification_txn(conn, row["id"], row["email"], tokens.hash_token(token),
                                                       config.email.verification_ttl)
                await outbox.add(conn, events.UserRegistered(user_id=str(row["id"]), username=row["username"]), row["id"])
        except asyncpg.UniqueViolationError as exc:
            field = "email" if "email" in (exc.constraint_name or "") else "username"
            raise Conflict(f"This {field} is taken.", fields={field: "Already taken."}) from None
    await send_verification(sink, config.server.public_url, row["email"], token)
    return row


@routes.route("POST", "/api/accounts/users/register/", body=RegisterRequest, response=UserOut, status=201, auth=False)
async def register(request: web.Request) -> web.Response:
    """Create an account and mail it an e-mail verification token."""
    body = await read_json(request, RegisterRequest)
    check_registration(body)
    await check_address_limit(request, "registration")
    row = await create_account(request.app[pool_key], request.app[email_sink_key], request.app[config_key], body)
    return json_response(user_out(media_links(request), row), status=201)


class VerifyEmailRequest(Struct):
    token: Annotated[str, Meta(min_length=1, max_length=512)]


@routes.route("POST", "/api/accounts/verify-email/", body=VerifyEmailRequest, response=UserOut, auth=False)
async def verify_email(request: web.Request) -> web.Response:
    """Spend an e-mail verification token: the account becomes verified."""
    body = await read_json(request, VerifyEmailRequest)
    async with request.app[pool_key].acquire() as conn, conn.transaction():
        row = await users.verify_email_txn(conn, tokens.hash_token(body.token))
    if row is None:
        raise ValidationFailed("token: invalid or expired.", fields={"token": "Invalid or expired."})
    return json_response(user_out(media_links(request), row))


# ---------------------------------------------------------------- the viewer's own account


async def viewer_row(request: web.Request) -> asyncpg.Record:
    """The authenticated viewer's user row."""
    row = await users.get_user(request.app[pool_key], current_user(request))
    if row is None:
        raise NotFound()
    return row


@routes.route("GET", "/api/accounts/users/me/", response=MeOut)
async def get_me(request: web.Request) -> web.Response:
    """The viewer's own profile."""
    row = await viewer_row(request)
    return json_response(me_out(media_links(request), row))


class MePatch(Struct):
    full_name: Annotated[str, Meta(max_length=64)] | UnsetType = UNSET
    bio: Annotated[str, Meta(max_length=150)] | UnsetType = UNSET
    website: Annotated[str, Meta(max_length=200, description="http(s) URL, or empty")] | UnsetType = UNSET
    avatar_media_id: Annotated[str, Meta(max_length=20)] | None | UnsetType = UNSET


def check_website(url: str) -> bool:
    """An absolute http(s) URL with a host and no whitespace (or empty, which clears it)."""
    if url == "":
        return True
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not re.search(r"\s", url)


async def update_profile(pool: asyncpg.Pool, user_id: int, body: MePatch) -> asyncpg.Record:
    """Apply a profile edit; an avatar must be a media row the user owns."""
    fields: dict[str, str] = {}
    if body.website is not UNSET and not check_website(body.website):
        fields["website"] = "Enter an http(s) URL."
    avatar_id = None
    if isinstance(body.avatar_media_id, str):
        try:
            avatar_id = parse_id(body.avatar_media_id, "avatar_media_id")
        except ValidationFailed:
            fields["avatar_media_id"] = "Must be an id."
    fail(fields)
    async with pool.acquire() as conn, conn.transaction():
        if avatar_id is not None and not await users.attach_own_media_txn(conn, user_id, avatar_id):
            raise ValidationFailed("avatar_media_id: unknown media.", fields={"avatar_media_id": "Unknown media."})
        row = await users.update_profile_txn(
            conn, user_id,
            full_name=None if body.full_name is UNSET else body.full_name,
            bio=None if body.bio is UNSET else body.bio,
            website=None if body.website is UNSET else body.website,
            set_avatar=body.avatar_media_id is not UNSET, avatar_media_id=avatar_id,
        )
        # the search index (and any other reader of profiles) follows the edit
        await outbox.add(conn, events.UserUpdated(user_id=str(user_id)), user_id)
        return row


@routes.route("PATCH", "/api/accounts/users/me/", body=MePatch, response=MeOut)
async def patch_me(request: web.Request) -> web.Response:
    """Edit the viewer's profile: full_name, bio, website, avatar_media_id (null removes it)."""
    user_id = current_user(request)
    body = await read_json(request, MePatch)
    row = await update_profile(request.app[pool_key], user_id, body)
    if body.full_name is not UNSET or body.avatar_media_id is not UNSET:
        # each cached post holds its author's name and avatar
        await posts.forget_authored(request.app[pool_key], request.app[redis_key], user_id)
    return json_response(me_out(media_links(request), row))


class PasswordRequest(Struct):
    password: Annotated[str, Meta(min_length=1, max_length=1024)]


async def deactivate_account(app: web.Application, user_id: int, password: str) -> None:
    """Deactivate after the password is confirmed: refresh tokens revoked, and (after commit) every
    access token refused and every socket closed at once."""
    pool = app[pool_key]
    row = await users.get_user(pool, user_id)
    if row is None or not await verify_password(row["password_hash"], password):
        raise ValidationFailed("password: incorrect.", fields={"password": "Incorrect password."})
    async with pool.acquire() as conn, conn.transaction():
        await users.deactivate_txn(conn, user_id)
        await tokens.revoke_all_for_user(conn, user_id)
        await outbox.add(conn, events.UserDeactivated(user_id=str(user_id)), user_id)
    await refuse_account(app, user_id, b"account deactivated")


@routes.route("POST", "/api/accounts/users/me/deactivate/", body=PasswordRequest, status=204)
async def deactivate(request: web.Request) -> web.Response:
    """Deactivate the viewer's account (confirm with the password); its tokens stop working at once."""
    user_id = current_user(request)
    body = await read_json(request, PasswordRequest)
    await deactivate_account(request.app, user_id, body.password)
    return no_content()


# ---------------------------------------------------------------- settings

class SettingsOut(Struct):
    is_private: bool
    show_presence: bool
    notifications: dict[str, dict[str, bool]]


class SettingsPatch(Struct):
    is_private: bool | UnsetType = UNSET
    show_presence: bool | UnsetType = UNSET
    notifications: Annotated[dict[str, dict[str, bool]], Meta(
        description="{kind: {channel: on}}; kinds: " + ", ".join(users.NOTIFICATION_KINDS)
        + "; channels: " + ", ".join(users.NOTIFICATION_CHANNELS))] | UnsetType = UNSET


def settings_out(row: asyncpg.Record) -> SettingsOut:
    """Settings with the notification table filled in from the defaults."""
    return SettingsOut(is_private=row["is_private"], show_presence=row["show_presence"],
                       notifications=users.merge_notification_prefs(row["notification_prefs"]))


@retry_on_deadlock
async def update_settings(pool: asyncpg.Pool, user_id: int, body: SettingsPatch) -> asyncpg.Record:
    """Apply a settings change; turning an account public approves its pending follow requests."""
    if body.notifications is not UNSET:
        unknown = [kind for kind in body.notifications if kind not in users.NOTIFICATION_KINDS] + [
            f"{kind}.{channel}" for kind, channels in body.notifications.items() for channel in channels
            if channel not in users.NOTIFICATION_CHANNELS]
        if unknown:
            fail({"notifications": f"Unknown kind or channel: {', '.join(unknown)}."})
    async with pool.acquire() as conn, conn.transaction():
        if body.is_private is False:  # the requesters' counters change too: lock them with the owner
            await graph.lock_users_txn(conn, [user_id, *await graph.pending_requesters(conn, user_id)])
        current = await users.get_settings_for_update_txn(conn, user_id)
        prefs = dict(current["notification_prefs"] or {})
        if body.notifications is not UNSET:
            for kind, channels in body.notifications.items():
                prefs[kind] = {**prefs.get(kind, {}), **channels}
        row = await users.update_settings_txn(
            conn, user_id, is_private=None if body.is_private is UNSET else body.is_private,
            show_presence=None if body.show_presence is UNSET else body.show_presence, notification_prefs=prefs,
        )
        if current["is_private"] and not row["is_private"]:
            for requester in await graph.approve_all_requests_txn(conn, user_id):
                await outbox.add(conn, events.FollowRequestApproved(requester_id=str(requester), target_id=str(user_id)),
                                 requester)
    return row


@routes.route("GET", "/api/accounts/settings/", response=SettingsOut)
async def get_settings(request: web.Request) -> web.Response:
    """The viewer's settings: is_private, show_presence, notifications[kind][channel]."""
    row = await viewer_row(request)
    return json_response(settings_out(row))


@routes.route("PATCH", "/api/accounts/settings/", body=SettingsPatch, response=SettingsOut)
async def patch_settings(request: web.Request) -> web.Response:
    """Change settings; going public approves the pending follow requests."""
    user_id = current_user(request)
    body = await read_json(request, SettingsPatch)
    return json_response(settings_out(await update_settings(request.app[pool_key], user_id, body)))


# ---------------------------------------------------------------- other users


@routes.route("GET", "/api/accounts/users/", response=Page[UserSummary],
              query={"q": "username or full-name prefix", "limit": "1..100", "cursor": "from `next`"})
async def list_users(request: web.Request) -> web.Response:
    """Users by username, optionally those whose username or name starts with ?q=."""
    viewer = current_user(request)
    page = page_request(request)
    after = decode_cursor(page.cursor, str)
    q = request.query.get("q", "").strip()
    if len(q) > 64:
        raise ValidationFailed("q: at most 64 characters.", fields={"q": "At most 64 characters."})
    rows = await users.search_users(await read_pool(request), viewer, q or None, after[0] if after else None, page.limit)
    result = make_page(request, rows, page.limit, lambda r: encode_cursor(r["sort_key"]))
    return json_response(Page(results=[user_summary(media_links(request), r) for r in result.results], next=result.next))


@routes.route("GET", "/api/accounts/users/{id}/", sees="shown", response=ProfileOut)
async def get_profile(request: web.Request) -> web.Response:
    """A user's profile with counts and the viewer's relationship; 404 if either blocks the other."""
    viewer = current_user(request)
    user_id = path_id(request)
    pool = await read_pool(request)
    row = await users.get_profile(pool, user_id, viewer)
    if row is None or not await visibility.may_be_shown(pool, viewer, user_id):
        raise NotFound()
    return json_response(ProfileOut(**_user_fields(media_links(request), row), relationship=graph.relationship_of(row)))
