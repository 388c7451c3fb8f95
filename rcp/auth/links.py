"""Join links: how an external physician (a guest, with no account here) enters the one meeting they are invited to.

A hospital's rules for such a credential, and how each is met:

- **Only the guest holds it.** Links go only to invitees whose role is ``guest`` (no password: physicians with an
  account sign in with it). The link is mailed by the service (``rcp.mail``); the coordinator sees "sent to
  d…@chu-x.fr" and can have a fresh one sent, never the link. The outbox row names the invitation, not the token:
  the token is minted when the mail leaves and only its SHA-256 is stored (``JoinLink``), like a password.
- **Single use, and mail scanners cannot use it up.** The token sits in the URL *fragment* (``/join#token``),
  which browsers never send to a server (RFC 3986 §3.5): a GET of the link only shows a confirmation page, whose
  script moves the token into a form and strips it from the address bar; the POST of that form uses it up and is
  answered with a session cookie and a redirect. So the token reaches no access log, no proxy, no Referer.
- **Only around its meeting.** Valid from one hour before the meeting starts until it is closed or cancelled (and
  at most 12 hours after its planned end); a newer link revokes the older ones; withdrawing the invitation kills it.
- **Confined.** The session it opens is scoped to that meeting (``LoginSession.meeting_scope``) and its user is
  a guest everywhere: shown as "guest, invited as surgeon", counted for the quorum under the invited specialty, and
  never a signer.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from email.message import EmailMessage

from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from rcp.auth import audit
from rcp.auth.models import LoginSession, Role, User
from rcp.clock import as_utc, utcnow
from rcp.config import Settings
from rcp.errors import Conflict, NotAuthenticated
from rcp.i18n import N_, format_moment, translations, use_locale
from rcp.mail import Mail, MailStatus, enqueue
from rcp.scheduling.models import Board, Invitation, JoinLink, Meeting, MeetingStatus

__all__ = [
    "CLOSES_AFTER_END",
    "JOIN_MAIL",
    "OPENS_BEFORE",
    "LinkRefused",
    "compose_join_mail",
    "open_join_session",
    "renew_link",
    "revoke_links",
    "send_link",
    "token_digest",
    "window",
]

#: The outbox kind of the mail that carries a guest's link.
JOIN_MAIL = "join_link"
#: A guest may come in a little early to test camera and microphone.
OPENS_BEFORE = timedelta(hours=1)
#: A meeting nobody closed stops admitting guests anyway (the list of upcoming meetings uses the same margin).
CLOSES_AFTER_END = timedelta(hours=12)

USED = N_("This link has already been used: each link opens the meeting once. Ask the meeting's coordinator to "
          "send you a new one.")
INVALID = N_("This link is not valid: it may have been replaced by a newer one, or copied incompletely. Use the "
             "link of the most recent invitation mail.")
WITHDRAWN = N_("This link no longer opens a meeting: the invitation was withdrawn.")
OVER = N_("This meeting is over: its link no longer opens it.")
RENEWED = N_("If this link belongs to an invitation that is still open, a new link has been mailed to its address.")
TOO_EARLY = N_("This link opens the meeting from %(opens)s, one hour before it starts. Come back then.")


class LinkRefused(NotAuthenticated):
    """A link that does not (or no longer) open its meeting; ``message`` is a msgid, ``values`` its placeholders."""

    def __init__(self, message: str, **values: str) -> None:
        super().__init__(message % values if values else message)
        self.msgid = message
        self.values = values


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def window(meeting: Meeting) -> tuple[datetime, datetime]:
    """When the meeting's links open a session: from one hour before it starts to 12 hours after its planned end."""
    starts = as_utc(meeting.starts_at)
    return starts - OPENS_BEFORE, starts + timedelta(minutes=meeting.duration_min) + CLOSES_AFTER_END


