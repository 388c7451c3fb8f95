"""The outbox and the worker on SQLite, against the real test receivers."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import hl7
import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message
from sqlmodel import col, select

from rcp.config import Settings
from rcp.db import Database
from rcp.epr.fhir import check_provide_bundle
from rcp.epr.models import Delivery, DeliveryAttempt
from rcp.epr.outbox import configured_receivers, deliveries_for, enqueue, idempotency_key, retry
from rcp.epr.receivers import open_receiver, receiver_key
from rcp.epr.worker import RetryPolicy, Worker, backoff_delay
from rcp.errors import Conflict, NotFound
from tests.epr.conftest import add_case
from tests.epr.samples import sample_document
from tests.fixtures.receivers import FhirServer, MllpListener

FAST = RetryPolicy(base_s=0.01, cap_s=0.02, max_attempts=50, lease_s=30)


async def _rows(db: Database) -> list[Delivery]:
    async with db.session() as session:
        return list((await session.exec(select(Delivery).order_by(col(Delivery.id)))).all())


async def _attempts(db: Database, delivery_id: int) -> list[DeliveryAttempt]:
    async with db.session() as session:
        query = select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == delivery_id).order_by(col(DeliveryAttempt.id))
        return list((await session.exec(query)).all())


async def _drain(worker: Worker, *, rounds: int = 200) -> None:
    """Run the worker until nothing is due (backoffs are a few ms here)."""
    idle = 0
    for _ in range(rounds):
        if await worker.run_once() == 0:
            idle += 1
            if idle > 5:
                return
            await asyncio.sleep(0.02)
        else:
            idle = 0


def test_backoff_grows_is_capped_and_jittered() -> None:
    policy = RetryPolicy(base_s=5, cap_s=60)
    rng = random.Random(7)
    delays = [backoff_delay(n, policy, rng) for n in range(1, 8)]
    assert 2.5 <= delays[0] <= 5 and 5 <= delays[1] <= 10 and 10 <= delays[2] <= 20
    assert all(30 <= d <= 60 for d in delays[4:])
    assert len({round(backoff_delay(3, policy), 6) for _ in range(20)}) > 1


def test_default_receiver_is_a_file_drop(tmp_path: Path) -> None:
    assert configured_receivers(Settings(data_dir=tmp_path)) == (f"file://{tmp_path.resolve()}/epr-outbox",)
    assert configured_receivers(Settings(data_dir=tmp_path, epr_receivers=("mllp://h:1",))) == ("mllp://h:1",)
    assert len(idempotency_key("mllp://h:1", "1.2.3")) == 20


async def test_enqueue_is_part_of_the_callers_transaction(epr_db: Database) -> None:
    document = sample_document()
    with pytest.raises(RuntimeError):
        async with epr_db.session() as session:
            await enqueue(session, document, ["mllp://127.0.0.1:1"])
            raise RuntimeError("the signature failed")
    assert await _rows(epr_db) == []
    async with epr_db.session() as session:
        await enqueue(session, document, ["mllp://127.0.0.1:1", "fhir+http://:tok@127.0.0.1:2/fhir"])
    async with epr_db.session() as session:  # a retried request adds nothing
        await enqueue(session, document, ["mllp://127.0.0.1:1"])
    rows = await _rows(epr_db)
    assert [(r.receiver_key, r.receiver_kind, r.status) for r in rows] == [
        ("mllp://127.0.0.1:1", "mllp", "pending"), ("fhir+http://127.0.0.1:2/fhir", "fhir", "pending")]
    assert "tok" not in rows[1].receiver_key


async def test_delivers_to_every_receiver(
    epr_db: Database, epr_receivers: tuple[MllpListener, FhirServer], tmp_path: Path
) -> None:
    listener, server = epr_receivers
    case = await add_case(epr_db)
    urls = [listener.url, server.url, f"file://{tmp_path}/drop"]
    first = sample_document()
    second = sample_document(version=2, set_root=first.set_id)
    async with epr_db.session() as session:
        await enqueue(session, first, urls, case_id=case.id, meeting_id=case.meeting_id, patient_id=case.patient_id)
        await enqueue(session, second, urls, case_id=case.id, meeting_id=case.meeting_id,
                      patient_id=case.patient_id)
    receivers = [open_receiver(u) for u in urls]
    worker = Worker(epr_db, receivers, policy=FAST)
    try:
        await _drain(worker)
    finally:
        for r in receivers:
            await r.close()
    rows = await _rows(epr_db)
    assert [r.status for r in rows] == ["delivered"] * 6
    assert all(r.attempts == 1 and r.delivered_at is not None for r in rows)
    # HL7: T02 then T10, each filed once, MSH-10 = the idempotency key.
    assert [m.split("|")[8] for m in listener.filed.values()] == ["MDM^T02^MDM_T02", "MDM^T10^MDM_T02"]
    assert set(listener.filed) == {r.idempotency_key for r in rows if r.receiver_kind == "mllp"}
    for text in listener.filed.values():  # each filed message passes hl7apy's strict validation
        tree = hl7.parse(text)
        tree.assign_field("DATA", "OBX", 1, 5, 1, 5)  # hl7apy reads the varies OBX-5 as ST(199)
        parse_message(str(tree), validation_level=VALIDATION_LEVEL.STRICT, find_groups=True).validate()
    for bundle in server.received:  # validated with the R4B models by the server, codes checked here
        check_provide_bundle(bundle)
    assert {d["status"] for d in server.documents()} == {"superseded", "current"}
    assert sorted(p.name for p in (tmp_path / "drop").iterdir()) == sorted([first.unique_id, second.unique_id])
    async with epr_db.session() as session:
        views = await deliveries_for(session, case_id=case.id)
        by_meeting = await deliveries_for(session, meeting_id=case.meeting_id)
    assert views == by_meeting and len(views) == 6
    assert {v.status for v in views} == {"delivered"}


async def test_ae_needs_attention_until_the_coordinator_retries(
    epr_db: Database, epr_receivers: tuple[MllpListener, FhirServer]
) -> None:
    listener, server = epr_receivers
    listener.mode, server.mode = "AE", "422"
    async with epr_db.session() as session:
        await enqueue(session, sample_document(), [listener.url, server.url])
    receivers = [open_receiver(listener.url), open_receiver(server.url)]
    worker = Worker(epr_db, receivers, policy=FAST)
    try:
        await _drain(worker)
        rows = await _rows(epr_db)
        assert [r.status for r in rows] == ["needs_attention", "needs_attention"]
        assert rows[0].attempts == rows[1].attempts == 1  # a permanent refusal is not retried
        assert rows[0].last_error == f"AE: {listener.error_text}"
        assert rows[1].last_error == "HTTP 422: error/business-rule: Patient not found for this INS"
        attempts = await _attempts(epr_db, rows[0].id or 0)
        assert [(a.outcome, a.summary) for a in attempts] == [("needs_attention", "AE")]
        async with epr_db.session() as session:
            with pytest.raises(NotFound):
                await retry(session, 10_000)
    except BaseException:
        for r in receivers:
            await r.close()
        raise
    listener.mode, server.mode = "AA", "ok"
    async with epr_db.session() as session:
        for row in await _rows(epr_db):
            await retry(session, row.id or 0, actor="secretariat")
    try:
        await _drain(worker)
    finally:
        for r in receivers:
            await r.close()
    rows = await _rows(epr_db)
    assert [r.status for r in rows] == ["delivered", "delivered"]
    assert [a.outcome for a in await _attempts(epr_db, rows[0].id or 0)] == ["needs_attention", "retried",
                                                                               "delivered"]
    async with epr_db.session() as session:
        with pytest.raises(Conflict):
            await retry(session, rows[0].id or 0)


async def test_receiver_down_then_back_delivers_once(
    epr_db: Database, epr_receivers: tuple[MllpListener, FhirServer]
) -> None:
    listener, _ = epr_receivers
    async with epr_db.session() as session:
        await enqueue(session, sample_document(), [listener.url])
    await listener.stop()
    receiver = open_receiver(listener.url + "?timeout=2")
    worker = Worker(epr_db, [receiver], policy=FAST)
    try:
        for _ in range(3):
            await worker.run_once()
            (row,) = await _rows(epr_db)
            if row.attempts >= 2:
                break
            await asyncio.sleep(0.05)
        (row,) = await _rows(epr_db)
        assert row.status == "pending" and row.attempts >= 2 and row.last_error
        await listener.start()
        await _drain(worker)
    finally:
        await receiver.close()
    (row,) = await _rows(epr_db)
    assert row.status == "delivered"
    assert len(listener.received) == 1 and len(listener.filed) == 1


async def test_a_failing_delivery_does_not_block_the_others_and_keeps_order(
    epr_db: Database, epr_receivers: tuple[MllpListener, FhirServer]
) -> None:
    """One patient's T02 keeps being refused (AR): the others go through, its T10 waits behind it."""
    listener, _ = epr_receivers
    stuck = sample_document(ins="180027512345678")
    correction = sample_document(version=2, set_root=stuck.set_id, ins="180027512345678")
    others = [sample_document() for _ in range(3)]
    async with epr_db.session() as session:
        await enqueue(session, stuck, [listener.url])  # first in the queue
        await enqueue(session, correction, [listener.url])
        for document in others:
            await enqueue(session, document, [listener.url])
    key = receiver_key(listener.url)
    stuck_key = idempotency_key(key, stuck.unique_id)
    correction_key = idempotency_key(key, correction.unique_id)
    listener.overrides[stuck_key] = "AR"
    receiver = open_receiver(listener.url)
    worker = Worker(epr_db, [receiver], policy=RetryPolicy(base_s=0.01, cap_s=0.02, max_attempts=3, lease_s=30))
    try:
        await _drain(worker)
        rows = {r.document_unique_id: r for r in await _rows(epr_db)}
        assert [rows[d.unique_id].status for d in others] == ["delivered"] * 3
        assert rows[stuck.unique_id].status == "needs_attention"
        assert rows[stuck.unique_id].attempts == 3
        assert rows[stuck.unique_id].last_error.startswith("gave up after 3 attempts; last: AR")  # type: ignore[union-attr]
        assert rows[correction.unique_id].status == "pending" and rows[correction.unique_id].attempts == 0
        assert correction_key not in {m.split("|")[9] for m in listener.received}  # never overtook its T02
        del listener.overrides[stuck_key]
        async with epr_db.session() as session:
            await retry(session, rows[stuck.unique_id].id or 0)
        await _drain(worker)
    finally:
        await receiver.close()
    rows = {r.document_unique_id: r for r in await _rows(epr_db)}
    assert rows[stuck.unique_id].status == rows[correction.unique_id].status == "delivered"
    filed = list(listener.filed)
    assert filed.index(stuck_key) < filed.index(correction_key)


