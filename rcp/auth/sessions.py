"""Who is calling: login sessions (signed cookie + server-side row), bearer tokens, lock-out.

The cookie carries only a signed random session id; the row holds the CSRF token and the timestamps that enforce
the idle and absolute timeouts. A new id is issued at every login (no session fixation), and logout deletes the
row, so a copied cookie dies with it.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser
from starlette.requests import HTTPConnection

from rcp.auth import audit
from rcp.auth.models import ApiToken, LoginSession, Role, User
from rcp.auth.passwords import hash_password, needs_rehash, verify_password
from rcp.clock import as_utc
from rcp.config import Settings
from rcp.db import Database
from rcp.i18n import N_

__all__ = [
    "COOKIE_NAME",
    "CurrentUser",
    "LoginRefused",
    "SessionBackend",
    "create_api_token",
    "end_session",
    "login",
    "session_digest",
]

logger = logging.getLogger(__name__)

COOKIE_NAME = "rcp_session"
#: Writing last_seen_at on every request would serialise SQLite; a minute's precision is enough for idle time.
_TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class CurrentUser(BaseUser):
    """The authenticated caller, detached from the database session that loaded it."""

    id: int
    username: str
    name: str
    role: str
    specialty: str
    hospital: str
    locale: str
    #: "session" (browser, CSRF applies) or "token" (service account bearer token).
    via: str
    session_id: str = ""
    csrf_token: str = ""
    #: A join-link session reaches only this meeting.
    meeting_scope: int | None = None

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_guest(self) -> bool:
        """An external physician (role ``guest``) or any session opened by a join link: confined to one meeting,
        shown as a guest, never a signer (``rcp.auth.links``)."""
        return self.role == Role.guest or self.meeting_scope is not None

    @property
    def display_name(self) -> str:
        return self.name or self.username

    @property
    def identity(self) -> str:
        return str(self.id)

    @classmethod
    def of(cls, user: User, *, via: str, session: LoginSession | None = None) -> CurrentUser:
        assert user.id is not None
        return cls(
            id=user.id,
            username=user.username,
            name=user.display_name,
            role=user.role,
            specialty=user.specialty,
            hospital=user.hospital,
            locale=user.locale,
            via=via,
            session_id=session.id if session else "",
            csrf_token=session.csrf_token if session else "",
            meeting_scope=session.meeting_scope if session else None,
        )


#: Fixed texts (translated by the pages through gettext); they never say whether an account exists, except
#: that a locked one is locked, which an attacker learns anyway from the refusals.
WRONG_CREDENTIALS = N_("Unknown user name or wrong password.")
LOCKED_MESSAGE = N_("Too many failed sign-ins: this account is locked for a while. Try again later or ask an "
                    "administrator to unlock it.")


class LoginRefused(Exception):
    """Sign-in failed; ``message`` is safe to show (it does not say whether the account exists)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def cookie_signer(settings: Settings) -> URLSafeSerializer:
    return URLSafeSerializer(settings.secret_key, salt="rcp.session")


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def session_digest(session_id: str) -> str:
    """How a session is named outside this node (the room's revocation messages): its id is a credential, the
    digest is not."""
    return hashlib.sha256(b"rcp.session:" + session_id.encode()).hexdigest()


