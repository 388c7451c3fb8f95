"""Fan-out of one published track to many subscribers' slots, as encoded frames.

A *publication* is one participant's camera or microphone as received by the server. A *slot* is one outbound
track on a subscriber's peer connection (a ``recvonly`` transceiver the client offered); the hub points a slot at a
publication and can later point it at another one, without any renegotiation.

A publication packetises each frame once (:func:`media.forwarding.packetize`) and hands the payloads to every
slot showing it, synchronously, on the event loop: each slot writes them with its own RTP header through its
:class:`~media.forwarding.RtpWriter` (no queue, no task per subscriber). The slot

* starts a video only at a keyframe (and asks the publisher for one), after attaching, resuming or a dropped frame;
* rewrites RTP timestamps so they keep increasing when its source changes (a decoder's jitter buffer would
  otherwise see time jump backwards);
* drops frames while its subscriber's path is not up or its socket is congested: a subscriber whose link cannot
  keep up loses frames (and restarts at a keyframe), never the server's memory.

The slot is also the sender's ``MediaStreamTrack`` so that aiortc's sender lifecycle (start, stop, RTCP) is
unchanged; its ``recv()`` only waits for the end.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from aiortc import RTCRtpSender
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .forwarding import (
    EncodedFrame,
    Payloads,
    ReceiverTap,
    RtpWriter,
    intercept_keyframe_requests,
    packetize,
    send_time,
)
from .keyframes import KEYFRAME_INTERVAL_S, KeyframeThrottle

__all__ = ["Publication", "SlotTrack", "Throughput"]

logger = logging.getLogger(__name__)


class Throughput:
    """What a media hub's slots have sent, all rooms together: the operator's bitrate (rcp.metrics).

    Plain counters shared by the slots (no lock: they are only touched on the event loop), and kept by the hub
    so that the totals do not fall back when a participant leaves (a Prometheus counter never decreases).
    """

    __slots__ = ("bytes", "frames")

    def __init__(self) -> None:
        self.frames = 0
        self.bytes = 0


class SlotTrack(MediaStreamTrack):
    """One outbound track of a subscriber, fed with encoded frames from whichever publication it shows."""

    def __init__(self, kind: str, *, mid: str | None = None, throughput: Throughput | None = None) -> None:
        super().__init__()
        self.kind = kind
        self.mid = mid
        self._throughput = throughput
        self.source: Publication | None = None
        self.paused = False
        #: Frames sent to the subscriber, frames lost on the way out (no keyframe yet, a full or refused path).
        self.forwarded = 0
        self.dropped = 0
        #: Frames of the source held back because the subscriber paused this video (the proof that it is paused).
        self.withheld = 0
        #: Keyframe requests (PLI/FIR) the subscriber sent: each one is a picture it could not decode.
        self.keyframe_requests = 0
        self.writer: RtpWriter | None = None
        self._ended: asyncio.Future[None] | None = None
        self._need_keyframe = kind == "video"
        self._offset: int | None = None
        self._last_out: int | None = None
        self._last_out_clock = 0
        self._last_out_at = 0.0

    def bind(self, sender: RTCRtpSender) -> None:
        """Send through ``sender`` (this slot's transceiver) and hear its subscriber's keyframe requests."""
        self.writer = RtpWriter(sender)
        intercept_keyframe_requests(sender, self.keyframe_requested)

    # -- control, from the hub -------------------------------------------------------------------------------
    def attach(self, source: Publication | None) -> None:
        """Show ``source`` (or nothing) from now on; a video waits for the next keyframe."""
        if self.source is source:
            return
        if self.source is not None:
            self.source.unsubscribe(self)
        self.source = source
        self._offset = None
        self._restart()
        if source is not None:
            source.subscribe(self)

    def set_paused(self, paused: bool) -> None:
        """Stop or resume forwarding (video only; the hub never pauses audio)."""
        if paused == self.paused:
            return
        self.paused = paused
        if not paused:
            self._restart()

    def keyframe_requested(self) -> None:
        """The subscriber asked for a keyframe (PLI/FIR): pass it on to the publisher, coalesced there."""
        self.keyframe_requests += 1
        if self.source is not None and not self.paused:
            self.source.request_keyframe()

    def end(self) -> None:
        """End the track: aiortc's sender sees ``MediaStreamError`` and stops."""
        self.attach(None)
        if self.writer is not None:
            self.writer.close()
        self.stop()
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(None)

    # -- data path ---------------------------------------------------------------------------------------------
    def push(self, frame: EncodedFrame, payloads: Payloads, sent: tuple[int, bytes]) -> None:
        """Send one frame of the source (called on the event loop by the publication, payloads shared)."""
        if self.readyState != "live":
            return
        if self.paused:
            self.withheld += 1
            return
        if self._need_keyframe:
            if not frame.keyframe:
                self.dropped += 1
                if self.source is not None:
                    self.source.request_keyframe()
                return
            self._need_keyframe = False
        if self._offset is None:
            self._offset = self._rebase(frame)
        pts = frame.timestamp + self._offset
        if self.writer is None or not self.writer.write(payloads, pts, sent):
            self.dropped += 1
            if self.kind == "video":
                # The next frame would reference this one: restart at a keyframe once the path is up again.
                self._need_keyframe = True
            return
        self.forwarded += 1
        if self._throughput is not None:
            self._throughput.frames += 1
            self._throughput.bytes += len(payloads.data)
        self._last_out = pts
        self._last_out_clock = frame.clock_rate
        self._last_out_at = time.monotonic()

    def _rebase(self, frame: EncodedFrame) -> int:
        """Offset that makes this source's timestamps continue ours, advanced by the wall-clock gap."""
        if self._last_out is None or self._last_out_clock != frame.clock_rate:
            return -frame.timestamp
        gap = max(1, int((time.monotonic() - self._last_out_at) * frame.clock_rate))
        return self._last_out + gap - frame.timestamp

    def _restart(self) -> None:
        if self.kind == "video":
            self._need_keyframe = True
            if self.source is not None and not self.paused:
                self.source.request_keyframe()

    async def recv(self) -> Any:
        """aiortc's sender waits here for the whole call: frames go out through :attr:`writer`, not this loop."""
        if self.readyState == "live":
            if self._ended is None:
                self._ended = asyncio.get_running_loop().create_future()
            await self._ended
        raise MediaStreamError


class Publication:
    """One participant's audio or video track as received, fanned out to every slot that shows it."""

    def __init__(
        self,
        publisher: str,
        kind: str,
        *,
        keyframe_interval: float = KEYFRAME_INTERVAL_S,
        label: str = "",
    ) -> None:
        self.publisher = publisher
        self.kind = kind
        self.label = label or f"{publisher}/{kind}"
        self.frames = 0
        self.keyframe_requests_sent = 0
        self._tap: ReceiverTap | None = None
        self._slots: set[SlotTrack] = set()
        self._throttle = KeyframeThrottle(interval=keyframe_interval)
        self._picture_id = secrets.randbits(15)
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[bool]] = set()
        self._closed = False
        self.on_audio_level: Callable[[int], None] | None = None

    @property
    def subscribers(self) -> int:
        return len(self._slots)

    def use(self, tap: ReceiverTap | None) -> None:
        """Take frames from a (new) receiver tap, e.g. after the publisher reconnected with a fresh peer."""
        self._tap = tap
        self._throttle = KeyframeThrottle(interval=self._throttle.interval)
        for slot in self._slots:
            slot._restart()

    def on_frame(self, frame: EncodedFrame) -> None:
        self.frames += 1
        if not self._slots:
            return
        payloads = packetize(frame, self._picture_id)
        self._picture_id = (self._picture_id + 1) & 0x7FFF
        sent = send_time()
        for slot in tuple(self._slots):
            slot.push(frame, payloads, sent)

    def audio_level(self, level: int) -> None:
        if self.on_audio_level is not None:
            self.on_audio_level(level)

    def subscribe(self, slot: SlotTrack) -> None:
        self._slots.add(slot)

    def unsubscribe(self, slot: SlotTrack) -> None:
        self._slots.discard(slot)

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe, at most once per interval (see :mod:`media.keyframes`)."""
        if self.kind != "video" or self._closed:
            return
        loop = asyncio.get_running_loop()
        delay = self._throttle.request(loop.time())
        if delay is None:
            return
        if delay == 0:
            self._send_pli()
        else:
            self._timer = loop.call_later(delay, self._deferred)

    def _deferred(self) -> None:
        self._timer = None
        if self._closed:
            return
        self._throttle.fired(asyncio.get_running_loop().time())
        self._send_pli()

    def _send_pli(self) -> None:
        if self._tap is None:
            return
        self.keyframe_requests_sent += 1
        task = asyncio.get_running_loop().create_task(self._tap.request_keyframe())
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    def close(self) -> None:
        """Stop feeding every slot (they show nothing until re-attached) and cancel pending requests."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in tuple(self._sending):
            task.cancel()
        for slot in tuple(self._slots):
            slot.attach(None)
        self._tap = None
