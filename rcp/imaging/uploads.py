"""Receiving an upload: a multipart/form-data body streamed to files in the data folder, never whole in memory.

Starlette's form parser keeps each file in a ``SpooledTemporaryFile`` (memory up to 1 MB, then the system's
temporary folder), and reading it back as ``bytes`` put a whole CD in memory. Here each file part is written, as
it arrives, to its own file in a fresh working folder under ``<data folder>/uploads`` — the data folder is the
disk sized for images and is where the service's health data lives, unlike ``/tmp`` — and the working folder is
removed when the import is done, whatever happened::

    async with received_files(request, folder=settings.data_dir / "uploads") as files:
        report = await import_files(service, files, expected, max_total_bytes=...)

The body's size is bounded before it arrives here: ``rcp.http.BodyLimitMiddleware`` applies the limit the route
declares (``ApiRoute(..., body_limit="upload")``). Before its body is read, an import is admitted by the process's
``ImportGate``: a few are received, unpacked and checked at once, a few more wait their turn (their bodies wait in
the socket, not in memory), and the next gets 503 with ``Retry-After`` — four hostile zips at once once took the
server from 350 MB to gigabytes (issue 18)::

    async with service.import_gate.admitted():
        async with received_files(request, folder=...) as files:
            ...
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from python_multipart.multipart import parse_options_header
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from rcp.errors import BadRequest, Unavailable
from rcp.imaging.validation import MAX_FILES, UploadedFile

__all__ = ["ImportGate", "ImportsBusy", "received_files", "sweep_stale"]

#: A working folder older than this was left by a process that stopped mid-import.
STALE_AFTER_S = 24 * 3600

#: Form fields that are not files (a CSRF token, a comment) stay small.
MAX_FIELD_BYTES = 64 * 1024


class _DiskParser(MultiPartParser):
    """Starlette's multipart parser, with each file part opened as a plain file in ``folder``.

    Only the file's creation differs (``on_headers_finished``); Starlette still writes each chunk through its
    thread pool, so the event loop never waits on the disk.
    """

    def __init__(self, headers: Headers, stream: Any, *, folder: Path, max_files: int) -> None:
        super().__init__(headers, stream, max_files=max_files, max_fields=100, max_part_size=MAX_FIELD_BYTES)
        self.folder = folder

    def on_headers_finished(self) -> None:
        _disposition, options = parse_options_header(self._current_part.content_disposition)
        if b"filename" not in options:
            super().on_headers_finished()
            return
        self._current_files += 1
        if self._current_files > self.max_files:
            raise MultiPartException(f"Too many files. Maximum number of files is {self.max_files}.")
        self._current_part.field_name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options[b"filename"].decode(self._charset or "utf-8", "replace")
        handle = (self.folder / f"{self._current_files:05d}.part").open("w+b")
        self._files_to_close_on_error.append(handle)  # type: ignore[arg-type]
        self._current_part.file = UploadFile(file=handle, size=0, filename=filename,
                                             headers=Headers(raw=self._current_part.item_headers))


class ImportsBusy(Unavailable):
    """Every import place of this process is taken (503; ``retry_after_s`` goes out as ``Retry-After``)."""



class ImportGate:
    """At most ``running`` imports of this process at once, ``waiting`` more queued in arrival order; beyond, refused.

    The bound is per process and counts requests, not bytes: each running import holds at most one file in memory
    at a time (``rcp.imaging.validation`` leaves pixel data on disk), so memory is bounded by ``running``, and the
    disk by ``running + waiting`` times the per-request budget.

    >>> gate = ImportGate(running=1, waiting=0)
    >>> gate.running, gate.waiting
    (1, 0)
    """

    def __init__(self, *, running: int = 2, waiting: int = 2, retry_after_s: int = 30) -> None:
        self.running = running
        self.waiting = waiting
        self.retry_after_s = retry_after_s
        self._slots = asyncio.Semaphore(running)
        self._inside = 0

    @property
    def inside(self) -> int:
        """Imports running or waiting now."""
        return self._inside

    @asynccontextmanager
    async def admitted(self) -> AsyncIterator[None]:
        """Run the block when a place is free; raise :class:`ImportsBusy` at once when the queue is full too."""
        if self._inside >= self.running + self.waiting:
            raise ImportsBusy(f"This server is already receiving {self.running} imports and has {self.waiting} "
                              f"waiting; try again in {self.retry_after_s} seconds.",
                              retry_after_s=self.retry_after_s)
        self._inside += 1
        try:
            async with self._slots:
                yield
        finally:
            self._inside -= 1


def sweep_stale(folder: Path, *, older_than_s: float = STALE_AFTER_S) -> int:
    """Remove working folders a stopped process left behind (blocking: run in a thread); returns how many.

    Only old ones: a node sharing the data folder may be receiving an upload right now.
    """
    if not folder.is_dir():
        return 0
    limit = time.time() - older_than_s
    removed = 0
    for work in folder.iterdir():
        if work.is_dir() and work.stat().st_mtime < limit:
            shutil.rmtree(work, ignore_errors=True)
            removed += 1
    return removed


@asynccontextmanager
async def received_files(request: Request, *, folder: Path, max_files: int = MAX_FILES
                         ) -> AsyncIterator[list[UploadedFile]]:
    """The request's files, each on disk in a fresh folder under ``folder``, removed on exit."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise BadRequest("Send the files as multipart/form-data (field name: files).")
    work = folder / secrets.token_hex(12)
    await asyncio.to_thread(work.mkdir, parents=True, mode=0o700)
    files: list[UploadedFile] = []
    try:
        parser = _DiskParser(request.headers, request.stream(), folder=work, max_files=max_files)
        try:
            form = await parser.parse()
        except MultiPartException as exc:
            raise BadRequest(f"The upload is not readable multipart/form-data: {exc.message}") from None
        for _name, value in form.multi_items():
            if isinstance(value, UploadFile):
                await value.close()
                files.append(UploadedFile(name=(value.filename or "file")[:200], path=Path(value.file.name)))
        if not files:
            raise BadRequest("No file in the upload: send DICOM files or a zip in the field 'files'.")
        yield files
    finally:
        # We made this folder, so we remove it: stored files are in the archive by now, refused ones go.
        await asyncio.to_thread(shutil.rmtree, work, True)
