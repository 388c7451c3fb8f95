"""The structured decision of one case: the fields of a French fiche RCP, checked and coded.

A :class:`Fiche` is what a board signs. Its JSON form (:meth:`Fiche.to_content`) is the canonical content that
``rcp.minutes.versions`` hashes and freezes, and :meth:`Fiche.from_content` reads it back, so a signed version can
always be rendered again (HTML, PDF, DICOM, CDA/FHIR) from the stored data alone.

Fields follow the CI-SIS FRCP 2022.01 document (LOINC 34794-8): header participants (patient with INS and local
identifier, requester, GP, quorum members and members outside the quorum, correspondents), the RCP encounter
(board, date), and the sections "Raison de la recommandation" (nature of discussion, organ), "Tumeur"
(topography CIM-10, morphology CIM-O-3, TNM), "Statut fonctionnel" (WHO scale), "Statut du dossier" (quorum,
case status), "Plan de soins" (proposal) and "Cadre de la proposition" (guideline, clinical trial).

Parsing collects every field error at once and raises :class:`rcp.errors.Invalid` with ``fields`` naming each
field (dotted paths such as ``proposal.type``); messages quote only what the service chose (codes, keys), never
what a clinician typed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, NoReturn, TypeVar

from rcp.errors import Invalid
from rcp.i18n import N_
from rcp.identifiers import (
    IDENTITY_ATTRIBUTES,
    IDENTITY_STATUSES,
    INS_NIR_OID,
    INS_OIDS,
    VALIDATION_MODES,
    ins_key_ok,
    ins_may_leave,
    is_uid,
)
from rcp.minutes import codes
from rcp.minutes.codes import Coding, ProposalType
from rcp.minutes.staging import OtherStage, StagingError, Tnm, parse_diagnosis_date, parse_laterality
from rcp.people import PersonName
from rcp.scheduling.quorum import Attendee, Quorum, TreatmentGap, evaluate_quorum, treatment_gaps
from rcp.scheduling.specialties import SPECIALTIES

__all__ = [
    "DRAFT_FIELDS",
    "INS_NIR_OID",
    "MSSANTE_DOMAIN",
    "SCHEMA",
    "AttendeeRecord",
    "BoardInfo",
    "ClinicalTrial",
    "EstablishmentInfo",
    "Fiche",
    "GuidelineConformity",
    "KeyImage",
    "OtherStage",
    "PatientIdentity",
    "PerformanceStatus",
    "Physician",
    "Proposal",
    "Tnm",
    "is_mssante",
    "parse_draft_field",
]

SCHEMA = "rcp.fiche/1"
#: The INS OIDs (NIR, NIA, test and demo NIR), listed once in ``rcp.identifiers``.
_INS_OIDS = INS_OIDS
_SPECIALTY_KEYS = frozenset(s.key for s in SPECIALTIES)
_SHORT = 200
_LONG = 20_000

T = TypeVar("T")


class _FieldError(ValueError):
    """A problem at a dotted path inside a field."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path


def _err(path: str, message: str) -> _FieldError:
    return _FieldError(path, message)


# -- small readers -----------------------------------------------------------------------------------------------


