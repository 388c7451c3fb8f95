"""Append-only audit trail: audit events are never updated or deleted, signed decision versions never deleted.

Revision ID: 0006_append_only
Revises: 0005_epr
Create Date: 2026-12-03

The database itself refuses, so that neither a bug nor an attacker holding the service's connection can rewrite
who read which patient, or make a signed decision disappear (issue 13, finding 12). 0004 already refused UPDATE of
``decision_versions``; this adds DELETE there, and UPDATE, DELETE (and on PostgreSQL TRUNCATE, which skips row
triggers) on ``audit_events``. A role that owns the tables could drop the triggers, so on PostgreSQL operators run
the service as a role that does not own them and has no UPDATE, DELETE or TRUNCATE right on these two tables
(README, "Security").
"""

from __future__ import annotations

from alembic import op

revision = "0006_append_only"
down_revision = "0005_epr"
branch_labels = None
depends_on = None

AUDIT_MESSAGE = "audit events are append-only: they are never updated or deleted"
VERSION_MESSAGE = "signed decision versions are never deleted: write a correction (a new version)"

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION rcp_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql
"""

#: (table, trigger name, SQLite/PostgreSQL event, message)
_ROW_TRIGGERS = (
    ("audit_events", "audit_events_no_update", "UPDATE", AUDIT_MESSAGE),
    ("audit_events", "audit_events_no_delete", "DELETE", AUDIT_MESSAGE),
    ("decision_versions", "decision_versions_no_delete", "DELETE", VERSION_MESSAGE),
)
_TRUNCATE_TRIGGERS = (
    ("audit_events", "audit_events_no_truncate", AUDIT_MESSAGE),
    ("decision_versions", "decision_versions_no_truncate", VERSION_MESSAGE),
)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(_PG_FUNCTION)
        for table, name, event, message in _ROW_TRIGGERS:
            op.execute(f"CREATE TRIGGER {name} BEFORE {event} ON {table} "
                       f"FOR EACH ROW EXECUTE FUNCTION rcp_append_only('{message}')")
        for table, name, message in _TRUNCATE_TRIGGERS:
            op.execute(f"CREATE TRIGGER {name} BEFORE TRUNCATE ON {table} "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION rcp_append_only('{message}')")
    elif dialect == "sqlite":
        for table, name, event, message in _ROW_TRIGGERS:
            op.execute(f"CREATE TRIGGER {name} BEFORE {event} ON {table} "
                       f"BEGIN SELECT RAISE(ABORT, '{message}'); END")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        for table, name, _event, _message in _ROW_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        for table, name, _message in _TRUNCATE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        op.execute("DROP FUNCTION IF EXISTS rcp_append_only()")
    elif dialect == "sqlite":
        for _table, name, _event, _message in _ROW_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
