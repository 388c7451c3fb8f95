"""Sockets follow the session: a room socket ends when its caller may no longer be in the room, on every node.

A WebSocket is authorised once, at its handshake, and may then run for hours; the session behind it may end in the
meantime (sign-out, idle or absolute expiry, account deactivated, bearer token revoked) and so may the right to be in
this room (invitation withdrawn, meeting closed or cancelled). Each node keeps a *seat* per local socket with a
``recheck`` (rcp.room.socket: the session read again from the database, never from the authentication cache, then
the access policy's ``enter room``) and asks it again:

- **at once, on a revocation message** on the room bus (channel ``<prefix>revoked``, in-process or Redis, so every
  node hears it): sign-out publishes the session's digest (rcp.auth.sessions.session_digest: the session id itself is a
  credential and never leaves the node), a change of a meeting's status or invitations publishes the meeting, an
  account change the user. The same message makes each node's authentication backend drop its cached copy of that
  session (``hooks``), so an HTTP request on another node is refused at once too, not after ``session_cache_s``;
- **every** ``every_s`` **seconds** for each seat, which catches what sends no message (a session that expires,
  an account deactivated in the database, a message lost while Redis restarted). The sweep goes one seat at a time,
  spread over the period, so its load on the database is a steady few reads per socket per period, never a burst.

A refused seat gets an ``error`` frame and its connection is closed with the error's code (4401 signed out, 4404
not invited any more, 4409 meeting closed); the endpoint then closes the WebSocket and the room detaches it, which
closes its media peer (rcp.room.live.LiveRoom.detach) and records the leave. A recheck that *fails* (the database
blinked) leaves the socket alone: the next sweep asks again. The delays are measured by ``bench/revocation.py``
(issue 13: sign-out to socket closed, ≤ 1 s on the same node, ≤ 5 s on another).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rcp.errors import RcpError
from rcp.room.bus import Bus

if TYPE_CHECKING:
    from rcp.room.connection import Connection

__all__ = ["Recheck", "Revocation", "Revocations", "Seat", "announce"]

logger = logging.getLogger(__name__)

#: Asked while a socket runs: None while the caller may stay, else the error that ends the socket.
Recheck = Callable[[], Awaitable[RcpError | None]]


@dataclass(frozen=True)
class Revocation:
    """What ended, as the bus carries it: a session (its digest), an account, or a meeting's roll."""

    session: str = ""
    user_id: int | None = None
    meeting_id: int | None = None

    def dumps(self) -> str:
        return json.dumps({"s": self.session, "u": self.user_id, "m": self.meeting_id})

    @classmethod
    def loads(cls, raw: str) -> Revocation:
        data = json.loads(raw)
        user, meeting = data.get("u"), data.get("m")
        return cls(session=str(data.get("s") or ""), user_id=int(user) if user is not None else None,
                   meeting_id=int(meeting) if meeting is not None else None)


@dataclass(eq=False)
class Seat:
    """One local socket: whose session, in which meeting, and how to ask again whether it may stay."""

    connection: Connection
    meeting_id: int
    user_id: int
    session: str
    recheck: Recheck

    def concerns(self, revocation: Revocation) -> bool:
        return bool(
            (revocation.session and revocation.session == self.session)
            or revocation.user_id == self.user_id
            or revocation.meeting_id == self.meeting_id
        )


class Revocations:
    """This node's seats, the revocation channel it listens to, and its periodic sweep."""

    def __init__(self, bus: Bus, *, channel: str = "rcp:room:revoked", every_s: float = 5.0) -> None:
        self.bus = bus
        self.channel = channel
        self.every_s = every_s
        self.seats: set[Seat] = set()
        #: Told every revocation heard (this node's own included): the authentication backend drops its cache.
        self.hooks: list[Callable[[Revocation], None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._checks: set[asyncio.Task[None]] = set()
        self._subscribed = asyncio.Event()

    async def open(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen(), name="rcp-room-revocations"),
            asyncio.create_task(self._sweep(), name="rcp-room-recheck"),
        ]
        await self._subscribed.wait()

    async def close(self) -> None:
        for task in (*self._tasks, *self._checks):
            task.cancel()
        await asyncio.gather(*self._tasks, *self._checks, return_exceptions=True)
        self._tasks = []

    @contextlib.contextmanager
    def seated(self, seat: Seat) -> Iterator[Seat]:
        """Watch ``seat`` while its socket runs."""
        self.seats.add(seat)
        try:
            yield seat
        finally:
            self.seats.discard(seat)

    async def announce(self, revocation: Revocation) -> None:
        """Tell every node (this one included) that something ended; call it after the change is committed."""
        await self.bus.publish(self.channel, revocation.dumps())

    async def _listen(self) -> None:
        async with self.bus.subscribe(self.channel) as subscription:
            self._subscribed.set()
            async for raw in subscription:
                try:
                    revocation = Revocation.loads(raw)
                except (ValueError, TypeError, AttributeError):
                    logger.warning("room revocations: unreadable message ignored")
                    continue
                for hook in self.hooks:
                    try:
                        hook(revocation)
                    except Exception:
                        logger.warning("room revocations: a hook failed", exc_info=True)
                # The check may wait on the database: never hold up the next message for it.
                seats = [seat for seat in self.seats if seat.concerns(revocation)]
                if seats:
                    task = asyncio.create_task(self.check(seats), name="rcp-room-revoke")
                    self._checks.add(task)
                    task.add_done_callback(self._checks.discard)

    async def _sweep(self) -> None:
        """Each seat once per ``every_s``, spread over the period: a steady trickle of small reads, never a burst
        that would hold up the room's messages (bench/sync.py's p99)."""
        while True:
            seats = list(self.seats)
            if not seats:
                await asyncio.sleep(self.every_s)
                continue
            pause = self.every_s / len(seats)
            for seat in seats:
                await asyncio.sleep(pause)
                if seat in self.seats:
                    await self.check([seat])

    async def check(self, seats: list[Seat]) -> None:
        """Ask each seat's recheck; close the connection of those refused."""
        from rcp.room.connection import error_frame

        for seat in seats:
            if seat.connection.closed.is_set():
                continue
            try:
                refused = await seat.recheck()
            except Exception:  # the database blinked: the next sweep asks again
                logger.warning("room %s: could not re-check %r", seat.meeting_id, seat.connection, exc_info=True)
                continue
            if refused is not None and not seat.connection.closed.is_set():
                logger.info("room %s: %r ended (%s)", seat.meeting_id, seat.connection, refused.code)
                seat.connection.farewell = error_frame(refused)
                seat.connection.close(refused.ws_code, refused.code)


async def announce(state: Any, *, session_id: str = "", user_id: int | None = None,
                   meeting_id: int | None = None) -> None:
    """For routes (``request.app.state``): publish a revocation when the app has live rooms; never fails the
    request (the periodic re-check catches what a lost message misses)."""
    rooms = getattr(state, "rooms", None)
    revocations = getattr(rooms, "revocations", None)
    if not isinstance(revocations, Revocations):
        return
    from rcp.auth.sessions import session_digest

    revocation = Revocation(session=session_digest(session_id) if session_id else "", user_id=user_id,
                            meeting_id=meeting_id)
    try:
        await revocations.announce(revocation)
    except Exception:
        logger.warning("room revocations: could not publish; sockets are re-checked within %.0f s",
                       revocations.every_s, exc_info=True)
