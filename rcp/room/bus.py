"""The room event bus, chosen by URL as broadcaster does: in-process (``""``, ``memory://``) or Redis pub/sub.

The bus only *carries* messages between the server nodes that serve the same meeting; it does not order or
number them. Sequenced events are numbered by the event log (rcp.room.log) before they are published, and every
node applies them in ``seq`` order, filling any gap from the log — so Redis delivering two nodes' publications in
either order cannot make two participants see different histories. Pointer samples and presence beats ride
the same channel unnumbered: losing one is harmless.

Each subscription has a bounded queue: a subscriber that falls behind loses messages (logged) rather than
growing the server's memory; for sequenced events the gap is then filled from the log.

Redis restarting (issue 18): the reader notices the broken connection, retries every half second, and redis-py
subscribes again to every channel on the new connection. What was published meanwhile is lost, so the bus says
it was away: ``connected`` is False from the failure until the resubscription, and ``epoch`` counts the
reconnections. Each live room watches both (rcp.room.live): while the bus is away it does not take the silence of
other nodes for their participants leaving, and after it comes back it reads the events it missed from the log.
A publication that fails meanwhile is not the caller's failure either: the event is already in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol
from urllib.parse import urlsplit

from rcp.outages import once_more

__all__ = ["Bus", "MemoryBus", "RedisBus", "Subscription", "bus_from_url"]

logger = logging.getLogger(__name__)

SUBSCRIPTION_QUEUE = 10_000
#: Seconds between Redis PINGs on an idle connection (redis-py ``health_check_interval``).
HEALTH_CHECK_S = 2
#: Seconds between attempts to reach Redis again.
RETRY_S = 0.5


class Subscription:
    """Messages of one channel, in the order the bus delivered them; iteration ends when the bus closes."""

    def __init__(self, channel: str, maxsize: int = SUBSCRIPTION_QUEUE) -> None:
        self.channel = channel
        self._queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize)
        self.dropped = 0

    def put(self, message: str | None) -> None:
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped in (1, 100, 10_000):
                logger.warning(
                    "bus channel %s: subscriber behind, %d message(s) dropped", self.channel, self.dropped
                )

    def __aiter__(self) -> AsyncIterator[str]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[str]:
        while True:
            message = await self._queue.get()
            if message is None:
                return
            yield message


class Bus(Protocol):
    #: False while the bus cannot carry messages (Redis unreachable); always True in one process.
    connected: bool
    #: How many times the bus came back after losing its connection: what was published meanwhile was lost.
    epoch: int

    async def connect(self) -> None: ...

    async def disconnect(self) -> None: ...

    async def publish(self, channel: str, message: str) -> None: ...

    def subscribe(self, channel: str) -> contextlib.AbstractAsyncContextManager[Subscription]: ...


class _Fanout:
    """Local delivery to the subscriptions of this process, shared by both buses."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[Subscription]] = {}
        self.connected = True
        self.epoch = 0

    def _deliver(self, channel: str, message: str) -> None:
        for subscription in tuple(self._subscribers.get(channel, ())):
            subscription.put(message)

    def _add(self, subscription: Subscription) -> bool:
        """Register; True when it is the channel's first local subscriber."""
        group = self._subscribers.setdefault(subscription.channel, set())
        group.add(subscription)
        return len(group) == 1

    def _remove(self, subscription: Subscription) -> bool:
        """Unregister; True when the channel has no local subscriber left."""
        group = self._subscribers.get(subscription.channel, set())
        group.discard(subscription)
        if not group:
            self._subscribers.pop(subscription.channel, None)
            return True
        return False

    def _end_all(self) -> None:
        for group in self._subscribers.values():
            for subscription in group:
                subscription.put(None)
        self._subscribers.clear()


class MemoryBus(_Fanout):
    """One process: publish delivers synchronously to every subscription, so the order is the publish order."""

    async def connect(self) -> None:
        return None

    async def disconnect(self) -> None:
        self._end_all()

    async def publish(self, channel: str, message: str) -> None:
        self._deliver(channel, message)

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscription]:
        subscription = Subscription(channel)
        self._add(subscription)
        try:
            yield subscription
        finally:
            self._remove(subscription)


class RedisBus(_Fanout):
    """Redis pub/sub: one subscriber connection per node (one reader task), one client for publishing."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self._client: Any = None
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def connect(self) -> None:
        import redis.asyncio as redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # A health check every few seconds finds a link that died silently (no reset: a partition). While Redis
        # restarts, a publication fails fast — one immediate retry on a fresh connection (a pooled one may be
        # dead), no backoff: it is sent under the room's lock — and the reader tries again every RETRY_S.
        self._client = redis.Redis.from_url(
            self.url,
            decode_responses=True,
            health_check_interval=HEALTH_CHECK_S,
            socket_connect_timeout=2,
            retry=Retry(NoBackoff(), 1),
        )
        await self._client.ping()
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        # A private channel opens the subscriber connection so the reader has something to read from the start.
        await self._pubsub.subscribe(f"rcp:bus:{id(self)}")
        self._reader = asyncio.create_task(self._read(), name="rcp-room-bus-reader")

    async def disconnect(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
            self._pubsub = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self._end_all()

    async def _read(self) -> None:
        failures = 0
        while True:
            try:
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever broke the read, the next one reconnects
                # Redis restarted or the link blipped: redis-py reconnects and resubscribes on the next read.
                if self.connected:
                    logger.warning("room bus: Redis connection lost (%s); reconnecting", type(exc).__name__)
                self.connected = False
                failures += 1
                await asyncio.sleep(RETRY_S)
                continue
            if not self.connected:
                # The read went through a new connection, subscribed again to every channel (PubSub.on_connect).
                self.connected = True
                self.epoch += 1
                logger.warning("room bus: Redis reachable again after %d failed attempt(s)", failures)
                failures = 0
            if message is not None and message.get("type") == "message":
                self._deliver(str(message["channel"]), str(message["data"]))

    async def publish(self, channel: str, message: str) -> None:
        await once_more(lambda: self._client.publish(channel, message))

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscription]:
        subscription = Subscription(channel)
        async with self._lock:
            if self._add(subscription):
                await self._pubsub.subscribe(channel)
        try:
            yield subscription
        finally:
            async with self._lock:
                if self._remove(subscription) and self._pubsub is not None:
                    with contextlib.suppress(Exception):
                        await self._pubsub.unsubscribe(channel)


def bus_from_url(url: str) -> Bus:
    """``""`` / ``memory://`` → in-process; ``redis://`` / ``rediss://`` / ``unix://`` → Redis pub/sub."""
    scheme = urlsplit(url).scheme if url else "memory"
    if scheme == "memory":
        return MemoryBus()
    if scheme in {"redis", "rediss", "unix"}:
        return RedisBus(url)
    raise ValueError(
        f"RCP_REDIS_URL must be empty, memory:// or redis://host:port/db (got scheme {scheme!r})"
    )
