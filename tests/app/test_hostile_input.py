"""Every input bounded at the edge: ids past 64 bits, unbounded seqs, forged cursors, NUL and
invalid UTF-8 in bodies, URLs and headers, the same in websocket frames, and the frame rate limit
that shares the REST budget. Each is a 400 (or an `error` frame), never a 500."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import struct

import aiohttp
from aiohttp import WSMsgType, web

from app.main import create_app
from tests.conftest import make_config
from tests.support import (
    bearer, frame_of, new_media, new_post, next_frame, open_socket, start_conversation, user_and_token,
)

TOO_BIG = "9999999999999999999"


def cursor(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


async def assert_400(response) -> dict:
    assert response.status == 400, (response.status, await response.text())
    assert response.content_type == "application/json"
    return (await response.json())["error"]


async def test_ids_past_64_bits_and_unbounded_seqs_are_400(client, pool):
    (ana, token), (bob, _) = await user_and_token(client), await user_and_token(client)
    h = bearer(token)
    conv = await start_conversation(client, token, bob["id"])
    await assert_400(await client.post("/api/conversations/", json={"member_ids": [TOO_BIG]}, headers=h))
    await assert_400(await client.post("/api/posts/", json={"media_ids": [TOO_BIG]}, headers=h))
    await assert_400(await client.post("/api/posts/", json={"media_ids": [2**63]}, headers=h))
    await assert_400(await client.put("/api/accounts/close-friends/", json={"user_ids": [TOO_BIG]}, headers=h))
    await assert_400(await client.post("/api/comments/", json={"post_id": 2**63, "text": "x"}, headers=h))
    await assert_400(await client.post(f"/api/conversations/{conv['id']}/read/",
                                       json={"seq": 7300463592413581402963968}, headers=h))
    await assert_400(await client.post(f"/api/conversations/{conv['id']}/messages/",
                                       json={"client_id": "x", "text": "x", "reply_to_seq": 2**63}, headers=h))
    for bad in ("²", "١٢"):
        await assert_400(await client.get(f"/api/conversations/{conv['id']}/messages/",
                                          params={"before_seq": bad}, headers=h))
    await assert_400(await client.get("/api/comments/", params={"post_id": "١٢"}, headers=h))
    assert await pool.fetchval("SELECT count(*) FROM messages") == 0


async def test_forged_cursors_are_400_on_every_list_route(client):
    (ana, token), (bob, _) = await user_and_token(client), await user_and_token(client)
    h = bearer(token)
    post = await new_post(client, h, "x")
    routes = ["/api/posts/", "/api/posts/saved/", "/api/posts/feed/", "/api/posts/explore/",
              f"/api/posts/{post['id']}/likes/", f"/api/comments/?post_id={post['id']}", "/api/accounts/users/",
              f"/api/accounts/users/{ana['id']}/followers/", "/api/accounts/blocks/", "/api/notifications/",
              "/api/conversations/", "/api/stories/feed/", "/api/stories/archive/", "/api/accounts/close-friends/",
              "/api/search/posts/?q=x", "/api/search/users/?q=x"]
    for forged in ([True], [2**64], [-1], ["x" * 300], [None, None], {"a": 1}, ["\u0000", 1], [1.5e308 * 10]):
        for route in routes:
            sep = "&" if "?" in route else "?"
            response = await client.get(f"{route}{sep}cursor={cursor(forged)}", headers=h)
            assert response.status == 400, (route, forged, response.status, await response.text())
    assert (await client.get(f"/api/posts/?cursor={'A' * 5000}", headers=h)).status == 400


async def test_a_limit_is_plain_digits_on_every_list_route(client):
    _, token = await user_and_token(client)
    routes = ["/api/posts/feed/", "/api/accounts/users/", "/api/notifications/", "/api/stories/feed/",
              "/api/accounts/blocks/", "/api/search/users/?q=x"]
    for limit in ("٣", "５", " 5", "5 ", "+5", "1_0", "-0", "1" * 5000):
        for route in routes:
            sep = "&" if "?" in route else "?"
            response = await client.get(f"{route}{sep}limit={limit}", headers=bearer(token))
            assert response.status == 400, (route, limit, response.status)
            assert (await response.json())["error"]["fields"] == {"limit": "Must be a number."}
    assert (await client.get("/api/posts/feed/?limit=05", headers=bearer(token))).status == 200


async def test_nul_and_invalid_utf8_are_400_before_any_store(client, pool):
    _, token = await user_and_token(client)
    h = bearer(token)
    media = await new_media(client, h)
    error = await assert_400(await client.post("/api/posts/", json={"caption": "a\u0000b", "media_ids": media},
                                               headers=h))
    assert error["code"] == "invalid_text"
    raw = b'{"caption": "caf\xe9", "media_ids": ["%s"]}' % media[0].encode()
    await assert_400(await client.post("/api/posts/", data=raw, headers={**h, "Content-Type": "application/json"}))
    await assert_400(await client.patch("/api/accounts/users/me/", json={"full_name": "x\u0000"}, headers=h))
    for q in ("a\u0000", "%ff%fe"):
        url = "/api/search/posts/?q=" + (q if "%" in q else "a%00")
        await assert_400(await client.get(url, headers=h))
    await assert_400(await client.get("/api/accounts/users/?q=%00", headers=h))
    assert await pool.fetchval("SELECT count(*) FROM posts") == 0
    # a literal backslash followed by u0000 is text like any other
    fine = await client.post("/api/posts/", json={"caption": "\\u0000", "media_ids": media}, headers=h)
    assert fine.status == 201


async def test_a_nul_in_a_header_is_a_json_400_that_echoes_nothing(client):
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Probe: secret\x00value\r\n\r\n")
    await writer.drain()
    head, _, body = (await asyncio.wait_for(reader.read(65536), 10)).partition(b"\r\n\r\n")
    writer.close()
    assert head.split(b"\r\n")[0].split()[1] == b"400"
    assert b"application/json" in head.lower()
    assert json.loads(body)["error"]["code"] == "bad_request"
    assert b"secret" not in body


async def test_a_header_past_the_line_limit_is_a_json_400_and_the_log_keeps_none_of_it(client, caplog):
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sekrit" + b"a" * 9000 + b"\r\n\r\n")
    await writer.drain()
    async with asyncio.timeout(30):  # a guard, not a timing
        answer = await reader.read()  # to EOF: the connection is closed after the answer
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].split()[1] == b"400"
    assert json.loads(body)["error"]["code"] == "bad_request"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "sekrit" not in caplog.text and all(not r.exc_info for r in caplog.records)


async def test_hostile_frames_get_error_frames_and_the_socket_stays_open(client, pool):
    (ana, token), (bob, _) = await user_and_token(client), await user_and_token(client)
    conv = await start_conversation(client, token, bob["id"])
    ws = await open_socket(client, token)
    await ws.send_frame(b'{"type": "ping", "ref": "\xff"}', WSMsgType.TEXT)
    assert (await frame_of(ws, "error"))["code"] == "invalid_text"
    hostile = [
        {"type": "message.send", "conversation_id": TOO_BIG, "client_id": "a", "text": "x", "ref": 1},
        {"type": "message.send", "conversation_id": conv["id"], "client_id": "b", "text": "x\u0000", "ref": 2},
        {"type": "message.send", "conversation_id": conv["id"], "client_id": "c", "text": "x",
         "reply_to_seq": 2**63, "ref": 3},
        {"type": "message.read", "conversation_id": conv["id"], "seq": 10**30, "ref": 4},
        {"type": "typing", "conversation_id": TOO_BIG, "ref": 5},
        {"type": "presence.subscribe", "user_ids": [TOO_BIG], "ref": 6},
        {"type": "sync", "conversations": {TOO_BIG: 1}, "ref": 7},
        {"type": "message.delete", "conversation_id": conv["id"], "seq": 2**63, "ref": 8},
    ]
    for frame in hostile:
        await ws.send_json(frame)
        error = await frame_of(ws, "error")
        assert error["ref"] == frame["ref"] and error["code"] != "internal_error", error
    # nested past the decoder's depth, in the ref or as the whole frame: an error frame, not a dead socket
    for deep in ('{"type": "ping", "ref": ' + "[" * 1000 + "]" * 1000 + "}", "[" * 10000, '{"a":' * 5000):
        await ws.send_str(deep)
        assert (await frame_of(ws, "error"))["code"] in ("malformed_json", "invalid_frame")
    await ws.send_json({"type": "ping", "ref": "alive"})
    assert (await frame_of(ws, "pong"))["ref"] == "alive"
    assert await pool.fetchval("SELECT count(*) FROM messages") == 0


async def test_websocket_frames_share_the_rest_request_budget(aiohttp_client, stack_env, config):
    client = await aiohttp_client(create_app(make_config(stack_env, database_url=config.database.url,
                                                         rate_limit_per_hour=6)))
    _, token = await user_and_token(client)
    ws = await open_socket(client, token)  # the upgrade request is the first of six
    for ref in range(8):
        await ws.send_json({"type": "sync", "conversations": {}, "ref": ref})
    answers = []
    while len(answers) < 8:
        frame = await next_frame(ws)
        if frame["type"] in ("sync.done", "error"):
            answers.append(frame)
    assert sorted(a["type"] for a in answers) == ["error"] * 3 + ["sync.done"] * 5
    assert {a["code"] for a in answers if a["type"] == "error"} == {"rate_limited"}
    assert (await client.get("/api/accounts/users/me/", headers=bearer(token))).status == 429
    await ws.send_json({"type": "ping", "ref": "still"})
    assert (await frame_of(ws, "pong"))["ref"] == "still"


async def _raw_exchange(client, head: bytes, body: bytes) -> tuple[bytes, bytes]:
    """Send a request's head and part of its body on a connection of its own; read until the server
    closes it (a guard, not a timing, bounds the wait): the status line and the whole answer."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(head + body)
        await writer.drain()
        async with asyncio.timeout(30):
            answer = await reader.read()  # to EOF: the server closed the connection
    finally:
        writer.close()
    return answer.split(b"\r\n", 1)[0], answer


