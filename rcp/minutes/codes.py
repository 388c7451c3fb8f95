"""The CI-SIS value sets of the French fiche RCP, as typed codings.

The fiche RCP (ANS CI-SIS volet "FRCP" 2022.01, document type LOINC 34794-8) codes its observations with value
sets published as IHE SVS files (ITI-48 ``RetrieveValueSetResponse``). We ship those files unchanged in
``rcp/minutes/valuesets/`` and read them with the standard library, so that the decision record stores the very
(code, code system OID, display) triples a CDA R2 FRCP, a FHIR Composition or an HL7 v2 MDM export needs.

    >>> quorum_status(True)
    Coding(code='ORG-126', system='1.2.250.1.213.1.1.4.322', display='Quorum atteint')
    >>> value_set(TREATMENT_TYPE).lookup("C15313").display
    'radiothérapie'

A concept is identified by its code *and* its code system: ``JDV_RCP_Organe_CISIS`` mixes SNOMED CT, NCIt,
CIM-10 and TA_ASIP codes.
"""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from typing import Any

__all__ = [
    "CANCER_PHASE",
    "CASE_STATUS",
    "DISCUSSION_NATURE",
    "DOCUMENT_STATUS",
    "FURTHER_INVESTIGATIONS",
    "MORPHOLOGY",
    "OIDS",
    "PERFORMANCE_INTERPRETATION",
    "PERFORMANCE_STATUS",
    "PROPOSAL_TREATMENTS",
    "QUORUM_STATUS",
    "RCP_ORGAN",
    "RCP_SYSTEM",
    "SUPPORTIVE_CARE",
    "TREATMENT_TYPE",
    "TUMOUR",
    "Coding",
    "ProposalType",
    "ValueSet",
    "case_status",
    "coding_from_json",
    "performance_interpretation",
    "performance_status",
    "proposal_coding",
    "quorum_status",
    "treatment_kind",
    "value_set",
]

_SVS = "{urn:ihe:iti:svs:2008}"

#: Code systems by OID, with the names the CI-SIS examples give in ``codeSystemName``.
OIDS: Mapping[str, str] = {
    "1.2.250.1.213.1.1.4.322": "TA_ASIP",
    "2.16.840.1.113883.6.96": "SNOMED CT",
    "2.16.840.1.113883.3.26.1.1": "NCIt",
    "2.16.840.1.113883.6.3": "CIM-10",
    "2.16.840.1.113883.6.43.1": "CIM-O-3",
    "2.16.840.1.113883.6.1": "LOINC",
}
TA_ASIP = "1.2.250.1.213.1.1.4.322"

# Value set names (the SVS displayName, which is also the file name).
QUORUM_STATUS = "JDV_StatutQuorum_CISIS"
DISCUSSION_NATURE = "JDV_NatureDiscussion_CISIS"
CASE_STATUS = "JDV_StatutCasPresente_CISIS"
CANCER_PHASE = "JDV_PhaseCancer_CISIS"
PERFORMANCE_STATUS = "JDV_OMSEchPerf_CISIS"
PERFORMANCE_INTERPRETATION = "JDV_OMSInterpret_CISIS"
RCP_ORGAN = "JDV_RCP_Organe_CISIS"
RCP_SYSTEM = "JDV_RCP_Appareil_CISIS"
TREATMENT_TYPE = "JDV_TypeTraitement_FRCP_CISIS"
SUPPORTIVE_CARE = "JDV_TraitementSoins_FRCP_CISIS"
TUMOUR = "JDV_Tumeur_CISIS"
MORPHOLOGY = "JDV_Morphologie_CISIS"
DOCUMENT_STATUS = "JDV_StatutDoc_CISIS"


@dataclass(frozen=True)
class Coding:
    """One coded value: HL7 CD / FHIR Coding. ``system`` is the code system OID (CDA ``codeSystem``)."""

    code: str
    system: str
    display: str = ""

    def __post_init__(self) -> None:
        if not self.code or not self.code.strip():
            raise ValueError("'code' must not be empty")
        if not self.system or not all(part.isdigit() for part in self.system.split(".")):
            raise ValueError(f"'system' must be an OID such as 2.16.840.1.113883.6.96 (got {self.system!r})")

    @property
    def system_name(self) -> str:
        """The ``codeSystemName`` of a CDA export ("SNOMED CT"), or the OID when we do not know it."""
        return OIDS.get(self.system, self.system)

    def as_json(self) -> dict[str, str]:
        return {"code": self.code, "system": self.system, "display": self.display}


