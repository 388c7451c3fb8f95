"""Databases for the EPR tests: SQLite migrated once with alembic and copied per test."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from rcp.db import Database, migrate
from rcp.scheduling.models import Board, Case, Meeting, Patient


@pytest.fixture(scope="session")
def epr_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("epr-template") / "rcp.sqlite3"
    migrate(f"sqlite:///{path}", "heads")
    return path


@pytest.fixture
def epr_db_url(epr_template: Path, tmp_path: Path) -> str:
    target = tmp_path / "rcp.sqlite3"
    shutil.copyfile(epr_template, target)
    return f"sqlite:///{target}"


@pytest.fixture
async def epr_db(epr_db_url: str) -> AsyncIterator[Database]:
    database = Database(epr_db_url)
    try:
        yield database
    finally:
        await database.close()


async def add_case(db: Database) -> Case:
    """A board, meeting, patient and case, so deliveries can point at a real case."""
    async with db.session() as session:
        board = Board(name="RCP thoracique", required_specialties=["surgeon"])
        session.add(board)
        await session.flush()
        assert board.id is not None
        meeting = Meeting(board_id=board.id, title="RCP", starts_at=datetime(2026, 11, 23, 14, tzinfo=UTC))
        patient = Patient(family_name="DUPONT", given_names="Jeanne", birth_date=date(1979, 3, 15), sex="female")
        session.add(meeting)
        session.add(patient)
        await session.flush()
        assert meeting.id is not None and patient.id is not None
        case = Case(meeting_id=meeting.id, patient_id=patient.id)
        session.add(case)
        await session.flush()
        return case
