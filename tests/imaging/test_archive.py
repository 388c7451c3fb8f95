"""The archive contract: the same tests against the local archive and a real Orthanc (DICOMweb)."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest

from rcp.imaging.archive import Archive, ArchiveNotFound
from rcp.imaging.local import LocalArchive
from tests.fixtures.dicom_data import make_patient, reference_file, small_ct


async def _store_patient(archive: Archive) -> tuple[str, str, list[bytes], list[bytes]]:
    patient = make_patient()
    prior = small_ct(patient, slices=5, seed=11, study_uid=None)
    current = small_ct(patient, slices=6, seed=12)
    result = await archive.store([*prior, *current])
    assert len(result.stored) == 11
    assert result.failed == []
    return patient.patient_id, patient.issuer, prior, current


def _uids(blob: bytes) -> tuple[str, str, str]:
    ds = pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


async def test_search_studies_of_a_patient(archive: Archive) -> None:
    patient_id, issuer, prior, current = await _store_patient(archive)
    found = await archive.search_studies(patient_id=patient_id)
    assert {s.study_uid for s in found} == {_uids(prior[0])[0], _uids(current[0])[0]}
    study = next(s for s in found if s.study_uid == _uids(current[0])[0])
    assert study.modalities == ("CT",)
    assert study.series_count == 1 and study.instance_count == 6
    assert study.patient_id == patient_id
    # Latin-1 names (ISO_IR 100) come back as proper text from both backends.
    assert study.patient_name == "LEFÈVRE^Hélène-Françoise"
    assert study.description == "TDM THORACO-ABDOMINO-PELVIENNE"
    assert await archive.search_studies(patient_id=patient_id, issuer=issuer)
    assert await archive.search_studies(patient_id=patient_id, issuer="ANOTHER-HOSPITAL") == []
    assert await archive.search_studies(patient_id="NOBODY-" + patient_id) == []


async def test_series_instances_and_metadata(archive: Archive) -> None:
    _pid, _issuer, _prior, current = await _store_patient(archive)
    study_uid, series_uid, _ = _uids(current[0])
    series = await archive.list_series(study_uid)
    assert [(s.series_uid, s.modality, s.series_number) for s in series] == [(series_uid, "CT", 2)]
    instances = await archive.list_instances(study_uid, series_uid)
    assert len(instances) == 6
    assert [i.instance_number for i in instances] == [1, 2, 3, 4, 5, 6]
    assert {i.sop_uid for i in instances} == {_uids(b)[2] for b in current}
    metadata = await archive.series_metadata(study_uid, series_uid)
    assert len(metadata) == 6
    for ds in metadata:
        assert ds.Rows == 64 and ds.Columns == 64
        assert float(ds.RescaleIntercept) == -1024
        assert len(ds.ImagePositionPatient) == 3
        assert not ds.get("PixelData")


async def test_retrieve_instance_series_and_frame(archive: Archive) -> None:
    _pid, _issuer, _prior, current = await _store_patient(archive)
    study_uid, series_uid, sop_uid = _uids(current[2])
    blob = await archive.retrieve_instance(study_uid, series_uid, sop_uid)
    original = pydicom.dcmread(io.BytesIO(current[2]))
    got = pydicom.dcmread(io.BytesIO(blob))
    assert got.SOPInstanceUID == sop_uid
    assert np.array_equal(got.pixel_array, original.pixel_array)
    frame = await archive.retrieve_frame(study_uid, series_uid, sop_uid, 1)
    assert frame.transfer_syntax == "1.2.840.10008.1.2.1"
    assert frame.data[: len(original.PixelData)] == original.PixelData
    whole = await archive.retrieve_series(study_uid, series_uid)
    assert sorted(_uids(b)[2] for b in whole) == sorted(_uids(b)[2] for b in current)


async def test_compressed_and_multiframe_instances(archive: Archive) -> None:
    patient = make_patient()
    rle = reference_file("emri_small_RLE.dcm", patient)
    jls = reference_file("MR_small_jpeg_ls_lossless.dcm", patient)
    result = await archive.store([rle, jls])
    assert len(result.stored) == 2
    study_uid, series_uid, sop_uid = _uids(rle)
    instances = await archive.list_instances(study_uid, series_uid)
    assert instances[0].frames == 10
    frame = await archive.retrieve_frame(study_uid, series_uid, sop_uid, 3)
    assert frame.transfer_syntax == "1.2.840.10008.1.2.5"  # RLE Lossless, as stored
    assert len(frame.data) > 0


async def test_unknown_objects_are_not_found(archive: Archive) -> None:
    with pytest.raises(ArchiveNotFound):
        await archive.list_series("1.2.3.4.5.6.7.8.9.999")
    with pytest.raises(ArchiveNotFound):
        await archive.retrieve_instance("1.2.3.4", "1.2.3.5", "1.2.3.6")


async def test_store_refuses_garbage(archive: Archive) -> None:
    result = await archive.store([b"this is not DICOM" * 20])
    assert result.stored == []
    assert len(result.failed) == 1


async def test_image_headers_carry_what_the_viewer_needs(archive: Archive) -> None:
    _pid, _issuer, _prior, current = await _store_patient(archive)
    study_uid, series_uid, _ = _uids(current[0])
    headers = await archive.image_headers(study_uid, series_uid)
    assert len(headers) == 6
    for ds in headers:
        for keyword in ("SOPInstanceUID", "Rows", "Columns", "BitsStored", "PixelRepresentation", "RescaleSlope",
                        "RescaleIntercept", "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
                        "WindowCenter", "WindowWidth", "InstanceNumber", "PhotometricInterpretation", "Modality"):
            assert keyword in ds, keyword
    blob = reference_file("emri_small.dcm", make_patient())  # multi-frame: falls back to full metadata
    await archive.store([blob])
    study_uid, series_uid, _ = _uids(blob)
    (header,) = await archive.image_headers(study_uid, series_uid)
    assert int(header.NumberOfFrames) == 10


async def test_a_stored_instance_is_never_replaced(archive: Archive) -> None:
    """PS3.3 C.12.1.1.1: the same instance again is accepted as it is; other content under its UID is refused."""
    blob = small_ct(make_patient(), slices=1)[0]
    ds = pydicom.dcmread(io.BytesIO(blob))
    study, series, sop = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)
    assert (await archive.store([blob])).stored == [sop]
    found = await archive.find_instance(sop)
    assert found is not None and (found.study_uid, found.series_uid) == (study, series)
    assert await archive.find_instance("1.2.3.999999") is None
    assert sop in (await archive.store([blob])).stored
    if isinstance(archive, LocalArchive):  # a DICOMweb server decides for itself; the service checks first
        ds.SeriesDescription = "REPLACED"
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        again = await archive.store([buffer.getvalue()])
        assert again.failed and not again.stored
        kept = pydicom.dcmread(io.BytesIO(await archive.retrieve_instance(study, series, sop)))
        assert kept.get("SeriesDescription") != "REPLACED"
