"""Patient identity per the national identity rules (RNIV): used name, first given name, INSEE birthplace code,
identity status with who set it, when and from which document, the identity attributes, and the OID of each
identifier's assigning authority.

Existing patients migrate as **provisional**: the service never recorded which identity document (justificatif)
was seen, nor who checked it, and the RNIV allows "validated" only after a high-trust document has been checked;
"qualified" needs the INSi service, which the service cannot reach. Their INS therefore stops leaving the service
(documents carry the IPP) until the hospital's identity server sends the identity qualified (ADT), or a
coordinator validates it with the document seen. Existing INS rows get the INS-NIR OID (.8), the only one the
service accepted until now.

Revision ID: 0011_patient_identity
Revises: 0010_tokens_expire_no_lockout
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0011_patient_identity"
down_revision = "0010_tokens_expire_no_lockout"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("patients") as batch:
        batch.add_column(sa.Column("used_name", sa.String(100), nullable=False, server_default=""))
        batch.add_column(sa.Column("first_given_name", sa.String(100), nullable=False, server_default=""))
        batch.add_column(sa.Column("birth_place_code", sa.String(5), nullable=False, server_default=""))
        batch.add_column(sa.Column("identity_status", sa.String(12), nullable=False, server_default="provisional"))
        batch.add_column(sa.Column("identity_status_by", sa.String(100), nullable=False, server_default=""))
        batch.add_column(sa.Column("identity_status_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("identity_document", sa.String(40), nullable=False, server_default=""))
        batch.add_column(sa.Column("identity_attributes", sa.JSON, nullable=False, server_default="[]"))
    with op.batch_alter_table("patient_identifiers") as batch:
        batch.add_column(sa.Column("assigner_oid", sa.String(64), nullable=False, server_default=""))
    op.execute("UPDATE patient_identifiers SET assigner_oid = '1.2.250.1.213.1.4.8' WHERE system = 'INS-NIR'")


def downgrade() -> None:
    with op.batch_alter_table("patient_identifiers") as batch:
        batch.drop_column("assigner_oid")
    with op.batch_alter_table("patients") as batch:
        for column in ("identity_attributes", "identity_document", "identity_status_at", "identity_status_by",
                       "identity_status", "birth_place_code", "first_given_name", "used_name"):
            batch.drop_column(column)
