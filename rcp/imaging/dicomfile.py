"""Reading DICOM we did not write: UID syntax, and tolerance for values that break their VR's rules.

Files from other hospitals routinely carry values that do not follow PS3.5 6.2 (a UID with a trailing space, a DS
with a comma). pydicom warns on each as it converts them; the service checks what matters itself (UIDs, pixel
sizes) and refuses per file, so inside ``tolerant()`` those warnings are silenced rather than logged per element.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from rcp.identifiers import is_uid

__all__ = ["is_uid", "same_instance", "same_instance_file", "tolerant"]


def _dataset_offset(head: bytes) -> int:
    """Where the data set starts, after the File Meta Information (PS3.10 7.1: preamble, ``DICM``, group 0002), from
    a file's first 144 bytes; 0 for a file without one."""
    if len(head) < 144 or head[128:132] != b"DICM" or head[132:136] != b"\x02\x00\x00\x00":
        return 0
    return 144 + int.from_bytes(head[140:144], "little")


def _dataset_part(blob: bytes) -> bytes:
    """What follows the File Meta Information (PS3.10 7.1): preamble, ``DICM`` and group 0002 left out."""
    return blob[_dataset_offset(blob[:144]):]


def same_instance(stored: bytes, incoming: bytes) -> bool:
    """Whether ``incoming`` is the instance already ``stored``: the same bytes, or the same data set under a file
    meta header rewritten by the archive (implementation UID, source AE title: PS3.10 7.1).

    >>> same_instance(b"abc", b"abc"), same_instance(b"abc", b"abd")
    (True, False)
    """
    return stored == incoming or _dataset_part(stored) == _dataset_part(incoming)


def same_instance_file(stored: bytes, path: Path, *, chunk: int = 1 << 20) -> bool:
    """``same_instance(stored, path.read_bytes())``, with the incoming file read a chunk at a time: an import of
    large instances never holds a second copy of each (issue 18).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = Path(folder) / "a.dcm"
    ...     _ = path.write_bytes(b"abc" * 1000)
    ...     same_instance_file(b"abc" * 1000, path, chunk=7), same_instance_file(b"abd" * 1000, path, chunk=7)
    (True, False)
    """
    with path.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == len(stored) and _same_stream(memoryview(stored), handle, chunk):
            return True
        handle.seek(0)
        start = _dataset_offset(handle.read(144))
        stored_part = memoryview(stored)[_dataset_offset(stored[:144]):]
        if size - start != len(stored_part):
            return False
        handle.seek(start)
        return _same_stream(stored_part, handle, chunk)


def _same_stream(expected: memoryview, handle: BinaryIO, chunk: int) -> bool:
    position = 0
    while block := handle.read(chunk):
        if expected[position:position + len(block)] != block:
            return False
        position += len(block)
    return position == len(expected)


@contextmanager
def tolerant() -> Iterator[None]:
    """Silence pydicom's value-validation warnings for the block (untrusted files are checked by us)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Invalid value for VR", category=UserWarning)
        warnings.filterwarnings("ignore", module=r"pydicom\..*", category=UserWarning)
        yield
