"""Growing delays after failed password checks: a throttle that protects people, not attackers (issue 13, build 7).

A hard lock-out after N failures lets anyone lock a named physician out before a meeting. Here the first
:attr:`Backoff.free` failures of a key (an account, an address) cost nothing; from then on each failure doubles the
wait before the next check (1 s, 2 s, 4 s ... up to :attr:`Backoff.cap_s`), so a person who mistypes loses
seconds while a guesser gets a handful of tries an hour. A key quiet for :attr:`Backoff.forget_s` starts afresh.

An attempt is counted when it *starts* (:meth:`MemoryThrottle.begin`), before the password is even hashed, and
cleared when it succeeds: parallel guesses cannot all pass the gate before the first failure is recorded, which is
how a lock-out that counts failures afterwards loses counts. An attempt refused while waiting is not counted (it
checked nothing), so retrying early never lengthens the wait.

One throttle per app (``app.state.password_throttle``, :func:`password_throttle`), shared by everything that checks
a password (signature and amendment re-authentication today; sign-in can key it by account and by address). This
one lives in the node's memory; with several nodes each node throttles on its own (a Redis-backed implementation
of :class:`Throttle` is the next step for the sign-in issue).

    >>> throttle = MemoryThrottle(clock=lambda: 0.0)
    >>> for _ in range(3): throttle.begin_now("user:7")
    >>> throttle.begin_now("user:7")
    Traceback (most recent call last):
    rcp.auth.throttle.Throttled: Too many failed attempts: wait 1 s, then try again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from rcp.clock import Clock, SystemClock
from rcp.errors import TooManyRequests

__all__ = ["Backoff", "MemoryThrottle", "Throttle", "Throttled", "password_throttle"]


class Throttled(TooManyRequests):
    """Too many recent failures for this key: nothing was checked; ``retry_after_s`` says when to try again."""

    code = "too_many_attempts"

    def __init__(self, retry_after_s: float) -> None:
        self.retry_after_s = max(1, math.ceil(retry_after_s))
        super().__init__(f"Too many failed attempts: wait {self.retry_after_s} s, then try again.")

    def as_json(self) -> dict[str, object]:
        return {**super().as_json(), "retry_after_s": self.retry_after_s}


@dataclass(frozen=True)
class Backoff:
    #: Failures that cost nothing (typos).
    free: int = 3
    #: The wait after the first failure beyond the free ones; it doubles with each further failure.
    first_s: float = 1.0
    cap_s: float = 900.0
    #: A key without any attempt for this long starts afresh.
    forget_s: float = 3600.0

    def delay(self, failures: int) -> float:
        """The wait imposed after ``failures`` counted attempts without a success."""
        if failures < self.free:
            return 0.0
        return float(min(self.cap_s, self.first_s * 2 ** min(failures - self.free, 32)))


class Throttle(Protocol):
    async def begin(self, key: str) -> None:
        """Count an attempt for ``key``, or raise :class:`Throttled` (nothing counted) while it must wait."""

    async def succeeded(self, key: str) -> None:
        """The attempt succeeded: ``key`` starts afresh."""


@dataclass
class _Entry:
    failures: int = 0
    blocked_until: float = 0.0
    last: float = 0.0


class MemoryThrottle:
    """:class:`Throttle` in this process's memory; ``clock`` gives seconds (monotonic by default)."""

    def __init__(self, backoff: Backoff | None = None, *, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000) -> None:
        self.backoff = backoff or Backoff()
        self.clock = clock
        self.max_keys = max_keys
        self._entries: dict[str, _Entry] = {}

    def begin_now(self, key: str) -> None:
        """:meth:`begin` without awaiting: check and count in one step, so no other task slips in between."""
        now = self.clock()
        entry = self._entries.get(key)
        if entry is not None and now - entry.last > self.backoff.forget_s and now >= entry.blocked_until:
            entry = None
        if entry is None:
            self._sweep(now)
            entry = self._entries[key] = _Entry()
        if now < entry.blocked_until:
            raise Throttled(entry.blocked_until - now)
        entry.failures += 1
        entry.last = now
        entry.blocked_until = now + self.backoff.delay(entry.failures)

    async def begin(self, key: str) -> None:
        self.begin_now(key)

    async def succeeded(self, key: str) -> None:
        self._entries.pop(key, None)

    def _sweep(self, now: float) -> None:
        """Bounded memory: forget quiet keys when the table is full (a flood of keys cannot grow it forever)."""
        if len(self._entries) < self.max_keys:
            return
        self._entries = {k: e for k, e in self._entries.items()
                         if now - e.last <= self.backoff.forget_s or now < e.blocked_until}
        while len(self._entries) >= self.max_keys:
            oldest = min(self._entries, key=lambda k: self._entries[k].last)
            del self._entries[oldest]


def password_throttle(state: Any) -> Throttle:
    """The app's throttle for password checks (``app.state.password_throttle``), made on first use; it reads the
    time from the app's ``Settings.clock`` (tests move it instead of sleeping)."""
    found: Throttle | None = getattr(state, "password_throttle", None)
    if found is None:
        settings = getattr(state, "settings", None)
        clock: Clock = settings.clock if settings is not None else SystemClock()
        found = MemoryThrottle(clock=lambda: clock.now().timestamp())
        state.password_throttle = found
    return found
