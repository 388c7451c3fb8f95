"""IHE MHD ITI-65 "Provide Document Bundle" for a signed RCP document, as FHIR R4 (R4B models).

The transaction Bundle holds (IHE ITI TF-2 3.65.4.1.2, MHD 4.x):

- the SubmissionSet ``List`` (code ``submissionset``), listing the DocumentReference;
- the ``DocumentReference`` typed LOINC 34794-8 (XDS typeCode, JDV_J07), of category (classCode) "11" Compte rendu
  (TRE_A03), ``context.facilityType`` the establishment's sector (TRE_R02, JDV_J02: SA01 ...),
  ``context.practiceSetting`` "ETABLISSEMENT" (TRE_A01, JDV_J04), authored by the signer and the establishment
  (a contained FR Core Organization with its FINESS), whose two contents point at
- the ``Binary`` of the CI-SIS CANCER-FRCP CDA R2 (format ``urn:asip:ci-sis:frcp:2011``, TRE_A06, the code the ANS
  maps the FRCP template 1.2.250.1.213.1.1.1.8 to) and the ``Binary`` of the signed PDF (format
  ``mimeTypeSufficient``), each with an absolute ``urn:uuid`` fullUrl and a repeatable ``PUT``;
- the authoring ``Practitioner``s that have a national identifier (RPPS/ADELI as IdNatPS), conditionally
  created; practitioners without one are contained in the DocumentReference;
- for a corrected version, a conditional PATCH setting the replaced DocumentReference to ``superseded``, while
  the new one carries ``relatesTo`` = ``replaces``.

The Patient is not sent: it is referenced by its INS when the identity is qualified, else by its IPP in the
hospital's OID (a conditional reference the receiver resolves, plus ``Reference.identifier``), and the source
demographics travel as ``context.sourcePatientInfo`` (a contained Patient with the INS when qualified, the local
IPP, and the FR Core identity-reliability extension saying the status), as MHD asks.

Idempotency (resending after a lost answer must not duplicate anything): the DocumentReference, the List and the
Practitioners are created with ``ifNoneExist`` on their identifiers, the Binary is written with ``PUT`` to an id
derived from the document's unique id, and the PATCH of the replaced document is naturally repeatable.

``fhir.resources`` checks types and required fields, not code values: :func:`check_provide_bundle` checks the
codes that matter to the receiving EPR.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from datetime import datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome

from rcp.epr.document import LOINC_RCP, PARIS, DocumentAuthor, SignedDocument
from rcp.epr.xds import (
    CLASS_CR,
    FACILITY_ESTABLISHMENT,
    FORMAT_FRCP,
    PRACTICE_ESTABLISHMENT,
    fhir_security_labels,
)
from rcp.identifiers import INS_OIDS, VALIDATION_MODES, ins_type_code, pid32_codes
from rcp.people import IDNATPS_OID

__all__ = [
    "CDA_FORMAT",
    "ENCOUNTER_OID",
    "IDNPS_SYSTEM",
    "LOINC_SYSTEM",
    "RCP_SOURCE_OID",
    "RPPS_SYSTEM",
    "binary_id",
    "check_provide_bundle",
    "outcome_summary",
    "provide_document_bundle",
    "withdrawal_bundle",
]

LOINC_SYSTEM = "http://loinc.org"
#: RFC 3986 URIs (urn:oid:, urn:uuid:) as identifier values: XDS uniqueId / entryUUID in MHD.
URI_SYSTEM = "urn:ietf:rfc:3986"
#: ANS national practitioner identifier (IdNatPS: "8" + RPPS, "0" + ADELI).
IDNPS_SYSTEM = f"urn:oid:{IDNATPS_OID}"
IDNPS_TYPE_SYSTEM = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"
#: FR Core Practitioner's ``rpps`` identifier slice: the 11-digit RPPS number.
RPPS_SYSTEM = "https://rpps.esante.gouv.fr"
#: TRE_R38 savoir-faire codes, as the CI-SIS FRCP examples code attendees' specialties.
SPECIALTY_SYSTEM = "urn:oid:1.2.250.1.213.1.1.4.5"
MHD = "https://profiles.ihe.net/ITI/MHD"
PROVIDE_BUNDLE_PROFILE = f"{MHD}/StructureDefinition/IHE.MHD.Comprehensive.ProvideBundle"
SUBMISSION_SET_PROFILE = f"{MHD}/StructureDefinition/IHE.MHD.Comprehensive.SubmissionSet"
DOCUMENT_REFERENCE_PROFILE = f"{MHD}/StructureDefinition/IHE.MHD.Comprehensive.DocumentReference"
#: The XDS formatCode for "the mime type says it all" (IHE ITI TF-3 Table 4.2.3.1.7-2).
FORMAT_SYSTEM = "urn:oid:1.3.6.1.4.1.19376.1.2.3"
FORMAT_CODE = "urn:ihe:iti:xds:2017:mimeTypeSufficient"
#: Our application's source OID (XDS sourceId). 2.25 is the UUID-derived arc (ITU-T X.667), so no registration
#: is needed; a hospital that has its own root can pass ``source_oid``.
RCP_SOURCE_OID = "2.25.{}".format(uuid.uuid5(uuid.NAMESPACE_URL, "urn:rcp:epr:source").int)
#: Root of the RCP encounters (the case in its meeting): CDA encompassingEncounter/id, HL7 PV1-19, FHIR context.
ENCOUNTER_OID = f"{RCP_SOURCE_OID}.2"
#: TRE_A06-FormatCodeComplementaire: the CI-SIS format code of the FRCP document (its template
#: 1.2.250.1.213.1.1.1.8 maps to it in the ANS ConceptMap; JDV_J10 XdsFormatCode is not in the ANS kit we ship).
#: (The XDS codes have one home, ``rcp.epr.xds``, shared with the GP's XDM package; here as FHIR system tuples.)
CDA_FORMAT = (f"urn:oid:{FORMAT_FRCP.scheme}", FORMAT_FRCP.code, FORMAT_FRCP.display)
#: XDS classCode (TRE_A03-ClasseDocument, JDV_J06): "11" Compte rendu.
CLASS_CODE = (f"urn:oid:{CLASS_CR.scheme}", CLASS_CR.code, CLASS_CR.display)
#: XDS healthcareFacilityTypeCode (TRE_R02-SecteurActivite, JDV_J02).
FACILITY_TYPE_SYSTEM = f"urn:oid:{FACILITY_ESTABLISHMENT.scheme}"
#: XDS practiceSettingCode (TRE_A01-CadreExercice, JDV_J04): "ETABLISSEMENT" Etablissement de santé.
PRACTICE_SETTING = (f"urn:oid:{PRACTICE_ESTABLISHMENT.scheme}", PRACTICE_ESTABLISHMENT.code,
                    PRACTICE_ESTABLISHMENT.display)
#: FR Core Organization identifiers: IdNatSt ("1" + FINESS, ANS structures) and the FINESS itself.
IDNST_SYSTEM = "urn:oid:1.2.250.1.71.4.2.2"
FINESS_SYSTEM = "http://finess.sante.gouv.fr"
FR_CORE_PATIENT = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient"
FR_CORE_PATIENT_INS = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient-ins"
FR_CORE_ORGANIZATION = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-organization"

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:rcp:epr:mhd")


def _local(value: datetime) -> str:
    """FHIR dateTime in French local time with its offset: ``2026-11-23T16:30:00+01:00``."""
    return value.astimezone(PARIS).isoformat()


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "|".join(parts)))


def _oid_from_uuid(value: str) -> str:
    return f"2.25.{uuid.UUID(value).int}"


def binary_id(unique_id: str) -> str:
    """The Binary's logical id: derived from the document's unique id, so a PUT is repeatable."""
    return "rcp-" + hashlib.sha256(unique_id.encode()).hexdigest()[:40]


def _patient_identifier(document: SignedDocument) -> tuple[str, str]:
    """(system, value) naming the patient: the INS for a qualified identity (the only one that carries it), else
    the IPP in its assigning authority's ``urn:oid:`` (or no system when the hospital's OID is unknown)."""
    patient = document.patient
    if patient.ins:
        return f"urn:oid:{patient.ins_oid}", patient.ins
    return (f"urn:oid:{patient.ipp_assigner_oid}" if patient.ipp_assigner_oid else ""), patient.ipp


def _patient_reference(document: SignedDocument) -> dict[str, Any]:
    system, value = _patient_identifier(document)
    identifier = {"system": system, "value": value} if system else {"value": value}
    return {
        # FHIR R4 3.1.0.11.2 (transaction): a conditional reference, resolved by the server to the one Patient
        # holding this INS (or IPP); a server that cannot resolve it rejects the transaction (needs attention).
        "reference": f"Patient?identifier={system + '|' if system else ''}{value}",
        "type": "Patient",
        "identifier": identifier,
    }


#: FR Core: the identity reliability extension and HL7 table 0445 as France extends it (PROV, RECUP, VALI, QUAL;
#: DOUT, FICT, HOMA for the attributes), the codes PID-32 carries (``rcp.identifiers.pid32_codes``).
IDENTITY_RELIABILITY_URL = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability"
IDENTITY_STATUS_SYSTEM = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0445"
#: FR Core: the identity documents a status is validated on (PA passport, CN identity card, CS residence permit...).
VALIDATION_MODE_SYSTEM = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-mode-validation-identity"


def _identity_reliability(document: SignedDocument) -> list[dict[str, Any]]:
    """The FR Core identity-reliability extension: one, whose ``identityStatus`` sub-extension is the RNIV status
    (exactly one of PROV, RECUP, VALI, QUAL) and whose ``comment`` sub-extensions are the identity attributes
    (DOUT, FICT, HOMA), as FR Core defines its sub-extensions; with ``validationMode`` (the identity document
    checked) and ``validationDate`` (the day the status was set) when known."""
    patient = document.patient
    status, *attributes = pid32_codes(patient.identity_status, patient.identity_attributes)
    parts: list[dict[str, Any]] = [
        {"url": "identityStatus", "valueCoding": {"system": IDENTITY_STATUS_SYSTEM, "code": status}}]
    parts += [{"url": "comment", "valueCodeableConcept": {"coding": [{"system": IDENTITY_STATUS_SYSTEM,
                                                                        "code": code}]}} for code in attributes]
    if patient.identity_document in VALIDATION_MODES:
        parts.append({"url": "validationMode", "valueCoding": {
            "system": VALIDATION_MODE_SYSTEM, "code": VALIDATION_MODES[patient.identity_document]}})
    if patient.identity_date is not None:
        parts.append({"url": "validationDate", "valueDate": patient.identity_date.isoformat()})
    return [{"url": IDENTITY_RELIABILITY_URL, "extension": parts}]


def _source_patient(document: SignedDocument) -> dict[str, Any]:
    patient = document.patient
    identifiers: list[dict[str, Any]] = []
    if patient.ins:  # qualified identities only (DocumentPatient refuses an INS otherwise)
        identifiers.append({
            "use": "official",
            "system": f"urn:oid:{patient.ins_oid}",
            "value": patient.ins,
            "type": {"coding": [{"system": IDNPS_TYPE_SYSTEM, "code": ins_type_code(patient.ins_oid)}]},
        })
    if patient.ipp:
        ipp: dict[str, Any] = {
            "use": "usual",
            "value": patient.ipp,
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PI"}]},
            "assigner": {"display": patient.ipp_assigner},
        }
        if patient.ipp_assigner_oid:
            ipp["system"] = f"urn:oid:{patient.ipp_assigner_oid}"
        identifiers.append(ipp)
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": "src-patient",
        # FR Core: the INS profile only for a qualified identity, whose INS travels.
        "meta": {"profile": [FR_CORE_PATIENT_INS if patient.ins else FR_CORE_PATIENT]},
        "extension": _identity_reliability(document),
        "identifier": identifiers,
        "name": [{"use": "official", "family": patient.family_name, "given": patient.given_names.split()}],
        "gender": patient.sex,
    }
    if patient.birth_date is not None:
        resource["birthDate"] = patient.birth_date.isoformat()
    return resource


def _organisation(finess: str, name: str, *, id_: str) -> dict[str, Any]:
    """An establishment as a contained FR Core Organization: IdNatSt ("1" + FINESS, type IDNST) and FINESS."""
    def typed(code: str) -> dict[str, Any]:
        return {"coding": [{"system": IDNPS_TYPE_SYSTEM, "code": code}]}

    return {
        "resourceType": "Organization",
        "id": id_,
        "meta": {"profile": [FR_CORE_ORGANIZATION]},
        "identifier": [
            {"use": "official", "type": typed("IDNST"), "system": IDNST_SYSTEM, "value": "1" + finess},
            {"use": "official", "type": typed("FINEG"), "system": FINESS_SYSTEM, "value": finess},
        ],
        "name": name,
    }


def _practitioner_identifiers(author: DocumentAuthor, source_oid: str) -> list[dict[str, Any]]:
    """FR Core Practitioner identifier slices: ``idNatPs`` (urn:oid:1.2.250.1.71.4.2.1, type IDNPS, "8" + RPPS)
    and ``rpps`` (https://rpps.esante.gouv.fr, type RPPS, the 11 digits); without a national identifier, the
    account's id in this service (type INTRN, FR Core v2-0203 "identifiant interne")."""
    def typed(code: str) -> dict[str, Any]:
        return {"coding": [{"system": IDNPS_TYPE_SYSTEM, "code": code}]}

    if author.national_id:
        found = [{"use": "official", "type": typed("IDNPS"), "system": IDNPS_SYSTEM, "value": author.national_id}]
        if author.id_kind == "RPPS":
            found.append({"use": "official", "type": typed("RPPS"), "system": RPPS_SYSTEM, "value": author.id_value})
        return found
    if author.local_id:
        return [{"use": "usual", "type": typed("INTRN"), "system": f"urn:oid:{source_oid}.1",
                 "value": author.local_id}]
    return []


def _practitioner(author: DocumentAuthor, *, id_: str | None = None,
                  source_oid: str = RCP_SOURCE_OID) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Practitioner",
        # FR Core fr-core-human-name: the title of practice (Dr, Pr) in suffix as its TRE_R11 code.
        "name": [author.person.as_fhir_humanname()],
    }
    if id_ is not None:
        resource["id"] = id_
    identifiers = _practitioner_identifiers(author, source_oid)
    if identifiers:
        resource["identifier"] = identifiers
    if author.specialty or author.specialty_code:
        code: dict[str, Any] = {"text": author.specialty_label or author.specialty}
        if author.specialty_code:
            code["coding"] = [{"system": SPECIALTY_SYSTEM, "code": author.specialty_code}]
        resource["qualification"] = [{"code": code}]
    return resource


