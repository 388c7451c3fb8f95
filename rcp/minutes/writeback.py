"""The write-back worker: stores each signed version's DICOM objects in the patient's imaging archive, and the
IHE IOCM rejection note that hides them once the version is replaced or withdrawn (``store.reject_in_imaging``).

A signature commits its ``writeback_jobs`` rows in the same transaction (``rcp.minutes.store.sign``); this worker
picks up due jobs, builds the objects from the stored version (never from the live draft), stores them with the
archive's ``store()`` (STOW-RS to the PACS, or the local archive) and records the outcome. A study whose patient is
not the fiche's patient (``rcp.identifiers.match``) refuses the job for good (status ``refused``, the reason
recorded, nothing stored). A PACS that is down or refuses the objects leaves the job ``failed`` with the reason and a later ``next_attempt_at``: the signature
stands, the coordinator sees the status, and the next pass retries. Instance UIDs derive from the version hash,
so storing again after a lost acknowledgement does not duplicate anything.

Database transactions are short and never span network calls: read the job, talk to the PACS, write the result.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, Self

from pydicom import dcmwrite
from pydicom.dataset import Dataset
from sqlmodel.ext.asyncio.session import AsyncSession

from rcp.auth import audit
from rcp.clock import as_utc, utcnow
from rcp.db import Database
from rcp.minutes import store
from rcp.minutes.dicom import (
    REJECTED_FOR_PATIENT_SAFETY,
    REJECTED_FOR_QUALITY,
    WrongPatient,
    check_fiche_patient,
    encapsulated_fiche,
    fiche_study,
    key_image_notes,
    rejection_notes,
)
from rcp.minutes.fiche import Fiche
from rcp.minutes.models import DecisionVersion, WritebackJob, WritebackKind
from rcp.minutes.render import fiche_pdf
from rcp.minutes.versions import SignedVersion
from rcp.minutes.withdrawals import StoredWithdrawal
from rcp.scheduling.models import Case

__all__ = [
    "ImagingStore",
    "WritebackOutcome",
    "WritebackWorker",
    "build_objects",
    "imaging_on_withdrawn",
    "run_due_writebacks",
    "to_part10",
]

log = logging.getLogger(__name__)


class _StoreResult(Protocol):
    stored: list[str]
    failed: list[tuple[str, str]]


class _SeriesSummary(Protocol):
    @property
    def series_uid(self) -> str: ...


class ImagingStore(Protocol):
    """The part of ``rcp.imaging.archive.Archive`` the worker uses."""

    async def list_series(self, study_uid: str) -> Sequence[_SeriesSummary]: ...

    async def series_metadata(self, study_uid: str, series_uid: str) -> list[Dataset]: ...

    async def store(self, instances: Sequence[bytes]) -> _StoreResult: ...


@dataclass(frozen=True)
class WritebackOutcome:
    job_id: int
    kind: str
    ok: bool
    sop_uids: tuple[str, ...] = ()
    error: str = ""
    #: Refused for good (the study is another patient's): not retried.
    refused: bool = False


async def imaging_on_withdrawn(session: AsyncSession, withdrawn: StoredWithdrawal) -> None:
    """The imaging side of a withdrawal (a ``rcp.minutes.withdrawals.WithdrawnHook``): queue the IHE IOCM
    rejection note of the withdrawn version's KOS and PDF in the withdrawal's own transaction — DCM 113037
    "Rejected for Patient Safety Reasons" when it was filed under the wrong patient, else 113001 — so a withdrawal
    never stands without it. The app subscribes it in its lifespan (``app.state.on_withdrawn``)."""
    await store.reject_in_imaging(session, withdrawn.stored.id, wrong_patient=withdrawn.wrong_patient,
                                  at=withdrawn.withdrawn_at)


def to_part10(ds: Dataset) -> bytes:
    """The DICOM file (PS3.10: preamble, file meta, data set) STOW-RS and the local archive take."""
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


async def _sources(archive: ImagingStore, fiche: Fiche) -> list[Dataset]:
    """Headers of the series holding the marked images; without marks, of one series of the case's first study."""
    wanted = {(k.study_uid, k.series_uid) for k in fiche.key_images}
    if not wanted and fiche.study_uids:
        series = await archive.list_series(fiche.study_uids[0])
        wanted = {(fiche.study_uids[0], series[0].series_uid)} if series else set()
    headers: list[Dataset] = []
    for study_uid, series_uid in sorted(wanted):
        # Full WADO-RS metadata: the objects copy the patient and study attributes from it.
        headers.extend(await archive.series_metadata(study_uid, series_uid))
    return headers


