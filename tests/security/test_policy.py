"""Attacks on the access policy (issue 13, findings 2, 6, 9 and 12), black-box over HTTP against the served app.

Each test is what a curious insider would try with an account of their own: a coordinator of another board, a
join-link session, an invited clinician. Users and boards are made per test with unique names, so the tests do not
depend on each other or on their order.
"""

from __future__ import annotations

import secrets
from typing import Any

import httpx
from sqlmodel import col, select

from rcp.auth.models import AuditEvent, LoginSession, Role, User
from rcp.auth.passwords import hash_password
from rcp.auth.sessions import COOKIE_NAME, cookie_signer
from rcp.clock import utcnow
from rcp.config import Settings
from rcp.db import Database
from rcp.scheduling.models import Case, MeetingStatus
from tests.conftest import DEMO_PASSWORD, Client
from tests.factories import (
    CHEAP_ARGON2,
    HOSPITAL,
    MadeCase,
    MadeMeeting,
    give_second_factor,
    make_invitation,
    make_meeting,
)
from tests.fixtures.dicom_data import make_patient, small_ct
from tests.servers import ServerThread

Login = Any

SECURITY_ALERT = "110113"
PATIENT_RECORD = "110110"
INSTANCES_ACCESSED = "110103"


async def new_user(db: Database, role: str = Role.coordinator, specialty: str = "") -> str:
    """A fresh account with the demo password; its user name is returned."""
    username = f"t13-{role}-{secrets.token_hex(4)}"
    async with db.session() as s:
        row = User(username=username, family_name=username, given_name="Test", role=role, specialty=specialty,
                   hospital="CHU-TEST", password_hash=hash_password(DEMO_PASSWORD, CHEAP_ARGON2))
        s.add(row)
        await s.flush()
        await give_second_factor(s, row.id or 0, username, DEMO_PASSWORD)
    return username


async def own_board_meeting(client: Client) -> tuple[int, int]:
    """A coordinator's own new board with one scheduled meeting: (board id, meeting id)."""
    board = await client.post("/api/boards", json={"name": f"RCP test {secrets.token_hex(3)}",
                                                   "type_code": "312419003", "required_specialties": ["surgeon"]})
    assert board.status_code == 201, board.text
    meeting = await client.post("/api/meetings", json={"board_id": board.json()["id"],
                                                       "starts_at": "2031-05-06T14:00"})
    assert meeting.status_code == 201, meeting.text
    return int(board.json()["id"]), int(meeting.json()["id"])


async def board_case(db: Database, status: str = MeetingStatus.scheduled) -> tuple[MadeMeeting, MadeCase]:
    """A meeting of a board of its own (its coordinator, invited clinicians) and its one case."""
    made = await make_meeting(db, status=status, cases=1)
    return made, made.cases[0]


async def alerts_of(db: Database, user_id: int) -> list[AuditEvent]:
    async with db.session() as s:
        return list((await s.exec(select(AuditEvent).where(AuditEvent.user_id == user_id,
                                                           AuditEvent.event_code == SECURITY_ALERT))).all())


async def join_session(db: Database, settings: Settings, live_server: ServerThread, username: str,
                       meeting_id: int) -> Client:
    """What a join link opens: a session of ``username`` confined to ``meeting_id`` (made directly, so the test
    does not depend on how links are delivered)."""
    async with db.session() as s:
        user = (await s.exec(select(User).where(User.username == username))).one()
        assert user.id is not None
        row = LoginSession(id=secrets.token_urlsafe(32), user_id=user.id, csrf_token=secrets.token_urlsafe(32),
                           created_at=utcnow(), last_seen_at=utcnow(), meeting_scope=meeting_id)
        s.add(row)
    http = httpx.AsyncClient(base_url=live_server.url, timeout=30,
                             cookies={COOKIE_NAME: cookie_signer(settings).dumps(row.id)})
    me = (await http.get("/api/session")).json()
    return Client(http=http, csrf=row.csrf_token, me=me)