async def test_a_body_that_stops_arriving_is_408_and_its_connection_closed(aiohttp_client, stack_env, config, pool):
    client = await aiohttp_client(create_app(make_config(stack_env, database_url=config.database.url,
                                                         body_timeout_seconds=0.3)))
    user, token = await user_and_token(client)
    json_head = (b"POST /api/accounts/users/register/ HTTP/1.1\r\nHost: glint\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n")
    status, answer = await _raw_exchange(client, json_head, b'{"username": "slow"')
    assert status == b"HTTP/1.1 408 Request Timeout", answer
    assert b'"code":"request_timeout"' in answer
    upload_head = (b"POST /api/media/ HTTP/1.1\r\nHost: glint\r\nAuthorization: Bearer " + token.encode() +
                   b"\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n")
    part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n\xff\xd8\xff\xe0'
    status, answer = await _raw_exchange(client, upload_head, part)
    assert status == b"HTTP/1.1 408 Request Timeout", answer
    assert await pool.fetchval("SELECT count(*) FROM users WHERE username = 'slow'") == 0
    assert await pool.fetchval("SELECT count(*) FROM media") == 0
    # the server still answers
    assert (await client.get(f"/api/accounts/users/{user['id']}/", headers=bearer(token))).status == 200


async def test_a_body_that_does_not_decode_as_its_content_encoding_is_400_and_the_connection_closed(client, pool,
                                                                                                     caplog):
    _, token = await user_and_token(client)
    for encoding in ("gzip", "deflate"):
        head = (b"POST /api/token/ HTTP/1.1\r\nHost: glint\r\nContent-Type: application/json\r\n"
                b"Content-Encoding: " + encoding.encode() + b"\r\nContent-Length: 5\r\n\r\n")
        status, answer = await _raw_exchange(client, head, b"abcde")
        assert status == b"HTTP/1.1 400 Bad Request", answer
        assert b'"code":"unreadable_body"' in answer and b"Connection: close" in answer
    # the client's fault, answered: not read on after the answer, to log an unhandled exception
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    form = aiohttp.FormData()
    form.add_field("file", b"abcde", filename="a.jpg")
    response = await client.post("/api/media/", data=form(), headers={**bearer(token), "Content-Encoding": "gzip"})
    assert response.status == 400 and (await response.json())["error"]["code"] == "unreadable_body"
    assert await pool.fetchval("SELECT count(*) FROM media") == 0


