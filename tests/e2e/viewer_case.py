"""The viewer's test material: synthetic series in the app's own archive, on a case, and a PACS that can go down.

Why: the viewer's end-to-end tests must read frames from the real imaging routes (``rcp.imaging.routes``) in the
real wire format (``rcp.imaging.frames``), not from a copy of the contract. So the series are DICOM files built by
``rcp.imaging.synthetic`` (CT Image IOD, PS3.3 A.3), stored in the local archive the app serves, and attached to a
case of a scheduled meeting (tests.factories: a board, meeting and patient of its own); the browser is signed in as
the board's coordinator, who attached them.

The CTs carry a *calibration* written into their stored values (after the phantom is drawn): a per-slice marker
block whose value is ``slice_marker(k)`` HU on slice k, and patches of known Hounsfield units, so a test reads one
canvas pixel and knows which slice and which window it shows. The other series exercise the other two wire
encodings and photometric interpretations: a PET whose rescale slope makes values non-integer (float32-deflate,
PS3.3 C.11.1.1.2), an RGB secondary capture (rgb8-deflate), a MONOCHROME1 radiograph (PS3.3 C.7.6.3.1.2), and a
series in a transfer syntax the server cannot decode (MPEG2, PS3.5 A.4.5), which the server refuses with its own
message.

``PacsSwitch`` wraps the app's archive: while a series is "down" its retrievals raise ``ArchiveUnavailable``, the
exception the DICOMweb client raises when the PACS does not answer, so the real route answers its real 503.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    MPEG2MPML,
    UID,
    ComputedRadiographyImageStorage,
    PositronEmissionTomographyImageStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from rcp.config import Settings
from rcp.db import Database
from rcp.imaging.archive import Archive, ArchiveUnavailable, open_archive
from rcp.imaging.synthetic import SyntheticPatient, ct_series, to_part10
from tests.conftest import sign_in
from tests.factories import HOSPITAL, MadeUser, make_case, make_meeting, make_patient

__all__ = [
    "CT_MARKER_BOX",
    "CT_PATCHES",
    "CT_SIZE",
    "CT_SLICES",
    "RGB_BARS",
    "PacsSwitch",
    "Series",
    "ViewerCase",
    "attach",
    "new_case",
    "new_viewer_case",
    "series_of",
    "session_cookies",
    "slice_marker",
    "store",
    "store_flaky_series",
]

CT_SLICES = 120
CT_SIZE = 256
#: The modality LUT of ``ct_series`` (PS3.3 C.11.1.1.2): HU = stored + intercept.
CT_INTERCEPT = -1024
#: Image regions as (row0, row1, col0, col1), half-open, outside the phantom's reconstruction circle.
CT_MARKER_BOX = (6, 30, 6, 46)
CT_PATCHES: tuple[tuple[int, tuple[int, int, int, int]], ...] = tuple(
    (hu, (232, 250, 8 + 24 * j, 28 + 24 * j))
    for j, hu in enumerate((-800, -600, -100, 0, 40, 80, 200, 400, 1000, 2000))
)
RGB_BARS: tuple[tuple[int, int, int], ...] = (
    (255, 255, 255), (255, 255, 0), (0, 255, 255), (0, 255, 0), (255, 0, 255), (255, 0, 0), (0, 0, 255), (0, 0, 0),
)


def slice_marker(k: int) -> int:
    """HU of the marker block on slice k (0-based, feet first as the viewer orders them).

    25 HU per slice is about 4 grey levels per slice in the lung window, enough to tell neighbours apart.
    """
    return -1000 + 25 * k


@dataclass(frozen=True)
class Series:
    """One series in the archive, as the viewer opens it."""

    study_uid: str
    series_uid: str
    datasets: tuple[Dataset, ...] = field(repr=False)
    #: Appended to the descriptor's URL (``?case_id=N`` for a study of the case's patient not yet attached).
    query: str = ""

    @property
    def url(self) -> str:
        """The series descriptor's address (``GET /api/imaging/studies/{study}/series/{series}``)."""
        return f"/api/imaging/studies/{self.study_uid}/series/{self.series_uid}{self.query}"

    def value(self, k: int, row: int, column: int) -> float:
        """The modality value (PS3.3 C.11.1) the series holds at one pixel of slice k: what the viewer windows."""
        ds = self.datasets[k]
        dtype = "<i2" if int(ds.PixelRepresentation) else "<u2"
        stored = np.frombuffer(ds.PixelData, dtype=dtype).reshape(int(ds.Rows), int(ds.Columns))
        return float(stored[row, column]) * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))

    def hu(self, k: int, row: int, column: int) -> int:
        """Hounsfield units at one pixel of a CT slice."""
        return round(self.value(k, row, column))

    def position_mm(self, k: int) -> float:
        return float(self.datasets[k].ImagePositionPatient[2])


