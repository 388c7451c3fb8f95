"""The videoconference wired into the live room (issue 5): pause a video, mute / camera-off, active speaker,
reconnect.

First the pure parts (reducer, parser, the connection's limits), then the room app served for real with media/
(a MediaHub per node) and real aiortc participants (media.synthetic) signalling over the room's WebSocket, as the
browser's rtc.js does.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from starlette.applications import Starlette

from media.hub import MediaHub
from media.synthetic import SyntheticParticipant, vp8_clip
from rcp.config import Settings
from rcp.db import Database
from rcp.errors import BadRequest, Invalid
from rcp.room import commands as c
from rcp.room.bus import MemoryBus
from rcp.room.connection import Connection, RoomConfig
from rcp.room.events import ParticipantMedia, event_from_dict, event_from_parts, event_to_dict, payload_of
from rcp.room.live import LiveRoom
from rcp.room.log import MemoryEventLog
from rcp.room.state import replay, snapshot_from_dict, snapshot_to_dict
from tests.factories import MadeMeeting, make_meeting
from tests.room.client import RoomClient, cookies_for
from tests.room.node import room_app
from tests.room.reducer import CHAIR, RADIO, SURGEON, full_room
from tests.servers import ServerThread, until

# --- pure: the reducer and the parser ------------------------------------------------------------------------


def test_set_media_is_an_event_applied_to_the_participant() -> None:
    room = full_room()
    events = room.do(RADIO.user_id, c.SetMedia(audio_muted=True, video_off=False))
    assert [type(e) for e in events] == [ParticipantMedia]
    event = events[0]
    assert isinstance(event, ParticipantMedia)
    assert (event.user_id, event.actor, event.audio_muted, event.video_off) == (2, 2, True, False)
    assert event.seq == room.state.seq
    radio = room.state.participants[RADIO.user_id]
    assert (radio.audio_muted, radio.video_off) == (True, False)
    others = [room.state.participants[p.user_id] for p in (CHAIR, SURGEON)]
    assert all(not p.audio_muted and not p.video_off for p in others)

    room.do(RADIO.user_id, c.SetMedia(audio_muted=False, video_off=True))
    radio = room.state.participants[RADIO.user_id]
    assert (radio.audio_muted, radio.video_off) == (False, True)


def test_set_media_without_a_change_numbers_nothing() -> None:
    room = full_room()
    seq = room.state.seq
    assert room.do(RADIO.user_id, c.SetMedia(audio_muted=False, video_off=False)) == []
    room.do(RADIO.user_id, c.SetMedia(audio_muted=True, video_off=True))
    assert room.do(RADIO.user_id, c.SetMedia(audio_muted=True, video_off=True)) == []
    assert room.state.seq == seq + 1


def test_set_media_needs_presence() -> None:
    room = full_room()
    room.do(RADIO.user_id, c.Leave(RADIO.connection))
    from rcp.errors import Forbidden

    with pytest.raises(Forbidden):
        room.do(RADIO.user_id, c.SetMedia(audio_muted=True, video_off=False))


def test_a_new_connection_starts_with_what_its_join_says() -> None:
    # The joined event carries the new connection's values; a client applying it must agree with the server.
    room = full_room()
    room.do(RADIO.user_id, c.SetMedia(audio_muted=True, video_off=True))
    room.join(replace(RADIO, connection="c2-again"))
    radio = room.state.participants[RADIO.user_id]
    assert (radio.audio_muted, radio.video_off) == (False, False)
    # ... and the browser saying it again after the welcome is a change again.
    assert room.do(RADIO.user_id, c.SetMedia(audio_muted=True, video_off=True))


def test_participant_media_round_trips_on_the_wire_in_the_log_and_in_snapshots() -> None:
    room = full_room()
    room.do(SURGEON.user_id, c.SetMedia(audio_muted=True, video_off=True))
    event = room.log[-1]
    wire = event_to_dict(event)
    assert {k: v for k, v in wire.items() if k != "at"} == {
        "seq": event.seq,
        "event": "participant.media",
        "actor": 3,
        "user_id": 3,
        "audio_muted": True,
        "video_off": True,
    }
    assert event_from_dict(json.loads(json.dumps(wire))) == event
    # What SqlEventLog stores (a JSON payload column) and reads back.
    stored = json.loads(json.dumps(payload_of(event)))
    assert event_from_parts(event.name, stored, seq=event.seq, at=event.at, actor=event.actor) == event
    # A late joiner's snapshot shows it, and a restart folding the log ends in the same state.
    snapshot = json.loads(json.dumps(snapshot_to_dict(room.state)))
    surgeon = next(p for p in snapshot["participants"] if p["user_id"] == 3)
    assert (surgeon["audio_muted"], surgeon["video_off"]) == (True, True)
    assert snapshot_from_dict(snapshot) == room.state
    assert replay(room.initial, [event_from_dict(event_to_dict(e)) for e in room.log]) == room.state


def test_logged_joins_from_before_the_media_fields_still_load() -> None:
    room = full_room()
    joined = event_to_dict(room.log[0])
    for key in ("audio_muted", "video_off"):
        del joined["participant"][key]
    assert event_from_dict(joined) == room.log[0]


@pytest.mark.parametrize(
    ("message", "field_name"),
    [
        ({"type": "media.state", "audio_muted": "yes", "video_off": False}, "audio_muted"),
        ({"type": "media.state", "audio_muted": True, "video_off": 0}, "video_off"),
        ({"type": "media.state", "audio_muted": True}, "video_off"),
        ({"type": "media.state", "video_off": None, "audio_muted": False}, "video_off"),
    ],
)
def test_media_state_parsing_names_the_field(message: dict[str, Any], field_name: str) -> None:
    with pytest.raises(Invalid) as caught:
        c.parse_command(message)
    assert field_name in caught.value.fields
    assert f"'{field_name}' must be true or false" in caught.value.message


def test_media_state_parses() -> None:
    parsed = c.parse_command({"type": "media.state", "audio_muted": False, "video_off": True})
    assert parsed == c.SetMedia(audio_muted=False, video_off=True)


# --- the connection and the live room, in process, with a real RoomMedia ----------------------------------------


def _live_room(media: Any) -> LiveRoom:
    return LiveRoom(1, log=MemoryEventLog(), bus=MemoryBus(), channel="t:1", node_id="n", media=media)


def _queued(connection: Connection) -> list[dict[str, Any]]:
    frames = []
    while not connection.outbox.empty():
        raw = connection.outbox.get_nowait()
        assert raw is not None
        frames.append(json.loads(raw))
    return frames


async def test_media_pause_needs_media_on_the_server() -> None:
    room = _live_room(None)
    connection = Connection(room, RADIO, config=RoomConfig())
    await connection.handle({"type": "media.pause", "participant": 3, "paused": True})
    [frame] = _queued(connection)
    assert frame["type"] == "error" and frame["error"] == BadRequest.code
    assert "WebRTC is not available" in frame["message"]
    assert not connection.closed.is_set()


async def test_a_hidden_tile_flurry_fits_the_command_bucket() -> None:
    # Scrolling a grid of tiles hides and shows many at once: 60 pause/resume messages in the same instant
    # pass (burst 60), the 61st is refused, and a second later 30 more pass (30 per second).
    hub = MediaHub()
    try:
        now = [100.0]
        room = _live_room(hub.room("flurry"))
        connection = Connection(room, RADIO, config=RoomConfig(), media=room.media, clock=lambda: now[0])
        for index in range(60):
            await connection.handle(
                {"type": "media.pause", "participant": 3 + index % 6, "paused": index % 2 == 0}
            )
        assert _queued(connection) == []
        await connection.handle({"type": "media.pause", "participant": 3, "paused": False})
        assert [f["error"] for f in _queued(connection)] == ["too_many_requests"]
        now[0] += 1.0
        for _ in range(30):
            await connection.handle({"type": "media.pause", "participant": 3, "paused": False})
        assert _queued(connection) == []
    finally:
        await hub.close()


async def test_the_room_relays_speaker_changes_until_it_closes() -> None:
    hub = MediaHub()
    try:
        media = hub.room("speaker-wiring")
        room = _live_room(media)
        assert media.on_speaker is not None
        connection = Connection(room, RADIO, config=RoomConfig(), media=media)
        room.connections[connection.id] = connection
        media.on_speaker("3")
        media.on_speaker(None)
        assert _queued(connection) == [
            {"type": "speaker", "user_id": 3},
            {"type": "speaker", "user_id": None},
        ]
        await room.close()
        assert media.on_speaker is None, "a closed room must not be called"
    finally:
        await hub.close()


# --- the room app served for real, with real aiortc participants ------------------------------------------------


@dataclass
class Served:
    node: ServerThread
    app: Starlette

    @property
    def url(self) -> str:
        return self.node.url


@pytest.fixture(scope="module")
def media_server(settings: Settings, db: Database) -> Iterator[Served]:
    app = room_app(settings, media=True)
    node = ServerThread(app).start()
    try:
        yield Served(node, app)
    finally:
        node.close()


#: Who this module seats, by name, and the specialty each is invited for.
SEATED = {"radiologist": "radiologist", "oncologist": "medical_oncologist", "gastroenterologist": "gastroenterologist",
          "radiotherapist": "radiotherapist"}


@pytest.fixture
async def meeting(db: Database) -> MadeMeeting:
    """A meeting of the test's own: its participants come and go without meeting another test's."""
    return await make_meeting(db, invite=tuple(SEATED.values()), cases=1)


@pytest.fixture
def meeting_id(meeting: MadeMeeting) -> int:
    return meeting.id


@pytest.fixture
async def cookies(media_server: Served, meeting: MadeMeeting) -> dict[str, str]:
    return await cookies_for(media_server.url, {name: meeting.invitee(key) for name, key in SEATED.items()})


@dataclass
class Seat:
    """One participant as a browser is: the room's WebSocket, and an aiortc peer signalled over it."""

    client: RoomClient
    peer: SyntheticParticipant | None = None
    #: How many of the client's frames were looked at for ``media.slots`` (handed to the peer).
    seen: int = 0
    peers: list[SyntheticParticipant] = field(default_factory=list)

    @property
    def user_id(self) -> int:
        return int(self.client.welcome["user_id"])

    def slots(self) -> list[dict[str, Any]]:
        told = [f for f in self.client.frames if f["type"] == "media.slots"]
        return told[-1]["slots"] if told else []

    def received(self, publisher: Seat, kind: str = "video") -> int:
        """Frames this seat's peer received from ``publisher``'s ``kind`` (labelled by the latest media.slots)."""
        assert self.peer is not None
        frames = self.client.frames
        for frame in frames[self.seen :]:
            if frame["type"] == "media.slots":
                self.peer.on_media(frame)
        self.seen = len(frames)
        record = self.peer.showing(str(publisher.user_id), kind)
        return record.frames if record else 0

    async def offer(self, peer: SyntheticParticipant) -> None:
        """Send a fresh offer (rtc.js does after every welcome) and wait until the peer is connected."""
        self.peer = peer
        self.peers.append(peer)
        self.seen = 0
        before = len(self.client.frames)
        await self.client.send({"type": "rtc.offer", "sdp": await peer.offer()})
        await self.client.wait_for(lambda c: any(f["type"] == "rtc.answer" for f in c.frames[before:]))
        answer = next(f for f in self.client.frames[before:] if f["type"] == "rtc.answer")
        await peer.accept(answer["sdp"])
        await until(lambda: peer.pc.connectionState == "connected", f"{peer.name} connected")


