"""Importing images into a case: unpack, validate, check against the archive, then store all or nothing.

A referring hospital's CD or a colleague's export arrives as files or a zip. ``import_files`` runs the checks of
``rcp.imaging.validation`` in the service's thread pool, then asks the archive, *before storing anything*:

* is each study of the upload already there under another patient? (Finding: a file with the case patient's IPP
  and another patient's StudyInstanceUID made that foreign study part of the case.) Refused, without saying whose.
* is each SOP Instance UID already there? The same instance again is a no-op; other content under the same UID is
  refused: a stored instance is never replaced (PS3.3 C.12.1.1.1), on the local archive as over STOW-RS.

A file of another identity domain (a CD from another hospital) is reconciled to the case's patient only when the
uploader confirmed it (``rcp.imaging.reconcile``); then its coerced copy is what is checked and stored.

Any such refusal, or any file whose patient is not the case's patient, refuses the whole import: nothing of it is
stored (files that are not DICOM at all are only reported, as before). Otherwise the good files go to the archive
in one store and their studies are attached to the case.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from rcp.errors import PayloadTooLarge
from rcp.identifiers import ServicePatient, match
from rcp.imaging.dicomfile import same_instance_file
from rcp.imaging.reconcile import same_reconciled
from rcp.imaging.service import ImagingService
from rcp.imaging.validation import (
    FileCheck,
    Reconciliation,
    UploadedFile,
    UploadRefused,
    check_file,
    unpack_upload,
)

__all__ = ["ImportReport", "import_files"]

FOREIGN_STUDY = ("This study is already in the archive under another patient: it cannot be imported into this "
                 "case, and nothing of this import was stored. Check where the file comes from.")
REPLACED_INSTANCE = ("An instance with this SOP Instance UID is already in the archive with other content: a stored "
                     "instance is never replaced, and nothing of this import was stored. Export the file again from "
                     "its source, or ask its sender why the content changed.")
#: How much of an upload is read into memory for one store call (the DICOMweb client batches alike).
STORE_BATCH_BYTES = 32 << 20
BEING_IMPORTED = ("Another upload is importing this same instance right now; nothing of this import was stored. "
                  "Try again in a moment.")
NOT_STORED = "Not stored: another file of this import was refused, so nothing of it was stored."
ALREADY_STORED = "Already in the archive (the very same instance): nothing to store."


@dataclass
class ImportReport:
    results: list[FileCheck] = field(default_factory=list)
    #: Studies of the stored files (all the case patient's): attach these.
    matching_study_uids: list[str] = field(default_factory=list)

    @property
    def refused(self) -> bool:
        """The whole import was refused (nothing stored)."""
        return any(r.blocking for r in self.results)

    def as_json(self) -> dict[str, object]:
        return {
            "results": [r.as_json() for r in self.results],
            "imported": sum(1 for r in self.results if r.ok),
            "refused": sum(1 for r in self.results if not r.ok),
            "warnings": sum(1 for r in self.results if r.warning),
            "reconciled": sum(1 for r in self.results if r.ok and r.reconciled),
            "attached_study_uids": self.matching_study_uids,
        }


def _check_all(files: Sequence[UploadedFile], expected: ServicePatient | None, max_total_bytes: int,
               reconciliation: Reconciliation | None = None) -> list[FileCheck]:
    return [check_file(f, expected, reconciliation) for f in unpack_upload(files, max_total_bytes=max_total_bytes)]


async def _refuse_foreign_studies(service: ImagingService, good: Sequence[FileCheck], expected: ServicePatient
                                  ) -> None:
    for study_uid in dict.fromkeys(c.study_uid for c in good):
        held = [s for s in await service.archive.search_studies(study_uid=study_uid) if s.study_uid == study_uid]
        if held and not all(match(expected, s.patient) for s in held):
            for check in good:
                if check.study_uid == study_uid:
                    check.refuse(FOREIGN_STUDY)


def _same_as_file(stored: bytes, check: FileCheck) -> bool:
    if check.path is None:
        return False
    # Compared a chunk at a time: the incoming file is never read whole beside the stored copy.
    if same_instance_file(stored, check.path):
        return True
    # A CD reconciled again: the same coerced instance but for the time of the coercion.
    return check.reconciled and same_reconciled(stored, check.path.read_bytes())


def _batches(checks: Sequence[FileCheck], budget: int = STORE_BATCH_BYTES) -> list[list[FileCheck]]:
    """Consecutive groups of about ``budget`` bytes: what is read from disk for one store call."""
    out: list[list[FileCheck]] = [[]]
    size = 0
    for check in checks:
        length = check.path.stat().st_size if check.path is not None else 0
        if out[-1] and size + length > budget:
            out.append([])
            size = 0
        out[-1].append(check)
        size += length
    return [b for b in out if b]


async def _check_existing_instances(service: ImagingService, good: Sequence[FileCheck]) -> None:
    limit = asyncio.Semaphore(8)
    # A stored instance is retrieved whole to be compared: large ones one at a time in the whole process, so that
    # several 120 MiB instances are never in memory together (issue 18: 1.7 GB for four concurrent imports of one
    # CD's large instances, when each import compared eight at a time).
    large = service.large_comparisons

    async def one(check: FileCheck) -> None:
        size = check.path.stat().st_size if check.path is not None else 0
        async with limit, (large if size > STORE_BATCH_BYTES else contextlib.nullcontext()):
            found = await service.archive.find_instance(check.sop_uid)
            if found is None:
                return
            stored = await service.archive.retrieve_instance(found.study_uid, found.series_uid, check.sop_uid)
            same = (found.study_uid, found.series_uid) == (check.study_uid, check.series_uid) \
                and await service.run(_same_as_file, stored, check)
            del stored
        if same:
            check.already_stored = True
            check.message = ALREADY_STORED
        else:
            check.refuse(REPLACED_INSTANCE)

    await asyncio.gather(*(one(c) for c in good))


async def import_files(service: ImagingService, files: Sequence[UploadedFile], expected: ServicePatient | None,
                       *, max_total_bytes: int, reconciliation: Reconciliation | None = None) -> ImportReport:
    """Check every file, then store all the good ones or none (see the module docstring).

    With ``reconciliation``, refused files of another identity domain get a confirmation to reconcile them; with
    its ``confirm`` set, the files of the confirmed identity are stored coerced to the case's patient
    (``rcp.imaging.reconcile``), never unchanged.
    """
    try:
        checks = await service.run(_check_all, files, expected, max_total_bytes, reconciliation)
    except UploadRefused as exc:
        raise PayloadTooLarge(str(exc)) from None
    report = ImportReport(results=checks)
    good = [c for c in checks if c.ok]
    # Claimed before the archive is asked, released once stored: two uploads of one instance never both pass the
    # "not stored yet" check (within this node; the local archive also refuses a replacement at the file).
    claimed = {c.sop_uid for c in good} - service.importing
    for check in good:
        if check.sop_uid in service.importing and check.sop_uid not in claimed:
            check.refuse(BEING_IMPORTED)
    service.importing |= claimed
    try:
        return await _store_or_refuse(service, report, good, expected)
    finally:
        service.importing -= claimed


async def _store_or_refuse(service: ImagingService, report: ImportReport, good: list[FileCheck],
                           expected: ServicePatient | None) -> ImportReport:
    checks = report.results
    if not report.refused and expected is not None:
        await _refuse_foreign_studies(service, good, expected)
    if not report.refused:
        await _check_existing_instances(service, [c for c in good if c.ok])
    if report.refused:
        for check in checks:
            if check.ok:
                check.ok = False
                check.message = NOT_STORED
        return report
    to_store = [c for c in good if not c.already_stored]
    # From disk a batch at a time: the upload is never whole in memory, even while it is stored (the local
    # archive copies each file; a PACS gets one STOW-RS body of about STORE_BATCH_BYTES at a time).
    for batch in _batches(to_store):
        stored = await service.archive.store_files([c.path for c in batch if c.path is not None])
        service.forget_study_lists()
        accepted = set(stored.stored)
        # An archive that acknowledged nothing and refused nothing did not tell: trust the absence of failures.
        if not accepted and not stored.failed:
            accepted = {c.sop_uid for c in batch}
        for check in batch:
            if check.sop_uid not in accepted:
                check.ok = False
                check.message = "The archive refused this file; try again, or ask the PACS administrator."
    for check in checks:
        if check.ok and expected is not None and check.study_uid not in report.matching_study_uids:
            report.matching_study_uids.append(check.study_uid)
    return report
