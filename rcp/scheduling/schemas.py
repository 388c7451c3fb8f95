"""What the scheduling API accepts and returns: pydantic models that validate themselves and name bad fields."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rcp.errors import Invalid
from rcp.identifiers import (
    INS_NIA_OID,
    INS_NIR_OID,
    INS_OIDS,
    check_finess,
    check_ins,
    check_national_id,
    identity_problems,
    ins_key_ok,
    ins_system,
    is_ins,
    is_uid,
)
from rcp.ids import MAX_ID
from rcp.people import PersonName, check_rpps
from rcp.scheduling.charter import board_type
from rcp.scheduling.registration import facility_type
from rcp.scheduling.specialties import specialty

__all__ = [
    "BoardCharterPatch",
    "BoardIn",
    "BoardOut",
    "CaseIn",
    "CaseOut",
    "CasePatch",
    "EstablishmentIn",
    "EstablishmentOut",
    "GuestIn",
    "IdentifierIn",
    "IdentifierOut",
    "InvitationIn",
    "InvitationOut",
    "InvitationPatch",
    "LinkSent",
    "MeetingDetail",
    "MeetingIn",
    "MeetingOut",
    "MeetingPatch",
    "PatientIn",
    "PatientOut",
    "QuorumOut",
    "ReorderIn",
]

Text = Annotated[str, Field(max_length=200)]
LongText = Annotated[str, Field(max_length=20_000)]
Sex = Literal["female", "male", "other", "unknown"]
IdentifierSystem = Literal["INS-NIR", "INS-NIA", "IPP"]


#: The INS-NIR key check, written once in ``rcp.identifiers`` (the name stays for existing callers).
valid_nir = ins_key_ok


def _study_uid(value: str) -> str:
    if not is_uid(value):
        raise ValueError("expected a DICOM UID: digits and dots, at most 64 characters (PS3.5 9.1)")
    return value


#: A StudyInstanceUID, checked as ``rcp.identifiers.is_uid`` checks every UID (the pattern is for the OpenAPI).
StudyUid = Annotated[str, Field(pattern=r"^[0-9.]{1,64}$"), AfterValidator(_study_uid)]


#: A row id sent in a body: 0 to 18 digits, like ids in paths (rcp/ids.py), so a number past the database's
#: 64-bit integers is a 422 naming the field instead of an OverflowError and a 500.
Id = Annotated[int, Field(ge=0, le=MAX_ID)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Patch(Strict):
    """A partial update: a field left out keeps its value, and ``null`` is refused with a 422 naming the field.

    The service applies every field the client sent (``exclude_unset``): an explicit ``null`` for a column that
    cannot be empty reached the database (or a ``.strip()``) as a 500, found by the property-based run
    (tests/security/test_fuzz.py). :attr:`NULLABLE` names the fields whose column may be empty."""

    #: Fields whose column may be empty, where ``null`` means "clear it".
    NULLABLE: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: object, info: ValidationInfo) -> object:
        if value is None and info.field_name not in cls.NULLABLE:
            raise ValueError("null is not a value here: leave the field out to keep its current value")
        return value


def _specialty_key(value: str) -> str:
    specialty(value)  # raises ValueError naming the accepted keys
    return value


def _board_type_code(value: str) -> str:
    if value:
        board_type(value)  # raises ValueError naming the two value sets
    return value


def _required_specialties(value: list[str]) -> list[str]:
    """Known physician specialties, each once: a non-physician never counts for the quorum (INCa), so requiring one
    would make every meeting of the board fail it."""
    for key in value:
        if not specialty(key).physician:  # specialty() raises ValueError naming the accepted keys
            raise ValueError(f"{key!r} is not a physician specialty: it never counts for the quorum")
    if len(set(value)) != len(value):
        raise ValueError("a specialty is named twice")
    return value


#: A board type: a JDV_RCP_Appareil_CISIS or JDV_TraitementSoins_FRCP_CISIS code (``rcp.scheduling.charter``).
BoardTypeCode = Annotated[str, Field(max_length=20), AfterValidator(_board_type_code)]
RequiredSpecialties = Annotated[list[str], Field(max_length=14), AfterValidator(_required_specialties)]
MinimumSpecialties = Annotated[int, Field(ge=1, le=10)]


class BoardIn(Strict):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    #: Required (the service says so after checking the caller may create boards); see ``rcp.scheduling.charter``.
    type_code: BoardTypeCode = ""
    tumour_site: Text = ""
    #: Left out: the type's default (INCa: surgeon, medical oncologist, radiation oncologist for an organ board).
    required_specialties: RequiredSpecialties | None = None
    minimum_specialties: MinimumSpecialties = 3
    default_weekday: Annotated[int, Field(ge=0, le=6)] | None = None
    default_time: Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")] = "14:00"
    default_duration_min: Annotated[int, Field(ge=15, le=600)] = 90
    timezone: str = "Europe/Paris"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Paris)") from None
        return value


def _facility_type(value: str) -> str:
    facility_type(value)  # raises ValueError naming the accepted codes
    return value


#: A FINESS number (9 characters, Luhn key; spaces dropped): ``rcp.identifiers.check_finess``.
Finess = Annotated[str, Field(max_length=20), AfterValidator(check_finess)]
#: A national id of a regional cancer network, a 3C or an RCP: ``rcp.identifiers.check_national_id``.
NationalId = Annotated[str, Field(max_length=20), AfterValidator(check_national_id)]


class EstablishmentIn(Strict):
    """The establishment a board belongs to (``rcp.scheduling.registration``), found by its FINESS: an
    establishment already registered with that number is updated (its other boards follow), else it is created."""

    finess: Annotated[str, Field(min_length=1, max_length=20), AfterValidator(check_finess)]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    facility_type: Annotated[str, Field(max_length=8), AfterValidator(_facility_type)] = "SA01"
    regional_network_id: NationalId = ""
    regional_network_name: Annotated[str, Field(max_length=100)] = ""
    coordination_centre_id: NationalId = ""
    coordination_centre_name: Annotated[str, Field(max_length=100)] = ""
    #: The organisation that keeps the documents when not the establishment itself (both or neither).
    custodian_finess: Finess = ""
    custodian_name: Text = ""

    @model_validator(mode="after")
    def _custodian(self) -> EstablishmentIn:
        if bool(self.custodian_finess) != bool(self.custodian_name):
            raise ValueError("custodian_finess and custodian_name: give both, or neither when the establishment "
                             "itself keeps the documents")
        return self


class EstablishmentOut(BaseModel):
    id: int
    finess: str
    name: str
    facility_type: str
    #: The official display of ``facility_type`` (JDV_J02_XdsHealthcareFacilityTypeCode_CISIS).
    facility_type_display: str
    regional_network_id: str
    regional_network_name: str
    coordination_centre_id: str
    coordination_centre_name: str
    custodian_finess: str
    custodian_name: str


class BoardCharterPatch(Patch):
    """What a board's coordinator changes in its charter and registration (``PATCH /api/boards/{id}``)."""

    NULLABLE: ClassVar[frozenset[str]] = frozenset({"establishment"})

    type_code: Annotated[str, Field(min_length=1, max_length=20), AfterValidator(_board_type_code)] | None = None
    required_specialties: RequiredSpecialties | None = None
    minimum_specialties: MinimumSpecialties | None = None
    #: The RCP's national identifier (FRCP; "" when it has none yet).
    national_id: NationalId | None = None
    #: "RCP de recours" (regional referral board) and paediatric board.
    referral: bool | None = None
    paediatric: bool | None = None
    #: The board's establishment (found or created by FINESS); ``null`` detaches the board from it.
    establishment: EstablishmentIn | None = None


