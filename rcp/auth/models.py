"""Tables of the auth domain: users, login sessions, service tokens, the audit trail."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from rcp.clock import utcnow
from rcp.db import timestamp
from rcp.people import PersonName

__all__ = ["ApiToken", "AuditEvent", "AuditForwarding", "LoginSession", "OidcAuthorization", "OidcIdentity",
           "OidcLogoutToken", "RecoveryCode", "Role", "TotpCredential", "User"]



class Role(StrEnum):
    coordinator = "coordinator"
    clinician = "clinician"
    admin = "admin"
    #: A machine account (interface engine, PACS bridge) that authenticates with a bearer token.
    service = "service"
    #: An external physician invited to a meeting (name, address, specialty, given by the coordinator): no password,
    #: enters only through the personal link mailed for one invitation, never signs (``rcp.auth.links``).
    guest = "guest"


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(sa_column=sa.Column(sa.String(80), unique=True, nullable=False, index=True))
    #: The person's name in parts, the one source of every way it is written (``person_name``: pages, the fiche
    #: and its PDF, HL7 XCN, FHIR Practitioner). Empty family name: a service account, named by its username.
    family_name: str = Field(default="", max_length=100)
    given_name: str = Field(default="", max_length=100)
    #: Title of practice: "Dr", "Pr" or "" (``rcp.people.PREFIXES``).
    prefix: str = Field(default="", max_length=10)
    #: RPPS number (11 digits, Luhn key: ``rcp.people.check_rpps``) when known, else "".
    rpps: str = Field(default="", max_length=11)
    #: The name could not be split into family and given names when the columns were introduced (migration
    #: 0013): ``family_name`` holds it whole, as typed, until someone completes it; such an account cannot sign.
    name_to_check: bool = Field(default=False)
    role: str = Field(default=Role.clinician, max_length=20)
    specialty: str = Field(default="", max_length=40)
    hospital: str = Field(default="", max_length=200)
    email: str = Field(default="", max_length=200)
    #: "fr", "en" or "" to follow the browser's Accept-Language.
    locale: str = Field(default="", max_length=5)
    password_hash: str = Field(default="", max_length=200)
    active: bool = Field(default=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp(nullable=False))
    #: A local sign-in asks for a second factor (rcp.auth.totp) unless an administrator relaxed it for an account
    #: that never signs; such an account cannot sign (rcp.auth.reauth).
    second_factor_required: bool = Field(default=True, sa_column=sa.Column(sa.Boolean, nullable=False,
                                                                           server_default=sa.true()))
    #: Set by an administrator's password reset: the next sign-in asks for a new password before anything else.
    must_change_password: bool = Field(default=False, sa_column=sa.Column(sa.Boolean, nullable=False,
                                                                          server_default=sa.false()))

    def __init__(self, **data: Any) -> None:
        # SQLModel drops unknown keywords silently: a caller still passing the old column would lose the name.
        if "display_name" in data:
            raise TypeError("User has no display_name column since migration 0013: give family_name, given_name "
                            "and prefix (rcp.people.PersonName)")
        super().__init__(**data)

    @property
    def person_name(self) -> PersonName:
        """The name as every page and document writes it (a service account without one: its username)."""
        if not self.family_name.strip():
            return PersonName(family=self.username or "?", unsplit=True)
        return PersonName(family=self.family_name, given=self.given_name, prefix=self.prefix,
                          unsplit=self.name_to_check)

    @property
    def name_incomplete(self) -> bool:
        """A person's account whose name is flagged "to check" or missing: pages say "name to complete", and it
        cannot sign (a service account is named by its username and needs no more)."""
        return self.name_to_check or (not self.family_name.strip() and self.role != Role.service)

    @property
    def display_name(self) -> str:
        """``person_name.display()``: "Dr Amélie ROUSSEAU" (derived, never stored)."""
        return self.person_name.display()


class LoginSession(SQLModel, table=True):
    """A server-side session: the cookie only carries its signed random id, so logout really ends it."""

    __tablename__ = "login_sessions"

    id: str = Field(sa_column=sa.Column(sa.String(64), primary_key=True))
    user_id: int = Field(sa_column=sa.Column(sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True))
    csrf_token: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp(nullable=False))
    last_seen_at: datetime = Field(default_factory=utcnow, sa_column=timestamp(nullable=False))
    source: str = Field(default="", max_length=64)
    #: Set for a session opened by a join link: it reaches that one meeting and nothing else.
    meeting_scope: int | None = Field(default=None, sa_column=sa.Column(sa.Integer, nullable=True))
    #: For a session opened through an OpenID Connect provider (rcp.auth.oidc): the provider's name, the person's
    #: subject and the provider's session id (``sid``), which its back-channel logout names; the ID token, sent back
    #: as ``id_token_hint`` at sign-out; and when the person last authenticated at the provider (``auth_time``).
    oidc_provider: str = Field(default="", max_length=40)
    oidc_subject: str = Field(default="", max_length=255)
    oidc_sid: str = Field(default="", max_length=255)
    id_token: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False, server_default=""))
    auth_time: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))
    #: Until when this session may sign without re-authenticating (rcp.auth.reauth's signing window).
    signing_until: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))


class TotpCredential(SQLModel, table=True):
    """An account's authenticator (RFC 6238): its secret encrypted (rcp.auth.totp.SecretBox), active once a first
    code confirmed it, and the last time step accepted (a code is used once)."""

    __tablename__ = "totp_credentials"

    user_id: int = Field(sa_column=sa.Column(sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True))
    secret_enc: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp(nullable=False))
    confirmed_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))
    last_step: int = Field(default=0, sa_column=sa.Column(sa.BigInteger, nullable=False, server_default="0"))


class RecoveryCode(SQLModel, table=True):
    """One single-use recovery code: its first four characters in clear (to find the row), the code's argon2id hash."""

    __tablename__ = "recovery_codes"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(sa_column=sa.Column(sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True))
    selector: str = Field(max_length=4)
    code_hash: str = Field(max_length=200)
    used_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))


