"""The coordinator's pages against the real app: forms, CSRF, errors next to fields, read-only clinicians."""

from __future__ import annotations

import html
import re
import secrets
from typing import Any

import httpx

from rcp.db import Database
from tests.factories import MadeBoard, make_board, make_clinician, make_meeting

Login = Any


def new_ins() -> str:
    """A valid INS of the form's patient: a woman born in the year and month the form gives (the NIR encodes
    sex, year and month of birth, and the service checks them)."""
    body = f"2610569{secrets.randbelow(10**6):06d}"
    return body + f"{97 - int(body) % 97:02d}"


def field_error(page: str, name: str) -> str | None:
    """The message shown next to field ``name``, or None when its error line is hidden."""
    match = re.search(rf'id="e-{re.escape(name)}"\s*(hidden)?\s*>(.*?)</p>', page, re.DOTALL)
    assert match is not None, f"no error slot for {name}"
    return None if match.group(1) else html.unescape(match.group(2).strip())


def input_value(page: str, name: str) -> str:
    match = re.search(rf'<input id="f-{re.escape(name)}" name="{re.escape(name)}"[^>]*value="([^"]*)"', page)
    assert match is not None, f"no input {name}"
    return html.unescape(match.group(1))


async def form_post(client: Any, url: str, data: dict[str, str], *, csrf: bool = True) -> httpx.Response:
    """Post like a browser form: the token as a hidden field (not the header the test client adds)."""
    fields = {**data, "csrf_token": client.csrf} if csrf else dict(data)
    response: httpx.Response = await client.http.post(url, data=fields, follow_redirects=False)
    return response


async def board_and_coordinator(db: Database, login: Login) -> tuple[MadeBoard, Any]:
    """A board of the test's own, and its coordinator signed in."""
    board = await make_board(db)
    return board, await login(board.coordinator)


async def new_meeting(client: Any, board_id: int) -> int:
    day = f"20{30 + secrets.randbelow(20)}-0{1 + secrets.randbelow(9)}-{10 + secrets.randbelow(18)}"
    response = await client.post("/api/meetings", json={"board_id": board_id, "starts_at": f"{day}T14:00"})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def a_name() -> str:
    """A name of the test's own: two patients of the form with the same name and birth date are look-alikes, which
    the form makes the coordinator resolve (search before creating)."""
    return "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(8)).capitalize()


def case_form(**overrides: str) -> dict[str, str]:
    form = {"patient_mode": "new", "family_name": f"Pagetest-{a_name()}", "given_names": a_name(),
            "birth_date": "1961-05-04",
            "sex": "female", "ins": new_ins(), "ipp": f"PG{secrets.token_hex(4)}", "ipp_assigner": "CHU de Lyon",
            "question": "Chirurgie ou radiothérapie stéréotaxique ?", "referring_physician": "Dr Test",
            "clinical_summary": "", "staging": "cT1bN0M0", "performance_status": "1"}
    form.update(overrides)
    return form


async def agenda_ids(client: Any, meeting_id: int) -> list[int]:
    page = (await client.get(f"/meetings/{meeting_id}")).text
    return [int(x) for x in re.findall(r'<tr id="case-(\d+)"', page)]


async def test_meetings_list_grouped_per_board_with_new_button(login: Login, db: Database) -> None:
    meeting = await make_meeting(db, cases=1)
    other_board = await make_board(db, coordinator=meeting.coordinator)
    await make_meeting(db, board=other_board, cases=0, invite=())
    coordinator = await login(meeting.coordinator)
    page = await coordinator.get("/meetings")
    assert page.status_code == 200
    assert meeting.board.name in page.text and other_board.name in page.text
    assert 'href="/meetings/new"' in page.text
    assert "Upcoming" in page.text and "Past and closed" in page.text
    clinician = await login(meeting.invitee("radiologist"))
    page = await clinician.get("/meetings")
    assert page.status_code == 200 and 'href="/meetings/new"' not in page.text
    assert "Your answer" in page.text


