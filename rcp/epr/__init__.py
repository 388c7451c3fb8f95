"""Delivery of signed RCP documents to the EPR: a durable outbox, FHIR R4 (IHE MHD), HL7 v2.5 MDM over MLLP,
and a file drop; see ``outbox`` (what the signing code calls) and ``worker`` (what delivers)."""

from __future__ import annotations

from rcp.epr.document import DocumentAuthor, DocumentPatient, SignedDocument
from rcp.epr.models import Delivery, DeliveryAttempt, DeliveryStatus
from rcp.epr.outbox import DeliveryView, configured_receivers, deliveries_for, enqueue, retry
from rcp.epr.worker import RetryPolicy, Worker, build_worker, run_worker

__all__ = [
    "Delivery",
    "DeliveryAttempt",
    "DeliveryStatus",
    "DeliveryView",
    "DocumentAuthor",
    "DocumentPatient",
    "RetryPolicy",
    "SignedDocument",
    "Worker",
    "build_worker",
    "configured_receivers",
    "deliveries_for",
    "enqueue",
    "retry",
    "run_worker",
]
