"""The service's one mailer: a durable outbox (table ``mail_outbox``) and a worker that sends it over SMTP.

Why an outbox: a mail is decided inside a business transaction (a guest is invited) but sent after it commits,
by a worker that retries with a doubling delay and survives a restart — the rows are the queue (the same pattern
as the EPR outbox, DESIGN §6). Why the body is composed at send time: a mail may carry a secret (a guest's join
link) that must never be stored in clear; its row names what to send (``kind`` + ``invitation_id``) and a
*composer* registered for that kind mints the secret when the mail leaves, keeping only its hash.

The relay is chosen by URL (``RCP_SMTP_URL``), as broadcaster chooses its backend::

    smtp://relay.chu-x.fr:25                   a trusted relay on the hospital network (RFC 5321, no TLS)
    smtp+starttls://user:pw@relay:587          message submission with STARTTLS required (RFC 6409, RFC 3207)
    smtps://user:pw@relay:465                  implicit TLS (RFC 8314)
    file:///var/spool/rcp-mail                 one .eml file per mail (development)

``smtplib`` blocks, so each send runs in the thread pool (STYLE §8). Logs name the mail row, never an address or a
body.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import smtplib
import ssl
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from enum import StrEnum
from pathlib import Path
from urllib.parse import unquote, urlsplit

import sqlalchemy as sa
from sqlmodel import Field, SQLModel, col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.concurrency import run_in_threadpool

from rcp.clock import utcnow
from rcp.config import Settings
from rcp.db import Database, timestamp

__all__ = [
    "Composer",
    "Mail",
    "MailStatus",
    "MailWorker",
    "Transport",
    "enqueue",
    "mask_address",
    "transport_for",
    "wake",
]

logger = logging.getLogger(__name__)

#: A composer turns an outbox row into the message to send (or None: nothing to send any more, e.g. the
#: invitation was withdrawn). It runs in the worker's transaction, committed before the message leaves.
Composer = Callable[[AsyncSession, "Mail", Settings], Awaitable[EmailMessage | None]]

#: A claimed row is the worker's for this long; another node takes it over after (a crashed node's mails).
LEASE = timedelta(seconds=120)
#: Without a poke (a mail enqueued on another node), the worker looks for due mails this often.
POLL_S = 5.0


class MailStatus(StrEnum):
    pending = "pending"
    sent = "sent"
    #: Every attempt failed; shown to the coordinator, who can have it sent again.
    failed = "failed"
    #: Replaced by a newer mail of the same kind for the same invitation ("send again").
    cancelled = "cancelled"


class Mail(SQLModel, table=True):
    """One mail to send. No body for kinds that carry a secret: their composer builds it at send time."""

    __tablename__ = "mail_outbox"
    __table_args__ = (
        sa.Index("ix_mail_outbox_due", "status", "next_attempt_at"),
        # A signed version's copy goes to each mailbox once (rcp.minutes.copies), however often it is enqueued.
        sa.Index("uq_mail_outbox_version_recipient", "kind", "decision_version_id", "recipient", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    #: Which composer builds it ("join_link"), or "text" for a stored subject and body.
    kind: str = Field(max_length=30)
    recipient: str = Field(max_length=200)
    subject: str = Field(default="", max_length=300)
    body: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False, server_default=""))
    invitation_id: int | None = Field(default=None, sa_column=sa.Column(
        sa.ForeignKey("invitations.id", ondelete="CASCADE"), nullable=True, index=True))
    #: The signed decision version a mail carries (the GP's and correspondents' copy), and its case.
    decision_version_id: int | None = Field(default=None, sa_column=sa.Column(
        sa.ForeignKey("decision_versions.id", ondelete="RESTRICT"), nullable=True, index=True))
    case_id: int | None = Field(default=None, sa_column=sa.Column(sa.Integer, nullable=True, index=True))
    locale: str = Field(default="", max_length=5)
    status: str = Field(default=MailStatus.pending, max_length=20)
    attempts: int = Field(default=0)
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_column=timestamp(nullable=False))
    lease_until: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))
    claim_token: str | None = Field(default=None, max_length=32)
    #: The relay's answer to the last failed attempt (SMTP reply code and text).
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp(nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))


def mask_address(address: str) -> str:
    """What a coordinator sees of a guest's address: enough to recognise it, not to use it ("d…@chu-x.fr")."""
    local, at, domain = address.strip().partition("@")
    if not at or not local:
        return "…"
    return f"{local[0]}…@{domain}"


