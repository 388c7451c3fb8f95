"""Scheduling operations shared by the JSON API and the coordinator's pages.

Every function takes the caller's database session (one transaction per request) and the authenticated user,
checks what that user may do, and audits every read or write of patient data (DCM 110110 Patient Record).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import HTTPConnection

from rcp.auth import audit
from rcp.auth.models import Role, User
from rcp.clock import as_utc, utcnow
from rcp.errors import Conflict, Invalid
from rcp.identifiers import (
    INS_SYSTEMS,
    INS_TEST_OIDS,
    ServicePatient,
    first_given_name,
    ins_key_ok,
    is_ins,
    plain_name,
)
from rcp.mail import Mail, latest_by_invitation, mask_address
from rcp.scheduling import access, agenda, charter, registration, schemas
from rcp.scheduling.access import Action, is_admin, meeting_for_user, visible_board_ids, visible_meeting_ids
from rcp.scheduling.models import (
    Board,
    BoardCoordinator,
    Case,
    CaseStatus,
    Establishment,
    Invitation,
    Meeting,
    MeetingStatus,
    Patient,
    PatientIdentifier,
    Response,
)
from rcp.scheduling.quorum import Attendee, Quorum, evaluate_quorum

__all__ = [
    "add_case",
    "board_out",
    "create_board",
    "create_meeting",
    "create_patient",
    "defer_case",
    "establishments_of",
    "invite",
    "list_boards",
    "list_meetings",
    "meeting_detail",
    "meeting_quorum",
    "relist_case",
    "reorder_agenda",
    "update_case",
    "update_charter",
    "update_invitation",
    "update_meeting",
    "withdraw_case",
]

#: Meeting states in which the agenda can still change.
OPEN_MEETING = frozenset({MeetingStatus.scheduled, MeetingStatus.live})


def local_to_utc(value: datetime, timezone: str) -> datetime:
    """A wall-clock time typed by a coordinator is in the board's zone unless it carries an offset."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(timezone))
    return as_utc(value)


# --- boards -------------------------------------------------------------------------------------------------


async def list_boards(session: AsyncSession, user: Any) -> list[Board]:
    visible = select(Board).where(
        col(Board.id).in_(visible_board_ids(user))
        | col(Board.id).in_(select(Meeting.board_id).where(col(Meeting.id).in_(visible_meeting_ids(user))))
    )
    return list((await session.exec(visible.order_by(Board.name))).all())


async def create_board(session: AsyncSession, user: Any, data: schemas.BoardIn) -> Board:
    """A new board with its charter: a coded FRCP type (required) and, unless given, the type's default required
    specialties (``rcp.scheduling.charter``: surgeon, medical oncologist, radiation oncologist for an organ board)."""
    access.require(user, Action.create_board)
    if not data.type_code:
        raise Invalid("Say what kind of board this is: an organ board's system (JDV_RCP_Appareil_CISIS) or a "
                      "transversal board's purpose (JDV_TraitementSoins_FRCP_CISIS).",
                      fields={"type_code": "required: a JDV_RCP_Appareil_CISIS or JDV_TraitementSoins_FRCP_CISIS code"})
    values = data.model_dump()
    if data.required_specialties is None:
        values["required_specialties"] = list(charter.default_required(charter.board_type(data.type_code)))
    board = Board(**values)
    session.add(board)
    await session.flush()
    if access.role_of(user) == Role.coordinator:
        assert board.id is not None
        session.add(BoardCoordinator(board_id=board.id, user_id=user.id))
    return board


async def establishments_of(session: AsyncSession, boards: Sequence[Board]) -> dict[int, Establishment]:
    """The establishments of these boards, by id (one query)."""
    wanted = {b.establishment_id for b in boards if b.establishment_id is not None}
    if not wanted:
        return {}
    found = (await session.exec(select(Establishment).where(col(Establishment.id).in_(wanted)))).all()
    return {e.id: e for e in found if e.id is not None}


def establishment_out(establishment: Establishment) -> schemas.EstablishmentOut:
    assert establishment.id is not None
    try:
        display = registration.facility_type(establishment.facility_type).display
    except ValueError:  # a code no longer offered: shown as it is, so the coordinator replaces it
        display = ""
    return schemas.EstablishmentOut(
        id=establishment.id, finess=establishment.finess, name=establishment.name,
        facility_type=establishment.facility_type, facility_type_display=display,
        regional_network_id=establishment.regional_network_id,
        regional_network_name=establishment.regional_network_name,
        coordination_centre_id=establishment.coordination_centre_id,
        coordination_centre_name=establishment.coordination_centre_name,
        custodian_finess=establishment.custodian_finess, custodian_name=establishment.custodian_name)


def board_out(board: Board, establishments: dict[int, Establishment] | None = None) -> schemas.BoardOut:
    """A board with its type spelled out (the FRCP display and nature of its code) and its registration
    (``establishments`` holds its establishment, from :func:`establishments_of`)."""
    assert board.id is not None
    try:
        kind: charter.BoardType | None = charter.board_type(board.type_code) if board.type_code else None
    except ValueError:  # a code no longer in the value sets: shown as it is, so the coordinator replaces it
        kind = None
    place = (establishments or {}).get(board.establishment_id) if board.establishment_id is not None else None
    return schemas.BoardOut(
        id=board.id, name=board.name, type_code=board.type_code, type_display=kind.display if kind else "",
        nature=kind.nature if kind else "", tumour_site=board.tumour_site,
        required_specialties=list(board.required_specialties), minimum_specialties=board.minimum_specialties,
        default_weekday=board.default_weekday, default_time=board.default_time,
        default_duration_min=board.default_duration_min, timezone=board.timezone,
        national_id=board.national_id, referral=board.referral, paediatric=board.paediatric,
        establishment=establishment_out(place) if place is not None else None,
    )


