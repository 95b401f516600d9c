"""Notifications through the real API: made from events by the consumer (inline transport),
grouped, never to yourself nor across a block, following preferences, removed when undone, listed,
counted, marked read, pushed over /ws, to push devices and by e-mail."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

from app.main import create_app
from storage import email, sinks
from tests.conftest import make_config, wait_for
from tests.support import all_pages, new_post, notifications, user_with_token, wait_notifications


async def unread(client, headers) -> int:
    response = await client.get("/api/notifications/unread-count/", headers=headers)
    assert response.status == 200
    return (await response.json())["unread_count"]


async def settled(pool) -> None:
    """Every committed event relayed and handled by the notifications consumer."""
    async def done() -> bool:
        return await pool.fetchval(
            "SELECT count(*) FROM outbox o WHERE o.topic IN ('accounts', 'posts', 'stories', 'messages')"
            " AND NOT EXISTS (SELECT 1 FROM processed_events p WHERE p.consumer = 'notifications'"
            "                 AND p.event_id = o.event_id)") == 0
    await wait_for(done)


async def like(client, headers, post_id: str, on: bool = True) -> None:
    response = await client.post(f"/api/posts/{post_id}/{'like' if on else 'unlike'}/", headers=headers)
    assert response.status == 200, await response.text()


async def test_a_like_notifies_the_author_and_an_unlike_removes_it(client, pool):
    author, ah = await user_with_token(client)
    fan, fh = await user_with_token(client)
    post = await new_post(client, ah, "hello")
    await like(client, fh, post["id"])
    [note] = await wait_notifications(client, ah, 1)
    assert note["kind"] == "like" and note["read"] is False
    assert [a["username"] for a in note["actors"]] == [fan["username"]] and note["actor_count"] == 1
    assert note["target"] == {"type": "post", "id": post["id"], "post_id": post["id"], "comment_id": None}
    assert await unread(client, ah) == 1
    assert await notifications(client, fh) == []  # nothing for the liker
    await like(client, fh, post["id"], on=False)
    await settled(pool)
    assert await notifications(client, ah) == []
    assert await unread(client, ah) == 0


async def test_likes_within_the_window_are_one_notification_naming_the_newest_actors_first(client, pool):
    author, ah = await user_with_token(client)
    post = await new_post(client, ah)
    fans = []
    for _ in range(5):
        fan, fh = await user_with_token(client)
        fans.append(fan)
        await like(client, fh, post["id"])
        await settled(pool)  # one after another, so "newest first" is well defined
    [note] = await notifications(client, ah)
    assert note["actor_count"] == 5 and note["count"] == 5
    assert [a["id"] for a in note["actors"]] == [f["id"] for f in reversed(fans)][:3]
    other = await new_post(client, ah)
    await like(client, fh, other["id"])  # another target is another notification, now on top
    await settled(pool)
    listed = await notifications(client, ah)
    assert [n["target"]["id"] for n in listed] == [other["id"], post["id"]]


async def test_outside_the_window_a_new_group_starts(aiohttp_client, stack_env, config, pool):
    client = await aiohttp_client(create_app(make_config(stack_env, database_url=config.database.url,
                                                         notifications_group_window=60)))
    author, ah = await user_with_token(client)
    post = await new_post(client, ah)
    _, fh = await user_with_token(client)
    await like(client, fh, post["id"])
    await settled(pool)
    await pool.execute("UPDATE notifications SET created_at = created_at - interval '2 minutes',"
                       " updated_at = updated_at - interval '2 minutes'")
    _, gh = await user_with_token(client)
    await like(client, gh, post["id"])
    await settled(pool)
    assert [n["actor_count"] for n in await notifications(client, ah)] == [1, 1]


async def test_liking_your_own_post_notifies_nobody(client, pool):
    _, ah = await user_with_token(client)
    post = await new_post(client, ah)
    await like(client, ah, post["id"])
    await settled(pool)
    assert await notifications(client, ah) == []


async def test_blocks_suppress_notifications_and_remove_earlier_ones(client, pool):
    author, ah = await user_with_token(client)
    fan, fh = await user_with_token(client)
    post = await new_post(client, ah)
    response = await client.post(f"/api/accounts/users/{author['id']}/follow/", headers=fh)
    assert response.status == 200
    await like(client, fh, post["id"])
    assert {n["kind"] for n in await wait_notifications(client, ah, 2)} == {"follow", "like"}
    response = await client.post(f"/api/accounts/users/{fan['id']}/block/", headers=ah)
    assert response.status == 204
    await settled(pool)
    assert await notifications(client, ah) == []
    # a like that was already on its way when the block landed makes nothing either
    await add_event(pool, "posts", "post_liked", author["id"], {
        "post_id": post["id"], "author_id": author["id"], "user_id": fan["id"], "created_at": post["created_at"]})
    await settled(pool)
    assert await notifications(client, ah) == []


async def test_preferences_are_the_settings_table_and_suppress_each_channel(client, pool):
    author, ah = await user_with_token(client)
    response = await client.get("/api/notifications/preferences/", headers=ah)
    prefs = await response.json()
    assert prefs["like"] == {"in_app": True, "push": True, "email": False}
    response = await client.patch("/api/notifications/preferences/", headers=ah,
                                  json={"like": {"in_app": False}, "comment": {"email": True}})
    assert response.status == 200, await response.text()
    changed = await response.json()
    assert changed["like"] == {"in_app": False, "push": True, "email": False}
    settings = await (await client.get("/api/accounts/settings/", headers=ah)).json()
    assert settings["notifications"] == changed  # one table, two doors
    response = await client.patch("/api/notifications/preferences/", headers=ah, json={"likes": {"push": True}})
    assert response.status == 400 and "notifications" in (await response.json())["error"]["fields"]
    response = await client.patch("/api/notifications/preferences/", headers=ah, json={"like": {"push": "yes"}})
    assert response.status == 400

    response = await client.post("/api/notifications/devices/", headers=ah,
                                 json={"endpoint": "https://push.example/abc", "platform": "web",
                                       "keys": {"p256dh": "k", "auth": "a"}})
    assert response.status == 201, await response.text()
    device = await response.json()
    post = await new_post(client, ah)
    fan, fh = await user_with_token(client)
    await like(client, fh, post["id"])  # like: no in-app row, but a push
    response = await client.post("/api/comments/", headers=fh, json={"post_id": post["id"], "text": "lovely"})
    assert response.status == 201
    await settled(pool)
    [note] = await notifications(client, ah)
    assert note["kind"] == "comment" and note["text"] == "lovely"

    async def sent() -> bool:  # push and e-mail follow the consumer's commit, so after settled()
        mails = await email.sent_to(pool, f"{author['username']}@example.com")
        return len(await sinks.sent_pushes(pool, int(author["id"]))) >= 2 and any("commented" in m.subject for m in mails)

    await wait_for(sent)
    pushes = await sinks.sent_pushes(pool, int(author["id"]))
    assert [(str(p["device_id"]), p["payload"]["kind"]) for p in pushes] == [(device["id"], "like"), (device["id"], "comment")]
    assert pushes[0]["payload"]["body"] == f"{fan['username']} liked your post"
    assert pushes[0]["payload"]["notification_id"] is None and pushes[1]["payload"]["notification_id"] == note["id"]
    mails = [m for m in await email.sent_to(pool, f"{author['username']}@example.com") if "commented" in m.subject]
    assert [m.subject for m in mails] == [f"{fan['username']} commented on your post: lovely"]


async def test_mark_read_all_or_up_to_an_id(client, pool):
    author, ah = await user_with_token(client)
    posts = [await new_post(client, ah) for _ in range(3)]
    _, fh = await user_with_token(client)
    for post in posts:
        await like(client, fh, post["id"])
        await settled(pool)
    listed = await notifications(client, ah)
    assert len(listed) == 3 and await unread(client, ah) == 3
    response = await client.post("/api/notifications/read/", headers=ah, json={"up_to_id": listed[1]["id"]})
    assert response.status == 200
    assert await response.json() == {"marked": 2, "unread_count": 1}
    assert [n["read"] for n in await notifications(client, ah)] == [False, True, True]
    other, oh = await user_with_token(client)
    response = await client.post("/api/notifications/read/", headers=oh, json={"up_to_id": listed[0]["id"]})
    assert response.status == 404  # not theirs: nothing changes
    assert await unread(client, ah) == 1
    response = await client.post("/api/notifications/read/", headers=ah, json={"up_to_id": "zzz"})
    assert response.status == 400
    response = await client.post("/api/notifications/read/", headers=ah)
    assert await response.json() == {"marked": 1, "unread_count": 0}
    # a new actor on a read notification makes it unread and brings it to the top
    _, gh = await user_with_token(client)
    await like(client, gh, posts[0]["id"])
    await settled(pool)
    top = (await notifications(client, ah))[0]
    assert top["target"]["id"] == posts[0]["id"] and top["read"] is False and top["actor_count"] == 2
    assert await unread(client, ah) == 1


async def test_the_list_pages_newest_first_with_a_cursor(client, pool):
    author, ah = await user_with_token(client)
    _, fh = await user_with_token(client)
    posts = [await new_post(client, ah) for _ in range(5)]
    for post in posts:
        await like(client, fh, post["id"])
        await settled(pool)
    seen = [n["target"]["id"] for n in await all_pages(client, "/api/notifications/?limit=2", ah)]
    assert seen == [p["id"] for p in reversed(posts)]
    response = await client.get("/api/notifications/?cursor=garbage", headers=ah)
    assert response.status == 400


async def test_comments_replies_and_mentions_notify_and_deleting_the_comment_removes_them(client, pool):
    author, ah = await user_with_token(client)
    commenter, ch = await user_with_token(client)
    replier, rh = await user_with_token(client)
    named, nh = await user_with_token(client)
    post = await new_post(client, ah, f"look @{named['username']}")
    response = await client.post("/api/comments/", headers=ch, json={"post_id": post["id"], "text": "first!"})
    top = await response.json()
    response = await client.post("/api/comments/", headers=rh, json={
        "post_id": post["id"], "parent_id": top["id"], "text": f"agreed @{named['username']}"})
    reply = await response.json()
    await settled(pool)
    assert [n["kind"] for n in await notifications(client, ch)] == ["reply"]
    assert {(n["kind"], n["actor_count"]) for n in await notifications(client, ah)} == {("comment", 2)}
    named_kinds = sorted((n["kind"], n["target"]["type"]) for n in await notifications(client, nh))
    assert named_kinds == [("mention", "comment"), ("mention", "post")]
    response = await client.delete(f"/api/comments/{reply['id']}/", headers=rh)
    assert response.status == 204
    await settled(pool)
    assert await notifications(client, ch) == []
    assert [n["actor_count"] for n in await notifications(client, ah)] == [1]
    assert [n["target"]["type"] for n in await notifications(client, nh)] == ["post"]
    response = await client.delete(f"/api/posts/{post['id']}/", headers=ah)
    assert response.status == 204
    await settled(pool)
    assert await notifications(client, ah) == [] and await notifications(client, nh) == []


async def test_follows_requests_and_approvals_notify_and_unfollow_removes(client, pool):
    private, ph = await user_with_token(client)
    response = await client.patch("/api/accounts/settings/", headers=ph, json={"is_private": True})
    assert response.status == 200
    fan, fh = await user_with_token(client)
    await client.post(f"/api/accounts/users/{private['id']}/follow/", headers=fh)
    [request] = await wait_notifications(client, ph, 1)
    assert request["kind"] == "follow_request" and request["actors"][0]["id"] == fan["id"]
    response = await client.post(f"/api/accounts/follow-requests/{fan['id']}/approve/", headers=ph)
    assert response.status == 204
    [approved] = await wait_notifications(client, fh, 1)
    assert approved["kind"] == "follow_request_approved" and approved["actors"][0]["id"] == private["id"]
    await settled(pool)
    assert await notifications(client, ph) == []  # the request was answered
    public, uh = await user_with_token(client)
    await client.post(f"/api/accounts/users/{public['id']}/follow/", headers=fh)
    [follow] = await wait_notifications(client, uh, 1)
    assert follow["kind"] == "follow" and follow["target"]["type"] == "user"
    await client.post(f"/api/accounts/users/{public['id']}/unfollow/", headers=fh)
    await settled(pool)
    assert await notifications(client, uh) == []


async def test_a_message_to_a_recipient_without_a_socket_notifies_them(client, pool):
    sender, sh = await user_with_token(client)
    recipient, rh = await user_with_token(client)
    conversation = 987654321
    await add_event(pool, "messages", "message_sent", str(conversation), {
        "message_id": "1", "conversation_id": str(conversation), "seq": 1, "sender_id": sender["id"],
        "recipient_ids": [recipient["id"], sender["id"]], "preview": "hi there"})
    [note] = await wait_notifications(client, rh, 1)
    assert note["kind"] == "message" and note["text"] == "hi there"
    assert note["target"]["type"] == "conversation" and note["target"]["id"] == str(conversation)
    assert await notifications(client, sh) == []


async def test_each_new_notification_reaches_every_socket_of_the_recipient(client, pool):
    author, ah = await user_with_token(client)
    token = ah["Authorization"].split()[1]
    sockets = [await client.ws_connect(f"/ws?token={token}") for _ in range(2)]
    for ws in sockets:
        assert json.loads((await asyncio.wait_for(ws.receive(), 10)).data)["type"] == "hello"
    post = await new_post(client, ah)
    fan, fh = await user_with_token(client)
    await like(client, fh, post["id"])
    for ws in sockets:
        while True:
            frame = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)
            if frame["type"] == "notification.new":
                break
        assert frame["notification"]["kind"] == "like"
        assert frame["notification"]["actors"][0]["id"] == fan["id"]
        await ws.close()


async def test_devices_register_once_per_endpoint_and_only_their_owner_removes_them(client):
    _, ah = await user_with_token(client)
    _, oh = await user_with_token(client)
    body = {"endpoint": "https://push.example/1", "platform": "android"}
    first = await (await client.post("/api/notifications/devices/", headers=ah, json=body)).json()
    again = await (await client.post("/api/notifications/devices/", headers=ah, json=body)).json()
    assert first["id"] == again["id"]
    for bad in ({"endpoint": "ftp://x/1", "platform": "web"}, {"endpoint": "https://x/1", "platform": "pager"},
                {"platform": "web"}):
        response = await client.post("/api/notifications/devices/", headers=ah, json=bad)
        assert response.status == 400
    assert (await client.delete(f"/api/notifications/devices/{first['id']}/", headers=oh)).status == 404
    assert (await client.delete(f"/api/notifications/devices/{first['id']}/", headers=ah)).status == 204
    assert await (await client.get("/api/notifications/devices/", headers=ah)).json() == []


async def test_the_daily_job_deletes_notifications_older_than_the_retention(client, pool):
    from jobs.notifications import delete_old

    author, ah = await user_with_token(client)
    _, fh = await user_with_token(client)
    for _ in range(2):
        await like(client, fh, (await new_post(client, ah))["id"])
    await settled(pool)
    old = (await notifications(client, ah))[1]
    await pool.execute("UPDATE notifications SET updated_at = updated_at - $2::interval WHERE id = $1",
                       int(old["id"]), timedelta(days=91))
    assert await delete_old(pool, 90) == 1
    assert [n["id"] for n in await notifications(client, ah)] != [] and old["id"] not in [
        n["id"] for n in await notifications(client, ah)]


async def test_anonymous_requests_are_refused(client):
    for method, path in (("GET", "/api/notifications/"), ("GET", "/api/notifications/unread-count/"),
                         ("POST", "/api/notifications/read/"), ("GET", "/api/notifications/preferences/")):
        response = await client.request(method, path)
        assert response.status == 401


async def add_event(pool, topic: str, type_: str, key: str, payload: dict) -> None:
    """An event as another feature's transaction would commit it (that feature may not be built yet)."""
    await pool.execute("INSERT INTO outbox (topic, type, key, payload) VALUES ($1, $2, $3, $4)", topic, type_, key,
                       payload)
    await pool.execute("SELECT pg_notify('glint_outbox', '')")


async def test_a_story_reaction_notifies_the_owner_and_deleting_the_story_removes_it(client, pool):
    owner, oh = await user_with_token(client)
    fan, _ = await user_with_token(client)
    story = "123456789"
    await add_event(pool, "stories", "story_reaction", owner["id"], {
        "story_id": story, "owner_id": owner["id"], "actor_id": fan["id"], "kind": "emoji", "emoji": "🔥",
        "text": None, "conversation_id": "1", "message_id": "2"})
    [note] = await wait_notifications(client, oh, 1)
    assert (note["kind"], note["text"], note["target"]["type"], note["target"]["id"]) == (
        "story_reaction", "🔥", "story", story)
    assert note["actors"][0]["id"] == fan["id"]
    await add_event(pool, "stories", "story_deleted", owner["id"], {"story_id": story, "owner_id": owner["id"]})
    await settled(pool)
    assert await notifications(client, oh) == []
