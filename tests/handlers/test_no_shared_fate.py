"""No shared fate in batched writers: a hostile sender's values fail that sender alone, never the
concurrent sends of others written in the same batch."""

from __future__ import annotations

import asyncio

from realtime.delivery import Unstorable, writer_key
from storage import messages as store
from tests.support import bearer, frame_of, open_socket, start_conversation, user_and_token


async def test_a_hostile_senders_values_do_not_fail_concurrent_sends_by_others(client, pool):
    (ana, ana_token), (bob, bob_token), (eve, eve_token) = [await user_and_token(client) for _ in range(3)]
    good = await start_conversation(client, ana_token, bob["id"])
    evil = await start_conversation(client, eve_token, bob["id"])
    eve_ws = await open_socket(client, eve_token)

    async def send(token: str, conversation: str, client_id: str, **body):
        return await client.post(f"/api/conversations/{conversation}/messages/",
                                 json={"client_id": client_id, "text": "hi", **body}, headers=bearer(token))

    async def hostile(n: int) -> list[int]:
        answers = [(await send(eve_token, evil["id"], f"e{n}a", reply_to_seq=9223372036854775808)).status,
                   (await send(eve_token, evil["id"], f"e{n}b", text="x\u0000y")).status]
        await eve_ws.send_json({"type": "message.send", "conversation_id": "9999999999999999999",
                                "client_id": f"e{n}c", "text": "x", "ref": n})
        return answers

    goods = [send(token, good["id"], f"g{i}{token[-4:]}") for i in range(20) for token in (ana_token, bob_token)]
    results = await asyncio.gather(*goods, *(hostile(n) for n in range(10)))
    assert [r.status for r in results[:40]] == [201] * 40
    assert all(status == 400 for answers in results[40:] for status in answers)
    for _ in range(10):
        assert (await frame_of(eve_ws, "error"))["code"] != "internal_error"
    assert await pool.fetchval("SELECT last_seq FROM conversations WHERE id = $1", int(good["id"])) == 40


async def test_a_batch_the_database_refuses_is_retried_one_by_one(client, pool):
    (ana, ana_token), (bob, _) = await user_and_token(client), await user_and_token(client)
    conv = int((await start_conversation(client, ana_token, bob["id"]))["id"])
    writer = client.app[writer_key]
    sender = int(ana["id"])
    drafts = [store.Draft(conv, sender, "ok1", "fine", None, None),
              store.Draft(conv, sender, "nul", "bad\x00text", None, None),  # PostgreSQL refuses NUL in text
              store.Draft(conv, sender, "ok2", "fine", None, None),
              store.Draft(conv, sender, "big", "x", None, 2**63),  # past bigint
              store.Draft(conv, sender, "ok3", "fine", None, None)]
    futures = [writer.submit(d, None) for d in drafts]  # queued together: one batch
    outcomes = await asyncio.gather(*futures, return_exceptions=True)
    assert [o.status for o in (outcomes[0], outcomes[2], outcomes[4])] == ["ok", "ok", "ok"]
    assert isinstance(outcomes[1], Unstorable) and isinstance(outcomes[3], Unstorable)
    assert [r["client_id"] for r in await pool.fetch("SELECT client_id FROM messages ORDER BY seq")] == \
        ["ok1", "ok2", "ok3"]
