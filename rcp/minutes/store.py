"""The minutes in the database: drafts saved field by field, signatures in one transaction, write-back jobs.

Every function takes the caller's :class:`~sqlmodel.ext.asyncio.session.AsyncSession` (one transaction, see
``rcp.db.Database.session``): the route or room handler owns the transaction, we never commit here. That is what
lets :func:`sign` put the signed version, its write-back jobs and whatever :data:`on_signed` hooks add (the EPR
outbox rows) into the same commit: either all of it exists after a crash, or none of it.

Pure rules (conflicts, quorum, who may sign) live in ``rcp.minutes.versions``; this module loads the context they
need (case, meeting, board, patient, invitations) and stores the result.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rcp.auth.models import User
from rcp.clock import as_utc, utcnow
from rcp.errors import NotFound
from rcp.identifiers import is_ins
from rcp.minutes import codes, versions
from rcp.minutes.fiche import (
    INS_NIR_OID,
    AttendeeRecord,
    BoardInfo,
    EstablishmentInfo,
    Fiche,
    PatientIdentity,
    PerformanceStatus,
    Physician,
)
from rcp.minutes.models import DecisionDraft, DecisionVersion, WritebackJob, WritebackKind, WritebackStatus
from rcp.minutes.staging import StagingError, Tnm
from rcp.minutes.versions import AlreadySigned, Draft, DraftField, SignedVersion
from rcp.scheduling.attendance import Attended, attending_specialty, case_record, merge
from rcp.scheduling.models import (
    Board,
    Case,
    CaseStatus,
    Establishment,
    Invitation,
    Meeting,
    Patient,
    PatientIdentifier,
)
from rcp.scheduling.specialties import SPECIALTIES

__all__ = [
    "MAX_WRITEBACK_ATTEMPTS",
    "CaseContext",
    "Confirm",
    "FieldHook",
    "SignedHook",
    "StoredVersion",
    "account_physician",
    "amend",
    "attendees_under_way",
    "build_fiche",
    "carry_draft",
    "complete_writeback",
    "due_writebacks",
    "fail_writeback",
    "list_versions",
    "load_context",
    "load_draft",
    "meeting_versions",
    "on_field_saved",
    "on_signed",
    "reject_in_imaging",
    "save_field",
    "sign",
    "signer_account",
    "writebacks_for",
]

log = logging.getLogger(__name__)

MAX_WRITEBACK_ATTEMPTS = 12
_SPECIALTY_KEYS = frozenset(s.key for s in SPECIALTIES)


@dataclass(frozen=True)
class StoredVersion:
    """A signed version as stored: its row id, its case, and the frozen version itself."""

    id: int
    case_id: int
    version: SignedVersion
    replaces_id: int | None = None


SignedHook = Callable[[AsyncSession, StoredVersion], Awaitable[None]]
#: Called by :func:`sign` and :func:`amend` once every rule passed, just before the version is written: the route's
#: re-authentication of the signer (rcp.auth.reauth), so that a refusal after the password check never happens
#: and the answer to a wrong password is the only one that depends on it.
Confirm = Callable[[], Awaitable[None]]
#: (meeting id, case id, field name, saved field) — see :data:`on_field_saved`.
FieldHook = Callable[[int, int, str, DraftField], Awaitable[None]]

#: Called inside the signing transaction after the version and its write-back jobs are added (and flushed, so
#: ``version.id`` is set). The EPR outbox appends its delivery rows here. A hook that raises aborts the signature.
on_signed: list[SignedHook] = []

#: Called by the routes *after* a draft field is committed, so the room can show the edit live to everyone
#: (the room engineer registers its broadcaster here). Never called inside the transaction: nobody sees text that
#: was then rolled back.
on_field_saved: list[FieldHook] = []


# -- context ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseContext:
    """What the agenda and the patient record say about a case: everything the fiche does not edit."""

    case: Case
    meeting: Meeting
    board: Board
    patient: Patient
    identifiers: tuple[PatientIdentifier, ...]
    invitations: tuple[tuple[Invitation, User], ...]
    #: The case's frozen attendance: every ended discussion of it in the room (rcp.scheduling.attendance).
    record: tuple[Attended, ...] = ()
    #: The board's establishment (rcp.scheduling.registration), None until its coordinator registers it.
    establishment: Establishment | None = None

    @property
    def invited_ids(self) -> frozenset[int]:
        return frozenset(inv.user_id for inv, _ in self.invitations)

    def attendees(self, under_way: Sequence[Attended] | None = None) -> tuple[AttendeeRecord, ...]:
        """The case's attendees as the fiche lists them, with the specialty each counts for.

        The frozen record (:attr:`record`), plus ``under_way``: the people connected to a discussion of the case
        that has not ended yet (provisional: the record takes them when it ends; see :func:`attendees_under_way`).
        A meeting held without the live room (no record, nothing under way) falls back to the invitations the room
        never stamped: who is marked as having joined (``joined_at``).
        """
        people = merge((*self.record, *(under_way or ())))
        if not people and under_way is None:
            return self._joined()
        # Times are the record's: someone still connected to the discussion under way has no departure yet.
        recorded_ids = {a.user_id for a in self.record} - {a.user_id for a in under_way or ()}
        rpps = {user.id: user.rpps for _, user in self.invitations}
        listed = []
        for person in people:
            if person.specialty not in _SPECIALTY_KEYS:
                log.warning("case %s: attendee user %s has no specialty; left off the fiche", self.case.id,
                            person.user_id)
                continue
            recorded = person.user_id in recorded_ids
            listed.append(AttendeeRecord(user_id=person.user_id, name=person.name, specialty=person.specialty,
                                         quorum_member=person.quorum_member, hospital=person.hospital,
                                         guest=person.guest,
                                         present_from=person.joined_at if recorded else None,
                                         present_until=person.left_at if recorded else None,
                                         rpps=rpps.get(person.user_id) or ""))
        return tuple(listed)

    def _joined(self) -> tuple[AttendeeRecord, ...]:
        present = []
        for inv, user in self.invitations:
            if inv.joined_at is None:
                continue
            specialty = attending_specialty(inv.specialty, user.specialty, user.role)
            if not specialty:
                log.warning("meeting %s: attendee user %s has no specialty; left off the fiche", inv.meeting_id,
                            inv.user_id)
                continue
            present.append(AttendeeRecord(user_id=inv.user_id, name=user.display_name,
                                          specialty=specialty, quorum_member=inv.quorum_member,
                                          hospital=user.hospital, guest=user.role == "guest",
                                          rpps=user.rpps or ""))
        return tuple(present)


async def attendees_under_way(session: AsyncSession, context: CaseContext, present: Collection[int] | None,
                              *, at: datetime | None = None) -> tuple[Attended, ...] | None:
    """The people the room has connected to the case's discussion under way (``present``: user ids from
    rcp.room.decisions.room_attendees), as the record will take them when it ends: the specialty and quorum role of
    their invitation (else their account; outside the quorum when not invited). None when the room never had
    anybody (``present`` is None)."""
    if present is None:
        return None
    at = at or utcnow()
    invited = {inv.user_id: (inv, user) for inv, user in context.invitations}
    missing = [u for u in present if u not in invited]
    others = {u.id: u for u in (await session.exec(select(User).where(col(User.id).in_(missing)))).all()} \
        if missing else {}
    out = []
    for user_id in sorted(present):
        inv, user = invited.get(user_id, (None, others.get(user_id)))
        if user is None:
            continue
        out.append(Attended(user_id, user.display_name or user.username, user.hospital,
                            attending_specialty(inv.specialty if inv else "", user.specialty, user.role),
                            inv.quorum_member if inv else False, user.role == "guest", at, at))
    return tuple(out)


async def load_context(session: AsyncSession, case_id: int) -> CaseContext:
    case = await session.get(Case, case_id)
    if case is None:
        raise NotFound("No such case: check the agenda.")
    meeting = await session.get(Meeting, case.meeting_id)
    board = await session.get(Board, meeting.board_id) if meeting else None
    patient = await session.get(Patient, case.patient_id)
    if meeting is None or board is None or patient is None:
        raise NotFound("The case's meeting, board or patient is missing.")
    identifiers = (await session.exec(
        select(PatientIdentifier).where(PatientIdentifier.patient_id == patient.id)
    )).all()
    rows = (await session.exec(
        select(Invitation, User).join(User, col(User.id) == col(Invitation.user_id))
        .where(Invitation.meeting_id == meeting.id).order_by(col(Invitation.id))
    )).all()
    place = await session.get(Establishment, board.establishment_id) if board.establishment_id is not None else None
    return CaseContext(case=case, meeting=meeting, board=board, patient=patient, identifiers=tuple(identifiers),
                       establishment=place,
                       invitations=tuple((inv, user) for inv, user in rows), record=await case_record(session, case_id))


def _first_of(value_set: str, *candidates: str) -> codes.Coding | None:
    """The concept of ``value_set`` coded by the first candidate that is one of its codes."""
    members = {c.code: c for c in codes.value_set(value_set)}
    return next((members[code] for code in candidates if code in members), None)


def _board_info(board: Board, place: Establishment | None = None) -> BoardInfo:
    """The board as the fiche codes it: its type (``board.type_code``, rcp.scheduling.charter) gives the system of
    an organ board (ORG-118) or makes it transversal (ORG-132); ``tumour_site`` may add the finer organ (ORG-119).
    With its registration (rcp.scheduling.registration): national id, flags, establishment."""
    site, kind = board.tumour_site.strip(), board.type_code.strip()
    organ = next((c for c in codes.value_set(codes.RCP_ORGAN) if c.code == site), None)
    system = _first_of(codes.RCP_SYSTEM, kind, site)
    supportive = _first_of(codes.SUPPORTIVE_CARE, kind, site)
    nature = codes.value_set(codes.DISCUSSION_NATURE).lookup("ORG-132" if supportive else "ORG-117")
    establishment = None
    if place is not None:
        establishment = EstablishmentInfo(
            finess=place.finess, name=place.name, facility_type=place.facility_type,
            regional_network_id=place.regional_network_id, regional_network_name=place.regional_network_name,
            coordination_centre_id=place.coordination_centre_id,
            coordination_centre_name=place.coordination_centre_name,
            custodian_finess=place.custodian_finess, custodian_name=place.custodian_name)
    return BoardInfo(name=board.name, discussion_nature=nature, organ=organ, system=system, care=supportive,
                     required_specialties=tuple(board.required_specialties),
                     minimum_specialties=board.minimum_specialties, national_id=board.national_id,
                     referral=board.referral, paediatric=board.paediatric, establishment=establishment)


def _patient_identity(patient: Patient, identifiers: Sequence[PatientIdentifier]) -> PatientIdentity:
    ins = next((i for i in identifiers if is_ins(i.system)), None)
    ipp = next((i for i in identifiers if i.system == "IPP"), None)
    return PatientIdentity(
        family_name=patient.family_name, given_names=patient.given_names, birth_date=patient.birth_date,
        sex=patient.sex if patient.sex in {"female", "male", "other"} else "unknown",
        ins=ins.value if ins else "", ins_system=(ins.assigner_oid or INS_NIR_OID) if ins else INS_NIR_OID,
        local_id=ipp.value if ipp else "", local_id_issuer=ipp.assigner if ipp else "",
        local_id_issuer_oid=ipp.assigner_oid if ipp else "",
        identity_status=patient.identity_status or "provisional",
        identity_attributes=tuple(patient.identity_attributes or ()), used_name=patient.used_name,
        identity_document=patient.identity_document or "",
        # The day the document was checked: when the status was set with one (an identity feed that says nothing
        # of a document gives no verification date).
        identity_date=(as_utc(patient.identity_status_at).date()
                       if patient.identity_status_at and patient.identity_document else None),
    )


def _meeting_date(meeting: Meeting, board: Board) -> date:
    try:
        zone = ZoneInfo(board.timezone)
    except (KeyError, ValueError):
        zone = ZoneInfo("Europe/Paris")
    return as_utc(meeting.starts_at).astimezone(zone).date()


def _case_defaults(case: Case) -> dict[str, Any]:
    """Draft values before anyone writes: what the coordinator put on the agenda."""
    values: dict[str, Any] = {"question": case.question, "clinical_summary": case.clinical_summary}
    if case.referring_physician.strip():
        values["referring_physician"] = {"name": case.referring_physician.strip()[:200]}
    tnm = _agenda_staging(case.staging)
    if tnm is not None:
        values["pathological_tnm" if tnm.pathological else "clinical_tnm"] = tnm.as_json()
    if case.performance_status is not None and 0 <= case.performance_status <= 4:
        values["performance_status"] = PerformanceStatus(case.performance_status).as_json()
    return values


def _agenda_staging(text: str) -> Tnm | None:
    """The agenda's free-text staging as a TNM classification, prefix kept, when it reads as one.

    Nothing is guessed: text the rules do not understand ("stade avancé") prefills nothing and stays on the
    agenda for the room to read; a missing edition stays missing (the fiche flags it; signing needs it).
    """
    if not text.strip():
        return None
    try:
        return Tnm.from_text(text)
    except StagingError:
        return None


def build_fiche(context: CaseContext, draft: Draft,
                attendees: Sequence[AttendeeRecord] | None = None) -> Fiche:
    """The fiche for ``context`` with the draft's values; ``attendees`` overrides the invitations' attendance.

    Raises ``Invalid`` (naming fields) when the record cannot be a fiche, e.g. a patient without identifier.
    """
    present = tuple(attendees) if attendees is not None else context.attendees()
    content = {
        "case_id": context.case.id,
        "meeting_id": context.meeting.id,
        "patient": _patient_identity(context.patient, context.identifiers).as_json(),
        "board": _board_info(context.board, context.establishment).as_json(),
        "meeting_date": _meeting_date(context.meeting, context.board).isoformat(),
        "attendees": [a.as_json() for a in present],
        "study_uids": list(context.case.study_uids),
        **draft.values(),
    }
    return Fiche.from_content(content)


# -- drafts ----------------------------------------------------------------------------------------------------


def _field_from_json(data: dict[str, Any]) -> DraftField:
    stamp = data.get("updated_at")
    return DraftField(value=versions.freeze(data.get("value")), version=int(data.get("version", 0)),
                      editor_id=data.get("editor_id"),
                      updated_at=as_utc(datetime.fromisoformat(stamp)) if stamp else None)


def _draft(case: Case, row: DecisionDraft | None) -> Draft:
    fields = {name: DraftField(value=versions.freeze(value)) for name, value in _case_defaults(case).items()}
    if row is not None:
        fields.update({name: _field_from_json(data) for name, data in row.fields.items()})
    assert case.id is not None
    return Draft(case_id=case.id, fields=MappingProxyType(fields))


async def _draft_row(session: AsyncSession, case_id: int) -> DecisionDraft | None:
    return (await session.exec(select(DecisionDraft).where(DecisionDraft.case_id == case_id))).first()


async def _ensure_draft_row(session: AsyncSession, case_id: int, at: datetime) -> None:
    """Create the case's draft row unless it exists, without failing when two editors race to create it.

    INSERT ... ON CONFLICT DO NOTHING (PostgreSQL and SQLite alike) rather than a savepoint: pysqlite's savepoints
    outside an explicit transaction would commit early.
    """
    dialect = (await session.connection()).dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    await session.exec(
        insert(DecisionDraft).values(case_id=case_id, fields={}, revision=0, updated_at=at)
        .on_conflict_do_nothing(index_elements=["case_id"])
    )


async def load_draft(session: AsyncSession, case_id: int) -> Draft:
    """The case's draft: edited fields with their versions, the rest prefilled from the agenda (version 0)."""
    case = await session.get(Case, case_id)
    if case is None:
        raise NotFound("No such case: check the agenda.")
    return _draft(case, await _draft_row(session, case_id))


