"""The PACS (a real Orthanc) unreachable for a while, behind tests.fixtures.faults.FaultProxy: the archive says so
— ``ArchiveUnavailable``, the service's 503 with ``Retry-After`` that the viewer waits out — and once the PACS
answers again the same client (its pooled connections reset by the outage) reads the study without a restart."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from rcp.http import json_error
from rcp.imaging.archive import ArchiveUnavailable
from rcp.imaging.dicomweb import DicomWebClient
from tests.fixtures.dicom_data import make_patient, small_ct
from tests.fixtures.faults import FaultProxy

pytestmark = [pytest.mark.orthanc]


@pytest.fixture
def pacs(orthanc_url: str) -> Iterator[tuple[FaultProxy, str]]:
    parts = urlsplit(orthanc_url)
    with FaultProxy(parts.hostname or "127.0.0.1", parts.port or 80) as proxy:
        yield proxy, f"http://127.0.0.1:{proxy.port}{parts.path}"


async def test_the_pacs_unreachable_for_a_while(orthanc_url: str, pacs: tuple[FaultProxy, str]) -> None:
    proxy, url = pacs
    blobs = small_ct(make_patient(), slices=2, size=16)
    direct = DicomWebClient(orthanc_url, retries=0)
    client = DicomWebClient(url, retries=1)
    try:
        stored = await direct.store(blobs)
        assert stored.stored and not stored.failed
        studies = await client.search_studies(patient_id=None)
        assert studies  # reached through the proxy: a connection is pooled

        proxy.cut()
        with pytest.raises(ArchiveUnavailable) as raised:
            await client.search_studies(patient_id=None)
        answer = json_error(raised.value)
        assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
        assert b"PACS unreachable" in answer.body and stored.stored[0].encode() not in answer.body

        proxy.restore()
        assert await client.search_studies(patient_id=None)
        assert proxy.refused >= 1
    finally:
        await client.close()
        await direct.close()
