"""A DICOMweb client (PS3.18): QIDO-RS search, WADO-RS retrieve, STOW-RS store, over httpx.

Built for a regional PACS that may be slow or briefly down: every call has a timeout, transient failures
(connection refused or reset, timeouts, 502/503/504) are retried with backoff, and a PACS still down after that
raises ``ArchiveUnavailable`` ("PACS unreachable, retrying") rather than a stack trace.

Quirks met in the field, handled here and tested against Orthanc 1.10 + DICOMweb plugin 1.7:

* Orthanc does not percent-decode query strings, so query values are written as they are (``,`` and ``^`` stay
  literal) and each ``includefield`` is its own parameter.
* A frame's ``Content-Type`` carries the transfer syntax inside the quoted ``type=`` parameter
  (``multipart/related; type="application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"; boundary=...``),
  so the boundary is parsed with a quote-aware parameter reader, and the body is split leniently.
* STOW-RS always answers an empty Failed SOP Sequence (0008,1198): callers test its *value*, not its presence.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from pydicom.config import IGNORE
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from rcp.imaging.archive import (
    VIEWER_ATTRIBUTES,
    ArchiveNotFound,
    ArchiveUnavailable,
    InstanceSummary,
    RawFrame,
    SeriesSummary,
    StoreResult,
    StudySummary,
)
from rcp.metrics import observe_archive

__all__ = ["DicomWebClient", "content_type_params", "dataset_from_json", "split_multipart"]

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({502, 503, 504})
#: QIDO-RS return keys beyond the defaults (PS3.18 Table 10.6.1-5), each asked for explicitly: not every PACS
#: returns counts and modalities unless told.
STUDY_FIELDS = ("00080061", "00201206", "00201208", "00081030", "00100021", "00100030", "00100040")
#: Kept from metadata for descriptors: the viewer's attributes, functional groups, Modality LUT, study/series text.
_HEADER_KEYS = frozenset(VIEWER_ATTRIBUTES) | {"52009229", "52009230", "00283000", "0020000D", "0020000E"}
SERIES_FIELDS = ("0008103E", "00200011", "00201209")
INSTANCE_FIELDS = ("00280008", "00200013", "00080016")


def content_type_params(value: str) -> tuple[str, dict[str, str]]:
    """``type/subtype; a=b; c="d; e"`` -> (``type/subtype``, {a: b, c: "d; e"}), quotes respected (RFC 9110 5.6.6)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    escaped = False
    for ch in value:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
            current.append(ch)
        elif ch == ";" and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    media = parts[0].strip().lower()
    params: dict[str, str] = {}
    for part in parts[1:]:
        if "=" not in part:
            continue
        key, _, raw = part.partition("=")
        raw = raw.strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = raw[1:-1]
        params[key.strip().lower()] = raw
    return media, params


def split_multipart(body: bytes, content_type: str) -> list[tuple[dict[str, str], bytes]]:
    """The parts of a ``multipart/related`` body (RFC 2046 5.1) as (headers, payload) pairs.

    Lenient: the boundary may be quoted or not, the preamble and epilogue are ignored, and a missing final
    ``--`` is tolerated.
    """
    _media, params = content_type_params(content_type)
    boundary = params.get("boundary", "")
    if not boundary:
        # Some servers forget the parameter: take the first delimiter line of the body.
        first = body.lstrip(b"\r\n").split(b"\r\n", 1)[0]
        if not first.startswith(b"--"):
            raise ValueError("multipart body without a boundary")
        boundary = first[2:].decode("latin-1").strip()
    delimiter = b"--" + boundary.encode("latin-1")
    parts: list[tuple[dict[str, str], bytes]] = []
    chunks = body.split(delimiter)
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        if chunk.startswith(b"\r\n"):
            chunk = chunk[2:]
        head, sep, payload = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        if payload.endswith(b"\r\n"):
            payload = payload[:-2]
        headers: dict[str, str] = {}
        for line in head.split(b"\r\n"):
            name, colon, value = line.partition(b":")
            if colon:
                headers[name.decode("latin-1").strip().lower()] = value.decode("latin-1").strip()
        parts.append((headers, payload))
    return parts