async def save_field(session: AsyncSession, case_id: int, name: str, value: Any, *, base_version: int,
                     editor_id: int, at: datetime | None = None) -> DraftField:
    """Save one field edited from ``base_version``; :class:`~rcp.minutes.versions.FieldConflict` if it moved on.

    The row's ``revision`` is an optimistic lock: if another save committed between our read and our write (a
    different field, or the same one), we read again and re-apply the field rule, so nothing is lost silently.
    Refused once the case is signed (:class:`~rcp.minutes.versions.AlreadySigned`, 409): the signed text is the
    record, and only a physician's amendment (:func:`amend`: a new version with a reason) changes it.
    """
    at = at or utcnow()
    case = await session.get(Case, case_id)
    if case is None:
        raise NotFound("No such case: check the agenda.")
    await _refuse_if_signed(session, case_id)
    if await _draft_row(session, case_id) is None:
        await _ensure_draft_row(session, case_id, at)
    for _attempt in range(8):
        row = await _draft_row(session, case_id)
        assert row is not None
        await session.refresh(row)
        updated = _draft(case, row).edit(name, value, base_version=base_version, editor_id=editor_id, at=at)
        new_field = updated.get(name)
        stored = dict(row.fields)
        stored[name] = new_field.as_json()
        result = await session.exec(
            sa.update(DecisionDraft)
            .where(col(DecisionDraft.id) == row.id, col(DecisionDraft.revision) == row.revision)
            .values(fields=stored, revision=updated.revision, updated_at=at)
        )
        if result.rowcount == 1:
            return new_field
    raise versions.StaleDraft("The decision is being edited very quickly by several people: save again.")


