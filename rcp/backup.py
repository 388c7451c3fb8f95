"""``rcp backup`` and ``rcp restore``: the database and the data folder in one file, checked before anything is
restored.

What a hospital's operator needs to recover from a lost machine: every signed decision, the audit trail, the
outbox of deliveries still owed, the local DICOM archive, and the service's secret key (second factors are
encrypted with it: without it nobody could sign in with their authenticator). So one backup file holds:

``manifest.json``      format, service version, database kind, and a SHA-256 of every other member
``database.pgdump``    PostgreSQL: ``pg_dump --format=custom`` (consistent while the service runs)
``database.sqlite3``   SQLite: the online backup API's copy (consistent while the service runs)
``data/...``           the data folder (local archive, file drops, secret key), without the frame cache and
                       unfinished uploads, which are rebuilt or retried

The file holds health data and the secret key: it is written readable by its owner only (0600), and belongs on
encrypted backup storage (HDS hosting rules). Restoring verifies every checksum first, then refuses to overwrite
a database or data folder that is not empty unless told ``--replace``: a restore never merges two histories.
After a restore, ``rcp migrate`` brings an older backup's schema up to date.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from rcp import __version__
from rcp.config import SECRET_KEY_FILE, Settings

__all__ = ["BackupError", "Restored", "backup", "restore"]

FORMAT = "rcp-backup/1"
#: Parts of the data folder a backup leaves out: rebuilt from the PACS, or retried by the user.
SKIPPED = frozenset({"cache", "uploads"})


class BackupError(RuntimeError):
    """A backup or restore that cannot go on; the message says what to do."""


@dataclass(frozen=True)
class Restored:
    database: str
    files: int


def _libpq_url(database_url: str) -> str:
    """``postgresql+psycopg://...`` (SQLAlchemy's) as libpq's ``postgresql://...`` for pg_dump and pg_restore."""
    parts = urlsplit(database_url)
    return urlunsplit(("postgresql", *parts[1:]))


def _kind(database_url: str) -> str:
    scheme = urlsplit(database_url).scheme.split("+", 1)[0]
    if scheme in {"postgresql", "postgres"}:
        return "postgresql"
    if scheme == "sqlite":
        return "sqlite"
    raise BackupError(f"rcp backup knows PostgreSQL and SQLite databases, not {scheme!r}")


def _sqlite_path(database_url: str) -> Path:
    path = database_url.split(":///", 1)[1] if ":///" in database_url else ""
    if not path or path == ":memory:":
        raise BackupError("the SQLite database is in memory: there is nothing on disk to back up")
    return Path(path.split("?", 1)[0])


def _database_file(settings: Settings) -> Path | None:
    return _sqlite_path(settings.database_url) if _kind(settings.database_url) == "sqlite" else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _data_files(data_dir: Path, database_file: Path | None) -> Iterator[Path]:
    """Files of the data folder to keep, in a stable order (the SQLite database is copied apart, consistently)."""
    if not data_dir.is_dir():
        return
    skipped = {database_file.resolve()} if database_file else set()
    if database_file is not None:
        skipped |= {Path(f"{database_file.resolve()}{suffix}") for suffix in ("-wal", "-shm", "-journal")}
    for path in sorted(data_dir.rglob("*")):
        relative = path.relative_to(data_dir)
        if relative.parts[0] in SKIPPED or not path.is_file() or path.is_symlink():
            continue
        if path.resolve() in skipped:
            continue
        yield path


def _run(command: list[str], what: str) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise BackupError(f"{command[0]} is not installed: install the PostgreSQL client "
                          "(Debian: postgresql-client) of the server's version or newer") from None
    if done.returncode != 0:
        # pg_dump's messages name tables and the server, never rows: safe to show the operator.
        raise BackupError(f"{what} failed: {done.stderr.strip()[-500:]}")