def dataset_from_json(item: dict[str, Any]) -> Dataset:
    """A pydicom Dataset from DICOM JSON (PS3.18 F.2), leaving out bulk and inline binary data.

    Four times faster than ``Dataset.from_json`` (which validates every value): a 300-instance series answer
    converts in about 0.15 s instead of 0.6 s, which is most of the time to open a cold series. Values are taken
    as the PACS sent them; ``rcp.imaging.frames`` checks what it uses.
    """
    ds = Dataset()
    for tag, element in item.items():
        vr = element.get("vr", "UN")
        if "Value" not in element:
            if vr == "SQ" or "BulkDataURI" in element or "InlineBinary" in element:
                continue
            value: Any = None
        elif vr == "SQ":
            value = [dataset_from_json(x) for x in element["Value"] if isinstance(x, dict)]
        elif vr == "PN":  # PS3.18 F.2.2: {"Alphabetic": ..., "Ideographic": ..., "Phonetic": ...}
            value = [v.get("Alphabetic", "") if isinstance(v, dict) else v for v in element["Value"]]
        else:
            value = element["Value"]
        if isinstance(value, list) and len(value) == 1 and vr != "SQ":
            value = value[0]
        try:
            ds.add(DataElement(int(tag, 16), vr, value, validation_mode=IGNORE))
        except (ValueError, TypeError, KeyError):
            logger.debug("DICOM JSON element %s (%s) left out: not convertible", tag, vr)
    return ds


def _datasets(items: Any) -> list[Dataset]:
    return [dataset_from_json(item) for item in items if isinstance(item, dict)] if isinstance(items, list) else []


