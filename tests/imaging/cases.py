"""A case with imaging for the case-panel tests and their browser counterpart: a fresh patient with a case on a
meeting of the test's own (``tests.factories.make_meeting``), made through the scheduling API, and a prior and a current
synthetic CT of that patient in the app's archive (not attached: attaching is what the tests do)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date
from typing import Any

from rcp.config import Settings
from rcp.db import Database
from rcp.imaging.archive import open_archive
from rcp.imaging.synthetic import SyntheticPatient, prior_and_current_ct, to_part10

__all__ = ["HOSPITAL", "ImagingCase", "new_imaging_case"]

HOSPITAL = "CHU de Lyon"


@dataclass(frozen=True)
class ImagingCase:
    case_id: int
    meeting_id: int
    patient: SyntheticPatient
    prior_uid: str
    current_uid: str


async def new_imaging_case(coordinator: Any, settings: Settings, db: Database, *, meeting_id: int, slices: int = 8,
                           size: int = 64, family_name: str = "Testimagerie") -> ImagingCase:
    """A fresh patient with a case on meeting ``meeting_id`` (whose board ``coordinator`` runs), and a prior and a
    current CT of that patient in the archive (not attached: attaching is what the tests do)."""
    ipp = f"IPPT{secrets.randbelow(10**8):08d}"
    given, birth = "Éloi", date(1961, 6, 15)
    response = await coordinator.post(f"/api/meetings/{meeting_id}/cases", json={
        "patient": {"family_name": family_name, "given_names": given, "birth_date": birth.isoformat(), "sex": "male",
                    "identifiers": [{"system": "IPP", "value": ipp, "assigner": HOSPITAL}]},
        "question": "Bilan d'extension ?", "referring_physician": "Dr Test",
        # A fresh patient with an IPP of its own, created on purpose beside its look-alikes of other tests.
        "duplicates_checked": True,
    })
    assert response.status_code == 201, response.text
    case_id = int(response.json()["id"])
    patient = SyntheticPatient(ipp, HOSPITAL, family_name, given, birth, "M")
    prior, current = prior_and_current_ct(patient, slices=slices, rows=size, columns=size, seed=11)
    archive = open_archive(settings, database=db)
    try:
        await archive.store([to_part10(ds) for ds in [*prior, *current]])
    finally:
        await archive.close()
    return ImagingCase(case_id, meeting_id, patient, str(prior[0].StudyInstanceUID),
                       str(current[0].StudyInstanceUID))