@dataclass(frozen=True)
class ViewerCase:
    """A case whose patient's studies are the viewer's series, and the coordinator's session cookies."""

    case_id: int
    patient: SyntheticPatient
    series: dict[str, Series]
    cookies: list[dict[str, Any]] = field(repr=False)

    def url(self, name: str) -> str:
        return self.series[name].url


def _stamp(datasets: Sequence[Dataset]) -> None:
    """Write the calibration (slice markers, known-HU patches) into the stored values of each CT slice."""
    for k, ds in enumerate(datasets):
        stored = np.frombuffer(ds.PixelData, dtype="<i2").reshape(int(ds.Rows), int(ds.Columns)).copy()
        r0, r1, c0, c1 = CT_MARKER_BOX
        stored[r0:r1, c0:c1] = slice_marker(k) - CT_INTERCEPT
        for hu, (a, b, c, d) in CT_PATCHES:
            stored[a:b, c:d] = hu - CT_INTERCEPT
        ds.PixelData = stored.astype("<i2").tobytes()


def _ct(patient: SyntheticPatient, *, study_date: date, lesion_radius_mm: float, seed: int, description: str,
        slices: int = CT_SLICES, size: int = CT_SIZE) -> list[Dataset]:
    # No noise: a pixel of a tissue then has exactly that tissue's HU, so the grey levels are predictable.
    datasets = ct_series(patient, slices=slices, rows=size, columns=size, study_date=study_date,
                         lesion_radius_mm=lesion_radius_mm, seed=seed, noise_hu=0.0,
                         series_description=description, series_number=2)
    _stamp(datasets)
    return datasets


def _recast(template: Dataset, *, sop_class: UID, modality: str, description: str, series_uid: str,
            series_number: int, k: int, pixels: npt.NDArray[Any]) -> Dataset:
    """A slice of another modality on the template's patient and study (the template is a synthetic CT slice)."""
    ds = Dataset()
    ds.file_meta = copy.deepcopy(template.file_meta)
    for keyword in ("SpecificCharacterSet", "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate",
                    "PatientSex", "StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID",
                    "ReferringPhysicianName", "StudyDescription", "InstitutionName", "Manufacturer"):
        if keyword in template:
            setattr(ds, keyword, template.get(keyword))
    sop_uid = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    ds.Modality = modality
    ds.InstanceNumber = k + 1
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    if pixels.ndim == 3:
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
    else:
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    return ds


