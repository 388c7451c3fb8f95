"""What the service writes to its log, and what it never writes: health data, identifiers, secrets.

Addresses carry patient data (study and SOP Instance UIDs in frame paths, names and INS in search queries, join
tokens), so the access log records the *route template* that answered — ``GET /api/imaging/frames/{study_uid}/…
200`` — never the path or the query (issue 13, finding 11). uvicorn's own access log is therefore off
(``access_log=False`` in ``rcp serve``) and ``AccessLogMiddleware`` writes ``rcp.access`` instead.

Third-party libraries log what passes through them when asked for detail: aiosqlite's DEBUG lines hold SQL
parameters (names, birth dates), httpx's INFO lines the PACS URLs (study UIDs), the websockets handshake trace
(uvicorn.error at DEBUG) the request headers with the session cookie. ``configure_logging`` holds them at a level
where they say nothing of that, whatever level the service itself runs at.

    rcp serve --log-level debug   # the service's own DEBUG lines, still nothing of a patient

With ``RCP_LOG_FORMAT=json`` each event is one JSON object per line (time, level, logger, message, the request id
and, for the access log, method, route, status and duration as fields) for a log collector (Loki, Elastic). The
request id comes from a trusted proxy's ``X-Request-ID`` when it is well formed (so one id follows a request through
nginx and the service), else is made here, and is sent back in ``X-Request-ID``: an operator finds a user's failed
request from the id the error page shows, without any patient data in the log.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rcp.clients import client_address

__all__ = ["QUIET_LOGGERS", "REQUEST_ID", "AccessLogMiddleware", "JsonFormatter", "configure_logging",
           "route_template"]

access_logger = logging.getLogger("rcp.access")

#: Libraries whose detailed lines carry data (parameters, URLs, headers): never below these levels.
QUIET_LOGGERS: dict[str, int] = {
    "aiosqlite": logging.INFO,  # DEBUG: "executing <partial ... 'Dupré', 'Noël' ...>"
    "sqlalchemy.engine": logging.WARNING,  # INFO: statements with their parameters
    "sqlalchemy.pool": logging.WARNING,
    "httpx": logging.WARNING,  # INFO: "HTTP Request: GET https://pacs/.../studies/<uid>/..."
    "httpcore": logging.INFO,  # DEBUG: request and response traces
    "websockets": logging.INFO,  # DEBUG: handshake headers, Cookie included
    "multipart": logging.INFO,  # DEBUG: form fields as they are parsed
    "python_multipart": logging.INFO,
}


#: The id of the request being served (``-`` outside one): every log line written while serving it carries it.
REQUEST_ID: ContextVar[str] = ContextVar("rcp_request_id", default="-")
#: An id a proxy may hand us: short, and nothing a log reader could mistake for markup or data.
_GIVEN_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")


def request_id_for(scope: Scope) -> str:
    """The proxy's ``X-Request-ID`` when well formed, else a fresh random id (16 hex digits)."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            given = bytes(value).decode("latin-1")
            if _GIVEN_ID.fullmatch(given):
                return given
            break
    return secrets.token_hex(8)


def route_template(scope: Scope) -> str:
    """The path template of the route that answered (``/api/cases/{case_id:int}``), never the path itself."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return "(no route)"
    return f"{path}/{{path}}" if isinstance(route, Mount) else path or "/"


class AccessLogMiddleware:
    """One ``rcp.access`` line per HTTP exchange or WebSocket: client, method, route template, status, duration.

    Outermost of the service's middleware, so that it sees refusals (401, 403, 413) as well.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in {"http", "websocket"}:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: int | None = None
        request_id = request_id_for(scope)
        token = REQUEST_ID.set(request_id)

        async def observed(message: Message) -> None:
            nonlocal status
            kind = message["type"]
            if kind == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            elif kind == "websocket.accept":
                status = 101
            elif kind in {"websocket.close", "websocket.http.response.start"} and status is None:
                status = int(message.get("status", 403))
            await send(message)

        try:
            await self.app(scope, receive, observed)
        except BaseException:
            status = status or 500
            raise
        finally:
            method = "WS" if scope["type"] == "websocket" else scope.get("method", "")
            client, route = client_address(scope) or "-", route_template(scope)
            ms = round((time.perf_counter() - started) * 1000, 1)
            access_logger.info('%s - "%s %s" %s %.0f ms', client, method, route,
                               status if status is not None else "-", ms,
                               extra={"http": {"client": client, "method": method, "route": route,
                                               "status": status, "ms": ms}})
            REQUEST_ID.reset(token)


class _UvicornLines(logging.Filter):
    """Drops uvicorn's own WebSocket lines (``"WebSocket /ws/..." [accepted]``): they carry the path and query."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and '"WebSocket %s"' in record.msg)


class _AtLeast(logging.Filter):
    """Keeps records at ``level`` or above (for loggers whose level uvicorn sets itself at start)."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level


class _RequestIdFilter(logging.Filter):
    """Stamps each record with the id of the request being served (``%(request_id)s``, the JSON ``request_id``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, ``request_id``, the
    access log's ``http`` fields, and ``exc`` (the traceback) for an exception.

    The message is the same text the readable format writes, so what is kept out of one is kept out of the other.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", REQUEST_ID.get()),
        }
        http = getattr(record, "http", None)
        if isinstance(http, dict):
            entry["http"] = http
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class _ServiceHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler configure_logging sets (recognised when it is called again)."""


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


def configure_logging(level: int | str = logging.INFO, *, json_lines: bool = False, **basic: Any) -> None:
    """The service's logging: ``level`` for the root logger, the data-carrying libraries held quiet, each line
    with its request id; ``json_lines`` for one JSON object per line (``RCP_LOG_FORMAT=json``). Called again, it
    replaces the handler it set (the CLI configures once before reading the settings, once after). Handlers that
    someone else put on the root logger first (a test runner's) are left alone, and then none is added."""
    root = logging.getLogger()
    for ours in [h for h in root.handlers if isinstance(h, _ServiceHandler)]:
        root.removeHandler(ours)
    if not root.handlers:
        handler = _ServiceHandler(basic.pop("stream", None))
        handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
        handler.addFilter(_RequestIdFilter())
        root.addHandler(handler)
    root.setLevel(level)
    for name, floor in QUIET_LOGGERS.items():
        logger = logging.getLogger(name)
        logger.setLevel(max(floor, logger.getEffectiveLevel()))
    uvicorn_error = logging.getLogger("uvicorn.error")
    # uvicorn sets this logger's level from --log-level; below INFO it relays the websockets handshake trace.
    for log_filter in (_UvicornLines(), _AtLeast(logging.INFO)):
        uvicorn_error.addFilter(log_filter)
