"""Direct messages beyond sending: reactions (one per member, replaced, taken back) and edits (the
sender's own text, within the window) over frames and REST, carried in history and caught up by
`sync`; the notification for a reaction to your message; shares rendered per member; message
requests, mute and pin; unread counts under concurrent reads; the OpenAPI document."""

from __future__ import annotations

import asyncio

from tests.support import (
    bearer, frame_of, open_socket, send, start_conversation, user_and_token, wait_notifications,
)


async def history(client, token: str, conversation_id: str) -> list[dict]:
    response = await client.get(f"/api/conversations/{conversation_id}/messages/", headers=bearer(token))
    assert response.status == 200, await response.text()
    return (await response.json())["results"]


async def test_one_reaction_per_member_replaced_and_taken_back_reaching_every_member(client):
    (ana, ana_token), (bob, bob_token) = await user_and_token(client), await user_and_token(client)
    conv = await start_conversation(client, ana_token, bob["id"])
    assert (await send(client, ana_token, conv["id"], "m1")).status == 201
    ana_ws, bob_ws = await open_socket(client, ana_token), await open_socket(client, bob_token)
    await bob_ws.send_json({"type": "message.react", "conversation_id": conv["id"], "seq": 1, "emoji": "🔥"})
    for ws in (ana_ws, bob_ws):
        got = await frame_of(ws, "message.reaction")
        assert (got["conversation_id"], got["seq"], got["user_id"], got["emoji"]) == (conv["id"], 1, bob["id"], "🔥")
    # a new one replaces it (REST twin)
    url = f"/api/conversations/{conv['id']}/messages/1/reactions/"
    assert (await client.post(url, json={"emoji": "😂"}, headers=bearer(bob_token))).status == 204
    assert (await frame_of(ana_ws, "message.reaction"))["emoji"] == "😂"
    [message] = await history(client, ana_token, conv["id"])
    assert message["reactions"] == [{"user_id": bob["id"], "emoji": "😂"}]
    await ana_ws.send_json({"type": "message.unreact", "conversation_id": conv["id"], "seq": 1, "ref": 7})
    await bob_ws.send_json({"type": "message.unreact", "conversation_id": conv["id"], "seq": 1})
    assert (await frame_of(ana_ws, "message.reaction", user_id=bob["id"]))["emoji"] is None
    assert (await history(client, ana_token, conv["id"]))[0]["reactions"] == []
    # hostile input: not a member, no such message, blank emoji, too long, text that is not one emoji
    cy, cy_token = await user_and_token(client)
    assert (await client.post(url, json={"emoji": "🔥"}, headers=bearer(cy_token))).status == 404
    missing = f"/api/conversations/{conv['id']}/messages/99/reactions/"
    assert (await client.post(missing, json={"emoji": "🔥"}, headers=bearer(bob_token))).status == 404
    for bad in (" ", "x" * 40, "x", "NaN", "a\u202eb\u200b", "🔥🔥", " 🔥"):
        assert (await client.post(url, json={"emoji": bad}, headers=bearer(bob_token))).status == 400, bad
    await bob_ws.send_json({"type": "message.react", "conversation_id": conv["id"], "seq": 1, "emoji": "NaN", "ref": 9})
    assert (await frame_of(bob_ws, "error", ref=9))["code"] == "validation_error"
    assert (await history(client, ana_token, conv["id"]))[0]["reactions"] == []
    await ana_ws.close()
    await bob_ws.close()


