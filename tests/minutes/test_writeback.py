"""The write-back worker: a PACS that refuses leaves the signature intact and the job retried; Orthanc for real."""

from __future__ import annotations

import asyncio
import io
import secrets
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta

import highdicom as hd
import pydicom
import pytest
from pydicom.dataset import Dataset

from rcp.config import Settings
from rcp.db import Database, migrate
from rcp.imaging.synthetic import SyntheticPatient, ct_series, to_part10
from rcp.minutes import store
from rcp.minutes.dicom import ENCAPSULATED_PDF_STORAGE, KOS_STORAGE
from rcp.minutes.models import WritebackJob
from rcp.minutes.writeback import run_due_writebacks
from tests.minutes.dciodvfy import dciodvfy
from tests.minutes.memory_archive import FakeArchive, marks
from tests.minutes.seeding import NOW, fill, seed

PATIENT = SyntheticPatient("IPP-WB-1", "CHU-ANGERS", "Lefèvre", "Hélène-Françoise", date(1958, 3, 28), "F")


@pytest.fixture(scope="module")
async def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('writeback') / 'rcp.db'}"
    await asyncio.to_thread(migrate, url)
    return url


@pytest.fixture
async def database(sqlite_url: str) -> AsyncIterator[Database]:
    db = Database(sqlite_url)
    yield db
    await db.close()


async def signed_case(db: Database, series: list[Dataset], *indexes: int,
                      at: datetime | None = NOW, patient: SyntheticPatient = PATIENT) -> store.StoredVersion:
    seeded = await seed(db, study_uids=(str(series[0].StudyInstanceUID),), patient_id=str(series[0].PatientID),
                        issuer=str(series[0].IssuerOfPatientID), person=patient)
    revision = await fill(db, seeded, marks(series, *indexes))
    async with db.session() as s:
        return await store.sign(s, case_id=seeded.case_id, signer_id=seeded.oncologist, seen_revision=revision,
                                at=at)


async def corrected(db: Database, version: store.StoredVersion, at: datetime) -> store.StoredVersion:
    """Version 2 of ``version``'s case, signed by the same account (an amendment)."""
    async with db.session() as s:
        return await store.amend(s, case_id=version.case_id, signer_id=version.version.signed_by,
                                 reason="latéralité", replaces_number=version.version.number,
                                 changes={"comments": "Latéralité corrigée : sein droit."}, at=at)


def read(blob: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(blob))


async def test_an_amendment_stores_one_rejection_note_for_the_replaced_objects(database: Database) -> None:
    """IHE IOCM: the replaced version's KOS and PDF are referenced by a 113001 rejection note, stored once; every
    object written passes dciodvfy."""
    patient = SyntheticPatient(f"IPP-WB-{secrets.token_hex(4)}", "CHU-ANGERS", "Lefèvre", "Hélène-Françoise",
                               date(1958, 3, 28), "F")
    series = ct_series(patient, slices=3, rows=16, columns=16)
    archive = FakeArchive(series)
    v1 = await signed_case(database, series, 0, patient=patient)
    await run_due_writebacks(database, archive, now=NOW, limit=100)
    old = {kind: job.stored_sop_uid for kind, job in (await jobs_of(database, v1.id)).items()}
    assert set(old) == {"kos", "pdf"}
    v2 = await corrected(database, v1, NOW + timedelta(hours=1))
    jobs = await jobs_of(database, v1.id)
    assert jobs["reject"].status == "pending"
    async with database.session() as s:  # asking again (a withdrawal after the amendment) queues nothing more
        again = await store.reject_in_imaging(s, v1.id)
    assert again is not None and again.id == jobs["reject"].id

    await run_due_writebacks(database, archive, now=NOW + timedelta(hours=1), limit=100)
    jobs = await jobs_of(database, v1.id)
    assert jobs["reject"].status == "done", jobs["reject"].last_error
    note = read(archive.stored[jobs["reject"].stored_sop_uid])
    assert note.ConceptNameCodeSequence[0].CodeValue == "113001" and note.Modality == "KO"
    referenced = {sop.ReferencedSOPInstanceUID
                  for study in note.CurrentRequestedProcedureEvidenceSequence
                  for ser in study.ReferencedSeriesSequence for sop in ser.ReferencedSOPSequence}
    assert referenced == set(old.values())
    new = {kind: job.stored_sop_uid for kind, job in (await jobs_of(database, v2.id)).items()}
    assert set(new) == {"kos", "pdf"} and not referenced & set(new.values())
    # The PDFs of both versions share the case's RCP series; the note sits in a series of its own.
    pdf1, pdf2 = read(archive.stored[old["pdf"]]), read(archive.stored[new["pdf"]])
    assert pdf1.SeriesInstanceUID == pdf2.SeriesInstanceUID != note.SeriesInstanceUID
    for blob in archive.stored.values():
        assert dciodvfy(blob) == []
    later = await run_due_writebacks(database, archive, now=NOW + timedelta(days=1), limit=100)
    assert jobs["reject"].id not in {o.job_id for o in later}


