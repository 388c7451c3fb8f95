"""The scheduling JSON API, route by route, including who may see what and what bad input gets."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from sqlmodel import col, select

from rcp.auth.models import AuditEvent
from rcp.config import Settings
from rcp.db import Database
from rcp.imaging.archive import open_archive
from rcp.imaging.synthetic import SyntheticPatient, ct_series, to_part10
from rcp.scheduling.models import Case, MeetingStatus, Patient
from tests.factories import MadeBoard, make_board, make_clinician, make_coordinator, make_meeting, make_user

Login = Any


def new_ins() -> str:
    """A valid INS of the form's patient: a woman born in the year and month the form gives (the NIR encodes
    sex, year and month of birth, and the service checks them)."""
    body = f"2700269{secrets.randbelow(10**6):06d}"
    return body + f"{97 - int(body) % 97:02d}"


def new_patient(**overrides: Any) -> dict[str, Any]:
    """A patient no one registered yet: names of its own, so the search before creating finds no look-alike."""
    patient = {"family_name": f"Test-Élodie-{secrets.token_hex(3)}", "given_names": f"Zoé{secrets.token_hex(3)}",
               "birth_date": "1970-02-03", "sex": "female",
               "identifiers": [{"system": "INS-NIR", "value": new_ins()},
                               {"system": "IPP", "value": f"T{secrets.token_hex(4)}", "assigner": "CHU de Lyon"}]}
    patient.update(overrides)
    return patient


async def new_meeting(client: Any, board_id: int, day: str = "2031-03-06") -> dict[str, Any]:
    response = await client.post("/api/meetings", json={"board_id": board_id, "starts_at": f"{day}T14:00"})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def board_and_coordinator(db: Database, login: Login) -> tuple[MadeBoard, Any]:
    """A board of the test's own, and its coordinator signed in."""
    board = await make_board(db)
    return board, await login(board.coordinator)


async def test_boards_list_and_one(login: Login, db: Database) -> None:
    board = await make_board(db)
    await make_board(db)  # someone else's
    coordinator = await login(board.coordinator)
    boards = (await coordinator.get("/api/boards")).json()
    assert [b["name"] for b in boards] == [board.name]  # a coordinator sees the boards they run
    one = await coordinator.get(f"/api/boards/{board.id}")
    assert one.status_code == 200 and one.json()["required_specialties"] == list(board.required_specialties)


async def test_create_board_validates_fields(login: Login, db: Database) -> None:
    coordinator = await login(await make_coordinator(db))
    bad = await coordinator.post("/api/boards", json={"name": "RCP uro", "required_specialties": ["wizard"],
                                                      "timezone": "Mars/Olympus", "type_code": "prostate"})
    assert bad.status_code == 422
    assert set(bad.json()["fields"]) == {"required_specialties", "timezone", "type_code"}
    assert "wizard" in bad.json()["fields"]["required_specialties"]
    assert "JDV_RCP_Appareil_CISIS" in bad.json()["fields"]["type_code"]
    untyped = await coordinator.post("/api/boards", json={"name": "RCP uro"})
    assert untyped.status_code == 422 and set(untyped.json()["fields"]) == {"type_code"}
    good = await coordinator.post("/api/boards", json={"name": "RCP urologie", "type_code": "122489005",
                                                       "required_specialties": ["surgeon"]})
    assert good.status_code == 201
    # The coordinator who created it runs it.
    meeting = await new_meeting(coordinator, good.json()["id"])
    assert meeting["board_name"] == "RCP urologie"


async def test_meeting_is_scheduled_in_the_boards_zone(login: Login, db: Database) -> None:
    board, coordinator = await board_and_coordinator(db, login)
    meeting = await new_meeting(coordinator, board.id, "2031-07-03")
    # 14:00 in Paris in summer is 12:00 UTC.
    assert meeting["starts_at"].startswith("2031-07-03T12:00:00")
    assert meeting["timezone"] == "Europe/Paris" and meeting["status"] == "scheduled"