async def _refuse_if_signed(session: AsyncSession, case_id: int) -> None:
    latest = (await session.exec(
        select(sa.func.max(DecisionVersion.number)).where(DecisionVersion.case_id == case_id)
    )).one()
    if latest is not None:
        raise AlreadySigned(
            f"This decision is signed (version {latest}): it can no longer be edited. A physician who took part "
            "in the discussion corrects it with an amendment (a new version that gives the reason)."
        )


async def _store_draft(session: AsyncSession, case_id: int, draft: Draft, names: Sequence[str], at: datetime) -> None:
    """Write the fields ``names`` of ``draft`` (an amendment's changes), so the draft shows the latest version."""
    if not names:
        return
    await _ensure_draft_row(session, case_id, at)
    row = await _draft_row(session, case_id)
    assert row is not None
    await session.refresh(row)
    stored = dict(row.fields)
    for name in names:
        stored[name] = draft.get(name).as_json()
    await session.exec(
        sa.update(DecisionDraft).where(col(DecisionDraft.id) == row.id)
        .values(fields=stored, revision=draft.revision, updated_at=at)
    )


async def carry_draft(session: AsyncSession, from_case_id: int, to_case_id: int, *,
                      at: datetime | None = None) -> None:
    """Copy a deferred case's draft to its case on the board's next meeting (not discussed / no quorum).

    The written fields keep their text and start again at version 1 under the new case, so nothing typed in the
    first meeting is lost; attendance and signature are the new meeting's.
    """
    at = at or utcnow()
    row = await _draft_row(session, from_case_id)
    if row is None or not row.fields:
        return
    await _ensure_draft_row(session, to_case_id, at)
    target = await _draft_row(session, to_case_id)
    assert target is not None
    await session.refresh(target)
    fields = dict(target.fields)
    for name, data in row.fields.items():
        if name == "case_status" or name in fields:
            continue  # the new meeting decides whether it is discussed; never overwrite what it already wrote
        fields[name] = {**data, "version": 1, "updated_at": at.isoformat()}
    await session.exec(
        sa.update(DecisionDraft).where(col(DecisionDraft.id) == target.id)
        .values(fields=fields, revision=sum(int(f.get("version", 0)) for f in fields.values()), updated_at=at)
    )


