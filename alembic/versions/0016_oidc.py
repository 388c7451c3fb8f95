"""OpenID Connect sign-in (issue 17, items 1-3): identities at providers linked to accounts, sign-ins sent to a
provider and not back yet, logout tokens already acted on, and what a session opened through a provider keeps
(provider, subject, sid, ID token, auth_time) for its sign-out, back-channel logout and fresh re-authentication.

Revision ID: 0016_oidc
Revises: 0015_staging_edition_to_confirm
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0016_oidc"
down_revision = "0015_staging_edition_to_confirm"
branch_labels = None
depends_on = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "oidc_identities",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("issuer", sa.String(300), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("linked_by", sa.String(20), nullable=False, server_default=""),
        _ts("created_at"),
        _ts("last_login_at", nullable=True),
        sa.UniqueConstraint("issuer", "subject", name="uq_oidc_identities_issuer_subject"),
    )
    op.create_index("ix_oidc_identities_user_id", "oidc_identities", ["user_id"])
    op.create_table(
        "oidc_authorizations",
        sa.Column("state_sha256", sa.String(64), primary_key=True),
        sa.Column("browser_sha256", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(40), nullable=False),
        sa.Column("nonce", sa.String(100), nullable=False),
        sa.Column("code_verifier", sa.String(128), nullable=False),
        sa.Column("next_url", sa.String(300), nullable=False, server_default="/meetings"),
        sa.Column("purpose", sa.String(20), nullable=False, server_default="login"),
        sa.Column("user_id", sa.Integer, nullable=True),
        _ts("created_at"),
    )
    op.create_index("ix_oidc_authorizations_created_at", "oidc_authorizations", ["created_at"])
    op.create_table(
        "oidc_logout_tokens",
        sa.Column("issuer", sa.String(300), primary_key=True),
        sa.Column("jti", sa.String(255), primary_key=True),
        _ts("expires_at"),
    )
    op.create_index("ix_oidc_logout_tokens_expires_at", "oidc_logout_tokens", ["expires_at"])
    with op.batch_alter_table("login_sessions") as batch:
        batch.add_column(sa.Column("oidc_provider", sa.String(40), nullable=False, server_default=""))
        batch.add_column(sa.Column("oidc_subject", sa.String(255), nullable=False, server_default=""))
        batch.add_column(sa.Column("oidc_sid", sa.String(255), nullable=False, server_default=""))
        batch.add_column(sa.Column("id_token", sa.Text, nullable=False, server_default=""))
        batch.add_column(_ts("auth_time", nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("login_sessions") as batch:
        for column in ("auth_time", "id_token", "oidc_sid", "oidc_subject", "oidc_provider"):
            batch.drop_column(column)
    op.drop_index("ix_oidc_logout_tokens_expires_at", "oidc_logout_tokens")
    op.drop_table("oidc_logout_tokens")
    op.drop_index("ix_oidc_authorizations_created_at", "oidc_authorizations")
    op.drop_table("oidc_authorizations")
    op.drop_index("ix_oidc_identities_user_id", "oidc_identities")
    op.drop_table("oidc_identities")
