"""Rows of its own for each test: boards, users, patients, meetings with cases and invitations.

Tests that read "the first meeting" of the shared demo pass only in one order and break as soon as another test
adds a meeting. Each factory here writes straight through the models on a :class:`~rcp.db.Database` (no HTTP, no
audit), gives every row a unique name, and returns a frozen dataclass with the ids a test needs::

    meeting = await make_meeting(db)                 # a board + its coordinator, 4 clinicians, 2 cases
    coordinator = await login(meeting.coordinator)   # the ``login`` fixture signs factory users in too
    radiologist = await login(meeting.invitee("radiologist"))

Every factory user has the password :data:`PASSWORD`, hashed once at :data:`CHEAP_ARGON2` (the test settings'
cost), so signing in costs microseconds. The demo data stays loaded for the tests that are about the demo.

Every user with a password also has an active second factor (rcp.auth.totp), a secret of its own encrypted with
:data:`SECRET_KEY` (the secret key of every test app), so a sign-in sends :func:`credentials` (password and the
current code) and a signature :func:`proof`. Codes come from :func:`totp_code`, which never hands out the same
time step twice for an account (the service refuses a reused code), waiting for the next one when it must; the
test apps use :data:`TOTP_STEP_S`-second steps so that such a wait is short.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any

import pyotp
from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rcp.auth.models import Role, User
from rcp.auth.passwords import Argon2Cost, hash_password
from rcp.auth.totp import SecretBox, code_at, enrol_confirmed
from rcp.clock import Clock, SystemClock
from rcp.db import Database
from rcp.demo import DEMO_PASSWORD, DEMO_TOTP_SECRET, DEMO_USERS
from rcp.people import PersonName, rpps_check_digit
from rcp.scheduling.models import (
    Board,
    BoardCoordinator,
    Case,
    CaseStatus,
    Invitation,
    Meeting,
    MeetingStatus,
    Patient,
    PatientIdentifier,
    Response,
)

__all__ = [
    "CHEAP_ARGON2",
    "HOSPITAL",
    "PASSWORD",
    "QUORUM",
    "SECRET_KEY",
    "TOTP_STEP_S",
    "MadeBoard",
    "MadeCase",
    "MadeInvitation",
    "MadeMeeting",
    "MadePatient",
    "MadeUser",
    "credentials",
    "give_second_factor",
    "make_board",
    "make_case",
    "make_clinician",
    "make_coordinator",
    "make_invitation",
    "make_meeting",
    "make_patient",
    "make_user",
    "new_ins",
    "new_rpps",
    "proof",
    "totp_code",
    "totp_secret",
    "unique",
]

#: The smallest legal argon2id cost (RFC 9106: 8 KiB per lane): the test settings hash and verify with it.
CHEAP_ARGON2 = Argon2Cost(time_cost=1, memory_kib=8, parallelism=1)
#: Every factory user's password.
PASSWORD = "factory-pass-2026"
#: The specialties a factory board requires, plus the radiologist most room and imaging tests need.
QUORUM: tuple[str, ...] = ("surgeon", "medical_oncologist", "radiotherapist")
HOSPITAL = "CHU de Test"
#: The secret key of every test app (``Settings.secret_key``): the factories encrypt TOTP secrets with it.
SECRET_KEY = secrets.token_urlsafe(48)
#: The TOTP time step of the test apps (``Settings.totp_step_s``; 30 s in service).
TOTP_STEP_S = 1
#: Where :func:`totp_code` reads the time: the shared app's clock (tests/conftest.py sets it), which tests move.
CLOCK: list[Clock] = [SystemClock()]
_SECRETS: dict[str, str] = {spec.username: DEMO_TOTP_SECRET for spec in DEMO_USERS}
_PASSWORDS: dict[str, str] = {spec.username: DEMO_PASSWORD for spec in DEMO_USERS}
_LAST_STEP: dict[str, int] = {}
_STEP_LOCK = threading.Lock()


def totp_secret(user: str | MadeUser) -> str:
    """The TOTP secret of a factory or demo user (KeyError for another)."""
    return _SECRETS[user if isinstance(user, str) else user.username]


def totp_code(user: str | MadeUser, *, clock: Clock | None = None) -> str:
    """The account's code now, for a time step never handed out before for it (waiting for the next step when
    needed: the service accepts each step once)."""
    username = user if isinstance(user, str) else user.username
    secret = totp_secret(username)
    at = (clock or CLOCK[0]).now()
    while True:
        with _STEP_LOCK:
            step = int(at.timestamp()) // TOTP_STEP_S
            # A step far ahead was handed out on a clock moved forward (another app's): this clock is its own.
            if step > _LAST_STEP.get(username, -1) or _LAST_STEP[username] > step + 2:
                _LAST_STEP[username] = step
                return code_at(secret, at, step_s=TOTP_STEP_S)
            wait = (step + 1) * TOTP_STEP_S - at.timestamp()
        time.sleep(max(0.01, wait))
        at = (clock or CLOCK[0]).now()


async def give_second_factor(session: AsyncSession, user_id: int, username: str, password: str = "") -> str:
    """An active second factor for a user row made without the factories (its secret, which :func:`totp_code`
    then uses); ``password`` is the row's, when it is not :data:`PASSWORD` or the demo's."""
    if password:
        _PASSWORDS[username] = password
    secret = _SECRETS[username] = pyotp.random_base32(32)
    await enrol_confirmed(session, _box(), user_id, secret)
    return secret


def credentials(user: str | MadeUser, password: str | None = None, *, clock: Clock | None = None) -> dict[str, str]:
    """The JSON body of a sign-in (``POST /api/session``): user name, password, current code (none for an account
    without a second factor the tests know of)."""
    username = user if isinstance(user, str) else user.username
    right = _PASSWORDS.get(username)
    if password is None:
        password = user.password if isinstance(user, MadeUser) else right or DEMO_PASSWORD
    # A wrong password is refused before the code is looked at: it spends no time step (and waits for none).
    known = username in _SECRETS and (right is None or password == right)
    code = totp_code(username, clock=clock) if known else "000000"
    return {"username": username, "password": password, "code": code}


def proof(user: str | MadeUser, password: str | None = None) -> dict[str, str]:
    """The re-authentication fields of a signature or an amendment: password and current code."""
    body = credentials(user, password)
    return {"password": body["password"], "code": body["code"]}


def unique(prefix: str) -> str:
    """``prefix`` and 8 random hex digits: unique across tests, runs and random orders (``secrets``, which
    pytest-randomly does not reseed)."""
    return f"{prefix}-{secrets.token_hex(4)}"


def new_ins(sex: str = "female") -> str:
    """A random INS (NIR) with a valid control key: 13 digits, then 97 - (number mod 97)."""
    body = f"{1 if sex == 'male' else 2}{secrets.randbelow(100):02d}{1 + secrets.randbelow(12):02d}69" \
           f"{secrets.randbelow(10**6):06d}"
    return body + f"{97 - int(body) % 97:02d}"


@cache
def _box() -> SecretBox:
    return SecretBox(SECRET_KEY)


@cache
def _password_hash() -> str:
    return hash_password(PASSWORD, CHEAP_ARGON2)


@dataclass(frozen=True)
class MadeUser:
    id: int
    username: str
    #: How every page and document writes the name (``rcp.people.PersonName.display``): "Dr Camille NOM-1A2B3C4D".
    display_name: str
    role: str
    specialty: str
    hospital: str
    #: What ``login`` sends; :data:`PASSWORD` unless the test chose another.
    password: str = PASSWORD
    family_name: str = ""
    given_name: str = ""
    prefix: str = ""
    rpps: str = ""


@dataclass(frozen=True)
class MadeBoard:
    id: int
    name: str
    coordinator: MadeUser
    required_specialties: tuple[str, ...]
    timezone: str


@dataclass(frozen=True)
class MadePatient:
    id: int
    family_name: str
    given_names: str
    ins: str
    ipp: str


@dataclass(frozen=True)
class MadeCase:
    id: int
    meeting_id: int
    patient: MadePatient
    position: int
    question: str


@dataclass(frozen=True)
class MadeInvitation:
    id: int
    meeting_id: int
    user: MadeUser
    specialty: str
    quorum_member: bool
    response: str


@dataclass(frozen=True)
class MadeMeeting:
    id: int
    board: MadeBoard
    title: str
    starts_at: datetime
    status: str
    cases: tuple[MadeCase, ...]
    invitations: tuple[MadeInvitation, ...]

    @property
    def coordinator(self) -> MadeUser:
        return self.board.coordinator

    @property
    def clinicians(self) -> tuple[MadeUser, ...]:
        """The invited clinicians, in invitation order (the coordinator is not among them)."""
        return tuple(i.user for i in self.invitations if i.user.role == Role.clinician)

    def invitee(self, specialty: str) -> MadeUser:
        """The first invited clinician of ``specialty``."""
        for invitation in self.invitations:
            if invitation.specialty == specialty and invitation.user.role == Role.clinician:
                return invitation.user
        raise LookupError(f"no {specialty} invited to meeting {self.id}; invited: "
                          f"{', '.join(i.specialty for i in self.invitations)}")

    def invitation_of(self, user: MadeUser) -> MadeInvitation:
        return next(i for i in self.invitations if i.user.id == user.id)


async def make_user(
    db: Database,
    *,
    role: str = Role.clinician,
    specialty: str = "",
    hospital: str = HOSPITAL,
    username: str = "",
    family_name: str = "",
    given_name: str = "",
    prefix: str | None = None,
    rpps: str = "",
    password: str = PASSWORD,
    locale: str = "",
    email: str = "",
    second_factor: bool = True,
) -> MadeUser:
    """A user who can sign in with ``password`` (``""`` for none: a service account without a password).

    Named in parts (``rcp.people``): by default "Dr Camille NOM-xxxxxxxx" for a clinician (no title for other
    roles), a family name of its own so pages can be searched for it; ``rpps`` is stored as given (make a valid
    one with :func:`new_rpps`).

    With a password the user also has an active second factor (``second_factor=False``: none enrolled yet,
    so the next sign-in enrols)."""
    username = username or unique(f"{role}.{specialty}" if specialty else role)
    family_name = family_name or unique("Nom")
    given_name = given_name or "Camille"
    prefix = ("Dr" if role == Role.clinician else "") if prefix is None else prefix
    display_name = PersonName(family=family_name, given=given_name, prefix=prefix).display()
    password_hash = "" if not password else _password_hash() if password == PASSWORD \
        else hash_password(password, CHEAP_ARGON2)
    async with db.session() as s:
        row = User(username=username, family_name=family_name, given_name=given_name, prefix=prefix, rpps=rpps,
                   role=role, specialty=specialty, hospital=hospital, email=email or f"{username}@example.org",
                   locale=locale, password_hash=password_hash)
        s.add(row)
        await s.flush()
        assert row.id is not None
        if password and second_factor:
            _PASSWORDS[username] = password
            secret = _SECRETS[username] = pyotp.random_base32(32)
            await enrol_confirmed(s, _box(), row.id, secret)
        return MadeUser(id=row.id, username=username, display_name=display_name, role=role, specialty=specialty,
                        hospital=hospital, password=password, family_name=family_name, given_name=given_name,
                        prefix=prefix, rpps=rpps)


def new_rpps() -> str:
    """A random RPPS number with a valid Luhn key (``rcp.people.check_rpps``)."""
    base = f"1{secrets.randbelow(10**9):09d}"
    return base + rpps_check_digit(base)


async def make_clinician(db: Database, specialty: str = "surgeon", **fields: Any) -> MadeUser:
    return await make_user(db, role=Role.clinician, specialty=specialty, **fields)


async def make_coordinator(db: Database, **fields: Any) -> MadeUser:
    return await make_user(db, role=Role.coordinator, specialty="secretary", **fields)


async def make_board(
    db: Database,
    *,
    coordinator: MadeUser | None = None,
    name: str = "",
    required_specialties: Sequence[str] = QUORUM,
    minimum_specialties: int = 3,
    default_weekday: int | None = 3,
    default_time: str = "14:00",
    timezone: str = "Europe/Paris",
) -> MadeBoard:
    """A board run by ``coordinator`` (a new coordinator when not given)."""
    coordinator = coordinator or await make_coordinator(db)
    name = name or unique("RCP test")
    async with db.session() as s:
        board = Board(name=name, type_code="312419003", tumour_site="thoracic",
                      required_specialties=list(required_specialties), minimum_specialties=minimum_specialties,
                      default_weekday=default_weekday, default_time=default_time, timezone=timezone)
        s.add(board)
        await s.flush()
        assert board.id is not None
        s.add(BoardCoordinator(board_id=board.id, user_id=coordinator.id))
        return MadeBoard(id=board.id, name=name, coordinator=coordinator,
                         required_specialties=tuple(required_specialties), timezone=timezone)


async def make_patient(
    db: Database,
    *,
    family_name: str = "",
    given_names: str = "Zoé",
    birth_date: date = date(1961, 5, 4),
    sex: str = "female",
    ins: str = "",
    ipp: str = "",
    assigner: str = HOSPITAL,
    identity_status: str = "qualified",
) -> MadePatient:
    """A patient with an INS (a test INS, OID .10) and an IPP, both unique; qualified unless told otherwise, so
    that documents carry the INS as they would for a hospital-qualified identity."""
    family_name = family_name or unique("Patient")
    ins = ins or new_ins(sex)
    ipp = ipp or f"IPP{secrets.token_hex(5).upper()}"
    async with db.session() as s:
        patient = Patient(family_name=family_name, given_names=given_names, birth_date=birth_date, sex=sex,
                          identity_status=identity_status)
        s.add(patient)
        await s.flush()
        assert patient.id is not None
        s.add(PatientIdentifier(patient_id=patient.id, system="INS-NIR", value=ins,
                                assigner_oid="1.2.250.1.213.1.4.10"))
        s.add(PatientIdentifier(patient_id=patient.id, system="IPP", value=ipp, assigner=assigner))
        return MadePatient(id=patient.id, family_name=family_name, given_names=given_names, ins=ins, ipp=ipp)


async def make_case(
    db: Database,
    meeting_id: int,
    patient: MadePatient | None = None,
    *,
    position: int | None = None,
    question: str = "Chirurgie ou radiothérapie stéréotaxique ?",
    referring_physician: str = "Dr Pierre Martin",
    study_uids: Sequence[str] = (),
    status: str = CaseStatus.registered,
) -> MadeCase:
    """A case on the meeting's agenda (a new patient when not given), last unless ``position`` is given."""
    patient = patient or await make_patient(db)
    async with db.session() as s:
        if position is None:
            last = (await s.exec(select(func.max(Case.position)).where(Case.meeting_id == meeting_id))).one()
            position = 0 if last is None else int(last) + 1
        case = Case(meeting_id=meeting_id, patient_id=patient.id, position=position, question=question,
                    referring_physician=referring_physician, clinical_summary="Résumé de test.",
                    staging="cT1bN0M0 (TNM 8)", performance_status=1, study_uids=list(study_uids), status=status)
        s.add(case)
        await s.flush()
        assert case.id is not None
        return MadeCase(id=case.id, meeting_id=meeting_id, patient=patient, position=position, question=question)


