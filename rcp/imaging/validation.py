"""Checks on imported files: hostile input is expected.

An upload (DICOM files or a zip of them) is unpacked only after its zip directory has been checked — number of
entries, total uncompressed size, compression ratio — and each entry is read with a bound, since a zip's declared
sizes can lie (Orthanc's 2026 CVEs: decompression bombs, trusted zip sizes). Each file is then parsed with
pydicom and checked: readable DICOM (PS3.10), the three UIDs present and well formed (PS3.5 9.1), pixel data
present and of the declared size when the SOP class is an image, and ``rows x columns x frames x bytes`` within a
budget before anything is decoded. Each file's patient is then put to the identity rule of ``rcp.identifiers``
against the case's patient: a file that fails it refuses the whole import (``FileCheck.blocking``), and its
result shows the uploader what the file says beside the case's patient — the uploader sees both (their file,
their case); nobody else does. A file of another identity domain may instead be reconciled to the case's
patient, by an explicit confirmed choice (``Reconciliation``, ``rcp.imaging.reconcile``).

Messages are per file, say what to do, and never contain patient data; the side-by-side identities travel in
``FileCheck.identity``, apart from the message.
"""

from __future__ import annotations

import secrets
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from rcp.identifiers import DicomPatient, Match, ServicePatient, match
from rcp.imaging.dicomfile import is_uid, tolerant
from rcp.imaging.frames import PixelDataError, check_pixel_budget, number_of_frames
from rcp.imaging.reconcile import ReconcileRefused, coerced_bytes, confirmation, confirmed

__all__ = [
    "FileCheck",
    "Reconciliation",
    "UploadRefused",
    "UploadedFile",
    "check_file",
    "unpack_upload",
]

MAX_FILES = 5000
#: A DICOM zip rarely compresses better than 20:1 (pixel data is noisy); bombs reach 1000:1.
MAX_RATIO = 200

#: Image storage SOP classes (PS3.4 B.5) whose instances must carry pixel data; prefix match covers families.
IMAGE_SOP_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.1",  # CR, DX, MG, IO
    "1.2.840.10008.5.1.4.1.1.2",  # CT, enhanced CT
    "1.2.840.10008.5.1.4.1.1.3.1",  # US multi-frame
    "1.2.840.10008.5.1.4.1.1.4",  # MR, enhanced MR
    "1.2.840.10008.5.1.4.1.1.6",  # US
    "1.2.840.10008.5.1.4.1.1.7",  # secondary capture
    "1.2.840.10008.5.1.4.1.1.12",  # XA, RF
    "1.2.840.10008.5.1.4.1.1.20",  # NM
    "1.2.840.10008.5.1.4.1.1.128",  # PET
    "1.2.840.10008.5.1.4.1.1.130",  # enhanced PET
    "1.2.840.10008.5.1.4.1.1.481.1",  # RT image
)
NON_IMAGE_SOP_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.88",  # structured reports, KOS
    "1.2.840.10008.5.1.4.1.1.104",  # encapsulated PDF/CDA
    "1.2.840.10008.5.1.4.1.1.11",  # presentation states
    "1.2.840.10008.5.1.4.1.1.481.2",  # RT dose (has pixels but may be checked lazily)
    "1.2.840.10008.5.1.4.1.1.481.3",  # RT structure set
    "1.2.840.10008.5.1.4.1.1.481.5",  # RT plan
    "1.2.840.10008.5.1.4.1.1.66",  # raw data, registration, segmentation surface
)


class UploadRefused(ValueError):
    """The whole upload is refused (zip bomb, too many files); the message says which limit."""


