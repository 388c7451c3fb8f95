"""HL7 v2.5 MDM^T02 (new document), MDM^T10 (replacement) and MDM^T11 (withdrawal), and the ACK that answers them.

The messages follow the ANS CI-SIS "Transmission de documents CDA en HL7 v2" guide (MSH-21 ``2.1^CISIS_CDA_HL7_V2``)
and IHE PAM France for the patient:

- MSH-4 the establishment's FINESS (the board's, ``SignedDocument.organisation``), MSH-7 and every other instant in
  French local time *with its offset* (DTM ``20261123163000+0100``: a bare UTC time is read as local time, one or
  two hours off), MSH-17 country ``FRA``, MSH-18 ``UNICODE UTF-8``;
- PID-3: the INS-NIR with its ANS assigning authority and type ``INS`` — only for a qualified identity — then the
  IPP with type ``PI`` and its authority as ``NAME&OID&ISO`` (the name whole when it fits HD.1's IS(20), else the
  OID alone: a cut name could be another hospital's); PID-32 the identity status;
- PV1-19 the visit number: the RCP encounter (the case in its meeting) under the service's OID, type ``VN``;
- TXA-5 the primary activity provider and TXA-22 the authenticating physician with the signature's time (PPN.15);
- OBSERVATION groups (T02/T10): OBX 1 the CI-SIS CANCER-FRCP CDA R2 (``^TEXT^XML^Base64^``, as the ANS guide
  carries a CDA), OBX 2 the signed PDF (``^AP^PDF^Base64^``), then one OBX per staging.

MDM^T11 (MDM_T01 structure: no OBX) says that a version was entered in error (``rcp.minutes.withdrawals``): TXA-12
names it, TXA-19 ``CA`` (table 0273: deleted), EVN-2 and EVN-6 the withdrawal's time, EVN-5 who withdrew it.

The message is built and checked by hl7apy with STRICT validation. One value goes in afterwards: hl7apy caps
ED.5 (TX) at 65,536 characters, a conformance length that real RCP PDFs and CDAs exceed, so the base64 data is
placed into OBX-5.5 with python-hl7's tree assignment (base64 has no HL7 delimiter, so no escaping is involved).
That length is the only rule relaxed: the tests parse every message back strictly with the data set aside.

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

from rcp.epr.document import PARIS, DocumentAuthor, SignedDocument
from rcp.identifiers import ins_authority, pid32_codes
from rcp.people import IDNATPS_OID

__all__ = ["MESSAGE_PROFILE", "Ack", "AckCode", "hl7_ts", "mdm_message", "parse_ack"]

_SEX = {"female": "F", "male": "M", "other": "O", "unknown": "U"}
_PLACEHOLDER = "DATA"
#: MSH-21: the ANS CI-SIS profile "Transmission de documents CDA en HL7 v2" (version 2.1 of the guide).
MESSAGE_PROFILE = "2.1^CISIS_CDA_HL7_V2"
#: HL7 v2.5 HD.1 (namespace id) is IS(20).
_HD1_MAX = 20


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


def hl7_ts(value: datetime) -> str:
    """HL7 v2.5 DTM to the second in French local time with its UTC offset: ``20261123163000+0100``.

    >>> hl7_ts(datetime(2026, 11, 23, 15, 30, tzinfo=UTC))
    '20261123163000+0100'
    >>> hl7_ts(datetime(2026, 7, 1, 8, 0, tzinfo=UTC))
    '20260701100000+0200'
    """
    return value.astimezone(PARIS).strftime("%Y%m%d%H%M%S%z")


def _xcn_parts(author: DocumentAuthor, *, local_authority: str) -> list[str]:
    """An author as the 13 first components of HL7 v2.5 XCN (2.A.89) / PPN, the way IHE PAM France and the ANS name
    a health professional.

    XCN.1 the IdNatPS ("8" + RPPS, "0" + ADELI) with XCN.9 assigning authority ``ASIP-SANTE-PS`` and its OID
    1.2.250.1.71.4.2.1 and XCN.13 identifier type ``RPPS``/``ADELI``; without a national identifier, the
    account's id in this service under our own namespace (MSH-3) with type ``INTRN`` (internal identifier,
    FR Core v2-0203). XCN.2 family name, XCN.3 given name, XCN.6 prefix (TRE_R11 code: DR, PR), XCN.10 name
    type L (legal).
    """
    family, given, prefix = author.person.as_xcn()
    parts = ["", _escape(family), _escape(given), "", "", prefix, "", "", "", "L", "", "", ""]
    if author.national_id:
        parts[0], parts[8], parts[12] = author.national_id, f"ASIP-SANTE-PS&{IDNATPS_OID}&ISO", author.id_kind
    elif author.local_id:
        parts[0], parts[8], parts[12] = _escape(author.local_id), local_authority, "INTRN"
    return parts


def _xcn(author: DocumentAuthor, *, local_authority: str) -> str:
    return "^".join(_xcn_parts(author, local_authority=local_authority)).rstrip("^")


def _ppn(author: DocumentAuthor, at: datetime, *, local_authority: str) -> str:
    """PPN (performing person time stamp): the XCN components, then PPN.15 the time of the action."""
    return "^".join([*_xcn_parts(author, local_authority=local_authority), "", hl7_ts(at)])


def _authority(name: str, oid: str) -> str:
    """HD as ``NAME&OID&ISO``: the name whole when it fits IS(20), else the OID alone (never a cut name)."""
    if not oid:
        return _escape(name[:_HD1_MAX])
    shown = _escape(name) if len(name) <= _HD1_MAX else ""
    return f"{shown}&{oid}&ISO"


def mdm_message(
    document: SignedDocument,
    *,
    control_id: str,
    sending_application: str = "RCP",
    sending_facility: str = "RCP",
    receiving_application: str = "DPI",
    receiving_facility: str = "",
    encounter_oid: str = "",
    now: datetime | None = None,
) -> str:
    """The ER7 text (segments separated by CR) of MDM^T02, MDM^T10 for a corrected version, or MDM^T11 for a
    withdrawn one (``document.withdrawal``).

    ``sending_facility`` is used only when the document names no establishment (MSH-4 is its FINESS);
    ``encounter_oid`` the root of the encounter ids (PV1-19), the service's (``rcp.epr.fhir.ENCOUNTER_OID``).
    """
    if not 1 <= len(control_id) <= 20:
        raise ValueError("control_id must be 1 to 20 characters (MSH-10 is ST(20) in v2.5)")
    withdrawal = document.withdrawal
    event = "T11" if withdrawal is not None else "T10" if document.corrected else "T02"
    structure = "MDM_T01" if withdrawal is not None else "MDM_T02"
    patient = document.patient
    local = _escape(sending_application)

    message = Message(structure, version="2.5", validation_level=VALIDATION_LEVEL.STRICT)
    msh = message.msh
    msh.msh_3 = local
    # The establishment's FINESS (ANS CI-SIS guide: the facility that sends), else the receiver's configured name.
    msh.msh_4 = document.organisation.finess if document.organisation is not None else _escape(sending_facility)
    msh.msh_5 = _escape(receiving_application)
    if receiving_facility:
        msh.msh_6 = _escape(receiving_facility)
    msh.msh_7 = hl7_ts(now or datetime.now(UTC))
    msh.msh_9 = f"MDM^{event}^{structure}"
    msh.msh_10 = control_id
    msh.msh_11 = "P"
    msh.msh_12 = "2.5"
    # Original acknowledgement mode (MSH-15/16 empty): the receiver answers with an application ACK.
    msh.msh_17 = "FRA"
    msh.msh_18 = "UNICODE UTF-8"
    msh.msh_21 = MESSAGE_PROFILE

    message.evn.evn_1 = event
    if withdrawal is not None:
        message.evn.evn_2 = hl7_ts(withdrawal.at)
        message.evn.evn_5 = _xcn(withdrawal.by, local_authority=local)
        message.evn.evn_6 = hl7_ts(withdrawal.at)
    else:
        message.evn.evn_2 = hl7_ts(document.signed_at)

    pid = message.pid
    if patient.ins:
        # Present only for a qualified identity (DocumentPatient refuses it otherwise). IHE PAM France: identifier
        # type INS, the authority (ASIP-SANTE-INS-NIR/-NIA/-NIR-TEST/-NIR-DEMO & its OID) telling a NIR (.8) from an
        # NIA (.9) and from test identities (.10/.11).
        ins = pid.add_field("pid_3")
        ins.value = f"{patient.ins}^^^{ins_authority(patient.ins_oid)}^INS"
    if patient.ipp:
        # Without a qualified INS the IPP alone names the patient: the hospital's EAI keys on it (DESIGN section 8).
        ipp = pid.add_field("pid_3")
        ipp.value = f"{_escape(patient.ipp)}^^^{_authority(patient.ipp_assigner, patient.ipp_assigner_oid)}^PI"
    # Name type L (legal); PAM France sends the birth name here when it is the INS reference name.
    pid.pid_5 = f"{_escape(patient.family_name)}^{_escape(patient.given_names)}^^^^^L"
    if patient.birth_date is not None:
        pid.pid_7 = patient.birth_date.strftime("%Y%m%d")
    pid.pid_8 = _SEX[patient.sex]
    # PID-32 identity reliability (IS, repeating; HL7 table 0445 as PAM France 2.11 extends it): the RNIV status
    # (PROV, RECUP, VALI, QUAL), then the identity attributes (DOUT, FICT, HOMA).
    for code in pid32_codes(patient.identity_status, patient.identity_attributes):
        pid.add_field("pid_32").value = code

    pv1 = message.pv1
    pv1.pv1_2 = "N"  # patient class: not applicable (a board decision, not a visit)
    if document.encounter_id and encounter_oid:
        # The RCP encounter (the CDA's encompassingEncounter/id): the case in its meeting, under the service's OID.
        pv1.pv1_19 = f"{_escape(document.encounter_id)}^^^{local}&{encounter_oid}&ISO^VN"

    txa = message.txa
    txa.txa_1 = "1"
    txa.txa_2 = document.type_code  # document type (table 0270): LOINC 34794-8
    txa.txa_3 = "AP"  # content presentation (table 0191): application data
    txa.txa_4 = document.meeting_date.strftime("%Y%m%d")  # activity date: the meeting
    if document.authors:
        # Primary activity provider: the physician who signed the fiche.
        txa.txa_5 = _xcn(document.authors[0], local_authority=local)
    txa.txa_6 = hl7_ts(document.signed_at)  # origination date/time: the signature
    for author in document.authors:
        txa.add_field("txa_9").value = _xcn(author, local_authority=local)
    txa.txa_12 = f"{document.unique_id}^RCP"  # unique document number
    if document.replaces is not None:
        txa.txa_13 = f"{document.replaces}^RCP"  # parent document number: the version this one replaces
    txa.txa_16 = f"{document.unique_id}.xml" if document.cda else f"{document.unique_id}.pdf"
    txa.txa_17 = "LA"  # completion status (table 0271): legally authenticated (signed)
    # Availability (table 0273): AV available for patient care; CA deleted, for a version entered in error.
    txa.txa_19 = "CA" if withdrawal is not None else "AV"
    for author in document.authors[:1]:
        # Authentication person and time: the signer, at the signature (PPN.15).
        txa.add_field("txa_22").value = _ppn(author, document.signed_at, local_authority=local)

    data: list[bytes] = []
    if withdrawal is None:
        status = "C" if document.corrected else "F"  # result status (table 0085): corrected / final
        for kind, content in (("^TEXT^XML^Base64^", document.cda), ("^AP^PDF^Base64^", document.pdf)):
            if not content:
                continue
            obx = message.add_group("MDM_T02_OBSERVATION").obx
            obx.obx_1 = str(len(data) + 1)
            obx.obx_2 = "ED"
            obx.obx_3 = f"{document.type_code}^{_escape(document.type_display)}^LN"
            obx.obx_5 = kind + _PLACEHOLDER
            obx.obx_11 = status
            obx.obx_14 = hl7_ts(document.signed_at)
            data.append(content)
        _staging_observations(message, document, start=len(data) + 1)
    message.validate()  # STRICT: structure, cardinalities, datatypes and lengths

    tree = hl7.parse(message.to_er7())
    for index, content in enumerate(data, start=1):
        tree.assign_field(base64.b64encode(content).decode("ascii"), "OBX", index, 5, 1, 5)
    return str(tree)


def _staging_observations(message: Message, document: SignedDocument, *, start: int) -> None:
    """One OBX per staging after the documents', the text as written: "ypT0 N0 M0 (TNM 8th ed.), stage 0".

    OBX-3 is the LOINC TNM panel the CI-SIS FRCP codes the staging with (clinical 75620-5, pathological 75621-3) or
    21914-7 for another classification; OBX-2 ST, so an EPR that files only the document ignores them, and one that
    shows results shows the prefix the board wrote (issue 14, item 3).
    """
    for index, staging in enumerate(document.staging, start=start):
        obx = message.add_group("MDM_T02_OBSERVATION").obx
        code, display = staging.loinc
        obx.obx_1 = str(index)
        obx.obx_2 = "ST"
        obx.obx_3 = f"{code}^{_escape(display)}^LN"
        obx.obx_5 = _escape(staging.display())
        obx.obx_11 = "C" if document.corrected else "F"
        obx.obx_14 = hl7_ts(document.signed_at)


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
