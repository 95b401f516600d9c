"""Reports, the moderation queue, resolutions and suspensions, through the API."""

from __future__ import annotations

from aiohttp import WSMsgType

from handlers.admin import lift_expired_suspensions
from handlers.context import pool_key, redis_key
from tests.conftest import wait_for
from tests.support import (
    PASSWORD, admin_headers, frame_of, login, moderator_headers, new_post, open_socket, send, start_conversation,
    user_with_token,
)


async def report(client, headers, kind: str, target_id: str, reason: str = "spam", expect: int = 201, **extra):
    response = await client.post("/api/reports/", headers=headers,
                                 json={"target": {"type": kind, "id": target_id}, "reason": reason, **extra})
    assert response.status == expect, await response.text()
    return await response.json()


async def queue(client, headers, **query) -> list[dict]:
    response = await client.get("/api/admin/reports/", headers=headers, params=query)
    assert response.status == 200, await response.text()
    return (await response.json())["results"]


async def resolve(client, headers, report_id: str, action: str, expect: int = 200, note: str = ""):
    response = await client.post(f"/api/admin/reports/{report_id}/resolve/", headers=headers,
                                 json={"action": action, "note": note})
    assert response.status == expect, await response.text()
    return await response.json()


async def audit_actions(client, admin_h) -> list[tuple[str, str, str]]:
    entries = (await (await client.get("/api/admin/audit/", headers=admin_h)).json())["results"]
    return [(e["action"], e["target_type"], e["target_id"]) for e in reversed(entries)]


async def staff(client, pool) -> tuple[dict[str, str], dict, dict[str, str]]:
    """An admin's headers, and a moderator they made."""
    _, admin_h = await admin_headers(client, pool)
    moderator, moderator_h = await moderator_headers(client, admin_h)
    return admin_h, moderator, moderator_h


async def outbox_types(pool, topic: str) -> list[str]:
    return [r["type"] for r in await pool.fetch("SELECT type FROM outbox WHERE topic = $1 ORDER BY id", topic)]


async def test_a_moderator_goes_from_reports_to_a_removed_post_and_a_suspended_account(client, pool):
    admin_h, moderator, moderator_h = await staff(client, pool)
    author, author_h = await user_with_token(client)
    reader, reader_h = await user_with_token(client)
    other, other_h = await user_with_token(client)
    post = await new_post(client, author_h, "buy cheap followers")

    first = await report(client, reader_h, "post", post["id"], text="spam link")
    assert first["status"] == "open"
    again = await report(client, reader_h, "post", post["id"], reason="other", expect=200)
    assert again["id"] == first["id"]  # one open report per reporter and target
    await report(client, other_h, "post", post["id"])

    items = await queue(client, moderator_h)
    assert [i["reporter"]["username"] for i in items] == [reader["username"], other["username"]]  # oldest first
    assert items[0]["target"]["text"] == "buy cheap followers" and items[0]["target"]["exists"] is True
    assert items[0]["target"]["owner"]["username"] == author["username"]
    assert items[0]["target_report_count"] == 2
    assert await queue(client, moderator_h, type="user") == []

    done = await resolve(client, moderator_h, first["id"], "remove", note="spam")
    assert sorted(done["resolved_report_ids"]) == sorted(i["id"] for i in items)  # every report on the target
    assert (await client.get(f"/api/posts/{post['id']}/", headers=reader_h)).status == 404
    assert await queue(client, moderator_h) == []
    resolved = await queue(client, moderator_h, status="resolved")
    assert {i["action"] for i in resolved} == {"remove"} and resolved[0]["target"]["exists"] is False

    async def told(headers) -> bool:
        body = await (await client.get("/api/notifications/", headers=headers)).json()
        return any(n["kind"] == "report_resolved" for n in body["results"])
    await wait_for(lambda: told(reader_h))
    await wait_for(lambda: told(other_h))

    account = await report(client, reader_h, "user", author["id"], reason="harassment")
    await resolve(client, moderator_h, account["id"], "suspend")
    # tokens stop at once, the account cannot log in, and it is hidden from everyone
    assert (await client.get("/api/accounts/users/me/", headers=author_h)).status == 401
    response = await client.post("/api/token/", json={"username": author["username"],
                                                       "password": "correct horse battery"})
    assert response.status == 401 and (await response.json())["error"]["code"] == "account_suspended"
    assert (await client.get(f"/api/accounts/users/{author['id']}/", headers=reader_h)).status == 404

    assert await audit_actions(client, admin_h) == [
        ("superuser_created", "user", (await pool.fetchval("SELECT id FROM users WHERE role = 'admin'")).__str__()),
        ("role_changed", "user", moderator["id"]),
        ("report_remove", "post", post["id"]),
        ("user_suspended", "user", author["id"]),
        ("report_suspend", "user", author["id"]),
    ]
    assert await outbox_types(pool, "moderation") == [
        "report_created", "report_created", "report_resolved", "report_created", "user_suspended", "report_resolved"]
    assert "post_deleted" in await outbox_types(pool, "posts")

    response = await client.post(f"/api/admin/users/{author['id']}/unsuspend/", headers=moderator_h,
                                 json={"note": "appeal accepted"})
    assert response.status == 200 and (await response.json())["suspended"] is False
    assert (await client.get(f"/api/accounts/users/{author['id']}/", headers=reader_h)).status == 200
    await login(client, author["username"])