async def test_meetings_lists_upcoming_and_past(login: Login, db: Database) -> None:
    thoracic = await make_board(db)
    digestive = await make_board(db, coordinator=thoracic.coordinator)
    now = datetime.now(UTC).replace(microsecond=0)
    soon = await make_meeting(db, board=thoracic, starts_at=now + timedelta(days=2), cases=0, invite=())
    later = await make_meeting(db, board=digestive, starts_at=now + timedelta(days=9), cases=0, invite=())
    closed = await make_meeting(db, board=thoracic, starts_at=now - timedelta(days=14), cases=0, invite=(),
                                status=MeetingStatus.closed)
    cancelled = await make_meeting(db, board=digestive, starts_at=now + timedelta(days=5), cases=0, invite=(),
                                   status=MeetingStatus.cancelled)
    coordinator = await login(thoracic.coordinator)
    upcoming = (await coordinator.get("/api/meetings?when=upcoming")).json()
    past = (await coordinator.get("/api/meetings?when=past")).json()
    assert [m["id"] for m in upcoming] == [soon.id, later.id]  # soonest first
    assert [m["id"] for m in past] == [cancelled.id, closed.id]  # latest first
    assert (await coordinator.get("/api/meetings?when=tomorrow")).status_code == 400
    only = (await coordinator.get(f"/api/meetings?board_id={digestive.id}")).json()
    assert [m["id"] for m in only] == [cancelled.id, later.id]  # all of them, by date


async def test_add_case_with_new_patient_then_existing_one(login: Login, db: Database) -> None:
    board, coordinator = await board_and_coordinator(db, login)
    meeting = await new_meeting(coordinator, board.id)
    patient = new_patient()
    created = await coordinator.post(f"/api/meetings/{meeting['id']}/cases",
                                     json={"patient": patient, "question": "Chirurgie ?",
                                           "referring_physician": "Dr Martin", "performance_status": 1})
    assert created.status_code == 201, created.text
    case = created.json()
    assert case["patient"]["family_name"] == patient["family_name"]
    assert case["readiness"] == {"ready": False, "missing": ["studies"]}
    again = await coordinator.post(f"/api/meetings/{meeting['id']}/cases",
                                   json={"patient_id": case["patient"]["id"], "question": "Second avis ?"})
    assert again.status_code == 201
    detail = (await coordinator.get(f"/api/meetings/{meeting['id']}")).json()
    assert [c["position"] for c in detail["cases"]] == [0, 1]


async def test_case_needs_exactly_one_way_to_name_the_patient(login: Login, db: Database) -> None:
    board, coordinator = await board_and_coordinator(db, login)
    meeting = await new_meeting(coordinator, board.id)
    neither = await coordinator.post(f"/api/meetings/{meeting['id']}/cases", json={"question": "?"})
    assert neither.status_code == 422 and "patient_id" in neither.json()["fields"]
    wrong_type = await coordinator.post(f"/api/meetings/{meeting['id']}/cases",
                                        json={"patient_id": "abc", "performance_status": 7})
    assert wrong_type.status_code == 422
    assert set(wrong_type.json()["fields"]) == {"patient_id", "performance_status"}


async def test_duplicate_identifier_is_409_and_nothing_half_saved(login: Login, db: Database) -> None:
    board, coordinator = await board_and_coordinator(db, login)
    meeting = await new_meeting(coordinator, board.id)
    patient = new_patient(family_name="Doublon")
    first = await coordinator.post(f"/api/meetings/{meeting['id']}/cases", json={"patient": patient})
    assert first.status_code == 201
    # Even confirmed as no look-alike (duplicates_checked), an identifier already registered is refused.
    second = await coordinator.post(f"/api/meetings/{meeting['id']}/cases",
                                    json={"patient": dict(patient, family_name="Doublon-Bis"),
                                          "duplicates_checked": True})
    assert second.status_code == 409
    assert "identifiers.0.value" in second.json()["fields"]
    async with db.session() as s:
        assert not (await s.exec(select(Patient).where(Patient.family_name == "Doublon-Bis"))).all()


async def test_bad_ins_key_is_refused(login: Login, db: Database) -> None:
    coordinator = await login(await make_coordinator(db))
    response = await coordinator.post("/api/patients", json=new_patient(
        identifiers=[{"system": "INS-NIR", "value": "255081416802539"}]))
    assert response.status_code == 422 and "identifiers.0" in response.json()["fields"]


