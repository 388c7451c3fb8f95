"""EPR receivers, chosen by URL (the broadcaster way): a file drop, a FHIR server, an HL7 v2 MLLP listener.

- ``file:///var/lib/rcp/epr-outbox``: a folder per delivered version holding ``document.json`` (metadata),
  ``document.pdf`` and ``document.xml`` (the CANCER-FRCP CDA R2), written to a temporary folder and renamed into
  place, so a reader never sees half a delivery; a withdrawal is ``<unique id>.entered-in-error.json`` beside it,
  written the same way. The embedded default.
- ``fhir+https://host/fhir`` (or ``fhir+http://``): POST of the IHE MHD ITI-65 transaction Bundle to the base (or,
  for a withdrawal, the transaction setting the DocumentReference to entered-in-error).
  Bearer token from the URL's password (``fhir+https://:TOKEN@host/fhir``) or the ``token`` argument.
- ``mllp://host:port``: HL7 v2.5 MDM^T02/T10/T11 over MLLP, waiting for the ACK.

Optional query parameter ``timeout`` (seconds) on any URL; on ``mllp://``, also ``sending_application``,
``sending_facility``, ``receiving_application`` and ``receiving_facility`` (MSH-3 to MSH-6). Every receiver answers :class:`Outcome`: delivered,
retry (transient: 5xx, timeouts, AR, refused connections) or needs_attention (permanent: 4xx, AE), with a short
summary for logs and the receiver's answer excerpt for the coordinator.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import httpx

from rcp.epr.document import SignedDocument
from rcp.epr.fhir import ENCOUNTER_OID, outcome_summary, provide_document_bundle, withdrawal_bundle
from rcp.epr.hl7 import AckCode, mdm_message, parse_ack
from rcp.epr.mllp import MllpClient, MllpError, MllpTimeout

__all__ = [
    "FhirReceiver",
    "FileDropReceiver",
    "MllpReceiver",
    "Outcome",
    "Receiver",
    "Verdict",
    "open_receiver",
    "receiver_key",
]

_ANSWER_LIMIT = 1000
_MSH_FIELDS = ("sending_application", "sending_facility", "receiving_application", "receiving_facility")


class Verdict(StrEnum):
    delivered = "delivered"
    retry = "retry"
    needs_attention = "needs_attention"


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    #: For logs and the attempt row: a protocol fact, never patient data ("AA", "HTTP 422", "timeout").
    summary: str
    #: The receiver's own words (ACK text, OperationOutcome), shown to the coordinator; not logged.
    answer: str = ""
    #: False when nothing answered (refused connection, timeout): the worker stops sending to it for a while.
    reached: bool = True


class Receiver(Protocol):
    #: The URL without credentials: what deliveries are keyed by.
    key: str
    kind: str
    #: How many deliveries the worker may have in flight to it at once.
    concurrency: int

    async def deliver(self, document: SignedDocument, *, idempotency_key: str) -> Outcome: ...

    async def close(self) -> None: ...


def receiver_key(url: str) -> str:
    """The URL without user, password or query: stable across token rotations, safe to store and show."""
    parts = urlsplit(url.strip())
    if parts.scheme not in {"file", "fhir+https", "fhir+http", "mllp"}:
        raise ValueError(
            f"EPR receiver URL scheme must be file, fhir+https, fhir+http or mllp (got {parts.scheme!r})"
        )
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") or parts.path, "", ""))


def _timeout(url: str, default: float) -> float:
    values = parse_qs(urlsplit(url).query).get("timeout")
    return float(values[0]) if values else default


class FileDropReceiver:
    """Writes each version once into ``folder/<unique id>/`` (document.json + document.pdf), atomically."""

    kind = "file"
    concurrency = 4

    def __init__(self, folder: Path, *, key: str) -> None:
        self.folder = folder
        self.key = key

    def _write(self, document: SignedDocument, idempotency_key: str) -> Outcome:
        self.folder.mkdir(parents=True, exist_ok=True)
        if document.withdrawal is not None:
            return self._withdraw(document, idempotency_key)
        final = self.folder / document.unique_id
        if final.exists():
            return Outcome(Verdict.delivered, "already in the drop folder")
        staging = Path(tempfile.mkdtemp(prefix=f".{document.unique_id}.", dir=self.folder))
        try:
            metadata = document.metadata_json() | {"idempotency_key": idempotency_key, "pdf": "document.pdf"}
            files = [("document.pdf", document.pdf)]
            if document.cda:
                metadata["cda"] = "document.xml"
                files.append(("document.xml", document.cda))
            files.append(("document.json", json.dumps(metadata, ensure_ascii=False, indent=2).encode("utf-8")))
            for name, data in files:
                _write_synced(staging / name, data)
            try:
                os.rename(staging, final)  # atomic on one file system; fails if another writer won
            except OSError:
                if final.exists():
                    return Outcome(Verdict.delivered, "already in the drop folder")
                raise
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return Outcome(Verdict.delivered, "written")

    def _withdraw(self, document: SignedDocument, idempotency_key: str) -> Outcome:
        """``<unique id>.entered-in-error.json`` beside the version's folder: who withdrew it, when and why."""
        assert document.withdrawal is not None
        final = self.folder / f"{document.unique_id}.entered-in-error.json"
        if final.exists():
            return Outcome(Verdict.delivered, "already in the drop folder")
        body = {"unique_id": document.unique_id, "set_id": document.set_id, "version": document.version,
                "status": "entered-in-error", "idempotency_key": idempotency_key,
                "withdrawal": document.withdrawal.as_json()}
        handle, name = tempfile.mkstemp(prefix=f".{document.unique_id}.", dir=self.folder)
        os.close(handle)
        try:
            _write_synced(Path(name), json.dumps(body, ensure_ascii=False, indent=2).encode("utf-8"))
            os.replace(name, final)  # atomic: a reader sees the whole file or none
        finally:
            if os.path.exists(name):
                os.unlink(name)
        return Outcome(Verdict.delivered, "written")

    async def deliver(self, document: SignedDocument, *, idempotency_key: str) -> Outcome:
        try:
            return await asyncio.to_thread(self._write, document, idempotency_key)
        except OSError as exc:
            return Outcome(Verdict.retry, f"file drop failed ({type(exc).__name__})", str(exc)[:_ANSWER_LIMIT])

    async def close(self) -> None:
        return None


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