async def test_the_sender_edits_their_own_text_within_the_window_only(client, pool):
    (ana, ana_token), (bob, bob_token) = await user_and_token(client), await user_and_token(client)
    conv = await start_conversation(client, ana_token, bob["id"])
    await send(client, ana_token, conv["id"], "m1", text="helo")
    await send(client, ana_token, conv["id"], "m2", text="old")
    bob_ws = await open_socket(client, bob_token)
    ana_ws = await open_socket(client, ana_token)
    await ana_ws.send_json({"type": "message.edit", "conversation_id": conv["id"], "seq": 1, "text": "hello"})
    edited = (await frame_of(bob_ws, "message.edited"))["message"]
    assert (edited["seq"], edited["text"]) == (1, "hello") and edited["edited_at"]
    url = f"/api/conversations/{conv['id']}/messages/"
    response = await client.patch(url + "1/", json={"text": "hello!"}, headers=bearer(ana_token))
    assert response.status == 200 and (await response.json())["text"] == "hello!"
    assert (await client.patch(url + "1/", json={"text": "mine"}, headers=bearer(bob_token))).status == 403
    assert (await client.patch(url + "1/", json={"text": "  "}, headers=bearer(ana_token))).status == 400
    assert (await client.patch(url + "9/", json={"text": "x"}, headers=bearer(ana_token))).status == 404
    await bob_ws.send_json({"type": "message.edit", "conversation_id": conv["id"], "seq": 1, "text": "x", "ref": "e"})
    assert (await frame_of(bob_ws, "error", ref="e"))["code"] == "forbidden"
    await pool.execute("UPDATE messages SET created_at = now() - interval '16 minutes' WHERE seq = 2"
                       " AND conversation_id = $1", int(conv["id"]))
    late = await client.patch(url + "2/", json={"text": "new"}, headers=bearer(ana_token))
    assert late.status == 403 and (await late.json())["error"]["code"] == "edit_window_closed"
    first, = [m for m in await history(client, bob_token, conv["id"]) if m["seq"] == 1]
    assert first["text"] == "hello!" and first["edited_at"]
    await ana_ws.close()
    await bob_ws.close()


async def test_sync_catches_up_on_edits_and_reactions_made_while_offline(client):
    (ana, ana_token), (bob, bob_token) = await user_and_token(client), await user_and_token(client)
    conv = await start_conversation(client, ana_token, bob["id"])
    for n in range(3):
        await send(client, ana_token, conv["id"], f"m{n}", text=f"t{n}")
    bob_ws = await open_socket(client, bob_token)
    await bob_ws.send_json({"type": "sync", "conversations": {conv["id"]: 3}, "ref": 1})
    done = await frame_of(bob_ws, "sync.done")
    counter = done["changes"][conv["id"]]
    await bob_ws.close()
    # offline: an edit and a reaction to messages bob already holds
    base = f"/api/conversations/{conv['id']}/messages/"
    assert (await client.patch(base + "2/", json={"text": "t1 fixed"}, headers=bearer(ana_token))).status == 200
    assert (await client.post(base + "3/reactions/", json={"emoji": "👍"}, headers=bearer(ana_token))).status == 204
    bob_ws = await open_socket(client, bob_token)
    await bob_ws.send_json({"type": "sync", "conversations": {conv["id"]: 3}, "changes": {conv["id"]: counter},
                            "ref": 2})
    changed = {}
    for _ in range(2):
        frame = await frame_of(bob_ws, "message.edited")
        changed[frame["message"]["seq"]] = frame["message"]
    assert changed[2]["text"] == "t1 fixed"
    assert changed[3]["reactions"] == [{"user_id": ana["id"], "emoji": "👍"}]
    done = await frame_of(bob_ws, "sync.done", ref=2)
    assert done["changes"][conv["id"]] == counter + 2
    # nothing changed since: no replay
    await bob_ws.send_json({"type": "sync", "conversations": {conv["id"]: 3}, "changes": done["changes"], "ref": 3})
    assert (await frame_of(bob_ws, "sync.done"))["ref"] == 3
    await bob_ws.close()