def _obj(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _err(path, "expected an object")
    return value


def _text(value: Any, path: str, *, limit: int = _SHORT, required: bool = False) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise _err(path, N_("expected text"))
    if len(value) > limit:
        raise _err(path, f"too long: at most {limit} characters")
    if required and not value.strip():
        raise _err(path, N_("required"))
    return value


def _bool(value: Any, path: str, *, optional: bool = False) -> bool | None:
    if value is None and optional:
        return None
    if not isinstance(value, bool):
        raise _err(path, N_("expected true or false"))
    return value


def _opt_int(value: Any, path: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _err(path, "expected a whole number")
    return value


def _coding_in(value: Any, path: str, value_set: str) -> Coding | None:
    if value is None:
        return None
    try:
        return codes.value_set(value_set).validate(codes.coding_from_json(value))
    except ValueError as exc:
        raise _err(path, str(exc)) from None


def _uid(value: Any, path: str) -> str:
    if not isinstance(value, str) or not is_uid(value, strict=True):
        raise _err(path, "expected a DICOM UID (digits and dots, at most 64 characters; PS3.5 §9)")
    return value


def _list(value: Any, path: str, item: Callable[[Any, str], T], *, limit: int = 200) -> tuple[T, ...]:
    if value is None:
        return ()
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise _err(path, N_("expected a list"))
    if len(value) > limit:
        raise _err(path, f"too many items: at most {limit}")
    return tuple(item(v, f"{path}.{i}") for i, v in enumerate(value))


# -- parts of the fiche ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PatientIdentity:
    """Who the decision is about: INS (national) and the local identifier (IPP) with its assigning authority."""

    family_name: str
    given_names: str = ""
    birth_date: date | None = None
    #: HL7 administrative gender: female, male, other, unknown.
    sex: str = "unknown"
    ins: str = ""
    ins_system: str = INS_NIR_OID
    local_id: str = ""
    local_id_issuer: str = ""
    #: OID of the IPP's assigning authority (HL7 CX.4.2, DICOM Universal Entity ID, FHIR ``urn:oid:``).
    local_id_issuer_oid: str = ""
    #: RNIV identity status at signature (``rcp.identifiers.IDENTITY_STATUSES``): the INS leaves the service only
    #: when it is "qualified" (``rcp.identifiers.ins_may_leave``). Fiches signed before it was recorded read as
    #: "provisional": their INS had never been checked against an identity document.
    identity_status: str = "provisional"
    #: RNIV identity attributes (doubtful, fictitious, homonym).
    identity_attributes: tuple[str, ...] = ()
    used_name: str = ""
    #: The identity document the status was validated on (``rcp.identifiers.VALIDATION_MODES``: passport, id_card,
    #: ...) and the day it was checked, when known (the FR Core validationMode and validationDate).
    identity_document: str = ""
    identity_date: date | None = None

    @property
    def shared_ins(self) -> str:
        """The INS when it may be written into a document or message (qualified identity), else ""."""
        return self.ins if ins_may_leave(self.identity_status) else ""

    @classmethod
    def parse(cls, value: Any, path: str = "patient") -> PatientIdentity:
        v = _obj(value, path)
        birth = v.get("birth_date")
        try:
            born = date.fromisoformat(birth) if birth else None
        except (TypeError, ValueError):
            raise _err(f"{path}.birth_date", N_("expected a date as YYYY-MM-DD")) from None
        sex = v.get("sex", "unknown")
        if sex not in {"female", "male", "other", "unknown"}:
            raise _err(f"{path}.sex", "expected female, male, other or unknown")
        ins = _text(v.get("ins"), f"{path}.ins", limit=15).upper()
        ins_system = _text(v.get("ins_system") or INS_NIR_OID, f"{path}.ins_system")
        if ins and not ins_key_ok(ins):
            raise _err(f"{path}.ins", "not a valid INS-NIR: 15 characters with a matching control key")
        if ins_system not in _INS_OIDS:
            raise _err(f"{path}.ins_system", "expected an INS OID (1.2.250.1.213.1.4.8 to .11)")
        local_id = _text(v.get("local_id"), f"{path}.local_id", limit=64)
        if not ins and not local_id:
            raise _err(f"{path}.local_id", "the patient needs an INS or a local identifier")
        status = v.get("identity_status") or "provisional"
        if status not in IDENTITY_STATUSES:
            raise _err(f"{path}.identity_status", "expected provisional, recovered, validated or qualified")
        attributes = v.get("identity_attributes") or []
        if not isinstance(attributes, list):
            raise _err(f"{path}.identity_attributes", "expected a list (doubtful, fictitious, homonym)")
        document = v.get("identity_document") or ""
        if document and document not in VALIDATION_MODES:
            raise _err(f"{path}.identity_document", "expected " + ", ".join(VALIDATION_MODES))
        try:
            on = date.fromisoformat(v["identity_date"]) if v.get("identity_date") else None
        except (TypeError, ValueError):
            raise _err(f"{path}.identity_date", N_("expected a date as YYYY-MM-DD")) from None
        return cls(
            family_name=_text(v.get("family_name"), f"{path}.family_name", limit=100, required=True),
            given_names=_text(v.get("given_names"), f"{path}.given_names"),
            birth_date=born,
            sex=sex,
            ins=ins,
            ins_system=ins_system,
            local_id=local_id,
            local_id_issuer=_text(v.get("local_id_issuer"), f"{path}.local_id_issuer", limit=100),
            local_id_issuer_oid=_text(v.get("local_id_issuer_oid"), f"{path}.local_id_issuer_oid", limit=64),
            identity_status=status,
            identity_attributes=tuple(a for a in attributes if a in IDENTITY_ATTRIBUTES),
            used_name=_text(v.get("used_name"), f"{path}.used_name", limit=100),
            identity_document=document,
            identity_date=on,
        )

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "family_name": self.family_name, "given_names": self.given_names,
            "birth_date": self.birth_date.isoformat() if self.birth_date else None, "sex": self.sex,
            "ins": self.ins, "ins_system": self.ins_system,
            "local_id": self.local_id, "local_id_issuer": self.local_id_issuer,
            "local_id_issuer_oid": self.local_id_issuer_oid, "identity_status": self.identity_status,
            "identity_attributes": list(self.identity_attributes), "used_name": self.used_name,
        }
        # Only when known, so that fiches signed before they were recorded keep their content as it was.
        if self.identity_document:
            out["identity_document"] = self.identity_document
        if self.identity_date is not None:
            out["identity_date"] = self.identity_date.isoformat()
        return out


def _rpps(value: Any, path: str) -> str:
    rpps = _text(value, path, limit=11)
    if rpps and not (rpps.isdigit() and len(rpps) == 11):
        raise _err(path, "an RPPS number has 11 digits")
    return rpps


@dataclass(frozen=True)
class Physician:
    """A health professional named on the fiche (requester, responsible physician, GP, correspondent)."""

    name: str
    specialty: str = ""
    #: RPPS number (national professional identifier, OID 1.2.250.1.71.4.2.1) when known.
    rpps: str = ""
    hospital: str = ""
    email: str = ""
    user_id: int | None = None
    #: The name in parts, for a user of the service (the signer: ``rcp.minutes.store``); ``name`` is its display.
    #: Not part of the JSON: a typed physician has only ``name``, and documents name only accounts in parts.
    person: PersonName | None = None

    @classmethod
    def parse(cls, value: Any, path: str) -> Physician:
        v = _obj(value, path)
        specialty = _text(v.get("specialty"), f"{path}.specialty", limit=40)
        if specialty and specialty not in _SPECIALTY_KEYS:
            raise _err(f"{path}.specialty", f"unknown specialty; expected one of {', '.join(sorted(_SPECIALTY_KEYS))}")
        rpps = _rpps(v.get("rpps"), f"{path}.rpps")
        return cls(
            name=_text(v.get("name"), f"{path}.name", required=True),
            specialty=specialty,
            rpps=rpps,
            hospital=_text(v.get("hospital"), f"{path}.hospital"),
            email=_text(v.get("email"), f"{path}.email"),
            user_id=_opt_int(v.get("user_id"), f"{path}.user_id"),
        )

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "specialty": self.specialty, "rpps": self.rpps, "hospital": self.hospital,
                "email": self.email, "user_id": self.user_id}


