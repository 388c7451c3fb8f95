"""The owners of the media plane: one :class:`MediaHub` per process, one :class:`RoomMedia` per meeting.

A room holds, for each participant, its :class:`~media.peer.Peer`, its *slots* (outbound tracks, see
:mod:`media.peer` for why they are pre-allocated) and its *publications* (camera and microphone as received).
Whenever somebody joins, reconnects or leaves, the room re-assigns slots: every subscriber shows every other
participant's audio and video, keeping existing assignments stable, and is told the mapping through its
``on_media`` callback as ``{"type": "media.slots", "slots": [{"mid", "kind", "participant", "paused"}, ...]}``
(the room's WebSocket carries it to the browser, which labels its tiles with it).

Everything a participant held — peer, receivers and their threads, slots and their queues, keyframe timers — is
released by :meth:`RoomMedia.disconnect`; :meth:`MediaHub.close` closes every peer within a time limit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCIceServer, RTCRtpReceiver

from .forwarding import ReceiverTap
from .peer import OnMessage, OnState, Peer
from .relay import Publication, SlotTrack, Throughput
from .speaker import SpeakerDetector

__all__ = ["MediaHub", "OnMedia", "OnSpeaker", "RoomMedia"]

logger = logging.getLogger(__name__)

OnMedia = Callable[[dict[str, Any]], None]
OnSpeaker = Callable[[str | None], None]

KINDS = ("audio", "video")


@dataclass(eq=False)
class _Member:
    participant_id: str
    peer: Peer
    on_media: OnMedia | None
    slots: list[SlotTrack] = field(default_factory=list)
    published: set[str] = field(default_factory=set)
    #: The slot mapping last sent through ``on_media`` (events are only sent when it changes).
    told: list[dict[str, Any]] | None = None


class RoomMedia:
    """The media of one meeting: peers, forwarding between them, active speaker."""

    def __init__(
        self,
        meeting_id: str,
        *,
        ice_servers: Sequence[RTCIceServer] = (),
        start_bitrate_kbps: int = 800,
        on_speaker: OnSpeaker | None = None,
        on_empty: Callable[[RoomMedia], None] | None = None,
        on_join: Callable[[RoomMedia], None] | None = None,
        throughput: Throughput | None = None,
    ) -> None:
        self.meeting_id = meeting_id
        self._throughput = throughput
        self.on_speaker = on_speaker
        self._ice_servers = list(ice_servers)
        self._start_bitrate_kbps = start_bitrate_kbps
        self._on_empty = on_empty
        self._on_join = on_join
        self._members: dict[str, _Member] = {}
        self._publications: dict[tuple[str, str], Publication] = {}
        self._paused: set[tuple[str, str, str]] = set()
        self._lock = asyncio.Lock()
        self._speaker = SpeakerDetector()
        self._closed = False

    # -- queries ---------------------------------------------------------------------------------------------
    @property
    def participants(self) -> list[str]:
        return list(self._members)

    @property
    def speaker(self) -> str | None:
        return self._speaker.current

    def publication(self, participant_id: str, kind: str) -> Publication | None:
        return self._publications.get((participant_id, kind))

    def peer(self, participant_id: str) -> Peer | None:
        member = self._members.get(participant_id)
        return member.peer if member else None

    def slots(self, participant_id: str) -> list[dict[str, Any]]:
        """Which participant each of ``participant_id``'s receiving transceivers (by mid) shows."""
        member = self._members.get(participant_id)
        if member is None:
            return []
        return [
            {
                "mid": slot.mid,
                "kind": slot.kind,
                "participant": slot.source.publisher if slot.source else None,
                "paused": slot.paused,
            }
            for slot in member.slots
        ]

    def slot_showing(self, subscriber: str, publisher: str, kind: str) -> SlotTrack | None:
        """The slot through which ``subscriber`` receives ``publisher``'s ``kind``, if any.

        Read-only use: its counters (``forwarded``, ``withheld``, ``keyframe_requests``) say what the forwarder did,
        which is how tests prove that something was *not* sent.
        """
        member = self._members.get(subscriber)
        if member is None:
            return None
        return next((s for s in member.slots if s.kind == kind and s.source is not None
                     and s.source.publisher == publisher), None)

    # -- membership ------------------------------------------------------------------------------------------
    async def connect(
        self,
        participant_id: str,
        offer_sdp: str,
        *,
        on_message: OnMessage | None = None,
        on_state: OnState | None = None,
        on_media: OnMedia | None = None,
    ) -> str:
        """Answer ``participant_id``'s offer; a second call (fresh peer after a network change) replaces the first.

        The participant's publications survive a reconnection, so the other participants keep their slot for it
        and only wait for the next keyframe.
        """
        if self._closed:
            raise RuntimeError(f"room {self.meeting_id} media is closed")
        async with self._lock:
            old = self._members.pop(participant_id, None)
            if old is not None:
                logger.info("room %s: %s reconnects with a fresh peer", self.meeting_id, participant_id)
                await self._release_peer(old, notify=False)
            member_slots: list[SlotTrack] = []
            published: set[str] = set()

            def publish(kind: str, receiver: RTCRtpReceiver) -> None:
                if kind in published:
                    return  # one camera and one microphone per participant
                published.add(kind)
                publication = self._publications.get((participant_id, kind))
                if publication is None:
                    publication = Publication(
                        participant_id, kind, label=f"{self.meeting_id}/{participant_id}"
                    )
                    self._publications[(participant_id, kind)] = publication
                if kind == "audio":
                    publication.on_audio_level = lambda level: self._audio_level(participant_id, level)
                tap = ReceiverTap(
                    receiver, on_frame=publication.on_frame, on_audio_level=publication.audio_level
                )
                publication.use(tap)

            def make_slot(kind: str, mid: str | None) -> SlotTrack:
                slot = SlotTrack(kind, mid=mid, throughput=self._throughput)
                member_slots.append(slot)
                return slot

            peer = Peer(
                participant_id,
                ice_servers=self._ice_servers,
                on_message=on_message,
                on_state=on_state,
                on_publish=publish,
                make_slot=make_slot,
                start_bitrate_kbps=self._start_bitrate_kbps,
                label=f"{self.meeting_id}/{participant_id}",
            )
            try:
                answer = await peer.answer(offer_sdp)
            except BaseException:
                await peer.close()
                for slot in member_slots:
                    slot.end()
                if old is not None:  # the previous connection is gone too: nothing of it may linger
                    for kind in KINDS:
                        self._drop_publication(participant_id, kind)
                    self._assign()
                raise
            # Publications of kinds this offer no longer sends end for everybody.
            for kind in KINDS:
                if kind not in published:
                    self._drop_publication(participant_id, kind)
            self._members[participant_id] = _Member(participant_id, peer, on_media, member_slots, published)
            self._assign()
        if self._on_join is not None:
            self._on_join(self)
        return answer

    async def add_ice_candidate(self, participant_id: str, candidate: dict[str, Any] | None) -> None:
        member = self._members.get(participant_id)
        if member is not None:
            await member.peer.add_ice_candidate(candidate)

    async def disconnect(self, participant_id: str) -> None:
        """Free everything ``participant_id`` held; its video and audio end for everybody. Safe to repeat."""
        async with self._lock:
            member = self._members.pop(participant_id, None)
            for kind in KINDS:
                self._drop_publication(participant_id, kind)
            self._paused = {entry for entry in self._paused if participant_id not in entry[:2]}
            speaker_before = self._speaker.current
            self._speaker.remove(participant_id, asyncio.get_running_loop().time())
            if member is not None:
                await self._release_peer(member)
                self._assign()
            if self._speaker.current != speaker_before and self.on_speaker is not None:
                self.on_speaker(self._speaker.current)
        if not self._members and self._on_empty is not None:
            self._on_empty(self)

    async def close(self) -> None:
        """Disconnect everybody."""
        self._closed = True
        for participant_id in list(self._members):
            await self.disconnect(participant_id)

    # -- data channels and control ---------------------------------------------------------------------------
    def send(self, participant_id: str, channel: str, data: str | bytes) -> bool:
        member = self._members.get(participant_id)
        return member.peer.send(channel, data) if member else False

    def broadcast(self, channel: str, data: str | bytes, *, exclude: Iterable[str] = ()) -> int:
        """Send to every participant but ``exclude``; returns how many accepted the message."""
        skip = set(exclude)
        return sum(1 for pid, m in self._members.items() if pid not in skip and m.peer.send(channel, data))

    def set_paused(self, subscriber: str, publisher: str, kind: str, paused: bool) -> bool:
        """Stop or resume forwarding ``publisher``'s video to ``subscriber`` (a hidden tile). Audio always flows.

        Returns whether a slot showing that publication exists. The choice is remembered across reconnections.
        """
        if kind != "video":
            return False
        entry = (subscriber, publisher, kind)
        if paused:
            self._paused.add(entry)
        else:
            self._paused.discard(entry)
        member = self._members.get(subscriber)
        if member is None:
            return False
        for slot in member.slots:
            if slot.kind == kind and slot.source is not None and slot.source.publisher == publisher:
                slot.set_paused(paused)
                self._notify(member)
                return True
        return False

    # -- internals -------------------------------------------------------------------------------------------
    def _audio_level(self, participant_id: str, level: int) -> None:
        changed = self._speaker.observe(participant_id, level, asyncio.get_running_loop().time())
        if changed is not None and self.on_speaker is not None:
            self.on_speaker(changed)

    def _drop_publication(self, participant_id: str, kind: str) -> None:
        publication = self._publications.pop((participant_id, kind), None)
        if publication is not None:
            publication.close()

    async def _release_peer(self, member: _Member, *, notify: bool = True) -> None:
        for slot in member.slots:
            slot.end()
        member.slots.clear()
        await member.peer.close(notify=notify)

    def _assign(self) -> None:
        """Point every subscriber's slots at the other participants' publications, keeping stable assignments."""
        order = list(self._members)
        for member in self._members.values():
            for kind in KINDS:
                wanted = [
                    self._publications[(pid, kind)]
                    for pid in order
                    if pid != member.participant_id and (pid, kind) in self._publications
                ]
                slots = [slot for slot in member.slots if slot.kind == kind]
                for slot in slots:
                    if slot.source is not None and slot.source not in wanted:
                        slot.attach(None)
                        slot.set_paused(False)
                shown = {slot.source for slot in slots if slot.source is not None}
                free = [slot for slot in slots if slot.source is None]
                for publication in wanted:
                    if publication in shown:
                        continue
                    if not free:
                        logger.warning(
                            "room %s: %s has no free %s slot for %s (offer more recvonly transceivers)",
                            self.meeting_id,
                            member.participant_id,
                            kind,
                            publication.publisher,
                        )
                        break
                    slot = free.pop(0)
                    slot.set_paused((member.participant_id, publication.publisher, kind) in self._paused)
                    slot.attach(publication)
            self._notify(member)

    def _notify(self, member: _Member) -> None:
        slots = self.slots(member.participant_id)
        if slots == member.told:
            return
        member.told = slots
        if member.on_media is not None:
            try:
                member.on_media({"type": "media.slots", "slots": slots})
            except Exception:
                logger.exception("room %s: on_media callback failed", self.meeting_id)


