"""The specialties that sit on a tumour board, with stable keys stored in the database.

Keys are ours (stable, ASCII); labels go through gettext. The French national code (TRE_R38 "savoir-faire",
code system 1.2.250.1.213.1.1.4.5, as used by the CI-SIS fiche RCP examples) is given where known, so that
CDA/FHIR exports can code attendees.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PHYSICIAN_SPECIALTIES", "SPECIALTIES", "Specialty", "is_physician", "specialty"]


@dataclass(frozen=True)
class Specialty:
    key: str
    label: str  # English source string; translated through gettext at display time
    #: TRE_R38 code (e.g. "G15_10/SM36"), or "" when not mapped.
    national_code: str = ""
    #: INCa quorum counts physicians only; a nurse coordinator attends but does not count.
    physician: bool = True


SPECIALTIES: tuple[Specialty, ...] = (
    Specialty("surgeon", "Surgeon"),
    Specialty("medical_oncologist", "Medical oncologist", "G15_10/SM36"),
    Specialty("radiotherapist", "Radiation oncologist", "G15_10/SM45"),
    Specialty("radiologist", "Radiologist"),
    Specialty("pathologist", "Pathologist"),
    Specialty("pulmonologist", "Pulmonologist"),
    Specialty("gastroenterologist", "Gastroenterologist"),
    Specialty("nuclear_medicine", "Nuclear medicine physician"),
    Specialty("organ_specialist", "Organ specialist"),
    Specialty("palliative_care", "Palliative care physician"),
    Specialty("geriatric_oncologist", "Geriatric oncologist"),
    Specialty("general_practitioner", "General practitioner"),
    Specialty("nurse_coordinator", "Nurse coordinator", physician=False),
    Specialty("secretary", "Board secretary", physician=False),
)

_BY_KEY = {s.key: s for s in SPECIALTIES}
PHYSICIAN_SPECIALTIES = frozenset(s.key for s in SPECIALTIES if s.physician)


def specialty(key: str) -> Specialty:
    """The specialty named ``key``; ``ValueError`` names the accepted keys otherwise."""
    try:
        return _BY_KEY[key]
    except KeyError:
        raise ValueError(f"unknown specialty {key!r}; expected one of {', '.join(_BY_KEY)}") from None


def is_physician(key: str) -> bool:
    return key in PHYSICIAN_SPECIALTIES
