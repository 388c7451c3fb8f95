"""Attacks on the studies of a case (issue 13 findings 1, 2 and 13), over HTTP against a running service.

Each test is what a curious insider can do with the demo data: import a file that carries the case patient's IPP
but another patient's study, attach a study by ``study_uids`` on case create or PATCH, find another hospital's
studies by a bare IPP, slip a foreign patient's files in with good ones, replace an existing SOP instance, or
send a large body where only uploads are allowed one. The archive is the app's own (the local archive, and Orthanc
over DICOMweb for the STOW path); a foreign patient's studies are put there directly, as another hospital's
modality would.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import AsyncIterator, Iterator
from datetime import date
from typing import Any

import pydicom
import pytest

from rcp.app import create_app
from rcp.config import Settings
from rcp.db import Database
from rcp.imaging.archive import Archive, open_archive
from rcp.imaging.synthetic import SyntheticPatient
from tests.conftest import Client, sign_in
from tests.factories import HOSPITAL as FACTORY_HOSPITAL
from tests.factories import make_meeting
from tests.security.attack_studies import (
    HOSPITAL,
    CaseOf,
    a_coordinator,
    a_patient,
    ct_blobs,
    meeting_of,
    new_case,
    stored_sops,
    uids_of,
    upload_files,
)
from tests.servers import ServerThread


@pytest.fixture
async def local_archive(settings: Settings, db: Database) -> AsyncIterator[Archive]:
    archive = open_archive(settings, database=db)
    yield archive
    await archive.close()


# --- finding 1: another patient's study through the import route ------------------------------------------------


async def test_import_with_the_case_ipp_and_a_foreign_study_uid_is_refused(login: Any, local_archive: Archive,
                                                                          db: Database) -> None:
    coordinator = await a_coordinator(db, login)
    ours = await new_case(coordinator, a_patient("Victime"))
    foreign = a_patient("Autrui", sex="F", born=date(1970, 1, 1))
    stored = await local_archive.store(ct_blobs(foreign, slices=3))
    foreign_study = (await local_archive.search_studies(patient_id=foreign.patient_id))[0].study_uid
    assert len(stored.stored) == 3
    # One small file: the case patient's identity, the foreign patient's StudyInstanceUID.
    bait = ct_blobs(ours.patient, slices=1, study_uid=foreign_study)
    response = await coordinator.post(f"/api/cases/{ours.case_id}/imports", files=upload_files(bait))
    assert response.status_code == 422, response.text
    body = response.json()
    text = response.text
    assert not any(r["ok"] for r in body)
    assert "Autrui".upper() not in text.upper() and foreign.patient_id not in text  # whose: never said
    case = (await coordinator.get(f"/api/cases/{ours.case_id}")).json()
    assert foreign_study not in case["study_uids"]
    listing = await coordinator.get(f"/api/imaging/studies/{foreign_study}/series?case_id={ours.case_id}")
    assert listing.status_code == 404
    assert uids_of(bait[0])[2] not in await stored_sops(local_archive, foreign_study)


async def test_the_invited_clinicians_version_of_the_attack(login: Any, local_archive: Archive, db: Database
                                                            ) -> None:
    """As the finding was made: an invited clinician, a case of their meeting (refused by role once the policy
    lane guards the route, and by identity in any case)."""
    made = await make_meeting(db, cases=1, invite=("radiologist",))
    clinician = await login(made.invitations[0].user)
    target = made.cases[0]
    ours = SyntheticPatient(target.patient.ipp, FACTORY_HOSPITAL, target.patient.family_name,
                            target.patient.given_names, date(1961, 5, 4), "F")
    foreign = a_patient("Autrui", sex="M", born=date(1950, 2, 2))
    await local_archive.store(ct_blobs(foreign, slices=2))
    foreign_study = (await local_archive.search_studies(patient_id=foreign.patient_id))[0].study_uid
    bait = ct_blobs(ours, slices=1, study_uid=foreign_study)
    response = await clinician.post(f"/api/cases/{target.id}/imports", files=upload_files(bait))
    assert response.status_code in (403, 422), response.text
    assert "AUTRUI" not in response.text.upper()
    case = (await clinician.get(f"/api/cases/{target.id}")).json()
    assert foreign_study not in case["study_uids"]
    listing = await clinician.get(f"/api/imaging/studies/{foreign_study}/series?case_id={target.id}")
    assert listing.status_code == 404
    assert uids_of(bait[0])[2] not in await stored_sops(local_archive, foreign_study)


# --- finding 2: study_uids without the archive check; an IPP without its hospital --------------------------------


async def test_study_uids_on_case_create_and_patch_are_checked_against_the_archive(login: Any,
                                                                                   local_archive: Archive,
                                                                                   db: Database) -> None:
    coordinator = await a_coordinator(db, login)
    foreign = a_patient("Autrui", sex="F", born=date(1970, 1, 1))
    await local_archive.store(ct_blobs(foreign))
    foreign_study = (await local_archive.search_studies(patient_id=foreign.patient_id))[0].study_uid

    meeting = await meeting_of(coordinator)
    victim = a_patient("Victime")
    created = await coordinator.post(f"/api/meetings/{meeting['id']}/cases", json={
        "patient": {"family_name": victim.family_name, "identifiers": [
            {"system": "IPP", "value": victim.patient_id, "assigner": HOSPITAL}]},
        "study_uids": [foreign_study],
    })
    assert created.status_code == 422, created.text
    assert "study_uids" in created.json().get("fields", {})

    ours = await new_case(coordinator, victim)
    patched = await coordinator.patch(f"/api/cases/{ours.case_id}", json={"study_uids": [foreign_study]})
    assert patched.status_code == 422, patched.text
    assert foreign_study not in (await coordinator.get(f"/api/cases/{ours.case_id}")).json()["study_uids"]
    unknown = await coordinator.patch(f"/api/cases/{ours.case_id}", json={"study_uids": ["1.2.3.4.5.6.7.8.9"]})
    assert unknown.status_code == 422, unknown.text


async def test_an_ipp_without_its_hospital_finds_nothing(login: Any, local_archive: Archive,
                                                         db: Database) -> None:
    coordinator = await a_coordinator(db, login)
    # Another hospital's patient, filed under a PatientID that happens to be a bare IPP of ours.
    elsewhere = a_patient("Ailleurs", issuer="CH de Bourg", sex="F", born=date(1944, 2, 2))
    await local_archive.store(ct_blobs(elsewhere))
    their_study = (await local_archive.search_studies(patient_id=elsewhere.patient_id))[0].study_uid
    ours = await new_case(coordinator, a_patient("Sansissuer", issuer="", ipp=elsewhere.patient_id))
    listed = (await coordinator.get(f"/api/cases/{ours.case_id}/studies")).json()
    assert their_study not in [s["study_uid"] for s in listed]
    attach = await coordinator.post(f"/api/cases/{ours.case_id}/studies", json={"study_uids": [their_study]})
    assert attach.status_code in (404, 422), attach.text


async def test_a_study_of_the_same_ipp_under_another_name_is_not_the_patients(login: Any,
                                                                              local_archive: Archive,
                                                                              db: Database) -> None:
    coordinator = await a_coordinator(db, login)
    ours = await new_case(coordinator, a_patient("Martin"))
    impostor = dataclasses.replace(ours.patient, family_name="DOE", given_names="Jane", sex="F",
                                   birth_date=date(1970, 1, 1))
    await local_archive.store(ct_blobs(impostor))
    study = (await local_archive.search_studies(patient_id=impostor.patient_id))[0].study_uid
    listed = (await coordinator.get(f"/api/cases/{ours.case_id}/studies")).json()
    assert study not in [s["study_uid"] for s in listed]
    attach = await coordinator.post(f"/api/cases/{ours.case_id}/studies", json={"study_uids": [study]})
    assert attach.status_code in (404, 422), attach.text


# --- imports: nothing of a mismatching upload is stored; SOP instances are never replaced --------------------------


async def _import_attacks(client: Client, case: CaseOf, archive: Archive) -> None:
    good = ct_blobs(case.patient, slices=2)
    other = a_patient("Autre", sex="F", born=date(1980, 3, 3))
    foreign = ct_blobs(other, slices=1)
    # The same IPP and hospital over another person's traits (issue 14's DOE^JANE row).
    twin = ct_blobs(dataclasses.replace(case.patient, family_name="DOE", given_names="Jane", sex="F",
                                   birth_date=date(1970, 1, 1)), slices=1)
    for bad in (foreign, twin):
        response = await client.post(f"/api/cases/{case.case_id}/imports", files=upload_files([*good, *bad]))
        assert response.status_code == 422, response.text
        results = {r["name"]: r for r in response.json()}
        refused = results["f2.dcm"]
        assert not refused["ok"] and refused["identity"]["fields"]
        # The uploader sees what the file says beside the case's patient (their file, their case).
        assert refused["identity"]["file"]["family_name"].upper() == ("AUTRE" if bad is foreign else "DOE")
        assert refused["identity"]["case"]["family_name"] == case.patient.family_name
        assert not any(r["ok"] for r in results.values())
        for blob in [*good, *bad]:
            study, _series, sop = uids_of(blob)
            assert sop not in await stored_sops(archive, study), "a file of a refused import was stored"

    ok = await client.post(f"/api/cases/{case.case_id}/imports", files=upload_files(good))
    assert ok.status_code == 200, ok.text
    assert all(r["ok"] for r in ok.json())
    study, series, sop = uids_of(good[0])
    original = await archive.retrieve_instance(study, series, sop)
    # Identical bytes again: a no-op, accepted.
    again = await client.post(f"/api/cases/{case.case_id}/imports", files=upload_files([good[0]]))
    assert again.status_code == 200 and again.json()[0]["ok"], again.text
    # Same SOP Instance UID, different content: refused, the stored instance unchanged.
    ds = pydicom.dcmread(io.BytesIO(good[0]))
    ds.SeriesDescription = "REPLACED"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    replaced = await client.post(f"/api/cases/{case.case_id}/imports", files=upload_files([buffer.getvalue()]))
    assert replaced.status_code == 422, replaced.text
    assert "SOP Instance UID" in replaced.json()[0]["message"]
    after = await archive.retrieve_instance(study, series, sop)
    assert pydicom.dcmread(io.BytesIO(after)).get("SeriesDescription") != "REPLACED"
    assert len(after) == len(original)


async def test_imports_into_the_local_archive(login: Any, local_archive: Archive, db: Database) -> None:
    coordinator = await a_coordinator(db, login)
    case = await new_case(coordinator, a_patient("Importe"))
    await _import_attacks(coordinator, case, local_archive)


@pytest.fixture(scope="module")
def orthanc_server(settings: Settings, db: Database, orthanc_url: str) -> Iterator[tuple[ServerThread, str]]:
    """A second node of the service whose archive is Orthanc over DICOMweb (same database)."""
    with ServerThread(create_app(dataclasses.replace(settings, pacs_url=orthanc_url))) as server:
        yield server, orthanc_url


@pytest.mark.orthanc
async def test_imports_into_a_dicomweb_archive(orthanc_server: tuple[ServerThread, str],
                                               db: Database) -> None:
    from rcp.imaging.dicomweb import DicomWebClient

    server, url = orthanc_server
    made = await make_meeting(db, cases=0, invite=())
    coordinator = await sign_in(server.url, made.coordinator.username, made.coordinator.password)
    archive = DicomWebClient(url, retries=1)
    try:
        case = await new_case(coordinator, a_patient("Orthanc"))
        await _import_attacks(coordinator, case, archive)
    finally:
        await archive.close()
        await coordinator.http.aclose()
# --- finding 13: upload limits chosen per route, not by a substring of the path --------------------------------


async def test_a_path_that_merely_contains_imports_gets_the_ordinary_body_limit(anonymous: Any,
                                                                                settings: Settings) -> None:
    body = b"x" * (settings.max_body_bytes + 1)
    response = await anonymous.post("/api/meetings/imports", content=body,
                                    headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 413, response.text


async def test_the_import_route_declares_the_upload_limit(login: Any, settings: Settings, db: Database) -> None:
    """The larger limit is the import route's own (route table), and its working files leave nothing behind."""
    from rcp.app import build_routes
    from rcp.openapi import ApiRoute

    declared = {(r.path, m) for r in build_routes() if isinstance(r, ApiRoute) and r.body_limit == "upload"
                for m in r.methods or ()}
    assert declared == {("/api/cases/{case_id:int}/imports", "POST")}
    coordinator = await a_coordinator(db, login)
    case = await new_case(coordinator, a_patient("Limite"))
    body = b"x" * (settings.max_body_bytes + 1)  # over the JSON limit, far under the upload limit
    response = await coordinator.post(f"/api/cases/{case.case_id}/imports",
                                      files=[("files", ("notes.txt", body, "text/plain"))])
    assert response.status_code == 200, response.text
    assert not response.json()[0]["ok"]
    assert not any((settings.data_dir / "uploads").glob("*/*")), "an upload's working files were left behind"
