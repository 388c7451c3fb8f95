"""Re-authentication before a medical act, and the five-minute signing window it opens (issue 13 finding 8, issue 17).

A signature or an amendment of a decision is a medical act done in a physician's name; the session alone (a
workstation left open, a copied cookie) is not enough, so :func:`reauthenticate` asks for strong proof again:
the password **and** the second factor (a TOTP code or a recovery code: rcp.auth.totp), or a fresh login at the
identity provider (rcp.auth.oidc, which calls :func:`open_signing_window` itself). One such proof opens a
**signing window** of :data:`SIGNING_WINDOW` for that session: signing the fiches of a meeting one after the other
does not take one code per fiche. The window is server-side (``LoginSession.signing_until``), bound to the session
that proved it (another browser of the same physician has none), read from ``Settings.clock`` (tests move time),
and ends with the session (logout, expiry). An account whose second factor an administrator relaxed never
re-authenticates, so it never signs.

The API, for every caller (the minutes' sign and amend routes; the OIDC step-up):

- ``await reauthenticate(request, user, password, code=..., act="signature of case 12")`` — returns when the
  session's window is open or the proof is right (and then opens the window); raises otherwise;
- ``await open_signing_window(db, session_id, settings)`` — after another strong proof (a fresh OIDC login with
  ``prompt=login``/``max_age=0`` checked through ``auth_time``): the window opens as after a password and a code;
- ``await signing_window(db, session_id, settings)`` — until when the window is open (None: closed), for pages
  that decide whether to ask for the proof first.

It must not become a password or code oracle for whoever holds a session:

- the check is throttled per account with growing delays (rcp.auth.throttle), counted before the hash is checked;
  the code has its own throttle key (rcp.auth.totp);
- argon2 runs in the thread pool, never on the event loop (a burst of guesses would stall every room);
- every refusal, whatever its reason (wrong password, wrong or missing code, account without password or
  deactivated or with the second factor relaxed), has the same status and message (:class:`ReauthenticationFailed`),
  and callers run their own rules *before* calling it (rcp.minutes.store's ``confirm``), so that the answer after a
  right proof is the act itself;
- every failure is audited (DCM 110114 User Authentication, outcome 4; a throttled attempt as 110113 Security
  Alert) in a transaction of its own, so that the caller's rollback does not erase the trace.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from rcp.auth import audit
from rcp.auth.models import LoginSession, User
from rcp.auth.passwords import PRODUCTION_ARGON2, verify_password
from rcp.auth.throttle import Throttled, password_throttle
from rcp.auth.totp import STEP_S, SecondFactorRefused, UnreadableSecret, box_for, check_second_factor
from rcp.clock import SystemClock, as_utc
from rcp.errors import Forbidden

__all__ = ["SIGNING_WINDOW", "LocalPasswordsOff", "ReauthenticationFailed", "ReauthenticationRequired", "open_signing_window",
           "reauthenticate", "signing_window"]

logger = logging.getLogger(__name__)

#: How long one re-authentication lets the same session sign (issue 17: "a five-minute signing window").
SIGNING_WINDOW = timedelta(minutes=5)


class ReauthenticationFailed(Forbidden):
    code = "reauthentication_failed"

    def __init__(self) -> None:
        super().__init__("Your identity could not be confirmed: enter your own password and the code of your "
                         "authenticator to sign.")


class ReauthenticationRequired(Forbidden):
    """No proof was sent and the session's signing window is closed: nothing was checked (so nothing is counted or
    audited as a failure); the page asks for the password and the code, then sends the act again."""

    code = "reauthentication_required"

    def __init__(self) -> None:
        super().__init__("Confirm your identity to sign: enter your password and the code of your authenticator.")


class LocalPasswordsOff(ReauthenticationFailed):
    """Local passwords are switched off: only a fresh login at the identity provider opens the signing window."""

    def __init__(self) -> None:
        Forbidden.__init__(self, "Passwords are switched off on this service: confirm your identity by signing in "
                           "again at your identity provider, then sign.")


def _clock(settings: Any) -> Any:
    return settings.clock if settings is not None else SystemClock()


async def signing_window(db: Any, session_id: str, settings: Any) -> datetime | None:
    """Until when ``session_id`` may sign without a new proof (None: it must re-authenticate)."""
    if not session_id:
        return None
    async with db.session() as s:
        row = await s.get(LoginSession, session_id)
        until = row.signing_until if row is not None else None
    if until is None or as_utc(until) <= _clock(settings).now():
        return None
    return as_utc(until)


async def open_signing_window(db: Any, session_id: str, settings: Any) -> datetime | None:
    """Open (or extend) the session's window for :data:`SIGNING_WINDOW` from now, after a strong proof of identity;
    returns its end (None when the session is gone)."""
    until: datetime = _clock(settings).now() + SIGNING_WINDOW
    async with db.session() as s:
        row = await s.get(LoginSession, session_id)
        if row is None:
            return None
        row.signing_until = until
        s.add(row)
    return until


async def reauthenticate(request: Request, user: Any, password: str, *, code: str = "", act: str,
                         patient_id: int | None = None, meeting_id: int | None = None) -> None:
    """Confirm that ``user`` (the signed-in caller) is who they say, before ``act`` ("signature of case 12").

    Nothing is asked while the session's signing window is open. Otherwise the password and the second factor are
    checked, and the window opens. Raises :class:`~rcp.auth.throttle.Throttled` (429, nothing checked) while the
    account must wait, else :class:`ReauthenticationFailed` (403) on any failure. ``act`` names the object in the
    service's identifiers only (it goes to the audit trail).
    """
    db = request.app.state.db
    settings = getattr(request.app.state, "settings", None)  # absent when routes are mounted on their own
    session_id = getattr(user, "session_id", "")
    if await signing_window(db, session_id, settings) is not None:
        return
    if not password and not code:
        raise ReauthenticationRequired()
    if settings is None:  # no secret key to read the second factor with: nobody signs here
        raise ReauthenticationFailed()
    if not settings.local_passwords:
        # The hospital switched local passwords off (RCP_LOCAL_PASSWORDS=off): a password that still sits on an
        # account from before must not stand for the identity provider's fresh login at a signature either.
        await _audit(db, request, event="user_authentication", outcome=4, what=f"{act}: refused, local passwords "
                     "are switched off", patient_id=patient_id, meeting_id=meeting_id)
        raise LocalPasswordsOff()
    throttle = password_throttle(request.app.state)
    key = f"reauth:user:{user.id}"
    try:
        await throttle.begin(key)
    except Throttled:
        await _audit(db, request, event="security_alert", outcome=8, what=f"{act}: refused, too many failed "
                     "password checks", patient_id=patient_id, meeting_id=meeting_id)
        raise
    async with db.session() as session:
        row = await session.get(User, user.id)
        usable = row is not None and row.active and row.second_factor_required
        digest = row.password_hash if row is not None and usable else ""
    cost = settings.argon2 if settings is not None else PRODUCTION_ARGON2
    if not await run_in_threadpool(verify_password, digest, password, cost) or row is None:
        logger.info("user %s: password re-check failed (%s)", user.id, act)
        await _audit(db, request, event="user_authentication", outcome=4,
                     what=f"{act}: password check failed" if usable else f"{act}: this account does not sign "
                     "(deactivated, or its second factor is relaxed)", patient_id=patient_id, meeting_id=meeting_id)
        raise ReauthenticationFailed()
    await throttle.succeeded(key)
    try:
        async with db.session() as session:
            await check_second_factor(
                session, box=box_for(settings), user=row, code=code, at=_clock(settings).now(),
                step_s=getattr(settings, "totp_step_s", STEP_S), cost=cost, throttle=throttle, conn=request,
                source=audit.source_of(request), act=act)
    except (SecondFactorRefused, UnreadableSecret):
        raise ReauthenticationFailed() from None
    if session_id:
        await open_signing_window(db, session_id, settings)
        await _audit(db, request, event="user_authentication", outcome=0, what=f"{act}: password and second factor "
                     f"confirmed, signing window open for {int(SIGNING_WINDOW.total_seconds() // 60)} min",
                     patient_id=patient_id, meeting_id=meeting_id)


async def _audit(db: Any, request: Request, *, event: str, outcome: int, what: str, patient_id: int | None,
                 meeting_id: int | None) -> None:
    async with db.session() as session:
        await audit.record(session, event=event, action="E", outcome=outcome, request=request,
                           patient_id=patient_id, meeting_id=meeting_id, what=what)