@dataclass(frozen=True)
class UploadedFile:
    """One received file, on disk in the upload's working folder (``rcp.imaging.uploads``), never whole in memory."""

    name: str
    path: Path
    #: Why nothing could be taken out of this zip entry (or zip): refused per file with this message.
    damaged: str = ""

    @classmethod
    def write(cls, folder: Path, name: str, data: bytes) -> UploadedFile:
        """A file written into ``folder`` (tests, and anything that already holds the bytes)."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{secrets.token_hex(8)}.part"
        path.write_bytes(data)
        return cls(name, path)

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    def head(self, length: int = 132) -> bytes:
        with self.path.open("rb") as handle:
            return handle.read(length)


@dataclass
class FileCheck:
    name: str
    ok: bool
    message: str = ""
    warning: str = ""
    study_uid: str = ""
    series_uid: str = ""
    sop_uid: str = ""
    #: The patient the file names, and the identity rule's verdict against the case's patient.
    patient: DicomPatient | None = None
    identity: Match | None = None
    #: The case's patient, kept beside a refused file's patient for its uploader.
    case_patient: ServicePatient | None = None
    #: A refusal that refuses the whole import (identity, a study of another patient, a replaced instance).
    blocking: bool = False
    #: The archive already holds this very instance: nothing to store.
    already_stored: bool = False
    #: Where the checked file is (in the upload's working folder), until it is stored or refused.
    path: Path | None = field(default=None, repr=False)
    #: For a file of another identity domain: what its uploader sends back to reconcile it (``Reconciliation``).
    confirmation: str = ""
    #: The file was reconciled: ``path`` holds its coerced copy, filed under the case's patient.
    reconciled: bool = False

    def refuse(self, message: str, *, blocking: bool = True) -> None:
        self.ok = False
        self.message = message
        self.blocking = self.blocking or blocking

    def as_json(self) -> dict[str, object]:
        body: dict[str, object] = {"name": self.name, "ok": self.ok, "message": self.message,
                                   "study_uid": self.study_uid or None, "warning": self.warning or None}
        if self.identity is not None and not self.identity and self.patient is not None \
                and self.case_patient is not None:
            identity: dict[str, object] = {"fields": list(self.identity.refused), "file": self.patient.as_json(),
                                           "case": self.case_patient.as_json()}
            if self.confirmation:
                identity["confirmation"] = self.confirmation
            body["identity"] = identity
        if self.reconciled:
            body["reconciled"] = True
        return body


#: A zip (or one of its entries) that cannot be read: APPNOTE 4.3.7 local header, 4.4.7 CRC-32.
DAMAGED_ZIP = ("This zip is damaged (its directory cannot be read); nothing was taken from it. Make the zip again "
               "from the original files.")
DAMAGED_ENTRY = ("This zip entry is damaged (its checksum or header is wrong) or compressed in a way we cannot "
                 "read; nothing was taken from it. Make the zip again from the original files.")
#: What reading a damaged zip entry raises: a bad header or CRC, a broken deflate stream, a short file, an
#: unknown compression method.
_ZIP_DAMAGE = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError, OSError)


def unpack_upload(files: Sequence[UploadedFile], *, max_total_bytes: int, max_files: int = MAX_FILES
                  ) -> list[UploadedFile]:
    """Plain files as they are; zips expanded after their directory passed the limits (entries read bounded).

    A damaged zip or entry comes back marked ``damaged`` and is refused per file with its message; the other
    entries are still checked.
    """
    out: list[UploadedFile] = []
    total = 0
    for upload in files:
        if not zipfile.is_zipfile(upload.path) or upload.head()[128:132] == b"DICM":
            out.append(upload)
            total += upload.size
            continue
        try:
            archive = zipfile.ZipFile(upload.path)
            entries = [i for i in archive.infolist() if not i.is_dir() and not i.filename.startswith("__MACOSX/")]
        except _ZIP_DAMAGE:
            out.append(UploadedFile(upload.name, upload.path, damaged=DAMAGED_ZIP))
            continue
        if len(out) + len(entries) > max_files:
            raise UploadRefused(f"The zip holds more than {max_files} files; split it into smaller uploads.")
        declared = sum(i.file_size for i in entries)
        if total + declared > max_total_bytes:
            raise UploadRefused(f"The zip would unpack to more than {max_total_bytes} bytes; upload fewer studies "
                                "at a time.")
        for info in entries:
            if info.flag_bits & 0x1:
                raise UploadRefused("The zip is encrypted; upload it without a password.")
            if info.compress_size and info.file_size / info.compress_size > MAX_RATIO:
                raise UploadRefused("The zip has an entry compressed beyond any DICOM file (a zip bomb?); refused.")
        for index, info in enumerate(entries):
            target = upload.path.with_name(f"{upload.path.stem}-{index:05d}.part")
            name = f"{upload.name}/{info.filename}"
            try:
                with archive.open(info) as handle, target.open("wb") as copy:
                    # Never trust the declared size: read one byte more than announced and refuse if it comes.
                    written = _copy_bounded(handle, copy, info.file_size + 1)
            except _ZIP_DAMAGE:
                target.unlink(missing_ok=True)
                out.append(UploadedFile(name, target, damaged=DAMAGED_ENTRY))
                continue
            if written > info.file_size:
                raise UploadRefused("A zip entry is larger than its header says; the zip is refused.")
            total += written
            if total > max_total_bytes:
                raise UploadRefused(f"The upload unpacks to more than {max_total_bytes} bytes; refused.")
            out.append(UploadedFile(name, target))
    if len(out) > max_files:
        raise UploadRefused(f"More than {max_files} files in one upload; split it.")
    return out


def _copy_bounded(source: IO[bytes], target: IO[bytes], limit: int, chunk: int = 1 << 20) -> int:
    """Copy at most ``limit`` bytes, a chunk at a time (an entry is never whole in memory); returns the count."""
    written = 0
    while written < limit:
        block = source.read(min(chunk, limit - written))
        if not block:
            break
        target.write(block)
        written += len(block)
    return written


def _is_image(sop_class: str, ds: Dataset) -> bool:
    if sop_class.startswith(NON_IMAGE_SOP_PREFIXES):
        return False
    return sop_class.startswith(IMAGE_SOP_PREFIXES) or "Rows" in ds


#: Elements longer than this are left on disk when a file is checked (pixel data), read only if accessed.
DEFER_BYTES = 1 << 20


def _pixel_bytes_present(ds: Dataset, file_size: int) -> int | None:
    """Bytes of Pixel Data the file holds, read from the element's header when its value was left on disk; -1 when
    the header announces more than the file holds (truncated); None without Pixel Data."""
    element = ds.get_item("PixelData", keep_deferred=True)
    if element is None:
        return None
    if isinstance(element, RawDataElement) and element.value is None and element.value_tell is not None:
        if element.length != 0xFFFFFFFF and element.value_tell + element.length > file_size:
            return -1
        return int(element.length)
    return len(ds.PixelData or b"")


def _expected_pixel_bytes(ds: Dataset) -> int:
    bits = int(ds.BitsAllocated) * int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel") or 1)
    return (bits * number_of_frames(ds) + 7) // 8


#: Refusal messages (field names only: the values are in ``FileCheck.identity``, for the uploader).
NOT_THE_PATIENT = ("This file's patient is not the case's patient ({fields}); nothing of this import was stored. "
                   "Check that the files belong to this patient, or import them into their own case.")


RECONCILED = ("Reconciled: filed under the case's patient, as you chose; the file's own identity is kept in it "
              "(Original Attributes Sequence).")
NOT_RECONCILED = ("This file's patient is not the case's patient ({fields}), and the reconciliation you confirmed was "
                  "for another identity (another file, or the patient changed since): nothing of this import was "
                  "stored. Look at both identities again before reconciling.")
SAME_DOMAIN = ("This file carries the case patient's own identifier with other identity traits ({fields}): that is a "
               "filing error at its source, not another hospital's identity, and it cannot be reconciled here. "
               "Nothing of this import was stored; have the PACS or the sender correct the file.")


@dataclass(frozen=True)
class Reconciliation:
    """What the route knows to offer, or perform, a reconciliation (``rcp.imaging.reconcile``).

    ``confirm`` is empty when the uploader did not ask to reconcile: refused files of another domain then only get
    a ``confirmation`` to send back. ``at`` is when the choice was made (Attribute Modification DateTime).
    """

    secret: str
    case_id: int
    at: datetime
    confirm: str = ""
    #: The case patient's INS and its OID, given only when the identity is qualified (``ins_may_leave``).
    ins: str = ""
    ins_oid: str = ""


def check_file(upload: UploadedFile, expected: ServicePatient | None,
               reconciliation: Reconciliation | None = None) -> FileCheck:
    """Everything we can say about one file without storing it (CPU: run in a thread)."""
    with tolerant():
        return _check_file(upload, expected, reconciliation)


def _reconcile(result: FileCheck, upload: UploadedFile, expected: ServicePatient, file_patient: DicomPatient,
               reconciliation: Reconciliation) -> FileCheck:
    """A file that names no identifier of the case's patient: offer a confirmation, or reconcile if confirmed."""
    assert result.identity is not None
    fields = ", ".join(result.identity.refused)
    if not reconciliation.confirm:
        result.confirmation = confirmation(reconciliation.secret, reconciliation.case_id, expected, file_patient)
        result.refuse(NOT_THE_PATIENT.format(fields=fields))
        return result
    if not confirmed(reconciliation.secret, reconciliation.case_id, expected, file_patient, reconciliation.confirm):
        result.refuse(NOT_RECONCILED.format(fields=fields))
        return result
    try:
        blob = coerced_bytes(str(upload.path), expected, at=reconciliation.at, ins=reconciliation.ins,
                             ins_oid=reconciliation.ins_oid)
    except ReconcileRefused as exc:
        result.refuse(str(exc))
        return result
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
        result.refuse("The file could not be rewritten under the case's patient (its header is unusual); nothing "
                      "of this import was stored. Export it again from its source.")
        return result
    target = upload.path.with_name(upload.path.name + ".reconciled")
    target.write_bytes(blob)
    result.reconciled = True
    result.message = RECONCILED
    result.path = target
    return result