@pytest.fixture(scope="module")
def clip() -> tuple[bytes, ...]:
    """Encode the synthetic camera's clip before any socket opens: encoding blocks this event loop for a while,
    long enough on a loaded machine for the server to drop our sockets as not answering its pings."""
    return vp8_clip(fps=30)  # the arguments ClipTrack uses (lru_cache keys on them)


@pytest.fixture
async def seats(
    media_server: Served, meeting_id: int, cookies: dict[str, str], clip: tuple[bytes, ...]
) -> AsyncIterator[Any]:
    opened: list[Seat] = []

    async def open_seat(username: str) -> Seat:
        seat = Seat(await RoomClient.open(media_server.url, cookies[username], meeting_id))
        assert seat.client.welcome, f"{username} was not welcomed: {seat.client.frames}"
        opened.append(seat)
        return seat

    try:
        yield open_seat
    finally:
        for seat in opened:
            await seat.client.close()
            for peer in seat.peers:
                await peer.close()
        # The room closes with its last connection: the next test starts from the log, not from this one.
        await until(lambda: media_server.app.state.rooms.get(meeting_id) is None, "the room closed")


def decoded_by(seat: Seat, publisher: Seat) -> int:
    """Video frames of ``publisher`` that ``seat``'s peer decoded (a peer made with ``decode=True``)."""
    seat.received(publisher)  # labels the slots
    assert seat.peer is not None
    record = seat.peer.showing(str(publisher.user_id))
    return record.decoded if record else 0


