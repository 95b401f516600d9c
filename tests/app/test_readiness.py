"""/readyz names each failing dependency, and recovers when it is back."""

from __future__ import annotations

import devstack
from tests.conftest import wait_for
from tests.support import user_with_token


async def test_readyz_is_503_naming_redis_while_it_is_down_and_200_once_it_is_back(client, stack_root):
    assert (await client.get("/readyz")).status == 200
    _, headers = await user_with_token(client)
    devstack.stop_service(stack_root, "redis", log=lambda *a: None)
    try:
        # a request that needs Redis is a 503 the client may retry, never a 500
        me = await client.get("/api/accounts/users/me/", headers=headers)
        assert me.status == 503
        assert (await me.json())["error"]["code"] == "service_unavailable"
        assert me.headers["Retry-After"] == "1"
        response = await client.get("/readyz")
        assert response.status == 503
        body = await response.json()
        assert body["checks"]["redis"] == "failing"
        assert body["checks"]["postgres"] == "ok"
        assert "redis" in body["error"]["message"]
        metrics = await (await client.get("/metrics")).text()
        assert 'glint_dependency_up{dependency="redis"} 0.0' in metrics
    finally:
        devstack.start_service(stack_root, "redis", log=lambda *a: None)

    async def ready() -> bool:
        return (await client.get("/readyz")).status == 200

    await wait_for(ready, timeout=15)


async def test_readyz_checks_kafka_when_events_go_through_it(aiohttp_client, stack_env, config):
    from app.main import create_app
    from tests.conftest import make_config

    app = create_app(make_config(stack_env, database_url=config.database.url, events_transport="kafka"),
                     consumers=False)
    client = await aiohttp_client(app)
    response = await client.get("/readyz")
    assert response.status == 200, await response.text()
    assert (await response.json())["checks"]["kafka"] == "ok"


def test_a_check_that_does_not_answer_says_so_rather_than_an_empty_timeout():
    from app.ops import failure_reason

    assert failure_reason(TimeoutError()) == "no answer within 2 s"
    assert failure_reason(ConnectionRefusedError(111, "Connection refused")) == \
        "ConnectionRefusedError: [Errno 111] Connection refused"
    assert failure_reason(OSError()) == "OSError"
