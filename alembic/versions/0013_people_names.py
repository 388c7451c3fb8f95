"""People as structured names: users get family name, given name, title (Dr, Pr) and RPPS number, which replace
the free-text display name (one source of truth: ``rcp.people.PersonName``).

Existing display names are split with the one free-text rule of ``rcp.people.PersonName.parse``, which only
accepts a name whose family name is marked (in capitals: "Dr Amélie ROUSSEAU", "ROUSSEAU Amélie"; or
"Rousseau, Amélie"). Any other name ("Dr Amélie Rousseau": which word is the family name?) is **not guessed**:
a recognised title is kept, the rest goes whole into ``family_name`` as typed, and ``name_to_check`` is set. The
pages then show it as typed with "name to complete", and the account cannot sign until someone completes it; an
empty display name leaves ``family_name`` empty (the username names the account). Nobody's RPPS number was
recorded before, so ``rpps`` starts empty.

Downgrade writes ``display_name`` back from the parts (``PersonName.display``).

Revision ID: 0013_people_names
Revises: 0012_adt_messages_ins_nia
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op
from rcp.errors import Invalid
from rcp.people import PREFIXES, PersonName, split_title

revision = "0013_people_names"
down_revision = "0012_adt_messages_ins_nia"
branch_labels = None
depends_on = None


def split(display_name: str) -> tuple[str, str, str, bool]:
    """(family name, given name, title, to check) of one stored display name."""
    text = " ".join(display_name.split())
    if not text:
        return "", "", "", False
    try:
        name = PersonName.parse(text)
        return name.family[:100], name.given[:100], name.prefix, False
    except Invalid:
        pass
    prefix, rest = split_title(text)
    return rest[:100], "", prefix, True


def _drop_columns(*columns: str) -> None:
    """ALTER TABLE ... DROP COLUMN in place (SQLite 3.35+, PostgreSQL), never a batch copy of ``users``: on SQLite
    the copy drops the old table, and with foreign keys on, that cascades to every row referencing a user
    (login sessions, API tokens)."""
    for column in columns:
        op.execute(f"ALTER TABLE users DROP COLUMN {column}")


def upgrade() -> None:
    # Plain ADD COLUMN (not a batch, which copies the table: see _drop_columns).
    op.add_column("users", sa.Column("family_name", sa.String(100), nullable=False, server_default=""))
    op.add_column("users", sa.Column("given_name", sa.String(100), nullable=False, server_default=""))
    op.add_column("users", sa.Column("prefix", sa.String(10), nullable=False, server_default=""))
    op.add_column("users", sa.Column("rpps", sa.String(11), nullable=False, server_default=""))
    op.add_column("users", sa.Column("name_to_check", sa.Boolean, nullable=False, server_default=sa.false()))
    bind = op.get_bind()
    users = sa.table("users", sa.column("id", sa.Integer), sa.column("display_name", sa.String),
                     sa.column("family_name", sa.String), sa.column("given_name", sa.String),
                     sa.column("prefix", sa.String), sa.column("name_to_check", sa.Boolean))
    for user_id, display_name in bind.execute(sa.select(users.c.id, users.c.display_name)).all():
        family, given, prefix, to_check = split(display_name or "")
        bind.execute(users.update().where(users.c.id == user_id).values(
            family_name=family, given_name=given, prefix=prefix, name_to_check=to_check))
    _drop_columns("display_name")


def downgrade() -> None:
    op.add_column("users", sa.Column("display_name", sa.String(200), nullable=False, server_default=""))
    bind = op.get_bind()
    users = sa.table("users", sa.column("id", sa.Integer), sa.column("display_name", sa.String),
                     sa.column("family_name", sa.String), sa.column("given_name", sa.String),
                     sa.column("prefix", sa.String), sa.column("name_to_check", sa.Boolean))
    rows = bind.execute(sa.select(users.c.id, users.c.family_name, users.c.given_name, users.c.prefix,
                                  users.c.name_to_check)).all()
    for user_id, family, given, prefix, to_check in rows:
        if not family:
            continue
        name = PersonName(family=family, given=given, prefix=prefix if prefix in PREFIXES else "", unsplit=to_check)
        bind.execute(users.update().where(users.c.id == user_id).values(display_name=name.display()[:200]))
    _drop_columns("name_to_check", "rpps", "prefix", "given_name", "family_name")