def _video_slot(seat: Seat, publisher: Seat) -> dict[str, Any] | None:
    return next(
        (s for s in seat.slots() if s["kind"] == "video" and s["participant"] == str(publisher.user_id)), None
    )


async def test_pausing_a_video_stops_forwarding_it_until_resumed(
    seats: Any, media_server: Served, meeting_id: int
) -> None:
    a: Seat = await seats("radiologist")
    b: Seat = await seats("oncologist")
    c_: Seat = await seats("gastroenterologist")
    await a.offer(SyntheticParticipant("a", slots=0, video=True, audio=True))
    await c_.offer(SyntheticParticipant("c", slots=0, video=True, audio=False))
    await b.offer(SyntheticParticipant("b", slots=2, video=False, audio=False))
    await until(
        lambda: b.received(a) > 10 and b.received(c_) > 10 and b.received(a, "audio") > 10,
        "b receives a's video and audio and c's video",
    )

    await b.client.send({"type": "media.pause", "participant": a.user_id, "paused": True})
    await until(
        lambda: (s := _video_slot(b, a)) is not None and s["paused"] is True, "b's slots show a paused"
    )
    assert _video_slot(b, c_) == {**(_video_slot(b, c_) or {}), "paused": False}
    assert b.client.errors == []
    # Paused at the forwarder, by its own counters: a's frames reach b's slot and are held back there, while c's
    # video and a's own audio keep flowing. (No waiting for frames in flight to land: b cannot have more of a's
    # video than was forwarded before the pause.)
    media = media_server.app.state.rooms.media.rooms[str(meeting_id)]
    slot = media.slot_showing(str(b.user_id), str(a.user_id), "video")
    assert slot is not None and slot.paused
    forwarded, withheld = slot.forwarded, slot.withheld
    c_at, audio_at = b.received(c_), b.received(a, "audio")
    await until(
        lambda: slot.withheld > withheld + 15
        and b.received(c_) > c_at + 15
        and b.received(a, "audio") > audio_at + 25,
        "a's video held back from b while c's video and a's audio keep flowing",
    )
    assert slot.forwarded == forwarded, "a's video was forwarded to b while paused"
    paused_at = b.received(a)
    assert paused_at <= forwarded
    assert not any(e["event"] == "participant.media" for e in b.client.events), "pausing is not a room event"

    await b.client.send({"type": "media.pause", "participant": a.user_id, "paused": False})
    await until(
        lambda: (s := _video_slot(b, a)) is not None and s["paused"] is False, "b's slots show a resumed"
    )
    await until(lambda: b.received(a) > paused_at + 10, "a's video flows to b again")


