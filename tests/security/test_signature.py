"""Attacks on the signature (issue 13, findings 4 and 8): who signs a fiche, what it says about them, and the
password re-check as an oracle.

Everything goes over HTTP and the room's WebSocket against the running service (``live_server``). Each test builds
its own board, meeting, patient and accounts in the service's database (nothing shared with other tests, so a
throttled account or a signed case never leaks into them); the audit trail is read back from that database.

The story of finding 4: a coordinator made invitees "present" for the quorum and signed a fiche that reads
"signed by Dr Amélie Rousseau", who never signed; a signed draft stayed editable.
"""

from __future__ import annotations

import asyncio
import io
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pypdf
import pytest
from sqlmodel import col, select

from rcp.auth.links import token_digest
from rcp.auth.models import AuditEvent, Role, User
from rcp.auth.passwords import hash_password
from rcp.clock import SettableClock
from rcp.config import Settings
from rcp.db import Database
from rcp.scheduling.models import (
    Invitation,
    JoinLink,
)
from tests.conftest import sign_in
from tests.factories import CHEAP_ARGON2, proof
from tests.room.client import RoomClient
from tests.security.signing_world import PASSWORD, World, discuss_case, make_world, sign_decision

#: A demo physician's name, typed into the fiche by someone else.
ROUSSEAU = "Dr Amélie Rousseau"

@pytest.fixture
async def world(db: Database, live_server: Any) -> AsyncIterator[World]:
    found = await make_world(db, live_server.url, cases=2)
    try:
        yield found
    finally:
        await found.close()


async def _fill(world: World, case_id: int, *, editor: str = "surgeon", responsible: dict[str, Any]) -> int:
    """Write a complete decision as ``editor``; the draft revision the signer then reads."""
    client = await world.client(editor)
    for name, value in {
        "proposal": {"type": "surgery", "details": "Lobectomie supérieure droite."},
        "guideline": {"conforms": True}, "case_status": "discussed",
        "responsible_physician": responsible,
        "patient_informed": True,
    }.items():
        current = (await client.get(f"/api/cases/{case_id}/decision")).json()["draft"]["fields"][name]["version"]
        saved = await client.put(f"/api/cases/{case_id}/decision/fields/{name}",
                                 json={"value": value, "base_version": current})
        assert saved.status_code == 200, saved.text
    state = (await client.get(f"/api/cases/{case_id}/decision")).json()
    revision: int = state["draft"]["revision"]
    return revision


async def _versions(world: World, case_id: int) -> list[dict[str, Any]]:
    client = await world.client("surgeon")
    listed: list[dict[str, Any]] = (await client.get(f"/api/cases/{case_id}/decision/versions")).json()
    return listed


async def _audit(db: Database, user_id: int, case_id: int) -> list[AuditEvent]:
    async with db.session() as s:
        return list((await s.exec(
            select(AuditEvent).where(AuditEvent.user_id == user_id, col(AuditEvent.outcome) > 0,
                                     col(AuditEvent.what).contains(f"case {case_id}"))
        )).all())


# -- finding 4: the signer --------------------------------------------------------------------------------------


async def test_a_secretary_with_the_quorum_present_cannot_sign_a_fiche_naming_a_physician(world: World) -> None:
    """The coordinator (a board secretary, no medical specialty) is invited, the quorum is in the room; they name
    "Dr Amélie Rousseau" as responsible physician (with their own account id, as the form allowed) and sign."""
    case_id = world.cases[0]
    await discuss_case(world, case_id)
    revision = await _fill(world, case_id, editor="coordinator",
                           responsible={"name": ROUSSEAU, "user_id": world.id("coordinator")})
    refused = await sign_decision(world, "coordinator", case_id, revision=revision)
    assert refused.status_code == 403, refused.text
    assert await _versions(world, case_id) == []


async def test_the_fiche_names_the_account_that_signed_never_the_typed_name(world: World) -> None:
    """A present physician signs; the responsible physician typed on the fiche is someone else. The signed
    version, the fiche page and its PDF name the signer's account."""
    case_id = world.cases[0]
    await discuss_case(world, case_id)
    revision = await _fill(world, case_id, responsible={"name": ROUSSEAU, "user_id": world.id("medical_oncologist")})
    signed = await sign_decision(world, "surgeon", case_id, revision=revision)
    assert signed.status_code == 201, signed.text
    surgeon_name = (await world.client("surgeon")).me["display_name"]
    assert signed.json()["signer"] == {"user_id": world.id("surgeon"), "name": surgeon_name}

    client = await world.client("radiotherapist")
    page = await client.get(f"/cases/{case_id}/fiche")
    assert page.status_code == 200
    signature = page.text.split('class="signature signed">', 1)[1].split("</p>", 1)[0]
    assert surgeon_name in signature and "Rousseau" not in signature
    pdf = await client.get(f"/cases/{case_id}/fiche.pdf")
    text = " ".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf.content)).pages).replace("\n", " ")
    assert surgeon_name in text
    assert f"signed by {ROUSSEAU}" not in text and f"signée par {ROUSSEAU}" not in text


