"""Audit forwarding: how far the audit trail has been sent to each SIEM (rcp.auth.siem).

Revision ID: 0008_audit_forwarding
Revises: 0007_guest_links
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0008_audit_forwarding"
down_revision = "0007_guest_links"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_forwarding",
        sa.Column("url", sa.String(300), primary_key=True),
        sa.Column("last_event_id", sa.Integer, nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("audit_forwarding")
