"""Shared fixtures: a migrated database, the app served for real, signed-in clients.

Expensive servers (Orthanc, Chromium, receivers) live in ``tests/fixtures`` as plugins, one per test session.
Every server a test starts goes through ``tests/servers.py`` (see tests/README.md).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from rcp.app import create_app
from rcp.clock import SettableClock
from rcp.config import Settings
from rcp.db import Database, migrate
from tests import factories
from tests.factories import CHEAP_ARGON2, SECRET_KEY, TOTP_STEP_S, MadeUser, credentials
from tests.servers import ServerThread

if TYPE_CHECKING:  # a plugin (tests/fixtures): imported here it could not be assertion-rewritten
    from tests.fixtures.smtp import MailBox

#: Every module in tests/fixtures is a plugin: one place for the real servers the suite starts once.
pytest_plugins: list[str] = sorted(
    f"tests.fixtures.{path.stem}" for path in (Path(__file__).parent / "fixtures").glob("*.py")
    if path.stem != "__init__"
)

DEMO_PASSWORD = "rcp-demo-2026"


#: Browser tests drive Chromium through whole meetings: longer than the default per-test timeout (pyproject.toml).
BROWSER_TIMEOUT_S = 300


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give ``browser`` tests their longer timeout, unless a test sets its own ``@pytest.mark.timeout``."""
    for item in items:
        if item.get_closest_marker("browser") is not None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(BROWSER_TIMEOUT_S))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rcp-data")


@pytest.fixture(scope="session")
def settings(data_dir: Path, smtp_server: MailBox) -> Settings:
    """Settings for the shared test app: SQLite in a temporary data folder, migrated with alembic; the cheapest
    argon2 cost, a clock the ``clock`` fixture moves, and mail through the test SMTP server (``smtp_server``)."""
    # No session cache: tests that end a session in the database expect the next request to be refused. Every test
    # signs in from 127.0.0.1: the per-address sign-in throttle is proved on apps of their own
    # (tests/security/test_login.py), not on the shared one, where the suite's refusals would add up.
    settings = Settings(env="test", data_dir=data_dir, secret_key=SECRET_KEY, totp_step_s=TOTP_STEP_S,
                    signin_free_per_address=1_000_000,
                    default_locale="en", session_cache_s=0, argon2=CHEAP_ARGON2, clock=SettableClock(),
                    smtp_url=smtp_server.url, mail_from="rcp@chu-x.example",
                    mail_retry_s=0.2)
    factories.CLOCK[0] = settings.clock  # second-factor codes follow the shared app's time (tests move it)
    return settings


@pytest.fixture
def clock(settings: Settings) -> Iterator[SettableClock]:
    """The shared app's clock, to move time forward (``clock.advance(timedelta(hours=2))``) instead of sleeping;
    back to real time after the test."""
    assert isinstance(settings.clock, SettableClock)
    settings.clock.reset()
    try:
        yield settings.clock
    finally:
        settings.clock.reset()


@pytest.fixture(scope="session")
def migrated(settings: Settings) -> str:
    migrate(settings.database_url)
    return settings.database_url


@pytest.fixture(scope="session")
async def db(migrated: str, settings: Settings) -> AsyncIterator[Database]:
    database = Database(migrated)
    from rcp.demo import load_demo
    from rcp.epr.outbox import configured_receivers

    # The demo's history records its past deliveries for the shared app's receivers (tests/test_demo_history.py).
    await load_demo(database, argon2=CHEAP_ARGON2, secret_key=SECRET_KEY, receivers=configured_receivers(settings))
    yield database
    await database.close()


@pytest.fixture(scope="session")
def live_server(settings: Settings, db: Database) -> Iterator[ServerThread]:
    """The whole app served for real on loopback (its own engine on the same migrated database)."""
    with ServerThread(create_app(settings)) as server:
        yield server


@dataclass
class Client:
    """An httpx client signed in as one demo user, sending the CSRF header on unsafe requests."""

    http: httpx.AsyncClient
    csrf: str
    me: dict[str, Any]

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if method.upper() not in {"GET", "HEAD", "OPTIONS"}:
            headers.setdefault("X-CSRF-Token", self.csrf)
        return await self.http.request(method, url, headers=headers, **kwargs)

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", url, **kwargs)

    async def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PUT", url, **kwargs)

    async def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PATCH", url, **kwargs)

    async def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("DELETE", url, **kwargs)


async def sign_in(base_url: str, username: str, password: str = DEMO_PASSWORD) -> Client:
    """Signed in through the API with the password and the account's current second-factor code."""
    http = httpx.AsyncClient(base_url=base_url, timeout=30)
    response = await http.post("/api/session", json=credentials(username, password))
    assert response.status_code == 201, response.text
    me = response.json()
    return Client(http=http, csrf=me["csrf_token"], me=me)


@pytest.fixture
async def login(live_server: ServerThread) -> AsyncIterator[Any]:
    """``await login("secretariat")`` (a demo user) or ``await login(made_user)`` (a user from
    ``tests.factories``) gives a signed-in client; all are closed after the test."""
    clients: list[Client] = []

    async def _login(user: str | MadeUser, password: str = DEMO_PASSWORD) -> Client:
        if isinstance(user, MadeUser):
            username, password = user.username, user.password
        else:
            username = user
        client = await sign_in(live_server.url, username, password)
        clients.append(client)
        return client

    yield _login
    await asyncio.gather(*(c.http.aclose() for c in clients))


@pytest.fixture
async def anonymous(live_server: ServerThread) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        yield http


def _random_order(config: pytest.Config) -> str:
    seed = getattr(config.option, "randomly_seed", None)
    if seed is None or not config.pluginmanager.has_plugin("randomly"):
        return "random order: off (-p no:randomly)"
    return f"random order: replay with -p randomly --randomly-seed={seed}"


def pytest_sessionstart(session: pytest.Session) -> None:
    """The seed at the top of each run, also under ``-q`` (which hides pytest-randomly's own header line)."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(_random_order(session.config))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """... and again at the bottom, next to the failures it replays."""
    if exitstatus != 0:
        terminalreporter.write_line(_random_order(config))


os.environ.setdefault("PYDICOM_NO_DOWNLOAD", "1")
