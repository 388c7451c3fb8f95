"""EPR outbox: deliveries (one per receiver and document version) and delivery attempts.

Revision ID: 0005_epr
Revises: 0004_minutes
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_epr"
down_revision = "0004_minutes"
branch_labels = None
depends_on = None


def ts(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("receiver_key", sa.String(300), nullable=False),
        sa.Column("receiver_kind", sa.String(10), nullable=False, server_default=""),
        sa.Column("document_set_id", sa.String(128), nullable=False),
        sa.Column("document_unique_id", sa.String(128), nullable=False),
        sa.Column("document_version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id", ondelete="SET NULL"), nullable=True),
        sa.Column("meeting_id", sa.Integer, nullable=True),
        sa.Column("patient_id", sa.Integer, nullable=True),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("status", sa.String(20), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        ts("next_attempt_at"),
        ts("lease_until", nullable=True),
        sa.Column("claim_token", sa.String(32), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("idempotency_key", sa.String(40), nullable=False, unique=True),
        ts("created_at"),
        ts("delivered_at", nullable=True),
        sa.UniqueConstraint("receiver_key", "document_unique_id", name="uq_delivery_receiver_document"),
    )
    op.create_index("ix_deliveries_due", "deliveries", ["status", "next_attempt_at"])
    op.create_index("ix_deliveries_order", "deliveries", ["receiver_key", "document_set_id", "document_version"])
    op.create_index("ix_deliveries_case_id", "deliveries", ["case_id"])
    op.create_index("ix_deliveries_meeting_id", "deliveries", ["meeting_id"])
    op.create_index("ix_deliveries_patient_id", "deliveries", ["patient_id"])
    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("delivery_id", sa.Integer, sa.ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=False),
        ts("at"),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("summary", sa.String(200), nullable=False, server_default=""),
        sa.Column("answer", sa.Text, nullable=False, server_default=""),
        sa.Column("duration_ms", sa.Integer, nullable=False, server_default="0"),
        sa.Column("worker", sa.String(100), nullable=False, server_default=""),
    )
    op.create_index("ix_delivery_attempts_delivery_id", "delivery_attempts", ["delivery_id"])


def downgrade() -> None:
    op.drop_index("ix_delivery_attempts_delivery_id", table_name="delivery_attempts")
    op.drop_table("delivery_attempts")
    for name in ("ix_deliveries_patient_id", "ix_deliveries_meeting_id", "ix_deliveries_case_id",
                 "ix_deliveries_order", "ix_deliveries_due"):
        op.drop_index(name, table_name="deliveries")
    op.drop_table("deliveries")