def _pet(template: Dataset) -> list[Dataset]:
    """24 slices of 128x128 SUV: body 0.8, a hot lesion up to 8; the slope 0.001 makes the values float."""
    n = 128
    r, c = np.ogrid[:n, :n]
    body = ((r + 0.5 - 64) / 44) ** 2 + ((c + 0.5 - 64) / 55) ** 2 <= 1.0
    series_uid = generate_uid()
    out = []
    for k in range(24):
        suv = np.where(body, 0.8, 0.05) + 8.0 * np.exp(-(((r - 50) ** 2 + (c - 40) ** 2) / 40.0) - (k - 12) ** 2 / 8.0)
        ds = _recast(template, sop_class=PositronEmissionTomographyImageStorage, modality="PT",
                     description="PET FDG SUV", series_uid=series_uid, series_number=4, k=k,
                     pixels=np.rint(suv * 1000).astype("<u2"))
        ds.RescaleSlope, ds.RescaleIntercept = 0.001, 0  # PS3.3 C.11.1.1.2: SUV = stored * 0.001
        ds.PixelSpacing = [4.0, 4.0]
        out.append(ds)
    return out


def _rgb(template: Dataset) -> list[Dataset]:
    """Four colour-bar frames, 96 x 128 (16 columns a bar)."""
    series_uid = generate_uid()
    out = []
    for k in range(4):
        img = np.zeros((96, 128, 3), dtype=np.uint8)
        for j, colour in enumerate(RGB_BARS):
            img[:, 16 * j : 16 * (j + 1)] = colour
        img[0:12, 0:12] = min(255, 40 * k)
        out.append(_recast(template, sop_class=SecondaryCaptureImageStorage, modality="OT",
                           description="Secondary capture", series_uid=series_uid, series_number=5, k=k,
                           pixels=img))
    return out


def _mono1(template: Dataset) -> list[Dataset]:
    """A MONOCHROME1 (white = low values) 12-bit ramp along the columns, two frames."""
    series_uid = generate_uid()
    out = []
    for k in range(2):
        img = np.tile(np.linspace(0, 4095, 128).round().astype("<u2"), (128, 1))
        img[0:10, 0:10] = 100 * k
        ds = _recast(template, sop_class=ComputedRadiographyImageStorage, modality="CR", description="Chest PA",
                     series_uid=series_uid, series_number=6, k=k, pixels=img)
        ds.PhotometricInterpretation = "MONOCHROME1"
        ds.BitsStored, ds.HighBit = 12, 11
        ds.PixelSpacing = [0.2, 0.2]
        ds.WindowCenter, ds.WindowWidth = 2048, 4096
        out.append(ds)
    return out


def _undecodable(template: Dataset) -> list[Dataset]:
    """Three CT slices whose pixel data is in MPEG2 (PS3.5 A.4.5): readable headers, frames no decoder can give."""
    series_uid = generate_uid()
    out = []
    for k in range(3):
        ds = _recast(template, sop_class=UID(str(template.SOPClassUID)), modality="CT", description="CT MPEG2",
                     series_uid=series_uid, series_number=3, k=k, pixels=np.zeros((64, 64), dtype="<u2"))
        ds.file_meta.TransferSyntaxUID = MPEG2MPML
        ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + bytes(60)])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        ds.PixelSpacing = [0.8, 0.8]
        out.append(ds)
    return out


def series_of(datasets: Sequence[Dataset], query: str = "") -> Series:
    return Series(str(datasets[0].StudyInstanceUID), str(datasets[0].SeriesInstanceUID), tuple(datasets), query)


async def store(settings: Settings, db: Database, datasets: Sequence[Dataset]) -> None:
    """Store DICOM datasets in the archive the app serves (the local archive of ``settings``)."""
    archive = open_archive(settings, database=db)
    try:
        blobs = [to_part10(ds) for ds in datasets]
        for start in range(0, len(blobs), 50):
            result = await archive.store(blobs[start:start + 50])
            assert not result.failed, result.failed
    finally:
        await archive.close()


async def new_case(db: Database, family_name: str = "Fantomeviewer") -> tuple[int, SyntheticPatient, MadeUser]:
    """A case of a new patient (unique IPP) on a new scheduled meeting of a new board (tests.factories); returns
    the case's id, the patient as the PACS knows them, and the board's coordinator (who sees the case)."""
    meeting = await make_meeting(db, cases=0, invite=("radiologist",))
    given, birth = "Iris", date(1958, 2, 11)
    made = await make_patient(db, family_name=family_name, given_names=given, birth_date=birth, sex="female",
                              assigner=HOSPITAL)
    case = await make_case(db, meeting.id, made, question="Evolution du nodule ?")
    return case.id, SyntheticPatient(made.ipp, HOSPITAL, family_name, given, birth, "F"), meeting.coordinator


