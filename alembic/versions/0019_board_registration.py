"""Board registration (issue 16, item 1): establishments by FINESS, with their regional cancer network and 3C, and
on each board its establishment, its national RCP identifier and the "RCP de recours" and paediatric flags.

Existing boards get no establishment and no national identifier: the fiche RCP writes those ids with nullFlavor
UNK until the board's coordinator fills them in on the board's charter page (never an invented number).

Revision ID: 0019_board_registration
Revises: 0018_second_factor
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0019_board_registration"
down_revision = "0018_second_factor"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "establishments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("finess", sa.String(9), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("facility_type", sa.String(8), nullable=False, server_default="SA01"),
        sa.Column("regional_network_id", sa.String(20), nullable=False, server_default=""),
        sa.Column("regional_network_name", sa.String(100), nullable=False, server_default=""),
        sa.Column("coordination_centre_id", sa.String(20), nullable=False, server_default=""),
        sa.Column("coordination_centre_name", sa.String(100), nullable=False, server_default=""),
        sa.Column("custodian_finess", sa.String(9), nullable=False, server_default=""),
        sa.Column("custodian_name", sa.String(200), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    # Plain ADD COLUMN, never a batch copy of ``boards`` (meetings name it in their foreign keys; see 0013). SQLite
    # takes the reference inline (a column with a NULL default may carry one); alembic would ask for a batch copy.
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE boards ADD COLUMN establishment_id INTEGER "
                   "REFERENCES establishments (id) ON DELETE SET NULL")
    else:
        op.add_column("boards", sa.Column("establishment_id", sa.Integer,
                                          sa.ForeignKey("establishments.id", ondelete="SET NULL"), nullable=True))
    op.create_index("ix_boards_establishment_id", "boards", ["establishment_id"])
    op.add_column("boards", sa.Column("national_id", sa.String(20), nullable=False, server_default=""))
    op.add_column("boards", sa.Column("referral", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("boards", sa.Column("paediatric", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN in place (SQLite 3.35+, PostgreSQL), for the same reason.
    op.execute("ALTER TABLE boards DROP COLUMN paediatric")
    op.execute("ALTER TABLE boards DROP COLUMN referral")
    op.execute("ALTER TABLE boards DROP COLUMN national_id")
    op.drop_index("ix_boards_establishment_id", table_name="boards")
    op.execute("ALTER TABLE boards DROP COLUMN establishment_id")
    op.drop_table("establishments")
