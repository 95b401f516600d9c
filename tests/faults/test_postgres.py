"""PostgreSQL restarted under a live socket: each frame that needs it meanwhile answers
`error {code: "unavailable", retry_after}` (REST: 503 with Retry-After, by the same mapping) with
no traceback per frame, and the pool recovers by itself once the server is back."""

from __future__ import annotations

import logging

from app.main import create_app
from handlers.context import pool_key
from tests.conftest import wait_for
from tests.faults.conftest import fault_config, stopped
from tests.support import bearer, next_frame, open_socket, start_conversation, user_and_token


async def send(ws, conversation_id: str, client_id: str, ref: int) -> dict:
    await ws.send_json({"type": "message.send", "ref": ref, "conversation_id": conversation_id,
                        "client_id": client_id, "text": client_id})
    # the ack or error answering this frame (other frames are skipped)
    while True:
        frame = await next_frame(ws, 20)
        if frame["type"] in ("message.ack", "error") and frame.get("ref") == ref:
            return frame


async def test_frames_during_a_postgres_restart_answer_unavailable_and_the_pool_recovers(
        aiohttp_client, stack_env, stack_root, database_url, redis_clean, caplog):
    client = await aiohttp_client(create_app(fault_config(stack_env, database_url)))
    (ana, ana_token), (bob, _) = await user_and_token(client), await user_and_token(client)
    conversation = await start_conversation(client, ana_token, bob["id"])
    pool = client.app[pool_key]
    # accepted, not a message request: bob gets pushes
    await pool.execute("UPDATE conversation_members SET accepted = true WHERE conversation_id = $1",
                       int(conversation["id"]))
    ws = await open_socket(client, ana_token)
    assert (await send(ws, conversation["id"], "before", 1))["message"]["seq"] == 1

    async def push_recorded() -> bool:  # bob is offline: the message's push is written after it
        return bool(await pool.fetchval("SELECT count(*) FROM outbox WHERE type = 'message_sent'"))

    await wait_for(push_recorded)

    caplog.set_level(logging.WARNING)
    with stopped(stack_root, "postgres"):
        for ref in range(2, 6):
            reply = await send(ws, conversation["id"], f"during-{ref}", ref)
            assert reply["type"] == "error", reply
            assert (reply["code"], reply["retry_after"]) == ("unavailable", 1)
        rest = await client.get(f"/api/conversations/{conversation['id']}/", headers=bearer(ana_token))
        assert rest.status == 503 and rest.headers["Retry-After"] == "1"
        assert (await rest.json())["error"]["code"] == "service_unavailable"
    tracebacks = [r for r in caplog.records if r.exc_info and r.name.startswith(("glint.realtime", "glint.messages",
                                                                                  "glint.http"))]
    assert tracebacks == []  # outages are logged as one line now and then, not a traceback per frame

    # the server is back: the same pool serves again, resends are stored once, seqs are gapless
    seqs = [(await send(ws, conversation["id"], f"during-{ref}", 10 + ref))["message"]["seq"] for ref in range(2, 6)]
    assert seqs == [2, 3, 4, 5]
    again = await client.get(f"/api/conversations/{conversation['id']}/", headers=bearer(ana_token))
    assert again.status == 200 and (await again.json())["last_seq"] == 5
    await ws.close()
