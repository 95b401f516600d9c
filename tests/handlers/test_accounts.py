"""Accounts: registration rules, e-mail verification, deactivation, login limits, profiles,
settings and the users list, against the real stack."""

from __future__ import annotations

import re

import asyncpg
import pytest

from app.main import create_app
from handlers.accounts import DEADLOCK_ATTEMPTS, retry_on_deadlock
from storage import email, users
from tests.conftest import make_config
from tests.support import all_pages, login, register, user_with_token


@pytest.fixture
async def client(aiohttp_client, stack_env, config):
    """The real app, with login/registration limits high enough for the many users a test makes."""
    return await aiohttp_client(create_app(make_config(stack_env, database_url=config.database.url,
                                                       rate_limit_auth_per_minute=100_000)))


async def register_status(client, **body) -> tuple[int, dict]:
    base = {"username": "newbie", "email": "newbie@example.com", "password": "correct horse battery"}
    response = await client.post("/api/accounts/users/register/", json={**base, **body})
    return response.status, await response.json()


async def user_count(pool) -> int:
    return await pool.fetchval("SELECT count(*) FROM users")


# ---------------------------------------------------------------- registration


async def test_register_returns_the_public_user(client):
    status, body = await register_status(client, full_name="New Bie")
    assert status == 201
    assert body["username"] == "newbie" and body["full_name"] == "New Bie"
    assert isinstance(body["id"], str) and body["is_verified"] is False
    assert "password_hash" not in body and "email" not in body


@pytest.mark.parametrize("username", ["", "x" * 31, "has space", "dash-ed", "émile", "semi;colon", ".", "..", "_",
                                      "._", ".ana", "ana.", "a..b"])
async def test_bad_username_is_400_naming_username_and_creates_nothing(client, pool, username):
    status, body = await register_status(client, username=username, email="ok@example.com")
    assert status == 400
    assert "username" in body["error"]["fields"]
    assert await user_count(pool) == 0


async def test_username_of_30_allowed_characters_is_accepted(client):
    status, body = await register_status(client, username="A.b_9" * 6, email="long@example.com")
    assert status == 201, body


@pytest.mark.parametrize("field,value", [("username", "mIRA"), ("email", "MIRA@Example.com")])
async def test_taken_username_or_email_is_409_without_regard_to_case(client, pool, field, value):
    await register(client, "Mira")
    status, body = await register_status(client, **{"username": "other", "email": "other@example.com", field: value})
    assert status == 409
    assert set(body["error"]["fields"]) == {field}
    assert await user_count(pool) == 1


@pytest.mark.parametrize("username,password", [("newbie", "short7!"), ("newbie12", "NEWBIE12"),
                                               ("newbie", "Password123"), ("newbie", "qwertyuiop")])
async def test_weak_password_is_400_naming_password(client, pool, username, password):
    status, body = await register_status(client, username=username, password=password)
    assert status == 400
    assert "password" in body["error"]["fields"]
    assert await user_count(pool) == 0


@pytest.mark.parametrize("field,value", [("email", "not-an-email"), ("email", "a@b"), ("email", "a@b..c"), ("email", "a@.b"), ("full_name", "x" * 65),
                                         ("username", 5), ("nickname", "extra")])
async def test_bad_fields_are_400_naming_the_field(client, pool, field, value):
    status, body = await register_status(client, **{field: value})
    assert status == 400
    assert field in body["error"]["fields"]
    assert await user_count(pool) == 0


async def test_registration_records_a_user_registered_event(client, pool):
    user = await register(client, "eventful")
    rows = await pool.fetch("SELECT type, key, payload FROM outbox WHERE topic = 'accounts'")
    assert [(r["type"], r["key"], r["payload"]["username"]) for r in rows] == [
        ("user_registered", user["id"], "eventful")]


# ---------------------------------------------------------------- e-mail verification


async def mailed_token(pool, address: str) -> str:
    [message] = await email.sent_to(pool, address)
    return re.search(r"token: (\S+)", message.body).group(1)


async def test_verification_token_is_mailed_and_verifies_the_account(client, pool):
    user, headers = await user_with_token(client, "verifyme")
    token = await mailed_token(pool, "verifyme@example.com")
    response = await client.post("/api/accounts/verify-email/", json={"token": token})
    assert response.status == 200
    assert (await response.json())["is_verified"] is True
    me = await (await client.get("/api/accounts/users/me/", headers=headers)).json()
    assert me["is_verified"] is True and me["id"] == user["id"]


