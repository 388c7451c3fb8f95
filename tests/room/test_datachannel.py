"""The same room messages over the WebRTC data channels (aiortc client ↔ media/ hub), WebSocket for signalling."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from media.synthetic import SyntheticParticipant
from rcp.config import Settings
from rcp.db import Database
from tests.room.client import RoomClient, cookies_for
from tests.room.node import room_app
from tests.room.people import RoomPeople
from tests.servers import ServerThread, until


@pytest.fixture(scope="module")
def media_server(settings: Settings, db: Database) -> Iterator[ServerThread]:
    node = ServerThread(room_app(settings, media=True)).start()
    try:
        yield node
    finally:
        node.close()


async def test_view_changes_arrive_in_order_on_the_data_channel(
    media_server: ServerThread, room_people: RoomPeople
) -> None:
    meeting_id = room_people.meeting.id
    cookies = await cookies_for(media_server.url, room_people.users)
    chair = await RoomClient.open(media_server.url, cookies["chair"], meeting_id)
    follower = await RoomClient.open(media_server.url, cookies["oncologist"], meeting_id)
    peer = SyntheticParticipant("follower", slots=0, video=False, audio=False)
    try:
        assert follower.welcome["rtc"] is True
        await chair.send({"type": "floor.take"})
        await follower.send({"type": "rtc.offer", "sdp": await peer.offer()})
        await follower.wait_for(lambda c: any(f["type"] == "rtc.answer" for f in c.frames))
        answer = next(f for f in follower.frames if f["type"] == "rtc.answer")
        await peer.accept(answer["sdp"])
        await until(lambda: peer.channels["view"].readyState == "open", "the view channel open")
        # The client says which path it uses; that command itself travels on the data channel.
        peer.channels["view"].send(json.dumps({"type": "path", "path": "dc"}))
        await chair.wait_for(
            lambda c: any(e["event"] == "participant.path" and e["path"] == "dc" for e in c.events)
        )

        for index in range(1, 31):
            await chair.send({"type": "view", "slice": index})
        await chair.send({"type": "pointer", "p": [5.0, 6.0, 30]})

        def dc_events() -> list[dict[str, object]]:
            frames = [json.loads(m) for m in peer.messages["view"]]
            return [f for f in frames if f.get("type") == "event"]

        await until(
            lambda: any(e.get("event") == "view.changed" and e["view"]["slice"] == 30 for e in dc_events()),  # type: ignore[index]
            "slice 30 on the view channel",
        )
        slices = [e["view"]["slice"] for e in dc_events() if e["event"] == "view.changed"]  # type: ignore[index]
        assert slices == list(range(1, 31))
        seqs = [e["seq"] for e in dc_events()]
        assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
        # The pointer arrives on the unordered channel.
        await until(lambda: bool(peer.messages["pointer"]), "the pointer on its channel")
        assert json.loads(peer.messages["pointer"][-1])["s"][-1][1:] == [5.0, 6.0, 30]
    finally:
        await peer.close()
        await follower.close()
        await chair.close()
