"""A real worker process, killed with SIGKILL in the middle of a delivery, then restarted."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from sqlmodel import col, select

from rcp.db import Database
from rcp.epr.models import Delivery, DeliveryAttempt
from rcp.epr.outbox import enqueue
from tests.epr.samples import sample_document
from tests.fixtures.receivers import FhirServer, MllpListener

ROOT = Path(__file__).resolve().parents[2]


async def _start_worker(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rcp.epr.worker", "--poll", "0.1", env=env, cwd=ROOT, stdout=out, stderr=out
        )


async def _status(db: Database) -> Delivery:
    async with db.session() as session:
        return (await session.exec(select(Delivery))).one()


async def test_killed_worker_delivers_after_restart_exactly_once(
    epr_db_url: str, epr_db: Database, epr_receivers: tuple[MllpListener, FhirServer], tmp_path: Path
) -> None:
    listener, _ = epr_receivers
    async with epr_db.session() as session:
        await enqueue(session, sample_document(), [listener.url])
    env = os.environ | {
        "RCP_ENV": "test",
        "RCP_DATA_DIR": str(tmp_path),
        "RCP_DATABASE_URL": epr_db_url,
        "RCP_EPR_RECEIVERS": listener.url,
        "RCP_EPR_LEASE_S": "2",
        "RCP_EPR_BACKOFF_S": "0.2",
        "PYTHONPATH": str(ROOT),
    }
    log = tmp_path / "worker.log"
    # The receiver takes the message but the worker dies before the ACK: the worst moment.
    listener.mode = "silent"
    first = await _start_worker(env, log)
    try:
        await asyncio.wait_for(listener.got_message.wait(), 60)
    finally:
        first.kill()
        await first.wait()
    row = await _status(epr_db)
    assert row.status == "sending" and row.attempts == 0

    listener.mode = "AA"
    second = await _start_worker(env, log)
    try:
        for _ in range(600):
            row = await _status(epr_db)
            if row.status == "delivered":
                break
            await asyncio.sleep(0.1)
    finally:
        second.terminate()
        assert await asyncio.wait_for(second.wait(), 30) == 0, log.read_text()
    assert row.status == "delivered", log.read_text()
    # Sent twice with the same MSH-10 (the first send was never acknowledged), filed once.
    control_ids = [m.split("|")[9] for m in listener.received]
    assert control_ids == [row.idempotency_key, row.idempotency_key]
    assert list(listener.filed) == [row.idempotency_key]
    async with epr_db.session() as session:
        attempts = (await session.exec(select(DeliveryAttempt).order_by(col(DeliveryAttempt.id)))).all()
    assert [a.outcome for a in attempts] == ["retry", "delivered"]
    assert "lease expired" in attempts[0].summary and row.attempts == 2
