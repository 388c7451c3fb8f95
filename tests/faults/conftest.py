"""One cluster (two nodes, PostgreSQL and Redis behind fault proxies) for the fault tests, healed before each."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.factories import MadeUser, credentials
from tests.faults.cluster import Cluster, running_cluster


@pytest.fixture(scope="session")
async def cluster_once() -> AsyncIterator[Cluster]:
    async with running_cluster() as cluster:
        yield cluster


@pytest.fixture
async def cluster(cluster_once: Cluster) -> Cluster:
    """The cluster with both parts reachable and both nodes up, whatever the previous test broke."""
    cluster_once.heal()
    return cluster_once


async def signed_in(url: str, user: MadeUser) -> httpx.AsyncClient:
    """An API client signed in as ``user`` on the node at ``url`` (the CSRF header set; the cookie works on every
    node: sessions are in the shared database)."""
    client = httpx.AsyncClient(base_url=url, timeout=30)
    response = await client.post("/api/session", json=credentials(user.username, user.password))
    assert response.status_code == 201, response.text
    client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
    return client


def cookie_of(client: httpx.AsyncClient) -> str:
    return f"rcp_session={client.cookies['rcp_session']}"
