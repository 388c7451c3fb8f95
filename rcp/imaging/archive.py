"""The imaging archive: one interface, two backends chosen by URL (a DICOMweb PACS, or the local folder).

The rest of the service speaks only ``Archive``: search a patient's studies (QIDO-RS semantics, PS3.18 10.6),
list series and instances, read series metadata, retrieve instances and frames (WADO-RS, PS3.18 10.4), and store
instances (STOW-RS, PS3.18 10.5). ``open_archive(settings)`` picks the backend the way broadcaster picks its bus:

    ``""`` or ``local://``          files under ``settings.data_dir / "archive"``, indexed in the database
    ``http(s)://host/dicom-web``    a DICOMweb server (the regional PACS; Orthanc in tests)

Summaries are plain frozen dataclasses, so the routes and the viewer never see which backend answered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydicom.dataset import Dataset

from rcp.errors import NotFound, Unavailable
from rcp.identifiers import DicomPatient

if TYPE_CHECKING:
    from rcp.config import Settings
    from rcp.db import Database

__all__ = [
    "VIEWER_ATTRIBUTES",
    "Archive",
    "ArchiveNotFound",
    "ArchiveUnavailable",
    "InstanceSummary",
    "RawFrame",
    "SeriesSummary",
    "StoreResult",
    "StudySummary",
    "open_archive",
    "patient_name_text",
]


class ArchiveUnavailable(Unavailable):
    """The PACS did not answer (after retries); the message says so without naming what was asked.

    The 503 carries ``Retry-After`` (RFC 9110 §10.2.3): the viewer waits that long before asking again
    (web/static/js/frames.js ``retryAfterMs``) instead of hammering a PACS that is coming back.
    """

    #: Seconds the viewer waits before asking the PACS again.
    retry_after_s = 5

    def __init__(self, message: str = "PACS unreachable, retrying: the images will appear when it answers.") -> None:
        super().__init__(message)


class ArchiveNotFound(NotFound):
    pass


def patient_name_text(value: Any) -> str:
    """A Person Name (PS3.5 6.2 PN) as text: the alphabetic group, components joined by '^'."""
    if value is None:
        return ""
    if isinstance(value, dict):  # DICOM JSON (PS3.18 F.2.2)
        return str(value.get("Alphabetic", ""))
    return str(value)


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


def _int(ds: Dataset, keyword: str) -> int:
    try:
        return int(ds.get(keyword) or 0)
    except (TypeError, ValueError):
        return 0


#: What the viewer's series descriptor is built from (PS3.3 Image Pixel, Image Plane, VOI LUT, Modality LUT).
VIEWER_ATTRIBUTES = (
    "00080016", "00080018", "00080020", "00080060", "0008103E", "00200011", "00200013", "00200032", "00200037",
    "00201041", "00280002", "00280004", "00280008", "00280010", "00280011", "00280030", "00280100", "00280101",
    "00280103", "00281050", "00281051", "00281052", "00281053",
)


@dataclass(frozen=True)
class StudySummary:
    study_uid: str
    patient_id: str = ""
    issuer: str = ""
    patient_name: str = ""
    patient_birth_date: str = ""
    #: M, F, O or "" (then the identity rule has no sex to compare).
    patient_sex: str = ""
    study_date: str = ""
    study_time: str = ""
    accession: str = ""
    description: str = ""
    modalities: tuple[str, ...] = ()
    series_count: int = 0
    instance_count: int = 0

    @property
    def patient(self) -> DicomPatient:
        """The study's patient as the identity rule reads it (``rcp.identifiers``)."""
        return DicomPatient(patient_id=self.patient_id, issuer=self.issuer, name=self.patient_name,
                            birth_date=self.patient_birth_date, sex=self.patient_sex)

    @classmethod
    def from_dataset(cls, ds: Dataset) -> StudySummary:
        modalities = ds.get("ModalitiesInStudy") or []
        if isinstance(modalities, str):
            modalities = [modalities]
        return cls(
            study_uid=_text(ds, "StudyInstanceUID"),
            patient_id=_text(ds, "PatientID"),
            issuer=_text(ds, "IssuerOfPatientID"),
            patient_name=patient_name_text(ds.get("PatientName")),
            patient_birth_date=_text(ds, "PatientBirthDate"),
            patient_sex=_text(ds, "PatientSex"),
            study_date=_text(ds, "StudyDate"),
            study_time=_text(ds, "StudyTime"),
            accession=_text(ds, "AccessionNumber"),
            description=_text(ds, "StudyDescription"),
            modalities=tuple(sorted({str(m) for m in modalities if m})),
            series_count=_int(ds, "NumberOfStudyRelatedSeries"),
            instance_count=_int(ds, "NumberOfStudyRelatedInstances"),
        )


