"""What load balancers and operators ask a node: is it alive, can it serve, what is it doing.

``GET /health``  liveness: the process answers (a load balancer or container engine restarts a node that does not).
                 It checks nothing else, on purpose: a database outage must not get every node restarted at once.
``GET /ready``   readiness: the database, the room bus (Redis) and the archive (PACS) answer, each within
                 :data:`CHECK_TIMEOUT_S`; otherwise 503 with ``Retry-After`` and the failing parts named, so that
                 the load balancer sends new sessions to a node that can serve them.
``GET /metrics`` the Prometheus exposition (rcp.metrics), for a scraper holding ``RCP_METRICS_TOKEN``.

None of the three shows patient data, and none needs a session (they are in the access policy's public routes).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlmodel import col, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from rcp import __version__
from rcp.clock import utcnow
from rcp.db import Database
from rcp.epr.models import Delivery, DeliveryStatus
from rcp.errors import NotAuthenticated, NotFound
from rcp.metrics import CONTENT_TYPE, Snapshot, exposition

__all__ = ["CHECK_TIMEOUT_S", "health", "metrics", "read_outbox", "ready", "receiver_label"]

logger = logging.getLogger(__name__)

#: A part that takes longer than this to answer is not ready: a load balancer's own check times out at ~5 s.
CHECK_TIMEOUT_S = 2.0
#: What a 503 from /ready asks the load balancer to wait before asking again.
READY_RETRY_AFTER_S = 5


async def health(request: Request) -> Response:
    """Liveness: the process and its event loop answer (and which node this is, for the operator)."""
    return JSONResponse({"status": "ok", "version": __version__, "node": request.app.state.settings.node_id})


async def _check(what: Awaitable[object]) -> str | None:
    """None when ``what`` completes in time, else a short reason (never the exception's text: it may hold URLs)."""
    try:
        await asyncio.wait_for(what, timeout=CHECK_TIMEOUT_S)
    except TimeoutError:
        return f"no answer within {CHECK_TIMEOUT_S:g} s"
    except Exception as exc:  # noqa: BLE001 - any failure of the part is "not ready"; the log has its type only
        logger.warning("readiness check failed: %s", type(exc).__name__)
        return f"unreachable ({type(exc).__name__})"
    return None


async def _database(db: Database) -> None:
    async with db.session() as s:
        await s.exec(sa.text("SELECT 1"))  # type: ignore[call-overload]


async def ready(request: Request) -> Response:
    """Readiness: 200 when the database, the bus and the archive answer; 503 naming the ones that do not."""
    state = request.app.state
    checks: dict[str, Awaitable[object]] = {"database": _database(state.db)}
    rooms = getattr(state, "rooms", None)
    if rooms is not None:
        checks["bus"] = rooms.bus.publish("rcp:ready", state.settings.node_id)
    imaging = getattr(state, "imaging", None)
    if imaging is not None:
        checks["archive"] = imaging.archive.search_studies(limit=1)
    started = time.perf_counter()
    names = list(checks)
    outcomes = await asyncio.gather(*(_check(checks[name]) for name in names))
    failing = {name: reason for name, reason in zip(names, outcomes, strict=True) if reason is not None}
    body: dict[str, object] = {
        "status": "ready" if not failing else "not ready",
        "checks": {name: failing.get(name, "ok") for name in names},
        "ms": round((time.perf_counter() - started) * 1000, 1),
    }
    if failing:
        return JSONResponse(body, status_code=503, headers={"Retry-After": str(READY_RETRY_AFTER_S)})
    return JSONResponse(body)


def receiver_label(key: str) -> str:
    """A receiver named without credentials or path (``mllp://eai:2575``): what the backlog is labelled by."""
    scheme, sep, rest = key.partition("://")
    if not sep:
        return key[:60]
    host = rest.split("/", 1)[0].rpartition("@")[2]
    return f"{scheme}://{host}"[:80]


async def read_outbox(db: Database, now: datetime | None = None) -> dict[str, tuple[int, float]]:
    """Deliveries not done (pending, being sent, needing attention) per receiver, and the oldest one's age (s)."""
    now = now or utcnow()
    statement = (
        select(Delivery.receiver_key, sa.func.count(), sa.func.min(col(Delivery.created_at)))
        .where(col(Delivery.status) != DeliveryStatus.delivered)
        .group_by(col(Delivery.receiver_key))
    )
    result: dict[str, tuple[int, float]] = {}
    async with db.session() as s:
        rows = (await s.exec(statement)).all()
    for key, count, oldest in rows:
        if oldest is not None and oldest.tzinfo is None:  # SQLite gives naive UTC datetimes back
            oldest = oldest.replace(tzinfo=UTC)
        age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
        label = receiver_label(str(key))
        known_count, known_age = result.get(label, (0, 0.0))
        result[label] = (known_count + int(count), max(known_age, age))
    return result


def _authorised(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


async def metrics(request: Request) -> Response:
    """The Prometheus exposition of this node; 404 while ``RCP_METRICS_TOKEN`` is unset, 401 without it."""
    state = request.app.state
    token: str = state.settings.metrics_token
    # A scraper reads JSON errors, not the HTML error page that a browser's address outside /api/ gets.
    if not token:
        off = NotFound("Metrics are off on this node: set RCP_METRICS_TOKEN and scrape with that bearer token.")
        return JSONResponse(off.as_json(), status_code=off.status)
    if not _authorised(request, token):
        refused = NotAuthenticated("This address needs the metrics token: send 'Authorization: Bearer "
                                   "<RCP_METRICS_TOKEN>'.")
        return JSONResponse(refused.as_json(), status_code=refused.status, headers={"WWW-Authenticate": "Bearer"})
    snapshot = Snapshot(outbox=await read_outbox(state.db))
    rooms = getattr(state, "rooms", None)
    if rooms is not None:
        live = rooms.live()
        snapshot.rooms = len(live)
        snapshot.participants = sum(len(room.connections) for room in live)
    media = getattr(state, "media", None)
    if media is not None:
        snapshot.forwarded_streams, snapshot.forwarded_bytes = media.throughput_now()
    imaging = getattr(state, "imaging", None)
    if imaging is not None:
        snapshot.cache_hits, snapshot.cache_misses = imaging.cache.hits, imaging.cache.misses
    return Response(exposition(snapshot), media_type=CONTENT_TYPE)