async def test_a_moderator_cannot_act_on_an_admin_nor_on_their_own_reports(client, pool):
    admin, admin_h = await admin_headers(client, pool)
    _, moderator_h = await moderator_headers(client, admin_h)
    other_mod, other_mod_h = await moderator_headers(client, admin_h)
    reader, reader_h = await user_with_token(client)
    post = await new_post(client, admin_h, "an admin's post")

    response = await client.post(f"/api/admin/users/{admin['id']}/suspend/", headers=moderator_h,
                                 json={"reason": "no"})
    assert response.status == 403
    on_admin = await report(client, reader_h, "post", post["id"])
    await resolve(client, moderator_h, on_admin["id"], "remove", expect=403)
    await resolve(client, moderator_h, on_admin["id"], "suspend", expect=403)
    assert (await client.get(f"/api/posts/{post['id']}/", headers=reader_h)).status == 200

    own = await report(client, moderator_h, "user", reader["id"])
    await resolve(client, moderator_h, own["id"], "suspend", expect=403)
    await resolve(client, moderator_h, own["id"], "dismiss", expect=403)
    # another moderator may; a moderator never acts on their own account, an admin may act on a moderator
    await resolve(client, other_mod_h, own["id"], "dismiss")
    await resolve(client, other_mod_h, own["id"], "dismiss", expect=409)
    response = await client.post(f"/api/admin/users/{other_mod['id']}/suspend/", headers=other_mod_h,
                                 json={"reason": "me"})
    assert response.status == 403
    response = await client.post(f"/api/admin/users/{other_mod['id']}/suspend/", headers=admin_h,
                                 json={"reason": "abuse of powers", "until": "2999-01-01T00:00:00Z"})
    assert response.status == 200 and (await response.json())["suspended_until"].startswith("2999-01-01")


async def test_a_target_the_reporter_cannot_see_is_404_and_bad_reports_are_400(client, pool):
    _, private_h = await user_with_token(client)
    hidden = await new_post(client, private_h, "followers only")
    await client.patch("/api/accounts/settings/", headers=private_h, json={"is_private": True})
    reader, reader_h = await user_with_token(client)
    await report(client, reader_h, "post", hidden["id"], expect=404)
    await report(client, reader_h, "comment", "123", expect=404)
    await report(client, reader_h, "message", "123", expect=404)
    await report(client, reader_h, "story", "123", expect=404)
    await report(client, reader_h, "user", reader["id"], expect=400)  # oneself
    await report(client, reader_h, "post", "abc", expect=400)
    await report(client, reader_h, "planet", "1", expect=400)
    await report(client, reader_h, "post", hidden["id"], reason="boring", expect=400)
    assert (await client.post("/api/reports/", json={})).status == 401


async def test_a_removed_message_shows_as_removed_to_every_member_with_a_socket_event(client, pool):
    _, _, moderator_h = await staff(client, pool)
    sender, sender_h = await user_with_token(client)
    member, member_h = await user_with_token(client)
    token = member_h["Authorization"].split()[1]
    conversation = await start_conversation(client, sender_h["Authorization"].split()[1], member["id"])
    sent = await client.post(f"/api/conversations/{conversation['id']}/messages/", headers=sender_h,
                             json={"client_id": "c1", "text": "abuse"})
    message = await sent.json()
    ws = await open_socket(client, token)
    filed = await report(client, member_h, "message", message["id"], reason="harassment")
    items = await queue(client, moderator_h, type="message")
    assert items[0]["target"]["text"] == "abuse" and items[0]["target"]["seq"] == message["seq"]
    await resolve(client, moderator_h, filed["id"], "remove")
    frame = await frame_of(ws, "message.removed")
    assert frame == {"type": "message.removed", "conversation_id": conversation["id"], "seq": message["seq"]}
    for headers in (sender_h, member_h):
        history = await (await client.get(f"/api/conversations/{conversation['id']}/messages/",
                                          headers=headers)).json()
        shown = history["results"][-1]
        assert shown["removed"] is True and shown["deleted"] is True and shown["text"] == ""
    await ws.close()


