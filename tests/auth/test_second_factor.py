"""The second factor of local accounts (rcp.auth.totp, rcp.auth.login_steps): enrolment by QR code, codes used
once, wrong codes throttled and audited, recovery codes single-use, secrets encrypted at rest."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url
from sqlmodel import col, select

from rcp.auth.models import AuditEvent
from rcp.auth.totp import code_at
from rcp.clock import SettableClock
from rcp.config import Settings
from rcp.db import Database
from tests.factories import TOTP_STEP_S, MadeUser, credentials, make_clinician, totp_code
from tests.servers import ServerThread


def _stored_secret(settings: Settings, user_id: int) -> str:
    """The TOTP row as the database holds it, read through SQLite (read-only), not through the models."""
    path = Path(str(make_url(settings.database_url).database))
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
        row = connection.execute("SELECT secret_enc FROM totp_credentials WHERE user_id = ?", (user_id,)).fetchone()
    return str(row[0])


async def _events(db: Database, user_id: int) -> list[AuditEvent]:
    async with db.session() as s:
        return list((await s.exec(select(AuditEvent).where(AuditEvent.user_id == user_id)
                                  .order_by(col(AuditEvent.id)))).all())


async def _password_step(http: httpx.AsyncClient, user: MadeUser) -> httpx.Response:
    page = await http.get("/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert token is not None
    return await http.post("/login", data={"username": user.username, "password": user.password,
                                           "login_csrf": token.group(1), "next": "/meetings"})


def _pending_csrf(page: httpx.Response) -> str:
    found = re.search(r'name="pending_csrf" value="([^"]+)"', page.text)
    assert found is not None, page.text
    return found.group(1)


async def _enrol(http: httpx.AsyncClient, user: MadeUser, clock: SettableClock) -> tuple[str, list[str]]:
    """Sign in for the first time through the pages: the secret shown, and the recovery codes given."""
    first = await _password_step(http, user)
    assert first.status_code == 303 and first.headers["location"] == "/login/enrol"
    page = await http.get("/login/enrol")
    assert page.status_code == 200
    secret_text = re.search(r"data-totp-secret>([A-Z2-7 ]+)<", page.text)
    assert secret_text is not None
    secret = secret_text.group(1).replace(" ", "")
    confirmed = await http.post("/login/enrol", data={"pending_csrf": _pending_csrf(page),
                                                      "code": code_at(secret, clock.now(), step_s=TOTP_STEP_S)})
    assert confirmed.status_code == 200, confirmed.text
    codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", confirmed.text)
    return secret, codes


async def test_enrolment_shows_a_qr_code_and_needs_a_first_code_before_anything_else(
        live_server: ServerThread, db: Database, settings: Settings, clock: SettableClock) -> None:
    user = await make_clinician(db, "surgeon", second_factor=False)
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        first = await _password_step(http, user)
        # The password alone opens no session: the account is sent to enrolment and can do nothing else.
        assert first.status_code == 303 and first.headers["location"] == "/login/enrol"
        assert "rcp_session" not in http.cookies
        assert (await http.get("/meetings")).status_code == 303
        assert (await http.get("/api/meetings")).status_code == 401
        # The API sign-in says where to go, and opens nothing either.
        refused = await http.post("/api/session", json={"username": user.username, "password": user.password})
        assert refused.status_code == 403 and refused.json()["error"] == "sign_in_incomplete"

        page = await http.get("/login/enrol")
        assert page.status_code == 200
        # The QR code is drawn by the service (an SVG data: URI), the key is there as text for manual entry.
        assert re.search(r'<img src="data:image/svg\+xml[^"]+"[^>]*data-totp-qr', page.text)
        secret = re.search(r"data-totp-secret>([A-Z2-7 ]+)<", page.text)
        assert secret is not None
        key = secret.group(1).replace(" ", "")
        assert len(key) == 32
        # Shown again (a reload), the same key: the phone may already hold it.
        assert key in (await http.get("/login/enrol")).text.replace(" ", "")
        # Not active until a first code confirms it.
        wrong = await http.post("/login/enrol", data={"pending_csrf": _pending_csrf(page), "code": "000000"})
        assert wrong.status_code == 401 and "rcp_session" not in http.cookies
        # Encrypted at rest: the row holds neither the key nor its base32 text.
        stored = _stored_secret(settings, user.id)
        assert stored.startswith("v1:") and key not in stored and key.lower() not in stored.lower()

        right = await http.post("/login/enrol", data={"pending_csrf": _pending_csrf(page),
                                                      "code": code_at(key, clock.now(), step_s=TOTP_STEP_S)})
        assert right.status_code == 200, right.text
        codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", right.text)
        assert len(codes) == 10 and len(set(codes)) == 10
        assert "rcp_session" in http.cookies
        assert (await http.get("/meetings")).status_code == 200
    # Recovery codes are kept hashed (argon2id), never as given.
    path = Path(str(make_url(settings.database_url).database))
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
        hashes = [r[0] for r in connection.execute("SELECT code_hash FROM recovery_codes WHERE user_id = ?",
                                                   (user.id,))]
    assert len(hashes) == 10 and all(h.startswith("$argon2id$") for h in hashes)
    assert not any(code.replace("-", "") in h for code in codes for h in hashes)
    events = await _events(db, user.id)
    assert any(e.event_code == "110137" and "authenticator enrolled" in e.what for e in events)
    assert any(e.event_code == "110114" and e.outcome == 4 and "enrolment" in e.what for e in events)


async def test_the_code_page_signs_in_after_the_password(live_server: ServerThread, db: Database) -> None:
    user = await make_clinician(db, "radiotherapist")
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        first = await _password_step(http, user)
        assert first.status_code == 303 and first.headers["location"] == "/login/code"
        page = await http.get("/login/code")
        wrong = await http.post("/login/code", data={"pending_csrf": _pending_csrf(page), "code": "123456"})
        assert wrong.status_code == 401 and "rcp_session" not in http.cookies
        # Without the pending form's own token, nothing is checked: back to the start.
        forged = await http.post("/login/code", data={"pending_csrf": "forged", "code": "654321"})
        assert forged.status_code == 303 and forged.headers["location"] == "/login"
        assert (await _password_step(http, user)).headers["location"] == "/login/code"
        page = await http.get("/login/code")
        done = await http.post("/login/code", data={"pending_csrf": _pending_csrf(page), "code": totp_code(user)})
        assert done.status_code == 303 and done.headers["location"] == "/meetings"
        assert (await http.get("/api/session")).json()["username"] == user.username
    assert any(e.what == "login (password and totp)" for e in await _events(db, user.id))


async def test_wrong_codes_are_throttled_and_audited(anonymous: httpx.AsyncClient, db: Database,
                                                    clock: SettableClock) -> None:
    user = await make_clinician(db, "surgeon")
    for guess in ("111111", "222222", "333333"):
        wrong = await anonymous.post("/api/session", json={"username": user.username, "password": user.password,
                                                           "code": guess})
        assert wrong.status_code == 401 and wrong.json()["error"] == "second_factor_required"
    # Then a wait, during which even the right code is not checked.
    waiting = await anonymous.post("/api/session", json=credentials(user))
    assert waiting.status_code == 429 and int(waiting.headers["Retry-After"]) >= 1
    events = await _events(db, user.id)
    assert sum(e.event_code == "110114" and e.outcome == 4 and e.what == "login: wrong second-factor code"
               for e in events) == 3
    assert any(e.event_code == "110113" and "too many wrong second-factor codes" in e.what for e in events)
    clock.advance(int(waiting.headers["Retry-After"]))
    assert (await anonymous.post("/api/session", json=credentials(user))).status_code == 201


async def test_a_code_is_accepted_once(live_server: ServerThread, db: Database) -> None:
    """RFC 6238 §5.2: the same code (the same time step) is refused once it was used."""
    user = await make_clinician(db, "surgeon")
    body = credentials(user)
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as first, \
            httpx.AsyncClient(base_url=live_server.url, timeout=30) as replay:
        assert (await first.post("/api/session", json=body)).status_code == 201
        again = await replay.post("/api/session", json=body)
    assert again.status_code == 401 and "rcp_session" not in again.cookies
    assert any(e.event_code == "110113" and "replay refused" in e.what for e in await _events(db, user.id))


async def test_a_recovery_code_signs_in_once(live_server: ServerThread, db: Database, clock: SettableClock) -> None:
    user = await make_clinician(db, "pathologist", second_factor=False)
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        _secret, codes = await _enrol(http, user, clock)
    assert len(codes) == 10
    body = {"username": user.username, "password": user.password, "code": codes[3].upper()}
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as lost_phone:
        used = await lost_phone.post("/api/session", json=body)
        assert used.status_code == 201, used.text
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as again:
        twice = await again.post("/api/session", json=body)
        assert twice.status_code == 401
        other = await again.post("/api/session", json={**body, "code": codes[4]})
        assert other.status_code == 201
    assert any(e.what == "login (password and recovery code)" for e in await _events(db, user.id))


async def test_an_account_relaxed_by_an_administrator_signs_in_with_its_password(
        anonymous: httpx.AsyncClient, db: Database) -> None:
    from rcp.auth.models import User

    user = await make_clinician(db, "radiologist", second_factor=False)
    async with db.session() as s:
        row = await s.get(User, user.id)
        assert row is not None
        row.second_factor_required = False
        s.add(row)
    signed = await anonymous.post("/api/session", json={"username": user.username, "password": user.password})
    assert signed.status_code == 201
    assert any(e.what == "login (password; second factor relaxed)" for e in await _events(db, user.id))


def test_a_secret_opens_only_with_its_key_and_for_its_account() -> None:
    from rcp.auth.totp import SecretBox, UnreadableSecret

    sealed = SecretBox("a" * 48).seal("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", user_id=1)
    # Another key (the secret key file was replaced): the secret is unreadable, and says what to do.
    with pytest.raises(UnreadableSecret, match="reset this account's second factor"):
        SecretBox("b" * 48).open(sealed, user_id=1)
    # Copied onto another account's row: refused too (the user id is authenticated data).
    with pytest.raises(UnreadableSecret):
        SecretBox("a" * 48).open(sealed, user_id=2)

