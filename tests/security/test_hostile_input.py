"""Hostile input over HTTP gets a 4xx in the service's JSON error, never a 5xx (issue 18, item 1).

Each test performs one attack of the issue's "Why" list against a running service, as an integration team's tools
did: a JSON body nested 100,000 deep, a number of 5,000 digits, zips with a broken CRC or a broken local header,
an image whose header announces more pixels than any screen shows, ``Content-Length: abc`` sent to ``rcp serve``
itself, and the keep-alive connection after a server error.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import sys
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rcp.db import Database
from rcp.errors import RcpError
from rcp.http import error_handlers
from rcp.protocols import MALFORMED, JsonErrorsH11Protocol, http_protocol
from tests.factories import make_meeting
from tests.fixtures.dicom_data import make_patient, reference_file
from tests.room.node import demo_service
from tests.servers import ServerProcess, ServerThread

Login = Callable[..., Awaitable[Any]]


def _error(response: Any, status: int) -> dict[str, Any]:
    """The service's JSON error (``rcp.errors``): the status, a machine code and a message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body: dict[str, Any] = response.json()
    assert set(body) >= {"error", "message"}, body
    return body


# -- JSON bodies --------------------------------------------------------------------------------------------------


async def test_a_body_nested_100000_deep_is_refused_before_it_is_parsed(db: Database, login: Login) -> None:
    meeting = await make_meeting(db, cases=1)
    coordinator = await login(meeting.coordinator)
    case = meeting.cases[0].id
    for body in ("[" * 100_000 + "]" * 100_000, '{"a":' * 50_000 + "1" + "}" * 50_000, "[" * 100_000):
        answer = await coordinator.patch(f"/api/cases/{case}", content=body,
                                         headers={"Content-Type": "application/json"})
        assert "nested" in _error(answer, 400)["message"] or "match" in answer.json()["message"]
    # A shallow body still goes through, and one with brackets inside its strings is not miscounted.
    answer = await coordinator.patch(f"/api/cases/{case}", json={"staging": "cT2 [" + "{" * 150 + "] N0"})
    assert answer.status_code == 200, answer.text


async def test_a_number_of_5000_digits_is_refused(db: Database, login: Login) -> None:
    meeting = await make_meeting(db, cases=1)
    coordinator = await login(meeting.coordinator)
    answer = await coordinator.patch(f"/api/cases/{meeting.cases[0].id}",
                                     content='{"performance_status": ' + "9" * 5000 + "}",
                                     headers={"Content-Type": "application/json"})
    assert _error(answer, 400)["error"] == "bad_request"


async def test_ids_anywhere_in_a_body_are_bounded(db: Database, login: Login) -> None:
    meeting = await make_meeting(db, cases=2)
    coordinator = await login(meeting.coordinator)
    answer = await coordinator.put(f"/api/meetings/{meeting.id}/agenda",
                                   json={"case_ids": [10**30, meeting.cases[0].id]})
    assert "case_ids.0" in _error(answer, 422)["fields"], answer.text


# -- archives and DICOM -------------------------------------------------------------------------------------------


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _broken_crc(data: bytes) -> bytes:
    """The first entry's stored CRC-32 changed (local header and central directory alike): the zip's directory
    reads, its entry fails the CRC check once inflated (APPNOTE 4.4.7)."""
    out = bytearray(data)
    local = out.find(b"PK\x03\x04")
    central = out.find(b"PK\x01\x02")
    out[local + 14] ^= 0xFF
    out[central + 16] ^= 0xFF
    return bytes(out)


def _broken_local_header(data: bytes) -> bytes:
    """The first entry's local header signature overwritten: the central directory still points at it."""
    out = bytearray(data)
    local = out.find(b"PK\x03\x04")
    out[local:local + 4] = b"XXXX"
    return bytes(out)


async def test_damaged_zips_are_refused_per_file(db: Database, login: Login) -> None:
    meeting = await make_meeting(db, cases=1)
    coordinator = await login(meeting.coordinator)
    image = reference_file("CT_small.dcm", make_patient())
    good = _zip({"IMG0001": image, "IMG0002": reference_file("CT_small.dcm", make_patient())})
    for name, damaged in (("crc.zip", _broken_crc(good)), ("header.zip", _broken_local_header(good))):
        answer = await coordinator.post(f"/api/cases/{meeting.cases[0].id}/imports",
                                        files=[("files", (name, damaged, "application/zip"))])
        assert answer.status_code in (200, 422), answer.text
        results = {r["name"]: r for r in answer.json()}
        damaged_entry = next(r for n, r in results.items() if n.startswith(name))
        assert not damaged_entry["ok"] and "damaged" in damaged_entry["message"], results


