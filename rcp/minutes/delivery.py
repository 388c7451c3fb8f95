"""From a signed decision version to the EPR outbox: the minutes side of ``rcp.epr``.

``rcp.epr`` delivers a :class:`rcp.epr.document.SignedDocument` (PDF + identities) to the hospital records; this
module builds one from a stored version and, as an :data:`rcp.minutes.store.on_signed` hook, enqueues it in the
signature's own transaction, so a version is never signed without its deliveries (or the other way round).

Identifiers are OIDs derived from stable inputs (``2.25.<uuid>`` form, PS3.5 B.2 / ISO 9834-8): the document set
per case, the document per version (its content hash), so rebuilding a document years later gives the same ids
and a correction's ``replaces`` points at the version it corrects.

Wiring (app lifespan)::

    store.on_signed.append(epr_on_signed(configured_receivers(settings)))
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Sequence

from sqlmodel.ext.asyncio.session import AsyncSession

from rcp.epr.document import DocumentAuthor, DocumentPatient, DocumentStaging, SignedDocument
from rcp.epr.outbox import enqueue
from rcp.minutes import store
from rcp.minutes.fiche import Fiche, Physician
from rcp.minutes.render import fiche_pdf
from rcp.minutes.versions import SignedVersion
from rcp.people import PersonName
from rcp.scheduling.models import Case
from rcp.scheduling.specialties import specialty as specialty_of

__all__ = ["document_ids", "epr_on_signed", "to_signed_document"]

log = logging.getLogger(__name__)


def _oid(*parts: str) -> str:
    """A ``2.25`` OID from a name-based UUID (RFC 4122 version 5, ISO/IEC 9834-8): the same inputs, the same OID."""
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, '/'.join(parts)).int}"


def document_ids(fiche: Fiche, version: SignedVersion) -> tuple[str, str]:
    """(set id, unique id) of a case's fiche document and of one of its versions.

    The set id names the case across its versions (and, with the patient and meeting in it, does not collide with
    another installation's case of the same number); the unique id adds the version's content hash.
    """
    p = fiche.patient
    case = ("rcp-fiche", str(fiche.case_id), str(fiche.meeting_id), fiche.meeting_date.isoformat(), p.ins,
            p.local_id, p.local_id_issuer)
    return _oid(*case), _oid(*case, str(version.number), version.sha256)


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


def to_signed_document(fiche: Fiche, version: SignedVersion, pdf: bytes, *,
                       replaces: SignedVersion | None = None) -> SignedDocument:
    """The EPR document of ``version``; ``ValueError`` when the patient has neither a qualified INS nor an IPP."""
    patient = fiche.patient
    set_id, unique_id = document_ids(fiche, version)
    return SignedDocument(
        set_id=set_id,
        version=version.number,
        unique_id=unique_id,
        replaces=document_ids(replaces.fiche(), replaces)[1] if replaces is not None else None,
        title=f"Fiche RCP - {fiche.board.name}",
        status="final" if replaces is None else "amended",
        # The INS only for a qualified identity (RNIV): ``shared_ins`` is empty otherwise, and the IPP names them.
        patient=DocumentPatient(ins=patient.shared_ins, ins_oid=patient.ins_system,
                                identity_status=patient.identity_status,
                                identity_attributes=patient.identity_attributes,
                                identity_document=patient.identity_document, identity_date=patient.identity_date,
                                ipp=patient.local_id,
                                ipp_assigner=patient.local_id_issuer[:20] if patient.local_id else "",
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
    )


def epr_on_signed(receivers: Sequence[str]) -> store.SignedHook:
    """An ``on_signed`` hook that renders the PDF and enqueues one delivery per receiver in the same transaction.

    A patient with neither a qualified INS nor an IPP cannot be delivered to the EPR (``DocumentPatient`` requires
    one): the signature still stands, and the gap is logged for the coordinator (the fiche stays available as PDF
    and in the imaging file).
    """

    async def hook(session: AsyncSession, stored: store.StoredVersion) -> None:
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
        document = to_signed_document(fiche, stored.version, pdf, replaces=previous)
        case = await session.get(Case, stored.case_id)
        await enqueue(session, document, receivers, case_id=stored.case_id,
                      meeting_id=case.meeting_id if case else None, patient_id=case.patient_id if case else None)

    return hook
