"""The DICOMweb client's edges: lenient multipart, Orthanc's quirks, retries, auth, a PACS that is down."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from rcp.imaging.archive import ArchiveNotFound, ArchiveUnavailable
from rcp.imaging.dicomweb import DicomWebClient, content_type_params, dataset_from_json, split_multipart
from tests.fixtures.dicom_data import make_patient, small_ct
from tests.fixtures.orthanc import OrthancProcess, orthanc_available

ORTHANC_FRAME_TYPE = ('multipart/related; type="application/octet-stream; '
                      'transfer-syntax=1.2.840.10008.1.2.4.80"; boundary=abc123')


def test_content_type_params_respect_quotes() -> None:
    media, params = content_type_params(ORTHANC_FRAME_TYPE)
    assert media == "multipart/related"
    assert params["boundary"] == "abc123"
    assert params["type"] == "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.4.80"


def test_split_multipart_is_lenient() -> None:
    body = (b"preamble\r\n--abc123\r\nContent-Type: application/octet-stream\r\n\r\n\x00\x01\r\n\x02"
            b"\r\n--abc123\r\nContent-Type: application/octet-stream\r\n\r\nsecond\r\n--abc123--\r\nepilogue")
    parts = split_multipart(body, ORTHANC_FRAME_TYPE)
    assert [p for _h, p in parts] == [b"\x00\x01\r\n\x02", b"second"]
    # No boundary parameter, no closing delimiter: taken from the body.
    parts = split_multipart(b"--xyz\r\nA: b\r\n\r\npayload\r\n", "multipart/related")
    assert parts == [({"a": "b"}, b"payload")]


async def test_frame_transfer_syntax_from_the_quoted_type() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = b"--abc123\r\nContent-Type: application/octet-stream\r\n\r\nJLSDATA\r\n--abc123--\r\n"
        return httpx.Response(200, content=body, headers={"Content-Type": ORTHANC_FRAME_TYPE})

    client = DicomWebClient("http://pacs/dicom-web", transport=httpx.MockTransport(handler))
    frame = await client.retrieve_frame("1.2", "1.3", "1.4", 1)
    await client.close()
    assert frame.data == b"JLSDATA"
    assert frame.transfer_syntax == "1.2.840.10008.1.2.4.80"


async def test_retries_transient_failures_then_succeeds() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ConnectError("refused", request=request)
        if calls == 2:
            return httpx.Response(503)
        return httpx.Response(200, json=[{"0020000D": {"vr": "UI", "Value": ["1.2.3"]},
                                          "00100010": {"vr": "PN", "Value": [{"Alphabetic": "DURAND^Élise"}]},
                                          "00080061": {"vr": "CS", "Value": ["CT", "MR"]}}])

    client = DicomWebClient("http://pacs/dicom-web", transport=httpx.MockTransport(handler), retries=3)
    found = await client.search_studies(patient_id="IPP1")
    await client.close()
    assert calls == 3
    assert found[0].study_uid == "1.2.3" and found[0].patient_name == "DURAND^Élise"
    assert found[0].modalities == ("CT", "MR")


async def test_query_is_not_percent_encoded_and_bearer_is_sent() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=[])

    client = DicomWebClient("http://pacs/dicom-web", token="s3cret", transport=httpx.MockTransport(handler))
    await client.search_studies(patient_id="IPP^1.2")
    await client.close()
    raw = seen[0].url.raw_path.decode()
    assert "PatientID=IPP^1.2" in raw and "%5E" not in raw
    assert "includefield=00080061&" in raw
    assert seen[0].headers["authorization"] == "Bearer s3cret"


async def test_a_pacs_that_stays_down_is_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = DicomWebClient("http://pacs/dicom-web", transport=httpx.MockTransport(handler), retries=1)
    with pytest.raises(ArchiveUnavailable, match="PACS unreachable"):
        await client.search_studies(patient_id="IPP1")
    await client.close()


async def test_refused_credentials_and_missing_objects() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401 if "studies?" in str(request.url) else 404)

    client = DicomWebClient("http://pacs/dicom-web", transport=httpx.MockTransport(handler), retries=0)
    with pytest.raises(ArchiveUnavailable, match="credentials"):
        await client.search_studies(patient_id="x")
    with pytest.raises(ArchiveNotFound):
        await client.retrieve_instance("1.2", "1.3", "1.4")
    await client.close()


def test_dataset_from_json_keeps_text_and_numbers() -> None:
    ds = dataset_from_json({
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "LEFÈVRE^Hélène"}]},
        "00281050": {"vr": "DS", "Value": [40, -600]},
        "00200013": {"vr": "IS", "Value": [7]},
        "7FE00010": {"vr": "OW", "BulkDataURI": "http://pacs/bulk"},
        "52009230": {"vr": "SQ", "Value": [{"00209113": {"vr": "SQ", "Value": [
            {"00200032": {"vr": "DS", "Value": [1.5, 2, 3]}}]}}]},
    })
    assert str(ds.PatientName) == "LEFÈVRE^Hélène"
    assert [float(v) for v in ds.WindowCenter] == [40.0, -600.0]
    assert int(ds.InstanceNumber) == 7
    assert "PixelData" not in ds
    assert [float(v) for v in ds.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0]
            .ImagePositionPatient] == [1.5, 2.0, 3.0]


@pytest.fixture(scope="module")
def orthanc_with_password() -> Iterator[OrthancProcess]:
    if not orthanc_available():
        pytest.skip("Orthanc is not installed")
    server = OrthancProcess(credentials=("rcp", "pacs-pass"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.orthanc
async def test_basic_auth_against_orthanc(orthanc_with_password: OrthancProcess) -> None:
    url = orthanc_with_password.dicomweb_url
    wrong = DicomWebClient(url, username="rcp", password="wrong", retries=0)
    with pytest.raises(ArchiveUnavailable, match="credentials"):
        await wrong.search_studies(patient_id="x")
    await wrong.close()
    client = DicomWebClient(url, username="rcp", password="pacs-pass")
    patient = make_patient()
    result = await client.store(small_ct(patient, slices=2))
    assert len(result.stored) == 2
    assert len(await client.search_studies(patient_id=patient.patient_id)) == 1
    await client.close()
