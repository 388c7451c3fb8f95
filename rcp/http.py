"""The edges of every HTTP exchange: bodies in (size limit, CSRF, JSON validation), errors out.

``read_json(request, Model)`` is the one way an endpoint reads a JSON body: unreadable JSON is a 400, fields that
do not validate a 422 naming each field. Errors anywhere become ``{"error", "message", "fields"}`` with the right
status and never a stack trace.

``parse_json(raw)`` is where every JSON text from a client is parsed (bodies here, room messages in
``rcp.room.connection``): its size is bounded before it arrives (``BodyLimitMiddleware``, the room's message limit)
and its nesting depth is measured before the parser recurses into it — a body nested 100,000 deep made Python's
parser raise ``RecursionError``, a 500 (issue 18).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar
from urllib.parse import parse_qs

from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rcp.errors import BadRequest, Forbidden, Invalid, MethodNotAllowed, NotFound, PayloadTooLarge, RcpError
from rcp.logs import route_template

__all__ = [
    "BodyLimitMiddleware",
    "CsrfMiddleware",
    "OutageMiddleware",
    "SecurityHeadersMiddleware",
    "current_user",
    "json_error",
    "json_out",
    "parse_json",
    "path_int",
    "read_json",
    "validation_fields",
]

logger = logging.getLogger(__name__)
Model = TypeVar("Model", bound=BaseModel)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


def validation_fields(error: ValidationError) -> dict[str, str]:
    """Pydantic's errors as ``{"field.path": "message"}`` — input values are left out (they may be patient data)."""
    fields: dict[str, str] = {}
    for item in error.errors(include_input=False, include_url=False):
        name = ".".join(str(part) for part in item["loc"]) or "body"
        fields.setdefault(name, item["msg"])
    return fields


#: Deepest nesting of arrays and objects a client may send: the service's own bodies are at most four levels deep.
MAX_JSON_DEPTH = 32
#: JSON strings (RFC 8259 §7), whose brackets are text, not structure.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+"', re.DOTALL)
#: Everything but brackets dropped, and objects' braces read as brackets: the shape of the nesting.
_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))
_INNERMOST = re.compile(rb"\[\]")