async def jobs_of(db: Database, version_id: int) -> dict[str, WritebackJob]:
    async with db.session() as s:
        return {j.kind: j for j in await store.writebacks_for(s, version_id)}


async def test_refusing_pacs_keeps_the_signature_and_retries(database: Database, sqlite_url: str) -> None:
    series = ct_series(PATIENT, slices=3, rows=16, columns=16)
    archive = FakeArchive(series)
    version = await signed_case(database, series, 1)
    archive.mode = "down"
    outcomes = await run_due_writebacks(database, archive, now=NOW, limit=100)
    mine = [o for o in outcomes if o.job_id in {j.id for j in (await jobs_of(database, version.id)).values()}]
    assert len(mine) == 2 and not any(o.ok for o in mine)
    jobs = await jobs_of(database, version.id)
    assert {j.status for j in jobs.values()} == {"failed"}
    assert "PACS unreachable" in jobs["kos"].last_error and jobs["kos"].attempts == 1

    # The server restarts: a new engine on the same database finds the signature and the pending jobs.
    await database.close()
    restarted = Database(sqlite_url)
    try:
        async with restarted.session() as s:
            (again,) = await store.list_versions(s, version.case_id)
        assert again.version.sha256 == version.version.sha256 and again.version.verify()
        archive.mode = "refuse"
        await run_due_writebacks(restarted, archive, now=NOW + timedelta(seconds=31), limit=100)
        jobs = await jobs_of(restarted, version.id)
        assert jobs["kos"].status == "failed" and "49152" in jobs["kos"].last_error and jobs["kos"].attempts == 2
        archive.mode = "ok"
        await run_due_writebacks(restarted, archive, now=NOW + timedelta(hours=2), limit=100)
        jobs = await jobs_of(restarted, version.id)
        assert {j.status for j in jobs.values()} == {"done"}
        kos_uid, pdf_uid = jobs["kos"].stored_sop_uid, jobs["pdf"].stored_sop_uid
        kos = pydicom.dcmread(io.BytesIO(archive.stored[kos_uid]))
        pdf = pydicom.dcmread(io.BytesIO(archive.stored[pdf_uid]))
        assert kos.SOPClassUID == KOS_STORAGE and pdf.SOPClassUID == ENCAPSULATED_PDF_STORAGE
        assert pdf.StudyInstanceUID == series[0].StudyInstanceUID
        # Done jobs are not attempted again.
        later = await run_due_writebacks(restarted, archive, now=NOW + timedelta(days=1), limit=100)
        assert not {o.job_id for o in later} & {j.id for j in jobs.values()}
    finally:
        await restarted.close()


