"""Delivery within one process: every device, once (pushed by the writer, the bus's copy skipped),
receipts, typing, deletion, presence, resync after a killed client, and the slow reader that is
cut off while others keep receiving."""

from __future__ import annotations

import asyncio
import socket

import pytest

from app.main import create_app
from realtime import frames
from realtime.gateway import gateway_key, user_channel
from tests.conftest import make_config, wait_for
from tests.support import bearer, frame_of, next_frame, open_socket, start_conversation, user_and_token


def send_frame(conversation_id: str, client_id: str, text: str = "hi", ref=None) -> dict:
    return {"type": "message.send", "ref": ref or client_id, "conversation_id": conversation_id,
            "client_id": client_id, "text": text}


async def test_a_message_reaches_every_device_and_the_senders_other_devices(client):
    (ana, ana_token), (bob, bob_token) = await user_and_token(client), await user_and_token(client)
    conv = await start_conversation(client, ana_token, bob["id"])
    ana_phone, ana_laptop = await open_socket(client, ana_token), await open_socket(client, ana_token)
    bob_phone, bob_laptop = await open_socket(client, bob_token), await open_socket(client, bob_token)
    await ana_phone.send_json(send_frame(conv["id"], "m1", "to all"))
    ack = await frame_of(ana_phone, "message.ack")
    for ws in (ana_laptop, bob_phone, bob_laptop):
        new = await frame_of(ws, "message.new")
        assert new["message"] == ack["message"]
    # a resend over the socket returns the original, and nobody gets it twice
    await ana_phone.send_json(send_frame(conv["id"], "m1", "changed", ref="again"))
    again = await frame_of(ana_phone, "message.ack")
    assert again["ref"] == "again" and again["message"] == ack["message"]
    await bob_phone.send_json({"type": "ping", "ref": "after"})
    frame = await frame_of(bob_phone, "pong")
    assert frame["ref"] == "after"


async def frames_until(ws, type_: str, **match) -> list[dict]:
    """The frames a socket gets up to and including the first of this type (and matching fields)."""
    got = []
    while True:
        frame = await next_frame(ws)
        got.append(frame)
        if frame["type"] == type_ and all(frame.get(k) == v for k, v in match.items()):
            return got


@pytest.mark.redis_cluster
async def test_a_message_to_sockets_on_the_senders_process_arrives_once(client):
    (ana, ana_token), (bob, bob_token) = await user_and_token(client), await user_and_token(client)
    conv = await start_conversation(client, ana_token, bob["id"])
    ana_phone, ana_laptop = await open_socket(client, ana_token), await open_socket(client, ana_token)
    bob_ws = await open_socket(client, bob_token)
    gateway = client.app[gateway_key]
    published = gateway.publisher.stats["published"]
    await ana_phone.send_json(send_frame(conv["id"], "m1", "once"))
    seq = (await frame_of(ana_phone, "message.ack"))["message"]["seq"]
    # the bus's copies (to ana's channel and bob's) are out: a marker published after them comes
    # back to this process behind them, so each socket has had every copy of m1 once it has it
    await wait_for(lambda: gateway.publisher.stats["published"] >= published + 2)
    marker = b"f|\n" + frames.encode(frames.Pong(ref="marker"))
    for user in (ana, bob):
        await gateway.bus.publish(user_channel(int(user["id"])), marker)
    for ws in (ana_laptop, bob_ws):
        got = await frames_until(ws, "pong", ref="marker")
        assert [f["message"]["seq"] for f in got if f["type"] == "message.new"] == [seq]
    assert gateway.stats["bus_own"] >= 2  # the copies came back and were skipped
    for ws in (ana_phone, ana_laptop, bob_ws):
        await ws.close()


