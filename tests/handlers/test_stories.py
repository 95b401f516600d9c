"""Stories: 24-hour expiry on a controllable clock, the tray and its cache, views, viewers,
reactions as direct messages, close friends, blocks and private accounts, deletion."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from storage.stories import TrayCache
from tests.support import all_pages, follow, mp4, new_media, new_story, tray, upload, user_with_token, view


@pytest.fixture
def client(clocked_client):
    return clocked_client


async def block(client, headers, user) -> None:
    response = await client.post(f"/api/accounts/users/{user['id']}/block/", headers=headers)
    assert response.status == 204, await response.text()


def tray_summary(entries: list[dict]) -> list[tuple[str, list[str]]]:
    return [(e["user"]["id"], [s["id"] for s in e["stories"]]) for e in entries]


async def viewers(client, headers, story, **query) -> tuple[int, dict]:
    response = await client.get(f"/api/stories/{story['id']}/viewers/", headers=headers, params=query)
    return response.status, await response.json()


async def own_ids(client, headers) -> list[str]:
    response = await client.get("/api/stories/", headers=headers)
    assert response.status == 200, await response.text()
    return [s["id"] for s in (await response.json())["results"]]


# ---------------------------------------------------------------- expiry


async def test_a_story_is_served_for_exactly_24_hours_and_never_after_even_before_any_job(client, clock):
    owner, owner_h = await user_with_token(client)
    fan, fan_h = await user_with_token(client)
    await follow(client, fan_h, owner)
    story = await new_story(client, owner_h, "hello")
    created = datetime.fromisoformat(story["created_at"])
    assert datetime.fromisoformat(story["expires_at"]) - created == timedelta(hours=24)
    assert story["media"]["kind"] == "image" and story["caption"] == "hello"

    clock.advance(hours=24, seconds=-1)
    assert await own_ids(client, owner_h) == [story["id"]]
    assert tray_summary(await tray(client, fan_h)) == [(owner["id"], [story["id"]])]

    clock.advance(seconds=1)  # exactly 24 hours: gone everywhere, from the cached tray too
    assert await own_ids(client, owner_h) == []
    assert await tray(client, fan_h) == []
    assert await tray(client, owner_h) == []
    assert await view(client, fan_h, story) == 404
    react = await client.post(f"/api/stories/{story['id']}/react/", json={"emoji": "🔥"}, headers=fan_h)
    assert react.status == 404


async def test_a_video_story_is_the_mp4_as_uploaded(client):
    owner, owner_h = await user_with_token(client)
    uploaded = await upload(client, owner_h, mp4(), filename="clip.mp4", content_type="video/mp4")
    assert uploaded.status == 201
    media_id = (await uploaded.json())["id"]
    response = await client.post("/api/stories/", json={"media_id": media_id}, headers=owner_h)
    assert response.status == 201, await response.text()
    story = await response.json()
    assert story["media"]["kind"] == "video" and "original" in story["media"]["renditions"]


async def test_bad_stories_are_400_and_change_nothing(client, pool):
    owner, owner_h = await user_with_token(client)
    other, other_h = await user_with_token(client)
    (theirs,) = await new_media(client, other_h)
    used = (await new_story(client, owner_h))["media"]["id"]
    (mine,) = await new_media(client, owner_h)
    before = await pool.fetchval("SELECT count(*) FROM stories")
    bodies = [
        {"media_id": theirs},
        {"media_id": used},
        {"media_id": "999999999"},
        {"media_id": "abc"},
        {},
        {"media_id": mine, "caption": "x" * 2201},
        {"media_id": mine, "close_friends_only": "yes"},
        {"media_id": mine, "extra": 1},
    ]
    for body in bodies:
        response = await client.post("/api/stories/", json=body, headers=owner_h)
        assert response.status == 400, (body, await response.text())
        assert "error" in await response.json()
    assert (await client.post("/api/stories/", data=b"{", headers={**owner_h, "Content-Type": "application/json"})).status == 400
    assert await pool.fetchval("SELECT count(*) FROM stories") == before
    assert await pool.fetchval("SELECT attached_at FROM media WHERE id = $1", int(mine)) is None


# ---------------------------------------------------------------- the tray


async def test_the_tray_shows_own_first_then_unseen_then_by_latest_story_with_seen_flags(client, clock):
    viewer, viewer_h = await user_with_token(client)
    a, a_h = await user_with_token(client)
    b, b_h = await user_with_token(client)
    c, c_h = await user_with_token(client)
    for user in (a, b, c):
        await follow(client, viewer_h, user)
    a1 = await new_story(client, a_h)
    clock.advance(minutes=1)
    b1 = await new_story(client, b_h)
    clock.advance(minutes=1)
    c1 = await new_story(client, c_h)
    clock.advance(minutes=1)
    a2 = await new_story(client, a_h)
    clock.advance(minutes=1)
    mine = await new_story(client, viewer_h)

    assert tray_summary(await tray(client, viewer_h)) == [
        (viewer["id"], [mine["id"]]), (a["id"], [a1["id"], a2["id"]]), (c["id"], [c1["id"]]), (b["id"], [b1["id"]])]

    assert await view(client, viewer_h, c1) == 204
    assert await view(client, viewer_h, a1) == 204
    entries = await tray(client, viewer_h)
    assert tray_summary(entries) == [
        (viewer["id"], [mine["id"]]), (a["id"], [a1["id"], a2["id"]]), (b["id"], [b1["id"]]), (c["id"], [c1["id"]])]
    by_user = {e["user"]["id"]: e for e in entries}
    assert [s["seen"] for s in by_user[a["id"]]["stories"]] == [True, False]
    assert by_user[a["id"]]["has_unseen"] is True
    assert by_user[c["id"]]["has_unseen"] is False and by_user[c["id"]]["stories"][0]["seen"] is True
    assert by_user[b["id"]]["has_unseen"] is True


async def test_the_tray_has_only_followed_users_the_viewer_may_see(client, pool):
    viewer, viewer_h = await user_with_token(client)
    followed, followed_h = await user_with_token(client)
    stranger, stranger_h = await user_with_token(client)
    await follow(client, viewer_h, followed)
    await new_story(client, stranger_h)
    story = await new_story(client, followed_h)
    assert tray_summary(await tray(client, viewer_h)) == [(followed["id"], [story["id"]])]

    await block(client, followed_h, viewer)  # the cached tray must not show the blocker any more
    assert await tray(client, viewer_h) == []
    assert await tray(client, followed_h) == [
        e for e in await tray(client, followed_h) if e["user"]["id"] == followed["id"]]


async def test_the_tray_cache_is_dropped_by_a_new_story_and_by_a_view(client, redis_clean):
    viewer, viewer_h = await user_with_token(client)
    author, author_h = await user_with_token(client)
    await follow(client, viewer_h, author)
    key = TrayCache.key(int(viewer["id"]))
    assert await tray(client, viewer_h) == []
    assert await redis_clean.exists(key)

    first = await new_story(client, author_h)
    assert not await redis_clean.exists(key)
    entries = await tray(client, viewer_h)
    assert tray_summary(entries) == [(author["id"], [first["id"]])] and entries[0]["has_unseen"]
    assert await redis_clean.exists(key)

    assert await view(client, viewer_h, first) == 204
    assert not await redis_clean.exists(key)
    assert (await tray(client, viewer_h))[0]["stories"][0]["seen"] is True


async def test_the_tray_pages_with_a_cursor(client):
    viewer, viewer_h = await user_with_token(client)
    authors = []
    for _ in range(3):
        author, author_h = await user_with_token(client)
        await follow(client, viewer_h, author)
        await new_story(client, author_h)
        authors.append(author["id"])
    seen = [e["user"]["id"] for e in await all_pages(client, "/api/stories/feed/?limit=2", viewer_h)]
    assert seen == list(reversed(authors))
    assert (await client.get("/api/stories/feed/?cursor=bad", headers=viewer_h)).status == 400


# ---------------------------------------------------------------- views and viewers


async def test_views_are_recorded_once_and_the_owner_sees_viewers_and_count(client, clock):
    owner, owner_h = await user_with_token(client)
    first, first_h = await user_with_token(client)
    second, second_h = await user_with_token(client)
    story = await new_story(client, owner_h)
    assert await view(client, first_h, story) == 204
    assert await view(client, first_h, story) == 204  # idempotent
    clock.advance(seconds=5)
    assert await view(client, second_h, story) == 204
    assert await view(client, owner_h, story) == 204  # the owner's own view is not recorded

    status, body = await viewers(client, owner_h, story)
    assert status == 200
    assert body["count"] == 2
    assert [v["user"]["id"] for v in body["results"]] == [second["id"], first["id"]]
    status, page = await viewers(client, owner_h, story, limit=1)
    assert [v["user"]["id"] for v in page["results"]] == [second["id"]] and page["next"]
    rest = await (await client.get(page["next"], headers=owner_h)).json()
    assert [v["user"]["id"] for v in rest["results"]] == [first["id"]] and rest["next"] is None

    assert (await viewers(client, first_h, story))[0] == 404  # the owner only
    response = await client.get("/api/stories/", headers=owner_h)
    assert (await response.json())["results"][0]["view_count"] == 2


async def test_a_viewer_later_blocked_disappears_from_the_viewers(client):
    owner, owner_h = await user_with_token(client)
    kept, kept_h = await user_with_token(client)
    gone, gone_h = await user_with_token(client)
    story = await new_story(client, owner_h)
    assert await view(client, kept_h, story) == 204
    assert await view(client, gone_h, story) == 204
    await block(client, owner_h, gone)
    _, body = await viewers(client, owner_h, story)
    assert body["count"] == 1 and [v["user"]["id"] for v in body["results"]] == [kept["id"]]


async def test_unknown_and_malformed_story_ids_are_404(client):
    _, headers = await user_with_token(client)
    for path in ("/api/stories/123/view/", "/api/stories/abc/view/", "/api/stories/99999999999999999999/view/"):
        assert (await client.post(path, headers=headers)).status == 404
    assert (await client.delete("/api/stories/feed/", headers=headers)).status in (404, 405)


# ---------------------------------------------------------------- visibility


async def test_close_friends_stories_are_shown_only_to_the_owners_list(client):
    owner, owner_h = await user_with_token(client)
    friend, friend_h = await user_with_token(client)
    follower, follower_h = await user_with_token(client)
    for h in (friend_h, follower_h):
        await follow(client, h, owner)
    response = await client.put("/api/accounts/close-friends/", json={"user_ids": [friend["id"]]}, headers=owner_h)
    assert response.status == 204, await response.text()
    listed = await (await client.get("/api/accounts/close-friends/", headers=owner_h)).json()
    assert [u["id"] for u in listed["results"]] == [friend["id"]]

    public = await new_story(client, owner_h)
    close = await new_story(client, owner_h, close_friends_only=True)
    assert tray_summary(await tray(client, friend_h)) == [(owner["id"], [public["id"], close["id"]])]
    assert tray_summary(await tray(client, follower_h)) == [(owner["id"], [public["id"]])]
    assert await view(client, friend_h, close) == 204
    assert await view(client, follower_h, close) == 404

    # removed from the list: the friend's cached tray loses the story at once
    assert (await client.put("/api/accounts/close-friends/", json={"user_ids": []}, headers=owner_h)).status == 204
    assert tray_summary(await tray(client, friend_h)) == [(owner["id"], [public["id"]])]
    assert await view(client, friend_h, close) == 404


async def test_bad_close_friends_lists_are_400_and_change_nothing(client):
    owner, owner_h = await user_with_token(client)
    friend, _ = await user_with_token(client)
    blocker, blocker_h = await user_with_token(client)
    await block(client, blocker_h, owner)
    assert (await client.put("/api/accounts/close-friends/", json={"user_ids": [friend["id"]]},
                             headers=owner_h)).status == 204
    for body in ({"user_ids": [owner["id"]]}, {"user_ids": [blocker["id"]]}, {"user_ids": ["999999999"]},
                 {"user_ids": ["x"]}, {"user_ids": "all"}, {}):
        response = await client.put("/api/accounts/close-friends/", json=body, headers=owner_h)
        assert response.status == 400, (body, await response.text())
    listed = await (await client.get("/api/accounts/close-friends/", headers=owner_h)).json()
    assert [u["id"] for u in listed["results"]] == [friend["id"]]


async def test_private_and_blocking_owners_stories_answer_404(client):
    owner, owner_h = await user_with_token(client)
    follower, follower_h = await user_with_token(client)
    stranger, stranger_h = await user_with_token(client)
    story = await new_story(client, owner_h)
    assert await view(client, stranger_h, story) == 204  # a public account's story is anyone's to see
    await follow(client, follower_h, owner)
    response = await client.patch("/api/accounts/settings/", json={"is_private": True}, headers=owner_h)
    assert response.status == 200, await response.text()
    assert await view(client, stranger_h, story) == 404
    assert await view(client, follower_h, story) == 204
    await block(client, follower_h, owner)  # a block either way hides it
    assert await view(client, follower_h, story) == 404
    react = await client.post(f"/api/stories/{story['id']}/react/", json={"text": "hi"}, headers=follower_h)
    assert react.status == 404


# ---------------------------------------------------------------- reactions


async def test_a_reaction_reaches_the_owner_as_a_direct_message_and_a_story_reaction_event(client, pool):
    owner, owner_h = await user_with_token(client)
    fan, fan_h = await user_with_token(client)
    story = await new_story(client, owner_h)
    response = await client.post(f"/api/stories/{story['id']}/react/", json={"emoji": "🔥", "client_id": "r1"},
                                 headers=fan_h)
    assert response.status == 201, await response.text()
    reaction = await response.json()
    assert reaction["story_id"] == story["id"] and reaction["message"]["text"] == "🔥"
    reply = await client.post(f"/api/stories/{story['id']}/react/", json={"text": "nice one"}, headers=fan_h)
    assert reply.status == 201
    assert (await reply.json())["conversation_id"] == reaction["conversation_id"]  # the same 1:1
    retry = await client.post(f"/api/stories/{story['id']}/react/", json={"emoji": "🔥", "client_id": "r1"},
                              headers=fan_h)
    assert (await retry.json())["message"]["id"] == reaction["message"]["id"]

    history = await client.get(f"/api/conversations/{reaction['conversation_id']}/messages/", headers=owner_h)
    assert history.status == 200, await history.text()
    texts = sorted(m["text"] for m in (await history.json())["results"])
    assert texts == sorted(["🔥", "nice one"])
    links = await pool.fetch("SELECT story_id, kind FROM story_replies ORDER BY created_at, kind")
    assert sorted((r["story_id"], r["kind"]) for r in links) == [(int(story["id"]), "emoji"), (int(story["id"]), "text")]
    events = await pool.fetch("SELECT key, payload FROM outbox WHERE topic = 'stories' AND type = 'story_reaction'")
    assert len(events) == 2  # the retry emitted nothing
    assert {e["key"] for e in events} == {owner["id"]}
    assert {e["payload"]["kind"] for e in events} == {"emoji", "text"}
    assert all(e["payload"]["actor_id"] == fan["id"] and e["payload"]["story_id"] == story["id"] for e in events)


async def test_bad_reactions_are_400_and_send_nothing(client, pool):
    owner, owner_h = await user_with_token(client)
    fan, fan_h = await user_with_token(client)
    story = await new_story(client, owner_h)
    path = f"/api/stories/{story['id']}/react/"
    for body, headers in (({"emoji": "🔥", "text": "hi"}, fan_h), ({}, fan_h), ({"text": "   "}, fan_h),
                          ({"emoji": ""}, fan_h), ({"text": "x" * 1001}, fan_h), ({"emoji": "🔥"}, owner_h),
                          ({"emoji": "NaN"}, fan_h), ({"emoji": "a\u202eb\u200b"}, fan_h), ({"emoji": "🔥🔥"}, fan_h),
                          ({"emoji": " 🔥"}, fan_h)):
        response = await client.post(path, json=body, headers=headers)
        assert response.status == 400, (body, await response.text())
    assert await pool.fetchval("SELECT count(*) FROM messages") == 0
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE type = 'story_reaction'") == 0
    for one in ("❤️", "👍🏽", "🇵🇹", "👨\u200d👩\u200d👧"):  # a skin tone, a flag, a family: each one emoji
        response = await client.post(path, json={"emoji": one}, headers=fan_h)
        assert response.status == 201, (one, await response.text())


# ---------------------------------------------------------------- deletion


async def test_only_the_owner_deletes_a_story_and_its_media_is_retired(client, pool):
    owner, owner_h = await user_with_token(client)
    fan, fan_h = await user_with_token(client)
    await follow(client, fan_h, owner)
    story = await new_story(client, owner_h)
    assert len(await tray(client, fan_h)) == 1
    assert (await client.delete(f"/api/stories/{story['id']}/", headers=fan_h)).status == 404
    assert (await client.delete(f"/api/stories/{story['id']}/", headers=owner_h)).status == 204
    assert (await client.delete(f"/api/stories/{story['id']}/", headers=owner_h)).status == 404
    assert await tray(client, fan_h) == []
    assert await view(client, fan_h, story) == 404
    assert await own_ids(client, owner_h) == []
    assert await pool.fetchval("SELECT deleted_at FROM media WHERE id = $1", int(story["media"]["id"])) is not None
    deleted = await pool.fetch("SELECT key, payload FROM outbox WHERE topic = 'stories' AND type = 'story_deleted'")
    assert [(e["key"], e["payload"]["story_id"]) for e in deleted] == [(owner["id"], story["id"])]