@dataclass(frozen=True)
class AttendeeRecord:
    """Someone present at the discussion, with the one specialty they count for (INCa), or outside the quorum."""

    user_id: int
    name: str
    specialty: str
    quorum_member: bool = True
    hospital: str = ""
    #: An external physician in through a join link (no account): recorded as "guest, invited as <specialty>".
    guest: bool = False
    #: When they were connected to the discussion of the case (its frozen attendance record,
    #: rcp.scheduling.attendance): first arrival and last departure within it; None when not recorded.
    present_from: datetime | None = None
    present_until: datetime | None = None
    #: The account's RPPS number when it has one: documents name the attendee by it (IdNatPS, rcp.minutes.cda).
    rpps: str = ""

    @classmethod
    def parse(cls, value: Any, path: str) -> AttendeeRecord:
        v = _obj(value, path)
        specialty = _text(v.get("specialty"), f"{path}.specialty", limit=40, required=True)
        if specialty not in _SPECIALTY_KEYS:
            raise _err(f"{path}.specialty", f"unknown specialty; expected one of {', '.join(sorted(_SPECIALTY_KEYS))}")
        user_id = _opt_int(v.get("user_id"), f"{path}.user_id")
        if user_id is None:
            raise _err(f"{path}.user_id", N_("required"))
        return cls(
            user_id=user_id,
            name=_text(v.get("name"), f"{path}.name", required=True),
            specialty=specialty,
            quorum_member=bool(_bool(v.get("quorum_member", True), f"{path}.quorum_member")),
            hospital=_text(v.get("hospital"), f"{path}.hospital"),
            guest=bool(_bool(v.get("guest", False), f"{path}.guest")),
            present_from=_instant(v.get("present_from"), f"{path}.present_from"),
            present_until=_instant(v.get("present_until"), f"{path}.present_until"),
            rpps=_rpps(v.get("rpps"), f"{path}.rpps"),
        )

    def as_attendee(self) -> Attendee:
        return Attendee(user_id=self.user_id, specialty=self.specialty, counts=self.quorum_member)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"user_id": self.user_id, "name": self.name, "specialty": self.specialty,
                               "quorum_member": self.quorum_member, "hospital": self.hospital}
        if self.guest:  # only when set: fiches recorded before guests existed keep their exact form
            out["guest"] = True
        if self.present_from is not None and self.present_until is not None:  # likewise, once recorded
            out["present_from"] = self.present_from.isoformat()
            out["present_until"] = self.present_until.isoformat()
        if self.rpps:  # likewise, once known
            out["rpps"] = self.rpps
        return out


