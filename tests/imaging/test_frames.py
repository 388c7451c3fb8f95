"""Frame decoding against pydicom's own reference files, and the wire encodings round-tripping exactly."""

from __future__ import annotations

import zlib
from datetime import date

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut

from rcp.imaging.frames import (
    PixelDataError,
    PixelDataTooLarge,
    check_pixel_budget,
    decode_frame,
    decode_wire,
    encode_frame,
    frame_etag,
    frame_infos,
    sort_frames,
    wire_dtype,
)
from rcp.imaging.synthetic import SyntheticPatient, ct_series, mr_series
from tests.fixtures.dicom_data import reference_dataset

# name, wire dtype, wire photometric, frames
REFERENCE = [
    ("CT_small.dcm", "int16", "MONOCHROME2", 1),  # uncompressed, signed, slope/intercept
    ("MR_small.dcm", "int16", "MONOCHROME2", 1),
    ("MR_small_RLE.dcm", "int16", "MONOCHROME2", 1),  # RLE Lossless
    ("MR_small_jpeg_ls_lossless.dcm", "int16", "MONOCHROME2", 1),  # JPEG-LS lossless
    ("MR_small_jp2klossless.dcm", "int16", "MONOCHROME2", 1),  # JPEG 2000 lossless
    ("693_J2KR.dcm", "int16", "MONOCHROME2", 1),  # 512x512 CT, JPEG 2000 lossless, intercept -1024
    ("emri_small.dcm", "int16", "MONOCHROME2", 10),  # multi-frame
    ("emri_small_RLE.dcm", "int16", "MONOCHROME2", 10),
    ("emri_small_jpeg_2k_lossless.dcm", "int16", "MONOCHROME2", 10),
    ("emri_small_big_endian.dcm", "int16", "MONOCHROME2", 10),
    ("RG1_UNCR.dcm", "int16", "MONOCHROME1", 1),  # MONOCHROME1 stays values; the viewer inverts
    ("MR2_J2KR.dcm", "float32", "MONOCHROME2", 1),  # non-integer rescale slope
    ("JPGLosslessP14SV1_1s_1f_8b.dcm", "int16", "MONOCHROME2", 1),  # JPEG lossless process 14, 8 bits
]
COLOUR = [
    ("SC_rgb.dcm", 1),
    ("SC_rgb_rle.dcm", 1),
    ("US1_UNCR.dcm", 1),
    ("US1_J2KR.dcm", 1),  # YBR_RCT decoded to RGB
    ("SC_rgb_2frame.dcm", 2),
    ("SC_ybr_full_uncompressed.dcm", 1),  # YBR_FULL converted to RGB
]


def _reference_frames(ds: pydicom.Dataset) -> np.ndarray:
    arr = ds.pixel_array
    if int(ds.get("NumberOfFrames") or 1) == 1:
        arr = arr[None, ...]
    return arr


@pytest.mark.parametrize(("name", "dtype", "photometric", "frames"), REFERENCE)
def test_monochrome_frames_are_modality_values(name: str, dtype: str, photometric: str, frames: int) -> None:
    ds = reference_dataset(name)
    infos = frame_infos(ds)
    assert len(infos) == frames
    assert infos[0].dtype == dtype
    assert infos[0].photometric == photometric
    expected = _reference_frames(ds)
    for index in {0, frames - 1}:
        values = decode_frame(ds, index)
        assert values.dtype == np.dtype(dtype)
        reference = apply_modality_lut(expected[index], ds)
        assert np.array_equal(values, reference.astype(values.dtype)), name
        assert np.allclose(values, reference), name
        encoded = encode_frame(values)
        assert np.array_equal(decode_wire(encoded.body, encoded.encoding, encoded.rows, encoded.columns), values)


@pytest.mark.parametrize(("name", "frames"), COLOUR)
def test_colour_frames_are_rgb8(name: str, frames: int) -> None:
    ds = reference_dataset(name)
    infos = frame_infos(ds)
    assert (infos[0].dtype, infos[0].samples, infos[0].photometric) == ("uint8", 3, "RGB")
    expected = _reference_frames(ds)
    values = decode_frame(ds, frames - 1)
    assert values.shape == (ds.Rows, ds.Columns, 3)
    if ds.BitsAllocated == 8:
        assert np.array_equal(values, expected[frames - 1])
    encoded = encode_frame(values)
    assert encoded.encoding == "rgb8-deflate"
    assert np.array_equal(decode_wire(encoded.body, encoded.encoding, encoded.rows, encoded.columns), values)


