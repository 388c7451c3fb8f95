"""Attendance for the minutes: when each participant was in the room, derived from the event log.

INCa's RCP criteria ask the minutes to list who took part; the join and leave times come from the same log that
drives the room, so the minutes cannot disagree with what the participants saw. A reconnect (new connection while
still present, e.g. Wi-Fi to 4G) continues the same stay; a leave then a join opens a new stay.

Who was there for a given case comes from the same log: a case is *under discussion* while it is the room's
current case (the chair opened it, ``case.changed``) and a chair is in the room; its discussion ends when the chair
opens another case, closes it (``case.changed`` to no case) or the last chair leaves. Someone was present at the
case when one of their stays overlaps one of its discussions. When a discussion ends, who was present is frozen
for the case (:func:`present_in`, stored by rcp.room.record in ``case_attendance``), so the record does not depend
on who is connected when the fiche is signed (the evening after, or the next day), and entering an empty room where
the case is still the current one does not make anyone present at it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from rcp.room.events import CaseChanged, Event, ParticipantJoined, ParticipantLeft

__all__ = [
    "CLOSED_BY_CHAIR",
    "CLOSED_BY_CHAIR_LEAVING",
    "CLOSED_BY_OTHER_CASE",
    "PRESENCE_EVENTS",
    "Attendance",
    "Discussion",
    "Presence",
    "Stay",
    "attendance",
    "discussions",
    "present_at",
    "present_in",
]

#: The events attendance is computed from (the log is read for these names only).
PRESENCE_EVENTS = (ParticipantJoined.name, ParticipantLeft.name, CaseChanged.name)


@dataclass
class Stay:
    joined_at: datetime
    #: None while still in the room.
    left_at: datetime | None = None


@dataclass
class Attendance:
    user_id: int
    display_name: str
    specialty: str
    hospital: str
    role: str
    stays: list[Stay] = field(default_factory=list)
    guest: bool = False

    @property
    def first_joined_at(self) -> datetime:
        return self.stays[0].joined_at

    @property
    def last_left_at(self) -> datetime | None:
        return self.stays[-1].left_at

    def seconds_present(self, *, until: datetime) -> float:
        return sum(((s.left_at or until) - s.joined_at).total_seconds() for s in self.stays)


def attendance(events: Iterable[Event]) -> dict[int, Attendance]:
    """Per participant (user id), their stays in the room, in order of first arrival."""
    people: dict[int, Attendance] = {}
    connection: dict[int, str] = {}
    for event in events:
        if isinstance(event, ParticipantJoined):
            p = event.participant
            found = people.get(p.user_id)
            if found is None:
                found = people[p.user_id] = Attendance(
                    p.user_id, p.display_name, p.specialty, p.hospital, p.role, guest=p.guest
                )
            if not found.stays or found.stays[-1].left_at is not None:
                found.stays.append(Stay(joined_at=event.at))
            connection[p.user_id] = p.connection
        elif isinstance(event, ParticipantLeft):
            found = people.get(event.user_id)
            if found is None or not found.stays or found.stays[-1].left_at is not None:
                continue
            if event.connection and connection.get(event.user_id) != event.connection:
                continue  # a superseded connection: the person is still here
            found.stays[-1].left_at = event.at
    return people


#: What ended a discussion (``case_discussions.closed_by``).
CLOSED_BY_OTHER_CASE = "case.changed"
CLOSED_BY_CHAIR = "case.closed"
CLOSED_BY_CHAIR_LEAVING = "chair.left"


@dataclass(frozen=True)
class Discussion:
    """A stretch of time during which ``case_id`` was the room's current case with a chair in the room.

    ``opened_seq`` and ``closed_seq`` are the room events that began and ended it, which identify it (a case
    opened twice has two discussions)."""

    case_id: int
    opened_at: datetime
    #: None while it goes on (the log ends during it).
    closed_at: datetime | None = None
    opened_seq: int = 0
    closed_seq: int | None = None
    #: :data:`CLOSED_BY_OTHER_CASE`, :data:`CLOSED_BY_CHAIR` or :data:`CLOSED_BY_CHAIR_LEAVING`; "" while open.
    closed_by: str = ""
    #: Who caused the closing event (the chair who moved on or closed the case; the leaving chair).
    closer: int | None = None

    @property
    def ended(self) -> bool:
        return self.closed_at is not None

    def overlaps(self, stay: Stay) -> bool:
        ends_after_start = stay.left_at is None or stay.left_at > self.opened_at
        starts_before_end = self.closed_at is None or stay.joined_at < self.closed_at
        return ends_after_start and starts_before_end


def discussions(events: Iterable[Event]) -> list[Discussion]:
    """Every discussion of every case, in order: from a chair opening the case (or coming back to the room while
    it is the current case) to the chair opening another case, closing it, or the last chair leaving."""
    found: list[Discussion] = []
    case_id: int | None = None
    chairs: dict[int, str] = {}  # chair user id -> their current connection
    opened: tuple[datetime, int] | None = None

    def close(event: Event, why: str) -> None:
        nonlocal opened
        if opened is not None and case_id is not None:
            found.append(Discussion(case_id, opened[0], event.at, opened[1], event.seq, why, event.actor))
        opened = None

    for event in events:
        if isinstance(event, CaseChanged):
            close(event, CLOSED_BY_OTHER_CASE if event.case_id is not None else CLOSED_BY_CHAIR)
            case_id = event.case_id
            if chairs and case_id is not None:
                opened = (event.at, event.seq)
        elif isinstance(event, ParticipantJoined):
            if event.participant.chairs:
                chairs[event.participant.user_id] = event.participant.connection
                if opened is None and case_id is not None:
                    opened = (event.at, event.seq)
        elif isinstance(event, ParticipantLeft) and _chair_leaves(chairs, event):
            del chairs[event.user_id]
            if not chairs:
                close(event, CLOSED_BY_CHAIR_LEAVING)
    if opened is not None and case_id is not None:
        found.append(Discussion(case_id, opened[0], None, opened[1]))
    return found


def _chair_leaves(chairs: dict[int, str], event: ParticipantLeft) -> bool:
    """Whether ``event`` takes a chair out of the room (not a superseded connection of theirs leaving)."""
    if event.user_id not in chairs:
        return False
    return not event.connection or chairs[event.user_id] == event.connection


def present_at(events: Iterable[Event], case_id: int, *, under_way: bool = False) -> frozenset[int] | None:
    """The users present during a discussion of ``case_id`` (``under_way``: only the one still going on, whose
    attendance is not recorded yet); None when nobody ever joined the room (a meeting held without it: attendance
    then comes from elsewhere), an empty set when the case was never discussed in it."""
    events = list(events)
    people = attendance(events)
    if not people:
        return None
    held = [d for d in discussions(events) if d.case_id == case_id and not (under_way and d.ended)]
    return frozenset(
        person.user_id for person in people.values() if any(d.overlaps(s) for d in held for s in person.stays)
    )


@dataclass(frozen=True)
class Presence:
    """One person connected during one discussion, as the room knew them then, and when (within the discussion)."""

    user_id: int
    display_name: str
    specialty: str
    role: str
    guest: bool
    joined_at: datetime
    left_at: datetime


def present_in(discussion: Discussion, people: dict[int, Attendance]) -> list[Presence]:
    """Who was connected to the room during an ended ``discussion``, in order of arrival, with the first moment
    and the last moment of the discussion they were there for (their stays clipped to it).

    ``people`` is :func:`attendance` of the same log.
    """
    assert discussion.closed_at is not None, "an open discussion is not recorded"
    out: list[Presence] = []
    for person in people.values():
        spans = [(max(s.joined_at, discussion.opened_at),
                  min(s.left_at or discussion.closed_at, discussion.closed_at))
                 for s in person.stays if discussion.overlaps(s)]
        if not spans:
            continue
        out.append(Presence(person.user_id, person.display_name, person.specialty, person.role,
                            person.guest, spans[0][0], spans[-1][1]))
    return out
