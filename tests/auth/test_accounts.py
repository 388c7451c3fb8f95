"""Account administration over HTTP (rcp.auth.accounts): create, change, deactivate, reset; the last-admin rule;
a password changed by its owner with the current one; every change in the audit trail (DCM 110136 / 110137)."""

from __future__ import annotations

import re
from typing import Any

import httpx
from sqlmodel import col, select

from rcp.auth.models import AuditEvent, LoginSession, Role, TotpCredential, User
from rcp.db import Database
from tests.factories import credentials, make_clinician, make_user, new_rpps, totp_code, unique
from tests.servers import ServerThread

Login = Any


async def _events(db: Database, since: int, code: str) -> list[AuditEvent]:
    async with db.session() as s:
        return list((await s.exec(select(AuditEvent).where(col(AuditEvent.id) > since,
                                                           AuditEvent.event_code == code))).all())


async def _last_event(db: Database) -> int:
    async with db.session() as s:
        return (await s.exec(select(col(AuditEvent.id)).order_by(col(AuditEvent.id).desc()).limit(1))).first() or 0


async def _row(db: Database, username: str) -> User:
    async with db.session() as s:
        return (await s.exec(select(User).where(User.username == username))).one()


def _form(user: User, **changes: Any) -> dict[str, str]:
    """The edit form as the page sends it (checkboxes: present when checked)."""
    data = {"family_name": user.family_name, "given_name": user.given_name, "prefix": user.prefix,
            "rpps": user.rpps, "role": user.role, "specialty": user.specialty, "hospital": user.hospital,
            "email": user.email}
    flags = {"active": user.active, "second_factor_required": user.second_factor_required}
    flags.update({k: v for k, v in changes.items() if k in flags})
    data.update({k: str(v) for k, v in changes.items() if k not in flags})
    data.update({k: "on" for k, v in flags.items() if v})
    return data


async def test_only_administrators_reach_the_account_pages(login: Login, db: Database) -> None:
    clinician = await login(await make_clinician(db, "surgeon"))
    assert (await clinician.get("/admin/users")).status_code == 403
    assert (await clinician.post("/admin/users/new", data={"username": "x"})).status_code == 403
    admin = await login(await make_user(db, role=Role.admin))
    listed = await admin.get("/admin/users")
    assert listed.status_code == 200 and "dr.oncologue" in listed.text


