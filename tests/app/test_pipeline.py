"""The request pipeline: error envelopes, auth, request ids, rate limits, gzip, CORS, metrics, OpenAPI."""

from __future__ import annotations

import time

import jwt
import pytest

from app.main import create_app
from tests.conftest import make_config
from tests.support import login, register, user_with_token


def assert_error(body: dict, code: str) -> None:
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


async def test_unknown_route_is_a_json_404(client):
    response = await client.get("/api/nothing-here/")
    assert response.status == 404
    assert response.content_type == "application/json"
    assert_error(await response.json(), "not_found")


async def test_wrong_method_is_a_json_405_with_allow(client):
    response = await client.delete("/api/token/")
    assert response.status == 405
    assert "POST" in response.headers["Allow"]
    assert_error(await response.json(), "method_not_allowed")


async def test_malformed_json_is_400(client):
    response = await client.post("/api/token/", data=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert_error(await response.json(), "malformed_json")


async def test_wrong_content_type_is_415(client):
    response = await client.post("/api/token/", data=b"username=a", headers={"Content-Type": "text/plain"})
    assert response.status == 415
    assert_error(await response.json(), "unsupported_media_type")


async def test_oversized_body_is_413(aiohttp_client, stack_env, config):
    client = await aiohttp_client(create_app(make_config(stack_env, database_url=config.database.url,
                                                         max_body_bytes=1024)))
    response = await client.post("/api/token/", data=b"x" * 4096, headers={"Content-Type": "application/json"})
    assert response.status == 413
    assert_error(await response.json(), "payload_too_large")


async def test_validation_error_names_the_field(client):
    response = await client.post("/api/token/", json={"username": "ana"})
    assert response.status == 400
    body = await response.json()
    assert_error(body, "validation_error")
    assert "password" in body["error"]["fields"]


async def test_wrong_field_type_names_the_field(client):
    response = await client.post("/api/token/", json={"username": 5, "password": "x"})
    assert response.status == 400
    assert "username" in (await response.json())["error"]["fields"]


async def test_missing_token_is_401(client):
    response = await client.get("/api/accounts/users/me/")
    assert response.status == 401
    assert_error(await response.json(), "not_authenticated")


async def test_forged_token_is_401(client, config):
    user = await register(client)
    forged = jwt.encode({"sub": user["id"], "sid": "1", "exp": int(time.time()) + 60, "typ": "access"},
                        "not-the-secret-but-just-as-long-as-one-0123456789", algorithm="HS256")
    response = await client.get("/api/accounts/users/me/", headers={"Authorization": f"Bearer {forged}"})
    assert response.status == 401
    assert_error(await response.json(), "not_authenticated")


async def test_garbage_token_is_401(client):
    response = await client.get("/api/accounts/users/me/", headers={"Authorization": "Bearer abc.def"})
    assert response.status == 401


async def test_expired_token_is_401(client, config):
    user = await register(client)
    expired = jwt.encode({"sub": user["id"], "sid": "1", "exp": int(time.time()) - 5, "typ": "access"},
                         config.auth.jwt_secret, algorithm="HS256")
    response = await client.get("/api/accounts/users/me/", headers={"Authorization": f"Bearer {expired}"})
    assert response.status == 401
    assert_error(await response.json(), "token_expired")


async def test_valid_token_reaches_the_handler(client):
    user, headers = await user_with_token(client)
    response = await client.get("/api/accounts/users/me/", headers=headers)
    assert response.status == 200
    assert (await response.json())["id"] == user["id"]


async def test_revoked_session_cuts_off_its_access_token_at_once(client):
    user = await register(client)
    tokens = await login(client, user["username"])
    headers = {"Authorization": f"Bearer {tokens['access']}"}
    assert (await client.get("/api/accounts/users/me/", headers=headers)).status == 200
    response = await client.post("/api/token/revoke/", json={"refresh": tokens["refresh"]})
    assert response.status == 204
    response = await client.get("/api/accounts/users/me/", headers=headers)
    assert response.status == 401
    refreshed = await client.post("/api/token/refresh/", json={"refresh": tokens["refresh"]})
    assert refreshed.status == 401


async def test_refresh_rotates_and_spends_the_old_token(client):
    user = await register(client)
    first = await login(client, user["username"])
    response = await client.post("/api/token/refresh/", json={"refresh": first["refresh"]})
    assert response.status == 200
    second = await response.json()
    assert second["refresh"] != first["refresh"]
    me = await client.get("/api/accounts/users/me/", headers={"Authorization": f"Bearer {second['access']}"})
    assert me.status == 200


async def test_reusing_a_spent_refresh_token_revokes_the_whole_family(client):
    user = await register(client)
    first = await login(client, user["username"])
    second = await (await client.post("/api/token/refresh/", json={"refresh": first["refresh"]})).json()
    # the spent token comes back (a thief replays it): refused, and the family dies
    reuse = await client.post("/api/token/refresh/", json={"refresh": first["refresh"]})
    assert reuse.status == 401
    assert (await client.post("/api/token/refresh/", json={"refresh": second["refresh"]})).status == 401
    me = await client.get("/api/accounts/users/me/", headers={"Authorization": f"Bearer {second['access']}"})
    assert me.status == 401


async def test_login_by_email_and_wrong_password(client):
    user = await register(client, "Mira")
    assert (await client.post("/api/token/", json={"username": "mira@example.com",
                                                   "password": "correct horse battery"})).status == 200
    wrong = await client.post("/api/token/", json={"username": "mira", "password": "wrong password"})
    assert wrong.status == 401
    assert user["username"] == "Mira"


async def test_passwords_are_stored_as_argon2id(client, pool):
    await register(client, "hashme")
    stored = await pool.fetchval("SELECT password_hash FROM users WHERE username = 'hashme'")
    assert stored.startswith("$argon2id$")


async def test_request_id_is_echoed_or_made(client):
    response = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    response = await client.get("/healthz")
    assert len(response.headers["X-Request-ID"]) == 32


async def test_rate_limit_answers_429_with_retry_after(aiohttp_client, stack_env, config):
    app = create_app(make_config(stack_env, database_url=config.database.url, rate_limit_per_hour=3))
    client = await aiohttp_client(app)
    _, headers = await user_with_token(client)
    seen = []
    for _ in range(4):
        response = await client.get("/api/accounts/users/me/", headers=headers)
        seen.append((response.status, response.headers.get("X-RateLimit-Remaining")))
    assert seen[:3] == [(200, "2"), (200, "1"), (200, "0")]
    assert seen[3][0] == 429
    response = await client.get("/api/accounts/users/me/", headers=headers)
    assert response.headers["X-RateLimit-Limit"] == "3"
    assert 0 < int(response.headers["Retry-After"]) <= 3600
    assert_error(await response.json(), "rate_limited")


async def test_login_is_limited_per_address(aiohttp_client, stack_env, config):
    app = create_app(make_config(stack_env, database_url=config.database.url, rate_limit_auth_per_minute=2))
    client = await aiohttp_client(app)
    statuses = [(await client.post("/api/token/", json={"username": "x", "password": "y"})).status for _ in range(3)]
    assert statuses == [401, 401, 429]


async def test_large_responses_are_gzipped(client):
    response = await client.get("/api/openapi.json", headers={"Accept-Encoding": "gzip"})
    assert response.status == 200
    assert response.headers.get("Content-Encoding") == "gzip"
    assert (await response.json())["openapi"].startswith("3.")


async def test_cors_preflight_for_configured_origin(aiohttp_client, stack_env, config):
    app = create_app(make_config(stack_env, database_url=config.database.url, cors_origins="https://app.example"))
    client = await aiohttp_client(app)
    response = await client.options("/api/token/", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
    other = await client.options("/api/token/", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in other.headers


async def test_metrics_show_a_request_after_it_was_made(client):
    await client.get("/api/accounts/users/me/")
    text = await (await client.get("/metrics")).text()
    line = 'glint_http_requests_total{method="GET",route="/api/accounts/users/me/",status="401"}'
    assert line in text
    assert "glint_http_request_duration_seconds_bucket" in text
    assert "glint_http_requests_in_flight" in text


async def test_unmatched_paths_share_one_metrics_label(client):
    await client.get("/no/such/path/123")
    text = await (await client.get("/metrics")).text()
    assert 'route="<unmatched>"' in text
    assert "/no/such/path/123" not in text


async def test_openapi_lists_routes_with_their_schemas(client):
    document = await (await client.get("/api/openapi.json")).json()
    assert "post" in document["paths"]["/api/token/"]
    operation = document["paths"]["/api/accounts/users/register/"]["post"]
    assert "201" in operation["responses"]
    assert "RegisterRequest" in document["components"]["schemas"]
    page = await client.get("/api/docs/")
    assert page.status == 200 and "/api/token/" in await page.text()


async def test_healthz(client):
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_readyz_is_200_when_everything_answers(client):
    response = await client.get("/readyz")
    assert response.status == 200, await response.text()
    assert (await response.json())["checks"] == {"postgres": "ok", "redis": "ok", "s3": "ok"}
