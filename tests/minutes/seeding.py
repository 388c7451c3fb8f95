"""Rows for the minutes store tests (users, a board, a meeting with attendance, a patient and a case), and the
bare app the minutes route tests share: a migrated database of the module's own, our routes behind the
header stand-in for auth (``tests.minutes.header_auth``), and a signer's password."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlmodel import col
from starlette.applications import Starlette
from starlette.middleware import Middleware

from rcp.auth.models import User
from rcp.auth.passwords import hash_password
from rcp.config import Settings
from rcp.db import Database, migrate
from rcp.http import error_handlers
from rcp.imaging.synthetic import SyntheticPatient
from rcp.minutes import store
from rcp.minutes.routes import routes
from rcp.scheduling.models import Board, Case, Invitation, Meeting, Patient, PatientIdentifier
from rcp.templating import render_error
from tests.factories import CHEAP_ARGON2, SECRET_KEY, TOTP_STEP_S, give_second_factor, proof
from tests.minutes.header_auth import HeaderAuth

#: The password the route tests give their signer (:func:`give_password`).
PASSWORD = "correct horse battery staple"

STUDY = "1.2.826.0.1.3680043.8.498.77"
KEY_IMAGE = {"study_uid": STUDY, "series_uid": STUDY + ".1", "sop_uid": STUDY + ".1.1",
             "description": "Masse du lobe supérieur droit"}
NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)


@dataclass
class Seed:
    case_id: int
    meeting_id: int
    surgeon: int
    oncologist: int
    radiotherapist: int
    intern: int
    outsider: int


async def seed(db: Database, *, joined: tuple[str, ...] = ("surgeon", "medical_oncologist", "radiotherapist"),
               study_uids: tuple[str, ...] = (STUDY,), patient_id: str = "", issuer: str = "CHU",
               ins: str = "", person: SyntheticPatient | None = None) -> Seed:
    """A signed-ready case; ``person`` gives its patient the traits of a synthetic study's patient (write-back
    checks that the study is the fiche's patient's)."""
    tag = secrets.token_hex(4)
    async with db.session() as s:
        users = {}
        for key in ("surgeon", "medical_oncologist", "radiotherapist", "radiologist", "pathologist"):
            user = User(username=f"{key}-{tag}", family_name=key.title(), given_name="Éléonore", prefix="Dr", specialty=key)
            s.add(user)
            users[key] = user
        board = Board(name="RCP Thorax", tumour_site="39607008",
                      required_specialties=["surgeon", "medical_oncologist", "radiotherapist"])
        patient = Patient(family_name="Dupré", given_names="Noël", birth_date=date(1950, 1, 2), sex="male")
        if person is not None:
            patient = Patient(family_name=person.family_name, given_names=person.given_names,
                              birth_date=person.birth_date, sex={"F": "female", "M": "male"}.get(person.sex, "other"))
        # With an INS: a (test) INS of an identity the hospital qualified, so documents carry it.
        patient.identity_status = "qualified" if ins else "provisional"
        s.add_all([board, patient])
        await s.flush()
        for user in users.values():  # physicians sign with a second factor (tests.factories.proof)
            await give_second_factor(s, user.id or 0, user.username)
        assert board.id is not None and patient.id is not None
        meeting = Meeting(board_id=board.id, title="RCP", starts_at=NOW)
        s.add(meeting)
        s.add(PatientIdentifier(patient_id=patient.id, system="IPP", value=patient_id or f"IPP-{tag}",
                                assigner=issuer))
        if ins:
            s.add(PatientIdentifier(patient_id=patient.id, system="INS-NIR", value=ins, assigner="",
                                    assigner_oid="1.2.250.1.213.1.4.10"))
        await s.flush()
        assert meeting.id is not None
        for key in ("surgeon", "medical_oncologist", "radiotherapist", "radiologist"):
            s.add(Invitation(meeting_id=meeting.id, user_id=users[key].id or 0, specialty=key,
                             quorum_member=key != "radiologist",
                             joined_at=NOW if key in joined or key == "radiologist" else None))
        case = Case(meeting_id=meeting.id, patient_id=patient.id, question="Opérable ?",
                    clinical_summary="Adénocarcinome pulmonaire.", staging="cT2a N0 M0 (TNM 8)", performance_status=1,
                    study_uids=list(study_uids), referring_physician="Dr Pneumo")
        s.add(case)
        await s.flush()
        assert case.id and meeting.id
        return Seed(case.id, meeting.id, users["surgeon"].id or 0, users["medical_oncologist"].id or 0,
                    users["radiotherapist"].id or 0, users["radiologist"].id or 0, users["pathologist"].id or 0)


async def fill(db: Database, seed_: Seed, key_images: list[dict[str, Any]] | None = None) -> int:
    """Write a complete decision; returns the draft revision the signer saw."""
    values = {
        "proposal": {"type": "surgery", "details": "Lobectomie supérieure droite."},
        "guideline": {"conforms": True, "reference": "Référentiel thorax 2025"}, "case_status": "discussed",
        "responsible_physician": {"name": "Dr Oncologue", "user_id": seed_.oncologist},
        "patient_informed": True,
        "key_images": [KEY_IMAGE] if key_images is None else key_images,
    }
    async with db.session() as s:
        for name, value in values.items():
            await store.save_field(s, seed_.case_id, name, value, base_version=0, editor_id=seed_.surgeon, at=NOW)
    async with db.session() as s:
        return (await store.load_draft(s, seed_.case_id)).revision


@asynccontextmanager
async def migrated(directory: Path) -> AsyncIterator[Database]:
    """A SQLite database of its own under ``directory``, migrated (a module-scoped fixture holds it)."""
    url = f"sqlite:///{directory / 'rcp.db'}"
    await asyncio.to_thread(migrate, url)
    db = Database(url)
    try:
        yield db
    finally:
        await db.close()


@asynccontextmanager
async def minutes_client(database: Database) -> AsyncIterator[httpx.AsyncClient]:
    """The minutes routes on a bare Starlette app (our routes, the project's error handlers, the header stand-in
    for auth), over ASGI."""
    app = Starlette(routes=routes, middleware=[Middleware(HeaderAuth)],
                    exception_handlers=error_handlers(render_error))
    app.state.db = database
    # The signer's second factor is read with the test apps' key (tests.factories).
    app.state.settings = Settings(env="test", secret_key=SECRET_KEY, totp_step_s=TOTP_STEP_S, argon2=CHEAP_ARGON2)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rcp.test") as client:
        yield client


async def give_password(database: Database, user_id: int) -> None:
    """Give a seeded physician :data:`PASSWORD`, so that they sign."""
    digest = hash_password(PASSWORD, CHEAP_ARGON2)
    async with database.session() as s:
        await s.exec(sa.update(User).where(col(User.id) == user_id).values(password_hash=digest))


async def signer_proof(database: Database, user_id: int) -> dict[str, str]:
    """The password and current second-factor code of a seeded physician."""
    async with database.session() as s:
        user = await s.get(User, user_id)
        assert user is not None
        return proof(user.username, PASSWORD)


def as_user(user_id: int) -> dict[str, str]:
    """The header the stand-in for auth reads."""
    return {"X-Test-User": str(user_id)}