async def _register(session: AsyncSession, board: Board, data: schemas.EstablishmentIn | None) -> str:
    """Attach the board to the establishment of ``data.finess`` (updated, or created), or detach it (None);
    returns what changed for the audit trail (numbers and codes only)."""
    if data is None:
        if board.establishment_id is None:
            return ""
        board.establishment_id = None
        return "establishment=none"
    place = (await session.exec(select(Establishment).where(Establishment.finess == data.finess))).first()
    values = data.model_dump()
    changed = [name for name, value in values.items() if place is not None and getattr(place, name) != value]
    created = place is None
    place = place or Establishment(**values)
    for name, value in values.items():
        setattr(place, name, value)
    session.add(place)
    await session.flush()
    what = []
    if board.establishment_id != place.id:
        board.establishment_id = place.id
        what.append(f"establishment={data.finess}{' (new)' if created else ''}")
    if changed:
        what.append(f"establishment {data.finess}: {','.join(changed)}")
    return "; ".join(what)


async def update_charter(session: AsyncSession, user: Any, board_id: int, data: schemas.BoardCharterPatch, *,
                         request: HTTPConnection | None = None) -> Board:
    """The board's coordinator changes its type, required specialties or minimum (the policy's ``edit charter``),
    and its registration: national RCP id, "RCP de recours" and paediatric flags, establishment.

    Audited with what changed (codes, numbers and specialty keys only): the quorum rule of every later signature
    follows, and the identifiers of every later fiche. A fiche already signed keeps the charter and registration
    it was signed under (the board is copied into its content).
    """
    board = await access.require_board(session, user, board_id, Action.edit_charter)
    changes = data.model_dump(exclude_unset=True, exclude={"establishment"})
    before = {name: getattr(board, name) for name in changes}
    for name, value in changes.items():
        setattr(board, name, value)
    registered = ""
    if "establishment" in data.model_fields_set:
        registered = await _register(session, board, data.establishment)
    session.add(board)
    changed = {name: value for name, value in changes.items() if before[name] != value}
    if changed or registered:
        what = "; ".join([*(f"{name}={','.join(v) if isinstance(v, list) else v}" for name, v in changed.items()),
                          *([registered] if registered else [])])
        # DCM 110113 Security Alert, type 110131 "Software Configuration": the rule that validates decisions changed.
        await audit.record(session, event="security_alert", action="U", request=request, user=user,
                           what=f"board {board_id} charter: {what}"[:300])
    return board


# --- meetings -----------------------------------------------------------------------------------------------


async def list_meetings(
    session: AsyncSession, user: Any, *, when: str = "all", board_id: int | None = None
) -> list[tuple[Meeting, Board, int]]:
    """Visible meetings with their board and number of active cases; upcoming soonest first, past latest first."""
    now = utcnow()
    active = col(Case.status).notin_(agenda.CLOSED_CASE_STATUSES)  # agenda.is_on_agenda, as SQL (a count per meeting)
    counts = (
        select(Case.meeting_id, func.count().label("n")).where(active).group_by(col(Case.meeting_id)).subquery()
    )
    query = (
        select(Meeting, Board, func.coalesce(counts.c.n, 0))
        .join(Board, col(Board.id) == col(Meeting.board_id))
        .outerjoin(counts, counts.c.meeting_id == col(Meeting.id))
        .where(col(Meeting.id).in_(visible_meeting_ids(user)))
    )
    if board_id is not None:
        query = query.where(Meeting.board_id == board_id)
    ends = col(Meeting.starts_at)
    if when == "upcoming":
        query = query.where(ends >= now - timedelta(hours=12), col(Meeting.status).in_(OPEN_MEETING)).order_by(ends)
    elif when == "past":
        query = query.where((ends < now - timedelta(hours=12)) | col(Meeting.status).notin_(OPEN_MEETING))
        query = query.order_by(ends.desc())
    else:
        query = query.order_by(ends)
    rows = (await session.exec(query)).all()
    return [(m, b, int(n)) for m, b, n in rows]


async def create_meeting(session: AsyncSession, user: Any, data: schemas.MeetingIn) -> Meeting:
    board = await session.get(Board, data.board_id)
    if board is None:
        raise Invalid(f"No board {data.board_id}.", fields={"board_id": "unknown board"})
    if access.role_of(user) == "guest":
        access.require(user, Action.create_board)  # a join-link session schedules nothing (403)
    try:
        await access.require_board(session, user, data.board_id, Action.manage_meeting)
    except access.NotVisible:
        # Scheduling on a board one does not see: the same answer as for a board that does not exist.
        raise Invalid(f"No board {data.board_id}.", fields={"board_id": "unknown board"}) from None
    meeting = Meeting(
        board_id=data.board_id,
        title=data.title or board.name,
        starts_at=local_to_utc(data.starts_at, board.timezone),
        duration_min=data.duration_min,
    )
    session.add(meeting)
    await session.flush()
    return meeting


async def managed_meeting(session: AsyncSession, user: Any, meeting_id: int,
                          action: Action = Action.manage_meeting) -> Meeting:
    """The meeting, if the user may see it, and may change it (coordinator of its board); see rcp.scheduling.access."""
    return await access.require_meeting(session, user, meeting_id, action)


_TRANSITIONS: dict[str, frozenset[str]] = {
    MeetingStatus.scheduled: frozenset({MeetingStatus.live, MeetingStatus.cancelled, MeetingStatus.scheduled}),
    MeetingStatus.live: frozenset({MeetingStatus.closed, MeetingStatus.live}),
    MeetingStatus.closed: frozenset({MeetingStatus.closed}),
    MeetingStatus.cancelled: frozenset({MeetingStatus.cancelled, MeetingStatus.scheduled}),
}


async def update_meeting(session: AsyncSession, user: Any, meeting_id: int, data: schemas.MeetingPatch) -> Meeting:
    meeting = await managed_meeting(session, user, meeting_id)
    board = await session.get(Board, meeting.board_id)
    assert board is not None
    if data.status is not None and data.status not in _TRANSITIONS[meeting.status]:
        raise Conflict(f"A {meeting.status} meeting cannot become {data.status}.", fields={"status": "not allowed"})
    if meeting.status in {MeetingStatus.closed} and (data.starts_at or data.duration_min or data.title):
        raise Conflict("This meeting is closed; its details can no longer change.")
    if data.starts_at is not None:
        meeting.starts_at = local_to_utc(data.starts_at, board.timezone)
    if data.duration_min is not None:
        meeting.duration_min = data.duration_min
    if data.title is not None:
        meeting.title = data.title
    if data.status is not None:
        meeting.status = data.status
    session.add(meeting)
    return meeting


# --- patients -----------------------------------------------------------------------------------------------