class BoardOut(BaseModel):
    id: int
    name: str
    #: The FRCP board type code, its official display and nature ("organ" ORG-117, "transversal" ORG-132); empty
    #: for a board migrated without a recognisable type.
    type_code: str
    type_display: str
    nature: str
    tumour_site: str
    required_specialties: list[str]
    minimum_specialties: int
    default_weekday: int | None
    default_time: str
    default_duration_min: int
    timezone: str
    national_id: str = ""
    referral: bool = False
    paediatric: bool = False
    #: The establishment (FINESS, 3C, regional network), None until the coordinator registers the board.
    establishment: EstablishmentOut | None = None


class MeetingIn(Strict):
    board_id: Id
    #: Local time in the board's zone when no offset is given ("2026-11-26T14:00").
    starts_at: datetime
    duration_min: Annotated[int, Field(ge=15, le=600)] = 90
    title: Text = ""


class MeetingPatch(Strict):
    starts_at: datetime | None = None
    duration_min: Annotated[int, Field(ge=15, le=600)] | None = None
    title: Text | None = None
    status: Literal["scheduled", "live", "closed", "cancelled"] | None = None


class MeetingOut(BaseModel):
    id: int
    board_id: int
    board_name: str
    title: str
    starts_at: datetime
    duration_min: int
    status: str
    timezone: str
    case_count: int