async def test_only_physicians_present_when_the_case_was_discussed_sign(world: World) -> None:
    """The pathologist arrives after the first case was discussed (the chair has moved on); they are invited and
    in the room now, but were not there for that case. After the meeting (everyone gone), a physician who was
    there still signs."""
    first, second = world.cases
    await discuss_case(world, first)
    revision = await _fill(world, first, responsible={"name": "Dr Pathologist", "user_id": world.id("pathologist")})
    await world.open_case(second)
    await world.enter("pathologist")
    late = await sign_decision(world, "pathologist", first, revision=revision)
    assert late.status_code == 403, late.text

    for key in list(world.rooms):
        await world.leave(key)
    coordinator = await world.client("coordinator")
    for status in ("live", "closed"):
        moved = await coordinator.patch(f"/api/meetings/{world.meeting_id}", json={"status": status})
        assert moved.status_code == 200, moved.text
    # After the meeting the draft stays editable by its physicians until it is signed.
    radiotherapist = await world.client("radiotherapist")
    current = (await radiotherapist.get(f"/api/cases/{first}/decision")).json()["draft"]["fields"]["comments"]
    edited = await radiotherapist.put(f"/api/cases/{first}/decision/fields/comments",
                                      json={"value": "Relu le soir même.", "base_version": current["version"]})
    assert edited.status_code == 200, edited.text
    after = await sign_decision(world, "radiotherapist", first, revision=edited.json()["revision"])
    assert after.status_code == 201, after.text
    [version] = await _versions(world, first)
    attendees = {a["user_id"] for a in version["content"]["attendees"]}
    assert {world.id(k) for k in ("surgeon", "medical_oncologist", "radiotherapist")} <= attendees
    assert world.id("pathologist") not in attendees


async def test_a_join_link_guest_never_signs(world: World, db: Database) -> None:
    """An external physician in the room through their join link (a guest session, confined to the meeting, present
    while the case is discussed and counted under their specialty) may not sign, even knowing a password."""
    case_id = world.cases[0]
    token = secrets.token_urlsafe(32)
    async with db.session() as s:
        guest = User(username=f"guest-{token[:8]}", family_name="Externe", given_name="Invitée", prefix="Dr", role=Role.guest,
                     specialty="surgeon", password_hash=hash_password(PASSWORD, CHEAP_ARGON2))
        s.add(guest)
        await s.flush()
        invitation = Invitation(meeting_id=world.meeting_id, user_id=guest.id or 0, specialty="surgeon")
        s.add(invitation)
        await s.flush()
        s.add(JoinLink(invitation_id=invitation.id or 0, token_sha256=token_digest(token)))
    async with httpx.AsyncClient(base_url=world.base_url, timeout=30) as browser:
        opened = await browser.post("/join", data={"token": token})
        assert opened.status_code in {200, 303}, opened.text
        cookie = f"rcp_session={browser.cookies['rcp_session']}"
        world.rooms["guest"] = await RoomClient.open(world.base_url, cookie, world.meeting_id)
        await discuss_case(world, case_id, who=("medical_oncologist", "radiotherapist"))
        revision = await _fill(world, case_id, responsible={"name": "Dr Invitée Externe", "user_id": guest.id})
        csrf = (await browser.get("/api/session")).json()["csrf_token"]
        state = (await browser.get(f"/api/cases/{case_id}/decision")).json()
        assert guest.id in {a["user_id"] for a in state["attendees"]}  # there, and counted
        refused = await browser.post(f"/api/cases/{case_id}/decision/sign", headers={"X-CSRF-Token": csrf},
                                     json={"password": PASSWORD, "seen_revision": revision})
    assert refused.status_code == 403 and refused.json()["error"] == "not_allowed_to_sign", refused.text
    assert await _versions(world, case_id) == []