async def test_mute_and_camera_off_are_room_events_everyone_sees(
    seats: Any, media_server: Served, meeting_id: int, cookies: dict[str, str]
) -> None:
    a: Seat = await seats("radiologist")
    b: Seat = await seats("oncologist")
    c_: Seat = await seats("gastroenterologist")

    def told(client: RoomClient) -> list[dict[str, Any]]:
        return [e for e in client.of("participant.media") if e["user_id"] == a.user_id]

    await a.client.send({"type": "media.state", "audio_muted": True, "video_off": False})
    for seat in (a, b, c_):
        await seat.client.wait_for(lambda cl: bool(told(cl)))
    first = told(b.client)[0]
    assert {k: v for k, v in first.items() if k not in {"seq", "at"}} == {
        "type": "event",
        "event": "participant.media",
        "actor": a.user_id,
        "user_id": a.user_id,
        "audio_muted": True,
        "video_off": False,
    }
    assert told(c_.client) == [first] and told(a.client) == [first]

    # The same state again is no event; the camera going off is.
    await a.client.send({"type": "media.state", "audio_muted": True, "video_off": False})
    await a.client.send({"type": "media.state", "audio_muted": True, "video_off": True})
    await c_.client.wait_for(lambda cl: len(told(cl)) >= 2)
    assert [(e["audio_muted"], e["video_off"]) for e in told(c_.client)] == [(True, False), (True, True)]
    assert told(c_.client)[1]["seq"] == first["seq"] + 1

    late: Seat = await seats("radiotherapist")
    await late.client.wait_for(lambda cl: cl.snapshot is not None)
    assert late.client.snapshot is not None
    shown = {p["user_id"]: p for p in late.client.snapshot["participants"]}
    assert (shown[a.user_id]["audio_muted"], shown[a.user_id]["video_off"]) == (True, True)
    assert (shown[b.user_id]["audio_muted"], shown[b.user_id]["video_off"]) == (False, False)

    # The log (SQLite, JSON payloads) keeps it: after everybody left, a room rebuilt from the log still shows it.
    for seat in (a, b, c_, late):
        await seat.client.close()
    await until(lambda: media_server.app.state.rooms.get(meeting_id) is None, "the room closed")
    again: Seat = await seats("oncologist")
    await again.client.wait_for(lambda cl: cl.snapshot is not None)
    assert again.client.snapshot is not None
    rebuilt = {p["user_id"]: p for p in again.client.snapshot["participants"]}
    assert not rebuilt[a.user_id]["connected"]
    assert (rebuilt[a.user_id]["audio_muted"], rebuilt[a.user_id]["video_off"]) == (True, True)


