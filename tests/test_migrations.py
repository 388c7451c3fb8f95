"""Every revision goes up and down, on SQLite and on the real PostgreSQL, from the same files, and the migrated
tables are the models' tables, column for column (a model field without its migration fails here)."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect
from sqlmodel import SQLModel

import rcp
from rcp.db import downgrade, migrate, sync_url

FOUNDATION_TABLES = {
    "users", "login_sessions", "api_tokens", "audit_events", "boards", "board_coordinators", "meetings",
    "invitations", "patients", "patient_identifiers", "cases",
}


def tables(url: str) -> set[str]:
    return set(columns(url))


def columns(url: str) -> dict[str, set[str]]:
    engine = create_engine(sync_url(url))
    try:
        inspector = inspect(engine)
        return {t: {c["name"] for c in inspector.get_columns(t)} for t in inspector.get_table_names()
                if t != "alembic_version"}
    finally:
        engine.dispose()


def model_columns() -> dict[str, set[str]]:
    """Every table the models declare (each ``rcp.*.models`` module imported), with its columns."""
    for module in pkgutil.walk_packages(rcp.__path__, "rcp."):
        if module.name.endswith(".models"):
            importlib.import_module(module.name)
    return {name: set(table.columns.keys()) for name, table in SQLModel.metadata.tables.items()}


def roundtrip(url: str) -> None:
    migrate(url)
    assert FOUNDATION_TABLES <= tables(url)
    migrated, declared = columns(url), model_columns()
    assert {"deliveries", "delivery_attempts"} <= declared.keys()  # the models were found
    assert {t: migrated.get(t) for t in declared} == declared
    downgrade(url, "base")
    assert tables(url) == set()
    migrate(url)
    assert FOUNDATION_TABLES <= tables(url)


def test_sqlite_up_down_up(tmp_path: Path) -> None:
    roundtrip(f"sqlite:///{tmp_path / 'm.sqlite3'}")


@pytest.mark.postgres
def test_postgres_up_down_up(postgres_url: str) -> None:
    roundtrip(postgres_url)


def test_one_linear_chain_of_revisions() -> None:
    """Two heads would make `rcp migrate` ambiguous; each revision must build on the previous one."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from rcp.db import ALEMBIC_DIR

    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    script = ScriptDirectory.from_config(config)
    assert len(script.get_heads()) == 1
    chain = list(script.walk_revisions())
    assert next(r.revision for r in reversed(chain)) == "0001_foundation"
