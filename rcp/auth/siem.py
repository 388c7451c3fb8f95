"""Forwarding the audit trail to the hospital's SIEM: RFC 5424 syslog messages over TLS (RFC 5425).

``RCP_AUDIT_SYSLOG_URL=syslog+tls://siem.chu-x.fr:6514`` turns it on (``RCP_AUDIT_SYSLOG_CA``: the PEM of the CA
that signed the SIEM's certificate, when it is not one the system trusts). The certificate and host name are
always verified: an audit trail sent to whoever answers would itself be a leak.

The trail in the database is the source of truth and the forwarder follows it like an outbox: it reads the events
after its cursor (``audit_forwarding``, one row per SIEM URL), sends them, then moves the cursor — delivery is at
least once, in order, and survives restarts and SIEM outages (it retries with a growing pause and logs why,
without the events' content). Each message carries the event's id (``ref``), so a SIEM can drop the rare
duplicate. With several nodes on PostgreSQL the cursor row is locked while a batch is sent (``FOR UPDATE SKIP
LOCKED``): one node forwards at a time.

Framing (RFC 5425 §4.3): octet counting, ``MSG-LEN SP SYSLOG-MSG``, one TLS connection kept open between batches.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from urllib.parse import urlsplit

from sqlmodel import col, select

from rcp.auth.audit import as_syslog
from rcp.auth.models import AuditEvent, AuditForwarding
from rcp.clock import utcnow
from rcp.config import Settings
from rcp.db import Database

__all__ = ["DEFAULT_PORT", "SyslogForwarder", "frame"]

logger = logging.getLogger(__name__)

#: RFC 5425 §4.1: syslog over TLS listens on 6514.
DEFAULT_PORT = 6514
BATCH = 500


def frame(message: str) -> bytes:
    """RFC 5425 octet-counting: the length of the UTF-8 message in bytes, a space, the message."""
    body = message.encode("utf-8")
    return f"{len(body)} ".encode("ascii") + body


class SyslogForwarder:
    """Follows ``audit_events`` and sends each new event to the SIEM; ``run(stop)`` until ``stop`` is set."""

    def __init__(self, settings: Settings, db: Database, *, interval_s: float = 1.0, max_pause_s: float = 60.0) -> None:
        parts = urlsplit(settings.audit_syslog_url)
        if parts.scheme != "syslog+tls" or not parts.hostname:
            raise ValueError(f"RCP_AUDIT_SYSLOG_URL must look like syslog+tls://host:6514 "
                             f"(got scheme {parts.scheme!r})")
        self.url = settings.audit_syslog_url
        self.host = parts.hostname
        self.port = parts.port or DEFAULT_PORT
        self.db = db
        self.interval_s = interval_s
        self.max_pause_s = max_pause_s
        self.hostname = urlsplit(settings.public_url).hostname or "rcp"
        self.context = ssl.create_default_context(cafile=settings.audit_syslog_ca or None)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._writer: asyncio.StreamWriter | None = None

    async def _connection(self) -> asyncio.StreamWriter:
        if self._writer is not None and not self._writer.is_closing():
            return self._writer
        _reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, ssl=self.context, server_hostname=self.host), 15)
        self._writer = writer
        return writer

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, ssl.SSLError):
                pass  # the SIEM went away first: nothing left to flush

    async def forward_once(self) -> int:
        """Send the events after the cursor (one batch) and move the cursor; returns how many were sent."""
        async with self.db.session() as s:
            cursor = (await s.exec(select(AuditForwarding).where(AuditForwarding.url == self.url)
                                   .with_for_update(skip_locked=True))).first()
            if cursor is None:
                exists = (await s.exec(select(AuditForwarding.url).where(AuditForwarding.url == self.url))).first()
                if exists is not None:
                    return 0  # another node holds the lock and is forwarding this batch
                cursor = AuditForwarding(url=self.url, last_event_id=0)
                s.add(cursor)
                await s.flush()
            events = (await s.exec(select(AuditEvent).where(col(AuditEvent.id) > cursor.last_event_id)
                                   .order_by(col(AuditEvent.id)).limit(BATCH))).all()
            if not events:
                return 0
            writer = await self._connection()
            for line in as_syslog(events, hostname=self.hostname):
                writer.write(frame(line))
            await asyncio.wait_for(writer.drain(), 30)
            cursor.last_event_id = events[-1].id or cursor.last_event_id
            cursor.updated_at = utcnow()
            s.add(cursor)
            return len(events)

    async def run(self, stop: asyncio.Event) -> None:
        pause = self.interval_s
        try:
            while not stop.is_set():
                try:
                    sent = await self.forward_once()
                    pause = 0.0 if sent == BATCH else self.interval_s
                # SIEM down, certificate refused, database busy: never stop the service; the type says which.
                except Exception as exc:  # noqa: BLE001
                    await self.close()
                    pause = min(max(pause * 2, self.interval_s), self.max_pause_s)
                    logger.warning("audit forwarding to %s:%s failed (%s); retrying in %.0f s", self.host, self.port,
                                   type(exc).__name__, pause)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=pause or 0.001)
                except TimeoutError:
                    pass
        finally:
            await self.close()
