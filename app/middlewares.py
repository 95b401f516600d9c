"""The request pipeline, outermost first: request id + access log + metrics with errors and
security headers (one layer), unstorable text, CORS, gzip, authentication + rate limit."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
import zlib

from aiohttp import web
from aiohttp.web_exceptions import HTTPException
from aiohttp.web_protocol import RequestHandler
from opentelemetry import trace
from prometheus_client import Counter, Gauge, Histogram

from app import logs
from app.web import is_app_path
from handlers.auth import auth_markers, bearer_token, check_session, read_access_token, rider_for, verifying_secrets
from handlers.common import (
    ApiError, ClientGone, MethodNotAllowed, NotAuthenticated, NotFound, PayloadTooLarge, RateLimited,
    ValidationFailed, client_error, client_left, encode, end_unasked_body, read_body,
)
from handlers.context import config_key, identity_key, limiter_key, pool_key, redis_key, request_id_key, ridden_key
from jobs.events import count_store_error
from storage import bounds
from storage.faults import OutageLog
from storage.ratelimit import address_key, user_key
from storage.replicas import wrote_key

HTTP_REQUESTS = Counter(
    "glint_http_requests_total", "HTTP requests answered", ["route", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "glint_http_request_duration_seconds", "HTTP request latency", ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
HTTP_IN_FLIGHT = Gauge("glint_http_requests_in_flight", "HTTP requests being served")

log = logging.getLogger("glint.http")
access_log = logging.getLogger("glint.access")

outages = OutageLog(log)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
UNMATCHED = "<unmatched>"


def route_template(request: web.Request) -> str:
    """The matched route's template (`/api/posts/{id}/`), never the raw path, to bound label sets."""
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    if resource is None or getattr(info, "http_exception", None) is not None:
        return UNMATCHED
    return resource.canonical


_children: dict[tuple[str, str, str], tuple] = {}  # (route, method, status): its counter and histogram
CHILDREN_MAX = 4096  # label sets remembered (routes x methods x statuses; a bound for odd methods)


def _observe(route: str, method: str, status: int, elapsed: float) -> None:
    """Count a request and its latency under its labels (the metric children looked up once per
    label set: prometheus_client's labels() takes a lock and builds its key on every call)."""
    key = (route, method, str(status))
    children = _children.get(key)
    if children is None:
        children = (HTTP_REQUESTS.labels(*key), HTTP_LATENCY.labels(route, method))
        if len(_children) < CHILDREN_MAX:
            _children[key] = children
    children[0].inc()
    children[1].observe(elapsed)


@web.middleware
async def request_context(request: web.Request, handler):
    """The outermost layer, one coroutine for three jobs: the request id (taken from X-Request-ID
    or made), one JSON log line and metrics per request; every error as the JSON envelope of
    API.md (errors); the security headers on every response (secure)."""
    incoming = request.headers.get("X-Request-ID", "")
    request_id = incoming if _REQUEST_ID.match(incoming) else os.urandom(16).hex()  # 32 hex digits, as uuid4().hex
    request[request_id_key] = request_id
    started = time.perf_counter()
    HTTP_IN_FLIGHT.inc()
    status = 500
    try:
        try:
            response = await handler(request)
        except ApiError as exc:
            response = error_response(exc)
        except HTTPException as exc:
            if exc.status < 400:
                raise
            response = error_response(_from_http_exception(exc))
        except Exception as exc:
            response = _unexpected(request, exc)
        except asyncio.CancelledError:  # the client went and its handler was cancelled, or the server stops
            status = ClientGone.status
            raise
        if not response.prepared:  # a websocket, or a stream already under way
            secure(request, response)
            end_unasked_body(request, response)
        status = response.status
        response.headers["X-Request-ID"] = request_id
        return response
    finally:
        HTTP_IN_FLIGHT.dec()
        elapsed = time.perf_counter() - started
        route = route_template(request)
        _observe(route, request.method, status, elapsed)
        if request.app[config_key].server.access_log:
            identity = request.get(identity_key)
            access_log.info("request", extra={"fields": {
                "method": request.method, "route": route, "path": request.path, "status": status,
                "duration_ms": round(elapsed * 1000, 2),
                "user": str(identity.user_id) if identity else None, "request_id": request_id,
            }})


def error_response(error: ApiError) -> web.Response:
    """The JSON envelope of an ApiError."""
    response = web.Response(body=encode(error.body()), status=error.status, headers=error.headers,
                            content_type="application/json", charset="utf-8")
    if error.closes:
        response.force_close()
    return response