async def test_verification_token_works_once_and_garbage_is_400(client, pool):
    await register(client, "once")
    token = await mailed_token(pool, "once@example.com")
    assert (await client.post("/api/accounts/verify-email/", json={"token": token})).status == 200
    again = await client.post("/api/accounts/verify-email/", json={"token": token})
    assert again.status == 400 and "token" in (await again.json())["error"]["fields"]
    garbage = await client.post("/api/accounts/verify-email/", json={"token": "nope"})
    assert garbage.status == 400


async def test_expired_verification_token_is_400(client, pool):
    await register(client, "late")
    token = await mailed_token(pool, "late@example.com")
    await pool.execute("UPDATE email_verifications SET expires_at = now() - interval '1 second'")
    response = await client.post("/api/accounts/verify-email/", json={"token": token})
    assert response.status == 400
    assert await pool.fetchval("SELECT is_verified FROM users WHERE username = 'late'") is False


async def test_sink_is_smtp_only_when_configured(pool):
    assert isinstance(email.make_sink(pool, None), email.TableSink)
    smtp = email.SmtpSettings("mail.example", 587, "u", "p", True, "glint <x@example.com>")
    assert isinstance(email.make_sink(pool, smtp), email.SmtpSink)


# ---------------------------------------------------------------- logins and deactivation


async def test_login_is_limited_per_username_even_across_addresses(aiohttp_client, stack_env, config, redis_clean):
    client = await aiohttp_client(create_app(make_config(stack_env, database_url=config.database.url,
                                                         rate_limit_auth_per_minute=3)))
    statuses = []
    for name in ["Mira", "mira", "MIRA", "mira"]:
        # each attempt as if from a fresh address: only the per-username counter remains
        await redis_clean.delete("rl:login:127.0.0.1")
        statuses.append((await client.post("/api/token/", json={"username": name, "password": "x"})).status)
    assert statuses == [401, 401, 401, 429]


async def test_deactivation_cuts_off_access_and_refresh_tokens_at_once(client):
    user = await register(client, "leaving")
    tokens = await login(client, "leaving")
    headers = {"Authorization": f"Bearer {tokens['access']}"}
    response = await client.post("/api/accounts/users/me/deactivate/", json={"password": "correct horse battery"},
                                  headers=headers)
    assert response.status == 204
    assert (await client.get("/api/accounts/users/me/", headers=headers)).status == 401
    assert (await client.post("/api/token/refresh/", json={"refresh": tokens["refresh"]})).status == 401
    relogin = await client.post("/api/token/", json={"username": "leaving", "password": "correct horse battery"})
    assert relogin.status == 401
    _, other = await user_with_token(client)
    assert (await client.get(f"/api/accounts/users/{user['id']}/", headers=other)).status == 404


async def test_deactivation_needs_the_right_password(client, pool):
    _, headers = await user_with_token(client, "staying")
    response = await client.post("/api/accounts/users/me/deactivate/", json={"password": "wrong one"},
                                 headers=headers)
    assert response.status == 400
    assert "password" in (await response.json())["error"]["fields"]
    assert await pool.fetchval("SELECT is_active FROM users WHERE username = 'staying'") is True
    assert (await client.get("/api/accounts/users/me/", headers=headers)).status == 200


# ---------------------------------------------------------------- the viewer's profile


async def test_me_shows_private_fields(client):
    user, headers = await user_with_token(client, "selfie")
    me = await (await client.get("/api/accounts/users/me/", headers=headers)).json()
    assert me["id"] == user["id"] and me["email"] == "selfie@example.com" and me["show_presence"] is True


async def test_patch_me_edits_the_profile(client):
    _, headers = await user_with_token(client)
    edit = {"full_name": "Ana Lima", "bio": "b" * 150, "website": "https://ana.example/path?x=1"}
    response = await client.patch("/api/accounts/users/me/", json=edit, headers=headers)
    assert response.status == 200
    body = await response.json()
    assert {k: body[k] for k in edit} == edit
    partial = await (await client.patch("/api/accounts/users/me/", json={"bio": ""}, headers=headers)).json()
    assert partial["bio"] == "" and partial["full_name"] == "Ana Lima"