async def test_anonymous_is_sent_to_login(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/meetings/1")
    assert response.status_code == 303 and response.headers["location"].startswith("/login?next=/meetings/1")
    login_page = await anonymous.get("/login")
    assert login_page.status_code == 200 and 'name="login_csrf"' in login_page.text


async def test_new_meeting_form_creates_in_the_boards_zone(login: Login, db: Database) -> None:
    board, coordinator = await board_and_coordinator(db, login)
    form_page = await coordinator.get("/meetings/new")
    assert form_page.status_code == 200 and "Europe/Paris" in form_page.text
    created = await form_post(coordinator, "/meetings/new", {"board_id": str(board.id), "date": "2032-06-17", "time": "14:00",
                                                              "duration_min": "90", "title": "RCP de juin"})
    assert created.status_code == 303, created.text
    meeting_id = int(created.headers["location"].split("/")[2].split("?")[0])
    api = (await coordinator.get(f"/api/meetings/{meeting_id}")).json()
    assert api["title"] == "RCP de juin" and api["starts_at"].startswith("2032-06-17T12:00")  # 14:00 CEST
    page = await coordinator.get(created.headers["location"])
    assert "Meeting scheduled." in page.text and "14:00" in page.text


async def test_form_post_without_csrf_token_is_refused(login: Login, db: Database) -> None:
    board, coordinator = await board_and_coordinator(db, login)
    data = {"board_id": str(board.id), "date": "2032-06-24", "time": "14:00", "duration_min": "90", "title": ""}
    refused = await form_post(coordinator, "/meetings/new", data, csrf=False)
    assert refused.status_code == 403
    wrong = await form_post(coordinator, "/meetings/new", {**data, "csrf_token": "forged"}, csrf=False)
    assert wrong.status_code == 403
    meeting_id = await new_meeting(coordinator, board.id)
    refused_case = await form_post(coordinator, f"/meetings/{meeting_id}/cases", case_form(), csrf=False)
    assert refused_case.status_code == 403
    assert await agenda_ids(coordinator, meeting_id) == []


async def test_new_meeting_errors_next_to_fields_keep_what_was_typed(login: Login, db: Database) -> None:
    board, coordinator = await board_and_coordinator(db, login)
    bad = await form_post(coordinator, "/meetings/new", {"board_id": str(board.id), "date": "2032-02-31", "time": "",
                                                         "duration_min": "5", "title": "Mon titre <b>"})
    assert bad.status_code == 422
    assert field_error(bad.text, "date") == "Enter a valid date."
    assert field_error(bad.text, "time") == "Required."
    assert field_error(bad.text, "duration_min") == "Must be at least 15."
    assert field_error(bad.text, "title") is None
    assert input_value(bad.text, "title") == "Mon titre <b>"
    assert "Mon titre <b>" not in bad.text  # escaped
    unknown_board = await form_post(coordinator, "/meetings/new", {"board_id": "999", "date": "2032-02-03",
                                                                   "time": "14:00", "duration_min": "60"})
    assert unknown_board.status_code == 422
    assert field_error(unknown_board.text, "board_id") == "Choose one of your boards."


async def test_add_case_with_a_new_patient_then_an_existing_one(login: Login, db: Database) -> None:
    board, coordinator = await board_and_coordinator(db, login)
    meeting_id = await new_meeting(coordinator, board.id)
    form = case_form(family_name="Nouveau-Patient")
    added = await form_post(coordinator, f"/meetings/{meeting_id}/cases", form)
    assert added.status_code == 303, added.text
    page = (await coordinator.get(added.headers["location"])).text
    assert "NOUVEAU-PATIENT" in page and form["ipp"] in page and "Case added to the agenda." in page
    assert 'data-identity-status="provisional"' in page  # the identity status beside the name, on the agenda too
    # The readiness column: question and referring physician are there, studies are not.
    assert "Question written" in page and "Studies attached" in page
    # Search by IPP (no-script path: a form POST) and add the same patient again, as an existing patient.
    search = await form_post(coordinator, f"/meetings/{meeting_id}/patient-search", {"identifier": form["ipp"]})
    assert search.status_code == 200, search.text
    found = re.findall(r'name="patient_id" value="(\d+)"', search.text)
    assert len(found) == 1
    again = await form_post(coordinator, f"/meetings/{meeting_id}/cases",
                            {"patient_mode": "existing", "patient_id": found[0], "question": "Deuxième avis ?"})
    assert again.status_code == 303
    assert len(await agenda_ids(coordinator, meeting_id)) == 2


async def test_add_case_errors_are_shown_next_to_fields(login: Login, db: Database) -> None:
    board, coordinator = await board_and_coordinator(db, login)
    meeting_id = await new_meeting(coordinator, board.id)
    bad = await form_post(coordinator, f"/meetings/{meeting_id}/cases",
                          case_form(family_name="", ins="123456789012345", birth_date="1961-13-40",
                                    performance_status="7", question="Ma question"))
    assert bad.status_code == 422
    assert field_error(bad.text, "family_name") == "Required."
    assert field_error(bad.text, "ins") == "An INS (NIR) has 15 characters; the last two are the control key."
    assert field_error(bad.text, "birth_date") == "Enter a valid date."
    assert field_error(bad.text, "performance_status")
    assert field_error(bad.text, "ipp") is None
    assert ">Ma question</textarea>" in bad.text  # what was typed is kept
    assert 'id="add-case" open' in bad.text
    # A duplicate identifier is a conflict from the service, shown at the identifier.
    first = case_form()
    assert (await form_post(coordinator, f"/meetings/{meeting_id}/cases", first)).status_code == 303
    dup = await form_post(coordinator, f"/meetings/{meeting_id}/cases",
                          case_form(ipp=first["ipp"], duplicates_checked="1"))
    assert dup.status_code == 409
    assert "already registered" in (field_error(dup.text, "ipp") or "")
    # Existing-patient mode without a choice.
    none = await form_post(coordinator, f"/meetings/{meeting_id}/cases", {"patient_mode": "existing"})
    assert none.status_code == 422 and field_error(none.text, "patient_id")
    assert len(await agenda_ids(coordinator, meeting_id)) == 1


async def test_move_buttons_defer_and_withdraw(login: Login, db: Database) -> None:
    board, coordinator = await board_and_coordinator(db, login)
    meeting_id = await new_meeting(coordinator, board.id)
    for name in ("Alpha", "Bravo", "Charlie"):
        assert (await form_post(coordinator, f"/meetings/{meeting_id}/cases",
                                case_form(family_name=name))).status_code == 303
    a, b, c = await agenda_ids(coordinator, meeting_id)
    moved = await form_post(coordinator, f"/meetings/{meeting_id}/agenda", {"case_id": str(c), "direction": "up"})
    assert moved.status_code == 303
    assert await agenda_ids(coordinator, meeting_id) == [a, c, b]
    down = await form_post(coordinator, f"/meetings/{meeting_id}/agenda", {"case_id": str(a), "direction": "down"})
    assert down.status_code == 303
    assert await agenda_ids(coordinator, meeting_id) == [c, a, b]
    deferred = await form_post(coordinator, f"/cases/{a}/defer", {})
    assert deferred.status_code == 303 and "done=case_deferred" in deferred.headers["location"]
    withdrawn = await form_post(coordinator, f"/cases/{b}/withdraw", {})
    assert withdrawn.status_code == 303
    page = (await coordinator.get(f"/meetings/{meeting_id}")).text
    assert await agenda_ids(coordinator, meeting_id) == [c]
    assert "off the agenda" in page
    again = await form_post(coordinator, f"/cases/{b}/withdraw", {})
    assert again.status_code == 409 and "alert-error" in again.text


async def test_invite_by_specialty_remove_and_quorum_preview(login: Login, db: Database) -> None:
    board, coordinator = await board_and_coordinator(db, login)
    meeting_id = await new_meeting(coordinator, board.id)
    page = (await coordinator.get(f"/meetings/{meeting_id}")).text
    # The room's words, over the invitations (rcp.scheduling.quorum_statement; issue 15, item 7).
    assert ("Expected quorum (from invitations): not met — missing: surgeon, medical oncologist, radiation oncologist"
            in page)
    pathologist = await make_clinician(db, "pathologist")
    people = (await coordinator.get("/api/users", params={"specialty": "pathologist"})).json()
    assert pathologist.id in {p["id"] for p in people}
    invited = await form_post(coordinator, f"/meetings/{meeting_id}/invitations",
                              {"specialty": "pathologist", "user_id": str(pathologist.id), "quorum_member": "1"})
    assert invited.status_code == 303
    invitations = (await coordinator.get(f"/api/meetings/{meeting_id}/invitations")).json()
    assert [i["user_id"] for i in invitations] == [pathologist.id]
    duplicate = await form_post(coordinator, f"/meetings/{meeting_id}/invitations",
                                {"specialty": "pathologist", "user_id": str(pathologist.id)})
    assert duplicate.status_code == 409 and field_error(duplicate.text, "user_id") == "Already invited."
    nobody = await form_post(coordinator, f"/meetings/{meeting_id}/invitations", {"specialty": "", "user_id": ""})
    assert nobody.status_code == 422 and field_error(nobody.text, "user_id") == "Choose a person."
    removed = await form_post(coordinator, f"/invitations/{invitations[0]['id']}/remove", {})
    assert removed.status_code == 303
    assert (await coordinator.get(f"/api/meetings/{meeting_id}/invitations")).json() == []


async def test_clinicians_see_read_only_pages(login: Login, db: Database) -> None:
    meeting = await make_meeting(db, cases=2, response="pending")
    thoracic = {"id": meeting.id}
    clinician = await login(meeting.invitee("surgeon"))
    page = await clinician.get(f"/meetings/{thoracic['id']}")
    assert page.status_code == 200
    assert "data-agenda" in page.text and "data-editable" not in page.text
    assert "Add a case" not in page.text and "/agenda\"" not in page.text and "/withdraw" not in page.text
    assert "Start the meeting" not in page.text
    assert "Your answer:" in page.text  # an invited clinician answers the invitation
    case_id = re.findall(r'<tr id="case-(\d+)"', page.text)[0]
    case_page = await clinician.get(f"/cases/{case_id}")
    assert case_page.status_code == 200 and "<dl class=\"facts\">" in case_page.text
    assert 'action="/cases/' not in case_page.text
    refused = await form_post(clinician, f"/cases/{case_id}", {"question": "changed"})
    assert refused.status_code == 403
    refused_add = await form_post(clinician, f"/meetings/{thoracic['id']}/cases", case_form())
    assert refused_add.status_code == 403


async def test_uninvited_clinician_gets_not_found(login: Login, db: Database) -> None:
    board, coordinator = await board_and_coordinator(db, login)
    meeting_id = await new_meeting(coordinator, board.id)
    await form_post(coordinator, f"/meetings/{meeting_id}/cases", case_form())
    case_id = (await agenda_ids(coordinator, meeting_id))[0]
    stranger = await login(await make_clinician(db, "gastroenterologist"))
    assert (await stranger.get(f"/meetings/{meeting_id}")).status_code == 404
    assert (await stranger.get(f"/cases/{case_id}")).status_code == 404


async def test_case_page_edit_and_errors(login: Login, db: Database) -> None:
    board, coordinator = await board_and_coordinator(db, login)
    meeting_id = await new_meeting(coordinator, board.id)
    await form_post(coordinator, f"/meetings/{meeting_id}/cases", case_form(question=""))
    case_id = (await agenda_ids(coordinator, meeting_id))[0]
    page = await coordinator.get(f"/cases/{case_id}")
    assert page.status_code == 200 and 'id="studies"' in page.text
    # A patient typed in the service: a provisional identity, said so beside the name (RNIV).
    assert 'data-identity-status="provisional"' in page.text and "Provisional identity" in page.text
    bad = await form_post(coordinator, f"/cases/{case_id}", {"question": "Nouvelle question", "staging": "x" * 201,
                                                            "performance_status": "9"})
    assert bad.status_code == 422
    assert field_error(bad.text, "staging") == "Too long: at most 200 characters."
    assert field_error(bad.text, "performance_status") == "Must be at most 4."
    assert ">Nouvelle question</textarea>" in bad.text
    saved = await form_post(coordinator, f"/cases/{case_id}", {"question": "Nouvelle question", "staging": "cT2",
                                                              "referring_physician": "Dr X", "performance_status": "2"})
    assert saved.status_code == 303
    case = (await coordinator.get(f"/api/cases/{case_id}")).json()
    assert case["question"] == "Nouvelle question" and case["performance_status"] == 2
    # Extra readiness items: added unticked, then ticked; the agenda's readiness column lists them.
    base = {"question": "Nouvelle question", "checklist_form": "1"}
    added = await form_post(coordinator, f"/cases/{case_id}", {**base, "new_item": "Compte rendu anapath"})
    assert added.status_code == 303
    assert (await coordinator.get(f"/api/cases/{case_id}")).json()["checklist"] == {"Compte rendu anapath": False}
    ticked = await coordinator.http.post(f"/cases/{case_id}", data={
        **base, "csrf_token": coordinator.csrf, "checklist_key": "Compte rendu anapath",
        "checklist": "Compte rendu anapath"})
    assert ticked.status_code == 303
    assert (await coordinator.get(f"/api/cases/{case_id}")).json()["checklist"] == {"Compte rendu anapath": True}
    too_long = await form_post(coordinator, f"/cases/{case_id}", {**base, "new_item": "x" * 41})
    assert too_long.status_code == 422 and field_error(too_long.text, "new_item")


async def test_meeting_status_actions(login: Login, db: Database) -> None:
    board, coordinator = await board_and_coordinator(db, login)
    meeting_id = await new_meeting(coordinator, board.id)
    started = await form_post(coordinator, f"/meetings/{meeting_id}/status", {"action": "start"})
    assert started.status_code == 303
    page = (await coordinator.get(f"/meetings/{meeting_id}")).text
    assert "In progress" in page and "Close the meeting" in page
    closed = await form_post(coordinator, f"/meetings/{meeting_id}/status", {"action": "close"})
    assert closed.status_code == 303
    page = (await coordinator.get(f"/meetings/{meeting_id}")).text
    assert "Add a case" not in page and "data-editable" not in page
    refused = await form_post(coordinator, f"/meetings/{meeting_id}/status", {"action": "start"})
    assert refused.status_code == 409 and "alert-error" in refused.text
    late = await form_post(coordinator, f"/meetings/{meeting_id}/cases", case_form())
    assert late.status_code == 409 and "no longer open" in late.text


def test_case_form_maps_identifiers_back_to_their_fields() -> None:
    """Pure: the add-case form becomes CaseIn data, and pydantic's locations point back at the form fields."""
    from pydantic import ValidationError

    from rcp.i18n import current_locale
    from rcp.scheduling.pages import _case_renamer, case_input, field_errors
    from rcp.scheduling.schemas import CaseIn

    data, fields = case_input({"patient_mode": "new", "family_name": "", "ipp": "X1", "ins": "12 34",
                               "birth_date": "", "performance_status": ""})
    assert fields == ["ins", "ipp"] and data["patient"]["identifiers"][0]["value"] == "1234"
    assert data["performance_status"] is None and data["patient"]["birth_date"] is None
    # In English for this test only: set in the test's own thread, the locale would leak into every later test.
    token = current_locale.set("en")
    try:
        CaseIn.model_validate(data)
    except ValidationError as exc:
        errors = field_errors(exc, _case_renamer(fields))
    else:
        raise AssertionError("expected a validation error")
    finally:
        current_locale.reset(token)
    assert errors == {"family_name": "Required.",
                      "ins": "An INS (NIR) has 15 characters; the last two are the control key."}
    existing, none = case_input({"patient_mode": "existing", "patient_id": "12"})
    assert existing["patient_id"] == "12" and "patient" not in existing and none == []


async def test_scripted_form_posts_answer_json_in_the_users_language(login: Login, db: Database) -> None:
    """api.js posts page forms with X-Requested-With: rcp-form and shows the answer's fields next to inputs."""
    board, coordinator = await board_and_coordinator(db, login)
    meeting_id = await new_meeting(coordinator, board.id)
    headers = {"X-Requested-With": "rcp-form", "Accept-Language": "fr"}
    bad = await coordinator.http.post(f"/meetings/{meeting_id}/cases", headers=headers,
                                      data={**case_form(family_name="", ins="1"), "csrf_token": coordinator.csrf})
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/json")
    body = bad.json()
    assert body["error"] == "invalid" and body["fields"]["family_name"] == "Obligatoire."
    assert "clé de contrôle" in body["fields"]["ins"] and "champs" in body["message"]
    good = await coordinator.http.post(f"/meetings/{meeting_id}/cases", headers=headers,
                                       data={**case_form(), "csrf_token": coordinator.csrf})
    assert good.status_code == 200 and good.json() == {"location": f"/meetings/{meeting_id}?done=case_added#agenda"}
    forged = await coordinator.http.post(f"/meetings/{meeting_id}/cases", headers=headers, data=case_form())
    assert forged.status_code == 403


async def test_board_charter_page_edits_type_and_required_specialties(login: Login, db: Database) -> None:
    """Issue 14: the coordinator sets the board's FRCP type and what its quorum needs; bad choices are named."""
    board = await make_board(db, required_specialties=())
    coordinator = await login(board.coordinator)
    meeting_id = await new_meeting(coordinator, board.id)
    assert f'href="/boards/{board.id}/charter"' in (await coordinator.get(f"/meetings/{meeting_id}")).text
    page = await coordinator.get(f"/boards/{board.id}/charter")
    assert page.status_code == 200 and 'value="312419003" selected' in page.text
    bad = await form_post(coordinator, f"/boards/{board.id}/charter",
                          {"type_code": "thoracic", "required_specialties": "secretary", "minimum_specialties": "3"})
    assert bad.status_code == 422
    assert field_error(bad.text, "type_code") and field_error(bad.text, "required_specialties")
    saved = await coordinator.http.post(f"/boards/{board.id}/charter", follow_redirects=False, data={
        "csrf_token": coordinator.csrf, "type_code": "ORG-130",
        "required_specialties": ["geriatric_oncologist", "medical_oncologist"], "minimum_specialties": "3"})
    assert saved.status_code == 303 and saved.headers["location"].endswith("done=charter_saved")
    one = (await coordinator.get(f"/api/boards/{board.id}")).json()
    assert (one["type_code"], one["nature"], one["type_display"]) == ("ORG-130", "transversal", "Oncogériatrie")
    assert one["required_specialties"] == ["geriatric_oncologist", "medical_oncologist"]
    # A clinician invited to the board's meetings sees the board but does not change its charter.
    clinician = await make_clinician(db)
    await coordinator.post(f"/api/meetings/{meeting_id}/invitations", json={"user_id": clinician.id})
    other = await login(clinician)
    assert (await other.get(f"/boards/{board.id}/charter")).status_code == 403
    assert f'href="/boards/{board.id}/charter"' not in (await other.get(f"/meetings/{meeting_id}")).text


async def test_search_before_creating_shows_look_alikes_and_takes_the_chosen_record(login: Login,
                                                                                   db: Database) -> None:
    """RNIV: before a new patient is created, the form lists registered patients with the same birth date and
    name; the coordinator takes one ("This is the patient") or says none is theirs. Without a choice, nothing is
    created."""
    from sqlmodel import func, select

    from rcp.scheduling.models import Patient

    board, coordinator = await board_and_coordinator(db, login)
    meeting_id = await new_meeting(coordinator, board.id)
    family, given = f"Doublon-{a_name()}", a_name()
    first = case_form(family_name=family, given_names=given, used_name="Martin", birth_place_code="69123",
                      identity_status="validated", identity_document="passport", identity_attributes="homonym")
    assert (await form_post(coordinator, f"/meetings/{meeting_id}/cases", first)).status_code == 303

    async def patients_named() -> int:
        async with db.session() as s:
            return int((await s.exec(select(func.count()).select_from(Patient)
                                     .where(Patient.family_name == family))).one())

    # The same person typed again (accents and case aside), with another IPP: listed, not created.
    again = case_form(family_name=family.upper(), given_names=given, question="Deuxième avis ?")
    shown = await form_post(coordinator, f"/meetings/{meeting_id}/cases", again)
    assert shown.status_code == 409
    (candidate,) = re.findall(r'data-duplicate="(\d+)"', shown.text)
    assert 'name="use_patient" value="' + candidate + '"' in shown.text
    assert "Validated identity" in shown.text and "Homonym" in shown.text
    assert field_error(shown.text, "duplicates_checked")
    assert await patients_named() == 1 and len(await agenda_ids(coordinator, meeting_id)) == 1

    # "This is the patient": the case goes to the registered record; nothing new is created.
    taken = await form_post(coordinator, f"/meetings/{meeting_id}/cases", {**again, "use_patient": candidate})
    assert taken.status_code == 303, taken.text
    assert await patients_named() == 1 and len(await agenda_ids(coordinator, meeting_id)) == 2
    # Someone else's record cannot be taken through this door: it must be one the typed identity finds.
    other = case_form()
    wrong = await form_post(coordinator, f"/meetings/{meeting_id}/cases", {**other, "use_patient": candidate})
    assert wrong.status_code == 422 and field_error(wrong.text, "patient_id")

    # "None of these is my patient": a new record.
    created = await form_post(coordinator, f"/meetings/{meeting_id}/cases",
                              {**case_form(family_name=family, given_names=given), "duplicates_checked": "1"})
    assert created.status_code == 303
    assert await patients_named() == 2

    # The identity typed in the form was recorded as the national rules describe it, and shown on the case page.
    async with db.session() as s:
        patient = (await s.exec(select(Patient).where(Patient.id == int(candidate)))).one()
    assert (patient.used_name, patient.birth_place_code, patient.identity_status, patient.identity_document,
            patient.identity_attributes) == ("Martin", "69123", "validated", "passport", ["homonym"])
    assert patient.identity_status_by and patient.identity_status_at is not None
    case_id = (await agenda_ids(coordinator, meeting_id))[0]
    page = (await coordinator.get(f"/cases/{case_id}")).text
    assert 'data-identity-status="validated"' in page and 'data-identity-attribute="homonym"' in page
    assert 'data-possible-duplicates="1"' in page and "Possible duplicate" in page


async def test_identity_status_rules_are_shown_next_to_their_fields(login: Login, db: Database) -> None:
    """A typed identity is at most validated, with the document checked; a doubtful one stays provisional."""
    board, coordinator = await board_and_coordinator(db, login)
    meeting_id = await new_meeting(coordinator, board.id)
    url = f"/meetings/{meeting_id}/cases"
    no_document = await form_post(coordinator, url, case_form(identity_status="validated"))
    assert no_document.status_code == 422
    assert "identity document" in (field_error(no_document.text, "identity_document") or "")
    doubtful = await form_post(coordinator, url, case_form(identity_status="validated", identity_document="id_card",
                                                           identity_attributes="doubtful"))
    assert doubtful.status_code == 422 and "provisional" in (field_error(doubtful.text, "identity_status") or "")
    qualified = await form_post(coordinator, url, case_form(identity_status="qualified"))
    assert qualified.status_code == 422 and field_error(qualified.text, "identity_status")
    bad_place = await form_post(coordinator, url, case_form(birth_place_code="7A1"))
    assert bad_place.status_code == 422 and field_error(bad_place.text, "birth_place_code")
    assert len(await agenda_ids(coordinator, meeting_id)) == 0
