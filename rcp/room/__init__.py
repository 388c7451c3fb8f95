"""The live meeting room: presence, floor control, synchronised view, pointer, event log (issue 4).

Pure core: :mod:`rcp.room.events`, :mod:`rcp.room.commands`, :mod:`rcp.room.state` (reducer).
Edges: :mod:`rcp.room.log` (room_events table), :mod:`rcp.room.bus` (memory / Redis), :mod:`rcp.room.live`
(one live room per node), :mod:`rcp.room.connection` (one participant, any transport), :mod:`rcp.room.socket`
and :mod:`rcp.room.routes` (WebSocket ``/ws/meetings/{id}``, room page, attendance), :mod:`rcp.room.decisions`
(the decision written in the room: live field events, attendance for the quorum, key images; issue 6).

For the app's lifespan::

    from rcp.room import open_rooms
    async with open_rooms(settings, db, media=media_hub) as rooms:
        app.state.rooms = rooms
        yield
"""

from __future__ import annotations

from rcp.room.attendance import Attendance, Stay, attendance
from rcp.room.connection import Connection, RoomConfig
from rcp.room.live import LiveRoom, Rooms, open_rooms
from rcp.room.log import EventLog, MemoryEventLog, SqlEventLog, meeting_attendance
from rcp.room.state import AgendaItem, RoomState, apply, decide

__all__ = [
    "AgendaItem",
    "Attendance",
    "Connection",
    "EventLog",
    "LiveRoom",
    "MemoryEventLog",
    "RoomConfig",
    "RoomState",
    "Rooms",
    "SqlEventLog",
    "Stay",
    "apply",
    "attendance",
    "decide",
    "meeting_attendance",
    "open_rooms",
]