async def identifiers_of(session: AsyncSession, patient_ids: Sequence[int]) -> dict[int, list[PatientIdentifier]]:
    found: dict[int, list[PatientIdentifier]] = {pid: [] for pid in patient_ids}
    if patient_ids:
        rows = await session.exec(select(PatientIdentifier).where(col(PatientIdentifier.patient_id).in_(patient_ids)))
        for row in rows.all():
            found[row.patient_id].append(row)
    return found


async def create_patient(session: AsyncSession, user: Any, data: schemas.PatientIn, *,
                         request: HTTPConnection | None = None) -> Patient:
    access.require(user, Action.register_patient)
    seen: set[tuple[str, str, str]] = set()
    for index, ident in enumerate(data.identifiers):
        key = (ident.system, ident.assigner, ident.value)
        if key in seen:
            raise Invalid("The same identifier is given twice.", fields={f"identifiers.{index}": "duplicate"})
        seen.add(key)
        clash = (
            await session.exec(
                select(PatientIdentifier.id).where(
                    PatientIdentifier.system == ident.system,
                    PatientIdentifier.assigner == ident.assigner,
                    PatientIdentifier.value == ident.value,
                )
            )
        ).first()
        if clash is not None:
            raise Conflict(
                f"A patient with this {ident.system} is already registered; search for them instead of "
                "creating a new record.",
                fields={f"identifiers.{index}.value": "already registered"},
            )
    production = bool(request is not None and getattr(getattr(request.app.state, "settings", None),
                                                      "production", False))
    for index, ident in enumerate(data.identifiers):
        if production and is_ins(ident.system) and ident.assigner_oid in INS_TEST_OIDS:
            raise Invalid("A test or demo INS (OID 1.2.250.1.213.1.4.10 or .11) cannot be recorded in production.",
                          fields={f"identifiers.{index}.assigner_oid": "test INS refused in production"})
    patient = Patient(**data.model_dump(exclude={"identifiers"}))
    if data.identity_status != "provisional":
        # Who set the status and when (RNIV): typed here, so at most "validated" (PatientIn allows no more).
        patient.identity_status_by = str(getattr(user, "username", "") or "")[:100]
        patient.identity_status_at = utcnow()
    session.add(patient)
    await session.flush()
    assert patient.id is not None
    for ident in data.identifiers:
        session.add(PatientIdentifier(patient_id=patient.id, **ident.model_dump()))
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict("A patient with one of these identifiers was registered at the same moment.") from None
    await audit.record(session, event="patient_record", action="C", request=request, user=user,
                       patient_id=patient.id, what=f"patient {patient.id}")
    return patient


async def find_patients(session: AsyncSession, user: Any, *, query: str = "", identifier: str = "",
                        system: str = "", assigner: str = "", request: HTTPConnection | None = None,
                        limit: int = 20) -> list[Patient]:
    """Patients of the caller's meetings whose name starts with ``query`` and who carry ``identifier``.

    With its assigning authority (``assigner`` for an IPP; the INS, recognised by its control key, is national), an exact
    identifier finds the registered patient wherever they are (so that a coordinator reuses the record instead of
    creating a duplicate): that is the policy's ``find patient`` (coordinators and admins), audited so that the
    patient can then be put on the finder's agenda (:func:`rcp.scheduling.access.found_by_identifier`). A bare
    identifier matches that value at every hospital, so it only searches the caller's own patients.
    """
    if identifier and not system and not assigner and ins_key_ok(identifier.replace(" ", "")):
        # A well-formed INS carries its authority (the national register): it is an exact identifier by itself.
        identifier, system = identifier.replace(" ", ""), "INS-NIR"
    exact = bool(identifier) and (bool(assigner) or is_ins(system))
    statement = select(Patient)
    if exact:
        access.require(user, Action.find_patient)
        wanted = select(PatientIdentifier.patient_id).where(PatientIdentifier.value == identifier)
        if is_ins(system) and not assigner:
            wanted = wanted.where(col(PatientIdentifier.system).in_(INS_SYSTEMS))
        else:
            wanted = wanted.where(PatientIdentifier.system == (system or "IPP"), PatientIdentifier.assigner == assigner)
        statement = statement.where(col(Patient.id).in_(wanted))
    else:
        if not is_admin(user):
            statement = statement.where(col(Patient.id).in_(access.visible_patient_ids(user)))
        if identifier:
            statement = statement.where(
                col(Patient.id).in_(select(PatientIdentifier.patient_id).where(PatientIdentifier.value == identifier))
            )
    if query:
        statement = statement.where(func.lower(Patient.family_name).startswith(query.lower()))
    patients = list((await session.exec(statement.order_by(Patient.family_name).limit(limit))).all())
    for patient in patients:
        what = access.IDENTIFIER_LOOKUP if exact else "patient {patient} (search)"
        await audit.record(session, event="patient_record", action="R", request=request, user=user,
                           patient_id=patient.id, what=what.format(patient=patient.id))
    return patients


async def likely_duplicates(session: AsyncSession, user: Any, *, family_name: str, given_names: str = "",
                            birth_date: date | None = None, sex: str = "", identifiers: Sequence[str] = (),
                            request: HTTPConnection | None = None, limit: int = 10) -> list[Patient]:
    """Registered patients who may be the one about to be created (RNIV: search before creating, to avoid
    duplicates): the same birth date and the same birth or used name, or the same first given name and sex — the
    names compared as the identity rule compares them (``rcp.identifiers``, no accents, capitals) — or any of
    ``identifiers`` (INS or IPP values). The policy's ``find patient`` (coordinators, admins); each candidate shown
    is audited. A candidate is only shown: putting them on an agenda still needs the exact identifier.
    """
    access.require(user, Action.find_patient)
    found = await _duplicate_candidates(session, family_name=family_name, given_names=given_names,
                                        birth_date=birth_date, sex=sex, identifiers=identifiers)
    patients = sorted(found.values(), key=lambda p: (p.family_name, p.id or 0))[:limit]
    for patient in patients:
        await audit.record(session, event="patient_record", action="R", request=request, user=user,
                           patient_id=patient.id, what=f"patient {patient.id} (duplicate check before creation)")
    return patients