@pytest.mark.orthanc
async def test_orthanc_accepts_kos_and_pdf_and_references_resolve(database: Database, orthanc_url: str) -> None:
    from rcp.imaging.dicomweb import DicomWebClient

    patient = SyntheticPatient(f"IPP-OR-{NOW.microsecond}{id(database) % 10000}", "CHU-ANGERS", "Lefèvre",
                               "Hélène-Françoise", date(1958, 3, 28), "F")
    series = ct_series(patient, slices=4, rows=16, columns=16)
    client = DicomWebClient(orthanc_url)
    try:
        result = await client.store([to_part10(ds) for ds in series])
        assert not result.failed
        study = str(series[0].StudyInstanceUID)
        seeded = await seed(database, study_uids=(study,), patient_id=patient.patient_id, issuer=patient.issuer,
                            person=patient)
        revision = await fill(database, seeded, marks(series, 0, 2))
        async with database.session() as s:
            version = await store.sign(s, case_id=seeded.case_id, signer_id=seeded.oncologist,
                                       seen_revision=revision, at=NOW)
        await run_due_writebacks(database, client, now=NOW + timedelta(days=3), limit=100)
        jobs = await jobs_of(database, version.id)
        assert {j.status for j in jobs.values()} == {"done"}, {k: j.last_error for k, j in jobs.items()}

        # Read both back from Orthanc, in the patient's study.
        listed = await client.list_series(study)
        by_modality = {s.modality: s for s in listed}
        assert {"CT", "KO", "DOC"} <= set(by_modality)
        (ko_instance,) = await client.list_instances(study, by_modality["KO"].series_uid)
        kos = pydicom.dcmread(io.BytesIO(await client.retrieve_instance(study, by_modality["KO"].series_uid,
                                                                         ko_instance.sop_uid)))
        assert kos.PatientID == patient.patient_id and kos.IssuerOfPatientID == patient.issuer
        document = hd.ko.KeyObjectSelectionDocument.from_dataset(kos)
        assert document.ConceptNameCodeSequence[0].CodeValue == "128203"
        marked = {str(series[0].SOPInstanceUID), str(series[2].SOPInstanceUID)}
        referenced = {r.referenced_sop_instance_uid for r in document.content.get_references()}
        assert referenced == marked
        stored_ct = {i.sop_uid: i for i in await client.list_instances(study, str(series[0].SeriesInstanceUID))}
        for sop in referenced:
            ref_study, ref_series, _ = document.resolve_reference(sop)
            assert sop in stored_ct and ref_study == study and ref_series == str(series[0].SeriesInstanceUID)
        (doc_instance,) = await client.list_instances(study, by_modality["DOC"].series_uid)
        pdf = pydicom.dcmread(io.BytesIO(await client.retrieve_instance(study, by_modality["DOC"].series_uid,
                                                                         doc_instance.sop_uid)))
        assert pdf.EncapsulatedDocument[: pdf.EncapsulatedDocumentLength].startswith(b"%PDF-")
        assert pdf.PatientName == series[0].PatientName

        # A retry (lost acknowledgement) stores the same instances again: no duplicates in the study.
        async with database.session() as s:
            for job in jobs.values():
                await store.fail_writeback(s, job.id or 0, error="ack lost", now=NOW)
        await run_due_writebacks(database, client, now=NOW + timedelta(days=4), limit=100)
        assert len(await client.list_instances(study, by_modality["KO"].series_uid)) == 1
    finally:
        await client.close()


async def test_worker_wakes_after_a_signature(database: Database) -> None:
    from rcp.minutes.writeback import WritebackWorker

    patient = SyntheticPatient("IPP-WB-2", "CHU-ANGERS", "Lefèvre", "Hélène-Françoise", date(1958, 3, 28), "F")
    series = ct_series(patient, slices=2, rows=16, columns=16)
    archive = FakeArchive(series)
    async with WritebackWorker(database, archive, interval=3600) as worker:
        version = await signed_case(database, series, 0, at=None)  # signed now: its jobs are due now
        worker.wake()
        for _ in range(200):
            jobs = await jobs_of(database, version.id)
            if {j.status for j in jobs.values()} == {"done"}:
                break
            await asyncio.sleep(0.05)
        assert {j.status for j in jobs.values()} == {"done"}
    await worker.close()  # closing twice is fine