#: The rejection note's title per job kind (IHE IOCM, CID 7011).
_REJECTIONS = {WritebackKind.reject: REJECTED_FOR_QUALITY, WritebackKind.reject_patient: REJECTED_FOR_PATIENT_SAFETY}


def build_objects(kind: str, fiche: Fiche, version: SignedVersion, sources: Sequence[Dataset], *,
                  replaced_by: SignedVersion | None = None, at: datetime | None = None) -> list[Dataset]:
    """The DICOM objects of one job (CPU work: run in a thread). Empty when there is nothing to write.

    For a rejection (``reject``/``reject_pt``), the notes hiding what the ``kos`` and ``pdf`` jobs of ``version``
    write: those objects are rebuilt (same UIDs, ``rcp.minutes.dicom.writeback_uids``) to be referenced, so the
    note never depends on what the archive answers about them; ``replaced_by`` is the correction, if any, and
    ``at`` when the rejection was decided (the job's creation: a retry builds the same note).
    """
    if kind == WritebackKind.kos:
        return key_image_notes(fiche, version, sources)
    if kind == WritebackKind.pdf:
        # The fiche goes into the case's first study the board reviewed (rcp.minutes.dicom.fiche_study).
        study = fiche_study(fiche)
        source = next((s for s in sources if str(s.StudyInstanceUID) == study), None)
        if source is None:
            return []
        return [encapsulated_fiche(fiche_pdf(fiche, version), fiche, version, source)]
    if kind in _REJECTIONS:
        rejected = [*build_objects(WritebackKind.kos, fiche, version, sources),
                    *build_objects(WritebackKind.pdf, fiche, version, sources)]
        if not rejected:
            return []
        note = (f"Version {version.number} remplacée par la version {replaced_by.number}" if replaced_by
                else f"Version {version.number} retirée")
        return rejection_notes(fiche, version, rejected, title=_REJECTIONS[WritebackKind(kind)],
                               at=at or version.signed_at, note=note, by=replaced_by)
    raise ValueError(f"unknown write-back kind {kind!r}; expected kos, pdf, reject or reject_pt")


async def _attempt(archive: ImagingStore, job: WritebackJob, row: DecisionVersion,
                   version: SignedVersion, replaced_by: SignedVersion | None = None) -> WritebackOutcome:
    assert job.id is not None
    fiche = version.fiche()
    if job.kind != WritebackKind.kos and not fiche.study_uids:
        return WritebackOutcome(job.id, job.kind, ok=True)  # no imaging file to attach the fiche (or a note) to
    sources = await _sources(archive, fiche)
    try:
        # Before anything is built: every header the objects would copy their patient from is the fiche's patient.
        check_fiche_patient(fiche, sources)
    except WrongPatient as exc:
        return WritebackOutcome(job.id, job.kind, ok=False, error=str(exc), refused=True)
    objects = await asyncio.to_thread(build_objects, job.kind, fiche, version, sources, replaced_by=replaced_by,
                                      at=as_utc(job.created_at))
    if not objects:
        return WritebackOutcome(job.id, job.kind, ok=False,
                                error="no imaging study with headers for this case: nothing to attach to yet")
    blobs = await asyncio.to_thread(lambda: [to_part10(o) for o in objects])
    uids = tuple(str(o.SOPInstanceUID) for o in objects)
    result = await archive.store(blobs)
    refused = [reason for _uid, reason in result.failed]
    if refused or not set(uids) <= set(result.stored):
        return WritebackOutcome(job.id, job.kind, ok=False, sop_uids=uids,
                                error="; ".join(refused) or "the archive did not acknowledge every object")
    return WritebackOutcome(job.id, job.kind, ok=True, sop_uids=uids)


