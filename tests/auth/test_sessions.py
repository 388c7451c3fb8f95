"""Signing in and out: cookies, CSRF, throttling, bearer tokens, timeouts — against the app served for real."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import select

from rcp.auth.models import AuditEvent, LoginSession, User
from rcp.auth.sessions import create_api_token
from rcp.clock import SettableClock
from rcp.config import Settings
from rcp.db import Database
from tests.conftest import DEMO_PASSWORD
from tests.factories import credentials, make_clinician, make_meeting, new_rpps, totp_code, unique
from tests.fixtures.smtp import MailBox, join_link
from tests.servers import ServerThread


async def test_anonymous_api_gets_401_json(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/api/meetings")
    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"


async def test_anonymous_page_redirects_to_login(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/meetings")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=/meetings")


async def test_session_cookie_flags_and_new_id_each_login(anonymous: httpx.AsyncClient) -> None:
    first = await anonymous.post("/api/session", json=credentials("dr.oncologue", DEMO_PASSWORD))
    assert first.status_code == 201
    cookie = first.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax") and "Path=/" in cookie
    async with httpx.AsyncClient(base_url=str(anonymous.base_url)) as other:
        second = await other.post("/api/session", json=credentials("dr.oncologue", DEMO_PASSWORD))
    assert first.cookies["rcp_session"] != second.cookies["rcp_session"]


async def test_login_form_with_csrf_then_logout_ends_session(live_server: ServerThread) -> None:
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        page = await http.get("/login")
        token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
        assert token is not None
        password = await http.post("/login", data={"username": "secretariat", "password": DEMO_PASSWORD,
                                                   "login_csrf": token.group(1), "next": "/meetings"})
        # The password alone opens no session: the second factor's page comes next.
        assert password.status_code == 303 and password.headers["location"] == "/login/code"
        assert "rcp_session" not in http.cookies
        code_page = await http.get("/login/code")
        pending = re.search(r'name="pending_csrf" value="([^"]+)"', code_page.text)
        assert pending is not None
        done = await http.post("/login/code", data={"pending_csrf": pending.group(1), "code": totp_code("secretariat")})
        assert done.status_code == 303 and done.headers["location"] == "/meetings"
        stolen = http.cookies["rcp_session"]
        meetings = await http.get("/meetings")
        assert meetings.status_code == 200
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', meetings.text)
        assert csrf is not None
        out = await http.post("/logout", data={"csrf_token": csrf.group(1)})
        assert out.status_code == 303
    # The old cookie is worthless once the session is ended server-side.
    async with httpx.AsyncClient(base_url=live_server.url, cookies={"rcp_session": stolen}) as replay:
        assert (await replay.get("/api/meetings")).status_code == 401


async def test_login_form_without_its_csrf_token_is_refused(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.post("/login", data={"username": "secretariat", "password": DEMO_PASSWORD})
    assert response.status_code == 403
    assert "rcp_session" not in response.cookies


async def test_unsafe_request_without_csrf_header_is_refused(login) -> None:  # type: ignore[no-untyped-def]
    client = await login("secretariat")
    response = await client.http.post("/api/meetings", json={"board_id": 1, "starts_at": "2030-01-03T14:00"})
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    form = await client.http.post("/logout", data={"csrf_token": "forged"})
    assert form.status_code == 403


async def test_repeated_failures_make_the_account_wait(anonymous: httpx.AsyncClient, db: Database,
                                                      clock: SettableClock) -> None:
    """Three free mistakes, then a growing wait (rcp.auth.throttle): nothing is checked meanwhile, not even the
    right password; once it is waited out, the right password signs in (no lock anyone could extend)."""
    user = await make_clinician(db, "surgeon")
    for _ in range(3):
        bad = await anonymous.post("/api/session", json=credentials(user.username, "wrong-password"))
        assert bad.status_code == 401
    right = credentials(user)
    waiting = await anonymous.post("/api/session", json=right)
    assert waiting.status_code == 429 and waiting.json()["error"] == "too_many_attempts"
    wait_s = int(waiting.headers["Retry-After"])
    async with db.session() as s:
        events = (await s.exec(select(AuditEvent).where(AuditEvent.event_code.in_(["110114", "110113"])))).all()  # type: ignore[attr-defined]
        assert sum(e.outcome == 4 and e.what == f"wrong password for user {user.id}" for e in events) == 3
        assert any(e.event_code == "110113" and e.what == f"login refused: too many failed attempts for user {user.id}"
                   for e in events)
    clock.advance(wait_s)
    assert (await anonymous.post("/api/session", json=credentials(user))).status_code == 201


async def test_unknown_user_and_wrong_password_say_the_same(anonymous: httpx.AsyncClient, db: Database) -> None:
    user = await make_clinician(db, "gastroenterologist")
    unknown = await anonymous.post("/api/session", json=credentials(unique("nobody"), "x" * 12))
    wrong = await anonymous.post("/api/session", json=credentials(user.username, "x" * 12))
    assert unknown.json()["message"] == wrong.json()["message"]


async def test_idle_session_expires(login, db: Database, settings: Settings, clock: SettableClock) -> None:  # type: ignore[no-untyped-def]
    client = await login(await make_clinician(db, "pathologist"))
    assert (await client.get("/api/session")).status_code == 200
    clock.advance(settings.session_idle_s - 30)
    assert (await client.get("/api/session")).status_code == 200  # touched: idle time starts again
    clock.advance(settings.session_idle_s + 1)
    assert (await client.get("/api/session")).status_code == 401
    async with db.session() as s:  # the expired session is gone from the database, not just refused
        assert not (await s.exec(select(LoginSession).where(LoginSession.user_id == client.me["id"]))).all()


async def test_absolute_timeout_even_when_active(login, db: Database, settings: Settings,  # type: ignore[no-untyped-def]
                                                 clock: SettableClock) -> None:
    client = await login(await make_clinician(db, "pulmonologist"))
    elapsed = 0
    step = settings.session_idle_s - 60
    while elapsed + step < settings.session_absolute_s:  # active all along: never idle for long
        clock.advance(step)
        elapsed += step
        assert (await client.get("/api/meetings")).status_code == 200
    clock.advance(settings.session_absolute_s - elapsed + 1)
    assert (await client.get("/api/meetings")).status_code == 401


async def test_bearer_token_for_service_account(live_server: ServerThread, db: Database) -> None:
    async with db.session() as s:
        user = (await s.exec(select(User).where(User.username == "interface-dpi"))).one()
        token = await create_api_token(s, user, "test")
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        ok = await http.get("/api/session", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and ok.json()["username"] == "interface-dpi"
        # No CSRF for bearer calls: they carry no ambient credential.
        create = await http.post("/api/boards", headers={"Authorization": f"Bearer {token}"},
                                 json={"name": "x"})
        assert create.status_code == 403  # a service account is not a coordinator
        bad = await http.get("/api/session", headers={"Authorization": "Bearer rcp_not-a-token"})
        assert bad.status_code == 401


async def test_no_token_in_urls(login) -> None:  # type: ignore[no-untyped-def]
    client = await login("secretariat")
    page = await client.get("/meetings")
    assert client.csrf not in str(page.url)
    assert "rcp_session" not in page.text


@pytest.mark.parametrize("path", ["/api/meetings/999999", "/api/patients/999999", "/api/cases/999999"])
async def test_unknown_ids_are_404_json(login, path: str) -> None:  # type: ignore[no-untyped-def]
    client = await login("secretariat")
    response = await client.get(path)
    assert response.status_code == 404
    assert set(response.json()) >= {"error", "message"}


async def _guest_link(coordinator: Any, smtp: MailBox, meeting_id: int, *, nth: int = 1) -> tuple[dict[str, Any], str]:
    """A new external surgeon invited to the meeting, and the token of the link mailed to them."""
    address = f"{unique('guest')}@chu-x.fr"
    made = await coordinator.post(f"/api/meetings/{meeting_id}/guests", json={
        "family_name": "Guest", "prefix": "Dr", "email": address, "specialty": "surgeon", "hospital": "CHU X"})
    assert made.status_code == 201, made.text
    _link, token = join_link((await smtp.wait_for(address, nth))[nth - 1])
    return made.json(), token


async def _use(base_url: str, token: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url) as browser:
        return await browser.post("/join", data={"token": token})


async def test_join_link_opens_one_meeting_only(login, db: Database, live_server: ServerThread,  # type: ignore[no-untyped-def]
                                                smtp_server: MailBox) -> None:
    soon = datetime.now(UTC) + timedelta(minutes=30)
    first = await make_meeting(db, cases=1, starts_at=soon)
    other = await make_meeting(db, board=first.board, cases=1, invite=(), starts_at=soon)
    coordinator = await login(first.coordinator)
    invitation, token = await _guest_link(coordinator, smtp_server, first.id)
    assert invitation["guest"] and invitation["link_sent_to"].endswith("…@chu-x.fr")
    assert (await coordinator.post(f"/api/meetings/{other.id}/invitations",
                                   json={"user_id": invitation["user_id"]})).status_code == 201
    # The link is the first meeting's; the guest's second invitation has a link of its own.
    opened = await _use(live_server.url, token)
    assert opened.status_code == 303 and opened.headers["location"] == f"/meetings/{first.id}/room"
    async with httpx.AsyncClient(base_url=live_server.url, cookies=opened.cookies) as guest:
        assert (await guest.get(f"/api/meetings/{first.id}")).status_code == 200
        assert (await guest.get(f"/api/meetings/{other.id}")).status_code == 404
        me = (await guest.get("/api/session")).json()
        assert me["is_guest"] and me["role"] == "guest"
    tampered = await _use(live_server.url, token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb"))
    assert tampered.status_code == 401 and "rcp_session" not in tampered.cookies
    radiologist = await login(first.invitee("radiologist"))
    assert (await radiologist.post(f"/api/invitations/{invitation['id']}/send")).status_code == 403


async def test_a_guest_cannot_sign_in_with_a_password(anonymous: httpx.AsyncClient, login,  # type: ignore[no-untyped-def]
                                                      db: Database, smtp_server: MailBox) -> None:
    meeting = await make_meeting(db, cases=0, invite=())
    invitation, _token = await _guest_link(await login(meeting.coordinator), smtp_server, meeting.id)
    async with db.session() as s:
        guest = await s.get(User, invitation["user_id"])
        assert guest is not None and guest.password_hash == ""
        username = guest.username
    refused = await anonymous.post("/api/session", json=credentials(username, ""))
    assert refused.status_code in {401, 422}


async def test_join_link_opens_from_one_hour_before_the_meeting(login, db: Database,  # type: ignore[no-untyped-def]
                                                                live_server: ServerThread, smtp_server: MailBox,
                                                                clock: SettableClock) -> None:
    """Mailed days ahead, the link is refused (and not used up) until an hour before the meeting."""
    meeting = await make_meeting(db, cases=0, invite=())  # a week from now
    _invitation, token = await _guest_link(await login(meeting.coordinator), smtp_server, meeting.id)
    early = await _use(live_server.url, token)
    assert early.status_code == 401 and "rcp_session" not in early.cookies
    assert "one hour before" in early.text
    clock.advance(meeting.starts_at - clock.now() - timedelta(minutes=50))
    opened = await _use(live_server.url, token)
    assert opened.status_code == 303 and "rcp_session" in opened.cookies


async def test_application_start_is_audited(live_server: ServerThread, db: Database) -> None:
    async with db.session() as s:
        events = (await s.exec(select(AuditEvent).where(AuditEvent.event_code == "110100"))).all()
    assert any(e.what.startswith("application start") for e in events)


async def test_cached_session_is_forgotten_at_logout(settings, db: Database) -> None:  # type: ignore[no-untyped-def]
    """With the session cache on (production default), logout still ends the session at once on this node."""
    from dataclasses import replace

    from rcp.app import create_app

    server = ServerThread(create_app(replace(settings, session_cache_s=60)))
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            me = await http.post("/api/session", json=credentials("dr.chirurgien", DEMO_PASSWORD))
            cookie = http.cookies["rcp_session"]
            assert (await http.get("/api/session")).status_code == 200  # now cached
            out = await http.delete("/api/session", headers={"X-CSRF-Token": me.json()["csrf_token"]})
            assert out.status_code == 204
        async with httpx.AsyncClient(base_url=server.url, cookies={"rcp_session": cookie}) as replay:
            assert (await replay.get("/api/session")).status_code == 401
    finally:
        server.close()


async def test_session_gives_the_name_in_its_parts(db: Database, login: Any) -> None:
    """GET /api/session (the "who am I" of the scripts) gives the structured name of ``rcp.people`` beside the
    display name the pages already read, so a client never has to split "Dr Amélie ROUSSEAU" itself (issue 14)."""
    rpps = new_rpps()
    user = await make_clinician(db, specialty="surgeon", family_name="Rousseau", given_name="Amélie", rpps=rpps)
    client = await login(user)
    for me in (client.me, (await client.get("/api/session")).json()):
        assert me["display_name"] == "Dr Amélie ROUSSEAU"
        assert (me["family_name"], me["given_name"], me["prefix"], me["rpps"]) == ("Rousseau", "Amélie", "Dr", rpps)
        assert me["name_to_complete"] is False
    async with db.session() as s:
        row = await s.get(User, user.id)
        assert row is not None
        row.name_to_check = True
        s.add(row)
    assert (await client.get("/api/session")).json()["name_to_complete"] is True