def _add_stagings(docref: dict[str, Any], document: SignedDocument) -> None:
    """The tumour's stagings as contained Observations the DocumentReference's context relates to.

    Each is coded with the LOINC TNM panel of the CI-SIS FRCP (clinical 75620-5, pathological 75621-3; 21914-7 for
    another classification) and its value is the staging as written, prefix kept: "ypT0 N0 M0 (TNM 8th ed.)"
    (issue 14, item 3). Contained, so nothing is created on the receiver; referenced, as FHIR R4 dom-3 asks.
    """
    for index, staging in enumerate(document.staging, start=1):
        code, display = staging.loinc
        local = f"staging-{index}"
        observation: dict[str, Any] = {
            "resourceType": "Observation",
            "id": local,
            "status": "amended" if document.corrected else "final",
            "code": {"coding": [{"system": LOINC_SYSTEM, "code": code, "display": display}]},
            "effectiveDateTime": document.meeting_date.isoformat(),
            "valueString": staging.display(),
        }
        if staging.kind != "other":
            observation["method"] = {"text": f"UICC TNM {staging.edition}th edition"}
        docref["contained"].append(observation)
        docref["context"]["related"].append({"reference": f"#{local}", "type": "Observation"})


def provide_document_bundle(
    document: SignedDocument, *, idempotency_key: str, source_oid: str = RCP_SOURCE_OID
) -> dict[str, Any]:
    """The ITI-65 transaction Bundle as a JSON-ready dict, validated with the R4B models.

    ``idempotency_key`` becomes the Bundle identifier, so a receiver's logs tie a resend to the first try.
    """
    uid = document.unique_id
    docref_url = f"urn:uuid:{_uuid('DocumentReference', uid)}"
    list_url = f"urn:uuid:{_uuid('List', uid)}"
    submission_uuid = _uuid("SubmissionSet", uid)
    subject = _patient_reference(document)

    entries: list[dict[str, Any]] = []
    contained: list[dict[str, Any]] = [_source_patient(document)]
    author_refs: list[dict[str, Any]] = []
    for index, author in enumerate(document.authors):
        if author.national_id:
            url = f"urn:uuid:{_uuid('Practitioner', author.national_id)}"
            entries.append({
                "fullUrl": url,
                "resource": _practitioner(author),
                "request": {
                    "method": "POST",
                    "url": "Practitioner",
                    "ifNoneExist": f"identifier={IDNPS_SYSTEM}|{author.national_id}",
                },
            })
            author_refs.append({"reference": url, "type": "Practitioner"})
        else:
            local = f"author-{index + 1}"
            contained.append(_practitioner(author, id_=local, source_oid=source_oid))
            author_refs.append({"reference": f"#{local}", "type": "Practitioner"})

    custodian = ""
    if document.organisation is not None:
        org = document.organisation
        contained.append(_organisation(org.finess, org.name, id_="author-organisation"))
        author_refs.append({"reference": "#author-organisation", "type": "Organization"})
        custodian = "#author-organisation"
        if org.custodian_finess:
            # The board's registration names another keeper of the documents (a GCS, the regional network).
            contained.append(_organisation(org.custodian_finess, org.custodian_name or org.name,
                                           id_="custodian-organisation"))
            custodian = "#custodian-organisation"

    doc_status = {"final": "current", "amended": "current"}.get(document.status, "entered-in-error")
    context: dict[str, Any] = {
        "period": {"start": document.meeting_date.isoformat()},
        # XDS healthcareFacilityTypeCode and practiceSettingCode (CI-SIS JDV_J02 / JDV_J04).
        "facilityType": {"coding": [{"system": FACILITY_TYPE_SYSTEM, "code": (
            document.organisation.facility_type if document.organisation is not None else "SA01")}]},
        "practiceSetting": {"coding": [{"system": PRACTICE_SETTING[0], "code": PRACTICE_SETTING[1],
                                        "display": PRACTICE_SETTING[2]}]},
        "sourcePatientInfo": {"reference": "#src-patient"},
        # The document set (all versions of the case's fiche), named by its OID as an RFC 3986 URI.
        "related": [{"identifier": {"system": URI_SYSTEM, "value": f"urn:oid:{document.set_id}"}}],
    }
    if document.encounter_id:
        context["encounter"] = [{"type": "Encounter", "identifier": {"system": f"urn:oid:{ENCOUNTER_OID}",
                                                                     "value": document.encounter_id}}]
    contents: list[dict[str, Any]] = []
    binaries: list[dict[str, Any]] = []
    for data, media, (system, code, display), title in (
        (document.cda, "text/xml", CDA_FORMAT, f"{document.title} (CDA R2 CANCER-FRCP)"),
        (document.pdf, "application/pdf", (FORMAT_SYSTEM, FORMAT_CODE, ""), document.title),
    ):
        if not data:
            continue
        bin_id = binary_id(uid if media == "application/pdf" else f"{uid}/cda")
        url = f"urn:uuid:{_uuid('Binary', bin_id)}"
        format_: dict[str, Any] = {"system": system, "code": code}
        if display:
            format_["display"] = display
        contents.append({
            "attachment": {
                "contentType": media,
                "language": "fr-FR",
                "url": url,
                "size": len(data),
                # FHIR R4 Attachment.hash is the base64 SHA-1 of the data.
                "hash": base64.b64encode(hashlib.sha1(data).digest()).decode("ascii"),
                "title": title,
                "creation": _local(document.signed_at),
            },
            "format": format_,
        })
        binaries.append({
            # An absolute fullUrl (urn:uuid) the attachment points at; PUT to an id derived from the document's
            # unique id, so a resend writes the same Binary.
            "fullUrl": url,
            "resource": {"resourceType": "Binary", "id": bin_id, "contentType": media,
                         "data": base64.b64encode(data).decode("ascii")},
            "request": {"method": "PUT", "url": f"Binary/{bin_id}"},
        })
    docref: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "meta": {"profile": [DOCUMENT_REFERENCE_PROFILE]},
        "contained": contained,
        # XDS uniqueId (MHD: masterIdentifier) and entryUUID (identifier, use official).
        "masterIdentifier": {"system": URI_SYSTEM, "value": f"urn:oid:{uid}"},
        "identifier": [{"use": "official", "system": URI_SYSTEM, "value": docref_url}],
        "status": doc_status,
        "docStatus": "amended" if document.corrected else "final",
        "type": {"coding": [{"system": LOINC_SYSTEM, "code": LOINC_RCP, "display": document.type_display}]},
        # XDS classCode (CI-SIS JDV_J06).
        "category": [{"coding": [{"system": CLASS_CODE[0], "code": CLASS_CODE[1], "display": CLASS_CODE[2]}]}],
        "subject": subject,
        "date": _local(document.signed_at),
        "author": author_refs,
        "description": document.title,
        # N, plus INVISIBLE_PATIENT (DMP) while the board keeps the document from the patient (rcp.epr.xds).
        "securityLabel": fhir_security_labels(hidden_from_patient=document.hidden_from_patient),
        "content": contents,
        "context": context,
    }
    if custodian:
        docref["custodian"] = {"reference": custodian, "type": "Organization"}
    _add_stagings(docref, document)
    if document.replaces is not None:
        docref["relatesTo"] = [
            {
                "code": "replaces",
                "target": {
                    "reference": f"DocumentReference?identifier={URI_SYSTEM}|urn:oid:{document.replaces}",
                    "type": "DocumentReference",
                    "identifier": {"system": URI_SYSTEM, "value": f"urn:oid:{document.replaces}"},
                },
            }
        ]

    submission_set: dict[str, Any] = {
        "resourceType": "List",
        "meta": {"profile": [SUBMISSION_SET_PROFILE]},
        "extension": [
            {"url": f"{MHD}/StructureDefinition/ihe-sourceId",
             "valueIdentifier": {"value": f"urn:oid:{source_oid}"}},
            {"url": f"{MHD}/StructureDefinition/ihe-designationType",
             "valueCodeableConcept": {"coding": [{"system": LOINC_SYSTEM, "code": LOINC_RCP}]}},
        ],
        "identifier": [
            {"use": "official", "system": URI_SYSTEM, "value": f"urn:oid:{_oid_from_uuid(submission_uuid)}"},
            {"use": "usual", "system": URI_SYSTEM, "value": f"urn:uuid:{submission_uuid}"},
        ],
        "status": "current",
        "mode": "working",
        "title": document.board,
        "code": {"coding": [{"system": f"{MHD}/CodeSystem/MHDlistTypes", "code": "submissionset"}]},
        "subject": subject,
        "date": _local(document.signed_at),
        "entry": [{"item": {"reference": docref_url}}],
    }

    entries[:0] = [
        {
            "fullUrl": list_url,
            "resource": submission_set,
            "request": {
                "method": "POST",
                "url": "List",
                "ifNoneExist": f"identifier={URI_SYSTEM}|urn:uuid:{submission_uuid}",
            },
        },
        {
            "fullUrl": docref_url,
            "resource": docref,
            "request": {
                "method": "POST",
                "url": "DocumentReference",
                "ifNoneExist": f"identifier={URI_SYSTEM}|urn:oid:{uid}",
            },
        },
        *binaries,
    ]
    if document.replaces is not None:
        # FHIR R4 3.1.0.7.1 FHIRPath patch, conditional: the replaced DocumentReference becomes superseded.
        entries.append({
            "fullUrl": f"urn:uuid:{_uuid('Supersede', uid)}",
            "resource": {
                "resourceType": "Parameters",
                "parameter": [
                    {
                        "name": "operation",
                        "part": [
                            {"name": "type", "valueCode": "replace"},
                            {"name": "path", "valueString": "DocumentReference.status"},
                            {"name": "value", "valueCode": "superseded"},
                        ],
                    }
                ],
            },
            "request": {
                "method": "PATCH",
                "url": f"DocumentReference?identifier={URI_SYSTEM}|urn:oid:{document.replaces}",
            },
        })

    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "meta": {"profile": [PROVIDE_BUNDLE_PROFILE]},
        "identifier": {"system": URI_SYSTEM, "value": f"urn:uuid:{_uuid('Bundle', idempotency_key)}"},
        "type": "transaction",
        "timestamp": _local(document.signed_at),
        "entry": entries,
    }
    Bundle.model_validate(bundle)  # types and required fields (R4B = R4 for these resources)
    check_provide_bundle(bundle)  # the code values fhir.resources does not check
    return bundle


