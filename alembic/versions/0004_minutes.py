"""Minutes: decision drafts, signed decision versions (immutable), DICOM write-back jobs.

Revision ID: 0004_minutes
Revises: 0003_room
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0004_minutes"
down_revision = "0003_room"
branch_labels = None
depends_on = None


def ts(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION decision_versions_immutable() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'signed decision versions are never updated: write a correction (a new version)';
END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    op.create_table(
        "decision_drafts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id", ondelete="CASCADE"), nullable=False,
                  unique=True),
        sa.Column("fields", sa.JSON, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False, server_default="0"),
        ts("updated_at"),
    )
    op.create_table(
        "decision_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id", ondelete="RESTRICT"), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("content", sa.JSON, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("signed_by", sa.Integer, sa.ForeignKey("users.id", ondelete="RESTRICT"), nullable=False),
        ts("signed_at"),
        sa.Column("replaces_id", sa.Integer, sa.ForeignKey("decision_versions.id", ondelete="RESTRICT"),
                  nullable=True),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.UniqueConstraint("case_id", "number", name="uq_decision_version_case_number"),
    )
    op.create_index("ix_decision_versions_case_id", "decision_versions", ["case_id"])
    op.create_table(
        "writeback_jobs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("decision_versions.id", ondelete="RESTRICT"),
                  nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("status", sa.String(10), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text, nullable=False, server_default=""),
        sa.Column("stored_sop_uid", sa.String(64), nullable=False, server_default=""),
        ts("created_at"),
        ts("updated_at"),
        ts("next_attempt_at"),
        sa.UniqueConstraint("version_id", "kind", name="uq_writeback_version_kind"),
    )
    op.create_index("ix_writeback_jobs_version_id", "writeback_jobs", ["version_id"])
    op.create_index("ix_writeback_jobs_next_attempt_at", "writeback_jobs", ["next_attempt_at"])

    # A signed version is a medical-legal record: the database itself refuses to change one.
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(_PG_FUNCTION)
        op.execute(
            "CREATE TRIGGER decision_versions_no_update BEFORE UPDATE ON decision_versions "
            "FOR EACH ROW EXECUTE FUNCTION decision_versions_immutable()"
        )
    elif dialect == "sqlite":
        op.execute(
            "CREATE TRIGGER decision_versions_no_update BEFORE UPDATE ON decision_versions "
            "BEGIN SELECT RAISE(ABORT, 'signed decision versions are never updated: write a correction'); END"
        )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS decision_versions_no_update ON decision_versions")
        op.execute("DROP FUNCTION IF EXISTS decision_versions_immutable()")
    elif dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS decision_versions_no_update")
    op.drop_table("writeback_jobs")
    op.drop_table("decision_versions")
    op.drop_table("decision_drafts")