def coding_from_json(data: Any) -> Coding:
    """A :class:`Coding` from ``{"code", "system", "display"}``; ``ValueError`` says what is wrong."""
    if not isinstance(data, Mapping):
        raise ValueError("expected an object with 'code' and 'system'")  # noqa: TRY004 - callers catch ValueError
    code, system, display = data.get("code"), data.get("system"), data.get("display", "")
    if not isinstance(code, str) or not isinstance(system, str) or not isinstance(display, str):
        raise ValueError("'code', 'system' and 'display' must be strings")  # noqa: TRY004
    return Coding(code, system, display)


@dataclass(frozen=True)
class ValueSet:
    """An SVS value set: its OID, name, and concepts in publication order."""

    oid: str
    name: str
    revision: str
    concepts: tuple[Coding, ...]

    @functools.cached_property
    def _index(self) -> dict[tuple[str, str], Coding]:
        return {(c.system, c.code): c for c in self.concepts}

    def __iter__(self) -> Iterator[Coding]:
        return iter(self.concepts)

    def __len__(self) -> int:
        return len(self.concepts)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, Coding):
            return (item.system, item.code) in self._index
        return False

    def lookup(self, code: str, system: str | None = None) -> Coding:
        """The concept ``code`` (in ``system`` when given, which matters for mixed value sets).

        ``KeyError`` names the value set, never a guess; a code that exists in several systems needs ``system``.
        """
        if system is not None:
            try:
                return self._index[(system, code)]
            except KeyError:
                raise KeyError(f"code {code!r} of system {system} is not in value set {self.name}") from None
        found = [c for c in self.concepts if c.code == code]
        if not found:
            raise KeyError(f"code {code!r} is not in value set {self.name}")
        if len(found) > 1:
            raise KeyError(f"code {code!r} is in several code systems of {self.name}; give the system OID")
        return found[0]

    def validate(self, coding: Coding) -> Coding:
        """The canonical concept (with the official display) for ``coding``; ``ValueError`` if not a member."""
        try:
            return self._index[(coding.system, coding.code)]
        except KeyError:
            raise ValueError(
                f"code {coding.code!r} (system {coding.system}) is not in value set {self.name} ({self.oid})"
            ) from None


def _parse(xml: bytes, name: str) -> ValueSet:
    root = ET.fromstring(xml)
    node = root.find(f"{_SVS}ValueSet")
    if node is None:
        raise ValueError(f"{name}: not an IHE SVS RetrieveValueSetResponse")
    concepts = tuple(
        Coding(c.attrib["code"], c.attrib["codeSystem"], c.attrib.get("displayName", ""))
        for c in node.iter(f"{_SVS}Concept")
        # dateFin: end of validity; a retired concept stays in the file but must not be used for new documents.
        if not c.attrib.get("dateFin")
    )
    return ValueSet(
        oid=node.attrib["id"],
        name=node.attrib.get("displayName", name),
        revision=node.attrib.get("revisionDate", ""),
        concepts=concepts,
    )


@functools.cache
def value_set(name: str) -> ValueSet:
    """The value set ``name`` (e.g. :data:`TREATMENT_TYPE`), read once from the package data."""
    try:
        xml = resources.files("rcp.minutes").joinpath("valuesets", f"{name}.xml").read_bytes()
    except FileNotFoundError:
        raise KeyError(f"no value set named {name!r} in rcp/minutes/valuesets") from None
    return _parse(xml, name)


# -- Typed lookups for the fields of the fiche ------------------------------------------------------------------


def quorum_status(met: bool | None) -> Coding:
    """JDV_StatutQuorum_CISIS: ORG-126 met, ORG-133 not met, GEN-010 unknown (observation ORG-125)."""
    code = "GEN-010" if met is None else ("ORG-126" if met else "ORG-133")
    return value_set(QUORUM_STATUS).lookup(code, TA_ASIP)


def case_status(discussed: bool) -> Coding:
    """JDV_StatutCasPresente_CISIS (observation ORG-127): ORG-134 case discussed, ORG-128 only registered."""
    return value_set(CASE_STATUS).lookup("ORG-134" if discussed else "ORG-128", TA_ASIP)


#: WHO performance status grades 0-4 to JDV_OMSEchPerf_CISIS (MED-240, then MED-264..267: not a typo).
_WHO_GRADES = ("MED-240", "MED-264", "MED-265", "MED-266", "MED-267")
#: The LOINC answer list LL529-9 (ECOG) used as interpretationCode in the CI-SIS examples.
_WHO_INTERPRETATIONS = ("LA9622-7", "LA9623-5", "LA9624-3", "LA9625-0", "LA9626-8")


