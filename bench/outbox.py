"""EPR outbox benchmark: deliveries per second and time from signature to ACK, against local receivers.

Runs the real path: ``enqueue`` in a committed transaction (SQLite, the embedded default), the worker claiming
and building MDM^T02 (hl7apy, strict) or the ITI-65 Bundle (R4B-validated), MLLP or HTTP on loopback, the
ACK parsed and the delivery recorded. The receivers are the test suite's real MLLP listener and FHIR server.

    .venv/bin/python bench/outbox.py       # < 1 min; writes bench/results/outbox.json
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlmodel import col, select

from rcp.clock import as_utc, utcnow
from rcp.db import Database, migrate
from rcp.epr.models import Delivery
from rcp.epr.outbox import enqueue
from rcp.epr.receivers import open_receiver
from rcp.epr.worker import RetryPolicy, Worker
from tests.epr.samples import sample_document
from tests.fixtures.receivers import FhirServer, MllpListener

PDF_BYTES = 30_000
THROUGHPUT_N = {"mllp": 400, "fhir": 150}
LATENCY_N = 100


async def _fresh_db(folder: Path, name: str, url: str = "") -> Database:
    url = url or f"sqlite:///{folder / name}.sqlite3"
    await asyncio.to_thread(migrate, url, "heads")
    return Database(url)


async def _wait_delivered(db: Database, count: int, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with db.session() as session:
            done = len((await session.exec(select(Delivery.id).where(Delivery.status == "delivered"))).all())
        if done >= count:
            return
        await asyncio.sleep(0.01)
    raise TimeoutError(f"only {done} of {count} deliveries arrived in {timeout} s")


async def throughput(folder: Path, url: str, kind: str, *, database_url: str = "") -> float:
    """Deliveries per second for a backlog (the receiver back after a night down)."""
    n = THROUGHPUT_N[kind]
    db = await _fresh_db(folder, f"throughput-{kind}", database_url)
    documents = [sample_document(pdf_size=PDF_BYTES) for _ in range(n)]
    async with db.session() as session:
        for document in documents:
            await enqueue(session, document, [url])
    receiver = open_receiver(url)
    worker = Worker(db, [receiver], policy=RetryPolicy(base_s=0.05, cap_s=0.1), batch_size=50, poll_s=0.005)
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(worker.run(stop))
    try:
        await _wait_delivered(db, n)
        elapsed = time.perf_counter() - started
    finally:
        stop.set()
        await task
        await receiver.close()
        await db.close()
    return n / elapsed


async def latency(folder: Path, url: str) -> list[float]:
    """Milliseconds from the signature's commit to the recorded ACK, one signature at a time (10 per second)."""
    db = await _fresh_db(folder, "latency")
    receiver = open_receiver(url)
    worker = Worker(db, [receiver], policy=RetryPolicy(base_s=0.05, cap_s=0.1), poll_s=1.0)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    committed: dict[str, datetime] = {}
    try:
        for _ in range(LATENCY_N):
            document = sample_document(pdf_size=PDF_BYTES)
            async with db.session() as session:
                await enqueue(session, document, [url])
            committed[document.unique_id] = utcnow()
            worker.wake()  # what the signing route does after its commit
            await asyncio.sleep(0.1)
        await _wait_delivered(db, LATENCY_N)
        async with db.session() as session:
            rows = (await session.exec(select(Delivery).order_by(col(Delivery.id)))).all()
    finally:
        stop.set()
        await task
        await receiver.close()
        await db.close()
    return [
        (as_utc(row.delivered_at) - committed[row.document_unique_id]).total_seconds() * 1000
        for row in rows
        if row.delivered_at is not None
    ]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def main() -> dict[str, float]:
    listener, server = MllpListener(), FhirServer()
    await listener.start()
    await server.start()
    try:
        with tempfile.TemporaryDirectory(prefix="rcp-bench-outbox-") as tmp:
            folder = Path(tmp)
            mllp_rate = await throughput(folder, listener.url, "mllp")
            fhir_rate = await throughput(folder, server.url, "fhir")
            acks = await latency(folder, listener.url)
            postgres_rate = await _on_postgres(folder, listener.url)
    finally:
        await listener.stop()
        await server.stop()
    return {
        "deliveries_per_s": round(mllp_rate, 1),
        "fhir_deliveries_per_s": round(fhir_rate, 1),
        "ack_ms_p50": round(statistics.median(acks), 1),
        "ack_ms_p99": round(_percentile(acks, 0.99), 1),
        "deliveries_per_s_postgres": round(postgres_rate, 1),
        "pdf_bytes": PDF_BYTES,
    }


async def _on_postgres(folder: Path, url: str) -> float:
    """The same MLLP backlog with the outbox on PostgreSQL (its own database, dropped after); -1 if unreachable."""
    import psycopg

    from tests.fixtures.postgres import create_database, drop_database

    try:
        name = await asyncio.to_thread(create_database)
    except psycopg.OperationalError:
        return -1.0
    try:
        return await throughput(
            folder, url, "mllp", database_url=f"postgresql://postgres@127.0.0.1:5432/{name}"
        )
    finally:
        await asyncio.to_thread(drop_database, name)


if __name__ == "__main__":
    figures = asyncio.run(main())
    width = max(map(len, figures))
    print(f"{'figure':<{width}}  value")
    for name, value in figures.items():
        print(f"{name:<{width}}  {value}")
    out = ROOT / "bench" / "results" / "outbox.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"figures": figures}, indent=2) + "\n")