async def test_the_active_speaker_is_announced_to_everyone_and_in_the_welcome(seats: Any) -> None:
    b: Seat = await seats("oncologist")
    c_: Seat = await seats("gastroenterologist")
    assert b.client.welcome["speaker"] is None

    def speakers(client: RoomClient) -> list[Any]:
        return [f["user_id"] for f in client.frames if f["type"] == "speaker"]

    # a's microphone plays a tone: aiortc's Opus sender puts its RFC 6464 audio level in every packet.
    a: Seat = await seats("radiologist")
    await a.offer(SyntheticParticipant("a", slots=0, video=False, audio=True, speaking=True))
    for seat in (b, c_):
        await seat.client.wait_for(lambda cl: a.user_id in speakers(cl), timeout=20)
        assert speakers(seat.client) == [a.user_id]
        assert [f for f in seat.client.frames if f["type"] == "speaker"] == [
            {"type": "speaker", "user_id": a.user_id}
        ]
    assert not any(e["event"] == "speaker" for e in b.client.events), "the speaker is not a room event"

    late: Seat = await seats("radiotherapist")
    assert late.client.welcome["speaker"] == a.user_id

    # The speaker leaves: nobody speaks.
    await a.client.close()
    await b.client.wait_for(lambda cl: speakers(cl)[-1:] == [None], timeout=20)