def _instant(value: Any, path: str) -> datetime | None:
    """An ISO 8601 instant with its offset (stored in UTC), or None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _err(path, "expected a date and time as ISO 8601")
    try:
        found = datetime.fromisoformat(value)
    except ValueError:
        raise _err(path, "expected a date and time as ISO 8601") from None
    if found.tzinfo is None:
        raise _err(path, "expected a date and time with its UTC offset")
    return found.astimezone(UTC)


@dataclass(frozen=True)
class EstablishmentInfo:
    """The establishment a board belongs to, as signed (``rcp.scheduling.registration``): FINESS and name, its
    facility type, its regional cancer network and 3C (national id and acronym), the custodian of documents."""

    finess: str
    name: str
    facility_type: str = "SA01"
    regional_network_id: str = ""
    regional_network_name: str = ""
    coordination_centre_id: str = ""
    coordination_centre_name: str = ""
    #: The organisation that keeps the documents when not the establishment (both or neither).
    custodian_finess: str = ""
    custodian_name: str = ""

    @property
    def custodian(self) -> tuple[str, str]:
        """(FINESS, name) of the organisation that keeps the documents: the establishment unless configured."""
        if self.custodian_finess:
            return self.custodian_finess, self.custodian_name or self.name
        return self.finess, self.name

    @classmethod
    def parse(cls, value: Any, path: str = "board.establishment") -> EstablishmentInfo | None:
        if value is None:
            return None
        v = _obj(value, path)
        texts = {name: _text(v.get(name), f"{path}.{name}") for name in
                 ("facility_type", "regional_network_id", "regional_network_name", "coordination_centre_id",
                  "coordination_centre_name", "custodian_finess", "custodian_name")}
        return cls(finess=_text(v.get("finess"), f"{path}.finess", required=True),
                   name=_text(v.get("name"), f"{path}.name", required=True),
                   **{k: t for k, t in texts.items() if t or k != "facility_type"})

    def as_json(self) -> dict[str, str]:
        return {"finess": self.finess, "name": self.name, "facility_type": self.facility_type,
                "regional_network_id": self.regional_network_id,
                "regional_network_name": self.regional_network_name,
                "coordination_centre_id": self.coordination_centre_id,
                "coordination_centre_name": self.coordination_centre_name,
                "custodian_finess": self.custodian_finess, "custodian_name": self.custodian_name}


@dataclass(frozen=True)
class BoardInfo:
    """The board (RCP) that discussed the case, what makes its quorum, and its registration (national RCP id,
    "RCP de recours" and paediatric flags, establishment; ``rcp.scheduling.registration``) as it was signed."""

    name: str
    #: JDV_NatureDiscussion_CISIS: ORG-117 organ board, ORG-132 cross-organ / supportive-care board.
    discussion_nature: Coding
    organ: Coding | None = None
    system: Coding | None = None
    #: A transversal board's purpose (observation ORG-138, JDV_TraitementSoins_FRCP_CISIS), e.g. oncogériatrie.
    care: Coding | None = None
    required_specialties: tuple[str, ...] = ()
    minimum_specialties: int = 3
    #: The RCP's national id (FRCP encompassingEncounter, 1.2.250.1.161.1.20.3.1), "" when not registered.
    national_id: str = ""
    referral: bool = False
    paediatric: bool = False
    establishment: EstablishmentInfo | None = None

    @classmethod
    def parse(cls, value: Any, path: str = "board") -> BoardInfo:
        v = _obj(value, path)
        nature = _coding_in(v.get("discussion_nature"), f"{path}.discussion_nature", codes.DISCUSSION_NATURE)
        if nature is None:
            raise _err(f"{path}.discussion_nature", "required (ORG-117 organ board or ORG-132 cross-organ board)")
        minimum = _opt_int(v.get("minimum_specialties", 3), f"{path}.minimum_specialties")
        if minimum is None or minimum < 1:
            raise _err(f"{path}.minimum_specialties", "expected a number of at least 1")
        required = _list(v.get("required_specialties"), f"{path}.required_specialties",
                         lambda x, p: _text(x, p, limit=40, required=True))
        return cls(
            name=_text(v.get("name"), f"{path}.name", required=True),
            discussion_nature=nature,
            organ=_coding_in(v.get("organ"), f"{path}.organ", codes.RCP_ORGAN),
            system=_coding_in(v.get("system"), f"{path}.system", codes.RCP_SYSTEM),
            care=_coding_in(v.get("care"), f"{path}.care", codes.SUPPORTIVE_CARE),
            required_specialties=required,
            minimum_specialties=minimum,
            national_id=_text(v.get("national_id"), f"{path}.national_id"),
            referral=bool(_bool(v.get("referral", False), f"{path}.referral")),
            paediatric=bool(_bool(v.get("paediatric", False), f"{path}.paediatric")),
            establishment=EstablishmentInfo.parse(v.get("establishment"), f"{path}.establishment"),
        )

    def as_json(self) -> dict[str, Any]:
        out = {
            "name": self.name, "discussion_nature": self.discussion_nature.as_json(),
            "organ": self.organ.as_json() if self.organ else None,
            "system": self.system.as_json() if self.system else None,
            "required_specialties": list(self.required_specialties), "minimum_specialties": self.minimum_specialties,
        }
        if self.care is not None:  # written only when known, so that an organ board's fiche keeps its content
            out["care"] = self.care.as_json()
        # The registration likewise, only when there is one: a fiche signed before it keeps its content (and hash).
        if self.national_id:
            out["national_id"] = self.national_id
        if self.referral:
            out["referral"] = True
        if self.paediatric:
            out["paediatric"] = True
        if self.establishment is not None:
            out["establishment"] = self.establishment.as_json()
        return out


def _tnm(*, pathological: bool) -> Callable[[Any, str], Tnm | None]:
    """The reader of ``clinical_tnm`` or ``pathological_tnm`` (rules in ``rcp.minutes.staging``).

    A classification goes where its prefix says (p, yp, rp, a: pathological; c, yc, rc, y, r or none: clinical);
    the other field refuses it rather than move it. Values stored before the prefix was kept read as the field's
    letter, as they were shown.
    """

    def read(value: Any, path: str) -> Tnm | None:
        if value is None:
            return None
        v = _obj(value, path)
        try:
            tnm = Tnm.from_json(v, legacy_prefix="p" if pathological else "c")
        except StagingError as exc:
            raise _err(f"{path}.{exc.part}", str(exc)) from None
        if tnm.pathological != pathological:
            where = "pathological_tnm" if tnm.pathological else "clinical_tnm"
            raise _err(f"{path}.prefix", f"this prefix belongs to the {where.split('_')[0]} staging: enter it "
                                         f"in {where}")
        return tnm

    return read


def _staging_part(reader: Callable[[Any], T]) -> Callable[[Any, str], T]:
    def read(value: Any, path: str) -> T:
        try:
            return reader(value)
        except StagingError as exc:
            raise _err(f"{path}.{exc.part}" if exc.part else path, str(exc)) from None

    return read


def _other_stages(value: Any, path: str) -> tuple[OtherStage, ...]:
    return _list(value, path, _staging_part(OtherStage.from_json), limit=20)


@dataclass(frozen=True)
class PerformanceStatus:
    """WHO performance status, identical in grades to ECOG (Oken 1982): 0 fully active ... 4 bedbound."""

    grade: int
    scale: str = "WHO"

    @classmethod
    def parse(cls, value: Any, path: str) -> PerformanceStatus | None:
        if value is None:
            return None
        v = _obj(value, path)
        scale = v.get("scale", "WHO")
        if scale not in {"WHO", "ECOG"}:
            raise _err(f"{path}.scale", N_("expected WHO or ECOG"))
        grade = v.get("grade")
        try:
            codes.performance_status(grade)  # type: ignore[arg-type]  # it checks the type itself
        except ValueError as exc:
            raise _err(f"{path}.grade", str(exc)) from None
        assert isinstance(grade, int)
        return cls(grade=grade, scale=scale)

    @property
    def coding(self) -> Coding:
        return codes.performance_status(self.grade)

    @property
    def interpretation(self) -> Coding:
        return codes.performance_interpretation(self.grade)

    def as_json(self) -> dict[str, Any]:
        return {"grade": self.grade, "scale": self.scale}


@dataclass(frozen=True)
class KeyImage:
    """An image (or one frame of it) marked during the discussion, with what the board saw in it."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str = ""
    #: 1-based frame number for multi-frame instances (PS3.3 C.7.6.1.1.?); None for the whole instance.
    frame: int | None = None
    description: str = ""

    @classmethod
    def parse(cls, value: Any, path: str) -> KeyImage:
        v = _obj(value, path)
        frame = _opt_int(v.get("frame"), f"{path}.frame")
        if frame is not None and frame < 1:
            raise _err(f"{path}.frame", "frame numbers start at 1")
        sop_class = v.get("sop_class_uid") or ""
        return cls(
            study_uid=_uid(v.get("study_uid"), f"{path}.study_uid"),
            series_uid=_uid(v.get("series_uid"), f"{path}.series_uid"),
            sop_uid=_uid(v.get("sop_uid"), f"{path}.sop_uid"),
            sop_class_uid=_uid(sop_class, f"{path}.sop_class_uid") if sop_class else "",
            frame=frame,
            description=_text(v.get("description"), f"{path}.description", limit=1024),
        )

    def as_json(self) -> dict[str, Any]:
        return {"study_uid": self.study_uid, "series_uid": self.series_uid, "sop_uid": self.sop_uid,
                "sop_class_uid": self.sop_class_uid, "frame": self.frame, "description": self.description}


