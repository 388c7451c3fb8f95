"""The one mailer: a durable outbox that survives a relay outage and a restart, against a real SMTP server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from rcp.clock import SettableClock
from rcp.config import Settings
from rcp.db import Database, migrate
from rcp.mail import Mail, MailStatus, MailWorker, SmtpTransport, enqueue, mask_address, transport_for
from tests.factories import unique
from tests.fixtures.smtp import MailBox
from tests.servers import listening_socket


@pytest.mark.parametrize(("address", "shown"), [
    ("denis.guest@chu-x.fr", "d…@chu-x.fr"), ("D@chu-x.fr", "D…@chu-x.fr"), ("no-at-sign", "…"), ("@x.fr", "…"),
])
def test_the_coordinator_sees_a_masked_address(address: str, shown: str) -> None:
    assert mask_address(address) == shown


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Database]:
    """A database of its own: no other test's mail is due in it."""
    url = f"sqlite:///{tmp_path / 'mail.db'}"
    await asyncio.to_thread(migrate, url)
    db = Database(url)
    yield db
    await db.close()


async def test_a_mail_waits_out_a_relay_outage_and_a_restart(outbox: Database, settings: Settings,
                                                             smtp_server: MailBox) -> None:
    clock = SettableClock()
    mail_settings = replace(settings, clock=clock, mail_retry_s=60.0, mail_attempts=3)
    recipient = f"{unique('d')}@chu-x.fr"
    async with outbox.session() as s:
        await enqueue(s, kind="text", recipient=recipient, subject="RCP", body="Bonjour.")
    # The relay is away: a port that was ours and is closed again (connection refused).
    dead = listening_socket()
    port = dead.getsockname()[1]
    dead.close()
    down = MailWorker(mail_settings, outbox, transport=SmtpTransport(f"smtp://127.0.0.1:{port}", timeout_s=5),
                      composers={})
    assert await down.send_one()
    async with outbox.session() as s:
        row = (await s.exec(select(Mail))).one()
        assert row.status == MailStatus.pending and row.attempts == 1 and row.last_error
    assert not await down.send_one(), "not due again before its delay"
    # The service restarts with the relay back: a new worker finds the row once it is due.
    relay = transport_for(replace(mail_settings, smtp_url=smtp_server.url))
    assert relay is not None
    up = MailWorker(mail_settings, outbox, transport=relay, composers={})
    assert not await up.send_one()
    clock.advance(timedelta(seconds=61))
    assert await up.send_one()
    [message] = await smtp_server.wait_for(recipient)
    assert message["Subject"] == "RCP" and message["Auto-Submitted"] == "auto-generated"
    async with outbox.session() as s:
        sent = (await s.exec(select(Mail))).one()
        assert sent.status == MailStatus.sent and sent.attempts == 2


async def test_a_mail_fails_for_good_after_its_attempts(outbox: Database, settings: Settings) -> None:
    clock = SettableClock()
    mail_settings = replace(settings, clock=clock, mail_retry_s=1.0, mail_attempts=2)
    async with outbox.session() as s:
        await enqueue(s, kind="text", recipient="x@chu-x.fr", subject="RCP", body=".")
    dead = listening_socket()
    port = dead.getsockname()[1]
    dead.close()
    worker = MailWorker(mail_settings, outbox, transport=SmtpTransport(f"smtp://127.0.0.1:{port}", timeout_s=5),
                        composers={})
    assert await worker.send_one()
    clock.advance(timedelta(seconds=2))
    assert await worker.send_one()
    async with outbox.session() as s:
        row = (await s.exec(select(Mail))).one()
        assert row.status == MailStatus.failed and row.attempts == 2


def test_the_relay_is_chosen_by_url(tmp_path: Path) -> None:
    base = Settings(env="test", data_dir=tmp_path, secret_key="k" * 48)
    assert isinstance(transport_for(replace(base, smtp_url="smtps://u:p%40ss@relay.chu-x.fr")), SmtpTransport)
    relay = transport_for(replace(base, smtp_url="smtps://u:p%40ss@relay.chu-x.fr"))
    assert isinstance(relay, SmtpTransport) and relay.port == 465 and relay.password == "p@ss"
    assert transport_for(base) is not None  # development: a file drop under the data folder
