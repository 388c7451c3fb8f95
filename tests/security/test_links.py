"""Attacks on join links (issue 13, finding 3 and the guest part of 6), over HTTP against a running service.

The insider is the meeting's coordinator: before issue 13 they were shown each invitee's link, which opened a
session *as that physician*, any number of times, for 48 h, and sat in the URL path (access log, history,
Referer). Each test performs one attack and fails while the attack works. Links are read from the mail the
service sent to a real SMTP server (``tests/fixtures/smtp.py``): that is the only place a link may appear.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select

from rcp.app import create_app
from rcp.config import Settings
from rcp.db import Database
from rcp.mail import Mail
from tests.conftest import Client, sign_in
from tests.factories import make_board, make_meeting
from tests.fixtures.smtp import MailBox, join_link
from tests.room.client import RoomClient
from tests.servers import ServerThread, until


class Trail(logging.Handler):
    """Every log line the service writes while the module runs (access log included)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("httpx", "httpcore")):  # the tests' own client, not the service
            return
        try:
            self.lines.append(record.getMessage())
        except (TypeError, ValueError):  # a record that cannot format is not ours to judge
            self.lines.append(str(record.msg))


@dataclass
class Service:
    url: str
    trail: Trail
    database_file: Path


def _dump(database_file: Path) -> str:
    """Everything the database holds, as SQL text."""
    with contextlib.closing(sqlite3.connect(database_file)) as connection:
        return "\n".join(connection.iterdump())


@pytest.fixture(scope="module")
def service(settings: Settings, db: Database, smtp_server: MailBox) -> Iterator[Service]:
    """The app (mailing through the test SMTP server) with its access log on, as in production."""
    trail = Trail()
    server = ServerThread(create_app(settings), log_level="info", access_log=True)
    loggers = [logging.getLogger(name) for name in ("", "uvicorn", "uvicorn.access", "uvicorn.error")]
    for logger in loggers:
        logger.addHandler(trail)
    previous = logging.getLogger().level
    logging.getLogger().setLevel(logging.INFO)
    try:
        with server:
            yield Service(url=server.url, trail=trail,
                          database_file=Path(settings.database_url.removeprefix("sqlite:///")))
    finally:
        logging.getLogger().setLevel(previous)
        for logger in loggers:
            logger.removeHandler(trail)


@pytest.fixture
async def coordinator(service: Service, db: Database) -> AsyncIterator[tuple[Client, int]]:
    """The coordinator of a new board of their own (tests/factories.py), signed in."""
    board = await make_board(db)
    client = await sign_in(service.url, board.coordinator.username, board.coordinator.password)
    try:
        yield client, board.id
    finally:
        await client.http.aclose()


async def meeting(client: Client, board_id: int, *, starts_in: timedelta) -> int:
    starts = (datetime.now(UTC) + starts_in).replace(microsecond=0)
    made = await client.post("/api/meetings", json={"board_id": board_id, "starts_at": starts.isoformat(),
                                                    "title": "Links"})
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


def new_address() -> str:
    return f"d.{secrets.token_hex(4)}@chu-x.fr"


async def invite_guest(client: Client, meeting_id: int, address: str) -> dict[str, Any]:
    """An external surgeon, with no account here, invited by name and address."""
    made = await client.post(f"/api/meetings/{meeting_id}/guests", json={
        "display_name": "Dr Denis GUEST", "email": address, "specialty": "surgeon", "hospital": "CHU X"})
    if made.status_code == 404 or made.status_code == 405:  # the service before issue 13: invite an account
        people = (await client.get("/api/users?specialty=radiologist")).json()
        made = await client.post(f"/api/meetings/{meeting_id}/invitations", json={"user_id": people[0]["id"]})
    assert made.json().get("guest", True), "invited as a guest"
    assert made.status_code == 201, made.text
    return dict(made.json())


async def link_of(client: Client, smtp: MailBox, invitation: dict[str, Any], address: str, *, nth: int = 1) -> str:
    """The link as its invitee gets it: from the mail (or, before issue 13, from the coordinator's screen)."""
    legacy = await client.post(f"/api/invitations/{invitation['id']}/link")
    if legacy.status_code == 201:
        return str(legacy.json()["url"])
    mails = await smtp.wait_for(address, nth)
    link, _token = join_link(mails[nth - 1])
    assert link.startswith(Settings.public_url + "/join#"), "links are built from RCP_PUBLIC_URL (the default)"
    return link


