"""Attendance for the minutes: when each participant was in the room, derived from the event log.

INCa's RCP criteria ask the minutes to list who took part; the join and leave times come from the same log that
drives the room, so the minutes cannot disagree with what the participants saw. A reconnect (new connection while
still present, e.g. Wi-Fi to 4G) continues the same stay; a leave then a join opens a new stay.

Who was there for a given case (:func:`present_at`) comes from the same log: a case is *under discussion* while it
is the room's current case (the chair opened it, ``case.changed``) and a chair is in the room; its discussion ends
when the chair opens another case or the last chair leaves. Someone was present at the case when one of their
stays overlaps one of its discussions. So the record does not depend on who is connected when the fiche is
signed (the evening after, or the next day), and entering an empty room where the case is still the current
one does not make anyone present at it. (Issue 14 freezes this per case, with specialty and quorum role.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from rcp.room.events import CaseChanged, Event, ParticipantJoined, ParticipantLeft

__all__ = ["PRESENCE_EVENTS", "Attendance", "Discussion", "Stay", "attendance", "discussions", "present_at"]

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
                    p.user_id, p.display_name, p.specialty, p.hospital, p.role
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


@dataclass(frozen=True)
class Discussion:
    """A stretch of time during which ``case_id`` was the room's current case with a chair in the room."""

    case_id: int
    opened_at: datetime
    #: None while it goes on (the log ends during it).
    closed_at: datetime | None = None

    def overlaps(self, stay: Stay) -> bool:
        ends_after_start = stay.left_at is None or stay.left_at > self.opened_at
        starts_before_end = self.closed_at is None or stay.joined_at < self.closed_at
        return ends_after_start and starts_before_end


def discussions(events: Iterable[Event]) -> list[Discussion]:
    """Every discussion of every case, in order: from a chair opening the case (or coming back to the room while
    it is the current case) to the chair opening another case or the last chair leaving."""
    found: list[Discussion] = []
    case_id: int | None = None
    chairs: dict[int, str] = {}  # chair user id -> their current connection
    opened: datetime | None = None

    def close(at: datetime) -> None:
        nonlocal opened
        if opened is not None and case_id is not None:
            found.append(Discussion(case_id, opened, at))
        opened = None

    for event in events:
        if isinstance(event, CaseChanged):
            close(event.at)
            case_id = event.case_id
            if chairs and case_id is not None:
                opened = event.at
        elif isinstance(event, ParticipantJoined):
            if event.participant.chairs:
                chairs[event.participant.user_id] = event.participant.connection
                if opened is None and case_id is not None:
                    opened = event.at
        elif isinstance(event, ParticipantLeft) and _chair_leaves(chairs, event):
            del chairs[event.user_id]
            if not chairs:
                close(event.at)
    if opened is not None and case_id is not None:
        found.append(Discussion(case_id, opened, None))
    return found


def _chair_leaves(chairs: dict[int, str], event: ParticipantLeft) -> bool:
    """Whether ``event`` takes a chair out of the room (not a superseded connection of theirs leaving)."""
    if event.user_id not in chairs:
        return False
    return not event.connection or chairs[event.user_id] == event.connection


def present_at(events: Iterable[Event], case_id: int) -> frozenset[int] | None:
    """The users present during a discussion of ``case_id``; None when nobody ever joined the room (a meeting held
    without it: attendance then comes from elsewhere), an empty set when the case was never discussed in it."""
    events = list(events)
    people = attendance(events)
    if not people:
        return None
    held = [d for d in discussions(events) if d.case_id == case_id]
    return frozenset(
        person.user_id for person in people.values() if any(d.overlaps(s) for d in held for s in person.stays)
    )