async def test_ins_must_agree_with_sex_and_birth_date_and_typed_identity_is_at_most_validated(
        login: Login, db: Database) -> None:
    """The NIR encodes sex, year and month of birth (RNIV, issue 14); the service never qualifies an identity."""
    coordinator = await login(await make_coordinator(db))
    for overrides, word in (({"sex": "male"}, "sex"), ({"birth_date": "1971-02-03"}, "birth_date"),
                            ({"identity_status": "qualified"}, "identity_status"),
                            ({"identity_status": "validated"}, "identity_document")):
        response = await coordinator.post("/api/patients", json=new_patient(**overrides))
        assert response.status_code == 422, overrides
        assert word in str(response.json()["fields"]), response.text
    response = await coordinator.post("/api/patients", json=new_patient(
        identity_status="validated", identity_document="id_card", identity_attributes=["homonym"],
        used_name="Martin", birth_place_code="69123"))
    assert response.status_code == 201, response.text
    created = response.json()
    assert (created["identity_status"], created["identity_document"], created["identity_attributes"]) == (
        "validated", "id_card", ["homonym"])
    assert created["identity_status_by"] and created["identity_status_at"]
    ins = next(i for i in created["identifiers"] if i["system"] == "INS-NIR")
    assert ins["assigner_oid"] == "1.2.250.1.213.1.4.8"
    # RNIV EXI SI 09: a doubtful identity stays provisional.
    doubtful = await coordinator.post("/api/patients", json=new_patient(
        identity_status="validated", identity_document="id_card", identity_attributes=["doubtful"]))
    assert doubtful.status_code == 422 and "identity_status" in str(doubtful.json()["fields"]), doubtful.text


async def test_an_nia_is_recorded_as_an_nia(login: Login, db: Database) -> None:
    """The NIA has its own system (FR Core table 0203), whether named INS-NIA or given as an INS-NIR with the
    NIA's OID (.9); an INS-NIA with another OID is refused naming the field."""
    coordinator = await login(await make_coordinator(db))
    for ident in ({"system": "INS-NIA"}, {"system": "INS-NIR", "assigner_oid": "1.2.250.1.213.1.4.9"}):
        payload = new_patient()
        payload["identifiers"][0].update(ident)
        response = await coordinator.post("/api/patients", json=payload)
        assert response.status_code == 201, response.text
        (ins,) = [i for i in response.json()["identifiers"] if i["system"] != "IPP"]
        assert (ins["system"], ins["assigner_oid"]) == ("INS-NIA", "1.2.250.1.213.1.4.9")
    payload = new_patient()
    payload["identifiers"][0].update({"system": "INS-NIA", "assigner_oid": "1.2.250.1.213.1.4.8"})
    response = await coordinator.post("/api/patients", json=payload)
    assert response.status_code == 422 and "assigner_oid" in str(response.json()), response.text


async def test_invalid_json_and_wrong_content_type(login: Login, db: Database) -> None:
    coordinator = await login(await make_coordinator(db))
    broken = await coordinator.post("/api/meetings", content=b"{not json", headers={"content-type": "application/json"})
    assert broken.status_code == 400 and broken.json()["error"] == "bad_request"
    form = await coordinator.post("/api/meetings", content=b"a=b",
                                  headers={"content-type": "application/x-www-form-urlencoded"})
    assert form.status_code in {400, 403}
    array = await coordinator.post("/api/meetings", json=[1, 2])
    assert array.status_code == 400


async def test_oversized_body_is_413(login: Login, db: Database) -> None:
    board, coordinator = await board_and_coordinator(db, login)
    meeting = await new_meeting(coordinator, board.id)
    huge = {"patient_id": 1, "question": "x" * (2 * 1024 * 1024)}
    response = await coordinator.post(f"/api/meetings/{meeting['id']}/cases", json=huge)
    assert response.status_code == 413 and response.json()["error"] == "too_large"


