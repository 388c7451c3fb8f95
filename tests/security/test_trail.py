"""Attacks on the audit trail and the logs (issue 13, findings 11 and 12): rewriting history, reading health data
out of the logs, and the trail reaching the hospital's SIEM.

The append-only checks talk to the database as the service's own connection would (that is the attacker's
position: a bug or a stolen connection string); everything else goes over HTTP against a running service.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from rcp.auth import audit
from rcp.db import Database, migrate
from rcp.minutes.models import DecisionVersion
from tests.minutes.seeding import seed

# -- append-only: the database refuses ------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def trail_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                   ) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('trail') / 'rcp.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    await asyncio.to_thread(migrate, url)
    db = Database(url)
    yield db
    await db.close()


async def _audit_row(db: Database) -> int:
    async with db.session() as s:
        row = await audit.record(s, event="patient_record", action="R", patient_id=7, what="case 1",
                                 source="127.0.0.1")
        await s.flush()
        assert row.id is not None
        return row.id


async def _signed_version(db: Database) -> int:
    seeded = await seed(db)
    async with db.session() as s:
        version = DecisionVersion(case_id=seeded.case_id, number=1, content={"proposal": "surgery"},
                                  sha256="0" * 64, signed_by=seeded.oncologist, signed_at=datetime.now(UTC))
        s.add(version)
        await s.flush()
        assert version.id is not None
        return version.id


@pytest.mark.parametrize("statement", [
    "UPDATE audit_events SET username = 'nobody', patient_id = NULL WHERE id = :id",
    "DELETE FROM audit_events WHERE id = :id",
])
async def test_audit_events_cannot_be_rewritten(trail_db: Database, statement: str) -> None:
    row_id = await _audit_row(trail_db)
    with pytest.raises(DBAPIError, match="append-only"):
        async with trail_db.session() as s:
            await s.exec(sa.text(statement).bindparams(id=row_id))  # type: ignore[call-overload]
    async with trail_db.session() as s:
        kept = (await s.exec(sa.text("SELECT username, patient_id FROM audit_events WHERE id = :id")  # type: ignore[call-overload]
                             .bindparams(id=row_id))).one()
    assert tuple(kept) == ("", 7)


async def test_signed_versions_cannot_be_deleted(trail_db: Database) -> None:
    version_id = await _signed_version(trail_db)
    with pytest.raises(DBAPIError, match="never deleted"):
        async with trail_db.session() as s:
            await s.exec(sa.text("DELETE FROM decision_versions WHERE id = :id").bindparams(id=version_id))  # type: ignore[call-overload]
    async with trail_db.session() as s:
        assert (await s.get(DecisionVersion, version_id)) is not None


@pytest.mark.postgres
async def test_postgres_truncate_is_refused(trail_db: Database) -> None:
    if not trail_db.url.startswith("postgresql"):
        pytest.skip("TRUNCATE is PostgreSQL's")
    await _audit_row(trail_db)
    with pytest.raises(DBAPIError, match="append-only"):
        async with trail_db.session() as s:
            await s.exec(sa.text("TRUNCATE audit_events"))  # type: ignore[call-overload]