async def test_read_receipts_over_the_socket_reach_the_sender_and_the_readers_devices(client):
    (ana, ana_token), (bob, bob_token) = await user_and_token(client), await user_and_token(client)
    conv = await start_conversation(client, ana_token, bob["id"])
    ana_ws = await open_socket(client, ana_token)
    bob_ws, bob_other = await open_socket(client, bob_token), await open_socket(client, bob_token)
    for n in range(3):
        await ana_ws.send_json(send_frame(conv["id"], f"r{n}"))
    for _ in range(3):
        await frame_of(bob_ws, "message.new")
    await bob_ws.send_json({"type": "message.read", "conversation_id": conv["id"], "seq": 3})
    receipt = await frame_of(ana_ws, "message.read")
    assert receipt == {"type": "message.read", "conversation_id": conv["id"], "seq": 3, "user_id": bob["id"]}
    assert (await frame_of(bob_other, "message.read"))["seq"] == 3
    detail = await (await client.get(f"/api/conversations/{conv['id']}/", headers=bearer(ana_token))).json()
    assert {m["user_id"]: m["read_seq"] for m in detail["members"]}[bob["id"]] == 3
    await bob_ws.send_json({"type": "message.read", "conversation_id": "12345", "seq": 1, "ref": "x"})
    assert (await frame_of(bob_ws, "error"))["code"] == "not_found"


async def test_typing_reaches_the_others_and_is_rate_capped(client):
    (ana, ana_token), (bob, bob_token) = await user_and_token(client), await user_and_token(client)
    conv = await start_conversation(client, ana_token, bob["id"])
    ana_ws, bob_ws = await open_socket(client, ana_token), await open_socket(client, bob_token)
    for _ in range(5):
        await ana_ws.send_json({"type": "typing", "conversation_id": conv["id"]})
    await ana_ws.send_json(send_frame(conv["id"], "after-typing"))
    frames = []
    while True:
        frame = await next_frame(bob_ws)
        frames.append(frame["type"])
        if frame["type"] == "message.new":
            break
    assert frames.count("typing") == 1


async def test_delete_for_everyone_sends_message_deleted(client):
    (ana, ana_token), (bob, bob_token) = await user_and_token(client), await user_and_token(client)
    conv = await start_conversation(client, ana_token, bob["id"])
    ana_ws, bob_ws = await open_socket(client, ana_token), await open_socket(client, bob_token)
    await ana_ws.send_json(send_frame(conv["id"], "del"))
    await frame_of(bob_ws, "message.new")
    await ana_ws.send_json({"type": "message.delete", "conversation_id": conv["id"], "seq": 1})
    assert await frame_of(bob_ws, "message.deleted") == {"type": "message.deleted", "conversation_id": conv["id"],
                                                         "seq": 1}


async def test_presence_online_offline_last_seen_across_devices_respecting_settings_and_blocks(client, pool):
    (ana, ana_token), (bob, bob_token), (cy, cy_token), (dan, dan_token) = [
        await user_and_token(client) for _ in range(4)]
    await pool.execute("UPDATE users SET show_presence = false WHERE id = $1", int(cy["id"]))
    await pool.execute("INSERT INTO blocks (blocker_id, blocked_id) VALUES ($1, $2)", int(dan["id"]), int(ana["id"]))
    # presence goes to people one follows back (or shares a conversation with)
    await pool.execute("INSERT INTO follows (follower_id, followee_id) VALUES ($1, $2), ($2, $1), ($1, $3), ($3, $1)",
                       int(ana["id"]), int(bob["id"]), int(cy["id"]))
    watcher = await open_socket(client, ana_token)
    await watcher.send_json({"type": "presence.subscribe", "user_ids": [bob["id"], cy["id"], dan["id"]]})
    states = [await frame_of(watcher, "presence") for _ in range(3)]
    assert {s["user_id"]: s["status"] for s in states} == {bob["id"]: "offline", cy["id"]: "offline",
                                                          dan["id"]: "offline"}
    bob_phone = await open_socket(client, bob_token)
    assert (await frame_of(watcher, "presence"))["status"] == "online"
    bob_laptop = await open_socket(client, bob_token)
    cy_ws, dan_ws = await open_socket(client, cy_token), await open_socket(client, dan_token)
    await bob_phone.close()
    await bob_laptop.close()
    offline = await frame_of(watcher, "presence")
    # only bob's last device going away is news; cy hides presence and dan blocks ana
    assert offline["user_id"] == bob["id"] and offline["status"] == "offline" and offline["last_seen"]
    await watcher.send_json({"type": "presence.subscribe", "user_ids": [bob["id"], cy["id"], dan["id"]]})
    again = {s["user_id"]: s for s in [await frame_of(watcher, "presence") for _ in range(3)]}
    assert again[bob["id"]]["last_seen"] == offline["last_seen"]
    assert again[cy["id"]] == {"type": "presence", "user_id": cy["id"], "status": "offline", "last_seen": None}
    assert again[dan["id"]]["status"] == "offline" and again[dan["id"]]["last_seen"] is None
    await watcher.send_json({"type": "presence.subscribe", "user_ids": [str(n + 1) for n in range(201)], "ref": 9})
    assert (await frame_of(watcher, "error"))["ref"] == 9
    assert not cy_ws.closed and not dan_ws.closed


