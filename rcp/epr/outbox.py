"""The outbox: delivery rows written in the caller's transaction, retried by the coordinator, shown per case.

The signing code calls :func:`enqueue` inside the transaction that freezes the version::

    async with db.session() as session:
        version = await sign(session, ...)
        document = to_signed_document(version)            # the minutes side maps its version
        await enqueue(session, document, configured_receivers(settings),
                      case_id=case.id, meeting_id=case.meeting_id, patient_id=case.patient_id)

Nothing is sent here: a worker (``rcp.epr.worker``) picks the rows up after the commit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rcp.clock import as_utc, utcnow
from rcp.config import Settings
from rcp.epr.document import SignedDocument
from rcp.epr.models import Delivery, DeliveryAction, DeliveryAttempt, DeliveryStatus
from rcp.epr.receivers import receiver_key
from rcp.errors import Conflict, NotFound
from rcp.scheduling.models import Case

__all__ = [
    "DeliveryView",
    "configured_receivers",
    "deliveries_for",
    "enqueue",
    "idempotency_key",
    "retry",
]


def configured_receivers(settings: Settings) -> tuple[str, ...]:
    """``RCP_EPR_RECEIVERS``, or the embedded default: a file drop under the data folder."""
    if settings.epr_receivers:
        return settings.epr_receivers
    return (f"file://{(settings.data_dir / 'epr-outbox').resolve()}",)


def idempotency_key(receiver: str, unique_id: str) -> str:
    """20 characters (HL7 v2.5 MSH-10 is ST(20)), the same for every resend of a version to one receiver."""
    return hashlib.sha256(f"{receiver}\n{unique_id}".encode()).hexdigest()[:20].upper()


async def enqueue(
    session: AsyncSession,
    document: SignedDocument,
    receivers: Iterable[str],
    *,
    case_id: int | None = None,
    meeting_id: int | None = None,
    patient_id: int | None = None,
) -> list[Delivery]:
    """Add one pending delivery per receiver URL, in the caller's transaction; existing ones are kept.

    Calling it twice for the same version (a retried request) adds nothing: (receiver, version) is unique. A
    document that carries its withdrawal (``document.withdrawal``) is a withdrawal delivery (MDM^T11,
    entered-in-error), keyed by the withdrawal's own OID, so it goes out once per receiver too, after the filing.
    """
    payload = document.to_json()
    action = DeliveryAction.withdraw if document.withdrawal is not None else DeliveryAction.file
    subject = document.withdrawal.withdrawal_id if document.withdrawal is not None else document.unique_id
    rows: list[Delivery] = []
    for url in dict.fromkeys(receivers):
        key = receiver_key(url)
        existing = (await session.exec(
            select(Delivery).where(Delivery.receiver_key == key, Delivery.document_unique_id == subject)
        )).first()
        if existing is not None:
            rows.append(existing)
            continue
        row = Delivery(
            receiver_key=key,
            receiver_kind=_kind(key),
            document_set_id=document.set_id,
            document_unique_id=subject,
            document_version=document.version,
            action=action,
            case_id=case_id,
            meeting_id=meeting_id,
            patient_id=patient_id,
            payload=payload,
            idempotency_key=idempotency_key(key, subject),
        )
        session.add(row)
        rows.append(row)
    await session.flush()
    return rows


def _kind(key: str) -> str:
    scheme = key.split(":", 1)[0]
    return "fhir" if scheme.startswith("fhir") else scheme


async def retry(session: AsyncSession, delivery_id: int, *, actor: str = "") -> Delivery:
    """The coordinator's "retry": a delivery that needs attention goes back to the queue, due now.

    The attempt counter restarts, so the full backoff schedule applies again; the history stays.
    """
    row = await session.get(Delivery, delivery_id)
    if row is None:
        raise NotFound(f"delivery {delivery_id} does not exist")
    if row.status != DeliveryStatus.needs_attention:
        raise Conflict(f"delivery {delivery_id} is {row.status}: only a delivery that needs attention can be retried")
    row.status = DeliveryStatus.pending
    row.attempts = 0
    row.next_attempt_at = utcnow()
    row.lease_until = None
    row.claim_token = None
    session.add(row)
    session.add(DeliveryAttempt(delivery_id=delivery_id, outcome="retried", summary="retry requested",
                                worker=actor[:100]))
    await session.flush()
    return row


@dataclass(frozen=True)
class DeliveryView:
    """What the coordinator sees for one receiver and one version (no payload, no patient data)."""

    id: int
    receiver_key: str
    receiver_kind: str
    document_unique_id: str
    document_version: int
    #: file (the version's filing) or withdraw (MDM^T11 / entered-in-error), ``rcp.epr.models.DeliveryAction``.
    action: str
    case_id: int | None
    meeting_id: int | None
    status: str
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    #: Pending behind an earlier version of the same document that is not delivered yet (T10 after T02).
    waiting_for_previous: bool

    @property
    def needs_attention(self) -> bool:
        return self.status == DeliveryStatus.needs_attention


async def deliveries_for(
    session: AsyncSession, *, case_id: int | None = None, meeting_id: int | None = None
) -> list[DeliveryView]:
    """Deliveries of a case or of a whole meeting, by case, version and receiver."""
    if case_id is None and meeting_id is None:
        raise ValueError("deliveries_for needs a case_id or a meeting_id")
    columns = [
        Delivery.id, Delivery.receiver_key, Delivery.receiver_kind, Delivery.document_unique_id,
        Delivery.document_version, Delivery.document_set_id, Delivery.action, Delivery.case_id, Delivery.meeting_id,
        Delivery.status, Delivery.attempts, Delivery.last_error, Delivery.next_attempt_at, Delivery.delivered_at,
    ]
    query = sa.select(*columns)  # type: ignore[call-overload]
    if case_id is not None:
        query = query.where(col(Delivery.case_id) == case_id)
    if meeting_id is not None:
        # The signing code may give only the case: the meeting's deliveries are also those of its cases.
        cases = sa.select(Case.id).where(col(Case.meeting_id) == meeting_id)  # type: ignore[call-overload]
        query = query.where(sa.or_(col(Delivery.meeting_id) == meeting_id, col(Delivery.case_id).in_(cases)))
    query = query.order_by(col(Delivery.case_id), col(Delivery.document_set_id),
                           col(Delivery.document_version), col(Delivery.receiver_key))
    rows = (await (await session.connection()).execute(query)).all()
    undelivered = {(r.receiver_key, r.document_set_id, r.document_version, r.action)
                   for r in rows if r.status != DeliveryStatus.delivered}
    views = []
    for r in rows:
        # The worker's order (rcp.epr.worker): earlier versions first, and a version's filing before its withdrawal.
        waiting = r.status == DeliveryStatus.pending and any(
            key == r.receiver_key and set_id == r.document_set_id and (
                version < r.document_version or (version == r.document_version and action == DeliveryAction.file
                                                 and r.action == DeliveryAction.withdraw))
            for key, set_id, version, action in undelivered
        )
        views.append(DeliveryView(
            id=r.id, receiver_key=r.receiver_key, receiver_kind=r.receiver_kind,
            document_unique_id=r.document_unique_id, document_version=r.document_version, action=r.action,
            case_id=r.case_id,
            meeting_id=r.meeting_id, status=r.status, attempts=r.attempts, last_error=r.last_error,
            next_attempt_at=as_utc(r.next_attempt_at) if r.next_attempt_at else None,
            delivered_at=as_utc(r.delivered_at) if r.delivered_at else None,
            waiting_for_previous=waiting,
        ))
    return views
