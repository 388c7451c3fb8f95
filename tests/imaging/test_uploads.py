"""Receiving an upload (rcp/imaging/uploads.py): streamed to files in the data folder, never whole in memory.

The request is a real Starlette ``Request`` over an ASGI ``receive`` that hands the body over in 64 KB chunks, as
uvicorn does; tracemalloc measures what Python allocates while it is received (the figure is printed, with the
same body read through Starlette's form parser into bytes, as the import route did before).
"""

from __future__ import annotations

import secrets
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from starlette.datastructures import UploadFile
from starlette.requests import Request

from rcp.errors import BadRequest
from rcp.imaging.uploads import received_files

BOUNDARY = "rcpboundary" + secrets.token_hex(4)
SIZE = 24 << 20


def _body(files: dict[str, bytes]) -> bytes:
    parts = [f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
             f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
             for name, data in files.items()]
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def _request(body: bytes, chunk: int = 64 * 1024) -> Request:
    chunks = [body[i:i + chunk] for i in range(0, len(body), chunk)]

    async def receive() -> dict[str, Any]:
        data = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": data, "more_body": bool(chunks)}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [
        (b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode()),
        (b"content-length", str(len(body)).encode())]}
    return Request(scope, receive)


async def test_files_arrive_on_disk_and_leave_with_the_import(tmp_path: Path) -> None:
    first, second = secrets.token_bytes(SIZE // 2), secrets.token_bytes(1000)
    body = _body({"cd.zip": first, "IM0001": second})
    folder = tmp_path / "uploads"
    request = _request(body)  # its chunks exist before the measure starts, as the socket's buffers would
    tracemalloc.start()
    try:
        async with received_files(request, folder=folder) as files:
            _size, peak = tracemalloc.get_traced_memory()
            assert [f.name for f in files] == ["cd.zip", "IM0001"]
            assert files[0].path.read_bytes() == first and files[1].path.read_bytes() == second
            assert all(f.path.parent.parent == folder for f in files)
    finally:
        tracemalloc.stop()
    assert list(folder.iterdir()) == []
    # Before: the same body through Starlette's form parser, read back as bytes (what the route did).
    request = _request(body)
    tracemalloc.start()
    try:
        async with request.form(max_part_size=SIZE) as form:
            held = [await v.read() for _k, v in form.multi_items() if isinstance(v, UploadFile)]
            _size, before = tracemalloc.get_traced_memory()
            assert len(held[0]) == len(first)
    finally:
        tracemalloc.stop()
    print(f"\nupload of {len(body) >> 20} MB: peak {peak >> 10} KB streamed to disk, {before >> 10} KB before")
    assert peak < len(body) // 8 < before


async def test_what_is_not_an_upload_is_refused(tmp_path: Path) -> None:
    empty = _body({})
    with pytest.raises(BadRequest, match="No file"):
        async with received_files(_request(empty), folder=tmp_path):
            pass
    broken = _request(b"--" + BOUNDARY.encode() + b"\r\nnot headers")
    with pytest.raises(BadRequest):
        async with received_files(broken, folder=tmp_path):
            pass
    assert list(tmp_path.iterdir()) == []


def test_working_folders_left_by_a_stopped_process_are_swept(tmp_path: Path) -> None:
    import os
    import time

    from rcp.imaging.uploads import sweep_stale

    old, fresh = tmp_path / "old", tmp_path / "fresh"
    for work in (old, fresh):
        work.mkdir()
        (work / "00001.part").write_bytes(b"x")
    day_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (day_ago, day_ago))
    assert sweep_stale(tmp_path) == 1
    assert not old.exists() and (fresh / "00001.part").exists()
    assert sweep_stale(tmp_path / "absent") == 0
