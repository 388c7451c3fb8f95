"""The demo's history: the past meetings' cases carry signed fiches, one corrected once, with their deliveries done.

A newcomer who opens a past case of the demo finds a finished one — the fiche, its PDF and CDA, the delivery to
the patient record and the copies mailed to the GP and correspondents — without signing anything first. Each
fiche goes through the same code as a signature in the room (``rcp.minutes.store.sign`` / ``amend`` with the
app's ``on_signed`` hooks: EPR outbox rows, mail copies, imaging write-back jobs), by a physician who took part.

What the hooks queued is then recorded as done a few minutes after each signature: demo data never leaves for the
configured receivers or mail relay (they may be real ones on a test platform). The imaging write-back jobs are left
to the worker, as after any signature: they file the fiche into the demo's own imaging archive.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from rcp.auth.models import User
from rcp.clock import as_utc
from rcp.db import Database
from rcp.epr.models import Delivery, DeliveryAttempt, DeliveryStatus
from rcp.errors import RcpError
from rcp.mail import Mail, MailStatus
from rcp.minutes import store
from rcp.minutes.copies import COPY_MAIL, copies_on_signed
from rcp.minutes.delivery import epr_on_signed
from rcp.minutes.models import DecisionVersion
from rcp.scheduling.models import Case, Invitation, Meeting, MeetingStatus, PatientIdentifier

__all__ = ["DEMO_FICHES", "DemoFiche", "load_history"]

log = logging.getLogger(__name__)

_TA = "1.2.250.1.213.1.1.4.322"
_ICD10 = "2.16.840.1.113883.6.3"
_ICDO3 = "2.16.840.1.113883.6.43.1"
#: The delivery and the mails are recorded as done this long after the signature.
_DELIVERED_AFTER = timedelta(minutes=2)


@dataclass(frozen=True)
class DemoFiche:
    """What the board decided for one past case (by the patient's IPP), who signed, and a correction if any."""

    ipp: str
    signer: str
    responsible: str
    fields: Mapping[str, Any]
    #: (reason, changes) of the one correction, signed the next day.
    correction: tuple[str, Mapping[str, Any]] | None = None


DEMO_FICHES: tuple[DemoFiche, ...] = (
    DemoFiche(
        "IPP100001", "dr.oncologue", "dr.chirurgien", {
            "case_status": "discussed",
            "cancer_phase": {"code": "MED-268", "system": _TA},
            "tumour_site": {"code": "C34.1", "system": _ICD10},
            "histology": {"code": "8140/3", "system": _ICDO3},
            "clinical_tnm": {"t": "T1c", "n": "N0", "m": "M0", "edition": "8", "stage": "IA3"},
            "performance_status": {"grade": 0, "scale": "WHO"},
            "proposal": {"type": "surgery", "details": "Lobectomie supérieure droite avec curage ganglionnaire "
                                                       "par vidéothoracoscopie."},
            "guideline": {"conforms": True, "reference": "Référentiel régional cancer bronchique 2025"},
            "patient_informed": True,
            "gp": {"name": "Dr Anne GIRAUD", "specialty": "general_practitioner",
                   "email": "anne.giraud@medecin.mssante.fr"},
            "correspondents": [{"name": "Dr Julien MOREAU", "specialty": "pulmonologist",
                                "hospital": "CH de Villefranche", "email": "julien.moreau@ch-villefranche.mssante.fr"}],
        }),
    DemoFiche(
        "IPP200001", "dr.oncologue", "dr.oncologue", {
            "case_status": "discussed",
            "cancer_phase": {"code": "MED-268", "system": _TA},
            "tumour_site": {"code": "C25.0", "system": _ICD10},
            "histology": {"code": "8140/3", "system": _ICDO3},
            "clinical_tnm": {"t": "T2", "n": "N0", "m": "M0", "edition": "8", "stage": "IB"},
            "performance_status": {"grade": 1, "scale": "WHO"},
            "proposal": {"type": "surgery", "details": "Duodénopancréatectomie céphalique après drainage biliaire."},
            "guideline": {"conforms": True, "reference": "Thésaurus national de cancérologie digestive 2025"},
            "patient_informed": True,
            # The board keeps this one from the patient until the announcement consultation (DMP: INVISIBLE_PATIENT).
            "hidden_from_patient": True,
            "gp": {"name": "Dr Lucien PERRET", "specialty": "general_practitioner",
                   "email": "lucien.perret@medecin.mssante.fr"},
        },
        correction=("CA 19-9 de contrôle oublié dans la proposition",
                    {"comments": "Doser le CA 19-9 après drainage biliaire, avant la chirurgie."})),
)


async def _past_cases(session: AsyncSession) -> dict[str, Case]:
    """The past (closed) meetings' cases, by their patient's IPP."""
    rows = (await session.exec(
        select(Case, PatientIdentifier.value)
        .join(Meeting, col(Meeting.id) == col(Case.meeting_id))
        .join(PatientIdentifier, col(PatientIdentifier.patient_id) == col(Case.patient_id))
        .where(Meeting.status == MeetingStatus.closed, PatientIdentifier.system == "IPP")
    )).all()
    return {ipp: case for case, ipp in rows}


async def _record_done(session: AsyncSession, stored: store.StoredVersion, at: datetime) -> None:
    """What the signature queued, recorded as delivered and sent (never sent: see the module's docstring)."""
    done = at + _DELIVERED_AFTER
    rows = (await session.exec(select(Delivery).where(Delivery.case_id == stored.case_id,
                                                      Delivery.document_version == stored.version.number))).all()
    for row in rows:
        row.status, row.attempts, row.delivered_at, row.next_attempt_at = DeliveryStatus.delivered, 1, done, done
        session.add(row)
        assert row.id is not None
        session.add(DeliveryAttempt(delivery_id=row.id, at=done, outcome="delivered", summary="demo history",
                                    worker="rcp demo"))
    await session.exec(
        update(Mail).where(col(Mail.kind) == COPY_MAIL, col(Mail.decision_version_id) == stored.id)
        .values(status=MailStatus.sent, attempts=1, sent_at=done, created_at=at, next_attempt_at=at))


async def _sign_one(session: AsyncSession, spec: DemoFiche, hooks: Sequence[store.SignedHook]) -> int:
    """Sign (and correct) one past case as the board did; the number of versions signed (0: done before)."""
    names = (spec.signer, spec.responsible)
    users = {u.username: u for u in (await session.exec(select(User).where(col(User.username).in_(names)))).all()}
    ids = {name: user.id for name, user in users.items() if user.id is not None}
    case = (await _past_cases(session)).get(spec.ipp)
    if case is None or case.id is None or not set(names) <= set(ids):
        return 0
    if (await session.exec(select(DecisionVersion.id).where(DecisionVersion.case_id == case.id))).first():
        return 0  # signed already (a demo loaded before): history is written once
    meeting = await session.get(Meeting, case.meeting_id)
    assert meeting is not None
    # Everyone invited to the past meeting took part: the room marked them as joined.
    for invitation in (await session.exec(select(Invitation).where(Invitation.meeting_id == meeting.id))).all():
        if invitation.joined_at is None:
            invitation.joined_at = as_utc(meeting.starts_at)
            session.add(invitation)
    at = as_utc(meeting.starts_at) + timedelta(hours=1)
    responsible = users[spec.responsible]
    fields = {**spec.fields, "responsible_physician": {
        "name": responsible.display_name, "specialty": responsible.specialty, "user_id": ids[spec.responsible]}}
    for name, value in fields.items():
        await store.save_field(session, case.id, name, value, base_version=0, editor_id=ids[spec.signer],
                               at=at - timedelta(minutes=30))
    revision = (await store.load_draft(session, case.id)).revision
    stored = await store.sign(session, case_id=case.id, signer_id=ids[spec.signer], seen_revision=revision, at=at,
                              hooks=hooks)
    await _record_done(session, stored, at)
    if spec.correction is None:
        return 1
    reason, changes = spec.correction
    later = at + timedelta(days=1)
    corrected = await store.amend(session, case_id=case.id, signer_id=ids[spec.signer], reason=reason,
                                  replaces_number=stored.version.number, changes=dict(changes), at=later, hooks=hooks)
    await _record_done(session, corrected, later)
    return 2


async def load_history(db: Database, *, receivers: Sequence[str] = (), locale: str = "fr") -> int:
    """Sign the past cases' fiches that are not signed yet; the number of versions signed.

    ``receivers`` are the EPR receivers the deliveries are recorded for (``configured_receivers(settings)``).
    """
    hooks = [epr_on_signed(receivers), copies_on_signed(locale)]
    signed = 0
    for spec in DEMO_FICHES:
        try:
            # One transaction per case: a demo whose accounts were changed since (no specialty any more, say)
            # still loads; that case stays unsigned.
            async with db.session() as session:
                signed += await _sign_one(session, spec, hooks)
        except RcpError as exc:
            log.warning("demo history: case of %s left unsigned (%s)", spec.ipp, type(exc).__name__)
    return signed
