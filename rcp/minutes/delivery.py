"""From a signed decision version to the EPR outbox: the minutes side of ``rcp.epr``.

``rcp.epr`` delivers a :class:`rcp.epr.document.SignedDocument` (PDF + identities) to the hospital records; this
module builds one from a stored version and, as an :data:`rcp.minutes.store.on_signed` hook, enqueues it in the
signature's own transaction, so a version is never signed without its deliveries (or the other way round).

Identifiers are OIDs derived from stable inputs (``rcp.minutes.oids``): the document set per case, the document
per version (its content hash), so rebuilding a document years later gives the same ids and a correction's
``replaces`` points at the version it corrects.

Wiring (app lifespan)::

    store.on_signed.append(epr_on_signed(configured_receivers(settings)))
    withdrawals.on_withdrawn.append(epr_on_withdrawn(configured_receivers(settings)))

A withdrawal (``rcp.minutes.withdrawals``) goes out the same way: the same document, rebuilt from the unchanged
version, carrying its :class:`~rcp.epr.document.DocumentWithdrawal` (status entered-in-error), enqueued once per
receiver in the withdrawal's transaction (MDM^T11, the DocumentReference set to entered-in-error).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence

from sqlmodel.ext.asyncio.session import AsyncSession

from rcp.auth.models import User
from rcp.epr.document import (
    DocumentAuthor,
    DocumentOrganisation,
    DocumentPatient,
    DocumentStaging,
    DocumentWithdrawal,
    SignedDocument,
)
from rcp.epr.outbox import enqueue
from rcp.errors import RcpError
from rcp.minutes import store, withdrawals
from rcp.minutes.cda import fiche_cda
from rcp.minutes.fiche import Fiche, Physician
from rcp.minutes.oids import document_ids, withdrawal_id
from rcp.minutes.render import fiche_pdf
from rcp.minutes.versions import SignedVersion
from rcp.people import PersonName
from rcp.scheduling.models import Case
from rcp.scheduling.specialties import specialty as specialty_of

__all__ = ["document_ids", "epr_on_signed", "epr_on_withdrawn", "to_signed_document", "withdrawal_id"]

log = logging.getLogger(__name__)


def _author(p: Physician) -> DocumentAuthor:
    """The signer in parts, from the account (``Physician.person``), never split from the display string; a
    name still to complete cannot sign (``store.signer_account``), so ``person`` is there for every signer."""
    name = p.person or PersonName(family=p.name, unsplit=True)
    label = ""
    code = ""
    if p.specialty:
        try:
            spec = specialty_of(p.specialty)
            label, code = spec.label, spec.national_code
        except ValueError:
            pass
    family, given, _prefix = name.as_xcn()
    return DocumentAuthor(family_name=family, given_names=given, prefix=name.prefix,
                          id_kind="RPPS" if p.rpps else "", id_value=p.rpps,
                          local_id=str(p.user_id) if p.user_id is not None else "", specialty=p.specialty,
                          specialty_code=code, specialty_label=label)


def _stagings(fiche: Fiche) -> tuple[DocumentStaging, ...]:
    """The fiche's stagings for the EPR, each as written (``rcp.minutes.staging``: prefix kept, edition given)."""
    out = [DocumentStaging(kind=kind, text=tnm.label(), edition=tnm.edition, stage=tnm.stage)
           for kind, tnm in (("clinical", fiche.clinical_tnm), ("pathological", fiche.pathological_tnm)) if tnm]
    out.extend(DocumentStaging(kind="other", text=o.label()) for o in fiche.other_classifications)
    return tuple(out)


def establishment_of(fiche: Fiche) -> DocumentOrganisation | None:
    """The establishment the board belongs to as it was signed (``BoardInfo.establishment``, the board's
    registration: rcp.scheduling.registration), as the EPR documents name it (HL7 MSH-4, FHIR author organisation).
    None for a board registered with none: MSH-4 then falls back to the receiver's configured facility."""
    found = fiche.board.establishment
    if found is None:
        return None
    try:
        custodian = found.custodian
        return DocumentOrganisation(finess=found.finess, name=found.name, facility_type=found.facility_type,
                                    custodian_finess=custodian[0] if custodian[0] != found.finess else "",
                                    custodian_name=custodian[1] if custodian[0] != found.finess else "")
    except ValueError:
        log.warning("case %s: the board's establishment cannot name the document's sender: MSH-4 falls back",
                    fiche.case_id)
        return None


def fiche_cda_or_none(fiche: Fiche, version: SignedVersion, replaced: SignedVersion | None) -> bytes:
    """The CANCER-FRCP CDA R2 of the version (``rcp.minutes.cda``), or b"" when it cannot be built: the PDF still
    goes, and a signature never fails for want of its CDA (the gap is logged, without patient data)."""
    try:
        return fiche_cda(fiche, version, replaced=replaced)
    except (ValueError, RcpError) as exc:
        log.warning("case %s: version %s leaves without its CDA (%s)", fiche.case_id, version.number,
                    type(exc).__name__)
        return b""


