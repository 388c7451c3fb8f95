"""The database: one async engine per process, sessions per request, migrations through alembic.

The same URL names the database for the app (async drivers) and for alembic (sync drivers):
``sqlite:///path`` runs on aiosqlite, ``postgresql://`` on psycopg 3 (which has both modes).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

__all__ = [
    "Database",
    "async_url",
    "migrate",
    "sync_url",
    "timestamp",
]

ALEMBIC_DIR = Path(__file__).resolve().parent.parent / "alembic"


def _with_driver(url: str, sqlite_driver: str) -> str:
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres", "postgresql+asyncpg", "postgresql+psycopg"}:
        parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3 has both sync and async modes
    elif parsed.drivername.startswith("sqlite"):
        parsed = parsed.set(drivername=sqlite_driver)
    return parsed.render_as_string(hide_password=False)


def sync_url(url: str) -> str:
    """The URL alembic and other synchronous code use."""
    return _with_driver(url, "sqlite")


def async_url(url: str) -> str:
    """The URL the app's async engine uses."""
    return _with_driver(url, "sqlite+aiosqlite")


def timestamp(**kwargs: Any) -> sa.Column:  # type: ignore[type-arg]
    """A timezone-aware timestamp column: every instant is stored in UTC, on SQLite and PostgreSQL alike."""
    return sa.Column(sa.DateTime(timezone=True), **kwargs)


def is_sqlite(url: str) -> bool:
    return make_url(url).drivername.startswith("sqlite")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers go on while a writer commits; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def install_sqlite_pragmas(engine: Engine) -> None:
    event.listen(engine, "connect", _sqlite_pragmas)


class Database:
    """Owns the async engine. ``async with db.session() as s`` is one transaction.

    Do not use ``session.begin_nested()``: with pysqlite's own transaction handling a SAVEPOINT opened outside
    an explicit transaction becomes the transaction, and its RELEASE commits it. Nothing here needs savepoints;
    one request is one transaction, and a failure rolls the whole of it back.
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        kwargs: dict[str, Any] = {"echo": echo}
        if is_sqlite(url):
            path = make_url(url).database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        else:
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(async_url(url), **kwargs)
        if is_sqlite(url):
            install_sqlite_pragmas(self.engine.sync_engine)
        self._sessions = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: committed when the block ends normally, rolled back on any error."""
        async with self._sessions() as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise

    async def close(self) -> None:
        await self.engine.dispose()


def _alembic_config(url: str) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    config.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return config


def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the database to ``revision`` (blocking: call from the CLI or a thread)."""
    from alembic import command

    if is_sqlite(url):
        path = make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(_alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(_alembic_config(url), revision)


async def migrate_async(url: str, revision: str = "head") -> None:
    await asyncio.to_thread(migrate, url, revision)