async def revoke_links(session: AsyncSession, invitation_id: int) -> None:
    """Every unused link of the invitation stops working now (a newer one was asked for, or it was withdrawn)."""
    await session.exec(
        update(JoinLink)
        .where(col(JoinLink.invitation_id) == invitation_id, col(JoinLink.used_at).is_(None),
               col(JoinLink.revoked_at).is_(None))
        .values(revoked_at=utcnow())  # when, for the record; revocation itself does not depend on the clock
    )


async def send_link(session: AsyncSession, invitation: Invitation, invitee: User, *, locale: str = "") -> Mail:
    """Queue the guest's link mail (after revoking the previous links): the worker mints and sends it.

    Only guests get links; a physician with an account signs in with it.
    """
    assert invitation.id is not None
    if invitee.role != Role.guest:
        raise Conflict("Only guests (external physicians without an account) get a join link; "
                       "this invitee signs in with their account.", fields={"invitation": "not a guest"})
    if not invitee.email:
        raise Conflict("This guest has no e-mail address; ask an administrator to add it.",
                       fields={"email": "missing"})
    await revoke_links(session, invitation.id)
    return await enqueue(session, kind=JOIN_MAIL, recipient=invitee.email, invitation_id=invitation.id,
                         locale=locale, replace=True)


async def _guest_still_invited(
    session: AsyncSession, settings: Settings, invitation_id: int
) -> tuple[Invitation, User, Meeting] | None:
    """The invitation, its guest and its meeting, while a link may still be mailed for it: the invitee is an active
    guest and the meeting is neither over nor past its link window."""
    invitation = await session.get(Invitation, invitation_id)
    invitee = await session.get(User, invitation.user_id) if invitation else None
    meeting = await session.get(Meeting, invitation.meeting_id) if invitation else None
    if invitation is None or invitee is None or meeting is None or invitee.role != Role.guest \
            or not invitee.active or meeting.status in {MeetingStatus.closed, MeetingStatus.cancelled} \
            or settings.clock.now() > window(meeting)[1]:
        return None
    return invitation, invitee, meeting


async def compose_join_mail(session: AsyncSession, mail: Mail, settings: Settings) -> EmailMessage | None:
    """The mail with a freshly minted link (``rcp.mail`` composer); None when there is nothing to invite to."""
    if mail.invitation_id is None:
        return None
    found = await _guest_still_invited(session, settings, mail.invitation_id)
    if found is None:
        return None
    invitation, invitee, meeting = found
    board = await session.get(Board, meeting.board_id)
    zone = board.timezone if board else settings.default_timezone
    assert invitation.id is not None
    await revoke_links(session, invitation.id)
    token = secrets.token_urlsafe(32)
    session.add(JoinLink(invitation_id=invitation.id, token_sha256=token_digest(token)))
    await session.flush()

    use_locale(mail.locale or settings.default_locale)
    _ = translations(mail.locale or settings.default_locale).ugettext
    when = format_moment(meeting.starts_at, zone)
    opens = format_moment(window(meeting)[0], zone, "time")
    title = meeting.title or (board.name if board else "")
    message = EmailMessage()
    message["Subject"] = _("Invitation to the tumour board meeting %(title)s") % {"title": title}
    message.set_content("\n".join([
        _("Dear %(name)s,") % {"name": invitee.display_name},
        "",
        _("You are invited to the multidisciplinary meeting %(title)s on %(when)s.") % {"title": title,
                                                                                        "when": when},
        _("Your personal link (it opens the meeting once, from %(opens)s until the meeting is closed; do not "
          "forward it):") % {"opens": opens},
        "",
        f"{settings.public_url.rstrip('/')}/join#{token}",
        "",
        _("If the link was already used or does not work, ask the meeting's coordinator to send you a new one."),
    ]) + "\n")
    return message


