"""Operations routes: liveness, readiness, Prometheus metrics, and the OpenAPI document."""

from __future__ import annotations

import asyncio
import re
import html
import math
from typing import Any, Awaitable, Callable

import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Gauge, generate_latest

from app.background import background_key
from app.clients import kafka_producer_key
from handlers.common import RouteDoc, add_route, json_response
from handlers.context import config_key, pool_key, redis_key, s3_key, search_key
from realtime import frames
from realtime.gateway import gateway_key
from storage import deadletters, outbox

# set when /metrics is scraped, from the truth (the socket registry, the outbox and dead-letter
# tables), so they never go stale
WS_CONNECTIONS = Gauge("glint_ws_connections", "Open websocket connections")
OUTBOX_BACKLOG = Gauge("glint_outbox_backlog", "Committed events not yet relayed (NaN: PostgreSQL unreachable)")
DEAD_LETTERS_PENDING = Gauge("glint_dead_letters_pending", "Dead letters not replayed yet, by cause", ["kind"])
DEPENDENCY_UP = Gauge("glint_dependency_up", "1 when the last readiness check reached the dependency", ["dependency"])

CHECK_TIMEOUT = 2.0


async def healthz(request: web.Request) -> web.Response:
    """The process is alive."""
    return json_response({"status": "ok"})


async def _check_postgres(app: web.Application) -> None:
    await app[pool_key].fetchval("SELECT 1")


async def _check_redis(app: web.Application) -> None:
    await app[redis_key].ping()


async def _check_s3(app: web.Application) -> None:
    await app[s3_key].head_bucket(Bucket=app[config_key].s3.bucket)


async def _check_kafka(app: web.Application) -> None:
    producer = app[kafka_producer_key]
    started = await producer.get()
    await started.client.fetch_all_metadata()


async def _check_elasticsearch(app: web.Application) -> None:
    await app[search_key].ping()


class NotJoined(Exception):
    """This process's Kafka consumers do not hold their partitions yet (joining or rebalancing)."""


async def _check_consumers(app: web.Application) -> None:
    waiting = [r.group for r in app[background_key].runners if not r.ready.is_set()]
    if waiting:
        raise NotJoined("waiting for partitions of " + ", ".join(waiting))


def dependency_checks(app: web.Application) -> dict[str, Callable[[web.Application], Awaitable[None]]]:
    """The dependencies this process needs, by name."""
    checks = {"postgres": _check_postgres, "redis": _check_redis, "s3": _check_s3}
    if app.get(kafka_producer_key) is not None:
        checks["kafka"] = _check_kafka
    if app[config_key].search.backend == "elasticsearch":
        checks["elasticsearch"] = _check_elasticsearch
    if app[background_key].runners:
        checks["consumers"] = _check_consumers
    return checks