async def test_oversized_body_without_content_length_is_413(login: Login, db: Database) -> None:
    coordinator = await login(await make_coordinator(db))

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(40):
            yield b"x" * 65536

    response = await coordinator.post("/api/meetings", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


async def test_reorder_agenda_and_unknown_case_refused(login: Login, db: Database) -> None:
    board, coordinator = await board_and_coordinator(db, login)
    meeting = await new_meeting(coordinator, board.id)
    ids = []
    for _ in range(3):
        r = await coordinator.post(f"/api/meetings/{meeting['id']}/cases", json={"patient": new_patient()})
        ids.append(r.json()["id"])
    done = await coordinator.put(f"/api/meetings/{meeting['id']}/agenda", json={"case_ids": ids[::-1]})
    assert done.status_code == 200 and [c["id"] for c in done.json()] == ids[::-1]
    detail = (await coordinator.get(f"/api/meetings/{meeting['id']}")).json()
    assert [c["id"] for c in detail["cases"]] == ids[::-1]
    bad = await coordinator.put(f"/api/meetings/{meeting['id']}/agenda", json={"case_ids": [ids[0], 999999, ids[2]]})
    assert bad.status_code == 422 and "999999" in bad.json()["fields"]["case_ids"]
    still = (await coordinator.get(f"/api/meetings/{meeting['id']}")).json()
    assert [c["id"] for c in still["cases"]] == ids[::-1]


async def test_update_case_and_readiness(login: Login, settings: Settings, db: Database) -> None:
    board, coordinator = await board_and_coordinator(db, login)
    meeting = await new_meeting(coordinator, board.id)
    patient = new_patient()
    case = (await coordinator.post(f"/api/meetings/{meeting['id']}/cases", json={"patient": patient})).json()
    assert case["status"] == "registered"
    # A study UID the archive does not hold for this patient is refused (issue 13: study_uids are checked).
    unknown = await coordinator.patch(f"/api/cases/{case['id']}", json={"study_uids": ["1.2.840.1.2.3"]})
    assert unknown.status_code == 422 and "study_uids" in unknown.json()["fields"]
    ipp = patient["identifiers"][1]
    ct = ct_series(SyntheticPatient(ipp["value"], ipp["assigner"], patient["family_name"], patient["given_names"],
                                    date.fromisoformat(patient["birth_date"]), "F"), slices=1, rows=16, columns=16)
    archive = open_archive(settings, database=db)
    try:
        await archive.store([to_part10(ds) for ds in ct])
    finally:
        await archive.close()
    updated = await coordinator.patch(f"/api/cases/{case['id']}", json={
        "question": "Radiothérapie ?", "referring_physician": "Dr Roux", "study_uids": [str(ct[0].StudyInstanceUID)]})
    assert updated.status_code == 200, updated.text
    assert updated.json()["readiness"]["ready"] and updated.json()["status"] == "ready"
    assert (await coordinator.patch(f"/api/cases/{case['id']}", json={"study_uids": ["not a uid"]})).status_code == 422


async def test_defer_moves_the_case_to_the_next_meeting_of_the_board(login: Login, db: Database) -> None:
    board, coordinator = await board_and_coordinator(db, login)
    meeting = await new_meeting(coordinator, board.id, "2032-01-06")
    case = (await coordinator.post(f"/api/meetings/{meeting['id']}/cases",
                                   json={"patient": new_patient(), "question": "Q?"})).json()
    moved = await coordinator.post(f"/api/cases/{case['id']}/defer")
    assert moved.status_code == 201
    target = moved.json()
    assert target["meeting_id"] != meeting["id"] and target["question"] == "Q?"
    old = (await coordinator.get(f"/api/cases/{case['id']}")).json()
    assert old["status"] == "deferred" and old["deferred_to_id"] == target["id"]
    next_meeting = (await coordinator.get(f"/api/meetings/{target['meeting_id']}")).json()
    assert next_meeting["board_id"] == board.id and next_meeting["starts_at"] > meeting["starts_at"]
    assert (await coordinator.post(f"/api/cases/{case['id']}/defer")).status_code == 409


async def test_withdraw_and_closed_meeting_refuses_changes(login: Login, db: Database) -> None:
    board, coordinator = await board_and_coordinator(db, login)
    meeting = await new_meeting(coordinator, board.id)
    case = (await coordinator.post(f"/api/meetings/{meeting['id']}/cases", json={"patient": new_patient()})).json()
    withdrawn = await coordinator.post(f"/api/cases/{case['id']}/withdraw")
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "withdrawn"
    assert (await coordinator.patch(f"/api/meetings/{meeting['id']}", json={"status": "live"})).status_code == 200
    assert (await coordinator.patch(f"/api/meetings/{meeting['id']}", json={"status": "closed"})).status_code == 200
    late = await coordinator.post(f"/api/meetings/{meeting['id']}/cases", json={"patient": new_patient()})
    assert late.status_code == 409 and late.json()["fields"]["meeting_id"] == "meeting is closed"
    reopen = await coordinator.patch(f"/api/meetings/{meeting['id']}", json={"status": "scheduled"})
    assert reopen.status_code == 409


async def test_invitations_responses_and_quorum_preview(login: Login, db: Database) -> None:
    board, coordinator = await board_and_coordinator(db, login)
    meeting = await new_meeting(coordinator, board.id, "2031-09-04")
    clinicians = [await make_clinician(db, key) for key in ("surgeon", "medical_oncologist", "radiologist")]
    people = (await coordinator.get("/api/users")).json()
    by_name = {p["display_name"]: p for p in people}
    surgeons = (await coordinator.get("/api/users?specialty=surgeon")).json()
    assert clinicians[0].id in {p["id"] for p in surgeons} and all(p["specialty"] == "surgeon" for p in surgeons)
    invited = {}
    for clinician in clinicians:
        r = await coordinator.post(f"/api/meetings/{meeting['id']}/invitations",
                                   json={"user_id": by_name[clinician.display_name]["id"]})
        assert r.status_code == 201
        invited[clinician.id] = r.json()
    dup = await coordinator.post(f"/api/meetings/{meeting['id']}/invitations", json={"user_id": clinicians[0].id})
    assert dup.status_code == 409
    # Each invitee answers for themselves.
    for clinician in clinicians:
        client = await login(clinician)
        r = await client.patch(f"/api/invitations/{invited[clinician.id]['id']}", json={"response": "accepted"})
        assert r.status_code == 200 and r.json()["response"] == "accepted"
    quorum = (await coordinator.get(f"/api/meetings/{meeting['id']}")).json()["quorum"]
    assert not quorum["met"] and quorum["missing"] == ["radiotherapist"]
    listed = (await coordinator.get(f"/api/meetings/{meeting['id']}/invitations")).json()
    assert len(listed) == 3
    removed = await coordinator.delete(f"/api/invitations/{invited[clinicians[2].id]['id']}")
    assert removed.status_code == 204


async def test_clinician_cannot_change_what_they_count_for(login: Login, db: Database) -> None:
    board, coordinator = await board_and_coordinator(db, login)
    meeting = await new_meeting(coordinator, board.id)
    pathologist = await make_clinician(db, "pathologist")
    inv = (await coordinator.post(f"/api/meetings/{meeting['id']}/invitations",
                                  json={"user_id": pathologist.id})).json()
    clinician = await login(pathologist)
    r = await clinician.patch(f"/api/invitations/{inv['id']}", json={"specialty": "surgeon"})
    assert r.status_code == 403


async def test_uninvited_clinician_gets_404_for_meeting_and_its_patients(login: Login, db: Database) -> None:
    board, coordinator = await board_and_coordinator(db, login)
    meeting = await new_meeting(coordinator, board.id)
    case = (await coordinator.post(f"/api/meetings/{meeting['id']}/cases", json={"patient": new_patient()})).json()
    gastroenterologist = await make_clinician(db, "gastroenterologist")
    outsider = await login(gastroenterologist)
    assert (await outsider.get(f"/api/meetings/{meeting['id']}")).status_code == 404
    assert (await outsider.get(f"/api/cases/{case['id']}")).status_code == 404
    assert (await outsider.get(f"/api/patients/{case['patient']['id']}")).status_code == 404
    assert (await outsider.get(f"/api/meetings/{meeting['id']}/invitations")).status_code == 404
    assert meeting["id"] not in {m["id"] for m in (await outsider.get("/api/meetings")).json()}
    found = (await outsider.post("/api/patients/search", json={"q": "Test"})).json()
    assert case["patient"]["id"] not in {p["id"] for p in found}
    # Once invited, the same clinician sees it, read-only.
    await coordinator.post(f"/api/meetings/{meeting['id']}/invitations", json={"user_id": gastroenterologist.id})
    assert (await outsider.get(f"/api/meetings/{meeting['id']}")).status_code == 200
    assert (await outsider.get(f"/api/patients/{case['patient']['id']}")).status_code == 200
    assert (await outsider.patch(f"/api/cases/{case['id']}", json={"question": "?"})).status_code == 403
    assert (await outsider.put(f"/api/meetings/{meeting['id']}/agenda", json={"case_ids": [case["id"]]})).status_code == 403


async def test_clinicians_do_not_schedule(login: Login, db: Database) -> None:
    meeting = await make_meeting(db, cases=0)
    clinician = await login(meeting.invitee("surgeon"))
    refused = await clinician.post("/api/meetings", json={"board_id": meeting.board.id, "starts_at": "2031-01-02T14:00"})
    assert refused.status_code == 403
    assert (await clinician.post("/api/patients", json=new_patient())).status_code == 403


async def test_patient_reads_are_audited(login: Login, db: Database) -> None:
    board, coordinator = await board_and_coordinator(db, login)
    meeting = await new_meeting(coordinator, board.id)
    case = (await coordinator.post(f"/api/meetings/{meeting['id']}/cases", json={"patient": new_patient()})).json()
    patient_id = case["patient"]["id"]
    radiologist = await make_clinician(db, "radiologist")
    reader = await login(radiologist)
    assert (await reader.get(f"/api/patients/{patient_id}")).status_code == 404  # not invited: refused, ...
    await coordinator.post(f"/api/meetings/{meeting['id']}/invitations", json={"user_id": radiologist.id})
    assert (await reader.get(f"/api/patients/{patient_id}")).status_code == 200
    assert (await reader.get(f"/api/cases/{case['id']}")).status_code == 200
    async with db.session() as s:
        events = (await s.exec(select(AuditEvent).where(AuditEvent.patient_id == patient_id,
                                                        AuditEvent.user_id == reader.me["id"]))).all()
    # The refused read (before the invitation) is a security alert; the reads after it are patient-record reads.
    assert {(e.event_code, e.action) for e in events} == {("110110", "R"), ("110113", "E")}
    assert len(events) >= 2 and all(e.source == "127.0.0.1" for e in events)
    # ... and the audit trail itself never holds the patient's name.
    assert not any("Test-Élodie" in e.what for e in events)


async def test_audit_export_is_admin_only_syslog(login: Login, db: Database) -> None:
    assert (await (await login(await make_coordinator(db))).get("/api/audit")).status_code == 403
    admin = await login(await make_user(db, role="admin"))
    response = await admin.get("/api/audit?limit=50")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    lines = response.text.strip().splitlines()
    # RFC 5424: <PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG, facility 13 (log audit).
    assert lines and all(re.match(r"^<10[4-9]>1 \d{4}-\d\d-\d\dT[\d:.]+Z \S+ rcp - \d{6} \[atna@32473 ", line)
                         for line in lines)
    assert any("110114" in line for line in lines)


async def test_openapi_describes_every_api_route(anonymous: httpx.AsyncClient, live_server: Any) -> None:
    from rcp.openapi import ApiRoute

    doc = (await anonymous.get("/api/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    from starlette.routing import Route

    app_routes = live_server.server.config.app.routes
    api_routes = [r for r in app_routes if isinstance(r, Route) and r.path.startswith("/api/")
                  and r.path != "/api/openapi.json"]
    for route in api_routes:
        assert isinstance(route, ApiRoute), f"{route.path} is not described in the OpenAPI document"
        path = route.path.replace(":int", "")
        for method in route.methods or ():
            if method != "HEAD":
                assert method.lower() in doc["paths"][path], f"{method} {path} missing"
    assert "MeetingDetail" in doc["components"]["schemas"]


async def test_errors_never_carry_stack_traces_or_patient_data(login: Login, db: Database) -> None:
    board, coordinator = await board_and_coordinator(db, login)
    meeting = await new_meeting(coordinator, board.id)
    patient = new_patient(family_name="Secret-Nom")
    await coordinator.post(f"/api/meetings/{meeting['id']}/cases", json={"patient": patient})
    clash = await coordinator.post(f"/api/meetings/{meeting['id']}/cases", json={"patient": patient})
    text = clash.text
    assert "Secret-Nom" not in text and patient["identifiers"][0]["value"] not in text and "Traceback" not in text
    async with db.session() as s:
        assert (await s.exec(select(Case).where(col(Case.meeting_id) == meeting["id"]))).all()


async def test_likely_duplicates_before_creating(login: Login, db: Database) -> None:
    """Search before creating (RNIV): same birth date and birth name (accents and case aside), or an identifier."""
    coordinator = await login(await make_coordinator(db))
    family = f"Lefèvre-{secrets.token_hex(3)}"
    created = await coordinator.post("/api/patients", json=new_patient(family_name=family))
    assert created.status_code == 201, created.text
    found = await coordinator.post("/api/patients/duplicates", json={
        "family_name": family.upper().replace("È", "E"), "birth_date": "1970-02-03"})
    assert found.status_code == 200 and [p["id"] for p in found.json()] == [created.json()["id"]]
    other_day = await coordinator.post("/api/patients/duplicates", json={"family_name": family,
                                                                          "birth_date": "1970-02-04"})
    assert other_day.json() == []
    ipp = next(i["value"] for i in created.json()["identifiers"] if i["system"] == "IPP")
    by_id = await coordinator.post("/api/patients/duplicates", json={"family_name": "X", "identifiers": [ipp]})
    assert [p["id"] for p in by_id.json()] == [created.json()["id"]]
    # A married name typed as the birth name, the same first given name and birth date: found, whether the sex
    # was typed or left unknown (unknown is no contradiction).
    given = f"Zoé{secrets.token_hex(2)}"
    twin = await coordinator.post("/api/patients", json=new_patient(family_name=f"{family}-b", given_names=given))
    for sex in ("female", "unknown"):
        married = await coordinator.post("/api/patients/duplicates", json={
            "family_name": "Martin", "given_names": f"{given} Marie", "birth_date": "1970-02-03", "sex": sex})
        assert twin.json()["id"] in [p["id"] for p in married.json()], sex


async def test_new_boards_have_a_type_and_the_inca_specialties_by_default(login: Login, db: Database) -> None:
    coordinator = await login(await make_coordinator(db))
    thorax = await coordinator.post("/api/boards", json={"name": "RCP thorax", "type_code": "312419003"})
    assert thorax.status_code == 201, thorax.text
    body = thorax.json()
    assert (body["type_code"], body["nature"]) == ("312419003", "organ")
    assert body["required_specialties"] == ["surgeon", "medical_oncologist", "radiotherapist"]
    genetics = await coordinator.post("/api/boards", json={"name": "RCP oncogénétique", "type_code": "ORG-129"})
    assert genetics.json()["required_specialties"] == [] and genetics.json()["nature"] == "transversal"


async def test_the_coordinator_edits_the_charter_and_it_is_audited(login: Login, db: Database) -> None:
    board = await make_board(db)
    coordinator = await login(board.coordinator)
    changed = await coordinator.patch(f"/api/boards/{board.id}", json={
        "type_code": "57171008", "required_specialties": ["medical_oncologist", "pathologist"]})
    assert changed.status_code == 200, changed.text
    assert changed.json()["type_display"] == "structure du système hématopoïétique"
    assert changed.json()["required_specialties"] == ["medical_oncologist", "pathologist"]
    for body, field in (({"type_code": "lung"}, "type_code"), ({"required_specialties": ["wizard"]},
                                                                  "required_specialties"),
                        ({"required_specialties": ["surgeon", "surgeon"]}, "required_specialties"),
                        ({"required_specialties": ["nurse_coordinator"]}, "required_specialties"),
                        ({"minimum_specialties": 0}, "minimum_specialties"), ({"type_code": None}, "type_code")):
        refused = await coordinator.patch(f"/api/boards/{board.id}", json=body)
        assert refused.status_code == 422 and list(refused.json()["fields"]) == [field], (body, refused.text)
    unchanged = (await coordinator.get(f"/api/boards/{board.id}")).json()
    assert unchanged["required_specialties"] == ["medical_oncologist", "pathologist"]  # nothing saved half-way
    async with db.session() as s:
        trail = (await s.exec(select(AuditEvent.what).where(
            col(AuditEvent.what).startswith(f"board {board.id} charter:")))).all()
    assert trail == [(f"board {board.id} charter: type_code=57171008; "
                      "required_specialties=medical_oncologist,pathologist")]
    # Another board's coordinator does not see this board.
    other = await login(await make_coordinator(db))
    assert (await other.patch(f"/api/boards/{board.id}", json={"minimum_specialties": 2})).status_code == 404