@pytest.mark.parametrize("field,value", [
    ("bio", "b" * 151), ("full_name", "n" * 65), ("website", "ftp://files.example"), ("website", "not a url"),
    ("website", "https://"), ("website", "javascript:alert(1)"), ("avatar_media_id", "abc"),
    ("avatar_media_id", 5), ("email", "new@example.com"),
])
async def test_bad_profile_edit_is_400_naming_the_field_and_changes_nothing(client, pool, field, value):
    user, headers = await user_with_token(client)
    response = await client.patch("/api/accounts/users/me/", json={field: value, "full_name": "Changed"}
                                  if field != "full_name" else {field: value}, headers=headers)
    assert response.status == 400
    assert field in (await response.json())["error"]["fields"]
    row = await pool.fetchrow("SELECT full_name, bio, website FROM users WHERE id = $1", int(user["id"]))
    assert tuple(row) == ("", "", "")


async def test_avatar_must_be_media_the_user_owns(client, pool):
    user, headers = await user_with_token(client)
    unknown = await client.patch("/api/accounts/users/me/", json={"avatar_media_id": "12345"}, headers=headers)
    assert unknown.status == 400
    assert (await unknown.json())["error"]["fields"] == {"avatar_media_id": "Unknown media."}
    if await pool.fetchval("SELECT to_regclass('media') IS NULL"):
        return  # the media table arrives with migration 0004; until then every id is unknown media
    other, _ = await user_with_token(client)
    insert = ("INSERT INTO media (owner_id, kind, content_type, size_bytes, original_key)"
              " VALUES ($1, 'image', 'image/jpeg', 1, 'k') RETURNING id")
    mine = await pool.fetchval(insert, int(user["id"]))
    theirs = await pool.fetchval(insert, int(other["id"]))
    refused = await client.patch("/api/accounts/users/me/", json={"avatar_media_id": str(theirs)}, headers=headers)
    assert refused.status == 400
    accepted = await client.patch("/api/accounts/users/me/", json={"avatar_media_id": str(mine)}, headers=headers)
    assert (await accepted.json())["avatar_media_id"] == str(mine)
    assert await pool.fetchval("SELECT attached_at IS NOT NULL FROM media WHERE id = $1", mine)
    cleared = await client.patch("/api/accounts/users/me/", json={"avatar_media_id": None}, headers=headers)
    assert (await cleared.json())["avatar_media_id"] is None


# ---------------------------------------------------------------- other users' profiles


async def test_profile_shows_counts_and_the_viewers_relationship(client):
    ana, ana_h = await user_with_token(client, "ana")
    bob, bob_h = await user_with_token(client, "bob", full_name="Bob B")
    assert (await client.post(f"/api/accounts/users/{bob['id']}/follow/", headers=ana_h)).status == 200
    seen = await (await client.get(f"/api/accounts/users/{bob['id']}/", headers=ana_h)).json()
    assert seen["username"] == "bob" and seen["full_name"] == "Bob B" and "email" not in seen
    assert (seen["followers_count"], seen["following_count"], seen["posts_count"]) == (1, 0, 0)
    assert seen["relationship"] == {"following": True, "followed_by": False, "requested": False, "blocking": False,
                                    "muting": False}
    back = await (await client.get(f"/api/accounts/users/{ana['id']}/", headers=bob_h)).json()
    assert back["relationship"]["followed_by"] is True and back["following_count"] == 1


async def test_unknown_or_malformed_user_is_404(client):
    _, headers = await user_with_token(client)
    for path in ["/api/accounts/users/123456789/", "/api/accounts/users/abc/", "/api/accounts/users/-1/"]:
        assert (await client.get(path, headers=headers)).status == 404


# ---------------------------------------------------------------- settings


async def test_settings_have_defaults(client):
    _, headers = await user_with_token(client)
    body = await (await client.get("/api/accounts/settings/", headers=headers)).json()
    assert body["is_private"] is False and body["show_presence"] is True
    assert set(body["notifications"]) == set(users.NOTIFICATION_KINDS)
    assert body["notifications"]["like"] == {"in_app": True, "push": True, "email": False}


async def test_settings_patch_merges_preferences_and_storage_reads_them(client, pool):
    user, headers = await user_with_token(client)
    await client.patch("/api/accounts/settings/", json={"notifications": {"like": {"push": False}}}, headers=headers)
    response = await client.patch("/api/accounts/settings/", headers=headers, json={
        "show_presence": False, "notifications": {"like": {"email": True}, "message": {"in_app": False}}})
    assert response.status == 200
    body = await response.json()
    assert body["show_presence"] is False
    assert body["notifications"]["like"] == {"in_app": True, "push": False, "email": True}
    prefs = await users.get_notification_prefs(pool, [int(user["id"]), 999])
    assert list(prefs) == [int(user["id"])]
    assert prefs[int(user["id"])]["message"] == {"in_app": False, "push": True, "email": False}
    assert prefs[int(user["id"])]["follow"] == users.DEFAULT_CHANNELS


