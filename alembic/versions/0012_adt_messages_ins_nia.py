"""The ADT messages already applied (``adt_messages``: sender and MSH-10, so a resent message is acknowledged and
not applied twice), and the NIA stored under its own system.

An INS with the NIA's OID (1.2.250.1.213.1.4.9) was stored as system ``INS-NIR``; it becomes ``INS-NIA``, the
identifier type FR Core and IHE PAM France give it (table 0203), so that no writer can call an NIA a NIR.

Revision ID: 0012_adt_messages_ins_nia
Revises: 0011_patient_identity
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0012_adt_messages_ins_nia"
down_revision = "0011_patient_identity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "adt_messages",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sender", sa.String(200), nullable=False),
        sa.Column("control_id", sa.String(199), nullable=False),
        sa.Column("event", sa.String(3), nullable=False, server_default=""),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("sender", "control_id", name="uq_adt_message_sender_control_id"),
    )
    op.execute("UPDATE patient_identifiers SET system = 'INS-NIA' "
               "WHERE system = 'INS-NIR' AND assigner_oid = '1.2.250.1.213.1.4.9'")


def downgrade() -> None:
    op.execute("UPDATE patient_identifiers SET system = 'INS-NIR' WHERE system = 'INS-NIA'")
    op.drop_table("adt_messages")