# -- signed versions -------------------------------------------------------------------------------------------


def account_physician(user: User) -> Physician:
    """An account as the documents name it: "Dr Amélie ROUSSEAU", its parts and RPPS (``rcp.people``)."""
    return Physician(name=user.display_name, specialty=user.specialty, hospital=user.hospital, user_id=user.id,
                     rpps=user.rpps, person=None if user.name_incomplete else user.person_name)


async def signer_account(session: AsyncSession, user_id: int) -> Physician:
    """The account that signs, as the documents will name it (its name and specialty from the users table).

    An account whose name is still to complete (kept whole by migration 0013 because it could not be split)
    cannot sign: the document's author would carry a guessed family name."""
    user = await session.get(User, user_id)
    if user is None or not user.active:
        raise versions.NotAllowedToSign("This account cannot sign: it is unknown or deactivated.")
    if user.name_incomplete:
        raise versions.NotAllowedToSign(
            "Your name must be completed (family name and given name) before you sign: ask an administrator.",
            fields={"family_name": "to complete"})
    return account_physician(user)


async def _signers(session: AsyncSession, rows: Sequence[DecisionVersion]) -> dict[int, Physician]:
    ids = {r.signed_by for r in rows}
    if not ids:
        return {}
    users = (await session.exec(select(User).where(col(User.id).in_(ids)))).all()
    return {u.id: account_physician(u) for u in users if u.id is not None}


