"""Importing images into a case: unpack, validate, store into the archive, report per file.

A referring hospital's CD or a colleague's export arrives as files or a zip. ``import_files`` runs the checks of
``rcp.imaging.validation`` in the service's thread pool, stores the good files in one STOW-RS exchange (or the
local archive), and returns one result per file plus the studies to attach to the case (only those whose patient
matches the case's patient).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from rcp.errors import PayloadTooLarge
from rcp.imaging.service import ImagingService
from rcp.imaging.validation import (
    ExpectedPatient,
    FileCheck,
    UploadedFile,
    UploadRefused,
    check_file,
    unpack_upload,
)

__all__ = ["ImportReport", "import_files"]


@dataclass
class ImportReport:
    results: list[FileCheck] = field(default_factory=list)
    #: Studies of files whose patient matches the case: attach these.
    matching_study_uids: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {
            "results": [r.as_json() for r in self.results],
            "imported": sum(1 for r in self.results if r.ok),
            "refused": sum(1 for r in self.results if not r.ok),
            "warnings": sum(1 for r in self.results if r.warning),
            "attached_study_uids": self.matching_study_uids,
        }


def _check_all(files: Sequence[UploadedFile], expected: ExpectedPatient | None, max_total_bytes: int
               ) -> list[FileCheck]:
    return [check_file(f, expected) for f in unpack_upload(files, max_total_bytes=max_total_bytes)]


async def import_files(service: ImagingService, files: Sequence[UploadedFile], expected: ExpectedPatient | None,
                       *, max_total_bytes: int) -> ImportReport:
    try:
        checks = await service.run(_check_all, files, expected, max_total_bytes)
    except UploadRefused as exc:
        raise PayloadTooLarge(str(exc)) from None
    good = [c for c in checks if c.ok]
    if good:
        stored = await service.archive.store([c.data for c in good])
        service.forget_study_lists()
        accepted = set(stored.stored)
        # An archive that acknowledged nothing and refused nothing did not tell: trust the absence of failures.
        if not accepted and not stored.failed:
            accepted = {c.sop_uid for c in good}
        for check in good:
            if check.sop_uid not in accepted:
                check.ok = False
                check.message = "The archive refused this file; try again, or ask the PACS administrator."
    report = ImportReport(results=checks)
    for check in checks:
        check.data = b""
        if check.ok and check.patient_matches and check.study_uid not in report.matching_study_uids:
            report.matching_study_uids.append(check.study_uid)
    return report
