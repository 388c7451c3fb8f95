"""What a backing service's outage looks like to the service, and what the caller is told meanwhile.

PostgreSQL restarting, Redis restarting or a network blip between the node and either of them surfaces as a driver
exception deep in a request or a room command: ``sqlalchemy.exc.OperationalError`` ("server closed the connection
unexpectedly", "connection refused"), ``sqlalchemy.exc.InterfaceError`` on a connection already closed,
``redis.exceptions.ConnectionError`` / ``TimeoutError``, or a bare ``OSError`` from a socket. None of them is the
caller's fault nor a bug of ours, and each passes once the part is back: the database pool checks a connection
before lending it (``pool_pre_ping``, rcp.db), redis-py reconnects and resubscribes (rcp.room.bus). So the answer
is the service's 503 ``unavailable`` JSON error with ``Retry-After`` (RFC 9110 §15.6.4, §10.2.3) — a page or a
client retries — not a 500 with a reference number, and the log says which part is down without a stack trace.

    try:
        ...
    except Exception as exc:
        if (error := unavailable(exc)) is None:
            raise
        ...  # answer ``error``
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from rcp.errors import Unavailable

__all__ = ["RETRY_AFTER_S", "once_more", "outage_errors", "part_down", "unavailable"]

T = TypeVar("T")

#: What callers are told to wait before trying again: a restart of PostgreSQL or Redis takes a few seconds.
RETRY_AFTER_S = 2


def outage_errors() -> tuple[type[Exception], ...]:
    """The exception classes an outage may raise, for an ``except`` clause; :func:`unavailable` then tells an
    outage from the rest of them (an integrity error is a ``DBAPIError`` too)."""
    import sqlalchemy.exc as sa_exc
    from redis import exceptions as redis_exc

    return (sa_exc.DBAPIError, sa_exc.TimeoutError, redis_exc.ConnectionError, redis_exc.TimeoutError,
            ConnectionError, TimeoutError)


def part_down(exc: BaseException) -> str | None:
    """``"database"`` or ``"room bus"`` when ``exc`` (or what caused it) is that part being unreachable."""
    import sqlalchemy.exc as sa_exc

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sa_exc.DBAPIError) and (
            current.connection_invalidated
            or isinstance(current, sa_exc.OperationalError | sa_exc.InterfaceError)
        ):
            return "database"
        if isinstance(current, sa_exc.TimeoutError):  # the pool waited in vain for a connection
            return "database"
        if _is_redis_outage(current):
            return "room bus"
        if isinstance(current, ConnectionError | TimeoutError):
            return "a backing service"
        current = current.__cause__ or current.__context__
    return None


def unavailable(exc: BaseException) -> Unavailable | None:
    """The 503 to answer for ``exc`` when it is an outage (see the module docstring), else None."""
    part = part_down(exc)
    if part is None:
        return None
    return Unavailable(
        f"The service lost its {part} for a moment and is reconnecting: try again in a few seconds.",
        retry_after_s=RETRY_AFTER_S,
    )


def _is_redis_outage(exc: BaseException) -> bool:
    try:
        from redis import exceptions as redis_exc
    except ImportError:  # pragma: no cover - redis is a dependency; only RCP_REDIS_URL makes it used
        return False
    return isinstance(exc, redis_exc.ConnectionError | redis_exc.TimeoutError)


async def once_more(call: Callable[[], Awaitable[T]]) -> T:
    """``await call()``, and once more if it fails: after Redis restarted, the first command on each pooled
    connection meets the connection the old server left dead (redis-py then drops it; with uvloop the failure is
    even a ``RuntimeError`` on a closed transport, which its own retry does not catch), and the second goes
    through a fresh one. A second failure is the caller's to handle: the part really is down."""
    try:
        return await call()
    except Exception:  # noqa: BLE001 - whatever the first attempt met, the second one says whether it lasts
        return await call()