@pytest.mark.parametrize("body,field", [
    ({"notifications": {"poke": {"push": False}}}, "notifications"),
    ({"notifications": {"poke": {}}}, "notifications"),
    ({"notifications": {"like": {"pigeon": True}}}, "notifications"),
    ({"notifications": {"like": {"push": "no"}}}, "notifications"),
    ({"is_private": "yes"}, "is_private"),
    ({"theme": "dark"}, "theme"),
])
async def test_bad_settings_are_400_naming_the_field(client, pool, body, field):
    user, headers = await user_with_token(client)
    response = await client.patch("/api/accounts/settings/", json={**body, "show_presence": False}
                                  if "show_presence" not in body else body, headers=headers)
    assert response.status == 400
    assert field in (await response.json())["error"]["fields"]
    assert await pool.fetchval("SELECT show_presence FROM users WHERE id = $1", int(user["id"])) is True


# ---------------------------------------------------------------- the users list


async def usernames(client, headers, query: str = "") -> list[str]:
    body = await (await client.get(f"/api/accounts/users/{query}", headers=headers)).json()
    return [u["username"] for u in body["results"]]


async def test_users_list_filters_by_username_or_full_name_prefix(client):
    _, headers = await user_with_token(client, "viewer")
    await register(client, "anna_k", full_name="Anna Karenina")
    await register(client, "leo", full_name="Leo Tolstoy")
    await register(client, "tolstoy_fan", full_name="Fan")
    await register(client, "a_b", full_name="")
    await register(client, "axb", full_name="")
    assert await usernames(client, headers, "?q=AN") == ["anna_k"]
    assert await usernames(client, headers, "?q=tol") == ["leo", "tolstoy_fan"]
    assert await usernames(client, headers, "?q=a_") == ["a_b"]  # '_' is literal, not a wildcard
    assert await usernames(client, headers, "?q=zzz") == []
    assert len(await usernames(client, headers)) == 6


async def test_users_list_pages_with_a_cursor(client):
    _, headers = await user_with_token(client, "page0")
    for i in range(1, 5):
        await register(client, f"page{i}")
    seen = [u["username"] for u in await all_pages(client, "/api/accounts/users/?q=page&limit=2", headers)]
    assert seen == [f"page{i}" for i in range(5)]
    bad = await client.get("/api/accounts/users/?cursor=%%%", headers=headers)
    assert bad.status == 400 and "cursor" in (await bad.json())["error"]["fields"]
    assert (await client.get("/api/accounts/users/?limit=0", headers=headers)).status == 400


async def test_a_write_aborted_by_a_deadlock_runs_again_then_gives_up():
    calls = []

    @retry_on_deadlock
    async def write(fail_times: int) -> str:
        calls.append(1)
        if len(calls) <= fail_times:
            raise asyncpg.DeadlockDetectedError("deadlock detected")
        return "done"

    assert await write(1) == "done" and len(calls) == 2
    calls.clear()
    with pytest.raises(asyncpg.DeadlockDetectedError):
        await write(DEADLOCK_ATTEMPTS)
    assert len(calls) == DEADLOCK_ATTEMPTS


async def test_a_profile_edit_emits_user_updated_for_the_search_index(client, pool):
    user, headers = await user_with_token(client)
    response = await client.patch("/api/accounts/users/me/", json={"full_name": "Ana Lima"}, headers=headers)
    assert response.status == 200
    rows = await pool.fetch("SELECT payload FROM outbox WHERE type = 'user_updated'")
    assert [r["payload"] for r in rows] == [{"user_id": user["id"]}]


async def test_a_field_past_its_bounds_is_named_in_plain_words(client, pool):
    status, body = await register_status(client, username="plainly", email="plainly@example.com", password="short")
    assert status == 400
    assert body["error"]["fields"] == {"password": "At least 8 characters."}
    assert body["error"]["message"] == "password: At least 8 characters."
    status, body = await register_status(client, username="p" * 31, email="plainly@example.com")
    assert body["error"]["fields"]["username"] == "At most 30 characters."
    status, body = await register_status(client, username=5, email="plainly@example.com")
    assert body["error"]["fields"]["username"] == "Text expected."
    assert await user_count(pool) == 0
