"""Direct messages over REST: conversations, sending, idempotency, seq without gaps, blocks,
receipts, unread counts, deletion, history, and the outbox event for offline recipients."""

from __future__ import annotations

import asyncio

from tests.support import bearer, send, start_conversation, user_and_token


async def block(pool, blocker: str, blocked: str) -> None:
    await pool.execute("INSERT INTO blocks (blocker_id, blocked_id) VALUES ($1, $2)", int(blocker), int(blocked))


async def test_one_to_one_is_made_once_even_under_concurrent_first_use(client, pool):
    (ana, ana_token), (bob, bob_token) = await user_and_token(client), await user_and_token(client)
    results = await asyncio.gather(*(
        client.post("/api/conversations/", json={"member_ids": [other]}, headers=bearer(token))
        for _ in range(5) for token, other in ((ana_token, bob["id"]), (bob_token, ana["id"]))))
    bodies = [await r.json() for r in results]
    assert sorted(r.status for r in results) == [200] * 9 + [201]
    assert len({b["id"] for b in bodies}) == 1
    assert await pool.fetchval("SELECT count(*) FROM conversations WHERE kind = 'direct'") == 1
    assert sorted(m["user_id"] for m in bodies[0]["members"]) == sorted([ana["id"], bob["id"]])


async def test_groups_have_a_title_members_can_be_added_removed_and_leave(client):
    (ana, token), (bob, bob_token), (cy, cy_token), (dan, _) = [await user_and_token(client) for _ in range(4)]
    group = await start_conversation(client, token, bob["id"], cy["id"], title="trip")
    assert group["kind"] == "group" and group["title"] == "trip" and len(group["members"]) == 3
    added = await client.post(f"/api/conversations/{group['id']}/members/", json={"user_ids": [dan["id"]]},
                              headers=bearer(bob_token))
    assert added.status == 200 and len((await added.json())["members"]) == 4
    # only the creator removes others; anyone may leave
    assert (await client.delete(f"/api/conversations/{group['id']}/members/{dan['id']}/",
                                headers=bearer(bob_token))).status == 403
    assert (await client.delete(f"/api/conversations/{group['id']}/members/{dan['id']}/",
                                headers=bearer(token))).status == 204
    assert (await client.delete(f"/api/conversations/{group['id']}/members/{cy['id']}/",
                                headers=bearer(cy_token))).status == 204
    assert (await client.get(f"/api/conversations/{group['id']}/", headers=bearer(cy_token))).status == 404
    assert (await send(client, cy_token, group["id"], "after-leaving")).status == 404


async def test_a_group_holds_at_most_256_members(client, pool):
    ana, token = await user_and_token(client)
    ids = [r["id"] for r in await pool.fetch(
        "INSERT INTO users (username, email, password_hash) SELECT 'bulk' || g, 'bulk' || g || '@x.org', 'x'"
        " FROM generate_series(1, 256) g RETURNING id")]
    group = await start_conversation(client, token, *map(str, ids[:200]))
    too_many = await client.post(f"/api/conversations/{group['id']}/members/",
                                 json={"user_ids": list(map(str, ids[200:]))}, headers=bearer(token))
    assert too_many.status == 400
    assert await pool.fetchval("SELECT count(*) FROM conversation_members WHERE conversation_id = $1",
                               int(group["id"])) == 201
    fits = await client.post(f"/api/conversations/{group['id']}/members/",
                             json={"user_ids": list(map(str, ids[200:255]))}, headers=bearer(token))
    assert fits.status == 200 and len((await fits.json())["members"]) == 256


async def test_a_blocked_pair_can_neither_start_nor_continue_a_one_to_one(client, pool):
    (ana, ana_token), (bob, bob_token), (cy, cy_token) = [await user_and_token(client) for _ in range(3)]
    conv = await start_conversation(client, ana_token, bob["id"])
    assert (await send(client, bob_token, conv["id"], "b1")).status == 201
    await block(pool, ana["id"], bob["id"])
    refused = await send(client, bob_token, conv["id"], "b2")
    assert refused.status == 403 and (await refused.json())["error"]["code"] == "blocked"
    assert (await send(client, ana_token, conv["id"], "a1")).status == 403
    await block(pool, cy["id"], ana["id"])
    start = await client.post("/api/conversations/", json={"member_ids": [cy["id"]]}, headers=bearer(ana_token))
    assert start.status == 404
    assert await pool.fetchval("SELECT count(*) FROM messages") == 1


async def test_a_resend_with_the_same_client_id_returns_the_original(client, pool):
    (ana, token), (bob, _) = await user_and_token(client), await user_and_token(client)
    conv = await start_conversation(client, token, bob["id"])
    first = await send(client, token, conv["id"], "same", "first text")
    again = await send(client, token, conv["id"], "same", "other text")
    assert first.status == 201 and again.status == 200
    assert await first.json() == await again.json()
    both = await asyncio.gather(*(send(client, token, conv["id"], "race") for _ in range(5)))
    assert len({(await r.json())["id"] for r in both}) == 1
    assert await pool.fetchval("SELECT count(*) FROM messages") == 2


async def test_twenty_concurrent_senders_in_one_group_get_seqs_one_to_n_without_gaps(client, pool):
    ana, token = await user_and_token(client)
    others = [await user_and_token(client) for _ in range(19)]
    group = await start_conversation(client, token, *(u["id"] for u, _ in others))
    senders = [token] + [t for _, t in others]

    async def burst(i: int, sender: str) -> list[int]:
        seqs = []
        for n in range(10):
            response = await send(client, sender, group["id"], f"s{i}-{n}", f"{i}:{n}")
            assert response.status == 201
            seqs.append((await response.json())["seq"])
        return seqs

    per_sender = await asyncio.gather(*(burst(i, t) for i, t in enumerate(senders)))
    assert sorted(s for seqs in per_sender for s in seqs) == list(range(1, 201))
    assert all(seqs == sorted(seqs) for seqs in per_sender)  # each sender's own order is kept
    stored = [r["seq"] for r in await pool.fetch("SELECT seq FROM messages ORDER BY seq")]
    assert stored == list(range(1, 201))


