"""Bearer tokens expire and record their last use; the sign-in lock-out's columns go.

Tokens made before this revision expire 90 days after it (``rcp token list`` shows when); those of accounts that
are not service accounts are revoked, since only service accounts may hold one now (issue 13, finding 13).

``users.failed_logins`` and ``users.locked_until`` held the hard lock-out that anyone could trigger to lock a named
physician out; sign-in is throttled per account and per address now (rcp.auth.throttle, in memory or Redis), so
nothing reads them. They are dropped rather than left behind, so that no later code trusts a count nobody keeps.

Revision ID: 0010_tokens_expire_no_lockout
Revises: 0009_archive_patient_sex
Create Date: 2026-12-03
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from alembic import op

revision = "0010_tokens_expire_no_lockout"
down_revision = "0009_archive_patient_sex"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
    expiry = datetime.now(UTC) + timedelta(days=90)
    op.execute(sa.text("UPDATE api_tokens SET expires_at = :expiry").bindparams(
        sa.bindparam("expiry", expiry, type_=sa.DateTime(timezone=True))))
    op.execute(sa.text("UPDATE api_tokens SET revoked = :yes WHERE user_id IN "
                       "(SELECT id FROM users WHERE role <> 'service')").bindparams(yes=True))
    with op.batch_alter_table("api_tokens") as batch:
        batch.alter_column("expires_at", existing_type=sa.DateTime(timezone=True), nullable=False)
    # Natively (SQLite >= 3.35, PostgreSQL): a batch copy of ``users`` would drop the table under foreign keys
    # that cascade to sessions, invitations and the rest.
    op.execute("ALTER TABLE users DROP COLUMN failed_logins")
    op.execute("ALTER TABLE users DROP COLUMN locked_until")


def downgrade() -> None:
    op.add_column("users", sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"))
    op.add_column("users", sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("last_used_at")
        batch.drop_column("expires_at")
