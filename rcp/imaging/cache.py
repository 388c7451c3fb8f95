"""The server-side frame cache: encoded frames in memory (LRU by bytes) and on disk under ``data_dir/cache``.

Frames are immutable (a SOP instance never changes), so the cache never needs invalidation — only eviction.
Memory serves the meeting in progress at thousands of frames per second; the disk keeps what was prefetched
across restarts and for agendas larger than memory. Keys are (Study Instance UID, SOP Instance UID, frame number) —
the study is part of the key because access is granted per study — and UIDs are checked before they become paths.

Disk layout: ``<root>/v<ENCODING_VERSION>/<study>/<sop>/<frame>.<rows>x<columns>.<encoding>`` — everything needed
to serve the file is in its name, so a hit is one read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, cast

from rcp.imaging.dicomfile import is_uid
from rcp.imaging.frames import ENCODING_VERSION, EncodedFrame, Encoding

__all__ = ["FrameCache"]

logger = logging.getLogger(__name__)

ENCODINGS: frozenset[str] = frozenset({"delta16-deflate", "float32-deflate", "rgb8-deflate"})


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FrameCache:
    """Memory LRU in front of a disk folder. Used from the event loop only; disk I/O goes to threads."""

    def __init__(self, root: Path | None, *, memory_bytes: int = 1 << 30) -> None:
        self.root = root / f"v{ENCODING_VERSION}" if root is not None else None
        self.memory_bytes = memory_bytes
        self._memory: OrderedDict[tuple[str, str, int], EncodedFrame] = OrderedDict()
        self._used = 0
        self.hits = 0
        self.misses = 0

    def _dir(self, study_uid: str, sop_uid: str) -> Path | None:
        if self.root is None or not is_uid(sop_uid) or not is_uid(study_uid):
            return None
        return self.root / study_uid / sop_uid

    # --- memory -------------------------------------------------------------------------------------------

    def peek(self, study_uid: str, sop_uid: str, frame: int) -> EncodedFrame | None:
        """A memory hit, or None (no I/O: safe on the hot path)."""
        key = (study_uid, sop_uid, frame)
        found = self._memory.get(key)
        if found is not None:
            self._memory.move_to_end(key)
        return found

    def _remember(self, study_uid: str, sop_uid: str, frame: int, encoded: EncodedFrame) -> None:
        key = (study_uid, sop_uid, frame)
        old = self._memory.pop(key, None)
        if old is not None:
            self._used -= len(old.body)
        self._memory[key] = encoded
        self._used += len(encoded.body)
        while self._used > self.memory_bytes and self._memory:
            _key, evicted = self._memory.popitem(last=False)
            self._used -= len(evicted.body)

    # --- memory + disk --------------------------------------------------------------------------------------

    async def get(self, study_uid: str, sop_uid: str, frame: int) -> EncodedFrame | None:
        found = self.peek(study_uid, sop_uid, frame)
        if found is not None:
            self.hits += 1
            return found
        folder = self._dir(study_uid, sop_uid)
        if folder is not None:
            found = await asyncio.to_thread(self._read_disk, folder, frame)
            if found is not None:
                self.hits += 1
                self._remember(study_uid, sop_uid, frame, found)
                return found
        self.misses += 1
        return None

    def contains(self, study_uid: str, sop_uid: str, frame: int) -> bool:
        """Memory or disk (a few stats: call from a thread); for prefetch to skip work already done."""
        if (study_uid, sop_uid, frame) in self._memory:
            return True
        folder = self._dir(study_uid, sop_uid)
        return folder is not None and folder.is_dir() and any(folder.glob(f"{frame}.*"))

    @staticmethod
    def _read_disk(folder: Path, frame: int) -> EncodedFrame | None:
        try:
            names = [p for p in folder.iterdir() if p.name.startswith(f"{frame}.") and not p.name.endswith(".part")]
        except FileNotFoundError:
            return None
        for path in names:
            _frame, size, encoding = path.name.split(".", 2)
            if encoding not in ENCODINGS or "x" not in size:
                continue
            rows, columns = (int(v) for v in size.split("x", 1))
            return EncodedFrame(body=path.read_bytes(), encoding=cast(Encoding, encoding), rows=rows,
                                columns=columns)
        return None

    async def put(self, study_uid: str, sop_uid: str, frame: int, encoded: EncodedFrame, *,
                  disk: bool = True) -> None:
        self._remember(study_uid, sop_uid, frame, encoded)
        folder = self._dir(study_uid, sop_uid)
        if disk and folder is not None:
            path = folder / f"{frame}.{encoded.rows}x{encoded.columns}.{encoded.encoding}"
            await asyncio.to_thread(_atomic_write, path, encoded.body)

    def put_many_blocking(self, study_uid: str, sop_uid: str, frames: list[EncodedFrame]) -> None:
        """Write frames 1..n of one instance to disk (call from a worker thread)."""
        folder = self._dir(study_uid, sop_uid)
        if folder is None:
            return
        for index, encoded in enumerate(frames, start=1):
            _atomic_write(folder / f"{index}.{encoded.rows}x{encoded.columns}.{encoded.encoding}", encoded.body)

    def remember_many(self, study_uid: str, sop_uid: str, frames: list[EncodedFrame]) -> None:
        for index, encoded in enumerate(frames, start=1):
            self._remember(study_uid, sop_uid, index, encoded)

    # --- series descriptors ---------------------------------------------------------------------------------

    def _descriptor_path(self, series_uid: str) -> Path | None:
        if self.root is None or not is_uid(series_uid):
            return None
        return self.root / "series" / f"{series_uid}.json"

    async def get_descriptor(self, series_uid: str) -> dict[str, Any] | None:
        path = self._descriptor_path(series_uid)
        if path is None:
            return None
        try:
            raw = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    async def put_descriptor(self, series_uid: str, descriptor: dict[str, Any]) -> None:
        path = self._descriptor_path(series_uid)
        if path is not None:
            await asyncio.to_thread(_atomic_write, path, json.dumps(descriptor).encode())

    def trim_disk(self, max_bytes: int) -> int:
        """Remove the least recently written studies until the disk cache fits ``max_bytes`` (call from a thread).

        Returns the bytes freed. Whole studies go: a half-cached series would only make the meeting wait.
        """
        if self.root is None or not self.root.is_dir():
            return 0
        studies: list[tuple[float, int, Path]] = []
        total = 0
        for folder in self.root.iterdir():
            if not folder.is_dir() or folder.name == "series":
                continue
            size = 0
            newest = 0.0
            for path in folder.rglob("*"):
                if path.is_file():
                    stat = path.stat()
                    size += stat.st_size
                    newest = max(newest, stat.st_mtime)
            studies.append((newest, size, folder))
            total += size
        freed = 0
        for _newest, size, folder in sorted(studies):
            if total - freed <= max_bytes:
                break
            shutil.rmtree(folder, ignore_errors=True)
            freed += size  # memory entries stay: frames never change, the LRU has its own budget
        return freed

    @property
    def memory_used(self) -> int:
        return self._used

    def __len__(self) -> int:
        return len(self._memory)
