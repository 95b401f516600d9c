"""Direct messages over REST: conversations, sending, idempotency, seq without gaps, blocks,
receipts, unread counts, deletion, history, and the outbox event for offline recipients; and a
block inside a group, which hides each one's messages (sent before it too) from the other in
history, sync, the list, unread counts, reactions, replies, edits, receipts and media."""

from __future__ import annotations

import asyncio

from tests.support import bearer, frame_of, new_media, next_frame, open_socket, send, start_conversation, user_and_token


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


# ---------------------------------------------------------------- a block inside a group
# A group keeps two members who blocked each other; each reads a message only while its sender may
# reach them (may_reach, asked at read time): history, sync, the list, unread counts, reactions,
# replies, edits, receipts and media agree with live delivery, for messages sent before the block too.

async def history_of(client, token: str, conversation_id: str, **query) -> list[dict]:
    response = await client.get(f"/api/conversations/{conversation_id}/messages/", params=query, headers=bearer(token))
    assert response.status == 200, await response.text()
    return (await response.json())["results"]


async def group_with_a_block(client) -> tuple[dict, dict, str]:
    """Zed's group with xan and yul; then xan blocks yul. Seqs 1-3 (zed, xan, yul) before the
    block, 4 (zed) and 5 (xan) after. Returns the tokens by name, the ids by name, the group's id."""
    (zed, z), (xan, x), (yul, y) = [await user_and_token(client) for _ in range(3)]
    group = (await start_conversation(client, z, xan["id"], yul["id"], title="three"))["id"]
    for token, client_id, text in ((z, "z1", "hi"), (x, "x1", "x before block"), (y, "y1", "y before block")):
        assert (await send(client, token, group, client_id, text)).status == 201
    blocked = await client.post(f"/api/accounts/users/{yul['id']}/block/", headers=bearer(x))
    assert blocked.status == 204, await blocked.text()
    for token, client_id, text in ((z, "z2", "z after block"), (x, "x2", "x after block")):
        assert (await send(client, token, group, client_id, text)).status == 201
    return {"z": z, "x": x, "y": y}, {"z": zed["id"], "x": xan["id"], "y": yul["id"]}, group


async def sync_frames(client, token: str, conversations: dict, **extra) -> list[dict]:
    """The frames a fresh socket's sync replays, up to its sync.done (included)."""
    ws = await open_socket(client, token)
    await ws.send_json({"type": "sync", "conversations": conversations, "ref": "s", **extra})
    got = []
    while not got or got[-1]["type"] != "sync.done":
        got.append(await next_frame(ws))
    await ws.close()
    return got


async def test_a_block_in_a_group_hides_each_ones_messages_from_the_other_in_history_and_sync(client):
    tokens, _, group = await group_with_a_block(client)
    texts = [m["text"] for m in await history_of(client, tokens["y"], group)]
    assert texts == ["z after block", "y before block", "hi"]
    texts = [m["text"] for m in await history_of(client, tokens["x"], group)]
    assert texts == ["x after block", "z after block", "x before block", "hi"]
    assert [m["seq"] for m in await history_of(client, tokens["z"], group)] == [5, 4, 3, 2, 1]
    # both directions of paging, a page's limit counting only what the reader may read
    assert [m["seq"] for m in await history_of(client, tokens["y"], group, after_seq=1)] == [3, 4]
    page = await client.get(f"/api/conversations/{group}/messages/", params={"limit": 2}, headers=bearer(tokens["y"]))
    body = await page.json()
    assert [m["seq"] for m in body["results"]] == [4, 3] and body["next"]
    older = await (await client.get(body["next"], headers=bearer(tokens["y"]))).json()
    assert [m["seq"] for m in older["results"]] == [1]
    # sync replays what history shows, no more
    replay = await sync_frames(client, tokens["y"], {group: 0})
    assert [f["message"]["seq"] for f in replay if f["type"] == "message.new"] == [1, 3, 4]
    replay = await sync_frames(client, tokens["x"], {group: 1})
    assert [f["message"]["seq"] for f in replay if f["type"] == "message.new"] == [2, 4, 5]