async def open_join_session(session: AsyncSession, settings: Settings, token: str, *, source: str) -> LoginSession:
    """Use up the link and open a session scoped to its meeting; :class:`LinkRefused` says why not.

    A link opened too early is *not* used up: the guest comes back at the right time with the same link.
    Audit lines name the link's row, never the token.
    """
    now = settings.clock.now()
    link = (await session.exec(select(JoinLink).where(JoinLink.token_sha256 == token_digest(token)))).first()

    async def refuse(message: str, what: str, **values: str) -> LinkRefused:
        await audit.record(session, event="user_authentication", action="E", outcome=4, source=source,
                           what=what)
        await session.commit()
        return LinkRefused(message, **values)

    if link is None:
        raise await refuse(INVALID, "join link refused: unknown")
    if link.revoked_at is not None:
        raise await refuse(INVALID, f"join link {link.id} refused: replaced by a newer one")
    if link.used_at is not None:
        raise await refuse(USED, f"join link {link.id} refused: already used")
    invitation = await session.get(Invitation, link.invitation_id)
    invitee = await session.get(User, invitation.user_id) if invitation else None
    meeting = await session.get(Meeting, invitation.meeting_id) if invitation else None
    if invitation is None or invitee is None or meeting is None or not invitee.active \
            or invitee.role != Role.guest:
        raise await refuse(WITHDRAWN, f"join link {link.id} refused: invitation withdrawn")
    opens, closes = window(meeting)
    if meeting.status in {MeetingStatus.closed, MeetingStatus.cancelled} or now > closes:
        raise await refuse(OVER, f"join link {link.id} refused: meeting {meeting.id} is over")
    if now < opens:
        board = await session.get(Board, meeting.board_id)
        raise await refuse(TOO_EARLY, f"join link {link.id} refused: meeting {meeting.id} not open yet",
                           opens=format_moment(opens, board.timezone if board else "Europe/Paris"))
    # Single use under concurrency: only the request whose UPDATE changes the row opens a session.
    used = await session.exec(
        update(JoinLink)
        .where(col(JoinLink.id) == link.id, col(JoinLink.used_at).is_(None), col(JoinLink.revoked_at).is_(None))
        .values(used_at=now)
    )
    if used.rowcount != 1:
        raise await refuse(USED, f"join link {link.id} refused: already used")
    assert invitee.id is not None and meeting.id is not None
    row = LoginSession(id=secrets.token_urlsafe(32), user_id=invitee.id, csrf_token=secrets.token_urlsafe(32),
                       created_at=now, last_seen_at=now, source=source[:64], meeting_scope=meeting.id)
    session.add(row)
    await audit.record(session, event="user_authentication", action="E", source=source, user=None,
                       meeting_id=meeting.id,
                       what=f"join link {link.id} used by guest {invitee.id} for meeting {meeting.id}")
    return row


async def renew_link(session: AsyncSession, settings: Settings, token: str, *, source: str,
                     locale: str = "") -> Mail | None:
    """A guest whose link is used up (a closed tab, an ended session) asks for a new one, mailed to the invitation's
    own address. Only the invitation's newest link, once used, may ask, and only while no mail is on its way: each
    link yields at most one more mail, and an older link yields none. The answer is the same whatever happened
    (``RENEWED``)."""
    link = (await session.exec(select(JoinLink).where(JoinLink.token_sha256 == token_digest(token)))).first()
    if link is None or link.used_at is None:
        return None
    newest = (await session.exec(select(JoinLink.id).where(JoinLink.invitation_id == link.invitation_id)
                                 .order_by(col(JoinLink.id).desc()).limit(1))).first()
    waiting = (await session.exec(select(Mail.id).where(Mail.kind == JOIN_MAIL,
                                                        Mail.invitation_id == link.invitation_id,
                                                        Mail.status == MailStatus.pending))).first()
    if newest != link.id or waiting is not None:
        return None
    found = await _guest_still_invited(session, settings, link.invitation_id)
    if found is None:
        return None
    invitation, invitee, meeting = found
    mail = await send_link(session, invitation, invitee, locale=locale)
    await audit.record(session, event="user_authentication", action="E", source=source, meeting_id=meeting.id,
                       what=f"join link {link.id}: guest {invitee.id} asked for a new link")
    return mail
