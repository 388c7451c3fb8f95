"""Withdrawals of signed decision versions entered in error, and the outbox deliveries that announce them.

A withdrawal is its own append-only record pointing at the version (who, when, why, and whether the document was
filed under the wrong patient); the signed version itself never changes (issue 16, item 5). The database refuses
UPDATE and DELETE of a withdrawal (and TRUNCATE on PostgreSQL), as 0006 does for the signed versions.

``deliveries.action`` tells a version's filing (``file``: MDM^T02/T10, an ITI-65 bundle, the file drop) from its
withdrawal (``withdraw``: MDM^T11, the DocumentReference set to entered-in-error). A withdrawal's delivery rows are
keyed by the withdrawal's own OID, so the unique (receiver, document) constraint of 0005 stays as it is: no batch
copy of ``deliveries``, whose attempts would go with it under SQLite's foreign keys.

Revision ID: 0020_withdrawals
Revises: 0019_board_registration
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0020_withdrawals"
down_revision = "0019_board_registration"
branch_labels = None
depends_on = None

MESSAGE = "withdrawals of signed versions are append-only: they are never updated or deleted"
_ROW_TRIGGERS = (("decision_withdrawals_no_update", "UPDATE"), ("decision_withdrawals_no_delete", "DELETE"))


def upgrade() -> None:
    op.create_table(
        "decision_withdrawals",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("decision_versions.id", ondelete="RESTRICT"),
                  nullable=False, unique=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id", ondelete="RESTRICT"), nullable=False, index=True),
        sa.Column("withdrawn_by", sa.Integer, sa.ForeignKey("users.id", ondelete="RESTRICT"), nullable=False),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("wrong_patient", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.add_column("deliveries", sa.Column("action", sa.String(10), nullable=False, server_default="file"))
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        # rcp_append_only() is 0006's.
        for name, event in _ROW_TRIGGERS:
            op.execute(f"CREATE TRIGGER {name} BEFORE {event} ON decision_withdrawals "
                       f"FOR EACH ROW EXECUTE FUNCTION rcp_append_only('{MESSAGE}')")
        op.execute("CREATE TRIGGER decision_withdrawals_no_truncate BEFORE TRUNCATE ON decision_withdrawals "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION rcp_append_only('{MESSAGE}')")
    elif dialect == "sqlite":
        for name, event in _ROW_TRIGGERS:
            op.execute(f"CREATE TRIGGER {name} BEFORE {event} ON decision_withdrawals "
                       f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        for name, _event in (*_ROW_TRIGGERS, ("decision_withdrawals_no_truncate", "")):
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON decision_withdrawals")
    elif dialect == "sqlite":
        for name, _event in _ROW_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    # ALTER TABLE ... DROP COLUMN in place (SQLite 3.35+, PostgreSQL): never a batch copy of ``deliveries``.
    op.execute("ALTER TABLE deliveries DROP COLUMN action")
    op.drop_table("decision_withdrawals")
