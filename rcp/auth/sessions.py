"""Who is calling: login sessions (signed cookie + server-side row), bearer tokens, sign-in throttling.

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
from datetime import datetime, timedelta
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from rcp.auth import audit
from rcp.auth.models import ApiToken, LoginSession, Role, User
from rcp.auth.passwords import hash_password, needs_rehash, verify_password
from rcp.auth.throttle import Backoff, Throttle, Throttled
from rcp.auth.tokens import create_api_token, token_digest
from rcp.clock import as_utc
from rcp.config import Settings
from rcp.db import Database
from rcp.i18n import N_
from rcp.metrics import LOGIN_FAILURES

__all__ = [
    "COOKIE_NAME",
    "CurrentUser",
    "LoginRefused",
    "SessionBackend",
    "check_password",
    "create_api_token",
    "end_session",
    "login",
    "open_session",
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
    #: The OpenID Connect provider that opened this session ("" for a password): a signature is confirmed there
    #: by a fresh login (rcp.auth.sso's ``/auth/oidc/{provider}/confirm``).
    provider: str = ""

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
            provider=session.oidc_provider if session else "",
        )


#: Fixed text (translated by the pages through gettext): it never says whether an account exists.
WRONG_CREDENTIALS = N_("Unknown user name or wrong password.")
#: The sign-in page's answer while a throttle makes the caller wait (the API answers 429 with Retry-After).
THROTTLED_MESSAGE = N_("Too many failed sign-ins: wait a moment, then try again.")

#: Sign-in throttling (rcp.auth.throttle), three keys counted at the start of each attempt:
#: - the account from one address: three free mistakes, then doubling waits (the guesser at one workstation);
#: - the address, whatever the account: ``RCP_SIGNIN_FREE_PER_ADDRESS`` free (30), then doubling (one password
#:   sprayed over many accounts);
#: - the account from anywhere: ten free, then doubling up to a minute (guesses spread over many addresses).
#: The physician at her own workstation shares only the last key with a guesser elsewhere, and it makes her wait a
#: minute at most: nobody can lock her out. Keys carry a digest of the user name, never the name.
PAIR_BACKOFF = Backoff()
ACCOUNT_BACKOFF = Backoff(free=10, cap_s=60.0)


class LoginRefused(Exception):
    """Sign-in failed; ``message`` is safe to show (it does not say whether the account exists)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def cookie_signer(settings: Settings) -> URLSafeSerializer:
    return URLSafeSerializer(settings.secret_key, salt="rcp.session")


def _login_keys(username: str, source: str, settings: Settings) -> list[tuple[str, Backoff]]:
    account = hashlib.sha256(username.encode()).hexdigest()[:32]
    return [(f"login:address:{source}", Backoff(free=settings.signin_free_per_address)), (f"login:account:{account}", ACCOUNT_BACKOFF),
            (f"login:pair:{account}:{source}", PAIR_BACKOFF)]


async def _count_attempt(throttle: Throttle, keys: list[tuple[str, Backoff]]) -> None:
    """Count this attempt under every key, or raise :class:`Throttled` having counted it under none."""
    counted: list[str] = []
    try:
        for key, backoff in keys:
            await throttle.begin(key, backoff)
            counted.append(key)
    except Throttled:
        for key in counted:
            await throttle.refund(key)
        raise


def session_digest(session_id: str) -> str:
    """How a session is named outside this node (the room's revocation messages): its id is a credential, the
    digest is not."""
    return hashlib.sha256(b"rcp.session:" + session_id.encode()).hexdigest()


async def check_password(
    session: AsyncSession, settings: Settings, *, username: str, password: str, source: str, throttle: Throttle
) -> User:
    """The account whose password this is (sign-in's first step); every refusal is audited (DCM 110114, or 110113
    throttled).

    The attempt is counted by ``throttle`` before anything is looked up (parallel guesses cannot outrun the count);
    a throttled attempt raises :class:`Throttled` (429, nothing checked). Unknown, deactivated, password-less and
    guest accounts are checked against a dummy hash at the same cost and refused with the same
    :class:`LoginRefused` as a wrong password, so neither the answer nor the work tells them apart. argon2 runs in
    the thread pool: a flood of sign-ins never stalls the event loop (and the rooms on it).

    A refusal commits its audit event before raising: the caller's unit of work rolls back on the exception, and
    the trace of an attack must not go with it. The second factor (rcp.auth.totp) is the caller's next step.
    """
    name = username.strip()
    keys = _login_keys(name, source, settings)
    user = (await session.exec(select(User).where(User.username == name))).first()
    try:
        await _count_attempt(throttle, keys)
    except Throttled:
        LOGIN_FAILURES.labels(reason="throttled").inc()
        await audit.record(session, event="security_alert", action="E", outcome=8, source=source,
                           what="login refused: too many failed attempts"
                                + (f" for user {user.id}" if user is not None else ""))
        await session.commit()
        raise
    cost = settings.argon2
    usable = user is not None and user.active and bool(user.password_hash) and user.role != Role.guest
    digest = user.password_hash if usable and user is not None else ""
    if not await run_in_threadpool(verify_password, digest, password, cost) or not usable or user is None:
        LOGIN_FAILURES.labels(reason="credentials").inc()
        await audit.record(session, event="user_authentication", action="E", outcome=4, source=source,
                           what="login refused" if user is None else f"wrong password for user {user.id}")
        await session.commit()
        raise LoginRefused(WRONG_CREDENTIALS)
    address_key, account_key, pair_key = (key for key, _ in keys)
    await throttle.refund(address_key)  # the address keeps the count of its failures, not of its sign-ins
    await throttle.succeeded(account_key)
    await throttle.succeeded(pair_key)
    if needs_rehash(user.password_hash, cost):
        user.password_hash = await run_in_threadpool(hash_password, password, cost)
        session.add(user)
    return user


