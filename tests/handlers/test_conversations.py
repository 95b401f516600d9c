"""Conversations over REST: a conversation with no messages yet in every list, detail and creation
response (its `last_message` is null, as the OpenAPI document says), and starting one with
repeated ids or one's own id."""

from __future__ import annotations

from tests.support import bearer, send, start_conversation, user_and_token


async def folder(client, token: str, name: str = "inbox") -> list[dict]:
    response = await client.get("/api/conversations/", params={"folder": name}, headers=bearer(token))
    assert response.status == 200, await response.text()
    return (await response.json())["results"]


async def follow(pool, follower: dict, followee: dict) -> None:
    await pool.execute("INSERT INTO follows (follower_id, followee_id) VALUES ($1, $2)",
                       int(follower["id"]), int(followee["id"]))


async def test_a_conversation_without_messages_lists_with_a_null_last_message(client, pool):
    (ana, ana_token), (bob, bob_token), (cy, cy_token) = [await user_and_token(client) for _ in range(3)]
    await follow(pool, cy, ana)
    direct = await start_conversation(client, ana_token, bob["id"])  # bob does not follow ana: a request
    group = await start_conversation(client, ana_token, bob["id"], cy["id"], title="empty")
    assert direct["unread_count"] == 0 and direct["last_seq"] == 0 and direct["last_message_at"]
    requests = await folder(client, bob_token, "requests")
    assert {c["id"] for c in requests} == {direct["id"], group["id"]}
    assert all(c["last_message"] is None and c["unread_count"] == 0 and c["request"] for c in requests)
    listed = {c["id"]: c for c in await folder(client, ana_token)}
    assert set(listed) == {direct["id"], group["id"]}
    assert all(c["last_message"] is None and c["last_seq"] == 0 for c in listed.values())
    [cy_group] = await folder(client, cy_token)
    assert cy_group["id"] == group["id"] and cy_group["last_message"] is None
    # pinned ones are listed by another query: the same holds there
    pinned = await client.patch(f"/api/conversations/{group['id']}/", json={"pinned": True}, headers=bearer(cy_token))
    assert pinned.status == 200 and (await pinned.json())["last_seq"] == 0
    [cy_group] = await folder(client, cy_token)
    assert cy_group["pinned"] and cy_group["last_message"] is None
    # the first message fills it in
    assert (await send(client, cy_token, group["id"], "first", text="at last")).status == 201
    [cy_group] = await folder(client, cy_token)
    assert cy_group["last_message"]["text"] == "at last"
    assert {c["id"]: c["last_message"] for c in await folder(client, ana_token)}[direct["id"]] is None


async def test_the_openapi_document_says_a_summary_may_have_no_last_message(client):
    document = await (await client.get("/api/openapi.json")).json()
    last = document["components"]["schemas"]["ConversationSummary"]["properties"]["last_message"]
    assert {"type": "null"} in last["anyOf"] and {"$ref": "#/components/schemas/Message"} in last["anyOf"]
    assert "null" in last["description"]


async def test_repeated_ids_and_ones_own_id_start_the_one_to_one(client, pool):
    (ana, ana_token), (bob, bob_token) = await user_and_token(client), await user_and_token(client)
    first = await client.post("/api/conversations/", json={"member_ids": [bob["id"], bob["id"]]},
                              headers=bearer(ana_token))
    assert first.status == 201, await first.text()
    direct = await first.json()
    assert direct["kind"] == "direct" and len(direct["members"]) == 2
    for member_ids in ([ana["id"], bob["id"]], [bob["id"], ana["id"], bob["id"]], [bob["id"]]):
        again = await client.post("/api/conversations/", json={"member_ids": member_ids}, headers=bearer(ana_token))
        assert again.status == 200 and (await again.json())["id"] == direct["id"], member_ids
    from_bob = await client.post("/api/conversations/", json={"member_ids": [ana["id"], bob["id"], ana["id"]]},
                                 headers=bearer(bob_token))
    assert from_bob.status == 200 and (await from_bob.json())["id"] == direct["id"]
    assert await pool.fetchval("SELECT count(*) FROM conversations") == 1


async def test_an_empty_list_or_only_oneself_is_a_400_naming_member_ids(client, pool):
    ana, token = await user_and_token(client)
    for member_ids in ([], [ana["id"]], [ana["id"], ana["id"]]):
        response = await client.post("/api/conversations/", json={"member_ids": member_ids}, headers=bearer(token))
        assert response.status == 400, member_ids
        error = (await response.json())["error"]
        assert error["code"] == "validation_error" and "member_ids" in error["fields"], error
        assert error["message"].startswith("member_ids")
    assert await pool.fetchval("SELECT count(*) FROM conversations") == 0