@pytest.mark.orthanc
async def test_orthanc_stores_the_rejection_note_and_our_lists_hide_what_it_rejects(
        database: Database, orthanc_url: str, settings: Settings) -> None:
    """An amendment end to end against Orthanc: the replaced version's KOS and PDF are rejected by an IOCM note
    (113001) that Orthanc stores without acting on it (it is not IOCM-aware), so the service's own series list
    (the viewer's) and study list (the case's) leave the note and the rejected objects out."""
    from rcp.imaging.dicomweb import DicomWebClient
    from rcp.imaging.service import ImagingService
    from rcp.minutes.dicom import fiche_patient

    patient = SyntheticPatient(f"IPP-RJ-{secrets.token_hex(4)}", "CHU-ANGERS", "Lefèvre", "Hélène-Françoise",
                               date(1958, 3, 28), "F")
    series = ct_series(patient, slices=3, rows=16, columns=16)
    study = str(series[0].StudyInstanceUID)
    client = DicomWebClient(orthanc_url)
    service = await ImagingService.open(settings, archive=client, workers=1)
    try:
        assert not (await client.store([to_part10(ds) for ds in series])).failed
        v1 = await signed_case(database, series, 0, patient=patient)
        await run_due_writebacks(database, client, now=NOW + timedelta(days=3), limit=100)
        v2 = await corrected(database, v1, NOW + timedelta(days=3, hours=1))
        await run_due_writebacks(database, client, now=NOW + timedelta(days=4), limit=100)
        jobs = {**{f"v1 {k}": j for k, j in (await jobs_of(database, v1.id)).items()},
                **{f"v2 {k}": j for k, j in (await jobs_of(database, v2.id)).items()}}
        assert {k: j.status for k, j in jobs.items()} == dict.fromkeys(
            ("v1 kos", "v1 pdf", "v1 reject", "v2 kos", "v2 pdf"), "done"), {k: j.last_error for k, j in jobs.items()}

        # Orthanc holds everything, the note included: 3 CT, 2 key-image notes, 2 fiches, 1 rejection note.
        raw = await client.list_series(study)
        assert sorted((s.modality, s.instance_count) for s in raw) == [("CT", 3), ("DOC", 2), ("KO", 1), ("KO", 2)]
        note_series = next(s for s in raw if s.description == "RCP - notes de rejet (IOCM)")
        (note_instance,) = await client.list_instances(study, note_series.series_uid)
        note = read(await client.retrieve_instance(study, note_series.series_uid, note_instance.sop_uid))
        assert note.ConceptNameCodeSequence[0].CodeValue == "113001"
        assert dciodvfy(note) == []

        # The viewer's series list: no note, and only version 2's KOS and PDF.
        shown = await service.study_series(study)
        assert sorted((s.modality, s.description, s.instance_count) for s in shown) == [
            ("CT", str(series[0].SeriesDescription), 3), ("DOC", "RCP - fiche de décision", 1),
            ("KO", "RCP - images clés", 1)]
        doc = next(s for s in shown if s.modality == "DOC")
        (left,) = [i for i in await client.list_instances(study, doc.series_uid)
                   if i.sop_uid == jobs["v2 pdf"].stored_sop_uid]
        assert left.instance_number == 2
        # The case's study list counts what is shown.
        (listed,) = [s for s in await service.patient_studies(fiche_patient(v1.version.fiche().patient))
                     if s.study_uid == study]
        assert (listed.series_count, listed.instance_count, listed.modalities) == (3, 5, ("CT", "DOC", "KO"))
    finally:
        await service.close()
        await client.close()


async def test_a_withdrawal_for_the_wrong_patient_stores_a_patient_safety_rejection(database: Database) -> None:
    """A version withdrawn as filed under the wrong patient: the withdrawal's imaging hook queues, in its own
    transaction, a 113037 rejection note of the version's KOS and PDF, stored once, through dciodvfy."""
    from rcp.minutes import withdrawals
    from rcp.minutes.writeback import imaging_on_withdrawn

    patient = SyntheticPatient(f"IPP-WD-{secrets.token_hex(4)}", "CHU-ANGERS", "Lefèvre", "Hélène-Françoise",
                               date(1958, 3, 28), "F")
    series = ct_series(patient, slices=2, rows=16, columns=16)
    archive = FakeArchive(series)
    v1 = await signed_case(database, series, 1, patient=patient)
    await run_due_writebacks(database, archive, now=NOW, limit=100)
    old = {kind: job.stored_sop_uid for kind, job in (await jobs_of(database, v1.id)).items()}
    async with database.session() as s:
        await withdrawals.withdraw(s, case_id=v1.case_id, number=1, user_id=v1.version.signed_by,
                                   may_manage=False, reason="Fiche saisie sur le mauvais dossier",
                                   wrong_patient=True, at=NOW + timedelta(hours=2), hooks=[imaging_on_withdrawn])
    jobs = await jobs_of(database, v1.id)
    assert set(jobs) == {"kos", "pdf", "reject_pt"}
    await run_due_writebacks(database, archive, now=NOW + timedelta(hours=2), limit=100)
    job = (await jobs_of(database, v1.id))["reject_pt"]
    assert job.status == "done", job.last_error
    note = read(archive.stored[job.stored_sop_uid])
    assert note.ConceptNameCodeSequence[0].CodeValue == "113037"
    referenced = {sop.ReferencedSOPInstanceUID
                  for study in note.CurrentRequestedProcedureEvidenceSequence
                  for ser in study.ReferencedSeriesSequence for sop in ser.ReferencedSOPSequence}
    assert referenced == set(old.values())
    assert dciodvfy(note) == []
