"""Mute: silent and one-way, honoured by feed fan-out and reads, the story tray, notifications and
explore, while the muted account's things stay reachable."""

from __future__ import annotations

from handlers.context import redis_key
from storage import explore
from storage.timelines import Timelines
from tests.conftest import wait_for
from tests.support import (
    feed_ids, follow, followed_post, new_post, new_story, timeline, tray, user_with_token,
)


async def mute(client, headers, user, expect: int = 204, **body) -> None:
    response = await client.post(f"/api/accounts/users/{user['id']}/mute/", headers=headers,
                                 **({"json": body} if body else {}))
    assert response.status == expect, await response.text()


async def relationship(client, headers, user) -> dict:
    return (await (await client.get(f"/api/accounts/users/{user['id']}/", headers=headers)).json())["relationship"]


async def test_a_mute_made_after_the_fan_out_takes_the_post_out_of_the_feed_at_read(client, redis_clean):
    reader_h, author_h, post, reader = await followed_post(client, redis_clean, "fanned out")
    author = (await (await client.get("/api/accounts/users/me/", headers=author_h)).json())
    assert await feed_ids(client, reader_h) == [post["id"]]
    await mute(client, reader_h, author)
    # even with the id still in the timeline (the unmerge not yet run, or raced), the read drops it;
    # push_to_home writes only a timeline that exists, so wait for the consumer's unmerge first
    await wait_for(lambda: _lacks(redis_clean, reader, post["id"]))
    await Timelines(redis_clean).push_to_home([int(reader["id"])], [int(post["id"])])
    assert await feed_ids(client, reader_h) == []
    # silent: still reachable, and one-way: the muted account sees no difference
    assert (await client.get(f"/api/posts/{post['id']}/", headers=reader_h)).status == 200
    assert (await relationship(client, reader_h, author))["muting"] is True
    assert (await relationship(client, author_h, reader))["muting"] is False
    listed = await (await client.get("/api/accounts/mutes/", headers=reader_h)).json()
    assert [u["id"] for u in listed["results"]] == [author["id"]]

    await feed_ids(client, author_h)  # the author's own timeline exists: the fan-out's end is seen there
    later = await new_post(client, author_h, "after the mute")  # not fanned out to the muter
    await wait_for(lambda: _has(redis_clean, author, later["id"]))
    assert later["id"] not in await timeline(redis_clean, reader)

    response = await client.post(f"/api/accounts/users/{author['id']}/unmute/", headers=reader_h)
    assert response.status == 204
    await wait_for(lambda: _feed_is(client, reader_h, {post["id"], later["id"]}))  # merged back by the consumer
    assert (await relationship(client, reader_h, author))["muting"] is False


async def _feed_is(client, headers, ids: set[str]) -> bool:
    return set(await feed_ids(client, headers)) == ids


async def _lacks(redis, user, post_id) -> bool:
    return post_id not in await timeline(redis, user)


async def _has(redis, user, post_id) -> bool:
    return post_id in await timeline(redis, user)


async def test_a_mute_keeps_stories_out_of_the_tray_unless_stories_is_false(client):
    reader, reader_h = await user_with_token(client)
    author, author_h = await user_with_token(client)
    await follow(client, reader_h, author)
    story = await new_story(client, author_h)
    assert [e["user"]["id"] for e in await tray(client, reader_h)] == [author["id"]]
    await mute(client, reader_h, author)
    assert await tray(client, reader_h) == []
    await mute(client, reader_h, author, stories=False)
    assert [s["id"] for e in await tray(client, reader_h) for s in e["stories"]] == [story["id"]]
    await mute(client, reader_h, reader, expect=400)
    await mute(client, reader_h, {"id": "999"}, expect=404)


async def test_the_muter_gets_no_notifications_from_the_muted_account_nor_its_posts_in_explore(client):
    muter, muter_h = await user_with_token(client)
    muted, muted_h = await user_with_token(client)
    other, other_h = await user_with_token(client)
    own = await new_post(client, muter_h, "mine")
    await mute(client, muter_h, muted)
    await client.post(f"/api/posts/{own['id']}/like/", headers=muted_h)
    await client.post(f"/api/accounts/users/{muter['id']}/follow/", headers=other_h)  # after the like, in order

    async def kinds() -> list[tuple[str, str]]:
        body = await (await client.get("/api/notifications/", headers=muter_h)).json()
        return [(n["kind"], a["id"]) for n in body["results"] for a in n["actors"]]
    await wait_for(lambda: _contains(kinds, ("follow", other["id"])))
    assert ("like", muted["id"]) not in await kinds()

    posts = [await new_post(client, h, "trending") for h in (muted_h, other_h)]
    await explore.store_trending(client.server.app[redis_key], [(int(p["id"]), 10.0 - i) for i, p in enumerate(posts)])
    shown = await (await client.get("/api/posts/explore/", headers=muter_h)).json()
    assert [p["id"] for p in shown["results"]] == [posts[1]["id"]]


async def _contains(read, item) -> bool:
    return item in await read()
