"""Each receiver against a real socket or folder: what it sends, and how it reads the answer."""

from __future__ import annotations

import json
from pathlib import Path

import hl7
import pytest

from rcp.epr.fhir import check_provide_bundle
from rcp.epr.mllp import MllpClient, MllpError, MllpTimeout, frame, unframe
from rcp.epr.receivers import Verdict, open_receiver, receiver_key
from tests.epr.samples import sample_document
from tests.fixtures.receivers import FhirServer, MllpListener


def test_receiver_keys_drop_credentials() -> None:
    assert receiver_key("fhir+https://:s3cret@epr.example/fhir/?timeout=5") == "fhir+https://epr.example/fhir"
    assert receiver_key("mllp://engine.example:2575") == "mllp://engine.example:2575"
    assert receiver_key("file:///var/lib/rcp/outbox") == "file:///var/lib/rcp/outbox"
    with pytest.raises(ValueError, match="scheme"):
        receiver_key("https://epr.example/fhir")
    with pytest.raises(ValueError, match="port"):
        open_receiver("mllp://engine.example")


def test_mllp_framing() -> None:
    assert frame(b"MSH|x") == b"\x0bMSH|x\x1c\x0d"
    assert unframe(frame(b"MSH|x")) == b"MSH|x"
    with pytest.raises(MllpError):
        unframe(b"MSH|x\x1c\x0d")


async def test_file_drop_is_atomic_and_idempotent(tmp_path: Path) -> None:
    receiver = open_receiver(f"file://{tmp_path}/drop")
    document = sample_document()
    first = await receiver.deliver(document, idempotency_key="K1")
    again = await receiver.deliver(document, idempotency_key="K1")
    assert first.verdict is again.verdict is Verdict.delivered
    folders = list((tmp_path / "drop").iterdir())
    assert [f.name for f in folders] == [document.unique_id]  # no staging leftovers
    assert (folders[0] / "document.pdf").read_bytes() == document.pdf
    metadata = json.loads((folders[0] / "document.json").read_text("utf-8"))
    assert metadata["unique_id"] == document.unique_id and metadata["idempotency_key"] == "K1"
    await receiver.close()


async def test_mllp_aa_ae_ar(epr_receivers: tuple[MllpListener, FhirServer]) -> None:
    listener, _ = epr_receivers
    receiver = open_receiver(listener.url + "?receiving_application=DXCARE&receiving_facility=CHU-TEST")
    try:
        document = sample_document()
        outcome = await receiver.deliver(document, idempotency_key="AA1")
        assert outcome.verdict is Verdict.delivered and outcome.summary == "AA"
        message = hl7.parse(listener.filed["AA1"])
        assert [str(f) for f in message.segment("MSH")[3:7]] == ["RCP", "RCP", "DXCARE", "CHU-TEST"]
        assert str(message.extract_field("PID", 1, 3, 1, 1)) == document.patient.ins
        listener.mode = "AE"
        outcome = await receiver.deliver(sample_document(), idempotency_key="AE1")
        assert outcome.verdict is Verdict.needs_attention
        assert outcome.answer == listener.error_text
        listener.mode = "AR"
        assert (await receiver.deliver(sample_document(), idempotency_key="AR1")).verdict is Verdict.retry
    finally:
        await receiver.close()


async def test_mllp_silence_and_refusal_are_retried(epr_receivers: tuple[MllpListener, FhirServer]) -> None:
    listener, _ = epr_receivers
    listener.mode = "silent"
    receiver = open_receiver(listener.url + "?timeout=0.3")
    try:
        outcome = await receiver.deliver(sample_document(), idempotency_key="S1")
        assert outcome.verdict is Verdict.retry and outcome.summary == "timeout"
        await listener.stop()
        outcome = await receiver.deliver(sample_document(), idempotency_key="S2")
        assert outcome.verdict is Verdict.retry and outcome.summary == "connection failed"
    finally:
        await receiver.close()
        await listener.start()
    async with MllpClient(listener.host, listener.port, ack_timeout=0.2) as client:
        listener.mode = "silent"
        with pytest.raises(MllpTimeout):
            await client.send("MSH|^~\\&|RCP||DPI||20261123||MDM^T02^MDM_T02|X|P|2.5")


async def test_fhir_delivery_creates_once(epr_receivers: tuple[MllpListener, FhirServer]) -> None:
    _, server = epr_receivers
    receiver = open_receiver(server.url)
    try:
        document = sample_document()
        first = await receiver.deliver(document, idempotency_key="F1")
        assert first.verdict is Verdict.delivered, first
        assert "201 Created DocumentReference/" in first.answer
        resend = await receiver.deliver(document, idempotency_key="F1")
        assert resend.verdict is Verdict.delivered
        assert len(server.received) == 2
        for bundle in server.received:
            check_provide_bundle(bundle)
        assert len(server.documents()) == 1  # ifNoneExist: the resend created nothing
        # The correction supersedes the first version on the server.
        second = sample_document(version=2, set_root=document.set_id)
        assert (await receiver.deliver(second, idempotency_key="F2")).verdict is Verdict.delivered
        statuses = {d["masterIdentifier"]["value"]: d["status"] for d in server.documents()}
        assert statuses == {f"urn:oid:{document.unique_id}": "superseded", f"urn:oid:{second.unique_id}": "current"}
    finally:
        await receiver.close()


async def test_fhir_errors(epr_receivers: tuple[MllpListener, FhirServer]) -> None:
    _, server = epr_receivers
    receiver = open_receiver(server.url)
    try:
        server.mode = "422"
        outcome = await receiver.deliver(sample_document(), idempotency_key="E1")
        assert outcome.verdict is Verdict.needs_attention and outcome.summary == "HTTP 422"
        assert outcome.answer == "error/business-rule: Patient not found for this INS"
        server.mode = "503"
        assert (await receiver.deliver(sample_document(), idempotency_key="E2")).verdict is Verdict.retry
    finally:
        await receiver.close()
    wrong_token = open_receiver(server.url.replace(server.token, "nope"))
    try:
        server.mode = "ok"
        outcome = await wrong_token.deliver(sample_document(), idempotency_key="E3")
        assert outcome.verdict is Verdict.needs_attention and outcome.summary == "HTTP 401"
    finally:
        await wrong_token.close()
    unreachable = open_receiver("fhir+http://127.0.0.1:9/fhir?timeout=1")
    try:
        assert (await unreachable.deliver(sample_document(), idempotency_key="E4")).verdict is Verdict.retry
    finally:
        await unreachable.close()
