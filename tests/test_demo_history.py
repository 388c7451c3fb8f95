"""The demo's history (rcp.demo_history): each past case opens finished — fiche, PDF, CDA, deliveries done.

Served by the shared app over the shared database, whose demo the session loaded (``tests/conftest.py``), read by
the demo's coordinator as a newcomer would.
"""

from __future__ import annotations

from typing import Any

from lxml import etree
from sqlmodel import col, select

from rcp.db import Database
from rcp.demo_history import DEMO_FICHES
from rcp.scheduling.models import Case, Meeting, MeetingStatus, PatientIdentifier
from tests.minutes.cda_validation import schema_errors

V3 = {"c": "urn:hl7-org:v3"}


async def _past_cases(db: Database) -> dict[str, int]:
    async with db.session() as s:
        rows = (await s.exec(
            select(Case.id, PatientIdentifier.value)
            .join(Meeting, col(Meeting.id) == col(Case.meeting_id))
            .join(PatientIdentifier, col(PatientIdentifier.patient_id) == col(Case.patient_id))
            .where(Meeting.status == MeetingStatus.closed, PatientIdentifier.system == "IPP")
        )).all()
    return {ipp: case_id for case_id, ipp in rows if case_id is not None}


async def test_each_past_demo_case_opens_finished(db: Database, login: Any) -> None:
    secretary = await login("secretariat")
    cases = await _past_cases(db)
    assert {spec.ipp for spec in DEMO_FICHES} <= set(cases)
    corrected = 0
    for spec in DEMO_FICHES:
        case_id = cases[spec.ipp]
        listed = (await secretary.get(f"/api/cases/{case_id}/decision/versions")).json()
        numbers = [v["number"] for v in listed]
        assert numbers == ([1, 2] if spec.correction else [1])
        corrected += len(numbers) - 1
        for number in numbers:
            cda = await secretary.get(f"/api/cases/{case_id}/decision/versions/{number}/cda")
            assert cda.status_code == 200 and cda.headers["content-type"].startswith("application/xml")
            assert schema_errors(cda.content) == []
            assert etree.fromstring(cda.content).find("c:versionNumber", V3).get("value") == str(number)
            pdf = await secretary.get(f"/cases/{case_id}/fiche.pdf", params={"version": number})
            assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
        fiche = await secretary.get(f"/cases/{case_id}/fiche")
        assert fiche.status_code == 200
        status = (await secretary.get(f"/api/epr/cases/{case_id}/deliveries")).json()
        assert status["deliveries"] and {d["status"] for d in status["deliveries"]} == {"delivered"}
        assert {d["document_version"] for d in status["deliveries"]} == set(numbers)
        copies = status["mail_copies"]
        assert copies and {c["status"] for c in copies} == {"sent"} and all(c["sent_at"] for c in copies)
        assert {c["version"] for c in copies} == set(numbers)
        fragment = await secretary.get(f"/epr/cases/{case_id}/deliveries")
        assert "data-copy-status=\"sent\"" in fragment.text
        for number in numbers:
            assert f"/api/cases/{case_id}/decision/versions/{number}/cda" in fragment.text
    assert corrected == 1, "one fiche of the demo was corrected once"
