"""Several media nodes: each room's media lives on one node, chosen through Redis; other nodes relay to it.

Why: forwarding needs every participant of a room on the same process (a publisher's packets go to its
subscribers' peers in memory). With several server nodes behind a load balancer, participants of one meeting may
reach different nodes. The first node that needs a room *claims* it in Redis (``SET owner NX`` with a TTL it keeps
refreshing while the room has participants, so a dead node's rooms are freed); any other node relays signalling
and data-channel traffic to the owner through Redis pub/sub. The browser's RTCPeerConnection then runs with the
owner node directly: its answer carries the owner's ICE candidates, so media never crosses nodes.

:class:`MediaNode` has the same ``room(meeting_id)`` entry point as :class:`~media.hub.MediaHub`; the room objects
it returns have the same ``connect / add_ice_candidate / send / disconnect`` methods as
:class:`~media.hub.RoomMedia`, so the room code does not care where the media runs.

Redis layout (``prefix`` defaults to ``rcp:media:``): ``{prefix}owner:{meeting}`` = node id (TTL);
channels ``{prefix}node:{node}`` (requests to a node), ``{prefix}reply:{node}`` (answers to a node's requests),
``{prefix}peer:{meeting}:{participant}`` (data-channel messages, state and slot events for the relaying node).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from .hub import MediaHub, OnMedia, OnSpeaker, RoomMedia
from .peer import OnMessage, OnState

__all__ = ["MediaNode", "PlacedRoom"]

logger = logging.getLogger(__name__)

#: Compare-and-delete / compare-and-expire, so a node never frees or extends another node's claim.
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
_REFRESH = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"


def _encode(data: str | bytes) -> dict[str, str]:
    if isinstance(data, bytes):
        return {"b64": base64.b64encode(data).decode()}
    return {"text": data}


def _decode(payload: dict[str, Any]) -> str | bytes:
    if "b64" in payload:
        return base64.b64decode(payload["b64"])
    return str(payload.get("text", ""))


@dataclass
class _Remote:
    """A participant whose peer lives on another node, seen from the node holding its WebSocket."""

    owner: str
    on_message: OnMessage | None
    on_state: OnState | None
    on_media: OnMedia | None


class PlacedRoom:
    """A meeting's media as seen from one node: local when this node owns it, relayed otherwise."""

    def __init__(self, node: MediaNode, meeting_id: str) -> None:
        self.node = node
        self.meeting_id = meeting_id
        self.on_speaker: OnSpeaker | None = None
        self._remote: dict[str, _Remote] = {}
        self._speaker: str | None = None

    @property
    def local(self) -> RoomMedia:
        return self.node.local_room(self.meeting_id)

    @property
    def speaker(self) -> str | None:
        """The active speaker as last announced (by the local room, or relayed by the owner node)."""
        return self._speaker

    def speaker_changed(self, participant: str | None) -> None:
        if participant != self._speaker:
            self._speaker = participant
            if self.on_speaker is not None:
                self.on_speaker(participant)

    async def connect(
        self,
        participant_id: str,
        offer_sdp: str,
        *,
        on_message: OnMessage | None = None,
        on_state: OnState | None = None,
        on_media: OnMedia | None = None,
    ) -> str:
        owner = await self.node.claim(self.meeting_id)
        previous = self._remote.pop(participant_id, None)
        if previous is not None:
            await self.node.unwatch(self.meeting_id, participant_id)
        if owner == self.node.node_id:
            return await self.local.connect(
                participant_id, offer_sdp, on_message=on_message, on_state=on_state, on_media=on_media
            )
        remote = _Remote(owner, on_message, on_state, on_media)
        self._remote[participant_id] = remote
        await self.node.watch(self.meeting_id, participant_id, self._event_handler(remote))
        reply = await self.node.request(
            owner, {"op": "connect", "meeting": self.meeting_id, "pid": participant_id, "sdp": offer_sdp}
        )
        return str(reply["answer"])

    def _event_handler(self, remote: _Remote) -> Callable[[dict[str, Any]], None]:
        def handle(event: dict[str, Any]) -> None:
            kind = event.get("kind")
            if kind == "speaker":
                self.speaker_changed(event.get("participant"))
            elif kind == "message" and remote.on_message is not None:
                remote.on_message(str(event["channel"]), _decode(event))
            elif kind == "state" and remote.on_state is not None:
                remote.on_state(str(event["state"]))
            elif kind == "media" and remote.on_media is not None:
                remote.on_media(event["event"])

        return handle

    async def add_ice_candidate(self, participant_id: str, candidate: dict[str, Any] | None) -> None:
        remote = self._remote.get(participant_id)
        if remote is None:
            await self.local.add_ice_candidate(participant_id, candidate)
            return
        await self.node.request(
            remote.owner,
            {"op": "ice", "meeting": self.meeting_id, "pid": participant_id, "candidate": candidate},
        )

    def send(self, participant_id: str, channel: str, data: str | bytes) -> bool:
        remote = self._remote.get(participant_id)
        if remote is None:
            return self.local.send(participant_id, channel, data)
        # Fire and forget, in order (one publishing queue per node); the owner drops it if the channel is shut.
        return self.node.publish(
            remote.owner,
            {
                "op": "send",
                "meeting": self.meeting_id,
                "pid": participant_id,
                "channel": channel,
                **_encode(data),
            },
        )

    def set_paused(self, subscriber: str, publisher: str, kind: str, paused: bool) -> bool:
        """See :meth:`RoomMedia.set_paused`; relayed (optimistically True) when the subscriber is elsewhere."""
        remote = self._remote.get(subscriber)
        if remote is None:
            return self.local.set_paused(subscriber, publisher, kind, paused)
        if kind != "video":
            return False
        return self.node.publish(
            remote.owner,
            {
                "op": "pause",
                "meeting": self.meeting_id,
                "pid": subscriber,
                "publisher": publisher,
                "kind": kind,
                "paused": paused,
            },
        )

    async def disconnect(self, participant_id: str) -> None:
        remote = self._remote.pop(participant_id, None)
        if remote is None:
            await self.local.disconnect(participant_id)
            return
        await self.node.unwatch(self.meeting_id, participant_id)
        with contextlib.suppress(TimeoutError, RuntimeError):
            await self.node.request(
                remote.owner, {"op": "disconnect", "meeting": self.meeting_id, "pid": participant_id}
            )


