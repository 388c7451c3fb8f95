"""IHE XDM (Cross-Enterprise Document Media Interchange, ITI TF-1 §16, TF-3 §4.2.4): the zip a secure mail carries.

MSSanté mail clients and the GP's software open a fiche that arrives as ``IHE_XDM.ZIP``: they read the document
entries of ``METADATA.XML`` (who, which patient, which document type, how confidential) and file the documents
into the patient's record, as a DMP would. The package holds (ITI TF-1 §16.1.2, one submission set)::

    INDEX.HTM                      what the package holds, for a person opening it by hand
    README.TXT                     who made it (vendor, product, version)
    IHE_XDM/SUBSET01/METADATA.XML  an ebRS 3.0 SubmitObjectsRequest: the submission set and one document entry per
                                   document (ITI TF-3 §4.2.3 attributes, CI-SIS codes from ``rcp.epr.xds``)
    IHE_XDM/SUBSET01/DOC0001.XML   the CDA R2 CANCER-FRCP document
    IHE_XDM/SUBSET01/DOC0002.PDF   the signed fiche as PDF, linked to the CDA as its transformation (XFRM)

``METADATA.XML`` is built with lxml, never by string concatenation. Nothing here touches the network or the
database: :func:`xdm_package` is a pure function of the signed document, its CDA and the recipients.
"""

from __future__ import annotations

import hashlib
import io
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from lxml import etree
from lxml.builder import ElementMaker

from rcp import __version__
from rcp.epr.document import DocumentAuthor, DocumentOrganisation, SignedDocument
from rcp.epr.xds import (
    CLASS_CR,
    FORMAT_FRCP,
    FORMAT_MIME,
    PRACTICE_ESTABLISHMENT,
    TYPE_FRCP,
    XdsCode,
    confidentiality,
    facility_type,
)
from rcp.identifiers import IDNATSTRUCT_OID
from rcp.people import IDNATPS_OID

__all__ = ["ATTACHMENT_NAME", "METADATA_PATH", "SUBSET", "cx_patient_ids", "xdm_package"]

ATTACHMENT_NAME = "IHE_XDM.ZIP"
SUBSET = "IHE_XDM/SUBSET01"
METADATA_PATH = f"{SUBSET}/METADATA.XML"
CDA_NAME, PDF_NAME = "DOC0001.XML", "DOC0002.PDF"

LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
_L = ElementMaker(namespace=LCM, nsmap={"lcm": LCM, "rim": RIM})
_R = ElementMaker(namespace=RIM, nsmap={"lcm": LCM, "rim": RIM})

#: ebRIM object types and classification schemes of XDS (ITI TF-3 Table 4.2.5-1 and §4.2.5).
_STABLE_ENTRY = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
_SUBMISSION_SET = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
_APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
_DOC = {
    "author": "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d",
    "class": "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a",
    "confidentiality": "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f",
    "format": "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d",
    "facility": "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1",
    "practice": "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead",
    "type": "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983",
    "patientId": "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427",
    "uniqueId": "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab",
}
_SET = {
    "author": "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d",
    "contentType": "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500",
    "uniqueId": "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8",
    "sourceId": "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832",
    "patientId": "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446",
}
_HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
#: The PDF is a rendering of the CDA (ITI TF-3 §4.2.2: "transformation" association).
_XFRM = "urn:ihe:iti:2007:AssociationType:XFRM"
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:rcp:epr:xdm")
_SEXES = {"female": "F", "male": "M", "other": "O", "unknown": "U"}
#: TRE_R38 (savoir-faire) — the system of ``DocumentAuthor.specialty_code``.
_SPECIALTY_SCHEME = "1.2.250.1.71.4.2.5"


@dataclass(frozen=True)
class _Entry:
    """One document of the package and its place in it."""

    name: str
    data: bytes
    mime_type: str
    format: XdsCode
    title: str
    unique_id: str

    @property
    def entry_uuid(self) -> str:
        return f"urn:uuid:{uuid.uuid5(_NAMESPACE, self.unique_id)}"


def _dtm(value: datetime) -> str:
    """XDS DTM: UTC, to the second (ITI TF-3 Table 4.2.3.1.7-2)."""
    return value.astimezone(UTC).strftime("%Y%m%d%H%M%S")


def cx_patient_ids(document: SignedDocument) -> tuple[str, str]:
    """(patientId, sourcePatientId) as HL7 CX: the INS of a qualified identity (``^^^&OID&ISO^NH``) when the
    document carries one, else the IPP under its authority's OID (``^PI``); the source id is the IPP when known."""
    p = document.patient
    ipp = ""
    if p.ipp:
        authority = f"&{p.ipp_assigner_oid}&ISO" if p.ipp_assigner_oid else p.ipp_assigner
        ipp = f"{p.ipp}^^^{authority}^PI"
    ins = f"{p.ins}^^^&{p.ins_oid}&ISO^NH" if p.ins else ""
    return (ins or ipp), (ipp or ins)


