"""Room: the event log of live meetings (presence, floor, cases, shared view, marks).

Revision ID: 0003_room
Revises: 0002_imaging
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_room"
down_revision = "0002_imaging"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "room_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("meeting_id", sa.Integer, sa.ForeignKey("meetings.id", ondelete="CASCADE"), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("actor_id", sa.Integer, nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("meeting_id", "seq", name="uq_room_events_meeting_seq"),
    )
    op.create_index("ix_room_events_meeting_id", "room_events", ["meeting_id"])


def downgrade() -> None:
    op.drop_index("ix_room_events_meeting_id", table_name="room_events")
    op.drop_table("room_events")
