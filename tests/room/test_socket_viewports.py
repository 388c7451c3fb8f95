"""A 1x2 layout over real WebSockets: both viewports reach followers and late joiners, the pointer its viewport."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from rcp.config import Settings
from rcp.db import Database
from tests.room.client import RoomClient, session_cookie
from tests.room.node import room_app
from tests.room.people import RoomPeople
from tests.servers import ServerThread


@pytest.fixture(scope="module")
def layout_server(settings: Settings, db: Database) -> Iterator[ServerThread]:
    node = ServerThread(room_app(settings)).start()
    try:
        yield node
    finally:
        node.close()


@pytest.fixture
async def clients() -> AsyncIterator[list[RoomClient]]:
    opened: list[RoomClient] = []
    yield opened
    await asyncio.gather(*(c.close() for c in opened), return_exceptions=True)


async def test_both_viewports_of_a_side_by_side_layout_reach_every_follower(
    layout_server: ServerThread, room_people: RoomPeople, clients: list[RoomClient]
) -> None:
    meeting_id = room_people.meeting.id
    url = layout_server.url
    people = room_people.users

    async def join(name: str) -> RoomClient:
        user = people[name]
        client = await RoomClient.open(url, await session_cookie(url, user.username, user.password), meeting_id)
        clients.append(client)
        return client

    chair = await join("chair")
    radio = await join("radiologist")
    surgeon = await join("surgeon")
    radio_id = radio.welcome["user_id"]
    await chair.send({"type": "floor.take"})
    await chair.send({"type": "floor.handover", "to": radio_id})
    await surgeon.wait_for(lambda c: any(e["user_id"] == radio_id for e in c.of("floor.granted")))

    # Prior (right) next to current (left), then the presenter scrolls the prior only.
    await radio.send(
        {
            "type": "view",
            "layout": "1x2",
            "viewports": [
                {"study_uid": "1.2.840.10", "series_uid": "1.2.840.10.1", "slice": 4},
                {
                    "study_uid": "1.2.840.9",
                    "series_uid": "1.2.840.9.1",
                    "slice": 2,
                    "window_center": -600,
                    "window_width": 1500,
                },
            ],
        }
    )
    for index in range(3, 10):
        await radio.send({"type": "view", "viewports": [{}, {"slice": index}]})

    def right_slice(c: RoomClient) -> int | None:
        views = c.of("view.changed")
        return views[-1]["view"]["others"][0]["slice"] if views else None

    await surgeon.wait_for(lambda c: right_slice(c) == 9)
    view: dict[str, Any] = surgeon.of("view.changed")[-1]["view"]
    assert (view["layout"], view["slice"], view["series_uid"]) == ("1x2", 4, "1.2.840.10.1")
    assert view["others"] == [
        {
            "study_uid": "1.2.840.9",
            "series_uid": "1.2.840.9.1",
            "slice": 9,
            "window_center": -600.0,
            "window_width": 1500.0,
            "zoom": 1.0,
            "pan": None,
            "invert": False,
        }
    ]

    # More viewports than the layout shows: refused with the field named, nothing changes.
    await radio.send({"type": "view", "id": 3, "viewports": [{}, {}, {"slice": 1}]})
    await radio.wait_for(lambda c: any(e.get("ref") == 3 for e in c.errors))
    error = next(e for e in radio.errors if e.get("ref") == 3)
    assert error["error"] == "invalid" and "viewports" in error["fields"]

    # The pointer over the right viewport says so; over the left one it stays four items.
    await radio.send({"type": "pointer", "p": [10.0, 20.5, 9, 1]})
    await surgeon.wait_for(lambda c: bool(c.pointers) and c.pointers[-1] == [radio_id, 10.0, 20.5, 9, 1])
    await radio.send({"type": "pointer", "p": [11.0, 21.0, 4]})
    await surgeon.wait_for(lambda c: c.pointers[-1] == [radio_id, 11.0, 21.0, 4])

    # A late joiner's snapshot holds the same two viewports.
    late = await join("oncologist")
    await late.wait_for(lambda c: c.snapshot is not None)
    assert late.snapshot is not None and late.snapshot["view"] == view