async def test_a_reaction_to_your_message_notifies_you(client):
    (ana, ana_token), (bob, bob_token) = await user_and_token(client), await user_and_token(client)
    conv = await start_conversation(client, ana_token, bob["id"])
    await send(client, ana_token, conv["id"], "m1")
    url = f"/api/conversations/{conv['id']}/messages/1/reactions/"
    assert (await client.post(url, json={"emoji": "❤️"}, headers=bearer(bob_token))).status == 204
    assert (await client.post(url, json={"emoji": "❤️"}, headers=bearer(ana_token))).status == 204  # own: no note
    [note] = await wait_notifications(client, bearer(ana_token), 1)
    assert (note["kind"], note["text"], note["target"]["type"], note["target"]["id"]) == (
        "message_reaction", "❤️", "conversation", conv["id"])
    assert note["actors"][0]["id"] == bob["id"]


async def test_a_share_is_rendered_for_each_member_by_the_visibility_policy(client, pool):
    (ana, ana_token), (bob, bob_token), (pat, _), (dan, _) = [await user_and_token(client) for _ in range(4)]
    await pool.execute("UPDATE users SET is_private = true WHERE id = $1", int(pat["id"]))
    await pool.execute("INSERT INTO follows (follower_id, followee_id) VALUES ($1, $2)", int(ana["id"]), int(pat["id"]))
    await pool.execute("INSERT INTO blocks (blocker_id, blocked_id) VALUES ($1, $2)", int(dan["id"]), int(bob["id"]))
    post = await pool.fetchval("INSERT INTO posts (author_id, caption) VALUES ($1, 'private view') RETURNING id",
                               int(pat["id"]))
    conv = await start_conversation(client, ana_token, bob["id"])
    bob_ws = await open_socket(client, bob_token)
    ana_ws = await open_socket(client, ana_token)
    await ana_ws.send_json({"type": "message.send", "conversation_id": conv["id"], "client_id": "s1", "ref": 1,
                            "share": {"type": "post", "id": str(post)}})
    ack = await frame_of(ana_ws, "message.ack", ref=1)
    assert ack["message"]["share"] == {"type": "post", "id": str(post), "caption": "private view",
                                       "author_id": pat["id"]}
    new = await frame_of(bob_ws, "message.new")
    assert new["message"]["share"] == {"type": "post", "id": str(post), "available": False, "unavailable": True}
    # a profile, over REST: dan blocked bob, so bob may not be shown dan
    response = await send(client, ana_token, conv["id"], "s2", text="", share={"type": "user", "id": dan["id"]})
    assert response.status == 201, await response.text()
    assert (await response.json())["share"]["username"] == dan["username"]
    shared = {m["seq"]: m["share"] for m in await history(client, bob_token, conv["id"])}
    assert shared[2] == {"type": "user", "id": dan["id"], "available": False, "unavailable": True}
    assert shared[1]["unavailable"] is True
    mine = {m["seq"]: m["share"] for m in await history(client, ana_token, conv["id"])}
    assert mine[1]["caption"] == "private view" and mine[2]["username"] == dan["username"]
    # what the sender may not see cannot be shared; a share is not editable
    bad = await send(client, bob_token, conv["id"], "s3", text="", share={"type": "post", "id": str(post)})
    assert bad.status == 400 and "share" in (await bad.json())["error"]["fields"]
    for share in ({"type": "story", "id": "123"}, {"type": "place", "id": "1"}, {"type": "post", "id": "x"}):
        assert (await send(client, ana_token, conv["id"], "s4", text="", share=share)).status == 400
    edit = await client.patch(f"/api/conversations/{conv['id']}/messages/1/", json={"text": "x"},
                              headers=bearer(ana_token))
    assert edit.status == 400
    await ana_ws.close()
    await bob_ws.close()


async def follow(pool, follower: dict, followee: dict) -> None:
    await pool.execute("INSERT INTO follows (follower_id, followee_id) VALUES ($1, $2)", int(follower["id"]),
                       int(followee["id"]))


async def folder(client, token: str, name: str) -> list[dict]:
    response = await client.get("/api/conversations/", params={"folder": name}, headers=bearer(token))
    assert response.status == 200, await response.text()
    return (await response.json())["results"]


