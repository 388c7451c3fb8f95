"""Synthetic but realistic studies for demos, tests and benchmarks.

Real patient images cannot ship with the product, and pydicom's bundled files are small single slices. This module
draws a thorax/abdomen CT phantom (body outline with fat, muscle, lungs, spine, aorta, liver, kidneys, a table,
the reconstruction circle) with spatially correlated noise, and a lesion whose radius is a parameter, so that a
*prior* and a *current* study of the same patient show a tumour that grew — what a tumour board compares.

Everything is vectorised with numpy: a 300-slice 512x512 series takes a couple of seconds.

Example::

    patient = SyntheticPatient("IPP001", "CHU-RENNES", "Lefèvre", "Hélène", date(1957, 3, 2), "F")
    prior, current = prior_and_current_ct(patient, slices=150)
    blobs = [to_part10(ds) for ds in current]

Values follow the CT Image IOD (DICOM PS3.3 A.3): signed 16-bit stored values with RescaleIntercept -1024 and
RescaleSlope 1, so that modality values are Hounsfield units; names are Latin-1 with SpecificCharacterSet
ISO_IR 100 (PS3.3 C.12.1.1.2), as French PACS send them.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

__all__ = [
    "SyntheticPatient",
    "ct_series",
    "mr_series",
    "prior_and_current_ct",
    "series_bytes",
    "to_part10",
]

#: Hounsfield units of the phantom's tissues (typical textbook values).
AIR, LUNG, FAT, SOFT, MUSCLE, BLOOD, LIVER, KIDNEY, BONE, CORTEX, TUMOUR = (
    -1000, -850, -100, 40, 50, 45, 60, 35, 350, 900, 35,
)
#: Outside the reconstruction circle (PS3.3 C.7.5.1.1.2 Pixel Padding Value; -2048 HU as many scanners write).
PADDING_HU = -2048


@dataclass(frozen=True)
class SyntheticPatient:
    """The demographics a study carries (PS3.3 C.7.1.1 Patient Module)."""

    patient_id: str
    issuer: str
    family_name: str
    given_names: str
    birth_date: date | None
    #: DICOM sex: "F", "M" or "O".
    sex: str

    @property
    def dicom_name(self) -> str:
        return f"{self.family_name.upper()}^{self.given_names}"


def _patient_module(ds: Dataset, patient: SyntheticPatient) -> None:
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = patient.dicom_name
    ds.PatientID = patient.patient_id
    if patient.issuer:
        ds.IssuerOfPatientID = patient.issuer
    ds.PatientBirthDate = patient.birth_date.strftime("%Y%m%d") if patient.birth_date else ""
    ds.PatientSex = patient.sex


def _ellipse(x: npt.NDArray[np.float32], y: npt.NDArray[np.float32], cx: float, cy: float, a: float, b: float
             ) -> npt.NDArray[np.bool_]:
    return ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 <= 1.0


def _noise_bank(rng: np.random.Generator, shape: tuple[int, int], count: int, sigma: float
                ) -> npt.NDArray[np.float32]:
    """Correlated noise like a soft-tissue reconstruction kernel: white noise through a 3x3 box filter."""
    white = rng.standard_normal((count, shape[0] + 2, shape[1] + 2), dtype=np.float32) * sigma * 3.0
    out = np.zeros((count, *shape), dtype=np.float32)
    for dy in range(3):
        for dx in range(3):
            out += white[:, dy:dy + shape[0], dx:dx + shape[1]]
    out /= 9.0
    return out


def _ct_volume(*, slices: int, rows: int, columns: int, spacing: float, thickness: float, lesion_radius_mm: float,
               seed: int, noise_hu: float) -> npt.NDArray[np.int16]:
    """Hounsfield units, shape (slices, rows, columns), slice 0 at the feet end (lowest z)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:columns].astype(np.float32)
    # Millimetres from the image centre; +x to the patient's left, +y posterior (LPS, PS3.3 C.7.6.2.1.1).
    x = (xx - (columns - 1) / 2) * spacing
    y = (yy - (rows - 1) / 2) * spacing
    fov = np.hypot(x, y) <= min(rows, columns) * spacing / 2
    bank = _noise_bank(rng, (rows, columns), 12, noise_hu)
    length = slices * thickness
    lesion_z = 0.72 * length
    volume = np.empty((slices, rows, columns), dtype=np.int16)
    for k in range(slices):
        z = k * thickness
        t = z / max(length, 1.0)  # 0 at the pelvis, 1 at the apex of the thorax
        img = np.full((rows, columns), AIR, dtype=np.float32)
        a = 165.0 + 15.0 * np.sin(3.0 * t)
        b = 115.0 + 10.0 * np.cos(2.0 * t)
        body = _ellipse(x, y, 0.0, 10.0, a, b)
        img[body] = FAT
        img[_ellipse(x, y, 0.0, 10.0, a - 14.0, b - 12.0)] = MUSCLE
        img[_ellipse(x, y, 0.0, 12.0, a - 30.0, b - 26.0)] = SOFT
        if t > 0.55:  # thorax: two lungs, heart in front
            grow = min(1.0, (t - 0.55) / 0.1)
            img[_ellipse(x, y, -70.0, 5.0, 55.0 * grow + 1, 80.0 * grow + 1)] = LUNG
            img[_ellipse(x, y, 70.0, 5.0, 55.0 * grow + 1, 80.0 * grow + 1)] = LUNG
            if t < 0.85:
                img[_ellipse(x, y, 15.0, -25.0, 45.0, 38.0)] = MUSCLE + 5
        else:  # abdomen: liver on the patient's right, kidneys behind
            if t > 0.3:
                img[_ellipse(x, y, -55.0, -5.0, 75.0, 65.0)] = LIVER
            if 0.15 < t < 0.45:
                img[_ellipse(x, y, -60.0, 55.0, 22.0, 32.0)] = KIDNEY
                img[_ellipse(x, y, 60.0, 55.0, 22.0, 32.0)] = KIDNEY
        img[_ellipse(x, y, 0.0, 20.0, 12.0, 12.0)] = BLOOD + 150  # contrast-enhanced aorta
        img[_ellipse(x, y, 0.0, 70.0, 19.0, 17.0)] = CORTEX  # vertebral body
        img[_ellipse(x, y, 0.0, 70.0, 15.0, 13.0)] = BONE
        img[_ellipse(x, y, 0.0, 97.0, 6.0, 9.0)] = CORTEX  # spinous process
        # The lesion: a sphere in the right lung (or liver), radius given by the caller.
        dz = z - lesion_z
        if abs(dz) < lesion_radius_mm:
            r = float(np.sqrt(lesion_radius_mm**2 - dz**2))
            img[_ellipse(x, y, -80.0, 0.0, r, r)] = TUMOUR
        img[(y > b + 25.0) & (y < b + 35.0) & (np.abs(x) < 200.0)] = -200  # the table
        img += bank[k % len(bank)]
        img[~fov] = PADDING_HU
        np.rint(img, out=img)
        volume[k] = img.astype(np.int16)
    return volume