def failure_reason(exc: Exception) -> str:
    """What /readyz says of a failed check: a check that did not answer in time says so (a
    timeout's text is empty), any other failure its type and text."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {CHECK_TIMEOUT:g} s"
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}"[:300] if detail else type(exc).__name__


async def readyz(request: web.Request) -> web.Response:
    """Each dependency checked; 503 naming the failing ones."""
    checks = dependency_checks(request.app)

    async def run(name: str) -> tuple[str, str | None]:
        try:
            await asyncio.wait_for(checks[name](request.app), CHECK_TIMEOUT)
        except Exception as exc:  # any failure means not ready; name it
            return name, failure_reason(exc)
        return name, None

    results = dict(await asyncio.gather(*(run(name) for name in checks)))
    for name, error in results.items():
        DEPENDENCY_UP.labels(name).set(0 if error else 1)
    failing = {name: error for name, error in results.items() if error}
    body: dict[str, Any] = {"status": "ok" if not failing else "unavailable",
                            "checks": {name: ("ok" if not error else "failing") for name, error in results.items()}}
    if failing:
        body["error"] = {"code": "dependencies_unavailable",
                         "message": "Not ready: " + ", ".join(sorted(failing)) + ".",
                         "fields": failing}
        return json_response(body, status=503)
    return json_response(body)


async def refresh_gauges(app: web.Application) -> None:
    """Set the gauges read from the truth at scrape time: sockets from the registry, the outbox
    backlog and pending dead letters from their tables (NaN while PostgreSQL cannot answer), the
    lag of each partition this process's consumers hold."""
    gateway = app.get(gateway_key)
    WS_CONNECTIONS.set(gateway.connection_count() if gateway is not None else 0)
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            async with app[pool_key].acquire() as conn:
                backlog = await outbox.backlog(conn)
                pending = await deadletters.pending_counts(conn)
    except Exception:  # the figures are unknown, not zero
        backlog, pending = math.nan, {"outage": math.nan, "bad_event": math.nan}
    OUTBOX_BACKLOG.set(backlog)
    for kind, count in pending.items():
        DEAD_LETTERS_PENDING.labels(kind).set(count)
    for runner in app[background_key].runners:
        await runner.report_lag()


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format."""
    await refresh_gauges(request.app)
    response = web.Response(body=generate_latest(REGISTRY))
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


def add_ops_routes(app: web.Application) -> None:
    """/healthz, /readyz and /metrics."""
    add_route(app, "GET", "/healthz", healthz)
    add_route(app, "GET", "/readyz", readyz)
    add_route(app, "GET", "/metrics", metrics)


# ---------------------------------------------------------------- OpenAPI

ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "object", "properties": {
        "code": {"type": "string"}, "message": {"type": "string"},
        "fields": {"type": "object", "additionalProperties": {"type": "string"}},
    }, "required": ["code", "message"]}},
    "required": ["error"],
}


def openapi_document(docs: list[RouteDoc], title: str = "glint", version: str = "0.1.0") -> dict[str, Any]:
    """The OpenAPI 3.1 document of the routes, with schemas generated from their msgspec Structs."""
    types = [t for d in docs for t in (d.body, d.response) if t is not None]
    # the websocket's frames (the /ws operation points at them): every client and server frame
    types += [frames.AnyClientFrame, frames.AnyServerFrame]
    schemas, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    by_type = dict(zip(types, schemas))
    components["ClientFrame"], components["ServerFrame"] = schemas[-2], schemas[-1]
    components["Error"] = ERROR_SCHEMA
    paths: dict[str, dict[str, Any]] = {}
    for doc in docs:
        operation: dict[str, Any] = {
            "summary": doc.summary, "tags": [doc.tag] if doc.tag else [],
            "operationId": doc.handler.__name__,
            "responses": {"default": {"description": "error", "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}},
        }
        parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                      for name in _path_params(doc.path)]
        parameters += [{"name": name, "in": "query", "required": False, "description": text,
                        "schema": {"type": "string"}} for name, text in doc.query.items()]
        if parameters:
            operation["parameters"] = parameters
        if doc.body is not None:
            operation["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": by_type[doc.body]}}}
        for status, description in {doc.status: "OK" if not doc.also else "created", **doc.also}.items():
            ok: dict[str, Any] = {"description": description}
            if doc.response is not None:
                ok["content"] = {"application/json": {"schema": by_type[doc.response]}}
            operation["responses"][str(status)] = ok
        if doc.auth:
            operation["security"] = [{"bearer": []}]
        if doc.role:
            operation["x-role"] = doc.role
            operation["description"] = (f"Only for accounts with the {doc.role} role (or above); "
                                        "everyone else gets 404.")
        if doc.path == "/ws":
            operation["x-websocket-frames"] = {"client": {"$ref": "#/components/schemas/ClientFrame"},
                                               "server": {"$ref": "#/components/schemas/ServerFrame"}}
        paths.setdefault(re.sub(r"\{(\w+):[^}]*\}", r"{\1}", doc.path), {})[doc.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version,
                 "description": "The REST API of glint. Ids are 64-bit integers sent as strings."},
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
    }


def _path_params(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


def add_openapi_routes(app: web.Application, docs: list[RouteDoc]) -> None:
    """/api/openapi.json and a self-contained /api/docs/ page that needs no CDN."""
    document = openapi_document(docs)
    body = msgspec.json.encode(document)
    page = _docs_page(document).encode()

    async def openapi_json(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    async def docs_page(request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8")

    add_route(app, "GET", "/api/openapi.json", openapi_json)
    add_route(app, "GET", "/api/docs/", docs_page)


def _docs_page(document: dict[str, Any]) -> str:
    rows = []
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            detail = {k: op[k] for k in ("parameters", "requestBody", "responses") if k in op}
            rows.append(
                f"<details><summary><b>{method.upper()}</b> <code>{html.escape(path)}</code> — "
                f"{html.escape(op['summary'])}{' 🔒' if op.get('security') else ''}</summary>"
                f"<pre>{html.escape(msgspec.json.format(msgspec.json.encode(detail)).decode())}</pre></details>"
            )
    schemas = html.escape(msgspec.json.format(msgspec.json.encode(document["components"]["schemas"])).decode())
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>glint API</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto}"
        "pre{background:#f5f5f5;padding:.5rem;overflow:auto}summary{cursor:pointer;padding:.2rem}</style>"
        "</head><body><h1>glint API</h1><p>The machine-readable document is "
        "<a href='/api/openapi.json'>/api/openapi.json</a>. 🔒 needs <code>Authorization: Bearer</code>.</p>"
        + "".join(rows) + f"<h2>Schemas</h2><pre>{schemas}</pre></body></html>"
    )
