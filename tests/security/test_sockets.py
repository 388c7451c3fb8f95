"""Attacks on the room WebSocket (issue 13: finding 7, and the floor during the grace period of finding 13).

Black-box over WebSocket and HTTP against a running service with its media plane: a page of another site opens the
room with the victim's cookie (cross-site WebSocket hijacking); a socket outlives its session (sign-out, expiry,
deactivation), its invitation or its meeting, with its media peer; another node keeps it; a participant grabs the
floor while the presenter's connection is down. Each test fails while the attack works. The media peer is a real
aiortc client (media.synthetic); "gone" is read from the server's media hub, the only place it exists.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import col, select, update
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from media.synthetic import SyntheticParticipant
from rcp.auth.models import ApiToken, AuditEvent, LoginSession, Role, User
from rcp.auth.sessions import create_api_token, token_digest
from rcp.config import Settings
from rcp.db import Database, migrate
from rcp.room.connection import RoomConfig
from rcp.scheduling.models import BoardCoordinator
from tests.factories import SECRET_KEY, MadeMeeting, MadeUser, credentials, make_meeting, make_user
from tests.fixtures.postgres import create_database, drop_database
from tests.room.client import RoomClient, session_cookie
from tests.room.node import NodeProcess, room_app
from tests.servers import ServerThread, until


@dataclass(frozen=True)
class Service:
    url: str
    #: The served app, for its media hub (``app.state.rooms.media``): where a media peer exists or not.
    app: Any


@pytest.fixture(scope="module")
def service(settings: Settings, db: Database) -> Iterator[Service]:
    """The room with media, a grace period long enough to try the floor inside it."""
    app = room_app(settings, media=True, config=RoomConfig(floor_grace_s=60.0))
    with ServerThread(app) as server:
        yield Service(server.url, app)


@pytest.fixture
async def meeting(db: Database) -> MadeMeeting:
    return await make_meeting(db, invite=("radiologist", "surgeon"), cases=1)


@dataclass
class Seat:
    """A participant in the room: their socket, their media peer, and their session cookie."""

    client: RoomClient
    peer: SyntheticParticipant | None
    cookie: str
    user: MadeUser


async def enter(server: Service, meeting_id: int, user: MadeUser, *, media: bool = False) -> Seat:
    cookie = await session_cookie(server.url, user.username, user.password)
    client = await RoomClient.open(server.url, cookie, meeting_id)
    assert client.welcome, f"{user.username} entered the room (closed with {client.close_code})"
    peer = None
    if media:
        peer = SyntheticParticipant(str(user.id), slots=0, video=False, audio=True)
        await client.send({"type": "rtc.offer", "sdp": await peer.offer()})
        await client.wait_for(lambda c: any(f["type"] == "rtc.answer" for f in c.frames))
        await peer.accept(next(f for f in client.frames if f["type"] == "rtc.answer")["sdp"])
        await until(lambda: has_peer(server, meeting_id, user), "the media peer on the server")
    return Seat(client, peer, cookie, user)


def has_peer(server: Service, meeting_id: int, user: MadeUser) -> bool:
    hub = server.app.state.rooms.media
    room = hub.rooms.get(str(meeting_id)) if hub is not None else None
    return room is not None and room.peer(str(user.id)) is not None


async def leave(*seats: Seat) -> None:
    for seat in seats:
        if seat.peer is not None:
            await seat.peer.close()
        await seat.client.close()


@pytest.fixture
async def seated(service: Service, meeting: MadeMeeting) -> AsyncIterator[tuple[Seat, Seat]]:
    """The chair, and an invited radiologist with a media peer: the victim whose session or right ends."""
    chair = await enter(service, meeting.id, meeting.coordinator)
    victim = await enter(service, meeting.id, meeting.invitee("radiologist"), media=True)
    try:
        yield chair, victim
    finally:
        await leave(victim, chair)


async def thrown_out(server: Service, meeting_id: int, chair: Seat | None, victim: Seat) -> None:
    """The victim's socket is closed by the server with a refusal, its media peer is gone, and the room says so
    (to the ``chair``, when they stay)."""
    await victim.client.wait_for(lambda c: c.closed.is_set(), timeout=30)
    assert victim.client.close_code in {4401, 4403, 4404, 4409}, victim.client.close_code
    assert victim.client.errors, "the page is told why (an error frame before the close)"
    await until(lambda: not has_peer(server, meeting_id, victim.user), "the media peer closed")
    if chair is None:
        return
    await chair.client.wait_for(lambda c: any(e["user_id"] == victim.user.id for e in c.of("participant.left")))


async def signed_in(base_url: str, user: MadeUser) -> httpx.AsyncClient:
    http = httpx.AsyncClient(base_url=base_url, timeout=30)
    made = await http.post("/api/session", json=credentials(user.username, user.password))
    assert made.status_code == 201, made.text
    http.headers["X-CSRF-Token"] = made.json()["csrf_token"]
    return http


# --- where from -------------------------------------------------------------------------------------------------


async def handshake(url: str, cookie: str, meeting_id: int, origin: str | None) -> int | None:
    """The HTTP status of a refused handshake (or the close code of a socket refused at once); None: admitted."""
    try:
        client = await RoomClient.open(url, cookie, meeting_id, origin=origin)
    except InvalidStatus as refused:
        return refused.response.status_code
    try:
        return None if client.welcome else client.close_code
    finally:
        await client.close()


async def test_a_page_of_another_site_cannot_open_the_room(service: Service, meeting: MadeMeeting,
                                                           db: Database) -> None:
    user = meeting.invitee("surgeon")
    cookie = await session_cookie(service.url, user.username, user.password)
    port = int(service.url.rsplit(":", 1)[1])
    for origin in ("https://evil.example", f"http://127.0.0.1:{port + 1}", "null"):
        assert await handshake(service.url, cookie, meeting.id, origin) in {403, 1008}, \
            f"a WebSocket from {origin} entered the room with the victim's cookie"
    async with db.session() as s:
        alerts = (await s.exec(select(AuditEvent).where(AuditEvent.event_code == "110113",
                                                        AuditEvent.meeting_id == meeting.id,
                                                        col(AuditEvent.what).contains("cross-site")))).all()
    assert len(alerts) == 3 and all(a.user_id == user.id for a in alerts)
    assert await handshake(service.url, cookie, meeting.id, "") is None, "the service's own page still enters"


async def test_a_cookie_without_an_origin_is_not_a_browser_and_is_refused(service: Service,
                                                                           meeting: MadeMeeting) -> None:
    user = meeting.invitee("surgeon")
    cookie = await session_cookie(service.url, user.username, user.password)
    assert await handshake(service.url, cookie, meeting.id, None) in {403, 1008}


async def test_a_service_account_enters_without_an_origin_and_leaves_with_its_token(
        service: Service, meeting: MadeMeeting, db: Database) -> None:
    """A non-browser client (the interface engine's service account, attached to the board) needs no ``Origin``:
    its bearer token is no ambient credential a page of another site could use; revoking the token ends it."""
    robot = await make_user(db, role=Role.service, password="")
    async with db.session() as s:
        s.add(BoardCoordinator(board_id=meeting.board.id, user_id=robot.id))
        row = await s.get(User, robot.id)
        assert row is not None
        token = await create_api_token(s, row, "room test")
    url = service.url.replace("http://", "ws://") + f"/ws/meetings/{meeting.id}"
    client = RoomClient(await connect(url, additional_headers={"Authorization": f"Bearer {token}"}))
    try:
        await client.wait_for(lambda c: bool(c.welcome) or c.closed.is_set())
        assert client.welcome, f"the service account was refused ({client.close_code})"
        async with db.session() as s:
            await s.exec(update(ApiToken).where(col(ApiToken.token_sha256) == token_digest(token))
                         .values(revoked=True))
        await client.wait_for(lambda c: c.closed.is_set(), timeout=30)
        assert client.close_code == 4401
    finally:
        await client.close()


# --- the socket follows the session ----------------------------------------------------------------------------
# --- the socket follows the session ----------------------------------------------------------------------------


async def test_sign_out_closes_the_socket_and_its_media(service: Service, meeting: MadeMeeting,
                                                        seated: tuple[Seat, Seat]) -> None:
    chair, victim = seated
    async with httpx.AsyncClient(base_url=service.url, headers={"Cookie": victim.cookie}) as http:
        csrf = (await http.get("/api/session")).json()["csrf_token"]
        assert (await http.delete("/api/session", headers={"X-CSRF-Token": csrf})).status_code == 204
    await thrown_out(service, meeting.id, chair, victim)
    assert await handshake(service.url, victim.cookie, meeting.id, "") == 4401


async def test_an_expired_session_closes_the_socket(service: Service, meeting: MadeMeeting,
                                                    seated: tuple[Seat, Seat], db: Database) -> None:
    chair, victim = seated
    long_ago = datetime.now(UTC) - timedelta(hours=13)
    async with db.session() as s:
        await s.exec(update(LoginSession).where(col(LoginSession.user_id) == victim.user.id)
                     .values(created_at=long_ago))
    await thrown_out(service, meeting.id, chair, victim)


async def test_an_idle_session_closes_the_socket(service: Service, meeting: MadeMeeting,
                                                 seated: tuple[Seat, Seat], db: Database,
                                                 settings: Settings) -> None:
    """Idle past ``session_idle_s`` (the open room itself counts as activity, so the session must have been left
    idle for longer than a live socket ever lets it be: its row says so)."""
    chair, victim = seated
    idle_since = datetime.now(UTC) - timedelta(seconds=settings.session_idle_s + 60)
    async with db.session() as s:
        await s.exec(update(LoginSession).where(col(LoginSession.user_id) == victim.user.id)
                     .values(last_seen_at=idle_since))
    await thrown_out(service, meeting.id, chair, victim)


async def test_a_deactivated_account_is_thrown_out(service: Service, meeting: MadeMeeting,
                                                   seated: tuple[Seat, Seat], db: Database) -> None:
    chair, victim = seated
    async with db.session() as s:
        row = await s.get(User, victim.user.id)
        assert row is not None
        row.active = False
        s.add(row)
    await thrown_out(service, meeting.id, chair, victim)


async def test_a_withdrawn_invitation_closes_the_socket(service: Service, meeting: MadeMeeting,
                                                        seated: tuple[Seat, Seat]) -> None:
    chair, victim = seated
    coordinator = await signed_in(service.url, meeting.coordinator)
    try:
        invitation = meeting.invitation_of(victim.user)
        assert (await coordinator.delete(f"/api/invitations/{invitation.id}")).status_code == 204
    finally:
        await coordinator.aclose()
    await thrown_out(service, meeting.id, chair, victim)


async def test_a_closed_meeting_closes_every_socket(service: Service, meeting: MadeMeeting,
                                                    seated: tuple[Seat, Seat]) -> None:
    chair, victim = seated
    coordinator = await signed_in(service.url, meeting.coordinator)
    try:
        for status in ("live", "closed"):
            moved = await coordinator.patch(f"/api/meetings/{meeting.id}", json={"status": status})
            assert moved.status_code == 200, moved.text
    finally:
        await coordinator.aclose()
    await thrown_out(service, meeting.id, None, victim)
    await chair.client.wait_for(lambda c: c.closed.is_set(), timeout=30)
    assert chair.client.close_code == 4409
    assert await handshake(service.url, chair.cookie, meeting.id, "") == 4409


# --- the floor during the presenter's grace period --------------------------------------------------------------


async def test_nobody_but_the_presenter_or_the_chair_takes_the_floor_in_the_grace_period(
        service: Service, meeting: MadeMeeting) -> None:
    chair = await enter(service, meeting.id, meeting.coordinator)
    presenter = await enter(service, meeting.id, meeting.invitee("radiologist"))
    other = await enter(service, meeting.id, meeting.invitee("surgeon"))
    try:
        await chair.client.send({"type": "floor.handover", "to": presenter.user.id})
        await other.client.wait_for(lambda c: any(e["user_id"] == presenter.user.id for e in c.of("floor.granted")))
        await presenter.client.close()  # the presenter's connection drops: the grace period starts
        await other.client.wait_for(lambda c: any(e["user_id"] == presenter.user.id
                                                  for e in c.of("participant.left")))
        await other.client.send({"type": "floor.take", "id": "grab"})
        await other.client.wait_for(lambda c: any(e.get("ref") == "grab" for e in c.errors)
                                    or any(e["user_id"] == other.user.id for e in c.of("floor.granted")))
        assert not any(e["user_id"] == other.user.id for e in other.client.of("floor.granted")), \
            "a participant took the floor while the presenter's connection was down"
        # The presenter coming back still has it; then the chair may take it.
        back = await enter(service, meeting.id, presenter.user)
        await back.client.wait_for(lambda c: c.snapshot is not None)
        assert (back.client.snapshot or {}).get("presenter") == presenter.user.id
        await chair.client.send({"type": "floor.take"})
        await chair.client.wait_for(lambda c: any(e["user_id"] == chair.user.id and e["reason"] == "take"
                                                  for e in c.of("floor.granted")))
        await leave(back)
    finally:
        await leave(other, chair)


# --- on another node --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[NodeProcess, NodeProcess, str]]:
    """Two server processes on one PostgreSQL database and one Redis (tests/room/test_nodes.py)."""
    name = create_database()
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    nodes: list[NodeProcess] = []
    try:
        migrate(url)
        secret = SECRET_KEY  # the factories encrypt their users' second factor with it
        prefix = f"test-{secrets.token_hex(4)}:"
        for node in ("node-a", "node-b"):
            nodes.append(NodeProcess(database_url=url, secret=secret, redis_url="redis://127.0.0.1:6379/0",
                                     prefix=prefix, node=node))
        for n in nodes:
            n.start()
        yield nodes[0], nodes[1], url
    finally:
        for n in nodes:
            n.close()
        drop_database(name)


@pytest.mark.postgres
@pytest.mark.redis
async def test_sign_out_on_one_node_closes_the_socket_on_the_other(
        cluster: tuple[NodeProcess, NodeProcess, str]) -> None:
    a, b, url = cluster
    database = Database(url)
    try:
        made = await make_meeting(database, invite=("radiologist",), cases=1)
    finally:
        await database.close()
    victim = made.invitee("radiologist")
    cookie = await session_cookie(a.url, victim.username, victim.password)
    chair = await RoomClient.open(b.url, await session_cookie(b.url, made.coordinator.username,
                                                              made.coordinator.password), made.id)
    on_b = await RoomClient.open(b.url, cookie, made.id)
    try:
        assert on_b.welcome
        async with httpx.AsyncClient(base_url=a.url, headers={"Cookie": cookie}) as http:
            csrf = (await http.get("/api/session")).json()["csrf_token"]
            assert (await http.delete("/api/session", headers={"X-CSRF-Token": csrf})).status_code == 204
        await on_b.wait_for(lambda c: c.closed.is_set(), timeout=30)
        assert on_b.close_code == 4401
        await chair.wait_for(lambda c: any(e["user_id"] == victim.id for e in c.of("participant.left")))
        # Node b's authentication cache forgot the session too: an HTTP request there is refused.
        async with httpx.AsyncClient(base_url=b.url, headers={"Cookie": cookie}) as http:
            assert (await http.get("/api/session")).status_code == 401
    finally:
        await on_b.close()
        await chair.close()