async def enqueue(session: AsyncSession, *, kind: str, recipient: str, invitation_id: int | None = None,
                  subject: str = "", body: str = "", locale: str = "", replace: bool = False,
                  decision_version_id: int | None = None, case_id: int | None = None) -> Mail:
    """Add a mail to the outbox in the caller's transaction; the worker sends it after the commit.

    ``replace`` cancels the pending mails of the same kind for the same invitation (a "send again" supersedes
    them: the guest gets one mail, with the newest link).
    """
    if replace and invitation_id is not None:
        await session.exec(
            update(Mail)
            .where(col(Mail.kind) == kind, col(Mail.invitation_id) == invitation_id,
                   col(Mail.status) == MailStatus.pending)
            .values(status=MailStatus.cancelled)
        )
    if decision_version_id is not None:
        existing = (await session.exec(select(Mail).where(
            Mail.kind == kind, Mail.decision_version_id == decision_version_id, Mail.recipient == recipient))).first()
        if existing is not None:  # the same version's copy to the same mailbox: once
            return existing
    row = Mail(kind=kind, recipient=recipient, invitation_id=invitation_id, subject=subject, body=body,
               locale=locale, decision_version_id=decision_version_id, case_id=case_id)
    session.add(row)
    await session.flush()
    return row


async def latest_by_invitation(session: AsyncSession, kind: str, invitation_ids: list[int]) -> dict[int, Mail]:
    """The newest mail of ``kind`` for each invitation (what the coordinator's list shows)."""
    if not invitation_ids:
        return {}
    rows = await session.exec(
        select(Mail).where(Mail.kind == kind, col(Mail.invitation_id).in_(invitation_ids),
                           col(Mail.status) != MailStatus.cancelled).order_by(col(Mail.id))
    )
    return {row.invitation_id: row for row in rows.all() if row.invitation_id is not None}


def wake(app_state: object) -> None:
    """Wake this node's mail worker after a commit that queued a mail; other nodes find it on their next round."""
    mailer = getattr(app_state, "mailer", None)
    if isinstance(mailer, MailWorker):
        mailer.poke()


# --- transports -----------------------------------------------------------------------------------------------


class Transport:
    """Sends one message; raises ``OSError`` / ``smtplib.SMTPException`` when the relay refuses or is away."""

    def send(self, message: EmailMessage) -> None:
        raise NotImplementedError


class SmtpTransport(Transport):
    def __init__(self, url: str, *, timeout_s: float = 30.0) -> None:
        parts = urlsplit(url)
        self.scheme = parts.scheme
        self.host = parts.hostname or "localhost"
        self.port = parts.port or {"smtp": 25, "smtp+starttls": 587, "smtps": 465}[parts.scheme]
        self.username = unquote(parts.username or "")
        self.password = unquote(parts.password or "")
        self.timeout_s = timeout_s

    def send(self, message: EmailMessage) -> None:
        context = ssl.create_default_context()
        client: smtplib.SMTP
        if self.scheme == "smtps":
            client = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_s, context=context)
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        with client:
            if self.scheme == "smtp+starttls":
                client.starttls(context=context)
            if self.username:
                client.login(self.username, self.password)
            client.send_message(message)


class FileTransport(Transport):
    """Development: each mail as an .eml file in a folder (open it with any mail reader)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def send(self, message: EmailMessage) -> None:
        """Written under a temporary name, then renamed (as Maildir delivers, tmp/ then new/): whoever watches
        the folder for ``*.eml`` never reads half a mail."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{utcnow():%Y%m%dT%H%M%S}-{secrets.token_hex(4)}.eml"
        partial = path.with_name(f".{path.name}.tmp")
        partial.write_bytes(bytes(message))
        partial.chmod(0o600)
        os.replace(partial, path)


def transport_for(settings: Settings) -> Transport | None:
    """The configured relay; None in production without ``RCP_SMTP_URL`` (mails wait in the outbox)."""
    url = settings.smtp_url
    if not url:
        if settings.production:
            return None
        return FileTransport(settings.data_dir / "mail-outbox")
    if url.startswith("file://"):
        return FileTransport(Path(unquote(urlsplit(url).path)))
    return SmtpTransport(url)


# --- the worker -----------------------------------------------------------------------------------------------


