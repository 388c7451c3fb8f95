"""One participant's connection to a live room, whatever carries its messages.

The WebSocket endpoint (rcp.room.socket) and the WebRTC data channels (media/: ``view`` reliable and ordered,
``pointer`` unordered without retransmits) feed the same :meth:`Connection.handle`; what goes back is pushed with
:meth:`Connection.push` and leaves by the data channel when it is open, otherwise by the WebSocket. A client may
therefore receive events on both paths: it applies them by ``seq`` and ignores what it already has.

Faults stay with the client that causes them:
- a malformed or forbidden message gets an ``error`` frame and the connection stays up;
- a client sending too fast (token bucket) has its extra messages refused, nobody else notices;
- the send queue is bounded: a client that stops reading is dropped (it may rejoin and resume), pointer frames
  are skipped first when its queue fills.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from rcp import i18n
from rcp.errors import BadRequest, PayloadTooLarge, RcpError, TooManyRequests
from rcp.http import parse_json
from rcp.outages import part_down, unavailable
from rcp.room.commands import parse_command, parse_pointer
from rcp.room.events import Participant
from rcp.room.throttle import TokenBucket

if TYPE_CHECKING:
    from rcp.room.live import LiveRoom

__all__ = ["Connection", "MediaRoom", "RoomConfig", "error_frame"]

logger = logging.getLogger(__name__)

Kind = Literal["event", "pointer", "control"]
Via = Literal["ws", "dc"]

#: Close codes (RFC 6455 private range): dropped because it stopped reading / heartbeat lost / superseded.
CLOSE_DROPPED = 4408
CLOSE_TIMEOUT = 4410
CLOSE_SUPERSEDED = 4409
PONG = '{"type":"pong"}'


@dataclass(frozen=True, kw_only=True)
class RoomConfig:
    """Limits of the live room; the defaults suit a meeting of up to a few hundred participants."""

    #: Frames waiting for one client before it is considered not reading and dropped.
    queue_size: int = 512
    #: Commands per second (and burst) one client may send; pointer samples have their own bucket.
    command_rate: float = 30.0
    command_burst: float = 60.0
    pointer_rate: float = 60.0
    pointer_burst: float = 60.0
    #: Largest inbound message, bytes.
    max_message: int = 64 * 1024
    #: The server pings every ``ping_every_s``; silence for ``heartbeat_timeout_s`` ends the connection, so a
    #: vanished participant is shown as gone within 5 s (issue 4).
    ping_every_s: float = 1.0
    heartbeat_timeout_s: float = 3.5
    #: Silence for this long (two missed pings: the beat checks every half ping) marks the connection unstable
    #: for everyone before ``heartbeat_timeout_s`` marks it gone (issue 15, item 4).
    unstable_after_s: float = 2.0
    #: A remote node's participant is gone when its node has not vouched for it this long.
    presence_timeout_s: float = 4.5
    #: A single send blocked this long means the client stopped reading.
    send_timeout_s: float = 5.0
    #: Pointer frames leave at most this often (latest sample wins within a tick).
    pointer_tick_s: float = 0.02
    floor_grace_s: float = 15.0
    #: Every socket's session and right to be in the room are asked again this often (rcp.room.revocation), so an
    #: expiry or a deactivation without a message still ends the socket within a few seconds.
    recheck_s: float = 5.0
    #: Recent events kept in memory for resuming clients; older gaps get a snapshot.
    replay_window: int = 2048


class MediaRoom(Protocol):
    """What the room needs from media/hub.py's ``RoomMedia`` (participant ids are strings there)."""

    async def connect(
        self,
        participant_id: str,
        offer_sdp: str,
        *,
        on_message: Callable[[str, str | bytes], None] | None = None,
        on_state: Callable[[str], None] | None = None,
        on_media: Callable[[dict[str, Any]], None] | None = None,
    ) -> str: ...

    async def add_ice_candidate(self, participant_id: str, candidate: dict[str, Any] | None) -> None: ...

    async def disconnect(self, participant_id: str) -> None: ...

    def send(self, participant_id: str, channel: str, data: str | bytes) -> bool: ...

    def set_paused(self, subscriber: str, publisher: str, kind: str, paused: bool) -> bool: ...

    #: Told the participant id of the new active speaker (None: nobody speaks); set by the LiveRoom.
    on_speaker: Callable[[str | None], None] | None

    @property
    def speaker(self) -> str | None: ...


def error_frame(error: RcpError, ref: Any = None) -> str:
    """The frame of a refused command. Its message is shown to the person in the room (room.js), so it is given in
    their language (the connection's locale, ``rcp.i18n.LocaleMiddleware``) when the catalogs have it: the room's
    refusals are marked ``N_`` (``rcp.room.state``, ``rcp.room.live``); any other stays as written."""
    body: dict[str, Any] = {"type": "error", **error.as_json()}
    body["message"] = i18n.gettext(error.message) if error.message else error.message
    if isinstance(ref, str | int) and not isinstance(ref, bool):
        body["ref"] = ref
    return json.dumps(body)


