"""Join links: a signed, expiring URL that lets one invited person into one meeting.

Sent by e-mail to a clinician who joins from another hospital's PC, it opens a session scoped to that meeting
(``LoginSession.meeting_scope``) and is exchanged at once for the session cookie, so the token does not stay in
the address bar, the history or a Referer header. Signing uses the service's secret (itsdangerous, HMAC-SHA1 over
a timestamped payload); a link for another meeting, a tampered or an expired link is refused.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from rcp.auth import audit
from rcp.auth.models import LoginSession, User
from rcp.clock import Clock
from rcp.config import Settings
from rcp.errors import NotAuthenticated
from rcp.scheduling.models import Invitation, Meeting, MeetingStatus

__all__ = ["DEFAULT_LINK_TTL_S", "JoinLink", "make_join_token", "open_join_session", "read_join_token"]

#: A link sent the day before must still work at the end of the meeting.
DEFAULT_LINK_TTL_S = 48 * 3600


@dataclass(frozen=True)
class JoinLink:
    meeting_id: int
    user_id: int


class _ClockSigner(TimestampSigner):
    """itsdangerous' timestamp signer reading ``Settings.clock`` (it reads ``time.time()`` by itself), so that a
    link's age is measured by the same clock as sessions and lock-outs."""

    def __init__(self, *args: Any, clock: Clock, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clock = clock

    def get_timestamp(self) -> int:
        return int(self.clock.now().timestamp())


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_key, salt="rcp.join-link", signer=_ClockSigner,
                                  signer_kwargs={"clock": settings.clock})


def make_join_token(settings: Settings, *, meeting_id: int, user_id: int) -> str:
    return _serializer(settings).dumps({"m": meeting_id, "u": user_id, "n": secrets.token_hex(4)})


def read_join_token(settings: Settings, token: str, *, max_age_s: int = DEFAULT_LINK_TTL_S) -> JoinLink:
    try:
        data = _serializer(settings).loads(token, max_age=max_age_s)
    except SignatureExpired:
        raise NotAuthenticated("This join link has expired; ask the meeting's coordinator for a new one.") from None
    except BadSignature:
        raise NotAuthenticated("This join link is not valid; check that it was copied whole.") from None
    if not isinstance(data, dict) or not isinstance(data.get("m"), int) or not isinstance(data.get("u"), int):
        raise NotAuthenticated("This join link is not valid; check that it was copied whole.")
    return JoinLink(meeting_id=data["m"], user_id=data["u"])


async def open_join_session(session: AsyncSession, settings: Settings, link: JoinLink, *,
                            source: str) -> LoginSession:
    """A session for the link's user, scoped to its meeting, if they are still invited and it is still on."""
    user = await session.get(User, link.user_id)
    meeting = await session.get(Meeting, link.meeting_id)
    invited = (
        await session.exec(select(Invitation).where(Invitation.meeting_id == link.meeting_id,
                                                    Invitation.user_id == link.user_id))
    ).first()
    if user is None or not user.active or meeting is None or invited is None \
            or meeting.status in {MeetingStatus.closed, MeetingStatus.cancelled}:
        await audit.record(session, event="user_authentication", action="E", outcome=4, source=source,
                           what=f"join link refused for meeting {link.meeting_id}")
        await session.commit()
        raise NotAuthenticated("This join link no longer opens a meeting: the invitation was withdrawn or the "
                               "meeting is over.")
    now = settings.clock.now()
    row = LoginSession(id=secrets.token_urlsafe(32), user_id=link.user_id, csrf_token=secrets.token_urlsafe(32),
                       created_at=now, last_seen_at=now, source=source[:64], meeting_scope=link.meeting_id)
    session.add(row)
    await audit.record(session, event="user_authentication", action="E", source=source, user=None,
                       what=f"join link for meeting {link.meeting_id} used by user {link.user_id}")
    return row
