"""The imaging service over both archives: descriptors, frames through the cache, prefetch, single flight."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from rcp.config import Settings
from rcp.errors import Invalid, NotFound
from rcp.imaging.archive import Archive
from rcp.imaging.frames import decode_wire
from rcp.imaging.service import ImagingService
from tests.fixtures.dicom_data import make_patient, reference_file, small_ct


@pytest.fixture
async def service(archive: Archive, tmp_path: Path) -> AsyncIterator[ImagingService]:
    settings = Settings(env="test", data_dir=tmp_path)
    imaging = await ImagingService.open(settings, archive=archive, workers=2)
    yield imaging
    await imaging.close()


def _uids(blob: bytes) -> tuple[str, str, str]:
    ds = pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


async def test_descriptor_and_frames(service: ImagingService) -> None:
    patient = make_patient()
    blobs = small_ct(patient, slices=5)
    await service.archive.store(blobs[::-1])
    study_uid, series_uid, _ = _uids(blobs[0])
    descriptor = await service.descriptor(study_uid, series_uid)
    assert descriptor["modality"] == "CT" and descriptor["series_number"] == 2
    assert descriptor["study_date"] == "20261102"
    frames = descriptor["frames"]
    assert [f["position"][2] for f in frames] == sorted(f["position"][2] for f in frames)
    first = frames[0]
    assert first["dtype"] == "int16" and first["photometric"] == "MONOCHROME2" and first["samples"] == 1
    assert first["window"] == [40.0, 400.0]
    assert first["url"] == f"/api/imaging/frames/{study_uid}/{series_uid}/{first['sop_uid']}/1"
    encoded = await service.frame(study_uid, series_uid, first["sop_uid"], 1)
    values = decode_wire(encoded.body, encoded.encoding, encoded.rows, encoded.columns)
    source = next(pydicom.dcmread(io.BytesIO(b)) for b in blobs if _uids(b)[2] == first["sop_uid"])
    assert np.array_equal(values, source.pixel_array.astype(np.int32) - 1024)
    # Second time from memory, and from disk after memory is dropped.
    assert await service.frame(study_uid, series_uid, first["sop_uid"], 1) is encoded
    service.cache._memory.clear()
    again = await service.frame(study_uid, series_uid, first["sop_uid"], 1)
    assert again.body == encoded.body


async def test_multiframe_single_flight(service: ImagingService) -> None:
    blob = reference_file("emri_small_RLE.dcm", make_patient())
    await service.archive.store([blob])
    study_uid, series_uid, sop_uid = _uids(blob)
    calls = 0
    original = service.archive.retrieve_instance

    async def counting(*args: str) -> bytes:
        nonlocal calls
        calls += 1
        return await original(*args)

    service.archive.retrieve_instance = counting  # type: ignore[method-assign]
    try:
        frames = await asyncio.gather(*(service.frame(study_uid, series_uid, sop_uid, n) for n in range(1, 11)))
    finally:
        del service.archive.retrieve_instance
    assert calls == 1
    assert len({f.body for f in frames}) == 10
    with pytest.raises(NotFound):
        await service.frame(study_uid, series_uid, sop_uid, 11)


async def test_prefetch_fills_the_cache(service: ImagingService) -> None:
    patient = make_patient()
    prior = small_ct(patient, slices=4, seed=3)
    current = small_ct(patient, slices=6, seed=4)
    mr = reference_file("MR_small.dcm", patient, study_uid=_uids(current[0])[0])
    await service.archive.store([*prior, *current, mr])
    studies = [_uids(prior[0])[0], _uids(current[0])[0]]
    progress = service.prefetch("case:1", studies)
    assert progress.state == "running"
    done = await service.prefetcher.wait("case:1")
    assert done is not None and done.state == "done", done
    assert (done.series_total, done.instances_total, done.instances_done) == (3, 11, 11)
    assert done.errors == []
    assert done.as_json()["fraction"] == 1.0
    for blob in [*prior, *current, mr]:
        assert service.cache.peek(_uids(blob)[0], _uids(blob)[2], 1) is not None


async def test_unreadable_pixels_are_reported(service: ImagingService) -> None:
    ds = pydicom.dcmread(io.BytesIO(small_ct(make_patient(), slices=1)[0]))
    ds.PixelData = ds.PixelData[:100]  # truncated pixel data
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    await service.archive.store([buffer.getvalue()])
    with pytest.raises(Invalid, match="cannot be shown"):
        await service.frame(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID), 1)


async def test_malformed_uids_are_not_found(service: ImagingService) -> None:
    with pytest.raises(NotFound):
        await service.frame("../../etc", "1.2", "1.3", 1)
    with pytest.raises(NotFound):
        await service.descriptor("1.2", "x;y")


async def test_decoding_runs_off_the_event_loop(service: ImagingService, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from rcp.imaging import service as service_module

    threads: list[str] = []
    original = service_module.encode_instance

    def recording(blob: bytes) -> list[Any]:
        threads.append(threading.current_thread().name)
        return original(blob)

    monkeypatch.setattr(service_module, "encode_instance", recording)
    blobs = small_ct(make_patient(), slices=2)
    await service.archive.store(blobs)
    study_uid, series_uid, sop_uid = _uids(blobs[0])
    await service.frame(study_uid, series_uid, sop_uid, 1)
    assert threads and all(name.startswith("rcp-imaging") for name in threads)
    await service.ensure_instance(*_uids(blobs[1]))
    assert threads[-1].startswith("rcp-imaging-prefetch")


async def test_opening_a_series_prefetches_it(service: ImagingService) -> None:
    blobs = small_ct(make_patient(), slices=4)
    await service.archive.store(blobs)
    study_uid, series_uid, _ = _uids(blobs[0])
    await service.descriptor(study_uid, series_uid)
    progress = await service.prefetcher.wait(f"series:{series_uid}")
    assert progress is not None and progress.state == "done" and progress.instances_done == 4
    for blob in blobs:
        assert service.cache.peek(study_uid, _uids(blob)[2], 1) is not None


async def test_missing_studies(service: ImagingService) -> None:
    blobs = small_ct(make_patient(), slices=1)
    await service.archive.store(blobs)
    present = _uids(blobs[0])[0]
    assert await service.missing_studies([present, "1.2.3.999.1"]) == ["1.2.3.999.1"]


async def test_disk_cache_trim_keeps_the_newest_studies(service: ImagingService) -> None:
    old = small_ct(make_patient(), slices=2, seed=21)
    new = small_ct(make_patient(), slices=2, seed=22)
    await service.archive.store([*old, *new])
    for blob in old:
        await service.frame(*_uids(blob), 1)
    root = service.cache.root
    assert root is not None
    old_study = root / _uids(old[0])[0]
    for path in old_study.rglob("*"):
        os.utime(path, (1_000_000, 1_000_000))
    for blob in new:
        await service.frame(*_uids(blob), 1)
    new_size = sum(p.stat().st_size for p in (root / _uids(new[0])[0]).rglob("*") if p.is_file())
    service.disk_bytes = new_size
    freed = await service.trim_cache()
    assert freed > 0 and not old_study.exists() and (root / _uids(new[0])[0]).exists()


async def test_unsupported_compression_is_named_per_series(service: ImagingService) -> None:
    from pydicom.encaps import encapsulate

    ds = pydicom.dcmread(io.BytesIO(small_ct(make_patient(), slices=1)[0]))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2 video: no image decoder for it
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + b"\x00" * 60])
    ds["PixelData"].VR = "OB"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    await service.archive.store([buffer.getvalue()])
    study_uid = str(ds.StudyInstanceUID)
    service.prefetch("case:mpeg", [study_uid])
    progress = await service.prefetcher.wait("case:mpeg")
    assert progress is not None and progress.state == "done"
    assert progress.errors and progress.errors[0].startswith("series 2: ")
    assert "MPEG2" in progress.errors[0]
    with pytest.raises(Invalid, match="MPEG2"):
        await service.frame(study_uid, str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID), 1)


async def test_a_pacs_that_is_down_says_so(tmp_path: Path) -> None:
    from rcp.imaging.archive import ArchiveUnavailable
    from rcp.imaging.dicomweb import DicomWebClient

    down = DicomWebClient("http://127.0.0.1:9/dicom-web", retries=1, connect_timeout=0.5)
    imaging = await ImagingService.open(Settings(env="test", data_dir=tmp_path), archive=down, workers=1)
    try:
        with pytest.raises(ArchiveUnavailable, match="PACS unreachable, retrying"):
            await imaging.descriptor("1.2.3", "1.2.4")
        with pytest.raises(ArchiveUnavailable):
            await imaging.frame("1.2.3", "1.2.4", "1.2.5", 1)
        progress = imaging.prefetch("case:down", ["1.2.3"])
        await imaging.prefetcher.wait("case:down")
        assert progress.state == "done" and "PACS unreachable" in progress.errors[0]
    finally:
        await imaging.close()
        await down.close()
