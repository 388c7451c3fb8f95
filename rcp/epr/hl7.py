"""HL7 v2.5 MDM^T02 (new document) and MDM^T10 (replacement), and the ACK that answers them.

Both events use the MDM_T02 message structure (HL7 v2.5 chapter 9.6): MSH, EVN, PID, PV1, TXA and one
OBSERVATION group whose OBX carries the signed PDF as encapsulated data (ED, base64), the way French interface
engines take documents into the EPR (IHE PAM France conventions for PID-3: the INS-NIR with its ANS assigning
authority and type ``INS`` — only for a qualified identity — then the hospital's IPP with type ``PI``; PID-32
the identity status).

The message is built and checked by hl7apy with STRICT validation. One value goes in afterwards: hl7apy caps
ED.5 (TX) at 65,536 characters, a conformance length that real RCP PDFs exceed, so the base64 data is placed into
OBX-5.5 with python-hl7's tree assignment (base64 has no HL7 delimiter, so no escaping is involved).

MSH-10 (message control id) is the delivery's idempotency key: the receiver answers a resend with the same ACK
and files the document once.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import hl7
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message

from rcp.epr.document import DocumentAuthor, SignedDocument
from rcp.identifiers import ins_authority, pid32_codes
from rcp.people import IDNATPS_OID

__all__ = ["Ack", "AckCode", "mdm_message", "parse_ack"]

_SEX = {"female": "F", "male": "M", "other": "O", "unknown": "U"}
_PLACEHOLDER = "PDF"


class AckCode(StrEnum):
    """HL7 table 0008. Enhanced-mode commit codes (CA/CE/CR) are read as their application counterparts."""

    accept = "AA"  # filed: delivered
    error = "AE"  # the content must be fixed before resending: needs attention
    reject = "AR"  # rejected for a transient reason (engine busy, lock): may be resent unchanged


@dataclass(frozen=True)
class Ack:
    code: AckCode
    control_id: str
    #: MSA-3 / ERR text from the receiver (kept for the coordinator; never logged).
    text: str


def _escape(value: str) -> str:
    """HL7 v2.5 section 2.7.4: escape the delimiters inside a text value."""
    return (
        value.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\")
        .replace("&", "\\T\\").replace("~", "\\R\\").replace("\r", " ").replace("\n", " ")
    )


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%d%H%M%S")


def _xcn(author: DocumentAuthor, *, local_authority: str) -> str:
    """An author as HL7 v2.5 XCN (2.A.89), the way IHE PAM France and the ANS name a health professional.

    XCN.1 the IdNatPS ("8" + RPPS, "0" + ADELI) with XCN.9 assigning authority ``ASIP-SANTE-PS`` and its OID
    1.2.250.1.71.4.2.1 and XCN.13 identifier type ``RPPS``/``ADELI``; without a national identifier, the
    account's id in this service under our own namespace (MSH-3) with type ``INTRN`` (internal identifier,
    FR Core v2-0203). XCN.2 family name, XCN.3 given name, XCN.6 prefix (TRE_R11 code: DR, PR), XCN.10 name
    type L (legal).
    """
    family, given, prefix = author.person.as_xcn()
    name = f"{_escape(family)}^{_escape(given)}^^^{prefix}"
    if author.national_id:
        return f"{author.national_id}^{name}^^^ASIP-SANTE-PS&{IDNATPS_OID}&ISO^L^^^{author.id_kind}"
    if author.local_id:
        return f"{_escape(author.local_id)}^{name}^^^{local_authority}^L^^^INTRN"
    return f"^{name}^^^^L"


def mdm_message(
    document: SignedDocument,
    *,
    control_id: str,
    sending_application: str = "RCP",
    sending_facility: str = "RCP",
    receiving_application: str = "DPI",
    receiving_facility: str = "",
    now: datetime | None = None,
) -> str:
    """The ER7 text (segments separated by CR) of MDM^T02, or MDM^T10 for a corrected version."""
    if not 1 <= len(control_id) <= 20:
        raise ValueError("control_id must be 1 to 20 characters (MSH-10 is ST(20) in v2.5)")
    event = "T10" if document.corrected else "T02"
    at = _ts(now or datetime.now(UTC))
    patient = document.patient

    message = Message("MDM_T02", version="2.5", validation_level=VALIDATION_LEVEL.STRICT)
    msh = message.msh
    msh.msh_3 = _escape(sending_application)
    msh.msh_4 = _escape(sending_facility)
    msh.msh_5 = _escape(receiving_application)
    if receiving_facility:
        msh.msh_6 = _escape(receiving_facility)
    msh.msh_7 = at
    msh.msh_9 = f"MDM^{event}^MDM_T02"
    msh.msh_10 = control_id
    msh.msh_11 = "P"
    msh.msh_12 = "2.5"
    # Original acknowledgement mode (MSH-15/16 empty): the receiver answers with an application ACK.
    msh.msh_18 = "UNICODE UTF-8"

    message.evn.evn_1 = event
    message.evn.evn_2 = _ts(document.signed_at)

    pid = message.pid
    if patient.ins:
        # Present only for a qualified identity (DocumentPatient refuses it otherwise). IHE PAM France: identifier
        # type INS, the authority (ASIP-SANTE-INS-NIR/-NIA/-NIR-TEST/-NIR-DEMO & its OID) telling a NIR (.8) from an
        # NIA (.9) and from test identities (.10/.11).
        ins = pid.add_field("pid_3")
        ins.value = f"{patient.ins}^^^{ins_authority(patient.ins_oid)}^INS"
    if patient.ipp:
        ipp = pid.add_field("pid_3")
        assigner = _escape(patient.ipp_assigner)
        oid = f"&{patient.ipp_assigner_oid}&ISO" if patient.ipp_assigner_oid else ""
        ipp.value = f"{_escape(patient.ipp)}^^^{assigner}{oid}^PI"
    # Name type L (legal); PAM France sends the birth name here when it is the INS reference name.
    pid.pid_5 = f"{_escape(patient.family_name)}^{_escape(patient.given_names)}^^^^^L"
    if patient.birth_date is not None:
        pid.pid_7 = patient.birth_date.strftime("%Y%m%d")
    pid.pid_8 = _SEX[patient.sex]
    # PID-32 identity reliability (IS, repeating; HL7 table 0445 as PAM France 2.11 extends it): the RNIV status
    # (PROV, RECUP, VALI, QUAL), then the identity attributes (DOUT, FICT, HOMA).
    for code in pid32_codes(patient.identity_status, patient.identity_attributes):
        pid.add_field("pid_32").value = code

    message.pv1.pv1_2 = "N"  # patient class: not applicable (a board decision, not a visit)

    txa = message.txa
    txa.txa_1 = "1"
    txa.txa_2 = document.type_code  # document type (table 0270): LOINC 34794-8
    txa.txa_3 = "AP"  # content presentation (table 0191): application data, the PDF
    txa.txa_4 = document.meeting_date.strftime("%Y%m%d")  # activity date: the meeting
    txa.txa_6 = _ts(document.signed_at)  # origination date/time: the signature
    for author in document.authors:
        txa.add_field("txa_9").value = _xcn(author, local_authority=_escape(sending_application))
    txa.txa_12 = f"{document.unique_id}^RCP"  # unique document number
    if document.replaces is not None:
        txa.txa_13 = f"{document.replaces}^RCP"  # parent document number: the version this one replaces
    txa.txa_16 = f"{document.unique_id}.pdf"
    txa.txa_17 = "LA"  # completion status (table 0271): legally authenticated (signed)
    txa.txa_19 = "AV"  # availability (table 0273): available for patient care

    observation = message.add_group("MDM_T02_OBSERVATION")
    obx = observation.obx
    obx.obx_1 = "1"
    obx.obx_2 = "ED"
    obx.obx_3 = f"{document.type_code}^{_escape(document.type_display)}^LN"
    obx.obx_5 = f"^AP^PDF^Base64^{_PLACEHOLDER}"
    obx.obx_11 = "C" if document.corrected else "F"  # result status (table 0085): corrected / final
    obx.obx_14 = _ts(document.signed_at)
    _staging_observations(message, document)
    message.validate()  # STRICT: structure, cardinalities, datatypes and lengths

    tree = hl7.parse(message.to_er7())
    tree.assign_field(base64.b64encode(document.pdf).decode("ascii"), "OBX", 1, 5, 1, 5)
    return str(tree)


def _staging_observations(message: Message, document: SignedDocument) -> None:
    """One OBX per staging after the document's, the text as written: "ypT0 N0 M0 (TNM 8th ed.), stage 0".

    OBX-3 is the LOINC TNM panel the CI-SIS FRCP codes the staging with (clinical 75620-5, pathological 75621-3) or
    21914-7 for another classification; OBX-2 ST, so an EPR that files only the PDF ignores them, and one that
    shows results shows the prefix the board wrote (issue 14, item 3).
    """
    for index, staging in enumerate(document.staging, start=2):
        obx = message.add_group("MDM_T02_OBSERVATION").obx
        code, display = staging.loinc
        obx.obx_1 = str(index)
        obx.obx_2 = "ST"
        obx.obx_3 = f"{code}^{_escape(display)}^LN"
        obx.obx_5 = _escape(staging.display())
        obx.obx_11 = "C" if document.corrected else "F"
        obx.obx_14 = _ts(document.signed_at)


def parse_ack(text: str, *, expected_control_id: str) -> Ack:
    """Read an ACK. ``ValueError`` when it is not an ACK of our message (treated as no answer: retried)."""
    try:
        tree = hl7.parse(text)
        msa = tree.segment("MSA")
    except (KeyError, IndexError, hl7.ParseException) as exc:
        raise ValueError("the answer is not an HL7 ACK (no MSA segment)") from exc
    raw = str(msa(1))
    code = {"AA": "AA", "CA": "AA", "AE": "AE", "CE": "AE", "AR": "AR", "CR": "AR"}.get(raw)
    if code is None:
        raise ValueError(f"MSA-1 acknowledgement code {raw!r} is not in HL7 table 0008")
    control_id = str(msa(2))
    if control_id != expected_control_id:
        raise ValueError("MSA-2 does not acknowledge our message control id")
    texts = [str(msa(3))] if len(msa) > 3 and str(msa(3)) else []
    try:
        for err in tree.segments("ERR"):
            # ERR-8 user message, or ERR-3 HL7 error code (v2.5).
            detail = str(err(8)) if len(err) > 8 and str(err(8)) else (str(err(3)) if len(err) > 3 else "")
            if detail:
                texts.append(detail)
    except KeyError:
        pass
    return Ack(code=AckCode(code), control_id=control_id, text="; ".join(texts)[:500])
