"""A live room on one server node: the authoritative state, its local connections, and the bus to other nodes.

``LiveRoom.execute`` is the one door for changes: under the room's lock it decides against the current state,
appends the events to the log with the next sequence numbers (the database refuses a number another node took:
then it catches up and decides again), applies them, fans them out to the local connections and publishes them
on the bus. Events from other nodes arrive through the bus and are applied strictly in ``seq`` order; a gap (two
nodes' publications crossing in Redis) is filled from the log, which already holds every published event. So
every participant on every node sees the same events in the same order.

Liveness (issue 4: gone within 5 s, no ghosts):
- the node pings its clients every second (the page also pings the node, see web/static/js/roomsocket.js);
  silence for ``unstable_after_s`` marks the participant's connection unstable (``participant.link``, cleared
  when they are heard again), silence for ``heartbeat_timeout_s`` ends the connection (issue 15, item 4);
- every second each node vouches on the bus for the connections it holds; a participant nobody vouched for
  during ``presence_timeout_s`` (its node crashed, or the room was rebuilt after a restart) is marked gone.

Faults (issue 18, tests/faults/): PostgreSQL away refuses the commands that need the log (an ``unavailable``
error frame; the state only changes once the event is in the log, so nothing is half-applied) and the connection
stays up; Redis away leaves the events in the log only, and the room reads them back when the bus returns (see
``_beat_once``); a node killed takes its sockets with it, and its participants resume on another node with
``?last_seq=n`` (the log has every event, so the other node's replay has no gap).

One :class:`Rooms` per process owns the live rooms (opened on first connection, closed with the last).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any

from rcp.clock import utcnow
from rcp.errors import Forbidden, RcpError, Unavailable
from rcp.i18n import N_
from rcp.metrics import ROOM_EVENT_SECONDS
from rcp.room import commands as c
from rcp.room.bus import Bus, bus_from_url
from rcp.room.connection import (
    CLOSE_DROPPED,
    CLOSE_SUPERSEDED,
    CLOSE_TIMEOUT,
    Connection,
    MediaRoom,
    RoomConfig,
)
from rcp.room.events import (
    CaseChanged,
    Event,
    FloorGranted,
    ParticipantJoined,
    PointerSample,
    event_from_dict,
    event_to_dict,
)
from rcp.room.log import EventLog, MemoryEventLog, SequenceTaken, SqlEventLog
from rcp.room.revocation import Revocations
from rcp.room.state import AgendaItem, RoomState, apply, decide, may_point, snapshot_to_dict

__all__ = ["LiveRoom", "Rooms", "load_agenda", "open_rooms"]

logger = logging.getLogger(__name__)

AgendaLoader = Callable[[int], Awaitable[tuple[AgendaItem, ...]]]
#: Called after a command's events are persisted and fanned out, on the node that decided them.
EventHook = Callable[["LiveRoom", list[Event]], Awaitable[None]]
MAX_DECIDE_ATTEMPTS = 40


class LiveRoom:
    def __init__(
        self,
        meeting_id: int,
        *,
        log: EventLog,
        bus: Bus,
        channel: str,
        node_id: str,
        agenda: tuple[AgendaItem, ...] = (),
        config: RoomConfig | None = None,
        media: MediaRoom | None = None,
        ice_servers: list[dict[str, Any]] | None = None,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        on_events: list[EventHook] | None = None,
        agenda_loader: AgendaLoader | None = None,
    ) -> None:
        self.meeting_id = meeting_id
        #: Reads the agenda again before the chair moves the room (a case deferred or withdrawn meanwhile is not
        #: offered; rcp.scheduling.agenda); None keeps the agenda the room opened with.
        self._agenda_loader = agenda_loader
        self.on_events: list[EventHook] = on_events if on_events is not None else []
        self.log = log
        self.bus = bus
        self.channel = channel
        self.node_id = node_id
        self.config = config or RoomConfig()
        self.media = media
        #: STUN/TURN for browsers behind hospital firewalls (W3C RTCConfiguration.iceServers), from the settings.
        self.ice_servers = ice_servers or []
        self._clock = clock
        self._monotonic = monotonic
        self.state = RoomState(meeting_id=meeting_id, agenda=agenda, floor_grace_s=self.config.floor_grace_s)
        self.connections: dict[str, Connection] = {}
        self._lock = asyncio.Lock()
        self._recent: deque[Event] = deque(maxlen=self.config.replay_window)
        self._ahead: dict[int, Event] = {}
        self._vouched: dict[str, float] = {}
        self._pointers: dict[int, PointerSample] = {}
        self._pending_pointers: dict[int, list[Any]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = asyncio.Event()
        self._snapshot: tuple[int, str] | None = None
        self._pointer_arrived = asyncio.Event()
        self._bus_epoch = bus.epoch
        self.published = 0
        if media is not None:
            media.on_speaker = self._on_speaker

    # -- lifecycle -------------------------------------------------------------------------------------------
    async def open(self) -> None:
        """Rebuild the state from the log, then listen to the bus and start the room's clocks."""
        self._tasks.append(asyncio.create_task(self._listen(), name=f"room-{self.meeting_id}-bus"))
        await self._subscribed.wait()
        async with self._lock:
            await self._catch_up_locked()
            now = self._monotonic()
            for participant in self.state.present():
                self._vouched[participant.connection] = now
        self._tasks.append(asyncio.create_task(self._beat(), name=f"room-{self.meeting_id}-beat"))
        self._tasks.append(
            asyncio.create_task(self._flush_pointers(), name=f"room-{self.meeting_id}-pointer")
        )

    async def close(self) -> None:
        # The media object outlives this room (the hub keeps it while peers close): a closed room is not called.
        if self.media is not None and self.media.on_speaker == self._on_speaker:
            self.media.on_speaker = None
        for connection in list(self.connections.values()):
            connection.close(1001, "server closing")
        # We started these tasks, so we end them: cancel, then wait until they are really gone.
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- changes ---------------------------------------------------------------------------------------------
    async def execute(
        self, command: c.Command, *, actor: int, origin: Connection | None = None
    ) -> list[Event]:
        """Decide, number, persist, apply, fan out and publish. Raises the command's RcpError if refused.

        Then, outside the room's lock (a hook may itself execute a command), the ``on_events`` hooks see the
        events this node decided: exactly one node runs them for each event.
        """
        if self._agenda_loader is not None and isinstance(command, c.SetCase | c.NextCase):
            await self.refresh_agenda()
        started = time.perf_counter()
        events = await self._execute(command, actor=actor)
        if events:
            ROOM_EVENT_SECONDS.observe(time.perf_counter() - started)
        for hook in list(self.on_events):
            try:
                await hook(self, events)
            except Exception:
                logger.exception("room %s: an event hook failed", self.meeting_id)
        return events

    async def refresh_agenda(self) -> None:
        """Take the meeting's agenda as it is now: the agenda is the room's context, not an event, so each node
        reads it from the database (the coordinator defers, withdraws or adds cases while the room is open)."""
        if self._agenda_loader is None:
            return
        agenda = await self._agenda_loader(self.meeting_id)
        async with self._lock:
            self.state = replace(self.state, agenda=_keeping_current(self.state.agenda, agenda,
                                                                     self.state.case_id))

    async def _execute(self, command: c.Command, *, actor: int) -> list[Event]:
        attempt = 0
        async with self._lock:
            while attempt < MAX_DECIDE_ATTEMPTS:
                events = decide(self.state, command, actor=actor, now=self._clock())
                if not events:
                    return []
                try:
                    await self.log.append(self.meeting_id, events)
                except SequenceTaken:
                    # Another node was first. Back off a little (random, growing) so that a node that keeps
                    # losing the race to a busier one gets its turn, then catch up and decide again.
                    attempt += 1
                    await asyncio.sleep(random.uniform(0, 0.002 * min(attempt, 10)))
                    await self._catch_up_locked()
                    continue
                for event in events:
                    self._apply_locked(event)
                for event in events:
                    await self._publish(json.dumps({"k": "e", "n": self.node_id, "e": event_to_dict(event)}))
                    self.published += 1
                return events
        raise Unavailable(N_("The room is very busy right now: send that again in a moment."))

    async def _publish(self, message: str) -> bool:
        """Publish on the bus; a bus that is away (Redis restarting) is logged, not raised: sequenced events are in
        the log already, and other nodes read them from it once the bus is back (see ``_beat_once``)."""
        try:
            await self.bus.publish(self.channel, message)
        except Exception as exc:  # noqa: BLE001 - whatever the driver raises (a reset mid-handshake is a RuntimeError)
            logger.info("room %s: bus unreachable, publication left to the log (%s)", self.meeting_id,
                        type(exc).__name__)
            return False
        return True

    def _apply_locked(self, event: Event) -> None:
        self.state = apply(self.state, event)
        self._recent.append(event)
        if isinstance(event, ParticipantJoined):
            joined = event.participant
            self._vouched[joined.connection] = self._monotonic()
            for connection in list(self.connections.values()):
                if connection.user_id == joined.user_id and connection.id != joined.connection:
                    # Same person, newer connection (maybe on another node): no ghost, no leave event.
                    connection.close(CLOSE_SUPERSEDED, "superseded")
        if isinstance(event, FloorGranted | CaseChanged):
            self._pointers.clear()
            self._pending_pointers.clear()
        frame = json.dumps({"type": "event", **event_to_dict(event)})
        for connection in list(self.connections.values()):
            connection.push(frame, kind="event")

    async def _catch_up_locked(self) -> None:
        for event in await self.log.since(self.meeting_id, self.state.seq):
            self._apply_locked(event)
        self._ahead = {seq: e for seq, e in self._ahead.items() if seq > self.state.seq}

    async def _receive_event(self, event: Event) -> None:
        async with self._lock:
            if event.seq <= self.state.seq:
                return  # our own publication coming back, or already caught up from the log
            if event.seq > self.state.seq + 1:
                self._ahead[event.seq] = event
                await self._catch_up_locked()
            else:
                self._apply_locked(event)
            while self.state.seq + 1 in self._ahead:
                self._apply_locked(self._ahead.pop(self.state.seq + 1))

    # -- connections -----------------------------------------------------------------------------------------
    async def attach(self, connection: Connection, last_seq: int | None) -> None:
        """Register ``connection`` and bring it up to date: the events it missed, or a snapshot."""
        async with self._lock:
            self.connections[connection.id] = connection
            connection.push(
                json.dumps(
                    {
                        "type": "welcome",
                        "user_id": connection.user_id,
                        "connection": connection.id,
                        "node": self.node_id,
                        "rtc": self.media is not None,
                        "ice_servers": self.ice_servers,
                        "speaker": self.speaker,
                        "seq": self.state.seq,
                    }
                )
            )
            self._bring_up_to_date_locked(connection, last_seq)

    def _bring_up_to_date_locked(self, connection: Connection, last_seq: int | None) -> None:
        seq = self.state.seq
        oldest = self._recent[0].seq if self._recent else seq + 1
        if last_seq is not None and last_seq <= seq and (last_seq == seq or last_seq + 1 >= oldest):
            for event in self._recent:
                if event.seq > last_seq:
                    connection.push(json.dumps({"type": "event", **event_to_dict(event)}), kind="control")
            connection.push(json.dumps({"type": "resumed", "seq": seq}))
        else:
            # One snapshot per sequence number, however many join at once (200 joining is otherwise O(n²)).
            if self._snapshot is None or self._snapshot[0] != seq:
                self._snapshot = (seq, json.dumps(snapshot_to_dict(self.state)))
            pointers = json.dumps([p.compact() for p in self._pointers.values()])
            connection.push(f'{{"type": "snapshot", "state": {self._snapshot[1]}, "pointer": {pointers}}}')

    async def resend(self, connection: Connection, last_seq: int) -> None:
        async with self._lock:
            self._bring_up_to_date_locked(connection, last_seq)

    async def join(self, connection: Connection) -> None:
        await self.execute(c.Join(connection.participant), actor=connection.user_id, origin=connection)

    async def detach(self, connection: Connection) -> None:
        """The connection ended: record the leave (unless a newer connection of the same person took over)."""
        self.connections.pop(connection.id, None)
        # The media peer is keyed by participant: leave it to a newer connection of the same person, here or on
        # another node (its join has then replaced this connection in the room's state).
        seat = self.state.participants.get(connection.user_id)
        newer = any(c.user_id == connection.user_id for c in self.connections.values()) or (
            seat is not None and seat.connected and seat.connection not in {"", connection.id}
        )
        if self.media is not None and connection.rtc and not newer:
            with contextlib.suppress(Exception):
                await self.media.disconnect(str(connection.user_id))
        try:
            await self.execute(c.Leave(connection.id, connection.close_reason), actor=connection.user_id)
        except Exception as exc:
            from rcp.outages import part_down

            if not isinstance(exc, RcpError) and part_down(exc) is None:
                raise
            # Refused, or the database is away: the seat stays until nobody vouches for it (``_beat_once``), then
            # its leave is recorded as "lost".
            logger.warning("room %s: could not record the leave of %r (%s)", self.meeting_id, connection,
                           type(exc).__name__)

    # -- active speaker (media/speaker.py elects it from RFC 6464 audio levels) ---------------------------------
    @property
    def speaker(self) -> int | None:
        """The user id of the active speaker, or None (nobody speaks, or no media on this server)."""
        return _user_id(self.media.speaker) if self.media is not None else None

    def _on_speaker(self, participant_id: str | None) -> None:
        """Tell every local connection who speaks now: a control frame, not an event (transient and frequent)."""
        frame = json.dumps({"type": "speaker", "user_id": _user_id(participant_id)})
        for connection in list(self.connections.values()):
            connection.push(frame)

    # -- pointer ---------------------------------------------------------------------------------------------
    async def point(
        self, connection: Connection, column: float | None, row: float | None, index: int, viewport: int = 0
    ) -> None:
        if not may_point(self.state, connection.user_id):
            raise Forbidden(N_("Only the presenter's pointer is shown: take the floor first."))
        sample = PointerSample(
            user_id=connection.user_id, column=column, row=row, slice=index, viewport=viewport
        )
        await self._publish(json.dumps({"k": "p", "s": sample.compact()}, separators=(",", ":")))

    def _receive_pointer(self, packed: list[Any]) -> None:
        user_id = int(packed[0])
        self._pointers[user_id] = PointerSample(
            user_id=user_id,
            column=packed[1],
            row=packed[2],
            slice=packed[3],
            viewport=packed[4] if len(packed) > 4 else 0,
        )
        self._pending_pointers[user_id] = packed
        self._pointer_arrived.set()

    async def _flush_pointers(self) -> None:
        """Latest sample per participant wins within a tick; one frame carries them all."""
        while True:
            # Idle rooms do not wake up: the first sample opens a tick, the ones within it coalesce.
            await self._pointer_arrived.wait()
            await asyncio.sleep(self.config.pointer_tick_s)
            self._pointer_arrived.clear()
            if not self._pending_pointers:
                continue
            samples = list(self._pending_pointers.values())
            self._pending_pointers = {}
            frame = json.dumps({"type": "pointer", "s": samples}, separators=(",", ":"))
            senders = {s[0] for s in samples}
            for connection in list(self.connections.values()):
                if senders != {connection.user_id}:
                    connection.push(frame, kind="pointer")

    # -- bus and clocks --------------------------------------------------------------------------------------
    async def _listen(self) -> None:
        async with self.bus.subscribe(self.channel) as subscription:
            self._subscribed.set()
            async for raw in subscription:
                try:
                    message = json.loads(raw)
                    kind = message.get("k")
                    if kind == "e":
                        await self._receive_event(event_from_dict(message["e"]))
                    elif kind == "p":
                        self._receive_pointer(message["s"])
                    elif kind == "h":
                        now = self._monotonic()
                        for connection_id in message["c"]:
                            self._vouched[connection_id] = now
                except (ValueError, KeyError, TypeError, IndexError):
                    logger.warning("room %s: unreadable bus message ignored", self.meeting_id)
                except RcpError:
                    logger.warning("room %s: could not apply a bus message", self.meeting_id, exc_info=True)

    async def _beat(self) -> None:
        ping = json.dumps({"type": "ping"})
        while True:
            await asyncio.sleep(self.config.ping_every_s / 2)
            try:
                await self._beat_once(ping)
            except Exception:  # the database or Redis blinked: the next beat tries again
                logger.warning("room %s: heartbeat step failed", self.meeting_id, exc_info=True)

    async def _beat_once(self, ping: str) -> None:
        now = self._monotonic()
        links: list[Connection] = []
        for connection in list(self.connections.values()):
            silent = now - connection.last_heard
            if connection.stalled(now):
                logger.info("room %s: %r send stalled; dropped", self.meeting_id, connection)
                connection.close(CLOSE_DROPPED, "dropped")
                continue
            if silent > self.config.heartbeat_timeout_s:
                connection.close(CLOSE_TIMEOUT, "timeout")
                continue
            if (silent > self.config.unstable_after_s) != connection.unstable:
                connection.unstable = not connection.unstable
                links.append(connection)
            if now - connection.last_ping >= self.config.ping_every_s:
                connection.last_ping = now
                connection.push(ping)
                self._vouched[connection.id] = now
        for connection in links:
            await self.execute(c.NoteLink(connection.id, connection.unstable), actor=connection.user_id)
        if self.connections:
            await self._publish(json.dumps({"k": "h", "n": self.node_id, "c": list(self.connections)}))
        if not self.bus.connected or self.bus.epoch != self._bus_epoch:
            # The bus is away, or just came back (Redis restarted): other nodes' beats could not be heard, so
            # their participants' silence proves nothing — each gets a fresh presence delay — and the events they
            # published meanwhile never arrived: read them from the log.
            for participant in self.state.present():
                self._vouched[participant.connection] = now
            if self.bus.connected:
                epoch = self.bus.epoch
                async with self._lock:
                    await self._catch_up_locked()
                self._bus_epoch = epoch  # only once caught up: a database away too means trying again next beat
        for participant in self.state.present():
            if participant.connection in self.connections:
                continue
            if now - self._vouched.get(participant.connection, now) > self.config.presence_timeout_s:
                await self.execute(c.Leave(participant.connection, "lost"), actor=participant.user_id)
        await self.execute(c.Tick(), actor=0)


