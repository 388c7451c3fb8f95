"""The room over real WebSockets against a real uvicorn server on loopback (SQLite log, in-process bus)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from rcp.config import Settings
from rcp.db import Database
from rcp.room.connection import RoomConfig
from rcp.room.log import SqlEventLog, meeting_attendance
from tests.room.client import RoomClient, cookies_for
from tests.room.node import room_app
from tests.room.people import RoomPeople
from tests.servers import ServerThread

FOLLOWERS = ("surgeon", "oncologist", "radiotherapist", "pulmonologist")


@pytest.fixture(scope="module")
def room_server(settings: Settings, db: Database) -> Iterator[ServerThread]:
    node = ServerThread(room_app(settings, config=RoomConfig(floor_grace_s=2.0))).start()
    try:
        yield node
    finally:
        node.close()


@pytest.fixture
def meeting_id(room_people: RoomPeople) -> int:
    return room_people.meeting.id


@pytest.fixture
async def cookies(room_server: ServerThread, room_people: RoomPeople) -> dict[str, str]:
    return await cookies_for(room_server.url, room_people.users)


@pytest.fixture
async def opened() -> AsyncIterator[list[RoomClient]]:
    clients: list[RoomClient] = []
    yield clients
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


async def _open(
    opened: list[RoomClient], url: str, cookie: str, meeting_id: int, **kwargs: object
) -> RoomClient:
    client = await RoomClient.open(url, cookie, meeting_id, **kwargs)  # type: ignore[arg-type]
    opened.append(client)
    return client


async def test_presenter_and_followers_see_view_changes_in_order(
    room_server: ServerThread, cookies: dict[str, str], meeting_id: int, opened: list[RoomClient], db: Database
) -> None:
    chair = await _open(opened, room_server.url, cookies["chair"], meeting_id)
    radio = await _open(opened, room_server.url, cookies["radiologist"], meeting_id)
    followers = [await _open(opened, room_server.url, cookies[n], meeting_id) for n in FOLLOWERS]
    everybody = [chair, radio, *followers]
    radio_id = radio.welcome["user_id"]
    await chair.wait_for(lambda c: sum(1 for p in _present(c)) >= 6)

    await radio.send({"type": "floor.request"})
    await chair.wait_for(lambda c: bool(c.of("floor.requested")))
    await chair.send({"type": "floor.handover", "to": radio_id})
    await radio.wait_for(lambda c: any(e["user_id"] == radio_id for e in c.of("floor.granted")))

    for index in range(1, 21):
        await radio.send(
            {"type": "view", "study_uid": "1.2.3", "slice": index, "window_center": 40, "window_width": 400}
        )
    for client in everybody:
        await client.wait_for(lambda c: any(e["view"]["slice"] == 20 for e in c.of("view.changed")))
    expected = list(range(1, 21))
    for client in everybody:
        assert [e["view"]["slice"] for e in client.of("view.changed")][-20:] == expected
    # Everybody saw the same events with the same numbers, gap-free (the client asserts no gap).
    reference = [(e["seq"], e["event"]) for e in chair.events if e["seq"] > followers[-1].events[0]["seq"]]
    for client in followers:
        assert [
            (e["seq"], e["event"]) for e in client.events if e["seq"] > followers[-1].events[0]["seq"]
        ] == reference

    # The presenter points: followers get compact samples [user, col, row, slice].
    await radio.send({"type": "pointer", "x": 120.25, "y": 88.5, "slice": 20})
    await followers[0].wait_for(lambda c: bool(c.pointers))
    assert followers[0].pointers[-1] == [radio_id, 120.2, 88.5, 20] or followers[0].pointers[-1][1:] == [
        120.3,
        88.5,
        20,
    ]

    # Attendance for the minutes comes from the same log.
    people = await meeting_attendance(SqlEventLog(db), meeting_id)
    assert radio_id in people and people[radio_id].stays[-1].left_at is None


def _present(client: RoomClient) -> list[int]:
    present: dict[int, bool] = {}
    if client.snapshot:
        present = {p["user_id"]: p["connected"] for p in client.snapshot["participants"]}
    for event in client.events:
        if event["event"] == "participant.joined":
            present[event["participant"]["user_id"]] = True
        elif event["event"] == "participant.left":
            present[event["user_id"]] = False
    return [u for u, here in present.items() if here]


async def test_follower_reconnects_and_catches_up_without_snapshot(
    room_server: ServerThread, cookies: dict[str, str], meeting_id: int, opened: list[RoomClient]
) -> None:
    chair = await _open(opened, room_server.url, cookies["chair"], meeting_id)
    await chair.send({"type": "floor.take"})
    follower = await _open(opened, room_server.url, cookies["oncologist"], meeting_id)
    await chair.send({"type": "view", "slice": 100})
    await follower.wait_for(lambda c: any(e["view"]["slice"] == 100 for e in c.of("view.changed")))
    last = follower.seq
    await follower.close()
    for index in range(101, 106):
        await chair.send({"type": "view", "slice": index})
    await chair.wait_for(lambda c: any(e["view"]["slice"] == 105 for e in c.of("view.changed")))

    back = await _open(opened, room_server.url, cookies["oncologist"], meeting_id, last_seq=last)
    await back.wait_for(lambda c: any(f["type"] == "resumed" for f in c.frames))
    assert back.snapshot is None
    assert [e["view"]["slice"] for e in back.of("view.changed")] == [101, 102, 103, 104, 105]
    await back.wait_for(lambda c: c.seq >= chair.seq)


async def test_bad_messages_get_an_error_frame_and_the_connection_stays(
    room_server: ServerThread, cookies: dict[str, str], meeting_id: int, opened: list[RoomClient]
) -> None:
    chair = await _open(opened, room_server.url, cookies["chair"], meeting_id)
    await chair.send({"type": "floor.take"})
    surgeon = await _open(opened, room_server.url, cookies["surgeon"], meeting_id)
    await surgeon.ws.send("this is not json")
    await surgeon.send({"type": "view", "slice": -3, "id": 7})
    await surgeon.send({"type": "view", "slice": 3})  # not the presenter
    await surgeon.send({"type": "warp.drive"})
    await surgeon.wait_for(lambda c: len(c.errors) >= 4)
    assert [e["error"] for e in surgeon.errors[:4]] == ["bad_request", "invalid", "forbidden", "bad_request"]
    assert surgeon.errors[1]["ref"] == 7 and "slice" in surgeon.errors[1]["fields"]
    # Nested thousands deep: refused before it is parsed (a RecursionError once, logged as the server's failure).
    await surgeon.ws.send('{"type": "view", "x": ' + "[" * 5000 + "]" * 5000 + "}")
    await surgeon.wait_for(lambda c: len(c.errors) >= 5)
    assert surgeon.errors[4]["error"] == "bad_request" and "nested" in surgeon.errors[4]["message"]
    # Still connected and useful.
    await surgeon.send({"type": "mode", "mode": "free"})
    await surgeon.wait_for(lambda c: any(e["event"] == "participant.mode" for e in c.events))
    assert not surgeon.closed.is_set()


async def test_a_refusal_reads_in_the_participants_language(
    room_server: ServerThread, cookies: dict[str, str], meeting_id: int, opened: list[RoomClient]
) -> None:
    """Issue 15, item 2: the room shows a refused command's message (room.js), so it comes in the reader's language
    (the socket's locale: here the rcp_locale cookie), from the catalogs (rcp.room.connection.error_frame)."""
    chair = await _open(opened, room_server.url, cookies["chair"], meeting_id)
    await chair.send({"type": "floor.take"})
    french = await _open(opened, room_server.url, cookies["surgeon"] + "; rcp_locale=fr", meeting_id)
    english = await _open(opened, room_server.url, cookies["radiologist"] + "; rcp_locale=en", meeting_id)
    for client in (french, english):
        await client.send({"type": "floor.release"})
        await client.wait_for(lambda c: len(c.errors) >= 1)
    assert french.errors[0]["error"] == english.errors[0]["error"] == "conflict"
    assert english.errors[0]["message"] == "You do not have the floor."
    assert french.errors[0]["message"] == "Vous n'avez pas la parole."


async def test_flooding_client_is_throttled_not_the_room(
    room_server: ServerThread, cookies: dict[str, str], meeting_id: int, opened: list[RoomClient]
) -> None:
    chair = await _open(opened, room_server.url, cookies["chair"], meeting_id)
    flooder = await _open(opened, room_server.url, cookies["pulmonologist"], meeting_id)
    for _ in range(200):
        await flooder.send({"type": "floor.request"})
    await flooder.wait_for(lambda c: any(e["error"] == "too_many_requests" for e in c.errors))
    await chair.send({"type": "floor.take"})
    await chair.send({"type": "view", "slice": 7})
    await flooder.wait_for(lambda c: any(e["view"]["slice"] == 7 for e in c.of("view.changed")))
    assert not flooder.closed.is_set()


async def test_uninvited_user_is_refused_with_a_close_code(
    room_server: ServerThread, cookies: dict[str, str], meeting_id: int, opened: list[RoomClient]
) -> None:
    stranger = await _open(opened, room_server.url, cookies["outsider"], meeting_id)
    await stranger.closed.wait()
    assert stranger.close_code == 4404
    assert stranger.errors and stranger.errors[0]["error"] == "not_found"
    anonymous = await _open(opened, room_server.url, "rcp_session=forged", meeting_id)
    await anonymous.closed.wait()
    assert anonymous.close_code == 4401


async def test_silent_participant_is_gone_and_floor_returns_to_coordinator(
    room_server: ServerThread, cookies: dict[str, str], meeting_id: int, opened: list[RoomClient]
) -> None:
    chair = await _open(opened, room_server.url, cookies["chair"], meeting_id)
    mute = await _open(opened, room_server.url, cookies["radiotherapist"], meeting_id, answer_pings=False)
    mute_id = mute.welcome["user_id"]
    await chair.wait_for(lambda c: mute_id in _present(c))
    await chair.send({"type": "floor.handover", "to": mute_id})
    await chair.wait_for(lambda c: any(e["user_id"] == mute_id for e in c.of("floor.granted")))
    # The silent client stops answering pings: the server ends it, everybody sees it gone (no ghost) ...
    await chair.wait_for(
        lambda c: any(e["user_id"] == mute_id and e["reason"] == "timeout" for e in c.of("participant.left"))
    )
    assert mute_id not in _present(chair)
    # ... and after the grace period the floor is the coordinator's again.
    chair_id = chair.welcome["user_id"]
    await chair.wait_for(
        lambda c: any(e["reason"] == "grace" and e["user_id"] == chair_id for e in c.of("floor.granted"))
    )


async def test_second_connection_supersedes_the_first_without_ghost(
    room_server: ServerThread, cookies: dict[str, str], meeting_id: int, opened: list[RoomClient]
) -> None:
    chair = await _open(opened, room_server.url, cookies["chair"], meeting_id)
    wifi = await _open(opened, room_server.url, cookies["pulmonologist"], meeting_id)
    user = wifi.welcome["user_id"]
    lte = await _open(opened, room_server.url, cookies["pulmonologist"], meeting_id, last_seq=wifi.seq)
    await wifi.closed.wait()
    assert wifi.close_code == 4409
    await chair.wait_for(
        lambda c: sum(1 for e in c.of("participant.joined") if e["participant"]["user_id"] == user) >= 2
    )
    # A marker after the takeover, sent on the new connection: once the chair has it, everything the server did
    # before it (a "left" for the superseded socket included) has reached the chair, in order.
    await lte.send({"type": "floor.request"})
    await chair.wait_for(lambda c: any(e["user_id"] == user for e in c.of("floor.requested")))
    await lte.wait_for(lambda c: any(e["user_id"] == user for e in c.of("floor.requested")))
    assert not any(e["user_id"] == user for e in chair.of("participant.left")), "the superseded socket left a ghost"
    assert user in _present(chair)
    assert not lte.closed.is_set()


async def test_client_that_stops_reading_is_dropped(
    settings: Settings, db: Database, cookies: dict[str, str], meeting_id: int, opened: list[RoomClient]
) -> None:
    # Only the send queue can end it here: the heartbeat is made too lenient to notice first.
    config = RoomConfig(
        queue_size=16,
        send_timeout_s=1.0,
        command_rate=5000,
        command_burst=5000,
        heartbeat_timeout_s=120,
        presence_timeout_s=120,
    )
    node = ServerThread(room_app(settings, config=config)).start()
    try:
        chair = await _open(opened, node.url, cookies["chair"], meeting_id)
        await chair.send({"type": "floor.take"})
        sleeper = await _open(opened, node.url, cookies["surgeon"], meeting_id, rcvbuf=4096)
        label = "x" * 450
        points = [[float(i), float(i)] for i in range(60)]
        for i in range(40):
            await chair.send(
                {
                    "type": "mark.add",
                    "kind": "annotation",
                    "sop_uid": "1.2.3",
                    "points": points,
                    "label": label,
                }
            )
        await chair.wait_for(lambda c: len(c.of("mark.added")) >= 40)
        sleeper_ws = sleeper.ws
        sleeper._reader.cancel()  # stops reading, but keeps asking for ~100 kB snapshots: they pile up
        for _ in range(300):
            await sleeper_ws.send('{"type": "resume", "last_seq": 0}')
            if chair.of("participant.left"):
                break
        await chair.wait_for(lambda c: any(e["event"] == "participant.left" for e in c.events))
        assert [e["reason"] for e in chair.of("participant.left")] == ["dropped"]
        assert not chair.closed.is_set()
        sleeper_ws.transport.abort()
    finally:
        node.close()


async def test_room_page_renders_for_an_invited_participant(
    room_server: ServerThread, cookies: dict[str, str], meeting_id: int
) -> None:
    import httpx

    async with httpx.AsyncClient(
        base_url=room_server.url, headers={"Cookie": cookies["radiologist"]}
    ) as http:
        page = await http.get(f"/meetings/{meeting_id}/room")
        assert page.status_code == 200, page.text[:500]
        assert 'id="room-data"' in page.text and "/static/js/room.js" in page.text
        refused = await http.get(f"/meetings/{meeting_id}/room", headers={"Cookie": cookies["outsider"]})
        assert refused.status_code == 404
        js = await http.get("/static/js/room.js")
        assert js.status_code == 200


async def test_server_restart_loses_nothing_but_the_pointer(
    settings: Settings, cookies: dict[str, str], meeting_id: int, opened: list[RoomClient]
) -> None:
    first = ServerThread(room_app(settings)).start()
    try:
        chair = await _open(opened, first.url, cookies["chair"], meeting_id)
        await chair.send({"type": "floor.take"})
        await chair.send({"type": "view", "slice": 77, "layout": "1x2"})
        await chair.wait_for(lambda c: any(e["view"]["slice"] == 77 for e in c.of("view.changed")))
        before = chair.seq
    finally:
        first.close()
    second = ServerThread(room_app(settings)).start()
    try:
        late = await _open(opened, second.url, cookies["oncologist"], meeting_id)
        await late.wait_for(lambda c: c.snapshot is not None)
        assert late.snapshot["seq"] >= before
        assert late.snapshot["view"]["slice"] == 77 and late.snapshot["view"]["layout"] == "1x2"
        # The chair comes back where it was: only the events it missed, no snapshot.
        back = await _open(opened, second.url, cookies["chair"], meeting_id, last_seq=before)
        await back.wait_for(lambda c: any(f["type"] == "resumed" for f in c.frames))
        assert back.snapshot is None
    finally:
        second.close()
