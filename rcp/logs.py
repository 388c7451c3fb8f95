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
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rcp.clients import client_address

__all__ = ["QUIET_LOGGERS", "AccessLogMiddleware", "configure_logging", "route_template"]

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

        async def observed(message: Message) -> None:
            nonlocal status
            kind = message["type"]
            if kind == "http.response.start":
                status = int(message["status"])
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
            access_logger.info('%s - "%s %s" %s %.0f ms', client_address(scope) or "-", method,
                               route_template(scope), status if status is not None else "-",
                               (time.perf_counter() - started) * 1000)


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


def configure_logging(level: int | str = logging.INFO, **basic: Any) -> None:
    """The service's logging: ``level`` for the root logger, the data-carrying libraries held quiet."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", **basic)
    logging.getLogger().setLevel(level)
    for name, floor in QUIET_LOGGERS.items():
        logger = logging.getLogger(name)
        logger.setLevel(max(floor, logger.getEffectiveLevel()))
    uvicorn_error = logging.getLogger("uvicorn.error")
    # uvicorn sets this logger's level from --log-level; below INFO it relays the websockets handshake trace.
    for log_filter in (_UvicornLines(), _AtLeast(logging.INFO)):
        uvicorn_error.addFilter(log_filter)