async def _answer_to_head(client, head: bytes) -> tuple[bytes, tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """Send only a request's head; the first thing the server says (a guard, not a timing, bounds
    the wait), and the open connection."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(head)
    await writer.drain()
    async with asyncio.timeout(30):
        first = await reader.readuntil(b"\r\n\r\n")
    return first, (reader, writer)


async def _rest_of_answer(reader: asyncio.StreamReader, head: bytes) -> tuple[bytes, dict]:
    """The body of an answer whose head was read: its Content-Length of bytes, as JSON."""
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    async with asyncio.timeout(30):
        return head, json.loads(await reader.readexactly(length))


async def test_100_continue_is_sent_only_for_a_body_glint_will_read(client, pool):
    """Expect: 100-continue (RFC 9110 §10.1.1): a declared length past the limit, or an upload
    without a login, is answered at once, and the client never sends the body; a body glint will
    read is asked for with "100 Continue" and then answered."""
    post = b"POST /api/token/ HTTP/1.1\r\nHost: glint\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
    first, (reader, writer) = await _answer_to_head(client, post + b"Content-Length: 1000000000\r\n\r\n")
    _, body = await _rest_of_answer(reader, first)
    assert first.startswith(b"HTTP/1.1 413 ") and body["error"]["code"] == "payload_too_large", first
    async with asyncio.timeout(30):
        assert await reader.read() == b""  # and the connection is closed: the body is never read
    writer.close()

    upload = (b"POST /api/media/ HTTP/1.1\r\nHost: glint\r\nContent-Type: multipart/form-data; boundary=x\r\n"
              b"Expect: 100-continue\r\nContent-Length: 5000\r\n\r\n")
    first, (reader, writer) = await _answer_to_head(client, upload)
    _, body = await _rest_of_answer(reader, first)
    assert first.startswith(b"HTTP/1.1 401 ") and body["error"]["code"] == "not_authenticated", first
    # the body was never asked for, so the connection ends: a request sent next on it is not read as that body
    assert b"\r\nConnection: close\r\n" in first
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: glint\r\n\r\n")
    async with asyncio.timeout(30):
        assert await reader.read() == b""
    writer.close()

    login = b'{"username": "nobody", "password": "not this one"}'
    first, (reader, writer) = await _answer_to_head(client, post + b"Content-Length: %d\r\n\r\n" % len(login))
    assert first == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(login)
    async with asyncio.timeout(30):
        head = await reader.readuntil(b"\r\n\r\n")
    _, body = await _rest_of_answer(reader, head)
    assert head.startswith(b"HTTP/1.1 401 ") and body["error"]["code"] == "not_authenticated", head
    writer.close()


async def test_an_unknown_expectation_is_ignored_not_a_plain_text_417(client):
    response = await client.post("/api/token/", data=b"{}", headers={"Content-Type": "application/json",
                                                                      "Expect": "a-pony"})
    assert response.status == 400 and response.content_type == "application/json"
    health = await client.get("/healthz", headers={"Expect": "a-pony"})
    assert health.status == 200


def _counted(text: str, line: str) -> float:
    """A metric's value in /metrics text (0 when absent)."""
    return sum(float(row.rsplit(" ", 1)[1]) for row in text.splitlines() if row.startswith(line))


async def test_a_client_that_hangs_up_is_counted_as_the_clients_not_as_a_store_away(config, caplog):
    """A client reset while glint reads its body (or asks for it): 499 in the metrics and the
    access log, as nginx names it, never a 503 with a store error and an outage warning. Served as
    `glint serve` serves (web.run_app: a handler goes on when its client goes; the test client's
    server cancels it instead)."""
    runner = web.AppRunner(create_app(config), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    gone = 'glint_http_requests_total{method="POST",route="/api/token/",status="499"}'
    unavailable = 'glint_http_requests_total{method="POST",route="/api/token/",status="503"}'
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            async def metrics() -> str:
                async with http.get("/metrics") as response:
                    return await response.text()

            before = await metrics()
            for expect in (True, False):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"POST /api/token/ HTTP/1.1\r\nHost: glint\r\nContent-Type: application/json\r\n"
                             + (b"Expect: 100-continue\r\n" if expect else b"") + b"Content-Length: 20\r\n\r\n{")
                async with asyncio.timeout(30):  # a guard, not a timing: the reset once glint reads the body
                    if expect:
                        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
                    else:
                        while _counted(await metrics(), "glint_http_requests_in_flight") < 2:
                            await asyncio.sleep(0.01)  # this request and the one asking
                writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                                           struct.pack("ii", 1, 0))  # close with a reset
                writer.transport.abort()
            async with asyncio.timeout(30):  # a guard, not a timing
                while _counted(text := await metrics(), gone) < _counted(before, gone) + 2:
                    await asyncio.sleep(0.05)
    finally:
        await runner.cleanup()
    assert _counted(text, unavailable) == _counted(before, unavailable)
    assert _counted(text, "glint_store_errors_total") == _counted(before, "glint_store_errors_total")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "unavailable" in r.getMessage()]