def _xcn(author: DocumentAuthor) -> str:
    """XCN of a practitioner, IdNatPS under the ANS OID when known (CI-SIS: "8"+RPPS, type IDNPS)."""
    person = f"^{author.family_name}^{author.given_names}^^^{author.prefix}"
    if author.national_id:
        return f"{author.national_id}{person}^^^&{IDNATPS_OID}&ISO^D^^^IDNPS"
    return person


def _slot(name: str, *values: str) -> etree._Element:
    return _R.Slot(_R.ValueList(*(_R.Value(v) for v in values)), name=name)


def _name(text: str) -> etree._Element:
    return _R.Name(_R.LocalizedString(value=text, charset="UTF-8", **{"{http://www.w3.org/XML/1998/namespace}lang":
                                                                       "fr-FR"}))


def _classification(scheme: str, target: str, code: XdsCode, ident: str) -> etree._Element:
    return _R.Classification(_slot("codingScheme", code.scheme), _name(code.display), id=ident,
                             classificationScheme=scheme, classifiedObject=target,
                             nodeRepresentation=code.code, objectType="urn:oasis:names:tc:ebxml-regrep:"
                                                                      "ObjectType:RegistryObject:Classification")


def _external(scheme: str, target: str, value: str, label: str, ident: str) -> etree._Element:
    return _R.ExternalIdentifier(_name(label), id=ident, identificationScheme=scheme, registryObject=target,
                                 value=value,
                                 objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:"
                                            "ExternalIdentifier")


def _author(scheme: str, target: str, author: DocumentAuthor, ident: str,
            organisation: DocumentOrganisation | None) -> etree._Element:
    slots = [_slot("authorPerson", _xcn(author))]
    if organisation is not None:
        # XON: the establishment by its IdNatStruct ("1" + FINESS, ANS OID 1.2.250.1.71.4.2.2), as CI-SIS writes it.
        slots.append(_slot("authorInstitution",
                           f"{organisation.name}^^^^^&{IDNATSTRUCT_OID}&ISO^IDNST^^^1{organisation.finess}"))
    if author.specialty_code:
        slots.append(_slot("authorSpecialty",
                           f"{author.specialty_code}^{author.specialty_label}^{_SPECIALTY_SCHEME}"))
    return _R.Classification(*slots, id=ident, classificationScheme=scheme, classifiedObject=target,
                             nodeRepresentation="")


def _source_patient_info(document: SignedDocument) -> list[str]:
    p = document.patient
    ids = [i for i in cx_patient_ids(document) if i]
    info = [f"PID-3|{'~'.join(dict.fromkeys(ids))}", f"PID-5|{p.family_name}^{p.given_names}^^^^^L"]
    if p.birth_date is not None:
        info.append(f"PID-7|{p.birth_date:%Y%m%d}")
    info.append(f"PID-8|{_SEXES.get(p.sex, 'U')}")
    return info


def _document_entry(document: SignedDocument, entry: _Entry, n: int) -> etree._Element:
    target = entry.entry_uuid
    patient_id, source_id = cx_patient_ids(document)
    slots = [
        _slot("creationTime", _dtm(document.signed_at)),
        # XDS mandates SHA-1 for the hash slot (ITI TF-3 4.2.3.2.11): an integrity check, not a signature.
        _slot("hash", hashlib.sha1(entry.data).hexdigest()),
        _slot("languageCode", "fr-FR"),
        _slot("serviceStartTime", f"{document.meeting_date:%Y%m%d}"),
        _slot("serviceStopTime", f"{document.meeting_date:%Y%m%d}"),
        _slot("size", str(len(entry.data))),
        _slot("sourcePatientId", source_id),
        _slot("sourcePatientInfo", *_source_patient_info(document)),
        _slot("URI", entry.name),
    ]
    if document.authors:
        slots.append(_slot("legalAuthenticator", _xcn(document.authors[0])))
    parts: list[etree._Element] = [*slots, _name(entry.title)]
    parts += [_author(_DOC["author"], target, a, f"doc{n}-author{i}", document.organisation)
              for i, a in enumerate(document.authors)]
    parts.append(_classification(_DOC["class"], target, CLASS_CR, f"doc{n}-class"))
    parts += [_classification(_DOC["confidentiality"], target, code, f"doc{n}-confidentiality{i}")
              for i, code in enumerate(confidentiality(hidden_from_patient=document.hidden_from_patient))]
    parts.append(_classification(_DOC["format"], target, entry.format, f"doc{n}-format"))
    organisation = document.organisation
    parts.append(_classification(_DOC["facility"], target,
                                 facility_type(organisation.facility_type if organisation else ""),
                                 f"doc{n}-facility"))
    parts.append(_classification(_DOC["practice"], target, PRACTICE_ESTABLISHMENT, f"doc{n}-practice"))
    parts.append(_classification(_DOC["type"], target, TYPE_FRCP, f"doc{n}-type"))
    parts.append(_external(_DOC["patientId"], target, patient_id, "XDSDocumentEntry.patientId", f"doc{n}-pid"))
    parts.append(_external(_DOC["uniqueId"], target, entry.unique_id, "XDSDocumentEntry.uniqueId", f"doc{n}-uid"))
    return _R.ExtrinsicObject(*parts, id=target, mimeType=entry.mime_type, objectType=_STABLE_ENTRY,
                              status=_APPROVED)


