"""The one module that reaches into aiortc's internals: encoded frames in, keyframe requests out.

Why: aiortc decodes every received track and encodes every sent one. A forwarding server needs neither. aiortc
already *sends* pre-encoded media: when a track's ``recv()`` returns an ``av.Packet`` instead of a frame, the sender
packs it without encoding (``RTCRtpSender._next_encoded_frame`` -> ``Encoder.pack``; the mechanism behind
``MediaPlayer(decode=False)``). What aiortc lacks is the *receiving* half and the feedback half; we add them with
three small hooks on objects we were handed, never by patching classes or modules:

1. ``RTCRtpReceiver.__decoder_queue`` (a ``queue.Queue`` read by the receiver's decoder thread) is replaced, before
   the receiver starts, by a :class:`_FrameQueue`. The receiver keeps doing its work — SRTP, NACK, RTX unwrapping,
   depayloading (RFC 7741 for VP8), reassembly in its jitter buffer, REMB — and ``put``\\s each complete encoded frame
   ``(codec, JitterFrame)`` into our queue, which hands it to a callback on the event loop. The decoder thread that
   aiortc starts finds nothing to decode: it blocks on our queue until the receiver stops, then ends the remote
   track exactly as before, so aiortc's own shutdown path is unchanged.
2. ``RTCRtpReceiver._handle_rtp_packet`` is wrapped on the instance to read each packet's SSRC (the target of our
   PLIs) and its audio level (RFC 6464 header extension, for the active speaker).
3. ``RTCRtpSender._send_keyframe`` (called when the remote peer sends PLI or FIR, RFC 4585 section 6.3.1 and
   RFC 5104 section 4.3.1) is replaced on the instance by a callback that forwards the request to the publisher;
   upstream, :meth:`ReceiverTap.request_keyframe` sends a PLI through ``RTCRtpReceiver._send_rtcp_pli``.
4. A video receiver's ``__jitter_buffer`` is replaced by a smaller one (:data:`VIDEO_JITTER_PACKETS`), so a lost
   packet that is never retransmitted freezes subscribers for about a second, not several.

aiortc is pinned (pyproject.toml); :func:`contract_problems` lists what an upgrade broke and
tests/media/test_contract.py fails with that list.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import aiortc
import av
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.jitterbuffer import JitterBuffer

__all__ = [
    "AIORTC_VERSION",
    "EncodedFrame",
    "ReceiverTap",
    "contract_problems",
    "count_frames",
    "intercept_keyframe_requests",
    "is_keyframe",
    "to_packet",
]

logger = logging.getLogger(__name__)

#: The aiortc version these hooks were written against (pyproject pins it).
AIORTC_VERSION = "1.16.0"

_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
_DECODER_THREAD = "_RTCRtpReceiver__decoder_thread"
_RTX_SSRC = "_RTCRtpReceiver__rtx_ssrc"
_JITTER_BUFFER = "_RTCRtpReceiver__jitter_buffer"

#: Packets a forwarded video may wait for a lost one before giving up and asking for a keyframe. aiortc's 512
#: (several seconds at 1 Mbit/s) would freeze every subscriber's tile that long when a retransmission is lost;
#: 128 still holds a 720p keyframe (about 60-100 packets) and gives up after about a second.
VIDEO_JITTER_PACKETS = 128


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One complete encoded frame as the publisher's encoder produced it (no RTP payload descriptor)."""

    data: bytes
    #: RTP timestamp relative to the publisher's first frame, in ``clock_rate`` units.
    timestamp: int
    clock_rate: int
    codec: str
    keyframe: bool


def is_keyframe(codec: str, data: bytes) -> bool:
    """Whether ``data`` (one encoded frame) can be decoded on its own.

    VP8: bit 0 of the frame tag is 0 for a key frame (RFC 6386 section 9.1). Audio frames are always independent.
    H.264 (not forwarded today): an IDR NAL unit (type 5, ITU-T H.264 table 7-1) in the Annex B stream.
    """
    name = codec.lower()
    if name == "vp8":
        return bool(data) and not data[0] & 0x01
    if name == "h264":
        i = 0
        while True:
            i = data.find(b"\x00\x00\x01", i)
            if i < 0 or i + 3 >= len(data):
                return False
            if data[i + 3] & 0x1F == 5:
                return True
            i += 3
    return True