def _unexpected(request: web.Request, exc: Exception) -> web.Response:
    """Anything unexpected is a logged 500 with no details; a store away or overloaded is the
    error the client may retry (client_error), not a bug."""
    if client_left(request, exc):
        return error_response(ClientGone())
    error = client_error(exc)
    if error is None:
        count_store_error(exc)
        log.exception("unhandled error", extra={"fields": {"request_id": request.get(request_id_key)}})
        return error_response(_internal())
    count_store_error(exc, default="other")
    outages.note(f"{request.method} {route_template(request)}", exc)
    return error_response(error)


def _internal() -> ApiError:
    error = ApiError("Something went wrong on our side.")
    error.status, error.code = 500, "internal_error"
    return error


def _from_http_exception(exc: HTTPException) -> ApiError:
    """aiohttp's own errors (router 404/405, body too large, ...) in the envelope."""
    if exc.status == 404:
        return NotFound()
    if exc.status == 405:
        allowed = exc.headers.get("Allow", "")
        return MethodNotAllowed(f"Method not allowed; use {allowed}." if allowed else None,
                                headers={"Allow": allowed} if allowed else None)
    if exc.status == 413:
        return PayloadTooLarge()
    error = ApiError(exc.reason or "Error.")
    error.status = exc.status
    error.code = (exc.reason or "error").lower().replace(" ", "_")
    return error


# the docs page is one self-contained HTML document: inline styles, nothing fetched, never framed
DOCS_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none';"
            " frame-ancestors 'none'")
API_CSP = "default-src 'none'; frame-ancestors 'none'"
BASE_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


_JSON_HEADERS = (*BASE_HEADERS.items(), ("Content-Security-Policy", API_CSP))
_OTHER_HEADERS = (*BASE_HEADERS.items(), ("Content-Security-Policy", "frame-ancestors 'none'"))


def secure(request: web.Request, response: web.StreamResponse) -> None:
    """On every response not yet under way: no MIME sniffing, no referrer, never framed; JSON gets
    a CSP that allows nothing, /api/docs/ its own; a response to an authenticated request is never
    cached. A header the handler set itself is kept (but /api/docs/'s CSP and Cache-Control)."""
    headers = response.headers
    for name, value in _JSON_HEADERS if response.content_type == "application/json" else _OTHER_HEADERS:
        if name not in headers:
            headers[name] = value
    if request.path == "/api/docs/":
        headers["Content-Security-Policy"] = DOCS_CSP
    if request.get(identity_key) is not None or "Authorization" in request.headers:
        headers["Cache-Control"] = "no-store"


class UnstorableText(ValidationFailed):
    code = "invalid_text"


@web.middleware
async def refuse_unstorable(request: web.Request, handler):
    """A NUL or invalid UTF-8 in the URL, a header or a JSON body is a 400 before any handler (and
    so any store) sees it: PostgreSQL refuses such text, and one refused value in a batched
    statement would fail everyone's rows."""
    problem = bounds.bad_url(request.raw_path)
    values = "".join(request.headers.values())
    if problem is None and not (values.isascii() and "\x00" not in values):  # else every header is fine
        for name, value in request.headers.items():
            problem = bounds.bad_str(value)
            if problem is not None:
                problem = f"Header {name}: {problem}" if bounds.bad_str(name) is None else problem
                break
    if problem is None and request.body_exists and request.content_type == "application/json":
        problem = bounds.bad_text(await read_body(request))
    if problem is not None:
        raise UnstorableText(problem)
    return await handler(request)


