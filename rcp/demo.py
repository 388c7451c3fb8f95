"""Demo data: two boards, past and upcoming meetings, eight patients with cases, users of every role.

``rcp demo`` is idempotent: it creates what is missing and leaves what exists. Every name, identifier and date
here is invented; INS values carry a valid control key so that the forms accept them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from rcp.auth.models import Role, User
from rcp.auth.passwords import PRODUCTION_ARGON2, Argon2Cost, hash_password
from rcp.clock import utcnow
from rcp.db import Database
from rcp.identifiers import ins_system
from rcp.people import rpps_check_digit
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

__all__ = ["DEMO_PASSWORD", "DEMO_PATIENTS", "DEMO_TOTP_SECRET", "DEMO_USERS", "DemoPatient", "load_demo"]

DEMO_PASSWORD = "rcp-demo-2026"
#: The second factor (RFC 6238) of every demo account, printed by ``rcp demo``: add it once to an authenticator
#: app (or ask ``rcp demo-code``) and every demo login takes its codes. A published secret: demo data only.
DEMO_TOTP_SECRET = "RCPDEMOTOTPSECRETFORTHEDEMOONLY2"
HOSPITAL_A = "CHU de Lyon"
#: The assigning authority OID of its IPPs (a demo value under a test arc, not a real hospital OID).
HOSPITAL_A_OID = "1.2.250.1.999.69.1"
#: Its registration for the fiche RCP (rcp.scheduling.registration): an invented FINESS with a valid Luhn key, a
#: regional cancer network and 3C under invented national ids (the real networks' numbers are not used).
HOSPITAL_A_FINESS = "690999032"
DEMO_ESTABLISHMENT: dict[str, Any] = {
    "finess": HOSPITAL_A_FINESS, "name": HOSPITAL_A, "facility_type": "SA01",
    "regional_network_id": "8401", "regional_network_name": "ONCO AURA",
    "coordination_centre_id": "840103", "coordination_centre_name": "3C CHU de Lyon",
}
#: National RCP ids of the demo boards (invented, under the demo 3C's number).
DEMO_BOARD_IDS = {"RCP thoracique": "84010301", "RCP digestive": "84010302"}
HOSPITAL_B = "CH de Villefranche"
HOSPITAL_C = "Centre Léon Bérard"


@dataclass(frozen=True)
class DemoUser:
    username: str
    family_name: str
    given_name: str
    prefix: str
    role: str
    specialty: str
    hospital: str
    #: A made-up RPPS number with a valid Luhn key (``rcp.people.check_rpps``), for physicians only.
    rpps: str = ""


def _rpps(n: int) -> str:
    """Fictitious RPPS numbers 10999000nn + Luhn key: valid in form, assigned to nobody."""
    base = f"10999000{n:02d}"
    return base + rpps_check_digit(base)


DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser("admin", "Perrin", "Thomas", "", Role.admin, "", HOSPITAL_A),
    DemoUser("secretariat", "Marchand", "Sophie", "", Role.coordinator, "secretary", HOSPITAL_A),
    DemoUser("dr.radiologue", "Dubois", "Hélène", "Dr", Role.clinician, "radiologist", HOSPITAL_A, _rpps(1)),
    DemoUser("dr.chirurgien", "Lefèvre", "Marc", "Pr", Role.clinician, "surgeon", HOSPITAL_A, _rpps(2)),
    DemoUser("dr.oncologue", "Rousseau", "Amélie", "Dr", Role.clinician, "medical_oncologist", HOSPITAL_C,
             _rpps(3)),
    DemoUser("dr.radiotherapeute", "Benali", "Karim", "Dr", Role.clinician, "radiotherapist", HOSPITAL_C, _rpps(4)),
    DemoUser("dr.pathologiste", "Fontaine", "Claire", "Dr", Role.clinician, "pathologist", HOSPITAL_A, _rpps(5)),
    # No RPPS on file for this one: documents name him by the service's own identifier.
    DemoUser("dr.pneumologue", "Moreau", "Julien", "Dr", Role.clinician, "pulmonologist", HOSPITAL_B),
    DemoUser("dr.gastro", "Girard", "Nathalie", "Dr", Role.clinician, "gastroenterologist", HOSPITAL_B, _rpps(7)),
    DemoUser("dr.chir.digestif", "Mercier", "Paul", "Dr", Role.clinician, "surgeon", HOSPITAL_B, _rpps(8)),
    DemoUser("interface-dpi", "", "", "", Role.service, "", HOSPITAL_A),  # a machine: named by its username
)


@dataclass(frozen=True)
class DemoPatient:
    family_name: str
    given_names: str
    birth_date: date
    sex: str
    ins: str
    ipp: str
    board: str  # "thoracic" or "digestive"
    question: str
    summary: str
    staging: str
    performance_status: int


def _ins(sex: str, year: int, month: int, dept: str, commune: str, order: str) -> str:
    body = f"{1 if sex == 'male' else 2}{year % 100:02d}{month:02d}{dept}{commune}{order}"
    return body + f"{97 - int(body) % 97:02d}"


DEMO_PATIENTS: tuple[DemoPatient, ...] = (
    DemoPatient("Lefèbvre", "Jean-Pierre", date(1956, 3, 14), "male", _ins("male", 1956, 3, "69", "123", "045"),
                "IPP100001", "thoracic", "Stratégie thérapeutique pour un nodule LSD de 24 mm, TEP positive ?",
                "Tabagisme 40 PA. Nodule lobaire supérieur droit découvert fortuitement. EFR correctes.",
                "cT1cN0M0 (TNM 8)", 0),
    DemoPatient("Müller-Nguyen", "Anaïs", date(1968, 11, 2), "female", _ins("female", 1968, 11, "69", "381", "112"),
                "IPP100002", "thoracic", "Traitement adjuvant après lobectomie ?",
                "Adénocarcinome pT2aN1, EGFR muté exon 19.", "pT2aN1M0 (TNM 8)", 1),
    DemoPatient("Ferrand", "Gérard", date(1949, 7, 21), "male", _ins("male", 1949, 7, "01", "053", "007"),
                "IPP100003", "thoracic", "Réévaluation après 4 cycles de chimio-immunothérapie.",
                "Carcinome épidermoïde stade IIIB, réponse partielle au scanner de réévaluation.", "cT4N2M0 (TNM 8)", 1),
    DemoPatient("Ouédraogo", "Mariam", date(1975, 1, 9), "female", _ins("female", 1975, 1, "69", "266", "230"),
                "IPP100004", "thoracic", "Conduite à tenir devant un épanchement pleural récidivant.",
                "Antécédent de cancer du sein traité en 2019. Épanchement pleural droit.", "", 2),
    DemoPatient("Château", "Bernadette", date(1952, 5, 30), "female", _ins("female", 1952, 5, "42", "218", "019"),
                "IPP200001", "digestive", "Résécabilité d'un adénocarcinome pancréatique céphalique ?",
                "Ictère révélateur, drainage biliaire. CA 19-9 à 450.", "cT2N0M0 (TNM 8)", 1),
    DemoPatient("Da Silva", "Rui", date(1963, 9, 17), "male", _ins("male", 1963, 9, "69", "388", "101"),
                "IPP200002", "digestive", "Métastases hépatiques synchrones d'un cancer du côlon : chirurgie première ?",
                "Adénocarcinome sigmoïdien, 3 métastases hépatiques du foie droit.", "cT3N1M1a (TNM 8)", 0),
    DemoPatient("Boulanger", "Éloïse", date(1980, 12, 4), "female", _ins("female", 1980, 12, "38", "185", "044"),
                "IPP200003", "digestive", "Surveillance ou traitement d'un GIST gastrique de 3 cm ?",
                "Découverte endoscopique, biopsie : GIST, index mitotique faible.", "", 0),
    DemoPatient("Haddad", "Youssef", date(1958, 4, 26), "male", _ins("male", 1958, 4, "69", "029", "078"),
                "IPP200004", "digestive", "Radiochimiothérapie néoadjuvante pour un cancer du rectum moyen ?",
                "Adénocarcinome du moyen rectum, IRM : envahissement du mésorectum.", "cT3cN1M0 (TNM 8)", 1),
)


#: Realistic identity statuses (RNIV) for the demo patients, by IPP: most arrive qualified from the hospital's
#: identity server (with a *demo* INS, OID 1.2.250.1.213.1.4.11, never a real one); one is validated by a document
#: without INSi, one recovered from INSi without a document, one provisional (seen in an emergency), and one
#: flagged as a homonym. (status, document, attributes)
DEMO_IDENTITY: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "IPP100002": ("validated", "id_card", ()),
    "IPP100004": ("provisional", "", ()),
    "IPP200002": ("recovered", "", ()),
    "IPP200004": ("qualified", "passport", ("homonym",)),
}
DEMO_INS_OID = "1.2.250.1.213.1.4.11"


def _at(day: date, hh: int, mm: int, zone: str) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=ZoneInfo(zone)).astimezone(ZoneInfo("UTC"))


def _next_weekday(start: date, weekday: int) -> date:
    return start + timedelta(days=(weekday - start.weekday()) % 7 or 7)


async def _users(session: AsyncSession, argon2: Argon2Cost, secret_key: str) -> dict[str, User]:
    found = {u.username: u for u in (await session.exec(select(User))).all()}
    password_hash = hash_password(DEMO_PASSWORD, argon2)
    created: list[User] = []
    for spec in DEMO_USERS:
        if spec.username not in found:
            user = User(username=spec.username, family_name=spec.family_name, given_name=spec.given_name,
                        prefix=spec.prefix, rpps=spec.rpps, role=spec.role, specialty=spec.specialty,
                        hospital=spec.hospital, password_hash=password_hash)
            session.add(user)
            found[spec.username] = user
            created.append(user)
        elif found[spec.username].name_to_check:
            # A demo database from before structured names: migration 0013 could not split "Dr Amélie Rousseau";
            # the demo knows the parts.
            user = found[spec.username]
            user.family_name, user.given_name, user.prefix = spec.family_name, spec.given_name, spec.prefix
            user.rpps, user.name_to_check = user.rpps or spec.rpps, False
            session.add(user)
    await session.flush()
    if secret_key:
        from rcp.auth.totp import SecretBox, enrol_confirmed

        box = SecretBox(secret_key)
        for user in created:
            assert user.id is not None
            await enrol_confirmed(session, box, user.id, DEMO_TOTP_SECRET)
    return found


async def load_demo(db: Database, *, today: date | None = None, argon2: Argon2Cost = PRODUCTION_ARGON2,
                    secret_key: str = "", receivers: Sequence[str] = ()) -> dict[str, Any]:
    """Create the demo boards, meetings, patients, cases and users that are missing; returns what exists.

    ``argon2`` is the cost of the demo users' password hash (``Settings.argon2``); with the service's
    ``secret_key``, the users created get :data:`DEMO_TOTP_SECRET` as their second factor (encrypted with it),
    else each enrols at its first sign-in. The past meetings' cases are then signed (``rcp.demo_history``), their
    deliveries to ``receivers`` (the configured EPR receivers) and mails to the GP recorded as done."""
    result = await _load_demo(db, today=today, argon2=argon2, secret_key=secret_key)
    from rcp.demo_history import load_history

    result["signed"] = await load_history(db, receivers=receivers)
    return result


async def _load_demo(db: Database, *, today: date | None, argon2: Argon2Cost, secret_key: str) -> dict[str, Any]:
    today = today or utcnow().date()
    zone = "Europe/Paris"
    async with db.session() as session:
        users = await _users(session, argon2, secret_key)
        boards = {b.name: b for b in (await session.exec(select(Board))).all()}
        if "RCP thoracique" in boards:
            await _register(session, boards)  # a demo made before boards carried their registration
            return {"users": list(users), "created": False}
        thoracic = Board(name="RCP thoracique", type_code="312419003", tumour_site="thoracic",
                         required_specialties=["surgeon", "medical_oncologist", "radiotherapist"],
                         minimum_specialties=3, default_weekday=3, default_time="14:00", timezone=zone)
        digestive = Board(name="RCP digestive", type_code="86762007", tumour_site="digestive",
                          required_specialties=["surgeon", "medical_oncologist", "radiotherapist"],
                          minimum_specialties=3, default_weekday=1, default_time="13:00", timezone=zone)
        session.add_all([thoracic, digestive])
        await session.flush()
        await _register(session, {b.name: b for b in (thoracic, digestive)})
        coordinator = users["secretariat"]
        for board in (thoracic, digestive):
            session.add(BoardCoordinator(board_id=board.id, user_id=coordinator.id))  # type: ignore[arg-type]

        next_thursday = _next_weekday(today, 3)
        next_tuesday = _next_weekday(today, 1)
        meetings = {
            ("thoracic", "past"): Meeting(board_id=thoracic.id, title="RCP thoracique",  # type: ignore[arg-type]
                                          starts_at=_at(next_thursday - timedelta(days=14), 14, 0, zone),
                                          status=MeetingStatus.closed),
            ("thoracic", "next"): Meeting(board_id=thoracic.id, title="RCP thoracique",  # type: ignore[arg-type]
                                          starts_at=_at(next_thursday, 14, 0, zone)),
            ("digestive", "past"): Meeting(board_id=digestive.id, title="RCP digestive",  # type: ignore[arg-type]
                                           starts_at=_at(next_tuesday - timedelta(days=7), 13, 0, zone),
                                           status=MeetingStatus.closed),
            ("digestive", "next"): Meeting(board_id=digestive.id, title="RCP digestive",  # type: ignore[arg-type]
                                           starts_at=_at(next_tuesday, 13, 0, zone)),
        }
        session.add_all(meetings.values())
        await session.flush()

        members = {
            "thoracic": ["dr.radiologue", "dr.chirurgien", "dr.oncologue", "dr.radiotherapeute", "dr.pathologiste",
                         "dr.pneumologue", "secretariat"],
            "digestive": ["dr.radiologue", "dr.chir.digestif", "dr.oncologue", "dr.radiotherapeute", "dr.gastro",
                          "dr.pathologiste", "secretariat"],
        }
        for (board_key, when), meeting in meetings.items():
            for username in members[board_key]:
                user = users[username]
                session.add(Invitation(
                    meeting_id=meeting.id, user_id=user.id, specialty=user.specialty,  # type: ignore[arg-type]
                    quorum_member=user.role == Role.clinician,
                    response=Response.accepted if when == "past" or username != "dr.pathologiste" else Response.pending,
                ))

        positions: dict[str, int] = {"thoracic": 0, "digestive": 0}
        for index, spec in enumerate(DEMO_PATIENTS):
            status, document, attributes = DEMO_IDENTITY.get(spec.ipp, ("qualified", "id_card", ()))
            patient = Patient(family_name=spec.family_name, given_names=spec.given_names,
                              birth_date=spec.birth_date, sex=spec.sex,
                              first_given_name=spec.given_names.split()[0], identity_status=status,
                              identity_status_by="" if status == "provisional" else f"ADT {HOSPITAL_A}",
                              identity_status_at=None if status == "provisional" else _at(today, 8, 0, "UTC"),
                              identity_document=document, identity_attributes=list(attributes))
            session.add(patient)
            await session.flush()
            session.add(PatientIdentifier(patient_id=patient.id, system=ins_system(DEMO_INS_OID), value=spec.ins,  # type: ignore[arg-type]
                                          assigner_oid=DEMO_INS_OID))
            session.add(PatientIdentifier(patient_id=patient.id, system="IPP", value=spec.ipp,  # type: ignore[arg-type]
                                          assigner=HOSPITAL_A, assigner_oid=HOSPITAL_A_OID))
            # The first patient of each board was already discussed at the past meeting, and comes back.
            if index in (0, 4):
                past = meetings[(spec.board, "past")]
                session.add(Case(meeting_id=past.id, patient_id=patient.id, position=0,  # type: ignore[arg-type]
                                 referring_physician="Dr Pierre Martin", question="Bilan initial : biopsie ?",
                                 clinical_summary=spec.summary, staging=spec.staging,
                                 performance_status=spec.performance_status, status=CaseStatus.discussed))
            meeting = meetings[(spec.board, "next")]
            session.add(Case(
                meeting_id=meeting.id, patient_id=patient.id, position=positions[spec.board],  # type: ignore[arg-type]
                referring_physician="Dr Pierre Martin" if index % 3 else "",
                question=spec.question, clinical_summary=spec.summary, staging=spec.staging,
                performance_status=spec.performance_status,
            ))
            positions[spec.board] += 1
    return {"users": list(users), "created": True}


async def _register(session: AsyncSession, boards: dict[str, Board]) -> None:
    """The demo boards' establishment and national ids (the thoracic board is the region's "RCP de recours"), for
    boards that have none yet."""
    place = (await session.exec(select(Establishment).where(Establishment.finess == HOSPITAL_A_FINESS))).first()
    for name, national_id in DEMO_BOARD_IDS.items():
        board = boards.get(name)
        if board is None or board.establishment_id is not None:
            continue
        if place is None:
            place = Establishment(**DEMO_ESTABLISHMENT)
            session.add(place)
            await session.flush()
        board.establishment_id = place.id
        board.national_id = board.national_id or national_id
        board.referral = board.referral or name == "RCP thoracique"
        session.add(board)