async def pushed_to(pool, marker_conv: str) -> set[str]:
    """Everyone a message_sent event named, once the marker conversation's event (sent last) is in:
    the writer records events batch after batch, so every earlier one is in too."""
    from tests.conftest import wait_for

    async def marker():
        return await pool.fetchval("SELECT count(*) FROM outbox WHERE type = 'message_sent'"
                                   " AND payload->>'conversation_id' = $1", marker_conv)
    await wait_for(marker)
    rows = await pool.fetch("SELECT payload FROM outbox WHERE type = 'message_sent'")
    return {r for row in rows for r in row["payload"]["recipient_ids"]}


async def test_message_requests_accepting_declining_and_no_push_until_accepted(client, pool):
    (ana, ana_token), (bob, bob_token), (cy, cy_token), (dan, dan_token) = [
        await user_and_token(client) for _ in range(4)]
    await follow(pool, dan, cy)
    conv = await start_conversation(client, ana_token, bob["id"])  # bob does not follow ana: a request
    assert conv["request"] is False  # the sender sees nothing different
    await send(client, ana_token, conv["id"], "r1", text="hi bob")
    assert [c["id"] for c in await folder(client, bob_token, "requests")] == [conv["id"]]
    assert await folder(client, bob_token, "inbox") == []
    assert [c["id"] for c in await folder(client, ana_token, "inbox")] == [conv["id"]]
    marker = await start_conversation(client, cy_token, dan["id"])  # dan follows cy: no request
    await send(client, cy_token, marker["id"], "mark1")
    assert bob["id"] not in await pushed_to(pool, marker["id"])
    # the history reaches bob as usual; accepting moves it to the inbox and pushes again
    [message] = await history(client, bob_token, conv["id"])
    assert message["text"] == "hi bob"
    accepted = await client.post(f"/api/conversations/{conv['id']}/accept/", headers=bearer(bob_token))
    assert accepted.status == 200 and (await accepted.json())["request"] is False
    assert [c["id"] for c in await folder(client, bob_token, "inbox")] == [conv["id"]]
    await send(client, ana_token, conv["id"], "r2")
    other = await start_conversation(client, dan_token, cy["id"])
    await send(client, dan_token, other["id"], "mark2")
    assert bob["id"] in await pushed_to(pool, other["id"])
    # declining takes it out of both folders; cy sees no difference and may still write
    request = await start_conversation(client, cy_token, bob["id"])
    await send(client, cy_token, request["id"], "c1")
    assert (await client.delete(f"/api/conversations/{request['id']}/", headers=bearer(bob_token))).status == 204
    assert request["id"] not in {c["id"] for f in ("inbox", "requests") for c in await folder(client, bob_token, f)}
    assert request["id"] in {c["id"] for c in await folder(client, cy_token, "inbox")}
    assert (await send(client, cy_token, request["id"], "c2")).status == 201
    assert (await client.delete(f"/api/conversations/{request['id']}/", headers=bearer(dan_token))).status == 404
    bad = await client.get("/api/conversations/", params={"folder": "spam"}, headers=bearer(bob_token))
    assert bad.status == 400


