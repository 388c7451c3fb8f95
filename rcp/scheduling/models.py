"""Tables of the scheduling domain: boards, meetings, invitations, patients and the cases on an agenda."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from rcp.clock import utcnow
from rcp.db import timestamp

__all__ = [
    "Board",
    "BoardCoordinator",
    "Case",
    "CaseAttendance",
    "CaseDiscussion",
    "CaseStatus",
    "Establishment",
    "Invitation",
    "JoinLink",
    "Meeting",
    "MeetingStatus",
    "Patient",
    "PatientIdentifier",
    "Response",
]



def _fk(target: str, *, nullable: bool = False, ondelete: str = "CASCADE", index: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(sa.ForeignKey(target, ondelete=ondelete), nullable=nullable, index=index)


class MeetingStatus(StrEnum):
    scheduled = "scheduled"
    live = "live"
    closed = "closed"
    cancelled = "cancelled"


class CaseStatus(StrEnum):
    registered = "registered"
    ready = "ready"
    discussed = "discussed"
    deferred = "deferred"
    withdrawn = "withdrawn"


class Response(StrEnum):
    pending = "pending"
    accepted = "accepted"
    declined = "declined"
    tentative = "tentative"


class Establishment(SQLModel, table=True):
    """The health establishment (établissement de santé) within which boards meet, by its FINESS number, with the
    regional cancer network and the RCP manager (3C, centre de coordination en cancérologie) it belongs to.

    The fiche RCP names them in its header (FRCP 2022.01: encompassingEncounter ids and location, custodian);
    ``rcp.scheduling.registration`` explains each field, ``rcp.identifiers`` checks the numbers.
    """

    __tablename__ = "establishments"

    id: int | None = Field(default=None, primary_key=True)
    #: FINESS géographique (ET), 9 characters with its Luhn key (``rcp.identifiers.check_finess``).
    finess: str = Field(sa_column=sa.Column(sa.String(9), unique=True, nullable=False))
    name: str = Field(max_length=200)
    #: Healthcare facility type (JDV_J02_XdsHealthcareFacilityTypeCode_CISIS, TRE_R02 SecteurActivite: SA01...).
    facility_type: str = Field(default="SA01", max_length=8)
    #: National id and acronym of the regional cancer network (RRC: "ONCO AURA").
    regional_network_id: str = Field(default="", max_length=20)
    regional_network_name: str = Field(default="", max_length=100)
    #: National id and acronym of the RCP manager (3C: "3C HCL").
    coordination_centre_id: str = Field(default="", max_length=20)
    coordination_centre_name: str = Field(default="", max_length=100)
    #: The organisation that keeps the documents (CDA custodian) when not the establishment itself: its FINESS
    #: and name (empty: the establishment).
    custodian_finess: str = Field(default="", max_length=9)
    custodian_name: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp(nullable=False))


class Board(SQLModel, table=True):
    """A standing tumour board ("RCP thoracique"), with what makes its meetings valid."""

    __tablename__ = "boards"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    #: The board's FRCP type (``rcp.scheduling.charter``): a JDV_RCP_Appareil_CISIS code for an organ board, a
    #: JDV_TraitementSoins_FRCP_CISIS code for a transversal one; empty only for a board migrated unrecognised.
    type_code: str = Field(default="", max_length=20, sa_column_kwargs={"server_default": ""})
    #: The finer organ when known (a JDV_RCP_Organe_CISIS code), else free text ("thoracic").
    tumour_site: str = Field(default="", max_length=100)
    #: Specialties that must be present for a valid proposal (INCa); see ``rcp.scheduling.charter`` for defaults.
    required_specialties: list[str] = Field(default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False))
    minimum_specialties: int = Field(default=3)
    #: 0 = Monday ... 6 = Sunday; the board's usual slot proposes dates for new meetings.
    default_weekday: int | None = Field(default=None)
    default_time: str = Field(default="14:00", max_length=5)
    default_duration_min: int = Field(default=90)
    timezone: str = Field(default="Europe/Paris", max_length=64)
    #: The establishment (and so the 3C and regional network) the board belongs to; None until configured.
    establishment_id: int | None = Field(default=None, sa_column=_fk("establishments.id", nullable=True,
                                                                      ondelete="SET NULL"))
    #: The RCP's national identifier (FRCP encompassingEncounter id under 1.2.250.1.161.1.20.3.1), "" unknown.
    national_id: str = Field(default="", max_length=20, sa_column_kwargs={"server_default": ""})
    #: "RCP de recours" (a regional referral board, FRCP ORG-184) and paediatric board (ORG-185).
    referral: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    paediatric: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp(nullable=False))


class BoardCoordinator(SQLModel, table=True):
    """Which coordinators run which boards (a coordinator sees only their boards)."""

    __tablename__ = "board_coordinators"

    board_id: int = Field(sa_column=sa.Column(sa.ForeignKey("boards.id", ondelete="CASCADE"), primary_key=True))
    user_id: int = Field(sa_column=sa.Column(sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True))


class Meeting(SQLModel, table=True):
    __tablename__ = "meetings"

    id: int | None = Field(default=None, primary_key=True)
    board_id: int = Field(sa_column=_fk("boards.id"))
    title: str = Field(default="", max_length=200)
    #: Stored in UTC; shown in the board's time zone.
    starts_at: datetime = Field(sa_column=timestamp(nullable=False, index=True))
    duration_min: int = Field(default=90)
    status: str = Field(default=MeetingStatus.scheduled, max_length=20)
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp(nullable=False))


class Invitation(SQLModel, table=True):
    """A participant of a meeting, with the one specialty they count for and their attendance."""

    __tablename__ = "invitations"
    __table_args__ = (sa.UniqueConstraint("meeting_id", "user_id", name="uq_invitation_meeting_user"),)

    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(sa_column=_fk("meetings.id"))
    user_id: int = Field(sa_column=_fk("users.id"))
    specialty: str = Field(default="", max_length=40)
    #: False for someone present outside the quorum (INCa: each attendee counts once, or not at all).
    quorum_member: bool = Field(default=True)
    response: str = Field(default=Response.pending, max_length=20)
    invited_at: datetime = Field(default_factory=utcnow, sa_column=timestamp(nullable=False))
    joined_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))
    left_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))


class JoinLink(SQLModel, table=True):
    """A guest's personal link to one invitation: only the SHA-256 of its token is kept (like a password).

    Minted when the mail leaves (``rcp.auth.links``), used up by the first confirmed opening, revoked when a newer
    one is sent.
    """

    __tablename__ = "join_links"

    id: int | None = Field(default=None, primary_key=True)
    invitation_id: int = Field(sa_column=_fk("invitations.id"))
    token_sha256: str = Field(sa_column=sa.Column(sa.String(64), unique=True, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp(nullable=False))
    used_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))
    revoked_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))


class Patient(SQLModel, table=True):
    __tablename__ = "patients"

    id: int | None = Field(default=None, primary_key=True)
    #: Birth family name (nom de naissance): the strict trait of the national identity rules (RNIV).
    family_name: str = Field(max_length=100)
    #: The list of given names of the birth certificate, space-separated (RNIV "liste des prénoms").
    given_names: str = Field(default="", max_length=200)
    birth_date: date | None = Field(default=None)
    #: HL7 administrative gender as used by FHIR and PID-8: female, male, other, unknown.
    sex: str = Field(default="unknown", max_length=10)
    #: Used name (nom utilisé), when it differs from the birth name; a non-strict trait.
    used_name: str = Field(default="", max_length=100)
    #: First given name of the birth certificate (premier prénom); empty: the first word of ``given_names``.
    first_given_name: str = Field(default="", max_length=100)
    #: INSEE code of the birthplace (commune, or 99xxx for a country), 5 characters.
    birth_place_code: str = Field(default="", max_length=5)
    #: RNIV identity status (``rcp.identifiers.IDENTITY_STATUSES``); typed in the service: at most "validated".
    identity_status: str = Field(default="provisional", max_length=12,
                                 sa_column_kwargs={"server_default": "provisional"})
    #: Who set the status (a user name, or "ADT <sending facility>"), when, and from which document.
    identity_status_by: str = Field(default="", max_length=100)
    identity_status_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))
    #: The identity document checked (justificatif: passport, id_card, residence_permit, birth_certificate,
    #: family_record_book), empty when none was seen.
    identity_document: str = Field(default="", max_length=40)
    #: RNIV identity attributes: doubtful, fictitious, homonym.
    identity_attributes: list[str] = Field(default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False,
                                                                                     server_default="[]"))
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp(nullable=False))


class PatientIdentifier(SQLModel, table=True):
    """An identifier with its assigning authority: the national INS, or a hospital's local IPP."""

    __tablename__ = "patient_identifiers"
    __table_args__ = (sa.UniqueConstraint("system", "assigner", "value", name="uq_patient_identifier"),)

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(sa_column=_fk("patients.id"))
    #: "INS-NIR" (the NIR; OID .8, or .10/.11 for test identities), "INS-NIA" (the NIA, OID .9) or "IPP".
    system: str = Field(max_length=20)
    value: str = Field(max_length=64)
    #: For an IPP, the hospital (assigning authority) that issued it; for the INS, empty.
    assigner: str = Field(default="", max_length=100)
    #: The assigning authority's OID: the hospital's for an IPP (HL7 CX.4.2, FHIR ``urn:oid:``), the INS OID
    #: (``rcp.identifiers.INS_OIDS``: .8 NIR, .9 NIA, .10/.11 test) for an INS.
    assigner_oid: str = Field(default="", max_length=64)


