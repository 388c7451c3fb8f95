"""The live room takes the agenda as it is now before the chair moves it (issue 14, item 7): a case deferred or
withdrawn while the room is open is no longer offered (rcp.scheduling.agenda)."""

from __future__ import annotations

import pytest

from rcp.errors import NotFound
from rcp.room import commands as c
from rcp.room.bus import MemoryBus
from rcp.room.events import Participant
from rcp.room.live import LiveRoom
from rcp.room.log import MemoryEventLog
from rcp.room.state import AgendaItem


@pytest.mark.asyncio(loop_scope="session")
async def test_a_case_deferred_while_the_room_is_open_is_not_offered() -> None:
    agenda = [AgendaItem(10), AgendaItem(11), AgendaItem(12)]

    async def loader(meeting_id: int) -> tuple[AgendaItem, ...]:
        assert meeting_id == 7
        return tuple(agenda)

    room = LiveRoom(7, log=MemoryEventLog(), bus=MemoryBus(), channel="t:7", node_id="n", agenda=tuple(agenda),
                    agenda_loader=loader)
    await room.open()
    try:
        chair = Participant(user_id=1, display_name="Coordinatrice", role="coordinator", connection="c1")
        await room.execute(c.Join(chair), actor=1)
        await room.execute(c.SetCase(10), actor=1)
        agenda.remove(AgendaItem(11))  # the coordinator defers case 11 from the meeting page
        with pytest.raises(NotFound):
            await room.execute(c.SetCase(11), actor=1)
        await room.execute(c.NextCase(), actor=1)
        assert room.state.case_id == 12  # the next case on the agenda, past the deferred one
    finally:
        await room.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_deferring_the_current_case_leaves_next_case_going_on_from_it() -> None:
    agenda = [AgendaItem(10), AgendaItem(11), AgendaItem(12)]

    async def loader(meeting_id: int) -> tuple[AgendaItem, ...]:
        return tuple(agenda)

    room = LiveRoom(8, log=MemoryEventLog(), bus=MemoryBus(), channel="t:8", node_id="n", agenda=tuple(agenda),
                    agenda_loader=loader)
    await room.open()
    try:
        chair = Participant(user_id=1, display_name="Coordinatrice", role="coordinator", connection="c1")
        await room.execute(c.Join(chair), actor=1)
        await room.execute(c.SetCase(11), actor=1)
        agenda.remove(AgendaItem(11))  # deferred while the board discusses it
        await room.execute(c.NextCase(), actor=1)
        assert room.state.case_id == 12  # not back to case 10
        with pytest.raises(NotFound):
            await room.execute(c.SetCase(11), actor=1)  # and once left, it is not offered again
    finally:
        await room.close()
