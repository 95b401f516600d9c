"""Accounts: registration and the viewer's own profile."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

import asyncpg
from aiohttp import web
from msgspec import Meta

from handlers.auth import check_address_limit, current_user, hash_password
from handlers.common import Conflict, NotFound, Routes, Struct, ValidationFailed, json_response, read_json
from handlers.context import pool_key
from storage import users

routes = Routes("accounts")

USERNAME = re.compile(r"^[A-Za-z0-9._]{1,30}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
COMMON_PASSWORDS = frozenset("""
password password1 password12 password123 12345678 123456789 1234567890 qwerty123 qwertyuiop
iloveyou sunshine1 princess1 football1 baseball1 welcome1 admin123 letmein1 trustno1 monkey123
abc12345 11111111 00000000 87654321 passw0rd superman1 starwars1 dragon123 master123 changeme
""".split())


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
    is_private: bool
    is_verified: bool
    posts_count: int
    followers_count: int
    following_count: int
    created_at: datetime


def user_out(row: asyncpg.Record) -> UserOut:
    """The public shape of a user row."""
    return UserOut(
        id=str(row["id"]), username=row["username"], full_name=row["full_name"], bio=row["bio"],
        website=row["website"], is_private=row["is_private"], is_verified=row["is_verified"],
        posts_count=row["posts_count"], followers_count=row["followers_count"],
        following_count=row["following_count"], created_at=row["created_at"],
    )


def check_registration(body: RegisterRequest) -> None:
    """The rules a new account's fields must meet; each failure names its field."""
    fields: dict[str, str] = {}
    if not USERNAME.match(body.username):
        fields["username"] = "Use 1-30 letters, digits, '.' and '_'."
    if not EMAIL.match(body.email):
        fields["email"] = "Enter a valid e-mail address."
    if body.password.lower() == body.username.lower():
        fields["password"] = "The password may not be the username."
    elif body.password.lower() in COMMON_PASSWORDS:
        fields["password"] = "This password is too common."
    if fields:
        raise ValidationFailed("; ".join(f"{k}: {v}" for k, v in fields.items()), fields=fields)


@routes.route("POST", "/api/accounts/users/register/", body=RegisterRequest, response=UserOut, status=201, auth=False)
async def register(request: web.Request) -> web.Response:
    """Create an account."""
    body = await read_json(request, RegisterRequest)
    check_registration(body)
    await check_address_limit(request, "registration")
    password_hash = await hash_password(body.password)
    async with request.app[pool_key].acquire() as conn:
        try:
            async with conn.transaction():
                row = await users.create_user_txn(conn, body.username, body.email, password_hash, body.full_name)
        except asyncpg.UniqueViolationError as exc:
            field = "email" if "email" in (exc.constraint_name or "") else "username"
            raise Conflict(f"This {field} is taken.", fields={field: "Already taken."}) from None
    return json_response(user_out(row), status=201)


@routes.route("GET", "/api/accounts/users/me/", response=UserOut)
async def get_me(request: web.Request) -> web.Response:
    """The viewer's own profile."""
    row = await users.get_user(request.app[pool_key], current_user(request))
    if row is None:
        raise NotFound()
    return json_response(user_out(row))