def withdrawal_bundle(document: SignedDocument, *, idempotency_key: str) -> dict[str, Any]:
    """The transaction that withdraws a version entered in error: its DocumentReference becomes
    ``entered-in-error`` (FHIR R4 DocumentReferenceStatus; MHD has no "delete", the registry keeps the entry).

    A conditional FHIRPath PATCH on the version's unique id, naturally repeatable: a resend changes nothing more.
    """
    if document.withdrawal is None:
        raise ValueError("withdrawal_bundle needs a document that carries its withdrawal")
    target = f"DocumentReference?identifier={URI_SYSTEM}|urn:oid:{document.unique_id}"
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "identifier": {"system": URI_SYSTEM, "value": f"urn:uuid:{_uuid('Bundle', idempotency_key)}"},
        "type": "transaction",
        "timestamp": _local(document.withdrawal.at),
        "entry": [{
            "fullUrl": f"urn:uuid:{_uuid('Withdraw', document.unique_id)}",
            "resource": {
                "resourceType": "Parameters",
                "parameter": [{"name": "operation", "part": [
                    {"name": "type", "valueCode": "replace"},
                    {"name": "path", "valueString": "DocumentReference.status"},
                    {"name": "value", "valueCode": "entered-in-error"},
                ]}],
            },
            "request": {"method": "PATCH", "url": target},
        }],
    }
    Bundle.model_validate(bundle)
    return bundle