def _series_header(ds: Dataset, *, patient: SyntheticPatient, study_uid: str, series_uid: str, study_date: date,
                   modality: str, study_description: str, series_description: str, series_number: int,
                   accession: str) -> None:
    _patient_module(ds, patient)
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyDate = study_date.strftime("%Y%m%d")
    ds.SeriesDate = ds.StudyDate
    ds.StudyTime = "101500"
    ds.AccessionNumber = accession
    ds.ReferringPhysicianName = ""
    ds.StudyID = accession[-8:]
    ds.StudyDescription = study_description
    ds.SeriesDescription = series_description
    ds.SeriesNumber = series_number
    ds.Modality = modality
    ds.Manufacturer = "RCP synthetic"
    ds.InstitutionName = "Hôpital de démonstration"
    ds.FrameOfReferenceUID = generate_uid()
    ds.PositionReferenceIndicator = ""


def _file_meta(sop_class: UID, sop_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta


def ct_series(patient: SyntheticPatient, *, slices: int = 200, rows: int = 512, columns: int = 512,
              study_date: date = date(2026, 11, 2), lesion_radius_mm: float = 12.0, seed: int = 1,
              study_uid: str | None = None, series_number: int = 2, noise_hu: float = 9.0,
              study_description: str = "TDM THORACO-ABDOMINO-PELVIENNE",
              series_description: str = "Thorax abdomen pelvis 1.25 mm") -> list[Dataset]:
    """One axial CT series (CT Image Storage), ordered from feet to head."""
    if not 1 <= slices <= 2000 or not 16 <= rows <= 2048 or not 16 <= columns <= 2048:
        raise ValueError(f"slices, rows, columns out of range (got {slices}, {rows}, {columns})")
    spacing = 400.0 / columns
    thickness = 2.5 if slices < 200 else 1.25
    hu = _ct_volume(slices=slices, rows=rows, columns=columns, spacing=spacing, thickness=thickness,
                    lesion_radius_mm=lesion_radius_mm, seed=seed, noise_hu=noise_hu)
    stored = (hu.astype(np.int32) + 1024).astype(np.int16)  # RescaleIntercept -1024 (PS3.3 C.11.1.1.2)
    study_uid = study_uid or generate_uid()
    series_uid = generate_uid()
    accession = f"A{seed:04d}{study_date:%y%m%d}"
    out: list[Dataset] = []
    z0 = -(slices - 1) * thickness
    for k in range(slices):
        sop_uid = generate_uid()
        ds = Dataset()
        ds.file_meta = _file_meta(CTImageStorage, sop_uid)
        _series_header(ds, patient=patient, study_uid=study_uid, series_uid=series_uid, study_date=study_date,
                       modality="CT", study_description=study_description, series_description=series_description,
                       series_number=series_number, accession=accession)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = slices - k  # scanners number from the head down
        ds.AcquisitionNumber = 1
        ds.PatientPosition = "HFS"
        ds.ImagePositionPatient = [-(columns - 1) / 2 * spacing, -(rows - 1) / 2 * spacing, z0 + k * thickness]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceLocation = z0 + k * thickness
        ds.SliceThickness = thickness
        ds.PixelSpacing = [spacing, spacing]
        ds.KVP = 120
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = rows
        ds.Columns = columns
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        ds.WindowCenter = [40, -600]
        ds.WindowWidth = [400, 1500]
        ds.PixelPaddingValue = PADDING_HU + 1024
        ds.PixelData = stored[k].tobytes()
        out.append(ds)
    return out


def prior_and_current_ct(patient: SyntheticPatient, *, slices: int = 150, current_date: date = date(2026, 11, 2),
                         months_between: int = 3, rows: int = 512, columns: int = 512, seed: int = 7
                         ) -> tuple[list[Dataset], list[Dataset]]:
    """Two CT studies of the same patient, months apart; the lesion grew from 8 to 14 mm in radius."""
    prior_date = current_date - timedelta(days=30 * months_between)
    prior = ct_series(patient, slices=slices, rows=rows, columns=columns, study_date=prior_date,
                      lesion_radius_mm=8.0, seed=seed, study_description="TDM THORAX BILAN INITIAL")
    current = ct_series(patient, slices=slices, rows=rows, columns=columns, study_date=current_date,
                        lesion_radius_mm=14.0, seed=seed + 1, study_description="TDM THORAX REEVALUATION")
    return prior, current


def mr_series(patient: SyntheticPatient, *, slices: int = 24, rows: int = 256, columns: int = 256,
              study_date: date = date(2026, 10, 20), seed: int = 3, study_uid: str | None = None) -> list[Dataset]:
    """An axial T1-like brain MR series (MR Image Storage), unsigned 16-bit, no rescale."""
    rng = np.random.default_rng(seed)
    spacing = 230.0 / columns
    thickness = 5.0
    yy, xx = np.mgrid[0:rows, 0:columns].astype(np.float32)
    x = (xx - (columns - 1) / 2) * spacing
    y = (yy - (rows - 1) / 2) * spacing
    study_uid = study_uid or generate_uid()
    series_uid = generate_uid()
    bank = _noise_bank(rng, (rows, columns), 6, 12.0)
    out: list[Dataset] = []
    for k in range(slices):
        t = (k + 0.5) / slices
        scale = float(np.sqrt(max(0.05, 1.0 - (2 * t - 1) ** 2)))
        img = np.zeros((rows, columns), dtype=np.float32)
        img[_ellipse(x, y, 0, 0, 75 * scale + 2, 92 * scale + 2)] = 900.0  # scalp/fat, bright on T1
        img[_ellipse(x, y, 0, 0, 70 * scale + 1, 87 * scale + 1)] = 250.0  # skull: dark
        img[_ellipse(x, y, 0, 0, 65 * scale + 1, 82 * scale + 1)] = 620.0  # grey matter
        img[_ellipse(x, y, 0, 0, 52 * scale + 1, 68 * scale + 1)] = 760.0  # white matter
        img[_ellipse(x, y, -8, -5, 5 * scale + 1, 18 * scale + 1)] = 180.0  # ventricles (CSF dark)
        img[_ellipse(x, y, 8, -5, 5 * scale + 1, 18 * scale + 1)] = 180.0
        img += np.abs(bank[k % len(bank)])
        np.clip(img, 0, 4095, out=img)
        sop_uid = generate_uid()
        ds = Dataset()
        ds.file_meta = _file_meta(MRImageStorage, sop_uid)
        _series_header(ds, patient=patient, study_uid=study_uid, series_uid=series_uid, study_date=study_date,
                       modality="MR", study_description="IRM CEREBRALE", series_description="T1 axial",
                       series_number=3, accession=f"M{seed:04d}{study_date:%y%m%d}")
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
        ds.InstanceNumber = k + 1
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.EchoTime = 12
        ds.RepetitionTime = 500
        ds.MagneticFieldStrength = 1.5
        ds.ImagePositionPatient = [-(columns - 1) / 2 * spacing, -(rows - 1) / 2 * spacing, -60.0 + k * thickness]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceLocation = -60.0 + k * thickness
        ds.SliceThickness = thickness
        ds.PixelSpacing = [spacing, spacing]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = rows
        ds.Columns = columns
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.WindowCenter = 600
        ds.WindowWidth = 1000
        ds.PixelData = img.astype(np.uint16).tobytes()
        out.append(ds)
    return out


def to_part10(ds: Dataset) -> bytes:
    """The DICOM file (PS3.10) of ``ds``: preamble, file meta information, data set."""
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def series_bytes(datasets: Sequence[Dataset]) -> list[bytes]:
    return [to_part10(ds) for ds in datasets]