def backup(settings: Settings, target: Path) -> dict[str, object]:
    """Write the backup file ``target`` (0600); returns its manifest."""
    kind = _kind(settings.database_url)
    database_file = _sqlite_path(settings.database_url) if kind == "sqlite" else None
    with tempfile.TemporaryDirectory(prefix="rcp-backup-") as scratch:
        dump = Path(scratch) / ("database.pgdump" if kind == "postgresql" else "database.sqlite3")
        if kind == "postgresql":
            _run(["pg_dump", "--format=custom", "--no-owner", "--no-privileges", f"--file={dump}",
                  _libpq_url(settings.database_url)], "pg_dump")
        else:
            assert database_file is not None
            if not database_file.exists():
                raise BackupError(f"no SQLite database at {database_file}: run `rcp migrate` first")
            with closing(sqlite3.connect(database_file)) as source, closing(sqlite3.connect(dump)) as copy:
                source.backup(copy)
        members = {dump.name: dump}
        for path in _data_files(settings.data_dir, database_file):
            members[f"data/{path.relative_to(settings.data_dir).as_posix()}"] = path
        manifest: dict[str, object] = {
            "format": FORMAT,
            "service_version": __version__,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "database": kind,
            "files": {name: _sha256(path) for name, path in members.items()},
        }
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            body = json.dumps(manifest, indent=2).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size, info.mode = len(body), 0o600
            tar.addfile(info, io.BytesIO(body))
            for name, path in members.items():
                tar.add(path, arcname=name, recursive=False)
        partial.replace(target)  # a backup interrupted half-way never looks complete
    return manifest


def _read_manifest(tar: tarfile.TarFile) -> dict[str, object]:
    try:
        member = tar.extractfile("manifest.json")
    except KeyError:
        raise BackupError("this file is not an RCP backup (no manifest.json)") from None
    assert member is not None
    manifest = json.loads(member.read())
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"unknown backup format {manifest.get('format') if isinstance(manifest, dict) else '?'}; "
                          f"this version restores {FORMAT}")
    return manifest


def _extract_checked(source: Path, scratch: Path) -> dict[str, object]:
    """Unpack into ``scratch`` and verify every checksum before anything is restored."""
    try:
        with tarfile.open(source, mode="r:gz") as tar:
            manifest = _read_manifest(tar)
            tar.extractall(scratch, filter="data")  # no absolute paths, no "..", no device files
    except (tarfile.TarError, OSError, EOFError, json.JSONDecodeError) as exc:
        raise BackupError(f"the backup file cannot be read ({type(exc).__name__}): it is damaged or truncated") from None
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BackupError("the backup's manifest lists no files")
    for name, expected in files.items():
        path = scratch / name
        if not path.is_file() or _sha256(path) != expected:
            raise BackupError(f"{name} does not match its checksum: the backup is damaged; nothing was restored")
    return manifest


def _postgres_is_empty(url: str) -> bool:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'").fetchone()
    return row is not None and int(row[0]) == 0


def restore(settings: Settings, source: Path, *, replace: bool = False) -> Restored:
    """Restore ``source`` into the configured database and data folder (both empty unless ``replace``)."""
    kind = _kind(settings.database_url)
    with tempfile.TemporaryDirectory(prefix="rcp-restore-") as scratch_name:
        scratch = Path(scratch_name)
        manifest = _extract_checked(source, scratch)
        if manifest.get("database") != kind:
            raise BackupError(f"this backup holds a {manifest.get('database')} database; RCP_DATABASE_URL names a "
                              f"{kind} one: restore into the same kind of database")
        data = scratch / "data"
        # A fresh data folder may hold only the key `rcp` made on first start (rcp.config): the backup's replaces it.
        existing = [p for p in _data_files(settings.data_dir, _database_file(settings))
                    if p.relative_to(settings.data_dir) != Path(SECRET_KEY_FILE)]
        if existing and not replace:
            raise BackupError(f"the data folder {settings.data_dir} is not empty: restore into a new one, or pass "
                              "--replace to overwrite it")
        if kind == "postgresql":
            url = _libpq_url(settings.database_url)
            if not _postgres_is_empty(url) and not replace:
                raise BackupError("the database is not empty: restore into a new database, or pass --replace "
                                  "(its tables are dropped first)")
            command = ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", f"--dbname={url}"]
            if replace:
                command += ["--clean", "--if-exists"]
            _run([*command, str(scratch / "database.pgdump")], "pg_restore")
        else:
            target = _sqlite_path(settings.database_url)
            if target.exists() and target.stat().st_size > 0 and not replace:
                raise BackupError(f"a database exists at {target}: restore into a new data folder, or pass "
                                  "--replace to overwrite it")
            target.parent.mkdir(parents=True, exist_ok=True)
            for suffix in ("-wal", "-shm", "-journal"):
                Path(f"{target}{suffix}").unlink(missing_ok=True)
            shutil.copyfile(scratch / "database.sqlite3", target)
        count = 0
        if data.is_dir():
            for path in sorted(data.rglob("*")):
                if path.is_file():
                    destination = settings.data_dir / path.relative_to(data)
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, destination)
                    count += 1
        return Restored(database=kind, files=count)