# --- finding 2: a coordinator of any board reaches every patient -----------------------------------------------


async def test_coordinator_of_another_board_cannot_put_any_patient_on_their_agenda(login: Login, db: Database) -> None:
    other = await login(await new_user(db))
    _board, meeting_id = await own_board_meeting(other)
    _made, case = await board_case(db)
    victim = case.patient
    added = await other.post(f"/api/meetings/{meeting_id}/cases", json={"patient_id": victim.id, "question": "?"})
    assert victim.family_name not in added.text and victim.ipp not in added.text
    assert added.status_code == 422, added.text  # the same answer as for an id that does not exist
    unknown = await other.post(f"/api/meetings/{meeting_id}/cases", json={"patient_id": 10**8, "question": "?"})
    assert unknown.status_code == 422 and unknown.json()["fields"] == added.json()["fields"]


async def test_patient_search_needs_the_identifier_with_its_authority_and_is_audited(login: Login,
                                                                                      db: Database) -> None:
    other = await login(await new_user(db))
    _made, case = await board_case(db)
    victim = case.patient
    # A bare IPP matches that value at every hospital: it is a search among the caller's own patients only.
    bare = await other.post("/api/patients/search", json={"identifier": victim.ipp})
    assert bare.status_code == 200 and bare.json() == []
    by_name = await other.post("/api/patients/search", json={"q": victim.family_name[:3]})
    assert victim.id not in {p["id"] for p in by_name.json()}
    # With its assigning authority, the exact identifier finds the registered patient (to avoid a duplicate)...
    exact = await other.post("/api/patients/search", json={"identifier": victim.ipp, "assigner": HOSPITAL})
    assert exact.status_code == 200 and [p["id"] for p in exact.json()] == [victim.id]
    # ... and that look-up is in the audit trail, naming the patient.
    async with db.session() as s:
        reads = (await s.exec(select(AuditEvent).where(AuditEvent.user_id == other.me["id"],
                                                       AuditEvent.patient_id == victim.id))).all()
    assert [(e.event_code, e.action) for e in reads] == [(PATIENT_RECORD, "R")]
    assert victim.family_name not in reads[0].what
    # The INS is national: it finds the patient by itself. The patient found may then go on the finder's agenda.
    by_ins = await other.post("/api/patients/search", json={"identifier": victim.ins})
    assert [p["id"] for p in by_ins.json()] == [victim.id]
    _board, meeting_id = await own_board_meeting(other)
    added = await other.post(f"/api/meetings/{meeting_id}/cases", json={"patient_id": victim.id, "question": "?"})
    assert added.status_code == 201, added.text


# --- finding 6: a join-link session is confined to its meeting ---------------------------------------------------


async def test_join_link_session_of_a_coordinator_does_only_the_guest_s_part(
        login: Login, db: Database, settings: Settings, live_server: ServerThread) -> None:
    made, case = await board_case(db)
    other = await make_meeting(db, board=made.board, cases=1)  # the same coordinator's other meeting: out of reach
    _other_case = other.cases[0]
    guest = await join_session(db, settings, live_server, made.coordinator.username, case.meeting_id)
    try:
        assert (await guest.get(f"/api/meetings/{case.meeting_id}")).status_code == 200
        board = await guest.post("/api/boards", json={"name": f"RCP pirate {secrets.token_hex(3)}"})
        assert board.status_code == 403, board.text
        meeting = await guest.post("/api/meetings", json={"board_id": made.board.id, "starts_at": "2031-05-06T14:00"})
        assert meeting.status_code == 403, meeting.text
        assert (await guest.get(f"/api/meetings/{other.id}")).status_code == 404
        found = await guest.post("/api/patients/search", json={"identifier": _other_case.patient.ipp, "assigner": HOSPITAL})
        assert found.status_code == 403 or found.json() == []
        patient = await guest.post("/api/patients", json={"family_name": "Pirate", "identifiers": []})
        assert patient.status_code == 403
        assert (await guest.get("/api/users")).status_code == 403
        assert (await guest.get("/api/audit")).status_code == 403
        # Its own meeting: it reads, it does not manage.
        renamed = await guest.patch(f"/api/meetings/{case.meeting_id}", json={"title": "pirate"})
        assert renamed.status_code == 403
    finally:
        await guest.http.aclose()


