"""The imaging service: one archive, one frame cache, one decode pool and one prefetcher per process.

The app builds it in its lifespan and keeps it on ``app.state.imaging``::

    imaging = await ImagingService.open(settings, database=db)
    try:
        ...
    finally:
        await imaging.close()

Routes ask it for series descriptors and frames; it answers from the cache, or retrieves the instance from the
archive, decodes and encodes every frame in its thread pool (never on the event loop), and caches them. Concurrent
requests for the same instance share one retrieval (single flight), so a viewer asking for ten frames of a cold
multi-frame instance costs one WADO-RS call.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pydicom
from pydicom.errors import InvalidDicomError

from rcp.errors import Invalid, NotFound
from rcp.identifiers import Match, ServicePatient, match
from rcp.imaging.archive import Archive, InstanceSummary, SeriesSummary, StudySummary, open_archive
from rcp.imaging.cache import FrameCache
from rcp.imaging.dicomfile import is_uid, tolerant
from rcp.imaging.frames import (
    EncodedFrame,
    PixelDataError,
    check_pixel_budget,
    decode_frame,
    encode_frame,
    frame_infos,
    number_of_frames,
    sort_frames,
)
from rcp.imaging.prefetch import Prefetcher, PrefetchProgress
from rcp.imaging.rejections import visible_series, visible_study
from rcp.imaging.uploads import ImportGate, sweep_stale

if TYPE_CHECKING:
    from rcp.config import Settings
    from rcp.db import Database

__all__ = ["ImagingService", "encode_instance", "frame_url"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: How long a patient's study list is reused before the PACS is asked again.
STUDY_LIST_TTL_S = 30.0


def frame_url(study_uid: str, series_uid: str, sop_uid: str, frame: int) -> str:
    return f"/api/imaging/frames/{study_uid}/{series_uid}/{sop_uid}/{frame}"


def encode_instance(blob: bytes) -> list[EncodedFrame]:
    """Every frame of a DICOM file, decoded to modality values and encoded for the wire (CPU: run in a thread)."""
    with tolerant():
        try:
            ds = pydicom.dcmread(io.BytesIO(blob))
        except (InvalidDicomError, EOFError, ValueError, TypeError, KeyError, AttributeError, OSError):
            raise PixelDataError("the archive returned an unreadable DICOM file") from None
        check_pixel_budget(ds)
        return [encode_frame(decode_frame(ds, index)) for index in range(number_of_frames(ds))]


def _warm_up() -> None:
    """Import the decoders and touch numpy/zlib once, so the first image of the day does not pay for it."""
    from datetime import date

    from rcp.imaging.synthetic import SyntheticPatient, ct_series, to_part10

    patient = SyntheticPatient("WARMUP", "", "WARMUP", "", date(2000, 1, 1), "O")
    encode_instance(to_part10(ct_series(patient, slices=1, rows=16, columns=16)[0]))


def _check_uids(*uids: str) -> None:
    for uid in uids:
        if not is_uid(uid):
            raise NotFound("No such image: the address holds a malformed UID.")


class ImagingService:
    """The shared imaging resources of one process; see the module docstring for how the app holds it."""

    def __init__(self, *, archive: Archive, cache: FrameCache, executor: ThreadPoolExecutor,
                 owns_archive: bool = True, prefetch_concurrency: int = 4, disk_bytes: int = 20 << 30) -> None:
        self.archive = archive
        self.cache = cache
        self.executor = executor
        # Prefetch decodes in its own single thread, so that what a viewer is waiting for never queues behind
        # a whole agenda being warmed up (the OS shares the cores; the queues stay apart).
        self.background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rcp-imaging-prefetch")
        self._owns_archive = owns_archive
        self._inflight: dict[str, asyncio.Task[list[EncodedFrame]]] = {}
        self._descriptors: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._descriptor_tasks: dict[str, asyncio.Task[dict[str, Any]]] = {}
        #: SOP Instance UIDs an import is checking and storing right now (``rcp.imaging.imports``).
        self.importing: set[str] = set()
        #: How many imports this process receives at once (``rcp.imaging.uploads.ImportGate``).
        self.import_gate = ImportGate()
        #: Imports compare a large incoming instance with the stored one one at a time (``rcp.imaging.imports``).
        self.large_comparisons = asyncio.Semaphore(1)
        self._study_lists: dict[tuple[ServicePatient], tuple[float, list[StudySummary]]] = {}
        self.prefetcher = Prefetcher(self, concurrency=prefetch_concurrency)
        self._closed = False
        #: Disk budget of the frame cache (encoded frames are about a third of the DICOM size).
        self.disk_bytes = disk_bytes

    @classmethod
    async def open(cls, settings: Settings, *, database: Database | None = None, archive: Archive | None = None,
                   memory_bytes: int = 1 << 30, workers: int | None = None) -> ImagingService:
        """Build the service from settings; ``archive`` overrides ``settings.pacs_url`` (then the caller owns it)."""
        owns = archive is None
        if archive is None:
            archive = open_archive(settings, database=database)
        cache = FrameCache(Path(settings.data_dir) / "cache" / "frames", memory_bytes=memory_bytes)
        # Decoding is CPU-bound: as many threads as cores (numpy, zlib and the JPEG codecs release the GIL).
        executor = ThreadPoolExecutor(max_workers=workers or max(2, os.cpu_count() or 2),
                                      thread_name_prefix="rcp-imaging")
        service = cls(archive=archive, cache=cache, executor=executor, owns_archive=owns)
        service.import_gate = ImportGate(running=settings.imports_at_once, waiting=settings.imports_waiting)
        await service.run(_warm_up)
        # Working folders of imports a stopped process left behind (rcp.imaging.uploads).
        await service.run(sweep_stale, Path(settings.data_dir) / "uploads")
        return service

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.prefetcher.close()
        pending: list[asyncio.Task[Any]] = [*self._inflight.values(), *self._descriptor_tasks.values()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self._owns_archive:
            await self.archive.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.background.shutdown(wait=False, cancel_futures=True)

    async def run(self, fn: Callable[..., T], *args: Any, background: bool = False) -> T:
        """CPU work through one door: the service's thread pool (or the prefetch thread)."""
        pool = self.background if background else self.executor
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    # --- studies ----------------------------------------------------------------------------------------------

    async def patient_studies(self, patient: ServicePatient) -> list[StudySummary]:
        """The studies the archive holds for ``patient``: searched by each IPP with its hospital and by the INS,
        kept only when the identity rule (``rcp.identifiers.match``) says they are that patient's.

        Remembered for ``STUDY_LIST_TTL_S``: opening a case, going back, opening it again asks the PACS once.
        Imports through the service forget the lists at once.
        """
        key = (patient,)
        now = time.monotonic()
        remembered = self._study_lists.get(key)
        if remembered is not None and remembered[0] > now:
            return remembered[1]
        # What IOCM rejection notes hide is neither counted nor listed (rcp.imaging.rejections).
        result = [await visible_study(self.archive, study) for study in await self._search_patient(patient)]
        if len(self._study_lists) > 1000:
            self._study_lists.clear()
        self._study_lists[key] = (now + STUDY_LIST_TTL_S, result)
        return result

    def forget_study_lists(self) -> None:
        self._study_lists.clear()

    async def _search_patient(self, patient: ServicePatient) -> list[StudySummary]:
        found: dict[str, StudySummary] = {}
        for identifier in patient.identifiers:
            # An IPP means nothing without its hospital: a bare one is not searched (it would find any hospital's).
            if not identifier.value or (identifier.system == "IPP" and not identifier.assigner):
                continue
            issuer = identifier.assigner if identifier.system == "IPP" else None
            for study in await self.archive.search_studies(patient_id=identifier.value, issuer=issuer):
                if match(patient, study.patient):
                    found.setdefault(study.study_uid, study)
        return sorted(found.values(), key=lambda s: (s.study_date, s.study_time), reverse=True)

    async def study_owner(self, patient: ServicePatient, study_uid: str) -> Match:
        """Whether the archive says ``study_uid`` is ``patient``'s: every record of it must pass the rule.

        A study the archive does not hold is refused (``refused == ("study_uid",)``); the answer names fields,
        never whose study it is.
        """
        if not is_uid(study_uid):
            return Match(refused=("study_uid",))
        studies = await self.archive.search_studies(study_uid=study_uid)
        studies = [s for s in studies if s.study_uid == study_uid]
        if not studies:
            return Match(refused=("study_uid",))
        for study in studies:
            verdict = match(patient, study.patient)
            if not verdict:
                return verdict
        return match(patient, studies[0].patient)

    async def studies_not_of(self, patient: ServicePatient, study_uids: Sequence[str]) -> list[str]:
        """Those of ``study_uids`` the archive does not hold as ``patient``'s (for ``study_uids`` on a case)."""
        return [uid for uid in dict.fromkeys(study_uids) if not await self.study_owner(patient, uid)]

    async def study_series(self, study_uid: str) -> list[SeriesSummary]:
        """The study's series the viewer lists: without IOCM rejection notes and what they reject."""
        _check_uids(study_uid)
        return await visible_series(self.archive, study_uid)

    # --- series descriptors -----------------------------------------------------------------------------------

    async def descriptor(self, study_uid: str, series_uid: str) -> dict[str, Any]:
        """The series descriptor of the wire format (see ``rcp.imaging.frames``), cached in memory and on disk."""
        _check_uids(study_uid, series_uid)
        key = f"{study_uid}/{series_uid}"
        cached = self._descriptors.get(key)
        first_opening = cached is None
        if cached is None:
            cached = await self.cache.get_descriptor(series_uid)
            if cached is not None and cached.get("study_uid") != study_uid:
                cached = None
        if cached is None:
            task = self._descriptor_tasks.get(key)
            if task is None:
                task = asyncio.create_task(self._fetch_descriptor(study_uid, series_uid), name=f"descriptor {key}")
                self._descriptor_tasks[key] = task
                task.add_done_callback(lambda _t: self._descriptor_tasks.pop(key, None))
            cached = await asyncio.shield(task)
        self._descriptors[key] = cached
        self._descriptors.move_to_end(key)
        if first_opening:
            # First opening in this process: bring the whole series in while the viewer shows its first frames,
            # in the descriptor's order, without asking the PACS for the instance list again.
            frames_per_sop: dict[str, int] = {}
            for f in cached["frames"]:
                frames_per_sop[f["sop_uid"]] = max(frames_per_sop.get(f["sop_uid"], 0), int(f["frame"]))
            instances = [InstanceSummary(study_uid, series_uid, sop, frames=n) for sop, n in frames_per_sop.items()]
            self.prefetcher.start_series(f"series:{series_uid}", study_uid, series_uid,
                                         int(cached.get("series_number") or 0), instances)
        while len(self._descriptors) > 512:
            self._descriptors.popitem(last=False)
        return cached

    async def _fetch_descriptor(self, study_uid: str, series_uid: str) -> dict[str, Any]:
        metadata = await self.archive.image_headers(study_uid, series_uid)
        descriptor = await self.run(self._build_descriptor, study_uid, series_uid, metadata)
        await self.cache.put_descriptor(series_uid, descriptor)
        return descriptor

    @staticmethod
    def _build_descriptor(study_uid: str, series_uid: str, metadata: list[Any]) -> dict[str, Any]:
        with tolerant():
            return ImagingService._build_descriptor_tolerant(study_uid, series_uid, metadata)

    @staticmethod
    def _build_descriptor_tolerant(study_uid: str, series_uid: str, metadata: list[Any]) -> dict[str, Any]:
        infos = []
        first = metadata[0] if metadata else None
        for ds in metadata:
            if "Rows" not in ds or "Columns" not in ds:
                continue  # not an image (SR, KOS, PDF): the viewer shows images only
            try:
                infos.extend(frame_infos(ds))
            except (PixelDataError, ValueError, TypeError, AttributeError) as exc:
                # No UID in the log (rcp.logs): the kind of error is what an operator can act on.
                logger.warning("an instance was left out of a series descriptor (%s)", type(exc).__name__)
        ordered = sort_frames(infos)

        def text(keyword: str) -> str:
            value = first.get(keyword) if first is not None else None
            return "" if value is None else str(value)

        try:
            number = int(text("SeriesNumber") or 0)
        except ValueError:
            number = 0
        return {
            "study_uid": study_uid,
            "series_uid": series_uid,
            "modality": text("Modality"),
            "description": text("SeriesDescription"),
            "series_number": number,
            "study_date": text("StudyDate"),
            "frames": [f.as_json(frame_url(study_uid, series_uid, f.sop_uid, f.frame)) for f in ordered],
        }

    # --- frames -----------------------------------------------------------------------------------------------

    async def frame(self, study_uid: str, series_uid: str, sop_uid: str, frame: int) -> EncodedFrame:
        """One encoded frame: memory, else disk, else retrieved from the archive, decoded and cached."""
        hit = self.cache.peek(study_uid, sop_uid, frame)
        if hit is not None:
            self.cache.hits += 1
            return hit
        _check_uids(study_uid, series_uid, sop_uid)
        if frame < 1:
            raise NotFound("Frames are numbered from 1.")
        hit = await self.cache.get(study_uid, sop_uid, frame)
        if hit is not None:
            return hit
        frames = await self._load(study_uid, series_uid, sop_uid)
        if frame > len(frames):
            raise NotFound(f"This instance has {len(frames)} frame(s); frame {frame} does not exist.")
        return frames[frame - 1]

    async def is_cached(self, study_uid: str, sop_uid: str, frames: int) -> bool:
        if self.cache.peek(study_uid, sop_uid, frames) is not None:
            return True
        return await asyncio.to_thread(self.cache.contains, study_uid, sop_uid, frames)

    async def ensure_instance(self, study_uid: str, series_uid: str, sop_uid: str) -> int:
        """Bring every frame of an instance into the cache (prefetch: in the background thread)."""
        return len(await self._load(study_uid, series_uid, sop_uid, background=True))

    async def _load(self, study_uid: str, series_uid: str, sop_uid: str, *, background: bool = False
                    ) -> list[EncodedFrame]:
        key = f"{study_uid}/{sop_uid}"
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._retrieve(study_uid, series_uid, sop_uid, background),
                                       name=f"retrieve {sop_uid}")
            self._inflight[key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        # Shielded: a viewer that goes away does not cancel the retrieval other viewers wait for.
        return await asyncio.shield(task)

    async def _retrieve(self, study_uid: str, series_uid: str, sop_uid: str, background: bool
                        ) -> list[EncodedFrame]:
        blob = await self.archive.retrieve_instance(study_uid, series_uid, sop_uid)
        try:
            frames = await self.run(self._encode_and_store, study_uid, sop_uid, blob, background=background)
        except PixelDataError as exc:
            raise Invalid(f"This image cannot be shown: {exc}.") from None
        self.cache.remember_many(study_uid, sop_uid, frames)
        return frames

    def _encode_and_store(self, study_uid: str, sop_uid: str, blob: bytes) -> list[EncodedFrame]:
        frames = encode_instance(blob)
        self.cache.put_many_blocking(study_uid, sop_uid, frames)
        return frames

    async def trim_cache(self) -> int:
        """Keep the disk cache under its budget (oldest studies go first); returns the bytes freed."""
        return await self.run(self.cache.trim_disk, self.disk_bytes)

    async def missing_studies(self, study_uids: Sequence[str]) -> list[str]:
        """Attached studies the archive does not (or no longer) hold: for the case's readiness checklist."""
        missing = []
        for uid in study_uids:
            if not is_uid(uid) or not await self.archive.search_studies(study_uid=uid, limit=1):
                missing.append(uid)
        return missing

    # --- prefetch ---------------------------------------------------------------------------------------------

    def prefetch(self, key: str, study_uids: Sequence[str]) -> PrefetchProgress:
        for uid in study_uids:
            _check_uids(uid)
        return self.prefetcher.start(key, study_uids)

    def prefetch_progress(self, key: str) -> PrefetchProgress | None:
        return self.prefetcher.progress(key)

    async def prefetch_upcoming_meetings(self, db: Database, *, horizon: timedelta = timedelta(hours=3)
                                         ) -> list[str]:
        """Start the agenda prefetch of every meeting starting within ``horizon`` (call every few minutes).

        Returns the keys started or joined (``meeting:<id>``); a running job is joined, not restarted.
        """
        from sqlmodel import col, select

        from rcp.clock import utcnow
        from rcp.scheduling.agenda import meeting_agenda
        from rcp.scheduling.models import Meeting

        now = utcnow()
        keys: list[str] = []
        await self.trim_cache()
        async with db.session() as session:
            meetings = (await session.exec(
                select(Meeting).where(col(Meeting.status).in_(["scheduled", "live"]),
                                      col(Meeting.starts_at) <= now + horizon,
                                      col(Meeting.starts_at) >= now - timedelta(hours=12))
            )).all()
            for meeting in meetings:
                assert meeting.id is not None
                # The cases the room will offer (rcp.scheduling.agenda): not those deferred or withdrawn.
                cases = [e.case for e in (await meeting_agenda(session, meeting.id)).on_agenda]
                studies = [uid for case in cases for uid in (case.study_uids or []) if is_uid(uid)]
                if studies:
                    key = f"meeting:{meeting.id}"
                    self.prefetch(key, studies)
                    keys.append(key)
        return keys