class Case(SQLModel, table=True):
    """A patient on a meeting's agenda, with the question the board must answer."""

    __tablename__ = "cases"

    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(sa_column=_fk("meetings.id"))
    patient_id: int = Field(sa_column=_fk("patients.id", ondelete="RESTRICT"))
    position: int = Field(default=0)
    referring_physician: str = Field(default="", max_length=200)
    question: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False, server_default=""))
    clinical_summary: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False, server_default=""))
    staging: str = Field(default="", max_length=200)
    #: WHO / ECOG performance status 0-4.
    performance_status: int | None = Field(default=None)
    study_uids: list[str] = Field(default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False))
    #: Extra readiness items the coordinator ticks ({"pathology_report": true}).
    checklist: dict[str, bool] = Field(default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False))
    status: str = Field(default=CaseStatus.registered, max_length=20)
    #: When deferred, the case created on the board's next meeting.
    deferred_to_id: int | None = Field(default=None, sa_column=sa.Column(sa.Integer, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp(nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp(nullable=False))


class CaseDiscussion(SQLModel, table=True):
    """One discussion of a case in its meeting's room, recorded when it ended: from the chair opening the case to
    the chair opening another one, closing it, or the last chair leaving (rcp.room.attendance.discussions).

    Rows are only ever added (rcp.scheduling.attendance): a case opened again later gets another discussion, so
    its record grows and never loses who was there the first time. ``(case_id, opened_seq)`` is unique: two nodes
    recording the same discussion store it once.
    """

    __tablename__ = "case_discussions"
    __table_args__ = (sa.UniqueConstraint("case_id", "opened_seq", name="uq_case_discussion_opened"),)

    id: int | None = Field(default=None, primary_key=True)
    # RESTRICT, as for signed versions: the record of who decided outlives nothing it describes.
    case_id: int = Field(sa_column=_fk("cases.id", ondelete="RESTRICT"))
    meeting_id: int = Field(sa_column=_fk("meetings.id", ondelete="RESTRICT", index=False))
    #: Room event sequence numbers that opened and ended the discussion (rows of ``room_events``).
    opened_seq: int
    closed_seq: int
    opened_at: datetime = Field(sa_column=timestamp(nullable=False))
    closed_at: datetime = Field(sa_column=timestamp(nullable=False))
    #: What ended it: "case.changed" (another case opened), "case.closed" (the chair closed it), "chair.left".
    closed_by: str = Field(max_length=20)
    #: JDV_StatutQuorum_CISIS of the case's whole record once this discussion was added: ORG-126 met, ORG-133 not.
    quorum_status: str = Field(max_length=10)
    recorded_at: datetime = Field(default_factory=utcnow, sa_column=timestamp(nullable=False))


class CaseAttendance(SQLModel, table=True):
    """Someone connected to the room during one discussion of a case, as they were then: the specialty they
    counted for, inside or outside the quorum, guest or not, and when they were there (within the discussion)."""

    __tablename__ = "case_attendance"
    __table_args__ = (sa.UniqueConstraint("discussion_id", "user_id", name="uq_case_attendance_user"),)

    id: int | None = Field(default=None, primary_key=True)
    discussion_id: int = Field(sa_column=_fk("case_discussions.id", ondelete="RESTRICT"))
    case_id: int = Field(sa_column=_fk("cases.id", ondelete="RESTRICT"))
    user_id: int = Field(sa_column=_fk("users.id", ondelete="RESTRICT", index=False))
    #: The specialty key they counted for at that time (invitation, else account; "" when none is known).
    specialty: str = Field(default="", max_length=40)
    #: False: present "hors quorum" (INCa: each attendee counts once, or not at all).
    quorum_member: bool = Field(default=True)
    guest: bool = Field(default=False)
    joined_at: datetime = Field(sa_column=timestamp(nullable=False))
    left_at: datetime = Field(sa_column=timestamp(nullable=False))
