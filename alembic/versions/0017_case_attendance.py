"""Attendance frozen per case (issue 14, item 5): ``case_discussions`` (each discussion of a case in the room,
recorded when it ended, with the quorum status of the case's record then) and ``case_attendance`` (who was
connected during it, with the specialty and quorum role they had then, guest or not, and when).

Existing cases get no rows: their attendance stays what the room's log and the invitations said (a signed
version keeps the attendees it was signed with in its content).

Revision ID: 0017_case_attendance
Revises: 0016_oidc
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0017_case_attendance"
down_revision = "0016_oidc"
branch_labels = None
depends_on = None


def _when(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "case_discussions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id", ondelete="RESTRICT"), nullable=False, index=True),
        sa.Column("meeting_id", sa.Integer, sa.ForeignKey("meetings.id", ondelete="RESTRICT"), nullable=False),
        sa.Column("opened_seq", sa.Integer, nullable=False),
        sa.Column("closed_seq", sa.Integer, nullable=False),
        _when("opened_at"),
        _when("closed_at"),
        sa.Column("closed_by", sa.String(20), nullable=False),
        sa.Column("quorum_status", sa.String(10), nullable=False),
        _when("recorded_at"),
        sa.UniqueConstraint("case_id", "opened_seq", name="uq_case_discussion_opened"),
    )
    op.create_table(
        "case_attendance",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("discussion_id", sa.Integer, sa.ForeignKey("case_discussions.id", ondelete="RESTRICT"),
                  nullable=False, index=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id", ondelete="RESTRICT"), nullable=False, index=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="RESTRICT"), nullable=False),
        sa.Column("specialty", sa.String(40), nullable=False, server_default=""),
        sa.Column("quorum_member", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("guest", sa.Boolean, nullable=False, server_default=sa.false()),
        _when("joined_at"),
        _when("left_at"),
        sa.UniqueConstraint("discussion_id", "user_id", name="uq_case_attendance_user"),
    )


def downgrade() -> None:
    op.drop_table("case_attendance")
    op.drop_table("case_discussions")