async def test_a_participant_reconnecting_gets_a_working_media_peer_again(seats: Any) -> None:
    a: Seat = await seats("radiologist")
    await a.offer(SyntheticParticipant("a", slots=0, video=True, audio=False))
    old: Seat = await seats("oncologist")
    await old.offer(SyntheticParticipant("b-wifi", slots=1, video=False, audio=False))
    await until(lambda: old.received(a) > 10, "b receives a")

    # Wi-Fi to 4G: a new socket while the old one is still open. The server supersedes the old connection; its
    # cleanup (done when its close frame arrives) must leave the participant's media to the newer connection.
    new: Seat = await seats("oncologist")
    await old.client.wait_for(lambda cl: cl.closed.is_set(), timeout=20)
    assert old.client.close_code == 4409
    at = old.received(a)
    await until(lambda: old.received(a) > at + 15, "b's media survives the old connection's cleanup")
    # The browser offers again after the welcome, with a fresh RTCPeerConnection, and decodes a's video.
    assert new.client.welcome["rtc"] is True
    await new.offer(SyntheticParticipant("b-4g", slots=1, video=False, audio=False, decode=True))
    await old.peers[0].close()
    await until(lambda: decoded_by(new, a) > 10, "b decodes a on its new peer")
    assert new.peer is not None
    record_4g = new.peer.showing(str(a.user_id))

    # The socket drops without a close handshake (network gone); b reconnects and offers again.
    transport = new.client.ws.transport
    transport.abort()
    await new.client.wait_for(lambda cl: cl.closed.is_set(), timeout=20)
    assert record_4g is not None
    await until(lambda: record_4g.ended, "the dropped connection's media ends")
    back: Seat = await seats("oncologist")
    await back.offer(SyntheticParticipant("b-back", slots=1, video=False, audio=False, decode=True))
    await until(lambda: decoded_by(back, a) > 10, "b decodes a again after reconnecting")

    # a never noticed: same socket, same peer, no error.
    assert not a.client.closed.is_set() and a.client.errors == []
    assert a.peer is not None and a.peer.states[-1] == "connected" and "failed" not in a.peer.states
    assert sum(1 for f in a.client.frames if f["type"] == "welcome") == 1


async def test_bad_media_messages_get_an_error_and_the_connection_stays_up(seats: Any) -> None:
    b: Seat = await seats("oncologist")
    bad: list[tuple[dict[str, Any], str]] = [
        ({"type": "media.pause", "participant": 7, "paused": "yes", "id": 1}, "'paused' must be true"),
        ({"type": "media.pause", "participant": True, "paused": True, "id": 2}, "'participant' must be"),
        ({"type": "media.pause", "participant": 0, "paused": True, "id": 3}, "'participant' must be"),
        ({"type": "media.pause", "participant": "7", "paused": True, "id": 4}, "'participant' must be"),
        ({"type": "media.state", "audio_muted": "yes", "video_off": False, "id": 5}, "'audio_muted' must be"),
    ]
    for message, _ in bad:
        await b.client.send(message)
    await b.client.wait_for(lambda cl: len(cl.errors) >= len(bad))
    for error, (message, text) in zip(b.client.errors, bad, strict=True):
        assert error["ref"] == message["id"] and text in error["message"], error
        assert error["error"] in {"bad_request", "invalid"}
    await b.client.send({"type": "ping", "t": 42})
    await b.client.wait_for(lambda cl: any(f["type"] == "pong" and f.get("t") == 42 for f in cl.frames))
    assert not b.client.closed.is_set()
    assert not b.client.of("participant.media")


async def test_an_old_connection_leaves_the_peer_of_a_rejoin_on_another_node(clip: tuple[bytes, ...]) -> None:
    # Wi-Fi -> 4G through a load balancer: the radiologist's new socket lands on another node, which joins her
    # (the event reaches this node on the bus) and her new peer is answered by the room's media node. When this
    # node's old connection finally times out, it must not tear that new peer down.
    hub = MediaHub()
    client = SyntheticParticipant("2", slots=1, audio=False, clip=clip)
    try:
        media = hub.room("moved")
        room = _live_room(media)
        old = Connection(room, RADIO, config=RoomConfig(), media=media)
        room.connections[old.id] = old
        await room.execute(c.Join(replace(RADIO, connection=old.id)), actor=RADIO.user_id)
        answer = await media.connect("2", await client.offer())
        await client.accept(answer)
        old.rtc = True
        await room.execute(c.Join(replace(RADIO, connection="on-node-2", node="n2")), actor=RADIO.user_id)

        await room.detach(old)

        peer = media.peer("2")
        assert peer is not None and peer.state != "closed", "the rejoined participant's peer was torn down"
        assert room.state.participants[RADIO.user_id].connection == "on-node-2"

        # Without a newer connection anywhere, the same detach frees the peer.
        last = Connection(room, RADIO, config=RoomConfig(), media=media)
        last.rtc = True
        room.connections[last.id] = last
        await room.execute(c.Join(replace(RADIO, connection=last.id)), actor=RADIO.user_id)
        await room.detach(last)
        assert media.peer("2") is None
    finally:
        await client.close()
        await hub.close()
