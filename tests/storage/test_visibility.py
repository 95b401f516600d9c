"""The one visibility policy, through the readers that ask it: groups, delivery after a block,
search of hashtags and places, presence, and replies through parent_id."""

from __future__ import annotations

from tests.support import (
    bearer, feed_ids, follow as follow_user, frame_of, new_post, open_socket, start_conversation, user_and_token,
    user_with_token,
)


async def block(client, token: str, target: str) -> None:
    assert (await client.post(f"/api/accounts/users/{target}/block/", headers=bearer(token))).status == 204


async def follow(client, token: str, target: str, owner_token: str | None = None, follower: str = "") -> None:
    assert (await client.post(f"/api/accounts/users/{target}/follow/", headers=bearer(token))).status == 200
    if owner_token is not None:  # a private account approves
        approved = await client.post(f"/api/accounts/follow-requests/{follower}/approve/", headers=bearer(owner_token))
        assert approved.status in (200, 204), await approved.text()


async def test_a_group_never_joins_two_people_when_one_blocks_the_other(client, pool):
    (ana, ana_token), (bob, bob_token), (cy, cy_token), (dan, _) = [await user_and_token(client) for _ in range(4)]
    await block(client, ana_token, cy["id"])
    made = await client.post("/api/conversations/", json={"member_ids": [ana["id"], cy["id"]]},
                             headers=bearer(bob_token))
    assert made.status == 400 and "member_ids" in (await made.json())["error"]["fields"]
    group = await start_conversation(client, bob_token, ana["id"], dan["id"])
    added = await client.post(f"/api/conversations/{group['id']}/members/", json={"user_ids": [cy["id"]]},
                              headers=bearer(bob_token))
    assert added.status == 400
    assert await pool.fetchval("SELECT count(*) FROM conversation_members WHERE user_id = $1", int(cy["id"])) == 0


async def test_a_block_made_later_keeps_both_in_the_group_but_stops_delivery_between_them(client):
    (ana, ana_token), (bob, bob_token), (cy, cy_token) = [await user_and_token(client) for _ in range(3)]
    group = await start_conversation(client, bob_token, ana["id"], cy["id"])
    await block(client, ana_token, cy["id"])
    ana_ws, bob_ws = await open_socket(client, ana_token), await open_socket(client, bob_token)
    sent = await client.post(f"/api/conversations/{group['id']}/messages/", json={"client_id": "c1", "text": "hi"},
                             headers=bearer(cy_token))
    assert sent.status == 201
    assert (await frame_of(bob_ws, "message.new"))["message"]["sender_id"] == cy["id"]
    await bob_ws.send_json({"type": "message.send", "conversation_id": group["id"], "client_id": "b1", "text": "yo"})
    # ana's first message.new is bob's: cy's never reached her
    assert (await frame_of(ana_ws, "message.new"))["message"]["sender_id"] == bob["id"]
    detail = await (await client.get(f"/api/conversations/{group['id']}/", headers=bearer(ana_token))).json()
    assert {m["user_id"] for m in detail["members"]} == {ana["id"], bob["id"], cy["id"]}


async def test_hashtags_and_places_show_only_through_posts_the_viewer_may_see(client):
    (owner, owner_token), (pal, pal_token), (stranger, stranger_token), (foe, foe_token), (pub, pub_token) = [
        await user_and_token(client) for _ in range(5)]
    assert (await client.patch("/api/accounts/settings/", json={"is_private": True},
                               headers=bearer(owner_token))).status == 200
    await follow(client, pal_token, owner["id"], owner_token, pal["id"])
    await new_post(client, bearer(owner_token), "#quietcove at dawn",
                   location={"name": "Quiet Cove", "lat": 12.5, "lng": 45.25})
    await new_post(client, bearer(pub_token), "also #quietcove")
    await block(client, pub_token, foe["id"])

    async def found(token: str, kind: str, q: str) -> list[tuple[str, int]]:
        response = await client.get(f"/api/search/{kind}/", params={"q": q}, headers=bearer(token))
        assert response.status == 200, await response.text()
        return [(r["name"], r["post_count"]) for r in (await response.json())["results"]]

    assert await found(pal_token, "hashtags", "quietcove") == [("quietcove", 2)]
    assert await found(pal_token, "locations", "quiet cove") == [("Quiet Cove", 1)]
    assert await found(stranger_token, "hashtags", "quietcove") == [("quietcove", 1)]  # counts what it may see
    assert await found(stranger_token, "locations", "quiet cove") == []
    assert await found(foe_token, "hashtags", "quietcove") == []
    assert await found(foe_token, "locations", "quiet cove") == []