async def test_live_delivery_agrees_with_history_across_a_block(client):
    tokens, ids, group = await group_with_a_block(client)
    y_ws = await open_socket(client, tokens["y"])
    assert (await send(client, tokens["x"], group, "x3", "x live")).status == 201
    assert (await send(client, tokens["z"], group, "z3", "z live")).status == 201
    assert (await frame_of(y_ws, "message.new"))["message"]["text"] == "z live"  # xan's never came
    assert [m["sender_id"] for m in await history_of(client, tokens["y"], group, after_seq=3)] == [ids["z"], ids["z"]]
    await y_ws.close()


async def test_a_block_in_a_group_leaves_the_others_messages_out_of_the_list_and_unread_counts(client):
    tokens, _, group = await group_with_a_block(client)
    [summary] = (await (await client.get("/api/conversations/", headers=bearer(tokens["y"]))).json())["results"]
    assert summary["last_message"]["text"] == "z after block" and summary["last_seq"] == 5
    assert summary["unread_count"] == 1  # read up to 3 by sending; 4 is zed's, 5 is xan's
    detail = await (await client.get(f"/api/conversations/{group}/", headers=bearer(tokens["y"]))).json()
    assert detail["unread_count"] == 1
    # the other way: xan read up to 5 by sending, and yul's 3 is not his to read
    [summary] = (await (await client.get("/api/conversations/", headers=bearer(tokens["x"]))).json())["results"]
    assert summary["last_message"]["text"] == "x after block" and summary["unread_count"] == 0


async def test_a_conversation_whose_only_messages_are_from_someone_you_blocked_has_no_last_message(client):
    (zed, z), (xan, x), (yul, y) = [await user_and_token(client) for _ in range(3)]
    group = (await start_conversation(client, z, xan["id"], yul["id"]))["id"]
    assert (await send(client, y, group, "y1", "only yul")).status == 201
    assert (await client.post(f"/api/accounts/users/{yul['id']}/block/", headers=bearer(x))).status == 204
    [summary] = (await (await client.get("/api/conversations/?folder=requests", headers=bearer(x))).json())["results"]
    assert summary["last_message"] is None and summary["unread_count"] == 0 and summary["last_seq"] == 1
    assert await history_of(client, x, group) == []


async def conversations_of(client, token: str, **query) -> list[dict]:
    response = await client.get("/api/conversations/", params=query, headers=bearer(token))
    assert response.status == 200, await response.text()
    return (await response.json())["results"]


async def test_a_message_hidden_from_the_reader_neither_moves_their_conversation_up_nor_dates_it(client):
    tokens, ids, group = await group_with_a_block(client)
    direct = (await start_conversation(client, tokens["y"], ids["z"]))["id"]
    assert (await send(client, tokens["y"], direct, "yz", "later, one to one")).status == 201
    assert (await send(client, tokens["z"], direct, "zy", "answered")).status == 201  # zed accepts it
    [seen_last] = [m for m in await history_of(client, tokens["y"], group) if m["seq"] == 4]  # zed's, after the block
    assert [c["id"] for c in await conversations_of(client, tokens["y"])] == [direct, group]
    # xan, whom yul is kept from, writes in the group: it moves up for zed, and stays put for yul
    assert (await send(client, tokens["x"], group, "x3", "x later still")).status == 201
    assert [c["id"] for c in await conversations_of(client, tokens["z"])] == [group, direct]
    listed = await conversations_of(client, tokens["y"])
    assert [c["id"] for c in listed] == [direct, group]
    assert listed[1]["last_message_at"] == seen_last["created_at"] and listed[1]["last_message"]["seq"] == 4
    detail = await (await client.get(f"/api/conversations/{group}/", headers=bearer(tokens["y"]))).json()
    assert detail["last_message_at"] == seen_last["created_at"]
    # pages follow the same order: the cursor is the reader's last activity too
    first = await (await client.get("/api/conversations/", params={"limit": 1}, headers=bearer(tokens["y"]))).json()
    second = await (await client.get(first["next"], headers=bearer(tokens["y"]))).json()
    assert [c["id"] for c in first["results"] + second["results"]] == [direct, group] and second["next"] is None