def _user_id(participant_id: str | None) -> int | None:
    """media/ names participants by ``str(user_id)`` (see Connection._signal); back to the room's int ids."""
    if participant_id is None:
        return None
    try:
        return int(participant_id)
    except ValueError:
        logger.warning("media participant id %r is not a user id; ignored", participant_id)
        return None


def _keeping_current(old: tuple[AgendaItem, ...], new: tuple[AgendaItem, ...],
                     current: int | None) -> tuple[AgendaItem, ...]:
    """``new``, with the room's current case kept in its place when it just left the agenda (deferred while it
    was open): the room still shows it, and "next case" goes on to the case after it, not back to the first."""
    if current is None or any(i.case_id == current for i in new):
        return new
    index = next((k for k, item in enumerate(old) if item.case_id == current), None)
    if index is None:
        return new
    before = {item.case_id for item in old[:index]}
    at = sum(1 for item in new if item.case_id in before)
    return (*new[:at], old[index], *new[at:])


async def load_agenda(db: Any, meeting_id: int) -> tuple[AgendaItem, ...]:
    """The cases the room offers for discussion, in agenda order, with their studies: those on the meeting's agenda
    (``rcp.scheduling.agenda``); a deferred or withdrawn case is never one the chair can open."""
    from rcp.scheduling.agenda import meeting_agenda

    async with db.session() as session:
        listed = await meeting_agenda(session, meeting_id)
    return tuple(AgendaItem(e.case_id, tuple(e.case.study_uids or ())) for e in listed.on_agenda)