@dataclass(frozen=True)
class Proposal:
    """What the board proposes: a type, the CI-SIS treatment codes (FR-Acte entries) and free-text details."""

    type: ProposalType
    treatments: tuple[Coding, ...] = ()
    details: str = ""

    @classmethod
    def parse(cls, value: Any, path: str = "proposal") -> Proposal | None:
        if value is None:
            return None
        v = _obj(value, path)
        try:
            kind = ProposalType(str(v.get("type")))
        except ValueError:
            raise _err(f"{path}.type", f"expected one of {', '.join(ProposalType)}") from None
        treatments = _list(v.get("treatments"), f"{path}.treatments",
                           lambda x, p: _coding_in(x, p, codes.TREATMENT_TYPE) or _missing(p), limit=20)
        kinds = {codes.treatment_kind(t) for t in treatments}
        if kind is ProposalType.combined:
            therapeutic = kinds - {None, ProposalType.other, ProposalType.surveillance}
            if treatments and len(therapeutic) < 2:
                raise _err(f"{path}.treatments", N_("a combined proposal lists treatments of at least two kinds"))
        elif kind is ProposalType.further_investigations:
            if treatments:
                raise _err(f"{path}.treatments", N_("further investigations take no treatment code; use details"))
        elif kind is not ProposalType.other:
            for i, (t, k) in enumerate(zip(treatments, [codes.treatment_kind(t) for t in treatments], strict=True)):
                if k is not kind:
                    raise _err(f"{path}.treatments.{i}", f"code {t.code} does not fit a {kind} proposal")
        details = _text(v.get("details"), f"{path}.details", limit=_LONG)
        if kind in {ProposalType.other, ProposalType.further_investigations} and not details.strip():
            raise _err(f"{path}.details", f"say what is proposed: details are required for {kind}")
        return cls(type=kind, treatments=treatments, details=details)

    def codings(self) -> tuple[Coding, ...]:
        """The FR-Acte / FR-Demande-d-examen codes an export writes: the chosen treatments or the type's code."""
        if self.treatments:
            return self.treatments
        default = codes.proposal_coding(self.type)
        return (default,) if default else ()

    def as_json(self) -> dict[str, Any]:
        return {"type": str(self.type), "treatments": [t.as_json() for t in self.treatments],
                "details": self.details}


def _missing(path: str) -> NoReturn:
    raise _err(path, N_("required"))


@dataclass(frozen=True)
class GuidelineConformity:
    """FRCP observation MED-249: does the proposal follow the board's guideline (référentiel), and if not why."""

    conforms: bool | None = None
    #: Name and version of the guideline ("Référentiel régional sein 2024").
    reference: str = ""
    reason: str = ""

    @classmethod
    def parse(cls, value: Any, path: str = "guideline") -> GuidelineConformity:
        v = _obj(value if value is not None else {}, path)
        conforms = _bool(v.get("conforms"), f"{path}.conforms", optional=True)
        reason = _text(v.get("reason"), f"{path}.reason", limit=_LONG)
        if conforms is False and not reason.strip():
            raise _err(f"{path}.reason", N_("say why the proposal departs from the guideline"))
        return cls(conforms=conforms, reference=_text(v.get("reference"), f"{path}.reference"), reason=reason)

    def as_json(self) -> dict[str, Any]:
        return {"conforms": self.conforms, "reference": self.reference, "reason": self.reason}


