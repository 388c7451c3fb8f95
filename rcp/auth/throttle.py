"""Growing delays after failed password checks: a throttle that protects people, not attackers (issue 13, build 7).

A hard lock-out after N failures lets anyone lock a named physician out before a meeting. Here the first
:attr:`Backoff.free` failures of a key (an account, an address) cost nothing; from then on each failure doubles the
wait before the next check (1 s, 2 s, 4 s ... up to :attr:`Backoff.cap_s`), so a person who mistypes loses
seconds while a guesser gets a handful of tries an hour. A key quiet for :attr:`Backoff.forget_s` starts afresh.

An attempt is counted when it *starts* (:meth:`MemoryThrottle.begin`), before the password is even hashed, and
cleared when it succeeds: parallel guesses cannot all pass the gate before the first failure is recorded, which is
how a lock-out that counts failures afterwards loses counts. An attempt refused while waiting is not counted (it
checked nothing), so retrying early never lengthens the wait.

One throttle per app (``app.state.password_throttle``, opened by the lifespan with :func:`open_password_throttle`),
shared by everything that checks a password (signature and amendment re-authentication; sign-in keys it by account,
by address and by the pair: rcp.auth.sessions). With ``RCP_REDIS_URL`` set (several nodes), the counts live in Redis
(:class:`RedisThrottle`: one Lua script checks and counts atomically, so guesses spread over nodes share one
count); otherwise in the node's memory (:class:`MemoryThrottle`).

    >>> throttle = MemoryThrottle(clock=lambda: 0.0)
    >>> for _ in range(3): throttle.begin_now("user:7")
    >>> throttle.begin_now("user:7")
    Traceback (most recent call last):
    rcp.auth.throttle.Throttled: Too many failed attempts: wait 1 s, then try again.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol, Self
from urllib.parse import urlsplit

from rcp.clock import Clock, SystemClock
from rcp.errors import TooManyRequests, Unavailable
from rcp.outages import once_more

__all__ = [
    "Backoff",
    "MemoryThrottle",
    "RedisThrottle",
    "Throttle",
    "Throttled",
    "open_password_throttle",
    "password_throttle",
]

logger = logging.getLogger(__name__)


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
    async def begin(self, key: str, backoff: Backoff | None = None) -> None:
        """Count an attempt for ``key``, or raise :class:`Throttled` (nothing counted) while it must wait.
        ``backoff`` replaces the throttle's own for this key (sign-in gives addresses more free failures)."""

    async def succeeded(self, key: str) -> None:
        """The attempt succeeded: ``key`` starts afresh."""

    async def refund(self, key: str) -> None:
        """Take back one counted attempt of ``key`` (it succeeded, or another key refused it) without clearing the
        others: an address shared by a guesser and their own account keeps the guesses' count."""


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

    def begin_now(self, key: str, backoff: Backoff | None = None) -> None:
        """:meth:`begin` without awaiting: check and count in one step, so no other task slips in between."""
        backoff = backoff or self.backoff
        now = self.clock()
        entry = self._entries.get(key)
        if entry is not None and now - entry.last > backoff.forget_s and now >= entry.blocked_until:
            entry = None
        if entry is None:
            self._sweep(now)
            entry = self._entries[key] = _Entry()
        if now < entry.blocked_until:
            raise Throttled(entry.blocked_until - now)
        entry.failures += 1
        entry.last = now
        delay = backoff.delay(entry.failures)
        # No wait, no deadline: a clock stepped back (NTP; a test's clock reset) must not turn "now" into a wait.
        entry.blocked_until = now + delay if delay > 0 else 0.0

    async def begin(self, key: str, backoff: Backoff | None = None) -> None:
        self.begin_now(key, backoff)

    async def succeeded(self, key: str) -> None:
        self._entries.pop(key, None)

    async def refund(self, key: str) -> None:
        entry = self._entries.get(key)
        if entry is not None and entry.failures > 0:
            entry.failures -= 1  # a wait already imposed stays: it is short, and it was owed when imposed

    def _sweep(self, now: float) -> None:
        """Bounded memory: forget quiet keys when the table is full (a flood of keys cannot grow it forever)."""
        if len(self._entries) < self.max_keys:
            return
        self._entries = {k: e for k, e in self._entries.items()
                         if now - e.last <= self.backoff.forget_s or now < e.blocked_until}
        while len(self._entries) >= self.max_keys:
            oldest = min(self._entries, key=lambda k: self._entries[k].last)
            del self._entries[oldest]