def to_signed_document(fiche: Fiche, version: SignedVersion, pdf: bytes, *,
                       replaces: SignedVersion | None = None,
                       withdrawal: withdrawals.StoredWithdrawal | None = None,
                       withdrawn_by: Physician | None = None, cda: bytes = b"") -> SignedDocument:
    """The EPR document of ``version``; ``ValueError`` when the patient has neither a qualified INS nor an IPP.

    With ``withdrawal`` (and the account that withdrew it, ``withdrawn_by``), the document that withdraws the
    version: the same content, status entered-in-error."""
    patient = fiche.patient
    set_id, unique_id = document_ids(fiche, version)
    return SignedDocument(
        set_id=set_id,
        version=version.number,
        unique_id=unique_id,
        replaces=document_ids(replaces.fiche(), replaces)[1] if replaces is not None else None,
        title=f"Fiche RCP - {fiche.board.name}",
        status="entered-in-error" if withdrawal is not None else "final" if replaces is None else "amended",
        # The INS only for a qualified identity (RNIV): ``shared_ins`` is empty otherwise, and the IPP names them.
        patient=DocumentPatient(ins=patient.shared_ins, ins_oid=patient.ins_system,
                                identity_status=patient.identity_status,
                                identity_attributes=patient.identity_attributes,
                                identity_document=patient.identity_document, identity_date=patient.identity_date,
                                ipp=patient.local_id,
                                ipp_assigner=patient.local_id_issuer if patient.local_id else "",
                                ipp_assigner_oid=patient.local_id_issuer_oid if patient.local_id else "",
                                family_name=patient.family_name, given_names=patient.given_names,
                                birth_date=patient.birth_date, sex=patient.sex),
        # The author is the account that signed (users table, by signed_by), never the typed responsible physician.
        authors=(_author(version.signer),) if version.signer else (),
        board=fiche.board.name,
        meeting_date=fiche.meeting_date,
        signed_at=version.signed_at,
        pdf=pdf,
        sha256=hashlib.sha256(pdf).hexdigest(),
        staging=_stagings(fiche),
        withdrawal=DocumentWithdrawal(
            withdrawal_id=withdrawal_id(unique_id), at=withdrawal.withdrawn_at, reason=withdrawal.reason,
            by=_author(withdrawn_by or Physician(name=withdrawal.withdrawn_by_name or "?")),
            wrong_patient=withdrawal.wrong_patient) if withdrawal is not None else None,
        organisation=establishment_of(fiche),
        encounter_id=f"{fiche.meeting_id}.{fiche.case_id}",
        cda=cda,
        hidden_from_patient=fiche.hidden_from_patient,
    )


def epr_on_signed(receivers: Sequence[str]) -> store.SignedHook:
    """An ``on_signed`` hook that renders the PDF and enqueues one delivery per receiver in the same transaction.

    A patient with neither a qualified INS nor an IPP cannot be delivered to the EPR (``DocumentPatient`` requires
    one): the signature still stands, and the gap is logged for the coordinator (the fiche stays available as PDF
    and in the imaging file).
    """

    async def hook(session: AsyncSession, stored: store.StoredVersion) -> None:
        await _enqueue(session, stored, receivers)

    return hook


def epr_on_withdrawn(receivers: Sequence[str]) -> withdrawals.WithdrawnHook:
    """An ``on_withdrawn`` hook: the withdrawn version's document, status entered-in-error, enqueued once per
    receiver in the withdrawal's transaction; the worker sends it after the version's own filing."""

    async def hook(session: AsyncSession, withdrawn: withdrawals.StoredWithdrawal) -> None:
        user = await session.get(User, withdrawn.withdrawn_by)
        await _enqueue(session, withdrawn.stored, receivers, withdrawal=withdrawn,
                       withdrawn_by=store.account_physician(user) if user is not None else None)

    return hook


async def _enqueue(session: AsyncSession, stored: store.StoredVersion, receivers: Sequence[str], *,
                   withdrawal: withdrawals.StoredWithdrawal | None = None,
                   withdrawn_by: Physician | None = None) -> None:
    fiche = stored.version.fiche()
    if not fiche.patient.shared_ins and not fiche.patient.local_id:
        log.warning("case %s: version %s not sent to the EPR: the patient has neither a qualified INS nor an "
                    "IPP", stored.case_id, stored.version.number)
        return
    previous = None
    if stored.version.replaces is not None:
        listed = await store.list_versions(session, stored.case_id)
        previous = next((v.version for v in listed if v.version.number == stored.version.replaces), None)
    pdf = await asyncio.to_thread(fiche_pdf, fiche, stored.version)
    cda = await asyncio.to_thread(fiche_cda_or_none, fiche, stored.version, previous)
    document = to_signed_document(fiche, stored.version, pdf, replaces=previous, withdrawal=withdrawal,
                                  withdrawn_by=withdrawn_by, cda=cda)
    case = await session.get(Case, stored.case_id)
    await enqueue(session, document, receivers, case_id=stored.case_id,
                  meeting_id=case.meeting_id if case else None, patient_id=case.patient_id if case else None)
