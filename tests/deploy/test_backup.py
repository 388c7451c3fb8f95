"""``rcp backup`` / ``rcp restore`` (rcp.backup): a lost machine comes back with every decision, audit event,
owed delivery, archived image and the key that opens the second factors; a damaged or misplaced restore stops
before it touches anything."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from rcp.backup import BackupError, backup, restore
from rcp.config import SECRET_KEY_FILE, Settings
from rcp.db import Database, migrate
from rcp.demo import load_demo
from tests.factories import CHEAP_ARGON2, SECRET_KEY
from tests.fixtures.postgres import create_database, drop_database

ROOT = Path(__file__).resolve().parents[2]
#: Tables whose loss a hospital would notice first.
KEPT = ("users", "boards", "meetings", "cases", "patients", "audit_events", "decision_versions", "deliveries")


async def _counts(url: str) -> dict[str, int]:
    db = Database(url)
    try:
        async with db.session() as s:
            return {table: int((await s.exec(sa.text(f"SELECT count(*) FROM {table}"))).one()[0])  # type: ignore[call-overload]
                    for table in KEPT}
    finally:
        await db.close()


async def _service_with_history(settings: Settings) -> None:
    """A migrated database with the demo, an archived object and a key, as a running service leaves them."""
    await _migrate(settings.database_url)
    db = Database(settings.database_url)
    try:
        await load_demo(db, argon2=CHEAP_ARGON2, secret_key=SECRET_KEY)
    finally:
        await db.close()
    (settings.data_dir / "archive" / "1.2.3").mkdir(parents=True)
    (settings.data_dir / "archive" / "1.2.3" / "1.2.3.4.dcm").write_bytes(b"DICM" + os.urandom(2048))
    (settings.data_dir / SECRET_KEY_FILE).write_text("k" * 64)
    (settings.data_dir / "cache").mkdir()
    (settings.data_dir / "cache" / "frame.bin").write_bytes(b"rebuilt from the PACS")


async def _migrate(url: str) -> None:
    import asyncio

    await asyncio.to_thread(migrate, url)


def _sqlite_settings(folder: Path) -> Settings:
    return Settings(env="test", data_dir=folder, secret_key=SECRET_KEY, argon2=CHEAP_ARGON2)


async def test_sqlite_round_trip_keeps_records_images_and_key(tmp_path: Path) -> None:
    first = _sqlite_settings(tmp_path / "old-machine")
    await _service_with_history(first)
    before = await _counts(first.database_url)
    assert before["users"] > 0 and before["cases"] > 0

    archive = tmp_path / "rcp.tar.gz"
    manifest = backup(first, archive)
    assert manifest["database"] == "sqlite"
    assert archive.stat().st_mode & 0o777 == 0o600  # health data and the secret key
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "data/cache/frame.bin" not in names  # rebuilt, not kept
    assert not any(name.endswith("rcp.sqlite3") for name in names)  # copied consistently apart

    second = _sqlite_settings(tmp_path / "new-machine")
    restored = restore(second, archive)
    assert restored.files == 2
    assert await _counts(second.database_url) == before
    image = "archive/1.2.3/1.2.3.4.dcm"
    assert (second.data_dir / image).read_bytes() == (first.data_dir / image).read_bytes()
    assert (second.data_dir / SECRET_KEY_FILE).read_text() == "k" * 64


async def test_a_damaged_backup_or_a_used_target_restores_nothing(tmp_path: Path) -> None:
    first = _sqlite_settings(tmp_path / "old")
    await _service_with_history(first)
    archive = tmp_path / "rcp.tar.gz"
    backup(first, archive)

    # A restore over a service that holds data is refused: two histories are never merged.
    with pytest.raises(BackupError, match="--replace"):
        restore(first, archive)

    # One byte changed inside a member: the checksum check stops it before anything is written.
    damaged = tmp_path / "damaged.tar.gz"
    with tarfile.open(archive) as tar, tarfile.open(damaged, "w:gz") as out:
        for member in tar.getmembers():
            data = tar.extractfile(member)
            content = data.read() if data else b""
            if member.name.endswith(".dcm"):
                content = content[:-1] + bytes([content[-1] ^ 1])
            import io

            out.addfile(member, io.BytesIO(content))
    target = _sqlite_settings(tmp_path / "new")
    with pytest.raises(BackupError, match="checksum"):
        restore(target, damaged)
    assert not (tmp_path / "new" / "rcp.sqlite3").exists()

    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(archive.read_bytes()[:4000])
    with pytest.raises(BackupError, match="damaged or truncated|not an RCP backup"):
        restore(target, truncated)
    assert not (tmp_path / "new" / "rcp.sqlite3").exists()


@pytest.fixture
def two_databases() -> Iterator[tuple[str, str]]:
    names = (create_database(), create_database())
    try:
        yield tuple(f"postgresql://postgres@127.0.0.1:5432/{name}" for name in names)  # type: ignore[misc]
    finally:
        for name in names:
            drop_database(name)


@pytest.mark.postgres
async def test_postgresql_round_trip_with_pg_dump(tmp_path: Path, two_databases: tuple[str, str]) -> None:
    old_url, new_url = two_databases
    first = Settings(env="test", data_dir=tmp_path / "old", database_url=old_url, secret_key=SECRET_KEY,
                     argon2=CHEAP_ARGON2)
    await _service_with_history(first)
    before = await _counts(old_url)
    archive = tmp_path / "rcp.tar.gz"
    assert backup(first, archive)["database"] == "postgresql"

    second = Settings(env="test", data_dir=tmp_path / "new", database_url=new_url, secret_key=SECRET_KEY,
                      argon2=CHEAP_ARGON2)
    restore(second, archive)
    assert await _counts(new_url) == before
    # The append-only triggers came back with the tables (alembic 0006): a signed version still cannot change.
    db = Database(new_url)
    try:
        async with db.session() as s:
            with pytest.raises(sa.exc.DBAPIError):
                await s.exec(sa.text("TRUNCATE audit_events"))  # type: ignore[call-overload]
    finally:
        await db.close()
    with pytest.raises(BackupError, match="not empty"):
        restore(second, archive)


def test_the_commands_back_up_and_restore(tmp_path: Path) -> None:
    def rcp(*args: str, data: Path) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "RCP_DATA_DIR": str(data), "RCP_ENV": "test", "PYTHONPATH": str(ROOT)}
        return subprocess.run([sys.executable, "-m", "rcp.cli", *args], env=env, cwd=ROOT, capture_output=True,
                              text=True, timeout=300, check=False)

    old, new = tmp_path / "old", tmp_path / "new"
    assert rcp("migrate", data=old).returncode == 0
    made = rcp("backup", str(tmp_path / "b.tar.gz"), data=old)
    assert made.returncode == 0, made.stderr
    assert "encrypted storage" in made.stdout
    done = rcp("restore", str(tmp_path / "b.tar.gz"), data=new)
    assert done.returncode == 0, done.stderr
    assert (new / "rcp.sqlite3").exists()
    refused = rcp("restore", str(tmp_path / "b.tar.gz"), data=new)
    assert refused.returncode != 0 and "--replace" in refused.stderr