async def login(
    session: AsyncSession, settings: Settings, *, username: str, password: str, source: str
) -> tuple[User, LoginSession]:
    """Check the password, apply lock-out, open a fresh session; every attempt is audited (DCM 110114).

    A refused attempt commits its audit event and failure count before ``LoginRefused`` is raised: the caller's
    unit of work rolls back on the exception, and the trace of an attack must not go with it.
    """
    now = settings.clock.now()
    cost = settings.argon2
    user = (await session.exec(select(User).where(User.username == username.strip()))).first()
    generic = WRONG_CREDENTIALS
    if user is None or not user.active or not user.password_hash or user.role == Role.guest:
        verify_password("", password, cost)  # same cost as a real check
        await audit.record(session, event="user_authentication", action="E", outcome=4, source=source,
                           what="login refused")
        await session.commit()
        raise LoginRefused(generic)
    if user.locked_until is not None and as_utc(user.locked_until) > now:
        await audit.record(session, event="security_alert", action="E", outcome=8, user=None, source=source,
                           what=f"login attempt on locked account {user.id}")
        await session.commit()
        raise LoginRefused(LOCKED_MESSAGE)
    if not verify_password(user.password_hash, password, cost):
        user.failed_logins += 1
        locked = user.failed_logins >= settings.lockout_attempts
        if locked:
            user.locked_until = now + timedelta(seconds=settings.lockout_s)
            user.failed_logins = 0
            logger.warning("account %s locked after repeated failed sign-ins", user.id)
        session.add(user)
        await audit.record(session, event="user_authentication", action="E", outcome=4, source=source,
                           what=f"wrong password for user {user.id}" + (" (now locked)" if locked else ""))
        await session.commit()
        raise LoginRefused(generic)
    user.failed_logins = 0
    user.locked_until = None
    if needs_rehash(user.password_hash, cost):
        user.password_hash = hash_password(password, cost)
    session.add(user)
    assert user.id is not None
    row = LoginSession(id=secrets.token_urlsafe(32), user_id=user.id, csrf_token=secrets.token_urlsafe(32),
                       created_at=now, last_seen_at=now, source=source[:64])
    session.add(row)
    await audit.record(session, event="user_authentication", action="E", outcome=0, source=source,
                       user=CurrentUser.of(user, via="session"), what="login")
    return user, row


async def end_session(session: AsyncSession, session_id: str) -> None:
    row = await session.get(LoginSession, session_id)
    if row is not None:
        await session.delete(row)


async def create_api_token(session: AsyncSession, user: User, name: str = "") -> str:
    """A new bearer token for a service account; only its digest is stored, so show it once."""
    assert user.id is not None
    token = "rcp_" + secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, name=name, token_sha256=token_digest(token)))
    return token


async def _scope_open(session: AsyncSession, meeting_id: int, user_id: int | None) -> bool:
    """A join-link session lives while its meeting is open and its invitation stands (rcp.auth.links)."""
    # auth sits below scheduling (DESIGN §2): read its tables here, import nothing of its logic.
    from rcp.scheduling.models import Invitation, Meeting, MeetingStatus

    meeting = await session.get(Meeting, meeting_id)
    if meeting is None or meeting.status in {MeetingStatus.closed, MeetingStatus.cancelled}:
        return False
    invited = await session.exec(select(Invitation.id).where(Invitation.meeting_id == meeting_id,
                                                             Invitation.user_id == user_id))
    return invited.first() is not None


