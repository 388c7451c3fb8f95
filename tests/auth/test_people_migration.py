"""Migration 0013: existing display names become family name, given name and title where the name says which word
is the family name; any other name is kept whole and flagged "to check", never split by a guess."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from rcp.db import downgrade, migrate

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


def _users(path: Path) -> dict[str, dict[str, object]]:
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        return {r["username"]: dict(r) for r in db.execute("SELECT * FROM users")}


def test_display_names_become_parts_and_unsplittable_ones_are_flagged(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite3"
    url = f"sqlite:///{path}"
    migrate(url, BEFORE)
    with sqlite3.connect(path) as db:
        for username, display in USERS.items():
            db.execute("INSERT INTO users (username, display_name, role, created_at) "
                       "VALUES (?, ?, 'clinician', '2026-12-03 10:00:00')",
                       (username, display))
        # Rows that point at users must survive the table being rebuilt (no cascade on the way).
        db.execute("INSERT INTO login_sessions (id, user_id, csrf_token, created_at, last_seen_at) "
                   "SELECT 's1', id, 'c', '2026-12-03 10:00:00', '2026-12-03 10:00:00' FROM users "
                   "WHERE username = 'rousseau'")

    migrate(url, AFTER)

    users = _users(path)
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
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM login_sessions").fetchone() == (1,)

    downgrade(url, BEFORE)
    back = {u: r["display_name"] for u, r in _users(path).items()}
    assert back["rousseau"] == "Dr Amélie ROUSSEAU"
    assert back["durand"] == "Marie DURAND"
    assert back["given-first"] == "Dr Amélie Rousseau"
    assert back["service"] == ""


def test_the_flagged_account_reads_as_typed_and_to_complete(tmp_path: Path) -> None:
    """What the pages get from a flagged row: the name as typed, marked to complete (``User.person_name``)."""
    from rcp.auth.models import User

    user = User(username="given-first", family_name="Amélie Rousseau", prefix="Dr", name_to_check=True)
    assert user.display_name == "Dr Amélie Rousseau"
    assert user.person_name.unsplit
    assert User(username="svc").display_name == "svc"