# --- finding 9: only the board's coordinators change a case's studies, not once the meeting is closed --------------


async def test_invited_clinician_cannot_attach_detach_or_import(login: Login, db: Database) -> None:
    made, case = await board_case(db)
    clinician = await login(made.invitee("radiologist"))
    assert (await clinician.get(f"/api/cases/{case.id}")).status_code == 200
    detach = await clinician.post(f"/api/cases/{case.id}/studies", json={"detach": ["1.2.3"]})
    assert detach.status_code == 403, detach.text
    attach = await clinician.post(f"/api/cases/{case.id}/studies", json={"study_uids": []})
    assert attach.status_code == 403, attach.text
    upload = await clinician.post(f"/api/cases/{case.id}/imports",
                                  files=[("files", ("a.dcm", b"DICM" * 10, "application/dicom"))])
    assert upload.status_code == 403, upload.text


async def test_studies_of_a_closed_meeting_do_not_change(login: Login, db: Database) -> None:
    made, case = await board_case(db, status=MeetingStatus.closed)
    coordinator = await login(made.coordinator)
    detach = await coordinator.post(f"/api/cases/{case.id}/studies", json={"detach": ["1.2.3"]})
    assert detach.status_code == 409, detach.text
    upload = await coordinator.post(f"/api/cases/{case.id}/imports",
                                    files=[("files", ("a.dcm", b"DICM" * 10, "application/dicom"))])
    assert upload.status_code == 409, upload.text


# --- finding 12: refusals recorded, every read of patient data names the patient -----------------------------------


async def test_refused_accesses_are_security_alerts_without_patient_data(login: Login, db: Database) -> None:
    made, case = await board_case(db)
    outsider = await login(await new_user(db, Role.clinician, "surgeon"))
    assert (await outsider.get(f"/api/cases/{case.id}")).status_code == 404
    assert (await outsider.get(f"/cases/{case.id}/fiche")).status_code == 404
    member = await login(made.invitee("radiologist"))  # a clinician: creates no board
    assert (await member.post("/api/boards", json={"name": "x"})).status_code == 403
    alerts = await alerts_of(db, outsider.me["id"])
    assert len(alerts) >= 2 and all(a.outcome != 0 for a in alerts)
    assert any(f"case {case.id}" in a.what for a in alerts)
    for alert in alerts:
        assert case.patient.family_name not in alert.what and case.patient.ipp not in alert.what
    assert await alerts_of(db, member.me["id"])


async def test_minutes_name_each_patient_read(login: Login, db: Database) -> None:
    made, case = await board_case(db, status=MeetingStatus.closed)
    reader = await login(made.invitee("radiologist"))
    assert (await reader.get(f"/meetings/{case.meeting_id}/minutes")).status_code == 200
    async with db.session() as s:
        cases = (await s.exec(select(Case).where(Case.meeting_id == case.meeting_id))).all()
        events = (await s.exec(select(AuditEvent).where(AuditEvent.user_id == reader.me["id"],
                                                        AuditEvent.meeting_id == case.meeting_id))).all()
    assert {c.patient_id for c in cases} <= {e.patient_id for e in events if e.event_code == PATIENT_RECORD}