async def test_a_conversation_holding_only_messages_hidden_from_the_reader_was_last_active_when_made(client):
    (zed, z), (xan, x), (yul, y) = [await user_and_token(client) for _ in range(3)]
    made = await start_conversation(client, z, xan["id"], yul["id"])
    assert (await client.post(f"/api/accounts/users/{yul['id']}/block/", headers=bearer(x))).status == 204
    assert (await send(client, y, made["id"], "y1", "only yul")).status == 201
    [summary] = await conversations_of(client, x, folder="requests")
    assert summary["last_message"] is None and summary["last_message_at"] == made["created_at"]


async def test_a_reply_to_a_message_hidden_from_the_reader_is_no_reply_for_them(client):
    """Zed answers xan's message (5, after the block) and yul's (3): yul reads zed's answer to xan
    as no reply, xan zed's answer to yul, in history, sync, the list, live delivery and edits; zed
    and the replied-to sender see both replies."""
    tokens, ids, group = await group_with_a_block(client)
    sockets = {n: await open_socket(client, tokens[n]) for n in "xyz"}

    async def live_reply(name: str, frame_type: str, seq: int) -> int | None:
        while (frame := await frame_of(sockets[name], frame_type))["message"]["seq"] != seq:
            pass
        return frame["message"]["reply_to_seq"]

    assert (await send(client, tokens["z"], group, "z-re-x", "re x", reply_to_seq=5)).status == 201
    assert {n: await live_reply(n, "message.new", 6) for n in "xyz"} == {"x": 5, "y": None, "z": 5}
    assert (await send(client, tokens["z"], group, "z-re-y", "re y", reply_to_seq=3)).status == 201
    assert {n: await live_reply(n, "message.new", 7) for n in "xyz"} == {"x": None, "y": 3, "z": 3}

    def replies(messages: list[dict]) -> dict[int, int | None]:
        return {m["seq"]: m["reply_to_seq"] for m in messages if m["seq"] in (6, 7)}

    expected = {"x": {6: 5, 7: None}, "y": {6: None, 7: 3}, "z": {6: 5, 7: 3}}
    for n in "xyz":
        assert replies(await history_of(client, tokens[n], group)) == expected[n]
        replay = await sync_frames(client, tokens[n], {group: 5})
        assert replies([f["message"] for f in replay if f["type"] == "message.new"]) == expected[n]
    [summary] = await conversations_of(client, tokens["x"])
    assert (summary["last_message"]["seq"], summary["last_message"]["reply_to_seq"]) == (7, None)
    # an edit's frame is rendered for each member too
    assert (await client.patch(f"/api/conversations/{group}/messages/6/", json={"text": "re x!"},
                               headers=bearer(tokens["z"]))).status == 200
    assert {n: await live_reply(n, "message.edited", 6) for n in "xyz"} == {"x": 5, "y": None, "z": 5}
    for ws in sockets.values():
        await ws.close()