class MailWorker:
    """Sends due mails, one at a time, with retries; ``poke()`` wakes it after an enqueue on this node."""

    def __init__(self, settings: Settings, db: Database, *, transport: Transport,
                 composers: Mapping[str, Composer]) -> None:
        self.settings = settings
        self.db = db
        self.transport = transport
        self.composers = dict(composers)
        self._wake = asyncio.Event()

    def poke(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set: send what is due, then sleep until poked, the next due time, or ``POLL_S``."""
        while not stop.is_set():
            try:
                while await self.send_one():
                    if stop.is_set():
                        return
            except Exception:  # the database may be away for a moment: the next round tries again
                logger.exception("mail round failed; retrying in %.0f s", POLL_S)
            self._wake.clear()
            waiters = {asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())}
            try:
                await asyncio.wait(waiters, timeout=min(POLL_S, self.settings.mail_retry_s),
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()

    async def _claim(self) -> Mail | None:
        now = self.settings.clock.now()
        async with self.db.session() as s:
            due = (await s.exec(
                select(Mail).where(Mail.status == MailStatus.pending, col(Mail.next_attempt_at) <= now,
                                   (col(Mail.lease_until).is_(None)) | (col(Mail.lease_until) < now))
                .order_by(col(Mail.next_attempt_at)).limit(1)
            )).first()
            if due is None:
                return None
            token = secrets.token_hex(16)
            claimed = await s.exec(
                update(Mail)
                .where(col(Mail.id) == due.id, col(Mail.status) == MailStatus.pending,
                       (col(Mail.lease_until).is_(None)) | (col(Mail.lease_until) < now))
                .values(lease_until=now + LEASE, claim_token=token)
            )
            if claimed.rowcount != 1:  # another node took it between our read and our write
                return None
            due.claim_token = token
            return due

    async def send_one(self) -> bool:
        """Claim one due mail and try to send it; False when nothing was due."""
        claimed = await self._claim()
        if claimed is None:
            return False
        assert claimed.id is not None
        async with self.db.session() as s:
            row = await s.get(Mail, claimed.id)
            if row is None or row.claim_token != claimed.claim_token:
                return True
            message = await self._compose(s, row)
            if message is None:
                row.status = MailStatus.cancelled
                row.lease_until = None
                s.add(row)
                return True
        # The secret minted by the composer is committed (as a hash) before the mail leaves: a mail that reached
        # the guest always carries a link the service knows.
        error = ""
        try:
            await run_in_threadpool(self.transport.send, message)
        except (OSError, smtplib.SMTPException) as exc:
            error = _describe(exc)
        async with self.db.session() as s:
            row = await s.get(Mail, claimed.id)
            if row is None:
                return True
            row.attempts += 1
            row.lease_until = None
            row.claim_token = None
            if not error:
                row.status = MailStatus.sent
                row.sent_at = self.settings.clock.now()
                row.last_error = None
                logger.info("mail %s (%s) sent", row.id, row.kind)
            elif row.attempts >= self.settings.mail_attempts:
                row.status = MailStatus.failed
                row.last_error = error
                logger.warning("mail %s (%s) failed for good after %d attempts", row.id, row.kind, row.attempts)
            else:
                row.last_error = error
                row.next_attempt_at = self.settings.clock.now() + timedelta(
                    seconds=self.settings.mail_retry_s * 2 ** (row.attempts - 1))
                logger.warning("mail %s (%s) not sent (attempt %d); trying again later", row.id, row.kind,
                               row.attempts)
            s.add(row)
        return True

    async def _compose(self, session: AsyncSession, row: Mail) -> EmailMessage | None:
        if row.kind == "text":
            message = EmailMessage()
            message["Subject"] = row.subject
            message.set_content(row.body)
        else:
            composer = self.composers.get(row.kind)
            if composer is None:
                logger.error("mail %s has kind %r, which no composer sends; it stays in the outbox", row.id, row.kind)
                return None
            found = await composer(session, row, self.settings)
            if found is None:
                return None
            message = found
        message["From"] = self.settings.mail_from
        message["To"] = row.recipient
        if "Message-ID" not in message:  # a composer may name its mail (the same id on every resend)
            message["Message-ID"] = make_msgid(domain=self.settings.mail_from.rpartition("@")[2] or None)
        # RFC 3834: an automatic message; out-of-office replies should not answer it.
        message["Auto-Submitted"] = "auto-generated"
        return message


def _describe(exc: BaseException) -> str:
    """The relay's answer, without the recipient (SMTPRecipientsRefused carries addresses)."""
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return f"{exc.smtp_code} {text}"[:300]
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "the relay refused the recipient"
    return f"{type(exc).__name__}: {exc}"[:300]
