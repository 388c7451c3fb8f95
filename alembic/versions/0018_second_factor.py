"""Second factor of local accounts (RFC 6238 TOTP, recovery codes), the signing window, and password resets.

Existing accounts get ``second_factor_required`` true: they enrol an authenticator at their next sign-in (issue
17: required by default for every local account).

Revision ID: 0018_second_factor
Revises: 0017_case_attendance
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0018_second_factor"
down_revision = "0017_case_attendance"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN, never a batch copy of ``users``: on SQLite the copy drops the table that every other
    # table's foreign keys name (see 0013_people_names).
    op.add_column("users", sa.Column("second_factor_required", sa.Boolean, nullable=False, server_default=sa.true()))
    op.add_column("users", sa.Column("must_change_password", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("login_sessions", sa.Column("signing_until", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "totp_credentials",
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("secret_enc", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_step", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_table(
        "recovery_codes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("selector", sa.String(4), nullable=False),
        sa.Column("code_hash", sa.String(200), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_recovery_codes_user_id", "recovery_codes", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_recovery_codes_user_id", table_name="recovery_codes")
    op.drop_table("recovery_codes")
    op.drop_table("totp_credentials")
    # ALTER TABLE ... DROP COLUMN in place (SQLite 3.35+, PostgreSQL), for the same reason.
    op.execute("ALTER TABLE login_sessions DROP COLUMN signing_until")
    op.execute("ALTER TABLE users DROP COLUMN must_change_password")
    op.execute("ALTER TABLE users DROP COLUMN second_factor_required")
