"""The GP's and correspondents' copy of a signed fiche: a secure mail (MSSanté practice) with an IHE XDM zip.

French health professionals receive patient documents in their MSSanté mailbox, and their software files them
into the patient's record from the ``IHE_XDM.ZIP`` attachment (``rcp.epr.xdm``: the CDA R2 CANCER-FRCP document
and the PDF, described by XDS metadata). When a fiche is signed (or a correction of it), each MSSanté address the
fiche names — the GP (*médecin traitant*) and the correspondents — gets one copy:

- **Through the one mailer's outbox** (``rcp.mail``): :func:`copies_on_signed` is an ``on_signed`` hook, so the rows
  are written in the signature's own transaction (a version is never signed without its copies, nor the other way
  round); one row per version and mailbox (a unique index), retried while the relay is away, kept across restarts.
- **Built when it leaves** (:func:`compose_copy`, the outbox's composer for :data:`COPY_MAIL`): the frozen version
  gives the same CDA and PDF at any time, so the row stores no document.
- **Nothing about the patient outside the attachment**: the subject is neutral, the body says what the attachment
  is and, when the board keeps the document from the patient until the announcement consultation
  (``Fiche.hidden_from_patient``, INVISIBLE_PATIENT in the XDM metadata), asks the reader not to pass it on before.
- **Withdrawn with the version**: when a version is withdrawn (entered in error, ``rcp.minutes.withdrawals``),
  each mailbox that got it receives a notice naming the document by its unique id (:func:`copies_on_withdrawn`);
  a copy still waiting is cancelled instead. A correction is simply a new version: its copy says it replaces one.
- **Seen by the coordinator** on the case page, per recipient (:func:`copies_for`): pending, sent or failed, when;
  one that failed for good can be sent again (:func:`send_again`).

Only addresses of the MSSanté trust space are mailed (``rcp.minutes.fiche.is_mssante``, checked when the fiche is
edited too): a copy to an ordinary mailbox would take health data outside it.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.concurrency import run_in_threadpool

from rcp.clock import as_utc, utcnow
from rcp.config import Settings
from rcp.epr.fhir import RCP_SOURCE_OID
from rcp.epr.xdm import ATTACHMENT_NAME, xdm_package
from rcp.errors import Conflict, NotFound
from rcp.i18n import translations
from rcp.mail import Mail, MailStatus, enqueue
from rcp.minutes import store, withdrawals
from rcp.minutes.cda import fiche_cda
from rcp.minutes.delivery import document_ids, to_signed_document
from rcp.minutes.fiche import Fiche, is_mssante
from rcp.minutes.render import fiche_pdf
from rcp.minutes.versions import SignedVersion

__all__ = [
    "COPY_MAIL",
    "WITHDRAWAL_MAIL",
    "CopyView",
    "Recipient",
    "compose_copy",
    "compose_withdrawal",
    "copies_for",
    "copies_on_signed",
    "copies_on_withdrawn",
    "recipients",
    "send_again",
]

log = logging.getLogger(__name__)

#: The outbox kind of the mail that carries a signed version to the GP or a correspondent.
COPY_MAIL = "fiche_copy"
#: The outbox kind of the notice that a version they received was withdrawn (entered in error).
WITHDRAWAL_MAIL = "fiche_withdrawal"


@dataclass(frozen=True)
class Recipient:
    """Someone the fiche names who gets its copy: ``role`` is "gp" or "correspondent"."""

    role: str
    name: str
    address: str


def recipients(fiche: Fiche) -> list[Recipient]:
    """The GP and the correspondents with an MSSanté address, each mailbox once (the GP's role first)."""
    found: dict[str, Recipient] = {}
    people = [("gp", fiche.gp)] + [("correspondent", c) for c in fiche.correspondents]
    for role, person in people:
        if person is None or not person.email or not is_mssante(person.email.strip()):
            continue
        address = person.email.strip()
        found.setdefault(address.lower(), Recipient(role, person.name, address))
    return list(found.values())


def copies_on_signed(default_locale: str = "fr") -> store.SignedHook:
    """An ``on_signed`` hook: one outbox row per recipient of the signed version, in the signature's transaction.

    A patient with neither a qualified INS nor an IPP cannot be named in the XDM metadata (as for the EPR,
    ``rcp.minutes.delivery``): the signature stands, the gap is logged, nothing is queued.
    """

    async def hook(session: AsyncSession, stored: store.StoredVersion) -> None:
        fiche = stored.version.fiche()
        found = recipients(fiche)
        if not found:
            return
        if not fiche.patient.shared_ins and not fiche.patient.local_id:
            log.warning("case %s: version %s not mailed to the GP or correspondents: the patient has neither a "
                        "qualified INS nor an IPP", stored.case_id, stored.version.number)
            return
        for r in found:
            await enqueue(session, kind=COPY_MAIL, recipient=r.address, decision_version_id=stored.id,
                          case_id=stored.case_id, locale=default_locale)

    return hook


def _package(fiche: Fiche, version: SignedVersion, replaced: SignedVersion | None, recipient: str,
             at: datetime) -> tuple[bytes, str]:
    """(the XDM zip, the document's unique id): CPU work, run in the thread pool."""
    pdf = fiche_pdf(fiche, version)
    cda = fiche_cda(fiche, version, replaced=replaced)
    document = to_signed_document(fiche, version, pdf, replaces=replaced, cda=cda)
    return xdm_package(document, cda, recipients=[recipient], source_oid=RCP_SOURCE_OID, at=at), document.unique_id


async def compose_copy(session: AsyncSession, mail: Mail, settings: Settings) -> EmailMessage | None:
    """The outbox's composer for :data:`COPY_MAIL`: the neutral mail with the version's XDM zip attached."""
    if mail.decision_version_id is None or mail.case_id is None:
        return None
    listed = await store.list_versions(session, mail.case_id)
    stored = next((s for s in listed if s.id == mail.decision_version_id), None)
    if stored is None:
        return None
    version = stored.version
    replaced = next((s.version for s in listed if s.version.number == version.replaces), None)
    fiche = version.fiche()
    package, unique_id = await run_in_threadpool(_package, fiche, version, replaced, mail.recipient,
                                                 settings.clock.now())
    _ = translations(mail.locale or settings.default_locale).ugettext
    role = next((r.role for r in recipients(fiche) if r.address.lower() == mail.recipient.lower()), "correspondent")
    message = EmailMessage()
    # MSSanté practice: nothing in the subject or body names the patient; the document is in the attachment.
    message["Subject"] = _("New health document (secure mail)")
    lines = [
        _("Hello,"),
        "",
        (_("As the patient's general practitioner, you receive the attached document.") if role == "gp"
         else _("As a correspondent named by the care team, you receive the attached document.")),
        _("It is in the attachment %(name)s (IHE XDM: the CDA document and its PDF), which your software can "
          "file into the patient's record.") % {"name": ATTACHMENT_NAME},
    ]
    if version.replaces is not None:
        lines.append(_("It replaces a document sent to you earlier."))
    if fiche.hidden_from_patient:
        lines += ["", _("The patient has not been told yet: do not show or pass on this document to them before "
                        "the announcement consultation.")]
    lines += ["", _("This message was sent automatically; do not reply to it.")]
    message.set_content("\n".join(lines) + "\n")
    message.add_attachment(package, maintype="application", subtype="zip", filename=ATTACHMENT_NAME)
    # The same id on every resend of this row: a mailbox that got it twice (a lost answer) shows it once.
    digest = hashlib.sha256(f"{mail.id}|{unique_id}".encode()).hexdigest()[:24]
    message["Message-ID"] = f"<rcp-copy-{digest}@{settings.mail_from.rpartition('@')[2] or 'localhost'}>"
    return message


def copies_on_withdrawn(default_locale: str = "fr") -> withdrawals.WithdrawnHook:
    """An ``on_withdrawn`` hook: whoever got the version's copy gets a notice that it was withdrawn, once, in the
    withdrawal's transaction (the version itself never changes: ``rcp.minutes.withdrawals``)."""

    async def hook(session: AsyncSession, withdrawn: withdrawals.StoredWithdrawal) -> None:
        copied = (await session.exec(select(Mail).where(
            Mail.kind == COPY_MAIL, Mail.decision_version_id == withdrawn.stored.id,
            col(Mail.status) != MailStatus.cancelled))).all()
        for row in copied:
            if row.status == MailStatus.pending:
                # Not sent yet: it never leaves, and nothing needs withdrawing in that mailbox.
                row.status = MailStatus.cancelled
                session.add(row)
                continue
            await enqueue(session, kind=WITHDRAWAL_MAIL, recipient=row.recipient,
                          decision_version_id=withdrawn.stored.id, case_id=withdrawn.case_id,
                          locale=row.locale or default_locale)

    return hook


async def compose_withdrawal(session: AsyncSession, mail: Mail, settings: Settings) -> EmailMessage | None:
    """The outbox's composer for :data:`WITHDRAWAL_MAIL`: which document to take out of the patient's record, by
    its unique id (the XDS uniqueId of the copy they received), and nothing about the patient."""
    if mail.decision_version_id is None or mail.case_id is None:
        return None
    listed = await store.list_versions(session, mail.case_id)
    stored = next((s for s in listed if s.id == mail.decision_version_id), None)
    if stored is None:
        return None
    _, unique_id = document_ids(stored.version.fiche(), stored.version)
    _ = translations(mail.locale or settings.default_locale).ugettext
    message = EmailMessage()
    message["Subject"] = _("Health document withdrawn (secure mail)")
    message.set_content("\n".join([
        _("Hello,"),
        "",
        _("A document sent to you earlier was withdrawn: it was entered in error. If your software filed it into "
          "the patient's record, remove it from there and disregard it."),
        _("Reference of the withdrawn document (XDS uniqueId): %(id)s") % {"id": unique_id},
        "",
        _("This message was sent automatically; do not reply to it."),
    ]) + "\n")
    digest = hashlib.sha256(f"withdrawal|{mail.id}|{unique_id}".encode()).hexdigest()[:24]
    message["Message-ID"] = f"<rcp-withdrawal-{digest}@{settings.mail_from.rpartition('@')[2] or 'localhost'}>"
    return message


async def send_again(session: AsyncSession, mail_id: int) -> Mail:
    """The coordinator's "retry" of a copy (or notice) that failed for good: back in the outbox, due now, with
    the full series of attempts again; ``Conflict`` for one that is not failed, ``NotFound`` for no such copy."""
    row = await session.get(Mail, mail_id)
    if row is None or row.kind not in (COPY_MAIL, WITHDRAWAL_MAIL):
        raise NotFound(f"mail copy {mail_id} does not exist")
    if row.status != MailStatus.failed:
        raise Conflict(f"mail copy {mail_id} is {row.status}: only a copy that could not be sent is sent again")
    row.status, row.attempts, row.next_attempt_at = MailStatus.pending, 0, utcnow()
    row.lease_until = row.claim_token = None
    session.add(row)
    await session.flush()
    return row


@dataclass(frozen=True)
class CopyView:
    """What the coordinator sees of one copy: to whom (their mailbox), which version, its state and when."""

    id: int
    version: int
    role: str
    name: str
    recipient: str
    status: str
    attempts: int
    queued_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime | None
    #: The relay's answer to the last failed attempt (an SMTP reply: no patient data).
    last_error: str | None
    #: A notice that the version was withdrawn, rather than the copy itself.
    withdrawal: bool = False


async def copies_for(session: AsyncSession, case_id: int) -> list[CopyView]:
    """Every copy of the case's signed versions, by version then recipient."""
    rows = (await session.exec(
        select(Mail).where(col(Mail.kind).in_((COPY_MAIL, WITHDRAWAL_MAIL)), Mail.case_id == case_id,
                           col(Mail.status) != MailStatus.cancelled)
        .order_by(col(Mail.decision_version_id), col(Mail.id))
    )).all()
    if not rows:
        return []
    versions = {s.id: s.version for s in await store.list_versions(session, case_id)}
    named: dict[int, dict[str, Recipient]] = {}
    views = []
    for row in rows:
        version_id = row.decision_version_id or 0
        version = versions.get(version_id)
        if version is None or row.id is None:
            continue
        if version_id not in named:
            named[version_id] = {r.address.lower(): r for r in recipients(version.fiche())}
        who = named[version_id].get(row.recipient.lower())
        views.append(CopyView(
            id=row.id, version=version.number, role=who.role if who else "correspondent",
            name=who.name if who else "", recipient=row.recipient, status=row.status, attempts=row.attempts,
            queued_at=as_utc(row.created_at), sent_at=as_utc(row.sent_at) if row.sent_at else None,
            next_attempt_at=as_utc(row.next_attempt_at) if row.status == MailStatus.pending else None,
            last_error=row.last_error, withdrawal=row.kind == WITHDRAWAL_MAIL))
    return views
