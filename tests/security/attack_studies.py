"""Patients, cases and DICOM files for the attacks on studies and imports (issue 13): a synthetic patient, a
coordinator with a meeting of the test's own, a case made through the API, small CTs as Part 10 bytes and as an
upload, and what an archive holds of a study. Shared by test_studies and test_import_reconciliation."""

from __future__ import annotations

import io
import secrets
from dataclasses import dataclass
from datetime import date
from typing import Any

import pydicom

from rcp.db import Database
from rcp.imaging.archive import Archive
from rcp.imaging.synthetic import SyntheticPatient, ct_series, to_part10
from tests.conftest import Client
from tests.factories import make_meeting

__all__ = [
    "HOSPITAL",
    "CaseOf",
    "a_coordinator",
    "a_patient",
    "ct_blobs",
    "meeting_of",
    "new_case",
    "stored_sops",
    "uids_of",
    "upload_files",
]

HOSPITAL = "CHU de Lyon"


@dataclass(frozen=True)
class CaseOf:
    case_id: int
    patient: SyntheticPatient


def a_patient(family: str, *, issuer: str = HOSPITAL, sex: str = "M", born: date = date(1961, 6, 15),
             ipp: str | None = None) -> SyntheticPatient:
    return SyntheticPatient(ipp or f"IPPS{secrets.randbelow(10**8):08d}", issuer, family,
                            "Éloi" if sex == "M" else "Inès", born, sex)


async def a_coordinator(db: Database, login: Any) -> Client:
    """The coordinator of a board of the test's own, with one scheduled meeting and nobody invited."""
    made = await make_meeting(db, cases=0, invite=())
    client: Client = await login(made.coordinator)
    return client


async def meeting_of(coordinator: Client) -> dict[str, Any]:
    [meeting] = (await coordinator.get("/api/meetings?when=upcoming")).json()  # the test's own, alone
    return dict(meeting)


async def new_case(coordinator: Client, patient: SyntheticPatient, **extra: Any) -> CaseOf:
    meeting = await meeting_of(coordinator)
    response = await coordinator.post(f"/api/meetings/{meeting['id']}/cases", json={
        "patient": {"family_name": patient.family_name, "given_names": patient.given_names,
                    "birth_date": patient.birth_date.isoformat() if patient.birth_date else None,
                    "sex": {"M": "male", "F": "female"}.get(patient.sex, "unknown"),
                    "identifiers": [{"system": "IPP", "value": patient.patient_id, "assigner": patient.issuer}]},
        "question": "Bilan ?", "referring_physician": "Dr Test",
        # A fresh patient with an IPP of its own, created on purpose beside its look-alikes of other tests.
        "duplicates_checked": True, **extra,
    })
    assert response.status_code == 201, response.text
    return CaseOf(int(response.json()["id"]), patient)


def ct_blobs(patient: SyntheticPatient, *, slices: int = 2, study_uid: str | None = None) -> list[bytes]:
    datasets = ct_series(patient, slices=slices, rows=16, columns=16)
    if study_uid is not None:
        for ds in datasets:
            ds.StudyInstanceUID = study_uid
    return [to_part10(ds) for ds in datasets]


def uids_of(blob: bytes) -> tuple[str, str, str]:
    ds = pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def upload_files(blobs: list[bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (f"f{i}.dcm", blob, "application/dicom")) for i, blob in enumerate(blobs)]


async def stored_sops(archive: Archive, study_uid: str) -> set[str]:
    found: set[str] = set()
    for study in await archive.search_studies(study_uid=study_uid):
        for series in await archive.list_series(study.study_uid):
            found |= {i.sop_uid for i in await archive.list_instances(study.study_uid, series.series_uid)}
    return found
