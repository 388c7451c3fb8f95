"""The XDS metadata codes of the fiche RCP, in one place for every channel that sends it with metadata.

IHE XDS metadata (ITI TF-3 §4.2.3) travels with a document wherever it goes as a *document entry*: in the ebRIM
METADATA.XML of an XDM package (the GP's secure mail, ``rcp.epr.xdm``) and in the MHD DocumentReference
(``rcp.epr.fhir``). Both must say the same thing, so the codes live here, each with the CI-SIS value set it comes
from (the JDV files are in ``../shared/standards/ans-cda/jeuxDeValeurs``):

- typeCode: LOINC 34794-8 (JDV_J07 XdsTypeCode), classCode "11" Compte rendu (TRE_A03 ClasseDocument, deduced from
  the type by ASS_X04), formatCode ``urn:asip:ci-sis:frcp:2011`` for the CDA (TRE_A06 FormatCodeComplementaire, the
  code of the FRCP volet's template 1.2.250.1.213.1.1.1.8) and IHE ``mimeTypeSufficient`` for the PDF;
- healthcareFacilityTypeCode SA01 "Etablissement public de santé" (JDV_J02), practiceSettingCode ETABLISSEMENT
  (JDV_J04): a board meets in (or for) a health establishment;
- confidentialityCode (JDV_J08): N "Normal" always, plus INVISIBLE_PATIENT (1.2.250.1.213.1.1.4.13) when the
  board keeps the document from the patient until the announcement consultation (DMP: the patient does not read
  the board's proposal in their record before a physician has told them).

    >>> [c.code for c in confidentiality(hidden_from_patient=True)]
    ['N', 'INVISIBLE_PATIENT']
    >>> fhir_security_labels(hidden_from_patient=False)[0]["coding"][0]["code"]
    'N'
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = [
    "CLASS_CR",
    "CONFIDENTIALITY_NORMAL",
    "FACILITY_ESTABLISHMENT",
    "FORMAT_FRCP",
    "FORMAT_MIME",
    "INVISIBLE_PATIENT",
    "PRACTICE_ESTABLISHMENT",
    "TYPE_FRCP",
    "XdsCode",
    "confidentiality",
    "facility_type",
    "fhir_security_labels",
]


class XdsCode(NamedTuple):
    """One XDS code: the ebRIM ``nodeRepresentation``, its ``codingScheme`` (an OID) and display name."""

    code: str
    scheme: str
    display: str

    def fhir_coding(self) -> dict[str, str]:
        """As a FHIR Coding: HL7's canonical URL for the code systems FHIR names (LOINC, v3 Confidentiality),
        ``urn:oid:`` for the French ones (MHD)."""
        system = _FHIR_SYSTEMS.get(self.scheme, f"urn:oid:{self.scheme}")
        return {"system": system, "code": self.code, "display": self.display}


_FHIR_SYSTEMS = {
    "2.16.840.1.113883.6.1": "http://loinc.org",
    "2.16.840.1.113883.5.25": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
}

TYPE_FRCP = XdsCode("34794-8", "2.16.840.1.113883.6.1", "CR de réunion de concertation pluridisciplinaire")
CLASS_CR = XdsCode("11", "1.2.250.1.213.1.1.4.1", "Compte rendu")
FORMAT_FRCP = XdsCode("urn:asip:ci-sis:frcp:2011", "1.2.250.1.213.1.1.4.2.282",
                      "Fiche de réunion de concertation pluridisciplinaire")
FORMAT_MIME = XdsCode("urn:ihe:iti:xds:2017:mimeTypeSufficient", "1.3.6.1.4.1.19376.1.2.3",
                      "Format décrit par le type MIME")
FACILITY_ESTABLISHMENT = XdsCode("SA01", "1.2.250.1.71.4.2.4", "Etablissement public de santé")
PRACTICE_ESTABLISHMENT = XdsCode("ETABLISSEMENT", "1.2.250.1.213.1.1.4.9", "Etablissement de santé")
CONFIDENTIALITY_NORMAL = XdsCode("N", "2.16.840.1.113883.5.25", "Normal")
INVISIBLE_PATIENT = XdsCode("INVISIBLE_PATIENT", "1.2.250.1.213.1.1.4.13", "Non visible par le patient")


def facility_type(code: str = "") -> XdsCode:
    """healthcareFacilityTypeCode: the establishment's sector (TRE_R02, JDV_J02) as its registration gives it
    (``DocumentOrganisation.facility_type``), SA01 when the board names no establishment yet."""
    if not code or code == FACILITY_ESTABLISHMENT.code:
        return FACILITY_ESTABLISHMENT
    return XdsCode(code, FACILITY_ESTABLISHMENT.scheme, code)


def confidentiality(*, hidden_from_patient: bool) -> tuple[XdsCode, ...]:
    """The document entry's confidentialityCodes: N, and INVISIBLE_PATIENT while the patient must not see it."""
    return (CONFIDENTIALITY_NORMAL, INVISIBLE_PATIENT) if hidden_from_patient else (CONFIDENTIALITY_NORMAL,)


def fhir_security_labels(*, hidden_from_patient: bool) -> list[dict[str, Any]]:
    """``DocumentReference.securityLabel`` (MHD maps it to confidentialityCode): one CodeableConcept per code.

    For ``rcp.epr.fhir``: ``"securityLabel": fhir_security_labels(hidden_from_patient=document.hidden_from_patient)``.
    """
    return [{"coding": [code.fhir_coding()]} for code in confidentiality(hidden_from_patient=hidden_from_patient)]