async def test_a_signed_draft_is_not_editable_only_amended(world: World) -> None:
    case_id = world.cases[0]
    await discuss_case(world, case_id)
    revision = await _fill(world, case_id, responsible={"name": "Dr S", "user_id": world.id("surgeon")})
    assert (await sign_decision(world, "surgeon", case_id, revision=revision)).status_code == 201

    client = await world.client("medical_oncologist")
    state = (await client.get(f"/api/cases/{case_id}/decision")).json()
    version = state["draft"]["fields"]["comments"]["version"]
    edited = await client.put(f"/api/cases/{case_id}/decision/fields/comments",
                              json={"value": "Changé après signature.", "base_version": version})
    assert edited.status_code == 409, edited.text
    assert edited.json()["error"] == "already_signed" and "amend" in edited.json()["message"].lower()
    assert (await _versions(world, case_id))[0]["content"]["comments"] == ""

    coordinator = await world.client("coordinator")
    not_a_physician = await coordinator.post(
        f"/api/cases/{case_id}/decision/amend",
        json={**proof(world.users["coordinator"][1], PASSWORD), "reason": "coquille", "replaces": 1,
              "changes": {"comments": "Par la secrétaire."}})
    assert not_a_physician.status_code == 403, not_a_physician.text
    amended = await client.post(
        f"/api/cases/{case_id}/decision/amend",
        json={**proof(world.users["medical_oncologist"][1], PASSWORD), "reason": "EFR à ajouter", "replaces": 1,
              "changes": {"comments": "EFR."}})
    assert amended.status_code == 201, amended.text
    assert amended.json()["signer"]["user_id"] == world.id("medical_oncologist")
    listed = await _versions(world, case_id)
    assert [v["number"] for v in listed] == [1, 2] and listed[1]["content"]["comments"] == "EFR."
    assert listed[0]["content"]["comments"] == ""


# -- finding 8: the password re-check ---------------------------------------------------------------------------


async def test_the_password_recheck_is_not_an_oracle(world: World, db: Database) -> None:
    """Someone who may not sign (here: a physician who was not there) learns nothing about the password: the
    right and a wrong password get the same answer."""
    first, second = world.cases
    await discuss_case(world, first)
    revision = await _fill(world, first, responsible={"name": "Dr S", "user_id": world.id("surgeon")})
    await world.open_case(second)
    await world.enter("pathologist")
    wrong = await sign_decision(world, "pathologist", first, "not-the-password", revision=revision)
    right = await sign_decision(world, "pathologist", first, PASSWORD, revision=revision)
    assert (wrong.status_code, wrong.json()) == (right.status_code, right.json())


async def test_wrong_passwords_are_throttled_with_growing_delays_and_audited(world: World, db: Database,
                                                                             clock: SettableClock) -> None:
    case_id = world.cases[0]
    await discuss_case(world, case_id)
    revision = await _fill(world, case_id, responsible={"name": "Dr S", "user_id": world.id("surgeon")})
    answers = [await sign_decision(world, "surgeon", case_id, f"guess-{i}", revision=revision) for i in range(8)]
    statuses = [a.status_code for a in answers]
    assert 429 in statuses, statuses
    throttled = [a for a in answers if a.status_code == 429]
    assert all(int(a.headers["Retry-After"]) >= 1 for a in throttled)
    # While throttled even the right password is not checked (so guessing in a burst gains nothing).
    # (A code that is not the account's: taking a fresh one may wait for the next time step, and so the throttle.)
    blocked = await sign_decision(world, "surgeon", case_id, PASSWORD, revision=revision, code="000000")
    assert blocked.status_code == 429
    assert await _versions(world, case_id) == []
    # Every refusal is in the audit trail, with who and which case.
    refusals = await _audit(db, world.id("surgeon"), case_id)
    assert len(refusals) >= len(answers) + 1

    # The delay grows: wait it out, fail once more, and the next wait is longer.
    # The wait the latest refusal named: on a slow machine an attempt of the burst may have been counted after
    # the last 429 of ``answers`` (and lengthened the wait), so that one's Retry-After can be stale.
    first_wait = int(blocked.headers["Retry-After"])
    clock.advance(first_wait + 0.2)
    again = await sign_decision(world, "surgeon", case_id, "guess-again", revision=revision)
    assert again.status_code == 403
    longer = await sign_decision(world, "surgeon", case_id, PASSWORD, revision=revision, code="000000")
    assert longer.status_code == 429 and int(longer.headers["Retry-After"]) > first_wait


async def test_parallel_guesses_do_not_slip_past_the_throttle(world: World) -> None:
    case_id = world.cases[0]
    await discuss_case(world, case_id)
    revision = await _fill(world, case_id, responsible={"name": "Dr S", "user_id": world.id("surgeon")})
    answers = await asyncio.gather(*(sign_decision(world, "surgeon", case_id, f"burst-{i}", revision=revision)
                                     for i in range(12)))
    checked = [a for a in answers if a.status_code == 403]
    assert len(checked) <= 3, [a.status_code for a in answers]


# -- issue 17: the second factor, and the five-minute signing window ------------------------------------------


