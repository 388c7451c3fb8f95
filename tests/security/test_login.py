"""Attacks on sign-in and bearer tokens (issue 13, findings 8 and 13).

The story of finding 8: a lock-out that counted failures after the check lost counts under parallel guesses,
let anyone lock a named physician out before a meeting (five wrong passwords and her right one was refused), told
known accounts from unknown ones (only a known one could be "locked"), and hashed on the event loop, so a login
flood stalled every room. Finding 13: a bearer token could be made for an administrator and lived for ever.

Each test serves the app of its own (``ServerThread``: its own throttle in memory and a clock it moves instead of
sleeping) on the shared test database, and makes its own accounts; everything goes over HTTP (and, for tokens, the
``rcp`` command as an operator runs it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import argon2
import httpx
import pytest
from sqlmodel import col, select

from rcp.app import create_app
from rcp.auth.models import AuditEvent, Role
from rcp.clock import SettableClock
from rcp.config import Settings
from rcp.db import Database, migrate
from tests.factories import credentials, make_clinician, make_user, unique
from tests.servers import ServerThread, until

WRONG = "not-her-password-2026"
#: Sign-in failures of one account from one address that cost nothing (rcp.auth.throttle.Backoff's default).
FREE = 3
#: Failed sign-ins from one address, whatever the account, that cost nothing (Settings' default).
ADDRESS_FREE = Settings(env="test").signin_free_per_address


@asynccontextmanager
async def service(settings: Settings, **changes: Any) -> AsyncIterator[tuple[httpx.AsyncClient, SettableClock]]:
    """The app served on its own (own throttle, own clock) over the shared database; an HTTP client to it."""
    clock = SettableClock()
    # The shared settings do not throttle addresses (every test signs in from 127.0.0.1): these apps do.
    changes = {"signin_free_per_address": ADDRESS_FREE} | changes
    own = dataclasses.replace(settings, clock=clock, embedded_worker=False, **changes)
    with ServerThread(create_app(own)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            yield http, clock


async def _attempt(http: httpx.AsyncClient, username: str, password: str, *, address: str = "",
                   clock: SettableClock | None = None) -> httpx.Response:
    """A sign-in with the current second-factor code (read from ``clock``, the app's, when it was moved)."""
    headers = {"X-Forwarded-For": address} if address else {}
    return await http.post("/api/session", json=credentials(username, password, clock=clock), headers=headers)


async def _failures(db: Database, since: int) -> list[AuditEvent]:
    """Refused sign-ins audited after audit row ``since``: 110114 outcome 4, or 110113 (throttled)."""
    async with db.session() as s:
        rows = (await s.exec(select(AuditEvent).where(col(AuditEvent.id) > since,
                                                      col(AuditEvent.event_code).in_(["110114", "110113"]),
                                                      col(AuditEvent.outcome) > 0))).all()
        return list(rows)


async def _last_audit_id(db: Database) -> int:
    async with db.session() as s:
        return (await s.exec(select(col(AuditEvent.id)).order_by(col(AuditEvent.id).desc()).limit(1))).first() or 0


async def test_a_parallel_burst_of_guesses_is_counted_whole(settings: Settings, db: Database) -> None:
    """Twelve wrong passwords at once: only the free ones are checked, the rest wait (429), and all are audited."""
    user = await make_clinician(db, "surgeon")
    since = await _last_audit_id(db)
    async with service(settings) as (http, _clock):
        answers = await asyncio.gather(*(_attempt(http, user.username, WRONG) for _ in range(12)))
    statuses = sorted(a.status_code for a in answers)
    checked = statuses.count(401)
    assert checked <= FREE, f"{checked} of 12 parallel guesses were checked: the count lost some ({statuses})"
    assert set(statuses) == {401, 429}, statuses
    assert all(a.headers.get("retry-after") for a in answers if a.status_code == 429)
    assert len(await _failures(db, since)) == 12, "every refused sign-in is audited"


async def test_guesses_cannot_lock_a_physician_out(settings: Settings, db: Database) -> None:
    """Someone who knows her user name guesses wrong from their own workstation, waiting out every delay; she
    still signs in with her right password from hers."""
    physician = await make_clinician(db, "medical_oncologist")
    async with service(settings, trusted_proxies=("127.0.0.1",)) as (http, clock):
        for _ in range(9):
            clock.advance(timedelta(minutes=16))  # past the longest wait: every guess is really checked
            answer = await _attempt(http, physician.username, WRONG, address="203.0.113.66")
            assert answer.status_code == 401, answer.text
        since = await _last_audit_id(db)
        mine = await _attempt(http, physician.username, physician.password, address="10.20.30.40", clock=clock)
        assert mine.status_code == 201, f"the physician is locked out by someone else's guesses: {mine.text}"
    async with db.session() as s:
        login = (await s.exec(select(AuditEvent).where(col(AuditEvent.id) > since,
                                                       AuditEvent.user_id == physician.id))).first()
        assert login is not None and login.source == "10.20.30.40", "the proxy's X-Forwarded-For is the source"


async def test_unknown_and_known_accounts_get_the_same_answers(settings: Settings, db: Database) -> None:
    """The same statuses and bodies, attempt after attempt (throttled ones included), whether the account exists,
    exists but is deactivated, or does not."""
    known = await make_clinician(db, "radiotherapist")
    service_account = await make_user(db, role=Role.service, password="")
    async with service(settings, trusted_proxies=("127.0.0.1",)) as (http, _clock):
        async def answers(username: str, address: str) -> list[tuple[int, str]]:
            out = []
            for _ in range(6):
                r = await _attempt(http, username, WRONG, address=address)
                out.append((r.status_code, r.text))
            return out

        async def page(username: str, address: str) -> tuple[int, bool]:
            """The sign-in page's answer: its status, and whether it says to wait."""
            form = await http.get("/login")
            token = re.search(r'name="login_csrf" value="([^"]+)"', form.text)
            assert token is not None
            r = await http.post("/login", headers={"X-Forwarded-For": address},
                                data={"username": username, "password": WRONG, "login_csrf": token.group(1)})
            return r.status_code, "wait a moment" in r.text

        nobody = unique("nobody")
        of_known = await answers(known.username, "10.0.0.1")
        of_unknown = await answers(nobody, "10.0.0.2")
        of_service = await answers(service_account.username, "10.0.0.3")
        pages = [await page(known.username, "10.0.0.1"), await page(nobody, "10.0.0.2")]
    assert pages == [(429, True)] * 2, pages
    assert of_known == of_unknown, "a known account is answered differently from an unknown one"
    assert of_service == of_unknown
    assert [status for status, _ in of_known] == [401] * FREE + [429] * (6 - FREE)


@pytest.fixture
def hasher_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """Each argon2 verification records whether it ran on a thread with a running event loop (a spy: the real
    argon2 runs; there is no other way to see from outside which thread did the hashing)."""
    on_loop: list[bool] = []
    real = argon2.PasswordHasher.verify

    def verify(self: argon2.PasswordHasher, hash: str | bytes, password: str | bytes) -> bool:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return real(self, hash, password)

    monkeypatch.setattr(argon2.PasswordHasher, "verify", verify)
    yield on_loop


async def test_password_checks_run_off_the_event_loop(settings: Settings, db: Database,
                                                      hasher_threads: list[bool]) -> None:
    """A flood of sign-ins must not stall the rooms: argon2 runs in the thread pool, never on the loop."""
    user = await make_clinician(db, "pathologist")
    async with service(settings) as (http, _clock):
        await asyncio.gather(*(_attempt(http, user.username, WRONG) for _ in range(2)),
                             _attempt(http, unique("nobody"), WRONG))
        assert (await _attempt(http, user.username, user.password)).status_code == 201
    assert hasher_threads, "no password was checked"
    assert not any(hasher_threads), f"{hasher_threads.count(True)} of {len(hasher_threads)} argon2 checks ran on " \
                                    "the event loop"


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(settings: Settings, db: Database) -> None:
    """A guesser spraying one password over many accounts, each request claiming another address: the service
    trusts no proxy, so they all count for the peer's address, which is throttled; the trail names the peer."""
    targets = [unique("nobody") for _ in range(ADDRESS_FREE + 3)]
    since = await _last_audit_id(db)
    async with service(settings) as (http, _clock):
        answers = [await _attempt(http, name, WRONG, address=f"198.51.100.{i}") for i, name in enumerate(targets)]
    statuses = [a.status_code for a in answers]
    assert 429 in statuses, f"spoofed X-Forwarded-For escaped the per-address throttle: {statuses}"
    assert {e.source for e in await _failures(db, since)} == {"127.0.0.1"}


def _rcp(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCP_")}
    env |= {"RCP_DATA_DIR": str(settings.data_dir), "RCP_DATABASE_URL": settings.database_url, "RCP_ENV": "test"}
    return subprocess.run([sys.executable, "-m", "rcp.cli", *args], env=env, check=False, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture
async def own_database(settings: Settings, tmp_path: Path) -> AsyncIterator[tuple[Settings, Database]]:
    """Settings and a migrated database of the test's own: the ``rcp`` processes write to it while the service
    reads it, and the shared database stays out of it."""
    url = f"sqlite:///{tmp_path / 'rcp.sqlite3'}"
    await asyncio.to_thread(migrate, url)
    database = Database(url)
    try:
        yield dataclasses.replace(settings, data_dir=tmp_path, database_url=url), database
    finally:
        await database.close()


async def test_bearer_tokens_only_for_service_accounts_expire_and_are_revoked(
        own_database: tuple[Settings, Database]) -> None:
    settings, db = own_database
    admin = await make_user(db, role=Role.admin)
    person = await make_clinician(db, "surgeon")
    bridge = await make_user(db, role=Role.service, password="")
    for who in (admin, person):
        refused = await asyncio.to_thread(_rcp, settings, "token", "create", who.username)
        assert refused.returncode != 0, f"a bearer token was made for {who.role} {who.username}"
        assert "rcp_" not in refused.stdout
    name = unique("pacs-bridge")
    made = await asyncio.to_thread(_rcp, settings, "token", "create", bridge.username, "--name", name, "--days", "1")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    bearer = {"Authorization": f"Bearer {token}"}
    async with service(settings, session_cache_s=1.0) as (http, clock):
        assert (await http.get("/api/session", headers=bearer)).status_code == 200
        listed = await asyncio.to_thread(_rcp, settings, "token", "list")
        assert listed.returncode == 0, listed.stderr
        # id, name, account, created, expires, last used, revoked: never the token
        row = next(line.split("\t") for line in listed.stdout.splitlines() if f"\t{name}\t" in line)
        assert row[2] == bridge.username and row[6] == "no" and row[5] != "never", row
        assert token not in listed.stdout
        clock.advance(timedelta(days=1, minutes=1))
        assert (await http.get("/api/session", headers=bearer)).status_code == 401, "an expired token still works"
    # Another token, revoked while the service is caching it: refused within the cache delay.
    again = await asyncio.to_thread(_rcp, settings, "token", "create", bridge.username, "--name", name + "-2")
    token2 = again.stdout.strip()
    bearer2 = {"Authorization": f"Bearer {token2}"}
    async with service(settings, session_cache_s=1.0) as (http, _clock):
        assert (await http.get("/api/session", headers=bearer2)).status_code == 200
        listed = await asyncio.to_thread(_rcp, settings, "token", "list")
        token_id = next(line for line in listed.stdout.splitlines() if f"\t{name}-2\t" in line).split("\t")[0]
        revoked = await asyncio.to_thread(_rcp, settings, "token", "revoke", token_id)
        assert revoked.returncode == 0, revoked.stderr

        async def revoked_token_refused() -> bool:
            return (await http.get("/api/session", headers=bearer2)).status_code == 401

        # The bound only stops a hang; the node drops its cached check after session_cache_s (1 s here).
        await until(revoked_token_refused, "the revoked token to be refused")