async def test_presence_goes_only_to_people_followed_back_or_in_a_conversation(client, pool):
    (star, star_token), (fan, fan_token), (pal, pal_token), (chat, chat_token) = [
        await user_and_token(client) for _ in range(4)]
    await follow(client, fan_token, star["id"])  # a one-way follow is not enough
    await follow(client, pal_token, star["id"])
    await follow(client, star_token, pal["id"])
    await start_conversation(client, chat_token, star["id"])
    star_ws = await open_socket(client, star_token)

    async def status(token: str) -> dict:
        ws = await open_socket(client, token)
        await ws.send_json({"type": "presence.subscribe", "user_ids": [star["id"]]})
        frame = await frame_of(ws, "presence")
        await ws.close()
        return {"status": frame["status"], "last_seen": frame["last_seen"]}

    assert await status(fan_token) == {"status": "offline", "last_seen": None}
    assert (await status(pal_token))["status"] == "online"
    assert (await status(chat_token))["status"] == "online"
    await pool.execute("UPDATE users SET show_presence = false WHERE id = $1", int(star["id"]))
    assert await status(pal_token) == {"status": "offline", "last_seen": None}
    assert not star_ws.closed


async def test_a_blocked_user_cannot_reply_to_the_blockers_comment_through_parent_id(client, pool):
    (author, author_token), (talker, talker_token), (foe, foe_token) = [await user_and_token(client) for _ in range(3)]
    post = await new_post(client, bearer(author_token), "open to all")
    made = await client.post("/api/comments/", json={"post_id": post["id"], "text": "first"},
                             headers=bearer(talker_token))
    assert made.status == 201
    comment = await made.json()
    await block(client, talker_token, foe["id"])
    reply = await client.post("/api/comments/", json={"post_id": post["id"], "text": "hey", "parent_id": comment["id"]},
                              headers=bearer(foe_token))
    assert reply.status in (400, 404)
    assert await pool.fetchval("SELECT count(*) FROM comments WHERE author_id = $1", int(foe["id"])) == 0
    # commenting on the post itself (the author blocks nobody) is still fine
    assert (await client.post("/api/comments/", json={"post_id": post["id"], "text": "hi"},
                              headers=bearer(foe_token))).status == 201


async def test_pages_that_ask_per_post_hide_by_every_rule_of_the_policy(client, pool, redis_clean):
    """The saved list and the home feed ask the policy's row forms per post (visibility() and
    muting(), migration 0019): each author's post shows there exactly as the rules say."""
    viewer, viewer_h = await user_with_token(client)
    kinds = ("public", "blocking", "went_private", "approved", "suspended", "muted")
    authors = {kind: await user_with_token(client) for kind in kinds}
    approved, approved_h = authors["approved"]
    assert (await client.patch("/api/accounts/settings/", json={"is_private": True}, headers=approved_h)).status == 200
    for kind, (author, _) in authors.items():
        if kind != "went_private":
            await follow_user(client, viewer_h, author)
    approval = await client.post(f"/api/accounts/follow-requests/{viewer['id']}/approve/", headers=approved_h)
    assert approval.status in (200, 204), await approval.text()
    posts = {}
    for kind, (_, headers) in authors.items():
        posts[kind] = (await new_post(client, headers, kind))["id"]
        assert (await client.post(f"/api/posts/{posts[kind]}/save/", headers=viewer_h)).status in (200, 201)
    blocked = await client.post(f"/api/accounts/users/{viewer['id']}/block/", headers=authors["blocking"][1])
    assert blocked.status == 204
    assert (await client.patch("/api/accounts/settings/", json={"is_private": True},
                               headers=authors["went_private"][1])).status == 200
    await pool.execute("UPDATE users SET is_active = false WHERE id = $1", int(authors["suspended"][0]["id"]))
    assert (await client.post(f"/api/accounts/users/{authors['muted'][0]['id']}/mute/", headers=viewer_h)).status == 204
    saved = await (await client.get("/api/posts/saved/", headers=viewer_h)).json()
    assert {p["caption"] for p in saved["results"]} == {"public", "approved", "muted"}  # a mute hides nothing there
    async for key in redis_clean.scan_iter("timeline:*"):  # the feed is read from PostgreSQL
        await redis_clean.delete(key)
    shown = set(await feed_ids(client, viewer_h))
    assert shown == {posts["public"], posts["approved"]}
