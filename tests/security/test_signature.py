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
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import httpx
import pypdf
import pytest
from sqlmodel import col, select

from rcp.auth.links import token_digest
from rcp.auth.models import AuditEvent, Role, User
from rcp.auth.passwords import hash_password
from rcp.clock import SettableClock, utcnow
from rcp.db import Database
from rcp.scheduling.models import (
    Board,
    BoardCoordinator,
    Case,
    Invitation,
    JoinLink,
    Meeting,
    Patient,
    PatientIdentifier,
)
from tests.conftest import Client, sign_in
from tests.factories import CHEAP_ARGON2
from tests.room.client import RoomClient

PASSWORD = "signature-attack-2026"
#: A demo physician's name, typed into the fiche by someone else.
ROUSSEAU = "Dr Amélie Rousseau"
PHYSICIANS = ("surgeon", "medical_oncologist", "radiotherapist", "pathologist")


@dataclass
class World:
    """One board's meeting with its own accounts: the coordinator (a secretary) and four invited physicians."""

    base_url: str
    meeting_id: int
    cases: list[int]
    users: dict[str, tuple[int, str]]  # key -> (user id, username)
    clients: dict[str, Client] = field(default_factory=dict)
    rooms: dict[str, RoomClient] = field(default_factory=dict)

    def id(self, key: str) -> int:
        return self.users[key][0]

    async def client(self, key: str) -> Client:
        if key not in self.clients:
            self.clients[key] = await sign_in(self.base_url, self.users[key][1], PASSWORD)
        return self.clients[key]

    async def enter(self, key: str) -> RoomClient:
        client = await self.client(key)
        cookie = f"rcp_session={client.http.cookies['rcp_session']}"
        room = await RoomClient.open(self.base_url, cookie, self.meeting_id)
        assert room.welcome, f"{key} could not enter the room: {room.errors}"
        self.rooms[key] = room
        return room

    async def leave(self, key: str) -> None:
        await self.rooms.pop(key).close()

    async def open_case(self, case_id: int) -> None:
        """The chair opens a case on the agenda; wait until the room has it."""
        chair = self.rooms["coordinator"]
        await chair.send({"type": "case.set", "case_id": case_id})
        # The bound only stops a hang (a loaded machine runs the whole suite on two cores).
        await chair.wait_for(lambda r: bool(r.errors) or any(e["case_id"] == case_id for e in r.of("case.changed")),
                             timeout=60)
        assert not chair.errors, chair.errors

    async def close(self) -> None:
        for room in self.rooms.values():
            await room.close()
        for client in self.clients.values():
            await client.http.aclose()


async def _world(db: Database, base_url: str, *, cases: int = 1) -> World:
    tag = secrets.token_hex(4)
    digest = hash_password(PASSWORD, CHEAP_ARGON2)
    async with db.session() as s:
        users: dict[str, User] = {
            "coordinator": User(username=f"sec-{tag}", display_name=f"Sophie Secrétaire {tag}", role=Role.coordinator,
                                specialty="secretary", password_hash=digest),
        }
        for key in PHYSICIANS:
            users[key] = User(username=f"{key}-{tag}", display_name=f"Dr {key.title()} {tag}", role=Role.clinician,
                              specialty=key, password_hash=digest)
        s.add_all(users.values())
        board = Board(name=f"RCP attaque {tag}", tumour_site="thoracic",
                      required_specialties=["surgeon", "medical_oncologist", "radiotherapist"])
        s.add(board)
        await s.flush()
        assert board.id is not None
        s.add(BoardCoordinator(board_id=board.id, user_id=users["coordinator"].id or 0))
        meeting = Meeting(board_id=board.id, title=f"RCP attaque {tag}", starts_at=utcnow())
        s.add(meeting)
        await s.flush()
        assert meeting.id is not None
        for key, user in users.items():
            s.add(Invitation(meeting_id=meeting.id, user_id=user.id or 0, specialty=user.specialty,
                             quorum_member=key != "coordinator"))
        case_ids = []
        for i in range(cases):
            patient = Patient(family_name=f"Attaque{tag}", given_names=f"Patient{i}", birth_date=date(1960, 1, 1),
                              sex="female")
            s.add(patient)
            await s.flush()
            assert patient.id is not None
            s.add(PatientIdentifier(patient_id=patient.id, system="IPP", value=f"SIG-{tag}-{i}", assigner="CHU"))
            case = Case(meeting_id=meeting.id, patient_id=patient.id, position=i, question="Opérable ?",
                        clinical_summary="Nodule pulmonaire.")
            s.add(case)
            await s.flush()
            assert case.id is not None
            case_ids.append(case.id)
        return World(base_url, meeting.id, case_ids, {k: (u.id or 0, u.username) for k, u in users.items()})


@pytest.fixture
async def world(db: Database, live_server: Any) -> AsyncIterator[World]:
    found = await _world(db, live_server.url, cases=2)
    try:
        yield found
    finally:
        await found.close()