def _huge_compressed_image() -> bytes:
    """A tiny file whose header announces 4096 frames of 4096 x 4096 (JPEG 2000): 128 GiB once decoded."""
    ds = pydicom.dcmread(io.BytesIO(reference_file("CT_small.dcm", make_patient())))
    ds.Rows = ds.Columns = 4096
    ds.NumberOfFrames = 4096
    ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEG2000Lossless
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 60])
    ds["PixelData"].VR = "OB"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


async def test_an_image_announcing_more_pixels_than_the_budget_is_refused_before_decoding(
        db: Database, login: Login) -> None:
    meeting = await make_meeting(db, cases=1)
    coordinator = await login(meeting.coordinator)
    answer = await coordinator.post(f"/api/cases/{meeting.cases[0].id}/imports",
                                    files=[("files", ("huge.dcm", _huge_compressed_image(), "application/dicom"))])
    assert answer.status_code in (200, 422), answer.text
    [result] = answer.json()
    assert not result["ok"] and "over the limit" in result["message"], result


# -- malformed HTTP, as ``rcp serve`` answers it -------------------------------------------------------------------


@pytest.fixture(scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    """``rcp serve`` as an operator runs it, on a data folder of its own."""
    data_dir = tmp_path_factory.mktemp("served")
    settings, _meeting = await demo_service(data_dir)
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("RCP_")} | {
        "RCP_ENV": "test", "RCP_DATA_DIR": str(data_dir), "RCP_SECRET_KEY": settings.secret_key,
        "RCP_EMBEDDED_WORKER": "false"}
    with ServerProcess([sys.executable, "-m", "rcp.cli", "serve"], env=env) as server:
        yield server


def _exchange(port: int, request: bytes) -> bytes:
    """Send raw bytes, read until the server closes or the response is whole (blocking: run in a thread)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(request)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
            head, _, body = received.partition(b"\r\n\r\n")
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), None)
            if length is not None and len(body) >= length:
                break
        return received


@pytest.mark.parametrize("request_bytes", [
    b"POST /api/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: abc\r\n\r\n{}",
    b"GET /api/session HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"GET /api/session HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
], ids=["content-length-abc", "header-without-colon", "length-and-chunked"])
async def test_malformed_http_gets_the_services_json_error(served: ServerProcess, request_bytes: bytes) -> None:
    raw = await asyncio.to_thread(_exchange, served.port, request_bytes)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), raw[:300]
    assert b"content-type: application/json" in head.lower(), head
    answer = json.loads(body)
    assert answer["error"] == "bad_request" and "HTTP" in answer["message"], answer


@pytest.mark.parametrize("protocol", [http_protocol(), JsonErrorsH11Protocol], ids=["default", "h11"])
async def test_both_of_uvicorns_protocols_answer_in_json(protocol: type[asyncio.Protocol]) -> None:
    """httptools' (what ``rcp serve`` runs when it is installed) and h11's, where it is not."""
    app = Starlette(routes=[Route("/api/ok", lambda request: Response("ok"))])
    with ServerThread(app, http=protocol) as server:
        raw = await asyncio.to_thread(
            _exchange, server.port, b"POST /api/ok HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head, raw[:300]
    assert json.loads(body) == {"error": "bad_request", "message": MALFORMED}


# -- the connection after a server error ---------------------------------------------------------------------------


async def test_after_a_server_error_the_client_is_told_the_connection_closes(tmp_path: Path) -> None:
    """uvicorn closes the connection after an exception reached it (Starlette re-raises it after the 500 page):
    a client that was not told so sent its next request on that keep-alive connection and saw it reset."""

    async def crash(request: Request) -> Response:
        raise RuntimeError("a bug")

    async def page(request: Request, error: RcpError) -> Response:
        return Response(error.message, status_code=error.status)

    app = Starlette(routes=[Route("/api/crash", crash)], exception_handlers=error_handlers(page))
    with ServerThread(app) as server:
        raw = await asyncio.to_thread(
            _exchange, server.port, b"GET /api/crash HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500"), raw[:300]
    assert b"connection: close" in head.lower(), head
    assert json.loads(body)["error"] == "internal"
