"""Reading DICOM we did not write: UID syntax, and tolerance for values that break their VR's rules.

Files from other hospitals routinely carry values that do not follow PS3.5 6.2 (a UID with a trailing space, a DS
with a comma). pydicom warns on each as it converts them; the service checks what matters itself (UIDs, pixel
sizes) and refuses per file, so inside ``tolerant()`` those warnings are silenced rather than logged per element.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["is_uid", "tolerant"]

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def is_uid(value: str) -> bool:
    """A syntactically valid UID (PS3.5 9.1): digits and dots, at most 64 characters."""
    return 0 < len(value) <= 64 and bool(_UID.match(value))


@contextmanager
def tolerant() -> Iterator[None]:
    """Silence pydicom's value-validation warnings for the block (untrusted files are checked by us)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Invalid value for VR", category=UserWarning)
        warnings.filterwarnings("ignore", module=r"pydicom\..*", category=UserWarning)
        yield
