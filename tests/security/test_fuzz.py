"""A property-based run over the service's own OpenAPI document, for every role: no answer is a 5xx (issue 13,
"Tests", last bullet).

Schemathesis reads ``/api/openapi.json`` as the running service serves it and generates requests for every
operation (path parameters, query strings and JSON bodies drawn from the declared schemas, valid and not); each
role (administrator, coordinator, clinician with their session cookie and CSRF header; a service account with its
bearer token) sends a small budget per operation. A 5xx means the service failed on input a client may send: the
answer should have been a 4xx naming what to fix. The test lists every operation and input that answered 5xx.

The service runs on a database of its own (migrated, demo data loaded) because the run creates boards, meetings
and patients at random; the shared test database stays out of it. Sign-in and sign-out (``/api/session`` POST and
DELETE) are left out: random sign-ins would trip the throttle, and signing out would end the run's own session.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

# A virtualenv made before schemathesis joined the test extras skips this module (the reason says how to install)
# instead of stopping the whole collection.
schemathesis = pytest.importorskip("schemathesis", reason="pip install -e '.[test]' (schemathesis)")

from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core import NotSet
from schemathesis.core.result import Ok

from rcp.app import create_app
from rcp.auth.models import Role, User
from rcp.auth.tokens import create_api_token
from rcp.config import Settings
from rcp.db import Database, migrate
from tests.conftest import sign_in
from tests.factories import CHEAP_ARGON2, make_user
from tests.servers import ServerThread

#: Examples per operation and role: small, so the whole run stays well under the per-test timeout on a shared
#: machine; the seed is derandomised so a failure replays.
EXAMPLES = 10

#: (method, path) not fuzzed, and why: see the module docstring.
EXCLUDED = {("POST", "/api/session"), ("DELETE", "/api/session")}

#: Demo accounts (rcp/demo.py) signed in with a session: administrator, coordinator, clinician.
SESSION_ROLES = {"admin": "admin", "coordinator": "secretariat", "clinician": "dr.radiologue"}


@dataclasses.dataclass
class Served:
    url: str
    db: Database


@pytest.fixture
async def own_service(settings: Settings, tmp_path: Path) -> AsyncIterator[Served]:
    url = f"sqlite:///{tmp_path / 'rcp.sqlite3'}"
    await asyncio.to_thread(migrate, url)
    database = Database(url)
    from rcp.demo import load_demo

    await load_demo(database, argon2=CHEAP_ARGON2, secret_key=settings.secret_key)
    own = dataclasses.replace(settings, data_dir=tmp_path, database_url=url, embedded_worker=False)
    try:
        with ServerThread(create_app(own)) as server:
            yield Served(url=server.url, db=database)
    finally:
        await database.close()


def _fuzz(document: dict[str, Any], base_url: str, headers: dict[str, str],
          cookies: dict[str, str]) -> list[str]:
    """Every (operation, input) that answered 5xx for one set of credentials."""
    schema = schemathesis.openapi.from_dict(document)
    found: list[str] = []
    for result in schema.get_all_operations():
        # An operation schemathesis cannot read fails the test: the document itself would be wrong.
        assert isinstance(result, Ok), result
        operation = result.ok()
        if (operation.method.upper(), operation.path) not in EXCLUDED:
            found += _fuzz_operation(operation, base_url, headers, cookies)
    return found


def _fuzz_operation(operation: Any, base_url: str, headers: dict[str, str], cookies: dict[str, str]) -> list[str]:
    found: list[str] = []
    name = f"{operation.method.upper()} {operation.path}"
    # Valid inputs and invalid ones (wrong types, nulls, out-of-range ids, missing fields): both must be answered,
    # the invalid ones with a 4xx.
    strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                         operation.as_strategy(GenerationMode.NEGATIVE))

    @given(case=strategy)
    @hypothesis_settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                         phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        response = case.call(base_url=base_url, headers=headers, cookies=cookies)
        if response.status_code >= 500:
            found.append(f"{name} -> {response.status_code}: path={case.path_parameters} query={case.query} "
                         f"body={None if isinstance(case.body, NotSet) else case.body!r}")

    run()
    return found


# About 4 roles x 10 examples x every operation: over a minute on a quiet 2-core machine, longer on a busy one.
@pytest.mark.timeout(420)
async def test_no_input_makes_the_service_fail_for_any_role(own_service: Served) -> None:
    credentials: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
    clients = []
    for role, username in SESSION_ROLES.items():
        client = await sign_in(own_service.url, username)
        clients.append(client)
        credentials[role] = ({"X-CSRF-Token": client.csrf}, dict(client.http.cookies.items()))
    bridge = await make_user(own_service.db, role=Role.service, password="")
    async with own_service.db.session() as s:
        user = await s.get(User, bridge.id)
        assert user is not None
        token = await create_api_token(s, user, "fuzz", days=1)
    credentials["service"] = ({"Authorization": f"Bearer {token}"}, {})
    try:
        async with httpx.AsyncClient(base_url=own_service.url, timeout=30) as http:
            answer = await http.get("/api/openapi.json")
        assert answer.status_code == 200
        document = answer.json()
        # Each role can reach the service at all: a run whose every request bounced on 401 would prove nothing.
        for role, (headers, cookies) in credentials.items():
            async with httpx.AsyncClient(base_url=own_service.url, headers=headers, cookies=cookies) as http:
                assert (await http.get("/api/session")).status_code == 200, role
        # Inputs a run found answering 500 once, kept whatever the seed draws: an id past 64 bits is an unknown
        # address (404), and null for a field that cannot be empty is refused naming it (422).
        headers, cookies = credentials["coordinator"]
        async with httpx.AsyncClient(base_url=own_service.url, headers=headers, cookies=cookies) as http:
            assert (await http.get("/api/cases/" + "9" * 40)).status_code == 404
            refused = await http.patch("/api/invitations/1", json={"quorum_member": None})
            assert refused.status_code == 422, refused.text
            assert "quorum_member" in refused.json().get("fields", {}), refused.text
            refused = await http.patch("/api/cases/1", json={"referring_physician": None, "checklist": None})
            assert refused.status_code == 422, refused.text
            for board_id in (10**21, -(10**21)):
                refused = await http.post("/api/meetings", json={"board_id": board_id, "duration_min": 60,
                                                                 "starts_at": "2026-06-01T09:00:00", "title": "Fuzz"})
                assert refused.status_code == 422, refused.text
        failures: list[str] = []
        for role, (headers, cookies) in credentials.items():
            found = await asyncio.to_thread(_fuzz, document, own_service.url, headers, cookies)
            failures += [f"[{role}] {line}" for line in found]
        assert not failures, "inputs the service answered with 5xx:\n" + "\n".join(failures)
    finally:
        await asyncio.gather(*(c.http.aclose() for c in clients))

