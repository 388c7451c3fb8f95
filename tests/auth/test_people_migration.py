"""Migration 0013: existing display names become family name, given name and title where the name says which word
is the family name; any other name is kept whole and flagged "to check", never split by a guess."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from rcp.db import downgrade, migrate, sync_url
from tests.fixtures.postgres import create_database, drop_database

BEFORE = "0012_adt_messages_ins_nia"
AFTER = "0013_people_names"

USERS = {
    # username: display name as an earlier version stored it
    "rousseau": "Dr Amélie ROUSSEAU",
    "latour": "Pr Jean-Pierre DE LA TOUR",
    "martin": "MARTIN Claire",
    "durand": "Durand, Marie",
    "given-first": "Dr Amélie Rousseau",
    "one-word": "secretariat",
    "service": "",
}


def _users(url: str) -> dict[str, dict[str, object]]:
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as db:
            return {r["username"]: dict(r) for r in db.execute(text("SELECT * FROM users")).mappings()}
    finally:
        engine.dispose()


def _check_migration(url: str) -> None:
    migrate(url, BEFORE)
    engine = create_engine(sync_url(url))
    try:
        with engine.begin() as db:
            for username, display in USERS.items():
                db.execute(text("INSERT INTO users (username, display_name, role, created_at) "
                                "VALUES (:u, :d, 'clinician', '2026-12-03 10:00:00')"), {"u": username, "d": display})
            # Rows that point at users must survive (a batch copy of the table would cascade-delete them).
            db.execute(text("INSERT INTO login_sessions (id, user_id, csrf_token, created_at, last_seen_at) "
                            "SELECT 's1', id, 'c', '2026-12-03 10:00:00', '2026-12-03 10:00:00' FROM users "
                            "WHERE username = 'rousseau'"))
    finally:
        engine.dispose()

    migrate(url, AFTER)

    users = _users(url)
    parts = {u: (r["prefix"], r["given_name"], r["family_name"], bool(r["name_to_check"])) for u, r in users.items()}
    assert parts == {
        "rousseau": ("Dr", "Amélie", "ROUSSEAU", False),
        "latour": ("Pr", "Jean-Pierre", "DE LA TOUR", False),
        "martin": ("", "Claire", "MARTIN", False),
        "durand": ("", "Marie", "Durand", False),
        # Which word is the family name? Not guessed: kept as typed, title apart, flagged.
        "given-first": ("Dr", "", "Amélie Rousseau", True),
        "one-word": ("", "", "secretariat", True),
        "service": ("", "", "", False),
    }
    assert all(r["rpps"] == "" for r in users.values())
    assert "display_name" not in users["rousseau"]
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as db:
            assert db.execute(text("SELECT count(*) FROM login_sessions")).scalar() == 1
    finally:
        engine.dispose()

    downgrade(url, BEFORE)
    back = {u: r["display_name"] for u, r in _users(url).items()}
    assert back["rousseau"] == "Dr Amélie ROUSSEAU"
    assert back["durand"] == "Marie DURAND"
    assert back["given-first"] == "Dr Amélie Rousseau"
    assert back["service"] == ""


def test_display_names_become_parts_and_unsplittable_ones_are_flagged(tmp_path: Path) -> None:
    _check_migration(f"sqlite:///{tmp_path / 'm.sqlite3'}")


@pytest.mark.postgres
def test_the_same_on_postgresql() -> None:
    name = create_database()
    try:
        _check_migration(f"postgresql://postgres@127.0.0.1:5432/{name}")
    finally:
        drop_database(name)


def test_the_flagged_account_reads_as_typed_and_to_complete(tmp_path: Path) -> None:
    """What the pages get from a flagged row: the name as typed, marked to complete (``User.person_name``)."""
    from rcp.auth.models import User

    user = User(username="given-first", family_name="Amélie Rousseau", prefix="Dr", name_to_check=True)
    assert user.display_name == "Dr Amélie Rousseau"
    assert user.person_name.unsplit
    assert User(username="svc").display_name == "svc"
