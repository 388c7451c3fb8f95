"""Attendance for the minutes: when each participant was in the room, derived from the event log.

INCa's RCP criteria ask the minutes to list who took part; the join and leave times come from the same log that
drives the room, so the minutes cannot disagree with what the participants saw. A reconnect (new connection while
still present, e.g. Wi-Fi to 4G) continues the same stay; a leave then a join opens a new stay.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from rcp.room.events import Event, ParticipantJoined, ParticipantLeft

__all__ = ["Attendance", "Stay", "attendance"]


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