async def _duplicate_candidates(session: AsyncSession, *, family_name: str, given_names: str = "",
                                birth_date: date | None = None, sex: str = "", identifiers: Sequence[str] = (),
                                ) -> dict[int, Patient]:
    """The query behind ``likely_duplicates`` (no audit: callers audit what they show). A patient merged into
    another by the hospital (A40, attribute ``merged``) is no candidate: its cases live on the survivor."""
    found: dict[int, Patient] = {}
    if identifiers:
        wanted = select(PatientIdentifier.patient_id).where(col(PatientIdentifier.value).in_(list(identifiers)))
        for patient in (await session.exec(select(Patient).where(col(Patient.id).in_(wanted)))).all():
            assert patient.id is not None
            found[patient.id] = patient
    if birth_date is not None:
        ours_name, ours_given = plain_name(family_name), first_given_name(given_names)
        for patient in (await session.exec(select(Patient).where(Patient.birth_date == birth_date))).all():
            assert patient.id is not None
            names = {plain_name(patient.family_name), plain_name(patient.used_name)} - {""}
            same_name = bool(ours_name) and ours_name in names
            same_given = bool(ours_given) and ours_given == first_given_name(patient.first_given_name
                                                                             or patient.given_names)
            if same_name or (same_given and (sex in {"", "unknown"} or sex == patient.sex)):
                found[patient.id] = patient
    return {pid: p for pid, p in found.items() if "merged" not in (p.identity_attributes or [])}


def _identifier_values(data: schemas.PatientIn) -> list[str]:
    return [i.value for i in data.identifiers]


async def duplicates_of_new(session: AsyncSession, user: Any, data: schemas.PatientIn, *,
                            request: HTTPConnection | None = None) -> list[Patient]:
    """``likely_duplicates`` of a patient described in the add-case form (its traits and identifier values)."""
    return await likely_duplicates(session, user, family_name=data.family_name, given_names=data.given_names,
                                   birth_date=data.birth_date, sex=data.sex, identifiers=_identifier_values(data),
                                   request=request)


async def chosen_duplicate(session: AsyncSession, user: Any, data: schemas.PatientIn, patient_id: int, *,
                           request: HTTPConnection | None = None) -> Patient:
    """The registered patient the coordinator chose instead of creating ``data`` (RNIV: search before creating).

    Allowed only for a candidate the typed identity finds again here — the same birth date and birth or used
    name, or the same first given name and sex, or the same IPP *with its hospital* or the same INS — so that
    choosing grants no more than an exact look-up does (``find_patients``); a bare identifier value, which names
    someone else in every hospital, is not enough. Audited as an identifier look-up, which is what lets
    ``add_case`` put a patient outside the caller's meetings on their agenda.
    """
    access.require(user, Action.find_patient)
    found = await _duplicate_candidates(session, family_name=data.family_name, given_names=data.given_names,
                                        birth_date=data.birth_date, sex=data.sex)
    for ident in data.identifiers:
        statement = select(PatientIdentifier.patient_id).where(PatientIdentifier.value == ident.value)
        if is_ins(ident.system):
            statement = statement.where(col(PatientIdentifier.system).in_(INS_SYSTEMS))
        elif ident.assigner:
            statement = statement.where(PatientIdentifier.system == "IPP",
                                        PatientIdentifier.assigner == ident.assigner)
        else:
            continue
        for pid in (await session.exec(statement)).all():
            patient = await session.get(Patient, pid)
            if patient is not None and "merged" not in (patient.identity_attributes or []):
                found[pid] = patient
    chosen = found.get(patient_id)
    if chosen is None:
        raise Invalid(f"No patient {patient_id} among the likely duplicates.",
                      fields={"patient_id": "unknown patient"})
    await audit.record(session, event="patient_record", action="R", request=request, user=user,
                       patient_id=patient_id, what=access.IDENTIFIER_LOOKUP.format(patient=patient_id))
    return chosen


class LikelyDuplicates(Conflict):
    """409 of :func:`add_case`: registered patients look like the new one (RNIV: search before creating).

    The body names them by id only (errors reach logs: no patient data); the add-case form shows them, and API
    callers read them through ``POST /api/patients/duplicates`` (audited). A caller who may not search patients
    (a service account) gets no ids: it can only confirm that the hospital's identity is a new patient.
    """

    def __init__(self, patient_ids: Sequence[int]) -> None:
        super().__init__("Patients already registered look like this one: take one of them (use_patient) or "
                         "confirm that none of them is this patient (duplicates_checked).",
                         fields={"duplicates_checked": "likely duplicates: take one or confirm none of them"})
        self.patient_ids = list(patient_ids)

    def as_json(self) -> dict[str, object]:
        body = super().as_json()
        body["duplicates"] = self.patient_ids
        return body


async def search_before_creating(session: AsyncSession, user: Any, data: schemas.CaseIn, *,
                                 request: HTTPConnection | None = None) -> schemas.CaseIn:
    """The one rule of "search before creating" (RNIV) for a case whose patient is new, for the form and the API.

    ``use_patient``: that look-alike is the patient (:func:`chosen_duplicate`), the case goes to them.
    ``duplicates_checked``: the caller saw the look-alikes and none is this patient, a new record is created.
    Otherwise, when registered patients look like this one, :class:`LikelyDuplicates` (409) holds it back.
    """
    if data.patient is None:
        if data.use_patient is not None or data.duplicates_checked:
            raise Invalid("use_patient and duplicates_checked go with a new patient.",
                          fields={"use_patient": "give patient"})
        return data
    if data.use_patient is not None:
        chosen = await chosen_duplicate(session, user, data.patient, data.use_patient, request=request)
        return data.model_copy(update={"patient": None, "patient_id": chosen.id, "use_patient": None})
    if data.duplicates_checked:
        return data
    if access.role_of(user) in access.ROLE_RULES[Action.find_patient]:
        found = [p.id for p in await duplicates_of_new(session, user, data.patient, request=request)
                 if p.id is not None]
        if found:
            raise LikelyDuplicates(found)
    elif await _duplicate_candidates(session, family_name=data.patient.family_name,
                                     given_names=data.patient.given_names, birth_date=data.patient.birth_date,
                                     sex=data.patient.sex, identifiers=_identifier_values(data.patient)):
        raise LikelyDuplicates([])
    return data