def _fail(message: str) -> None:
    raise ValueError(f"ITI-65 bundle: {message}")


def check_provide_bundle(bundle: dict[str, Any]) -> None:
    """Check what the R4B models do not: codes and references the EPR files the document by.

    Raises ``ValueError`` naming the rule (never patient data).
    """
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "transaction":
        _fail("must be a transaction Bundle")
    resources: dict[str, list[dict[str, Any]]] = {}
    for entry in bundle.get("entry", []):
        resource = entry.get("resource", {})
        resources.setdefault(resource.get("resourceType", ""), []).append(entry)
        method = entry.get("request", {}).get("method")
        if method not in {"POST", "PUT", "PATCH"}:
            _fail(f"entry request method must be POST, PUT or PATCH (got {method!r})")
    lists = [e for e in resources.get("List", [])]
    docrefs = [e for e in resources.get("DocumentReference", [])]
    if len(lists) != 1 or len(docrefs) != 1:
        _fail("needs exactly one SubmissionSet List and one DocumentReference")
    submission = lists[0]["resource"]
    codes = {(c.get("system"), c.get("code")) for c in submission.get("code", {}).get("coding", [])}
    if (f"{MHD}/CodeSystem/MHDlistTypes", "submissionset") not in codes:
        _fail("the List must be coded MHDlistTypes#submissionset")
    docref_entry = docrefs[0]
    docref = docref_entry["resource"]
    if not any(i.get("reference") == docref_entry.get("fullUrl") for i in
               (e.get("item", {}) for e in submission.get("entry", []))):
        _fail("the SubmissionSet must list the DocumentReference")
    if (LOINC_SYSTEM, LOINC_RCP) not in {(c.get("system"), c.get("code")) for c in
                                         docref.get("type", {}).get("coding", [])}:
        _fail(f"the DocumentReference type must be LOINC {LOINC_RCP}")
    if docref.get("status") not in {"current", "entered-in-error"}:
        _fail("a provided DocumentReference must be current or entered-in-error")
    if docref.get("docStatus") not in {"final", "amended"}:
        _fail("docStatus must be final or amended")
    master = docref.get("masterIdentifier", {})
    if master.get("system") != URI_SYSTEM or not str(master.get("value", "")).startswith("urn:oid:"):
        _fail("masterIdentifier must be the document's urn:oid: unique id")
    if docref_entry.get("request", {}).get("ifNoneExist") != f"identifier={URI_SYSTEM}|{master['value']}":
        _fail("the DocumentReference must be created conditionally on its unique id (ifNoneExist)")
    subject = docref.get("subject", {}).get("identifier", {})
    if not subject.get("value"):
        _fail("the subject must be identified by its INS (qualified identity) or its IPP")
    source: dict[str, Any] = next((c for c in docref.get("contained", []) if c.get("resourceType") == "Patient"), {})
    qualified = any(e.get("url") == IDENTITY_RELIABILITY_URL and any(
        x.get("url") == "identityStatus" and x.get("valueCoding", {}).get("code") == "QUAL"
        for x in e.get("extension", [])) for e in source.get("extension", []))
    if subject.get("system", "").removeprefix("urn:oid:") in INS_OIDS and not qualified:
        _fail("the INS may identify the subject only for a qualified identity (identity reliability QUAL)")
    contents = docref.get("content", [])
    attachments = [c.get("attachment", {}) for c in contents]
    if "application/pdf" not in {a.get("contentType") for a in attachments}:
        _fail("the DocumentReference content must include the application/pdf attachment")
    binaries = {b.get("fullUrl"): b for b in resources.get("Binary", [])}
    for content, attachment in zip(contents, attachments, strict=True):
        url = str(attachment.get("url", ""))
        if not attachment.get("data") and url not in binaries:
            _fail("each attachment must point at a Binary in the bundle (or carry the data)")
        if not attachment.get("data") and not url.startswith("urn:uuid:"):
            _fail("a Binary entry's fullUrl must be absolute (urn:uuid:)")
        if attachment.get("contentType") == "text/xml" and (content.get("format", {}).get("system"),
                                                             content.get("format", {}).get("code")) != CDA_FORMAT[:2]:
            _fail(f"the CDA content must carry the FRCP format code {CDA_FORMAT[1]}")
    for field, system in (("facilityType", FACILITY_TYPE_SYSTEM), ("practiceSetting", PRACTICE_SETTING[0])):
        if system not in {c.get("system") for c in docref.get("context", {}).get(field, {}).get("coding", [])}:
            _fail(f"context.{field} must be coded in {system} (CI-SIS XDS metadata)")
    if not any(CLASS_CODE[:2] == (c.get("system"), c.get("code"))
               for cat in docref.get("category", []) for c in cat.get("coding", [])):
        _fail("the DocumentReference category must be the CI-SIS class code 11 (Compte rendu)")
    for related in docref.get("context", {}).get("related", []):
        identifier = related.get("identifier")
        if identifier and (identifier.get("system") != URI_SYSTEM
                           or not str(identifier.get("value", "")).startswith(("urn:oid:", "urn:uuid:"))):
            _fail("a related identifier must be an RFC 3986 urn:oid: or urn:uuid: URI")
    replaces = [r for r in docref.get("relatesTo", []) if r.get("code") == "replaces"]
    if docref.get("docStatus") == "amended":
        if len(replaces) != 1:
            _fail("an amended DocumentReference must have exactly one relatesTo replaces")
        patches = [e for e in resources.get("Parameters", []) if e["request"].get("method") == "PATCH"]
        if not any(e["request"].get("url") == replaces[0]["target"].get("reference") for e in patches):
            _fail("a replacement must set the replaced DocumentReference to superseded (conditional PATCH)")


def outcome_summary(body: bytes | str | dict[str, Any], *, limit: int = 500) -> str:
    """A short text of an OperationOutcome for the coordinator: severity, code and diagnostics per issue."""
    try:
        data = body if isinstance(body, dict) else json.loads(body)
        outcome = OperationOutcome.model_validate(data)
    except (ValueError, TypeError):
        text = body if isinstance(body, str) else (
            json.dumps(body) if isinstance(body, dict) else body.decode("utf-8", "replace"))
        return text[:limit]
    parts = []
    for issue in outcome.issue or []:
        detail = issue.diagnostics or (issue.details.text if issue.details and issue.details.text else "")
        parts.append(f"{issue.severity}/{issue.code}: {detail}".rstrip(": "))
    return "; ".join(parts)[:limit]
