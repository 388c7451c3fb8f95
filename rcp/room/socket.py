"""The room's WebSocket, ``/ws/meetings/{meeting_id}``: one per participant, also carrying WebRTC signalling.

Protocol (JSON text frames, each with a ``type``):

server → client
    ``welcome`` {user_id, connection, node, rtc, ice_servers, speaker, seq}; then ``snapshot`` {state, pointer}
    or, when resuming with ``?last_seq=n``, the missed ``event`` frames and ``resumed`` {seq}; then ``event``
    {seq, event, at, actor, ...} in order (``participant.media`` {user_id, audio_muted, video_off} and
    ``participant.link`` {user_id, connection, unstable}: heartbeats missed, not yet gone, among them);
    ``pointer`` {s: [[user, col, row, slice], ...]}; ``ping``; ``pong`` {t} (the answer to the page's own
    ``ping``); ``error`` {error, message, fields?, ref?};
    ``rtc.answer`` {sdp}; ``media.slots`` {slots: [{mid, kind, participant, paused}, ...]}; ``speaker``
    {user_id} (the active speaker's user id, or null; not an event).
client → server
    ``pong``; ``ping`` {t} (the page's heartbeat: answered at once, it tells the page it lost the server
    within about a second, see web/static/js/roomsocket.js); commands (``floor.take``, ``floor.request``, ``floor.withdraw``, ``floor.handover`` {to},
    ``floor.release``, ``mode`` {mode}, ``path`` {path}, ``case.set`` {case_id}, ``case.next``, ``view`` {...},
    ``mark.add`` {...}, ``mark.remove`` {mark_id}, ``media.state`` {audio_muted, video_off}); ``pointer``
    {x, y, slice} or {p: [x, y, slice]}; ``resume`` {last_seq}; ``rtc.offer`` {sdp}, ``rtc.ice`` {candidate},
    ``rtc.close``, ``media.pause`` {participant, paused} (stop / resume receiving that user's video). An optional
    ``id`` is echoed as ``ref`` in an error frame.

Who may connect: the caller authenticated by the app's middleware (session cookie — including the
meeting-scoped session a signed join link opens, see rcp.auth.links — or a bearer token) and allowed to see the
meeting (``view meeting`` in :mod:`rcp.scheduling.access`); the same policy says whether they chair it (``chair
room``: the board's coordinators), which is what the room's commands check (:attr:`Participant.chairs`). A refusal
is an ``error`` frame followed by a close with the error's code (4401, 4404, 4409 once the meeting is closed), so
the page can say why instead of retrying forever; it is recorded as a security alert.

Where from (cross-site WebSocket hijacking, issue 13 finding 7): browsers send the cookie with a WebSocket opened by
*any* page, and the same-origin policy does not apply to WebSockets, so the handshake's ``Origin`` (RFC 6455 §10.2,
RFC 6454) must be the service's own: ``Settings.origin``, from ``RCP_PUBLIC_URL``. Outside production the origin the
request itself names (its scheme and ``Host``) is accepted too, so that a development server on another port or a
test server works; a cross-site page cannot send that, since its browser sends the page's origin and the cookie
of the real host only. A handshake without ``Origin`` does not come from a browser (browsers always send it): it is
accepted only with a bearer token (a service account), never with a session cookie alone, which a non-browser
client has no business holding. A refused handshake is closed before it is accepted (the client sees HTTP 403)
and recorded as a security alert.

While it runs, the socket follows the session (rcp.room.revocation): sign-out, expiry, deactivation, a withdrawn
invitation or a closed meeting ends it and its media peer, on every node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from rcp.errors import NotAuthenticated, RcpError
from rcp.outages import outage_errors, part_down, unavailable
from rcp.room.connection import Connection, error_frame
from rcp.room.events import Participant
from rcp.room.live import LiveRoom, Rooms
from rcp.room.revocation import Recheck, Seat

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
        meeting = await access.require_meeting(session, user, meeting_id, access.Action.enter_room)
        chairs = await access.allows(session, user, access.Action.chair_room, meeting)
    return user, chairs


def origin_allowed(websocket: WebSocket) -> bool:
    """Whether the handshake comes from the service's own pages (see the module docstring)."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return websocket.headers.get("authorization", "").lower().startswith("bearer ")
    settings = getattr(websocket.app.state, "settings", None)
    if settings is not None and origin == settings.origin:
        return True
    if settings is not None and settings.production:
        return False
    host = websocket.headers.get("host")
    scheme = "https" if websocket.url.scheme == "wss" else "http"
    return host is not None and origin == f"{scheme}://{host}"