async def test_a_client_killed_mid_stream_resyncs_with_nothing_lost_and_nothing_twice(client):
    (ana, ana_token), (bob, bob_token) = await user_and_token(client), await user_and_token(client)
    conv = await start_conversation(client, ana_token, bob["id"])
    ana_ws, bob_ws = await open_socket(client, ana_token), await open_socket(client, bob_token)
    total = 120
    for n in range(total):
        await ana_ws.send_json(send_frame(conv["id"], f"k{n}", f"n{n}"))
    seen: list[int] = []
    while len(seen) < 30:
        seen.append((await frame_of(bob_ws, "message.new"))["message"]["seq"])
    bob_ws._response.connection.transport.abort()  # killed: no close handshake
    bob_again = await open_socket(client, bob_token)
    await bob_again.send_json({"type": "sync", "ref": "s", "conversations": {conv["id"]: seen[-1]}})
    acked = 0
    while acked < total:
        acked += (await next_frame(ana_ws))["type"] == "message.ack"
    received = list(seen)
    done = False
    while not done or len(received) < total:
        frame = await next_frame(bob_again)
        if frame["type"] == "message.new":
            received.append(frame["message"]["seq"])
        done = done or frame["type"] == "sync.done"
    assert sorted(received) == list(range(1, total + 1))
    assert len(received) == len(set(received))


async def test_a_slow_reader_is_cut_off_while_the_others_keep_receiving(aiohttp_client, stack_env, config):
    client = await aiohttp_client(create_app(make_config(stack_env, database_url=config.database.url,
                                                         ws_send_queue=32)))
    (ana, ana_token), (bob, bob_token), (cy, cy_token) = [await user_and_token(client) for _ in range(3)]
    group = await start_conversation(client, ana_token, bob["id"], cy["id"])
    ana_ws, cy_ws = await open_socket(client, ana_token), await open_socket(client, cy_token)
    # bob's client never reads: a raw socket with a tiny receive buffer
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(raw, (client.host, client.port))
    await loop.sock_sendall(raw, (
        f"GET /ws?token={bob_token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    try:
        await cut_off_while_others_receive(client, ana_ws, cy_ws, group, bob)
    finally:
        raw.close()


async def cut_off_while_others_receive(client, ana_ws, cy_ws, group, bob) -> None:
    gateway = client.app[gateway_key]
    await wait_for(lambda: len(list(gateway.connections(int(bob["id"])))) == 1)
    # and a slow network: the server's side of bob's socket buffers little
    slow, = gateway.connections(int(bob["id"]))
    slow.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    total = 300

    async def count(ws, type_: str) -> int:
        got = 0
        while got < total:
            got += (await next_frame(ws))["type"] == type_
        return got

    reader = asyncio.create_task(count(cy_ws, "message.new"))
    for start in range(0, total, 10):  # in windows of 10, as a client waiting for its acks would
        for n in range(start, start + 10):
            await ana_ws.send_json(send_frame(group["id"], f"s{n}", "x" * 2000))
        for _ in range(10):
            await frame_of(ana_ws, "message.ack")
    assert await asyncio.wait_for(reader, 60) == total
    await wait_for(lambda: not list(gateway.connections(int(bob["id"]))))
    assert gateway.stats["cut_slow"] >= 1
