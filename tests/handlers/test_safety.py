"""Account safety: password change and reset by e-mail, the sessions list and logging one out."""

from __future__ import annotations

import re

import pytest

from storage import email
from tests.conftest import wait_for
from tests.support import bearer, login, me_status, register


@pytest.fixture
def client(clocked_client):
    return clocked_client

PASSWORD = "correct horse battery"


async def outbox_types(pool) -> list[str]:
    return [r["type"] for r in await pool.fetch("SELECT type FROM outbox ORDER BY id")]


# ---------------------------------------------------------------- password change


async def test_changing_the_password_revokes_every_other_session_and_keeps_this_one(client, pool):
    user = await register(client)
    here, elsewhere = await login(client, user["username"]), await login(client, user["username"])
    response = await client.post("/api/accounts/password/", headers=bearer(here),
                                 json={"old_password": PASSWORD, "new_password": "a new long secret"})
    assert response.status == 204
    assert await me_status(client, here) == 200
    assert await me_status(client, elsewhere) == 401
    refreshed = await client.post("/api/token/refresh/", json={"refresh": elsewhere["refresh"]})
    assert refreshed.status == 401
    old = await client.post("/api/token/", json={"username": user["username"], "password": PASSWORD})
    assert old.status == 401
    await login(client, user["username"], "a new long secret")
    assert "password_changed" in await outbox_types(pool)


async def test_a_refused_password_change_names_the_field_and_changes_nothing(client):
    user = await register(client)
    here, elsewhere = await login(client, user["username"]), await login(client, user["username"])
    for body, field in [({"old_password": "wrong password", "new_password": "a new long secret"}, "old_password"),
                        ({"old_password": PASSWORD, "new_password": "short"}, "new_password"),
                        ({"old_password": PASSWORD, "new_password": "password123"}, "new_password"),
                        ({"old_password": PASSWORD}, "new_password")]:
        response = await client.post("/api/accounts/password/", headers=bearer(here), json=body)
        assert response.status == 400
        assert field in (await response.json())["error"]["fields"]
    assert await me_status(client, elsewhere) == 200
    await login(client, user["username"])


# ---------------------------------------------------------------- password reset


async def reset_token(pool, address: str) -> str:
    """Wait for the reset e-mail the consumer sends, and read the token from it."""
    async def arrived() -> bool:
        return any("reset" in m.subject.lower() for m in await email.sent_to(pool, address))

    await wait_for(arrived)
    message = next(m for m in await email.sent_to(pool, address) if "reset" in m.subject.lower())
    return re.search(r"token: (\S+)", message.body).group(1)


async def test_a_reset_token_sets_a_new_password_once_and_revokes_every_session(client, pool):
    user = await register(client)
    pair = await login(client, user["username"])
    response = await client.post("/api/accounts/password-reset/", json={"email": f"{user['username'].upper()}@example.com"})
    assert response.status == 202
    token = await reset_token(pool, f"{user['username']}@example.com")
    assert await pool.fetchval("SELECT count(*) FROM password_resets WHERE token_hash = $1", token.encode()) == 0
    confirm = {"token": token, "new_password": "brand new secret"}
    assert (await client.post("/api/accounts/password-reset/confirm/", json=confirm)).status == 204
    assert await me_status(client, pair) == 401
    await login(client, user["username"], "brand new secret")
    again = await client.post("/api/accounts/password-reset/confirm/", json={**confirm, "new_password": "third secret!"})
    assert again.status == 400 and "token" in (await again.json())["error"]["fields"]
    await login(client, user["username"], "brand new secret")


async def test_a_reset_for_an_unknown_address_answers_the_same_and_sends_nothing(client, pool):
    user = await register(client)
    known = await client.post("/api/accounts/password-reset/", json={"email": f"{user['username']}@example.com"})
    unknown = await client.post("/api/accounts/password-reset/", json={"email": "nobody@example.com"})
    assert (known.status, await known.json()) == (unknown.status, await unknown.json()) == (202, {"status": "accepted"})
    await reset_token(pool, f"{user['username']}@example.com")
    assert await email.sent_to(pool, "nobody@example.com") == []


async def test_an_expired_or_made_up_reset_token_is_refused(client, pool):
    user = await register(client)
    await client.post("/api/accounts/password-reset/", json={"email": f"{user['username']}@example.com"})
    token = await reset_token(pool, f"{user['username']}@example.com")
    await pool.execute("UPDATE password_resets SET expires_at = now() - interval '1 second'")
    for candidate in (token, "made-up"):
        response = await client.post("/api/accounts/password-reset/confirm/",
                                     json={"token": candidate, "new_password": "brand new secret"})
        assert response.status == 400
    await login(client, user["username"])


