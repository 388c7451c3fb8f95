"""The minutes routes on a bare Starlette app (our routes, the project's error handlers, a stand-in for auth)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pypdf
import pytest
import sqlalchemy as sa
from sqlmodel import col, func, select

from rcp.auth.models import AuditEvent
from rcp.db import Database
from rcp.minutes import store
from tests.minutes.seeding import (
    KEY_IMAGE,
    Seed,
    as_user,
    give_password,
    migrated,
    minutes_client,
    seed,
    signer_proof,
)


@pytest.fixture(scope="module")
async def database(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Database]:
    async with migrated(tmp_path_factory.mktemp("routes")) as db:
        yield db


@pytest.fixture
async def http(database: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with minutes_client(database) as client:
        yield client


async def seeded_case(database: Database) -> Seed:
    seeded = await seed(database)
    await give_password(database, seeded.oncologist)
    return seeded


async def put(http: httpx.AsyncClient, user: int, case_id: int, name: str, value: Any, base: int) -> httpx.Response:
    return await http.put(f"/api/cases/{case_id}/decision/fields/{name}", headers=as_user(user),
                          json={"value": value, "base_version": base})


async def test_decision_state_and_access(http: httpx.AsyncClient, database: Database) -> None:
    seeded = await seeded_case(database)
    answer = await http.get(f"/api/cases/{seeded.case_id}/decision", headers=as_user(seeded.surgeon))
    assert answer.status_code == 200
    state = answer.json()
    assert state["draft"]["fields"]["question"]["value"] == "Opérable ?"
    assert state["quorum"]["met"] is True and state["quorum"]["status"]["code"] == "ORG-126"
    assert state["quorum"]["missing_labels"] == []
    assert {"proposal", "responsible_physician", "patient_informed"} <= set(state["missing"])
    # Not invited: the case does not exist for them.
    assert (await http.get(f"/api/cases/{seeded.case_id}/decision", headers=as_user(seeded.outsider))
            ).status_code == 404
    assert (await http.get(f"/api/cases/{seeded.case_id}/decision")).status_code == 401
    async with database.session() as s:
        count = (await s.exec(select(func.count()).select_from(AuditEvent)
                              .where(AuditEvent.what == f"decision of case {seeded.case_id}"))).one()
    assert count >= 1


async def test_field_conflict_returns_the_current_text(http: httpx.AsyncClient, database: Database) -> None:
    seeded = await seeded_case(database)
    first = await put(http, seeded.surgeon, seeded.case_id, "question", "Chirurgie d'emblée ?", 0)
    assert first.status_code == 200 and first.json()["version"] == 1 and first.json()["revision"] == 1
    clash = await put(http, seeded.oncologist, seeded.case_id, "question", "Chimiothérapie d'abord ?", 0)
    assert clash.status_code == 409
    body = clash.json()
    assert body["error"] == "field_conflict" and body["current"]["value"] == "Chirurgie d'emblée ?"
    assert body["current"]["version"] == 1 and "question" in body["fields"]
    bad = await put(http, seeded.surgeon, seeded.case_id, "performance_status", {"grade": 9}, 0)
    assert bad.status_code == 422 and "performance_status.grade" in bad.json()["fields"]
    unknown = await put(http, seeded.surgeon, seeded.case_id, "salary", 1, 0)
    assert unknown.status_code == 422


async def test_live_hook_runs_after_commit(http: httpx.AsyncClient, database: Database) -> None:
    seeded = await seeded_case(database)
    seen: list[tuple[int, int, str, int]] = []

    async def hook(meeting_id: int, case_id: int, name: str, field: Any) -> None:
        async with database.session() as s:  # a separate connection sees the committed value
            draft = await store.load_draft(s, case_id)
        assert draft.get(name).value == field.value
        seen.append((meeting_id, case_id, name, field.version))

    store.on_field_saved.append(hook)
    try:
        assert (await put(http, seeded.surgeon, seeded.case_id, "comments", "Vu.", 0)).status_code == 200
    finally:
        store.on_field_saved.remove(hook)
    assert seen == [(seeded.meeting_id, seeded.case_id, "comments", 1)]


async def test_sign_render_and_amend(http: httpx.AsyncClient, database: Database) -> None:
    seeded = await seeded_case(database)
    case = seeded.case_id
    for name, value in {
        "proposal": {"type": "surgery", "details": "Lobectomie supérieure droite."},
        "guideline": {"conforms": True}, "case_status": "discussed",
        "responsible_physician": {"name": "Dr Oncologue Éloïse", "user_id": seeded.oncologist},
        "patient_informed": True,
        "key_images": [KEY_IMAGE],
    }.items():
        assert (await put(http, seeded.surgeon, case, name, value, 0)).status_code == 200
    state = (await http.get(f"/api/cases/{case}/decision", headers=as_user(seeded.oncologist))).json()
    assert state["missing"] == {}
    revision = state["draft"]["revision"]

    wrong = await http.post(f"/api/cases/{case}/decision/sign", headers=as_user(seeded.oncologist),
                            json={"password": "nope", "seen_revision": revision})
    assert wrong.status_code == 403 and wrong.json()["error"] == "reauthentication_failed"
    token = await http.post(f"/api/cases/{case}/decision/sign",
                            headers={**as_user(seeded.oncologist), "X-Test-Via": "token"},
                            json={**await signer_proof(database, seeded.oncologist), "seen_revision": revision})
    assert token.status_code == 403 and token.json()["error"] == "not_allowed_to_sign"
    assert state["signing"] == {"may_sign": True, "reason": ""}
    stale = await http.post(f"/api/cases/{case}/decision/sign", headers=as_user(seeded.oncologist),
                            json={**await signer_proof(database, seeded.oncologist), "seen_revision": revision - 1})
    assert stale.status_code == 409 and stale.json()["error"] == "stale_draft"
    signed = await http.post(f"/api/cases/{case}/decision/sign", headers=as_user(seeded.oncologist),
                             json={**await signer_proof(database, seeded.oncologist), "seen_revision": revision})
    assert signed.status_code == 201, signed.text
    version = signed.json()
    assert version["number"] == 1 and version["intact"] is True
    twice = await http.post(f"/api/cases/{case}/decision/sign", headers=as_user(seeded.oncologist),
                            json={**await signer_proof(database, seeded.oncologist), "seen_revision": revision})
    assert twice.status_code == 409 and twice.json()["error"] == "already_signed"

    state = (await http.get(f"/api/cases/{case}/decision", headers=as_user(seeded.surgeon))).json()
    assert sorted(j["kind"] for j in state["writebacks"]) == ["kos", "pdf"]

    pdf = await http.get(f"/cases/{case}/fiche.pdf", headers=as_user(seeded.surgeon))
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    text = "".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf.content)).pages)
    assert version["sha256"] in text.replace("\n", "").replace(" ", "") and "Lobectomie supérieure" in text
    page = await http.get(f"/cases/{case}/fiche", headers=as_user(seeded.surgeon))
    assert page.status_code == 200 and version["sha256"] in page.text
    minutes = await http.get(f"/meetings/{seeded.meeting_id}/minutes", headers=as_user(seeded.surgeon))
    assert minutes.status_code == 200 and "DUPRÉ" in minutes.text
    minutes_pdf = await http.get(f"/meetings/{seeded.meeting_id}/minutes.pdf", headers=as_user(seeded.surgeon))
    assert minutes_pdf.status_code == 200 and minutes_pdf.content.startswith(b"%PDF-")

    draft = state["draft"]["fields"]["comments"]
    refused = await put(http, seeded.oncologist, case, "comments", "Ajout : EFR.", draft["version"])
    assert refused.status_code == 409 and refused.json()["error"] == "already_signed"
    amended = await http.post(f"/api/cases/{case}/decision/amend", headers=as_user(seeded.oncologist),
                              json={**await signer_proof(database, seeded.oncologist), "reason": "EFR oubliées",
                                    "replaces": 1,
                                    "changes": {"comments": "Ajout : EFR."}})
    assert amended.status_code == 201 and amended.json()["replaces"] == 1
    listed = (await http.get(f"/api/cases/{case}/decision/versions", headers=as_user(seeded.surgeon))).json()
    assert [v["number"] for v in listed] == [1, 2] and listed[1]["content"]["comments"] == "Ajout : EFR."
    first = await http.get(f"/cases/{case}/fiche.pdf?version=1", headers=as_user(seeded.surgeon))
    assert first.content == pdf.content  # version 1 renders the same bytes as before


async def test_missing_quorum_is_spelled_out(http: httpx.AsyncClient, database: Database) -> None:
    seeded = await seed(database, joined=("surgeon", "medical_oncologist"))
    state = (await http.get(f"/api/cases/{seeded.case_id}/decision", headers=as_user(seeded.surgeon))).json()
    quorum = state["quorum"]
    assert quorum["met"] is False and quorum["status"]["code"] == "ORG-133"
    assert quorum["missing"] == ["radiotherapist"]
    assert len(quorum["missing_labels"]) == 1 and quorum["missing_labels"][0] != "radiotherapist"


async def test_a_treatment_without_its_specialty_is_flagged_then_refused(http: httpx.AsyncClient,
                                                                         database: Database) -> None:
    """Issue 14: the board counts surgeon + medical oncologist; radiotherapy is proposed with no radiotherapist."""
    seeded = await seeded_case(database)
    await seed_board_without_radiotherapy(database, seeded)
    case = seeded.case_id
    for name, value in {
        "proposal": {"type": "radiotherapy", "details": "Radiothérapie stéréotaxique."},
        "guideline": {"conforms": True}, "case_status": "discussed",
        "responsible_physician": {"name": "Dr Oncologue Éloïse", "user_id": seeded.oncologist},
        "patient_informed": True,
    }.items():
        assert (await put(http, seeded.surgeon, case, name, value, 0)).status_code == 200
    state = (await http.get(f"/api/cases/{case}/decision", headers=as_user(seeded.oncologist))).json()
    assert state["quorum"]["met"] is True and state["missing"] == {}
    assert state["treatment_gaps"] == [{"code": "C15313", "system": "2.16.840.1.113883.3.26.1.1",
                                        "display": "radiothérapie", "needs": ["radiotherapist"],
                                        "needs_labels": ["Oncologue radiothérapeute"]}]  # the reader's language
    page = await http.get(f"/cases/{case}/fiche", headers=as_user(seeded.surgeon))
    assert 'data-treatment-gap="C15313"' in page.text and "oncologue radiothérapeute" in page.text
    refused = await http.post(f"/api/cases/{case}/decision/sign", headers=as_user(seeded.oncologist),
                              json={**await signer_proof(database, seeded.oncologist),
                                    "seen_revision": state["draft"]["revision"]})
    assert refused.status_code == 409 and refused.json()["error"] == "treatment_specialty_missing"
    assert "radiothérapie (C15313) needs a radiation oncologist" in refused.json()["message"]
    assert refused.json()["fields"] == {"proposal.treatments": "C15313 needs radiotherapist"}
    async with database.session() as s:
        assert await store.list_versions(s, case) == []  # nothing signed


async def seed_board_without_radiotherapy(database: Database, seeded: Seed) -> None:
    """The seeded board now requires surgeon + medical oncologist only, and the radiotherapist did not join."""
    from rcp.scheduling.models import Board, Invitation, Meeting

    async with database.session() as s:
        meeting = await s.get(Meeting, seeded.meeting_id)
        assert meeting is not None
        await s.exec(sa.update(Board).where(col(Board.id) == meeting.board_id)
                     .values(required_specialties=["surgeon", "medical_oncologist"], minimum_specialties=2))
        await s.exec(sa.update(Invitation).where(col(Invitation.meeting_id) == seeded.meeting_id,
                                                 col(Invitation.user_id) == seeded.radiotherapist)
                     .values(joined_at=None))
