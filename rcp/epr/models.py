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

__all__ = ["Delivery", "DeliveryAttempt", "DeliveryStatus"]



class DeliveryStatus(StrEnum):
    pending = "pending"
    #: Claimed by a worker until ``lease_until``; a crashed worker's claim expires and is taken again.
    sending = "sending"
    delivered = "delivered"
    #: Stopped: the receiver refused the content (AE, 4xx) or kept failing; the coordinator may retry.
    needs_attention = "needs_attention"


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