def _stored(row: DecisionVersion, numbers: dict[int, int], signers: Mapping[int, Physician]) -> StoredVersion:
    assert row.id is not None
    version = SignedVersion(number=row.number, content=row.content, sha256=row.sha256, signed_by=row.signed_by,
                            signed_at=as_utc(row.signed_at),
                            replaces=numbers.get(row.replaces_id) if row.replaces_id else None, reason=row.reason,
                            signer=signers.get(row.signed_by))
    if not version.verify():
        # Never silently show altered medical content: the stored JSON no longer matches what was signed.
        log.error("case %s: decision version %s does not match its SHA-256", row.case_id, row.number)
    return StoredVersion(id=row.id, case_id=row.case_id, version=version, replaces_id=row.replaces_id)


async def list_versions(session: AsyncSession, case_id: int) -> list[StoredVersion]:
    """Every signed version of the case, oldest first."""
    rows = (await session.exec(
        select(DecisionVersion).where(DecisionVersion.case_id == case_id).order_by(col(DecisionVersion.number))
    )).all()
    numbers = {r.id: r.number for r in rows if r.id is not None}
    signers = await _signers(session, rows)
    return [_stored(r, numbers, signers) for r in rows]


async def meeting_versions(session: AsyncSession, meeting_id: int) -> dict[int, StoredVersion]:
    """The latest signed version of each case of a meeting, by case id (for the meeting's minutes)."""
    rows = (await session.exec(
        select(DecisionVersion).join(Case, col(Case.id) == col(DecisionVersion.case_id))
        .where(Case.meeting_id == meeting_id).order_by(col(DecisionVersion.number))
    )).all()
    numbers = {r.id: r.number for r in rows if r.id is not None}
    signers = await _signers(session, rows)
    return {r.case_id: _stored(r, numbers, signers) for r in rows}