@dataclass(frozen=True)
class SeriesSummary:
    study_uid: str
    series_uid: str
    modality: str = ""
    description: str = ""
    series_number: int = 0
    instance_count: int = 0

    @classmethod
    def from_dataset(cls, ds: Dataset, study_uid: str = "") -> SeriesSummary:
        return cls(
            study_uid=_text(ds, "StudyInstanceUID") or study_uid,
            series_uid=_text(ds, "SeriesInstanceUID"),
            modality=_text(ds, "Modality"),
            description=_text(ds, "SeriesDescription"),
            series_number=_int(ds, "SeriesNumber"),
            instance_count=_int(ds, "NumberOfSeriesRelatedInstances"),
        )


@dataclass(frozen=True)
class InstanceSummary:
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str = ""
    instance_number: int = 0
    frames: int = 1

    @classmethod
    def from_dataset(cls, ds: Dataset, study_uid: str = "", series_uid: str = "") -> InstanceSummary:
        return cls(
            study_uid=_text(ds, "StudyInstanceUID") or study_uid,
            series_uid=_text(ds, "SeriesInstanceUID") or series_uid,
            sop_uid=_text(ds, "SOPInstanceUID"),
            sop_class_uid=_text(ds, "SOPClassUID"),
            instance_number=_int(ds, "InstanceNumber"),
            frames=max(1, _int(ds, "NumberOfFrames")),
        )


@dataclass(frozen=True)
class RawFrame:
    """One frame's pixel data as the archive holds it (native bytes or one compressed codestream)."""

    data: bytes
    transfer_syntax: str


@dataclass
class StoreResult:
    stored: list[str] = field(default_factory=list)
    #: (SOP Instance UID or "", reason) for each instance refused.
    failed: list[tuple[str, str]] = field(default_factory=list)


@runtime_checkable
class Archive(Protocol):
    """What the service needs from an imaging archive. Both backends pass the same contract tests."""

    async def search_studies(self, *, patient_id: str | None = None, issuer: str | None = None,
                             study_uid: str | None = None, limit: int = 200) -> list[StudySummary]: ...

    async def list_series(self, study_uid: str) -> list[SeriesSummary]: ...

    async def list_instances(self, study_uid: str, series_uid: str) -> list[InstanceSummary]: ...

    async def find_instance(self, sop_uid: str) -> InstanceSummary | None:
        """The stored instance with this SOP Instance UID, wherever it is filed, or None (before a store: an
        instance is never replaced, PS3.3 C.12.1.1.1)."""
        ...

    async def series_metadata(self, study_uid: str, series_uid: str) -> list[Dataset]:
        """The header of every instance of the series, without bulk pixel data."""
        ...

    async def image_headers(self, study_uid: str, series_uid: str) -> list[Dataset]:
        """At least the attributes a series descriptor needs (``VIEWER_ATTRIBUTES``), as cheaply as possible."""
        ...

    async def retrieve_instance(self, study_uid: str, series_uid: str, sop_uid: str) -> bytes:
        """The DICOM file (PS3.10) of one instance."""
        ...

    async def retrieve_series(self, study_uid: str, series_uid: str) -> list[bytes]: ...

    async def retrieve_frame(self, study_uid: str, series_uid: str, sop_uid: str, frame: int) -> RawFrame:
        """Frame ``frame`` (1-based, PS3.18 10.4.1.1.5) as stored."""
        ...

    async def store(self, instances: Sequence[bytes]) -> StoreResult: ...

    async def store_files(self, paths: Sequence[Path]) -> StoreResult:
        """``store`` from files on disk (an import's working folder), never all in memory at once."""
        ...

    async def close(self) -> None: ...


def open_archive(settings: Settings, *, database: Database | None = None) -> Archive:
    """The archive ``settings.pacs_url`` names (see the module docstring)."""
    url = settings.pacs_url.strip()
    if url.startswith(("http://", "https://")):
        from rcp.imaging.dicomweb import DicomWebClient

        return DicomWebClient(url, username=settings.pacs_username, password=settings.pacs_password,
                              token=settings.pacs_token)
    if url in ("", "local://") or url.startswith("local://"):
        from rcp.imaging.local import LocalArchive

        if database is None:
            raise ValueError("the local archive needs the service's database for its index")
        folder = url[len("local://"):] if url.startswith("local://") and len(url) > len("local://") else ""
        from pathlib import Path

        return LocalArchive(Path(folder) if folder else settings.data_dir / "archive", database)
    raise ValueError(f"RCP_PACS_URL must be empty, local://, or an http(s)://.../dicom-web URL (got {url!r})")
