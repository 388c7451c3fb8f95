"""Synthetic participants: aiortc clients that send pre-encoded media, for the tests and bench/media.py.

Why pre-encoded: a room of twelve would otherwise spend the machine's two cores encoding twelve 360p videos in the
clients, drowning what we want to measure (the server). A short VP8 clip is encoded once and replayed at real
time; a keyframe request from the server rewinds the clip to its keyframe, as a browser's encoder would produce
one. Receiving clients either decode (to prove the forwarded stream is valid) or only count encoded frames through
the same tap the server uses.

The client offers like the browser's rtc.js does: one ``sendonly`` audio and video, ``slots`` ``recvonly`` pairs,
and the ``view`` / ``pointer`` data channels.
"""

from __future__ import annotations

import asyncio
import fractions
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import av
import numpy as np
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import AUDIO_PTIME, MediaStreamError, MediaStreamTrack

from .forwarding import EncodedFrame, ReceiverTap, count_frames, intercept_keyframe_requests, to_packet
from .peer import CHANNELS

__all__ = ["ClipTrack", "SyntheticParticipant", "ToneTrack", "vp8_clip"]

VIDEO_CLOCK = 90000


@lru_cache(maxsize=4)
def vp8_clip(
    width: int = 640, height: int = 360, frames: int = 90, fps: int = 30, bitrate: int = 600_000
) -> tuple[bytes, ...]:
    """Encode ``frames`` frames of a moving pattern as VP8: one keyframe first, then delta frames."""
    codec = av.CodecContext.create("libvpx", "w")
    codec.width = width
    codec.height = height
    codec.pix_fmt = "yuv420p"
    codec.bit_rate = bitrate
    codec.time_base = fractions.Fraction(1, fps)
    codec.framerate = fractions.Fraction(fps, 1)
    codec.gop_size = 10 * frames
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "static-thresh": "0"}
    out: list[bytes] = []
    yy, xx = np.mgrid[0:height, 0:width]
    for i in range(frames):
        luma = ((xx + 4 * i) ^ (yy + 2 * i)) & 0xFF
        rgb = np.stack([luma, (xx * 255 // width), ((yy + 3 * i) % 256)], axis=-1).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        frame.time_base = codec.time_base
        out.extend(bytes(p) for p in codec.encode(frame))
    out.extend(bytes(p) for p in codec.encode(None))
    return tuple(out)


class ClipTrack(MediaStreamTrack):
    """Replays a pre-encoded VP8 clip at ``fps`` as ``av.Packet``s; a keyframe request rewinds to the keyframe."""

    kind = "video"

    def __init__(self, clip: tuple[bytes, ...] | None = None, *, fps: int = 30) -> None:
        super().__init__()
        self._clip = clip if clip is not None else vp8_clip(fps=fps)
        self._fps = fps
        self._index = 0
        self._sent = 0
        self._start: float | None = None
        self.keyframe_requests = 0
        self.keyframes_sent = 0

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        self._index = 0

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        due = self._start + self._sent / self._fps
        if due > now:
            await asyncio.sleep(due - now)
        data = self._clip[self._index]
        if self._index == 0:
            self.keyframes_sent += 1
        # Loop past the end to the first *delta* frame: keyframes only come when a receiver asks for one, as
        # with a browser's encoder in a long call (the decoder tolerates the wrong reference at the seam).
        self._index += 1
        if self._index >= len(self._clip):
            self._index = min(1, len(self._clip) - 1)
        pts = self._sent * (VIDEO_CLOCK // self._fps)
        self._sent += 1
        return to_packet(data, pts, VIDEO_CLOCK)


class ToneTrack(MediaStreamTrack):
    """Audio frames (encoded by aiortc, which then adds the RFC 6464 audio level): a tone while ``speaking``."""

    kind = "audio"

    def __init__(self, *, speaking: bool = False, rate: int = 48000) -> None:
        super().__init__()
        self.speaking = speaking
        self._rate = rate
        self._samples = int(AUDIO_PTIME * rate)
        self._sent = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        due = self._start + self._sent * AUDIO_PTIME
        if due > now:
            await asyncio.sleep(due - now)
        t = (np.arange(self._samples) + self._sent * self._samples) / self._rate
        amplitude = 12000 if self.speaking else 0
        samples = (amplitude * np.sin(2 * math.pi * 440 * t)).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = self._rate
        frame.pts = self._sent * self._samples
        frame.time_base = fractions.Fraction(1, self._rate)
        self._sent += 1
        return frame


@dataclass
class _Received:
    """What one receiving transceiver of a synthetic client got."""

    kind: str
    mid: str | None
    frames: int = 0
    keyframes: int = 0
    decoded: int = 0
    first_frame_at: float | None = None
    first_decoded_at: float | None = None
    participant: str | None = None
    ended: bool = False
    times: list[float] = field(default_factory=list)


class SyntheticParticipant:
    """An aiortc client that offers like rtc.js and records what it receives.

    >>> # answer = await room.connect("alice", await alice.offer(), on_media=alice.on_media)
    >>> # await alice.accept(answer)
    """

    def __init__(
        self,
        name: str,
        *,
        slots: int = 3,
        video: bool = True,
        audio: bool = True,
        speaking: bool = False,
        decode: bool = False,
        count_only: bool = False,
        clip: tuple[bytes, ...] | None = None,
        fps: int = 30,
    ) -> None:
        self.name = name
        self.pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.decode = decode
        self.count_only = count_only
        self.video_track = ClipTrack(clip, fps=fps) if video else None
        self.audio_track = ToneTrack(speaking=speaking) if audio else None
        self.messages: dict[str, list[str | bytes]] = {label: [] for label in CHANNELS}
        self.media_events: list[dict[str, Any]] = []
        self.received: dict[str, _Received] = {}
        self.states: list[str] = []
        self._slot_transceivers: list[RTCRtpTransceiver] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.channels: dict[str, RTCDataChannel] = {}
        self.on_frame: Callable[[str, EncodedFrame], None] | None = None

        self.pc.addTransceiver(self.audio_track or "audio", direction="sendonly")
        video_transceiver = self.pc.addTransceiver(self.video_track or "video", direction="sendonly")
        if self.video_track is not None:
            intercept_keyframe_requests(video_transceiver.sender, self.video_track.request_keyframe)
        for _ in range(slots):
            self._slot_transceivers.append(self.pc.addTransceiver("audio", direction="recvonly"))
            self._slot_transceivers.append(self.pc.addTransceiver("video", direction="recvonly"))
        for label, options in CHANNELS.items():
            channel = self.pc.createDataChannel(label, **options)
            self.channels[label] = channel
            channel.on("message", self._collector(label))

        @self.pc.on("connectionstatechange")
        def on_state() -> None:
            self.states.append(self.pc.connectionState)

    def _collector(self, label: str) -> Callable[[str | bytes], None]:
        def collect(message: str | bytes) -> None:
            self.messages[label].append(message)

        return collect

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))
        for transceiver in self._slot_transceivers:
            receiver = transceiver.receiver
            if receiver.track is None:
                continue
            record = _Received(kind=transceiver.kind, mid=transceiver.mid)
            self.received[str(transceiver.mid)] = record
            if self.count_only:
                count_frames(receiver, functools.partial(self._count_marker, record))
            elif self.decode:
                task = asyncio.ensure_future(self._consume(record, receiver.track))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                ReceiverTap(receiver, on_frame=self._counter(record))
                task = asyncio.ensure_future(self._drain(record, receiver.track))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        self._label_slots()

    @staticmethod
    def _count_marker(record: _Received) -> None:
        record.frames += 1

    def _counter(self, record: _Received) -> Callable[[EncodedFrame], None]:
        def count(frame: EncodedFrame) -> None:
            now = time.monotonic()
            record.frames += 1
            record.keyframes += frame.keyframe
            if record.first_frame_at is None:
                record.first_frame_at = now
            if record.kind == "video":
                record.times.append(now)
            if self.on_frame is not None:
                self.on_frame(str(record.mid), frame)

        return count

    async def _drain(self, record: _Received, track: MediaStreamTrack) -> None:
        """Wait for the (frame-less) remote track to end, so we know when the server stopped the stream."""
        try:
            while True:
                await track.recv()
        except MediaStreamError:
            record.ended = True

    async def _consume(self, record: _Received, track: MediaStreamTrack) -> None:
        try:
            while True:
                await track.recv()
                now = time.monotonic()
                record.frames += 1
                record.decoded += 1
                if record.first_decoded_at is None:
                    record.first_decoded_at = now
        except MediaStreamError:
            record.ended = True

    def on_media(self, event: dict[str, Any]) -> None:
        self.media_events.append(event)
        self._label_slots()

    def _label_slots(self) -> None:
        if not self.media_events:
            return
        for slot in self.media_events[-1]["slots"]:
            record = self.received.get(str(slot["mid"]))
            if record is not None:
                record.participant = slot["participant"]

    def showing(self, participant: str, kind: str = "video") -> _Received | None:
        """The receiving transceiver currently showing ``participant``'s ``kind``, if any."""
        for record in self.received.values():
            if record.participant == participant and record.kind == kind:
                return record
        return None

    async def close(self) -> None:
        await self.pc.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