async def make_invitation(
    db: Database,
    meeting_id: int,
    user: MadeUser,
    *,
    specialty: str = "",
    quorum_member: bool | None = None,
    response: str = Response.accepted,
) -> MadeInvitation:
    """``user`` invited to the meeting, counting for their own specialty (clinicians count for the quorum)."""
    specialty = specialty or user.specialty
    counts = user.role == Role.clinician if quorum_member is None else quorum_member
    async with db.session() as s:
        row = Invitation(meeting_id=meeting_id, user_id=user.id, specialty=specialty, quorum_member=counts,
                         response=response)
        s.add(row)
        await s.flush()
        assert row.id is not None
        return MadeInvitation(id=row.id, meeting_id=meeting_id, user=user, specialty=specialty,
                              quorum_member=counts, response=response)


async def make_meeting(
    db: Database,
    *,
    board: MadeBoard | None = None,
    starts_at: datetime | None = None,
    status: str = MeetingStatus.scheduled,
    title: str = "",
    cases: int = 2,
    invite: Sequence[str] = ("radiologist", *QUORUM),
    response: str = Response.accepted,
) -> MadeMeeting:
    """A meeting of ``board`` (a new board when not given) a week from now, with ``cases`` cases of new
    patients, one new clinician invited per specialty in ``invite`` (answering ``response``), and the board's
    coordinator invited outside the quorum, as ``rcp demo`` does."""
    board = board or await make_board(db)
    starts_at = starts_at or (datetime.now(UTC) + timedelta(days=7)).replace(second=0, microsecond=0)
    title = title or board.name
    async with db.session() as s:
        row = Meeting(board_id=board.id, title=title, starts_at=starts_at, status=status)
        s.add(row)
        await s.flush()
        assert row.id is not None
        meeting_id = row.id
    invitations = [await make_invitation(db, meeting_id, await make_clinician(db, specialty), response=response)
                   for specialty in invite]
    invitations.append(await make_invitation(db, meeting_id, board.coordinator, response=Response.accepted))
    made_cases = [await make_case(db, meeting_id, position=position) for position in range(cases)]
    return MadeMeeting(id=meeting_id, board=board, title=title, starts_at=starts_at, status=status,
                       cases=tuple(made_cases), invitations=tuple(invitations))