_TIME_BASES = {90000: Fraction(1, 90000), 48000: Fraction(1, 48000)}


def to_packet(data: bytes, pts: int, clock_rate: int) -> av.Packet[Any]:
    """Wrap encoded bytes in the ``av.Packet`` that aiortc's sender packs without encoding."""
    packet = av.Packet(data)
    packet.pts = pts
    packet.time_base = _TIME_BASES.get(clock_rate) or Fraction(1, clock_rate)
    return packet


class _FrameQueue:
    """Stands in for the receiver's decoder queue: frames go to a callback, the decoder thread idles.

    ``put`` is called on the event loop thread (from ``RTCRtpReceiver._handle_rtp_packet``); ``get`` by aiortc's
    decoder thread, which we keep blocked until the receiver stops so that aiortc's shutdown (``put(None)``, join,
    end of the remote track) runs unchanged.
    """

    def __init__(self, on_frame: Callable[[EncodedFrame], None]) -> None:
        self._on_frame = on_frame
        self._stopped = threading.Event()

    def put(self, item: Any) -> None:
        if item is None:
            self._stopped.set()
            return
        codec, jitter_frame = item
        data = bytes(jitter_frame.data)
        name = str(codec.name)
        frame = EncodedFrame(
            data=data,
            timestamp=int(jitter_frame.timestamp),
            clock_rate=int(codec.clockRate),
            codec=name,
            keyframe=is_keyframe(name, data),
        )
        try:
            self._on_frame(frame)
        except Exception:  # a subscriber's bug must not kill the publisher's receiver
            logger.exception("forwarding callback failed")

    def get(self, block: bool = True, timeout: float | None = None) -> None:
        self._stopped.wait(timeout if block else 0)


class ReceiverTap:
    """Taps one :class:`aiortc.RTCRtpReceiver`: encoded frames and RTP packets out, keyframe requests in.

    Install it after ``setRemoteDescription`` and before the connection starts the receiver (that is, in the same
    synchronous stretch of code, or in the ``track`` event handler).
    """

    def __init__(
        self,
        receiver: RTCRtpReceiver,
        *,
        on_frame: Callable[[EncodedFrame], None],
        on_audio_level: Callable[[int], None] | None = None,
    ) -> None:
        if getattr(receiver, _DECODER_THREAD, None) is not None:
            raise RuntimeError(
                "the receiver has already started its decoder; install the tap right after setRemoteDescription"
            )
        if not hasattr(receiver, _DECODER_QUEUE):
            raise RuntimeError(
                f"aiortc changed: RTCRtpReceiver has no {_DECODER_QUEUE}; see tests/media/test_contract.py"
            )
        self._receiver = receiver
        self._on_audio_level = on_audio_level
        self.media_ssrc: int | None = None
        self.packets = 0
        self.frames = 0
        self._queue = _FrameQueue(self._count_and_forward(on_frame))
        setattr(receiver, _DECODER_QUEUE, self._queue)
        jitter = getattr(receiver, _JITTER_BUFFER, None)
        if jitter is not None and getattr(jitter, "_is_video", False):
            setattr(receiver, _JITTER_BUFFER, JitterBuffer(capacity=VIDEO_JITTER_PACKETS, is_video=True))
        self._original_handle: Callable[..., Awaitable[None]] = receiver._handle_rtp_packet
        receiver._handle_rtp_packet = self._handle_rtp_packet  # type: ignore[method-assign]

    def _count_and_forward(self, on_frame: Callable[[EncodedFrame], None]) -> Callable[[EncodedFrame], None]:
        def forward(frame: EncodedFrame) -> None:
            self.frames += 1
            on_frame(frame)

        return forward

    async def _handle_rtp_packet(self, packet: Any, arrival_time_ms: int) -> None:
        self.packets += 1
        rtx: dict[int, int] = getattr(self._receiver, _RTX_SSRC, {})
        if packet.ssrc not in rtx:
            self.media_ssrc = packet.ssrc
        level = packet.extensions.audio_level
        if level is not None and self._on_audio_level is not None:
            # (voice activity flag, level in -dBov), RFC 6464 section 3
            self._on_audio_level(int(level[1]))
        await self._original_handle(packet, arrival_time_ms=arrival_time_ms)

    async def request_keyframe(self) -> bool:
        """Send a PLI (RFC 4585 section 6.3.1) to the publisher; False if no media has arrived yet."""
        if self.media_ssrc is None:
            return False
        await self._receiver._send_rtcp_pli(self.media_ssrc)
        return True