async def _insert(session: AsyncSession, case_id: int, version: SignedVersion, replaces_id: int | None,
                  fiche: Fiche, hooks: Sequence[SignedHook] = ()) -> StoredVersion:
    row = DecisionVersion(case_id=case_id, number=version.number, content=versions.thaw(version.content),
                          sha256=version.sha256, signed_by=version.signed_by, signed_at=version.signed_at,
                          replaces_id=replaces_id, reason=version.reason)
    session.add(row)
    try:
        # (case_id, number) is unique: of two signatures racing, the second fails here and its transaction is
        # rolled back by the caller's session block.
        await session.flush()
    except IntegrityError:
        raise AlreadySigned(
            "Someone signed this decision at the same moment: reload it to see the signed version."
        ) from None
    assert row.id is not None
    kinds = [WritebackKind.pdf] + ([WritebackKind.kos] if fiche.key_images else [])
    for kind in kinds:
        session.add(WritebackJob(version_id=row.id, kind=kind, created_at=version.signed_at,
                                 updated_at=version.signed_at, next_attempt_at=version.signed_at))
    if replaces_id is not None:
        # The corrected version's objects are rejected in the imaging file (IHE IOCM), in this same transaction.
        await reject_in_imaging(session, replaces_id, at=version.signed_at)
    stored = StoredVersion(id=row.id, case_id=case_id, version=version, replaces_id=replaces_id)
    for hook in (*on_signed, *hooks):
        await hook(session, stored)
    await session.flush()
    return stored


