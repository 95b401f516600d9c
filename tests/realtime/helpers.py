"""What the realtime tests share: users with tokens, sockets, and reading frames by type."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.support import login, register


async def user_and_token(client, **extra) -> tuple[dict, str]:
    """A new user and a fresh access token."""
    user = await register(client, **extra)
    tokens = await login(client, user["username"])
    return user, tokens["access"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def open_socket(session_or_client, token: str, base: str = ""):
    """A websocket to /ws, past its hello frame."""
    ws = await session_or_client.ws_connect(f"{base}/ws?token={token}")
    hello = await next_frame(ws)
    assert hello["type"] == "hello", hello
    return ws


async def next_frame(ws, timeout: float = 10.0) -> dict[str, Any]:
    """The next JSON frame."""
    msg = await asyncio.wait_for(ws.receive(), timeout)
    assert msg.data is not None and isinstance(msg.data, (str, bytes)), msg
    return json.loads(msg.data)


async def frame_of(ws, type_: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
    """Read frames until one of this type (and matching fields) arrives; others are skipped."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        frame = await next_frame(ws, max(deadline - loop.time(), 0.01))
        if frame["type"] == type_ and all(frame.get(k) == v for k, v in match.items()):
            return frame


async def start_conversation(client, token: str, *member_ids: str, title: str = "") -> dict:
    response = await client.post("/api/conversations/", json={"member_ids": list(member_ids), "title": title},
                                 headers=bearer(token))
    assert response.status in (200, 201), await response.text()
    return await response.json()