async def test_status_view_shows_waiting_and_attention(
    epr_db: Database, epr_receivers: tuple[MllpListener, FhirServer]
) -> None:
    listener, _ = epr_receivers
    case = await add_case(epr_db)
    first = sample_document()
    second = sample_document(version=2, set_root=first.set_id)
    async with epr_db.session() as session:
        for document in (first, second):
            await enqueue(session, document, [listener.url], case_id=case.id, meeting_id=case.meeting_id)
    listener.mode = "AE"
    receiver = open_receiver(listener.url)
    try:
        await _drain(Worker(epr_db, [receiver], policy=FAST))
    finally:
        await receiver.close()
    async with epr_db.session() as session:
        views = await deliveries_for(session, case_id=case.id)
    assert [(v.document_version, v.status, v.waiting_for_previous, v.needs_attention) for v in views] == [
        (1, "needs_attention", False, True), (2, "pending", True, False)]
    assert views[0].last_error and listener.error_text in views[0].last_error


async def test_a_hanging_receiver_delays_no_one(
    epr_db: Database, epr_receivers: tuple[MllpListener, FhirServer]
) -> None:
    """An MLLP engine that takes messages and never answers: FHIR deliveries go on, and the MLLP queue is not
    sent one by one into the same timeout (the rest of the round is given back untried)."""
    listener, server = epr_receivers
    listener.mode = "silent"
    mllp_url = listener.url + "?timeout=2"
    async with epr_db.session() as session:
        for _ in range(3):
            await enqueue(session, sample_document(), [mllp_url])
        await enqueue(session, sample_document(), [server.url])
    receivers = [open_receiver(mllp_url), open_receiver(server.url)]
    worker = Worker(epr_db, receivers, policy=RetryPolicy(base_s=60, cap_s=120), poll_s=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        for _ in range(600):
            rows = await _rows(epr_db)
            fhir = [r for r in rows if r.receiver_kind == "fhir"]
            if fhir[0].status == "delivered":
                break
            await asyncio.sleep(0.02)
        assert fhir[0].status == "delivered"
        assert all(r.status != "delivered" for r in rows if r.receiver_kind == "mllp")
        for _ in range(600):
            mllp = [r for r in await _rows(epr_db) if r.receiver_kind == "mllp"]
            if all(r.status == "pending" for r in mllp) and sum(r.attempts for r in mllp) == 1:
                break
            await asyncio.sleep(0.02)
        assert sorted(r.attempts for r in mllp) == [0, 0, 1]
        assert all(r.status == "pending" for r in mllp)
        assert len(listener.received) == 1
    finally:
        stop.set()
        await task
        await worker.close()


async def test_run_worker_entry_point_with_the_default_file_drop(epr_db: Database, tmp_path: Path) -> None:
    """What ``rcp serve`` runs in its lifespan: settings in, deliveries to the embedded file drop out."""
    from rcp.epr.worker import run_worker

    settings = Settings(env="test", data_dir=tmp_path, database_url=epr_db.url)
    document = sample_document()
    async with epr_db.session() as session:
        await enqueue(session, document, configured_receivers(settings))
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(settings, epr_db, stop, poll_s=0.05))
    try:
        for _ in range(600):
            (row,) = await _rows(epr_db)
            if row.status == "delivered":
                break
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await task
    assert row.status == "delivered"
    folder = tmp_path / "epr-outbox" / document.unique_id
    assert (folder / "document.pdf").read_bytes() == document.pdf


def test_default_policy_outlasts_a_night_of_downtime() -> None:
    policy = RetryPolicy()
    low = sum(backoff_delay(n, policy, _Fixed(0.0)) for n in range(1, policy.max_attempts))
    high = sum(backoff_delay(n, policy, _Fixed(1.0)) for n in range(1, policy.max_attempts))
    assert 5 * 3600 < low < high < 12 * 3600


class _Fixed(random.Random):
    """Jitter at one end of its range."""

    def __init__(self, where: float) -> None:
        super().__init__(0)
        self.where = where

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.where
