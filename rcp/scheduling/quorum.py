"""The INCa quorum rule for an RCP, as a pure function.

INCa / HAS criteria (RCP "conditions de qualité", Plan cancer 2003 mesure 31, arrêté du 29 mars 2007): a proposal
is valid only when at least three physicians of different specialties take part, including the specialties the
board requires (for an organ board, by default: surgeon, medical oncologist and radiation oncologist). Each
attendee counts for one specialty only; non-physicians and people marked "outside the quorum" attend without
counting.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rcp.scheduling.specialties import is_physician

__all__ = ["DEFAULT_MINIMUM_SPECIALTIES", "ORGAN_BOARD_REQUIRED", "Attendee", "Quorum", "evaluate_quorum"]

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
