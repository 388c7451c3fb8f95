"""The one module that reaches into aiortc's internals: encoded frames in, keyframe requests out.

Why: aiortc decodes every received track and encodes every sent one. A forwarding server needs neither. aiortc
can *send* pre-encoded media (a track whose ``recv()`` returns an ``av.Packet`` is packed without encoding, the
mechanism behind ``MediaPlayer(decode=False)``), but that path costs a task wake-up per frame and a chain of
awaits, header-extension packing and an ``RtpPacket`` object per packet, per subscriber: at twelve participants it
used 2.5 times the CPU of Janus for the same forwarding.

What aiortc lacks is the *receiving* half, the feedback half, and a send path cheap enough for a server that
sends every frame to ten subscribers; we add them with small hooks on objects we were handed, never by patching
classes or modules:

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
5. :class:`RtpWriter` sends on an ``RTCRtpSender`` without its send loop. It learns the negotiated payload
   type, mid and header-extension ids by wrapping ``RTCRtpSender.send`` (public parameters), then for each frame
   writes the RTP packets itself (RFC 3550 header, RFC 8285 one-byte extensions), protects them with the DTLS
   transport's SRTP session and hands them to the selected ICE pair's datagram transport, synchronously. It keeps
   the sender's report counters (``__ntp_timestamp``, ``__rtp_timestamp``, ``__packet_count``, ``__octet_count``)
   so aiortc's RTCP sender reports stay right, and answers NACKs itself (``RTCRtpSender._retransmit`` replaced on
   the instance; RFC 4588 RTX). The frame is packetised once per publication (:func:`packetize`) and the payloads
   are shared by every subscriber; only the header differs. Per subscriber, one call into native code
   (media/wire.c, built by cffi at install time) writes the headers, protects the packets with libsrtp's
   ``srtp_protect`` on the session pylibsrtp made (its own function pointer, handed over: one libsrtp in the
   process) and sends them on the nominated pair's socket, in one ``sendmsg`` with UDP segmentation offload
   (Linux ``UDP_SEGMENT``) where it can; through asyncio or aioice (TURN, TCP) otherwise.

aiortc is pinned (pyproject.toml); :func:`contract_problems` lists what an upgrade broke and
tests/media/test_contract.py fails with that list.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import inspect
import logging
import os
import secrets
import struct
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import aiortc
import av
from aioice.ice import StunProtocol
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from pylibsrtp import SRTP_MAX_TRAILER_LEN, Session
from pylibsrtp._binding import ffi as srtp_ffi
from pylibsrtp._binding import lib as srtp_lib

try:
    from ._wire import ffi as wire_ffi
    from ._wire import lib as wire_lib
except ImportError as exc:  # pragma: no cover - only on an install that skipped the build
    raise ImportError(
        "media._wire (the native send path, media/wire.c) is not built: run `make install`, or "
        "`pip install -e .` with gcc and the Python headers present, or `python media/wire_build.py`"
    ) from exc

__all__ = [
    "AIORTC_VERSION",
    "EncodedFrame",
    "Payloads",
    "ReceiverTap",
    "RtpWriter",
    "contract_problems",
    "count_frames",
    "intercept_keyframe_requests",
    "is_keyframe",
    "packetize",
    "send_time",
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


#: Largest RTP payload we send (VP8 descriptor included), as libwebrtc's senders do: with the RTP header and its
#: extensions (24 bytes) and SRTP's tag (10) a datagram is about 1,260 bytes over IPv4, which still fits a
#: 1,500-byte path after an IPsec tunnel (hospital VPNs, about 70 bytes) or a TURN relay (4 to 36 bytes).
MAX_PAYLOAD = 1200


@dataclass(frozen=True, slots=True)
class Payloads:
    """A frame's ``count`` RTP payloads back to back: every one ``size`` bytes but the last, which may be shorter.

    Kept as one buffer because that is how the native send path (media/wire.c) cuts them, for every subscriber.
    """

    data: bytes
    size: int
    count: int = 1

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> bytes:
        if not 0 <= index < self.count:
            raise IndexError(index)
        return self.data[index * self.size : (index + 1) * self.size]

    def __iter__(self) -> Iterator[bytes]:
        return (self[i] for i in range(self.count))


def packetize(frame: EncodedFrame, picture_id: int) -> Payloads:
    """RTP payloads for one frame, made once per publication and shared by every subscriber.

    VP8 (RFC 7741 section 4.2): each payload starts with the payload descriptor — X=1 (extensions present), S=1 on
    the frame's first packet, partition index 0 — and the extension byte I=1 with a 15-bit PictureID (M=1), which
    lets the receiver tell a lost frame from a late one. Opus (RFC 7587): the frame is the payload.
    """
    if frame.codec.lower() != "vp8":
        return Payloads(frame.data, max(1, len(frame.data)))
    pid = picture_id & 0x7FFF
    tail = bytes((0x80, 0x80 | pid >> 8, pid & 0xFF))
    data = frame.data
    chunk = MAX_PAYLOAD - 4
    pieces = [b"\x90" + tail, data[:chunk]]
    for pos in range(chunk, len(data), chunk):
        pieces += (b"\x80" + tail, data[pos : pos + chunk])
    return Payloads(b"".join(pieces), MAX_PAYLOAD, len(pieces) // 2)


_MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
_ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
#: The sender's report counters (name-mangled private attributes of RTCRtpSender), read by its RTCP loop.
_NTP_TIMESTAMP = "_RTCRtpSender__ntp_timestamp"
_RTP_TIMESTAMP = "_RTCRtpSender__rtp_timestamp"
_PACKET_COUNT = "_RTCRtpSender__packet_count"
_OCTET_COUNT = "_RTCRtpSender__octet_count"
#: Frames kept for NACK retransmission (RFC 4585 section 6.2.1): about two seconds at 30 fps.
HISTORY = 64
#: Bytes a subscriber's datagram transport may hold unsent before frames are dropped for it.
MAX_WRITE_BUFFER = 256 * 1024
_NTP_EPOCH = 2208988800  # seconds from 1900-01-01 (NTP) to 1970-01-01 (Unix), RFC 5905
#: pylibsrtp's own srtp_protect (libsrtp 2, statically linked into its binding), handed to media/wire.c.
_SRTP_PROTECT = wire_ffi.cast(
    "rcp_protect_fn", int(srtp_ffi.cast("uintptr_t", srtp_ffi.addressof(srtp_lib, "srtp_protect")))
)
#: What a send that the kernel refused says when UDP segmentation offload is not available on the route.
_NO_GSO = {errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP}
_WOULD_BLOCK = {errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR, errno.ENOBUFS}


def send_time() -> tuple[int, bytes]:
    """Now as a 64-bit NTP timestamp (sender reports, RFC 3550 section 6.4.1) and as the 24-bit abs-send-time
    value (6.18 fixed-point seconds), computed once per frame for every subscriber."""
    ntp = int((time.time() + _NTP_EPOCH) * (1 << 32))
    return ntp, ((ntp >> 14) & 0xFFFFFF).to_bytes(3, "big")


class _Scratch(threading.local):
    """Where media/wire.c writes a frame's protected packets before they leave: one buffer per thread, grown to
    the largest frame seen, reused by every subscriber (the writes are synchronous)."""

    def __init__(self) -> None:
        self.buffer = wire_ffi.new("unsigned char[]", 64 * 1024)
        self.lengths = wire_ffi.new("int[3]")

    def at_least(self, size: int) -> Any:
        if size > len(self.buffer):
            self.buffer = wire_ffi.new("unsigned char[]", max(size, 2 * len(self.buffer)))
        return self.buffer


_scratch = _Scratch()


class RtpWriter:
    """Writes packetised frames on one ``RTCRtpSender``, bypassing its per-packet coroutine (hook 5).

    ``write`` is synchronous and cheap: one call into media/wire.c builds the frame's RTP packets from a header
    template, protects them with the DTLS transport's SRTP session and sends them on the nominated pair's socket.
    It returns False (nothing sent) until the sender is negotiated and its DTLS transport connected, and when
    the subscriber's socket is congested: the caller drops the frame and restarts the video at a keyframe.
    """

    #: Whether UDP segmentation offload may be tried (Linux); cleared for the process when the kernel refuses it.
    gso = sys.platform.startswith("linux")

    def __init__(self, sender: RTCRtpSender) -> None:
        if not callable(getattr(sender, "_retransmit", None)) or not hasattr(sender, _NTP_TIMESTAMP):
            raise TypeError("aiortc changed: RTCRtpSender internals moved; see tests/media/test_contract.py")
        self._sender = sender
        self._ssrc = sender._ssrc
        self._rtx_ssrc = sender._rtx_ssrc
        self.payload_type: int | None = None
        self._rtx_type: int | None = None
        # The packet header template (RFC 3550 fixed header, then the RFC 8285 extensions): only the sequence
        # number, timestamp, marker bit and abs-send-time value change from packet to packet.
        self._head = b""
        self._extensions = b""
        self._abs_pos = -1
        self._seq = secrets.randbits(16)
        self._rtx_seq = secrets.randbits(16)
        self._origin = secrets.randbits(32)
        #: (first sequence number, packets, RTP timestamp, payloads) of the last frames, for NACKs.
        self._history: list[tuple[int, int, int, Payloads] | None] = [None] * HISTORY
        self._frames = 0
        self._slow: set[asyncio.Task[None]] = set()
        # The path, looked up again only when ICE nominates another candidate pair (or DTLS re-keys).
        self._nominated: dict[int, Any] | None = None
        self._pair: Any = None
        self._put: Callable[[bytes], None] | None = None
        self._datagrams: Any = None  # asyncio datagram transport (get_write_buffer_size)
        self._fd = -1
        self._address = wire_ffi.new("unsigned char[]", 128)
        self._address_length = 0
        self._session: Session | None = None
        self._srtp: Any = None
        self.packets = 0
        self.octets = 0
        self.retransmitted = 0
        #: Frames sent as one segmented burst of datagrams (UDP GSO).
        self.segmented = 0
        original_send = sender.send

        async def send(parameters: RTCRtpSendParameters) -> None:
            self._configure(parameters)
            await original_send(parameters)

        sender.send = send  # type: ignore[method-assign]
        sender._retransmit = self._retransmit  # type: ignore[method-assign]

    def _configure(self, parameters: RTCRtpSendParameters) -> None:
        codec = parameters.codecs[0]
        payload_type = codec.payloadType
        assert payload_type is not None, "aiortc negotiates a payload type for every codec it sends"
        self.payload_type = payload_type
        for other in parameters.codecs:
            if other.mimeType.lower().endswith("/rtx") and other.parameters.get("apt") == codec.payloadType:
                self._rtx_type = other.payloadType
        ids = {ext.uri: ext.id for ext in parameters.headerExtensions}
        mid = (parameters.muxId or "").encode()
        mid_id = ids.get(_MID_URI, 0)
        # RFC 8285 section 4.2 one-byte elements: ID (1-14) and length - 1 in the first byte; abs-send-time last.
        body = bytes((mid_id << 4 | len(mid) - 1,)) + mid if mid_id and 0 < len(mid) <= 16 else b""
        abs_id = ids.get(_ABS_SEND_TIME_URI, 0)
        if 0 < abs_id <= 14:
            body += bytes((abs_id << 4 | 2,))
            self._abs_pos = _RTP_HEADER.size + _EXTENSION_HEADER.size + len(body)
            body += b"\x00\x00\x00"
        if body:
            body += b"\x00" * (-len(body) % 4)
            self._extensions = _EXTENSION_HEADER.pack(0xBEDE, len(body) // 4) + body
        self._head = self._header(payload_type, self._ssrc)
        self._nominated = self._sender.transport.transport._connection._nominated

    def _header(self, payload_type: int, ssrc: int) -> bytes:
        """The header template; media/wire.c fills in each packet's sequence number, timestamp and marker bit."""
        first = 0x90 if self._extensions else 0x80  # V=2, X=1 when extensions follow (RFC 3550 section 5.1)
        return _RTP_HEADER.pack(first, payload_type, 0, 0, ssrc) + self._extensions

    def _path(self) -> int | None:
        """Where to write: a socket's descriptor, -1 for through asyncio or aioice, None while the path is down or
        congested. On the way, looks up what changed (nominated pair, socket, SRTP session)."""
        dtls = self._sender.transport
        if self._nominated is None or dtls._state is not DtlsState.CONNECTED:
            return None
        pair = self._nominated.get(1)
        if pair is None:
            return None
        if pair is not self._pair:
            self._pair = pair
            self._use(pair)
        buffered = self._datagrams.get_write_buffer_size() if self._datagrams is not None else 0
        if buffered > MAX_WRITE_BUFFER:
            return None
        session = dtls._tx_srtp
        if session is not self._session:
            self._session = session
            self._srtp = wire_ffi.cast("void *", int(srtp_ffi.cast("uintptr_t", session._srtp[0])))
        # Straight to the socket only while asyncio holds nothing for it (datagrams must not overtake).
        return -1 if buffered else self._fd

    def _use(self, pair: Any) -> None:
        """Send on ``pair``: straight to its socket for host and server-reflexive UDP, else through aioice."""
        protocol = pair.protocol
        host, port = pair.remote_addr[:2]
        transport = getattr(protocol, "transport", None)
        sock = getattr(transport, "_sock", None)  # asyncio's own socket
        self._address_length = wire_lib.rcp_socket_address(
            str(host).encode(), str(port).encode(), self._address, len(self._address)
        )
        if (
            type(protocol) is StunProtocol
            and transport is not None
            and sock is not None
            and self._address_length
        ):
            self._fd = sock.fileno()
            self._datagrams = transport
            self._put = functools.partial(transport.sendto, addr=pair.remote_addr)
        else:  # TURN relay or TCP: aioice's path
            self._fd = -1
            self._datagrams = None
            self._put = functools.partial(self._send_slowly, protocol, pair.remote_addr)

    def _emit(
        self, fd: int, head: bytes, seq: int, ts: int, abs_time: bytes, payloads: Payloads, marker: bool
    ) -> int:
        """Build, protect and send packets (media/wire.c) on ``fd`` (-1: through :meth:`_put_each`); the number
        written, or -1 if libsrtp refused them."""
        data = payloads.data
        scratch = _scratch
        out = scratch.at_least(len(data) + payloads.count * (len(head) + SRTP_MAX_TRAILER_LEN))
        lengths = scratch.lengths
        gso = RtpWriter.gso
        written = wire_lib.rcp_write_frame(
            _SRTP_PROTECT, self._srtp, head, len(head), self._abs_pos, abs_time, seq, ts, marker,
            data, len(data), payloads.size, out, len(out), SRTP_MAX_TRAILER_LEN,
            fd, self._address, self._address_length, gso, lengths,
        )  # fmt: skip
        if written < 0:
            return -1
        status = lengths[2]
        if status == 0:
            self.segmented += gso and written > 1
        elif status == -1 or (status in _NO_GSO and gso and written > 1):
            if status != -1:  # GSO refused (on the first burst, in practice): packet by packet from now on
                logger.info(
                    "UDP segmentation offload unavailable (%s); sending packet by packet", os.strerror(status)
                )
                RtpWriter.gso = False
            self._put_each(out, written, lengths[0], lengths[1])
        elif status not in _WOULD_BLOCK:  # lost like on the wire; NACK or a keyframe recovers
            logger.debug("sending RTP failed: %s", os.strerror(status))
        return int(written)

    def _put_each(self, out: Any, count: int, first: int, total: int) -> None:
        assert self._put is not None
        packets = wire_ffi.buffer(out, total)
        for i in range(count):
            self._put(packets[i * first : (i + 1) * first])  # the last one is cut short by the buffer's end

    def _send_slowly(self, protocol: Any, addr: Any, data: bytes) -> None:
        if len(self._slow) > 64:
            return  # congested relay: drop rather than queue without bound
        task = asyncio.get_running_loop().create_task(protocol.send_data(data, addr))
        self._slow.add(task)
        task.add_done_callback(self._slow.discard)

    def write(self, payloads: Payloads, timestamp: int, sent: tuple[int, bytes]) -> bool:
        """Send one frame's payloads (the last one carries the RTP marker bit); False if nothing was sent.

        ``sent`` is :func:`send_time`, taken once per frame by the caller that fans it out.
        """
        fd = self._path()
        if fd is None or self.payload_type is None:
            return False
        ntp, abs_send_time = sent
        ts = (self._origin + timestamp) & 0xFFFFFFFF
        seq = self._seq
        count = self._emit(fd, self._head, seq, ts, abs_send_time, payloads, True)
        if count < 0:
            return False  # libsrtp refused (it logs nothing): the frame is dropped, the slot restarts at a keyframe
        self._history[self._frames % HISTORY] = (seq, count, ts, payloads)
        self._frames += 1
        self._seq = (seq + count) & 0xFFFF
        self.packets += count
        self.octets += len(payloads.data)
        sender = self._sender
        setattr(sender, _NTP_TIMESTAMP, ntp)
        setattr(sender, _RTP_TIMESTAMP, ts)
        setattr(sender, _PACKET_COUNT, self.packets)
        setattr(sender, _OCTET_COUNT, self.octets)
        return True

    def _sent(self, sequence_number: int) -> tuple[bytes, int, bool] | None:
        """The payload, timestamp and marker bit of a packet still in the history."""
        for entry in self._history:
            if entry is not None:
                first, count, ts, payloads = entry
                index = (sequence_number - first) & 0xFFFF
                if index < count:
                    return payloads[index], ts, index == count - 1
        return None

    async def _retransmit(self, sequence_number: int) -> None:
        """Answer a NACK (RFC 4585 section 6.2.1): resend the packet, wrapped as RTX if negotiated (RFC 4588)."""
        sent = self._sent(sequence_number)
        fd = self._path()
        if sent is None or fd is None or self.payload_type is None:
            return
        payload, ts, marker = sent
        if self._rtx_type is not None:
            head = self._header(self._rtx_type, self._rtx_ssrc)
            seq, payload = self._rtx_seq, sequence_number.to_bytes(2, "big") + payload
            self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
        else:
            head, seq = self._head, sequence_number
        if self._emit(fd, head, seq, ts, send_time()[1], Payloads(payload, len(payload)), marker) > 0:
            self.retransmitted += 1

    def close(self) -> None:
        for task in tuple(self._slow):
            task.cancel()