class DicomWebClient:
    """One DICOMweb server. Async, shared by all requests; ``close()`` is safe to call twice."""

    def __init__(self, base_url: str, *, username: str = "", password: str = "", token: str = "",
                 timeout: float = 30.0, connect_timeout: float = 5.0, retries: int = 3,
                 max_connections: int = 16, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        auth: httpx.Auth | None = httpx.BasicAuth(username, password) if username else None
        headers = {"Authorization": f"Bearer {token}"} if token and not username else {}
        self.retries = retries
        self._client = httpx.AsyncClient(
            auth=auth,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
        )

    async def close(self) -> None:
        await self._client.aclose()

    # --- plumbing ---------------------------------------------------------------------------------------------

    def _url(self, path: str, query: Sequence[tuple[str, str]] = ()) -> str:
        url = f"{self.base_url}/{path.lstrip('/')}"
        if query:
            # Written by hand: Orthanc does not percent-decode, so only what must be escaped is escaped.
            url += "?" + "&".join(f"{k}={quote(v, safe='*^.,-_:')}" for k, v in query)
        return url

    async def _send(self, method: str, url: str, *, idempotent: bool = True,
                    **kwargs: Any) -> httpx.Response:
        delay = 0.2
        for attempt in range(self.retries + 1):
            started = time.perf_counter()
            try:
                response = await self._client.request(method, url, **kwargs)
                observe_archive(started, response.status_code)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                observe_archive(started, None)
                failure: str = type(exc).__name__
            except (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError) as exc:
                observe_archive(started, None)
                if not idempotent:
                    raise ArchiveUnavailable() from None
                failure = type(exc).__name__
            else:
                if response.status_code not in RETRY_STATUSES:
                    return response
                failure = f"HTTP {response.status_code}"
            if attempt < self.retries:
                logger.warning("PACS %s: %s, retry %d in %.1f s", method, failure, attempt + 1, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2.5, 3.0)
        logger.error("PACS %s unreachable after %d attempts: %s", method, self.retries + 1, failure)
        raise ArchiveUnavailable()

    def _check(self, response: httpx.Response, what: str) -> None:
        if response.status_code == 404:
            raise ArchiveNotFound(f"The PACS has no such {what}.")
        if response.status_code in (401, 403):
            raise ArchiveUnavailable("The PACS refused our credentials: check RCP_PACS_USERNAME/PASSWORD/TOKEN.")
        if response.status_code >= 400:
            raise ArchiveUnavailable(f"The PACS answered {response.status_code} for a {what} request.")

    async def _qido(self, path: str, query: Sequence[tuple[str, str]], what: str) -> list[Dataset]:
        response = await self._send("GET", self._url(path, query), headers={"Accept": "application/dicom+json"})
        if response.status_code == 204:
            return []
        self._check(response, what)
        if not response.content.strip():
            return []
        # Parsing hundreds of JSON datasets is CPU work: off the event loop.
        return await asyncio.to_thread(lambda: _datasets(json.loads(response.content)))

    # --- QIDO-RS (PS3.18 10.6) --------------------------------------------------------------------------------

    async def search_studies(self, *, patient_id: str | None = None, issuer: str | None = None,
                             study_uid: str | None = None, limit: int = 200) -> list[StudySummary]:
        query: list[tuple[str, str]] = [("includefield", f) for f in STUDY_FIELDS]
        if patient_id:
            query.append(("PatientID", patient_id))
        if study_uid:
            query.append(("StudyInstanceUID", study_uid))
        query.append(("limit", str(limit)))
        found = [StudySummary.from_dataset(ds) for ds in await self._qido("studies", query, "study")]
        if issuer:
            # Issuer is matched here: many PACS (Orthanc included) ignore it as a QIDO key.
            found = [s for s in found if not s.issuer or s.issuer == issuer]
        return found

    async def list_series(self, study_uid: str) -> list[SeriesSummary]:
        query = [("includefield", f) for f in SERIES_FIELDS]
        rows = await self._qido(f"studies/{study_uid}/series", query, "study")
        if not rows:  # Orthanc answers an empty list for an unknown study; a study has at least one series
            raise ArchiveNotFound("The PACS has no such study.")
        return sorted((SeriesSummary.from_dataset(ds, study_uid) for ds in rows),
                      key=lambda s: (s.series_number, s.series_uid))

    async def list_instances(self, study_uid: str, series_uid: str) -> list[InstanceSummary]:
        query = [("includefield", f) for f in INSTANCE_FIELDS]
        rows = await self._qido(f"studies/{study_uid}/series/{series_uid}/instances", query, "series")
        if not rows:
            raise ArchiveNotFound("The PACS has no such series.")
        return sorted((InstanceSummary.from_dataset(ds, study_uid, series_uid) for ds in rows),
                      key=lambda i: (i.instance_number, i.sop_uid))

    async def find_instance(self, sop_uid: str) -> InstanceSummary | None:
        query = [*(("includefield", f) for f in ("0020000D", "0020000E", *INSTANCE_FIELDS)),
                 ("SOPInstanceUID", sop_uid), ("limit", "1")]
        rows = await self._qido("instances", query, "instance")
        found = [InstanceSummary.from_dataset(ds) for ds in rows]
        return next((i for i in found if i.sop_uid == sop_uid), None)

    # --- WADO-RS (PS3.18 10.4) --------------------------------------------------------------------------------

    async def series_metadata(self, study_uid: str, series_uid: str) -> list[Dataset]:
        response = await self._send("GET", self._url(f"studies/{study_uid}/series/{series_uid}/metadata"),
                                    headers={"Accept": "application/dicom+json"})
        self._check(response, "series")
        return await asyncio.to_thread(lambda: _datasets(json.loads(response.content or b"[]")))

    async def image_headers(self, study_uid: str, series_uid: str) -> list[Dataset]:
        """WADO-RS metadata, keeping only what a series descriptor needs before converting it.

        On Orthanc the full metadata answers faster than a QIDO-RS query with the same attributes (0.25 s vs
        0.31 s for 300 instances), and converting only the viewer's attributes (plus the multi-frame functional
        groups, PS3.3 C.7.6.16, and the Modality LUT) keeps the Python side to a few tens of milliseconds.
        """
        response = await self._send("GET", self._url(f"studies/{study_uid}/series/{series_uid}/metadata"),
                                    headers={"Accept": "application/dicom+json"})
        self._check(response, "series")

        def convert() -> list[Dataset]:
            items = json.loads(response.content or b"[]")
            if not isinstance(items, list):
                return []
            return [dataset_from_json({k: v for k, v in item.items() if k in _HEADER_KEYS})
                    for item in items if isinstance(item, dict)]

        return await asyncio.to_thread(convert)

    async def _multipart_dicom(self, path: str, what: str) -> list[bytes]:
        response = await self._send(
            "GET", self._url(path),
            headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
        )
        self._check(response, what)
        return [payload for _headers, payload in split_multipart(response.content,
                                                                 response.headers.get("content-type", ""))]

    async def retrieve_instance(self, study_uid: str, series_uid: str, sop_uid: str) -> bytes:
        parts = await self._multipart_dicom(f"studies/{study_uid}/series/{series_uid}/instances/{sop_uid}",
                                            "instance")
        if not parts:
            raise ArchiveNotFound("The PACS has no such instance.")
        return parts[0]

    async def retrieve_series(self, study_uid: str, series_uid: str) -> list[bytes]:
        return await self._multipart_dicom(f"studies/{study_uid}/series/{series_uid}", "series")

    async def retrieve_frame(self, study_uid: str, series_uid: str, sop_uid: str, frame: int) -> RawFrame:
        response = await self._send(
            "GET", self._url(f"studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/frames/{frame}"),
            headers={"Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'},
        )
        self._check(response, "frame")
        outer = response.headers.get("content-type", "")
        parts = split_multipart(response.content, outer)
        if not parts:
            raise ArchiveNotFound("The PACS returned no frame.")
        headers, payload = parts[0]
        # The transfer syntax is in the part's Content-Type, or (Orthanc) inside the outer quoted type=.
        _media, part_params = content_type_params(headers.get("content-type", ""))
        syntax = part_params.get("transfer-syntax", "")
        if not syntax:
            _outer_media, outer_params = content_type_params(outer)
            _inner_media, inner_params = content_type_params(outer_params.get("type", ""))
            syntax = inner_params.get("transfer-syntax", "")
        return RawFrame(data=payload, transfer_syntax=syntax or "1.2.840.10008.1.2.1")

    # --- STOW-RS (PS3.18 10.5) --------------------------------------------------------------------------------

    async def store(self, instances: Sequence[bytes]) -> StoreResult:
        result = StoreResult()
        batch: list[bytes] = []
        size = 0
        for blob in instances:
            batch.append(blob)
            size += len(blob)
            if size > 32 * 1024 * 1024 or len(batch) >= 64:
                await self._stow(batch, result)
                batch, size = [], 0
        if batch:
            await self._stow(batch, result)
        return result

    async def store_files(self, paths: Sequence[Path]) -> StoreResult:
        """``store`` from files on disk, read one batch at a time (about 32 MB, or one larger file): what is in
        memory is the body of one STOW-RS request, never the whole import."""
        result = StoreResult()
        batch: list[bytes] = []
        size = 0
        for path in paths:
            blob = await asyncio.to_thread(path.read_bytes)
            if batch and size + len(blob) > 32 * 1024 * 1024:
                await self._stow(batch, result)
                batch, size = [], 0
            batch.append(blob)
            size += len(blob)
            if len(batch) >= 64:
                await self._stow(batch, result)
                batch, size = [], 0
        if batch:
            await self._stow(batch, result)
        return result

    async def _stow(self, batch: Sequence[bytes], result: StoreResult) -> None:
        boundary = secrets.token_hex(16)
        pieces: list[bytes] = []
        for blob in batch:
            pieces.append(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
            pieces.append(blob)
            pieces.append(b"\r\n")
        pieces.append(f"--{boundary}--\r\n".encode())
        response = await self._send(
            "POST", self._url("studies"), content=b"".join(pieces),
            headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                     "Accept": "application/dicom+json"},
        )
        if response.status_code in (401, 403) or response.status_code >= 500:
            self._check(response, "store")
        try:
            answer = json.loads(response.content or b"{}")
        except ValueError:
            answer = {}
        if response.status_code >= 400 and not answer:
            # PS3.18 10.5.3.1: 400/409 mean nothing was stored; some servers send no body with it.
            result.failed.extend(("", f"refused by the PACS (HTTP {response.status_code})") for _ in batch)
            return
        if isinstance(answer, list):
            answer = answer[0] if answer else {}
        reply = dataset_from_json(answer) if answer else Dataset()
        before = len(result.stored) + len(result.failed)
        for item in reply.get("ReferencedSOPSequence") or []:
            result.stored.append(str(item.get("ReferencedSOPInstanceUID", "")))
        # PS3.18 10.5.3: Failed SOP Sequence (0008,1198); Orthanc always sends it, empty — test the value.
        for item in reply.get("FailedSOPSequence") or []:
            reason = item.get("FailureReason")
            result.failed.append((str(item.get("ReferencedSOPInstanceUID", "")), f"failure reason {reason}"))
        # Orthanc leaves unreadable parts out of both sequences: whatever was not acknowledged was not stored.
        unacknowledged = len(batch) - (len(result.stored) + len(result.failed) - before)
        result.failed.extend(("", "not acknowledged by the PACS (unreadable?)") for _ in range(max(0, unacknowledged)))

