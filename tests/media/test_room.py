"""Room media lifecycle with real aiortc clients on loopback: late joiners, pause, leaving, leaks, channels."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from media import MediaHub, RoomMedia
from media.synthetic import SyntheticParticipant, vp8_clip

from .helpers import Resources, join, rss_mb, until


@pytest.fixture
async def hub() -> AsyncIterator[MediaHub]:
    hub = MediaHub()
    try:
        yield hub
    finally:
        await hub.close(timeout=10)


@pytest.fixture
async def clients() -> AsyncIterator[list[SyntheticParticipant]]:
    made: list[SyntheticParticipant] = []
    try:
        yield made
    finally:
        for client in made:
            await client.close()


def video_from(client: SyntheticParticipant, publisher: str) -> int:
    record = client.showing(publisher, "video")
    return record.frames if record else 0


async def test_late_joiner_gets_a_keyframe_and_decodes(
    hub: MediaHub, clients: list[SyntheticParticipant]
) -> None:
    room = hub.room("late")
    alice = SyntheticParticipant("alice", slots=2, audio=False)
    bob = SyntheticParticipant("bob", slots=2, audio=False)
    clients += [alice, bob]
    await join(room, alice)
    await join(room, bob)
    await until(lambda: video_from(bob, "alice") > 30, "bob receives alice")
    assert alice.video_track is not None
    requests_before = alice.video_track.keyframe_requests

    # Alice's clip has sent its only keyframe long ago: the late joiner can decode only if its keyframe request
    # reaches her (through the server's coalescing).
    carol = SyntheticParticipant("carol", slots=2, video=False, audio=False, decode=True)
    clients.append(carol)
    await join(room, carol)
    await until(lambda: (r := carol.showing("alice")) is not None and r.decoded > 0, "carol decodes alice")
    await until(lambda: (r := carol.showing("bob")) is not None and r.decoded > 0, "carol decodes bob")
    assert alice.video_track.keyframe_requests > requests_before


async def test_pause_and_resume_one_subscription(hub: MediaHub, clients: list[SyntheticParticipant]) -> None:
    room = hub.room("pause")
    alice = SyntheticParticipant("alice", slots=2)
    bob = SyntheticParticipant("bob", slots=2)
    carol = SyntheticParticipant("carol", slots=2, video=False, audio=False)
    clients += [alice, bob, carol]
    for client in clients:
        await join(room, client)
    await until(
        lambda: video_from(carol, "alice") > 10 and video_from(carol, "bob") > 10, "carol receives both"
    )

    # What an operator's dashboard reads (rcp.metrics): the slots forwarding now, and the bytes they carried.
    streams, sent = hub.throughput_now()
    assert streams >= 4 and sent > 0
    assert room.set_paused("carol", "alice", "video", True)
    assert not room.set_paused("carol", "alice", "audio", True), "audio must always flow"
    assert hub.throughput_now()[0] == streams - 1  # a paused video is not forwarded
    assert carol.media_events[-1]["slots"][1] == {
        "mid": carol.media_events[-1]["slots"][1]["mid"],
        "kind": "video",
        "participant": "alice",
        "paused": True,
    }
    # Paused, by the forwarder's own counters: alice's frames still reach carol's slot and are held back there.
    slot = room.slot_showing("carol", "alice", "video")
    assert slot is not None and slot.paused
    forwarded_at, withheld_at = slot.forwarded, slot.withheld
    bob_at = video_from(carol, "bob")
    audio = carol.showing("alice", "audio")
    assert audio is not None
    audio_at = audio.frames
    await until(lambda: slot.withheld > withheld_at + 15, "alice's video held back from carol")
    await until(lambda: video_from(carol, "bob") > bob_at + 15, "bob's video keeps flowing")
    await until(lambda: audio.frames > audio_at + 20, "alice's audio keeps flowing")
    assert slot.forwarded == forwarded_at, "alice's video was forwarded while paused"
    # Carol cannot have more of alice's video than the forwarder sent before the pause.
    paused_at = video_from(carol, "alice")
    assert paused_at <= forwarded_at
    bob_slot = room.slot_showing("bob", "alice", "video")
    assert bob_slot is not None and not bob_slot.paused and bob_slot.withheld == 0  # only carol paused it

    record = carol.showing("alice")
    assert record is not None
    keyframes_before = record.keyframes
    assert room.set_paused("carol", "alice", "video", False)
    await until(lambda: video_from(carol, "alice") > paused_at + 10, "alice's video resumes")
    assert record.keyframes > keyframes_before, "a resumed video must start with a keyframe"


async def test_publisher_leaving_ends_its_tracks_for_everyone(
    hub: MediaHub, clients: list[SyntheticParticipant]
) -> None:
    room = hub.room("leave")
    alice = SyntheticParticipant("alice", slots=2)
    bob = SyntheticParticipant("bob", slots=2)
    carol = SyntheticParticipant("carol", slots=2)
    clients += [alice, bob, carol]
    for client in clients:
        await join(room, client)
    await until(
        lambda: video_from(bob, "alice") > 5 and video_from(carol, "alice") > 5, "alice reaches everyone"
    )
    bob_slot = bob.showing("alice")
    carol_slot = carol.showing("alice")
    assert bob_slot is not None and carol_slot is not None
    publication = room.publication("alice", "video")
    assert publication is not None and publication.subscribers == 2
    to_bob, to_carol = room.slot_showing("bob", "alice", "video"), room.slot_showing("carol", "alice", "video")
    assert to_bob is not None and to_carol is not None

    await room.disconnect("alice")
    assert room.publication("alice", "video") is None and room.publication("alice", "audio") is None
    assert publication.subscribers == 0
    for viewer in (bob, carol):
        assert all(slot["participant"] != "alice" for slot in viewer.media_events[-1]["slots"]), viewer.name
        assert viewer.showing("alice") is None
    # The slots that showed alice are detached from her publication (the forwarder's state): nothing of hers can
    # be sent through them, and what the viewers got is at most what was sent before she left.
    assert to_bob.source is None and to_carol.source is None
    sent = (to_bob.forwarded, to_carol.forwarded)
    carol_to_bob = room.slot_showing("bob", "carol", "video")
    assert carol_to_bob is not None
    carol_sent = carol_to_bob.forwarded
    await until(lambda: carol_to_bob.forwarded > carol_sent + 10, "bob still receives carol")
    assert (to_bob.forwarded, to_carol.forwarded) == sent, "alice's video still forwarded after she left"
    assert bob_slot.frames <= sent[0] and carol_slot.frames <= sent[1]
    assert room.participants == ["bob", "carol"]
    await room.disconnect("alice")  # twice is harmless


async def test_reconnect_with_a_fresh_peer_keeps_everyones_slot(
    hub: MediaHub, clients: list[SyntheticParticipant]
) -> None:
    room = hub.room("reconnect")
    alice = SyntheticParticipant("alice", slots=1, audio=False)
    bob = SyntheticParticipant("bob", slots=1, audio=False)
    clients += [alice, bob]
    old_states: list[str] = []
    await join(room, alice, on_state=old_states.append)
    await join(room, bob)
    await until(lambda: video_from(bob, "alice") > 5, "bob receives alice")
    events_before = len(bob.media_events)

    alice_again = SyntheticParticipant("alice", slots=1, audio=False)
    clients.append(alice_again)
    await join(room, alice_again)
    assert "closed" not in old_states, "the replaced peer must not report alice as gone"
    await alice.close()  # the old path is gone
    record = bob.showing("alice")
    assert record is not None
    at = record.frames
    keyframes = record.keyframes
    await until(lambda: record.frames > at + 10, "bob receives alice's new peer on the same slot")
    assert record.keyframes > keyframes
    assert len(bob.media_events) == events_before, "bob's slots changed although alice only reconnected"
    await until(lambda: video_from(alice_again, "bob") > 5, "alice's new peer receives bob")


async def test_active_speaker_is_announced(hub: MediaHub, clients: list[SyntheticParticipant]) -> None:
    announced: list[str | None] = []
    room = hub.room("speaker", on_speaker=announced.append)
    alice = SyntheticParticipant("alice", slots=1, video=False)
    bob = SyntheticParticipant("bob", slots=1, video=False, speaking=True)
    clients += [alice, bob]
    await join(room, alice)
    await join(room, bob)
    await until(lambda: announced == ["bob"], "bob announced as the speaker")
    assert room.speaker == "bob"
    await room.disconnect("bob")
    assert announced == ["bob", None]


async def test_view_channel_is_ordered_both_ways_and_pointer_unreliable(
    hub: MediaHub, clients: list[SyntheticParticipant]
) -> None:
    room = hub.room("channels")
    received: list[tuple[str, str | bytes]] = []
    alice = SyntheticParticipant("alice", slots=0, video=False, audio=False)
    clients.append(alice)
    await join(room, alice, on_message=lambda channel, data: received.append((channel, data)))
    await until(lambda: alice.channels["view"].readyState == "open", "view channel open")
    for i in range(300):
        alice.channels["view"].send(json.dumps({"seq": i}))
    await until(
        lambda: len([m for m in received if m[0] == "view"]) == 300, "300 view messages at the server"
    )
    assert [json.loads(data)["seq"] for channel, data in received if channel == "view"] == list(range(300))

    server_peer = room.peer("alice")
    assert server_peer is not None
    await until(lambda: set(server_peer.channels) == {"view", "pointer"}, "both channels at the server")
    for i in range(300):
        assert room.send("alice", "view", json.dumps({"seq": i}))
    await until(lambda: len(alice.messages["view"]) == 300, "300 view messages at the client")
    assert [json.loads(m)["seq"] for m in alice.messages["view"]] == list(range(300))

    peer = room.peer("alice")
    assert peer is not None
    pointer = peer.channels["pointer"]
    assert pointer.ordered is False and pointer.maxRetransmits == 0
    view = peer.channels["view"]
    assert view.ordered is True and view.maxRetransmits is None and view.maxPacketLifeTime is None
    assert room.send("alice", "pointer", b"\x01\x02")
    await until(lambda: alice.messages["pointer"] == [b"\x01\x02"], "a pointer sample")
    assert not room.send("alice", "nonexistent", "x")
    assert not room.send("nobody", "view", "x")


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_join_leave_cycles_return_to_baseline(hub: MediaHub) -> None:
    """aiortc has a history of leaks: after 500 joins and leaves, tasks, threads (decoder threads), file descriptors
    and memory are back where they were."""
    room = hub.room("cycles")
    # Every frame of the host's clip is a keyframe: each guest decodes at once instead of waiting for the
    # coalesced keyframe request (500 ms), so 500 cycles fit in the suite's time.
    host = SyntheticParticipant("host", slots=1, audio=False, clip=vp8_clip()[:1] * 30)
    try:
        await join(room, host)

        async def cycle(i: int) -> None:
            guest = SyntheticParticipant(f"guest{i % 3}", slots=1, audio=False)
            try:
                await join(room, guest)
                await until(lambda: video_from(guest, "host") > 0, "guest receives the host")
            finally:
                await room.disconnect(guest.name)
                await guest.close()

        for i in range(20):  # warm up lazily created things (executor, caches, allocator arenas)
            await cycle(i)
        await asyncio.sleep(0.5)
        baseline = Resources.now()
        rss_before = rss_mb()
        for i in range(1, 501):
            await cycle(i)
        await until(lambda: Resources.now() == baseline, f"resources back to {baseline}", timeout=10)
        assert room.participants == ["host"]
        # A leaked peer connection (its transports, buffers, jitter buffers) weighs well over 100 kB: 500 of them
        # would add tens of megabytes. Allocator noise stays within a few.
        assert rss_mb() - rss_before < 15, f"memory grew from {rss_before:.0f} to {rss_mb():.0f} MB"
    finally:
        await host.close()


async def test_hub_close_closes_every_peer(clients: list[SyntheticParticipant]) -> None:
    hub = MediaHub()
    rooms: list[RoomMedia] = [hub.room("one"), hub.room("two")]
    for n, room in enumerate(rooms):
        client = SyntheticParticipant(f"p{n}", slots=1, audio=False)
        clients.append(client)
        await join(room, client)
    peers = [room.peer(f"p{n}") for n, room in enumerate(rooms)]
    await hub.close(timeout=5)
    assert hub.rooms == {}
    assert all(peer is not None and peer.pc is None and peer.state == "closed" for peer in peers)
    with pytest.raises(RuntimeError, match="closed"):
        hub.room("three")
    await hub.close()  # twice is harmless


async def test_a_bad_offer_is_refused_with_a_message(hub: MediaHub) -> None:
    room = hub.room("bad")
    with pytest.raises(ValueError, match="offer"):
        await room.connect("mallory", "v=0\r\nthis is not sdp\r\n")
    video_only_h264 = (
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
        "m=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\n"
        "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n"
        "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\na=setup:actpass\r\na=rtcp-mux\r\n"
        "a=rtpmap:102 H264/90000\r\n"
    )
    with pytest.raises(ValueError, match="VP8"):
        await room.connect("mallory", video_only_h264)
    assert room.participants == []