class FhirReceiver:
    """POSTs the ITI-65 Bundle; 2xx delivered, 408/429/5xx/timeouts retried, other 4xx need attention."""

    kind = "fhir"
    concurrency = 4

    def __init__(self, base_url: str, *, key: str, token: str = "", timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key
        headers = {"Accept": "application/fhir+json", "Content-Type": "application/fhir+json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.AsyncClient(headers=headers, timeout=timeout)

    async def deliver(self, document: SignedDocument, *, idempotency_key: str) -> Outcome:
        build = withdrawal_bundle if document.withdrawal is not None else provide_document_bundle
        bundle = await asyncio.to_thread(build, document, idempotency_key=idempotency_key)
        body = await asyncio.to_thread(lambda: json.dumps(bundle, ensure_ascii=False).encode("utf-8"))
        try:
            response = await self._client.post(self.base_url, content=body,
                                                headers={"X-Request-Id": idempotency_key})
        except httpx.TimeoutException:
            return Outcome(Verdict.retry, "timeout", reached=False)
        except httpx.TransportError as exc:
            return Outcome(Verdict.retry, f"connection failed ({type(exc).__name__})", reached=False)
        status = response.status_code
        if 200 <= status < 300:
            return Outcome(Verdict.delivered, f"HTTP {status}", _transaction_summary(response.content))
        answer = outcome_summary(response.content, limit=_ANSWER_LIMIT)
        if status in (408, 429) or status >= 500:
            return Outcome(Verdict.retry, f"HTTP {status}", answer)
        return Outcome(Verdict.needs_attention, f"HTTP {status}", answer)

    async def close(self) -> None:
        await self._client.aclose()


def _transaction_summary(content: bytes) -> str:
    """``201 Created DocumentReference/12; ...`` from a transaction-response Bundle (status and location)."""
    try:
        data: dict[str, Any] = json.loads(content)
    except ValueError:
        return ""
    parts = []
    for entry in data.get("entry", []) if isinstance(data, dict) else []:
        response = entry.get("response", {}) if isinstance(entry, dict) else {}
        parts.append(f"{response.get('status', '')} {response.get('location', '')}".strip())
    return "; ".join(parts)[:_ANSWER_LIMIT]


class MllpReceiver:
    """Sends MDM^T02/T10/T11 with MSH-10 = idempotency key; AA delivered, AE needs attention, AR retried."""

    kind = "mllp"
    concurrency = 1  # MLLP: one message, then its ACK, on the connection

    def __init__(self, host: str, port: int, *, key: str, timeout: float = 30.0,
                 header: Mapping[str, str] | None = None) -> None:
        self.key = key
        #: MSH-3..6 (sending/receiving application and facility): interface engines route on them.
        self.header = dict(header or {})
        self._client = MllpClient(host, port, ack_timeout=timeout, connect_timeout=min(timeout, 10.0))

    async def deliver(self, document: SignedDocument, *, idempotency_key: str) -> Outcome:
        h = self.header
        message = await asyncio.to_thread(functools.partial(
            mdm_message, document, control_id=idempotency_key,
            sending_application=h.get("sending_application", "RCP"),
            sending_facility=h.get("sending_facility", "RCP"),
            receiving_application=h.get("receiving_application", "DPI"),
            receiving_facility=h.get("receiving_facility", ""), encounter_oid=ENCOUNTER_OID,
        ))
        try:
            answer = await self._client.send(message)
        except MllpTimeout:
            return Outcome(Verdict.retry, "timeout", reached=False)
        except MllpError as exc:
            return Outcome(Verdict.retry, "connection failed", str(exc)[:_ANSWER_LIMIT], reached=False)
        try:
            ack = parse_ack(answer, expected_control_id=idempotency_key)
        except ValueError as exc:
            return Outcome(Verdict.retry, "unreadable ACK", str(exc))
        if ack.code is AckCode.accept:
            return Outcome(Verdict.delivered, "AA", ack.text)
        if ack.code is AckCode.reject:
            return Outcome(Verdict.retry, "AR", ack.text)
        return Outcome(Verdict.needs_attention, "AE", ack.text or "the receiver refused the message content (AE)")

    async def close(self) -> None:
        await self._client.close()


def open_receiver(url: str, *, token: str = "", timeout: float = 30.0) -> Receiver:
    """The receiver for ``url``; ``ValueError`` says which URL forms are accepted."""
    key = receiver_key(url)
    parts = urlsplit(url.strip())
    timeout = _timeout(url, timeout)
    if parts.scheme == "file":
        if not parts.path:
            raise ValueError("a file:// receiver needs a folder, e.g. file:///var/lib/rcp/epr-outbox")
        return FileDropReceiver(Path(unquote(parts.path)), key=key)
    if parts.scheme in {"fhir+https", "fhir+http"}:
        secret = unquote(parts.password or parts.username or "") or token
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        base = urlunsplit((parts.scheme.removeprefix("fhir+"), netloc, parts.path, "", ""))
        return FhirReceiver(base, key=key, token=secret, timeout=timeout)
    if not parts.hostname or not parts.port:
        raise ValueError("an mllp:// receiver needs a host and a port, e.g. mllp://interfaces.example:2575")
    query = parse_qs(parts.query)
    header = {name: query[name][0] for name in _MSH_FIELDS if query.get(name)}
    return MllpReceiver(parts.hostname, parts.port, key=key, timeout=timeout, header=header)
