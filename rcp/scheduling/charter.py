"""A board's charter: what kind of board it is (a coded FRCP type) and which specialties make its quorum.

The fiche RCP (CI-SIS FRCP 2022.01) says of every discussion what kind of board held it (observation GEN-098,
JDV_NatureDiscussion_CISIS): an organ board, ORG-117 "RCP Appareil - Organes", coded with the system concerned
(observation ORG-118, JDV_RCP_Appareil_CISIS, 1..1), or a transversal / supportive-care board, ORG-132 "RCP
Transversale et de soins de support", coded with its treatment or care (observation ORG-138,
JDV_TraitementSoins_FRCP_CISIS). A board's type is one concept of those two value sets; the organ board's finer
organ (JDV_RCP_Organe_CISIS) stays the board's optional ``tumour_site``.

The concepts are copied here, unchanged, from the SVS files the minutes ship (``rcp/minutes/valuesets/``, from
ansforge/TestContenuCDA-3-0 commit 7cd489b39368809df9bcf2cfef5e5d6354438a02): JDV_RCP_Appareil_CISIS
(1.2.250.1.213.1.1.5.597, revision 2023-07-07) and JDV_TraitementSoins_FRCP_CISIS (1.2.250.1.213.1.1.5.596,
revision 2023-07-25). Scheduling sits below the minutes (``DESIGN.md`` §2), so it cannot read them through
``rcp.minutes.codes``; ``tests/scheduling/test_charter.py`` checks that this copy and the files agree.

Default required specialties (INCa, "critères qualité des RCP", Plan cancer 2003 mesure 31, circulaire
DHOS/SDO/2005/101; arrêté du 29 mars 2007): an organ board's quorum holds the three specialties that propose the
standard treatments, surgeon, medical oncologist and radiation oncologist
(:data:`rcp.scheduling.quorum.ORGAN_BOARD_REQUIRED`). The haematopoietic system is the exception among the organ
types: haematology boards treat without surgeons or, mostly, radiotherapy, and their physicians are haematologists,
which the service counts as medical oncologists; their default is the medical oncologist alone. A transversal board's
quorum depends on its purpose: oncogeriatrics needs a geriatric oncologist, palliative care a palliative-care
physician, the others none by default. The minimum of three distinct physician specialties applies to every board
whatever its required ones. A coordinator of the board changes any of it (``PATCH /api/boards/{id}``, the board's
charter page).

    >>> board_type("312419003").nature, board_type("312419003").display
    ('organ', 'appareil respiratoire et/ou cavité thoracique')
    >>> default_required(board_type("ORG-130"))
    ('geriatric_oncologist',)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from rcp.scheduling.quorum import ORGAN_BOARD_REQUIRED

__all__ = [
    "BOARD_TYPES",
    "NATURE_CODES",
    "BoardType",
    "board_type",
    "default_required",
]

_SCT = "2.16.840.1.113883.6.96"
_NCIT = "2.16.840.1.113883.3.26.1.1"
_TA_ASIP = "1.2.250.1.213.1.1.4.322"

Nature = Literal["organ", "transversal"]

#: JDV_NatureDiscussion_CISIS (TA_ASIP) code of each nature of board.
NATURE_CODES: Mapping[str, str] = {"organ": "ORG-117", "transversal": "ORG-132"}


@dataclass(frozen=True)
class BoardType:
    """One concept of JDV_RCP_Appareil_CISIS (an organ board) or JDV_TraitementSoins_FRCP_CISIS (transversal)."""

    code: str
    system: str
    #: The official (French) display of the value set: coded values are shown as published.
    display: str
    nature: Nature

    @property
    def value_set(self) -> str:
        return "JDV_RCP_Appareil_CISIS" if self.nature == "organ" else "JDV_TraitementSoins_FRCP_CISIS"

    @property
    def nature_code(self) -> str:
        return NATURE_CODES[self.nature]


def _organ(code: str, display: str) -> BoardType:
    return BoardType(code, _SCT, display, "organ")


BOARD_TYPES: tuple[BoardType, ...] = (
    # JDV_RCP_Appareil_CISIS 1.2.250.1.213.1.1.5.597 (all SNOMED CT), in publication order.
    _organ("387910009", "glande endocrine"),
    _organ("57171008", "structure du système hématopoïétique"),
    _organ("81745001", "œil"),
    _organ("272673000", "os"),
    _organ("39937001", "peau"),
    _organ("76752008", "sein"),
    _organ("86762007", "système digestif"),
    _organ("53065001", "appareil génital féminin"),
    _organ("90264002", "appareil génital masculin"),
    _organ("25087005", "système nerveux"),
    _organ("122489005", "système urinaire"),
    _organ("312419003", "appareil respiratoire et/ou cavité thoracique"),
    _organ("87784001", "tissus mous"),
    _organ("119253004", "voie aérodigestive supérieure"),
    # JDV_TraitementSoins_FRCP_CISIS 1.2.250.1.213.1.1.5.596, in publication order.
    BoardType("C3580", _NCIT, "métastases osseuses", "transversal"),
    BoardType("C3303", _NCIT, "douleur", "transversal"),
    BoardType("C15252", _NCIT, "soins palliatifs", "transversal"),
    BoardType("C63334", _NCIT, "Radiologie interventionnelle", "transversal"),
    BoardType("C15747", _NCIT, "soins de support", "transversal"),
    BoardType("ORG-129", _TA_ASIP, "Oncogénétique", "transversal"),
    BoardType("ORG-130", _TA_ASIP, "Oncogériatrie", "transversal"),
    BoardType("C16832", _NCIT, "oncologie médicale", "transversal"),
    BoardType("C71326", _NCIT, "préservation de la fertilité", "transversal"),
    BoardType("C7201", _NCIT, "tumeur rare", "transversal"),
)

_BY_CODE = {t.code: t for t in BOARD_TYPES}
#: Haematopoietic system boards: see the module docstring.
_HAEMATOLOGY = "57171008"
#: Transversal boards whose purpose names the specialty they cannot do without.
_TRANSVERSAL_REQUIRED: Mapping[str, tuple[str, ...]] = {
    "ORG-130": ("geriatric_oncologist",),
    "C15252": ("palliative_care",),
}


def board_type(code: str) -> BoardType:
    """The board type coded ``code``; ``ValueError`` says which value sets were searched (the codes of the two
    value sets do not overlap, so the code alone names the concept)."""
    try:
        return _BY_CODE[code.strip()]
    except KeyError:
        raise ValueError(
            f"unknown board type {code!r}: expected a code of JDV_RCP_Appareil_CISIS (an organ board, e.g. "
            "312419003 for the thorax) or JDV_TraitementSoins_FRCP_CISIS (a transversal board, e.g. ORG-130)"
        ) from None


def default_required(kind: BoardType | None) -> tuple[str, ...]:
    """The required specialties a new board of this type starts with (module docstring: INCa criteria).

    A board whose type is not known yet is treated as the standard organ board it most likely is.
    """
    if kind is None or (kind.nature == "organ" and kind.code != _HAEMATOLOGY):
        return ORGAN_BOARD_REQUIRED
    if kind.code == _HAEMATOLOGY:
        return ("medical_oncologist",)
    return _TRANSVERSAL_REQUIRED.get(kind.code, ())