async def test_an_administrator_creates_an_account_that_changes_its_password_and_enrols(
        login: Login, db: Database, live_server: ServerThread) -> None:
    admin = await login(await make_user(db, role=Role.admin))
    since = await _last_event(db)
    username = unique("dr.nouveau")
    bad = await admin.post("/admin/users/new", data={"username": "Not Valid!", "family_name": "", "role": "x",
                                                     "email": "nope", "rpps": "12345678901"})
    assert bad.status_code == 422
    assert "2 to 80 characters" in bad.text and "Choose a role." in bad.text and "name@chu-x.fr" in bad.text
    assert "required: the family name" in bad.text and "check digit" in bad.text
    rpps = new_rpps()
    made = await admin.post("/admin/users/new", data={
        "username": username, "family_name": "Nouveau", "given_name": "Jeanne", "prefix": "docteur",
        "rpps": rpps[:3] + " " + rpps[3:], "role": "clinician", "specialty": "pathologist",
        "hospital": "CHU X", "email": f"{username}@chu-x.fr", "active": "on", "second_factor_required": "on"})
    assert made.status_code == 200, made.text
    shown = re.search(r"data-temporary-password>([a-z0-9-]+)<", made.text)
    assert shown is not None
    temporary = shown.group(1)
    row = await _row(db, username)
    assert row.must_change_password and row.specialty == "pathologist" and row.password_hash != temporary
    assert (row.prefix, row.given_name, row.family_name, row.rpps) == ("Dr", "Jeanne", "Nouveau", rpps)
    assert any(e.what == f"user {row.id} created with role clinician" for e in await _events(db, since, "110136"))
    # The same user name twice: refused, naming the field.
    again = await admin.post("/admin/users/new", data={"username": username, "family_name": "X", "role": "clinician"})
    assert again.status_code == 422 and "This user name is taken." in again.text

    # The API does not open a session before the password change ...
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as api:
        early = await api.post("/api/session", json={"username": username, "password": temporary})
        assert early.status_code == 403 and early.json()["error"] == "sign_in_incomplete"
    # ... the pages lead through the enrolment, then the new password, then the session.
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        page = await http.get("/login")
        token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
        assert token is not None
        first = await http.post("/login", data={"username": username, "password": temporary,
                                                "login_csrf": token.group(1), "next": "/meetings"})
        assert first.headers["location"] == "/login/enrol"
        enrol = await http.get("/login/enrol")
        key = re.search(r"data-totp-secret>([A-Z2-7 ]+)<", enrol.text)
        pending = re.search(r'name="pending_csrf" value="([^"]+)"', enrol.text)
        assert key is not None and pending is not None
        from rcp.auth.totp import code_at
        from tests.factories import CLOCK, TOTP_STEP_S

        codes = await http.post("/login/enrol", data={"pending_csrf": pending.group(1), "code": code_at(
            key.group(1).replace(" ", ""), CLOCK[0].now(), step_s=TOTP_STEP_S)})
        assert codes.status_code == 200 and 'href="/login/password"' in codes.text
        assert "rcp_session" not in http.cookies  # no session while the password is still the temporary one
        form = await http.get("/login/password")
        pending = re.search(r'name="pending_csrf" value="([^"]+)"', form.text)
        assert pending is not None
        same = await http.post("/login/password", data={"pending_csrf": pending.group(1), "new_password": temporary,
                                                        "new_password2": temporary})
        assert same.status_code == 422
        short = await http.post("/login/password", data={"pending_csrf": pending.group(1), "new_password": "short",
                                                         "new_password2": "short"})
        assert short.status_code == 422
        done = await http.post("/login/password", data={"pending_csrf": pending.group(1),
                                                        "new_password": "my own sentence 2026",
                                                        "new_password2": "my own sentence 2026"})
        assert done.status_code == 303 and done.headers["location"] == "/meetings"
        assert (await http.get("/api/session")).json()["username"] == username
    assert not (await _row(db, username)).must_change_password


async def test_role_attributes_deactivation_and_resets_are_audited_and_end_sessions(
        login: Login, db: Database) -> None:
    admin = await login(await make_user(db, role=Role.admin))
    person = await make_clinician(db, "surgeon")
    theirs = await login(person)
    row = await _row(db, person.username)
    since = await _last_event(db)
    saved = await admin.post(f"/admin/users/{person.id}", data=_form(row, role="coordinator",
                                                                      email="new@chu-x.fr", specialty="radiologist"))
    assert saved.status_code == 303
    row = await _row(db, person.username)
    assert row.role == "coordinator" and row.email == "new@chu-x.fr" and row.specialty == "radiologist"
    roles = await _events(db, since, "110136")
    attributes = await _events(db, since, "110137")
    assert [e.what for e in roles] == [f"user {person.id}: role clinician -> coordinator"]
    assert any(e.what == f"user {person.id}: specialty, email changed" for e in attributes)
    assert all("new@chu-x.fr" not in e.what for e in attributes)  # the trail names fields, not their values
    # A role change ends the account's sessions (its rights changed under them).
    assert (await theirs.get("/api/session")).status_code == 401

    theirs = await login(person)
    deactivated = await admin.post(f"/admin/users/{person.id}", data=_form(row, active=False))
    assert deactivated.status_code == 303
    assert (await theirs.get("/api/session")).status_code == 401
    assert (await theirs.http.post("/api/session", json=credentials(person))).status_code == 401
    assert any(e.what == f"user {person.id}: deactivated" for e in await _events(db, since, "110136"))
    row = await _row(db, person.username)
    assert (await admin.post(f"/admin/users/{person.id}", data=_form(row, active=True))).status_code == 303

    # A reset second factor: the account enrols again (no session without it).
    reset = await admin.post(f"/admin/users/{person.id}/second-factor")
    assert reset.status_code == 303
    async with db.session() as s:
        assert await s.get(TotpCredential, person.id) is None
    assert (await theirs.http.post("/api/session", json=credentials(person))).json()["error"] == "sign_in_incomplete"
    # A reset password: shown once, to change at the next sign-in; the old one no longer works.
    shown = await admin.post(f"/admin/users/{person.id}/password")
    assert shown.status_code == 200 and re.search(r"data-temporary-password>[a-z0-9-]{19}<", shown.text)
    assert (await theirs.http.post("/api/session", json=credentials(person))).status_code == 401
    async with db.session() as s:
        assert (await s.exec(select(LoginSession).where(LoginSession.user_id == person.id))).first() is None
    whats = [e.what for e in await _events(db, since, "110137")]
    assert any("second factor reset" in w for w in whats) and any("password reset" in w for w in whats)