@dataclass(frozen=True)
class ClinicalTrial:
    """FRCP observation MED-250: proposal of inclusion in a clinical trial, and which one."""

    proposed: bool = False
    trial: str = ""

    @classmethod
    def parse(cls, value: Any, path: str = "clinical_trial") -> ClinicalTrial:
        v = _obj(value if value is not None else {}, path)
        proposed = bool(_bool(v.get("proposed", False), f"{path}.proposed"))
        trial = _text(v.get("trial"), f"{path}.trial", limit=500)
        if proposed and not trial.strip():
            raise _err(f"{path}.trial", N_("name the trial (acronym or registry number)"))
        return cls(proposed=proposed, trial=trial)

    def as_json(self) -> dict[str, Any]:
        return {"proposed": self.proposed, "trial": self.trial}


# -- the draft's editable fields ---------------------------------------------------------------------------------


def _physicians(value: Any, path: str) -> tuple[Physician, ...]:
    return _list(value, path, Physician.parse, limit=50)


def _opt_physician(value: Any, path: str) -> Physician | None:
    return None if value is None else Physician.parse(value, path)


def _case_status(value: Any, path: str) -> str:
    """"discussed" or "registered"; "" (or null) while the board has not said which: never assumed."""
    if value is None or value == "":
        return ""
    if value not in {"discussed", "registered"}:
        raise _err(path, N_("expected discussed or registered"))
    return str(value)


#: Fields the people in the room edit (one version counter each). Everything else comes from the agenda, the
#: patient record and the room's attendance when the fiche is signed.
DRAFT_FIELDS: Mapping[str, Callable[[Any, str], Any]] = {
    "referring_physician": _opt_physician,
    "question": lambda v, p: _text(v, p, limit=_LONG),
    "clinical_summary": lambda v, p: _text(v, p, limit=_LONG),
    "cancer_phase": lambda v, p: _coding_in(v, p, codes.CANCER_PHASE),
    "tumour_site": lambda v, p: _coding_in(v, p, codes.TUMOUR),
    "tumour_site_text": lambda v, p: _text(v, p),
    "histology": lambda v, p: _coding_in(v, p, codes.MORPHOLOGY),
    "histology_text": lambda v, p: _text(v, p, limit=1000),
    "diagnosis_date": _staging_part(parse_diagnosis_date),
    "laterality": _staging_part(parse_laterality),
    "clinical_tnm": _tnm(pathological=False),
    "pathological_tnm": _tnm(pathological=True),
    "other_classifications": _other_stages,
    "performance_status": PerformanceStatus.parse,
    "key_images": lambda v, p: _list(v, p, KeyImage.parse),
    "proposal": Proposal.parse,
    "guideline": GuidelineConformity.parse,
    "clinical_trial": ClinicalTrial.parse,
    "case_status": _case_status,
    "responsible_physician": _opt_physician,
    "patient_informed": lambda v, p: _bool(v, p, optional=True),
    "gp": _opt_physician,
    "correspondents": _physicians,
    "comments": lambda v, p: _text(v, p, limit=_LONG),
    "hidden_from_patient": lambda v, p: _bool(v, p),
}

#: A draft field's value before anyone edits it (None when not listed): structural empties only (empty text, empty
#: list, an unanswered question). Never a value the board did not give: the case status stays unset until someone says
#: "discussed" or "registered only", and signing asks for it (:meth:`Fiche.check_complete`; issue 15, item 3).
#: The clinical trial's unticked box reads "not proposed", as on the paper fiche.
DRAFT_DEFAULTS: Mapping[str, Any] = {
    "question": "", "clinical_summary": "", "tumour_site_text": "", "histology_text": "", "key_images": [],
    "correspondents": [], "comments": "", "guideline": {"conforms": None},
    "clinical_trial": {"proposed": False}, "hidden_from_patient": False,
}

#: MSSanté, the French health professionals' secure mail (its "espace de confiance"): the GP's and correspondents'
#: copy of a signed fiche goes only to a mailbox under mssante.fr (rcp.minutes.copies).
MSSANTE_DOMAIN = "mssante.fr"
_ADDRESS = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def is_mssante(address: str) -> bool:
    """Whether ``address`` is a mailbox of the MSSanté trust space (``…@medecin.mssante.fr``, ``…@chu-x.mssante.fr``).

    >>> is_mssante("jean.martin@medecin.mssante.fr"), is_mssante("jean.martin@gmail.com")
    (True, False)
    """
    domain = address.rpartition("@")[2].lower()
    return bool(_ADDRESS.fullmatch(address)) and (domain == MSSANTE_DOMAIN or domain.endswith("." + MSSANTE_DOMAIN))


#: Said under the field in the reader's language (rcp.minutes.routes translates a refused field's message).
_NOT_MSSANTE = N_("expected an MSSanté address (…@….mssante.fr): the signed fiche is mailed there")


