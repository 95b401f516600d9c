"""Messages sent while Redis is frozen: acked at once (the writer never waits on the bus), stored,
pushed to the recipients' sockets on the sender's process at once, and once Redis is back every
socket of a recipient on another process gets `resync`, so a client that only syncs when told to
still gets every message; recipients the bus could not reach count as offline (push)."""

from __future__ import annotations

import asyncio

from app.main import create_app
from handlers.context import pool_key
from realtime.gateway import gateway_key
from tests.conftest import wait_for
from tests.faults.conftest import fault_config, frozen
from tests.support import frame_of, next_frame, open_socket, start_conversation, user_and_token


async def sent_acked(ws, conversation_id: str, client_id: str) -> dict:
    await ws.send_json({"type": "message.send", "ref": client_id, "conversation_id": conversation_id,
                        "client_id": client_id, "text": client_id})
    return await frame_of(ws, "message.ack", ref=client_id)


async def test_messages_sent_while_redis_is_frozen_reach_recipients_through_resync(
        aiohttp_client, stack_env, stack_root, database_url, redis_clean):
    config = fault_config(stack_env, database_url, redis_timeout_seconds=1.0, bus_publish_give_up_seconds=0.5)
    app = create_app(config)
    client = await aiohttp_client(app)
    other = await aiohttp_client(create_app(config))  # another process's gateway, on the same bus
    (ana, ana_token), (bob, bob_token), (carol, _) = [await user_and_token(client) for _ in range(3)]
    group = await start_conversation(client, ana_token, bob["id"], carol["id"], title="g")
    # accepted, not a message request: its members get pushes
    await app[pool_key].execute("UPDATE conversation_members SET accepted = true WHERE conversation_id = $1",
                                int(group["id"]))
    ana_ws, ana_laptop = await open_socket(client, ana_token), await open_socket(client, ana_token)
    bob_ws = await open_socket(other, bob_token)
    assert (await sent_acked(ana_ws, group["id"], "m1"))["message"]["seq"] == 1
    assert (await frame_of(bob_ws, "message.new"))["message"]["seq"] == 1

    loop = asyncio.get_running_loop()
    with frozen(stack_root, "redis"):
        started = loop.time()
        seqs = [(await sent_acked(ana_ws, group["id"], f"m{n}"))["message"]["seq"] for n in range(2, 7)]
        took = loop.time() - started
        assert seqs == [2, 3, 4, 5, 6]
        # the writer never waits on the bus; each frame still waits once for the per-frame rate
        # counter in Redis to time out (1 s) and then goes on uncounted
        assert took < 5 * 1.0 + 3.0, took
        # ana's other socket is on the sender's process: it has each of them without the bus
        assert [(await frame_of(ana_laptop, "message.new"))["message"]["seq"] for _ in range(6)] == [1, 2, 3, 4, 5, 6]
        publisher = app[gateway_key].publisher
        await wait_for(lambda: publisher.stats["dropped"] >= 5 * 3, timeout=15)  # given up: 5 messages x 3 members

    # the bus is back: bob is told to resync, and sync brings each missed message once
    assert (await frame_of(bob_ws, "resync", timeout=15))["reason"] == "bus"
    await bob_ws.send_json({"type": "sync", "ref": "s", "conversations": {group["id"]: 1}})
    replayed = []
    while (frame := await next_frame(bob_ws))["type"] != "sync.done":
        if frame["type"] == "message.new":
            replayed.append(frame["message"]["seq"])
    assert replayed == [2, 3, 4, 5, 6]

    # nobody could be seen online while the bus was away: each message is a push for carol (offline)
    # and bob alike, never dropped as "online"
    pool = app[pool_key]

    async def pushes_recorded() -> bool:
        rows = await pool.fetch("SELECT payload FROM outbox WHERE type = 'message_sent'")
        got = {(r["payload"]["seq"], rid) for r in rows for rid in r["payload"]["recipient_ids"]}
        return all((seq, who["id"]) in got for seq in range(2, 7) for who in (bob, carol))

    await wait_for(pushes_recorded, timeout=10)
    await ana_ws.close()
    await ana_laptop.close()
    await bob_ws.close()