def _grade(grade: int) -> int:
    if isinstance(grade, bool) or not isinstance(grade, int) or not 0 <= grade <= 4:
        raise ValueError(f"WHO/ECOG performance status is a grade from 0 to 4 (got {grade!r})")
    return grade


def performance_status(grade: int) -> Coding:
    """The WHO (= ECOG) performance status grade as coded by observation MED-239."""
    return value_set(PERFORMANCE_STATUS).lookup(_WHO_GRADES[_grade(grade)], TA_ASIP)


def performance_interpretation(grade: int) -> Coding:
    return value_set(PERFORMANCE_INTERPRETATION).lookup(_WHO_INTERPRETATIONS[_grade(grade)])


class ProposalType(StrEnum):
    """The kind of proposal a board makes, as clinicians name it; each maps onto CI-SIS codes."""

    surgery = "surgery"
    systemic_therapy = "systemic_therapy"
    radiotherapy = "radiotherapy"
    combined = "combined"
    surveillance = "surveillance"
    further_investigations = "further_investigations"
    palliative_care = "palliative_care"
    other = "other"


_NCIT = "2.16.840.1.113883.3.26.1.1"
_SCT = "2.16.840.1.113883.6.96"

#: Which JDV_TypeTraitement_FRCP_CISIS codes (system, code) fit each proposal type. "combined" takes codes of at
#: least two therapeutic types; "further_investigations" has no treatment: it is the FRCP plan-of-care entry
#: FR-Demande-d-examen-ou-de-suivi (ORG-064), see :func:`proposal_coding`.
PROPOSAL_TREATMENTS: Mapping[ProposalType, frozenset[tuple[str, str]]] = {
    ProposalType.surgery: frozenset({(_SCT, "387713003"), (_NCIT, "C63334"), (_NCIT, "C157891")}),
    ProposalType.systemic_therapy: frozenset(
        {(_NCIT, "C15632"), (_NCIT, "C93352"), (_NCIT, "C547"), (_NCIT, "C15262"), (TA_ASIP, "GEN-092.03.02"),
         (TA_ASIP, "MED-556"), (TA_ASIP, "MED-126")}
    ),
    ProposalType.radiotherapy: frozenset({(_NCIT, "C15313"), (_NCIT, "C15195"), (TA_ASIP, "MED-232")}),
    ProposalType.surveillance: frozenset({(TA_ASIP, "MED-226"), (TA_ASIP, "MED-227")}),
    ProposalType.palliative_care: frozenset({(_NCIT, "C15252"), (_NCIT, "C15747")}),
    ProposalType.further_investigations: frozenset(),
    ProposalType.other: frozenset({(TA_ASIP, "GEN-092.03.01")}),
}

#: The single code that stands for a proposal type when no finer treatment is chosen.
_DEFAULT_PROPOSAL_CODE: Mapping[ProposalType, tuple[str, str]] = {
    ProposalType.surgery: (_SCT, "387713003"),
    ProposalType.systemic_therapy: (TA_ASIP, "GEN-092.03.02"),
    ProposalType.radiotherapy: (_NCIT, "C15313"),
    ProposalType.surveillance: (TA_ASIP, "MED-226"),
    ProposalType.palliative_care: (_NCIT, "C15252"),
    ProposalType.other: (TA_ASIP, "GEN-092.03.01"),
}

#: FR-Demande-d-examen-ou-de-suivi entry code (TA_ASIP), as in the FRCP 2022.01 examples' plan of care.
FURTHER_INVESTIGATIONS = Coding("ORG-064", TA_ASIP, "Demande d'examen ou de suivi")


def proposal_coding(kind: ProposalType) -> Coding | None:
    """The CI-SIS coding a proposal type stands for without detail (None for "combined": list its parts)."""
    if kind is ProposalType.further_investigations:
        return FURTHER_INVESTIGATIONS
    pair = _DEFAULT_PROPOSAL_CODE.get(kind)
    if pair is None:
        return None
    return value_set(TREATMENT_TYPE).lookup(pair[1], pair[0])


def treatment_kind(coding: Coding) -> ProposalType | None:
    """Which proposal type a treatment code belongs to (None if it is not a treatment we classify)."""
    for kind, members in PROPOSAL_TREATMENTS.items():
        if (coding.system, coding.code) in members:
            return kind
    return None