def json_depth_ok(raw: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``raw``'s arrays and objects nest at most ``max_depth`` deep, measured without recursion.

    Strings are blanked first; then each pass removes the innermost pairs of brackets, so a text of depth *d*
    empties in *d* passes of the regular-expression engine (linear each), and the work stops after ``max_depth``.
    Brackets that do not pair up mean the text is not JSON at all: refused as too deep too, which it may be.

    >>> json_depth_ok(b'{"a": [1, {"b": "]]]]"}]}', max_depth=3)
    True
    >>> json_depth_ok(b"[" * 4 + b"]" * 4, max_depth=3)
    False
    >>> json_depth_ok(b"[" * 100_000)
    False
    """
    shape = _JSON_STRING.sub(b'""', raw).translate(_BRACKETS, _NOT_BRACKETS)
    for _ in range(max_depth):
        if not shape:
            return True
        shorter = _INNERMOST.sub(b"", shape)
        if len(shorter) == len(shape):
            return False
        shape = shorter
    return not shape


def parse_json(raw: bytes | str, *, what: str = "The body") -> Any:
    """``raw`` parsed, or a 400 saying why: not UTF-8, not JSON, nested too deep, or a number too long to read.

    The depth is checked before ``json.loads`` recurses; ``RecursionError`` and Python's limit on the digits of an
    integer (a 5,000-digit number, CVE-2020-10735) are caught as well, so no JSON text reaches a 500.
    """
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if not json_depth_ok(data):
        raise BadRequest(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels of arrays and objects, or its "
                         "brackets do not match.")
    try:
        return json.loads(data or b"null")
    except json.JSONDecodeError as exc:
        raise BadRequest(f"{what} is not valid JSON (line {exc.lineno}).") from None
    except UnicodeDecodeError:
        raise BadRequest(f"{what} is not valid JSON (send UTF-8).") from None
    except (ValueError, RecursionError):
        raise BadRequest(f"{what} holds a number too long to read, or is nested too deep.") from None


async def read_json(request: Request, model: type[Model]) -> Model:
    """Parse and validate the JSON body of ``request`` as ``model``."""
    content_type = request.headers.get("content-type", "")
    if "json" not in content_type:
        raise BadRequest("Send the body as JSON with Content-Type: application/json.")
    data = parse_json(await request.body())
    if not isinstance(data, dict):
        raise BadRequest("The body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Invalid("Some fields are missing or wrong; see fields.", fields=validation_fields(exc)) from None


def json_error(error: RcpError) -> JSONResponse:
    headers = {"Retry-After": str(error.retry_after_s)} if error.retry_after_s is not None else None
    return JSONResponse(error.as_json(), status_code=error.status, headers=headers)


def is_api(scope: Scope) -> bool:
    return str(scope.get("path", "")).startswith(("/api/", "/ws/")) or scope.get("path") == "/api"


class BodyLimitMiddleware:
    """Refuse request bodies over a limit with 413, whether or not Content-Length tells the truth.

    The limit is the one the matched route declares in the route table (``ApiRoute(..., body_limit="upload")``,
    ``rcp.openapi``); every other request, matched or not, gets the small ``max_bytes``. The route is looked up
    only for methods that carry a body.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.limits = {"json": max_bytes, "upload": max_upload_bytes}

    def limit_for(self, scope: Scope) -> int:
        if scope.get("method") in SAFE_METHODS:
            return self.max_bytes
        app = scope.get("app")
        for route in getattr(app, "routes", ()):
            if isinstance(route, Route) and route.matches(scope)[0] == Match.FULL:
                return self.limits.get(getattr(route, "body_limit", "json"), self.max_bytes)
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await json_error(PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes."))(
                scope, receive, send
            )
            return
        seen = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes.")
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except PayloadTooLarge as exc:
            if not response_started:
                await json_error(exc)(scope, receive, send)


class CsrfMiddleware:
    """Unsafe requests made with the session cookie must prove they come from our pages.

    The token is the session's (synchronizer token pattern, OWASP): pages put it in forms as ``csrf_token``,
    scripts send it as ``X-CSRF-Token``. URL-encoded forms are read here (they are small and size-limited) and
    replayed to the endpoint; multipart uploads must use the header. Bearer-token calls carry no ambient
    credentials and are exempt.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        user = scope.get("user")
        expected = getattr(user, "csrf_token", "") if getattr(user, "via", "") == "session" else ""
        if not expected:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        submitted = headers.get(CSRF_HEADER.encode(), b"").decode("latin-1")
        replay: list[Message] = []
        if not submitted and headers.get(b"content-type", b"").startswith(b"application/x-www-form-urlencoded"):
            body = b""
            while True:
                message = await receive()
                replay.append(message)
                if message["type"] != "http.request":
                    break
                body += message.get("body", b"")
                if not message.get("more_body", False):
                    break
            values = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).get(CSRF_FIELD, [""])
            submitted = values[0]
        if not submitted or not hmac.compare_digest(submitted, expected):
            error = Forbidden("This form has expired or did not come from this site; reload the page and try again.")
            if is_api(scope):
                await json_error(error)(scope, receive, send)
            else:
                await Response(error.message, status_code=403, media_type="text/plain; charset=utf-8")(
                    scope, receive, send
                )
            return

        async def replaying_receive() -> Message:
            return replay.pop(0) if replay else await receive()

        await self.app(scope, replaying_receive, send)


class OutageMiddleware:
    """A request that meets PostgreSQL or Redis restarting gets the 503 ``unavailable`` error with ``Retry-After``
    (rcp.outages), wherever it meets it: in a route, or in the middleware that reads the session first.

    Outside the authentication middleware (which reads the session from the database) and inside the security
    headers (the 503 is ``no-store`` like every answer); a response already started cannot be replaced and the
    exception goes on.
    """

    def __init__(self, app: ASGIApp, *, render_page: Callable[[Request, RcpError], Awaitable[Response]]) -> None:
        self.app = app
        self.render_page = render_page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except Exception as exc:
            from rcp.outages import part_down, unavailable

            outage = unavailable(exc)
            if outage is None or started:
                raise
            # The part and the driver's exception class only: its message may quote a statement's parameters.
            logger.warning("%s unreachable on %s %s (%s): answered 503", part_down(exc), scope.get("method"),
                           route_template(scope), type(exc).__name__)
            request = Request(scope)
            response: Response = json_error(outage)
            if not is_api(scope):
                with contextlib.suppress(Exception):  # the page needs what the failed middleware did not set
                    response = await self.render_page(request, outage)
                response.headers["retry-after"] = str(outage.retry_after_s)
            await response(scope, receive, send)


def error_handlers(render_page: Callable[[Request, RcpError], Awaitable[Response]], *,
                   on_refused: Callable[[Any, RcpError, Request], Awaitable[None]] | None = None) -> dict[Any, Any]:
    """Exception handlers for ``Starlette(exception_handlers=...)``: JSON for the API, pages for people.

    ``on_refused(db, error, request)`` sees every error first (the access policy records its refusals there, once
    the request's own transaction has rolled back; see rcp.scheduling.access.record_refusal).
    """

    async def on_rcp_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RcpError)
        if on_refused is not None:
            try:
                await on_refused(getattr(request.app.state, "db", None), exc, request)
            except Exception:
                logger.exception("recording a refused access failed on %s %s", request.method,
                                 getattr(request.scope.get("route"), "path", "?"))
        if is_api(request.scope):
            return json_error(exc)
        return await render_page(request, exc)

    async def on_http_exception(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        mapped = {
            404: NotFound("Nothing here: check the address."),
            405: MethodNotAllowed(f"{request.method} is not allowed on this address."),
        }.get(exc.status_code) or BadRequest(str(exc.detail))
        return await on_rcp_error(request, mapped)

    async def on_crash(request: Request, exc: Exception) -> Response:
        reference = secrets.token_hex(4)
        # The route template, not the path: paths carry study UIDs and other identifiers (rcp.logs).
        logger.exception("unhandled error, reference %s, on %s %s", reference, request.method,
                         route_template(request.scope))
        error = RcpError(f"Something went wrong on our side (reference {reference}); the team has been told.")
        response = json_error(error) if is_api(request.scope) else await render_page(request, error)
        # Starlette raises the exception again once this answer is sent, and uvicorn then closes the connection:
        # say so (RFC 9112 §9.6), or a keep-alive client sends its next request on a socket that is being reset.
        response.headers["connection"] = "close"
        return response

    return {RcpError: on_rcp_error, HTTPException: on_http_exception, Exception: on_crash}


def json_out(value: BaseModel | list[Any] | dict[str, Any], *, status: int = 200) -> JSONResponse:
    """A pydantic model (or a list of them) as a JSON response."""
    if isinstance(value, BaseModel):
        data: Any = value.model_dump(mode="json")
    elif isinstance(value, list):
        data = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
    else:
        data = value
    return JSONResponse(data, status_code=status)


def current_user(request: Request) -> Any:
    """The authenticated caller, or 401."""
    from rcp.errors import NotAuthenticated

    user = request.scope.get("user")
    if user is None or not user.is_authenticated:
        raise NotAuthenticated()
    return user


async def revoke(request: Request, *, session_id: str = "", user_id: int | None = None,
                 meeting_id: int | None = None) -> None:
    """After a committed change that may end live room sockets (sign-out, a meeting's status or invitations): tell
    every node to re-check them now (``app.state.revoke``, rcp.room.revocation.announce; absent without rooms)."""
    announce = getattr(request.app.state, "revoke", None)
    if announce is not None:
        await announce(session_id=session_id, user_id=user_id, meeting_id=meeting_id)


def path_int(request: Request, name: str) -> int:
    value = request.path_params[name]
    return int(value)


class SecurityHeadersMiddleware:
    """Headers every response carries, so that nothing of a patient is left behind on a shared workstation.

    - ``Cache-Control: no-store`` on every response but static assets (RFC 9111 §5.2.2.5): pages, JSON and frames
      carry patient data, and a browser's disk cache outlives the session. The viewer keeps decoded frames in its
      own memory cache (web/static/js/frames.js), which ends with the tab.
    - ``Referrer-Policy: no-referrer``: no address of ours (meeting and case ids) leaks to another site.
    - ``Permissions-Policy``: camera and microphone for the room page only (``media_routes``, by route name).
    - ``Strict-Transport-Security`` when browsers reach us over TLS (``tls``; RFC 6797), so that a later visit
      never starts over plain http where a session cookie could be read.
    - no framing, no MIME sniffing, same-origin scripts only (CSP).
    """

    HEADERS: ClassVar[tuple[tuple[bytes, bytes], ...]] = (
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"content-security-policy", (
            b"default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; "
            b"connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; "
            b"base-uri 'self'; form-action 'self'")),
    )
    NO_MEDIA = b"camera=(), microphone=(), geolocation=(), display-capture=()"
    MEDIA = b"camera=(self), microphone=(self), geolocation=(), display-capture=()"
    HSTS = b"max-age=31536000; includeSubDomains"
    STATIC_PREFIX = "/static/"

    def __init__(self, app: ASGIApp, *, tls: bool = False, media_routes: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.tls = tls
        self.media_routes = media_routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith(self.STATIC_PREFIX)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # The router has matched by now: scope["route"] names the page being answered.
                media = getattr(scope.get("route"), "name", None) in self.media_routes
                headers = [(name, value) for name, value in message.get("headers", [])
                           if name.lower() not in {b"permissions-policy", b"cache-control"} or static]
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in self.HEADERS if name not in present]
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                headers.append((b"permissions-policy", self.MEDIA if media else self.NO_MEDIA))
                if self.tls:
                    headers.append((b"strict-transport-security", self.HSTS))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