def _check_mailboxes(name: str, value: Any) -> None:
    """The GP's and correspondents' addresses, as they are typed: an MSSanté mailbox or none (their copy of the
    signed fiche is mailed there). Checked when a draft field is saved, never when a signed version is read back."""
    people = [(name, value)] if name == "gp" else [(f"{name}.{i}", p) for i, p in enumerate(value)]
    for path, person in people:
        if person is not None and person.email and not is_mssante(person.email):
            raise _err(f"{path}.email", _NOT_MSSANTE)


def parse_draft_field(name: str, value: Any) -> Any:
    """Check one draft field as it is typed in the room; ``Invalid`` names the field (or its inner path)."""
    reader = DRAFT_FIELDS.get(name)
    if reader is None:
        raise Invalid("This decision has no such field.", fields={name: f"unknown field; expected one of "
                                                                       f"{', '.join(DRAFT_FIELDS)}"})
    try:
        parsed = reader(value, name)
        if name in {"gp", "correspondents"}:
            _check_mailboxes(name, parsed)
        return parsed
    except _FieldError as exc:
        raise Invalid("Check the highlighted field.", fields={exc.path: str(exc)}) from None


# -- the fiche -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fiche:
    """The complete decision of one case, ready to sign (see :meth:`check_complete`)."""

    case_id: int
    meeting_id: int
    patient: PatientIdentity
    board: BoardInfo
    meeting_date: date
    attendees: tuple[AttendeeRecord, ...]
    study_uids: tuple[str, ...] = ()
    referring_physician: Physician | None = None
    question: str = ""
    clinical_summary: str = ""
    cancer_phase: Coding | None = None
    tumour_site: Coding | None = None
    tumour_site_text: str = ""
    histology: Coding | None = None
    histology_text: str = ""
    #: FRCP "Date du diagnostic initial (minimum mois et année)": "YYYY-MM-DD" or "YYYY-MM", "" when not given.
    diagnosis_date: str = ""
    #: A key of ``rcp.minutes.staging.LATERALITIES`` (SNOMED CT coded), "" when not given.
    laterality: str = ""
    clinical_tnm: Tnm | None = None
    pathological_tnm: Tnm | None = None
    other_classifications: tuple[OtherStage, ...] = ()
    performance_status: PerformanceStatus | None = None
    key_images: tuple[KeyImage, ...] = ()
    proposal: Proposal | None = None
    guideline: GuidelineConformity = field(default_factory=GuidelineConformity)
    clinical_trial: ClinicalTrial = field(default_factory=ClinicalTrial)
    #: "discussed" (ORG-134) or "registered" only (ORG-128); "" while not stated (a draft; signing refuses it).
    case_status: str = ""
    responsible_physician: Physician | None = None
    patient_informed: bool | None = None
    gp: Physician | None = None
    correspondents: tuple[Physician, ...] = ()
    comments: str = ""
    #: Kept from the patient until the announcement consultation: the DMP and the GP's copy mark the document
    #: INVISIBLE_PATIENT (``rcp.epr.xds``); the physician who announces the proposal tells the patient first.
    hidden_from_patient: bool = False

    # -- derived, coded values --

    def quorum(self) -> Quorum:
        """INCa quorum from the attendees as recorded on this fiche."""
        return evaluate_quorum((a.as_attendee() for a in self.attendees), self.board.required_specialties,
                               minimum=self.board.minimum_specialties)

    def treatment_gaps(self) -> tuple[TreatmentGap, ...]:
        """Proposed treatments that no quorum member of this discussion can answer for (INCa: the quorum gives a
        pertinent opinion on every procedure proposed; ``rcp.scheduling.quorum.treatment_gaps``). A case registered
        only proposes nothing; the treatments are the FR-Acte codes an export writes (:meth:`Proposal.codings`).
        """
        if self.case_status == "registered" or self.proposal is None:
            return ()
        return treatment_gaps(((c.system, c.code) for c in self.proposal.codings()),
                              (a.as_attendee() for a in self.attendees))

    def treatment_display(self, gap: TreatmentGap) -> str:
        """The official display of a gap's treatment as the proposal codes it ("radiothérapie")."""
        codings = self.proposal.codings() if self.proposal else ()
        return next((c.display for c in codings if (c.system, c.code) == (gap.system, gap.code)), gap.code)

    @property
    def quorum_status(self) -> Coding:
        return codes.quorum_status(self.quorum().met)

    @property
    def case_status_coding(self) -> Coding | None:
        """The JDV_StatutCasPresente_CISIS coding; None while the status is not stated (a draft)."""
        return codes.case_status(self.case_status == "discussed") if self.case_status else None

    @property
    def discussed(self) -> bool:
        return self.case_status == "discussed"

    def check_complete(self) -> None:
        """What a fiche must hold before it is signed; ``Invalid`` lists every gap by field name.

        The messages are marked for translation (``N_``): the room lists them, in the reader's language, under
        "Still missing" (``rcp.minutes.routes``); the API's 422 keeps them as written here.
        """
        gaps: dict[str, str] = {}
        if not self.question.strip():
            gaps["question"] = N_("state the question asked to the board")
        if self.responsible_physician is None:
            gaps["responsible_physician"] = N_("name the physician who informs the patient")
        elif self.responsible_physician.user_id is None:
            gaps["responsible_physician.user_id"] = N_("the responsible physician must be a user of the service")
        if self.patient_informed is not True:
            gaps["patient_informed"] = N_("confirm the patient was informed and did not object to the discussion")
        if not self.case_status:
            gaps["case_status"] = N_("say whether the case was discussed or only registered")
        # Until the board says "registered only", the proposal is asked for (an unset status hides no gap).
        if self.case_status != "registered":
            if self.proposal is None:
                gaps["proposal"] = N_("a discussed case needs the board's proposal")
            if self.guideline.conforms is None:
                gaps["guideline.conforms"] = N_("say whether the proposal follows the guideline")
        if not self.attendees:
            gaps["attendees"] = N_("nobody is recorded as present")
        for name, tnm in (("clinical_tnm", self.clinical_tnm), ("pathological_tnm", self.pathological_tnm)):
            if tnm is not None and tnm.edition_to_confirm:
                gaps[f"{name}.edition"] = N_("give the TNM edition the staging follows (7 or 8) before signing")
        if self.diagnosis_date and self.diagnosis_date[:7] > self.meeting_date.isoformat()[:7]:
            gaps["diagnosis_date"] = N_("the diagnosis date is after the meeting")
        if gaps:
            raise Invalid("The decision is not complete yet.", fields=gaps)

    # -- JSON --

    def to_content(self) -> dict[str, Any]:
        """The canonical JSON content that is hashed and signed (plain dict, lists, str, int, bool, None)."""
        quorum = self.quorum()
        return {
            "schema": SCHEMA,
            "case_id": self.case_id,
            "meeting_id": self.meeting_id,
            "patient": self.patient.as_json(),
            "board": self.board.as_json(),
            "meeting_date": self.meeting_date.isoformat(),
            "attendees": [a.as_json() for a in self.attendees],
            "quorum": {"status": self.quorum_status.as_json(), "specialties": list(quorum.specialties),
                       "missing": list(quorum.missing)},
            "study_uids": list(self.study_uids),
            "referring_physician": self.referring_physician.as_json() if self.referring_physician else None,
            "question": self.question,
            "clinical_summary": self.clinical_summary,
            "cancer_phase": _cj(self.cancer_phase),
            "tumour_site": _cj(self.tumour_site),
            "tumour_site_text": self.tumour_site_text,
            "histology": _cj(self.histology),
            "histology_text": self.histology_text,
            "clinical_tnm": self.clinical_tnm.as_json() if self.clinical_tnm else None,
            "pathological_tnm": self.pathological_tnm.as_json() if self.pathological_tnm else None,
            # Written only when given, so that fiches signed before these fields existed keep their exact form.
            **({"diagnosis_date": self.diagnosis_date} if self.diagnosis_date else {}),
            **({"laterality": self.laterality} if self.laterality else {}),
            **({"other_classifications": [o.as_json() for o in self.other_classifications]}
               if self.other_classifications else {}),
            "performance_status": self.performance_status.as_json() if self.performance_status else None,
            "key_images": [k.as_json() for k in self.key_images],
            "proposal": self.proposal.as_json() if self.proposal else None,
            "guideline": self.guideline.as_json(),
            "clinical_trial": self.clinical_trial.as_json(),
            "case_status": self.case_status,
            "case_status_coding": _cj(self.case_status_coding),
            "responsible_physician": self.responsible_physician.as_json() if self.responsible_physician else None,
            "patient_informed": self.patient_informed,
            "gp": self.gp.as_json() if self.gp else None,
            "correspondents": [c.as_json() for c in self.correspondents],
            "comments": self.comments,
            # Only when chosen, so that fiches signed before the option existed keep their exact form.
            **({"hidden_from_patient": True} if self.hidden_from_patient else {}),
        }

    @classmethod
    def from_content(cls, content: Mapping[str, Any]) -> Fiche:
        """Read and check a fiche from its JSON content; ``Invalid`` lists every bad field at once.

        Derived keys (``quorum``, ``case_status_coding``, ``schema``) are recomputed, never trusted.
        """
        errors: dict[str, str] = {}
        values: dict[str, Any] = {}

        def read(name: str, reader: Callable[[Any, str], Any], default: Any = None) -> None:
            try:
                values[name] = reader(content.get(name, default), name)
            except _FieldError as exc:
                errors[exc.path] = str(exc)

        if not isinstance(content, Mapping):
            raise Invalid("The decision must be a JSON object.", fields={"": "expected an object"})
        schema = content.get("schema", SCHEMA)
        if schema != SCHEMA:
            errors["schema"] = f"unsupported schema; expected {SCHEMA}"
        read("case_id", lambda v, p: _opt_int(v, p) or _missing(p))
        read("meeting_id", lambda v, p: _opt_int(v, p) or _missing(p))
        read("patient", PatientIdentity.parse)
        read("board", BoardInfo.parse)
        read("meeting_date", _date)
        read("attendees", lambda v, p: _list(v, p, AttendeeRecord.parse, limit=100))
        read("study_uids", lambda v, p: _list(v, p, _uid))
        for name, reader in DRAFT_FIELDS.items():
            read(name, reader, DRAFT_DEFAULTS.get(name))
        if errors:
            raise Invalid("Check the highlighted fields of the decision.", fields=errors)
        return cls(**values)


def _cj(coding: Coding | None) -> dict[str, str] | None:
    return coding.as_json() if coding else None


def _date(value: Any, path: str) -> date:
    if not isinstance(value, str):
        raise _err(path, N_("expected a date as YYYY-MM-DD"))
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        raise _err(path, N_("expected a date as YYYY-MM-DD")) from None
