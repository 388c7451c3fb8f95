"""Frames for the viewer: DICOM pixel data decoded to modality values, and the lossless wire encodings.

The browser shows original values (Hounsfield units for CT) and does window/level itself, so the server sends
*modality values* (after the Modality LUT, DICOM PS3.3 C.11.1 / PS3.4 N.2.1.1), never rendered pixels. Decoding
goes through pydicom's pixel decoders (pylibjpeg / openjpeg / RLE for compressed transfer syntaxes) and is CPU work:
callers run it in a thread (``asyncio.to_thread``), never on the event loop.

WIRE FORMAT (a fixed contract with ``web/static/js/viewer.js``)
================================================================

Series descriptor — ``GET /api/imaging/studies/{study_uid}/series/{series_uid}`` returns JSON::

    {"study_uid", "series_uid", "modality", "description", "series_number", "study_date",
     "frames": [{"sop_uid", "frame" (1-based), "url", "rows", "columns",
                 "dtype" ("int16" | "float32" | "uint8"), "samples" (1 | 3),
                 "photometric" ("MONOCHROME1" | "MONOCHROME2" | "RGB"),
                 "pixel_spacing" [row, col] | null, "position" [x, y, z] | null,
                 "orientation" [6 floats] | null, "slice_location" | null,
                 "instance_number", "window" [center, width] | null}, ...]}

with frames sorted along the slice normal (row x column direction cosines, PS3.3 C.7.6.2.1.1), then by instance
number, then frame number.

Frame — ``GET /api/imaging/frames/{study_uid}/{series_uid}/{sop_uid}/{frame}`` (frame is 1-based) answers with
``Content-Type: application/x-rcp-frame`` and the header ``X-Rcp-Encoding``, one of:

``delta16-deflate``
    int16 modality values (MONOCHROME, samples = 1). For each row, ``d[c] = v[c] - v[c-1]`` (``d[0] = v[0]``),
    wrapped to 16 bits; bytes = all low bytes (rows*cols, row-major) followed by all high bytes;
    body = ``zlib.compress(bytes)`` (RFC 1950: browsers decode with ``DecompressionStream('deflate')``).
``float32-deflate``
    float32 little-endian modality values, row-major, zlib-compressed (used when slope/intercept make values
    non-integer or beyond int16).
``rgb8-deflate``
    uint8 interleaved RGB (``R G B R G B ...``), row-major, zlib-compressed.

SOP instances are immutable (PS3.3 C.12.1.1.1: a changed object gets a new SOP Instance UID), so frames carry a
strong ETag (a hash of SOP Instance UID + frame + encoding version) and ``If-None-Match`` gets a 304. They are
nevertheless ``Cache-Control: private, no-store``: a browser's disk cache outlives the session on a shared
workstation (issue 13); the viewer keeps decoded frames in its own memory cache instead.

Why these encodings: horizontal deltas turn smooth anatomy into small numbers, whose high bytes are nearly all
0x00/0xFF, so splitting the byte planes lets deflate's run-length mode (``Z_RLE``) squeeze the high plane to almost
nothing. On a 512x512 CT this is about 0.34x the raw size in ~7 ms, where Orthanc's JPEG-LS reaches 0.38x at
~15 ms — and the browser needs no codec beyond the built-in DecompressionStream.
"""

from __future__ import annotations

import hashlib
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut
from pydicom.uid import UID

__all__ = [
    "ENCODING_VERSION",
    "EncodedFrame",
    "FrameInfo",
    "PixelDataError",
    "PixelDataTooLarge",
    "UnsupportedPixelData",
    "check_pixel_budget",
    "decode_frame",
    "decode_wire",
    "encode_frame",
    "frame_etag",
    "frame_infos",
    "number_of_frames",
    "sort_frames",
    "wire_dtype",
]

WireDtype = Literal["int16", "float32", "uint8"]
Encoding = Literal["delta16-deflate", "float32-deflate", "rgb8-deflate"]

#: Bumped whenever an encoder changes its output, so browsers and the disk cache do not reuse old bytes.
ENCODING_VERSION = 1
#: Refuse to allocate more than this for one instance's pixels (a CVE class: rows*cols*frames*bytes overflow).
MAX_PIXEL_BYTES = 1 << 30
MAX_DIMENSION = 65535
ZLIB_LEVEL = 1


class PixelDataError(ValueError):
    """The pixel data cannot be turned into frames; the message names the problem, never patient data."""


class PixelDataTooLarge(PixelDataError):
    pass


class UnsupportedPixelData(PixelDataError):
    pass


@dataclass(frozen=True)
class EncodedFrame:
    """One frame ready for the wire."""

    body: bytes
    encoding: Encoding
    rows: int
    columns: int


