"""Two real `glint serve` processes on different ports sharing one stack: messages, receipts,
typing, presence, reactions, edits and shares cross between them, a message reaches each socket
once whichever process holds it, and concurrent senders on both get gapless seqs."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from realtime import frames
from tests.support import bearer, frame_of, new_user, next_frame, open_socket, start_glint

@pytest.fixture
async def two_processes(stack_env, database_url, redis_clean):
    started = await asyncio.gather(start_glint(stack_env, database_url), start_glint(stack_env, database_url))
    session = aiohttp.ClientSession()
    yield session, [base for _, base in started]
    await session.close()
    for proc, _ in started:
        proc.terminate()
    for proc, _ in started:
        await asyncio.wait_for(proc.wait(), 30)


async def test_messages_receipts_typing_and_presence_cross_processes(two_processes):
    session, (a, b) = two_processes
    (ana, ana_token), (bob, bob_token) = await new_user(session, a, "ana"), await new_user(session, b, "bob")
    async with session.post(a + "/api/conversations/", json={"member_ids": [bob["id"]]},
                            headers=bearer(ana_token)) as response:
        conv = await response.json()
    ana_ws = await open_socket(session, ana_token, a)
    await ana_ws.send_json({"type": "presence.subscribe", "user_ids": [bob["id"]]})
    assert (await frame_of(ana_ws, "presence"))["status"] == "offline"
    bob_ws = await open_socket(session, bob_token, b)
    assert (await frame_of(ana_ws, "presence", user_id=bob["id"]))["status"] == "online"

    await ana_ws.send_json({"type": "typing", "conversation_id": conv["id"]})
    assert (await frame_of(bob_ws, "typing"))["user_id"] == ana["id"]
    await ana_ws.send_json({"type": "message.send", "ref": 1, "conversation_id": conv["id"], "client_id": "x1",
                            "text": "across"})
    ack = await frame_of(ana_ws, "message.ack")
    new = await frame_of(bob_ws, "message.new")
    assert new["message"] == ack["message"] and new["message"]["text"] == "across"
    delivered = await frame_of(ana_ws, "message.delivered")
    assert (delivered["seq"], delivered["user_id"]) == (1, bob["id"])
    await bob_ws.send_json({"type": "message.read", "conversation_id": conv["id"], "seq": 1})
    assert (await frame_of(ana_ws, "message.read"))["user_id"] == bob["id"]
    # a reply over REST on the other process reaches ana's socket
    async with session.post(f"{b}/api/conversations/{conv['id']}/messages/", json={"client_id": "y1", "text": "back"},
                            headers=bearer(bob_token)) as response:
        assert response.status == 201
    assert (await frame_of(ana_ws, "message.new"))["message"]["seq"] == 2
    # reactions, edits and shares cross too (API.md "More in direct messages")
    await bob_ws.send_json({"type": "message.react", "conversation_id": conv["id"], "seq": 1, "emoji": "🔥"})
    reaction = await frame_of(ana_ws, "message.reaction")
    assert (reaction["seq"], reaction["user_id"], reaction["emoji"]) == (1, bob["id"], "🔥")
    await ana_ws.send_json({"type": "message.edit", "conversation_id": conv["id"], "seq": 1, "text": "across!"})
    edited = (await frame_of(bob_ws, "message.edited"))["message"]
    assert edited["text"] == "across!" and edited["reactions"] == [{"user_id": bob["id"], "emoji": "🔥"}]
    await ana_ws.send_json({"type": "message.send", "ref": 2, "conversation_id": conv["id"], "client_id": "x2",
                            "share": {"type": "user", "id": ana["id"]}})
    shared = (await frame_of(bob_ws, "message.new"))["message"]["share"]
    assert (shared["type"], shared["id"], shared["username"]) == ("user", ana["id"], "ana")

    await bob_ws.close()
    offline = await frame_of(ana_ws, "presence", user_id=bob["id"])
    assert offline["status"] == "offline" and offline["last_seen"]


async def test_a_message_reaches_each_socket_once_on_the_senders_process_and_the_other(two_processes,
                                                                                       redis_clean):
    session, (a, b) = two_processes
    (ana, ana_token), (bob, bob_token) = await new_user(session, a, "ana"), await new_user(session, b, "bob")
    async with session.post(a + "/api/conversations/", json={"member_ids": [bob["id"]]},
                            headers=bearer(ana_token)) as response:
        conv = await response.json()
    ana_a, ana_b = await open_socket(session, ana_token, a), await open_socket(session, ana_token, b)
    bob_a, bob_b = await open_socket(session, bob_token, a), await open_socket(session, bob_token, b)
    await ana_a.send_json({"type": "message.send", "ref": 1, "conversation_id": conv["id"], "client_id": "o1",
                           "text": "once"})
    seq = (await frame_of(ana_a, "message.ack"))["message"]["seq"]
    # b has it from the bus: a's copies are published; a marker published now reaches both
    # processes behind them, so each socket has had every copy of the message once it has it
    assert (await frame_of(bob_b, "message.new"))["message"]["seq"] == seq
    assert (await frame_of(ana_b, "message.new"))["message"]["seq"] == seq
    marker = b"f|\n" + frames.encode(frames.Pong(ref="marker"))
    for user in (ana, bob):
        await redis_clean.publish(f"u:{user['id']}", marker)
    for ws, before in ((bob_a, 0), (bob_b, 1), (ana_b, 1)):
        got = []
        while (frame := await next_frame(ws)) != {"type": "pong", "ref": "marker"}:
            got.append(frame)
        assert [f["message"]["seq"] for f in got if f["type"] == "message.new"] == [seq][before:]
    for ws in (ana_a, ana_b, bob_a, bob_b):
        await ws.close()


async def test_concurrent_senders_on_two_processes_get_gapless_seqs(two_processes):
    session, bases = two_processes
    users = [await new_user(session, bases[i % 2], f"s{i}") for i in range(20)]
    async with session.post(bases[0] + "/api/conversations/", json={"member_ids": [u["id"] for u, _ in users[1:]]},
                            headers=bearer(users[0][1])) as response:
        group = await response.json()

    async def burst(i: int, token: str) -> list[int]:
        seqs = []
        for n in range(10):
            async with session.post(f"{bases[(i + n) % 2]}/api/conversations/{group['id']}/messages/",
                                    json={"client_id": f"{i}-{n}", "text": "x"}, headers=bearer(token)) as response:
                assert response.status == 201
                seqs.append((await response.json())["seq"])
        return seqs

    per_sender = await asyncio.gather(*(burst(i, token) for i, (_, token) in enumerate(users)))
    assert sorted(s for seqs in per_sender for s in seqs) == list(range(1, 201))