async def test_a_suspended_account_is_hidden_and_its_open_socket_closes_with_4403_nothing_deleted(client, pool):
    _, _, moderator_h = await staff(client, pool)
    (author, author_h), (_, reader_h), (_, host_h) = [await user_with_token(client) for _ in range(3)]
    post, hosted = await new_post(client, author_h, "mine"), await new_post(client, host_h, "a stranger's post")
    comment = await (await client.post("/api/comments/", headers=author_h,
                                       json={"post_id": hosted["id"], "text": "rude"})).json()
    ws = await open_socket(client, author_h["Authorization"].split()[1])

    response = await client.post(f"/api/admin/users/{author['id']}/suspend/", headers=moderator_h,
                                 json={"reason": "spam"})
    assert response.status == 200
    msg = await ws.receive(timeout=10)
    assert msg.type == WSMsgType.CLOSE and msg.data == 4403
    assert (await client.get(f"/api/posts/{post['id']}/", headers=reader_h)).status == 404
    assert (await client.get(f"/api/posts/?author={author['id']}", headers=reader_h)).status == 404
    comments = await (await client.get(f"/api/comments/?post_id={hosted['id']}", headers=reader_h)).json()
    assert comments["results"] == []
    await report(client, reader_h, "comment", comment["id"], expect=404)
    assert (await client.get("/ws", params={"token": author_h["Authorization"].split()[1]})).status == 401
    assert await pool.fetchval("SELECT count(*) FROM posts WHERE author_id = $1", int(author["id"])) == 1

    # a suspension with an end is lifted by the periodic job once it has passed
    await client.post(f"/api/admin/users/{author['id']}/suspend/", headers=moderator_h,
                      json={"reason": "cool off", "until": "2999-01-01T00:00:00Z"})
    await pool.execute("UPDATE users SET suspended_until = now() - interval '1 second' WHERE id = $1",
                       int(author["id"]))
    app = client.server.app
    assert await lift_expired_suspensions(app[pool_key], app[redis_key]) == 1
    assert (await client.get(f"/api/posts/{post['id']}/", headers=reader_h)).status == 200
    assert len((await (await client.get(f"/api/comments/?post_id={hosted['id']}",
                                        headers=reader_h)).json())["results"]) == 1
    await login(client, author["username"])


async def test_stats_count_users_posts_messages_open_reports_and_sockets(client, pool):
    _, _, moderator_h = await staff(client, pool)
    author, author_h = await user_with_token(client)
    post = await new_post(client, author_h, "x")
    await report(client, moderator_h, "post", post["id"])
    ws = await open_socket(client, author_h["Authorization"].split()[1])
    stats = await (await client.get("/api/admin/stats/", headers=moderator_h)).json()
    assert stats == {"users": 3, "active_24h": 3, "posts": 1, "messages": 0, "open_reports": 1,
                     "connected_sockets": 1}
    await ws.close()


async def test_moderators_find_suspended_and_deactivated_accounts_which_the_users_list_hides(client, pool):
    _, moderator, moderator_h = await staff(client, pool)
    suspended, _ = await user_with_token(client, username="zed_suspended", full_name="Zed Quiet")
    gone, gone_h = await user_with_token(client, username="zed_gone")
    shown, _ = await user_with_token(client, username="zed_shown")
    response = await client.post(f"/api/admin/users/{suspended['id']}/suspend/", headers=moderator_h,
                                 json={"reason": "spam"})
    assert response.status == 200, await response.text()
    response = await client.post("/api/accounts/users/me/deactivate/", headers=gone_h, json={"password": PASSWORD})
    assert response.status == 204
    listed = await (await client.get("/api/accounts/users/", params={"q": "zed"}, headers=moderator_h)).json()
    assert [u["username"] for u in listed["results"]] == ["zed_shown"]

    found = await (await client.get("/api/admin/users/", params={"q": "zed"}, headers=moderator_h)).json()
    by_name = {a["username"]: a for a in found["results"]}
    assert list(by_name) == ["zed_gone", "zed_shown", "zed_suspended"]
    assert by_name["zed_suspended"]["suspended"] and by_name["zed_suspended"]["suspension_reason"] == "spam"
    assert not by_name["zed_gone"]["is_active"] and not by_name["zed_gone"]["suspended"]
    assert by_name["zed_shown"]["is_active"] and by_name["zed_shown"]["role"] == "user"
    # by a word of the full name, and a page at a time
    quiet = await (await client.get("/api/admin/users/", params={"q": "quiet"}, headers=moderator_h)).json()
    assert [a["id"] for a in quiet["results"]] == [suspended["id"]]
    first = await (await client.get("/api/admin/users/", params={"q": "zed", "limit": 2}, headers=moderator_h)).json()
    rest = await (await client.get(first["next"], headers=moderator_h)).json()
    assert [a["username"] for a in first["results"] + rest["results"]] == list(by_name)
    assert (await client.get("/api/admin/users/", params={"q": "z" * 65}, headers=moderator_h)).status == 400


async def test_a_message_whose_sender_the_reporter_blocked_is_404_to_report(client, pool):
    (zoe, zoe_h), (xan, xan_h), (yan, yan_h) = [await user_with_token(client) for _ in range(3)]
    group = await (await client.post("/api/conversations/", headers=zoe_h,
                                     json={"member_ids": [xan["id"], yan["id"]]})).json()
    sent = await send(client, xan_h["Authorization"].split()[1], group["id"], "x1", text="before the block")
    message = await sent.json()
    await report(client, yan_h, "message", message["id"], expect=201)
    assert (await client.post(f"/api/accounts/users/{xan['id']}/block/", headers=yan_h)).status in (200, 201, 204)
    await report(client, yan_h, "message", message["id"], reason="harassment", expect=404)