async def test_bad_messages_are_400_and_store_nothing(client, pool):
    (ana, token), (bob, _), (eve, eve_token) = [await user_and_token(client) for _ in range(3)]
    conv = await start_conversation(client, token, bob["id"])
    assert (await send(client, token, conv["id"], "long", "x" * 4001)).status == 400
    assert (await send(client, token, conv["id"], "empty", "   ")).status == 400
    assert (await send(client, token, conv["id"], "reply", "hi", reply_to_seq=5)).status == 400
    assert (await send(client, token, conv["id"], "media", "", media_id="123456")).status == 400
    assert (await send(client, eve_token, conv["id"], "outsider")).status == 404
    assert (await send(client, token, "99999999", "nowhere")).status == 404
    bad = await client.post(f"/api/conversations/{conv['id']}/messages/", data=b"{", headers={
        **bearer(token), "Content-Type": "application/json"})
    assert bad.status == 400
    assert await pool.fetchval("SELECT count(*) FROM messages") == 0
    ok = await send(client, token, conv["id"], "ok", "x" * 4000)
    assert ok.status == 201
    reply = await send(client, token, conv["id"], "r", "re", reply_to_seq=1)
    assert (await reply.json())["reply_to_seq"] == 1


async def test_read_positions_and_unread_counts(client):
    (ana, ana_token), (bob, bob_token) = await user_and_token(client), await user_and_token(client)
    conv = await start_conversation(client, ana_token, bob["id"])  # bob does not follow ana: a request
    for n in range(3):
        await send(client, ana_token, conv["id"], f"m{n}")
    listed = await (await client.get("/api/conversations/?folder=requests", headers=bearer(bob_token))).json()
    assert listed["results"][0]["unread_count"] == 3 and listed["results"][0]["last_message"]["seq"] == 3
    assert (await client.post(f"/api/conversations/{conv['id']}/read/", json={"seq": 2},
                              headers=bearer(bob_token))).status == 204
    detail = await (await client.get(f"/api/conversations/{conv['id']}/", headers=bearer(ana_token))).json()
    assert {m["user_id"]: m["read_seq"] for m in detail["members"]} == {ana["id"]: 3, bob["id"]: 2}
    listed = await (await client.get("/api/conversations/?folder=requests", headers=bearer(bob_token))).json()
    assert listed["results"][0]["unread_count"] == 1
    # the sender's own messages are never unread
    own = await (await client.get("/api/conversations/", headers=bearer(ana_token))).json()
    assert own["results"][0]["unread_count"] == 0


async def test_delete_for_everyone_leaves_a_tombstone_by_the_sender_only(client):
    (ana, ana_token), (bob, bob_token) = await user_and_token(client), await user_and_token(client)
    conv = await start_conversation(client, ana_token, bob["id"])
    await send(client, ana_token, conv["id"], "d1", "secret")
    await send(client, ana_token, conv["id"], "d2", "kept")
    assert (await client.delete(f"/api/conversations/{conv['id']}/messages/1/", headers=bearer(bob_token))).status == 403
    assert (await client.delete(f"/api/conversations/{conv['id']}/messages/1/", headers=bearer(ana_token))).status == 204
    page = await (await client.get(f"/api/conversations/{conv['id']}/messages/?after_seq=0",
                                   headers=bearer(bob_token))).json()
    assert [(m["seq"], m["deleted"], m["text"]) for m in page["results"]] == [(1, True, ""), (2, False, "kept")]


async def test_history_pages_by_seq_both_ways(client):
    (ana, token), (bob, _) = await user_and_token(client), await user_and_token(client)
    conv = await start_conversation(client, token, bob["id"])
    for n in range(5):
        await send(client, token, conv["id"], f"h{n}")
    newest = await (await client.get(f"/api/conversations/{conv['id']}/messages/?limit=2", headers=bearer(token))).json()
    assert [m["seq"] for m in newest["results"]] == [5, 4]
    older = await (await client.get(newest["next"], headers=bearer(token))).json()
    assert [m["seq"] for m in older["results"]] == [3, 2]
    after = await (await client.get(f"/api/conversations/{conv['id']}/messages/?after_seq=3",
                                    headers=bearer(token))).json()
    assert [m["seq"] for m in after["results"]] == [4, 5] and after["next"] is None
    assert (await client.get(f"/api/conversations/{conv['id']}/messages/?after_seq=x", headers=bearer(token))).status == 400


async def test_a_recipient_with_no_socket_gets_a_message_sent_event(client, pool):
    (ana, token), (bob, _) = await user_and_token(client), await user_and_token(client)
    # bob follows ana, so this is no message request for him (requests never push)
    await pool.execute("INSERT INTO follows (follower_id, followee_id) VALUES ($1, $2)", int(bob["id"]), int(ana["id"]))
    conv = await start_conversation(client, token, bob["id"])
    await send(client, token, conv["id"], "off", "are you there")

    async def recorded():
        return await pool.fetchrow("SELECT topic, type, payload FROM outbox WHERE type = 'message_sent'")

    from tests.conftest import wait_for
    await wait_for(recorded)
    event = await recorded()
    assert event["topic"] == "messages"
    assert event["payload"]["recipient_ids"] == [bob["id"]] and event["payload"]["seq"] == 1