async def possible_duplicates(session: AsyncSession, patient: Patient) -> int:
    """How many other registered patients look like ``patient`` by their traits (the case page's "possible
    duplicate" badge: a count, no one else's identity, so nothing to audit beyond the page's own read)."""
    # By traits only: identifiers are unique per authority (an IPP value alone names someone else elsewhere).
    found = await _duplicate_candidates(session, family_name=patient.family_name, given_names=patient.given_names,
                                        birth_date=patient.birth_date, sex=patient.sex)
    found.pop(patient.id or 0, None)
    return len(found)


def patient_out(patient: Patient, identifiers: Sequence[PatientIdentifier]) -> schemas.PatientOut:
    assert patient.id is not None
    return schemas.PatientOut(
        id=patient.id,
        family_name=patient.family_name,
        given_names=patient.given_names,
        birth_date=patient.birth_date,
        sex=patient.sex,
        used_name=patient.used_name,
        first_given_name=patient.first_given_name,
        birth_place_code=patient.birth_place_code,
        identity_status=patient.identity_status,
        identity_status_by=patient.identity_status_by,
        identity_status_at=patient.identity_status_at,
        identity_document=patient.identity_document,
        identity_attributes=list(patient.identity_attributes or []),
        identifiers=[schemas.IdentifierOut(system=i.system, value=i.value, assigner=i.assigner,
                                           assigner_oid=i.assigner_oid) for i in identifiers],
    )


# --- cases --------------------------------------------------------------------------------------------------


def _require_active(case: Case) -> None:
    if not agenda.is_on_agenda(case.status):
        raise Conflict(f"This case was {case.status}; it is no longer on the agenda.",
                       fields={"status": case.status})


async def active_cases(session: AsyncSession, meeting_id: int) -> list[Case]:
    """The cases on the meeting's agenda, in order (``rcp.scheduling.agenda``: deferred and withdrawn ones are off)."""
    return [e.case for e in (await agenda.meeting_agenda(session, meeting_id)).on_agenda]


async def all_cases(session: AsyncSession, meeting_id: int) -> list[Case]:
    """Every case of the meeting in agenda order, off-agenda ones included (``rcp.scheduling.agenda``)."""
    return [e.case for e in (await agenda.meeting_agenda(session, meeting_id)).entries]


def _status_for(case: Case) -> str:
    """Registered and ready follow the checklist; later states are set by the meeting itself."""
    if case.status not in {CaseStatus.registered, CaseStatus.ready}:
        return case.status
    ready = agenda.readiness(question=case.question, study_uids=case.study_uids,
                             referring_physician=case.referring_physician, checklist=case.checklist).ready
    return CaseStatus.ready if ready else CaseStatus.registered


class StudyOwnership(Protocol):
    """What the imaging archive answers about studies (``rcp.imaging.service.ImagingService`` is one)."""

    async def studies_not_of(self, patient: ServicePatient, study_uids: Sequence[str]) -> list[str]: ...


async def require_patient_studies(request: HTTPConnection | None, patient: ServicePatient,
                                  study_uids: Sequence[str]) -> None:
    """Refuse ``study_uids`` unless the archive holds each as ``patient``'s (the rule of ``rcp.identifiers``).

    The same check as ``POST /api/cases/{id}/studies``, for ``study_uids`` on case create and PATCH; the message
    never says whose a refused study is.
    """
    if not study_uids:
        return
    archive: StudyOwnership | None = getattr(request.app.state, "imaging", None) if request is not None else None
    if archive is None:
        raise Invalid("Studies can only be attached where the imaging archive can confirm them.",
                      fields={"study_uids": "no imaging archive to check them against"})
    if await archive.studies_not_of(patient, study_uids):
        raise Invalid("A study in study_uids is not in the archive for this case's patient; choose among the "
                      "patient's studies (GET /api/cases/{id}/studies).",
                      fields={"study_uids": "not in the archive for this patient"})


async def service_patient(session: AsyncSession, patient_id: int) -> ServicePatient:
    patient = await session.get(Patient, patient_id)
    if patient is None:
        return ServicePatient()
    return ServicePatient.of(patient, (await identifiers_of(session, [patient_id]))[patient_id])


async def add_case(session: AsyncSession, user: Any, meeting_id: int, data: schemas.CaseIn, *,
                   request: HTTPConnection | None = None) -> Case:
    await managed_meeting(session, user, meeting_id, Action.edit_agenda)
    if (data.patient_id is None) == (data.patient is None):
        raise Invalid("Give either patient_id (an existing patient) or patient (a new one).",
                      fields={"patient_id": "give patient_id or patient", "patient": "give patient_id or patient"})
    data = await search_before_creating(session, user, data, request=request)
    if data.study_uids:
        # Checked before anything is written: the archive answers while no transaction waits on it.
        if data.patient is not None:
            newcomer = ServicePatient.of(data.patient, data.patient.identifiers)
        else:
            assert data.patient_id is not None
            newcomer = await service_patient(session, data.patient_id)
        await require_patient_studies(request, newcomer, data.study_uids)
    if data.patient is not None:
        patient = await create_patient(session, user, data.patient, request=request)
    else:
        assert data.patient_id is not None
        found = (await session.exec(select(Patient).where(
            Patient.id == data.patient_id, col(Patient.id).in_(access.visible_patient_ids(user))))).first()
        if found is None and (is_admin(user) or await access.found_by_identifier(session, user, data.patient_id)):
            found = await session.get(Patient, data.patient_id)
        if found is None:
            # Outside the caller's meetings, unless looked up by exact identifier: the same answer as for an id
            # that does not exist (ids are sequential; they must not reveal who is registered).
            raise Invalid(f"No patient {data.patient_id}.", fields={"patient_id": "unknown patient"})
        patient = found
    cases = await active_cases(session, meeting_id)
    case = Case(
        meeting_id=meeting_id,
        patient_id=patient.id,  # type: ignore[arg-type]
        position=max((c.position for c in cases), default=-1) + 1,
        **data.model_dump(exclude={"patient_id", "patient", "use_patient", "duplicates_checked"}),
    )
    case.status = _status_for(case)
    session.add(case)
    await session.flush()
    await audit.record(session, event="patient_record", action="C", request=request, user=user,
                       patient_id=patient.id, meeting_id=meeting_id, what=f"case {case.id}")
    return case


