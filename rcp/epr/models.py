"""Tables of the EPR outbox: one delivery per receiver and document version, and every attempt at it.

A delivery row is written in the same transaction as the signature (``rcp.epr.outbox.enqueue``), so a signed
version can never lack its deliveries, and a rolled-back signature leaves none behind.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

import rcp.scheduling.models  # noqa: F401 - registers "cases", the target of deliveries.case_id
from rcp.clock import utcnow
from rcp.db import timestamp

__all__ = ["AdtMessage", "Delivery", "DeliveryAction", "DeliveryAttempt", "DeliveryStatus"]



class DeliveryStatus(StrEnum):
    pending = "pending"
    #: Claimed by a worker until ``lease_until``; a crashed worker's claim expires and is taken again.
    sending = "sending"
    delivered = "delivered"
    #: Stopped: the receiver refused the content (AE, 4xx) or kept failing; the coordinator may retry.
    needs_attention = "needs_attention"


class DeliveryAction(StrEnum):
    #: File the version: MDM^T02 (T10 for a correction), an ITI-65 bundle, a folder in the file drop.
    file = "file"
    #: Withdraw a version entered in error: MDM^T11, the DocumentReference set to entered-in-error. Its row is keyed
    #: by the withdrawal's own OID (``document_unique_id``) and waits for the version's filing on that receiver.
    withdraw = "withdraw"


class Delivery(SQLModel, table=True):
    __tablename__ = "deliveries"
    __table_args__ = (
        sa.UniqueConstraint("receiver_key", "document_unique_id", name="uq_delivery_receiver_document"),
        sa.Index("ix_deliveries_due", "status", "next_attempt_at"),
        sa.Index("ix_deliveries_order", "receiver_key", "document_set_id", "document_version"),
    )

    id: int | None = Field(default=None, primary_key=True)
    #: The receiver URL without credentials (``mllp://engine:2575``).
    receiver_key: str = Field(sa_column=sa.Column(sa.String(300), nullable=False))
    receiver_kind: str = Field(default="", max_length=10)
    document_set_id: str = Field(sa_column=sa.Column(sa.String(128), nullable=False))
    document_unique_id: str = Field(sa_column=sa.Column(sa.String(128), nullable=False))
    document_version: int = Field(default=1)
    action: str = Field(default=DeliveryAction.file, sa_column=sa.Column(sa.String(10), nullable=False,
                                                                          server_default="file"))
    case_id: int | None = Field(
        default=None,
        sa_column=sa.Column(sa.ForeignKey("cases.id", ondelete="SET NULL"), nullable=True, index=True),
    )
    meeting_id: int | None = Field(default=None, sa_column=sa.Column(sa.Integer, nullable=True, index=True))
    patient_id: int | None = Field(default=None, sa_column=sa.Column(sa.Integer, nullable=True, index=True))
    #: ``SignedDocument.to_json()``: the frozen content, PDF included, so any worker can rebuild the message.
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False))
    status: str = Field(default=DeliveryStatus.pending, max_length=20)
    attempts: int = Field(default=0)
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_column=timestamp(nullable=False))
    lease_until: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))
    claim_token: str | None = Field(default=None, max_length=32)
    #: Why it needs attention / why the last attempt failed: the receiver's answer excerpt.
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    #: MSH-10 / FHIR Bundle identifier: the same on every resend of this version to this receiver.
    idempotency_key: str = Field(sa_column=sa.Column(sa.String(40), nullable=False, unique=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp(nullable=False))
    delivered_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))


class DeliveryAttempt(SQLModel, table=True):
    """One try: when, what came of it, and an excerpt of the answer (no patient data is logged from it)."""

    __tablename__ = "delivery_attempts"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(
        sa_column=sa.Column(sa.ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    at: datetime = Field(default_factory=utcnow, sa_column=timestamp(nullable=False))
    #: delivered, retry or needs_attention (``rcp.epr.receivers.Verdict``), or "retried" by a coordinator.
    outcome: str = Field(max_length=20)
    summary: str = Field(default="", max_length=200)
    answer: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False, server_default=""))
    duration_ms: int = Field(default=0)
    worker: str = Field(default="", max_length=100)


class AdtMessage(SQLModel, table=True):
    """An ADT message of the hospital's identity feed that was applied (``rcp.epr.adt``), by its sender and MSH-10.

    HL7 v2 original-mode acknowledgement: a sender that gets no ACK (a lost connection, a timeout) sends the same
    message again, with the same message control id (MSH-10, unique per sending application). Applying it twice
    would audit a second change and could undo a later update sent in between; the second copy is answered AA
    and not applied. Kept in the database, so a restart between the two copies does not forget the first.
    """

    __tablename__ = "adt_messages"
    __table_args__ = (sa.UniqueConstraint("sender", "control_id", name="uq_adt_message_sender_control_id"),)

    id: int | None = Field(default=None, primary_key=True)
    #: MSH-3 and MSH-4 (sending application and facility), "^"-joined: MSH-10 is unique per sender only.
    sender: str = Field(max_length=200)
    #: MSH-10, the message control id (ST, at most 199 characters from HL7 v2.7; 20 in v2.5).
    control_id: str = Field(max_length=199)
    #: MSH-9.2, the trigger event (A28, A31, A08, A40).
    event: str = Field(default="", max_length=3)
    received_at: datetime = Field(default_factory=utcnow, sa_column=timestamp(nullable=False))