async def test_the_last_administrator_stays(login: Login, db: Database) -> None:
    """Nobody can leave the service without an administrator: the last active one keeps the role."""
    async with db.session() as s:
        admins = (await s.exec(select(User).where(User.role == Role.admin, col(User.active).is_(True)))).all()
    me = await make_user(db, role=Role.admin)
    admin = await login(me)
    # Make this one the only active administrator for the test (then put the others back).
    async with db.session() as s:
        for other in admins:
            other.active = False
            s.add(other)
    try:
        row = await _row(db, me.username)
        demoted = await admin.post(f"/admin/users/{me.id}", data=_form(row, role="clinician"))
        assert demoted.status_code == 409 and "last active administrator" in demoted.text
        gone = await admin.post(f"/admin/users/{me.id}", data=_form(row, active=False))
        assert gone.status_code == 409
        assert (await _row(db, me.username)).role == "admin" and (await _row(db, me.username)).active
        # With a second administrator, the first may step down.
        second = await make_user(db, role=Role.admin)
        assert (await admin.post(f"/admin/users/{me.id}", data=_form(row, role="coordinator"))).status_code == 303
        assert (await _row(db, second.username)).role == "admin"
    finally:
        async with db.session() as s:
            for other in admins:
                back = await s.get(User, other.id)
                assert back is not None
                back.active = True
                s.add(back)


async def test_a_password_change_needs_the_current_password(login: Login, db: Database,
                                                            live_server: ServerThread) -> None:
    person = await make_clinician(db, "radiotherapist")
    client = await login(person)
    other = await login(person)
    page = await client.get("/account/password")
    assert page.status_code == 200 and 'name="current_password"' in page.text
    since = await _last_event(db)
    wrong = await client.post("/account/password", data={"current_password": "not my password",
                                                         "new_password": "a brand new sentence",
                                                         "new_password2": "a brand new sentence"})
    assert wrong.status_code == 403 and "This is not your current password." in wrong.text
    assert any(e.what == "password change: current password wrong" for e in await _events(db, since, "110114"))
    differ = await client.post("/account/password", data={"current_password": person.password,
                                                          "new_password": "a brand new sentence",
                                                          "new_password2": "another sentence"})
    assert differ.status_code == 422
    done = await client.post("/account/password", data={"current_password": person.password,
                                                        "new_password": "a brand new sentence",
                                                        "new_password2": "a brand new sentence"})
    assert done.status_code == 303
    assert (await client.get("/api/session")).status_code == 200  # this browser stays signed in
    assert (await other.get("/api/session")).status_code == 401  # the others are signed out
    assert any(e.what == f"user {person.id}: password changed by its owner" for e in await _events(db, since, "110137"))
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        old = await http.post("/api/session", json={"username": person.username, "password": person.password,
                                                    "code": totp_code(person)})
        assert old.status_code == 401
        new = await http.post("/api/session", json={"username": person.username, "password": "a brand new sentence",
                                                    "code": totp_code(person)})
        assert new.status_code == 201