# --- header arithmetic --------------------------------------------------------------------------------------


def number_of_frames(ds: Dataset) -> int:
    try:
        value = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        raise PixelDataError("NumberOfFrames is not a number") from None
    return max(value, 1)


def check_pixel_budget(ds: Dataset, *, limit: int = MAX_PIXEL_BYTES) -> int:
    """Bytes the decoded pixels need; raise before anything is allocated when the header is absurd.

    Arithmetic in Python integers, so a hostile header cannot overflow it (PS3.5 8.1.1 gives the sizes).
    """
    try:
        rows = int(ds.Rows)
        columns = int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel") or 1)
        bits = int(ds.get("BitsAllocated") or 16)
    except (AttributeError, TypeError, ValueError):
        raise PixelDataError("Rows, Columns, SamplesPerPixel or BitsAllocated is missing or not a number") from None
    frames = number_of_frames(ds)
    if not (0 < rows <= MAX_DIMENSION and 0 < columns <= MAX_DIMENSION):
        raise PixelDataTooLarge(f"image size {rows}x{columns} is out of range")
    if samples not in (1, 3) or bits not in (1, 8, 16, 32, 64):
        raise UnsupportedPixelData(f"SamplesPerPixel {samples} with BitsAllocated {bits} is not supported")
    # Decoded arrays are at least 8 bits per sample, and the modality LUT widens to 32 bits.
    needed = rows * columns * frames * samples * max(bits // 8, 4)
    if needed > limit:
        raise PixelDataTooLarge(f"pixel data would need {needed} bytes, over the limit of {limit}")
    return needed


def _functional(ds: Dataset, index: int, sequence: str, attribute: str) -> Any:
    """An attribute from the enhanced multi-frame functional groups (PS3.3 C.7.6.16), per-frame first."""
    for groups_name in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        groups = ds.get(groups_name)
        if not groups:
            continue
        item = groups[index] if groups_name.startswith("PerFrame") and index < len(groups) else groups[0]
        inner = item.get(sequence)
        if inner and attribute in inner[0]:
            return inner[0].get(attribute)
    return None


def _rescale(ds: Dataset, index: int) -> tuple[float, float] | None:
    slope = ds.get("RescaleSlope")
    intercept = ds.get("RescaleIntercept")
    if slope is None and intercept is None:
        slope = _functional(ds, index, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = _functional(ds, index, "PixelValueTransformationSequence", "RescaleIntercept")
    if slope is None and intercept is None:
        return None
    try:
        return float(slope if slope not in (None, "") else 1.0), float(intercept if intercept not in (None, "") else 0)
    except (TypeError, ValueError):
        raise PixelDataError("RescaleSlope or RescaleIntercept is not a number") from None


def _is_colour(ds: Dataset) -> bool:
    return int(ds.get("SamplesPerPixel") or 1) == 3 or str(ds.get("PhotometricInterpretation", "")) == "PALETTE COLOR"


def wire_dtype(ds: Dataset) -> WireDtype:
    """Which encoding the frames of ``ds`` travel in, decided from the header alone (before decoding)."""
    if _is_colour(ds):
        return "uint8"
    if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
        return "float32"
    if ds.get("ModalityLUTSequence"):
        depth = int(ds.ModalityLUTSequence[0].LUTDescriptor[2])
        return "int16" if depth <= 15 else "float32"
    bits_stored = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
    signed = int(ds.get("PixelRepresentation") or 0) == 1
    low, high = (-(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1) if signed else (0, (1 << bits_stored) - 1)
    rescale = _rescale(ds, 0)
    if rescale is not None:
        slope, intercept = rescale
        if not (slope.is_integer() and intercept.is_integer()):
            return "float32"
        ends = (low * slope + intercept, high * slope + intercept)
        low, high = int(min(ends)), int(max(ends))
        if str(ds.get("Modality", "")) == "CT":
            # Hounsfield units are physically bounded (air -1000 .. metal ~ +30000), but a signed 16-bit CT with
            # intercept -1024 *could* reach -33792: only padding lives there, so those values clamp to -32768.
            return "int16"
    return "int16" if -32768 <= low and high <= 32767 else "float32"


def _wire_photometric(ds: Dataset) -> str:
    if _is_colour(ds):
        return "RGB"
    value = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    return "MONOCHROME1" if value == "MONOCHROME1" else "MONOCHROME2"


# --- descriptors ------------------------------------------------------------------------------------------------


def _floats(value: Any, count: int) -> list[float] | None:
    if value is None:
        return None
    try:
        numbers = [float(v) for v in (value if isinstance(value, Sequence) and not isinstance(value, str) else [value])]
    except (TypeError, ValueError):
        return None
    if len(numbers) != count or not all(math.isfinite(n) for n in numbers):
        return None
    return numbers


def _first_float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, Sequence) and not isinstance(value, str):
        if not value:
            return None
        value = value[0]
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class FrameInfo:
    """What the viewer needs to place and display one frame (one entry of the descriptor's ``frames``)."""

    sop_uid: str
    frame: int
    rows: int
    columns: int
    dtype: WireDtype
    samples: int
    photometric: str
    pixel_spacing: list[float] | None
    position: list[float] | None
    orientation: list[float] | None
    slice_location: float | None
    instance_number: int
    window: list[float] | None

    def as_json(self, url: str) -> dict[str, Any]:
        return {
            "sop_uid": self.sop_uid,
            "frame": self.frame,
            "url": url,
            "rows": self.rows,
            "columns": self.columns,
            "dtype": self.dtype,
            "samples": self.samples,
            "photometric": self.photometric,
            "pixel_spacing": self.pixel_spacing,
            "position": self.position,
            "orientation": self.orientation,
            "slice_location": self.slice_location,
            "instance_number": self.instance_number,
            "window": self.window,
        }


def frame_infos(ds: Dataset) -> list[FrameInfo]:
    """One ``FrameInfo`` per frame of an image instance (``ds`` may lack its pixel data: a metadata answer)."""
    rows, columns = int(ds.Rows), int(ds.Columns)
    frames = number_of_frames(ds)
    dtype = wire_dtype(ds)
    samples = 3 if dtype == "uint8" else 1
    photometric = _wire_photometric(ds)
    try:
        instance_number = int(ds.get("InstanceNumber") or 0)
    except (TypeError, ValueError):
        instance_number = 0
    out: list[FrameInfo] = []
    for i in range(frames):
        spacing = _floats(ds.get("PixelSpacing") or _functional(ds, i, "PixelMeasuresSequence", "PixelSpacing"), 2)
        position = _floats(
            ds.get("ImagePositionPatient") or _functional(ds, i, "PlanePositionSequence", "ImagePositionPatient"), 3
        )
        orientation = _floats(
            ds.get("ImageOrientationPatient")
            or _functional(ds, i, "PlaneOrientationSequence", "ImageOrientationPatient"),
            6,
        )
        center = _first_float(ds.get("WindowCenter") or _functional(ds, i, "FrameVOILUTSequence", "WindowCenter"))
        width = _first_float(ds.get("WindowWidth") or _functional(ds, i, "FrameVOILUTSequence", "WindowWidth"))
        out.append(
            FrameInfo(
                sop_uid=str(ds.SOPInstanceUID),
                frame=i + 1,
                rows=rows,
                columns=columns,
                dtype=dtype,
                samples=samples,
                photometric=photometric,
                pixel_spacing=spacing,
                position=position,
                orientation=orientation,
                slice_location=_first_float(ds.get("SliceLocation")),
                instance_number=instance_number,
                window=[center, width] if center is not None and width is not None and width > 0 else None,
            )
        )
    return out


def sort_frames(frames: Sequence[FrameInfo]) -> list[FrameInfo]:
    """Along the slice normal (PS3.3 C.7.6.2.1.1: normal = row cosines x column cosines), then instance number."""

    def key(f: FrameInfo) -> tuple[float, int, int]:
        if f.position is None or f.orientation is None:
            return (0.0, f.instance_number, f.frame)
        normal = np.cross(np.asarray(f.orientation[:3]), np.asarray(f.orientation[3:]))
        return (float(np.dot(normal, np.asarray(f.position))), f.instance_number, f.frame)

    return sorted(frames, key=key)


# --- decoding ---------------------------------------------------------------------------------------------------


def decode_frame(ds: Dataset, index: int) -> npt.NDArray[Any]:
    """Frame ``index`` (0-based) of ``ds`` as modality values in the wire dtype (rows x cols, or rows x cols x 3)."""
    check_pixel_budget(ds)
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise PixelDataError("the instance has no pixel data")
    frames = number_of_frames(ds)
    if not 0 <= index < frames:
        raise PixelDataError(f"frame {index + 1} is out of range (1..{frames})")
    dtype = wire_dtype(ds)
    tsyntax = UID(str(ds.file_meta.TransferSyntaxUID)) if "TransferSyntaxUID" in ds.get("file_meta", {}) else None
    if tsyntax is None:
        raise PixelDataError("the transfer syntax is unknown (no file meta information)")
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError:
        raise UnsupportedPixelData(f"unsupported transfer syntax {tsyntax.name or tsyntax}") from None
    if not decoder.is_available:
        raise UnsupportedPixelData(f"no decoder installed for {tsyntax.name or tsyntax}")
    try:
        arr, meta = decoder.as_array(ds, index=index, as_rgb=True)  # type: ignore[arg-type]
    except (NotImplementedError, RuntimeError, ValueError, KeyError, AttributeError, EOFError) as exc:
        raise PixelDataError(f"could not decode frame {index + 1} ({tsyntax.name}): {type(exc).__name__}") from None
    if dtype == "uint8":
        return _to_rgb8(arr, ds, str(meta.get("photometric_interpretation", "")))
    if ds.get("ModalityLUTSequence"):
        values = apply_modality_lut(arr, ds)
    else:
        rescale = _rescale(ds, index)
        if rescale is None or rescale == (1.0, 0.0):
            values = arr
        elif dtype == "int16":
            values = arr.astype(np.int32) * int(rescale[0]) + int(rescale[1])
        else:
            values = arr.astype(np.float64) * rescale[0] + rescale[1]
    if dtype == "int16":
        if values.dtype != np.int16:
            values = np.clip(values, -32768, 32767).astype(np.int16)
        return values
    return values.astype(np.float32)


def _to_rgb8(arr: npt.NDArray[Any], ds: Dataset, photometric: str) -> npt.NDArray[np.uint8]:
    if str(ds.get("PhotometricInterpretation", "")) == "PALETTE COLOR" or photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
        bits = 16 if arr.dtype.itemsize > 1 else 8
    else:
        bits = int(ds.get("BitsStored") or 8)
    if arr.ndim == 2:  # a single-sample image declared as colour: show it grey
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if bits > 8:
        arr = arr >> (bits - 8)
    return np.ascontiguousarray(arr, dtype=np.uint8)


# --- wire encodings ---------------------------------------------------------------------------------------------


def _deflate(data: bytes | memoryview) -> bytes:
    # Z_RLE (distance-1 matches only) is both faster and smaller than the default strategy on byte planes.
    compressor = zlib.compressobj(ZLIB_LEVEL, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    return compressor.compress(data) + compressor.flush()


def encode_frame(values: npt.NDArray[Any]) -> EncodedFrame:
    """The wire body of decoded frame values (see the module docstring for the formats)."""
    rows, columns = int(values.shape[0]), int(values.shape[1])
    if values.dtype == np.int16:
        v = np.ascontiguousarray(values)
        d = np.empty_like(v)
        d[:, 0] = v[:, 0]
        np.subtract(v[:, 1:], v[:, :-1], out=d[:, 1:])  # int16 arithmetic wraps, as the format says
        planes = d.astype("<i2", copy=False).view(np.uint8).reshape(-1, 2).T  # [low bytes, high bytes]
        return EncodedFrame(_deflate(np.ascontiguousarray(planes).data), "delta16-deflate", rows, columns)
    if values.dtype == np.uint8:
        if values.ndim != 3 or values.shape[2] != 3:
            raise PixelDataError("rgb8 frames must be rows x columns x 3")
        return EncodedFrame(_deflate(np.ascontiguousarray(values).data), "rgb8-deflate", rows, columns)
    data = np.ascontiguousarray(values, dtype="<f4")
    return EncodedFrame(_deflate(data.data), "float32-deflate", rows, columns)


def decode_wire(body: bytes, encoding: str, rows: int, columns: int) -> npt.NDArray[Any]:
    """The reference decoder of the wire format (what viewer.js does), for tests and benchmarks."""
    raw = zlib.decompress(body)
    n = rows * columns
    if encoding == "delta16-deflate":
        planes = np.frombuffer(raw, dtype=np.uint8)
        if planes.size != 2 * n:
            raise PixelDataError("delta16 body has the wrong length")
        d = (planes[:n].astype(np.uint16) | (planes[n:].astype(np.uint16) << 8)).view(np.int16).reshape(rows, columns)
        return np.cumsum(d, axis=1, dtype=np.int64).astype(np.int16)
    if encoding == "float32-deflate":
        return np.frombuffer(raw, dtype="<f4").reshape(rows, columns)
    if encoding == "rgb8-deflate":
        return np.frombuffer(raw, dtype=np.uint8).reshape(rows, columns, 3)
    raise PixelDataError(f"unknown encoding {encoding!r}")


def frame_etag(sop_uid: str, frame: int) -> str:
    """A strong ETag (RFC 9110 8.8.3): the bytes of a frame never change for a given SOP instance.

    The encoding is a function of the instance's header, so SOP UID + frame + ``ENCODING_VERSION`` name the
    bytes; the route can answer ``If-None-Match`` without touching the cache.
    """
    digest = hashlib.sha256(f"{sop_uid}\x00{frame}\x00{ENCODING_VERSION}".encode()).hexdigest()
    return f'"{digest[:32]}"'
