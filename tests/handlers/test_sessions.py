"""Sessions are durable: PostgreSQL holds whether a session and its user may authenticate, Redis
only caches it, so a revocation (or deactivation) holds after Redis loses everything."""

from __future__ import annotations

import jwt
import pytest

from handlers.auth import make_access_token
from handlers.context import config_key, redis_key
from realtime.gateway import gateway_key
from storage import tokens
from tests.support import bearer, login, me_status, register


@pytest.fixture
def client(clocked_client):
    return clocked_client


def _sid(pair: dict) -> int:
    return int(jwt.decode(pair["access"], options={"verify_signature": False})["sid"])


async def test_a_revoked_session_stays_refused_after_redis_is_wiped(client, redis_clean):
    user = await register(client)
    kept, revoked = await login(client, user["username"]), await login(client, user["username"])
    assert (await client.post("/api/token/revoke/", json={"refresh": revoked["refresh"]})).status == 204
    assert await me_status(client, revoked) == 401
    await redis_clean.flushall()
    assert await me_status(client, revoked) == 401
    assert await me_status(client, kept) == 200
    # the answers read from PostgreSQL are cached again: the warm path needs no query
    assert await redis_clean.get(tokens.session_key(int(user["id"]), _sid(revoked))) == tokens.REFUSED
    assert await redis_clean.get(tokens.session_key(int(user["id"]), _sid(kept))) == tokens.ALLOWED


async def test_a_deactivated_account_stays_refused_after_redis_is_wiped(client, redis_clean):
    user = await register(client)
    pair = await login(client, user["username"])
    response = await client.post("/api/accounts/users/me/deactivate/", json={"password": "correct horse battery"},
                                 headers=bearer(pair))
    assert response.status == 204
    await redis_clean.flushall()
    assert await me_status(client, pair) == 401
    assert await redis_clean.get(tokens.inactive_key(int(user["id"]))) == tokens.REFUSED


async def test_an_unknown_session_id_is_refused_not_allowed(client, redis_clean):
    user = await register(client)
    secret = client.app[config_key].auth.jwt_secret
    forged = make_access_token(secret, int(user["id"]), 12345, 60)
    assert await me_status(client, {"access": forged}) == 401


@pytest.mark.redis_cluster
async def test_a_socket_of_a_revoked_session_is_closed_after_redis_is_wiped(client, redis_clean):
    user = await register(client)
    pair = await login(client, user["username"])
    ws = await client.ws_connect(f"/ws?token={pair['access']}")
    hello = await ws.receive_json(timeout=5)
    assert hello["type"] == "hello"
    assert (await client.post("/api/token/revoke/", json={"refresh": pair["refresh"]})).status == 204
    await client.app[redis_key].flushall()
    await client.app[gateway_key].check_connections()
    msg = await ws.receive(timeout=5)
    assert msg.data == 4401

