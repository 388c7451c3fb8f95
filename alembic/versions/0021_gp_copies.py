"""The GP's and correspondents' copy of a signed fiche (issue 16, item 8): mails that carry a decision version.

``mail_outbox`` rows name the signed version they carry and its case (the case page shows each recipient's state);
one row per version and mailbox (a unique index), so a copy is queued once however often the signature's hooks run.

Revision ID: 0021_gp_copies
Revises: 0020_withdrawals
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0021_gp_copies"
down_revision = "0020_withdrawals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A batch copy of mail_outbox on SQLite (which cannot ALTER in a foreign key); no other table names it.
    with op.batch_alter_table("mail_outbox") as batch:
        batch.add_column(sa.Column("decision_version_id", sa.Integer, nullable=True))
        batch.add_column(sa.Column("case_id", sa.Integer, nullable=True))
        batch.create_foreign_key("fk_mail_outbox_decision_version", "decision_versions", ["decision_version_id"],
                                 ["id"], ondelete="RESTRICT")
    op.create_index("ix_mail_outbox_decision_version_id", "mail_outbox", ["decision_version_id"])
    op.create_index("ix_mail_outbox_case_id", "mail_outbox", ["case_id"])
    op.create_index("uq_mail_outbox_version_recipient", "mail_outbox", ["kind", "decision_version_id", "recipient"],
                    unique=True)


def downgrade() -> None:
    op.drop_index("uq_mail_outbox_version_recipient", table_name="mail_outbox")
    op.drop_index("ix_mail_outbox_case_id", table_name="mail_outbox")
    op.drop_index("ix_mail_outbox_decision_version_id", table_name="mail_outbox")
    with op.batch_alter_table("mail_outbox") as batch:
        batch.drop_constraint("fk_mail_outbox_decision_version", type_="foreignkey")
        batch.drop_column("case_id")
        batch.drop_column("decision_version_id")