Oid = Annotated[str, Field(max_length=64, pattern=r"^([0-2](\.(0|[1-9][0-9]*))+)?$")]


class IdentifierIn(Strict):
    """An INS — system ``INS-NIR`` (OID .8, or the test OIDs .10/.11) or ``INS-NIA`` (OID .9) — or a local IPP with
    its assigning authority (``assigner``, its name, and ``assigner_oid``, its OID). An INS given as ``INS-NIR``
    with the NIA's OID is stored as ``INS-NIA`` (``rcp.identifiers.ins_system``)."""

    system: IdentifierSystem
    value: Annotated[str, Field(min_length=1, max_length=64)]
    assigner: Text = ""
    assigner_oid: Oid = ""

    @model_validator(mode="after")
    def _ins_key(self) -> IdentifierIn:
        if is_ins(self.system):
            if not valid_nir(self.value):
                raise ValueError("value: an INS (NIR) has 15 characters whose last two are the control key")
            self.assigner_oid = self.assigner_oid or (INS_NIA_OID if self.system == "INS-NIA" else INS_NIR_OID)
            if self.assigner_oid not in INS_OIDS:
                raise ValueError(f"assigner_oid: an INS OID is {INS_NIR_OID} (NIR), {INS_NIA_OID} (NIA), or "
                                 "1.2.250.1.213.1.4.10/.11 for test identities")
            if self.system == "INS-NIA" and self.assigner_oid != INS_NIA_OID:
                raise ValueError(f"assigner_oid: an INS-NIA has the OID {INS_NIA_OID}")
            self.system = ins_system(self.assigner_oid)  # type: ignore[assignment]
        return self


class IdentifierOut(BaseModel):
    system: str
    value: str
    assigner: str
    assigner_oid: str = ""


IdentityStatus = Literal["provisional", "recovered", "validated", "qualified"]
#: What a coordinator may type: the service never calls INSi, so "recovered" and "qualified" come only from the
#: hospital's identity server (``rcp.epr.adt``).
TypedStatus = Literal["provisional", "validated"]
IdentityDocument = Literal["", "passport", "id_card", "residence_permit", "birth_certificate",
                           "family_record_book"]
IdentityAttribute = Literal["doubtful", "fictitious", "homonym"]


class PatientIn(Strict):
    """A patient typed in the service (RNIV traits). ``family_name`` is the birth family name."""

    family_name: Annotated[str, Field(min_length=1, max_length=100)]
    given_names: Text = ""
    birth_date: date | None = None
    sex: Sex = "unknown"
    used_name: Annotated[str, Field(max_length=100)] = ""
    first_given_name: Annotated[str, Field(max_length=100)] = ""
    birth_place_code: Annotated[str, Field(pattern=r"^([0-9][0-9AB][0-9]{3})?$")] = ""
    identity_status: TypedStatus = "provisional"
    identity_document: IdentityDocument = ""
    identity_attributes: list[IdentityAttribute] = Field(default_factory=list)
    identifiers: list[IdentifierIn] = Field(default_factory=list)

    @model_validator(mode="after")
    def _identity(self) -> PatientIn:
        if self.identity_status == "validated" and not self.identity_document:
            raise ValueError("identity_document: a validated identity names the identity document that was checked")
        if self.first_given_name and self.given_names and \
                self.first_given_name.casefold() not in self.given_names.casefold():
            raise ValueError("first_given_name: must be one of the given names (the first of the list)")
        for where, problem in identity_problems(self.identity_status, self.identity_attributes):
            raise ValueError(f"{where}: {problem}")
        for ident in self.identifiers:
            if is_ins(ident.system):
                for where, problem in check_ins(ident.value, ident.assigner_oid, sex=self.sex,
                                                birth_date=self.birth_date):
                    field = where if where in {"sex", "birth_date"} else "identifiers"
                    raise ValueError(f"{field}: {problem}")
        self.identity_attributes = sorted(set(self.identity_attributes))
        return self