async def test_a_weak_new_password_does_not_spend_the_reset_token(client, pool):
    user = await register(client)
    await client.post("/api/accounts/password-reset/", json={"email": f"{user['username']}@example.com"})
    token = await reset_token(pool, f"{user['username']}@example.com")
    weak = await client.post("/api/accounts/password-reset/confirm/", json={"token": token, "new_password": "qwerty123"})
    assert weak.status == 400 and "new_password" in (await weak.json())["error"]["fields"]
    ok = await client.post("/api/accounts/password-reset/confirm/", json={"token": token, "new_password": "brand new secret"})
    assert ok.status == 204


# ---------------------------------------------------------------- sessions


async def test_the_sessions_list_names_devices_and_marks_the_current_one(client):
    user = await register(client)

    async def login_from(user_agent: str) -> dict:
        response = await client.post("/api/token/", headers={"User-Agent": user_agent},
                                     json={"username": user["username"], "password": PASSWORD})
        return await response.json()

    firefox = await login_from("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")
    phone = await login_from("glint-ios/2.1 (iPhone; iOS 18.1)")
    response = await client.get("/api/accounts/sessions/", headers=bearer(firefox))
    assert response.status == 200
    listed = (await response.json())["results"]
    assert [s["device"] for s in listed] == ["iOS", "Firefox on Linux"]
    assert [s["current"] for s in listed] == [False, True]
    assert all(s["ip"] and s["last_used_at"] for s in listed)
    assert (await client.delete(f"/api/accounts/sessions/{listed[0]['id']}/", headers=bearer(firefox))).status == 204
    assert await me_status(client, phone) == 401
    assert await me_status(client, firefox) == 200
    remaining = (await (await client.get("/api/accounts/sessions/", headers=bearer(firefox))).json())["results"]
    assert [s["id"] for s in remaining] == [listed[1]["id"]]


async def test_another_accounts_session_or_a_revoked_one_is_404(client, pool):
    owner, other = await register(client), await register(client)
    owner_pair, other_pair = await login(client, owner["username"]), await login(client, other["username"])
    theirs = (await (await client.get("/api/accounts/sessions/", headers=bearer(other_pair))).json())["results"][0]["id"]
    for session_id in (theirs, "123", "not-an-id"):
        assert (await client.delete(f"/api/accounts/sessions/{session_id}/", headers=bearer(owner_pair))).status == 404
    assert await me_status(client, other_pair) == 200
    mine = (await (await client.get("/api/accounts/sessions/", headers=bearer(owner_pair))).json())["results"][0]["id"]
    assert (await client.delete(f"/api/accounts/sessions/{mine}/", headers=bearer(owner_pair))).status == 204
    assert await me_status(client, owner_pair) == 401
    assert "session_revoked" in await outbox_types(pool)


async def test_the_openapi_document_describes_every_account_safety_route(client):
    document = await (await client.get("/api/openapi.json")).json()
    paths = document["paths"]
    for path, method, status in [
        ("/api/accounts/password/", "post", "204"), ("/api/accounts/password-reset/", "post", "202"),
        ("/api/accounts/password-reset/confirm/", "post", "204"), ("/api/accounts/sessions/", "get", "200"),
        ("/api/accounts/sessions/{id}/", "delete", "204"), ("/api/accounts/2fa/setup/", "post", "200"),
        ("/api/accounts/2fa/confirm/", "post", "200"), ("/api/accounts/2fa/disable/", "post", "204"),
        ("/api/accounts/users/me/", "delete", "202"), ("/api/accounts/export/", "post", "202"),
        ("/api/accounts/export/", "get", "200"),
    ]:
        assert status in paths[path][method]["responses"], (path, method)
    token = paths["/api/token/"]["post"]
    assert "2fa_required" in token["summary"]
    schemas = document["components"]["schemas"]
    assert "code" in schemas["TokenRequest"]["properties"]
    assert {"status", "url", "expires_at"} <= set(schemas["ExportOut"]["properties"])


async def test_malformed_bodies_on_the_account_safety_routes_are_clear_4xx(client):
    user = await register(client)
    headers = bearer(await login(client, user["username"]))
    for method, path in [("POST", "/api/accounts/password/"), ("POST", "/api/accounts/password-reset/"),
                         ("POST", "/api/accounts/password-reset/confirm/"), ("POST", "/api/accounts/2fa/confirm/"),
                         ("POST", "/api/accounts/2fa/disable/"), ("DELETE", "/api/accounts/users/me/")]:
        for body in (b"{", b"[]", b'{"unexpected": 1}', b'{"password": 5, "code": [], "token": {}}'):
            response = await client.request(method, path, data=body,
                                            headers={**headers, "Content-Type": "application/json"})
            assert response.status == 400, (method, path, body, await response.text())
            assert "error" in await response.json()
        bare = await client.request(method, path, headers=headers)
        assert bare.status == 415, (method, path)
    assert (await client.get("/api/accounts/users/me/", headers=headers)).status == 200
