"""Tracing across processes: with GLINT_OTLP_ENDPOINT set, one like produces one trace that
spans the API process (the request, its store calls, the push to a socket) and the `glint
consume` process (the notification consumer continuing from the traceparent carried in the
event over Kafka), and an upload's S3 calls are client spans in its request's trace. The spans
are received by an OTLP/HTTP endpoint inside the test, decoded with the OTLP protobuf schema,
exactly as Jaeger or a collector would receive them."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import uuid
from collections import defaultdict
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import wrapt
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

import devstack
from app.middlewares import JsonFormatter
from app.tracing import setup_tracing
from jobs.notifications import NotificationConsumer
from tests.conftest import make_config, wait_for
from tests.support import form, frame_of, jpeg, open_socket, user_with_token

ROOT = Path(__file__).resolve().parents[2]


class Receiver:
    """An OTLP/HTTP trace endpoint: POST /v1/traces with an ExportTraceServiceRequest."""

    def __init__(self) -> None:
        self.spans: list[dict] = []

    async def export(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        message = ExportTraceServiceRequest.FromString(await request.read())
        for resource_spans in message.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append({
                        "service": attributes.get("service.name"), "trace": span.trace_id.hex(),
                        "id": span.span_id.hex(), "parent": span.parent_span_id.hex(), "name": span.name,
                        "scope": scope_spans.scope.name, "kind": span.kind,
                        "attributes": {a.key: a.value.string_value or a.value.int_value for a in span.attributes},
                    })
        return web.Response(body=b"", content_type="application/x-protobuf")

    def traces(self) -> dict[str, list[dict]]:
        by_trace = defaultdict(list)
        for span in self.spans:
            by_trace[span["trace"]].append(span)
        return by_trace


@pytest.fixture
async def receiver(aiohttp_server):
    app = web.Application()
    found = Receiver()
    app.router.add_post("/v1/traces", found.export)
    server = await aiohttp_server(app)
    found.url = f"http://127.0.0.1:{server.port}"
    return found


def ancestors(span: dict, spans: list[dict]) -> list[str]:
    """The ids above a span in its trace, nearest first."""
    by_id = {s["id"]: s for s in spans}
    chain = []
    while span["parent"] in by_id:
        span = by_id[span["parent"]]
        chain.append(span["id"])
    return chain


async def start(args: list[str], env: dict[str, str], port: int) -> asyncio.subprocess.Process:
    """A glint subprocess, once its /healthz answers."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "app.cli", *args, "--port", str(port),
                                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL)
    async with aiohttp.ClientSession() as session:
        async def healthy() -> bool:
            assert proc.returncode is None, f"glint {args[0]} exited"
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    return response.status == 200
            except aiohttp.ClientError:
                return False
        await wait_for(healthy, timeout=30, interval=0.1)
    return proc


async def notifications_caught_up(database_url: str) -> bool:
    """Whether the notifications consumer has handled every event written so far on its topics."""
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval(
            "SELECT NOT EXISTS (SELECT 1 FROM outbox o WHERE o.topic = ANY($1::text[]) AND NOT EXISTS"
            " (SELECT 1 FROM processed_events p WHERE p.consumer = 'notifications' AND p.event_id = o.event_id))",
            list(NotificationConsumer.topics))
    finally:
        await conn.close()