_RTP_HEADER = struct.Struct("!BBHII")
_EXTENSION_HEADER = struct.Struct("!HH")


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
    problems += _writer_problems()
    return problems


def _writer_problems() -> list[str]:
    """What :class:`RtpWriter` (hook 5) relies on."""
    from aioice.ice import CandidatePair, Connection
    from aiortc.rtcdtlstransport import RTCDtlsTransport
    from aiortc.rtcicetransport import RTCIceTransport

    problems: list[str] = []
    send = RTCRtpSender.send
    if list(inspect.signature(send).parameters) != ["self", "parameters"] or not inspect.iscoroutinefunction(
        send
    ):
        problems.append("RTCRtpSender.send(self, parameters) changed")
    retransmit = getattr(RTCRtpSender, "_retransmit", None)
    if retransmit is None or list(inspect.signature(retransmit).parameters) != ["self", "sequence_number"]:
        problems.append("RTCRtpSender._retransmit(self, sequence_number) changed or vanished")
    if "await self._retransmit(seq)" not in inspect.getsource(RTCRtpSender._handle_rtcp_packet):
        problems.append("RTCRtpSender._handle_rtcp_packet no longer answers NACKs with self._retransmit(seq)")
    sender_init = inspect.getsource(RTCRtpSender.__init__)
    rtcp = inspect.getsource(RTCRtpSender._run_rtcp)
    for name in ("ntp_timestamp", "rtp_timestamp", "packet_count", "octet_count"):
        if f"self.__{name} = " not in sender_init or f"self.__{name}" not in rtcp:
            problems.append(f"RTCRtpSender's sender report no longer reads self.__{name}")
    for name in ("self._ssrc = ", "self._rtx_ssrc = "):
        if name not in sender_init:
            problems.append(f"RTCRtpSender.__init__ no longer sets {name.strip(' =')}")
    dtls_send = inspect.getsource(RTCDtlsTransport._send_rtp)
    if "self._state != State.CONNECTED" not in dtls_send or "self._tx_srtp.protect(data)" not in dtls_send:
        problems.append("RTCDtlsTransport._send_rtp no longer checks _state and protects with _tx_srtp")
    if "self._connection = gatherer._connection" not in inspect.getsource(RTCIceTransport.__init__):
        problems.append("RTCIceTransport no longer keeps its aioice Connection in _connection")
    sendto = inspect.getsource(Connection.sendto)
    if "self._nominated.get(component)" not in sendto or "active_pair.protocol.send_data(" not in sendto:
        problems.append("aioice Connection.sendto no longer sends through _nominated[component].protocol")
    if not isinstance(getattr(CandidatePair, "remote_addr", None), property):
        problems.append("aioice CandidatePair.remote_addr is no longer a property")
    if "self.transport.sendto(data, addr)" not in inspect.getsource(StunProtocol.send_data):
        problems.append("aioice StunProtocol.send_data no longer writes to its datagram transport")
    if "self._srtp = ffi.gc(srtp" not in inspect.getsource(Session.__init__):
        problems.append(
            "pylibsrtp Session.__init__ no longer keeps its srtp_t in _srtp (see RtpWriter._path)"
        )
    if "lib.srtp_protect" not in inspect.getsource(Session.protect):
        problems.append("pylibsrtp no longer protects with libsrtp's srtp_protect (see media/wire.c)")
    protect_type = srtp_ffi.getctype(srtp_ffi.typeof(srtp_ffi.addressof(srtp_lib, "srtp_protect")))
    if protect_type != "srtp_err_status_t(*)(struct srtp_ctx_t_ *, void *, int *)":
        problems.append(
            f"libsrtp's srtp_protect is now {protect_type}; media/wire.c calls it as (ctx, rtp, int *)"
        )
    return problems