async def case_for_manager(session: AsyncSession, user: Any, case_id: int,
                           action: Action = Action.manage_meeting) -> tuple[Case, Meeting]:
    return await access.require_case(session, user, case_id, action)


async def update_case(session: AsyncSession, user: Any, case_id: int, data: schemas.CasePatch, *,
                      request: HTTPConnection | None = None) -> Case:
    case, _meeting = await case_for_manager(session, user, case_id, Action.edit_agenda)
    _require_active(case)
    if data.study_uids:
        added = [u for u in data.study_uids if u not in set(case.study_uids or [])]
        await require_patient_studies(request, await service_patient(session, case.patient_id), added)
    for name, value in data.model_dump(exclude_unset=True).items():
        setattr(case, name, value)
    case.status = _status_for(case)
    case.updated_at = utcnow()
    session.add(case)
    await audit.record(session, event="patient_record", action="U", request=request, user=user,
                       patient_id=case.patient_id, meeting_id=case.meeting_id, what=f"case {case.id}")
    return case


async def reorder_agenda(session: AsyncSession, user: Any, meeting_id: int, case_ids: Sequence[int]) -> list[Case]:
    await managed_meeting(session, user, meeting_id, Action.edit_agenda)
    cases = await active_cases(session, meeting_id)
    order = agenda.reorder([c.id for c in cases if c.id is not None], case_ids)
    by_id = {c.id: c for c in cases}
    for position, case_id in enumerate(order):
        by_id[case_id].position = position
        session.add(by_id[case_id])
    return [by_id[i] for i in order]


async def move_case(session: AsyncSession, user: Any, case_id: int, offset: int) -> list[Case]:
    _case, meeting = await case_for_manager(session, user, case_id)
    cases = await active_cases(session, meeting.id)  # type: ignore[arg-type]
    order = agenda.move([c.id for c in cases if c.id is not None], case_id, offset)
    return await reorder_agenda(session, user, meeting.id, order)  # type: ignore[arg-type]


async def next_meeting(session: AsyncSession, user: Any, meeting: Meeting) -> Meeting:
    """The board's next scheduled meeting after ``meeting``, created at the board's usual slot if none exists."""
    found = (
        await session.exec(
            select(Meeting)
            .where(Meeting.board_id == meeting.board_id, Meeting.id != meeting.id,
                   col(Meeting.starts_at) > meeting.starts_at, Meeting.status == MeetingStatus.scheduled)
            .order_by(col(Meeting.starts_at))
        )
    ).first()
    if found is not None:
        return found
    board = await session.get(Board, meeting.board_id)
    assert board is not None
    start = agenda.next_slot(weekday=board.default_weekday, at=board.default_time, timezone=board.timezone,
                             after=max(as_utc(meeting.starts_at), utcnow()))
    created = Meeting(board_id=board.id, title=board.name, starts_at=start,  # type: ignore[arg-type]
                      duration_min=board.default_duration_min)
    session.add(created)
    await session.flush()
    # The invitations carry over: the same people are expected at the board's next meeting.
    invitations = (await session.exec(select(Invitation).where(Invitation.meeting_id == meeting.id))).all()
    for inv in invitations:
        session.add(Invitation(meeting_id=created.id, user_id=inv.user_id, specialty=inv.specialty,  # type: ignore[arg-type]
                               quorum_member=inv.quorum_member))
    return created


async def defer_case(session: AsyncSession, user: Any, case_id: int, *,
                     request: HTTPConnection | None = None) -> Case:
    """Move a case to the board's next meeting, keeping everything written for it; returns the new case."""
    case, meeting = await case_for_manager(session, user, case_id)
    return await relist_case(session, user, case, meeting, request=request)


async def relist_case(session: AsyncSession, user: Any, case: Case, meeting: Meeting, *,
                      request: HTTPConnection | None = None, why: str = "") -> Case:
    """:func:`defer_case` once the caller's right to do it is established (a coordinator's request, or the room's
    chair closing a case without quorum: rcp.room.record). The first case stays, ``deferred``, with its record
    (attendance, draft) and a link to the new one (``deferred_to_id``)."""
    _require_active(case)
    if case.status == CaseStatus.discussed:
        raise Conflict("This case was already discussed; write a new case for a new question.")
    target = await next_meeting(session, user, meeting)
    target_cases = await active_cases(session, target.id)  # type: ignore[arg-type]
    moved = Case(
        meeting_id=target.id,  # type: ignore[arg-type]
        patient_id=case.patient_id,
        position=max((c.position for c in target_cases), default=-1) + 1,
        referring_physician=case.referring_physician,
        question=case.question,
        clinical_summary=case.clinical_summary,
        staging=case.staging,
        performance_status=case.performance_status,
        study_uids=list(case.study_uids),
        checklist=dict(case.checklist),
    )
    moved.status = _status_for(moved)
    session.add(moved)
    await session.flush()
    # The decision drafted so far goes with the case (minutes depends on scheduling, hence the late import).
    from rcp.minutes.store import carry_draft

    assert case.id is not None and moved.id is not None
    await carry_draft(session, case.id, moved.id)
    case.status = CaseStatus.deferred
    case.deferred_to_id = moved.id
    case.updated_at = utcnow()
    session.add(case)
    await audit.record(session, event="patient_record", action="U", request=request, user=user,
                       patient_id=case.patient_id, meeting_id=case.meeting_id,
                       what=f"case {case.id} deferred to case {moved.id} (meeting {target.id})" + (f": {why}" if why else ""))
    return moved


async def withdraw_case(session: AsyncSession, user: Any, case_id: int, *,
                        request: HTTPConnection | None = None) -> Case:
    case, _meeting = await case_for_manager(session, user, case_id, Action.edit_agenda)
    _require_active(case)
    if case.status == CaseStatus.discussed:
        raise Conflict("This case was already discussed and cannot be withdrawn.")
    case.status = CaseStatus.withdrawn
    case.updated_at = utcnow()
    session.add(case)
    await audit.record(session, event="patient_record", action="U", request=request, user=user,
                       patient_id=case.patient_id, meeting_id=case.meeting_id, what=f"case {case.id} withdrawn")
    return case


