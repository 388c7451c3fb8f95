"""Deliveries resume after the receiver and the database come back: the outbox worker, on a real PostgreSQL reached
through tests.fixtures.faults.FaultProxy and a real MLLP listener, keeps going through both outages and files
every signed document exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from sqlmodel import func, select

from rcp.db import Database, migrate
from rcp.epr.models import Delivery, DeliveryAttempt
from rcp.epr.outbox import enqueue
from rcp.epr.receivers import open_receiver
from rcp.epr.worker import RetryPolicy, Worker
from tests.epr.samples import sample_document
from tests.faults.cluster import PG
from tests.fixtures.faults import FaultProxy
from tests.fixtures.postgres import create_database, drop_database
from tests.fixtures.receivers import FhirServer, MllpListener
from tests.servers import until

pytestmark = [pytest.mark.postgres]


async def test_deliveries_resume_after_the_receiver_and_the_database_come_back(
    epr_receivers: tuple[MllpListener, FhirServer],
) -> None:
    listener, _ = epr_receivers
    name = await asyncio.to_thread(create_database)
    direct = f"postgresql://postgres@{PG[0]}:{PG[1]}/{name}"
    proxy = FaultProxy(*PG).start()
    setup, worker_db = Database(direct), Database(f"postgresql://postgres@127.0.0.1:{proxy.port}/{name}")
    receiver = open_receiver(listener.url)
    stop = asyncio.Event()
    try:
        await asyncio.to_thread(migrate, direct, "heads")

        async def count(what: object) -> int:
            async with setup.session() as s:
                return int((await s.exec(select(func.count()).select_from(what))).one())  # type: ignore[arg-type]

        async def queue(n: int) -> None:
            async with setup.session() as s:
                for _ in range(n):
                    await enqueue(s, sample_document(), [listener.url])

        await queue(3)
        await listener.stop()  # the EPR's interface engine is down
        # A send whose outcome could not be written (the database went away right after) keeps its claim until the
        # lease ends, then goes again with the same idempotency key (rcp.epr.worker "Crashes"): a short lease here
        # so that the test does not wait the default five minutes.
        policy = RetryPolicy(base_s=0.05, cap_s=0.2, max_attempts=10_000, lease_s=2.0)
        worker = Worker(worker_db, [receiver], policy=policy, poll_s=0.05, name="faults")
        running = asyncio.create_task(worker.run(stop))
        await until(lambda: count(DeliveryAttempt), "failed attempts while the receiver is down")
        proxy.cut()  # and now the database too: the worker's rounds fail, it goes on
        await until(lambda: proxy.refused >= 5, "the worker to keep trying the database")
        await queue(3)  # signatures on another node meanwhile
        await listener.start()
        proxy.restore()

        async def all_delivered() -> bool:
            async with setup.session() as s:
                rows = (await s.exec(select(Delivery))).all()
            return len(rows) == 6 and all(r.status == "delivered" for r in rows)

        await until(all_delivered, "every delivery to go out once both are back", timeout=60)
        stop.set()
        await running
        sent = Counter(m.split("|")[9] for m in listener.received if m.startswith("MSH"))
        assert len(listener.filed) == 6 and len(sent) == 6  # every document filed once (a resend is filed once)
    finally:
        stop.set()
        await receiver.close()
        await setup.close()
        await worker_db.close()
        proxy.close()
        await asyncio.to_thread(drop_database, name)
