"""HEAD on every GET route answers as the GET would (RFC 9110 §9.3.2): its status and headers,
no body, refusals included; HEAD never opens a websocket; the OpenAPI document lists the GETs."""

from __future__ import annotations

from app.main import ROUTE_MODULES
from app.ops import openapi_document
from tests.support import new_post, user_and_token, user_with_token

SAME = ("Content-Type", "Content-Length", "Cache-Control", "Content-Security-Policy", "X-RateLimit-Limit")


async def assert_head_as_get(client, path: str, headers: dict[str, str], status: int) -> None:
    get = await client.get(path, headers=headers)
    head = await client.head(path, headers=headers)
    assert (get.status, head.status) == (status, status), path
    assert await head.read() == b""
    assert {n: head.headers.get(n) for n in SAME} == {n: get.headers.get(n) for n in SAME}, path


async def test_head_on_a_get_route_answers_the_gets_status_and_headers_without_a_body(client):
    _, headers = await user_with_token(client)
    post = await new_post(client, headers, "a post")
    await assert_head_as_get(client, "/api/accounts/users/me/", headers, 200)
    await assert_head_as_get(client, f"/api/posts/{post['id']}/", headers, 200)
    await assert_head_as_get(client, "/api/posts/feed/", headers, 200)  # a fixed path beside /api/posts/{id}/
    await assert_head_as_get(client, "/api/openapi.json", {}, 200)


async def test_head_is_refused_as_the_get_is(client):
    _, headers = await user_with_token(client)
    await assert_head_as_get(client, "/api/posts/feed/", {}, 401)
    await assert_head_as_get(client, "/api/posts/feed/", {"Authorization": "Bearer forged"}, 401)
    await assert_head_as_get(client, "/api/posts/999999/", headers, 404)
    await assert_head_as_get(client, "/api/admin/stats/", headers, 404)
    await assert_head_as_get(client, "/api/posts/?limit=0", headers, 400)
    post_only = await client.head("/api/token/")
    assert post_only.status == 405 and "HEAD" not in post_only.headers["Allow"]
    assert "HEAD" in (await client.request("PUT", "/api/posts/feed/", headers=headers)).headers["Allow"]


async def test_head_on_the_websocket_is_no_handshake(client):
    _, token = await user_and_token(client)
    handshake = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                 "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Authorization": f"Bearer {token}"}
    head = await client.head("/ws", headers=handshake)
    assert head.status == 400 and "Upgrade" not in head.headers
    assert (await client.head("/ws")).status == 401


def test_the_openapi_document_lists_get_routes_and_no_head():
    docs = [doc for module in ROUTE_MODULES for doc in module.docs]
    document = openapi_document(docs)
    assert not [path for path, operations in document["paths"].items() if "head" in operations]
    assert sum("get" in operations for operations in document["paths"].values()) == len(
        {doc.path for doc in docs if doc.method == "GET"})
