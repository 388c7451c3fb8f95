"""The INCa quorum rule for an RCP, as a pure function.

INCa / HAS criteria (RCP "conditions de qualité", Plan cancer 2003 mesure 31, arrêté du 29 mars 2007): a proposal
is valid only when at least three physicians of different specialties take part, including the specialties the
board requires (for an organ board, by default: surgeon, medical oncologist and radiation oncologist). Each
attendee counts for one specialty only; non-physicians and people marked "outside the quorum" attend without
counting.

The same criteria ask that the quorum be able to give "un avis pertinent sur toutes les procédures envisagées": a
proposal is valid only if a physician of the specialty that delivers each proposed treatment took part. A quorum
met by radiologist + pathologist + GP cannot propose radiotherapy. :func:`treatment_gaps` names, for the FRCP
treatment codes of a proposal, the specialties nobody in the quorum covers; the minutes refuse to sign such a
proposal (``rcp.minutes.versions``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from rcp.scheduling.specialties import is_physician

__all__ = [
    "DEFAULT_MINIMUM_SPECIALTIES",
    "ORGAN_BOARD_REQUIRED",
    "TREATMENT_SPECIALTIES",
    "Attendee",
    "Quorum",
    "TreatmentGap",
    "evaluate_quorum",
    "treatment_gaps",
]

DEFAULT_MINIMUM_SPECIALTIES = 3
ORGAN_BOARD_REQUIRED: tuple[str, ...] = ("surgeon", "medical_oncologist", "radiotherapist")


@dataclass(frozen=True)
class Attendee:
    user_id: int
    specialty: str
    #: False for someone present "hors quorum" (an intern, a guest, a second surgeon by choice).
    counts: bool = True


@dataclass(frozen=True)
class Quorum:
    met: bool
    #: Distinct physician specialties that count.
    specialties: tuple[str, ...]
    #: Required specialties nobody present covers, in the board's order.
    missing: tuple[str, ...]
    #: How many more distinct specialties are needed beyond ``missing`` to reach the minimum.
    short_by: int
    minimum: int

    @property
    def status_code(self) -> str:
        """CI-SIS JDV_StatutQuorum_CISIS code: ORG-126 quorum met, ORG-133 not met."""
        return "ORG-126" if self.met else "ORG-133"


def evaluate_quorum(
    attendees: Iterable[Attendee],
    required: Sequence[str],
    *,
    minimum: int = DEFAULT_MINIMUM_SPECIALTIES,
) -> Quorum:
    """Whether ``attendees`` make a valid RCP for a board requiring ``required``.

    >>> q = evaluate_quorum([Attendee(1, "surgeon"), Attendee(2, "radiologist")], ["surgeon", "pathologist"])
    >>> q.met, q.missing, q.short_by
    (False, ('pathologist',), 0)
    """
    present = tuple(dict.fromkeys(a.specialty for a in attendees if a.counts and is_physician(a.specialty)))
    missing = tuple(s for s in required if s not in present)
    # Filling the missing specialties also adds distinct specialties; only what remains beyond them is "short".
    short_by = max(0, minimum - len(present) - len(missing))
    return Quorum(
        met=not missing and len(present) >= minimum,
        specialties=present,
        missing=missing,
        short_by=short_by,
        minimum=minimum,
    )


_SCT = "2.16.840.1.113883.6.96"
_NCIT = "2.16.840.1.113883.3.26.1.1"
_TA_ASIP = "1.2.250.1.213.1.1.4.322"

#: Who delivers each treatment of JDV_TypeTraitement_FRCP_CISIS (1.2.250.1.213.1.1.5.595, the FR-Acte codes of the
#: fiche's plan of care), keyed by (code system OID, code): a proposal with that treatment needs one physician of
#: *any* of the listed specialties in the quorum. The service counts a haematologist, or an organ specialist who
#: prescribes cancer drugs, as a medical oncologist (their invitation's specialty), so "medical_oncologist" stands
#: for whoever prescribes systemic treatment. Codes not listed (surveillance, supportive and palliative care,
#: "other treatments") need no particular specialty.
TREATMENT_SPECIALTIES: Mapping[tuple[str, str], tuple[str, ...]] = {
    (_SCT, "387713003"): ("surgeon",),  # intervention chirurgicale
    (_NCIT, "C15313"): ("radiotherapist",),  # radiothérapie
    (_NCIT, "C15195"): ("radiotherapist",),  # curiethérapie
    (_TA_ASIP, "MED-232"): ("nuclear_medicine", "radiotherapist"),  # irathérapie (iodine 131: nuclear medicine)
    (_NCIT, "C15632"): ("medical_oncologist",),  # chimiothérapie
    (_NCIT, "C93352"): ("medical_oncologist",),  # thérapie ciblée
    (_NCIT, "C547"): ("medical_oncologist",),  # hormonothérapie
    (_NCIT, "C15262"): ("medical_oncologist",),  # immunothérapie
    (_TA_ASIP, "GEN-092.03.02"): ("medical_oncologist",),  # autre(s) traitement(s) médicamenteux spécifique(s)
    (_TA_ASIP, "MED-556"): ("medical_oncologist",),  # fenêtre thérapeutique (a pause of systemic treatment)
    (_TA_ASIP, "MED-126"): ("medical_oncologist",),  # allogreffe / autogreffe (haematologists)
    (_NCIT, "C63334"): ("radiologist",),  # radiologie interventionnelle
    (_NCIT, "C157891"): ("gastroenterologist", "pulmonologist"),  # endoscopie interventionnelle
}


@dataclass(frozen=True)
class TreatmentGap:
    """A proposed treatment (its FRCP code) whose specialty nobody in the quorum covers."""

    system: str
    code: str
    #: Any one of these specialties would do (``TREATMENT_SPECIALTIES``).
    needs: tuple[str, ...]


def treatment_gaps(treatments: Iterable[tuple[str, str]], attendees: Iterable[Attendee]) -> tuple[TreatmentGap, ...]:
    """The proposed treatments (``(system OID, code)`` pairs) that no counting physician present can answer for.

    Only quorum members count, as in :func:`evaluate_quorum`: a radiotherapist present "outside the quorum" is
    not the board's radiotherapist. Each code is reported once, in the proposal's order.

    >>> gaps = treatment_gaps([("2.16.840.1.113883.3.26.1.1", "C15313")],
    ...                       [Attendee(1, "surgeon"), Attendee(2, "radiotherapist", counts=False)])
    >>> [(g.code, g.needs) for g in gaps]
    [('C15313', ('radiotherapist',))]
    """
    present = {a.specialty for a in attendees if a.counts and is_physician(a.specialty)}
    gaps: dict[tuple[str, str], TreatmentGap] = {}
    for system, code in treatments:
        needs = TREATMENT_SPECIALTIES.get((system, code), ())
        if needs and not present.intersection(needs):
            gaps.setdefault((system, code), TreatmentGap(system=system, code=code, needs=needs))
    return tuple(gaps.values())
