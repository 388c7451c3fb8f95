"""Guests' join links and the mail outbox (issue 13, finding 3).

Revision ID: 0007_guest_links
Revises: 0006_append_only
Create Date: 2026-12-03

``join_links`` keeps only the SHA-256 of each guest's token (minted when the mail leaves, single use, revoked by a
newer one); ``mail_outbox`` is the service's one durable mail queue, whose rows name what to send (a join-link
mail names its invitation) and never hold a token. Guests are users with the role ``guest`` (a string column: no
change to ``users``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_guest_links"
down_revision = "0006_append_only"
branch_labels = None
depends_on = None


def ts(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "join_links",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("invitation_id", sa.Integer, sa.ForeignKey("invitations.id", ondelete="CASCADE"), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
        ts("created_at"),
        ts("used_at", nullable=True),
        ts("revoked_at", nullable=True),
    )
    op.create_index("ix_join_links_invitation_id", "join_links", ["invitation_id"])
    op.create_table(
        "mail_outbox",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("recipient", sa.String(200), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False, server_default=""),
        sa.Column("body", sa.Text, nullable=False, server_default=""),
        sa.Column("invitation_id", sa.Integer, sa.ForeignKey("invitations.id", ondelete="CASCADE"), nullable=True),
        sa.Column("locale", sa.String(5), nullable=False, server_default=""),
        sa.Column("status", sa.String(20), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        ts("next_attempt_at"),
        ts("lease_until", nullable=True),
        sa.Column("claim_token", sa.String(32), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        ts("created_at"),
        ts("sent_at", nullable=True),
    )
    op.create_index("ix_mail_outbox_due", "mail_outbox", ["status", "next_attempt_at"])
    op.create_index("ix_mail_outbox_invitation_id", "mail_outbox", ["invitation_id"])


def downgrade() -> None:
    op.drop_index("ix_mail_outbox_invitation_id", table_name="mail_outbox")
    op.drop_index("ix_mail_outbox_due", table_name="mail_outbox")
    op.drop_table("mail_outbox")
    op.drop_index("ix_join_links_invitation_id", table_name="join_links")
    op.drop_table("join_links")
