"""TOTP two-factor: set-up and confirmation, login with a TOTP or a recovery code, no replay,
disabling; secrets sealed at rest."""

from __future__ import annotations

from datetime import timedelta

import pytest
import pyotp

from tests.support import PASSWORD, bearer, login, register


@pytest.fixture
def client(clocked_client):
    return clocked_client


async def token_status(client, username: str, code: str | None = None) -> tuple[int, dict]:
    body = {"username": username, "password": PASSWORD, **({"code": code} if code is not None else {})}
    response = await client.post("/api/token/", json=body)
    return response.status, await response.json()


async def enable(client, clock, pair: dict) -> tuple[pyotp.TOTP, list[str]]:
    setup = await client.post("/api/accounts/2fa/setup/", headers=bearer(pair))
    assert setup.status == 200
    body = await setup.json()
    assert body["otpauth_url"].startswith("otpauth://totp/glint:")
    totp = pyotp.TOTP(body["secret"])
    wrong = await client.post("/api/accounts/2fa/confirm/", headers=bearer(pair), json={"code": "000000"})
    assert wrong.status == 400
    confirm = await client.post("/api/accounts/2fa/confirm/", headers=bearer(pair), json={"code": totp.at(clock.now)})
    assert confirm.status == 200
    return totp, (await confirm.json())["recovery_codes"]


async def test_two_factor_login_needs_a_code_that_works_once(client, clock, pool):
    user = await register(client)
    pair = await login(client, user["username"])
    totp, codes = await enable(client, clock, pair)
    assert len(codes) == 10 and len(set(codes)) == 10
    secret = await pool.fetchval("SELECT secret FROM two_factor")
    assert totp.secret.encode() not in secret
    assert (await client.post("/api/accounts/2fa/setup/", headers=bearer(pair))).status == 409

    status, body = await token_status(client, user["username"])
    assert (status, body["error"]["code"]) == (401, "2fa_required")
    clock.advance(seconds=30)
    code = totp.at(clock.now)
    status, body = await token_status(client, user["username"], code)
    assert status == 200 and body["access"]
    status, body = await token_status(client, user["username"], code)  # the same code, same window
    assert (status, body["error"]["code"]) == (401, "2fa_invalid")
    status, _ = await token_status(client, user["username"], totp.at(clock.now - timedelta(seconds=30)))
    assert status == 401  # an older step than the one used is a replay too
    clock.advance(seconds=30)
    status, _ = await token_status(client, user["username"], totp.at(clock.now))
    assert status == 200


async def test_a_recovery_code_logs_in_once_and_disabling_needs_password_and_code(client, clock, pool):
    user = await register(client)
    pair = await login(client, user["username"])
    totp, codes = await enable(client, clock, pair)
    status, _ = await token_status(client, user["username"], codes[0].upper())
    assert status == 200
    status, body = await token_status(client, user["username"], codes[0])
    assert (status, body["error"]["code"]) == (401, "2fa_invalid")
    assert await pool.fetchval("SELECT count(*) FROM recovery_codes WHERE code_hash = $1", codes[1].encode()) == 0

    wrong_password = await client.post("/api/accounts/2fa/disable/", headers=bearer(pair),
                                       json={"password": "not it at all", "code": codes[1]})
    assert wrong_password.status == 400
    wrong_code = await client.post("/api/accounts/2fa/disable/", headers=bearer(pair),
                                   json={"password": PASSWORD, "code": "123456"})
    assert wrong_code.status == 400
    off = await client.post("/api/accounts/2fa/disable/", headers=bearer(pair),
                            json={"password": PASSWORD, "code": codes[1]})
    assert off.status == 204
    await login(client, user["username"])
    types = [r["type"] for r in await pool.fetch("SELECT type FROM outbox ORDER BY id")]
    assert "two_factor_enabled" in types and "two_factor_disabled" in types


async def test_codes_in_digits_other_than_ascii_are_wrong_codes_everywhere(client, clock):
    user = await register(client)
    pair = await login(client, user["username"])
    await enable(client, clock, pair)
    for code in ("١٢٣٤٥٦", "１２３４５６", "12345６", "\u0661" * 6):
        status, body = await token_status(client, user["username"], code)
        assert (status, body["error"]["code"]) == (401, "2fa_invalid"), (code, body)
        response = await client.post("/api/accounts/2fa/disable/", headers=bearer(pair),
                                     json={"password": PASSWORD, "code": code})
        assert response.status in (400, 401), await response.text()
    fresh = await login(client, (await register(client))["username"])
    assert (await client.post("/api/accounts/2fa/setup/", headers=bearer(fresh))).status == 200
    response = await client.post("/api/accounts/2fa/confirm/", headers=bearer(fresh), json={"code": "١٢٣٤٥٦"})
    assert response.status == 400, await response.text()
