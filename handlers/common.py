"""What every handler module shares: the base Struct, the error type, body decoding, responses,
pagination and the route table that the OpenAPI document is generated from."""

from __future__ import annotations

import asyncio
import base64
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Awaitable, Callable, Generic, Sequence, TypeVar, Union

import asyncpg
import msgspec
from aiohttp import HttpVersion11, web
from aiohttp.web_protocol import RequestPayloadError
from msgspec import Meta

from realtime.frames import IdStr
from storage.bounds import BIGINT_MAX, bad_str, field_problem, is_id

from handlers.context import config_key, identity_key, pool_key, redis_key, replicas_key
from realtime import frames
from storage import faults, users

T = TypeVar("T")

# ids in bodies: a string of 1..2^63-1 (what clients get), or the same as a JSON number
Id = IdStr
IdIn = Union[IdStr, Annotated[int, Meta(ge=1, le=BIGINT_MAX, description="a 64-bit id")]]


class Struct(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The base of every request and response body."""


# ---------------------------------------------------------------- errors


class ApiError(Exception):
    """An error a client sees as `{"error": {"code", "message", "fields"}}` with this status."""

    status = 400
    code = "bad_request"
    message = "Bad request."
    closes = False  # the connection is closed after the answer: its request body is left unread

    def __init__(self, message: str | None = None, *, fields: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.message = message or self.message
        self.fields = fields or {}
        self.headers = headers or {}
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        """The JSON error envelope."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.fields:
            error["fields"] = self.fields
        return {"error": error}


class ValidationFailed(ApiError):
    status, code, message = 400, "validation_error", "Invalid input."


class MalformedJson(ApiError):
    status, code, message = 400, "malformed_json", "The body is not valid JSON."


class NotAuthenticated(ApiError):
    status, code, message = 401, "not_authenticated", "Authentication credentials were not provided or are invalid."


class TokenExpired(NotAuthenticated):
    code, message = "token_expired", "The access token has expired."


class Forbidden(ApiError):
    status, code, message = 403, "forbidden", "You may not do this."


class NotFound(ApiError):
    status, code, message = 404, "not_found", "Not found."


class MethodNotAllowed(ApiError):
    status, code, message = 405, "method_not_allowed", "Method not allowed."


class Conflict(ApiError):
    status, code, message = 409, "conflict", "This conflicts with what exists."


class PayloadTooLarge(ApiError):
    status, code, message, closes = 413, "payload_too_large", "The request body is too large.", True


class UnreadableBody(ApiError):
    status, code, message, closes = 400, "unreadable_body", "The body does not decode as its Content-Encoding says.", True


class BodyTimeout(ApiError):
    status, code, message, closes = 408, "request_timeout", "The request body did not arrive in time.", True


class UnsupportedMediaType(ApiError):
    status, code, message = 415, "unsupported_media_type", "Send application/json."


class ServiceUnavailable(ApiError):
    status, code, message = 503, "service_unavailable", "A service this needs is unavailable; try again shortly."
    frame_code = "unavailable"  # the websocket's name for it
    retry_after = faults.RETRY_AFTER_SECONDS

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("Retry-After", str(self.retry_after))


class RateLimited(ApiError):
    status, code, message = 429, "rate_limited", "Too many requests."


def client_error(exc: BaseException) -> ApiError | None:
    """What a failure is to the client, for REST and the websocket alike: an ApiError as it is, a
    store that is away or overloaded as ServiceUnavailable (retry shortly), anything else None
    (a bug: the caller logs it and answers a plain internal error)."""
    if isinstance(exc, ApiError):
        return exc
    if faults.is_unavailable(exc):
        return ServiceUnavailable()
    return None


def error_frame(error: ApiError, ref: Any = None) -> bytes:
    """The websocket twin of an error response: an `error` frame echoing the client's ref;
    unavailable carries `retry_after` as the response carries Retry-After."""
    retry_after = getattr(error, "retry_after", None)
    return frames.error(getattr(error, "frame_code", error.code), error.message, ref, retry_after)


def validation_error(exc: msgspec.ValidationError) -> ValidationFailed:
    """Turn msgspec's message ("Expected `str` of length >= 8 - at `$.password`") into a field
    error, in plain words where it is a bound ("At least 8 characters.")."""
    name, problem = field_problem(str(exc))
    if name is None:
        return ValidationFailed(problem)
    return ValidationFailed(f"{name}: {problem}", fields={name: problem})


# ---------------------------------------------------------------- bodies

_encoder = msgspec.json.Encoder()
_decoders: dict[type, msgspec.json.Decoder] = {}


def decode(data: bytes, type_: type[T]) -> T:
    """Decode JSON bytes into `type_`; malformed JSON and wrong shapes become 400s."""
    decoder = _decoders.get(type_)
    if decoder is None:
        decoder = _decoders[type_] = msgspec.json.Decoder(type_)
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise MalformedJson() from None


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_continued_key = web.RequestKey("continued", bool)


async def defer_continue(request: web.Request) -> None:
    """Every route's answer to an `Expect` header (RFC 9110 §10.1.1): nothing yet. "100 Continue"
    goes out only when the body is about to be read (go_on), after the checks before it, so a
    declared body past the limit, an upload's wrong type or missing login is answered before the
    client sends the body (aiohttp's own handler sent it at once; a JSON body is read before the
    login is checked, to refuse unstorable text, so it is asked for first). An expectation other
    than 100-continue is ignored, as the RFC allows (aiohttp's was a text/plain 417 outside the
    error envelope)."""
    return None


def _expects_continue(request: web.Request) -> bool:
    return request.version == HttpVersion11 and request.headers.get("Expect", "").lower() == "100-continue"


async def go_on(request: web.Request) -> None:
    """Ask for the body the client holds back for "100 Continue", once, just before reading it."""
    if _expects_continue(request) and not request.get(_continued_key):
        request[_continued_key] = True
        await request.writer.write(CONTINUE)
        request.writer.output_size = 0  # as aiohttp's own handler: the response has not begun


def end_unasked_body(request: web.Request, response: web.StreamResponse) -> None:
    """An answer given while the client still holds its body back for "100 Continue" ends the
    connection, at once: what the client sends next on it could be that body or a new request,
    and aiohttp would read it as the body (for up to its 10 s lingering) and drop what it held."""
    if request.body_exists and _expects_continue(request) and not request.get(_continued_key):
        response.force_close()
        request.content.feed_eof()


class ClientGone(ApiError):
    """The client's connection was lost while its request was read or answered: nobody receives
    this, but the access log and metrics count it as the client's (499, as nginx names it), not
    as a store away."""

    status, code, message, closes = 499, "client_closed_request", "The client closed the connection.", True


def client_left(request: web.Request, exc: BaseException) -> bool:
    """Is `exc` the client's own connection lost (reset while its body was read or the answer
    written), not a store's?"""
    transport = request.transport
    return isinstance(exc, ConnectionError) and (transport is None or transport.is_closing())


def add_route(app: web.Application, method: str, path: str,
              handler: Callable[..., Awaitable[web.StreamResponse]]) -> None:
    """A route on the app's router with glint's Expect handling (defer_continue); a GET answers HEAD
    too (RFC 9110 §9.3.2: the GET's status and headers, no body), as aiohttp's add_get does."""
    if method == "GET":
        app.router.add_get(path, handler, expect_handler=defer_continue)
    else:
        app.router.add_route(method, path, handler, expect_handler=defer_continue)


async def read_body(request: web.Request) -> bytes:
    """The whole request body (aiohttp keeps it: a second read costs nothing), within the size
    limit and the body timeout: a body that stops arriving is a 408, not a connection held open,
    and one that does not decode as its Content-Encoding says is a 400. A declared length past the
    limit is refused before anything is read (and before "100 Continue": go_on)."""
    length = request.content_length
    if length is not None and length > request.app[config_key].server.max_body_bytes:
        raise PayloadTooLarge()
    await go_on(request)
    try:
        async with asyncio.timeout(request.app[config_key].server.body_timeout_seconds):
            return await request.read()
    except TimeoutError:
        raise BodyTimeout() from None
    except RequestPayloadError:
        raise unreadable_body(request) from None


def unreadable_body(request: web.Request) -> UnreadableBody:
    """The error of a body that does not decode as its Content-Encoding says. Its stream is ended
    here: aiohttp would otherwise read on after the answer (its lingering close), meet the same
    error and log it as an unhandled exception, a traceback any client could cause at will."""
    request.content.feed_eof()
    return UnreadableBody()


def body_deadline(request: web.Request) -> asyncio.Timeout:
    """The body timeout for a body read in parts (an upload): `reading(deadline)` after each part
    restarts it, so a slow upload that keeps arriving is read and a stalled one is not waited for."""
    return asyncio.timeout(request.app[config_key].server.body_timeout_seconds)


def reading(request: web.Request, deadline: asyncio.Timeout) -> None:
    """A part of the body arrived: the body timeout starts again (body_deadline)."""
    deadline.reschedule(asyncio.get_running_loop().time() + request.app[config_key].server.body_timeout_seconds)


async def read_json(request: web.Request, type_: type[T]) -> T:
    """The request body as `type_`: it must be JSON, within the size limit, of the right shape."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType(f"Send application/json, not {request.content_type or 'nothing'}.")
    return decode(await read_body(request), type_)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """Encode with msgspec; ids (int fields named as ids) are already strings in the Structs."""
    return web.Response(
        body=_encoder.encode(data), status=status, headers=headers,
        content_type="application/json", charset="utf-8",
    )


def no_content() -> web.Response:
    """204 with no body."""
    return web.Response(status=204)


def encode(data: Any) -> bytes:
    """JSON bytes of anything msgspec encodes."""
    return _encoder.encode(data)


# ---------------------------------------------------------------- ids and params

def parse_id(value: str | int | None, name: str = "id") -> int:
    """A 64-bit id (1..2^63-1, plain ASCII digits) from a path, a query string or a body; anything
    else is 404 for a path (nothing can be there), 400 naming the field otherwise."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not is_id(text):
        raise NotFound() if name == "id" else ValidationFailed(f"{name} must be an id.", fields={name: "Must be an id."})
    return int(text)


def path_id(request: web.Request, name: str = "id") -> int:
    """An id from the URL path; one that cannot exist answers 404."""
    return parse_id(request.match_info.get(name), "id")


def query_id(request: web.Request, name: str) -> int | None:
    """An optional id from the query string; a malformed one is 400."""
    value = request.query.get(name)
    return None if value in (None, "") else parse_id(value, name)


# ---------------------------------------------------------------- pagination


class Page(msgspec.Struct, Generic[T]):
    """A page of a cursor-paginated list."""

    results: list[T]
    next: str | None


@dataclass(frozen=True)
class PageRequest:
    """?limit= and ?cursor= of a list request."""

    limit: int
    cursor: str | None


def page_request(request: web.Request, default: int = 20, maximum: int = 100) -> PageRequest:
    """Read ?limit= (default 20, at most 100) and ?cursor=."""
    raw = request.query.get("limit")
    limit = default
    if raw not in (None, ""):
        # plain ASCII digits: int() also takes "٣", "５", " 5", "+5" and "1_0"
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 20:
            raise ValidationFailed("limit must be a number.", fields={"limit": "Must be a number."})
        limit = int(raw)
        if not 1 <= limit <= maximum:
            raise ValidationFailed(f"limit must be 1..{maximum}.", fields={"limit": f"Must be 1..{maximum}."})
    return PageRequest(limit, request.query.get("cursor") or None)


def encode_cursor(*parts: object) -> str:
    """An opaque cursor from a few values (ints, strings, floats; datetimes as ISO text)."""
    values = [p.isoformat() if isinstance(p, datetime) else p for p in parts]
    return base64.urlsafe_b64encode(_encoder.encode(values)).decode().rstrip("=")


CURSOR_MAX = 512  # characters of a cursor; a real one is far shorter


class InvalidCursor(ValidationFailed):
    message = "cursor is invalid."

    def __init__(self) -> None:
        super().__init__(fields={"cursor": "Invalid cursor."})


def _cursor_part(value: Any, kind: type) -> Any:
    """One value of a cursor as `kind`: int (0..2^63-1), str (short, storable), float (finite),
    datetime (ISO text with a zone); anything else raises ValueError."""
    if kind is int and type(value) is int and 0 <= value <= BIGINT_MAX:
        return value
    if kind is float and type(value) in (int, float) and math.isfinite(value):
        return float(value)
    if kind is str and type(value) is str and len(value) <= 200 and bad_str(value) is None:
        return value
    if kind is datetime and type(value) is str and len(value) <= 40:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is not None:
            return moment
    raise ValueError(f"not a cursor {kind.__name__}")


def decode_cursor(cursor: str | None, *kinds: type) -> list[Any] | None:
    """The values of a cursor made by encode_cursor, each checked to be of its kind (int, str,
    float, datetime) and within what the stores accept; a bad one is 400. The one cursor codec:
    every list route reads its cursor here."""
    if cursor is None:
        return None
    try:
        if len(cursor) > CURSOR_MAX:
            raise ValueError("too long")
        parts = msgspec.json.decode(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(parts, list) or len(parts) != len(kinds):
            raise ValueError("not a list of the kinds")
        return [_cursor_part(value, kind) for value, kind in zip(parts, kinds)]
    except Exception:
        raise InvalidCursor() from None


def id_string_cursor(cursor: str | None) -> int | None:
    """The id inside a cursor made by encode_cursor from an id string; a bad one is 400."""
    parts = decode_cursor(cursor, str)
    return None if parts is None else parse_id(parts[0], "cursor")


def next_link(request: web.Request, limit: int, **params: str) -> str:
    """A Page's `next`: this list's path and query with `params` (the cursor after the last item
    shown) and the page size put in. Every list route builds its `next` here."""
    return str(request.rel_url.with_query({**request.query, **params, "limit": str(limit)}))


def make_page(request: web.Request, items: Sequence[T], limit: int, cursor_of: Callable[[T], str],
              param: str = "cursor") -> Page[T]:
    """A Page of the first `limit` items whose `next`, when there may be more, is this path with
    `param` (?cursor= unless a list pages by another parameter) set to `cursor_of(last item)`."""
    items = list(items)
    if len(items) <= limit:
        return Page(results=items, next=None)
    items = items[:limit]
    return Page(results=items, next=next_link(request, limit, **{param: cursor_of(items[-1])}))


# ---------------------------------------------------------------- roles

ROLES = ("user", "moderator", "admin")  # each includes the powers of those before it


def has_role(role: str, needed: str) -> bool:
    """Does `role` carry at least the powers of `needed`?"""
    return ROLES.index(role) >= ROLES.index(needed)


async def check_role(pool: asyncpg.Pool | asyncpg.Connection, user_id: int | None, needed: str) -> str:
    """The account's role when it is at least `needed`; otherwise 404 (not 403: the admin API and
    what it acts on do not leak). Read from PostgreSQL on each call, so a demotion acts at once."""
    role = None if user_id is None else await users.get_role(pool, user_id)
    if role is None or not has_role(role, needed):
        raise NotFound()
    return role


def _guarded(handler: "Handler", role: str) -> "Handler":
    async def guarded(request: web.Request) -> web.StreamResponse:
        identity = request.get(identity_key)
        await check_role(request.app[pool_key], identity.user_id if identity is not None else None, role)
        return await handler(request)
    guarded.__doc__, guarded.__name__ = handler.__doc__, handler.__name__
    return guarded


# ---------------------------------------------------------------- the route table

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Who a route serves (its `sees` declaration), which the authorization matrix test checks for
# every route against an anonymous client, a stranger, a blocked user, a follower and the owner of
# a private account's things (anyone refused gets 404, so existence does not leak):
#   anyone    no account needed
#   self      any signed-in account: its own things, or an act any account may take (a block)
#   shown     a user anyone may be shown, but not one kept apart from them (a block)
#   audience  an owner's things: those who may see the owner's things (storage.visibility)
#   member    a conversation: its members
#   owner     the owner only (others who may see the thing may get 403 instead)
#   staff     moderators and admins (the `role` option)
SEES = ("anyone", "self", "shown", "audience", "member", "owner", "staff")


@dataclass
class RouteDoc:
    """What the OpenAPI document says of one route."""

    method: str
    path: str
    handler: Handler
    summary: str
    body: type | None = None
    response: type | None = None
    status: int = 200
    auth: bool = True
    tag: str = ""
    query: dict[str, str] = field(default_factory=dict)
    role: str | None = None
    sees: str = "self"
    also: dict[int, str] = field(default_factory=dict)  # other success statuses and when they answer


class Routes:
    """A module's routes: a decorator that records each with its request and response types."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.docs: list[RouteDoc] = []

    def route(self, method: str, path: str, *, body: type | None = None, response: type | None = None,
              status: int = 200, auth: bool = True, query: dict[str, str] | None = None,
              role: str | None = None, sees: str | None = None,
              also: dict[int, str] | None = None) -> Callable[[Handler], Handler]:
        """Record a route; `role` ("moderator" or "admin") admits only accounts with at least that
        role, and answers 404 to everyone else (anonymous included), so the route does not leak.
        `sees` declares who it serves (SEES; a path naming a thing by id is "owner" unless declared);
        `also` lists success statuses besides `status` (a resend's 200) for the OpenAPI document."""
        if sees is None:  # undeclared: the strictest reading, which the matrix then holds it to
            sees = "staff" if role else "anyone" if not auth else "owner" if "{" in path else "self"
        if sees not in SEES:
            raise ValueError(f"{method} {path}: sees={sees!r} is not one of {SEES}")

        def register(handler: Handler) -> Handler:
            summary = (handler.__doc__ or handler.__name__).strip().splitlines()[0]
            served = handler if role is None else _guarded(handler, role)
            self.docs.append(RouteDoc(method, path, served, summary, body, response, status, auth,
                                      self.tag, query or {}, role, sees, also or {}))
            return handler
        return register

    def add_to(self, app: web.Application) -> None:
        """Register every route on the application's router (add_route: a GET answers HEAD too;
        the OpenAPI document lists the GET only)."""
        for doc in self.docs:
            add_route(app, doc.method, doc.path, doc.handler)


FrameRule = Callable[[Any, Any], Awaitable[None]]  # (the socket's Connection, the decoded frame)


class FrameRules:
    """What client frames do, by their type: a module registers each frame's rule beside the rule's
    REST twin, as `Routes` holds its routes (`@frame_rules.on(frames.ReactMessage)`), and
    handlers/socket.py dispatches every frame through the rules of all such modules."""

    def __init__(self) -> None:
        self.rules: dict[type, FrameRule] = {}

    def on(self, *kinds: type) -> Callable[[FrameRule], FrameRule]:
        def register(rule: FrameRule) -> FrameRule:
            for kind in kinds:
                if kind in self.rules:
                    raise ValueError(f"{kind.__name__} already has a rule")
                self.rules[kind] = rule
            return rule
        return register


async def read_pool(request: web.Request) -> asyncpg.Pool:
    """The pool for a read that tolerates replica lag: a usable replica, except right after the
    viewer's own write (read-your-writes); the primary when no replica is configured."""
    primary = request.app[pool_key]
    replicas = request.app.get(replicas_key)
    if replicas is None:
        return primary
    identity = request.get(identity_key)
    return await replicas.reader(primary, request.app[redis_key], identity.user_id if identity else None)
