"""What an accepted socket keeps once aiohttp's handshake is done: no task and no request of its
own while idle (its Connection is the transport's protocol), frames sent right behind the
handshake are answered after hello, and a client's close is answered and detaches it."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import struct

from aiohttp import WSMsgType, web

from realtime.gateway import Connection, gateway_key
from tests.conftest import wait_for
from tests.support import next_frame, open_socket, user_and_token


def socket_tasks(gateway) -> list[asyncio.Task]:
    """The running tasks of the server's side that are not the gateway's own (its sweeper):
    aiohttp's request handling, and the gateway's per socket."""
    return [t for t in asyncio.all_tasks() if not t.done() and t not in gateway._tasks
            and t.get_coro().__qualname__.split(".")[0] in ("RequestHandler", "Gateway", "Connection", "Socket")]


def upgrade_requests() -> list[web.BaseRequest]:
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, web.BaseRequest) and o.path == "/ws"]


async def test_an_idle_socket_keeps_no_task_nor_its_upgrade_request(client):
    sockets = []
    for _ in range(3):
        _, token = await user_and_token(client)
        ws = await open_socket(client, token)
        await ws.send_json({"type": "ping", "ref": "p"})
        assert await next_frame(ws) == {"type": "pong", "ref": "p"}
        sockets.append(ws)
    gateway = client.app[gateway_key]
    await wait_for(lambda: gateway.connection_count() == 3)
    await wait_for(lambda: not socket_tasks(gateway), timeout=5)
    assert not upgrade_requests()
    conns = [c for group in gateway.local.values() for c in group]
    assert all(isinstance(c, Connection) and c.tasks is None and c.writer is None and c.queue is None for c in conns)
    for ws in sockets:
        await ws.close()


def masked(opcode: int, payload: bytes) -> bytes:
    """A client frame (masked), as a browser sends it."""
    mask, n = os.urandom(4), len(payload)
    length = bytes((0x80 | n,)) if n < 126 else bytes((0x80 | 126,)) + struct.pack("!H", n)
    return bytes((0x80 | opcode,)) + length + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_frames(data: bytes) -> list[tuple[int, bytes]]:
    """The server's (unmasked) frames in `data`, as (opcode, payload)."""
    out = []
    while len(data) >= 2:
        n, start = data[1] & 0x7F, 2
        if n == 126:
            n, start = struct.unpack("!H", data[2:4])[0], 4
        if len(data) < start + n:
            break
        out.append((data[0] & 0x0F, data[start:start + n]))
        data = data[start + n:]
    return out


async def test_frames_sent_right_behind_the_handshake_are_answered_after_hello(client):
    user, token = await user_and_token(client)
    raw = socket.socket()
    raw.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(raw, (client.host, client.port))
    upgrade = (f"GET /ws?token={token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
    try:
        # one write: the handshake, a ping frame of the protocol, an app ping and the client's close
        await loop.sock_sendall(raw, upgrade + masked(0x9, b"hi") + masked(0x1, b'{"type": "ping", "ref": 1}')
                                + masked(0x8, struct.pack("!H", 1000)))
        got = b""
        while b"\r\n\r\n" not in got or len(read_frames(got.split(b"\r\n\r\n", 1)[1])) < 4:
            chunk = await asyncio.wait_for(loop.sock_recv(raw, 65536), 10)
            assert chunk, got
            got += chunk
        head, body = got.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101")
        frames = read_frames(body)
        assert frames[0][0] == 0x1 and b'"hello"' in frames[0][1]
        assert frames[1:4] == [(0xA, b"hi"), (0x1, b'{"type":"pong","ref":1}'), (0x8, struct.pack("!H", 1000))]
        gateway = client.app[gateway_key]
        await wait_for(lambda: not list(gateway.connections(int(user["id"]))))
    finally:
        raw.close()


async def test_a_client_close_is_answered_and_the_socket_detached(client):
    user, token = await user_and_token(client)
    ws = await open_socket(client, token)
    gateway = client.app[gateway_key]
    assert len(list(gateway.connections(int(user["id"])))) == 1
    await ws.close(code=4321, message=b"bye")
    assert ws.closed and ws.close_code == 1000
    await wait_for(lambda: not list(gateway.connections(int(user["id"]))))
    assert WSMsgType.CLOSED == (await ws.receive()).type


def handshake(token: str) -> bytes:
    return (f"GET /ws?token={token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()


async def read_until_closed(raw: socket.socket, timeout: float = 10) -> bytes:
    """Everything the server writes until it closes the connection."""
    loop, got = asyncio.get_running_loop(), b""
    while chunk := await asyncio.wait_for(loop.sock_recv(raw, 65536), timeout):
        got += chunk
    return got


async def test_an_unmasked_client_frame_closes_the_socket_with_1002_and_is_not_handled(client):
    user, token = await user_and_token(client)
    raw = socket.socket()
    raw.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(raw, (client.host, client.port))
    ping = b'{"type": "ping", "ref": 1}'
    try:
        # a masked ping is answered; the unmasked one behind it (RFC 6455 §5.1) fails the socket
        await loop.sock_sendall(raw, handshake(token) + masked(0x1, ping) + bytes((0x81, len(ping))) + ping
                                + masked(0x1, b'{"type": "ping", "ref": 2}'))
        head, body = (await read_until_closed(raw)).split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101")
        frames = read_frames(body)
        assert [f for f in frames if f[0] == 0x1][1:] == [(0x1, b'{"type":"pong","ref":1}')]  # after hello
        assert frames[-1] == (0x8, struct.pack("!H", 1002))
        await wait_for(lambda: not list(client.app[gateway_key].connections(int(user["id"]))))
    finally:
        raw.close()


async def test_masked_frames_split_anywhere_across_reads_are_read(client):
    _, token = await user_and_token(client)
    raw = socket.socket()
    raw.setblocking(False)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(raw, (client.host, client.port))
    data = masked(0x1, b'{"type": "ping", "ref": 1}') + masked(0xA, b"") + masked(
        0x1, b'{"type": "ping", "ref": 2%s}' % (b" " * 300)) + masked(0x8, struct.pack("!H", 1000))  # a 126-form length
    try:
        await loop.sock_sendall(raw, handshake(token))
        for i in range(len(data)):  # a byte at a time: headers and payloads split at every point
            await loop.sock_sendall(raw, data[i:i + 1])
            if i % 7 == 0:
                await asyncio.sleep(0.001)
        frames = read_frames((await read_until_closed(raw)).split(b"\r\n\r\n", 1)[1])
        assert [f for f in frames if f[0] == 0x1][1:] == [
            (0x1, b'{"type":"pong","ref":1}'), (0x1, b'{"type":"pong","ref":2}')]
        assert frames[-1] == (0x8, struct.pack("!H", 1000))
    finally:
        raw.close()
