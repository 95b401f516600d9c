"""Conversations over REST: a conversation with no messages yet in every list, detail and creation
response (its `last_message` is null, as the OpenAPI document says), starting one with repeated
ids or one's own id, and the members' briefs (names and avatar links) the list and the detail
carry, never of someone the viewer may not be shown."""

from __future__ import annotations

from tests.handlers.test_avatars import with_avatar
from tests.support import bearer, send, start_conversation, user_and_token, user_with_token


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


async def listed(client, headers) -> dict[str, dict]:
    """Both folders' conversations by id."""
    found = {}
    for name in ("inbox", "requests"):
        response = await client.get("/api/conversations/", params={"folder": name}, headers=headers)
        assert response.status == 200, await response.text()
        found |= {c["id"]: c for c in (await response.json())["results"]}
    return found


async def new_conversation(client, headers, *members: dict) -> dict:
    """A new conversation started by the holder of `headers`: the 1:1 with one member, else a group."""
    response = await client.post("/api/conversations/", json={"member_ids": [m["id"] for m in members]},
                                 headers=headers)
    assert response.status == 201, await response.text()
    return await response.json()


async def test_the_list_names_up_to_three_other_members_in_joining_order_with_their_avatars(client):
    ana, ana_h = await user_with_token(client)
    face, face_h = await with_avatar(client)
    others = [(await user_with_token(client))[0] for _ in range(3)]
    group = await new_conversation(client, ana_h, *others)
    added = await client.post(f"/api/conversations/{group['id']}/members/", json={"user_ids": [face["id"]]},
                              headers=ana_h)
    assert added.status == 200, await added.text()
    direct = await new_conversation(client, face_h, ana)

    mine = await listed(client, ana_h)
    # the group's first three others by joining order (one transaction: by id), never the viewer;
    # the one added later is fourth, so not named, while member_ids still has everyone
    by_id = sorted(others, key=lambda u: int(u["id"]))
    assert [u["id"] for u in mine[group["id"]]["users"]] == [u["id"] for u in by_id]
    assert set(mine[group["id"]]["member_ids"]) == {ana["id"], face["id"], *(u["id"] for u in others)}
    for brief in mine[group["id"]]["users"]:
        assert set(brief) == {"id", "username", "full_name", "is_verified", "avatar_url"}
        assert brief["avatar_url"] is None
    [face_brief] = mine[direct["id"]]["users"]
    assert face_brief["id"] == face["id"] and face_brief["username"] == face["username"]
    assert face_brief["avatar_url"] and face_brief["avatar_url"].endswith("/150.webp")
    # the other side names ana, who has no avatar; the group is a request for face (who follows no one)
    theirs = await listed(client, face_h)
    assert [u["id"] for u in theirs[direct["id"]]["users"]] == [ana["id"]]
    assert [u["id"] for u in theirs[group["id"]]["users"]] == [ana["id"], *(u["id"] for u in by_id[:2])]
    # pinned ones are listed by another query: the same briefs there
    assert (await client.patch(f"/api/conversations/{group['id']}/", json={"pinned": True},
                               headers=ana_h)).status == 200
    assert (await listed(client, ana_h))[group["id"]]["users"] == mine[group["id"]]["users"]


async def test_the_detail_gives_each_member_their_brief(client):
    ana, ana_h = await user_with_token(client)
    face, _ = await with_avatar(client)
    bob, _ = await user_with_token(client)
    created = await new_conversation(client, ana_h, face, bob)
    fetched = await client.get(f"/api/conversations/{created['id']}/", headers=ana_h)
    assert fetched.status == 200
    for detail in (created, await fetched.json()):
        members = {m["user_id"]: m for m in detail["members"]}
        assert set(members) == {ana["id"], face["id"], bob["id"]}
        for user in (ana, face, bob):
            brief = members[user["id"]]["user"]
            assert brief["id"] == user["id"] and brief["username"] == user["username"]
            assert members[user["id"]]["read_seq"] == 0
        assert members[face["id"]]["user"]["avatar_url"].endswith("/150.webp")
        assert members[bob["id"]]["user"]["avatar_url"] is None


async def test_a_member_the_viewer_may_not_be_shown_has_no_brief(client, pool):
    ana, ana_h = await user_with_token(client)
    blocker, blocker_h = await with_avatar(client)
    blocked, _ = await with_avatar(client)
    gone, _ = await user_with_token(client)
    rest = [(await user_with_token(client))[0] for _ in range(2)]
    group = await new_conversation(client, ana_h, blocker, blocked, gone, *rest)
    assert (await client.post(f"/api/accounts/users/{ana['id']}/block/", headers=blocker_h)).status == 204
    assert (await client.post(f"/api/accounts/users/{blocked['id']}/block/", headers=ana_h)).status == 204
    await pool.execute("UPDATE users SET is_active = false WHERE id = $1", int(gone["id"]))
    hidden = {blocker["id"], blocked["id"], gone["id"]}

    summary = (await listed(client, ana_h))[group["id"]]
    # the three named are the ones ana may be shown, whatever their place in joining order
    assert [u["id"] for u in summary["users"]] == sorted((u["id"] for u in rest), key=int)
    assert hidden <= set(summary["member_ids"])
    detail = await (await client.get(f"/api/conversations/{group['id']}/", headers=ana_h)).json()
    members = {m["user_id"]: m for m in detail["members"]}
    assert set(members) == {ana["id"], *hidden, *(u["id"] for u in rest)}
    assert all(members[u]["user"] is None for u in hidden)
    assert all(members[u["id"]]["user"]["username"] == u["username"] for u in rest)
    text = await (await client.get(f"/api/conversations/{group['id']}/", headers=ana_h)).text()
    assert not any(f'"{u["username"]}"' in text for u in (blocker, blocked, gone))


async def test_the_openapi_document_describes_the_briefs(client):
    schemas = (await (await client.get("/api/openapi.json")).json())["components"]["schemas"]
    users = schemas["ConversationSummary"]["properties"]["users"]
    assert users["items"] == {"$ref": "#/components/schemas/UserBrief"} and "joining order" in users["description"]
    user = schemas["MemberOut"]["properties"]["user"]
    assert {"type": "null"} in user["anyOf"] and "null" in user["description"]