async def test_series_list_and_frame_reads_name_the_patient(login: Login, db: Database) -> None:
    coordinator = await login(await new_user(db))
    _board, meeting_id = await own_board_meeting(coordinator)
    pacs = make_patient()
    added = await coordinator.post(f"/api/meetings/{meeting_id}/cases", json={
        "question": "?", "patient": {"family_name": "Lefèvre", "given_names": "Hélène-Françoise",
                                     "birth_date": "1961-04-05", "sex": "female",
                                     "identifiers": [{"system": "IPP", "value": pacs.patient_id,
                                                      "assigner": pacs.issuer}]}})
    assert added.status_code == 201, added.text
    case_id, patient_id = added.json()["id"], added.json()["patient"]["id"]
    files = small_ct(pacs, slices=2, size=16)
    imported = await coordinator.post(f"/api/cases/{case_id}/imports",
                                      files=[("files", (f"{i}.dcm", f, "application/dicom"))
                                             for i, f in enumerate(files)])
    assert imported.status_code == 200, imported.text
    study_uid = (await coordinator.get(f"/api/cases/{case_id}")).json()["study_uids"][0]
    reader = await login(await new_user(db, Role.clinician, "radiologist"))
    people = await coordinator.post(f"/api/meetings/{meeting_id}/invitations", json={"user_id": reader.me["id"]})
    assert people.status_code == 201, people.text
    series = await reader.get(f"/api/imaging/studies/{study_uid}/series")
    assert series.status_code == 200, series.text
    first = series.json()[0]
    descriptor = (await reader.get(first["url"])).json()
    frame_url = descriptor["frames"][0]["url"] if "frames" in descriptor else None
    if frame_url is None:
        sop = descriptor["instances"][0]["sop_uid"]
        frame_url = f"/api/imaging/frames/{study_uid}/{first['series_uid']}/{sop}/1"
    assert (await reader.get(frame_url)).status_code == 200
    # Another participant goes straight to a frame (no series list, no descriptor first).
    direct = await login(await new_user(db, Role.clinician, "surgeon"))
    invited = await coordinator.post(f"/api/meetings/{meeting_id}/invitations", json={"user_id": direct.me["id"]})
    assert invited.status_code == 201, invited.text
    assert (await direct.get(frame_url)).status_code == 200
    async with db.session() as s:
        events = (await s.exec(select(AuditEvent).where(
            col(AuditEvent.user_id).in_([reader.me["id"], direct.me["id"]]),
            AuditEvent.event_code == INSTANCES_ACCESSED))).all()
    assert events and all(e.patient_id == patient_id for e in events), [(e.what, e.patient_id) for e in events]
    assert any("series list" in e.what for e in events if e.user_id == reader.me["id"]), [e.what for e in events]
    assert any("frame" in e.what for e in events if e.user_id == direct.me["id"]), [e.what for e in events]


async def test_a_join_link_session_does_not_inherit_its_account_s_image_grants(
        login: Login, db: Database, settings: Settings, live_server: ServerThread) -> None:
    """The frame route remembers a granted study for a minute; that grant is the session's, not the person's."""
    from rcp.imaging.archive import open_archive
    from rcp.imaging.synthetic import SyntheticPatient, ct_series, to_part10

    linked, _case = await board_case(db)
    elsewhere, case = await board_case(db)
    person = linked.invitee("radiologist")
    await make_invitation(db, elsewhere.id, person)
    archive = open_archive(settings, database=db)
    try:
        pacs = SyntheticPatient(case.patient.ipp, HOSPITAL, "Grant", "Zoé", None, "F")
        await archive.store([to_part10(ds) for ds in ct_series(pacs, slices=1, rows=16, columns=16)])
        study = (await archive.search_studies(patient_id=case.patient.ipp))[0].study_uid
        series = (await archive.list_series(study))[0].series_uid
        sop = (await archive.list_instances(study, series))[0].sop_uid
    finally:
        await archive.close()
    async with db.session() as s:
        row = await s.get(Case, case.id)
        assert row is not None
        row.study_uids = [study]
        s.add(row)
    frame = f"/api/imaging/frames/{study}/{series}/{sop}/1"
    own = await login(person)
    assert (await own.get(frame)).status_code == 200  # granted to the person's own sign-in
    guest = await join_session(db, settings, live_server, person.username, linked.id)
    try:
        assert (await guest.get(frame)).status_code == 404
    finally:
        await guest.http.aclose()
