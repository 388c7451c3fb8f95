"""A board's registration (issue 16, item 1): its establishment by FINESS, the regional cancer network and 3C, its
national RCP id and flags — edited by its coordinators (API and charter page), checked, audited, and copied into
the fiche it signs."""

from __future__ import annotations

import html
import re
import secrets
from typing import Any

from sqlmodel import col, select

from rcp.auth.models import AuditEvent
from rcp.db import Database
from rcp.identifiers import luhn_key
from rcp.minutes import store
from rcp.minutes.versions import Draft
from rcp.scheduling.models import Board
from rcp.scheduling.registration import FACILITY_TYPES
from tests.factories import make_board, make_clinician, make_meeting

Login = Any



def new_place() -> dict[str, str]:
    """An invented establishment of the test's own: a fresh FINESS with a valid key (rcp.identifiers.luhn_key),
    since establishments are shared by FINESS across the database."""
    body = f"69{secrets.randbelow(10**6):06d}"
    return {"finess": body + luhn_key(body), "name": "Hôpital du Parc", "facility_type": "SA36",
            "regional_network_id": "8401", "regional_network_name": "ONCO AURA",
            "coordination_centre_id": "840107", "coordination_centre_name": "3C Parc"}


def spaced(finess: str) -> str:
    return f"{finess[:2]} {finess[2:5]} {finess[5:8]} {finess[8]}"


def wrong_key(finess: str) -> str:
    return finess[:8] + str((int(finess[8]) + 1) % 10)


def field_error(page: str, name: str) -> str | None:
    """The message shown next to field ``name``, or None when its error line is hidden."""
    match = re.search(rf'id="e-{re.escape(name)}"\s*(hidden)?\s*>(.*?)</p>', page, re.DOTALL)
    assert match is not None, f"no error slot for {name}"
    return None if match.group(1) else html.unescape(match.group(2).strip())


async def test_the_coordinator_registers_the_board_and_it_is_audited(login: Login, db: Database) -> None:
    board = await make_board(db)
    coordinator = await login(board.coordinator)
    place = new_place()
    finess = place["finess"]
    before = (await coordinator.get(f"/api/boards/{board.id}")).json()
    assert (before["establishment"], before["national_id"], before["referral"]) == (None, "", False)
    saved = await coordinator.patch(f"/api/boards/{board.id}", json={
        "national_id": "84010799", "referral": True, "establishment": {**place, "finess": spaced(finess)}})
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert (body["national_id"], body["referral"], body["paediatric"]) == ("84010799", True, False)
    assert body["establishment"] | {"id": 0} == {**place, "id": 0, "facility_type_display": "Centre anti-cancer",
                                                  "custodian_finess": "", "custodian_name": ""}
    # A second board of the same establishment (same FINESS) shares it: one row, and a change shows on both.
    other = await make_board(db, coordinator=board.coordinator)
    second = await coordinator.patch(f"/api/boards/{other.id}", json={
        "establishment": {**place, "name": "Hôpital du Parc (site Nord)"}})
    assert second.json()["establishment"]["id"] == body["establishment"]["id"]
    first = (await coordinator.get(f"/api/boards/{board.id}")).json()
    assert first["establishment"]["name"] == "Hôpital du Parc (site Nord)"
    listed = {b["id"]: b for b in (await coordinator.get("/api/boards")).json()}
    assert listed[board.id]["establishment"]["finess"] == finess
    async with db.session() as s:
        trail = (await s.exec(select(AuditEvent.what).where(
            col(AuditEvent.what).startswith(f"board {board.id} charter:")))).all()
    assert trail == [f"board {board.id} charter: national_id=84010799; referral=True; establishment={finess} (new)"]
    async with db.session() as s:
        renamed = (await s.exec(select(AuditEvent.what).where(
            col(AuditEvent.what).startswith(f"board {other.id} charter:")))).all()
    assert renamed == [f"board {other.id} charter: establishment={finess}; establishment {finess}: name"]
    # null detaches the board; the establishment stays for its other boards.
    detached = await coordinator.patch(f"/api/boards/{board.id}", json={"establishment": None})
    assert detached.json()["establishment"] is None
    assert (await coordinator.get(f"/api/boards/{other.id}")).json()["establishment"]["finess"] == finess


