"""Reading DICOM we did not write: UID syntax, and tolerance for values that break their VR's rules.

Files from other hospitals routinely carry values that do not follow PS3.5 6.2 (a UID with a trailing space, a DS
with a comma). pydicom warns on each as it converts them; the service checks what matters itself (UIDs, pixel
sizes) and refuses per file, so inside ``tolerant()`` those warnings are silenced rather than logged per element.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from rcp.identifiers import is_uid

__all__ = ["is_uid", "same_instance", "tolerant"]


def _dataset_part(blob: bytes) -> bytes:
    """What follows the File Meta Information (PS3.10 7.1): preamble, ``DICM`` and group 0002 left out."""
    if len(blob) < 144 or blob[128:132] != b"DICM" or blob[132:136] != b"\x02\x00\x00\x00":
        return blob
    meta_length = int.from_bytes(blob[140:144], "little")
    return blob[144 + meta_length:]


def same_instance(stored: bytes, incoming: bytes) -> bool:
    """Whether ``incoming`` is the instance already ``stored``: the same bytes, or the same data set under a file
    meta header rewritten by the archive (implementation UID, source AE title: PS3.10 7.1).

    >>> same_instance(b"abc", b"abc"), same_instance(b"abc", b"abd")
    (True, False)
    """
    return stored == incoming or _dataset_part(stored) == _dataset_part(incoming)


@contextmanager
def tolerant() -> Iterator[None]:
    """Silence pydicom's value-validation warnings for the block (untrusted files are checked by us)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Invalid value for VR", category=UserWarning)
        warnings.filterwarnings("ignore", module=r"pydicom\..*", category=UserWarning)
        yield