async def test_reactions_replies_and_edits_show_nothing_across_a_block(client):
    tokens, ids, group = await group_with_a_block(client)
    url = f"/api/conversations/{group}/messages/"
    x_ws, y_ws, z_ws = [await open_socket(client, tokens[n]) for n in "xyz"]
    counter = (await sync_frames(client, tokens["y"], {group: 5}))[-1]["changes"][group]
    # yul's reaction to zed's message is not shown to xan; zed sees it
    assert (await client.post(url + "1/reactions/", json={"emoji": "👍"}, headers=bearer(tokens["y"]))).status == 204
    [hi] = [m for m in await history_of(client, tokens["x"], group) if m["seq"] == 1]
    assert hi["reactions"] == []
    [hi] = [m for m in await history_of(client, tokens["z"], group) if m["seq"] == 1]
    assert hi["reactions"] == [{"user_id": ids["y"], "emoji": "👍"}]
    # a message yul may not read is no message for yul: no reaction, no reply, no delete
    assert (await client.post(url + "5/reactions/", json={"emoji": "👎"}, headers=bearer(tokens["y"]))).status == 404
    assert (await send(client, tokens["y"], group, "re", "re", reply_to_seq=2)).status == 400
    assert (await client.delete(url + "2/", headers=bearer(tokens["y"]))).status == 404
    # zed's reaction to xan's message and xan's edit of it reach zed, and never yul: not live, not in sync
    assert (await client.post(url + "5/reactions/", json={"emoji": "🔥"}, headers=bearer(tokens["z"]))).status == 204
    assert (await client.patch(url + "5/", json={"text": "x after block, edited"},
                               headers=bearer(tokens["x"]))).status == 200
    assert (await frame_of(z_ws, "message.reaction", seq=5))["emoji"] == "🔥"
    assert (await frame_of(z_ws, "message.edited"))["message"]["text"] == "x after block, edited"
    assert (await client.post(url + "4/reactions/", json={"emoji": "✅"}, headers=bearer(tokens["z"]))).status == 204
    seen = [await next_frame(y_ws)]
    while not (seen[-1]["type"] == "message.reaction" and seen[-1]["seq"] == 4):
        seen.append(await next_frame(y_ws))
    about_messages = [(f["type"], f.get("seq")) for f in seen if f["type"].startswith("message.")]
    assert about_messages == [("message.reaction", 1), ("message.reaction", 4)]
    replay = await sync_frames(client, tokens["y"], {group: 5}, changes={group: counter})
    assert [f["message"]["seq"] for f in replay if f["type"] == "message.edited"] == [1, 4]
    # an edit's frame carries to each member only the reactions they may see
    assert (await client.patch(url + "1/", json={"text": "hi!"}, headers=bearer(tokens["z"]))).status == 200

    async def edited(ws) -> dict:
        while (frame := await frame_of(ws, "message.edited"))["message"]["seq"] != 1:
            pass
        return frame["message"]

    assert (await edited(x_ws))["reactions"] == []
    assert (await edited(z_ws))["reactions"] == [{"user_id": ids["y"], "emoji": "👍"}]
    for ws in (x_ws, y_ws, z_ws):
        await ws.close()


async def test_receipts_and_deletions_do_not_cross_a_block(client):
    tokens, ids, group = await group_with_a_block(client)
    x_ws = await open_socket(client, tokens["x"])
    y_ws = await open_socket(client, tokens["y"])
    # yul reads, then zed does: xan hears of zed's read only
    assert (await client.post(f"/api/conversations/{group}/read/", json={"seq": 4},
                              headers=bearer(tokens["y"]))).status == 204
    assert (await client.post(f"/api/conversations/{group}/read/", json={"seq": 5},
                              headers=bearer(tokens["z"]))).status == 204
    seen = []
    while not seen or seen[-1].get("user_id") != ids["z"]:
        seen.append(await frame_of(x_ws, "message.read"))
    assert [f["user_id"] for f in seen] == [ids["z"]]
    # xan deletes his message: yul, who never saw it, is not told before zed's next message comes
    assert (await client.delete(f"/api/conversations/{group}/messages/5/", headers=bearer(tokens["x"]))).status == 204
    assert (await send(client, tokens["z"], group, "z9", "after the delete")).status == 201
    seen = [await next_frame(y_ws)]
    while seen[-1]["type"] != "message.new":
        seen.append(await next_frame(y_ws))
    assert "message.deleted" not in [f["type"] for f in seen] and seen[-1]["message"]["text"] == "after the delete"
    await x_ws.close()
    await y_ws.close()


async def test_media_sent_by_someone_you_blocked_is_not_yours_to_fetch(client):
    tokens, _, group = await group_with_a_block(client)
    [media_id] = await new_media(client, bearer(tokens["x"]))
    assert (await send(client, tokens["x"], group, "pic", "", media_id=media_id)).status == 201
    assert (await client.get(f"/api/media/{media_id}/", headers=bearer(tokens["z"]))).status == 200
    assert (await client.get(f"/api/media/{media_id}/", headers=bearer(tokens["y"]))).status == 404


async def test_lifting_the_block_shows_the_messages_again(client):
    tokens, ids, group = await group_with_a_block(client)
    assert (await client.post(f"/api/accounts/users/{ids['y']}/unblock/", headers=bearer(tokens["x"]))).status == 204
    assert [m["seq"] for m in await history_of(client, tokens["y"], group)] == [5, 4, 3, 2, 1]
    assert [m["seq"] for m in await history_of(client, tokens["x"], group)] == [5, 4, 3, 2, 1]
