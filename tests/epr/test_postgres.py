"""Two workers on one PostgreSQL database: FOR UPDATE SKIP LOCKED means no delivery is sent twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from sqlmodel import select

from rcp.db import Database, migrate
from rcp.epr.models import Delivery, DeliveryAttempt
from rcp.epr.outbox import enqueue
from rcp.epr.receivers import open_receiver
from rcp.epr.worker import RetryPolicy, Worker
from tests.epr.samples import sample_document
from tests.fixtures.postgres import create_database, drop_database
from tests.fixtures.receivers import FhirServer, MllpListener

pytestmark = pytest.mark.postgres


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    name = await asyncio.to_thread(create_database)
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    try:
        await asyncio.to_thread(migrate, url, "heads")
        yield url
    finally:
        await asyncio.to_thread(drop_database, name)


async def test_two_workers_never_send_the_same_delivery_twice(
    pg_url: str, epr_receivers: tuple[MllpListener, FhirServer]
) -> None:
    listener, server = epr_receivers
    listener.delay_s = 0.005  # slow enough that both workers are busy at once
    databases = [Database(pg_url) for _ in range(3)]
    setup, *worker_dbs = databases
    documents = [sample_document() for _ in range(30)]
    corrections = [sample_document(version=2, set_root=d.set_id) for d in documents[:10]]
    async with setup.session() as session:
        for document in [*documents, *corrections]:
            await enqueue(session, document, [listener.url, server.url])
    receivers = [[open_receiver(listener.url), open_receiver(server.url)] for _ in worker_dbs]
    workers = [Worker(db, rs, policy=RetryPolicy(base_s=0.05, cap_s=0.1), batch_size=4, poll_s=0.05,
                      name=f"w{i}") for i, (db, rs) in enumerate(zip(worker_dbs, receivers, strict=True))]
    stop = asyncio.Event()
    try:
        async with asyncio.TaskGroup() as group:
            for worker in workers:
                group.create_task(worker.run(stop))
            for _ in range(1200):
                async with setup.session() as session:
                    rows = (await session.exec(select(Delivery))).all()
                    names = set((await session.exec(select(DeliveryAttempt.worker))).all())
                if all(r.status == "delivered" for r in rows):
                    break
                await asyncio.sleep(0.05)
            stop.set()
    finally:
        for rs in receivers:
            for r in rs:
                await r.close()
        for db in databases:
            await db.close()
    assert len(rows) == 80 and {r.status for r in rows} == {"delivered"}
    assert {r.attempts for r in rows} == {1}
    assert names == {"w0", "w1"}  # both workers really took part
    sent = Counter(m.split("|")[9] for m in listener.received)
    assert len(sent) == 40 and set(sent.values()) == {1}, "an MLLP message was sent twice"
    assert len(server.received) == 40
    assert len({b["identifier"]["value"] for b in server.received}) == 40, "a FHIR bundle was sent twice"
    # Order per document: each T10 after its T02.
    position = {m.split("|")[9]: i for i, m in enumerate(listener.received)}
    keys = {(r.document_set_id, r.document_version): r.idempotency_key for r in rows if r.receiver_kind == "mllp"}
    for correction in corrections:
        assert position[keys[(correction.set_id, 1)]] < position[keys[(correction.set_id, 2)]]
