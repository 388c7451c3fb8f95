"""Imaging: the index of the local DICOM archive.

Revision ID: 0002_imaging
Revises: 0001_foundation
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0002_imaging"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "archive_instances",
        sa.Column("sop_uid", sa.String(64), primary_key=True),
        sa.Column("study_uid", sa.String(64), nullable=False),
        sa.Column("series_uid", sa.String(64), nullable=False),
        sa.Column("sop_class_uid", sa.String(64), nullable=False, server_default=""),
        sa.Column("patient_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("issuer", sa.String(64), nullable=False, server_default=""),
        sa.Column("patient_name", sa.String(200), nullable=False, server_default=""),
        sa.Column("patient_birth_date", sa.String(8), nullable=False, server_default=""),
        sa.Column("study_date", sa.String(8), nullable=False, server_default=""),
        sa.Column("study_time", sa.String(16), nullable=False, server_default=""),
        sa.Column("accession", sa.String(16), nullable=False, server_default=""),
        sa.Column("study_description", sa.String(64), nullable=False, server_default=""),
        sa.Column("modality", sa.String(16), nullable=False, server_default=""),
        sa.Column("series_description", sa.String(64), nullable=False, server_default=""),
        sa.Column("series_number", sa.Integer, nullable=False, server_default="0"),
        sa.Column("instance_number", sa.Integer, nullable=False, server_default="0"),
        sa.Column("frames", sa.Integer, nullable=False, server_default="1"),
        sa.Column("transfer_syntax", sa.String(64), nullable=False, server_default=""),
        sa.Column("path", sa.String(300), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_archive_instances_study_uid", "archive_instances", ["study_uid"])
    op.create_index("ix_archive_instances_series_uid", "archive_instances", ["series_uid"])
    op.create_index("ix_archive_instances_patient_id", "archive_instances", ["patient_id"])


def downgrade() -> None:
    op.drop_index("ix_archive_instances_patient_id", table_name="archive_instances")
    op.drop_index("ix_archive_instances_series_uid", table_name="archive_instances")
    op.drop_index("ix_archive_instances_study_uid", table_name="archive_instances")
    op.drop_table("archive_instances")
