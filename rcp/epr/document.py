"""The signed document the EPR receives: everything a receiver needs, independent of the minutes code.

The minutes package maps a signed decision version to a :class:`SignedDocument`; the outbox stores it (as JSON,
with the PDF in base64) in the signature's transaction, and the FHIR, HL7 and file-drop receivers build their
messages from it. Keeping this value free of database types means a delivery can be rebuilt by a worker in
another process, years later, exactly as it was signed.

Example::

    document = SignedDocument(
        set_id="1.2.250.1.999.1.7", version=1, unique_id="1.2.250.1.999.1.7.1", replaces=None,
        title="RCP thoracique", status="final",
        patient=DocumentPatient(ins="279035121518989", identity_status="qualified", ipp="123456",
                                ipp_assigner="CHU-ANGERS",
                                family_name="DUPONT", given_names="Jeanne", birth_date=date(1979, 3, 15),
                                sex="female"),
        authors=(DocumentAuthor(family_name="Martin", given_names="Claire", prefix="Dr", id_kind="RPPS",
                                id_value="10003334827", specialty="medical_oncologist"),),
        board="RCP thoracique", meeting_date=date(2026, 11, 23), signed_at=datetime.now(UTC),
        pdf=pdf_bytes, sha256=hashlib.sha256(pdf_bytes).hexdigest(),
    )
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from rcp.identifiers import IDENTITY_STATUSES, INS_OIDS, VALIDATION_MODES, ins_may_leave
from rcp.people import PREFIXES, PersonName, luhn_ok

__all__ = [
    "INS_NIR_OID",
    "INS_NIR_TEST_OID",
    "LOINC_RCP",
    "LOINC_RCP_DISPLAY",
    "PARIS",
    "DocumentAuthor",
    "DocumentOrganisation",
    "DocumentPatient",
    "DocumentStaging",
    "DocumentWithdrawal",
    "SignedDocument",
]

#: INS-NIR, the French national health identifier (ANS: "Identifiant national de santé", NIR of the patient).
INS_NIR_OID = "1.2.250.1.213.1.4.8"
#: INS-NIR of test identities (the CI-SIS examples use it); accepted, so that test identities stay marked as such
#: (.9 NIA and .11 demo are accepted too: ``rcp.identifiers.INS_OIDS``).
INS_NIR_TEST_OID = "1.2.250.1.213.1.4.10"
#: LOINC 34794-8, the document type of the CI-SIS "fiche RCP" (FRCP 2022.01).
LOINC_RCP = "34794-8"
LOINC_RCP_DISPLAY = "Compte rendu de réunion de concertation pluridisciplinaire"

#: The time zone of the French systems the documents go to: every instant leaves as local time *with its offset*
#: (HL7 DTM ``20261123163000+0100``, FHIR ``2026-11-23T16:30:00+01:00``), never as UTC read as local time.
PARIS = ZoneInfo("Europe/Paris")

_STATUSES = ("final", "amended", "entered-in-error")
#: FINESS: 9 characters, the department first (2A/2B in Corsica).
_FINESS = re.compile(r"^([0-9]{2}|2A|2B)[0-9]{7}$")
_SEXES = ("female", "male", "other", "unknown")
_ID_KINDS = ("", "RPPS", "ADELI")
_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")
_NIR = re.compile(r"^[12378][0-9]{4}([0-9]{2}|2A|2B)[0-9]{8}$")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True, kw_only=True)
class DocumentPatient:
    """The patient as the receiving EPR identifies them: the INS for a qualified identity, else the hospital's IPP.

    The national identity rules (RNIV) share the INS only for a *qualified* identity: ``ins`` is empty otherwise
    (the minutes never put it here, and this value refuses it), and ``identity_status`` travels with the document
    (HL7 PID-32, the FR Core identity-reliability extension) so the receiver knows how far to trust the traits.
    """

    #: INS-NIR: 13 characters + 2-digit key (15); Corsican NIRs carry 2A/2B in the department. Qualified only.
    ins: str = ""
    ins_oid: str = INS_NIR_OID
    #: RNIV identity status (provisional, recovered, validated, qualified) and attributes (doubtful, fictitious,
    #: homonym) at signature.
    identity_status: str = "provisional"
    identity_attributes: tuple[str, ...] = ()
    #: The identity document the status was validated on (``rcp.identifiers.VALIDATION_MODES``) and the day the
    #: status was set, when known: FR Core identity-reliability ``validationMode`` and ``validationDate``.
    identity_document: str = ""
    identity_date: date | None = None
    #: The local patient identifier (IPP) and the assigning authority that issued it.
    ipp: str = ""
    ipp_assigner: str = ""
    #: OID of the IPP's assigning authority when known (HL7 CX.4.2, FHIR identifier system urn:oid:...).
    ipp_assigner_oid: str = ""
    family_name: str
    given_names: str = ""
    birth_date: date | None = None
    #: HL7 administrative gender: female, male, other, unknown.
    sex: str = "unknown"

    def __post_init__(self) -> None:
        _require(not self.ins or bool(_NIR.match(self.ins)),
                 "'ins' must be a 15-character INS-NIR (got a malformed value)")
        _require(self.ins_oid in INS_OIDS, f"'ins_oid' must be one of {sorted(INS_OIDS)} (got {self.ins_oid!r})")
        _require(not self.identity_document or self.identity_document in VALIDATION_MODES,
                 f"'identity_document' must be one of {list(VALIDATION_MODES)} (got {self.identity_document!r})")
        _require(self.identity_status in IDENTITY_STATUSES,
                 f"'identity_status' must be in {list(IDENTITY_STATUSES)} (got {self.identity_status!r})")
        _require(not self.ins or ins_may_leave(self.identity_status),
                 "'ins' may only be sent for a qualified identity (national identity rules): send the IPP")
        _require(bool(self.ins) or bool(self.ipp),
                 "the patient needs a qualified INS or an IPP with its assigning authority")
        _require(self.sex in _SEXES, f"'sex' must be in {list(_SEXES)} (got {self.sex!r})")
        _require(bool(self.family_name.strip()), "'family_name' must not be empty")
        _require(not self.ipp or bool(self.ipp_assigner), "'ipp_assigner' is required with an IPP")
        # Kept whole (FHIR assigner.display): HL7 PID-3.4 names the authority by its OID when the name does not fit
        # HD.1's IS(20) (rcp.epr.hl7), never by a cut name that another authority could share.
        _require(len(self.ipp_assigner) <= 200, "'ipp_assigner' must be at most 200 characters")
        _require(not self.ipp_assigner_oid or bool(_OID.match(self.ipp_assigner_oid)),
                 "'ipp_assigner_oid' must be an OID such as 1.2.250.1.999")


@dataclass(frozen=True, kw_only=True)
class DocumentAuthor:
    """A practitioner who signed (or co-signed) the decision, named in parts (``rcp.people.PersonName``)."""

    family_name: str
    given_names: str = ""
    #: Title of practice: "Dr", "Pr" or "" (HL7 XCN.6; FR Core HumanName.suffix as its TRE_R11 code).
    prefix: str = ""
    #: "RPPS" (11 digits, Luhn key) or "ADELI" (9 digits) or "" when the practitioner has neither.
    id_kind: str = ""
    id_value: str = ""
    #: The account's id in this service: names the author when there is no national identifier.
    local_id: str = ""
    #: Our specialty key (``rcp.scheduling.specialties``) and its TRE_R38 code when known (G15_10/SM36).
    specialty: str = ""
    specialty_code: str = ""
    specialty_label: str = ""

    def __post_init__(self) -> None:
        _require(bool(self.family_name.strip()), "'family_name' of an author must not be empty")
        _require(self.id_kind in _ID_KINDS, f"'id_kind' must be in {list(_ID_KINDS)} (got {self.id_kind!r})")
        _require(self.prefix in PREFIXES, f"'prefix' must be in {list(PREFIXES)} (got {self.prefix!r})")
        if self.id_kind == "RPPS":
            _require(self.id_value.isascii() and self.id_value.isdigit() and len(self.id_value) == 11,
                     "an RPPS number has 11 digits")
            _require(luhn_ok(self.id_value), "the RPPS number fails its Luhn check digit")
        elif self.id_kind == "ADELI":
            _require(self.id_value.isdigit() and len(self.id_value) == 9, "an ADELI number has 9 digits")
        else:
            _require(not self.id_value, "'id_value' needs an 'id_kind' (RPPS or ADELI)")

    @property
    def person(self) -> PersonName:
        """The name as ``rcp.people`` writes it (XCN pieces, FR Core HumanName)."""
        return PersonName(family=self.family_name, given=self.given_names, prefix=self.prefix)

    @property
    def national_id(self) -> str:
        """The IdNatPS (ANS): "8" + RPPS, "0" + ADELI; "" without an identifier."""
        if self.id_kind == "RPPS":
            return "8" + self.id_value
        if self.id_kind == "ADELI":
            return "0" + self.id_value
        return ""


#: LOINC codes of the stagings the messages carry: the TNM panels the CI-SIS FRCP codes the tumour's staging with
#: (75620-5 "TNM clinical staging before treatment panel", 75621-3 "TNM pathologic staging after surgery panel"),
#: and 21914-7 "Stage group.other Cancer" (HL7 mCODE) for FIGO, Ann Arbor, ISS ...
STAGING_LOINC = {
    "clinical": ("75620-5", "TNM clinical staging before treatment panel Cancer"),
    "pathological": ("75621-3", "TNM pathologic staging after surgery panel Cancer"),
    "other": ("21914-7", "Stage group.other Cancer"),
}


@dataclass(frozen=True, kw_only=True)
class DocumentStaging:
    """One staging of the tumour as the board recorded it, for the EPR to show as written (issue 14, item 3).

    ``text`` keeps the oncologist's prefixes ("ypT0 N0 M0", never a "cT0 N0 M0"); ``edition`` is the TNM edition
    (a signed fiche always has one); ``stage`` the stage group. Other classifications read "FIGO IB2".
    """

    kind: str
    text: str
    edition: str = ""
    stage: str = ""

    def __post_init__(self) -> None:
        _require(self.kind in STAGING_LOINC, f"'kind' must be in {list(STAGING_LOINC)} (got {self.kind!r})")
        _require(bool(self.text.strip()) and len(self.text) <= 200, "'text' must be 1 to 200 characters")
        _require(self.kind == "other" or self.edition.isdigit(),
                 "a TNM staging needs its edition (7 or 8): a signed fiche always has one")

    @property
    def loinc(self) -> tuple[str, str]:
        return STAGING_LOINC[self.kind]

    def display(self) -> str:
        """ "ypT0 N0 M0 (TNM 8th ed.), stage 0": the same words in every message (the PDF has the reader's)."""
        text = self.text if self.kind == "other" else f"{self.text} (TNM {self.edition}th ed.)"
        return f"{text}, stage {self.stage}" if self.stage else text

    def as_json(self) -> dict[str, str]:
        return {"kind": self.kind, "text": self.text, "edition": self.edition, "stage": self.stage}


@dataclass(frozen=True, kw_only=True)
class DocumentOrganisation:
    """The establishment the document comes from: its FINESS number and name (the board's establishment).

    HL7 MSH-4 (sending facility) is the FINESS; FHIR names it as the authoring Organization (FR Core identifier
    ``urn:oid:1.2.250.1.71.4.2.2``, "1" + FINESS as IdNatStruct). ``facility_type`` is the establishment's sector
    (TRE_R02-SecteurActivite, JDV_J02 XdsHealthcareFacilityTypeCode: SA01 public, SA03/SA04 private ...).
    """

    finess: str
    name: str
    facility_type: str = "SA01"
    #: The organisation that keeps the documents (FHIR DocumentReference.custodian, CDA custodian) when it is not
    #: the establishment itself: its FINESS and name ("" : the establishment).
    custodian_finess: str = ""
    custodian_name: str = ""

    def __post_init__(self) -> None:
        _require(bool(_FINESS.match(self.finess)), "'finess' must be a 9-character FINESS number")
        _require(not self.custodian_finess or bool(_FINESS.match(self.custodian_finess)),
                 "'custodian_finess' must be a 9-character FINESS number")
        _require(bool(self.name.strip()), "'name' of the establishment must not be empty")
        _require(bool(re.fullmatch(r"SA[0-9]{2}", self.facility_type)),
                 f"'facility_type' must be a TRE_R02 code such as SA01 (got {self.facility_type!r})")

    def as_json(self) -> dict[str, str]:
        return {"finess": self.finess, "name": self.name, "facility_type": self.facility_type,
                "custodian_finess": self.custodian_finess, "custodian_name": self.custodian_name}


@dataclass(frozen=True, kw_only=True)
class DocumentWithdrawal:
    """A signed version withdrawn as entered in error: HL7 MDM^T11 (EVN-2 ``at``, EVN-5 ``by``), FHIR
    ``DocumentReference.status`` entered-in-error. ``withdrawal_id`` (an OID) names the withdrawal itself: the
    outbox keys its deliveries by it. ``wrong_patient``: the document was filed under another patient.
    """

    withdrawal_id: str
    at: datetime
    reason: str
    by: DocumentAuthor
    wrong_patient: bool = False

    def __post_init__(self) -> None:
        _require(bool(_OID.match(self.withdrawal_id)), "'withdrawal_id' must be an OID such as 1.2.250.1.999.1")
        _require(self.at.tzinfo is not None, "'at' must be timezone-aware")
        _require(bool(self.reason.strip()), "'reason' must not be empty: say why the version is withdrawn")

    def as_json(self) -> dict[str, Any]:
        return {"withdrawal_id": self.withdrawal_id, "at": self.at.isoformat(), "reason": self.reason,
                "by": _author_json(self.by), "wrong_patient": self.wrong_patient}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DocumentWithdrawal:
        return cls(withdrawal_id=data["withdrawal_id"], at=datetime.fromisoformat(data["at"]), reason=data["reason"],
                   by=DocumentAuthor(**data["by"]), wrong_patient=bool(data.get("wrong_patient")))


def _author_json(a: DocumentAuthor) -> dict[str, str]:
    return {"family_name": a.family_name, "given_names": a.given_names, "prefix": a.prefix, "id_kind": a.id_kind,
            "id_value": a.id_value, "local_id": a.local_id, "specialty": a.specialty,
            "specialty_code": a.specialty_code, "specialty_label": a.specialty_label}


@dataclass(frozen=True, kw_only=True)
class SignedDocument:
    """One signed version of a case's RCP minutes, ready to deliver.

    ``set_id`` is common to all versions (CDA setId, FHIR/XDS document set); ``unique_id`` (an OID) names this
    version; ``replaces`` is the previous version's ``unique_id`` for a correction (HL7 MDM^T10, FHIR relatesTo).
    """

    set_id: str
    version: int
    unique_id: str
    replaces: str | None = None
    title: str
    type_code: str = LOINC_RCP
    type_display: str = LOINC_RCP_DISPLAY
    #: final for a first version, amended for a correction; entered-in-error to withdraw.
    status: str = "final"
    patient: DocumentPatient
    authors: tuple[DocumentAuthor, ...] = ()
    board: str
    meeting_date: date
    signed_at: datetime
    pdf: bytes = field(repr=False)
    sha256: str
    #: The tumour's stagings as signed (clinical and pathological TNM, other classifications), in the fiche's order.
    staging: tuple[DocumentStaging, ...] = ()
    #: Set when this delivery withdraws the version (status entered-in-error): the version's content is unchanged.
    withdrawal: DocumentWithdrawal | None = None
    #: The board's establishment (FINESS), when the board names it (issue 16, item 1).
    organisation: DocumentOrganisation | None = None
    #: The RCP encounter (the case in its meeting): HL7 PV1-19 visit number, FHIR context.encounter, CDA
    #: encompassingEncounter/id, under the service's OID ``.2`` (``rcp.epr.fhir.ENCOUNTER_OID``).
    encounter_id: str = ""
    #: The CI-SIS CANCER-FRCP CDA R2 document of the version (``rcp.minutes.cda``), when it could be built.
    cda: bytes = field(default=b"", repr=False)
    #: Kept from the patient until the announcement consultation (DMP confidentialityCode INVISIBLE_PATIENT,
    #: ``rcp.epr.xds.confidentiality``): the board chose it on the signed fiche.
    hidden_from_patient: bool = False

    def __post_init__(self) -> None:
        _require(bool(_OID.match(self.unique_id)), "'unique_id' must be an OID such as 1.2.250.1.999.1")
        _require(bool(self.set_id), "'set_id' must not be empty")
        _require(self.version >= 1, f"'version' must be 1 or more (got {self.version})")
        _require((self.version == 1) == (self.replaces is None),
                 "'replaces' must be set on a corrected version (version > 1) and only there")
        _require(self.replaces is None or bool(_OID.match(self.replaces)), "'replaces' must be an OID")
        _require(self.status in _STATUSES, f"'status' must be in {list(_STATUSES)} (got {self.status!r})")
        _require((self.status == "entered-in-error") == (self.withdrawal is not None),
                 "'status' is entered-in-error exactly when the document carries its withdrawal")
        _require(self.type_code == LOINC_RCP, f"'type_code' must be LOINC {LOINC_RCP} (got {self.type_code!r})")
        _require(self.signed_at.tzinfo is not None, "'signed_at' must be timezone-aware (UTC)")
        _require(self.pdf.startswith(b"%PDF"), "'pdf' must be a PDF document (it does not start with %PDF)")
        _require(hashlib.sha256(self.pdf).hexdigest() == self.sha256,
                 "'sha256' does not match the PDF: the document changed after signature")
        _require(not self.cda or self.cda.lstrip().startswith(b"<?xml"),
                 "'cda' must be an XML document (it does not start with an XML declaration)")

    @property
    def corrected(self) -> bool:
        return self.replaces is not None

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (PDF in base64) that :meth:`from_json` reads back unchanged."""
        return {
            "set_id": self.set_id,
            "version": self.version,
            "unique_id": self.unique_id,
            "replaces": self.replaces,
            "title": self.title,
            "type_code": self.type_code,
            "type_display": self.type_display,
            "status": self.status,
            "patient": {
                "ins": self.patient.ins,
                "ins_oid": self.patient.ins_oid,
                "identity_status": self.patient.identity_status,
                "identity_attributes": list(self.patient.identity_attributes),
                "identity_document": self.patient.identity_document,
                "identity_date": self.patient.identity_date.isoformat() if self.patient.identity_date else None,
                "ipp": self.patient.ipp,
                "ipp_assigner": self.patient.ipp_assigner,
                "ipp_assigner_oid": self.patient.ipp_assigner_oid,
                "family_name": self.patient.family_name,
                "given_names": self.patient.given_names,
                "birth_date": self.patient.birth_date.isoformat() if self.patient.birth_date else None,
                "sex": self.patient.sex,
            },
            "authors": [_author_json(a) for a in self.authors],
            "board": self.board,
            "meeting_date": self.meeting_date.isoformat(),
            "signed_at": self.signed_at.isoformat(),
            "pdf": base64.b64encode(self.pdf).decode("ascii"),
            "sha256": self.sha256,
            "staging": [st.as_json() for st in self.staging],
            "withdrawal": self.withdrawal.as_json() if self.withdrawal else None,
            "organisation": self.organisation.as_json() if self.organisation else None,
            "encounter_id": self.encounter_id,
            "cda": base64.b64encode(self.cda).decode("ascii"),
            "hidden_from_patient": self.hidden_from_patient,
        }

    def metadata_json(self) -> dict[str, Any]:
        """:meth:`to_json` without the PDF and the CDA (the file drop writes them beside it)."""
        data = self.to_json()
        del data["pdf"]
        del data["cda"]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SignedDocument:
        patient = dict(data["patient"])
        birth = patient.pop("birth_date")
        if "identity_status" not in patient:
            # Queued before the status travelled: the INS had not been checked as qualified, so it stays home.
            patient["ins"] = ""
        patient["identity_attributes"] = tuple(patient.get("identity_attributes") or ())
        on = patient.pop("identity_date", None)
        patient["identity_date"] = date.fromisoformat(on) if on else None
        return cls(
            set_id=data["set_id"],
            version=int(data["version"]),
            unique_id=data["unique_id"],
            replaces=data.get("replaces"),
            title=data["title"],
            type_code=data.get("type_code", LOINC_RCP),
            type_display=data.get("type_display", LOINC_RCP_DISPLAY),
            status=data["status"],
            patient=DocumentPatient(**patient, birth_date=date.fromisoformat(birth) if birth else None),
            authors=tuple(DocumentAuthor(**a) for a in data.get("authors", ())),
            board=data["board"],
            meeting_date=date.fromisoformat(data["meeting_date"]),
            signed_at=datetime.fromisoformat(data["signed_at"]),
            pdf=base64.b64decode(data["pdf"]),
            sha256=data["sha256"],
            # Queued before stagings travelled: the PDF carries them.
            staging=tuple(DocumentStaging(**st) for st in data.get("staging", ())),
            withdrawal=DocumentWithdrawal.from_json(data["withdrawal"]) if data.get("withdrawal") else None,
            # Queued before the establishment, the encounter and the CDA travelled: MSH-4 falls back to the
            # receiver's configured facility, and only the PDF goes.
            organisation=DocumentOrganisation(**data["organisation"]) if data.get("organisation") else None,
            encounter_id=data.get("encounter_id", ""),
            cda=base64.b64decode(data.get("cda") or ""),
            # Queued before the option existed: visible, as every document was then.
            hidden_from_patient=bool(data.get("hidden_from_patient", False)),
        )
