"""Two real `glint serve` processes on different ports sharing one stack: messages, receipts,
typing, presence, reactions, edits and shares cross between them, and concurrent senders on both
get gapless seqs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

import devstack
from tests.realtime.helpers import bearer, frame_of, open_socket

ROOT = Path(__file__).resolve().parents[2]


async def start_glint(stack_env: dict[str, str], database_url: str) -> tuple[asyncio.subprocess.Process, str]:
    """A `glint serve` process on a free port; (process, base url) once it answers."""
    port = devstack.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLINT_")}
    env.update({k: v for k, v in stack_env.items() if k.startswith("GLINT_")})
    env.update(GLINT_DATABASE_URL=database_url, GLINT_EVENTS_TRANSPORT="inline", GLINT_ACCESS_LOG="false",
               GLINT_JOBS_ENABLED="false", GLINT_STACK_DIR="/nonexistent-glint-stack", GLINT_LOG_LEVEL="WARNING")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", "serve", "--no-consumers", "--port", str(port), cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(base + "/healthz") as response:
                    if response.status == 200:
                        return proc, base
            except aiohttp.ClientError:
                pass
            if loop.time() > deadline or proc.returncode is not None:
                raise AssertionError("glint serve did not start")
            await asyncio.sleep(0.1)


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


async def new_user(session, base: str, name: str) -> tuple[dict, str]:
    body = {"username": name, "email": f"{name}@example.com", "password": "correct horse battery"}
    async with session.post(base + "/api/accounts/users/register/", json=body) as response:
        assert response.status == 201, await response.text()
        user = await response.json()
    async with session.post(base + "/api/token/", json={"username": name, "password": body["password"]}) as response:
        return user, (await response.json())["access"]


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
