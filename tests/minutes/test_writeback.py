"""The write-back worker: a PACS that refuses leaves the signature intact and the job retried; Orthanc for real."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta

import highdicom as hd
import pydicom
import pytest
from pydicom.dataset import Dataset

from rcp.db import Database, migrate
from rcp.imaging.synthetic import SyntheticPatient, ct_series, to_part10
from rcp.minutes import store
from rcp.minutes.dicom import ENCAPSULATED_PDF_STORAGE, KOS_STORAGE
from rcp.minutes.models import WritebackJob
from rcp.minutes.writeback import run_due_writebacks
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
                      at: datetime | None = NOW) -> store.StoredVersion:
    seeded = await seed(db, study_uids=(str(series[0].StudyInstanceUID),), patient_id=str(series[0].PatientID),
                        issuer=str(series[0].IssuerOfPatientID), person=PATIENT)
    revision = await fill(db, seeded, marks(series, *indexes))
    async with db.session() as s:
        return await store.sign(s, case_id=seeded.case_id, signer_id=seeded.oncologist, seen_revision=revision,
                                at=at)


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
