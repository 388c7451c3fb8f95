"""Prefetch: pull whole series from the PACS into the frame cache before anyone waits for them.

When a case is opened — and for the whole agenda before a meeting starts — every series of the attached studies is
retrieved, decoded and encoded into the cache, a few instances at a time (bounded concurrency: the PACS is shared
and the machine has two cores). Progress is kept per key ("case:12", "meeting:3") for the readiness checklist and
the viewer's loading indicator. Jobs are owned by the ``Prefetcher`` and cancelled by ``close()``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from rcp.errors import RcpError
from rcp.imaging.archive import Archive, InstanceSummary
from rcp.imaging.frames import PixelDataError

__all__ = ["PrefetchProgress", "Prefetcher"]

logger = logging.getLogger(__name__)

State = Literal["running", "done", "failed", "cancelled"]


class _Loader(Protocol):
    archive: Archive

    async def is_cached(self, study_uid: str, sop_uid: str, frames: int) -> bool: ...

    async def ensure_instance(self, study_uid: str, series_uid: str, sop_uid: str) -> int: ...

    async def descriptor(self, study_uid: str, series_uid: str) -> dict[str, Any]: ...


@dataclass
class PrefetchProgress:
    key: str
    state: State = "running"
    studies: int = 0
    series_total: int = 0
    series_done: int = 0
    instances_total: int = 0
    instances_done: int = 0
    frames_done: int = 0
    #: Messages for people, naming series by number, never patient data ("series 3: unsupported compression").
    errors: list[str] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None

    @property
    def fraction(self) -> float:
        return 1.0 if self.instances_total == 0 else self.instances_done / self.instances_total

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "state": self.state,
            "studies": self.studies,
            "series_total": self.series_total,
            "series_done": self.series_done,
            "instances_total": self.instances_total,
            "instances_done": self.instances_done,
            "frames_done": self.frames_done,
            "fraction": round(self.fraction, 4),
            "errors": self.errors[:50],
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


class Prefetcher:
    """Runs prefetch jobs, at most ``concurrency`` instance retrievals at once across all jobs."""

    def __init__(self, loader: _Loader, *, concurrency: int = 4) -> None:
        self.loader = loader
        self._slots = asyncio.Semaphore(concurrency)
        self._jobs: dict[str, asyncio.Task[None]] = {}
        self._progress: dict[str, PrefetchProgress] = {}

    def progress(self, key: str) -> PrefetchProgress | None:
        return self._progress.get(key)

    def start(self, key: str, study_uids: Sequence[str]) -> PrefetchProgress:
        """Start (or join, when already running) the prefetch of ``study_uids`` under ``key``."""
        running = self._jobs.get(key)
        if running is not None and not running.done():
            return self._progress[key]
        progress = PrefetchProgress(key=key, studies=len(study_uids))
        self._progress[key] = progress
        while len(self._progress) > 1000:  # keep the last thousand jobs' progress
            oldest = next(iter(self._progress))
            if oldest in self._jobs:
                break
            del self._progress[oldest]
        task = asyncio.create_task(self._run(progress, list(dict.fromkeys(study_uids))), name=f"prefetch {key}")
        self._jobs[key] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self._jobs.get(key) is done:
                del self._jobs[key]

        task.add_done_callback(forget)
        return progress

    def start_series(self, key: str, study_uid: str, series_uid: str, number: int,
                     instances: Sequence[InstanceSummary]) -> PrefetchProgress:
        """Prefetch one series whose instances are already known (from its descriptor): no query to the PACS."""
        running = self._jobs.get(key)
        if running is not None and not running.done():
            return self._progress[key]
        progress = PrefetchProgress(key=key, studies=1, series_total=1, instances_total=len(instances))
        self._progress[key] = progress

        async def run() -> None:
            try:
                await self._series(progress, study_uid, series_uid, number, list(instances))
                progress.series_done = 1
                progress.state = "done"
            except asyncio.CancelledError:
                progress.state = "cancelled"
                raise
            finally:
                progress.finished_at = time.time()

        task = asyncio.create_task(run(), name=f"prefetch {key}")
        self._jobs[key] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self._jobs.get(key) is done:
                del self._jobs[key]

        task.add_done_callback(forget)
        return progress

    async def wait(self, key: str) -> PrefetchProgress | None:
        task = self._jobs.get(key)
        if task is not None:
            await asyncio.shield(task)
        return self._progress.get(key)

    async def close(self) -> None:
        tasks = list(self._jobs.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._jobs.clear()

    async def _run(self, progress: PrefetchProgress, study_uids: list[str]) -> None:
        archive = self.loader.archive
        try:
            work: list[tuple[str, str, int, list[InstanceSummary]]] = []
            for study_uid in study_uids:
                try:
                    for series in await archive.list_series(study_uid):
                        instances = await archive.list_instances(study_uid, series.series_uid)
                        work.append((study_uid, series.series_uid, series.series_number, instances))
                        progress.series_total += 1
                        progress.instances_total += len(instances)
                except RcpError as exc:
                    progress.errors.append(f"study {study_uids.index(study_uid) + 1}: {exc.message}")
            for study_uid, series_uid, number, instances in work:
                await self._series(progress, study_uid, series_uid, number, instances)
                progress.series_done += 1
            progress.state = "done"
        except asyncio.CancelledError:
            progress.state = "cancelled"
            raise
        except Exception:
            logger.exception("prefetch %s failed", progress.key)
            progress.state = "failed"
            progress.errors.append("Prefetch stopped on an internal error; the images load on demand.")
        finally:
            progress.finished_at = time.time()

    async def _series(self, progress: PrefetchProgress, study_uid: str, series_uid: str, number: int,
                      instances: list[InstanceSummary]) -> None:
        try:
            await self.loader.descriptor(study_uid, series_uid)
        except RcpError as exc:
            progress.errors.append(f"series {number}: {exc.message}")
            progress.instances_done += len(instances)
            return
        failures: list[str] = []

        async def one(instance: InstanceSummary) -> None:
            try:
                if await self.loader.is_cached(study_uid, instance.sop_uid, instance.frames):
                    progress.frames_done += instance.frames
                    return
                async with self._slots:
                    progress.frames_done += await self.loader.ensure_instance(study_uid, series_uid, instance.sop_uid)
            except (RcpError, PixelDataError) as exc:
                failures.append(getattr(exc, "message", None) or str(exc))
            finally:
                progress.instances_done += 1

        await asyncio.gather(*(one(i) for i in instances))
        for reason in sorted(set(failures)):
            progress.errors.append(f"series {number}: {reason}")
