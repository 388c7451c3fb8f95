"""Hostile uploads leave the server's memory bounded, and the uploader is told why it was turned away (issue 18,
item 2).

The memory itself is measured in ``bench/uploads.py`` (four ratio-tuned zips at once); here, what a user notices
of the bounds: a fifth import while four are in the service is answered 503 with ``Retry-After`` (the four then
finish), and a zip whose directory announces more than the per-request budget is a 413 naming the limit, before
anything is unpacked.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import zipfile
from collections.abc import AsyncIterator

from rcp.app import create_app
from rcp.config import Settings
from rcp.db import Database
from tests.conftest import sign_in
from tests.factories import make_meeting
from tests.servers import ServerThread, until

BOUNDARY = "rcphostile"


def _part(name: str, data: bytes) -> bytes:
    return (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"


async def _held_body(release: asyncio.Event) -> AsyncIterator[bytes]:
    """An upload whose sender stalls after its first file, until ``release``: it stays in the service."""
    yield _part("first.bin", b"x" * 1000)
    await release.wait()
    yield _part("second.bin", b"y" * 1000) + f"--{BOUNDARY}--\r\n".encode()


async def test_a_fifth_concurrent_import_is_told_to_come_back(settings: Settings, db: Database) -> None:
    meeting = await make_meeting(db, cases=1)
    url_path = f"/api/cases/{meeting.cases[0].id}/imports"
    app = create_app(dataclasses.replace(settings, imports_at_once=2, imports_waiting=2))
    release = asyncio.Event()
    with ServerThread(app) as server:
        coordinator = await sign_in(server.url, meeting.coordinator.username, meeting.coordinator.password)
        headers = {"X-CSRF-Token": coordinator.csrf, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
        try:
            held = [asyncio.create_task(coordinator.http.post(url_path, content=_held_body(release),
                                                              headers=headers, timeout=60)) for _ in range(4)]
            gate = app.state.imaging.import_gate
            await until(lambda: gate.inside == 4, "four imports in the service (two received, two waiting)")
            fifth = await coordinator.http.post(url_path, headers=headers, timeout=60,
                                                content=_part("fifth.bin", b"z" * 1000) + f"--{BOUNDARY}--\r\n".encode())
            assert fifth.status_code == 503, fifth.text
            assert int(fifth.headers["retry-after"]) > 0
            body = fifth.json()
            assert body["error"] == "unavailable" and "2 imports" in body["message"], body
            release.set()
            # The four were received in turn: each one answered with its per-file report (not DICOM, refused).
            for answer in await asyncio.gather(*held):
                assert answer.status_code == 200, answer.text
                assert [r["ok"] for r in answer.json()] == [False, False]
            assert gate.inside == 0
        finally:
            release.set()
            await coordinator.http.aclose()


def _zip_announcing(size: int) -> bytes:
    """A small stored zip whose directory says its one entry unpacks to ``size`` bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("IMG0001", b"D" * 1000)
    data = bytearray(buffer.getvalue())
    central = data.index(b"PK\x01\x02")
    data[central + 24:central + 28] = size.to_bytes(4, "little")
    return bytes(data)


async def test_an_archive_over_the_budget_is_refused_naming_the_limit(db: Database, live_server: ServerThread,
                                                                      settings: Settings) -> None:
    meeting = await make_meeting(db, cases=1)
    coordinator = await sign_in(live_server.url, meeting.coordinator.username, meeting.coordinator.password)
    budget = settings.max_upload_bytes * 4
    try:
        answer = await coordinator.http.post(
            f"/api/cases/{meeting.cases[0].id}/imports", headers={"X-CSRF-Token": coordinator.csrf},
            files=[("files", ("cd.zip", _zip_announcing(budget + 1), "application/zip"))])
        assert answer.status_code == 413, answer.text
        body = answer.json()
        assert body["error"] == "too_large" and str(budget) in body["message"], body
        # Nothing of it was attached to the case.
        studies = await coordinator.http.get(f"/api/cases/{meeting.cases[0].id}/studies")
        assert studies.json() == []
    finally:
        await coordinator.http.aclose()