async def _fill(world: World, case_id: int, *, editor: str = "surgeon", responsible: dict[str, Any]) -> int:
    """Write a complete decision as ``editor``; the draft revision the signer then reads."""
    client = await world.client(editor)
    for name, value in {
        "proposal": {"type": "surgery", "details": "Lobectomie supérieure droite."},
        "guideline": {"conforms": True},
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


async def _discuss(world: World, case_id: int, who: tuple[str, ...] = PHYSICIANS[:3]) -> None:
    """The chair and ``who`` in the room while the chair opens ``case_id``."""
    await world.enter("coordinator")
    for key in who:
        await world.enter(key)
    await world.open_case(case_id)


async def _sign(world: World, key: str, case_id: int, password: str = PASSWORD, revision: int | None = None) -> Any:
    client = await world.client(key)
    if revision is None:
        revision = (await client.get(f"/api/cases/{case_id}/decision")).json()["draft"]["revision"]
    return await client.post(f"/api/cases/{case_id}/decision/sign",
                             json={"password": password, "seen_revision": revision})


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
    await _discuss(world, case_id)
    revision = await _fill(world, case_id, editor="coordinator",
                           responsible={"name": ROUSSEAU, "user_id": world.id("coordinator")})
    refused = await _sign(world, "coordinator", case_id, revision=revision)
    assert refused.status_code == 403, refused.text
    assert await _versions(world, case_id) == []


async def test_the_fiche_names_the_account_that_signed_never_the_typed_name(world: World) -> None:
    """A present physician signs; the responsible physician typed on the fiche is someone else. The signed
    version, the fiche page and its PDF name the signer's account."""
    case_id = world.cases[0]
    await _discuss(world, case_id)
    revision = await _fill(world, case_id, responsible={"name": ROUSSEAU, "user_id": world.id("medical_oncologist")})
    signed = await _sign(world, "surgeon", case_id, revision=revision)
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
    await _discuss(world, first)
    revision = await _fill(world, first, responsible={"name": "Dr Pathologist", "user_id": world.id("pathologist")})
    await world.open_case(second)
    await world.enter("pathologist")
    late = await _sign(world, "pathologist", first, revision=revision)
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
    after = await _sign(world, "radiotherapist", first, revision=edited.json()["revision"])
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
        guest = User(username=f"guest-{token[:8]}", display_name="Dr Invitée Externe", role=Role.guest,
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
        await _discuss(world, case_id, who=("medical_oncologist", "radiotherapist"))
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
    await _discuss(world, case_id)
    revision = await _fill(world, case_id, responsible={"name": "Dr S", "user_id": world.id("surgeon")})
    assert (await _sign(world, "surgeon", case_id, revision=revision)).status_code == 201

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
        json={"password": PASSWORD, "reason": "coquille", "replaces": 1, "changes": {"comments": "Par la secrétaire."}})
    assert not_a_physician.status_code == 403, not_a_physician.text
    amended = await client.post(
        f"/api/cases/{case_id}/decision/amend",
        json={"password": PASSWORD, "reason": "EFR à ajouter", "replaces": 1, "changes": {"comments": "EFR."}})
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
    await _discuss(world, first)
    revision = await _fill(world, first, responsible={"name": "Dr S", "user_id": world.id("surgeon")})
    await world.open_case(second)
    await world.enter("pathologist")
    wrong = await _sign(world, "pathologist", first, "not-the-password", revision=revision)
    right = await _sign(world, "pathologist", first, PASSWORD, revision=revision)
    assert (wrong.status_code, wrong.json()) == (right.status_code, right.json())


async def test_wrong_passwords_are_throttled_with_growing_delays_and_audited(world: World, db: Database,
                                                                             clock: SettableClock) -> None:
    case_id = world.cases[0]
    await _discuss(world, case_id)
    revision = await _fill(world, case_id, responsible={"name": "Dr S", "user_id": world.id("surgeon")})
    answers = [await _sign(world, "surgeon", case_id, f"guess-{i}", revision=revision) for i in range(8)]
    statuses = [a.status_code for a in answers]
    assert 429 in statuses, statuses
    throttled = [a for a in answers if a.status_code == 429]
    assert all(int(a.headers["Retry-After"]) >= 1 for a in throttled)
    # While throttled even the right password is not checked (so guessing in a burst gains nothing).
    blocked = await _sign(world, "surgeon", case_id, PASSWORD, revision=revision)
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
    again = await _sign(world, "surgeon", case_id, "guess-again", revision=revision)
    assert again.status_code == 403
    longer = await _sign(world, "surgeon", case_id, PASSWORD, revision=revision)
    assert longer.status_code == 429 and int(longer.headers["Retry-After"]) > first_wait


async def test_parallel_guesses_do_not_slip_past_the_throttle(world: World) -> None:
    case_id = world.cases[0]
    await _discuss(world, case_id)
    revision = await _fill(world, case_id, responsible={"name": "Dr S", "user_id": world.id("surgeon")})
    answers = await asyncio.gather(*(_sign(world, "surgeon", case_id, f"burst-{i}", revision=revision)
                                     for i in range(12)))
    checked = [a for a in answers if a.status_code == 403]
    assert len(checked) <= 3, [a.status_code for a in answers]