class PatientSearchIn(Strict):
    """A patient search, sent as a body so that names and identifiers never reach an address (logs, history)."""

    #: Family name prefix.
    q: Annotated[str, Field(max_length=100)] = ""
    #: Exact INS or IPP value.
    identifier: Annotated[str, Field(max_length=64)] = ""
    #: INS-NIR, INS-NIA or IPP: with ``assigner`` (IPP) or an INS system, finds a registered patient outside the
    #: caller's meetings (coordinators; audited).
    system: Annotated[str, Field(max_length=20)] = ""
    #: The IPP's assigning authority (hospital).
    assigner: Annotated[str, Field(max_length=100)] = ""


class DuplicateSearchIn(Strict):
    """The identity being typed for a new patient, to list registered look-alikes (``service.likely_duplicates``)."""

    #: Birth or used name.
    family_name: Annotated[str, Field(max_length=100)] = ""
    #: Given names (the first one is compared).
    given_names: Text = ""
    birth_date: date | None = None
    sex: Sex | Literal[""] = ""
    #: INS or IPP values.
    identifiers: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=5)] = Field(
        default_factory=list)


class PatientOut(BaseModel):
    id: int
    family_name: str
    given_names: str
    birth_date: date | None
    sex: str
    used_name: str = ""
    first_given_name: str = ""
    birth_place_code: str = ""
    identity_status: str = "provisional"
    identity_status_by: str = ""
    identity_status_at: datetime | None = None
    identity_document: str = ""
    identity_attributes: list[str] = Field(default_factory=list)
    identifiers: list[IdentifierOut]


class CaseIn(Strict):
    """A new case: an existing patient by id, or a new patient described inline.

    A new patient is searched for first (RNIV: search before creating, ``service.add_case``): while registered
    patients look like them the answer is 409 with their ids, until the caller takes one of them (``use_patient``)
    or says that none of them is this patient (``duplicates_checked``), as the add-case form does.
    """

    patient_id: Id | None = None
    patient: PatientIn | None = None
    #: With ``patient``: this registered look-alike is the patient (no new record).
    use_patient: Id | None = None
    #: With ``patient``: the caller checked the look-alikes and none of them is this patient.
    duplicates_checked: bool = False
    referring_physician: Text = ""
    question: LongText = ""
    clinical_summary: LongText = ""
    staging: Text = ""
    performance_status: Annotated[int, Field(ge=0, le=4)] | None = None
    study_uids: list[StudyUid] = Field(default_factory=list)


class CasePatch(Patch):
    NULLABLE: ClassVar[frozenset[str]] = frozenset({"performance_status"})

    referring_physician: Text | None = None
    question: LongText | None = None
    clinical_summary: LongText | None = None
    staging: Text | None = None
    performance_status: Annotated[int, Field(ge=0, le=4)] | None = None
    study_uids: list[StudyUid] | None = None
    checklist: dict[Annotated[str, Field(max_length=40)], bool] | None = None


class ReadinessOut(BaseModel):
    ready: bool
    missing: list[str]


