"""The demo names every person in parts (title, given name, family name) and gives its physicians valid test RPPS
numbers; a demo database migrated from free-text names gets its flagged names completed by the next ``rcp demo``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from rcp.auth.models import Role
from rcp.db import Database, migrate
from rcp.demo import DEMO_USERS, load_demo
from rcp.people import PersonName, check_rpps
from tests.factories import CHEAP_ARGON2


def test_every_demo_person_has_name_parts_and_physicians_a_valid_rpps() -> None:
    people = [u for u in DEMO_USERS if u.role != Role.service]
    for user in people:
        name = PersonName.of(family=user.family_name, given=user.given_name, prefix=user.prefix)
        assert name.given, user.username
        assert check_rpps(user.rpps) == user.rpps
    physicians = [u for u in people if u.role == Role.clinician]
    assert all(u.prefix in {"Dr", "Pr"} for u in physicians)
    assert sum(1 for u in physicians if u.rpps) >= len(physicians) - 1  # one without, to show the local id
    assert len({u.rpps for u in physicians if u.rpps}) == sum(1 for u in physicians if u.rpps)


async def test_the_demo_completes_names_the_migration_left_to_check(tmp_path: Path) -> None:
    path = tmp_path / "demo.sqlite3"
    migrate(f"sqlite:///{path}")
    with sqlite3.connect(path) as db:
        # What migration 0013 makes of the old demo's "Dr Amélie Rousseau".
        db.execute("INSERT INTO users (username, family_name, prefix, name_to_check, role, created_at) "
                   "VALUES ('dr.oncologue', 'Amélie Rousseau', 'Dr', 1, 'clinician', '2026-12-03 10:00:00')")
    database = Database(f"sqlite+aiosqlite:///{path}")
    try:
        await load_demo(database, argon2=CHEAP_ARGON2)
    finally:
        await database.close()
    with sqlite3.connect(path) as db:
        row = db.execute("SELECT prefix, given_name, family_name, name_to_check, rpps FROM users "
                         "WHERE username = 'dr.oncologue'").fetchone()
    assert row[:4] == ("Dr", "Amélie", "Rousseau", 0)
    assert check_rpps(row[4]) == row[4] != ""
