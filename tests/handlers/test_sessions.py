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



async def test_logging_a_session_out_closes_its_sockets_at_once_and_no_other_sessions(aiohttp_client, stack_env, config):
    from app.main import create_app
    from tests.conftest import make_config
    from tests.support import PASSWORD, open_socket

    # the sockets' sweep would close them too, at its next pass: make it never come during the test
    client = await aiohttp_client(create_app(make_config(stack_env, database_url=config.database.url,
                                                         ws_heartbeat=3600)))
    user = await register(client)
    logout, dropped, kept = [await login(client, user["username"]) for _ in range(3)]
    sockets = {name: await open_socket(client, pair["access"])
               for name, pair in (("logout", logout), ("dropped", dropped), ("kept", kept))}
    assert (await client.post("/api/token/revoke/", json={"refresh": logout["refresh"]})).status == 204
    assert (await sockets["logout"].receive(timeout=10)).data == 4401
    response = await client.delete(f"/api/accounts/sessions/{_sid(dropped)}/", headers=bearer(kept))
    assert response.status == 204
    assert (await sockets["dropped"].receive(timeout=10)).data == 4401
    await sockets["kept"].send_json({"type": "ping", "ref": "still"})
    assert (await sockets["kept"].receive_json(timeout=10)) == {"type": "pong", "ref": "still"}

    # deactivating closes every socket of the account
    again = await open_socket(client, (await login(client, user["username"]))["access"])
    response = await client.post("/api/accounts/users/me/deactivate/", headers=bearer(kept), json={"password": PASSWORD})
    assert response.status == 204
    for ws in (sockets["kept"], again):
        assert (await ws.receive(timeout=10)).data == 4401
