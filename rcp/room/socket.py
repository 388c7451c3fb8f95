"""The room's WebSocket, ``/ws/meetings/{meeting_id}``: one per participant, also carrying WebRTC signalling.

Protocol (JSON text frames, each with a ``type``):

server → client
    ``welcome`` {user_id, connection, node, rtc, ice_servers, speaker, seq}; then ``snapshot`` {state, pointer}
    or, when resuming with ``?last_seq=n``, the missed ``event`` frames and ``resumed`` {seq}; then ``event``
    {seq, event, at, actor, ...} in order (``participant.media`` {user_id, audio_muted, video_off} among them);
    ``pointer`` {s: [[user, col, row, slice], ...]}; ``ping``; ``error`` {error, message, fields?, ref?};
    ``rtc.answer`` {sdp}; ``media.slots`` {slots: [{mid, kind, participant, paused}, ...]}; ``speaker``
    {user_id} (the active speaker's user id, or null; not an event).
client → server
    ``pong``; commands (``floor.take``, ``floor.request``, ``floor.withdraw``, ``floor.handover`` {to},
    ``floor.release``, ``mode`` {mode}, ``path`` {path}, ``case.set`` {case_id}, ``case.next``, ``view`` {...},
    ``mark.add`` {...}, ``mark.remove`` {mark_id}, ``media.state`` {audio_muted, video_off}); ``pointer``
    {x, y, slice} or {p: [x, y, slice]}; ``resume`` {last_seq}; ``rtc.offer`` {sdp}, ``rtc.ice`` {candidate},
    ``rtc.close``, ``media.pause`` {participant, paused} (stop / resume receiving that user's video). An optional
    ``id`` is echoed as ``ref`` in an error frame.

Who may connect: the caller authenticated by the app's middleware (session cookie — including the
meeting-scoped session a signed join link opens, see rcp.auth.links — or a bearer token) and allowed to see the
meeting (``view meeting`` in :mod:`rcp.scheduling.access`); the same policy says whether they chair it (``chair
room``: the board's coordinators), which is what the room's commands check (:attr:`Participant.chairs`). A refusal
is an ``error`` frame followed by a close with the error's code (4401, 4404), so the page can say why instead of
retrying forever; it is recorded as a security alert.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from rcp.errors import NotAuthenticated, RcpError
from rcp.room.connection import Connection, error_frame
from rcp.room.events import Participant
from rcp.room.live import LiveRoom, Rooms

__all__ = ["room_socket"]

logger = logging.getLogger(__name__)


async def authorise(websocket: WebSocket, meeting_id: int) -> tuple[Any, bool]:
    """The caller, if they may enter this meeting's room, and whether they chair it; NotAuthenticated / NotFound
    otherwise."""
    from rcp.scheduling import access

    user = websocket.scope.get("user")
    if user is None or not getattr(user, "is_authenticated", False):
        raise NotAuthenticated("Sign in (or open your join link) before entering the meeting room.")
    async with websocket.app.state.db.session() as session:
        meeting = await access.require_meeting(session, user, meeting_id, access.Action.view_meeting)
        chairs = await access.allows(session, user, access.Action.chair_room, meeting)
    return user, chairs


def _last_seq(websocket: WebSocket) -> int | None:
    raw = websocket.query_params.get("last_seq")
    if raw is None or not raw.isdigit():
        return None
    return int(raw)


def participant_of(user: Any, *, node: str, chairs: bool | None = None) -> Participant:
    """The participant the room shows; ``chairs`` (the policy's ``chair room``) makes their role "coordinator" —
    the role the room's commands check — and a coordinator who does not chair this meeting is a "clinician" in it."""
    role = str(getattr(user, "role", "clinician"))
    if chairs is not None:
        role = "coordinator" if chairs else ("clinician" if role == "coordinator" else role)
    return Participant(
        user_id=int(user.id),
        display_name=str(getattr(user, "display_name", "") or getattr(user, "username", "")),
        specialty=str(getattr(user, "specialty", "") or ""),
        hospital=str(getattr(user, "hospital", "") or ""),
        role=role,
        node=node,
        guest=bool(getattr(user, "is_guest", False)),
    )


async def room_socket(websocket: WebSocket) -> None:
    meeting_id = int(websocket.path_params["meeting_id"])
    rooms: Rooms = websocket.app.state.rooms
    await websocket.accept()
    try:
        user, chairs = await authorise(websocket, meeting_id)
    except RcpError as error:
        from rcp.scheduling.access import record_refusal

        try:
            await record_refusal(websocket.app.state.db, error, websocket)
        except Exception:  # the refusal stands even if its trace could not be written
            logger.exception("room %s: recording a refused entry failed", meeting_id)
        await websocket.send_text(error_frame(error))
        await websocket.close(error.ws_code, error.code)
        return
    room = await rooms.acquire(meeting_id)
    try:
        await serve(websocket, room, participant_of(user, node=rooms.node_id, chairs=chairs))
    finally:
        await rooms.release(room)


async def serve(websocket: WebSocket, room: LiveRoom, participant: Participant) -> None:
    """Run one participant's connection until either side ends it, then record the leave."""
    connection = Connection(room, participant, config=room.config, media=room.media)
    connection.participant = _with_connection(participant, connection.id)
    await room.attach(connection, _last_seq(websocket))
    try:
        await room.join(connection)
    except RcpError as error:
        room.connections.pop(connection.id, None)
        await websocket.send_text(error_frame(error))
        await websocket.close(error.ws_code, error.code)
        return

    async def read() -> None:
        while not connection.closed.is_set():
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                connection.close(1000, "left")
                return
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            await connection.handle(data, via="ws")

    tasks = [
        asyncio.create_task(read(), name=f"{connection!r} read"),
        asyncio.create_task(connection.write_to(websocket.send_text), name=f"{connection!r} write"),
        asyncio.create_task(connection.read_inbox(), name=f"{connection!r} dc"),
        asyncio.create_task(connection.closed.wait(), name=f"{connection!r} closed"),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception) and not isinstance(result, WebSocketDisconnect | OSError):
                logger.warning("room %s: %r ended with %r", room.meeting_id, connection, result)
        if not connection.closed.is_set():
            connection.close(1000, "left")
        await room.detach(connection)
        if websocket.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await websocket.close(connection.close_code, connection.close_reason)


def _with_connection(participant: Participant, connection_id: str) -> Participant:
    from dataclasses import replace

    return replace(participant, connection=connection_id)
