"""kill -9 of one of two `glint serve` processes under DM load: clients of the dead one reconnect
to the other, resend what was not acked (same client ids) and resync; nothing acked is lost or
stored twice, seqs are gapless, and every reader ends with every message exactly once."""

from __future__ import annotations

import asyncio
import signal

import aiohttp
import asyncpg

from tests.support import bearer, new_user, start_glint

SENDERS = 4
PER_SENDER = 40


async def connect(session, base: str, token: str):
    ws = await session.ws_connect(f"{base}/ws?token={token}", heartbeat=None)
    assert (await ws.receive_json(timeout=10))["type"] == "hello"
    return ws


async def test_kill_9_of_one_process_under_dm_load_loses_nothing_doubles_nothing(stack_env, database_url,
                                                                                 redis_clean):
    (proc_a, a), (proc_b, b) = await asyncio.gather(start_glint(stack_env, database_url),
                                                    start_glint(stack_env, database_url))
    session = aiohttp.ClientSession()
    try:
        users = [await new_user(session, a, f"k{i}") for i in range(SENDERS + 2)]
        async with session.post(a + "/api/conversations/", json={"member_ids": [u["id"] for u, _ in users[1:]]},
                                headers=bearer(users[0][1])) as response:
            group = (await response.json())["id"]
        acked: dict[str, int] = {}
        killed = asyncio.Event()

        async def sender(i: int, token: str) -> None:
            ws = await connect(session, (a, b)[i % 2], token)
            for n in range(PER_SENDER):
                client_id = f"{i}-{n}"
                while client_id not in acked:
                    try:
                        await ws.send_json({"type": "message.send", "ref": client_id, "conversation_id": group,
                                            "client_id": client_id, "text": client_id})
                        while True:
                            frame = await ws.receive_json(timeout=10)
                            if frame.get("ref") == client_id and frame["type"] == "message.ack":
                                acked[client_id] = frame["message"]["seq"]
                                break
                    except (TypeError, ConnectionError, asyncio.TimeoutError, aiohttp.ClientError):
                        await killed.wait()  # our process died: reconnect to the other, resend
                        ws = await connect(session, a, token)
            await ws.close()

        async def reader(token: str, base: str) -> list[int]:
            """A client that resyncs when its socket dies and at the end; its seqs, in arrival order."""
            seen: list[int] = []
            ws = await connect(session, base, token)
            try:
                while len(acked) < SENDERS * PER_SENDER:
                    try:
                        frame = await ws.receive_json(timeout=0.5)
                    except asyncio.TimeoutError:
                        continue
                    except (TypeError, ConnectionError, aiohttp.ClientError):
                        await killed.wait()
                        ws = await connect(session, a, token)
                        seen += await resync(ws, max(seen, default=0))
                        continue
                    if frame["type"] == "message.new":
                        seen.append(frame["message"]["seq"])
                held = sorted(set(seen))
                gapless_to = next((i - 1 for i, s in enumerate(held, 1) if s != i), len(held))
                seen += await resync(ws, gapless_to, skip=set(seen))
            finally:
                await ws.close()
            return seen

        async def resync(ws, after: int, skip: set[int] = frozenset()) -> list[int]:
            await ws.send_json({"type": "sync", "ref": "sync", "conversations": {group: after}})
            got = []
            while (frame := await ws.receive_json(timeout=10))["type"] != "sync.done":
                if frame["type"] == "message.new" and frame["message"]["seq"] not in skip:
                    got.append(frame["message"]["seq"])
            return got

        async def killer() -> None:
            while len(acked) < SENDERS * PER_SENDER // 3:
                await asyncio.sleep(0.01)
            proc_b.send_signal(signal.SIGKILL)
            await proc_b.wait()
            killed.set()

        tasks = [sender(i, token) for i, (_, token) in enumerate(users[1:1 + SENDERS])]
        readers = [reader(users[-1][1], b), reader(users[0][1], a)]
        results = await asyncio.wait_for(asyncio.gather(killer(), *readers, *tasks), 55)
        total = SENDERS * PER_SENDER
        assert len(acked) == total
        conn = await asyncpg.connect(database_url)
        try:
            stored = {r["client_id"]: r["seq"] for r in await conn.fetch(
                "SELECT client_id, seq FROM messages WHERE conversation_id = $1", int(group))}
            count = await conn.fetchval("SELECT count(*) FROM messages WHERE conversation_id = $1", int(group))
        finally:
            await conn.close()
        assert count == len(stored) == total  # nothing stored twice
        assert stored == acked  # every ack is what is stored
        assert sorted(stored.values()) == list(range(1, total + 1))  # gapless
        for seen in results[1:3]:
            assert sorted(seen) == list(range(1, total + 1))  # each reader: every message exactly once
    finally:
        await session.close()
        for proc in (proc_a, proc_b):
            if proc.returncode is None:
                proc.terminate()
                await asyncio.wait_for(proc.wait(), 30)
