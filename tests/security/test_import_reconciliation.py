"""Import reconciliation (issue 14, item 2; IHE Import Reconciliation Workflow), black-box over HTTP.

A CD from another hospital names the case's patient by that hospital's IPP and issuer. It is refused by default
(nothing stored), the coordinator sees both identities and a confirmation, and only their explicit choice —
the same upload with ``reconcile=true&confirm=<it>`` — stores it, coerced to the case's patient with the file's own
identity kept in Original Attributes Sequence. A clinician cannot reconcile; a confirmation given for one file does
not reconcile another; a file under the case's own IPP with another name is a filing error, never reconciled.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import pydicom
import pytest
from sqlmodel import col, select

from rcp.auth.models import AuditEvent
from rcp.config import Settings
from rcp.db import Database
from rcp.imaging.archive import Archive, open_archive
from rcp.imaging.synthetic import SyntheticPatient
from rcp.scheduling.models import Case, Patient, PatientIdentifier
from tests.factories import make_meeting, new_ins
from tests.security.attack_studies import (
    a_coordinator,
    a_patient,
    ct_blobs,
    new_case,
    stored_sops,
    uids_of,
    upload_files,
)


@pytest.fixture
async def local_archive(settings: Settings, db: Database) -> AsyncIterator[Archive]:
    archive = open_archive(settings, database=db)
    yield archive
    await archive.close()


def _from_bourg(case_patient: SyntheticPatient, **traits: Any) -> SyntheticPatient:
    """The same person as another hospital files them (its own IPP and issuer; traits as given)."""
    values = {"family_name": case_patient.family_name.upper(), "given_names": "ELOI",
              "birth_date": case_patient.birth_date, "sex": case_patient.sex, **traits}
    return SyntheticPatient("BRG-000417", "CH de Bourg-en-Bresse", values["family_name"], values["given_names"],
                            values["birth_date"], values["sex"])


async def _nothing_stored(archive: Archive, blobs: list[bytes]) -> None:
    for blob in blobs:
        study, _series, sop = uids_of(blob)
        assert sop not in await stored_sops(archive, study), "a file of a refused import was stored"


async def test_a_cd_from_another_hospital_is_refused_then_reconciled_by_the_coordinators_choice(
        login: Any, local_archive: Archive, db: Database) -> None:
    coordinator = await a_coordinator(db, login)
    case = await new_case(coordinator, a_patient("Reconcilié"))
    cd = ct_blobs(_from_bourg(case.patient), slices=2)
    url = f"/api/cases/{case.case_id}/imports"

    refused = await coordinator.post(url, files=upload_files(cd))
    assert refused.status_code == 422, refused.text
    first = refused.json()[0]
    assert first["identity"]["fields"] == ["identifier"]
    assert first["identity"]["file"]["issuer"] == "CH de Bourg-en-Bresse"
    confirmation = first["identity"]["confirmation"]
    assert all(r["identity"]["confirmation"] == confirmation for r in refused.json())
    await _nothing_stored(local_archive, cd)

    wrong = await coordinator.post(f"{url}?reconcile=true&confirm={'0' * 32}", files=upload_files(cd))
    assert wrong.status_code == 422, wrong.text
    await _nothing_stored(local_archive, cd)

    done = await coordinator.post(f"{url}?reconcile=true&confirm={confirmation}", files=upload_files(cd))
    assert done.status_code == 200, done.text
    assert all(r["ok"] and r.get("reconciled") for r in done.json())
    study, series, sop = uids_of(cd[0])
    stored = pydicom.dcmread(io.BytesIO(await local_archive.retrieve_instance(study, series, sop)))
    # Filed under the case's patient; UIDs kept (IRW); the file's identity in Original Attributes Sequence.
    assert (stored.PatientID, stored.IssuerOfPatientID) == (case.patient.patient_id, case.patient.issuer)
    assert str(stored.PatientName) == f"{case.patient.family_name}^{case.patient.given_names}"
    assert (stored.PatientBirthDate, stored.PatientSex) == ("19610615", "M")
    assert str(stored.SOPInstanceUID) == sop and "OtherPatientIDsSequence" not in stored
    [item] = stored.OriginalAttributesSequence
    assert item.ReasonForTheAttributeModification == "COERCE" and item.ModifyingSystem == "RCP"
    assert item.AttributeModificationDateTime and item.SourceOfPreviousValues == "CH de Bourg-en-Bresse"
    [original] = item.ModifiedAttributesSequence
    assert (original.PatientID, original.IssuerOfPatientID) == ("BRG-000417", "CH de Bourg-en-Bresse")
    assert str(original.PatientName).startswith("RECONCILI")
    # The same CD reconciled again: already there (not a replacement of the stored instance).
    again = await coordinator.post(f"{url}?reconcile=true&confirm={confirmation}", files=upload_files(cd))
    assert again.status_code == 200, again.text
    attached = (await coordinator.get(f"/api/cases/{case.case_id}")).json()["study_uids"]
    assert study in attached
    async with db.session() as s:
        events = (await s.exec(select(AuditEvent).where(col(AuditEvent.what).contains(f"case {case.case_id}:"),
                                                        col(AuditEvent.what).contains("reconciled")))).all()
    assert len(events) == 2 and all(e.outcome == 0 and e.action == "C" for e in events)


async def test_a_confirmation_for_one_file_does_not_reconcile_another(login: Any, local_archive: Archive,
                                                                      db: Database) -> None:
    coordinator = await a_coordinator(db, login)
    case = await new_case(coordinator, a_patient("Confirme"))
    url = f"/api/cases/{case.case_id}/imports"
    shown = await coordinator.post(url, files=upload_files(ct_blobs(_from_bourg(case.patient), slices=1)))
    confirmation = shown.json()[0]["identity"]["confirmation"]
    # The page is stale: another CD (another person at the same hospital) is sent with that confirmation.
    other = ct_blobs(_from_bourg(case.patient, family_name="AUTRE", given_names="LEA", sex="F",
                            birth_date=date(1980, 1, 1)), slices=1)
    response = await coordinator.post(f"{url}?reconcile=true&confirm={confirmation}", files=upload_files(other))
    assert response.status_code == 422, response.text
    assert not response.json()[0]["ok"]
    await _nothing_stored(local_archive, other)


async def test_a_clinician_cannot_reconcile(login: Any, local_archive: Archive, db: Database) -> None:
    made = await make_meeting(db, cases=1, invite=("radiologist",))
    clinician = await login(made.invitations[0].user)
    target = made.cases[0]
    ours = SyntheticPatient(target.patient.ipp, "CHU", target.patient.family_name, target.patient.given_names,
                            date(1961, 5, 4), "F")
    cd = ct_blobs(_from_bourg(ours), slices=1)
    response = await clinician.post(f"/api/cases/{target.id}/imports?reconcile=true&confirm={'a' * 32}",
                                    files=upload_files(cd))
    assert response.status_code == 403, response.text
    await _nothing_stored(local_archive, cd)


async def test_the_case_ipp_over_another_name_is_never_reconciled(login: Any, local_archive: Archive,
                                                                  db: Database) -> None:
    """Same IPP and issuer, another person's traits (DOE^JANE): a filing error at the source, not another domain."""
    coordinator = await a_coordinator(db, login)
    case = await new_case(coordinator, a_patient("Jumeau"))
    twin = SyntheticPatient(case.patient.patient_id, case.patient.issuer, "DOE", "JANE", date(1970, 1, 1), "F")
    blobs = ct_blobs(twin, slices=1)
    response = await coordinator.post(f"/api/cases/{case.case_id}/imports", files=upload_files(blobs))
    assert response.status_code == 422, response.text
    assert "confirmation" not in response.json()[0]["identity"]
    forced = await coordinator.post(f"/api/cases/{case.case_id}/imports?reconcile=true&confirm={'b' * 32}",
                                    files=upload_files(blobs))
    assert forced.status_code == 422, forced.text
    await _nothing_stored(local_archive, blobs)


