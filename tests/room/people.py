"""The people a room test seats: a meeting of its own (board, coordinator, five clinicians, two cases) and an
outsider, so that no test sees another's floor, marks or event log."""

from __future__ import annotations

from dataclasses import dataclass

from rcp.db import Database
from tests.factories import MadeMeeting, MadeUser, make_clinician, make_meeting

#: Who the room tests seat, by the names they use; "chair" is the board's coordinator, "outsider" is not invited.
ROSTER = {
    "radiologist": "radiologist",
    "surgeon": "surgeon",
    "oncologist": "medical_oncologist",
    "radiotherapist": "radiotherapist",
    "pulmonologist": "pulmonologist",
}


@dataclass(frozen=True)
class RoomPeople:
    meeting: MadeMeeting
    outsider: MadeUser

    @property
    def users(self) -> dict[str, MadeUser]:
        """``chair``, the five clinicians of :data:`ROSTER` and the ``outsider``, by name."""
        return {"chair": self.meeting.coordinator,
                **{name: self.meeting.invitee(key) for name, key in ROSTER.items()},
                "outsider": self.outsider}


async def make_room_people(db: Database) -> RoomPeople:
    meeting = await make_meeting(db, invite=tuple(ROSTER.values()), cases=2)
    return RoomPeople(meeting=meeting, outsider=await make_clinician(db, "gastroenterologist"))