async def test_muted_conversations_deliver_without_push_and_pinned_ones_list_first(client, pool):
    (ana, ana_token), (bob, bob_token), (cy, cy_token) = [await user_and_token(client) for _ in range(3)]
    await follow(pool, bob, ana)
    await follow(pool, bob, cy)
    first = await start_conversation(client, ana_token, bob["id"])
    await send(client, ana_token, first["id"], "p1")
    second = await start_conversation(client, cy_token, bob["id"])
    await send(client, cy_token, second["id"], "p2")
    url = f"/api/conversations/{first['id']}/"
    muted = await client.patch(url, json={"muted": True, "pinned": True}, headers=bearer(bob_token))
    assert muted.status == 200, await muted.text()
    assert (await muted.json())["muted"] is True and (await muted.json())["pinned"] is True
    listed = await folder(client, bob_token, "inbox")
    assert [c["id"] for c in listed] == [first["id"], second["id"]] and listed[0]["pinned"]
    await send(client, ana_token, first["id"], "p3", text="muted one")
    group = await start_conversation(client, cy_token, bob["id"], ana["id"], title="t")
    await send(client, cy_token, group["id"], "mark")
    recorded = await pool.fetch("SELECT payload FROM outbox WHERE type = 'message_sent'")
    assert not [r for r in recorded if r["payload"]["conversation_id"] == first["id"] and r["payload"]["seq"] == 2]
    assert bob["id"] in await pushed_to(pool, group["id"])
    assert [m["text"] for m in await history(client, bob_token, first["id"])][0] == "muted one"
    # titles are a group's; hostile bodies are 400
    assert (await client.patch(url, json={"title": "x"}, headers=bearer(bob_token))).status == 400
    renamed = await client.patch(f"/api/conversations/{group['id']}/", json={"title": "trip"}, headers=bearer(ana_token))
    assert renamed.status == 200 and (await renamed.json())["title"] == "trip"
    for body in ({"muted": "yes"}, {"colour": "red"}, [1]):
        assert (await client.patch(url, json=body, headers=bearer(bob_token))).status == 400
    assert (await client.patch(url, json={"pinned": False}, headers=bearer(bob_token))).status == 200
    assert [c["id"] for c in await folder(client, bob_token, "inbox")][0] == group["id"]


async def test_unread_counts_stay_exact_under_concurrent_reads_from_two_devices(client):
    (ana, ana_token), (bob, bob_token) = await user_and_token(client), await user_and_token(client)
    conv = await start_conversation(client, ana_token, bob["id"])
    for n in range(12):
        await send(client, ana_token, conv["id"], f"u{n}")
    phone, laptop = await open_socket(client, bob_token), await open_socket(client, bob_token)
    reads = [(phone, s) for s in (3, 9, 5, 7)] + [(laptop, s) for s in (8, 2, 9, 4)]
    for ws, seq in reads:
        await ws.send_json({"type": "message.read", "conversation_id": conv["id"], "seq": seq})
    await asyncio.gather(*(client.post(f"/api/conversations/{conv['id']}/read/", json={"seq": s},
                                       headers=bearer(bob_token)) for s in (6, 1, 9)))
    from tests.conftest import wait_for

    async def unread_is(n: int) -> bool:
        response = await client.get(f"/api/conversations/{conv['id']}/", headers=bearer(bob_token))
        body = await response.json()
        return body["unread_count"] == n and body["read_seq"] == 12 - n

    await wait_for(lambda: unread_is(3))
    [listed] = await folder(client, bob_token, "requests")
    assert listed["unread_count"] == 3
    await phone.close()
    await laptop.close()


async def test_the_openapi_document_has_the_new_routes_and_frames(client):
    document = await (await client.get("/api/openapi.json")).json()
    paths, schemas = document["paths"], document["components"]["schemas"]
    assert {"post", "delete"} <= set(paths["/api/conversations/{id}/messages/{seq}/reactions/"])
    assert "patch" in paths["/api/conversations/{id}/messages/{seq}/"]
    assert {"patch", "delete"} <= set(paths["/api/conversations/{id}/"])
    assert "post" in paths["/api/conversations/{id}/accept/"]
    assert paths["/ws"]["get"]["x-websocket-frames"]["client"] == {"$ref": "#/components/schemas/ClientFrame"}
    client_frames = {ref["$ref"].rsplit("/", 1)[1] for ref in schemas["ClientFrame"]["anyOf"]}
    server_frames = {ref["$ref"].rsplit("/", 1)[1] for ref in schemas["ServerFrame"]["anyOf"]}
    assert {"ReactMessage", "UnreactMessage", "EditMessage", "SendMessage"} <= client_frames
    assert {"MessageReaction", "MessageEdited", "SyncDone"} <= server_frames
    assert {"reactions", "edited_at", "share", "change_seq"} <= set(schemas["Message"]["properties"])
