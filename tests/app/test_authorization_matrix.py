"""The authorization matrix, generated from the route table: every route, as an anonymous client,
a stranger, a blocked user, an approved follower and the owner of a private account's things. The
expected answer comes from the route's `sees` declaration (handlers/common.py), so a new route is
covered the moment it is registered.

A refused caller gets 404 (403 is allowed for `owner` routes to someone who may see the thing);
nobody gets a 5xx; anonymous callers get 401 on routes that need an account; an allowed caller
never gets 401 nor, on a read, anything but 200; HEAD on a read answers the GET's status without a
body. Bodies come from EXAMPLES where a route's body type is listed, else `{}` (then a refused
caller may also get the 400 that body earns).
"""

from __future__ import annotations

import re

from app.main import ROUTE_MODULES, create_app
from tests.conftest import make_config
from tests.support import login, new_media, new_post, register

ROLES = ("anonymous", "blocked", "stranger", "follower", "owner")
ALLOWED = {
    "anyone": set(ROLES), "self": set(ROLES) - {"anonymous"},
    "shown": {"stranger", "follower", "owner"}, "audience": {"follower", "owner"},
    "member": {"follower", "owner"}, "owner": {"owner"}, "staff": set(),
}
EXAMPLES = {
    "SendBody": {"client_id": "matrix", "text": "hi"}, "ReadBody": {"seq": 1}, "PostPatch": {"caption": "edited"},
    "ReactBody": {"emoji": "🔥"}, "AddMembers": {"user_ids": "{extra}"},
}
SKIPPED = {("GET", "/ws"),  # the websocket upgrade: tests/realtime
           ("GET", "/api/media/{scope}/{expires}/{signature}/{path:.+}")}  # signed links: tests/handlers/test_media.py


async def build_world(client, pool) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Users (with headers) and the owner's things the paths name."""
    people = {}
    for role in ("owner", "follower", "stranger", "blocked", "requester", "extra"):
        user = await register(client)
        tokens = await login(client, user["username"])
        people[role] = {"id": user["id"], "Authorization": f"Bearer {tokens['access']}"}
    owner = {"Authorization": people["owner"]["Authorization"]}
    await login(client, (await (await client.get("/api/accounts/users/me/", headers=owner)).json())["username"])
    assert (await client.patch("/api/accounts/settings/", json={"is_private": True}, headers=owner)).status == 200
    for role in ("follower", "requester"):
        response = await client.post(f"/api/accounts/users/{people['owner']['id']}/follow/",
                                     headers={"Authorization": people[role]["Authorization"]})
        assert response.status == 200
    assert (await client.post(f"/api/accounts/follow-requests/{people['follower']['id']}/approve/",
                              headers=owner)).status == 204
    assert (await client.post(f"/api/accounts/users/{people['blocked']['id']}/block/", headers=owner)).status == 204
    post = await new_post(client, owner, "the owner's post")
    comment = await (await client.post("/api/comments/", json={"post_id": post["id"], "text": "mine"},
                                       headers=owner)).json()
    (story_media,) = await new_media(client, owner)
    story = await (await client.post("/api/stories/", json={"media_id": story_media}, headers=owner)).json()
    group = await (await client.post("/api/conversations/", json={
        "member_ids": [people["follower"]["id"], people["extra"]["id"]]}, headers=owner)).json()
    sent = await client.post(f"/api/conversations/{group['id']}/messages/", json={"client_id": "m1", "text": "hi"},
                             headers=owner)
    assert sent.status == 201
    device = await (await client.post("/api/notifications/devices/", json={
        "endpoint": "https://push.example.com/x", "platform": "web"}, headers=owner)).json()
    sessions = await (await client.get("/api/accounts/sessions/", headers=owner)).json()
    me_session = [s["id"] for s in sessions["results"] if not s["current"]]
    ids = {
        "user": people["owner"]["id"], "post": post["id"], "comment": comment["id"], "story": story["id"],
        "media": post["media"][0]["id"], "conversation": group["id"], "extra": people["extra"]["id"],
        "requester": people["requester"]["id"], "device": str(device.get("id", "1")),
        "session": me_session[0] if me_session else "1", "seq": "1",
    }

    return people, ids


def fill(path: str, ids: dict[str, str]) -> str:
    """The path with each {param} replaced by the owner's thing it names."""
    resource = {"accounts/users": "user", "posts": "post", "comments": "comment", "stories": "story",
                "media": "media", "conversations": "conversation", "follow-requests": "requester",
                "notifications/devices": "device", "accounts/sessions": "session", "admin/users": "user",
                "admin/reports": "user"}

    def one(match: re.Match) -> str:
        name = match.group(1)
        if name == "user_id":
            return ids["extra"]
        if name == "seq":
            return ids["seq"]
        before = path[:match.start()].strip("/").removeprefix("api/").rstrip("/")
        for prefix, kind in resource.items():
            if before.endswith(prefix):
                return ids[kind]
        return ids["user"]

    return re.sub(r"\{(\w+)\}", one, path)


