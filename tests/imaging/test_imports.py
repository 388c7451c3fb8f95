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
from rcp.identifiers import Identifier, ServicePatient
from rcp.imaging.archive import Archive
from rcp.imaging.imports import import_files
from rcp.imaging.service import ImagingService
from rcp.imaging.synthetic import SyntheticPatient
from rcp.imaging.validation import UploadedFile, UploadRefused, check_file, unpack_upload
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


def expected_of(patient: SyntheticPatient) -> ServicePatient:
    return ServicePatient((Identifier("IPP", patient.patient_id, patient.issuer),), patient.family_name,
                          patient.given_names, patient.birth_date, {"F": "female", "M": "male"}.get(patient.sex, ""))


async def test_import_mixed_upload(service: ImagingService, tmp_path: Path) -> None:
    patient = make_patient()
    expected = expected_of(patient)
    good = small_ct(patient, slices=3)
    truncated = good[0][: len(good[0]) // 2]
    zipped = _zip({"DICOMDIR/IM0001": good[1], "DICOMDIR/IM0002": good[2]})
    files = [
        UploadedFile.write(tmp_path, "slice1.dcm", good[0]),
        UploadedFile.write(tmp_path, "cut.dcm", truncated),
        UploadedFile.write(tmp_path, "notes.txt", b"Compte rendu: pas une image" * 20),
        UploadedFile.write(tmp_path, "cd.zip", zipped),
    ]
    report = await import_files(service, files, expected, max_total_bytes=50_000_000)
    by_name = {r.name: r for r in report.results}
    assert by_name["slice1.dcm"].ok and not by_name["slice1.dcm"].warning
    assert by_name["cd.zip/DICOMDIR/IM0001"].ok and by_name["cd.zip/DICOMDIR/IM0002"].ok
    assert not by_name["cut.dcm"].ok and "truncated" in by_name["cut.dcm"].message
    assert not by_name["notes.txt"].ok and "Not a DICOM file" in by_name["notes.txt"].message
    assert not report.refused  # unreadable files are reported; they do not refuse the import
    study_uid = str(pydicom.dcmread(io.BytesIO(good[0])).StudyInstanceUID)
    assert report.matching_study_uids == [study_uid]
    body = report.as_json()
    assert (body["imported"], body["refused"], body["warnings"]) == (3, 2, 0)
    # No patient data in any message.
    for result in report.results:
        assert patient.family_name.upper() not in result.message + result.warning
        assert patient.patient_id not in result.message + result.warning
    found = await service.archive.search_studies(patient_id=patient.patient_id)
    assert [s.instance_count for s in found] == [3]


async def test_a_file_of_another_patient_refuses_the_whole_import(service: ImagingService, tmp_path: Path) -> None:
    """Once stored with a warning; now nothing of the upload is stored (issue 13 finding 1)."""
    patient = make_patient()
    good = small_ct(patient, slices=2)
    foreign = reference_file("MR_small.dcm", make_patient())
    report = await import_files(service, [UploadedFile.write(tmp_path, "a.dcm", good[0]), UploadedFile.write(tmp_path, "b.dcm", foreign),
                                          UploadedFile.write(tmp_path, "c.dcm", good[1])], expected_of(patient),
                                max_total_bytes=50_000_000)
    assert report.refused and not report.matching_study_uids
    by_name = {r.name: r for r in report.results}
    assert by_name["b.dcm"].identity is not None and by_name["b.dcm"].identity.refused[0] == "identifier"
    assert "nothing of this import was stored" in by_name["b.dcm"].message
    assert not by_name["a.dcm"].ok and "Not stored" in by_name["a.dcm"].message
    assert await service.archive.search_studies(patient_id=patient.patient_id) == []


async def test_zip_bomb_is_refused_before_unpacking(service: ImagingService, tmp_path: Path) -> None:
    bomb = _zip({"a.dcm": b"\0" * 50_000_000})  # ~50 KB on the wire, 50 MB unpacked
    assert len(bomb) < 100_000
    with pytest.raises(PayloadTooLarge, match="zip"):
        await import_files(service, [UploadedFile.write(tmp_path, "bomb.zip", bomb)], None, max_total_bytes=10_000_000)


def test_zip_limits(tmp_path: Path) -> None:
    with pytest.raises(UploadRefused, match="compressed beyond"):
        unpack_upload([UploadedFile.write(tmp_path, "b.zip", _zip({"x": b"\0" * 5_000_000}))], max_total_bytes=100_000_000)
    many = _zip({f"f{i}": b"x" for i in range(30)}, zipfile.ZIP_STORED)
    with pytest.raises(UploadRefused, match="more than 10 files"):
        unpack_upload([UploadedFile.write(tmp_path, "m.zip", many)], max_total_bytes=100_000_000, max_files=10)
    # A zip whose header understates an entry's size is read bounded, and the entry refused as damaged (its CRC is
    # that of the whole entry), per file: nothing of it is kept.
    data = bytearray(_zip({"x.dcm": b"A" * 1000}, zipfile.ZIP_STORED))
    local_header = data.index(b"PK\x03\x04")
    central = data.index(b"PK\x01\x02")
    data[local_header + 22:local_header + 26] = (10).to_bytes(4, "little")
    data[central + 24:central + 28] = (10).to_bytes(4, "little")
    [entry] = unpack_upload([UploadedFile.write(tmp_path, "lie.zip", bytes(data))], max_total_bytes=100_000_000)
    assert entry.name == "lie.zip/x.dcm" and "damaged" in entry.damaged and not entry.path.exists()
    assert "damaged" in check_file(entry, None).message


def test_image_without_pixel_data_and_bad_uids(tmp_path: Path) -> None:
    ds = pydicom.dcmread(io.BytesIO(small_ct(make_patient(), slices=1)[0]))
    del ds.PixelData
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    result = check_file(UploadedFile.write(tmp_path, "x.dcm", buffer.getvalue()), None)
    assert not result.ok and "no pixel data" in result.message
    ds = pydicom.dcmread(io.BytesIO(small_ct(make_patient(), slices=1)[0]))
    with disable_value_validation():
        ds.SOPInstanceUID = "not/a/uid"
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
    result = check_file(UploadedFile.write(tmp_path, "y.dcm", buffer.getvalue()), None)
    assert not result.ok and "UID" in result.message


def test_same_name_and_birth_date_under_another_identifier_is_not_the_patient(tmp_path: Path) -> None:
    """Once matched by family name and birth date alone; the identity rule wants an identifier in common."""
    patient = make_patient()
    blob = small_ct(patient, slices=1)[0]
    expected = ServicePatient((Identifier("IPP", "OTHER-IPP", "CHU-X"),), "lefèvre", "", date(1961, 4, 5))
    result = check_file(UploadedFile.write(tmp_path, "a.dcm", blob), expected)
    assert not result.ok and result.blocking and result.identity is not None
    assert result.identity.refused == ("identifier",)
    same = ServicePatient((Identifier("IPP", patient.patient_id, patient.issuer),), "Lefevre", "", date(1961, 4, 6))
    result = check_file(UploadedFile.write(tmp_path, "a.dcm", blob), same)
    assert not result.ok and result.identity is not None and result.identity.refused == ("birth_date",)



async def test_an_instance_another_upload_is_importing_is_refused(service: ImagingService, tmp_path: Path) -> None:
    """Claimed while checked and stored: an upload of an instance being imported by another one stores nothing."""
    patient = make_patient()
    blobs = small_ct(patient, slices=2)
    busy = str(pydicom.dcmread(io.BytesIO(blobs[0])).SOPInstanceUID)
    service.importing.add(busy)  # another upload is between its check and its store
    files = [UploadedFile.write(tmp_path, f"{i}.dcm", b) for i, b in enumerate(blobs)]
    report = await import_files(service, files, expected_of(patient), max_total_bytes=50_000_000)
    assert report.refused and "importing this same instance" in report.results[0].message
    assert service.importing == {busy}  # its claim is the other upload's to release
    service.importing.clear()
    assert await service.archive.search_studies(patient_id=patient.patient_id) == []
    report = await import_files(service, files, expected_of(patient), max_total_bytes=50_000_000)
    assert not report.refused and not service.importing