class ApiToken(SQLModel, table=True):
    """Bearer tokens for service accounts (role ``service`` only); only a SHA-256 of the token is kept. A token is
    refused once revoked or past ``expires_at`` (``rcp token create --days N``, ``rcp token revoke ID``)."""

    __tablename__ = "api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(sa_column=sa.Column(sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True))
    name: str = Field(default="", max_length=100)
    token_sha256: str = Field(sa_column=sa.Column(sa.String(64), unique=True, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp(nullable=False))
    expires_at: datetime = Field(sa_column=timestamp(nullable=False))
    #: Written at most once a minute (``rcp token list`` shows it, to spot tokens nobody uses any more).
    last_used_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))
    revoked: bool = Field(default=False)


class AuditEvent(SQLModel, table=True):
    """One line of the audit trail, shaped after DICOM PS3.15 A.5 (IHE ATNA) audit messages."""

    __tablename__ = "audit_events"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_column=timestamp(nullable=False, index=True))
    #: EventID code from DCM (e.g. "110110" Patient Record) — see rcp.auth.audit.EVENTS.
    event_code: str = Field(max_length=10)
    #: EventActionCode: C create, R read, U update, D delete, E execute.
    action: str = Field(max_length=1)
    #: EventOutcomeIndicator: 0 success, 4 minor failure, 8 serious failure, 12 major failure.
    outcome: int = Field(default=0)
    user_id: int | None = Field(default=None, sa_column=sa.Column(sa.Integer, nullable=True, index=True))
    username: str = Field(default="", max_length=80)
    source: str = Field(default="", max_length=64)
    patient_id: int | None = Field(default=None, sa_column=sa.Column(sa.Integer, nullable=True, index=True))
    meeting_id: int | None = Field(default=None, sa_column=sa.Column(sa.Integer, nullable=True))
    #: What was touched, in the service's own identifiers ("case 12", "study 1.2.3") — never patient data.
    what: str = Field(default="", max_length=300)


class AuditForwarding(SQLModel, table=True):
    """How far the audit trail has been sent to a SIEM (rcp.auth.siem): one row per syslog URL."""

    __tablename__ = "audit_forwarding"

    url: str = Field(sa_column=sa.Column(sa.String(300), primary_key=True))
    #: The last ``audit_events.id`` the SIEM has received (events are sent in id order).
    last_event_id: int = Field(default=0)
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp(nullable=False))


class OidcIdentity(SQLModel, table=True):
    """A person at an OpenID Connect provider (issuer + subject, OIDC Core §5.7: the only stable pair) -> an account.

    Made at a first sign-in, from the RPPS number the provider vouches for or from the join link that person used;
    never from an e-mail address (rcp.auth.oidc).
    """

    __tablename__ = "oidc_identities"
    __table_args__ = (sa.UniqueConstraint("issuer", "subject", name="uq_oidc_identities_issuer_subject"),)

    id: int | None = Field(default=None, primary_key=True)
    issuer: str = Field(max_length=300)
    subject: str = Field(max_length=255)
    user_id: int = Field(sa_column=sa.Column(sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True))
    #: How the link was made: ``rpps`` or ``join_link``.
    linked_by: str = Field(default="", max_length=20)
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp(nullable=False))
    last_login_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))


class OidcAuthorization(SQLModel, table=True):
    """A sign-in sent to a provider and not back yet: single use, bound to the browser that started it, short-lived.

    Only digests of ``state`` and of the browser's binding cookie are kept (they are credentials for one callback).
    """

    __tablename__ = "oidc_authorizations"

    state_sha256: str = Field(sa_column=sa.Column(sa.String(64), primary_key=True))
    browser_sha256: str = Field(max_length=64)
    provider: str = Field(max_length=40)
    nonce: str = Field(max_length=100)
    code_verifier: str = Field(max_length=128)
    next_url: str = Field(default="/meetings", max_length=300)
    #: ``login``, or ``reauth`` (a fresh authentication before signing: prompt=login, max_age=0).
    purpose: str = Field(default="login", max_length=20)
    #: For ``reauth``: whose session asked (the provider must vouch for that same person).
    user_id: int | None = Field(default=None, sa_column=sa.Column(sa.Integer, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp(nullable=False, index=True))


class OidcLogoutToken(SQLModel, table=True):
    """The ``jti`` of back-channel logout tokens already acted on (OIDC Back-Channel Logout 1.0 §2.6: a replay is
    refused); kept until the token would be too old anyway."""

    __tablename__ = "oidc_logout_tokens"

    issuer: str = Field(sa_column=sa.Column(sa.String(300), primary_key=True))
    jti: str = Field(sa_column=sa.Column(sa.String(255), primary_key=True))
    expires_at: datetime = Field(sa_column=timestamp(nullable=False, index=True))