class Rooms:
    """The live rooms of this process, opened on first connection and closed with their last one."""

    def __init__(
        self,
        *,
        log: EventLog,
        bus: Bus,
        node_id: str,
        channel_prefix: str = "rcp:room:",
        agenda: AgendaLoader | None = None,
        config: RoomConfig | None = None,
        media: Any = None,
    ) -> None:
        self.log = log
        self.bus = bus
        self.node_id = node_id
        self.channel_prefix = channel_prefix
        self.config = config or RoomConfig()
        #: media/hub.py's MediaHub (``room(str(meeting_id))`` gives a RoomMedia), or None: WebSocket only.
        self.media = media
        self._agenda = agenda
        #: Shared by every room of this process (e.g. key-image marks written into the decision draft).
        self.on_events: list[EventHook] = []
        self._rooms: dict[int, LiveRoom] = {}
        self._users: dict[int, int] = {}
        #: Every local socket's seat, re-checked on revocation messages and periodically (issue 13).
        self.revocations = Revocations(bus, channel=f"{channel_prefix}revoked", every_s=self.config.recheck_s)
        self._lock = asyncio.Lock()

    async def acquire(self, meeting_id: int) -> LiveRoom:
        async with self._lock:
            room = self._rooms.get(meeting_id)
            if room is None:
                agenda = await self._agenda(meeting_id) if self._agenda else ()
                room = LiveRoom(
                    meeting_id,
                    log=self.log,
                    bus=self.bus,
                    channel=f"{self.channel_prefix}{meeting_id}",
                    node_id=self.node_id,
                    agenda=agenda,
                    config=self.config,
                    media=self.media.room(str(meeting_id)) if self.media is not None else None,
                    ice_servers=self.media.browser_ice_servers() if self.media is not None else None,
                    on_events=self.on_events,
                    agenda_loader=self._agenda,
                )
                try:
                    await room.open()
                except BaseException:
                    await room.close()  # its bus listener started: we started it, we end it
                    raise
                self._rooms[meeting_id] = room
            self._users[meeting_id] = self._users.get(meeting_id, 0) + 1
            return room

    async def release(self, room: LiveRoom) -> None:
        async with self._lock:
            left = self._users.get(room.meeting_id, 1) - 1
            self._users[room.meeting_id] = left
            if left <= 0 and self._rooms.get(room.meeting_id) is room:
                del self._rooms[room.meeting_id]
                self._users.pop(room.meeting_id, None)
                await room.close()

    def get(self, meeting_id: int) -> LiveRoom | None:
        return self._rooms.get(meeting_id)

    def live(self) -> list[LiveRoom]:
        """The rooms open on this node now (rcp.metrics counts them and their sockets)."""
        return list(self._rooms.values())

    async def close(self) -> None:
        async with self._lock:
            rooms, self._rooms = list(self._rooms.values()), {}
            self._users.clear()
        for room in rooms:
            await room.close()


@asynccontextmanager
async def open_rooms(
    settings: Any,
    db: Any = None,
    *,
    media: Any = None,
    config: RoomConfig | None = None,
    channel_prefix: str = "rcp:room:",
) -> AsyncIterator[Rooms]:
    """For the app's lifespan: the bus from ``settings.redis_url``, the log in ``db`` (memory without one).

    Example (rcp/app.py)::

        async with open_rooms(settings, db, media=hub) as rooms:
            app.state.rooms = rooms
            yield
    """
    bus = bus_from_url(settings.redis_url)
    await bus.connect()
    log: EventLog = SqlEventLog(db) if db is not None else MemoryEventLog()
    rooms = Rooms(
        log=log,
        bus=bus,
        node_id=settings.node_id,
        channel_prefix=channel_prefix,
        agenda=(lambda meeting_id: load_agenda(db, meeting_id)) if db is not None else None,
        config=config,
        media=media,
    )
    await rooms.revocations.open()
    try:
        yield rooms
    finally:
        await rooms.revocations.close()
        await rooms.close()
        await bus.disconnect()
