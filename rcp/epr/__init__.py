"""Delivery of signed RCP documents to the EPR: a durable outbox, FHIR R4 (IHE MHD), HL7 v2.5 MDM over MLLP,
and a file drop; see ``outbox`` (what the signing code calls) and ``worker`` (what delivers).

Wiring, for the app and the minutes:

- in the signature's transaction: ``await enqueue(session, document, configured_receivers(settings),
  case_id=..., meeting_id=..., patient_id=...)`` with ``document`` a :class:`SignedDocument` made from the
  signed version (its ``unique_id`` an OID, ``replaces`` the previous version's for a correction); a withdrawal
  (a version entered in error) is the same call with the document carrying its ``DocumentWithdrawal`` (status
  entered-in-error), from ``rcp.minutes.withdrawals.on_withdrawn``: MDM^T11, entered-in-error, once per receiver;
- in the lifespan (``rcp serve``): ``worker = build_worker(settings, db)``, ``app.state.epr_worker = worker``,
  ``tg.create_task(worker.run(stop))``, and ``await worker.close()`` after ``stop`` is set; routes call
  ``worker.wake()`` after a commit that enqueued something (``rcp.epr.routes`` does for "retry");
- ``rcp worker``: ``await run_worker(settings, db, stop_event)`` (or ``python -m rcp.epr.worker``).
"""

from __future__ import annotations

from rcp.epr.document import (
    DocumentAuthor,
    DocumentOrganisation,
    DocumentPatient,
    DocumentWithdrawal,
    SignedDocument,
)
from rcp.epr.models import Delivery, DeliveryAttempt, DeliveryStatus
from rcp.epr.outbox import DeliveryView, configured_receivers, deliveries_for, enqueue, retry
from rcp.epr.worker import RetryPolicy, Worker, build_worker, run_worker

__all__ = [
    "Delivery",
    "DeliveryAttempt",
    "DeliveryStatus",
    "DeliveryView",
    "DocumentAuthor",
    "DocumentOrganisation",
    "DocumentPatient",
    "DocumentWithdrawal",
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
