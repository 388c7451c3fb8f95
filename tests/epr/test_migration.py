"""Migration 0005_epr goes up and down on SQLite and PostgreSQL, and matches the models."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from rcp.db import downgrade, migrate, sync_url
from rcp.epr.models import Delivery, DeliveryAttempt
from tests.fixtures.postgres import create_database, drop_database


def _columns(url: str) -> dict[str, set[str]]:
    engine = create_engine(sync_url(url))
    try:
        inspector = inspect(engine)
        return {t: {c["name"] for c in inspector.get_columns(t)} for t in inspector.get_table_names()}
    finally:
        engine.dispose()


def _roundtrip(url: str) -> None:
    migrate(url, "heads")
    tables = _columns(url)
    assert tables["deliveries"] == set(Delivery.__table__.columns.keys())  # type: ignore[attr-defined]
    assert tables["delivery_attempts"] == set(DeliveryAttempt.__table__.columns.keys())  # type: ignore[attr-defined]
    downgrade(url, "0005_epr-1")
    assert not {"deliveries", "delivery_attempts"} & set(_columns(url))
    assert "cases" in _columns(url)
    migrate(url, "heads")
    assert "deliveries" in _columns(url)


def test_sqlite_up_down_up(tmp_path: Path) -> None:
    _roundtrip(f"sqlite:///{tmp_path / 'm.sqlite3'}")


@pytest.mark.postgres
async def test_postgres_up_down_up() -> None:
    name = await asyncio.to_thread(create_database)
    try:
        await asyncio.to_thread(_roundtrip, f"postgresql://postgres@127.0.0.1:5432/{name}")
    finally:
        await asyncio.to_thread(drop_database, name)
