"""Demo images for ``rcp demo``: synthetic prior/current CTs, an MR, and pydicom's own small real files.

``rcp demo`` calls ``load_demo_imaging(settings, db)``; the parts can be used alone, once the patients exist::

    from rcp.imaging.demo import load_demo_studies, synthetic_patient
    patients = [synthetic_patient(p.ipp, HOSPITAL_A, p.family_name, p.given_names, p.birth_date, p.sex)
                for p in DEMO_PATIENTS]
    studies = await load_demo_studies(archive, patients)   # {patient_id: [study_uid, ...]}

and attaches the returned study UIDs to the patients' cases. Patients who already have studies in the archive are
left alone, so running the demo twice stores nothing twice.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from rcp.imaging.archive import Archive
from rcp.imaging.synthetic import SyntheticPatient, mr_series, prior_and_current_ct, to_part10

if TYPE_CHECKING:
    from rcp.config import Settings
    from rcp.db import Database

__all__ = ["REAL_FILES", "load_demo_imaging", "load_demo_studies", "real_files_for", "synthetic_patient"]

#: Small real images shipped with pydicom and pydicom-data: CT, MR, multi-frame MR (RLE), ultrasound RGB.
REAL_FILES = ("CT_small.dcm", "MR_small.dcm", "emri_small_RLE.dcm", "US1_UNCR.dcm")

_SEX = {"male": "M", "female": "F", "other": "O", "unknown": "O", "M": "M", "F": "F", "O": "O"}


def synthetic_patient(patient_id: str, issuer: str, family_name: str, given_names: str, birth_date: date | None,
                      sex: str) -> SyntheticPatient:
    """A demo patient as the PACS knows them; ``sex`` may be HL7 (``female``) or DICOM (``F``)."""
    return SyntheticPatient(patient_id, issuer, family_name, given_names, birth_date, _SEX.get(sex, "O"))


def real_files_for(patient: SyntheticPatient, names: Sequence[str] = REAL_FILES) -> list[bytes]:
    """pydicom's reference files re-homed under ``patient`` in one study, each file its own series."""
    study_uid = generate_uid()
    out: list[bytes] = []
    for number, name in enumerate(names, start=10):
        path = get_testdata_file(name, download=False)  # never the network: pydicom would hang retrying
        if path is None:
            continue
        ds = pydicom.dcmread(path)
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.PatientName = patient.dicom_name
        ds.PatientID = patient.patient_id
        ds.IssuerOfPatientID = patient.issuer
        ds.PatientBirthDate = patient.birth_date.strftime("%Y%m%d") if patient.birth_date else ""
        ds.PatientSex = patient.sex
        ds.StudyInstanceUID = study_uid
        ds.StudyDescription = "EXAMENS DE REFERENCE PYDICOM"
        ds.StudyDate = "20260915"
        ds.SeriesInstanceUID = generate_uid()
        ds.SeriesNumber = number
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        out.append(buffer.getvalue())
    return out


def _files(datasets: Sequence[Dataset]) -> list[bytes]:
    return [to_part10(ds) for ds in datasets]


async def load_demo_studies(archive: Archive, patients: Sequence[SyntheticPatient], *, slices: int = 150,
                            size: int = 512, ct_patients: int = 2, mr_patients: int = 1,
                            real_files_patient: int | None = None) -> dict[str, list[str]]:
    """Store demo studies for ``patients``; returns {PatientID: [StudyInstanceUID, ...]} (existing ones included).

    The first ``ct_patients`` get a prior and a current CT (the lesion grows), the next ``mr_patients`` a brain MR,
    and patient ``real_files_patient`` (default: the one after those) pydicom's small real files.
    """
    result: dict[str, list[str]] = {}
    if real_files_patient is None:
        real_files_patient = ct_patients + mr_patients
    for index, patient in enumerate(patients):
        existing = await archive.search_studies(patient_id=patient.patient_id, issuer=patient.issuer or None)
        if existing:
            result[patient.patient_id] = [s.study_uid for s in existing]
            continue
        blobs: list[bytes] = []
        if index < ct_patients:
            prior, current = await asyncio.to_thread(prior_and_current_ct, patient, slices=slices, rows=size,
                                                     columns=size, seed=7 + 2 * index)
            blobs += await asyncio.to_thread(_files, [*prior, *current])
        elif index < ct_patients + mr_patients:
            series = await asyncio.to_thread(mr_series, patient, rows=min(size, 256), columns=min(size, 256))
            blobs += await asyncio.to_thread(_files, series)
        if index == real_files_patient:
            blobs += await asyncio.to_thread(real_files_for, patient)
        if not blobs:
            continue
        for start in range(0, len(blobs), 50):
            await archive.store(blobs[start:start + 50])
        found = await archive.search_studies(patient_id=patient.patient_id, issuer=patient.issuer or None)
        result[patient.patient_id] = [s.study_uid for s in found]
    return result


async def load_demo_imaging(settings: Settings, db: Database, *, slices: int = 150) -> dict[str, list[str]]:
    """What ``rcp demo`` calls: studies for the demo patients, stored in the configured archive, attached to cases.

    Jean-Pierre Lefèbvre (nodule) and Gérard Ferrand (re-evaluation after chemotherapy) get a prior and a current
    CT, Mariam Ouédraogo a brain MR, Anaïs Müller-Nguyen pydicom's small real files.
    """
    from sqlmodel import col, select

    from rcp.demo import DEMO_PATIENTS, HOSPITAL_A
    from rcp.imaging.archive import open_archive
    from rcp.scheduling.models import Case, PatientIdentifier

    order = [0, 2, 3, 1]
    patients = [
        synthetic_patient(p.ipp, HOSPITAL_A, p.family_name, p.given_names, p.birth_date, p.sex)
        for p in (DEMO_PATIENTS[i] for i in order if i < len(DEMO_PATIENTS))
    ]
    archive = open_archive(settings, database=db)
    try:
        studies = await load_demo_studies(archive, patients, slices=slices, ct_patients=2, mr_patients=1,
                                          real_files_patient=3)
    finally:
        await archive.close()
    async with db.session() as session:
        for ipp, uids in studies.items():
            identifiers = (await session.exec(
                select(PatientIdentifier).where(PatientIdentifier.system == "IPP", PatientIdentifier.value == ipp)
            )).all()
            for identifier in identifiers:
                cases = (await session.exec(select(Case).where(col(Case.patient_id) == identifier.patient_id))).all()
                for case in cases:
                    merged = list(dict.fromkeys([*(case.study_uids or []), *uids]))
                    if merged != list(case.study_uids or []):
                        case.study_uids = merged
                        session.add(case)
    return studies
