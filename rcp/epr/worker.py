"""The delivery worker: claims due deliveries, sends them, records every attempt, backs off, gives up loudly.

Runs inside ``rcp serve`` by default and as ``rcp worker`` (or ``python -m rcp.epr.worker``) at scale; several
workers may run together against one database:

- **Claiming.** PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED`` then mark the rows ``sending`` with a lease
  and a claim token, in one short transaction, so two workers never hold the same row. SQLite (one writer at a
  time): a conditional ``UPDATE ... WHERE id = ? AND <still due>``; a row count of 0 means another worker won.
- **Crashes.** A worker that dies mid-send leaves its rows ``sending``; once the lease expires another worker
  takes them again and resends with the same idempotency key (MSH-10, FHIR identifiers), which the receiver
  files once. Nothing pending is lost: rows only leave the table's queue when a receiver confirmed them.
- **Order.** A version is not claimed while an earlier version of the same document set is undelivered on the
  same receiver: a T10 correction never overtakes its T02, and a withdrawal (T11) never overtakes the filing of
  the version it withdraws.
- **Fairness.** Due rows are taken by ``next_attempt_at``; a failing one is pushed back by its backoff, so it
  goes to the back of its receiver's queue and never blocks the ones behind it.
- **Backoff.** Exponential with jitter (half to full delay), capped; after ``max_attempts`` transient failures,
  or at once on a permanent refusal (AE, 4xx), the delivery needs attention and waits for the coordinator.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import secrets
import signal
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from rcp.clock import utcnow
from rcp.config import Settings
from rcp.db import Database, is_sqlite
from rcp.epr.document import SignedDocument
from rcp.epr.models import Delivery, DeliveryAction, DeliveryAttempt, DeliveryStatus
from rcp.epr.outbox import configured_receivers
from rcp.epr.receivers import Outcome, Receiver, Verdict, open_receiver

__all__ = ["RetryPolicy", "Worker", "backoff_delay", "build_worker", "main", "run_worker"]

logger = logging.getLogger(__name__)

_T = Delivery.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    #: First retry after about ``base_s``, doubling up to ``cap_s``: 5 s, 10 s, 20 s ... 1 h.
    base_s: float = 5.0
    cap_s: float = 3600.0
    #: Transient failures before "needs attention": with the defaults, 6 to 11 hours of trying (jitter), so a
    #: receiver down for the night is caught up with in the morning, and one down longer is shown to a person.
    max_attempts: int = 20
    #: How long a claim holds; must exceed a receiver's timeout, or a slow send could be taken twice.
    lease_s: float = 300.0

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.cap_s < self.base_s:
            raise ValueError("RetryPolicy needs 0 < base_s <= cap_s")
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")


def backoff_delay(attempts: int, policy: RetryPolicy, rng: random.Random | None = None) -> float:
    """Seconds before attempt ``attempts + 1``: exponential, capped, with "equal jitter" (half fixed, half random)
    so that deliveries failing together (a receiver down for the night) do not all retry in the same second."""
    delay = min(policy.cap_s, policy.base_s * float(2 ** max(0, attempts - 1)))
    jitter: float = (rng or random.Random()).uniform(0, delay / 2)
    return delay / 2 + jitter


@dataclass(frozen=True)
class _Claim:
    id: int
    token: str
    receiver_key: str
    idempotency_key: str
    attempts: int
    payload: dict[str, object]


class Worker:
    """Delivers due rows to its receivers: ``await worker.run(stop)``, ``run_once()`` for one round each.

    Each receiver has its own loop, so a receiver that hangs until its timeout never delays the others.
    ``close()`` closes the receivers the worker was given.
    """

    def __init__(
        self,
        db: Database,
        receivers: Iterable[Receiver],
        *,
        policy: RetryPolicy | None = None,
        batch_size: int = 8,
        poll_s: float = 1.0,
        name: str = "",
    ) -> None:
        self.db = db
        self.receivers: Mapping[str, Receiver] = {r.key: r for r in receivers}
        self.policy = policy or RetryPolicy()
        self.batch_size = batch_size
        self.poll_s = poll_s
        self.name = name or f"worker-{os.getpid()}-{secrets.token_hex(3)}"
        # MLLP is one message at a time per connection; HTTP and files may overlap a little.
        self._limits = {key: asyncio.Semaphore(max(1, getattr(r, "concurrency", 1)))
                        for key, r in self.receivers.items()}
        self._wakes = {key: asyncio.Event() for key in self.receivers}
        self._rng = random.Random()

    def wake(self) -> None:
        """Look for work now (call after committing a signature) instead of at the next poll."""
        for event in self._wakes.values():
            event.set()

    async def run(self, stop: asyncio.Event) -> None:
        logger.info("%s: delivering to %d receiver(s)", self.name, len(self.receivers))
        async with asyncio.TaskGroup() as group:
            for receiver in self.receivers.values():
                group.create_task(self._loop(receiver, stop))
        logger.info("%s: stopped", self.name)

    async def _loop(self, receiver: Receiver, stop: asyncio.Event) -> None:
        wake = self._wakes[receiver.key]
        while not stop.is_set():
            try:
                done = await self._round(receiver)
            except Exception:  # a database hiccup must not end the worker: log, wait, go on
                logger.exception("%s: round for %s failed; next try in %s s", self.name, receiver.key, self.poll_s)
                done = 0
            if done:
                continue
            wake.clear()
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
            try:
                await asyncio.wait(waiters, timeout=self.poll_s, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
                await asyncio.gather(*waiters, return_exceptions=True)

    async def run_once(self) -> int:
        """One round for every receiver: the number of deliveries taken."""
        counts = await asyncio.gather(*(self._round(r) for r in self.receivers.values()))
        return sum(counts)

    async def _round(self, receiver: Receiver) -> int:
        claims = await self._claim(receiver.key)
        unreachable = asyncio.Event()
        if claims:
            async with asyncio.TaskGroup() as group:
                for claim in claims:
                    group.create_task(self._deliver(receiver, claim, unreachable))
        return len(claims)

    async def close(self) -> None:
        for receiver in self.receivers.values():
            with contextlib.suppress(Exception):
                await receiver.close()

    # -- claiming ------------------------------------------------------------------------------------------

    def _due(self, receiver_key: str, now: datetime) -> sa.ColumnElement[bool]:
        earlier = _T.alias("earlier")
        blocked = sa.exists().where(
            earlier.c.receiver_key == _T.c.receiver_key,
            earlier.c.document_set_id == _T.c.document_set_id,
            sa.or_(
                earlier.c.document_version < _T.c.document_version,
                # A withdrawal (MDM^T11) never overtakes the filing of the version it withdraws.
                sa.and_(earlier.c.document_version == _T.c.document_version,
                        earlier.c.action == DeliveryAction.file.value,
                        _T.c.action == DeliveryAction.withdraw.value),
            ),
            earlier.c.status != DeliveryStatus.delivered.value,
        )
        return sa.and_(
            _T.c.receiver_key == receiver_key,
            sa.or_(
                sa.and_(_T.c.status == DeliveryStatus.pending.value, _T.c.next_attempt_at <= now),
                sa.and_(_T.c.status == DeliveryStatus.sending.value, _T.c.lease_until < now),
            ),
            ~blocked,
        )

    async def _claim(self, receiver_key: str) -> list[_Claim]:
        now = utcnow()
        token = secrets.token_hex(16)
        lease = now + timedelta(seconds=self.policy.lease_s)
        claimed: list[int] = []
        async with self.db.session() as session:
            # Core statements on the session's connection: same transaction, no ORM identity map needed.
            conn = await session.connection()
            candidates = (
                sa.select(_T.c.id, _T.c.status)
                .where(self._due(receiver_key, now))
                .order_by(_T.c.next_attempt_at, _T.c.id)
                .limit(self.batch_size)
            )
            mark = {"status": DeliveryStatus.sending.value, "lease_until": lease, "claim_token": token}
            found: list[tuple[int, str]] = []
            if is_sqlite(self.db.url):
                for delivery_id, status in (await conn.execute(candidates)).all():
                    result = await conn.execute(
                        sa.update(_T).where(_T.c.id == delivery_id, self._due(receiver_key, now)).values(**mark)
                    )
                    if result.rowcount == 1:
                        found.append((delivery_id, status))
            else:
                locked = candidates.with_for_update(skip_locked=True, of=_T)
                found = [(r.id, r.status) for r in (await conn.execute(locked)).all()]
                if found:
                    await conn.execute(sa.update(_T).where(_T.c.id.in_([i for i, _ in found])).values(**mark))
            claimed = [delivery_id for delivery_id, _ in found]
            # A claim that was "sending" belonged to a worker that stopped before the answer: that try counts.
            lost = [delivery_id for delivery_id, status in found if status == DeliveryStatus.sending.value]
            if lost:
                await conn.execute(sa.update(_T).where(_T.c.id.in_(lost)).values(attempts=_T.c.attempts + 1))
                await conn.execute(sa.insert(DeliveryAttempt.__table__), [  # type: ignore[attr-defined]
                    {"delivery_id": i, "at": now, "outcome": Verdict.retry.value, "duration_ms": 0,
                     "summary": "no answer recorded: the worker stopped (lease expired)", "answer": "",
                     "worker": self.name[:100]}
                    for i in lost
                ])
            if not claimed:
                return []
            rows = (await conn.execute(
                sa.select(_T.c.id, _T.c.receiver_key, _T.c.idempotency_key, _T.c.attempts, _T.c.payload)
                .where(_T.c.id.in_(claimed)).order_by(_T.c.next_attempt_at, _T.c.id)
            )).all()
        return [_Claim(r.id, token, r.receiver_key, r.idempotency_key, r.attempts, r.payload) for r in rows]

    # -- delivering ----------------------------------------------------------------------------------------

    async def _deliver(self, receiver: Receiver, claim: _Claim, unreachable: asyncio.Event) -> None:
        async with self._limits[receiver.key]:
            if unreachable.is_set():
                # The receiver did not answer the previous one: do not queue up behind its timeouts.
                await self._release(claim)
                return
            started = time.perf_counter()
            try:
                document = SignedDocument.from_json(dict(claim.payload))
                outcome = await receiver.deliver(document, idempotency_key=claim.idempotency_key)
            except ValueError as exc:  # the stored payload no longer builds a valid message: a person must look
                outcome = Outcome(Verdict.needs_attention, "invalid document", str(exc)[:1000])
            except Exception as exc:  # a bug in a receiver must not lose the delivery: retry later
                logger.exception("%s: delivery %d raised", self.name, claim.id)
                outcome = Outcome(Verdict.retry, f"internal error ({type(exc).__name__})")
            if not outcome.reached:
                unreachable.set()
            elapsed_ms = int((time.perf_counter() - started) * 1000)
        await self._record(claim, outcome, elapsed_ms)

    async def _release(self, claim: _Claim) -> None:
        """Give a claim back untried (no attempt counted), due after a short backoff."""
        values = {
            "status": DeliveryStatus.pending.value, "lease_until": None, "claim_token": None,
            "next_attempt_at": utcnow() + timedelta(seconds=backoff_delay(1, self.policy, self._rng)),
        }
        async with self.db.session() as session:
            conn = await session.connection()
            await conn.execute(
                sa.update(_T).where(_T.c.id == claim.id, _T.c.claim_token == claim.token).values(**values)
            )

    async def _record(self, claim: _Claim, outcome: Outcome, elapsed_ms: int) -> None:
        now = utcnow()
        attempts = claim.attempts + 1
        values: dict[str, object] = {"attempts": attempts, "lease_until": None, "claim_token": None}
        verdict = outcome.verdict
        if verdict is Verdict.retry and attempts >= self.policy.max_attempts:
            verdict = Verdict.needs_attention
            values["last_error"] = f"gave up after {attempts} attempts; last: {outcome.summary}. {outcome.answer}"
        if verdict is Verdict.delivered:
            values.update(status=DeliveryStatus.delivered.value, delivered_at=now, last_error=None)
        elif verdict is Verdict.needs_attention:
            values.setdefault("last_error", f"{outcome.summary}: {outcome.answer}".strip(": "))
            values["status"] = DeliveryStatus.needs_attention.value
        else:
            values.update(
                status=DeliveryStatus.pending.value,
                next_attempt_at=now + timedelta(seconds=backoff_delay(attempts, self.policy, self._rng)),
                last_error=f"{outcome.summary}: {outcome.answer}".strip(": "),
            )
        async with self.db.session() as session:
            # Only the holder of the claim moves the row; a worker whose lease ran out records its attempt only.
            conn = await session.connection()
            result = await conn.execute(
                sa.update(_T).where(_T.c.id == claim.id, _T.c.claim_token == claim.token).values(**values)
            )
            session.add(DeliveryAttempt(
                delivery_id=claim.id, at=now, outcome=outcome.verdict.value, summary=outcome.summary[:200],
                answer=outcome.answer[:2000], duration_ms=elapsed_ms, worker=self.name[:100],
            ))
        if result.rowcount != 1:
            logger.warning("%s: delivery %d was claimed again before its answer came back", self.name, claim.id)
        log = logger.info if verdict is Verdict.delivered else logger.warning
        log("%s: delivery %d to %s: %s (%s, attempt %d, %d ms)", self.name, claim.id, claim.receiver_key,
            verdict.value, outcome.summary, attempts, elapsed_ms)


async def run_worker(
    settings: Settings,
    db: Database,
    stop_event: asyncio.Event,
    *,
    policy: RetryPolicy | None = None,
    poll_s: float = 1.0,
    receivers: Sequence[str] | None = None,
) -> None:
    """The entry point for ``rcp serve`` (in the lifespan's task group) and ``rcp worker``: deliver until
    ``stop_event`` is set, then close the receivers. The database is the caller's (we do not close it)."""
    worker = build_worker(settings, db, policy=policy, poll_s=poll_s, receivers=receivers)
    try:
        await worker.run(stop_event)
    finally:
        await worker.close()


def build_worker(
    settings: Settings,
    db: Database,
    *,
    policy: RetryPolicy | None = None,
    poll_s: float = 1.0,
    receivers: Sequence[str] | None = None,
) -> Worker:
    """A worker for the configured receivers, for a lifespan that wants to keep it (``app.state.epr_worker``,
    whose ``wake()`` the signing and retry routes call after their commit). Close it with ``await close()``."""
    token = settings.epr_fhir_token
    opened = [open_receiver(url, token=token) for url in (receivers or configured_receivers(settings))]
    return Worker(db, opened, policy=policy, poll_s=poll_s, name=f"{settings.node_id}-epr")


def _policy_from_env() -> RetryPolicy:
    """Tuning for operations and tests (``RCP_EPR_BACKOFF_S``, ``RCP_EPR_MAX_ATTEMPTS``, ``RCP_EPR_LEASE_S``)."""
    defaults = RetryPolicy()
    base = float(os.environ.get("RCP_EPR_BACKOFF_S", defaults.base_s))
    return RetryPolicy(
        base_s=base,
        cap_s=max(base, float(os.environ.get("RCP_EPR_BACKOFF_CAP_S", defaults.cap_s))),
        max_attempts=int(os.environ.get("RCP_EPR_MAX_ATTEMPTS", defaults.max_attempts)),
        lease_s=float(os.environ.get("RCP_EPR_LEASE_S", defaults.lease_s)),
    )


async def _main_async(settings: Settings, poll_s: float) -> None:
    db = Database(settings.database_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await run_worker(settings, db, stop, policy=_policy_from_env(), poll_s=poll_s)
    finally:
        await db.close()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rcp.epr.worker``: a standalone delivery worker configured by ``RCP_*`` variables."""
    parser = argparse.ArgumentParser(prog="rcp-epr-worker", description=main.__doc__)
    parser.add_argument("--poll", type=float, default=float(os.environ.get("RCP_EPR_POLL_S", "1.0")),
                        help="seconds between looks at the outbox when idle")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_main_async(Settings.from_env(), args.poll))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