async def sign(session: AsyncSession, *, case_id: int, signer_id: int, seen_revision: int,
               attendees: Sequence[AttendeeRecord] | None = None, at: datetime | None = None,
               hooks: Sequence[SignedHook] = (), confirm: Confirm | None = None) -> StoredVersion:
    """Sign the case's decision: version 1, its write-back jobs and the :data:`on_signed` rows, in this transaction.

    ``signer_id`` is the signed-in account (its name and specialty come from the users table). ``confirm`` is the
    route's re-authentication, called after every rule passed (see :data:`Confirm`). ``attendees`` comes from the
    room when it knows better than the invitations (who was there while the case was discussed). ``hooks`` run
    after the module-wide :data:`on_signed` ones: an app passes its own (its EPR receivers) so that two apps in one
    process stay apart.
    """
    at = at or utcnow()
    context = await load_context(session, case_id)
    draft = await load_draft(session, case_id)
    fiche = build_fiche(context, draft, attendees)
    existing = [s.version for s in await list_versions(session, case_id)]
    version = versions.sign(fiche, draft=draft, seen_revision=seen_revision,
                            signer=await signer_account(session, signer_id), invited_ids=context.invited_ids,
                            existing=existing, at=at)
    if confirm is not None:
        await confirm()
    stored = await _insert(session, case_id, version, None, fiche, hooks)
    context.case.status = CaseStatus.discussed if fiche.discussed else context.case.status
    context.case.updated_at = at
    session.add(context.case)
    log.info("case %s: decision version %s signed by user %s", case_id, version.number, signer_id)
    return stored


async def amend(session: AsyncSession, *, case_id: int, signer_id: int, reason: str, replaces_number: int,
                changes: Mapping[str, Any] | None = None, attendees: Sequence[AttendeeRecord] | None = None,
                at: datetime | None = None, hooks: Sequence[SignedHook] = (),
                confirm: Confirm | None = None) -> StoredVersion:
    """Sign a correction of version ``replaces_number``: the draft with ``changes`` (field name -> new value),
    saying why, in one transaction; the draft then holds the corrected values (a signed draft is not editable
    otherwise, see :func:`save_field`).

    Attendees default to those recorded on the replaced version: a correction fixes what the board decided, it
    does not change who decided it (and only one of them signs it).
    """
    at = at or utcnow()
    context = await load_context(session, case_id)
    draft = await load_draft(session, case_id)
    stored = await list_versions(session, case_id)
    target = next((s for s in stored if s.version.number == replaces_number), None)
    if target is None:
        raise NotFound("No such signed version of this decision.")
    changes = dict(changes or {})
    for name, value in changes.items():
        draft = draft.edit(name, value, base_version=draft.get(name).version, editor_id=signer_id, at=at)
    if attendees is None:
        attendees = target.version.fiche().attendees
    fiche = build_fiche(context, draft, attendees)
    version = versions.amend(fiche, replaces=target.version, existing=[s.version for s in stored], reason=reason,
                             signer=await signer_account(session, signer_id), invited_ids=context.invited_ids,
                             at=at)
    if confirm is not None:
        await confirm()
    result = await _insert(session, case_id, version, target.id, fiche, hooks)
    await _store_draft(session, case_id, draft, list(changes), at)
    log.info("case %s: decision version %s replaces %s", case_id, version.number, replaces_number)
    return result