def count_frames(receiver: RTCRtpReceiver, on_frame_end: Callable[[], None]) -> None:
    """For load-generating clients only: count frames by the RTP marker bit and drop the packets.

    The receiver's jitter buffer, NACKs and depayloading are skipped (the marker bit ends a video frame, RFC 7741
    section 4.1), so a benchmark client can receive a hundred streams on the CPU it shares with the server.
    """

    async def handle(packet: Any, arrival_time_ms: int) -> None:
        if packet.marker:
            on_frame_end()

    receiver._handle_rtp_packet = handle  # type: ignore[method-assign]


def intercept_keyframe_requests(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call ``callback`` whenever the remote peer asks ``sender`` for a keyframe (PLI or FIR).

    aiortc's own ``_send_keyframe`` only flags its encoder, which forwarded media never uses.
    """
    if not callable(getattr(sender, "_send_keyframe", None)):
        raise TypeError(
            "aiortc changed: RTCRtpSender has no _send_keyframe(); see tests/media/test_contract.py"
        )
    sender._send_keyframe = callback  # type: ignore[method-assign]


def contract_problems() -> list[str]:
    """What the hooks above rely on in aiortc, checked by inspection; empty when everything is as expected."""
    problems: list[str] = []
    if list(inspect.signature(JitterBuffer.__init__).parameters) != [
        "self",
        "capacity",
        "prefetch",
        "is_video",
    ]:
        problems.append("aiortc.jitterbuffer.JitterBuffer(capacity, prefetch, is_video) changed")
    if aiortc.__version__ != AIORTC_VERSION:
        problems.append(f"aiortc is {aiortc.__version__}, hooks were written for {AIORTC_VERSION}")
    receiver_init = inspect.getsource(RTCRtpReceiver.__init__)
    for name in ("__decoder_queue", "__decoder_thread", "__rtx_ssrc", "__jitter_buffer"):
        if f"self.{name}" not in receiver_init:
            problems.append(f"RTCRtpReceiver.__init__ no longer sets self.{name}")
    handle = getattr(RTCRtpReceiver, "_handle_rtp_packet", None)
    if handle is None or list(inspect.signature(handle).parameters) != ["self", "packet", "arrival_time_ms"]:
        problems.append(
            "RTCRtpReceiver._handle_rtp_packet(self, packet, arrival_time_ms) changed or vanished"
        )
    else:
        source = inspect.getsource(handle)
        if "self.__decoder_queue.put((codec, encoded_frame))" not in source:
            problems.append(
                "RTCRtpReceiver._handle_rtp_packet no longer puts (codec, encoded_frame) in its queue"
            )
    pli = getattr(RTCRtpReceiver, "_send_rtcp_pli", None)
    if pli is None or list(inspect.signature(pli).parameters) != ["self", "media_ssrc"]:
        problems.append("RTCRtpReceiver._send_rtcp_pli(self, media_ssrc) changed or vanished")
    elif not inspect.iscoroutinefunction(pli):
        problems.append("RTCRtpReceiver._send_rtcp_pli is no longer a coroutine function")
    from aiortc import rtcrtpreceiver

    worker = inspect.getsource(rtcrtpreceiver.decoder_worker)
    if "input_q.get()" not in worker or "output_q.put(None)" not in worker:
        problems.append("aiortc.rtcrtpreceiver.decoder_worker no longer reads input_q.get() / ends the track")
    keyframe = getattr(RTCRtpSender, "_send_keyframe", None)
    if keyframe is None or list(inspect.signature(keyframe).parameters) != ["self"]:
        problems.append("RTCRtpSender._send_keyframe(self) changed or vanished")
    if "self._send_keyframe()" not in inspect.getsource(RTCRtpSender._handle_rtcp_packet):
        problems.append("RTCRtpSender._handle_rtcp_packet no longer calls self._send_keyframe() on PLI/FIR")
    next_frame = inspect.getsource(RTCRtpSender._next_encoded_frame)
    if "self.__encoder.pack(data)" not in next_frame:
        problems.append("RTCRtpSender no longer packs av.Packet objects without encoding them")
    return problems
