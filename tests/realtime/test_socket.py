"""The socket itself: authentication, hello, ping/pong, bad frames, frame size, idle timeout, and
4401 when the token expires or the session is revoked while connected."""

from __future__ import annotations

import time

import aiohttp
import jwt
from aiohttp import WSMsgType

from app.main import create_app
from handlers.auth import make_access_token
from realtime.gateway import gateway_key
from storage.tokens import mark_session_revoked
from tests.conftest import make_config, wait_for
from tests.support import bearer, frame_of, next_frame, open_socket, user_and_token


async def test_no_token_or_an_expired_token_is_refused_before_the_upgrade(client, config):
    user, token = await user_and_token(client)
    response = await client.get("/ws")
    assert response.status == 401
    sid = jwt.decode(token, options={"verify_signature": False})["sid"]
    expired = make_access_token(config.auth.jwt_secret, int(user["id"]), int(sid), -10)
    response = await client.get(f"/ws?token={expired}")
    assert response.status == 401 and (await response.json())["error"]["code"] == "token_expired"


async def test_hello_names_the_user_and_the_header_works_too(client):
    user, token = await user_and_token(client)
    ws = await client.ws_connect("/ws", headers=bearer(token))
    hello = await next_frame(ws)
    assert hello["type"] == "hello" and hello["user_id"] == user["id"] and hello["session_id"]
    await ws.send_json({"type": "ping", "ref": "p1"})
    assert await next_frame(ws) == {"type": "pong", "ref": "p1"}


async def test_bad_frames_get_error_frames_and_the_socket_stays_open(client):
    _, token = await user_and_token(client)
    ws = await open_socket(client, token)
    cases = [
        (b"{not json", "malformed_json", None),
        (b'{"type": "nope", "ref": 7}', "unknown_type", 7),
        (b'{"ref": "r"}', "unknown_type", "r"),
        (b'{"type": "message.send", "ref": 3, "client_id": "x"}', "invalid_frame", 3),
        (b'{"type": "message.send", "ref": 4, "conversation_id": "abc", "client_id": "x"}', "invalid_frame", 4),
        (b'{"type": "message.send", "ref": 5, "conversation_id": "1", "client_id": "x", "text": "hi"}', "not_found", 5),
        (b'{"type": "message.send", "ref": 6, "conversation_id": "1", "client_id": "x"}', "validation_error", 6),
        (b'{"type": "sync", "conversations": []}', "invalid_frame", None),
        (b'[1, 2]', "invalid_frame", None),
    ]
    for data, code, ref in cases:
        await ws.send_str(data.decode())
        frame = await next_frame(ws)
        assert frame["type"] == "error" and frame["code"] == code and frame["ref"] == ref, (data, frame)
    await ws.send_bytes(b"\x00\x01")
    assert (await next_frame(ws))["code"] == "text_only"
    # in the plain words REST's field errors use, naming the field
    for data, message in [
        ('{"type": "message.send", "conversation_id": "abc", "client_id": "x"}', "conversation_id: Not in the form expected."),
        ('{"type": "message.send", "client_id": "x"}', "conversation_id: This field is required."),
        ('{"type": "typing", "conversation_id": 5}', "conversation_id: Text expected."),
        ("[1, 2]", "An object expected."),
    ]:
        await ws.send_str(data)
        assert (await next_frame(ws))["message"] == message, data
    await ws.send_json({"type": "ping"})
    assert (await next_frame(ws))["type"] == "pong"
    assert not ws.closed


async def test_a_frame_over_the_size_limit_closes_with_1009(aiohttp_client, stack_env, config):
    client = await aiohttp_client(create_app(make_config(stack_env, database_url=config.database.url,
                                                         ws_max_frame_bytes=1024)))
    _, token = await user_and_token(client)
    ws = await open_socket(client, token)
    await ws.send_str('{"type": "ping", "ref": "' + "x" * 2000 + '"}')
    msg = await ws.receive()
    assert msg.type == WSMsgType.CLOSE and msg.data == 1009


async def test_an_idle_socket_is_closed_with_4000(aiohttp_client, stack_env, config):
    client = await aiohttp_client(create_app(make_config(stack_env, database_url=config.database.url,
                                                         ws_idle_timeout=0.3, ws_heartbeat=60)))
    _, token = await user_and_token(client)
    ws = await client.ws_connect(f"/ws?token={token}", autoping=False)
    assert (await next_frame(ws))["type"] == "hello"
    msg = await ws.receive(timeout=5)
    assert msg.type == WSMsgType.CLOSE and msg.data == 4000


async def test_a_token_that_expires_while_connected_closes_with_4401(client, config):
    user, token = await user_and_token(client)
    sid = jwt.decode(token, options={"verify_signature": False})["sid"]
    short = make_access_token(config.auth.jwt_secret, int(user["id"]), int(sid), 1)
    ws = await open_socket(client, short)
    gateway = client.app[gateway_key]

    async def swept_away() -> bool:
        await gateway.check_connections()
        return gateway.connection_count() == 0

    await wait_for(swept_away, timeout=5, interval=0.2)
    assert time.time() >= jwt.decode(short, options={"verify_signature": False})["exp"]
    msg = await ws.receive(timeout=5)
    assert msg.type == WSMsgType.CLOSE and msg.data == 4401


async def test_a_session_revoked_while_connected_closes_with_4401(client, config, redis_clean):
    user, token = await user_and_token(client)
    ws = await open_socket(client, token)
    other_user, other_token = await user_and_token(client)
    other = await open_socket(client, other_token)
    sid = int(jwt.decode(token, options={"verify_signature": False})["sid"])
    await mark_session_revoked(redis_clean, int(user["id"]), sid, 60)
    await client.app[gateway_key].check_connections()
    msg = await ws.receive(timeout=5)
    assert msg.type == WSMsgType.CLOSE and msg.data == 4401
    await other.send_json({"type": "ping"})
    assert (await frame_of(other, "pong"))["type"] == "pong"


async def test_shutdown_closes_sockets_with_going_away(aiohttp_client, stack_env, config):
    client = await aiohttp_client(create_app(make_config(stack_env, database_url=config.database.url)))
    _, token = await user_and_token(client)
    ws = await open_socket(client, token)
    await client.server.close()
    msg = await ws.receive(timeout=5)
    assert msg.type == WSMsgType.CLOSE and msg.data == aiohttp.WSCloseCode.GOING_AWAY


def test_every_client_frame_but_ping_has_one_rule():
    """Each client frame's rule is registered beside its REST twin (handlers/messages.py) or with the
    socket-only ones (handlers/socket.py); the gateway answers a ping itself."""
    import typing

    from handlers.socket import FRAME_RULES
    from realtime import frames

    kinds = set(typing.get_args(frames.AnyClientFrame))
    assert kinds - set(FRAME_RULES) == {frames.Ping}
    assert set(FRAME_RULES) <= kinds
