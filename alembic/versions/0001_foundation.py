"""Foundation: users, sessions, tokens, audit trail, boards, meetings, invitations, patients, cases.

Revision ID: 0001_foundation
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_foundation"
down_revision = None
branch_labels = None
depends_on = None


def ts(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(80), nullable=False, unique=True),
        sa.Column("display_name", sa.String(200), nullable=False, server_default=""),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("specialty", sa.String(40), nullable=False, server_default=""),
        sa.Column("hospital", sa.String(200), nullable=False, server_default=""),
        sa.Column("email", sa.String(200), nullable=False, server_default=""),
        sa.Column("locale", sa.String(5), nullable=False, server_default=""),
        sa.Column("password_hash", sa.String(200), nullable=False, server_default=""),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"),
        ts("locked_until", nullable=True),
        ts("created_at"),
    )
    op.create_index("ix_users_username", "users", ["username"])
    op.create_table(
        "login_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        ts("created_at"),
        ts("last_seen_at"),
        sa.Column("source", sa.String(64), nullable=False, server_default=""),
        sa.Column("meeting_scope", sa.Integer, nullable=True),
    )
    op.create_index("ix_login_sessions_user_id", "login_sessions", ["user_id"])
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(100), nullable=False, server_default=""),
        sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
        ts("created_at"),
        sa.Column("revoked", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_api_tokens_user_id", "api_tokens", ["user_id"])
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer, primary_key=True),
        ts("at"),
        sa.Column("event_code", sa.String(10), nullable=False),
        sa.Column("action", sa.String(1), nullable=False),
        sa.Column("outcome", sa.Integer, nullable=False, server_default="0"),
        sa.Column("user_id", sa.Integer, nullable=True),
        sa.Column("username", sa.String(80), nullable=False, server_default=""),
        sa.Column("source", sa.String(64), nullable=False, server_default=""),
        sa.Column("patient_id", sa.Integer, nullable=True),
        sa.Column("meeting_id", sa.Integer, nullable=True),
        sa.Column("what", sa.String(300), nullable=False, server_default=""),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    op.create_index("ix_audit_events_user_id", "audit_events", ["user_id"])
    op.create_index("ix_audit_events_patient_id", "audit_events", ["patient_id"])

    op.create_table(
        "boards",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("tumour_site", sa.String(100), nullable=False, server_default=""),
        sa.Column("required_specialties", sa.JSON, nullable=False),
        sa.Column("minimum_specialties", sa.Integer, nullable=False, server_default="3"),
        sa.Column("default_weekday", sa.Integer, nullable=True),
        sa.Column("default_time", sa.String(5), nullable=False, server_default="14:00"),
        sa.Column("default_duration_min", sa.Integer, nullable=False, server_default="90"),
        sa.Column("timezone", sa.String(64), nullable=False, server_default="Europe/Paris"),
        ts("created_at"),
    )
    op.create_table(
        "board_coordinators",
        sa.Column("board_id", sa.Integer, sa.ForeignKey("boards.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    )
    op.create_table(
        "meetings",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("board_id", sa.Integer, sa.ForeignKey("boards.id", ondelete="CASCADE"), nullable=False),
        sa.Column("title", sa.String(200), nullable=False, server_default=""),
        ts("starts_at"),
        sa.Column("duration_min", sa.Integer, nullable=False, server_default="90"),
        sa.Column("status", sa.String(20), nullable=False, server_default="scheduled"),
        ts("created_at"),
    )
    op.create_index("ix_meetings_board_id", "meetings", ["board_id"])
    op.create_index("ix_meetings_starts_at", "meetings", ["starts_at"])
    op.create_table(
        "invitations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("meeting_id", sa.Integer, sa.ForeignKey("meetings.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("specialty", sa.String(40), nullable=False, server_default=""),
        sa.Column("quorum_member", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("response", sa.String(20), nullable=False, server_default="pending"),
        ts("invited_at"),
        ts("joined_at", nullable=True),
        ts("left_at", nullable=True),
        sa.UniqueConstraint("meeting_id", "user_id", name="uq_invitation_meeting_user"),
    )
    op.create_index("ix_invitations_meeting_id", "invitations", ["meeting_id"])
    op.create_index("ix_invitations_user_id", "invitations", ["user_id"])
    op.create_table(
        "patients",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("family_name", sa.String(100), nullable=False),
        sa.Column("given_names", sa.String(200), nullable=False, server_default=""),
        sa.Column("birth_date", sa.Date, nullable=True),
        sa.Column("sex", sa.String(10), nullable=False, server_default="unknown"),
        ts("created_at"),
    )
    op.create_table(
        "patient_identifiers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("patient_id", sa.Integer, sa.ForeignKey("patients.id", ondelete="CASCADE"), nullable=False),
        sa.Column("system", sa.String(20), nullable=False),
        sa.Column("value", sa.String(64), nullable=False),
        sa.Column("assigner", sa.String(100), nullable=False, server_default=""),
        sa.UniqueConstraint("system", "assigner", "value", name="uq_patient_identifier"),
    )
    op.create_index("ix_patient_identifiers_patient_id", "patient_identifiers", ["patient_id"])
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("meeting_id", sa.Integer, sa.ForeignKey("meetings.id", ondelete="CASCADE"), nullable=False),
        sa.Column("patient_id", sa.Integer, sa.ForeignKey("patients.id", ondelete="RESTRICT"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False, server_default="0"),
        sa.Column("referring_physician", sa.String(200), nullable=False, server_default=""),
        sa.Column("question", sa.Text, nullable=False, server_default=""),
        sa.Column("clinical_summary", sa.Text, nullable=False, server_default=""),
        sa.Column("staging", sa.String(200), nullable=False, server_default=""),
        sa.Column("performance_status", sa.Integer, nullable=True),
        sa.Column("study_uids", sa.JSON, nullable=False),
        sa.Column("checklist", sa.JSON, nullable=False),
        sa.Column("status", sa.String(20), nullable=False, server_default="registered"),
        sa.Column("deferred_to_id", sa.Integer, nullable=True),
        ts("created_at"),
        ts("updated_at"),
    )
    op.create_index("ix_cases_meeting_id", "cases", ["meeting_id"])
    op.create_index("ix_cases_patient_id", "cases", ["patient_id"])


def downgrade() -> None:
    for table in (
        "cases",
        "patient_identifiers",
        "patients",
        "invitations",
        "meetings",
        "board_coordinators",
        "boards",
        "audit_events",
        "api_tokens",
        "login_sessions",
        "users",
    ):
        op.drop_table(table)