def order(doc) -> tuple[int, int, str]:
    """Reads first, then writes, then deletions (a post last: its comments go with it; the
    account itself never: DELETE /me/ gets `{}` and so a 400)."""
    method = {"GET": 0, "POST": 1, "PUT": 1, "PATCH": 1, "DELETE": 2}[doc.method]
    return method, 1 if doc.path == "/api/posts/{id}/" else 0, doc.path


async def restore(pool, people: dict[str, dict[str, str]]) -> None:
    """Put the graph back as build_world made it (a row may have followed, blocked or approved)."""
    o, f, b, r = (int(people[k]["id"]) for k in ("owner", "follower", "blocked", "requester"))
    others = [int(people[k]["id"]) for k in people]
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM follows WHERE follower_id = ANY($1::bigint[]) AND NOT (follower_id = $2"
                           " AND followee_id = $3)", others, f, o)
        await conn.execute("INSERT INTO follows (follower_id, followee_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", f, o)
        await conn.execute("DELETE FROM blocks WHERE blocker_id = ANY($1::bigint[]) AND NOT (blocker_id = $2"
                           " AND blocked_id = $3)", others, o, b)
        await conn.execute("INSERT INTO blocks (blocker_id, blocked_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", o, b)
        await conn.execute("INSERT INTO follow_requests (requester_id, target_id) VALUES ($1, $2)"
                           " ON CONFLICT DO NOTHING", r, o)
        await conn.execute("UPDATE users SET is_private = true WHERE id = $1", o)


async def test_every_route_answers_each_caller_as_its_declaration_says(aiohttp_client, stack_env, config, pool):
    client = await aiohttp_client(create_app(make_config(stack_env, database_url=config.database.url,
                                                         rate_limit_auth_per_minute=10_000,
                                                         rate_limit_anonymous_per_hour=100_000)))
    people, ids = await build_world(client, pool)
    docs = sorted((d for m in ROUTE_MODULES for d in m.docs if (d.method, d.path) not in SKIPPED), key=order)
    failures, cases, server_errors = [], 0, 0
    for doc in docs:
        path = fill(doc.path, ids)
        query = {name: ids["user"] if name == "author" else ids["post"] if name == "post_id" else "a" if name == "q"
                 else None for name in doc.query}
        query = {k: v for k, v in query.items() if v is not None}
        if doc.path == "/api/comments/":
            query = {"post_id": ids["post"]}
        example = EXAMPLES.get(getattr(doc.body, "__name__", ""), {}) if doc.body is not None else None
        body = None if example is None else {k: ([ids["extra"]] if v == "{extra}" else v) for k, v in example.items()}
        known_body = doc.body is None or getattr(doc.body, "__name__", "") in EXAMPLES
        for role in ROLES:
            headers = {} if role == "anonymous" else {"Authorization": people[role]["Authorization"]}
            response = await client.request(doc.method, path, params=query, headers=headers,
                                            json=body if doc.body is not None else None)
            status = response.status
            cases += 1
            allowed = role in ALLOWED[doc.sees]
            problem = None
            if status >= 500:
                server_errors += 1
                problem = "a 5xx"
            elif role == "anonymous" and doc.auth and doc.sees != "staff" and status != 401:
                problem = "not 401"
            elif allowed and status == 401:
                problem = "401 to an allowed caller"
            elif allowed and doc.method == "GET" and status != 200 and not (doc.sees == "self" and status == 404):
                problem = "a read refused to an allowed caller"
            elif not allowed and role != "anonymous":
                refused = {404} | ({403} if doc.sees == "owner" else set()) | (set() if known_body else {400})
                if status not in refused:
                    problem = f"not refused (expected one of {sorted(refused)})"
            if doc.method == "GET":  # HEAD answers as the GET does, without a body
                head = await client.head(path, params=query, headers=headers)
                cases += 1
                if head.status != status or await head.read() != b"" or head.content_type != response.content_type:
                    failures.append(f"HEAD {doc.path} as {role}: {head.status} {head.content_type}"
                                    f" — not the GET's {status} {response.content_type} without a body")
            if problem:
                failures.append(f"{doc.method} {doc.path} as {role}: {status} — {problem}")
            await restore(pool, people)
    print(f"authorization matrix: {cases} cases over {len(docs)} routes, {server_errors} answered 5xx")
    assert not failures, "\n".join(failures)