async def test_a_signature_needs_the_second_factor_then_opens_a_five_minute_window(
        world: World, db: Database, clock: SettableClock) -> None:
    first, second = world.cases
    await discuss_case(world, first)
    revision = await _fill(world, first, responsible={"name": "Dr S", "user_id": world.id("surgeon")})
    surgeon = await world.client("surgeon")
    url = f"/api/cases/{first}/decision/sign"
    # Nothing sent: nothing checked, the page is told to ask (and no failure is counted).
    asked = await surgeon.post(url, json={"seen_revision": revision})
    assert asked.status_code == 403 and asked.json()["error"] == "reauthentication_required"
    # The right password without the second factor: refused like a wrong password.
    no_code = await surgeon.post(url, json={"password": PASSWORD, "seen_revision": revision})
    assert no_code.status_code == 403 and no_code.json()["error"] == "reauthentication_failed"
    wrong_code = await surgeon.post(url, json={"password": PASSWORD, "code": "000000", "seen_revision": revision})
    assert wrong_code.status_code == 403 and wrong_code.json()["error"] == "reauthentication_failed"
    assert await _versions(world, first) == []
    assert any("wrong second-factor code" in e.what for e in await _audit(db, world.id("surgeon"), first))

    assert (await sign_decision(world, "surgeon", first, revision=revision)).status_code == 201
    # Within five minutes the same session signs the next fiche without a new code ...
    await world.open_case(second)
    revision = await _fill(world, second, responsible={"name": "Dr S", "user_id": world.id("surgeon")})
    clock.advance(timedelta(minutes=4))
    within = await surgeon.post(f"/api/cases/{second}/decision/sign", json={"seen_revision": revision})
    assert within.status_code == 201, within.text
    # ... but another session of the same physician has no window of its own.
    other = await sign_in(world.base_url, world.users["surgeon"][1], PASSWORD)
    try:
        elsewhere = await other.post(f"/api/cases/{first}/decision/amend",
                                     json={"reason": "r", "replaces": 1, "changes": {"comments": "Ailleurs."}})
        assert elsewhere.status_code == 403 and elsewhere.json()["error"] == "reauthentication_required"
    finally:
        await other.http.aclose()
    # Five minutes after the proof the window is closed: the next act asks again.
    clock.advance(timedelta(minutes=1, seconds=1))
    amend = {"reason": "EFR", "replaces": 1, "changes": {"comments": "EFR."}}
    late = await surgeon.post(f"/api/cases/{first}/decision/amend", json=amend)
    assert late.status_code == 403 and late.json()["error"] == "reauthentication_required"
    again = await surgeon.post(f"/api/cases/{first}/decision/amend",
                               json={**amend, **proof(world.users["surgeon"][1], PASSWORD)})
    assert again.status_code == 201, again.text


async def test_an_account_without_second_factor_never_signs(world: World, db: Database) -> None:
    """An administrator relaxed the second factor of an account (it never signs): the right password is not
    enough, with or without a code."""
    case_id = world.cases[0]
    await discuss_case(world, case_id)
    revision = await _fill(world, case_id, responsible={"name": "Dr S", "user_id": world.id("surgeon")})
    async with db.session() as s:
        row = await s.get(User, world.id("surgeon"))
        assert row is not None
        row.second_factor_required = False
        s.add(row)
    refused = await sign_decision(world, "surgeon", case_id, revision=revision)
    assert refused.status_code == 403 and refused.json()["error"] == "reauthentication_failed"
    assert await _versions(world, case_id) == []
    assert any("does not sign" in e.what for e in await _audit(db, world.id("surgeon"), case_id))


async def test_with_local_passwords_off_a_password_and_code_no_longer_sign(
        world: World, db: Database, settings: Settings) -> None:
    """RCP_LOCAL_PASSWORDS=off (issue 17): a password still stored on an account from before must not stand in for
    the identity provider's fresh login at a signature. The switch is flipped on the running service after the
    physicians signed in (the shared app reads its settings at each request), and put back afterwards."""
    first, _second = world.cases
    await discuss_case(world, first)
    revision = await _fill(world, first, responsible={"name": "Dr S", "user_id": world.id("surgeon")})
    object.__setattr__(settings, "local_passwords", False)
    try:
        refused = await sign_decision(world, "surgeon", first, revision=revision)
    finally:
        object.__setattr__(settings, "local_passwords", True)
    assert refused.status_code == 403 and "identity provider" in refused.json()["message"]
    assert await _versions(world, first) == []
    assert any("local passwords are switched off" in e.what for e in await _audit(db, world.id("surgeon"), first))
    # The same proof signs once passwords are allowed again: the refusal came from the switch alone.
    assert (await sign_decision(world, "surgeon", first, revision=revision)).status_code == 201