async def test_the_ins_goes_into_reconciled_files_only_for_a_qualified_identity(
        login: Any, local_archive: Archive, db: Database) -> None:
    coordinator = await a_coordinator(db, login)
    for status in ("validated", "qualified"):
        case = await new_case(coordinator, a_patient(f"Statut{status}"))
        ins = new_ins("male")
        async with db.session() as s:
            row = await s.get(Case, case.case_id)
            assert row is not None
            patient = await s.get(Patient, row.patient_id)
            assert patient is not None
            patient.identity_status = status
            s.add(patient)
            s.add(PatientIdentifier(patient_id=row.patient_id, system="INS-NIR", value=ins,
                                    assigner="1.2.250.1.213.1.4.8"))
        cd = ct_blobs(_from_bourg(case.patient), slices=1)
        url = f"/api/cases/{case.case_id}/imports"
        shown = await coordinator.post(url, files=upload_files(cd))
        confirmation = shown.json()[0]["identity"]["confirmation"]
        done = await coordinator.post(f"{url}?reconcile=true&confirm={confirmation}", files=upload_files(cd))
        assert done.status_code == 200, done.text
        study, series, sop = uids_of(cd[0])
        stored = pydicom.dcmread(io.BytesIO(await local_archive.retrieve_instance(study, series, sop)))
        if status == "qualified":
            [item] = stored.OtherPatientIDsSequence
            assert item.PatientID == ins
            assert item.IssuerOfPatientIDQualifiersSequence[0].UniversalEntityID == "1.2.250.1.213.1.4.8"
        else:
            assert "OtherPatientIDsSequence" not in stored
            assert ins.encode() not in await local_archive.retrieve_instance(study, series, sop)