def test_enhanced_ct_uses_per_frame_rescale_and_positions() -> None:
    ds = reference_dataset("eCT_Supplemental.dcm")
    infos = frame_infos(ds)
    assert len(infos) == 2
    assert infos[0].position is not None and infos[0].position != infos[1].position
    group = ds.SharedFunctionalGroupsSequence[0].get("PixelValueTransformationSequence") or \
        ds.PerFrameFunctionalGroupsSequence[1].PixelValueTransformationSequence
    slope, intercept = float(group[0].RescaleSlope), float(group[0].RescaleIntercept)
    raw = ds.pixel_array[1]
    assert np.array_equal(decode_frame(ds, 1), (raw.astype(np.int32) * int(slope) + int(intercept)).astype(np.int16))


def test_delta16_bytes_follow_the_spec_exactly() -> None:
    values = np.array([[100, 90, -32768, 32767], [0, -1, 1, 300]], dtype=np.int16)
    encoded = encode_frame(values)
    assert encoded.encoding == "delta16-deflate"
    raw = zlib.decompress(encoded.body)  # RFC 1950: what DecompressionStream('deflate') reads
    deltas = np.array([[100, -10, (-32768 - 90) & 0xFFFF, (32767 + 32768) & 0xFFFF],
                       [0, -1 & 0xFFFF, 2, 299]], dtype=np.int64) & 0xFFFF
    low = bytes(int(d) & 0xFF for d in deltas.ravel())
    high = bytes(int(d) >> 8 for d in deltas.ravel())
    assert raw == low + high
    assert np.array_equal(decode_wire(encoded.body, encoded.encoding, 2, 4), values)


def test_float_and_rgb_encodings_are_little_endian_row_major() -> None:
    values = np.array([[0.5, -1.25], [3.0e5, 7.0]], dtype=np.float32)
    encoded = encode_frame(values)
    assert encoded.encoding == "float32-deflate"
    assert zlib.decompress(encoded.body) == values.astype("<f4").tobytes()
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert zlib.decompress(encode_frame(rgb).body) == rgb.tobytes()


def test_synthetic_ct_is_int16_hounsfield_and_compresses_below_0_4() -> None:
    patient = SyntheticPatient("P1", "CHU", "Lefèvre", "Hélène", date(1957, 3, 2), "F")
    series = ct_series(patient, slices=4)
    ds = series[2]
    assert wire_dtype(ds) == "int16"
    values = decode_frame(ds, 0)
    assert values.min() >= -2048 and values.max() < 3072
    assert abs(float(np.median(values[200:300, 200:300])) - 40) < 60  # soft tissue around 40 HU
    encoded = encode_frame(values)
    assert len(encoded.body) < 0.4 * len(ds.PixelData)


def test_frames_sort_along_the_slice_normal() -> None:
    patient = SyntheticPatient("P1", "CHU", "Ferrand", "Gérard", None, "M")
    series = mr_series(patient, slices=5, rows=32, columns=32)
    shuffled = [series[i] for i in (3, 0, 4, 1, 2)]
    infos = sort_frames([f for ds in shuffled for f in frame_infos(ds)])
    assert [f.position[2] for f in infos if f.position] == sorted(float(ds.ImagePositionPatient[2]) for ds in series)


def test_pixel_budget_is_checked_before_allocation() -> None:
    ds = reference_dataset("CT_small.dcm")
    ds.Rows = 65535
    ds.Columns = 65535
    ds.NumberOfFrames = 10000
    with pytest.raises(PixelDataTooLarge):
        check_pixel_budget(ds)
    with pytest.raises(PixelDataTooLarge):
        decode_frame(ds, 0)


def test_missing_pixel_data_and_bad_frame_numbers() -> None:
    ds = reference_dataset("CT_small.dcm")
    with pytest.raises(PixelDataError):
        decode_frame(ds, 1)
    del ds.PixelData
    with pytest.raises(PixelDataError):
        decode_frame(ds, 0)


def test_unsupported_compression_is_named() -> None:
    ds = reference_dataset("CT_small.dcm")
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: not an image codec we decode
    with pytest.raises(PixelDataError, match="MPEG2|unsupported|decoder"):
        decode_frame(ds, 0)


def test_etag_is_strong_and_stable() -> None:
    tag = frame_etag("1.2.3", 1)
    assert tag.startswith('"') and tag.endswith('"') and not tag.startswith('W/')
    assert tag == frame_etag("1.2.3", 1) != frame_etag("1.2.3", 2)