async def run_due_writebacks(db: Database, archive: ImagingStore, *, now: datetime | None = None,
                             limit: int = 10) -> list[WritebackOutcome]:
    """One pass over the due jobs; returns what happened to each. Call it periodically (and after a signature)."""
    now = now or utcnow()
    async with db.session() as session:
        jobs = await store.due_writebacks(session, now=now, limit=limit)
        work = []
        for job in jobs:
            row = await session.get(DecisionVersion, job.version_id)
            if row is not None:
                stored = await store.list_versions(session, row.case_id)
                version = next(s.version for s in stored if s.id == row.id)
                replaced_by = next((s.version for s in stored if s.replaces_id == row.id), None)
                work.append((job, row, version, replaced_by))
    outcomes = []
    for job, row, version, replaced_by in work:
        assert job.id is not None
        try:
            outcome = await _attempt(archive, job, row, version, replaced_by)
        except Exception as exc:  # noqa: BLE001 - any failure is recorded on the job and retried later
            # The message of our own errors and the archive's never carries patient data (see rcp.errors).
            outcome = WritebackOutcome(job.id, job.kind, ok=False, error=f"{type(exc).__name__}: {exc}"[:500])
        async with db.session() as session:
            if outcome.ok:
                await store.complete_writeback(session, job.id, sop_uid=",".join(outcome.sop_uids)[:64], now=now)
            elif outcome.refused:
                await store.refuse_writeback(session, job.id, error=outcome.error, now=now)
                # In the audit trail too (DICOM Instances Transferred, serious failure), naming the patient: a
                # study filed under the wrong identity is something the identity officer follows up.
                case = await session.get(Case, row.case_id)
                await audit.record(session, event="dicom_instances_transferred", action="C", outcome=8,
                                   patient_id=case.patient_id if case is not None else None,
                                   meeting_id=case.meeting_id if case is not None else None,
                                   what=f"case {row.case_id}: {job.kind} of version {row.number} refused, the "
                                        "study is not the fiche's patient's; nothing stored")
            else:
                await store.fail_writeback(session, job.id, error=outcome.error,
                                           sop_uid=",".join(outcome.sop_uids)[:64], now=now)
        if outcome.ok:
            log.info("case %s: %s of version %s stored in the imaging archive", row.case_id, job.kind, row.number)
        else:
            log.warning("case %s: %s of version %s not stored (attempt %s): %s", row.case_id, job.kind,
                        row.number, job.attempts + 1, outcome.error)
        outcomes.append(outcome)
    return outcomes


class WritebackWorker:
    """Runs :func:`run_due_writebacks` every ``interval`` seconds, and at once when woken (after a signature).

    Owned by the app's lifespan::

        async with WritebackWorker(db, archive) as worker:
            app.state.minutes_writeback = worker   # the minutes routes call worker.wake() after signing
            yield

    Leaving the block stops the loop (the current pass is cancelled; its jobs stay due and run next time).
    """

    def __init__(self, db: Database, archive: ImagingStore, *, interval: float = 30.0, batch: int = 10) -> None:
        self.db = db
        self.archive = archive
        self.interval = interval
        self.batch = batch
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.passes = 0

    def wake(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            try:
                outcomes = await run_due_writebacks(self.db, self.archive, limit=self.batch)
            except Exception:
                log.exception("write-back pass failed; retrying in %s s", self.interval)
                outcomes = []
            self.passes += 1
            if len(outcomes) >= self.batch:
                continue  # more may be due: do not wait
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
            except TimeoutError:
                pass
            self._wake.clear()

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._loop(), name="minutes-writeback")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop the loop; safe to call twice."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
