"""Identities from the hospital: an HL7 v2.5 ADT listener over MLLP (IHE PAM, French national extension).

The hospital's identity server (the only one that calls the national INSi service) sends patient identity
feeds; the service keeps its patients in step:

- **A28** (add person), **A31** (update person), **A08** (update patient): the patient named by its IPP (PID-3
  type ``PI`` with its assigning authority) is created or updated with the traits of PID-5 (type ``L`` the birth
  name and given names, type ``D`` the used name), PID-7, PID-8, the birthplace (PID-11 address type ``BDL``,
  XAD.9 its INSEE code), the identity status and attributes of PID-32 (PROV, RECUP, VALI, QUAL; DOUT, FICT,
  HOMA) and the INS (PID-3 type ``INS``, with its OID). The INS is recorded only when PID-32 says QUAL and it is
  consistent with sex and birth date (``rcp.identifiers.check_ins``); otherwise AE.
- **A40** (merge patient identifier list): MRG-1 names the merged (old) IPP; its cases — and so their studies
  and drafts, which hang on the case — move to the surviving patient of PID-3, its identifiers too; audited.

Each message is answered with an original-mode ACK (MSA-1 AA, or AE with ERR-8 naming what to fix). Errors name
fields, never values. A message applied once is recorded by its sender and message control id (MSH-10,
``rcp.epr.models.AdtMessage``, in the same transaction as the change): the same message sent again — a sender that
lost our ACK resends it — is answered AA without being applied a second time. The service itself never qualifies an identity: only this feed sets "recovered" or
"qualified" (a coordinator types at most "validated", ``rcp.scheduling.schemas.PatientIn``).

Started by the app when ``RCP_ADT_LISTEN=host:port`` is set (``rcp.app``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import hl7
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rcp.auth import audit
from rcp.clock import utcnow
from rcp.db import Database
from rcp.epr.mllp import END_BLOCK, frame, unframe
from rcp.epr.models import AdtMessage
from rcp.identifiers import (
    INS_NIA_OID,
    INS_NIR_OID,
    PID32_ATTRIBUTE,
    PID32_STATUS,
    check_ins,
    identity_problems,
    ins_system,
    is_ins,
)
from rcp.minutes.models import DecisionVersion
from rcp.scheduling.models import Case, Patient, PatientIdentifier

__all__ = ["AdtError", "AdtIdentity", "handle_message", "parse_identity", "serve"]

log = logging.getLogger(__name__)

_SEX = {"F": "female", "M": "male", "O": "other", "U": "unknown", "A": "other"}
_EVENTS = {"A28", "A31", "A08", "A40"}
#: PID-3 identifier types (CX.5) of an INS: PAM France's ``INS``, and FR Core table 0203's codes.
_INS_TYPES = {"INS", "INS-NIR", "INS-NIA", "INS-NIR-TEST", "INS-NIR-DEMO"}


class AdtError(ValueError):
    """A message the service cannot apply; the text (field names only) goes into ERR-8 of the AE."""


@dataclass
class AdtIdentity:
    """One PID segment, read."""

    ipp: str = ""
    ipp_assigner: str = ""
    ipp_oid: str = ""
    ins: str = ""
    ins_oid: str = ""
    family_name: str = ""
    used_name: str = ""
    given_names: str = ""
    first_given_name: str = ""
    birth_date: date | None = None
    sex: str = "unknown"
    birth_place_code: str = ""
    status: str = "provisional"
    attributes: list[str] = field(default_factory=list)


def _cx(rep: Any) -> tuple[str, str, str, str]:
    """(value, authority name, authority OID, type) of one CX repetition."""
    value = str(rep[0]) if len(rep) > 0 else ""
    authority = rep[3] if len(rep) > 3 else ""
    name, oid = "", ""
    if authority:
        name = str(authority[0]) if len(authority) > 0 else ""
        oid = str(authority[1]) if len(authority) > 1 else ""
    kind = str(rep[4]) if len(rep) > 4 else ""
    return value, name, oid, kind


def _reps(segment: Any, index: int) -> list[Any]:
    if len(segment) <= index or not str(segment[index]):
        return []
    return list(segment[index])


def _component(rep: Any, index: int) -> str:
    return str(rep[index]) if len(rep) > index else ""


def parse_identity(pid: Any) -> AdtIdentity:
    """The identity a PID segment carries (PAM France: PID-3, PID-5, PID-7, PID-8, PID-11, PID-32)."""
    found = AdtIdentity()
    for rep in _reps(pid, 3):
        value, name, oid, kind = _cx(rep)
        if kind in _INS_TYPES and value:
            # PAM France: type INS, the authority's OID telling NIR (.8) from NIA (.9); FR Core's table 0203 codes
            # (INS-NIR, INS-NIA) are read too.
            found.ins, found.ins_oid = value.upper(), oid or (INS_NIA_OID if kind == "INS-NIA" else INS_NIR_OID)
        elif kind == "PI" and value and not found.ipp:
            found.ipp, found.ipp_assigner, found.ipp_oid = value, name, oid
    for rep in _reps(pid, 5):
        kind = _component(rep, 6)
        family = _component(rep, 0)
        if kind == "D":
            found.used_name = family
        elif kind == "L" or not found.family_name:
            found.family_name = family
            found.first_given_name = _component(rep, 1)
            others = _component(rep, 2).replace(",", " ")
            found.given_names = " ".join(x for x in (found.first_given_name, others) if x)
    born = str(pid[7]) if len(pid) > 7 else ""
    if born:
        try:
            found.birth_date = datetime.strptime(born[:8], "%Y%m%d").date()
        except ValueError:
            raise AdtError("PID-7 birth date is not YYYYMMDD") from None
    found.sex = _SEX.get(str(pid[8]) if len(pid) > 8 else "", "unknown")
    for rep in _reps(pid, 11):
        if _component(rep, 6) == "BDL":
            found.birth_place_code = _component(rep, 8)[:5]
    codes = [str(rep) for rep in _reps(pid, 32)]
    statuses = [PID32_STATUS[c] for c in codes if c in PID32_STATUS]
    found.status = statuses[0] if statuses else "provisional"
    found.attributes = sorted({PID32_ATTRIBUTE[c] for c in codes if c in PID32_ATTRIBUTE})
    for _field, problem in identity_problems(found.status, found.attributes):
        raise AdtError(f"PID-32: {problem}")
    if not found.ipp or not (found.ipp_assigner or found.ipp_oid):
        raise AdtError("PID-3 needs the IPP (identifier type PI) with its assigning authority")
    if not found.family_name:
        raise AdtError("PID-5 needs the birth family name (name type L)")
    if found.ins:
        if found.status != "qualified":
            # The INS is kept only for a qualified identity: recorded otherwise, it could leave the service.
            found.ins = ""
        else:
            problems = check_ins(found.ins, found.ins_oid, sex=found.sex, birth_date=found.birth_date)
            if problems:
                raise AdtError("PID-3 INS: " + "; ".join(f"{f}: {m}" for f, m in problems))
    return found


async def _by_ipp(session: AsyncSession, value: str, assigner: str, oid: str) -> Patient | None:
    statement = select(PatientIdentifier).where(PatientIdentifier.system == "IPP", PatientIdentifier.value == value)
    for row in (await session.exec(statement)).all():
        if (oid and row.assigner_oid == oid) or (assigner and row.assigner.casefold() == assigner.casefold()):
            return await session.get(Patient, row.patient_id)
    return None


_TRAITS = ("family_name", "given_names", "birth_date", "sex")


async def _apply(session: AsyncSession, identity: AdtIdentity, source: str) -> Patient:
    """Create or update the patient of ``identity``; trait changes are audited (they may concern signed fiches)."""
    patient = await _by_ipp(session, identity.ipp, identity.ipp_assigner, identity.ipp_oid)
    created = patient is None
    if patient is None:
        patient = Patient(family_name=identity.family_name)
    before = {name: getattr(patient, name) for name in _TRAITS}
    patient.family_name = identity.family_name
    patient.given_names = identity.given_names
    patient.first_given_name = identity.first_given_name
    patient.used_name = identity.used_name
    patient.birth_date = identity.birth_date
    patient.sex = identity.sex
    patient.birth_place_code = identity.birth_place_code
    if patient.identity_status != identity.status or created:
        patient.identity_status_by, patient.identity_status_at = source[:100], utcnow()
        # The feed does not say which document it checked: a document recorded for the former status no longer
        # stands behind this one (the fiche and the FHIR validationMode would otherwise credit it).
        patient.identity_document = ""
    patient.identity_status = identity.status
    patient.identity_attributes = list(identity.attributes)
    session.add(patient)
    await session.flush()
    assert patient.id is not None
    rows = (await session.exec(select(PatientIdentifier).where(PatientIdentifier.patient_id == patient.id))).all()
    if created or not any(r.system == "IPP" and r.value == identity.ipp for r in rows):
        session.add(PatientIdentifier(patient_id=patient.id, system="IPP", value=identity.ipp,
                                      assigner=identity.ipp_assigner[:100], assigner_oid=identity.ipp_oid))
    for row in rows:
        if row.system == "IPP" and row.value == identity.ipp and identity.ipp_oid and not row.assigner_oid:
            row.assigner_oid = identity.ipp_oid
            session.add(row)
    ins_rows = [r for r in rows if is_ins(r.system)]
    if identity.ins:
        for row in ins_rows:
            if row.value != identity.ins:
                await session.delete(row)
        if not any(r.value == identity.ins for r in ins_rows):
            session.add(PatientIdentifier(patient_id=patient.id, system=ins_system(identity.ins_oid), value=identity.ins,
                                          assigner_oid=identity.ins_oid))
    changed = [name for name in _TRAITS if not created and before[name] != getattr(patient, name)]
    what = ("patient created from the hospital's identity feed" if created else
            f"identity updated from the hospital's identity feed (status {identity.status}"
            + (f"; traits changed: {', '.join(changed)}" if changed else "") + ")")
    await audit.record(session, event="patient_record", action="C" if created else "U", patient_id=patient.id,
                       what=what, source=source[:100])
    if changed:
        await _audit_signed_cases(session, patient.id, changed, source)
    await session.flush()
    return patient


async def _audit_signed_cases(session: AsyncSession, patient_id: int, changed: list[str], source: str) -> None:
    """One audit event per case of the patient with a signed decision, in its meeting's trail: the fiche names
    the patient with the traits it was signed with, which are no longer the patient's (the case page says so,
    ``rcp.scheduling.pages``; an amendment signs the new identity)."""
    signed = select(DecisionVersion.case_id).distinct()
    rows = (await session.exec(select(Case.id, Case.meeting_id).where(
        Case.patient_id == patient_id, col(Case.id).in_(signed)))).all()
    for case_id, meeting_id in rows:
        await audit.record(session, event="patient_record", action="U", patient_id=patient_id,
                           meeting_id=meeting_id, source=source[:100],
                           what=f"case {case_id}: identity traits changed after its decision was signed "
                                f"({', '.join(changed)})")


async def _merge(session: AsyncSession, surviving: Patient, mrg: Any, source: str) -> int | None:
    """A40: the patient of MRG-1 (old IPP) is merged into ``surviving``: cases and identifiers move; audited."""
    reps = _reps(mrg, 1)
    if not reps:
        raise AdtError("MRG-1 needs the merged patient's IPP with its assigning authority")
    value, name, oid, _ = _cx(reps[0])
    merged = await _by_ipp(session, value, name, oid)
    if merged is None or merged.id == surviving.id:
        return None  # already merged (a resend), or never known here: nothing to move
    assert merged.id is not None and surviving.id is not None
    moved = (await session.exec(select(Case.id).where(Case.patient_id == merged.id))).all()
    await session.exec(update(Case).where(col(Case.patient_id) == merged.id)
                       .values(patient_id=surviving.id))
    for row in (await session.exec(select(PatientIdentifier).where(PatientIdentifier.patient_id == merged.id))).all():
        if row.system == "IPP":
            row.patient_id = surviving.id  # the old IPP keeps naming the same person (its studies still use it)
            session.add(row)
        else:
            await session.delete(row)
    merged.identity_attributes = sorted({*merged.identity_attributes, "merged"})
    session.add(merged)
    await audit.record(session, event="patient_record", action="U", patient_id=surviving.id, source=source[:100],
                       what=f"patient {merged.id} merged into patient {surviving.id} (ADT A40): cases "
                            + ", ".join(str(c) for c in moved))
    await audit.record(session, event="patient_record", action="U", patient_id=merged.id, source=source[:100],
                       what=f"merged into patient {surviving.id} (ADT A40)")
    return merged.id


def _ack(msh: Any, code: str, text: str = "") -> str:
    def f(i: int) -> str:
        return str(msh[i]) if len(msh) > i else ""

    event = str(msh[9][0][1]) if len(msh) > 9 and len(msh[9][0]) > 1 else ""
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    segments = [
        f"MSH|^~\\&|RCP|RCP|{f(3)}|{f(4)}|{now}||ACK^{event}^ACK|{secrets.token_hex(8)}|P|2.5",
        f"MSA|{code}|{f(10)}",
    ]
    if text:
        clean = text.replace("|", " ").replace("^", " ").replace("&", " ").replace("~", " ").replace("\\", " ")
        segments.append(f"ERR||||E||||{clean[:250]}")
    return "\r".join(segments) + "\r"


async def handle_message(db: Database, text: str) -> str:
    """Apply one ADT message; the ACK text (AA, or AE naming what to fix)."""
    try:
        message = hl7.parse(text.replace("\n", "\r"))
        msh = message.segment("MSH")
    except (hl7.ParseException, KeyError, IndexError):
        return "MSH|^~\\&|RCP|RCP|||||ACK|0|P|2.5\rMSA|AR|\rERR||||E||||not an HL7 v2 message\r"
    event = str(msh[9][0][1]) if len(msh) > 9 and len(msh[9][0]) > 1 else ""
    if event not in _EVENTS:
        return _ack(msh, "AE", f"MSH-9 event {event or '?'} is not handled (A28, A31, A08, A40)")
    source = f"ADT {msh[4] if len(msh) > 4 else ''}".strip()
    sender = "^".join(str(msh[i]) if len(msh) > i else "" for i in (3, 4))[:200]
    control_id = str(msh[10]) if len(msh) > 10 else ""
    if not control_id:
        return _ack(msh, "AE", "MSH-10 message control id is required")
    try:
        identity = parse_identity(message.segment("PID"))
        async with db.session() as session:
            if await _already_applied(session, sender, control_id):
                return _ack(msh, "AA")
            session.add(AdtMessage(sender=sender, control_id=control_id[:199], event=event))
            patient = await _apply(session, identity, source)
            if event == "A40":
                try:
                    mrg = message.segment("MRG")
                except KeyError:
                    raise AdtError("A40 needs an MRG segment") from None
                await _merge(session, patient, mrg, source)
    except KeyError:
        return _ack(msh, "AE", "the message needs a PID segment")
    except AdtError as exc:
        return _ack(msh, "AE", str(exc))
    except IntegrityError:
        # The same message on another connection, applied between our check and our commit: applied once.
        async with db.session() as session:
            if not await _already_applied(session, sender, control_id):
                raise
    return _ack(msh, "AA")


async def _already_applied(session: AsyncSession, sender: str, control_id: str) -> bool:
    """Whether this sender's message ``control_id`` (MSH-10) was applied already (a resend: not applied again)."""
    row = (await session.exec(select(AdtMessage.id).where(AdtMessage.sender == sender,
                                                          AdtMessage.control_id == control_id[:199]))).first()
    return row is not None


async def serve(db: Database, host: str, port: int) -> asyncio.Server:
    """Listen for MLLP connections; each framed message is answered on the same connection, in order."""

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    block = await reader.readuntil(END_BLOCK)
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                try:
                    answer = await handle_message(db, unframe(block).decode("utf-8", "replace"))
                except Exception:  # one bad message must not stop the feed; the sender sees AR and resends
                    log.exception("ADT message could not be applied")
                    answer = "MSH|^~\\&|RCP|RCP|||||ACK|0|P|2.5\rMSA|AR|\r"
                writer.write(frame(answer.encode("utf-8")))
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    return await asyncio.start_server(client, host, port, limit=16 * 1024 * 1024)