async def test_one_like_is_one_trace_across_the_api_and_the_consumer(stack_env, database_url, redis_clean,
                                                                      receiver):
    run = uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GLINT_", "OTEL_"))}
    env.update({k: v for k, v in stack_env.items() if k.startswith("GLINT_")})
    env.update(GLINT_DATABASE_URL=database_url, GLINT_EVENTS_TRANSPORT="kafka", GLINT_JOBS_ENABLED="false",
               GLINT_KAFKA_TOPIC_PREFIX=f"trace{run}.", GLINT_KAFKA_GROUP_PREFIX=f"trace{run}-",
               GLINT_STACK_DIR="/nonexistent-glint-stack", GLINT_LOG_LEVEL="WARNING", GLINT_ACCESS_LOG="false",
               GLINT_OUTBOX_POLL_SECONDS="0.2", GLINT_OTLP_ENDPOINT=receiver.url, OTEL_BSP_SCHEDULE_DELAY="100")
    api_port, consumer_port = devstack.free_port(), devstack.free_port()
    procs = await asyncio.gather(start(["serve", "--no-consumers"], env, api_port),
                                 start(["consume"], env, consumer_port))
    try:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{api_port}") as api:
            ana, ana_headers = await user_with_token(api)
            bob, bob_headers = await user_with_token(api)
            media = await (await api.post("/api/media/", data=form(jpeg(64, 64)), headers=ana_headers)).json()
            post = await (await api.post("/api/posts/", json={"caption": "traced", "media_ids": [media["id"]]},
                                         headers=ana_headers)).json()
            ws = await open_socket(api, ana_headers["Authorization"].split()[1])
            # the like alone in the consumer's next batch: a batch of several events has one span,
            # linked to each event's trace, for the work the events share (its writes), and only
            # each event's own part (its rules, its push) continues the event's trace
            await wait_for(lambda: notifications_caught_up(database_url), timeout=30, interval=0.1)
            liked = await api.post(f"/api/posts/{post['id']}/like/", headers=bob_headers)
            assert liked.status in (200, 201, 204)
            # the consumer process writes the notification and publishes it; the API process pushes it
            await frame_of(ws, "notification.new", timeout=40)
            await ws.close()

        def like_trace() -> list[dict] | None:
            for spans in receiver.traces().values():
                names = {(s["service"], s["name"]) for s in spans}
                if (("glint-api", "ws push") in names and ("glint-consumer", "notifications post_liked") in names
                        and any(s["service"] == "glint-api" and "like" in s["name"] for s in spans)):
                    return spans
            return None

        def upload_trace() -> list[dict] | None:
            for spans in receiver.traces().values():
                if (any(s["name"] == "S3.PutObject" for s in spans)
                        and any(not s["parent"] and "media" in s["name"] for s in spans)):
                    return spans
            return None

        await wait_for(lambda: like_trace() is not None and upload_trace() is not None, timeout=20)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            await asyncio.wait_for(proc.wait(), 30)

    spans = like_trace()
    request = next(s for s in spans if s["service"] == "glint-api" and "like" in s["name"] and not s["parent"])
    consumed = next(s for s in spans if s["name"] == "notifications post_liked")
    push = next(s for s in spans if s["name"] == "ws push")

    # one tree: the consumer's span hangs under the request, the push under the consumer's span
    assert request["id"] in ancestors(consumed, spans)
    assert consumed["id"] in ancestors(push, spans)
    # store calls are child spans, in both processes
    scopes = {(s["service"], s["scope"].rsplit(".", 1)[-1]) for s in spans}
    assert ("glint-api", "asyncpg") in scopes and ("glint-consumer", "asyncpg") in scopes
    assert ("glint-consumer", "redis") in scopes

    # the upload's renditions are put to S3 inside the request: client spans under its span
    spans = upload_trace()
    upload = next(s for s in spans if not s["parent"] and "media" in s["name"])
    puts = [s for s in spans if s["name"] == "S3.PutObject"]
    assert len(puts) >= 2  # every width in WebP and JPEG
    for put in puts:
        assert put["service"] == "glint-api" and put["kind"] == Span.SPAN_KIND_CLIENT
        assert upload["id"] in ancestors(put, spans)
        assert put["attributes"]["rpc.system"] == "aws-api" and put["attributes"]["rpc.service"] == "S3"
        assert put["attributes"]["rpc.method"] == "PutObject" and put["attributes"]["http.status_code"] == 200


def test_tracing_is_off_without_an_endpoint(stack_env):
    """No endpoint: nothing instrumented, no provider set, and log lines carry no trace id."""
    from aiobotocore.client import AioBaseClient
    from opentelemetry import trace

    stop = setup_tracing(make_config(stack_env, otlp_endpoint=""), "glint-api")
    stop()
    assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
    assert not isinstance(AioBaseClient.__dict__["_make_api_call"], wrapt.FunctionWrapper)  # S3 pays no wrapper
    record = logging.LogRecord("glint", logging.INFO, __file__, 1, "hello", (), None)
    assert "trace_id" not in json.loads(JsonFormatter().format(record))