def case_out(case: Case, patient: schemas.PatientOut,
             destination: agenda.Destination | None = None) -> schemas.CaseOut:
    assert case.id is not None
    ready = agenda.readiness(question=case.question, study_uids=case.study_uids,
                             referring_physician=case.referring_physician, checklist=case.checklist)
    return schemas.CaseOut(
        id=case.id,
        meeting_id=case.meeting_id,
        position=case.position,
        status=case.status,
        patient=patient,
        referring_physician=case.referring_physician,
        question=case.question,
        clinical_summary=case.clinical_summary,
        staging=case.staging,
        performance_status=case.performance_status,
        study_uids=list(case.study_uids),
        checklist=dict(case.checklist),
        readiness=schemas.ReadinessOut(ready=ready.ready, missing=list(ready.missing)),
        deferred_to_id=case.deferred_to_id,
        deferred_to_meeting_id=destination.meeting_id if destination else None,
        deferred_to_starts_at=destination.starts_at if destination else None,
    )


async def cases_out(session: AsyncSession, user: Any, cases: Sequence[Case], *,
                    request: HTTPConnection | None = None, agenda_: agenda.Agenda | None = None
                    ) -> list[schemas.CaseOut]:
    """Cases with their patients; each patient shown is a patient-record read in the audit trail. ``agenda_``
    (their meeting's, when the caller has it) says where the deferred ones went."""
    patient_ids = sorted({c.patient_id for c in cases})
    patients = {p.id: p for p in (await session.exec(select(Patient).where(col(Patient.id).in_(patient_ids)))).all()}
    idents = await identifiers_of(session, patient_ids)
    for case in cases:
        await audit.record(session, event="patient_record", action="R", request=request, user=user,
                           patient_id=case.patient_id, meeting_id=case.meeting_id, what=f"case {case.id}")
    agendas = {agenda_.meeting_id: agenda_} if agenda_ is not None else {}
    for meeting_id in sorted({c.meeting_id for c in cases if c.status == CaseStatus.deferred} - set(agendas)):
        agendas[meeting_id] = await agenda.meeting_agenda(session, meeting_id)
    return [case_out(c, patient_out(patients[c.patient_id], idents[c.patient_id]),
                     agendas[c.meeting_id].destination(c.id) if c.meeting_id in agendas and c.id else None)
            for c in cases]


# --- invitations and quorum ---------------------------------------------------------------------------------


async def invitations_of(session: AsyncSession, meeting_id: int) -> list[tuple[Invitation, User]]:
    rows = await session.exec(
        select(Invitation, User)
        .join(User, col(User.id) == col(Invitation.user_id))
        .where(Invitation.meeting_id == meeting_id)
        .order_by(col(Invitation.specialty), col(User.family_name), col(User.given_name))
    )
    # Within a specialty, by family then given name without case or accents (rcp.people.PersonName.sort_key).
    return sorted(((inv, user) for inv, user in rows.all()),
                  key=lambda row: (row[0].specialty, row[1].person_name.sort_key()))


async def link_mails(session: AsyncSession, rows: Sequence[tuple[Invitation, User]]) -> dict[int, Mail]:
    """The newest join-link mail of each guest's invitation (for "sent to d…@chu-x.fr")."""
    from rcp.auth.links import JOIN_MAIL

    guests = [inv.id for inv, u in rows if u.role == Role.guest and inv.id is not None]
    return await latest_by_invitation(session, JOIN_MAIL, guests)


def invitation_out(inv: Invitation, user: User, mail: Mail | None = None) -> schemas.InvitationOut:
    assert inv.id is not None
    guest = user.role == Role.guest
    return schemas.InvitationOut(
        id=inv.id, meeting_id=inv.meeting_id, user_id=inv.user_id, display_name=user.display_name,
        name_to_complete=user.name_incomplete,
        hospital=user.hospital, specialty=inv.specialty, quorum_member=inv.quorum_member, response=inv.response,
        joined_at=inv.joined_at, left_at=inv.left_at, guest=guest,
        link_sent_to=mask_address(mail.recipient) if guest and mail else "",
        link_status=mail.status if guest and mail else "",
    )


async def invitations_out(session: AsyncSession, rows: Sequence[tuple[Invitation, User]]) -> list[schemas.InvitationOut]:
    mails = await link_mails(session, rows)
    return [invitation_out(i, u, mails.get(i.id) if i.id is not None else None) for i, u in rows]


async def invite(session: AsyncSession, user: Any, meeting_id: int, data: schemas.InvitationIn, *,
                 locale: str = "") -> Invitation:
    await managed_meeting(session, user, meeting_id, Action.edit_agenda)
    invitee = await session.get(User, data.user_id)
    if invitee is None or not invitee.active:
        raise Invalid(f"No active user {data.user_id}.", fields={"user_id": "unknown user"})
    existing = (
        await session.exec(select(Invitation).where(Invitation.meeting_id == meeting_id,
                                                    Invitation.user_id == data.user_id))
    ).first()
    if existing is not None:
        raise Conflict("This person is already invited to the meeting.", fields={"user_id": "already invited"})
    inv = Invitation(meeting_id=meeting_id, user_id=data.user_id, specialty=data.specialty or invitee.specialty,
                     quorum_member=data.quorum_member)
    session.add(inv)
    await session.flush()
    if invitee.role == Role.guest:  # a guest already known from another meeting: a link for this one
        from rcp.auth.links import send_link

        await send_link(session, inv, invitee, locale=locale)
    return inv


async def resend_link(session: AsyncSession, user: Any, invitation_id: int, *, locale: str = "") -> Mail:
    """The coordinator's "send again": a fresh link mailed to the guest; the previous ones stop working now."""
    inv = await session.get(Invitation, invitation_id)
    if inv is None:
        raise access.NotVisible(f"No invitation {invitation_id} among yours.",
                                alert=access.Alert(Action.manage_meeting, f"invitation {invitation_id}"))
    meeting = await managed_meeting(session, user, inv.meeting_id, Action.edit_agenda)
    invitee = await session.get(User, inv.user_id)
    assert invitee is not None
    from rcp.auth.links import send_link

    mail = await send_link(session, inv, invitee, locale=locale)
    await audit.record(session, event="user_authentication", action="E", user=user, meeting_id=meeting.id,
                       what=f"join link sent again for invitation {invitation_id}")
    return mail