async def use(base_url: str, link: str) -> httpx.Response:
    """Open the link as a browser does: GET the page (no effect), then confirm with the page's POST."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as browser:
        if "#" not in link:  # before issue 13: the token in the path, used up (or not) by the GET itself
            return await browser.get(base_url + "/join/" + link.rsplit("/", 1)[1])
        token = link.split("#", 1)[1]
        page = await browser.get("/join")
        assert page.status_code == 200 and 'action="/join"' in page.text
        return await browser.post("/join", data={"token": token})


def session_cookie(response: httpx.Response) -> str | None:
    return response.cookies.get("rcp_session")


async def whoami(base_url: str, cookie: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base_url, cookies={"rcp_session": cookie}) as http:
        me = await http.get("/api/session")
        assert me.status_code == 200, me.text
        return dict(me.json())


async def test_the_coordinator_never_holds_a_link(service: Service, coordinator: tuple[Client, int],
                                                  smtp_server: MailBox) -> None:
    client, board_id = coordinator
    meeting_id = await meeting(client, board_id, starts_in=timedelta(minutes=30))
    address = new_address()
    invitation = await invite_guest(client, meeting_id, address)
    shown = await client.post(f"/api/invitations/{invitation['id']}/link")
    if shown.status_code == 201:
        opened = await use(service.url, shown.json()["url"])
        assert session_cookie(opened) is None, "a link shown to the coordinator opened a session as the invitee"
    assert shown.status_code in {404, 405}
    again = await client.post(f"/api/invitations/{invitation['id']}/send")
    assert again.status_code == 202, again.text
    assert again.json()["link_sent_to"] == address[0] + "…@chu-x.fr"
    token = (await link_of(client, smtp_server, invitation, address, nth=2)).split("#", 1)[1]
    seen = [again.text, (await client.get(f"/api/meetings/{meeting_id}")).text,
            (await client.get(f"/api/meetings/{meeting_id}/invitations")).text,
            (await client.get(f"/meetings/{meeting_id}")).text]
    assert not any(token in text or address in text for text in seen)


async def test_a_link_opens_one_session_once(service: Service, coordinator: tuple[Client, int],
                                             smtp_server: MailBox, db: Database) -> None:
    client, board_id = coordinator
    meeting_id = await meeting(client, board_id, starts_in=timedelta(minutes=30))
    address = new_address()
    link = await link_of(client, smtp_server, await invite_guest(client, meeting_id, address), address)
    async with httpx.AsyncClient(base_url=service.url) as scanner:  # a mail scanner follows every link
        await scanner.get("/join")  # what a scanner can fetch of ".../join#token": the fragment stays home
    async with httpx.AsyncClient(base_url=service.url) as victim:  # another site posts the form (login CSRF)
        forged = await victim.post("/join", data={"token": link.split("#", 1)[1]},
                                   headers={"Sec-Fetch-Site": "cross-site"})
        assert session_cookie(forged) is None
    first = await use(service.url, link)
    assert first.status_code == 303 and first.headers["location"] == f"/meetings/{meeting_id}/room"
    cookie = session_cookie(first)
    assert cookie is not None
    me = await whoami(service.url, cookie)
    assert me["is_guest"] is True and me["role"] == "guest"
    second = await use(service.url, link)
    assert session_cookie(second) is None and second.status_code in {401, 410}
    # The guest (a closed tab, say) asks for a new link from that page: it goes to their own address.
    assert 'action="/join/renew"' in second.text
    async with httpx.AsyncClient(base_url=service.url) as browser:
        renewed = await browser.post("/join/renew", data={"token": link.split("#", 1)[1]})
    assert renewed.status_code == 202 and session_cookie(renewed) is None
    fresh = await link_of(client, smtp_server, {"id": 0}, address, nth=2)
    async with httpx.AsyncClient(base_url=service.url) as browser:  # the old link asks again: nothing more
        await browser.post("/join/renew", data={"token": link.split("#", 1)[1]})
    async with db.session() as s:
        queued = (await s.exec(select(Mail).where(Mail.recipient == address))).all()
    assert len(queued) == 2, "an old link yields no more mail"
    assert session_cookie(await use(service.url, fresh)) is not None


async def test_a_link_works_only_around_its_meeting(service: Service, coordinator: tuple[Client, int],
                                                    smtp_server: MailBox) -> None:
    client, board_id = coordinator
    later = await meeting(client, board_id, starts_in=timedelta(days=2))
    address = new_address()
    early = await use(service.url, await link_of(client, smtp_server, await invite_guest(client, later, address),
                                                 address))
    assert session_cookie(early) is None, "a link opened two days before its meeting"

    soon = await meeting(client, board_id, starts_in=timedelta(minutes=30))
    address = new_address()
    link = await link_of(client, smtp_server, await invite_guest(client, soon, address), address)
    for status in ("live", "closed"):
        assert (await client.patch(f"/api/meetings/{soon}", json={"status": status})).status_code == 200
    closed = await use(service.url, link)
    assert session_cookie(closed) is None, "a link opened a meeting that is closed"


async def test_send_again_invalidates_the_previous_link(service: Service, coordinator: tuple[Client, int],
                                                        smtp_server: MailBox) -> None:
    client, board_id = coordinator
    meeting_id = await meeting(client, board_id, starts_in=timedelta(minutes=30))
    address = new_address()
    invitation = await invite_guest(client, meeting_id, address)
    old = await link_of(client, smtp_server, invitation, address)
    assert (await client.post(f"/api/invitations/{invitation['id']}/send")).status_code == 202
    new = await link_of(client, smtp_server, invitation, address, nth=2)
    assert new != old
    assert session_cookie(await use(service.url, old)) is None
    assert session_cookie(await use(service.url, new)) is not None


async def test_the_guest_session_reaches_its_meeting_only(service: Service, coordinator: tuple[Client, int],
                                                          smtp_server: MailBox) -> None:
    client, board_id = coordinator
    meeting_id = await meeting(client, board_id, starts_in=timedelta(minutes=30))
    other = await meeting(client, board_id, starts_in=timedelta(minutes=40))
    address = new_address()
    invitation = await invite_guest(client, meeting_id, address)
    link = await link_of(client, smtp_server, invitation, address)
    # Invited to a second meeting only once the first link is in hand: that invitation mails a link of its own,
    # and the two mails may arrive in either order.
    added = await client.post(f"/api/meetings/{other}/invitations", json={"user_id": invitation["user_id"]})
    assert added.status_code == 201, added.text
    cookie = session_cookie(await use(service.url, link))
    assert cookie is not None
    async with httpx.AsyncClient(base_url=service.url, cookies={"rcp_session": cookie}) as guest:
        csrf = (await guest.get("/api/session")).json()["csrf_token"]
        assert (await guest.get(f"/api/meetings/{meeting_id}")).status_code == 200
        assert (await guest.get(f"/api/meetings/{other}")).status_code == 404
        made = await guest.post("/api/boards", json={"name": "mine"}, headers={"X-CSRF-Token": csrf})
        assert made.status_code == 403
        made = await guest.post("/api/meetings", headers={"X-CSRF-Token": csrf}, json={
            "board_id": board_id, "starts_at": datetime.now(UTC).isoformat()})
        assert made.status_code in {403, 404}
        found = await guest.post("/api/patients/search", json={"identifier": "1"}, headers={"X-CSRF-Token": csrf})
        assert found.status_code in {403, 404} or found.json() == []
        people = await guest.get("/api/users")
        assert people.status_code == 403


async def test_links_go_to_guests_only(service: Service, coordinator: tuple[Client, int],
                                       smtp_server: MailBox) -> None:
    """A physician with an account signs in with it: no link that a mailbox or a coordinator could hold."""
    client, board_id = coordinator
    meeting_id = await meeting(client, board_id, starts_in=timedelta(minutes=30))
    people = (await client.get("/api/users?specialty=radiologist")).json()
    invited = await client.post(f"/api/meetings/{meeting_id}/invitations", json={"user_id": people[0]["id"]})
    assert invited.status_code == 201
    made = await client.post(f"/api/invitations/{invited.json()['id']}/link")
    assert made.status_code in {404, 405}, "a link was made for a physician who has an account"
    again = await client.post(f"/api/invitations/{invited.json()['id']}/send")
    assert again.status_code == 409


async def test_no_token_reaches_a_log_or_the_database(service: Service, coordinator: tuple[Client, int],
                                                      smtp_server: MailBox, db: Database) -> None:
    client, board_id = coordinator
    meeting_id = await meeting(client, board_id, starts_in=timedelta(minutes=30))
    address = new_address()
    link = await link_of(client, smtp_server, await invite_guest(client, meeting_id, address), address)
    token = re.split(r"[#/]", link)[-1]
    await use(service.url, link)
    await use(service.url, link)  # refused: the refusal is logged and audited too
    written = "\n".join(service.trail.lines)
    assert "POST /join" in written, "the access log ran (it names the route, not the token)"
    assert token not in written, "the join token reached a log line"
    # Read through SQLite, never by opening the file: closing any descriptor of the database file drops every
    # POSIX lock this process holds on it, and the live server's connections then corrupt it ("How To Corrupt
    # An SQLite Database File", 2.2). The dump covers every table, committed WAL content included.
    stored = await asyncio.to_thread(_dump, service.database_file)
    assert token not in stored, "the join token is stored in clear"


async def test_the_meeting_page_invites_a_guest_and_shows_where_the_link_went(
        service: Service, coordinator: tuple[Client, int], smtp_server: MailBox) -> None:
    client, board_id = coordinator
    meeting_id = await meeting(client, board_id, starts_in=timedelta(minutes=30))
    page = await client.get(f"/meetings/{meeting_id}")
    assert f'action="/meetings/{meeting_id}/guests"' in page.text
    address = new_address()
    sent = await client.post(f"/meetings/{meeting_id}/guests", data={
        "csrf_token": client.csrf, "guest_prefix": "Dr", "guest_given_name": "Denis",
        "guest_family_name": "Guest", "guest_email": address,
        "guest_specialty": "surgeon", "guest_hospital": "CHU X", "guest_quorum_member": "1"})
    assert sent.status_code == 303, sent.text
    link = await link_of(client, smtp_server, {"id": 0}, address)
    masked = address[0] + "…@chu-x.fr"

    async def shown() -> bool:
        text = (await client.get(f"/meetings/{meeting_id}")).text
        return f"Link sent to {masked}" in text and "guest, invited as Surgeon" in text
    await until(shown, "the meeting page to say where the link went")
    text = (await client.get(f"/meetings/{meeting_id}")).text
    assert link.split("#", 1)[1] not in text and address not in text
    # "Send a new link" from the page: a second mail, and the first link stops working.
    invitation = next(i for i in (await client.get(f"/api/meetings/{meeting_id}/invitations")).json() if i["guest"])
    again = await client.post(f"/invitations/{invitation['id']}/send", data={"csrf_token": client.csrf})
    assert again.status_code == 303
    await smtp_server.wait_for(address, 2)
    assert session_cookie(await use(service.url, link)) is None


def _participants(client: RoomClient) -> list[dict[str, Any]]:
    """Every participant the room has described to this client (snapshot and events)."""
    found: list[dict[str, Any]] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if "user_id" in value and "display_name" in value:
                found.append(value)
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
    walk(client.frames)
    return found


async def test_the_guest_is_a_guest_in_the_room_and_leaves_with_the_meeting(
        service: Service, coordinator: tuple[Client, int], smtp_server: MailBox) -> None:
    client, board_id = coordinator
    meeting_id = await meeting(client, board_id, starts_in=timedelta(minutes=30))
    address = new_address()
    invitation = await invite_guest(client, meeting_id, address)
    cookie = session_cookie(await use(service.url, await link_of(client, smtp_server, invitation, address)))
    assert cookie is not None
    chair_cookie = f"rcp_session={client.http.cookies['rcp_session']}"
    chair = await RoomClient.open(service.url, chair_cookie, meeting_id)
    guest = await RoomClient.open(service.url, f"rcp_session={cookie}", meeting_id)
    try:
        await chair.wait_for(lambda c: any(p["user_id"] == invitation["user_id"] for p in _participants(c)))
        seen = [p for p in _participants(chair) if p["user_id"] == invitation["user_id"]]
        assert all(p.get("guest") is True and p["specialty"] == "surgeon" for p in seen)
        listed = (await client.get(f"/api/meetings/{meeting_id}/invitations")).json()
        mine = next(i for i in listed if i["id"] == invitation["id"])
        assert mine["guest"] and mine["joined_at"] is not None
    finally:
        await guest.close()
        await chair.close()
    for status in ("live", "closed"):
        assert (await client.patch(f"/api/meetings/{meeting_id}", json={"status": status})).status_code == 200
    assert (await whoami_status(service.url, cookie)) == 401, "a guest's session ends with its meeting"


async def whoami_status(base_url: str, cookie: str) -> int:
    async with httpx.AsyncClient(base_url=base_url, cookies={"rcp_session": cookie}) as http:
        return (await http.get("/api/session")).status_code


async def test_a_guest_never_signs(service: Service, db: Database, smtp_server: MailBox) -> None:
    """Whatever the guest sends as a password, a join-link session is not a signer (the signature lane's rule)."""
    made = await make_meeting(db, cases=1, invite=(), starts_at=datetime.now(UTC) + timedelta(minutes=30))
    client = await sign_in(service.url, made.coordinator.username, made.coordinator.password)
    try:
        address = new_address()
        invitation = await invite_guest(client, made.id, address)
        cookie = session_cookie(await use(service.url, await link_of(client, smtp_server, invitation, address)))
        assert cookie is not None
    finally:
        await client.http.aclose()
    async with httpx.AsyncClient(base_url=service.url, cookies={"rcp_session": cookie}) as guest:
        csrf = (await guest.get("/api/session")).json()["csrf_token"]
        signed = await guest.post(f"/api/cases/{made.cases[0].id}/decision/sign", headers={"X-CSRF-Token": csrf},
                                  json={"password": "anything", "seen_revision": 0})
        assert signed.status_code == 403, signed.text