def json_protocol_errors() -> None:
    """aiohttp answers a request it cannot parse (a NUL in a header, a broken request line) before
    any middleware runs, in plain text that echoes the input; answer the JSON envelope instead,
    naming nothing of the input. Installed once per process (the protocol class is aiohttp's)."""
    original = RequestHandler.handle_error
    if getattr(original, "glint_json", False):
        return

    def handle_error(self, request, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500:
            original(self, request, status, exc, message)  # logs, and refuses when a response already began
        else:  # the client's fault: a line, not a traceback, and none of the input (it may hold a token)
            log.warning("unreadable request", extra={"fields": {"error": type(exc).__name__ if exc else None}})
            if request.writer.output_size > 0:
                raise ConnectionError("A response was begun; no error response can follow it.")
        error = ApiError("The request could not be read." if status < 500 else "Something went wrong on our side.")
        error.status = status
        error.code = "bad_request" if status < 500 else "internal_error"
        response = error_response(error)
        response.headers.update({**BASE_HEADERS, "Content-Security-Policy": API_CSP})
        response.force_close()
        return response

    handle_error.glint_json = True  # type: ignore[attr-defined]
    RequestHandler.handle_error = handle_error  # type: ignore[method-assign]


def cors(origins: str):
    """CORS for the configured origins ("*" or a comma-separated list); preflights answered here."""
    allowed = {o.strip() for o in origins.split(",") if o.strip()}

    @web.middleware
    async def middleware(request: web.Request, handler):
        origin = request.headers.get("Origin")
        permitted = origin is not None and ("*" in allowed or origin in allowed)
        if permitted and request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response: web.StreamResponse = web.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = request.headers.get(
                "Access-Control-Request-Headers", "Authorization, Content-Type")
            response.headers["Access-Control-Max-Age"] = "600"
        else:
            response = await handler(request)
        if permitted:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = (
                "X-Request-ID, X-RateLimit-Limit, X-RateLimit-Remaining, Retry-After")
            response.headers["Vary"] = "Origin"
        return response

    return middleware


_UNLIMITED = frozenset({"/healthz", "/readyz", "/metrics"})


@web.middleware
async def authenticate(request: web.Request, handler):
    """Read the bearer token, count the request against its limit (per user, or per address when
    anonymous) and refuse revoked sessions and inactive users, all in one Redis round trip while
    their states are cached (with the route's first read of the user's keys, if it declares one:
    handlers.auth.first_read); a state not cached is read from PostgreSQL, never assumed."""
    if request.path in _UNLIMITED or request.method == "OPTIONS" or is_app_path(request.path):
        return await handler(request)
    config = request.app[config_key]
    token = bearer_token(request)
    if token is None and request.path == "/ws":
        token = request.query.get("token")
    auth = config.auth
    identity = read_access_token(verifying_secrets(auth.jwt_secret, auth.jwt_previous_secret), token) if token else None
    if identity is not None:
        limit, window = config.rate_limits.per_hour, 3600
        rider = rider_for(request, identity)  # the route's first read, in the same script call
        hit = await request.app[limiter_key].hit(user_key(identity.user_id, "h"), window, auth_markers(identity), rider)
        if hit.refused or (hit.unknown and not await check_session(
                request.app[pool_key], request.app[redis_key], auth.access_token_ttl, identity.user_id,
                identity.session_id)):
            raise NotAuthenticated("This session has been revoked.")
        request[identity_key] = identity
        if rider is not None:
            request[ridden_key] = hit.ridden
    else:
        limit, window = config.rate_limits.anonymous_per_hour, 3600
        hit = await request.app[limiter_key].hit(address_key("anon", request.remote or "unknown"), window)
    headers = {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(hit.remaining(limit))}
    if hit.count > limit:
        headers["Retry-After"] = str(max(hit.reset_ms // 1000, 1))
        raise RateLimited(headers=headers)
    try:
        response = await handler(request)
    except ApiError as exc:
        exc.headers = {**headers, **exc.headers}
        raise
    if not response.prepared:
        response.headers.update(headers)
    return response


_READS = frozenset({"GET", "HEAD", "OPTIONS"})


def read_your_writes(window: float):
    """With read replicas: mark a user who is about to write, so that their reads stay on the
    primary for `window` seconds in every process (set before the write, so no read after its
    commit can miss the mark)."""
    window_ms = max(int(window * 1000), 1)

    @web.middleware
    async def middleware(request: web.Request, handler):
        identity = request.get(identity_key)
        if identity is not None and request.method not in _READS:
            await request.app[redis_key].set(wrote_key(identity.user_id), b"1", px=window_ms)
        return await handler(request)

    return middleware


INLINE_GZIP_MAX = 64 * 1024  # a page of posts; zlib level 1 takes well under 0.1 ms for it


def gzip(min_bytes: int):
    """Compress large responses for clients that accept gzip (behind nginx none do: it strips
    Accept-Encoding and compresses at the edge, where it pays, in its own workers). A body up to a
    page's size is compressed at once at level 1 (a thread hop costs more than that); a larger one
    in aiohttp's compression thread, so the loop never waits on it."""

    @web.middleware
    async def middleware(request: web.Request, handler):
        response = await handler(request)
        if (isinstance(response, web.Response) and not response.prepared and response.body is not None
                and len(response.body) >= min_bytes and "gzip" in request.headers.get("Accept-Encoding", "")):
            body = response.body
            if isinstance(body, bytes) and len(body) <= INLINE_GZIP_MAX:
                packer = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
                response.body = packer.compress(body) + packer.flush()
                response.headers["Content-Encoding"] = "gzip"
                response.headers.add("Vary", "Accept-Encoding")
            else:
                response.enable_compression(web.ContentCoding.gzip)
        return response

    return middleware


class JsonFormatter(logging.Formatter):
    """One JSON object per log line."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "msg": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            line["trace_id"], line["span_id"] = f"{span.trace_id:032x}", f"{span.span_id:016x}"
        line.update(getattr(record, "fields", {}))
        if getattr(record, "repeated", 0):
            line["repeated"] = record.repeated  # like lines held back since the last one
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def setup_logging(level: str) -> None:
    """JSON lines on stderr, UTC timestamps."""
    handler = logging.StreamHandler()
    formatter = JsonFormatter()
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    logs.configure(handler, level)