def guest_username(email: str) -> str:
    """One guest per address (re-invited guests are the same person); the name says nothing of the address."""
    return "guest-" + hashlib.sha256(email.strip().lower().encode()).hexdigest()[:20]


async def invite_guest(session: AsyncSession, user: Any, meeting_id: int, data: schemas.GuestIn, *,
                       locale: str = "") -> Invitation:
    """Invite an external physician who has no account: a guest user (no password) and a mailed link.

    The coordinator gives the address once; a guest already known by that address is reused as they are (only an
    administrator changes an address). An address of an account that signs in is refused: that physician is
    invited by name and signs in.
    """
    await managed_meeting(session, user, meeting_id, Action.edit_agenda)
    account = (await session.exec(select(User).where(func.lower(User.email) == data.email,
                                                     User.role != Role.guest))).first()
    if account is not None:
        raise Conflict("This address belongs to an account of the service: invite the person by name; they "
                       "sign in with their account.", fields={"email": "has an account"})
    name, rpps = data.person()  # before anything is written: a name that cannot be split saves nothing
    guest = (await session.exec(select(User).where(User.username == guest_username(data.email)))).first()
    if guest is None:
        guest = User(username=guest_username(data.email), family_name=name.family, given_name=name.given,
                     prefix=name.prefix, rpps=rpps, role=Role.guest, specialty=data.specialty,
                     hospital=data.hospital, email=data.email, password_hash="")
        session.add(guest)
        await session.flush()
    elif not guest.active:
        raise Conflict("This guest was deactivated by an administrator.", fields={"email": "deactivated"})
    assert guest.id is not None
    return await invite(session, user, meeting_id, schemas.InvitationIn(
        user_id=guest.id, specialty=data.specialty, quorum_member=data.quorum_member), locale=locale)


async def update_invitation(session: AsyncSession, user: Any, invitation_id: int,
                            data: schemas.InvitationPatch) -> Invitation:
    """The invitee answers; the coordinator may change the specialty they count for, or their quorum flag."""
    inv = await session.get(Invitation, invitation_id)
    if inv is None:
        raise access.NotVisible(f"No invitation {invitation_id} among yours.",
                                alert=access.Alert(Action.manage_meeting, f"invitation {invitation_id}"))
    meeting = await meeting_for_user(session, user, inv.meeting_id)
    manager = await access.allows(session, user, Action.manage_meeting, meeting)
    alert = access.Alert(Action.manage_meeting, f"invitation {invitation_id}", meeting_id=inv.meeting_id)
    if inv.user_id != user.id and not manager:
        raise access.NotVisible(f"No invitation {invitation_id} among yours.", alert=alert)
    if (data.specialty is not None or data.quorum_member is not None) and not manager:
        raise access.NotPermitted("Only the board's coordinators change who counts for what.", alert=alert)
    for name, value in data.model_dump(exclude_unset=True).items():
        setattr(inv, name, value)
    session.add(inv)
    return inv


async def remove_invitation(session: AsyncSession, user: Any, invitation_id: int) -> int:
    """Withdraw an invitation; returns its meeting's id (the room re-checks that meeting's sockets)."""
    inv = await session.get(Invitation, invitation_id)
    if inv is None:
        raise access.NotVisible(f"No invitation {invitation_id} among yours.",
                                alert=access.Alert(Action.manage_meeting, f"invitation {invitation_id}"))
    await managed_meeting(session, user, inv.meeting_id, Action.edit_agenda)
    await session.delete(inv)
    return inv.meeting_id


def meeting_quorum(board: Board, invitations: Sequence[tuple[Invitation, User]]) -> Quorum:
    """Before the meeting: who accepted (or has joined); the room later counts real attendance."""
    attendees = [
        Attendee(user_id=inv.user_id, specialty=inv.specialty, counts=inv.quorum_member)
        for inv, _ in invitations
        if inv.response == Response.accepted or inv.joined_at is not None
    ]
    return evaluate_quorum(attendees, board.required_specialties, minimum=board.minimum_specialties)


def quorum_out(quorum: Quorum) -> schemas.QuorumOut:
    return schemas.QuorumOut(met=quorum.met, specialties=list(quorum.specialties), missing=list(quorum.missing),
                             short_by=quorum.short_by, minimum=quorum.minimum, status_code=quorum.status_code)


def meeting_out(meeting: Meeting, board: Board, case_count: int) -> schemas.MeetingOut:
    assert meeting.id is not None
    return schemas.MeetingOut(
        id=meeting.id, board_id=meeting.board_id, board_name=board.name, title=meeting.title,
        starts_at=as_utc(meeting.starts_at), duration_min=meeting.duration_min, status=meeting.status,
        timezone=board.timezone, case_count=case_count,
    )


async def meeting_detail(session: AsyncSession, user: Any, meeting_id: int, *,
                         request: HTTPConnection | None = None) -> schemas.MeetingDetail:
    meeting = await meeting_for_user(session, user, meeting_id)
    board = await session.get(Board, meeting.board_id)
    assert board is not None
    listed = await agenda.meeting_agenda(session, meeting_id)
    invitations = await invitations_of(session, meeting_id)
    base = meeting_out(meeting, board, len(listed.on_agenda))
    return schemas.MeetingDetail(
        **base.model_dump(),
        cases=await cases_out(session, user, [e.case for e in listed.entries], request=request, agenda_=listed),
        invitations=await invitations_out(session, invitations),
        quorum=quorum_out(meeting_quorum(board, invitations)),
    )


async def users_for_invitation(session: AsyncSession, user: Any, *, specialty: str = "") -> list[User]:
    """Clinicians a coordinator can invite, optionally of one specialty."""
    access.require(user, Action.list_people)
    statement = select(User).where(col(User.active).is_(True),
                                   col(User.role).in_([Role.clinician, Role.coordinator, Role.guest]))
    if specialty:
        statement = statement.where(User.specialty == specialty)
    people = (await session.exec(statement.order_by(col(User.specialty), col(User.family_name)))).all()
    # Family name, then given name, without case or accents (rcp.people.PersonName.sort_key), within a specialty.
    return sorted(people, key=lambda u: (u.specialty, u.person_name.sort_key()))
