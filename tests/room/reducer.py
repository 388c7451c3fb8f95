"""A meeting room driven through the pure reducer as the server drives it (decide, then apply), keeping its log;
three demo participants. Shared by the reducer, viewport and media-wiring tests."""

from __future__ import annotations

from datetime import UTC, datetime

from rcp.room import commands as c
from rcp.room.events import Event, Participant
from rcp.room.state import AgendaItem, RoomState, apply, decide

__all__ = ["CHAIR", "RADIO", "SURGEON", "T0", "Room", "full_room"]

T0 = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
CHAIR = Participant(user_id=1, display_name="Coord", role="coordinator", connection="c1")
RADIO = Participant(
    user_id=2, display_name="Radio", specialty="radiologist", hospital="CHU A", connection="c2"
)
SURGEON = Participant(user_id=3, display_name="Surg", specialty="surgeon", hospital="CH B", connection="c3")


class Room:
    """Drives the reducer like the server does, keeping every event (the log)."""

    def __init__(self, **kwargs: object) -> None:
        agenda = (AgendaItem(10, ("1.2.10",)), AgendaItem(11, ("1.2.11", "1.2.12")), AgendaItem(12))
        self.initial = RoomState(meeting_id=5, agenda=agenda, **kwargs)  # type: ignore[arg-type]
        self.state = self.initial
        self.log: list[Event] = []
        self.now = T0

    def do(self, actor: int, command: c.Command) -> list[Event]:
        events = decide(self.state, command, actor=actor, now=self.now)
        for event in events:
            self.state = apply(self.state, event)
        self.log.extend(events)
        return events

    def join(self, p: Participant) -> list[Event]:
        return self.do(p.user_id, c.Join(p))


def full_room() -> Room:
    room = Room()
    room.join(CHAIR)
    room.join(RADIO)
    room.join(SURGEON)
    return room
