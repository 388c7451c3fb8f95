"""The one way to read the time: timezone-aware UTC, so SQLite and PostgreSQL store the same instants.

What decides an expiry (a join link, a session's idle and absolute timeouts, an account lock-out) reads the time
from ``Settings.clock``, a :class:`Clock`: the system's in service, a :class:`SettableClock` in the tests, which
move time forward instead of sleeping.

>>> from datetime import timedelta
>>> clock = SettableClock()
>>> before = clock.now()
>>> clock.advance(timedelta(hours=2))
>>> clock.now() - before >= timedelta(hours=2)
True
>>> clock.reset(); clock.now() - before < timedelta(hours=1)
True
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SettableClock", "SystemClock", "as_utc", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes for what we stored as UTC: make them aware again."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@runtime_checkable
class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        ...


class SystemClock:
    """The machine's clock."""

    def now(self) -> datetime:
        return utcnow()

    def __repr__(self) -> str:
        return "SystemClock()"


class SettableClock:
    """The machine's clock shifted by an offset that only moves when told to (``advance``, ``reset``).

    It keeps running between moves, so rows stamped by the system clock and expiries read from this one stay
    ordered. Thread-safe: the app served in a thread reads it while the test moves it.
    """

    def __init__(self) -> None:
        self._offset = timedelta(0)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return utcnow() + self._offset

    def advance(self, by: timedelta | float) -> None:
        """Move time forward by ``by`` (a timedelta or seconds); moving backwards is refused."""
        step = by if isinstance(by, timedelta) else timedelta(seconds=by)
        if step < timedelta(0):
            raise ValueError(f"a clock only moves forward (got {step}); call reset() to return to real time")
        with self._lock:
            self._offset += step

    def reset(self) -> None:
        """Back to the machine's time."""
        with self._lock:
            self._offset = timedelta(0)

    def __repr__(self) -> str:
        return f"SettableClock(offset={self._offset})"