class MediaNode:
    """One server node's media: its own :class:`MediaHub`, its claims in Redis, and relays to other nodes."""

    def __init__(
        self,
        hub: MediaHub,
        redis_url: str,
        *,
        node_id: str,
        prefix: str = "rcp:media:",
        claim_ttl_s: float = 30.0,
        request_timeout_s: float = 15.0,
    ) -> None:
        self.hub = hub
        self.node_id = node_id
        self.prefix = prefix
        self._redis = aioredis.from_url(redis_url)
        self._pubsub = self._redis.pubsub()
        self._claim_ttl_ms = int(claim_ttl_s * 1000)
        self._timeout = request_timeout_s
        self._rooms: dict[str, PlacedRoom] = {}
        self._claimed: set[str] = set()
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._watchers: dict[str, Callable[[dict[str, Any]], None]] = {}
        #: Participants of rooms owned here whose WebSocket is on another node (they get speaker changes).
        self._relayed: dict[str, set[str]] = {}
        self._ids = itertools.count()
        self._outbox: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue(maxsize=10_000)
        self._tasks: list[asyncio.Task[None]] = []
        self._handlers: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        await self._pubsub.subscribe(
            f"{self.prefix}node:{self.node_id}", f"{self.prefix}reply:{self.node_id}"
        )
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._listen(), name=f"media-node-listen-{self.node_id}"),
            loop.create_task(self._publish_loop(), name=f"media-node-publish-{self.node_id}"),
            loop.create_task(self._refresh_loop(), name=f"media-node-refresh-{self.node_id}"),
        ]

    async def close(self, timeout: float = 5.0) -> None:
        """Close local peers, free this node's claims, stop relaying. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        await self.hub.close(timeout)
        for meeting in list(self._claimed):
            with contextlib.suppress(aioredis.RedisError):
                await self._redis.eval(_RELEASE, 1, self._owner_key(meeting), self.node_id)
        self._claimed.clear()
        self._outbox.put_nowait(None)
        for task in self._tasks + list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._tasks, *self._handlers, return_exceptions=True)
        for future in self._pending.values():
            future.cancel()
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        await self._redis.aclose()

    def browser_ice_servers(self) -> list[dict[str, Any]]:
        return self.hub.browser_ice_servers()

    def throughput_now(self) -> tuple[int, int]:
        """This node's forwarding (its own hub's rooms): see :meth:`media.hub.MediaHub.throughput_now`."""
        return self.hub.throughput_now()

    # -- placement -------------------------------------------------------------------------------------------
    def room(self, meeting_id: str, *, on_speaker: OnSpeaker | None = None) -> PlacedRoom:
        room = self._rooms.get(meeting_id)
        if room is None:
            room = self._rooms[meeting_id] = PlacedRoom(self, meeting_id)
        if on_speaker is not None:
            room.on_speaker = on_speaker
        return room

    def local_room(self, meeting_id: str) -> RoomMedia:
        """The hub's room for a meeting this node owns, announcing speakers here and to relaying nodes."""
        return self.hub.room(
            meeting_id, on_speaker=lambda participant: self._speaker_changed(meeting_id, participant)
        )

    def _speaker_changed(self, meeting_id: str, participant: str | None) -> None:
        local = self._rooms.get(meeting_id)
        if local is not None:
            local.speaker_changed(participant)
        for pid in self._relayed.get(meeting_id, ()):
            self._put(
                f"{self.prefix}peer:{meeting_id}:{pid}", {"kind": "speaker", "participant": participant}
            )

    def _owner_key(self, meeting_id: str) -> str:
        return f"{self.prefix}owner:{meeting_id}"

    async def claim(self, meeting_id: str) -> str:
        """The node that serves ``meeting_id``'s media: an existing live claim, else this node."""
        key = self._owner_key(meeting_id)
        if await self._redis.set(key, self.node_id, nx=True, px=self._claim_ttl_ms):
            self._claimed.add(meeting_id)
            return self.node_id
        owner = await self._redis.get(key)
        if owner is None:  # expired between the two calls
            return await self.claim(meeting_id)
        owner_id = owner.decode() if isinstance(owner, bytes) else str(owner)
        if owner_id == self.node_id:
            self._claimed.add(meeting_id)
        return owner_id

    async def owner(self, meeting_id: str) -> str | None:
        value = await self._redis.get(self._owner_key(meeting_id))
        return None if value is None else (value.decode() if isinstance(value, bytes) else str(value))

    async def _refresh_loop(self) -> None:
        """Keep claims alive while the room has participants here; free them when it empties."""
        while True:
            await asyncio.sleep(self._claim_ttl_ms / 3000)
            for meeting in list(self._claimed):
                key = self._owner_key(meeting)
                try:
                    if meeting in self.hub.rooms:
                        await self._redis.eval(_REFRESH, 1, key, self.node_id, self._claim_ttl_ms)
                    else:
                        await self._redis.eval(_RELEASE, 1, key, self.node_id)
                        self._claimed.discard(meeting)
                except aioredis.RedisError:
                    logger.warning("media node %s: could not refresh the claim on %s", self.node_id, meeting)

    # -- relaying --------------------------------------------------------------------------------------------
    def publish(self, node: str, message: dict[str, Any]) -> bool:
        """Queue a request for ``node`` without waiting; False when the relay queue is full (caller falls back)."""
        return self._put(f"{self.prefix}node:{node}", message)

    def _put(self, channel: str, message: dict[str, Any]) -> bool:
        if self._closed:
            return False
        try:
            self._outbox.put_nowait((channel, json.dumps(message)))
        except asyncio.QueueFull:
            return False
        return True

    async def request(self, node: str, message: dict[str, Any]) -> dict[str, Any]:
        """Send a request to ``node`` and wait for its reply; raises RuntimeError with the owner's error."""
        request_id = f"{self.node_id}:{next(self._ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            self._put(f"{self.prefix}node:{node}", {**message, "id": request_id, "reply": self.node_id})
            try:
                reply = await asyncio.wait_for(future, self._timeout)
            except TimeoutError:
                raise TimeoutError(
                    f"media node {node} did not answer within {self._timeout:.0f} s; is it running?"
                ) from None
        finally:
            self._pending.pop(request_id, None)
        if "error" in reply:
            raise RuntimeError(str(reply["error"]))
        return reply

    async def watch(
        self, meeting_id: str, participant_id: str, handler: Callable[[dict[str, Any]], None]
    ) -> None:
        channel = f"{self.prefix}peer:{meeting_id}:{participant_id}"
        self._watchers[channel] = handler
        await self._pubsub.subscribe(channel)

    async def unwatch(self, meeting_id: str, participant_id: str) -> None:
        channel = f"{self.prefix}peer:{meeting_id}:{participant_id}"
        if self._watchers.pop(channel, None) is not None:
            await self._pubsub.unsubscribe(channel)

    async def _publish_loop(self) -> None:
        while (item := await self._outbox.get()) is not None:
            channel, payload = item
            try:
                await self._redis.publish(channel, payload)
            except aioredis.RedisError:
                logger.warning("media node %s: relay to %s failed", self.node_id, channel)

    async def _listen(self) -> None:
        requests = f"{self.prefix}node:{self.node_id}"
        replies = f"{self.prefix}reply:{self.node_id}"
        while True:
            message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None:
                continue
            channel = (
                message["channel"].decode() if isinstance(message["channel"], bytes) else message["channel"]
            )
            data = json.loads(message["data"])
            if channel == replies:
                future = self._pending.get(str(data.get("id")))
                if future is not None and not future.done():
                    future.set_result(data)
            elif channel == requests:
                # Requests are handled concurrently (a connect waits for ICE gathering); sends keep their order
                # because they are handled synchronously here.
                if data.get("op") == "send":
                    self.hub.room(str(data["meeting"])).send(
                        str(data["pid"]), str(data["channel"]), _decode(data)
                    )
                elif data.get("op") == "pause":
                    self.hub.room(str(data["meeting"])).set_paused(
                        str(data["pid"]), str(data["publisher"]), str(data["kind"]), bool(data["paused"])
                    )
                else:
                    task = asyncio.get_running_loop().create_task(self._handle(data))
                    self._handlers.add(task)
                    task.add_done_callback(self._handlers.discard)
            else:
                handler = self._watchers.get(channel)
                if handler is not None:
                    handler(data)

    async def _handle(self, request: dict[str, Any]) -> None:
        """Serve a request from another node for a room this node owns."""
        meeting, pid, op = str(request["meeting"]), str(request["pid"]), request["op"]
        events = f"{self.prefix}peer:{meeting}:{pid}"
        reply: dict[str, Any] = {"id": request.get("id")}
        try:
            room = self.local_room(meeting)
            if op == "connect":

                def on_message(channel: str, data: str | bytes) -> None:
                    self._put(events, {"kind": "message", "channel": channel, **_encode(data)})

                def on_state(state: str) -> None:
                    self._put(events, {"kind": "state", "state": state})

                def on_media(event: dict[str, Any]) -> None:
                    self._put(events, {"kind": "media", "event": event})

                reply["answer"] = await room.connect(
                    pid, str(request["sdp"]), on_message=on_message, on_state=on_state, on_media=on_media
                )
                self._claimed.add(meeting)
                self._relayed.setdefault(meeting, set()).add(pid)
                # A late joiner learns who is speaking now, not only at the next change.
                self._put(events, {"kind": "speaker", "participant": room.speaker})
            elif op == "ice":
                await room.add_ice_candidate(pid, request.get("candidate"))
            elif op == "disconnect":
                relayed = self._relayed.get(meeting, set())
                relayed.discard(pid)
                if not relayed:
                    self._relayed.pop(meeting, None)
                await room.disconnect(pid)
            else:
                reply["error"] = f"unknown media request {op!r}"
        except Exception as exc:  # noqa: BLE001 - the requesting node shows it; never leave it waiting
            logger.warning("media node %s: %s for %s/%s failed: %s", self.node_id, op, meeting, pid, exc)
            reply["error"] = f"{op} failed on media node {self.node_id}: {exc}"
        if request.get("reply"):
            self._put(f"{self.prefix}reply:{request['reply']}", reply)