class SessionBackend(AuthenticationBackend):
    """Starlette authentication backend: a bearer token, else the session cookie, else anonymous."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.signer = cookie_signer(settings)
        self._recent: dict[str, tuple[float, CurrentUser]] = {}

    def forget(self, key: str) -> None:
        """Drop a cached session (after logout) so that it is refused from the next request on."""
        self._recent.pop(key, None)

    def forget_where(self, *, session: str = "", user_id: int | None = None) -> None:
        """Drop the cached sessions named by a revocation from another node (``session``: a :func:`session_digest`;
        ``user_id``: every session and token of that account), so that a logout there is refused here from the
        next request on, not only once ``session_cache_s`` has passed."""
        if not session and user_id is None:
            return
        for key, (_at, user) in list(self._recent.items()):
            if (session and user.session_id and session_digest(user.session_id) == session) or user.id == user_id:
                self._recent.pop(key, None)

    def forget_revoked(self, revocation: Any) -> None:
        """A revocation heard on the room bus (rcp.room.revocation.Revocation: ``session``, ``user_id``)."""
        self.forget_where(session=str(getattr(revocation, "session", "") or ""),
                          user_id=getattr(revocation, "user_id", None))

    async def verify(self, db: Database, *, authorization: str = "", cookie: str = "") -> CurrentUser | None:
        """Who these credentials name *now*, from the database and never the cache (None: signed out, expired,
        deactivated, revoked). The room asks it again while a socket runs (rcp.room.revocation); like a request, it
        counts as activity for the idle timeout."""
        if authorization.lower().startswith("bearer "):
            found = await self._from_token(db, authorization[7:].strip())
        elif cookie:
            found = await self._from_cookie(db, cookie)
        else:
            return None
        if found is None:
            return None
        assert isinstance(found[1], CurrentUser)
        return found[1]

    def _cached(self, key: str) -> CurrentUser | None:
        """A session or token checked less than ``settings.session_cache_s`` ago.

        The viewer fetches hundreds of frames a second; two queries per frame would cap it far below the PACS.
        A session ended on this node (logout) is forgotten at once; one ended on another node dies within the
        cache delay.
        """
        hit = self._recent.get(key)
        if hit is None:
            return None
        if time.monotonic() - hit[0] > self.settings.session_cache_s:
            del self._recent[key]
            return None
        return hit[1]

    def _remember(self, key: str, user: CurrentUser) -> None:
        if len(self._recent) > 10_000:  # bounded: stale entries are swept when it grows
            now = time.monotonic()
            self._recent = {k: v for k, v in self._recent.items() if now - v[0] <= self.settings.session_cache_s}
        self._recent[key] = (time.monotonic(), user)

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        db: Database = conn.app.state.db
        header = conn.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            key = "token:" + token_digest(header[7:].strip())
            lookup = self._from_token(db, header[7:].strip())
        elif cookie := conn.cookies.get(COOKIE_NAME):
            key = "cookie:" + cookie
            lookup = self._from_cookie(db, cookie)
        else:
            return None
        cached = self._cached(key)
        if cached is not None:
            lookup.close()
            return AuthCredentials(["authenticated"]), cached
        found = await lookup
        if found is None:
            return None
        assert isinstance(found[1], CurrentUser)
        if self.settings.session_cache_s > 0:
            self._remember(key, found[1])
        return found

    async def _from_token(self, db: Database, token: str) -> tuple[AuthCredentials, BaseUser] | None:
        async with db.session() as session:
            found = (
                await session.exec(
                    select(User)
                    .join(ApiToken, col(ApiToken.user_id) == col(User.id))
                    .where(ApiToken.token_sha256 == token_digest(token), col(ApiToken.revoked).is_(False))
                )
            ).first()
            if found is None or not found.active:
                return None
            return AuthCredentials(["authenticated"]), CurrentUser.of(found, via="token")

    async def _from_cookie(self, db: Database, cookie: str) -> tuple[AuthCredentials, BaseUser] | None:
        try:
            session_id = self.signer.loads(cookie)
        except BadSignature:
            return None
        if not isinstance(session_id, str):
            return None
        now = self.settings.clock.now()
        async with db.session() as session:
            row = await session.get(LoginSession, session_id)
            if row is None:
                return None
            idle = now - as_utc(row.last_seen_at)
            age = now - as_utc(row.created_at)
            if idle.total_seconds() > self.settings.session_idle_s or age.total_seconds() > self.settings.session_absolute_s:
                await session.delete(row)
                return None
            user = await session.get(User, row.user_id)
            if user is None or not user.active:
                return None
            if row.meeting_scope is not None and not await _scope_open(session, row.meeting_scope, user.id):
                await session.delete(row)  # a guest's session ends with its meeting or its invitation
                return None
            if idle > _TOUCH_EVERY:
                row.last_seen_at = now
                session.add(row)
            return AuthCredentials(["authenticated"]), CurrentUser.of(user, via="session", session=row)
