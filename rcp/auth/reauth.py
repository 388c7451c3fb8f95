"""Re-authentication before a medical act: the signed-in person proves again who they are (issue 13, finding 8).

A signature or an amendment of a decision is a medical act done in a physician's name; the session alone (a
workstation left open, a copied cookie) is not enough, so :func:`reauthenticate` asks for the password again.
It is the one door for that check: the sign-in issue adds the second factor here, and every caller follows.

It must not become a password oracle for whoever holds a session:

- the check is throttled per account with growing delays (rcp.auth.throttle), counted before the hash is checked;
- argon2 runs in the thread pool, never on the event loop (a burst of guesses would stall every room);
- every refusal, whatever its reason (wrong password, account without password or deactivated), has the same
  status and message (:class:`ReauthenticationFailed`), and callers run their own rules *before* calling it
  (rcp.minutes.store's ``confirm``), so that the answer after a right password is the act itself;
- every failure is audited (DCM 110114 User Authentication, outcome 4; a throttled attempt as 110113 Security
  Alert) in a transaction of its own, so that the caller's rollback does not erase the trace.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from rcp.auth import audit
from rcp.auth.models import User
from rcp.auth.passwords import PRODUCTION_ARGON2, verify_password
from rcp.auth.throttle import Throttled, password_throttle
from rcp.errors import Forbidden

__all__ = ["ReauthenticationFailed", "reauthenticate"]

logger = logging.getLogger(__name__)


class ReauthenticationFailed(Forbidden):
    code = "reauthentication_failed"

    def __init__(self) -> None:
        super().__init__("Your identity could not be confirmed: re-enter your own password to sign.")


async def reauthenticate(request: Request, user: Any, password: str, *, act: str, patient_id: int | None = None,
                         meeting_id: int | None = None) -> None:
    """Confirm that ``user`` (the signed-in caller) knows their password, before ``act`` ("signature of case 12").

    Raises :class:`~rcp.auth.throttle.Throttled` (429, nothing checked) while the account must wait, else
    :class:`ReauthenticationFailed` (403) on any failure. ``act`` names the object in the service's identifiers
    only (it goes to the audit trail).
    """
    db = request.app.state.db
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
        digest = row.password_hash if row is not None and row.active else ""
    settings = getattr(request.app.state, "settings", None)  # absent when routes are mounted on their own
    cost = settings.argon2 if settings is not None else PRODUCTION_ARGON2
    if not await run_in_threadpool(verify_password, digest, password, cost):
        logger.info("user %s: password re-check failed (%s)", user.id, act)
        await _audit(db, request, event="user_authentication", outcome=4, what=f"{act}: password check failed",
                     patient_id=patient_id, meeting_id=meeting_id)
        raise ReauthenticationFailed()
    await throttle.succeeded(key)


async def _audit(db: Any, request: Request, *, event: str, outcome: int, what: str, patient_id: int | None,
                 meeting_id: int | None) -> None:
    async with db.session() as session:
        await audit.record(session, event=event, action="E", outcome=outcome, request=request,
                           patient_id=patient_id, meeting_id=meeting_id, what=what)
