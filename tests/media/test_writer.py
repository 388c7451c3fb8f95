"""The server's own RTP send path (media.forwarding.RtpWriter, packetize): packets a real aiortc peer accepts,
NACKs answered with RTX, sender reports that count what was sent."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from aiortc.codecs import depayload
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from media import RoomMedia
from media.forwarding import MAX_PAYLOAD, EncodedFrame, RtpWriter, packetize, send_time
from media.synthetic import vp8_clip

from .helpers import publisher_and_viewer, until, video_receiver

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)


def test_vp8_frames_are_split_with_rfc7741_descriptors_and_rejoin_exactly() -> None:
    keyframe = vp8_clip()[0]
    assert len(keyframe) > 2 * MAX_PAYLOAD, "the clip's keyframe should need several packets"
    frame = EncodedFrame(data=keyframe, timestamp=0, clock_rate=90000, codec="VP8", keyframe=True)

    payloads = list(packetize(frame, picture_id=0x1234))

    assert all(len(p) <= MAX_PAYLOAD for p in payloads)
    assert [p[0] & 0x10 for p in payloads] == [0x10] + [0] * (len(payloads) - 1), "S bit on the first only"
    for payload in payloads:
        assert payload[1] == 0x80 and payload[2:4] == bytes((0x80 | 0x12, 0x34)), "15-bit PictureID"
    # aiortc's own depayloader (the one browsers' peers mirror) gets the frame back byte for byte.
    assert b"".join(depayload(VP8, p) for p in payloads) == keyframe


def test_audio_frames_are_sent_as_they_came() -> None:
    frame = EncodedFrame(data=b"\x78opus", timestamp=960, clock_rate=48000, codec="opus", keyframe=True)
    assert list(packetize(frame, picture_id=1)) == [b"\x78opus"]


def _slot_showing(room: RoomMedia, subscriber: str, publisher: str) -> Any:
    slot = room.slot_showing(subscriber, publisher, "video")
    assert slot is not None, f"{subscriber} has no slot showing {publisher}"
    return slot


async def test_lost_packets_are_retransmitted_and_the_video_keeps_decoding() -> None:
    async with publisher_and_viewer("nack", decode=True) as (room, viewer):
        await until(lambda: (r := viewer.showing("publisher")) is not None and r.decoded >= 5, "first frames")
        slot = _slot_showing(room, "viewer", "publisher")

        # The viewer's network loses the first copy of one media packet in 20, ten times; retransmissions (RTX,
        # RFC 4588: the original sequence number in the first two payload bytes) are recorded as they arrive.
        receiver = video_receiver(viewer)
        handle = receiver._handle_rtp_packet
        dropped: set[int] = set()
        recovered: set[int] = set()

        async def lossy(packet: Any, arrival_time_ms: int) -> None:
            media = packet.payload_type == slot.writer.payload_type
            seq = packet.sequence_number
            if media and seq % 20 == 0 and len(dropped) < 10 and seq not in dropped:
                dropped.add(seq)
                return
            if not media and len(packet.payload) >= 2:
                recovered.add(int.from_bytes(packet.payload[:2], "big"))
            await handle(packet, arrival_time_ms=arrival_time_ms)

        receiver._handle_rtp_packet = lossy  # type: ignore[method-assign]
        record = viewer.showing("publisher")
        assert record is not None
        keyframe_requests = slot.keyframe_requests
        await until(lambda: len(dropped) == 10, "ten packets lost")
        await until(lambda: dropped <= recovered, "every lost packet retransmitted")
        decoded_after = record.decoded
        await until(lambda: record.decoded >= decoded_after + 30, "a second more of video decoded")

        # What a user would notice is a frozen picture: the viewer asks for a keyframe (PLI, RFC 4585 6.3.1)
        # whenever it loses a picture it cannot decode (aiortc: a decoder error or an unrecoverable gap). None
        # here: every loss was repaired in time, and the video kept decoding.
        assert slot.keyframe_requests == keyframe_requests, "the viewer lost pictures despite the retransmissions"
        assert slot.writer.retransmitted >= len(dropped)


async def test_sender_statistics_count_the_packets_written() -> None:
    async with publisher_and_viewer("reports") as (room, viewer):
        await until(lambda: (r := viewer.showing("publisher")) is not None and r.frames >= 10, "frames")
        slot = _slot_showing(room, "viewer", "publisher")
        peer = room.peer("viewer")
        assert peer is not None and peer.pc is not None
        sender = next(t.sender for t in peer.pc.getTransceivers() if t.sender.track is slot)
        report = await sender.getStats()
        outbound = next(s for s in report.values() if s.type == "outbound-rtp")
        # aiortc's RTCP sender reports (RFC 3550 section 6.4.1) read the same counters.
        assert outbound.packetsSent == slot.writer.packets > 0
        assert outbound.bytesSent == slot.writer.octets
        if sys.platform.startswith("linux"):
            # Multi-packet frames left as one segmented burst (UDP GSO), and arrived as separate datagrams.
            assert RtpWriter.gso and slot.writer.segmented > 0, "the kernel refused UDP segmentation offload"


@pytest.mark.parametrize("path", ["segmented", "one by one", "through asyncio"])
async def test_a_frame_larger_than_one_segmented_send_arrives_whole(path: str, monkeypatch: Any) -> None:
    """media/wire.c cuts a large keyframe into several segmented sends (at most 32 datagrams or 60 kB each); the
    subscriber must get every packet, in order, whichever way they leave."""
    monkeypatch.setattr(RtpWriter, "gso", path == "segmented" and sys.platform.startswith("linux"))
    async with publisher_and_viewer("large") as (room, viewer):
        await until(lambda: (r := viewer.showing("publisher")) is not None and r.frames >= 5, "first frames")
        slot = _slot_showing(room, "viewer", "publisher")
        slot.attach(None)  # from now on the viewer's slot carries only what this test writes
        writer = slot.writer
        if path == "through asyncio":
            writer._fd = -1
        receiver = video_receiver(viewer)
        # The slot writes nothing more on its own, so the frame's packets are the next sequence numbers; packets of
        # earlier frames still on the way fall outside that window and are ignored (no waiting for them to land).
        segmented_before = writer.segmented
        first = writer._seq  # the frame's first sequence number
        data = bytes(range(256)) * 400  # 100 kB: 86 packets
        frame = EncodedFrame(data=data, timestamp=0, clock_rate=90000, codec="VP8", keyframe=True)
        payloads = packetize(frame, picture_id=7)
        arrived: dict[int, tuple[bool, bytes]] = {}

        async def capture(packet: Any, arrival_time_ms: int) -> None:
            in_frame = (packet.sequence_number - first) & 0xFFFF < len(payloads)  # may wrap
            if packet.payload_type == writer.payload_type and in_frame:
                arrived[packet.sequence_number] = (packet.marker, packet.payload)

        receiver._handle_rtp_packet = capture  # type: ignore[method-assign]
        assert writer.write(payloads, 90000 * 60, send_time())
        await until(lambda: len(arrived) == len(payloads), f"{len(payloads)} packets")

        in_order = [
            arrived[seq] for seq in sorted(arrived, key=lambda seq: (seq - first) & 0xFFFF)
        ]  # may wrap
        assert [marker for marker, _ in in_order] == [False] * (len(payloads) - 1) + [True]
        assert b"".join(depayload(VP8, payload) for _, payload in in_order) == data
        if path == "segmented":
            assert writer.segmented == segmented_before + 1