async def test_bad_numbers_are_refused_naming_the_field(login: Login, db: Database) -> None:
    board = await make_board(db)
    coordinator = await login(board.coordinator)
    place = new_place()
    bad = wrong_key(place["finess"])
    for body, field in (
        ({"establishment": {**place, "finess": bad}}, "establishment.finess"),  # wrong Luhn key
        ({"establishment": {**place, "finess": "6909991"}}, "establishment.finess"),
        ({"establishment": {**place, "name": ""}}, "establishment.name"),
        ({"establishment": {**place, "facility_type": "SA33"}}, "establishment.facility_type"),  # a pharmacy
        ({"establishment": {**place, "regional_network_id": "84 01"}}, "establishment.regional_network_id"),
        ({"establishment": {**place, "custodian_finess": "750712184"}}, "establishment"),  # without its name
        ({"national_id": "RCP-1"}, "national_id"),
        ({"referral": None}, "referral"),
    ):
        refused = await coordinator.patch(f"/api/boards/{board.id}", json=body)
        assert refused.status_code == 422 and list(refused.json()["fields"]) == [field], (body, refused.text)
        assert bad not in refused.text
    assert (await coordinator.get(f"/api/boards/{board.id}")).json()["establishment"] is None
    # Only the board's coordinators register it.
    clinician = await login(await make_clinician(db))
    assert (await clinician.patch(f"/api/boards/{board.id}", json={"national_id": "1"})).status_code in {403, 404}


async def test_the_charter_page_edits_the_registration_in_french(login: Login, db: Database) -> None:
    board = await make_board(db)
    coordinator = await login(board.coordinator)
    finess = new_place()["finess"]
    page = await coordinator.get(f"/boards/{board.id}/charter")
    assert page.status_code == 200 and "data-registration-missing" in page.text
    assert all(f'value="{t.code}"' in page.text for t in FACILITY_TYPES)
    form = {"csrf_token": coordinator.csrf, "type_code": "312419003", "minimum_specialties": "3",
            "required_specialties": ["surgeon", "medical_oncologist", "radiotherapist"], "national_id": "84010712",
            "paediatric": "on", "finess": wrong_key(finess), "establishment_name": "",
            "facility_type": "SA01", "custodian_finess": "750712184"}
    bad = await coordinator.http.post(f"/boards/{board.id}/charter", data=form, follow_redirects=False,
                                      headers={"Accept-Language": "fr"})
    assert bad.status_code == 422
    assert "clé de contrôle" in (field_error(bad.text, "finess") or "")
    assert field_error(bad.text, "establishment_name")
    assert 'value="84010712"' in bad.text  # what was typed comes back
    half = await coordinator.http.post(f"/boards/{board.id}/charter", follow_redirects=False,
                                       headers={"Accept-Language": "fr"},
                                       data={**form, "finess": finess, "establishment_name": "Hôpital du Parc"})
    assert half.status_code == 422 and "conserve les documents" in (field_error(half.text, "custodian_name") or "")
    good = {**form, "finess": spaced(finess), "establishment_name": "Hôpital du Parc", "custodian_finess": "",
            "regional_network_id": "8401", "coordination_centre_id": "840107"}
    saved = await coordinator.http.post(f"/boards/{board.id}/charter", data=good, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    one = (await coordinator.get(f"/api/boards/{board.id}")).json()
    assert (one["national_id"], one["paediatric"], one["referral"]) == ("84010712", True, False)
    assert (one["establishment"]["finess"], one["establishment"]["coordination_centre_id"]) == (finess, "840107")
    again = await coordinator.get(f"/boards/{board.id}/charter")
    assert f'value="{finess}"' in again.text and "data-registration-missing" not in again.text and 'name="paediatric" checked' in again.text


async def test_the_fiche_carries_the_registration_it_was_signed_under(login: Login, db: Database) -> None:
    board = await make_board(db)
    coordinator = await login(board.coordinator)
    place = new_place()
    await coordinator.patch(f"/api/boards/{board.id}", json={"national_id": "84010713", "paediatric": True,
                                                              "establishment": place})
    meeting = await make_meeting(db, board=board, cases=1)
    case_id = meeting.cases[0].id
    async with db.session() as s:
        context = await store.load_context(s, case_id)
    fiche_board = store.build_fiche(context, Draft(case_id=case_id)).board
    assert (fiche_board.national_id, fiche_board.paediatric, fiche_board.referral) == ("84010713", True, False)
    assert fiche_board.establishment is not None
    assert fiche_board.establishment.custodian == (place["finess"], "Hôpital du Parc")
    assert fiche_board.establishment.coordination_centre_id == "840107"
    async with db.session() as s:
        row = await s.get(Board, board.id)
        assert row is not None and row.establishment_id is not None
