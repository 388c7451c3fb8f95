"""The local archive: DICOM files in the data folder, indexed in the ``archive_instances`` table.

The embedded default for one machine (``make run``), and the second backend of the archive contract tests. Files
live at ``<folder>/<study>/<series>/<sop>.dcm``; UIDs are checked against PS3.5 9.1 (digits and dots, at most 64
characters) before they become path components, so a hostile UID cannot escape the folder. File reads and
parsing run in threads.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.errors import InvalidDicomError
from sqlmodel import col, select

from rcp.db import Database
from rcp.imaging.archive import (
    ArchiveNotFound,
    InstanceSummary,
    RawFrame,
    SeriesSummary,
    StoreResult,
    StudySummary,
    patient_name_text,
)
from rcp.imaging.dicomfile import is_uid, same_instance_file, tolerant
from rcp.imaging.models import ArchiveInstance

__all__ = ["LocalArchive", "is_uid"]

logger = logging.getLogger(__name__)

def _s(ds: Dataset, keyword: str, limit: int) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    return str(value)[:limit]


def _i(ds: Dataset, keyword: str) -> int:
    try:
        return int(ds.get(keyword) or 0)
    except (TypeError, ValueError):
        return 0


def _row_from(ds: Dataset, path: str, size: int) -> ArchiveInstance:
    return ArchiveInstance(
        sop_uid=str(ds.SOPInstanceUID),
        study_uid=str(ds.StudyInstanceUID),
        series_uid=str(ds.SeriesInstanceUID),
        sop_class_uid=_s(ds, "SOPClassUID", 64),
        patient_id=_s(ds, "PatientID", 64),
        issuer=_s(ds, "IssuerOfPatientID", 64),
        patient_name=patient_name_text(ds.get("PatientName"))[:200],
        patient_birth_date=_s(ds, "PatientBirthDate", 8),
        patient_sex=_s(ds, "PatientSex", 16),
        study_date=_s(ds, "StudyDate", 8),
        study_time=_s(ds, "StudyTime", 16),
        accession=_s(ds, "AccessionNumber", 16),
        study_description=_s(ds, "StudyDescription", 64),
        modality=_s(ds, "Modality", 16),
        series_description=_s(ds, "SeriesDescription", 64),
        series_number=_i(ds, "SeriesNumber"),
        instance_number=_i(ds, "InstanceNumber"),
        frames=max(1, _i(ds, "NumberOfFrames")),
        transfer_syntax=str(ds.file_meta.get("TransferSyntaxUID", ""))[:64],
        path=path,
        size=size,
    )


class LocalArchive:
    """Files under ``folder``, indexed in ``database`` (which the caller owns and closes)."""

    def __init__(self, folder: Path, database: Database) -> None:
        self.folder = Path(folder)
        self.database = database

    async def close(self) -> None:
        """Nothing to release: we did not open the database, so we do not close it."""

    # --- searches ---------------------------------------------------------------------------------------------

    async def search_studies(self, *, patient_id: str | None = None, issuer: str | None = None,
                             study_uid: str | None = None, limit: int = 200) -> list[StudySummary]:
        query = select(ArchiveInstance)
        if patient_id:
            query = query.where(ArchiveInstance.patient_id == patient_id)
        if study_uid:
            query = query.where(ArchiveInstance.study_uid == study_uid)
        async with self.database.session() as session:
            rows = (await session.exec(query)).all()
        studies: dict[str, list[ArchiveInstance]] = defaultdict(list)
        for row in rows:
            if issuer and row.issuer and row.issuer != issuer:
                continue
            studies[row.study_uid].append(row)
        out = []
        for uid, members in studies.items():
            first = members[0]
            out.append(StudySummary(
                study_uid=uid, patient_id=first.patient_id, issuer=first.issuer, patient_name=first.patient_name,
                patient_birth_date=first.patient_birth_date, patient_sex=first.patient_sex,
                study_date=first.study_date,
                study_time=first.study_time, accession=first.accession, description=first.study_description,
                modalities=tuple(sorted({m.modality for m in members if m.modality})),
                series_count=len({m.series_uid for m in members}), instance_count=len(members),
            ))
        out.sort(key=lambda s: (s.study_date, s.study_time, s.study_uid), reverse=True)
        return out[:limit]

    async def _rows(self, *conditions: Any) -> list[ArchiveInstance]:
        async with self.database.session() as session:
            return list((await session.exec(select(ArchiveInstance).where(*conditions))).all())

    async def list_series(self, study_uid: str) -> list[SeriesSummary]:
        rows = await self._rows(ArchiveInstance.study_uid == study_uid)
        if not rows:
            raise ArchiveNotFound("The archive has no such study.")
        series: dict[str, list[ArchiveInstance]] = defaultdict(list)
        for row in rows:
            series[row.series_uid].append(row)
        return sorted(
            (SeriesSummary(study_uid=study_uid, series_uid=uid, modality=m[0].modality,
                           description=m[0].series_description, series_number=m[0].series_number,
                           instance_count=len(m)) for uid, m in series.items()),
            key=lambda s: (s.series_number, s.series_uid),
        )

    async def _series_rows(self, study_uid: str, series_uid: str) -> list[ArchiveInstance]:
        rows = await self._rows(ArchiveInstance.study_uid == study_uid, ArchiveInstance.series_uid == series_uid)
        if not rows:
            raise ArchiveNotFound("The archive has no such series.")
        return sorted(rows, key=lambda r: (r.instance_number, r.sop_uid))

    async def list_instances(self, study_uid: str, series_uid: str) -> list[InstanceSummary]:
        return [InstanceSummary(study_uid=r.study_uid, series_uid=r.series_uid, sop_uid=r.sop_uid,
                                sop_class_uid=r.sop_class_uid, instance_number=r.instance_number, frames=r.frames)
                for r in await self._series_rows(study_uid, series_uid)]

    async def find_instance(self, sop_uid: str) -> InstanceSummary | None:
        async with self.database.session() as session:
            r = await session.get(ArchiveInstance, sop_uid)
        if r is None:
            return None
        return InstanceSummary(study_uid=r.study_uid, series_uid=r.series_uid, sop_uid=r.sop_uid,
                               sop_class_uid=r.sop_class_uid, instance_number=r.instance_number, frames=r.frames)

    # --- retrieval --------------------------------------------------------------------------------------------

    def _read_headers(self, paths: Sequence[Path]) -> list[Dataset]:
        with tolerant():
            return [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]

    async def series_metadata(self, study_uid: str, series_uid: str) -> list[Dataset]:
        rows = await self._series_rows(study_uid, series_uid)
        return await asyncio.to_thread(self._read_headers, [self.folder / r.path for r in rows])

    async def image_headers(self, study_uid: str, series_uid: str) -> list[Dataset]:
        return await self.series_metadata(study_uid, series_uid)

    async def _row(self, study_uid: str, series_uid: str, sop_uid: str) -> ArchiveInstance:
        async with self.database.session() as session:
            row = await session.get(ArchiveInstance, sop_uid)
        if row is None or row.study_uid != study_uid or row.series_uid != series_uid:
            raise ArchiveNotFound("The archive has no such instance.")
        return row

    async def retrieve_instance(self, study_uid: str, series_uid: str, sop_uid: str) -> bytes:
        row = await self._row(study_uid, series_uid, sop_uid)
        try:
            return await asyncio.to_thread((self.folder / row.path).read_bytes)
        except FileNotFoundError:
            raise ArchiveNotFound("The archive index names a file that is gone; import the study again.") from None

    async def retrieve_series(self, study_uid: str, series_uid: str) -> list[bytes]:
        rows = await self._series_rows(study_uid, series_uid)
        return await asyncio.to_thread(lambda: [(self.folder / r.path).read_bytes() for r in rows])

    async def retrieve_frame(self, study_uid: str, series_uid: str, sop_uid: str, frame: int) -> RawFrame:
        blob = await self.retrieve_instance(study_uid, series_uid, sop_uid)
        return await asyncio.to_thread(_frame_of, blob, frame)

    # --- storage (STOW-RS semantics: PS3.18 10.5) ------------------------------------------------------------

    def _write(self, source: bytes | Path) -> tuple[ArchiveInstance | None, str]:
        with tolerant():
            return self._write_tolerant(source)

    def _write_tolerant(self, source: bytes | Path) -> tuple[ArchiveInstance | None, str]:
        try:
            ds = pydicom.dcmread(source if isinstance(source, Path) else io.BytesIO(source), stop_before_pixels=True)
        except (InvalidDicomError, EOFError, ValueError, TypeError, AttributeError, KeyError, OSError):
            return None, "not a readable DICOM file"
        uids = [str(ds.get(k, "")) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")]
        if not all(is_uid(u) for u in uids):
            return None, "missing or malformed Study/Series/SOP Instance UID"
        study, series, sop = uids
        relative = f"{study}/{series}/{sop}.dcm"
        target = self.folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        # Atomic: a reader never sees half a file, and a stored file is never replaced — os.link fails when the
        # target exists, even when two stores of the same SOP Instance UID race (PS3.3 C.12.1.1.1: immutable).
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as handle:
                if isinstance(source, Path):
                    with source.open("rb") as copied:
                        shutil.copyfileobj(copied, handle, 1 << 20)
                else:
                    handle.write(source)
            placed = _place(Path(tmp), target)
        finally:
            Path(tmp).unlink(missing_ok=True)
        # The same bytes again are a no-op; other content under the same UID is refused.
        if not placed and not _same_as_stored(source, target):
            return None, "an instance with this SOP Instance UID is already stored with other content"
        size = source.stat().st_size if isinstance(source, Path) else len(source)
        return _row_from(ds, relative, size), ""

    async def store(self, instances: Sequence[bytes]) -> StoreResult:
        return await self._index(await asyncio.to_thread(lambda: [self._write(blob) for blob in instances]))

    async def store_files(self, paths: Sequence[Path]) -> StoreResult:
        """``store`` from files on disk, each copied into the archive a megabyte at a time, never read whole: an
        import of large instances holds none of them in memory (issue 18)."""
        return await self._index(await asyncio.to_thread(lambda: [self._write(path) for path in paths]))

    async def _index(self, written: Sequence[tuple[ArchiveInstance | None, str]]) -> StoreResult:
        result = StoreResult()
        rows: dict[str, ArchiveInstance] = {}
        for row, reason in written:
            if row is None:
                result.failed.append(("", reason))
            else:
                rows[row.sop_uid] = row
        if rows:
            async with self.database.session() as session:
                existing = {
                    r.sop_uid: r
                    for r in (await session.exec(
                        select(ArchiveInstance).where(col(ArchiveInstance.sop_uid).in_(list(rows)))
                    )).all()
                }
                for sop_uid, row in list(rows.items()):
                    old = existing.get(sop_uid)
                    if old is None:
                        session.add(row)
                    elif old.path != row.path:
                        # Filed under another study or series: never moved, never replaced (PS3.3 C.12.1.1.1).
                        (self.folder / row.path).unlink(missing_ok=True)
                        del rows[sop_uid]
                        reason = "an instance with this SOP Instance UID is already stored in another study or series"
                        result.failed.append((sop_uid, reason))
            result.stored.extend(rows)
        return result

    async def delete_study(self, study_uid: str) -> int:
        """Remove a study (tests and demo reloads); returns how many instances went."""
        async with self.database.session() as session:
            rows = (await session.exec(select(ArchiveInstance).where(col(ArchiveInstance.study_uid) == study_uid))
                    ).all()
            for row in rows:
                (self.folder / row.path).unlink(missing_ok=True)
                await session.delete(row)
        return len(rows)


def _same_as_stored(source: bytes | Path, target: Path) -> bool:
    """Whether ``source`` is the instance already at ``target`` (one of the two read whole, the other streamed)."""
    if isinstance(source, Path):
        return same_instance_file(target.read_bytes(), source)
    return same_instance_file(source, target)


def _place(tmp: Path, target: Path) -> bool:
    """Put ``tmp`` at ``target`` unless something is there already; False when it was."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        return False
    except OSError:  # a filesystem without hard links: check, then rename (not atomic against a racing store)
        if target.exists():
            return False
        os.replace(tmp, target)
    return True


def _frame_of(blob: bytes, frame: int) -> RawFrame:
    ds = pydicom.dcmread(io.BytesIO(blob))
    syntax = ds.file_meta.TransferSyntaxUID
    count = max(1, int(ds.get("NumberOfFrames") or 1))
    if not 1 <= frame <= count:
        raise ArchiveNotFound(f"Frame {frame} is out of range (1..{count}).")
    if "PixelData" not in ds:
        raise ArchiveNotFound("The instance has no pixel data.")
    data: bytes = ds.PixelData
    if syntax.is_encapsulated:
        for index, fragment in enumerate(generate_frames(data, number_of_frames=count)):
            if index == frame - 1:
                return RawFrame(data=fragment, transfer_syntax=str(syntax))
        raise ArchiveNotFound(f"Frame {frame} is missing from the encapsulated pixel data.")
    length = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel") or 1) * int(ds.BitsAllocated)
    if length % 8:
        raise ArchiveNotFound("Frames of 1-bit pixel data are not byte-aligned; retrieve the instance instead.")
    length //= 8
    return RawFrame(data=data[(frame - 1) * length:frame * length], transfer_syntax=str(syntax))