async def open_session(session: AsyncSession, settings: Settings, user: User, *, source: str,
                       how: str = "password") -> LoginSession:
    """A fresh session (new id: no fixation) for ``user``, whose sign-in is complete; audited as a login, ``how``
    naming the factors ("password and TOTP")."""
    assert user.id is not None
    now = settings.clock.now()
    row = LoginSession(id=secrets.token_urlsafe(32), user_id=user.id, csrf_token=secrets.token_urlsafe(32),
                       created_at=now, last_seen_at=now, source=source[:64])
    session.add(row)
    await audit.record(session, event="user_authentication", action="E", outcome=0, source=source,
                       user=CurrentUser.of(user, via="session"), what=f"login ({how})")
    return row


async def login(
    session: AsyncSession, settings: Settings, *, username: str, password: str, source: str, throttle: Throttle
) -> tuple[User, LoginSession]:
    """Password only, then a session: for accounts whose second factor an administrator relaxed (callers check
    ``User.second_factor_required`` first: rcp.auth.routes)."""
    user = await check_password(session, settings, username=username, password=password, source=source,
                                throttle=throttle)
    return user, await open_session(session, settings, user, source=source)


async def end_session(session: AsyncSession, session_id: str) -> None:
    row = await session.get(LoginSession, session_id)
    if row is not None:
        await session.delete(row)


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
        #: key -> (when checked, monotonic; the caller; when its credential expires, for bearer tokens)
        self._recent: dict[str, tuple[float, CurrentUser, datetime | None]] = {}

    def forget(self, key: str) -> None:
        """Drop a cached session (after logout) so that it is refused from the next request on."""
        self._recent.pop(key, None)

    def forget_where(self, *, session: str = "", user_id: int | None = None) -> None:
        """Drop the cached sessions named by a revocation from another node (``session``: a :func:`session_digest`;
        ``user_id``: every session and token of that account), so that a logout there is refused here from the
        next request on, not only once ``session_cache_s`` has passed."""
        if not session and user_id is None:
            return
        for key, (_at, user, _expires) in list(self._recent.items()):
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
        return None if found is None else found[1]

    def _cached(self, key: str) -> CurrentUser | None:
        """A session or token checked less than ``settings.session_cache_s`` ago.

        The viewer fetches hundreds of frames a second; two queries per frame would cap it far below the PACS.
        A session ended on this node (logout) is forgotten at once; one ended on another node, or a bearer token
        revoked (``rcp token revoke``), dies within the cache delay (at most ``MAX_SESSION_CACHE_S``); an expired
        token is refused from its expiry on, cached or not.
        """
        hit = self._recent.get(key)
        if hit is None:
            return None
        checked, user, expires = hit
        if time.monotonic() - checked > self.settings.session_cache_s or (
                expires is not None and self.settings.clock.now() >= as_utc(expires)):
            del self._recent[key]
            return None
        return user

    def _remember(self, key: str, user: CurrentUser, expires: datetime | None) -> None:
        if len(self._recent) > 10_000:  # bounded: stale entries are swept when it grows
            now = time.monotonic()
            self._recent = {k: v for k, v in self._recent.items() if now - v[0] <= self.settings.session_cache_s}
        self._recent[key] = (time.monotonic(), user, expires)

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
        credentials, user, expires = found
        if self.settings.session_cache_s > 0:
            self._remember(key, user, expires)
        return credentials, user

    async def _from_token(self, db: Database, token: str
                          ) -> tuple[AuthCredentials, CurrentUser, datetime | None] | None:
        """A service account's token, neither revoked nor expired (``rcp.auth.tokens``)."""
        now = self.settings.clock.now()
        async with db.session() as session:
            found = (
                await session.exec(
                    select(ApiToken, User)
                    .join(User, col(ApiToken.user_id) == col(User.id))
                    .where(ApiToken.token_sha256 == token_digest(token), col(ApiToken.revoked).is_(False))
                )
            ).first()
            if found is None:
                return None
            row, user = found
            if not user.active or user.role != Role.service or now >= as_utc(row.expires_at):
                return None
            if row.last_used_at is None or now - as_utc(row.last_used_at) > _TOUCH_EVERY:
                row.last_used_at = now
                session.add(row)
            return AuthCredentials(["authenticated"]), CurrentUser.of(user, via="token"), row.expires_at

    async def _from_cookie(self, db: Database, cookie: str
                           ) -> tuple[AuthCredentials, CurrentUser, datetime | None] | None:
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
            return AuthCredentials(["authenticated"]), CurrentUser.of(user, via="session", session=row), None
