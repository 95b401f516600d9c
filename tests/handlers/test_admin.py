"""Roles and the admin API: who may reach /api/admin/ (everyone else gets 404), role changes,
`glint createsuperuser`, and the audit log of every role action."""

from __future__ import annotations

import asyncio

import pytest

from app import cli
from tests.support import admin_headers, login, moderator_headers, user_with_token


async def test_every_account_has_a_role_shown_on_its_own_profile(client):
    _, headers = await user_with_token(client)
    me = await (await client.get("/api/accounts/users/me/", headers=headers)).json()
    assert me["role"] == "user"


async def test_the_admin_api_answers_404_to_everyone_without_the_role(client, pool):
    _, admin_h = await admin_headers(client, pool)
    moderator, moderator_h = await moderator_headers(client, admin_h)
    _, user_h = await user_with_token(client)
    for path in ("/api/admin/audit/", "/api/admin/reports/", "/api/admin/stats/", "/api/admin/users/"):
        assert (await client.get(path)).status == 404
        assert (await client.get(path, headers=user_h)).status == 404, path
    # admin-only routes are hidden from moderators too
    assert (await client.get("/api/admin/audit/", headers=moderator_h)).status == 404
    response = await client.patch(f"/api/admin/users/{moderator['id']}/", headers=moderator_h, json={"role": "admin"})
    assert response.status == 404
    assert (await client.get("/api/admin/audit/", headers=admin_h)).status == 200


async def test_an_admin_changes_roles_and_the_badge_and_each_change_is_audited(client, pool):
    admin, admin_h = await admin_headers(client, pool)
    user, user_h = await user_with_token(client)
    response = await client.patch(f"/api/admin/users/{user['id']}/", headers=admin_h,
                                  json={"role": "moderator", "is_verified": True})
    assert response.status == 200
    assert (await response.json())["role"] == "moderator"
    me = await (await client.get("/api/accounts/users/me/", headers=user_h)).json()
    assert me["role"] == "moderator" and me["is_verified"] is True
    # a demotion acts at once: the role is read on each request
    await client.patch(f"/api/admin/users/{user['id']}/", headers=admin_h, json={"role": "user"})
    assert (await client.get("/api/admin/stats/", headers=user_h)).status == 404
    entries = (await (await client.get("/api/admin/audit/", headers=admin_h)).json())["results"]
    assert [(e["action"], e["details"]) for e in entries[:3]] == [
        ("role_changed", {"from": "moderator", "to": "user"}),
        ("verified_changed", {"from": False, "to": True}),
        ("role_changed", {"from": "user", "to": "moderator"}),
    ]
    assert entries[0]["actor_id"] == admin["id"] and entries[0]["target_id"] == user["id"]
    assert entries[-1]["action"] == "superuser_created"
    bad = await client.patch(f"/api/admin/users/{user['id']}/", headers=admin_h, json={"role": "god"})
    assert bad.status == 400
    own = await client.patch(f"/api/admin/users/{admin['id']}/", headers=admin_h, json={"role": "user"})
    assert own.status == 403
    events = await pool.fetch("SELECT type FROM outbox WHERE type = 'user_role_changed'")
    assert len(events) == 3


async def test_createsuperuser_reads_the_password_from_the_environment(client, stack_env, database_url, pool,
                                                                       monkeypatch, capsys):
    for key, value in stack_env.items():
        if key.startswith("GLINT_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("GLINT_DATABASE_URL", database_url)
    monkeypatch.setenv("GLINT_SUPERUSER_PASSWORD", "a long admin secret")
    await asyncio.to_thread(cli.main, ["createsuperuser", "--username", "boss", "--email", "boss@example.com"])
    assert "admin boss created" in capsys.readouterr().out
    tokens = await login(client, "boss", "a long admin secret")
    me = await (await client.get("/api/accounts/users/me/",
                                 headers={"Authorization": f"Bearer {tokens['access']}"})).json()
    assert me["role"] == "admin" and me["is_verified"] is True
    with pytest.raises(SystemExit, match="taken"):
        await asyncio.to_thread(cli.main, ["createsuperuser", "--username", "boss", "--email", "b2@example.com"])


def test_without_a_terminal_or_the_variable_createsuperuser_says_what_to_set(monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(SystemExit, match="GLINT_SUPERUSER_PASSWORD"):
        cli.superuser_password({})
    assert cli.superuser_password({"GLINT_SUPERUSER_PASSWORD": "x" * 12}) == "x" * 12
