"""Comments: threads one level deep, counts, deletion rights, likes, visibility."""

from __future__ import annotations

from tests.support import events, new_post, user_with_token


async def comment(client, headers, post_id: str, text: str, parent_id: str | None = None) -> dict:
    body = {"post_id": post_id, "text": text} | ({"parent_id": parent_id} if parent_id else {})
    response = await client.post("/api/comments/", json=body, headers=headers)
    assert response.status == 201, await response.text()
    return await response.json()


async def post_counts(client, headers, post_id: str) -> int:
    return (await (await client.get(f"/api/posts/{post_id}/", headers=headers)).json())["comment_count"]


async def test_comments_and_replies_are_listed_with_reply_counts(client, pool):
    author, headers = await user_with_token(client)
    fan, fan_headers = await user_with_token(client)
    post = await new_post(client, headers, "talk to me")
    first = await comment(client, fan_headers, post["id"], "nice")
    second = await comment(client, headers, post["id"], "thanks")
    reply = await comment(client, headers, post["id"], "reply", first["id"])
    deeper = await comment(client, fan_headers, post["id"], "reply to reply", reply["id"])
    assert reply["parent_id"] == first["id"] and deeper["parent_id"] == first["id"]  # one level only
    assert first["author"]["id"] == fan["id"]
    top = await (await client.get(f"/api/comments/?post_id={post['id']}", headers=headers)).json()
    assert [(c["id"], c["reply_count"]) for c in top["results"]] == [(first["id"], 2), (second["id"], 0)]
    replies = await (await client.get(f"/api/comments/?parent_id={first['id']}", headers=headers)).json()
    assert [c["id"] for c in replies["results"]] == [reply["id"], deeper["id"]]
    paged = await (await client.get(f"/api/comments/?post_id={post['id']}&limit=1", headers=headers)).json()
    assert [c["id"] for c in paged["results"]] == [first["id"]]
    rest = await (await client.get(paged["next"], headers=headers)).json()
    assert [c["id"] for c in rest["results"]] == [second["id"]] and rest["next"] is None
    assert await post_counts(client, headers, post["id"]) == 4
    created = await events(pool, "comment_created")
    assert created[0]["key"] == author["id"] and created[0]["user_id"] == fan["id"]
    assert created[0]["comment_id"] == first["id"] and created[0]["post_id"] == post["id"]


async def test_bad_comments_are_400_or_404(client, pool):
    _, headers = await user_with_token(client)
    post = await new_post(client, headers, "p")
    other = await new_post(client, headers, "q")
    elsewhere = await comment(client, headers, other["id"], "there")
    bad = [
        ({"post_id": post["id"], "text": ""}, 400),
        ({"post_id": post["id"], "text": "   "}, 400),
        ({"post_id": post["id"], "text": "x" * 2201}, 400),
        ({"post_id": post["id"], "text": "hi", "parent_id": elsewhere["id"]}, 400),
        ({"post_id": "99999", "text": "hi"}, 404),
        ({"post_id": "nope", "text": "hi"}, 400),
    ]
    for body, status in bad:
        response = await client.post("/api/comments/", json=body, headers=headers)
        assert response.status == status, (body, await response.text())
    assert await pool.fetchval("SELECT count(*) FROM comments") == 1
    assert (await client.get("/api/comments/", headers=headers)).status == 400


async def test_comment_is_deleted_by_its_author_or_the_posts_author_only(client, pool):
    _, owner = await user_with_token(client)
    _, fan = await user_with_token(client)
    _, stranger = await user_with_token(client)
    post = await new_post(client, owner, "mine")
    by_fan = await comment(client, fan, post["id"], "first")
    await comment(client, owner, post["id"], "reply", by_fan["id"])
    by_fan_too = await comment(client, fan, post["id"], "second")
    assert (await client.delete(f"/api/comments/{by_fan['id']}/", headers=stranger)).status == 403
    assert await post_counts(client, owner, post["id"]) == 3
    assert (await client.delete(f"/api/comments/{by_fan['id']}/", headers=owner)).status == 204  # post's author
    assert await post_counts(client, owner, post["id"]) == 1  # its reply went with it
    assert (await client.delete(f"/api/comments/{by_fan_too['id']}/", headers=fan)).status == 204  # its author
    assert await post_counts(client, owner, post["id"]) == 0
    assert (await client.delete(f"/api/comments/{by_fan_too['id']}/", headers=fan)).status == 404
    assert len(await events(pool, "comment_deleted")) == 2


async def test_comment_likes_are_idempotent(client):
    _, headers = await user_with_token(client)
    _, fan = await user_with_token(client)
    post = await new_post(client, headers, "p")
    note = await comment(client, headers, post["id"], "like this")
    for _ in range(2):
        assert await (await client.post(f"/api/comments/{note['id']}/like/", headers=fan)).json() == \
            {"liked": True, "like_count": 1}
    listed = await (await client.get(f"/api/comments/?post_id={post['id']}", headers=fan)).json()
    assert listed["results"][0]["liked"] is True and listed["results"][0]["like_count"] == 1
    for _ in range(2):
        assert await (await client.post(f"/api/comments/{note['id']}/unlike/", headers=fan)).json() == \
            {"liked": False, "like_count": 0}


async def test_blocked_users_comments_are_hidden_and_blocked_posts_404(client, pool):
    author, headers = await user_with_token(client)
    troll, troll_headers = await user_with_token(client)
    _, reader = await user_with_token(client)
    post = await new_post(client, headers, "p")
    await comment(client, troll_headers, post["id"], "boo")
    kept = await comment(client, reader, post["id"], "hi")
    await pool.execute("INSERT INTO blocks (blocker_id, blocked_id) VALUES ($1, $2)", int(author["id"]), int(troll["id"]))
    listed = await (await client.get(f"/api/comments/?post_id={post['id']}", headers=headers)).json()
    assert [c["id"] for c in listed["results"]] == [kept["id"]]
    assert (await client.get(f"/api/comments/?post_id={post['id']}", headers=troll_headers)).status == 404
    response = await client.post("/api/comments/", json={"post_id": post["id"], "text": "again"}, headers=troll_headers)
    assert response.status == 404
    assert (await client.post(f"/api/comments/{kept['id']}/like/", headers=troll_headers)).status == 404