# -- write-back jobs -------------------------------------------------------------------------------------------


async def reject_in_imaging(session: AsyncSession, version_id: int, *, wrong_patient: bool = False,
                            at: datetime | None = None) -> WritebackJob | None:
    """Queue the IHE IOCM rejection note that hides version ``version_id``'s KOS and PDF in the imaging file: it was
    replaced (an amendment, called by :func:`amend`) or withdrawn (the withdrawal's hook). 113001 "Rejected for
    Quality Reasons", or 113037 "Rejected for Patient Safety Reasons" when ``wrong_patient``.

    In the caller's transaction, exactly once per version and title (the job is unique per version and kind): a
    second call returns the job already queued. None when the version never had anything written back.
    """
    at = at or utcnow()
    kind = WritebackKind.reject_patient if wrong_patient else WritebackKind.reject
    jobs = await writebacks_for(session, version_id)
    existing = next((j for j in jobs if j.kind == kind), None)
    if existing is not None:
        return existing
    if not any(j.kind in {WritebackKind.kos, WritebackKind.pdf} for j in jobs):
        return None
    job = WritebackJob(version_id=version_id, kind=kind, created_at=at, updated_at=at, next_attempt_at=at)
    session.add(job)
    await session.flush()
    return job


async def writebacks_for(session: AsyncSession, version_id: int) -> list[WritebackJob]:
    return list((await session.exec(
        select(WritebackJob).where(WritebackJob.version_id == version_id).order_by(col(WritebackJob.id))
    )).all())


async def due_writebacks(session: AsyncSession, *, now: datetime | None = None, limit: int = 20) -> list[WritebackJob]:
    """Jobs to attempt now: pending or failed, due, with attempts left; oldest first."""
    now = now or utcnow()
    return list((await session.exec(
        select(WritebackJob)
        .where(col(WritebackJob.status).in_([WritebackStatus.pending, WritebackStatus.failed]),
               col(WritebackJob.next_attempt_at) <= now,
               col(WritebackJob.attempts) < MAX_WRITEBACK_ATTEMPTS)
        .order_by(col(WritebackJob.next_attempt_at), col(WritebackJob.id)).limit(limit)
    )).all())


async def complete_writeback(session: AsyncSession, job_id: int, *, sop_uid: str,
                             now: datetime | None = None) -> None:
    job = await session.get(WritebackJob, job_id)
    if job is None:
        raise NotFound("No such write-back job.")
    job.status, job.stored_sop_uid, job.last_error = WritebackStatus.done, sop_uid, ""
    job.attempts += 1
    job.updated_at = now or utcnow()
    session.add(job)


async def refuse_writeback(session: AsyncSession, job_id: int, *, error: str, now: datetime | None = None) -> None:
    """Record a write-back refused for good (the study is another patient's): never retried, nothing stored.

    The signed version stays signed; ``error`` names identity fields only, never their values.
    """
    job = await session.get(WritebackJob, job_id)
    if job is None:
        raise NotFound("No such write-back job.")
    job.attempts += 1
    job.status, job.last_error = WritebackStatus.refused, error[:2000]
    job.updated_at = now or utcnow()
    session.add(job)


def backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min ... capped at one hour between attempts."""
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 3600))


async def fail_writeback(session: AsyncSession, job_id: int, *, error: str, sop_uid: str = "",
                         now: datetime | None = None) -> None:
    """Record a refused or failed store; the job is retried later. ``error`` must not hold patient data."""
    now = now or utcnow()
    job = await session.get(WritebackJob, job_id)
    if job is None:
        raise NotFound("No such write-back job.")
    job.attempts += 1
    job.status, job.last_error = WritebackStatus.failed, error[:2000]
    if sop_uid:
        job.stored_sop_uid = sop_uid
    job.updated_at = now
    job.next_attempt_at = now + backoff(job.attempts)
    session.add(job)
