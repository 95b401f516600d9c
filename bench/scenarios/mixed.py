"""mixed: a chat-heavy day. Every client is a seeded user with a websocket open to /ws and a
conversation it belongs to; each turn it picks, by weight: send a message and wait for its ack
(`message`), tell the conversation it is typing (`typing`, sent), ping (`ping`: pong round trip,
as presence heartbeats do), subscribe to the presence of the other members (`presence`, sent),
read its home feed (`feed`), or post (`upload` + `post`).
Options: weights ("message=50,typing=20,ping=10,presence=5,feed=12,post=3"), think (0.05 s
between a client's turns).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid

from bench.runner import ScenarioSkipped
from bench.scenarios import mint_tokens, option, require_routes, seated_sockets
from bench.scenarios.media import jpeg, upload

WEIGHTS = "message=50,typing=20,ping=10,presence=5,feed=12,post=3"


async def prepare(target, options) -> dict:
    served = await require_routes(target.url, "GET /api/posts/feed/", "GET /ws")
    conversations = target.manifest.get("conversations") or []
    if not conversations:
        raise ScenarioSkipped("the seed manifest has no conversations (was 0005 migrated when it was seeded?)")
    seats = [(str(cid), member, [str(m) for m in members if m != member])
             for cid, members in conversations for member in members[:2]][: options.concurrency]
    weights = dict((k, float(v)) for k, v in (p.split("=") for p in str(option(options, "weights", WEIGHTS)).split(",")))
    if "POST /api/posts/" not in served:
        weights.pop("post", None)
    tokens = mint_tokens(options.jwt_secret, [s[1] for s in seats], options.token_ttl)
    return {"seats": [(token, cid, others) for (cid, _, others), token in zip(seats, tokens)],
            "weights": weights, "think": float(option(options, "think", 0.05)), "jpeg": jpeg(320, 240)}


async def work(ctx) -> None:
    rng = random.Random(ctx.index)
    kinds, weights = zip(*ctx.plan["weights"].items())
    refs = itertools.count()

    async def client(number: int, seat: tuple[str, str, list[str]], ws) -> None:
        token, cid, others = seat
        waiters: dict[str, asyncio.Future] = {}

        async def reader() -> None:
            async for msg in ws:
                try:
                    frame = msg.json()
                except Exception:
                    continue
                ref = frame.get("ref")
                if ref is not None and str(ref) in waiters:
                    waiters.pop(str(ref)).set_result(frame)

        async def ask(op: str, frame: dict, expect: str) -> None:
            ref = f"{ctx.index}-{next(refs)}"
            future = asyncio.get_running_loop().create_future()
            waiters[ref] = future
            began = time.perf_counter()
            await ws.send_json({**frame, "ref": ref})
            try:
                reply = await asyncio.wait_for(future, ctx.options.timeout)
                ctx.record(op, time.perf_counter() - began, None if reply.get("type") == expect else
                           f"frame_{reply.get('type')}")
            except asyncio.TimeoutError:
                waiters.pop(ref, None)
                ctx.record(op, time.perf_counter() - began, "timeout")

        async def tell(op: str, frame: dict) -> None:
            began = time.perf_counter()
            await ws.send_json(frame)
            ctx.record(op, time.perf_counter() - began)

        read = asyncio.create_task(reader())
        try:
            while ctx.running and not ws.closed:
                kind = rng.choices(kinds, weights)[0]
                if kind == "message":
                    await ask("message", {"type": "message.send", "conversation_id": cid,
                                          "client_id": uuid.uuid4().hex, "text": "hi from the bench"}, "message.ack")
                elif kind == "typing":
                    await tell("typing", {"type": "typing", "conversation_id": cid})
                elif kind == "ping":
                    await ask("ping", {"type": "ping"}, "pong")
                elif kind == "presence":
                    await tell("presence", {"type": "presence.subscribe", "user_ids": others})
                elif kind == "feed":
                    await ctx.request("feed", "GET", "/api/posts/feed/?limit=20", token=token)
                elif kind == "post":
                    media = await upload(ctx, token)
                    if media:
                        await ctx.request("post", "POST", "/api/posts/", token=token, expect=(201,),
                                          json={"caption": "mixed bench", "media_ids": [media["id"]]})
                await asyncio.sleep(ctx.plan["think"])
        finally:
            read.cancel()

    await seated_sockets(ctx, client)
