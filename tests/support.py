"""Helpers the tests share: making users and logging them in through the real API."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

_names = itertools.count(1)
PASSWORD = "correct horse battery"


async def register(client, username: str | None = None, password: str = "correct horse battery", **extra) -> dict:
    """Register a user through the API; returns the created user's JSON."""
    username = username or f"user{next(_names)}"
    body = {"username": username, "email": f"{username}@example.com", "password": password, **extra}
    response = await client.post("/api/accounts/users/register/", json=body)
    assert response.status == 201, await response.text()
    return await response.json()


async def login(client, username: str, password: str = "correct horse battery") -> dict:
    """Log in; returns {access, refresh}."""
    response = await client.post("/api/token/", json={"username": username, "password": password})
    assert response.status == 200, await response.text()
    return await response.json()


async def user_with_token(client, username: str | None = None, **extra) -> tuple[dict, dict[str, str]]:
    """A new user and the Authorization header of a fresh login."""
    user = await register(client, username, **extra)
    tokens = await login(client, user["username"])
    return user, {"Authorization": f"Bearer {tokens['access']}"}


class Clock:
    """The app's clock in tests: time moves only when the test says so."""

    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)
