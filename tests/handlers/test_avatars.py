"""Every list that names a user links their avatar (`avatar_url`), so a client draws it without
asking for each user's profile and then its media."""

from __future__ import annotations

import aiohttp

from tests.support import follow, jpeg, new_post, new_story, tray, upload, user_with_token


async def fetch_status(client, url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(client.make_url(url)) as response:
        await response.read()
        return response.status


async def set_avatar(client, headers, media_id: str | None) -> None:
    response = await client.patch("/api/accounts/users/me/", json={"avatar_media_id": media_id}, headers=headers)
    assert response.status == 200, await response.text()


async def with_avatar(client) -> tuple[dict, dict[str, str]]:
    user, headers = await user_with_token(client)
    avatar = await (await upload(client, headers, jpeg(400, 400))).json()
    await set_avatar(client, headers, avatar["id"])
    return user, headers


async def get(client, path: str, headers, **params) -> dict:
    response = await client.get(path, headers=headers, params=params)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_posts_comments_likes_followings_search_and_the_tray_link_the_avatar_of_who_they_name(client):
    author, author_h = await with_avatar(client)
    reader, reader_h = await user_with_token(client)
    await follow(client, reader_h, author)
    post = await new_post(client, author_h, "with a face")
    await new_story(client, author_h)
    created = await client.post("/api/comments/", json={"post_id": post["id"], "text": "mine"}, headers=author_h)
    assert created.status == 201
    assert (await client.post(f"/api/posts/{post['id']}/like/", headers=author_h)).status in (200, 201)

    feed = await get(client, "/api/posts/feed/", reader_h)
    link = next(p for p in feed["results"] if p["id"] == post["id"])["author"]["avatar_url"]
    assert link and link.endswith("/150.webp")
    assert await fetch_status(client, link) == 200
    named = {
        "post": (await get(client, f"/api/posts/{post['id']}/", reader_h))["author"],
        "new comment": (await created.json())["author"],
        "comments": (await get(client, "/api/comments/", reader_h, post_id=post["id"]))["results"][0]["author"],
        "likes": (await get(client, f"/api/posts/{post['id']}/likes/", reader_h))["results"][0],
        "following": (await get(client, f"/api/accounts/users/{reader['id']}/following/", reader_h))["results"][0],
        "users": (await get(client, "/api/accounts/users/", reader_h, q=author["username"]))["results"][0],
        "tray": next(e for e in await tray(client, reader_h) if e["user"]["id"] == author["id"])["user"],
    }
    for where, user in named.items():
        assert user["id"] == author["id"], where
        assert user["avatar_url"] and user["avatar_url"].endswith("/150.webp"), where
    # the reader has none
    assert (await get(client, f"/api/accounts/users/{author['id']}/followers/", author_h))["results"][0]["avatar_url"] is None


async def test_a_changed_or_removed_avatar_shows_on_posts_already_cached(client):
    author, author_h = await with_avatar(client)
    post = await new_post(client, author_h)
    first = (await get(client, f"/api/posts/{post['id']}/", author_h))["author"]["avatar_url"]
    again = (await get(client, f"/api/posts/{post['id']}/", author_h))["author"]["avatar_url"]  # from the cache
    assert first and again == first
    other = await (await upload(client, author_h, jpeg(300, 300))).json()
    await set_avatar(client, author_h, other["id"])
    changed = (await get(client, f"/api/posts/{post['id']}/", author_h))["author"]["avatar_url"]
    assert changed and changed != first and f"/{other['id']}/" in changed
    await set_avatar(client, author_h, None)
    assert (await get(client, f"/api/posts/{post['id']}/", author_h))["author"]["avatar_url"] is None


async def test_a_video_as_avatar_links_nothing_rather_than_a_file_that_is_not_there(client, pool):
    _, headers = await with_avatar(client)
    user_id = (await get(client, "/api/accounts/users/me/", headers))["id"]
    await pool.execute("UPDATE media SET kind = 'video' WHERE id = (SELECT avatar_media_id FROM users WHERE id = $1)",
                       int(user_id))
    post = await new_post(client, headers)
    assert (await get(client, f"/api/posts/{post['id']}/", headers))["author"]["avatar_url"] is None


async def test_profiles_link_the_avatar_too(client):
    user, headers = await user_with_token(client)
    _, other = await user_with_token(client)
    assert (await get(client, "/api/accounts/users/me/", headers))["avatar_url"] is None
    avatar = await (await upload(client, headers, jpeg(400, 400))).json()
    patched = await client.patch("/api/accounts/users/me/", json={"avatar_media_id": avatar["id"]}, headers=headers)
    link = (await patched.json())["avatar_url"]
    assert link and link.endswith("/150.webp") and f"/{avatar['id']}/" in link
    assert (await get(client, "/api/accounts/users/me/", headers))["avatar_url"] == link
    assert (await get(client, f"/api/accounts/users/{user['id']}/", other))["avatar_url"] == link
    assert await fetch_status(client, link) == 200


async def test_a_notification_links_its_actors_avatars_in_the_list_and_on_the_socket(client):
    from tests.support import frame_of, open_socket, user_and_token, wait_notifications

    fan, fan_h = await with_avatar(client)
    author, token = await user_and_token(client)
    author_h = {"Authorization": f"Bearer {token}"}
    post = await new_post(client, author_h)
    ws = await open_socket(client, token)
    assert (await client.post(f"/api/posts/{post['id']}/like/", headers=fan_h)).status in (200, 201)
    live = (await frame_of(ws, "notification.new", timeout=30))["notification"]["actors"][0]
    [note] = await wait_notifications(client, author_h, 1)
    listed = note["actors"][0]
    assert listed["id"] == live["id"] == fan["id"]
    assert listed["avatar_url"] and listed["avatar_url"].endswith("/150.webp")
    assert live["avatar_url"] == listed["avatar_url"]
    await ws.close()