class MediaHub:
    """The process-wide owner of every room's media; built once from the settings and closed at shutdown."""

    def __init__(
        self,
        *,
        ice_servers: Sequence[str] = (),
        ice_username: str = "",
        ice_credential: str = "",
        server_uses_ice_servers: bool = False,
        start_bitrate_kbps: int = 800,
    ) -> None:
        self._browser_ice = list(ice_servers)
        self._ice_username = ice_username
        self._ice_credential = ice_credential
        # The server normally has a routable address (or sits on loopback in tests); STUN/TURN are for browsers
        # behind hospital NATs. A server behind NAT can opt in.
        self._server_ice: list[RTCIceServer] = (
            [self._aiortc_ice_server()] if server_uses_ice_servers and ice_servers else []
        )
        self._start_bitrate_kbps = start_bitrate_kbps
        self._rooms: dict[str, RoomMedia] = {}
        self._closed = False
        #: Frames and bytes every slot of every room has forwarded since start (rcp.metrics).
        self.throughput = Throughput()

    @classmethod
    def from_settings(cls, settings: Any) -> MediaHub:
        """Build from :class:`rcp.config.Settings` (``ice_servers``, ``ice_username``, ``ice_credential``)."""
        return cls(
            ice_servers=tuple(settings.ice_servers),
            ice_username=settings.ice_username,
            ice_credential=settings.ice_credential,
        )

    def _aiortc_ice_server(self) -> RTCIceServer:
        return RTCIceServer(
            urls=self._browser_ice,
            username=self._ice_username or None,
            credential=self._ice_credential or None,
        )

    def browser_ice_servers(self) -> list[dict[str, Any]]:
        """The ``iceServers`` list for the browser's ``RTCPeerConnection`` (W3C RTCConfiguration)."""
        if not self._browser_ice:
            return []
        server: dict[str, Any] = {"urls": list(self._browser_ice)}
        if self._ice_username:
            server["username"] = self._ice_username
            server["credential"] = self._ice_credential
        return [server]

    @property
    def rooms(self) -> dict[str, RoomMedia]:
        return dict(self._rooms)

    def room(self, meeting_id: str, *, on_speaker: OnSpeaker | None = None) -> RoomMedia:
        """The meeting's media (created on first use; dropped again when its last participant leaves)."""
        if self._closed:
            raise RuntimeError("the media hub is closed")
        room = self._rooms.get(meeting_id)
        if room is None:
            room = RoomMedia(
                meeting_id,
                ice_servers=self._server_ice,
                start_bitrate_kbps=self._start_bitrate_kbps,
                on_empty=self._forget,
                on_join=self._remember,
                throughput=self.throughput,
            )
            self._rooms[meeting_id] = room
        if on_speaker is not None:
            room.on_speaker = on_speaker
        return room

    def throughput_now(self) -> tuple[int, int]:
        """Slots forwarding a publication now (paused video excluded), and payload bytes forwarded since start."""
        streams = sum(1 for room in self._rooms.values() for member in room._members.values()
                      for slot in member.slots if slot.source is not None and not slot.paused)
        return streams, self.throughput.bytes

    def _remember(self, room: RoomMedia) -> None:
        # A caller may keep a RoomMedia across its empty spell; joining again makes the hub own it again.
        if not self._closed:
            self._rooms.setdefault(room.meeting_id, room)

    def _forget(self, room: RoomMedia) -> None:
        if self._rooms.get(room.meeting_id) is room and not room.participants:
            del self._rooms[room.meeting_id]

    async def close(self, timeout: float = 5.0) -> None:
        """Close every peer, giving up after ``timeout`` seconds (then the remaining closes are cancelled)."""
        self._closed = True
        rooms = list(self._rooms.values())
        self._rooms.clear()
        if not rooms:
            return
        tasks = [asyncio.ensure_future(room.close()) for room in rooms]
        done, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            logger.warning(
                "media hub: %d room(s) did not close within %.1f s; cancelled", len(pending), timeout
            )
            await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                logger.warning("media hub: closing a room failed: %r", task.exception())
