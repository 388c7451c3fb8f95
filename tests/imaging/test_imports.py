"""Import: good files, a foreign patient, truncated and non-DICOM files, zips and zip bombs."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pydicom
import pytest
from pydicom.config import disable_value_validation

from rcp.config import Settings
from rcp.errors import PayloadTooLarge
from rcp.imaging.archive import Archive
from rcp.imaging.imports import import_files
from rcp.imaging.service import ImagingService
from rcp.imaging.validation import ExpectedPatient, UploadedFile, UploadRefused, check_file, unpack_upload
from tests.fixtures.dicom_data import make_patient, reference_file, small_ct


@pytest.fixture
async def service(archive: Archive, tmp_path: Path) -> AsyncIterator[ImagingService]:
    imaging = await ImagingService.open(Settings(env="test", data_dir=tmp_path), archive=archive, workers=2)
    yield imaging
    await imaging.close()


def _zip(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


async def test_import_mixed_upload(service: ImagingService) -> None:
    patient = make_patient()
    expected = ExpectedPatient(identifiers=((patient.patient_id, patient.issuer),), family_name=patient.family_name,
                               birth_date=patient.birth_date)
    good = small_ct(patient, slices=3)
    foreign = reference_file("MR_small.dcm", make_patient())
    truncated = good[0][: len(good[0]) // 2]
    zipped = _zip({"DICOMDIR/IM0001": good[1], "DICOMDIR/IM0002": good[2]})
    files = [
        UploadedFile("slice1.dcm", good[0]),
        UploadedFile("other-patient.dcm", foreign),
        UploadedFile("cut.dcm", truncated),
        UploadedFile("notes.txt", b"Compte rendu: pas une image" * 20),
        UploadedFile("cd.zip", zipped),
    ]
    report = await import_files(service, files, expected, max_total_bytes=50_000_000)
    by_name = {r.name: r for r in report.results}
    assert by_name["slice1.dcm"].ok and not by_name["slice1.dcm"].warning
    assert by_name["cd.zip/DICOMDIR/IM0001"].ok and by_name["cd.zip/DICOMDIR/IM0002"].ok
    assert by_name["other-patient.dcm"].ok
    assert "does not match" in by_name["other-patient.dcm"].warning
    assert not by_name["cut.dcm"].ok and "truncated" in by_name["cut.dcm"].message
    assert not by_name["notes.txt"].ok and "Not a DICOM file" in by_name["notes.txt"].message
    study_uid = str(pydicom.dcmread(io.BytesIO(good[0])).StudyInstanceUID)
    assert report.matching_study_uids == [study_uid]
    body = report.as_json()
    assert (body["imported"], body["refused"], body["warnings"]) == (4, 2, 1)
    # No patient data in any message.
    for result in report.results:
        assert patient.family_name.upper() not in result.message + result.warning
        assert patient.patient_id not in result.message + result.warning
    found = await service.archive.search_studies(patient_id=patient.patient_id)
    assert [s.instance_count for s in found] == [3]


async def test_zip_bomb_is_refused_before_unpacking(service: ImagingService) -> None:
    bomb = _zip({"a.dcm": b"\0" * 50_000_000})  # ~50 KB on the wire, 50 MB unpacked
    assert len(bomb) < 100_000
    with pytest.raises(PayloadTooLarge, match="zip"):
        await import_files(service, [UploadedFile("bomb.zip", bomb)], None, max_total_bytes=10_000_000)


def test_zip_limits() -> None:
    with pytest.raises(UploadRefused, match="compressed beyond"):
        unpack_upload([UploadedFile("b.zip", _zip({"x": b"\0" * 5_000_000}))], max_total_bytes=100_000_000)
    many = _zip({f"f{i}": b"x" for i in range(30)}, zipfile.ZIP_STORED)
    with pytest.raises(UploadRefused, match="more than 10 files"):
        unpack_upload([UploadedFile("m.zip", many)], max_total_bytes=100_000_000, max_files=10)
    # A zip whose header understates an entry's size is refused while reading, with a bounded read.
    data = bytearray(_zip({"x.dcm": b"A" * 1000}, zipfile.ZIP_STORED))
    local_header = data.index(b"PK\x03\x04")
    central = data.index(b"PK\x01\x02")
    data[local_header + 22:local_header + 26] = (10).to_bytes(4, "little")
    data[central + 24:central + 28] = (10).to_bytes(4, "little")
    with pytest.raises((UploadRefused, zipfile.BadZipFile)):
        unpack_upload([UploadedFile("lie.zip", bytes(data))], max_total_bytes=100_000_000)


def test_image_without_pixel_data_and_bad_uids() -> None:
    ds = pydicom.dcmread(io.BytesIO(small_ct(make_patient(), slices=1)[0]))
    del ds.PixelData
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    result = check_file(UploadedFile("x.dcm", buffer.getvalue()), None)
    assert not result.ok and "no pixel data" in result.message
    ds = pydicom.dcmread(io.BytesIO(small_ct(make_patient(), slices=1)[0]))
    with disable_value_validation():
        ds.SOPInstanceUID = "not/a/uid"
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
    result = check_file(UploadedFile("y.dcm", buffer.getvalue()), None)
    assert not result.ok and "UID" in result.message


def test_patient_matched_by_name_and_birth_date_when_identifiers_differ() -> None:
    patient = make_patient()
    blob = small_ct(patient, slices=1)[0]
    expected = ExpectedPatient(identifiers=(("OTHER-IPP", "CHU-X"),), family_name="lefèvre",
                               birth_date=date(1961, 4, 5))
    assert check_file(UploadedFile("a.dcm", blob), expected).patient_matches
    other = ExpectedPatient(identifiers=(("OTHER-IPP", "CHU-X"),), family_name="Lefèvre", birth_date=date(1961, 4, 6))
    assert not check_file(UploadedFile("a.dcm", blob), other).patient_matches
