"""The local archive's index keeps the patient's sex, so the identity rule (rcp.identifiers) can compare it.

Instances indexed before this revision keep an empty sex: the rule then has no sex to compare for them (an absent
trait never refuses); imports read the files themselves and always compare it.

Revision ID: 0009_archive_patient_sex
Revises: 0008_audit_forwarding
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0009_archive_patient_sex"
down_revision = "0008_audit_forwarding"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("archive_instances") as batch:
        batch.add_column(sa.Column("patient_sex", sa.String(16), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("archive_instances") as batch:
        batch.drop_column("patient_sex")