async def refuse_origin(websocket: WebSocket, meeting_id: int) -> None:
    """Close the handshake (HTTP 403) and record the attempt as a security alert (DCM 110113)."""
    from rcp.scheduling import access

    refusal = access.NotPermitted(
        "This room opens only from the service's own pages.",
        alert=access.Alert(access.Action.enter_room, f"meeting {meeting_id} room (cross-site WebSocket)",
                           meeting_id=meeting_id),
    )
    logger.info("room %s: WebSocket handshake from another origin refused", meeting_id)
    await access.record_refusal(websocket.app.state.db, refusal, websocket)
    await websocket.close(1008, "origin")


def recheck_of(websocket: WebSocket, meeting_id: int) -> Recheck:
    """Whether the caller of this socket may still be in the room: their session read again from the database
    (rcp.auth.sessions.SessionBackend.verify), then the policy's ``enter room``."""
    from rcp.auth.sessions import COOKIE_NAME
    from rcp.scheduling import access

    state = websocket.app.state
    authorization = websocket.headers.get("authorization", "")
    cookie = websocket.cookies.get(COOKIE_NAME, "")

    async def recheck() -> RcpError | None:
        user = await state.auth_backend.verify(state.db, authorization=authorization, cookie=cookie)
        if user is None:
            return NotAuthenticated("Your session ended (signed out, expired or the account was disabled): sign "
                                    "in again to rejoin the meeting.")
        try:
            async with state.db.session() as session:
                await access.require_meeting(session, user, meeting_id, access.Action.enter_room)
        except RcpError as error:
            return error
        return None

    return recheck


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
    if not origin_allowed(websocket):
        await refuse_origin(websocket, meeting_id)
        return
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
    except outage_errors() as exc:
        await close_for_outage(websocket, exc, meeting_id)
        return
    try:
        room = await rooms.acquire(meeting_id)
    except outage_errors() as exc:
        await close_for_outage(websocket, exc, meeting_id)
        return
    try:
        await serve(websocket, room, participant_of(user, node=rooms.node_id, chairs=chairs), rooms=rooms,
                    recheck=recheck_of(websocket, meeting_id), session=str(getattr(user, "session_id", "") or ""))
    finally:
        await rooms.release(room)


async def close_for_outage(websocket: WebSocket, exc: Exception, meeting_id: int) -> None:
    """PostgreSQL or Redis away at the handshake (rcp.outages): an ``unavailable`` error frame and close 4503, which
    the page's socket retries (web/static/js/roomsocket.js) — not an unexplained 1011. Anything else is raised."""
    outage = unavailable(exc)
    if outage is None:
        raise exc
    logger.warning("room %s: entry refused for now, %s unreachable (%s)", meeting_id, part_down(exc),
                   type(exc).__name__)
    with contextlib.suppress(Exception):
        await websocket.send_text(error_frame(outage))
        await websocket.close(outage.ws_code, outage.code)


async def serve(websocket: WebSocket, room: LiveRoom, participant: Participant, *, rooms: Rooms | None = None,
                recheck: Recheck | None = None, session: str = "") -> None:
    """Run one participant's connection until either side ends it (or its session ends: ``recheck``, asked by
    ``rooms.revocations``), then record the leave."""
    connection = Connection(room, participant, config=room.config, media=room.media)
    with contextlib.ExitStack() as watched:
        if rooms is not None and recheck is not None:
            from rcp.auth.sessions import session_digest

            watched.enter_context(rooms.revocations.seated(Seat(
                connection, room.meeting_id, participant.user_id, session_digest(session) if session else "",
                recheck)))
        await _serve(websocket, room, connection, participant)


async def _serve(websocket: WebSocket, room: LiveRoom, connection: Connection, participant: Participant) -> None:
    connection.participant = _with_connection(participant, connection.id)
    await room.attach(connection, _last_seq(websocket))
    try:
        await room.join(connection)
    except RcpError as error:
        room.connections.pop(connection.id, None)
        await websocket.send_text(error_frame(error))
        await websocket.close(error.ws_code, error.code)
        return
    except outage_errors() as exc:
        room.connections.pop(connection.id, None)
        await close_for_outage(websocket, exc, room.meeting_id)
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
                if connection.farewell is not None:  # why the server ends it, so the page can say so
                    await websocket.send_text(connection.farewell)
                await websocket.close(connection.close_code, connection.close_reason)


def _with_connection(participant: Participant, connection_id: str) -> Participant:
    from dataclasses import replace

    return replace(participant, connection=connection_id)
