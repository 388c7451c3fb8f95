"""Fixtures for the minutes tests: a complete, valid fiche content to start from."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

TA = "1.2.250.1.213.1.1.4.322"
NCIT = "2.16.840.1.113883.3.26.1.1"
SCT = "2.16.840.1.113883.6.96"

STUDY = "1.2.826.0.1.3680043.8.498.1"
SERIES = "1.2.826.0.1.3680043.8.498.1.1"
SOP = "1.2.826.0.1.3680043.8.498.1.1.1"

BASE: dict[str, Any] = {
    "case_id": 12,
    "meeting_id": 3,
    "patient": {
        "family_name": "Lefèvre", "given_names": "Hélène Françoise", "birth_date": "1958-03-28", "sex": "female",
        "ins": "279035121518989", "ins_system": "1.2.250.1.213.1.4.10", "local_id": "IPP0042",
        "local_id_issuer": "CHU Angers", "identity_status": "qualified",
    },
    "board": {
        "name": "RCP Sein — CHU Angers", "discussion_nature": {"code": "ORG-117", "system": TA},
        "organ": {"code": "76752008", "system": SCT}, "system": {"code": "76752008", "system": SCT},
        "required_specialties": ["surgeon", "medical_oncologist", "radiotherapist"], "minimum_specialties": 3,
    },
    "meeting_date": "2026-11-23",
    "attendees": [
        {"user_id": 1, "name": "Dr Anne Chirurgienne", "specialty": "surgeon"},
        {"user_id": 2, "name": "Dr Bruno Oncologue", "specialty": "medical_oncologist"},
        {"user_id": 3, "name": "Dr Céline Radiothérapeute", "specialty": "radiotherapist"},
        {"user_id": 4, "name": "Dr Denis Interne", "specialty": "radiologist", "quorum_member": False},
    ],
    "study_uids": [STUDY],
    "referring_physician": {"name": "Dr Émile Référent", "specialty": "organ_specialist"},
    "question": "Chirurgie conservatrice d'emblée ou chimiothérapie néoadjuvante ?",
    "clinical_summary": "Patiente de 68 ans, carcinome canalaire infiltrant du sein droit, QSI, 22 mm.",
    "cancer_phase": {"code": "MED-268", "system": TA},
    "tumour_site": {"code": "C50.2", "system": "2.16.840.1.113883.6.3"},
    "histology": {"code": "8500/3", "system": "2.16.840.1.113883.6.43.1"},
    "clinical_tnm": {"t": "T2", "n": "N0", "m": "M0", "edition": "8", "stage": "IIA"},
    "performance_status": {"grade": 1, "scale": "WHO"},
    "key_images": [{"study_uid": STUDY, "series_uid": SERIES, "sop_uid": SOP, "frame": None,
                    "description": "Lésion du QSI droit, 22 mm — rehaussement précoce"}],
    "proposal": {"type": "surgery", "treatments": [{"code": "387713003", "system": SCT}],
                 "details": "Tumorectomie avec ganglion sentinelle, puis radiothérapie selon l'histologie."},
    "guideline": {"conforms": True, "reference": "Référentiel régional sein 2024", "reason": ""},
    "clinical_trial": {"proposed": False, "trial": ""},
    "case_status": "discussed",
    "responsible_physician": {"name": "Dr Bruno Oncologue", "specialty": "medical_oncologist", "user_id": 2},
    "patient_informed": True,
    "gp": {"name": "Dr Gilbert Magné", "specialty": "general_practitioner", "rpps": "10001234567"},
    "correspondents": [{"name": "Dr Zoé Hématologue", "hospital": "CH Cholet"}],
    "comments": "",
}


@pytest.fixture
def content() -> Callable[..., dict[str, Any]]:
    """``content(**overrides)``: a complete fiche content with some top-level keys replaced."""

    def make(**overrides: Any) -> dict[str, Any]:
        data = copy.deepcopy(BASE)
        data.update(copy.deepcopy(overrides))
        return data

    return make


@pytest.fixture
def now() -> datetime:
    return datetime(2026, 11, 23, 15, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def french() -> Iterator[None]:
    """Minutes are read in French by default (the catalogs are the lead's: web/locale/fr)."""
    from rcp.i18n import current_locale

    token = current_locale.set("fr")
    try:
        yield
    finally:
        current_locale.reset(token)
