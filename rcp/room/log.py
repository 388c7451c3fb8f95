"""The room's event log: append with the next sequence number, read back since a number, rebuild after a restart.

Two implementations behind one protocol: :class:`SqlEventLog` (the ``room_events`` table, SQLite or PostgreSQL)
and :class:`MemoryEventLog` (tests, benchmarks, throw-away rooms).

Why the database allocates the sequence: an event exists once its row is committed, so the number and the
event can never part (a Redis ``INCR`` followed by an insert leaves a gap whenever the insert fails, and lets two
nodes validate commands against different states). A node appends ``n + 1`` only when its state is at ``n``;
the unique constraint ``(meeting_id, seq)`` refuses the loser of a race with :class:`SequenceTaken`, and the
loser catches up and decides again (see rcp.room.live).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rcp.clock import as_utc
from rcp.db import Database
from rcp.errors import Conflict
from rcp.room.attendance import PRESENCE_EVENTS, Attendance, attendance, present_at
from rcp.room.events import Event, ParticipantJoined, ParticipantLeft, event_from_parts, payload_of
from rcp.room.models import RoomEvent
from rcp.room.state import RoomState, replay
from rcp.scheduling.models import Invitation

__all__ = [
    "EventLog",
    "MemoryEventLog",
    "SequenceTaken",
    "SqlEventLog",
    "case_presence",
    "load_state",
    "meeting_attendance",
]

logger = logging.getLogger(__name__)


class SequenceTaken(Conflict):
    """Another node appended this sequence number first: catch up from the log and decide again."""


class EventLog(Protocol):
    async def append(self, meeting_id: int, events: Sequence[Event]) -> None:
        """Store ``events`` (numbered consecutively after the last stored one) atomically, or raise SequenceTaken."""

    async def since(self, meeting_id: int, seq: int) -> list[Event]:
        """Events with a sequence number above ``seq``, in order."""


class MemoryEventLog:
    def __init__(self) -> None:
        self._rooms: dict[int, list[Event]] = {}

    async def append(self, meeting_id: int, events: Sequence[Event]) -> None:
        stored = self._rooms.setdefault(meeting_id, [])
        last = stored[-1].seq if stored else 0
        if events and events[0].seq != last + 1:
            raise SequenceTaken(
                f"Sequence {events[0].seq} of meeting {meeting_id} is taken (last is {last})."
            )
        stored.extend(events)

    async def since(self, meeting_id: int, seq: int) -> list[Event]:
        return [e for e in self._rooms.get(meeting_id, []) if e.seq > seq]


class SqlEventLog:
    """``room_events`` rows; joins and leaves also stamp the invitation (joined_at / left_at) for the minutes."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def append(self, meeting_id: int, events: Sequence[Event]) -> None:
        if not events:
            return
        try:
            async with self.db.session() as session:
                for event in events:
                    session.add(
                        RoomEvent(
                            meeting_id=meeting_id,
                            seq=event.seq,
                            type=event.name,
                            payload=payload_of(event),
                            actor_id=event.actor,
                            at=event.at,
                        )
                    )
                await session.flush()
                await _stamp_invitations(session, meeting_id, events)
        except IntegrityError:
            raise SequenceTaken(
                f"Sequence {events[0].seq} of meeting {meeting_id} is taken by another node: catch up and retry."
            ) from None

    async def since(self, meeting_id: int, seq: int) -> list[Event]:
        async with self.db.session() as session:
            rows = (
                await session.exec(
                    select(RoomEvent)
                    .where(RoomEvent.meeting_id == meeting_id, col(RoomEvent.seq) > seq)
                    .order_by(col(RoomEvent.seq))
                )
            ).all()
        return [
            event_from_parts(r.type, r.payload, seq=r.seq, at=as_utc(r.at), actor=r.actor_id) for r in rows
        ]


    async def presence(self, meeting_id: int) -> list[Event]:
        """Only the joins, leaves and case changes of the meeting (a long meeting logs thousands of view changes
        that attendance does not need)."""
        async with self.db.session() as session:
            rows = (
                await session.exec(
                    select(RoomEvent)
                    .where(RoomEvent.meeting_id == meeting_id, col(RoomEvent.type).in_(PRESENCE_EVENTS))
                    .order_by(col(RoomEvent.seq))
                )
            ).all()
        return [
            event_from_parts(r.type, r.payload, seq=r.seq, at=as_utc(r.at), actor=r.actor_id) for r in rows
        ]


async def _stamp_invitations(session: AsyncSession, meeting_id: int, events: Sequence[Event]) -> None:
    for event in events:
        if not isinstance(event, ParticipantJoined | ParticipantLeft):
            continue
        user_id = event.participant.user_id if isinstance(event, ParticipantJoined) else event.user_id
        invitation = (
            await session.exec(
                select(Invitation).where(Invitation.meeting_id == meeting_id, Invitation.user_id == user_id)
            )
        ).first()
        if invitation is None:
            continue  # a coordinator or admin present without an invitation
        if isinstance(event, ParticipantJoined):
            if invitation.joined_at is None:
                invitation.joined_at = event.at
            invitation.left_at = None
        else:
            invitation.left_at = event.at
        session.add(invitation)


async def load_state(log: EventLog, initial: RoomState) -> RoomState:
    """The room as the log left it (after a restart: everything but the pointer)."""
    return replay(initial, await log.since(initial.meeting_id, initial.seq))


async def meeting_attendance(log: EventLog, meeting_id: int) -> dict[int, Attendance]:
    """Join and leave times per participant (user id), for the minutes."""
    return attendance(await log.since(meeting_id, 0))


async def case_presence(log: EventLog, meeting_id: int, case_id: int, *,
                        under_way: bool = False) -> frozenset[int] | None:
    """Who was in the room while ``case_id`` was discussed (``under_way``: in its discussion not ended yet), read
    from the log (rcp.room.attendance.present_at)."""
    if isinstance(log, SqlEventLog):
        events = await log.presence(meeting_id)
    else:
        events = [e for e in await log.since(meeting_id, 0) if e.name in PRESENCE_EVENTS]
    return present_at(events, case_id, under_way=under_way)
