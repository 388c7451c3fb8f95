"""Bearer tokens for service accounts: made, listed and revoked by an operator (``rcp token ...``).

A bearer token is a password that a machine (an interface engine, a PACS bridge) sends with every call, with no
second factor and no browser around it, so it is confined (issue 13, finding 13):

- only accounts of role ``service`` get one: a token for an administrator or a person would be a credential that
  outlives their password, their sessions and their departure;
- it expires (90 days unless ``--days`` says otherwise), and an operator can revoke it at once;
- only its SHA-256 is stored, and ``rcp token list`` never shows it (it is printed once, when made).

Revocation and expiry are checked by the authentication backend (``rcp.auth.sessions.SessionBackend``), which
trusts a checked token for ``RCP_SESSION_CACHE_S`` at most (60 s at most): that is the delay a revocation takes.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rcp.auth.models import ApiToken, Role, User
from rcp.clock import utcnow

__all__ = ["DEFAULT_DAYS", "TokenInfo", "TokenRefused", "create_api_token", "list_tokens", "revoke_token",
           "token_digest"]

DEFAULT_DAYS = 90
#: A year at most: a token that must live longer is renewed, which proves someone still owns it.
MAX_DAYS = 366


class TokenRefused(ValueError):
    """The operator asked for something a token may not be; the message says what to do instead."""


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    username: str
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    revoked: bool


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_api_token(session: AsyncSession, user: User, name: str = "", *, days: int = DEFAULT_DAYS,
                           now: datetime | None = None) -> str:
    """A new bearer token for ``user`` (a service account), valid ``days``; only its digest is stored, so show it
    once."""
    if user.role != Role.service:
        raise TokenRefused(f"{user.username} is a {user.role} account: bearer tokens are for service accounts only "
                           "(create one with rcp user add NAME --role service)")
    if not 1 <= days <= MAX_DAYS:
        raise TokenRefused(f"a token lives 1 to {MAX_DAYS} days (got {days}); make a new one before it expires")
    assert user.id is not None
    token = "rcp_" + secrets.token_urlsafe(32)
    made = now or utcnow()
    session.add(ApiToken(user_id=user.id, name=name, token_sha256=token_digest(token), created_at=made,
                         expires_at=made + timedelta(days=days)))
    return token


async def list_tokens(session: AsyncSession) -> list[TokenInfo]:
    rows = (await session.exec(select(ApiToken, User).join(User, col(User.id) == col(ApiToken.user_id))
                               .order_by(col(ApiToken.id)))).all()
    return [TokenInfo(id=t.id or 0, name=t.name, username=u.username, created_at=t.created_at,
                      expires_at=t.expires_at, last_used_at=t.last_used_at, revoked=t.revoked) for t, u in rows]


async def revoke_token(session: AsyncSession, token_id: int) -> ApiToken:
    row = await session.get(ApiToken, token_id)
    if row is None:
        raise TokenRefused(f"no token {token_id} (rcp token list shows their ids)")
    row.revoked = True
    session.add(row)
    return row
