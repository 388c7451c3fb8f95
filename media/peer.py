"""One server-side RTCPeerConnection per participant: offer/answer, data channels, connection state.

Who offers: always the client (browser or aiortc). Its offer carries
  * one ``sendonly`` audio and one ``sendonly`` video transceiver: its microphone and camera (possibly without a
    track yet; the browser attaches one later with ``replaceTrack``, which needs no renegotiation);
  * N ``recvonly`` audio and N ``recvonly`` video transceivers: *slots* for the other participants' media. The
    server answers ``sendonly`` on them and points each at a publisher as people come and go (see
    :mod:`media.hub`), so the set of publishers changes without renegotiation — aiortc cannot add or recycle
    m-lines reliably on an established connection, and Chromium handles pre-allocated ``recvonly`` m-lines well;
  * the two data channels, **created by the client** (they are then part of the first offer; the server only
    accepts them): ``view`` (reliable, ordered) and ``pointer`` (``ordered: false, maxRetransmits: 0``).

aiortc gathers its ICE candidates before answering (non-trickle); remote candidates the browser trickles are
accepted with :meth:`Peer.add_ice_candidate`. When the path breaks the client makes a *fresh* peer connection and
offers again (aiortc does not support ICE restarts); the hub then replaces this peer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCSessionDescription,
)
from aiortc.exceptions import InternalError, InvalidAccessError, OperationError
from aiortc.sdp import candidate_from_sdp

from .negotiation import raise_start_bitrate, restrict_codecs
from .relay import SlotTrack

__all__ = ["CHANNELS", "MAX_BUFFERED_BYTES", "Peer"]

logger = logging.getLogger(__name__)

#: The data channels a client opens, and how (W3C WebRTC RTCDataChannelInit).
CHANNELS: dict[str, dict[str, Any]] = {
    "view": {"ordered": True},
    "pointer": {"ordered": False, "maxRetransmits": 0},
}

#: A channel with more than this waiting to be sent refuses new messages (send returns False): the caller
#: decides (coalesce, drop, fall back to the WebSocket) instead of the server buffering without limit.
MAX_BUFFERED_BYTES = 1 << 20

OnMessage = Callable[[str, "str | bytes"], None]
OnState = Callable[[str], None]


class Peer:
    """The server's end of one participant's RTCPeerConnection."""

    def __init__(
        self,
        participant_id: str,
        *,
        ice_servers: Sequence[RTCIceServer] = (),
        on_message: OnMessage | None = None,
        on_state: OnState | None = None,
        on_publish: Callable[[str, RTCRtpReceiver], None] | None = None,
        make_slot: Callable[[str, str | None], SlotTrack] | None = None,
        start_bitrate_kbps: int = 800,
        label: str = "",
    ) -> None:
        self.participant_id = participant_id
        self.label = label or participant_id
        self._ice_servers = list(ice_servers)
        self._on_message = on_message
        self._on_state = on_state
        self._on_publish = on_publish
        self._make_slot = make_slot
        self._start_bitrate_kbps = start_bitrate_kbps
        self._pc: RTCPeerConnection | None = None
        self._channels: dict[str, RTCDataChannel] = {}
        self._closed = False
        self.state = "new"

    @property
    def pc(self) -> RTCPeerConnection | None:
        return self._pc

    @property
    def channels(self) -> dict[str, RTCDataChannel]:
        return dict(self._channels)

    async def answer(self, offer_sdp: str) -> str:
        """Apply the client's offer and return the server's answer (with all its ICE candidates).

        Raises ValueError (with a message for the client) when the offer cannot be used.
        """
        if self._pc is not None:
            raise RuntimeError(f"peer {self.label} already answered; make a fresh Peer for a new offer")
        if self._closed:
            raise RuntimeError(f"peer {self.label} is closed")
        if not offer_sdp.startswith("v=0") or "\nm=" not in offer_sdp:
            raise ValueError("the offer has no media section; send RTCPeerConnection.createOffer()'s SDP")
        pc = RTCPeerConnection(
            RTCConfiguration(iceServers=self._ice_servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self._pc = pc
        pc.on("datachannel", self._accept_channel)
        pc.on("connectionstatechange", self._connection_state_changed)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=restrict_codecs(offer_sdp), type="offer"))
        except (ValueError, IndexError, InternalError, InvalidAccessError, OperationError) as exc:
            raise ValueError(
                f"the offer could not be applied ({exc or type(exc).__name__}); send the browser's own offer, "
                "with VP8 video and Opus audio"
            ) from None
        # No await between setRemoteDescription and here: the receivers have not started yet, so taps can be
        # installed (media.forwarding.ReceiverTap requires it).
        for transceiver in pc.getTransceivers():
            if transceiver.receiver.track is not None:
                if self._on_publish is not None:
                    self._on_publish(transceiver.kind, transceiver.receiver)
            elif self._make_slot is not None:
                slot = self._make_slot(transceiver.kind, transceiver.mid)
                transceiver.sender.replaceTrack(slot)
                transceiver.direction = "sendonly"
                slot.bind(transceiver.sender)
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        return raise_start_bitrate(pc.localDescription.sdp, start_kbps=self._start_bitrate_kbps)

    async def add_ice_candidate(self, candidate: dict[str, Any] | None) -> None:
        """Accept a candidate trickled by the browser (``RTCIceCandidate.toJSON()``), or None/empty at the end."""
        if self._pc is None or self._closed:
            return
        text = (candidate or {}).get("candidate") or ""
        if not text:
            await self._pc.addIceCandidate(None)
            return
        text = text.removeprefix("candidate:")
        try:
            parsed = candidate_from_sdp(text)
        except (ValueError, IndexError) as exc:
            raise ValueError(
                f"ICE candidate could not be parsed ({exc}); send RTCIceCandidate.toJSON()"
            ) from None
        parsed.sdpMid = candidate.get("sdpMid") if candidate else None
        parsed.sdpMLineIndex = candidate.get("sdpMLineIndex") if candidate else None
        await self._pc.addIceCandidate(parsed)

    def send(self, channel: str, data: str | bytes) -> bool:
        """Send on ``view`` or ``pointer``; False when the channel is not open or too much is already queued."""
        dc = self._channels.get(channel)
        if dc is None or dc.readyState != "open" or dc.bufferedAmount > MAX_BUFFERED_BYTES:
            return False
        try:
            dc.send(data)
        except Exception:  # aiortc raises InvalidStateError if the transport closed meanwhile
            logger.debug("peer %s: send on %s failed", self.label, channel, exc_info=True)
            return False
        return True

    async def close(self, *, notify: bool = True) -> None:
        """Close the connection and forget callbacks. Safe to call twice.

        ``notify=False`` when a fresh peer replaces this one: the owner must not hear "closed" for a participant
        who is still there.
        """
        if self._closed:
            return
        self._closed = True
        self._on_message = None
        if not notify:
            self._on_state = None
        pc, self._pc = self._pc, None
        self._channels.clear()
        if pc is not None:
            await pc.close()
        self.state = "closed"
        on_state, self._on_state = self._on_state, None
        if on_state is not None and notify:
            on_state("closed")

    def _accept_channel(self, channel: RTCDataChannel) -> None:
        if channel.label not in CHANNELS:
            logger.info("peer %s: ignoring unknown data channel %r", self.label, channel.label)
            return
        self._channels[channel.label] = channel
        label = channel.label

        @channel.on("message")
        def on_message(message: str | bytes) -> None:
            if self._on_message is not None:
                self._on_message(label, message)

        @channel.on("close")
        def on_close() -> None:
            if self._channels.get(label) is channel:
                del self._channels[label]

    def _connection_state_changed(self) -> None:
        if self._pc is None:
            return
        self.state = self._pc.connectionState
        logger.info("peer %s: connection %s", self.label, self.state)
        if self._on_state is not None:
            self._on_state(self.state)