class CaseOut(BaseModel):
    id: int
    meeting_id: int
    position: int
    status: str
    patient: PatientOut
    referring_physician: str
    question: str
    clinical_summary: str
    staging: str
    performance_status: int | None
    study_uids: list[str]
    checklist: dict[str, bool]
    readiness: ReadinessOut
    #: A deferred case's case on the board's next meeting, that meeting and its start (``rcp.scheduling.agenda``).
    deferred_to_id: int | None
    deferred_to_meeting_id: int | None = None
    deferred_to_starts_at: datetime | None = None


class ReorderIn(Strict):
    case_ids: list[Id]


class InvitationIn(Strict):
    user_id: Id
    specialty: str = ""
    quorum_member: bool = True

    @field_validator("specialty")
    @classmethod
    def _known(cls, value: str) -> str:
        return _specialty_key(value) if value else value


class GuestIn(Strict):
    """An external physician with no account here, invited by name and address: they get a personal join link.

    The name comes in parts (``family_name``, ``given_name``, ``prefix`` Dr/Pr) or whole as ``display_name`` with
    the family name in capitals ("Dr Denis GUEST"); :meth:`person` refuses one that cannot be split (422 naming
    the field), never guessing which word is the family name."""

    family_name: Annotated[str, Field(max_length=100)] = ""
    given_name: Annotated[str, Field(max_length=100)] = ""
    prefix: Annotated[str, Field(max_length=20)] = ""
    display_name: Annotated[str, Field(max_length=200)] = ""
    rpps: Annotated[str, Field(max_length=20)] = ""
    email: Annotated[str, Field(min_length=3, max_length=200, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
    specialty: str
    hospital: Annotated[str, Field(max_length=200)] = ""
    quorum_member: bool = True

    @field_validator("specialty")
    @classmethod
    def _known(cls, value: str) -> str:
        return _specialty_key(value)

    @field_validator("email")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()

    def person(self) -> tuple[PersonName, str]:
        """The guest's name and RPPS number (or ""); ``Invalid`` naming the field that is wrong."""
        rpps = check_rpps(self.rpps)
        if self.display_name.strip() and (self.family_name.strip() or self.given_name.strip()):
            raise Invalid("Give the name either whole or in parts.",
                          fields={"display_name": "give either display_name or family_name and given_name"})
        if self.display_name.strip():
            return PersonName.parse(self.display_name), rpps
        if not self.family_name.strip():
            raise Invalid("Check the highlighted name field.",
                          fields={"family_name": "required: the family name (nom de famille)"})
        return PersonName.of(family=self.family_name, given=self.given_name, prefix=self.prefix), rpps


class InvitationPatch(Patch):
    response: Literal["pending", "accepted", "declined", "tentative"] | None = None
    specialty: str | None = None
    quorum_member: bool | None = None

    @field_validator("specialty")
    @classmethod
    def _known(cls, value: str | None) -> str | None:
        return _specialty_key(value) if value else value


class InvitationOut(BaseModel):
    id: int
    meeting_id: int
    user_id: int
    #: "Dr Amélie ROUSSEAU" (rcp.people.PersonName.display).
    display_name: str
    #: The name is kept whole until someone completes it (migration 0013): shown, cannot sign.
    name_to_complete: bool = False
    hospital: str
    specialty: str
    quorum_member: bool
    response: str
    joined_at: datetime | None
    left_at: datetime | None
    #: An external physician who enters by a mailed link (no account), shown as "guest, invited as …".
    guest: bool = False
    #: For a guest: where the link went, masked ("d…@chu-x.fr"); the link itself is never shown to anyone.
    link_sent_to: str = ""
    #: For a guest: the link mail's state (pending, sent, failed), "" before any.
    link_status: str = ""


class LinkSent(BaseModel):
    invitation_id: int
    #: The guest's address as the coordinator may see it ("d…@chu-x.fr"); the link itself is never shown.
    link_sent_to: str
    link_status: str


class QuorumOut(BaseModel):
    met: bool
    specialties: list[str]
    missing: list[str]
    short_by: int
    minimum: int
    status_code: str


class MeetingDetail(MeetingOut):
    cases: list[CaseOut]
    invitations: list[InvitationOut]
    #: Quorum as it would be if everyone who accepted came (before the meeting) or as attended (after).
    quorum: QuorumOut