def _metadata(document: SignedDocument, entries: Sequence[_Entry], recipients: Sequence[str], source_oid: str,
              at: datetime) -> bytes:
    set_uid = f"2.25.{uuid.uuid5(_NAMESPACE, '|'.join((document.unique_id, *recipients))).int}"
    set_uuid = f"urn:uuid:{uuid.uuid5(_NAMESPACE, set_uid)}"
    patient_id, _ = cx_patient_ids(document)
    package = [
        _slot("submissionTime", _dtm(at)),
        # XON|XCN|XTN (ITI TF-3 4.2.3.3.10): the mailbox each copy is addressed to.
        *([_slot("intendedRecipient", *(f"||^^Internet^{r}" for r in recipients))] if recipients else []),
        _name(document.title),
        *[_author(_SET["author"], set_uuid, a, f"set-author{i}", document.organisation)
          for i, a in enumerate(document.authors)],
        _classification(_SET["contentType"], set_uuid, TYPE_FRCP, "set-content-type"),
        _external(_SET["uniqueId"], set_uuid, set_uid, "XDSSubmissionSet.uniqueId", "set-uid"),
        _external(_SET["sourceId"], set_uuid, source_oid, "XDSSubmissionSet.sourceId", "set-source"),
        _external(_SET["patientId"], set_uuid, patient_id, "XDSSubmissionSet.patientId", "set-pid"),
    ]
    objects: list[etree._Element] = [_document_entry(document, e, n) for n, e in enumerate(entries, 1)]
    objects.append(_R.RegistryPackage(*package, id=set_uuid, status=_APPROVED))
    objects.append(_R.Classification(id="set-is-submission-set", classifiedObject=set_uuid,
                                     classificationNode=_SUBMISSION_SET))
    for n, e in enumerate(entries, 1):
        objects.append(_R.Association(_slot("SubmissionSetStatus", "Original"), id=f"member{n}",
                                      associationType=_HAS_MEMBER, sourceObject=set_uuid, targetObject=e.entry_uuid))
    if len(entries) > 1:
        objects.append(_R.Association(id="pdf-renders-cda", associationType=_XFRM,
                                      sourceObject=entries[1].entry_uuid, targetObject=entries[0].entry_uuid))
    root = _L.SubmitObjectsRequest(_R.RegistryObjectList(*objects))
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


def _index(document: SignedDocument, entries: Sequence[_Entry]) -> bytes:
    """INDEX.HTM (ITI TF-1 §16.1.2.2): an XHTML list of the package's files, titles only."""
    h = ElementMaker()
    items = [h.li(h.a(e.title, href=f"{SUBSET}/{e.name}")) for e in entries]
    items.append(h.li(h.a("README.TXT", href="README.TXT")))
    page = h.html(h.head(h.meta(charset="utf-8"), h.title(document.title)),
                  h.body(h.h1(document.title), h.ul(*items)))
    return b"<!DOCTYPE html>\n" + bytes(etree.tostring(page, encoding="UTF-8", method="html"))


def _readme(at: datetime) -> bytes:
    """README.TXT (ITI TF-1 §16.1.2.1): the application that wrote the media, never patient data."""
    return (f"IHE XDM package\r\nProduced by: RCP tumour-board service, version {__version__}\r\n"
            f"Created: {_dtm(at)} UTC\r\nContents: see INDEX.HTM; metadata in {METADATA_PATH}\r\n").encode()


def xdm_package(document: SignedDocument, cda: bytes, *, recipients: Sequence[str] = (), source_oid: str,
                at: datetime) -> bytes:
    """The IHE XDM zip of one signed version: its CDA and PDF, described by ``METADATA.XML``.

    ``recipients`` are the mailboxes the package is addressed to (submission set ``intendedRecipient``);
    ``at`` is when the package is made (``submissionTime``, the zip entries' dates).
    """
    entries = (
        _Entry(CDA_NAME, cda, "text/xml", FORMAT_FRCP, document.title, document.unique_id),
        # The PDF is a document of its own in the package: its unique id is derived from the CDA's.
        _Entry(PDF_NAME, document.pdf, "application/pdf", FORMAT_MIME, f"{document.title} (PDF)",
               f"2.25.{uuid.uuid5(_NAMESPACE, document.unique_id + '/pdf').int}"),
    )
    files = {
        "README.TXT": _readme(at),
        "INDEX.HTM": _index(document, entries),
        METADATA_PATH: _metadata(document, entries, recipients, source_oid, at),
        **{f"{SUBSET}/{e.name}": e.data for e in entries},
    }
    stamp = at.astimezone(UTC).timetuple()[:6]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=stamp), data, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()
