"""The hospital's identity feed (IHE PAM ADT, French extension) over a real MLLP connection.

A patient is created (A28), updated and qualified with a test INS (A31, PID-32 QUAL), then another patient with
a case is merged into it (A40): the case (and so its studies and draft) follows, and it is audited. The qualified
INS reaches the HL7 and FHIR documents of a fiche signed for that patient. Real parts: the listener of
``rcp.epr.adt`` on a loopback socket, the service's MLLP client, SQLite migrated to head.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import hl7
import pytest
from sqlmodel import select

from rcp.auth.models import AuditEvent
from rcp.db import Database, migrate
from rcp.epr.adt import serve
from rcp.epr.fhir import provide_document_bundle
from rcp.epr.hl7 import mdm_message
from rcp.epr.mllp import MllpClient
from rcp.minutes.delivery import to_signed_document
from rcp.minutes.fiche import Fiche, Physician
from rcp.minutes.render import fiche_pdf
from rcp.minutes.store import _patient_identity
from rcp.minutes.versions import Draft, sign
from rcp.scheduling.models import Case, Patient, PatientIdentifier
from tests.minutes.seeding import seed

HOSPITAL, HOSPITAL_OID = "CHU Lyon", "1.2.250.1.999.69.1"
TEST_INS_OID = "1.2.250.1.213.1.4.10"
SIGNER = Physician(name="Dr Bruno Oncologue", specialty="medical_oncologist", user_id=2)


def nir(sex: str, year: int, month: int) -> str:
    body = f"{1 if sex == 'M' else 2}{year % 100:02d}{month:02d}69{secrets.randbelow(10**6):06d}"
    return body + f"{97 - int(body) % 97:02d}"


def adt(event: str, ipp: str, *, status: str, ins: str = "", family: str = "DUPONT", given: str = "Jeanne",
        born: str = "19790315", sex: str = "F", merged_ipp: str = "", control: str = "",
        ins_authority: str = f"ASIP-SANTE-INS-NIR&{TEST_INS_OID}&ISO") -> str:
    fields = [""] * 33
    ids = [f"{ipp}^^^{HOSPITAL}&{HOSPITAL_OID}&ISO^PI"]
    if ins:
        ids.insert(0, f"{ins}^^^{ins_authority}^INS")
    fields[3], fields[5], fields[7], fields[8] = "~".join(ids), f"{family}^{given}^^^^^L", born, sex
    fields[32] = status
    structure = "ADT_A39" if event == "A40" else "ADT_A05"
    control = control or secrets.token_hex(6)
    segments = [f"MSH|^~\\&|SIH|{HOSPITAL}|RCP|RCP|20261203120000||ADT^{event}^{structure}|{control}|P|2.5",
                "EVN||20261203120000", "PID|" + "|".join(fields[1:])]
    if merged_ipp:
        segments.append(f"MRG|{merged_ipp}^^^{HOSPITAL}&{HOSPITAL_OID}&ISO^PI")
    return "\r".join(segments) + "\r"


def msa(ack: str) -> tuple[str, str]:
    segment = hl7.parse(ack).segment("MSA")
    err = ack.split("ERR|", 1)[1] if "ERR|" in ack else ""
    return str(segment(1)), err


@pytest.fixture
async def database(tmp_path: Any) -> AsyncIterator[Database]:
    url = f"sqlite:///{tmp_path / 'rcp.db'}"
    await asyncio.to_thread(migrate, url)
    db = Database(url)
    yield db
    await db.close()


async def patient_of(db: Database, ipp: str) -> tuple[Patient, list[PatientIdentifier]]:
    async with db.session() as s:
        row = (await s.exec(select(PatientIdentifier).where(PatientIdentifier.value == ipp))).one()
        patient = await s.get(Patient, row.patient_id)
        assert patient is not None
        ids = list((await s.exec(select(PatientIdentifier).where(PatientIdentifier.patient_id == patient.id))).all())
        return patient, ids


async def test_created_updated_qualified_then_merged_over_mllp(database: Database, content: Any,
                                                               now: datetime) -> None:
    server = await serve(database, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    ipp, other_ipp = f"A{secrets.token_hex(4)}", f"B{secrets.token_hex(4)}"
    ins = nir("F", 1979, 3)
    try:
        async with MllpClient("127.0.0.1", port) as client:
            # A28: created, validated by the hospital; an INS sent with a non-qualified status is not kept.
            assert msa(await client.send(adt("A28", ipp, status="VALI", ins=ins))) == ("AA", "")
            patient, ids = await patient_of(database, ipp)
            assert (patient.identity_status, patient.identity_status_by) == ("validated", f"ADT {HOSPITAL}")
            assert [(i.system, i.assigner, i.assigner_oid) for i in ids] == [("IPP", HOSPITAL, HOSPITAL_OID)]

            # An INS that contradicts the sex (its first digit) is refused with AE naming the field.
            code, err = msa(await client.send(adt("A31", ipp, status="QUAL", ins=nir("M", 1979, 3))))
            assert code == "AE" and "sex" in err

            # A31: qualified by INSi at the hospital, with the INS: recorded with its OID.
            assert msa(await client.send(adt("A31", ipp, status="QUAL~HOMA", ins=ins, given="Jeanne Marie")))[0] \
                == "AA"
            patient, ids = await patient_of(database, ipp)
            assert (patient.identity_status, patient.identity_attributes) == ("qualified", ["homonym"])
            assert ("INS-NIR", ins, TEST_INS_OID) in [(i.system, i.value, i.assigner_oid) for i in ids]

            # A40: another patient of the service, with a case, merged into this one.
            seeded = await seed(database, patient_id=other_ipp, issuer=HOSPITAL)
            assert msa(await client.send(adt("A40", ipp, status="QUAL~HOMA", ins=ins,
                                                merged_ipp=other_ipp)))[0] == "AA"
            async with database.session() as s:
                case = await s.get(Case, seeded.case_id)
                assert case is not None and case.patient_id == patient.id
                audits = (await s.exec(select(AuditEvent).where(AuditEvent.patient_id == patient.id))).all()
                assert any("A40" in a.what for a in audits)
            _, ids = await patient_of(database, ipp)
            assert other_ipp in {i.value for i in ids}  # the old IPP keeps naming the same person
    finally:
        server.close()
        await server.wait_closed()

    # The qualified INS reaches the documents: HL7 PID-3 / PID-32 and the FHIR subject.
    patient, ids = await patient_of(database, ipp)
    identity = _patient_identity(patient, ids)
    fiche = Fiche.from_content(content(patient=identity.as_json()))
    version = sign(fiche, draft=Draft(case_id=fiche.case_id), seen_revision=0, signer=SIGNER,
                   invited_ids={1, 2, 3, 4}, existing=[], at=now)
    document = to_signed_document(version.fiche(), version, fiche_pdf(version.fiche(), version))
    pid = hl7.parse(mdm_message(document, control_id="C1")).segment("PID")
    assert f"{ins}^^^ASIP-SANTE-INS-NIR&{TEST_INS_OID}&ISO^INS" in str(pid(3))
    assert str(pid(32)) == "QUAL~HOMA"
    bundle = provide_document_bundle(document, idempotency_key="k")
    docref = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference")
    assert docref["subject"]["identifier"] == {"system": f"urn:oid:{TEST_INS_OID}", "value": ins}


async def test_traits_changed_after_signature_are_audited_and_shown_on_the_case(database: Database) -> None:
    """The hospital corrects the birth name of a patient whose decision is signed: audited, and the case page's
    context names the changed trait (the signed fiche keeps the name it was signed with)."""
    from rcp.minutes import store
    from rcp.scheduling import pages, service
    from tests.minutes.seeding import fill

    ipp = f"C{secrets.token_hex(4)}"
    seeded = await seed(database, patient_id=ipp, issuer=HOSPITAL)
    revision = await fill(database, seeded)
    async with database.session() as s:
        await store.sign(s, case_id=seeded.case_id, signer_id=seeded.oncologist, seen_revision=revision)
    patient, _ = await patient_of(database, ipp)
    server = await serve(database, "127.0.0.1", 0)
    try:
        async with MllpClient("127.0.0.1", server.sockets[0].getsockname()[1]) as client:
            ack = await client.send(adt("A31", ipp, status="VALI", family="DUPRE-MARTIN", given=patient.given_names,
                                        born=patient.birth_date.strftime("%Y%m%d") if patient.birth_date else "",
                                        sex="M" if patient.sex == "male" else "F"))
            assert msa(ack)[0] == "AA"
    finally:
        server.close()
        await server.wait_closed()
    async with database.session() as s:
        audits = (await s.exec(select(AuditEvent).where(AuditEvent.patient_id == patient.id))).all()
        assert any("traits changed: family_name" in a.what for a in audits)
        # ... and in the trail of the meeting of the case whose decision was signed with the old traits.
        assert any(a.meeting_id is not None and f"case {seeded.case_id}: identity traits changed after its "
                   "decision was signed (family_name)" in a.what for a in audits)
        case = await s.get(Case, seeded.case_id)
        assert case is not None
        current, ids = await patient_of(database, ipp)
        out = service.case_out(case, service.patient_out(current, ids))
        assert await pages._identity_changed(s, seeded.case_id, out) == ["family_name"]


async def test_a_resent_message_is_acknowledged_and_not_applied_twice(database: Database) -> None:
    """A sender that lost our ACK sends the same message again (same MSH-10): AA, and nothing changes — not even
    when a later update came in between (applying the old copy again would undo it). A restart keeps the memory
    (the ids are in the database)."""
    ipp, control = f"D{secrets.token_hex(4)}", secrets.token_hex(6)
    first = adt("A28", ipp, status="PROV", family="MARTIN", control=control)
    server = await serve(database, "127.0.0.1", 0)
    try:
        async with MllpClient("127.0.0.1", server.sockets[0].getsockname()[1]) as client:
            assert msa(await client.send(first)) == ("AA", "")
            assert msa(await client.send(adt("A31", ipp, status="VALI", family="MARTIN-DURAND")))[0] == "AA"
    finally:
        server.close()
        await server.wait_closed()
    server = await serve(database, "127.0.0.1", 0)  # a restart of the listener
    try:
        async with MllpClient("127.0.0.1", server.sockets[0].getsockname()[1]) as client:
            assert msa(await client.send(first)) == ("AA", "")
    finally:
        server.close()
        await server.wait_closed()
    patient, _ = await patient_of(database, ipp)
    assert (patient.family_name, patient.identity_status) == ("MARTIN-DURAND", "validated")
    async with database.session() as s:
        audits = (await s.exec(select(AuditEvent).where(AuditEvent.patient_id == patient.id))).all()
    assert len([a for a in audits if "identity feed" in a.what]) == 2  # created, updated: the resend is not one

    # A status the hospital changes no longer credits the document a coordinator had recorded for the old one.
    async with database.session() as s:
        row = await s.get(Patient, patient.id)
        assert row is not None
        row.identity_status, row.identity_document = "provisional", "passport"
        s.add(row)
    server = await serve(database, "127.0.0.1", 0)
    try:
        async with MllpClient("127.0.0.1", server.sockets[0].getsockname()[1]) as client:
            assert msa(await client.send(adt("A31", ipp, status="VALI", family="MARTIN-DURAND")))[0] == "AA"
    finally:
        server.close()
        await server.wait_closed()
    patient, _ = await patient_of(database, ipp)
    assert (patient.identity_status, patient.identity_document) == ("validated", "")


async def test_an_nia_is_stored_as_an_nia_and_reliability_codes_follow_table_0445(database: Database, content: Any,
                                                                                   now: datetime) -> None:
    """PAM France / FR Core: the NIA (OID .9) is stored as INS-NIA and leaves as an NIA (PID-3 authority
    ASIP-SANTE-INS-NIA, FHIR type INS-NIA); PID-32 DOUT/FICT/HOMA are the attributes; a doubtful identity sent as
    validated is refused (RNIV EXI SI 09), and VIDE reads as provisional."""
    nia_oid = "1.2.250.1.213.1.4.9"
    ipp, other, third = (f"E{secrets.token_hex(4)}" for _ in range(3))
    ins = nir("F", 1979, 3)
    server = await serve(database, "127.0.0.1", 0)
    try:
        async with MllpClient("127.0.0.1", server.sockets[0].getsockname()[1]) as client:
            ack = await client.send(adt("A28", ipp, status="QUAL~HOMA", ins=ins,
                                        ins_authority=f"ASIP-SANTE-INS-NIA&{nia_oid}&ISO"))
            assert msa(ack) == ("AA", "")
            code, err = msa(await client.send(adt("A28", other, status="VALI~DOUT")))
            assert code == "AE" and "PID-32" in err
            assert msa(await client.send(adt("A28", third, status="VIDE~FICT")))[0] == "AA"
    finally:
        server.close()
        await server.wait_closed()
    patient, ids = await patient_of(database, ipp)
    assert ("INS-NIA", ins, nia_oid) in [(i.system, i.value, i.assigner_oid) for i in ids]
    assert patient.identity_attributes == ["homonym"]
    fictitious, _ = await patient_of(database, third)
    assert (fictitious.identity_status, fictitious.identity_attributes) == ("provisional", ["fictitious"])
    async with database.session() as s:
        assert (await s.exec(select(PatientIdentifier).where(PatientIdentifier.value == other))).first() is None

    identity = _patient_identity(patient, ids)
    fiche = Fiche.from_content(content(patient=identity.as_json()))
    version = sign(fiche, draft=Draft(case_id=fiche.case_id), seen_revision=0, signer=SIGNER,
                   invited_ids={1, 2, 3, 4}, existing=[], at=now)
    document = to_signed_document(version.fiche(), version, fiche_pdf(version.fiche(), version))
    pid = hl7.parse(mdm_message(document, control_id="C1")).segment("PID")
    assert f"{ins}^^^ASIP-SANTE-INS-NIA&{nia_oid}&ISO^INS" in str(pid(3))
    assert str(pid(32)) == "QUAL~HOMA"
    bundle = provide_document_bundle(document, idempotency_key="k")
    source = next(c for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference"
                  for c in e["resource"]["contained"] if c["resourceType"] == "Patient")
    (ins_identifier,) = [i for i in source["identifier"] if i["value"] == ins]
    assert ins_identifier["system"] == f"urn:oid:{nia_oid}"
    assert ins_identifier["type"]["coding"][0]["code"] == "INS-NIA"
