"""Fixtures of the imaging tests: a migrated database, and both archive backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rcp.db import Database, migrate
from rcp.imaging.archive import Archive
from rcp.imaging.dicomweb import DicomWebClient
from rcp.imaging.local import LocalArchive


@pytest.fixture(scope="session")
def imaging_db_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('imaging-db') / 'rcp.sqlite3'}"
    migrate(url)
    return url


@pytest.fixture(scope="session")
async def imaging_db(imaging_db_url: str) -> AsyncIterator[Database]:
    database = Database(imaging_db_url)
    yield database
    await database.close()


@pytest.fixture(scope="session")
async def local_archive(imaging_db: Database, tmp_path_factory: pytest.TempPathFactory) -> LocalArchive:
    return LocalArchive(Path(tmp_path_factory.mktemp("archive")), imaging_db)


@pytest.fixture(scope="session")
async def postgres_local_archive(postgres_url: str, tmp_path_factory: pytest.TempPathFactory
                                 ) -> AsyncIterator[LocalArchive]:
    """The local archive indexed in PostgreSQL (the at-scale database), migrated."""
    migrate(postgres_url)
    database = Database(postgres_url)
    yield LocalArchive(Path(tmp_path_factory.mktemp("archive-pg")), database)
    await database.close()


@pytest.fixture(scope="session")
async def orthanc_archive(orthanc_url: str) -> AsyncIterator[DicomWebClient]:
    client = DicomWebClient(orthanc_url, retries=1)
    yield client
    await client.close()


@pytest.fixture(params=["local", pytest.param("orthanc", marks=pytest.mark.orthanc),
                        pytest.param("local-postgres", marks=pytest.mark.postgres)])
def archive(request: pytest.FixtureRequest) -> Archive:
    """Each archive contract test runs against the local archive (SQLite and PostgreSQL) and a real Orthanc."""
    name = {"local": "local_archive", "orthanc": "orthanc_archive",
            "local-postgres": "postgres_local_archive"}[request.param]
    return request.getfixturevalue(name)  # type: ignore[no-any-return]