def _check_file(upload: UploadedFile, expected: ServicePatient | None,
                reconciliation: Reconciliation | None = None) -> FileCheck:
    result = FileCheck(name=upload.name, ok=False)
    if upload.damaged:
        result.message = upload.damaged
        return result
    if upload.size < 132:
        result.message = "Not a DICOM file (too short); export the images as DICOM from the PACS or CD."
        return result
    try:
        # Pixel data stays on disk (deferred): a 120 MiB frame set is never read to be checked (issue 18).
        ds = pydicom.dcmread(upload.path, defer_size=DEFER_BYTES)
    except InvalidDicomError:
        result.message = "Not a DICOM file; export the images as DICOM from the PACS or CD."
        return result
    except (EOFError, ValueError, TypeError, KeyError, AttributeError, OSError, OverflowError, NotImplementedError):
        result.message = "The DICOM file is damaged or truncated; copy it again from its source."
        return result
    uids = [str(ds.get(k, "")) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")]
    if not all(is_uid(u) for u in uids) or not str(ds.get("SOPClassUID", "")):
        result.message = "The file lacks a valid Study, Series or SOP Instance UID; it cannot be filed."
        return result
    result.study_uid, result.series_uid, result.sop_uid = uids
    sop_class = str(ds.SOPClassUID)
    if _is_image(sop_class, ds):
        if "PixelData" not in ds and "FloatPixelData" not in ds:
            result.message = "This image file has no pixel data; export it again with its images."
            return result
        try:
            check_pixel_budget(ds)
        except PixelDataError as exc:
            result.message = f"The image cannot be used: {exc}."
            return result
        transfer_syntax = ds.file_meta.get("TransferSyntaxUID")
        native = transfer_syntax is not None and not pydicom.uid.UID(transfer_syntax).is_encapsulated
        present = _pixel_bytes_present(ds, upload.size)
        if present is not None and present < 0:
            result.message = "The DICOM file is damaged or truncated; copy it again from its source."
            return result
        if present is not None and native and present < _expected_pixel_bytes(ds):
            result.message = "The image is truncated (pixel data shorter than its size); copy it again."
            return result
    result.ok = True
    result.message = "Imported."
    result.patient = DicomPatient.from_dataset(ds)
    if expected is not None:
        result.case_patient = expected
        result.identity = match(expected, result.patient)
        if not result.identity:
            if reconciliation is not None and result.identity.by == "":
                return _reconcile(result, upload, expected, result.patient, reconciliation)
            if reconciliation is not None and reconciliation.confirm:
                result.refuse(SAME_DOMAIN.format(fields=", ".join(result.identity.refused)))
                return result
            result.refuse(NOT_THE_PATIENT.format(fields=", ".join(result.identity.refused)))
            return result
    result.path = upload.path
    return result
