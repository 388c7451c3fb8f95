"""Attack on the write-back (issue 14, "Why" item 1): a fiche for one patient written into another patient's study.

The KOS and the PDF take their Patient Module from the study they are written into and add the fiche's INS. Before
the import guard, a file carrying the case patient's IPP and issuer over another person's name and birth date was
attached silently; such legacy studies are still in archives. Here one is put straight into the service's archive
(as it was stored then) and onto the case (as it was attached then); a physician marks a key image on it and signs.

Before: a KOS and a PDF named DOE^JANE, carrying the case patient's INS, landed in the archive. After: both write-back
jobs are refused for good with the reason (identity fields, no values), nothing is stored, and the decision stays
signed. Everything the physician does goes over HTTP and the room's WebSocket against the running service.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import pytest
from sqlmodel import col, select

from rcp.auth.models import AuditEvent
from rcp.config import Settings
from rcp.db import Database
from rcp.imaging.archive import open_archive
from rcp.imaging.synthetic import SyntheticPatient, ct_series, to_part10
from rcp.scheduling.models import Case, PatientIdentifier
from tests.security.signing_world import World, discuss_case, make_world, sign_decision
from tests.servers import until


def _fresh_ins() -> str:
    body = f"2{secrets.randbelow(99):02d}0469{secrets.randbelow(10**6):06d}"
    return body + f"{97 - int(body) % 97:02d}"


@pytest.fixture
async def world(db: Database, live_server: Any) -> AsyncIterator[World]:
    found = await make_world(db, live_server.url, cases=1)
    try:
        yield found
    finally:
        await found.close()


async def _legacy_study_on_the_case(db: Database, settings: Settings, case_id: int, ins: str) -> list[Any]:
    """DOE^JANE's CT filed under the case patient's IPP and issuer, in the archive and on the case's study list."""
    async with db.session() as s:
        case = await s.get(Case, case_id)
        assert case is not None
        ipp = (await s.exec(select(PatientIdentifier).where(PatientIdentifier.patient_id == case.patient_id,
                                                             PatientIdentifier.system == "IPP"))).one()
        s.add(PatientIdentifier(patient_id=case.patient_id, system="INS-NIR", value=ins, assigner=""))
        jane = SyntheticPatient(ipp.value, ipp.assigner, "DOE", "JANE", date(1970, 1, 1), "F")
        series = ct_series(jane, slices=2, rows=16, columns=16)
        case.study_uids = [str(series[0].StudyInstanceUID)]
        s.add(case)
    archive = open_archive(settings, database=db)
    try:
        stored = await archive.store([to_part10(ds) for ds in series])
        assert not stored.failed
    finally:
        await archive.close()
    return series


async def test_a_fiche_is_never_written_into_another_patients_study(world: World, db: Database,
                                                                    settings: Settings) -> None:
    case_id = world.cases[0]
    ins = _fresh_ins()
    series = await _legacy_study_on_the_case(db, settings, case_id, ins)
    study_uid = str(series[0].StudyInstanceUID)

    await discuss_case(world, case_id)
    surgeon = await world.client("surgeon")
    mark = {"study_uid": study_uid, "series_uid": str(series[0].SeriesInstanceUID),
            "sop_uid": str(series[0].SOPInstanceUID), "description": "Cible 1 : nodule spiculé"}
    for name, value in {
        "proposal": {"type": "surgery", "details": "Lobectomie supérieure droite."},
        "guideline": {"conforms": True}, "case_status": "discussed",
        "responsible_physician": {"name": "Dr Surgeon", "user_id": world.id("surgeon")},
        "patient_informed": True,
        "key_images": [mark],
    }.items():
        current = (await surgeon.get(f"/api/cases/{case_id}/decision")).json()["draft"]["fields"][name]["version"]
        saved = await surgeon.put(f"/api/cases/{case_id}/decision/fields/{name}",
                                  json={"value": value, "base_version": current})
        assert saved.status_code == 200, saved.text
    signed = await sign_decision(world, "surgeon", case_id)
    assert signed.status_code == 201, signed.text

    async def settled() -> list[dict[str, Any]]:
        jobs: list[dict[str, Any]] = (await surgeon.get(f"/api/cases/{case_id}/decision")).json()["writebacks"]
        return jobs if len(jobs) == 2 and all(j["status"] != "pending" for j in jobs) else []

    jobs = await until(settled, "both write-back jobs attempted", timeout=60)

    archive = open_archive(settings, database=db)
    try:
        modalities = {s.modality for s in await archive.list_series(study_uid)}
    finally:
        await archive.close()
    # The attack: a KOS (KO) and the fiche (DOC) filed under DOE^JANE with the case patient's INS.
    assert modalities == {"CT"}, f"write-back stored {sorted(modalities - {'CT'})} in another patient's study"
    assert {j["kind"]: j["status"] for j in jobs} == {"kos": "refused", "pdf": "refused"}
    for job in jobs:
        assert "family_name" in job["last_error"] and "birth_date" in job["last_error"]
        for value in ("DOE", "JANE", "1970", ins):
            assert value not in job["last_error"]
    # The identity officer finds it in the audit trail, under the case's patient.
    async with db.session() as s:
        case = await s.get(Case, case_id)
        assert case is not None
        alerts = (await s.exec(select(AuditEvent).where(AuditEvent.patient_id == case.patient_id,
                                                        AuditEvent.event_code == "110104",
                                                        col(AuditEvent.what).contains("refused")))).all()
    assert len(alerts) == 2 and all(a.outcome == 8 for a in alerts)
    # The decision stays signed.
    versions = (await surgeon.get(f"/api/cases/{case_id}/decision/versions")).json()
    assert len(versions) == 1