async def attach(coordinator: Any, case_id: int, study_uids: Sequence[str]) -> None:
    """Attach studies to the case through the API (which also starts their prefetch into the frame cache)."""
    attached = await coordinator.post(f"/api/cases/{case_id}/studies", json={"study_uids": list(study_uids)})
    assert attached.status_code == 200, attached.text


def session_cookies(coordinator: Any) -> list[dict[str, Any]]:
    """The signed-in client's cookies, for a browser context (``context.add_cookies``)."""
    return [{"name": c.name, "value": c.value, "url": str(coordinator.http.base_url)}
            for c in coordinator.http.cookies.jar]


async def new_viewer_case(base_url: str, settings: Settings, db: Database) -> ViewerCase:
    """A case whose attached studies hold "ct" (the current CT, with "pet", "rgb", "mono1" and "broken" in the same
    study) and "ct_prior" (the prior CT), attached by its coordinator through the API; and their session."""
    case_id, patient, user = await new_case(db)
    ct = _ct(patient, study_date=date(2026, 9, 15), lesion_radius_mm=14.0, seed=21, description="CT THORAX C+")
    prior = _ct(patient, study_date=date(2026, 6, 10), lesion_radius_mm=8.0, seed=22,
                description="CT THORAX C+ (prior)")
    pet, rgb, mono1, broken = _pet(ct[0]), _rgb(ct[0]), _mono1(ct[0]), _undecodable(ct[0])
    await store(settings, db, [*ct, *prior, *pet, *rgb, *mono1, *broken])
    series = {"ct": series_of(ct), "ct_prior": series_of(prior), "pet": series_of(pet), "rgb": series_of(rgb),
              "mono1": series_of(mono1), "broken": series_of(broken)}
    coordinator = await sign_in(base_url, user.username, user.password)
    try:
        await attach(coordinator, case_id, [series["ct_prior"].study_uid, series["ct"].study_uid])
        return ViewerCase(case_id, patient, series, session_cookies(coordinator))
    finally:
        await coordinator.http.aclose()


async def store_flaky_series(case: ViewerCase, settings: Settings, db: Database) -> Series:
    """A new small CT study of the case's patient, not attached: the viewer opens it through ``?case_id=``."""
    datasets = ct_series(case.patient, slices=20, rows=64, columns=64, noise_hu=0.0, seed=23,
                         series_description="CT from a slow PACS", series_number=7)
    await store(settings, db, datasets)
    return series_of(datasets, f"?case_id={case.case_id}")


class PacsSwitch:
    """The app's archive, with a switch that makes the PACS unreachable for some series.

    While a series is down, retrieving its instances raises ``ArchiveUnavailable`` (what ``DicomWebClient``
    raises when the PACS does not answer); everything else goes to the real archive.
    """

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.down: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.archive, name)

    def _check(self, series_uid: str) -> None:
        if series_uid in self.down:
            raise ArchiveUnavailable()

    async def retrieve_instance(self, study_uid: str, series_uid: str, sop_uid: str) -> bytes:
        self._check(series_uid)
        return await self.archive.retrieve_instance(study_uid, series_uid, sop_uid)

    async def retrieve_series(self, study_uid: str, series_uid: str) -> list[bytes]:
        self._check(series_uid)
        return await self.archive.retrieve_series(study_uid, series_uid)

    async def retrieve_frame(self, study_uid: str, series_uid: str, sop_uid: str, frame: int) -> Any:
        self._check(series_uid)
        return await self.archive.retrieve_frame(study_uid, series_uid, sop_uid, frame)
