"""A board's registration: the establishment it belongs to and the national identifiers the fiche RCP carries.

The CI-SIS fiche RCP (CANCER-FRCP 2022.01) names the meeting in its header by three national identifiers, each
1..1 (``encompassingEncounter/id``): the regional cancer network (RRC, *réseau régional de cancérologie*), the RCP
manager (*gestionnaire RCP*, the 3C — *centre de coordination en cancérologie* — of the establishment) and the RCP
itself; its ``location`` is the establishment within which the RCP is organised, by FINESS (IdNatStruct "1" +
FINESS under 1.2.250.1.71.4.2.2) and facility type (JDV_J02_XdsHealthcareFacilityTypeCode_CISIS); its
``custodian`` is the organisation that keeps the document — the establishment, unless another one (a regional
platform) keeps the documents for it. Its body says whether the board is an "RCP de recours" (ORG-184) and a
paediatric board (ORG-185). HL7 (MSH-4 sending facility) and FHIR MHD (``context.facilityType``) name the same
establishment.

So a board belongs to one establishment (and through it to one 3C and one regional network), and carries its own
national RCP id and its two flags. The establishment is found by its FINESS, so two boards of one hospital share
it. The numbers are checked in ``rcp.identifiers`` (FINESS Luhn key, national id syntax); what a board does not
have yet stays empty, and the fiche says "unknown" (nullFlavor UNK), never an invented number.

A fiche keeps the registration it was signed under (``rcp.minutes.store`` copies it into the signed content).

    >>> facility_type("SA36").display
    'Centre anti-cancer'
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FACILITY_TYPES", "FACILITY_TYPE_SYSTEM", "FacilityType", "facility_type"]

#: TRE_R02 SecteurActivite, the code system of JDV_J02_XdsHealthcareFacilityTypeCode_CISIS's SAxx concepts.
FACILITY_TYPE_SYSTEM = "1.2.250.1.71.4.2.4"


@dataclass(frozen=True)
class FacilityType:
    """One concept of JDV_J02_XdsHealthcareFacilityTypeCode_CISIS (1.2.250.1.213.1.1.5.466)."""

    code: str
    #: The official (French) display: coded values are shown as published.
    display: str
    system: str = FACILITY_TYPE_SYSTEM


#: The establishments where an RCP is held, copied unchanged from the value set (ANS kit, ansforge
#: TestContenuCDA-3-0 commit 7cd489b3, revision 2024-12-13); the other concepts (pharmacies, transport...) never
#: host one.
FACILITY_TYPES: tuple[FacilityType, ...] = (
    FacilityType("SA01", "Etablissement public de santé"),
    FacilityType("SA02", "Hôpital militaire du Service de santé des armées"),
    FacilityType("SA03", "Etablissement privé PSPH"),
    FacilityType("SA04", "Etablissement privé non PSPH"),
    FacilityType("SA05", "Centre de santé"),
    FacilityType("SA36", "Centre anti-cancer"),
    FacilityType("SA30", "Autre établissement sanitaire"),
)
_BY_CODE = {t.code: t for t in FACILITY_TYPES}


def facility_type(code: str) -> FacilityType:
    """The facility type coded ``code``; ``ValueError`` names the accepted codes."""
    try:
        return _BY_CODE[code.strip()]
    except KeyError:
        raise ValueError(f"unknown facility type {code!r}: expected one of {', '.join(_BY_CODE)} "
                         "(JDV_J02_XdsHealthcareFacilityTypeCode_CISIS)") from None