class Connection:
    """A participant's seat on this node: inbound handling, outbound queue, liveness."""

    def __init__(
        self,
        room: LiveRoom,
        participant: Participant,
        *,
        config: RoomConfig,
        media: MediaRoom | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.room = room
        self.id = secrets.token_urlsafe(9)
        self.participant = participant
        self.user_id = participant.user_id
        self.config = config
        self.media = media
        self.rtc = False
        self._clock = clock
        self.last_heard = clock()
        self.last_ping = 0.0
        #: What the room last said about this connection (``participant.link``): silent past ``unstable_after_s``.
        self.unstable = False
        self.outbox: asyncio.Queue[str | None] = asyncio.Queue(config.queue_size)
        self.inbox: asyncio.Queue[tuple[str | bytes, Via] | None] = asyncio.Queue(256)
        self.closed = asyncio.Event()
        self.close_code = 1000
        self.close_reason = "left"
        #: The last frame before the close (why the server ended it: an ``error`` frame), sent by the endpoint.
        self.farewell: str | None = None
        self._commands = TokenBucket(config.command_rate, config.command_burst)
        self._pointers = TokenBucket(config.pointer_rate, config.pointer_burst)
        self._throttled_told = 0.0
        self.sent_dc = 0
        self.sent_ws = 0
        self.sending_since: float | None = None

    def __repr__(self) -> str:
        return f"<Connection {self.id} user={self.user_id} room={self.room.meeting_id}>"

    # -- outbound --------------------------------------------------------------------------------------------
    def push(self, frame: str, *, kind: Kind = "control") -> None:
        """Queue ``frame`` for this client without waiting; the data channel first for events and pointers."""
        if self.closed.is_set():
            return
        if self.rtc and self.media is not None and kind != "control":
            channel = "view" if kind == "event" else "pointer"
            if self.media.send(str(self.user_id), channel, frame):
                self.sent_dc += 1
                return
        if kind == "pointer" and self.outbox.qsize() >= self.config.queue_size // 2:
            return  # lossy by design: a later sample replaces it
        try:
            self.outbox.put_nowait(frame)
        except asyncio.QueueFull:
            logger.info("room %s: %r stopped reading; dropped", self.room.meeting_id, self)
            self.close(CLOSE_DROPPED, "dropped")

    def close(self, code: int, reason: str) -> None:
        """End the connection (the endpoint closes the socket and the room records the leave). Idempotent."""
        if self.closed.is_set():
            return
        self.close_code, self.close_reason = code, reason
        self.closed.set()
        for queue in (self.outbox, self.inbox):
            try:
                queue.put_nowait(None)
            except asyncio.QueueFull:
                pass  # the consumer also watches ``closed``

    def stalled(self, now: float) -> bool:
        """True when one send has waited longer than ``send_timeout_s``: the client stopped reading."""
        return self.sending_since is not None and now - self.sending_since > self.config.send_timeout_s

    async def write_to(self, send: Callable[[str], Awaitable[None]]) -> None:
        """Drain the queue into ``send`` (the WebSocket) until closed; a send stuck too long drops the client."""
        while not self.closed.is_set():
            frame = await self.outbox.get()
            if frame is None:
                return
            # No per-send timeout task (asyncio.wait_for costs a task per frame, per client): the room's heartbeat
            # watches ``sending_since`` and drops a client whose send has been stuck too long (see stalled()).
            self.sending_since = self._clock()
            await send(frame)
            self.sending_since = None
            self.sent_ws += 1

    # -- inbound ---------------------------------------------------------------------------------------------
    def feed(self, data: str | bytes, via: Via = "dc") -> None:
        """For callbacks that cannot await (aiortc's data-channel ``message``): queue for :meth:`read_inbox`."""
        self.last_heard = self._clock()
        try:
            self.inbox.put_nowait((data, via))
        except asyncio.QueueFull:
            self._refuse(TooManyRequests("Too many messages queued: slow down."), None)

    async def read_inbox(self) -> None:
        while not self.closed.is_set():
            item = await self.inbox.get()
            if item is None:
                return
            await self.handle(item[0], via=item[1])

    def heard(self) -> None:
        self.last_heard = self._clock()

    async def handle(self, data: str | bytes | Mapping[str, Any], *, via: Via = "ws") -> None:
        """One inbound message; any error goes back as an error frame and the connection stays up."""
        self.last_heard = self._clock()
        if data == PONG:
            return  # once a second per client: not worth parsing
        ref: Any = None
        try:
            message = self._decode(data)
            ref = message.get("id")
            await self._dispatch(message, via)
        except RcpError as error:
            self._refuse(error, ref)
        except Exception as exc:
            outage = unavailable(exc)  # PostgreSQL or Redis restarting: "try again", not a failure of ours
            if outage is not None:
                logger.warning("room %s: %r message refused, %s unreachable (%s)", self.room.meeting_id, self,
                               part_down(exc), type(exc).__name__)
                self._refuse(outage, ref)
                return
            logger.exception("room %s: %r message failed", self.room.meeting_id, self)
            self._refuse(RcpError("The server could not handle this message; it was logged."), ref)

    def _decode(self, data: str | bytes | Mapping[str, Any]) -> Mapping[str, Any]:
        if isinstance(data, Mapping):
            return data
        if len(data) > self.config.max_message:
            raise PayloadTooLarge(f"Messages are limited to {self.config.max_message} bytes.")
        # Nesting bounded before parsing (rcp.http.parse_json): a message 100,000 arrays deep is refused, not a
        # RecursionError logged as a failure of ours.
        message = parse_json(data, what="The message")
        if not isinstance(message, dict):
            raise BadRequest("Messages must be JSON objects with a 'type'.")
        return message

    async def _dispatch(self, message: Mapping[str, Any], via: Via) -> None:
        kind = message.get("type")
        if kind == "pong":
            return
        if kind == "ping":
            self.push(json.dumps({"type": "pong", "t": message.get("t")}))
            return
        now = self._clock()
        if kind == "pointer":
            if not self._pointers.take(now):
                raise TooManyRequests("Pointer samples are limited; send at most 30 per second.")
            column, row, index, viewport = parse_pointer(message)
            await self.room.point(self, column, row, index, viewport)
            return
        if not self._commands.take(now):
            raise TooManyRequests("Too many messages: wait a moment before sending more.")
        if kind == "resume":
            last = message.get("last_seq")
            if isinstance(last, bool) or not isinstance(last, int) or last < 0:
                raise BadRequest("'last_seq' must be a whole number >= 0.")
            await self.room.resend(self, last)
            return
        if kind in {"rtc.offer", "rtc.ice", "rtc.close"}:
            await self._signal(message)
            return
        if kind == "media.pause":
            self._pause(message)
            return
        await self.room.execute(parse_command(message), actor=self.user_id, origin=self)

    def _refuse(self, error: RcpError, ref: Any) -> None:
        if isinstance(error, TooManyRequests):
            now = self._clock()
            if now - self._throttled_told < 1.0:
                return  # tell a flooding client once a second, not once per message
            self._throttled_told = now
        self.push(error_frame(error, ref))

    # -- WebRTC signalling (media/ owns the peer) ------------------------------------------------------------
    async def _signal(self, message: Mapping[str, Any]) -> None:
        if self.media is None:
            raise BadRequest("WebRTC is not available on this server: the room works over the WebSocket.")
        pid = str(self.user_id)
        kind = message["type"]
        if kind == "rtc.close":
            self.rtc = False
            await self.media.disconnect(pid)
            return
        if kind == "rtc.ice":
            candidate = message.get("candidate")
            if candidate is not None and not isinstance(candidate, dict):
                raise BadRequest("'candidate' must be RTCIceCandidate.toJSON() or null.")
            try:
                await self.media.add_ice_candidate(pid, candidate)
            except ValueError as exc:
                raise BadRequest(str(exc)) from None
            return
        sdp = message.get("sdp")
        if not isinstance(sdp, str) or not sdp or len(sdp) > 60_000:
            raise BadRequest("'sdp' must be the offer's SDP text.")
        try:
            answer = await self.media.connect(
                pid, sdp, on_message=self._on_channel, on_state=self._on_peer_state, on_media=self._on_media
            )
        except ValueError as exc:
            raise BadRequest(f"The offer was refused: {exc}") from None
        self.rtc = True
        self.push(json.dumps({"type": "rtc.answer", "sdp": answer}))

    def _pause(self, message: Mapping[str, Any]) -> None:
        """Stop or resume receiving one participant's video (its tile is hidden); audio always flows.

        Not a room event: only this participant's own subscription changes, and its next ``media.slots`` (sent by
        media/ through :meth:`_on_media`) shows the slot ``paused``.
        """
        if self.media is None:
            raise BadRequest("WebRTC is not available on this server: there is no video to pause.")
        participant = message.get("participant")
        if isinstance(participant, bool) or not isinstance(participant, int) or participant < 1:
            raise BadRequest("'participant' must be the user id (a whole number >= 1) whose video to pause.")
        paused = message.get("paused")
        if not isinstance(paused, bool):
            raise BadRequest("'paused' must be true (stop receiving that video) or false (receive it again).")
        self.media.set_paused(str(self.user_id), str(participant), "video", paused)

    def _on_channel(self, label: str, data: str | bytes) -> None:
        self.feed(data, "dc")

    def _on_peer_state(self, state: str) -> None:
        if state in {"failed", "closed"}:
            self.rtc = False
            self.feed(json.dumps({"type": "path", "path": "ws"}), "ws")

    def _on_media(self, message: dict[str, Any]) -> None:
        self.push(json.dumps(message))
