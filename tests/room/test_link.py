"""A participant whose heartbeat stops is shown "unstable" to everybody before they are shown gone (issue 15, item 4).

Real WebSockets against a real uvicorn server on loopback: the scripted client stops answering the server's pings
(as a page behind a cut link does: its frames no longer arrive), the chair's client reads the presence list.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest

from rcp.config import Settings
from rcp.db import Database
from rcp.room import commands as c
from rcp.room.connection import RoomConfig
from rcp.room.events import Participant, ParticipantJoined, ParticipantLeft, ParticipantLink
from rcp.room.state import RoomState, apply, decide, snapshot_from_dict, snapshot_to_dict
from tests.room.client import RoomClient, cookies_for
from tests.room.node import room_app
from tests.room.people import RoomPeople
from tests.servers import ServerThread

NOW = datetime(2026, 12, 3, 18, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def link_server(settings: Settings, db: Database) -> Iterator[ServerThread]:
    # Unstable after 2 s of silence (the default), gone after 6 s: room enough between them on a busy machine.
    node = ServerThread(room_app(settings, config=RoomConfig(heartbeat_timeout_s=6.0))).start()
    try:
        yield node
    finally:
        node.close()


@pytest.fixture
async def opened() -> AsyncIterator[list[RoomClient]]:
    clients: list[RoomClient] = []
    yield clients
    await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)


def _links(client: RoomClient, user_id: int) -> list[bool]:
    return [e["unstable"] for e in client.of("participant.link") if e["user_id"] == user_id]


def _left(client: RoomClient, user_id: int) -> list[str]:
    return [e["reason"] for e in client.of("participant.left") if e["user_id"] == user_id]


async def test_a_silent_participant_is_unstable_before_gone(
    link_server: ServerThread, room_people: RoomPeople, opened: list[RoomClient]
) -> None:
    cookies = await cookies_for(link_server.url, room_people.users)
    meeting_id = room_people.meeting.id
    chair = await RoomClient.open(link_server.url, cookies["chair"], meeting_id)
    opened.append(chair)
    silent = await RoomClient.open(link_server.url, cookies["surgeon"], meeting_id, answer_pings=False)
    opened.append(silent)
    user = silent.welcome["user_id"]

    await chair.wait_for(lambda c: _links(c, user) == [True] or bool(_left(c, user)))
    assert _links(chair, user) == [True] and not _left(chair, user), "unstable first, while still present"
    await chair.wait_for(lambda c: _left(c, user) == ["timeout"])
    # Leaving clears the mark: a gone participant is gone, not unstable (the snapshot a late joiner gets agrees).
    late = await RoomClient.open(link_server.url, cookies["oncologist"], meeting_id)
    opened.append(late)
    await late.wait_for(lambda c: c.snapshot is not None)  # the snapshot may follow the welcome
    assert late.snapshot is not None
    seat = next(p for p in late.snapshot["participants"] if p["user_id"] == user)
    assert (seat["connected"], seat["unstable"]) == (False, False)


async def test_an_unstable_participant_heard_again_is_stable_and_never_gone(
    link_server: ServerThread, room_people: RoomPeople, opened: list[RoomClient]
) -> None:
    cookies = await cookies_for(link_server.url, room_people.users)
    meeting_id = room_people.meeting.id
    chair = await RoomClient.open(link_server.url, cookies["chair"], meeting_id)
    opened.append(chair)
    flaky = await RoomClient.open(link_server.url, cookies["radiologist"], meeting_id, answer_pings=False)
    opened.append(flaky)
    user = flaky.welcome["user_id"]

    await chair.wait_for(lambda c: _links(c, user) == [True] or bool(_left(c, user)))
    assert _links(chair, user) == [True]
    # The link heals: the page's own heartbeat gets through again.
    flaky.answer_pings = True
    await flaky.send({"type": "ping", "t": 1})
    await flaky.wait_for(lambda c: any(f.get("type") == "pong" and f.get("t") == 1 for f in c.frames))
    await chair.wait_for(lambda c: _links(c, user) == [True, False] or bool(_left(c, user)))
    assert _links(chair, user) == [True, False] and not _left(chair, user)


def test_the_reducer_marks_only_the_current_connection() -> None:
    """``participant.link`` about a superseded connection changes nothing; a rejoin starts stable."""
    who = Participant(user_id=7, display_name="Dr B", connection="new")
    state = apply(RoomState(meeting_id=1), ParticipantJoined(seq=1, at=NOW, participant=who))
    assert decide(state, c.NoteLink("old", unstable=True), actor=7, now=NOW) == []
    events = decide(state, c.NoteLink("new", unstable=True), actor=7, now=NOW)
    assert events == [ParticipantLink(seq=2, at=NOW, actor=7, user_id=7, connection="new", unstable=True)]
    state = apply(state, events[0])
    assert state.participants[7].unstable
    assert decide(state, c.NoteLink("new", unstable=True), actor=7, now=NOW) == [], "said once"
    assert snapshot_from_dict(snapshot_to_dict(state)) == state
    state = apply(state, ParticipantJoined(seq=3, at=NOW, participant=Participant(
        user_id=7, display_name="Dr B", connection="newer")))
    assert not state.participants[7].unstable
    state = apply(state, ParticipantLink(seq=4, at=NOW, actor=7, user_id=7, connection="new", unstable=True))
    assert not state.participants[7].unstable, "the old connection's news is stale"
    state = apply(state, ParticipantLeft(seq=5, at=NOW, actor=7, user_id=7, connection="newer"))
    assert not state.participants[7].connected