#: KEYS[1] the key; ARGV now, free, first_s, cap_s, forget_s. Returns "-1" (counted) or the seconds to wait.
_BEGIN = """
local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
local blocked = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
local now = tonumber(ARGV[1])
if now < blocked then return tostring(blocked - now) end
n = n + 1
local free = tonumber(ARGV[2])
local wait = 0
if n >= free then wait = math.min(tonumber(ARGV[4]), tonumber(ARGV[3]) * 2 ^ math.min(n - free, 32)) end
local blocked_until = 0
if wait > 0 then blocked_until = now + wait end
redis.call('HSET', KEYS[1], 'n', n, 'until', blocked_until)
redis.call('PEXPIRE', KEYS[1], math.ceil((wait + tonumber(ARGV[5])) * 1000))
return '-1'
"""

#: KEYS[1] the key: one counted attempt fewer (never below zero); the wait already imposed stays.
_REFUND = """
local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
if n > 0 then redis.call('HSET', KEYS[1], 'n', n - 1) end
return n
"""


class RedisThrottle:
    """:class:`Throttle` shared by every node through Redis (``RCP_REDIS_URL``): a key is a hash (failures, blocked
    until) that expires after the wait plus :attr:`Backoff.forget_s`. The time comes from the node's ``clock``
    (nodes keep their clocks in step, as they must for sessions and links anyway).

    Owned by the app's lifespan::

        async with RedisThrottle("redis://127.0.0.1:6379/0") as throttle: ...
    """

    def __init__(self, url: str, backoff: Backoff | None = None, *, clock: Callable[[], float] = time.time,
                 prefix: str = "rcp:throttle:") -> None:
        self.url = url
        self.backoff = backoff or Backoff()
        self.clock = clock
        self.prefix = prefix
        self._client: Any = None
        self._script: Any = None
        self._refund: Any = None

    async def __aenter__(self) -> Self:
        import redis.asyncio as redis

        self._client = redis.Redis.from_url(self.url, decode_responses=True)
        self._script = self._client.register_script(_BEGIN)
        self._refund = self._client.register_script(_REFUND)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Safe to call twice."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def begin(self, key: str, backoff: Backoff | None = None) -> None:
        b = backoff or self.backoff
        try:
            answer = await once_more(lambda: self._script(keys=[self.prefix + key],
                                                          args=[repr(self.clock()), b.free, repr(b.first_s),
                                                                repr(b.cap_s), repr(b.forget_s)]))
        except Exception as exc:  # noqa: BLE001 - any Redis failure: refuse rather than check unthrottled
            logger.warning("password throttle: Redis unreachable (%s)", type(exc).__name__)
            raise Unavailable("Password checks are paused for a moment (the throttle's store is unreachable): "
                              "try again shortly.") from None
        wait = float(answer)
        if wait >= 0:
            raise Throttled(wait)

    async def succeeded(self, key: str) -> None:
        try:
            await self._client.delete(self.prefix + key)
        except Exception as exc:  # noqa: BLE001 - the check succeeded; a stale count only costs a short wait
            logger.warning("password throttle: could not clear a count (%s)", type(exc).__name__)

    async def refund(self, key: str) -> None:
        try:
            await self._refund(keys=[self.prefix + key])
        except Exception as exc:  # noqa: BLE001 - as for succeeded: a stale count only costs a short wait
            logger.warning("password throttle: could not refund an attempt (%s)", type(exc).__name__)


@asynccontextmanager
async def open_password_throttle(settings: Any) -> AsyncIterator[Throttle]:
    """For the app's lifespan: Redis when ``settings.redis_url`` names one (several nodes), else memory."""
    clock: Clock = settings.clock
    scheme = urlsplit(settings.redis_url).scheme if settings.redis_url else "memory"
    if scheme in {"redis", "rediss", "unix"}:
        async with RedisThrottle(settings.redis_url, clock=lambda: clock.now().timestamp()) as throttle:
            yield throttle
    else:
        yield MemoryThrottle(clock=lambda: clock.now().timestamp())


def password_throttle(state: Any) -> Throttle:
    """The app's throttle for password checks (``app.state.password_throttle``, set by the lifespan); an app
    without one (routes mounted on their own in tests) gets a memory one on first use. Both read the time from the
    app's ``Settings.clock`` (tests move it instead of sleeping)."""
    found: Throttle | None = getattr(state, "password_throttle", None)
    if found is None:
        settings = getattr(state, "settings", None)
        clock: Clock = settings.clock if settings is not None else SystemClock()
        found = MemoryThrottle(clock=lambda: clock.now().timestamp())
        state.password_throttle = found
    return found
